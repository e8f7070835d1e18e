//! Helpers for the end-to-end tests: build the real binaries once, start a
//! private redis-server, run `jobfleet` and `jobfleet-worker` processes.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobfleet_testkit::{RedisServer, TestRedis};
use serde_json::Value;

pub mod dashboard;
pub mod load;

/// The directory holding the built binaries (built once per test run).
fn bin_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "jobfleet-cli",
                "-p",
                "jobfleet-worker",
                "--bins",
            ])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .expect("run cargo build for the binaries");
        assert!(status.success(), "building the binaries failed");
        // target/<profile>/deps/<test> -> target/<profile>
        let exe = std::env::current_exe().expect("current exe");
        exe.parent()
            .and_then(|p| p.parent())
            .expect("target dir")
            .to_path_buf()
    })
}

/// A path to one of the project's binaries.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A private Redis plus helpers to run the binaries against it.
pub struct Fleet {
    /// The private Redis, when the fleet has one of its own (a Sentinel
    /// group or a proxy is owned by the test instead).
    redis: Option<TestRedis>,
    /// The URL every process is given.
    pub url: String,
    /// The key prefix every process is given (`JOBFLEET_PREFIX`).
    pub prefix: String,
    pub workers: Vec<Worker>,
    /// Scratch space: the chaos worker's execution log lives here.
    pub dir: tempfile::TempDir,
}

/// What `jobfleet` printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

impl Fleet {
    /// A fleet on a Redis of its own: a private server, or with
    /// `JOBFLEET_TEST_TOPOLOGY=cluster` a prefix of its own on the test
    /// binary's Redis Cluster.
    pub fn new() -> Fleet {
        let redis = TestRedis::start();
        Fleet {
            url: redis.url(),
            prefix: redis.prefix(),
            redis: Some(redis),
            workers: Vec::new(),
            dir: tempfile::tempdir().expect("scratch dir"),
        }
    }

    pub fn with_redis(redis: RedisServer) -> Fleet {
        Fleet {
            url: redis.url(),
            prefix: "jobfleet".into(),
            redis: Some(TestRedis::Single(redis)),
            workers: Vec::new(),
            dir: tempfile::tempdir().expect("scratch dir"),
        }
    }

    /// A fleet on a Redis the test owns, at `url`.
    pub fn with_url(url: String) -> Fleet {
        Fleet {
            url,
            prefix: "jobfleet".into(),
            redis: None,
            workers: Vec::new(),
            dir: tempfile::tempdir().expect("scratch dir"),
        }
    }

    /// The fleet's own Redis.
    pub fn redis(&self) -> &RedisServer {
        match &self.redis {
            Some(TestRedis::Single(server)) => server,
            _ => panic!("this test needs a redis-server of its own (it reconfigures or restarts it)"),
        }
    }

    /// Sends an inline command to the node holding `key` (the fleet's own
    /// server, or the key's primary on a cluster); the raw reply.
    pub fn cmd_at(&self, key: &str, line: &str) -> String {
        self.redis
            .as_ref()
            .expect("this fleet has a Redis of its own")
            .cmd_at(key, line)
    }

    /// The fleet's own Redis, to kill or restart.
    pub fn redis_mut(&mut self) -> &mut RedisServer {
        match &mut self.redis {
            Some(TestRedis::Single(server)) => server,
            _ => panic!("this test needs a redis-server of its own (it reconfigures or restarts it)"),
        }
    }

    /// Where the chaos worker records executions.
    pub fn execution_log(&self) -> PathBuf {
        self.dir.path().join("executions.log")
    }

    /// Runs `jobfleet ARGS` to completion.
    pub fn jobfleet(&self, args: &[&str]) -> Run {
        self.jobfleet_stdin(args, "")
    }

    /// Runs `jobfleet ARGS` with `input` on stdin.
    pub fn jobfleet_stdin(&self, args: &[&str], input: &str) -> Run {
        let child = self.spawn_jobfleet(args, input);
        Run::from(child.wait_with_output().expect("wait for jobfleet"))
    }

