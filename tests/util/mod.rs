//! Helpers for the end-to-end tests: build the real binaries once, start a
//! private redis-server, run `jobfleet` and `jobfleet-worker` processes.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use jobfleet_testkit::RedisServer;
use serde_json::Value;

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
    pub redis: RedisServer,
    pub workers: Vec<Worker>,
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
    pub fn new() -> Fleet {
        Fleet {
            redis: RedisServer::start(),
            workers: Vec::new(),
        }
    }

    /// Runs `jobfleet ARGS` to completion.
    pub fn jobfleet(&self, args: &[&str]) -> Run {
        self.jobfleet_stdin(args, "")
    }

    /// Runs `jobfleet ARGS` with `input` on stdin.
    pub fn jobfleet_stdin(&self, args: &[&str], input: &str) -> Run {
        let mut child = Command::new(bin("jobfleet"))
            .args(args)
            .env("JOBFLEET_REDIS", self.redis.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jobfleet");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_string();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("wait for jobfleet");
        writer.join().unwrap();
        Run::from(output)
    }

    /// Starts a worker with short heartbeat and dead-after windows.
    pub fn start_worker(&mut self, extra: &[&str]) -> usize {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(bin("jobfleet-worker"))
            .args(["--heartbeat", "100ms", "--dead-after", "1s", "--poll", "200ms"])
            .args(extra)
            .env("JOBFLEET_REDIS", self.redis.url())
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