    /// Starts a `jobfleet-worker` with short heartbeat and dead-after windows.
    pub fn start_worker(&mut self, extra: &[&str]) -> usize {
        self.start(&bin("jobfleet-worker"), extra)
    }

    /// Starts the chaos worker (built-ins plus misbehaving tasks).
    pub fn start_chaos_worker(&mut self, extra: &[&str]) -> usize {
        self.start(&bin("jobfleet-chaos-worker"), extra)
    }

    /// Starts a worker binary and waits until it has registered.
    pub fn start(&mut self, program: &std::path::Path, extra: &[&str]) -> usize {
        let log = tempfile::NamedTempFile::new().expect("log file");
        // Short windows by default; `extra` may override any of them.
        let mut args: Vec<&str> = Vec::new();
        for (flag, value) in [
            ("--heartbeat", "100ms"),
            ("--dead-after", "1s"),
            ("--poll", "200ms"),
        ] {
            if !extra.contains(&flag) {
                args.extend([flag, value]);
            }
        }
        let child = Command::new(program)
            .args(args)
            .args(extra)
            .env("JOBFLEET_REDIS", &self.url)
            .env("JOBFLEET_PREFIX", &self.prefix)
            .env("CHAOS_LOG", self.execution_log())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen log"))
            .spawn()
            .expect("spawn jobfleet-worker");
        let pid = child.id();
        self.workers.push(Worker {
            child: Some(child),
            log,
        });
        // Ready once it has registered (its description is in Redis).
        self.until(Duration::from_secs(20), "the worker to register", |f| {
            f.stats()["workers"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w["pid"].as_u64() == Some(pid as u64))
        });
        self.workers.len() - 1
    }

    /// `stats --json`.
    pub fn stats(&self) -> Value {
        let run = self.jobfleet(&["stats", "--json"]);
        assert_eq!(run.code, 0, "stats failed: {}", run.stderr);
        run.json()
    }

    /// One queue's entry in `stats --json`.
    pub fn queue_stats(&self, queue: &str) -> Value {
        self.stats()["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == queue)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Polls `check` until it holds, failing the test after `limit`.
    pub fn until(&self, limit: Duration, what: &str, check: impl Fn(&Fleet) -> bool) {
        let deadline = Instant::now() + limit;
        while !check(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

/// A running `jobfleet-worker`; killed on drop.
pub struct Worker {
    pub child: Option<Child>,
    pub log: tempfile::NamedTempFile,
}

impl Worker {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([format!("-{signal}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status.code();
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Lines of stdout that look like job ids.
pub fn ids(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

impl Fleet {
    /// Starts `jobfleet ARGS` without waiting for it; `input` goes to stdin.
    pub fn spawn_jobfleet(&self, args: &[&str], input: &str) -> Child {
        let mut child = Command::new(bin("jobfleet"))
            .args(args)
            .env("JOBFLEET_REDIS", &self.url)
            .env("JOBFLEET_PREFIX", &self.prefix)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jobfleet");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_string();
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        child
    }

    /// Submits one job per payload line; returns the ids printed.
    pub fn submit_lines(&self, task: &str, input: &str, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["submit", task, "--stdin"];
        args.extend_from_slice(extra);
        let run = self.jobfleet_stdin(&args, input);
        assert_eq!(run.code, 0, "submit failed: {}", run.stderr);
        ids(&run.stdout)
    }

    /// Final states of `ids` (waiting up to `limit`), via `jobfleet wait --json`.
    pub fn final_states(&self, ids: &[String], limit: Duration) -> std::collections::HashMap<String, Value> {
        let timeout = format!("{}s", limit.as_secs());
        let mut states = std::collections::HashMap::new();
        for chunk in ids.chunks(2000) {
            let mut args = vec!["wait", "--json", "--timeout", timeout.as_str()];
            args.extend(chunk.iter().map(String::as_str));
            let run = self.jobfleet(&args);
            assert!(
                run.code == 0 || run.code == 1,
                "wait failed ({}): {}",
                run.code,
                run.stderr
            );
            for line in run.stdout.lines() {
                let v: Value = serde_json::from_str(line).expect("a JSON line");
                states.insert(v["id"].as_str().unwrap().to_string(), v);
            }
        }
        states
    }

    /// Executions recorded by the chaos worker's `record` task: id -> count.
    pub fn executions(&self) -> std::collections::HashMap<String, u32> {
        let mut runs = std::collections::HashMap::new();
        let text = std::fs::read_to_string(self.execution_log()).unwrap_or_default();
        for line in text.lines() {
            let id = line.split_whitespace().next().expect("an id").to_string();
            *runs.entry(id).or_insert(0) += 1;
        }
        runs
    }

    /// Replaces every worker process that has exited; returns how many.
    pub fn replace_exited(&mut self, program: &std::path::Path, extra: &[&str]) -> usize {
        let mut replaced = 0;
        for i in 0..self.workers.len() {
            if let Some(child) = self.workers[i].child.as_mut()
                && child.try_wait().expect("try_wait").is_some()
            {
                self.workers[i].child = None;
                replaced += 1;
            }
        }
        for _ in 0..replaced {
            self.start(program, extra);
        }
        replaced
    }
}

/// The total-queue check, in the spirit of Jepsen's: every acknowledged
/// submit reached a final state and ran at least once, nothing unexpected
/// ran, and duplicates are counted.
#[derive(Debug, Default)]
pub struct Verdict {
    pub submitted: usize,
    pub completed: usize,
    pub dead: usize,
    pub cancelled: usize,
    /// Submitted but not final (or with no record) at the end.
    pub lost: Vec<String>,
    /// Completed without any recorded execution.
    pub never_ran: Vec<String>,
    /// Executions of ids that were never submitted.
    pub unexpected: Vec<String>,
    /// Executions beyond the first, summed over jobs.
    pub duplicates: u32,
}

impl Verdict {
    pub fn check(fleet: &Fleet, ids: &[String], limit: Duration) -> Verdict {
        Verdict::check_allowing(fleet, ids, &[], limit)
    }

    /// [`Verdict::check`], where `maybe` are ids whose submit was attempted
    /// but never acknowledged (the producer was cut off, or its replicas did
    /// not confirm): they may run or not, but they must not count as
    /// unexpected.
    pub fn check_allowing(fleet: &Fleet, ids: &[String], maybe: &[String], limit: Duration) -> Verdict {
        let maybe: std::collections::HashSet<&String> = maybe.iter().collect();
        let states = fleet.final_states(ids, limit);
        let runs = fleet.executions();
        let mut v = Verdict {
            submitted: ids.len(),
            ..Verdict::default()
        };
        let submitted: std::collections::HashSet<&String> = ids.iter().collect();
        for id in ids {
            match states.get(id).and_then(|s| s["state"].as_str()) {
                Some("completed") => {
                    v.completed += 1;
                    if !runs.contains_key(id) {
                        v.never_ran.push(id.clone());
                    }
                }
                Some("dead") => v.dead += 1,
                Some("cancelled") => v.cancelled += 1,
                _ => v.lost.push(id.clone()),
            }
        }
        for (id, n) in &runs {
            if !submitted.contains(id) && !maybe.contains(id) {
                v.unexpected.push(id.clone());
            }
            v.duplicates += n - 1;
        }
        eprintln!(
            "verdict: submitted {}, completed {}, dead {}, cancelled {}, lost {}, never ran {}, unexpected {}, duplicate runs {}",
            v.submitted,
            v.completed,
            v.dead,
            v.cancelled,
            v.lost.len(),
            v.never_ran.len(),
            v.unexpected.len(),
            v.duplicates
        );
        v
    }

    /// Nothing lost, nothing unexpected, every completed job ran.
    pub fn assert_sound(&self) {
        assert!(self.lost.is_empty(), "lost jobs: {:?}", self.lost);
        assert!(
            self.never_ran.is_empty(),
            "completed but never ran: {:?}",
            self.never_ran
        );
        assert!(
            self.unexpected.is_empty(),
            "unexpected executions: {:?}",
            self.unexpected
        );
    }
}

/// GET a path over plain HTTP/1.1; returns the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}
