//! End to end: the real `jobfleet` and `jobfleet-worker` binaries against a
//! private redis-server, as a user would run them.

mod util;

use std::collections::HashSet;
use std::io::Read;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jobfleet_testkit::RedisServer;
use util::{Fleet, ids};

fn lines(n: usize, make: impl Fn(usize) -> String) -> String {
    (0..n).map(|i| make(i) + "\n").collect()
}

#[test]
fn two_thousand_jobs_from_stdin_complete_exactly_once_on_two_workers() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&["--concurrency", "4"]);
    fleet.start_worker(&["--concurrency", "4"]);
    let input = lines(2000, |i| format!("{{\"n\": {i}}}"));
    let run = fleet.jobfleet_stdin(&["submit", "echo", "--stdin", "--wait"], &input);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let submitted = ids(&run.stdout);
    assert_eq!(submitted.len(), 2000);
    assert_eq!(
        submitted.iter().collect::<HashSet<_>>().len(),
        2000,
        "ids are unique"
    );
    assert!(
        run.stderr
            .contains("2000 jobs: 2000 completed, 0 dead, 0 cancelled"),
        "{}",
        run.stderr
    );

    let q = fleet.queue_stats("default");
    assert_eq!(q["completed"], 2000);
    assert_eq!(q["submitted"], 2000);
    // No retries and no recoveries: every job ran exactly once.
    assert_eq!(
        (q["retried"].as_u64(), q["recovered"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!((q["pending"].as_u64(), q["active"].as_u64()), (Some(0), Some(0)));
    let processed: u64 = fleet.stats()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["processed"].as_u64().unwrap())
        .sum();
    assert!(processed <= 2000);

    let mut args = vec!["wait", "--timeout", "10s"];
    args.extend(submitted[..20].iter().map(String::as_str));
    let wait = fleet.jobfleet(&args);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    assert_eq!(
        wait.stdout.lines().filter(|l| l.ends_with(" completed")).count(),
        20
    );

    let status = fleet.jobfleet(&["status", &submitted[5], "--json"]).json();
    assert_eq!(
        (status["state"].as_str(), status["attempts"].as_u64()),
        (Some("completed"), Some(1))
    );
    assert_eq!(status["result"], serde_json::json!({"n": 5}));
}

#[test]
fn killing_a_worker_with_sigkill_loses_no_job() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&["--concurrency", "10"]);
    let victim_pid = fleet.workers[victim].pid() as u64;
    let input = lines(200, |_| r#"{"ms": 100}"#.to_string());
    let run = fleet.jobfleet_stdin(&["submit", "sleep", "--stdin"], &input);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let submitted = ids(&run.stdout);
    fleet.until(Duration::from_secs(20), "the victim to run jobs", |f| {
        f.queue_stats("default")["active"].as_u64() > Some(0)
    });
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&["--concurrency", "10"]);

    let mut args = vec!["wait", "--timeout", "60s"];
    args.extend(submitted.iter().map(String::as_str));
    let wait = fleet.jobfleet(&args);
    assert_eq!(wait.code, 0, "stdout: {}\nstderr: {}", wait.stdout, wait.stderr);
    let q = fleet.queue_stats("default");
    assert_eq!(q["completed"], 200);
    assert!(
        q["recovered"].as_u64() >= Some(1),
        "the victim's jobs were recovered: {q}"
    );
    fleet.until(Duration::from_secs(10), "the dead worker to disappear", |f| {
        f.stats()["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["pid"].as_u64() != Some(victim_pid))
    });
}

#[test]
fn sigterm_drains_the_worker_which_exits_zero_and_nothing_is_lost() {
    let mut fleet = Fleet::new();
    let leaving = fleet.start_worker(&["--concurrency", "8", "--grace", "10s"]);
    let input = lines(100, |_| r#"{"ms": 200}"#.to_string());
    let submitted = ids(&fleet
        .jobfleet_stdin(&["submit", "sleep", "--stdin"], &input)
        .stdout);
    assert_eq!(submitted.len(), 100);
    fleet.until(Duration::from_secs(20), "jobs to start", |f| {
        f.queue_stats("default")["active"].as_u64() > Some(0)
    });
    fleet.workers[leaving].signal("TERM");
    let code = fleet.workers[leaving].wait_exit(Duration::from_secs(10));
    assert_eq!(code, Some(0), "log:\n{}", fleet.workers[leaving].log());
    assert!(fleet.workers[leaving].log().contains("worker stopped"));

    fleet.start_worker(&["--concurrency", "8"]);
    let mut args = vec!["wait", "--timeout", "60s"];
    args.extend(submitted.iter().map(String::as_str));
    assert_eq!(fleet.jobfleet(&args).code, 0);
    let q = fleet.queue_stats("default");
    assert_eq!(
        (q["completed"].as_u64(), q["recovered"].as_u64()),
        (Some(100), Some(0))
    );
}

#[test]
fn submit_wait_over_failing_jobs_exits_one_and_names_them() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&[]);
    let input = "{\"message\": \"disk on fire\", \"permanent\": true}\n{\"message\": \"also bad\", \"permanent\": true}\n";
    let run = fleet.jobfleet_stdin(&["submit", "fail", "--stdin", "--wait"], input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    for id in ids(&run.stdout) {
        assert!(
            run.stderr.contains(&id),
            "the failed job {id} is named: {}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("dead: disk on fire"), "{}", run.stderr);
    assert!(
        run.stderr.contains("2 jobs: 0 completed, 2 dead"),
        "{}",
        run.stderr
    );

    let ok = fleet.jobfleet(&["submit", "echo", r#"{"x": 1}"#, "--wait", "--json"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let finished: serde_json::Value = serde_json::from_str(ok.stdout.trim()).unwrap();
    assert_eq!(
        (finished["state"].as_str(), &finished["result"]),
        (Some("completed"), &serde_json::json!({"x": 1}))
    );
}

#[test]
fn cli_errors_say_what_was_wrong_and_exit_non_zero() {
    let fleet = Fleet::new();
    let bad_json = fleet.jobfleet(&["submit", "echo", "{oops"]);
    assert_eq!(bad_json.code, 3);
    assert!(
        bad_json.stderr.contains("payload is not valid JSON"),
        "{}",
        bad_json.stderr
    );

    let bad_line = fleet.jobfleet_stdin(&["submit", "echo", "--stdin"], "{\"a\": 1}\n\nnot json\n{}\n");
    assert_eq!(bad_line.code, 3);
    assert!(
        bad_line.stderr.contains("line 3: payload is not valid JSON"),
        "{}",
        bad_line.stderr
    );
    assert_eq!(
        ids(&bad_line.stdout).len(),
        1,
        "the line before the bad one was submitted"
    );

    let empty = fleet.jobfleet_stdin(&["submit", "echo", "--stdin"], "");
    assert_eq!(empty.code, 3);
    assert!(empty.stderr.contains("stdin had no payloads"), "{}", empty.stderr);

    for args in [
        &["status", "no-such-job"][..],
        &["wait", "no-such-job"],
        &["cancel", "no-such-job"],
    ] {
        let run = fleet.jobfleet(args);
        assert_eq!(run.code, 3, "{args:?}");
        assert!(
            run.stderr.contains("no job with id no-such-job"),
            "{args:?}: {}",
            run.stderr
        );
    }

    let bad_queue = fleet.jobfleet(&["submit", "echo", "--queue", "a b{c}"]);
    assert_eq!(bad_queue.code, 3);
    assert!(
        bad_queue.stderr.contains("invalid queue name"),
        "{}",
        bad_queue.stderr
    );

    let unreachable = std::process::Command::new(util::bin("jobfleet"))
        .args(["--redis", "redis://127.0.0.1:1", "stats"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr.contains("cannot reach Redis at redis://127.0.0.1:1"),
        "{stderr}"
    );

    let too_big = format!("\"{}\"\n", "x".repeat(2 * 1024 * 1024));
    let big = fleet.jobfleet_stdin(&["submit", "echo", "--stdin"], &too_big);
    assert_eq!(big.code, 3);
    assert!(
        big.stderr
            .contains("line 1: payload is 2097154 bytes, over the 1048576 byte limit"),
        "{}",
        big.stderr
    );
}

#[test]
fn wait_times_out_with_exit_two_and_dead_jobs_can_be_retried() {
    let mut fleet = Fleet::new();
    let id = ids(&fleet
        .jobfleet(&["submit", "fail", r#"{"permanent": true}"#])
        .stdout)
    .remove(0);
    let timed_out = fleet.jobfleet(&["wait", &id, "--timeout", "300ms"]);
    assert_eq!(timed_out.code, 2, "{}", timed_out.stderr);
    assert!(timed_out.stderr.contains("timed out"), "{}", timed_out.stderr);

    fleet.start_worker(&[]);
    assert_eq!(fleet.jobfleet(&["wait", &id]).code, 1);
    let dead = fleet.jobfleet(&["dead", "list", "--json"]).json();
    assert_eq!(dead[0]["id"].as_str(), Some(id.as_str()));
    let retried = fleet.jobfleet(&["dead", "retry", &id]);
    assert_eq!(retried.code, 0, "{}", retried.stderr);
    assert_eq!(
        fleet.jobfleet(&["wait", &id]).code,
        1,
        "it fails again, permanently"
    );
    assert_eq!(fleet.jobfleet(&["dead", "purge"]).code, 0);
    assert_eq!(fleet.queue_stats("default")["dead"], 0);
}

#[test]
fn the_worker_serves_prometheus_metrics_of_what_it_ran() {
    let mut fleet = Fleet::new();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    fleet.start_worker(&["--metrics", &addr]);
    let input = lines(50, |i| format!("{{\"n\": {i}}}"));
    assert_eq!(
        fleet
            .jobfleet_stdin(&["submit", "echo", "--stdin", "--wait"], &input)
            .code,
        0
    );
    let failing = fleet.jobfleet(&["submit", "fail", r#"{"permanent": true}"#, "--wait"]);
    assert_eq!(failing.code, 1);

    let body = util::http_get(port, "/metrics");
    let mut samples = std::collections::HashMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        samples.insert(series.to_string(), value);
    }
    let get = |prefix: &str, needles: &[&str]| {
        samples
            .iter()
            .filter(|(s, _)| s.starts_with(prefix) && needles.iter().all(|n| s.contains(n)))
            .map(|(_, v)| *v)
            .sum::<f64>()
    };
    assert_eq!(
        get("jobfleet_jobs_total", &["task=\"echo\"", "outcome=\"completed\""]),
        50.0,
        "{body}"
    );
    assert_eq!(
        get("jobfleet_jobs_total", &["task=\"fail\"", "outcome=\"dead\""]),
        1.0
    );
    assert_eq!(
        get("jobfleet_job_duration_seconds_count", &["task=\"echo\""]),
        50.0
    );
    assert!(get("jobfleet_claim_batch_size_count", &[]) >= 1.0);
    assert!(get("jobfleet_redis_call_seconds_count", &["op=\"ack\""]) >= 1.0);
    assert!(samples.contains_key("jobfleet_jobs_in_flight"));
    for name in [
        "jobfleet_jobs_total",
        "jobfleet_job_duration_seconds",
        "jobfleet_jobs_in_flight",
        "jobfleet_claim_batch_size",
        "jobfleet_redis_call_seconds",
    ] {
        assert!(
            body.lines()
                .any(|l| l.starts_with(&format!("# HELP {name} ")) && l.len() > name.len() + 12),
            "no HELP text for {name} in:\n{body}"
        );
    }
}

#[test]
fn rediss_urls_carry_the_whole_lifecycle_over_tls() {
    let redis = jobfleet_testkit::RedisServer::start_with(jobfleet_testkit::RedisOptions {
        tls: true,
        ..Default::default()
    });
    assert!(redis.url().starts_with("rediss://"));
    let mut fleet = Fleet::with_redis(redis);
    fleet.start_worker(&[]);
    let run = fleet.jobfleet(&["submit", "echo", r#"{"over": "tls"}"#, "--wait", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let finished: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(finished["result"], serde_json::json!({"over": "tls"}));
}

/// `jobfleet ARGS | head -c1`: stdout is a pipe whose reader leaves after the
/// first byte. `meanwhile` runs until that byte comes (to make some output),
/// `after` once the reader has gone (to make more). Returns the exit code
/// and stderr.
fn into_closed_pipe(
    fleet: &Fleet,
    args: &[&str],
    meanwhile: impl Fn(),
    after: impl Fn(),
) -> (Option<i32>, String) {
    let mut child = fleet.spawn_jobfleet(args, "");
    let mut stdout = child.stdout.take().expect("stdout");
    let (read, got_byte) = mpsc::channel();
    std::thread::spawn(move || {
        let mut byte = [0u8];
        let read_one = stdout.read_exact(&mut byte).is_ok();
        drop(stdout);
        let _ = read.send(read_one);
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match got_byte.recv_timeout(Duration::from_millis(100)) {
            Ok(true) => break,
            Ok(false) => {
                let output = child.wait_with_output().expect("wait for jobfleet");
                let stderr = String::from_utf8_lossy(&output.stderr);
                panic!("jobfleet {args:?} printed nothing; stderr:\n{stderr}");
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(Instant::now() < deadline, "jobfleet {args:?} printed nothing");
                meanwhile();
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => unreachable!("the reader always sends"),
        }
    }
    after();
    let (exited, exit) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = exited.send(child.wait_with_output().expect("wait for jobfleet"));
    });
    let output = exit
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("jobfleet {args:?} kept running with its stdout closed"));
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_quiet_success(args: &[&str], (code, stderr): (Option<i32>, String)) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "jobfleet {args:?} panicked on a closed stdout:\n{stderr}"
    );
    assert_eq!(
        (code, stderr.as_str()),
        (Some(0), ""),
        "jobfleet {args:?} on a closed stdout"
    );
}

#[test]
fn a_closed_stdout_ends_status_dead_list_and_wait_quietly() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&[]);
    // Output far beyond a pipe's buffer (64 KiB), so the writes outlast the reader.
    let message = "x".repeat(200_000);
    let input = lines(3, |_| {
        serde_json::json!({ "message": message, "permanent": true }).to_string()
    });
    let run = fleet.jobfleet_stdin(&["submit", "fail", "--stdin", "--wait"], &input);
    assert_eq!(run.code, 1, "the jobs die: {}", run.stderr);
    let id = ids(&run.stdout).remove(0);
    // No worker serves its queue: `wait` would wait for it forever, but ends
    // as soon as it cannot print the dead job.
    let run = fleet.jobfleet(&["submit", "noop", "--queue", "unserved"]);
    let never = ids(&run.stdout).remove(0);
    for args in [
        &["status", id.as_str(), "--json"][..],
        &["status", id.as_str()],
        &["dead", "list"],
        &["dead", "list", "--json"],
        &["wait", id.as_str(), never.as_str()],
    ] {
        assert_quiet_success(args, into_closed_pipe(&fleet, args, || {}, || {}));
    }
}

#[test]
fn a_closed_stdout_ends_events_quietly() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&[]);
    let complete_one = || {
        let run = fleet.jobfleet(&["submit", "echo", "{}", "--wait"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    };
    for args in [&["events"][..], &["events", "--json"]] {
        // Jobs complete until the first event line is out; the one after it
        // meets the closed pipe.
        assert_quiet_success(args, into_closed_pipe(&fleet, args, complete_one, complete_one));
    }
}

#[test]
fn an_empty_unserved_queue_can_be_forgotten_but_not_a_busy_one() {
    let mut fleet = Fleet::new();
    // A slow heartbeat: a beat racing the worker's leave could re-register it.
    let worker = fleet.start_worker(&["--queue", "done", "--heartbeat", "1s", "--dead-after", "3s"]);
    let run = fleet.jobfleet_stdin(
        &["submit", "echo", "--stdin", "--queue", "done", "--wait"],
        "{}\n{}\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let served = fleet.jobfleet(&["queue", "forget", "done"]);
    assert_eq!(served.code, 3, "{}", served.stderr);
    assert!(
        served.stderr.contains("queue done") && served.stderr.contains("a live worker serves it"),
        "{}",
        served.stderr
    );

    fleet.workers[worker].signal("TERM");
    assert_eq!(fleet.workers[worker].wait_exit(Duration::from_secs(10)), Some(0));
    let forgot = fleet.jobfleet(&["queue", "forget", "done"]);
    assert_eq!(forgot.code, 0, "{}", forgot.stderr);
    assert_eq!(forgot.stdout, "forgot queue done\n");
    assert_eq!(
        fleet.queue_stats("done"),
        serde_json::Value::Null,
        "{}",
        fleet.stats()
    );

    let pending = fleet.jobfleet(&["submit", "noop", "--queue", "waiting"]);
    assert_eq!(pending.code, 0, "{}", pending.stderr);
    let busy = fleet.jobfleet(&["queue", "forget", "waiting"]);
    assert_eq!(busy.code, 3, "{}", busy.stderr);
    assert!(
        busy.stderr.contains("queue waiting") && busy.stderr.contains("pending jobs"),
        "{}",
        busy.stderr
    );
    assert_eq!(fleet.queue_stats("waiting")["pending"], 1);
}

#[test]
fn protocol_scripts_writes_every_script_as_sent_to_redis() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("made").join("for-go");
    let run = std::process::Command::new(util::bin("jobfleet"))
        .args(["protocol", "scripts", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed: Vec<String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    let sources = jobfleet_core::scripts::SOURCES;
    assert!(sources.len() >= 14, "{} scripts", sources.len());
    assert_eq!(printed.len(), sources.len(), "{printed:?}");
    for (file_name, text) in sources {
        let path = out.join(file_name);
        assert!(
            printed.contains(&path.display().to_string()),
            "{} in {printed:?}",
            path.display()
        );
        let written = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&written, text, "{file_name}");
        assert!(written.contains("now_ms"), "{file_name} starts with common.lua");
    }
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), sources.len());
}

#[test]
fn a_submit_no_replica_confirms_prints_no_id_exits_three_and_the_worker_counts_its_unconfirmed_acks() {
    // A lone Redis has no replica: --replicas 1 can never be confirmed (a
    // server of its own on every topology run: a cluster has replicas).
    let mut fleet = Fleet::with_redis(RedisServer::start());
    let run = fleet.jobfleet(&[
        "--replicas",
        "1",
        "--replica-timeout",
        "200ms",
        "submit",
        "echo",
        "{\"n\": 1}",
        "--key",
        "unconfirmed-1",
    ]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.stdout, "", "no id is printed as submitted");
    assert!(
        run.stderr.contains("only 0 of 1 replicas confirmed"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("unconfirmed-1"),
        "the unconfirmed id is named: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("--key"),
        "it says what is safe to do: {}",
        run.stderr
    );
    // The job is on the primary all the same; a worker that asks for a
    // replica too completes it, and logs the ack it could not confirm.
    let w = fleet.start_worker(&["--replicas", "1", "--replica-timeout", "100ms"]);
    let run = fleet.jobfleet(&["wait", "unconfirmed-1", "--timeout", "20s"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    fleet.until(Duration::from_secs(10), "the unconfirmed ack to be logged", |f| {
        f.workers[w].log().contains("not confirmed by the replicas")
    });
    // Without --replicas the same submit is plain: 0 replicas asked.
    let run = fleet.jobfleet(&["submit", "echo", "{}", "--key", "plain-1"]);
    assert_eq!((run.code, run.stdout.trim()), (0, "plain-1"), "{}", run.stderr);
}

#[test]
fn a_sentinel_url_that_cannot_work_is_refused_with_what_to_do() {
    let fleet = Fleet::new();
    let run = fleet.jobfleet(&["--redis", "redis+sentinel://127.0.0.1:1", "stats"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("no master name"), "{}", run.stderr);
    assert!(
        run.stderr.contains("redis+sentinel://[user:password@]host:port"),
        "{}",
        run.stderr
    );
    // A well-formed one whose sentinels are not there says so, and hides the password.
    let run = fleet.jobfleet(&["--redis", "redis+sentinel://:hunter2@127.0.0.1:1/main", "stats"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cannot reach a primary through the sentinels"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("hunter2"), "{}", run.stderr);
}

#[test]
fn waiting_is_bounded_by_wait_timeout_not_the_jobs_timeout_and_says_how_to_wait_again() {
    let mut fleet = Fleet::new();
    // No worker yet: the wait warns at once, then gives up after its own
    // timeout while the job (timeout 30 s) stays pending.
    let started = Instant::now();
    let run = fleet.jobfleet(&[
        "submit",
        "sleep",
        r#"{"ms": 10}"#,
        "--key",
        "slow-1",
        "--wait",
        "--wait-timeout",
        "6s",
        "--timeout",
        "30s",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(started.elapsed() < Duration::from_secs(15));
    // Without a terminal, a progress line every 5 s, completions or not.
    assert!(
        run.stderr
            .contains("progress: 0/1 finished: 0 completed, 0 dead, 0 cancelled"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("no live worker serves queue default"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 job still not finished after 6s: they keep running; wait again with: jobfleet wait -q default slow-1"),
        "{}",
        run.stderr
    );
    assert_eq!(run.stdout.trim(), "slow-1");
    // --wait-timeout without --wait is refused by the parser.
    let run = fleet.jobfleet(&["submit", "echo", "{}", "--wait-timeout", "1s"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // A worker runs it; waiting again as told prints its result.
    fleet.start_worker(&[]);
    let run = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 10}"#, "--key", "slow-1", "--wait"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(ids(&run.stdout), ["slow-1", r#"{"slept_ms":10}"#]);
    assert!(!run.stderr.contains("no live worker"), "{}", run.stderr);
}

#[test]
fn ctrl_c_while_waiting_says_the_jobs_keep_running_and_how_to_wait_again() {
    let fleet = Fleet::new();
    let mut child = fleet.spawn_jobfleet(&["submit", "echo", "{}", "--key", "interrupted-1", "--wait"], "");
    // The wait warns that no worker serves the queue once it listens for
    // Ctrl-C: interrupt it then.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("no live worker serves queue default") {
        assert!(
            std::io::BufRead::read_line(&mut stderr, &mut said).unwrap() > 0,
            "the wait ended early: {said}"
        );
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "interrupted-1");
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    let stderr = said;
    assert!(
        stderr.contains("interrupted: the jobs keep running in the fleet; wait for them again with: jobfleet wait -q default interrupted-1"),
        "{stderr}"
    );
}

#[test]
fn connection_errors_name_the_real_cause_once() {
    // It reconfigures the server: one of its own on every topology run.
    let fleet = Fleet::with_redis(RedisServer::start());
    fleet.redis().cmd("CONFIG SET requirepass s3cret");
    let port = fleet.redis().port();
    let run = |url: &str| {
        let output = std::process::Command::new(util::bin("jobfleet"))
            .args(["--redis", url, "stats"])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{url}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // No password where one is needed, and a wrong one.
    for (url, cause) in [
        (format!("redis://127.0.0.1:{port}"), "NOAUTH"),
        (
            format!("redis://:wrong@127.0.0.1:{port}"),
            "authentication failed",
        ),
    ] {
        let stderr = run(&url);
        assert!(
            stderr.contains("refused the credentials, or wants some"),
            "{url}: {stderr}"
        );
        assert_eq!(
            stderr.to_lowercase().matches(&cause.to_lowercase()).count(),
            1,
            "the cause, once: {stderr}"
        );
        assert!(!stderr.contains("wrong@"), "the password is hidden: {stderr}");
    }
    // A URL that does not parse.
    let stderr = run("redis://127.0.0.1:notaport");
    assert!(
        stderr.contains("cannot be used; write it as redis://"),
        "{stderr}"
    );
    // Nothing listening: refused, said once.
    let stderr = run("redis://127.0.0.1:1");
    assert!(
        stderr.contains("cannot reach Redis at redis://127.0.0.1:1"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    // The right password works.
    let ok = std::process::Command::new(util::bin("jobfleet"))
        .args(["--redis", &format!("redis://:s3cret@127.0.0.1:{port}"), "stats"])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
}

#[test]
fn status_of_an_id_in_two_queues_asks_which() {
    let fleet = Fleet::new();
    for queue in ["left", "right"] {
        let run = fleet.jobfleet(&["submit", "echo", "{}", "--key", "twin", "-q", queue]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let run = fleet.jobfleet(&["status", "twin"]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    assert!(
        run.stderr
            .contains("id twin names a job in several queues (left, right): say which with -q/--queue"),
        "{}",
        run.stderr
    );
    let run = fleet.jobfleet(&["status", "twin", "-q", "right", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["queue"], "right");
    // cancel and wait ask the same.
    for args in [&["cancel", "twin"][..], &["wait", "twin", "--timeout", "1s"]] {
        let run = fleet.jobfleet(args);
        assert_eq!(run.code, 3, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains("say which with -q/--queue"),
            "{args:?}: {}",
            run.stderr
        );
    }
    let run = fleet.jobfleet(&["cancel", "twin", "-q", "left"]);
    assert_eq!(
        (run.code, run.stdout.trim()),
        (0, "twin cancelled"),
        "{}",
        run.stderr
    );
}

#[test]
fn completions_man_page_and_version_come_from_the_command_line_itself() {
    let fleet = Fleet::new();
    let version = fleet.jobfleet(&["--version"]);
    assert_eq!(
        version.stdout.trim(),
        format!("jobfleet {}", env!("CARGO_PKG_VERSION"))
    );
    for (shell, marker) in [
        ("bash", "_jobfleet()"),
        ("zsh", "#compdef jobfleet"),
        ("fish", "complete -c jobfleet"),
    ] {
        let run = fleet.jobfleet(&["completions", shell]);
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(
            run.stdout.contains(marker),
            "{shell}: {}",
            &run.stdout[..run.stdout.len().min(300)]
        );
        // Every subcommand is completed.
        for sub in ["submit", "wait", "status", "dashboard", "completions"] {
            assert!(run.stdout.contains(sub), "{shell} lacks {sub}");
        }
    }
    let man = fleet.jobfleet(&["man"]);
    assert_eq!(man.code, 0, "{}", man.stderr);
    assert!(man.stdout.contains(".TH jobfleet 1"), "{}", &man.stdout[..300]);
    assert!(
        man.stdout.contains("Exit codes: 0 success"),
        "the man page has the exit codes"
    );
    let bad = fleet.jobfleet(&["completions", "tcsh"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("possible values"), "{}", bad.stderr);
}

#[test]
fn submit_at_a_time_schedules_the_job_for_that_time_on_redis_clock() {
    let fleet = Fleet::new();
    let redis_secs: u64 = jobfleet_testkit::resp_words(&fleet.cmd_at("default", "TIME"))[0]
        .parse()
        .unwrap();
    let target = redis_secs + 3600;
    let rfc3339 = |secs: u64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let run = fleet.jobfleet(&["submit", "echo", "{}", "--key", "later", "--at", &rfc3339(target)]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let status = fleet.jobfleet(&["status", "later", "--json"]).json();
    assert_eq!(status["state"], "scheduled", "{status}");
    let run_at = status["run_at_ms"].as_u64().unwrap();
    assert!(
        run_at.abs_diff(target * 1000) < 2000,
        "run_at {run_at}, wanted {}",
        target * 1000
    );
    // A time already past runs at once, and says so.
    let run = fleet.jobfleet(&[
        "submit",
        "echo",
        "{}",
        "--key",
        "past",
        "--at",
        &rfc3339(redis_secs - 60),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("is already past on Redis' clock"),
        "{}",
        run.stderr
    );
    assert_eq!(
        fleet.jobfleet(&["status", "past", "--json"]).json()["state"],
        "pending"
    );
    // Not a time, and not both --at and --delay.
    let bad = fleet.jobfleet(&["submit", "echo", "{}", "--at", "tomorrow"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    let both = fleet.jobfleet(&["submit", "echo", "{}", "--at", &rfc3339(target), "--delay", "1s"]);
    assert_eq!(both.code, 2, "{}", both.stderr);
}

#[test]
fn a_worker_takes_its_settings_from_a_config_file_that_env_and_flags_override() {
    let mut fleet = Fleet::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("worker.toml");
    // The file's Redis is wrong on purpose: JOBFLEET_REDIS (set by the fleet) wins.
    std::fs::write(
        &config,
        "redis = \"redis://127.0.0.1:1\"\nqueue = [\"from-file\", \"second\"]\nconcurrency = 3\n\
         log-level = \"warn\"\n",
    )
    .unwrap();
    let worker = fleet.start_worker(&["--config", config.to_str().unwrap()]);
    let done = fleet.jobfleet(&["submit", "echo", "{}", "--queue", "second", "--wait"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let described = fleet.stats()["workers"][0].clone();
    assert_eq!(described["concurrency"], 3, "{described}");
    assert_eq!(
        described["queues"],
        serde_json::json!(["from-file", "second"]),
        "{described}"
    );
    let log = fleet.workers[worker].log();
    assert!(
        log.contains("appendonly") && !log.contains("worker started"),
        "--log-level warn from the file applies:\n{log}"
    );
    assert!(!log.contains('\x1b'), "no colour codes in a log file:\n{log}");

    let bad = std::process::Command::new(util::bin("jobfleet-worker"))
        .args(["--config", config.to_str().unwrap(), "--log-level", "loud=="])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--log-level"));
}

#[test]
fn a_key_ttl_and_a_traceparent_survive_a_sigkill_of_the_worker_running_the_job() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&["--keep-completed", "0s"]);
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let run = fleet.jobfleet(&[
        "submit",
        "sleep",
        r#"{"ms": 3000}"#,
        "--key",
        "nightly-report",
        "--key-ttl",
        "1h",
        "--traceparent",
        tp,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    fleet.until(Duration::from_secs(20), "the victim to run the job", |f| {
        f.queue_stats("default")["active"].as_u64() == Some(1)
    });
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    let heir = fleet.start_worker(&[
        "--keep-completed",
        "0s",
        "--log-format",
        "json",
        "--log-level",
        "debug",
    ]);
    let wait = fleet.jobfleet(&["wait", "nightly-report", "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);

    let job = fleet.jobfleet(&["status", "nightly-report", "--json"]).json();
    assert_eq!(job["state"], "completed", "{job}");
    assert_eq!(job["recoveries"], 1, "{job}");
    assert_eq!(job["traceparent"], tp, "{job}");
    let again = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 1}"#, "--key", "nightly-report"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("already exists"),
        "the key outlives --keep-completed 0s: {}",
        again.stderr
    );

    // The heir's span for the job is a child of the submitted span, in its trace.
    let log = fleet.workers[heir].log();
    let line = log
        .lines()
        .find(|l| l.contains("attempt ended"))
        .unwrap_or_else(|| panic!("no attempt logged:\n{log}"));
    let event: serde_json::Value = serde_json::from_str(line).unwrap();
    let span = &event["span"];
    assert_eq!(span["trace_id"], "0af7651916cd43dd8448eb211c80319c", "{line}");
    assert_eq!(span["parent_span_id"], "b7ad6b7169203331", "{line}");
    assert_ne!(span["span_id"], "b7ad6b7169203331", "{line}");

    let bad = fleet.jobfleet(&["submit", "echo", "{}", "--traceparent", "not-a-trace"]);
    assert_eq!(bad.code, 3);
    assert!(bad.stderr.contains("invalid traceparent"), "{}", bad.stderr);
}

#[test]
fn a_paused_queue_keeps_its_jobs_through_a_sigkill_of_the_worker_until_resumed() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&[]);
    let run = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 5000}"#]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let long = run.stdout.trim().to_string();
    fleet.until(Duration::from_secs(20), "the victim to run the job", |f| {
        f.queue_stats("default")["active"].as_u64() == Some(1)
    });
    let pause = fleet.jobfleet(&["queue", "pause", "default"]);
    assert_eq!(pause.code, 0, "{}", pause.stderr);
    assert!(pause.stdout.contains("queue default paused"), "{}", pause.stdout);

    // The running job's worker dies; its job is recovered into a queue
    // that no worker may claim from.
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    fleet.until(Duration::from_secs(20), "the victim's job to be recovered", |f| {
        f.queue_stats("default")["recovered"].as_u64() == Some(1)
    });
    let waited = fleet.jobfleet(&["submit", "echo", "{}", "--wait", "--wait-timeout", "1500ms"]);
    assert_eq!(waited.code, 2, "a paused queue runs nothing: {}", waited.stderr);
    let short = waited.stdout.trim().to_string();
    for id in [&long, &short] {
        assert_eq!(
            fleet.jobfleet(&["status", id, "--json"]).json()["state"],
            "pending",
            "{id}"
        );
    }
    let stats = fleet.queue_stats("default");
    assert_eq!(
        (&stats["paused"], &stats["pending"], &stats["active"]),
        (&true.into(), &2.into(), &0.into())
    );
    let list = fleet.jobfleet(&["queue", "list"]);
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("default") && l.contains("paused")),
        "{}",
        list.stdout
    );
    assert!(
        fleet
            .jobfleet(&["stats"])
            .stdout
            .contains("queue default is paused")
    );

    let resume = fleet.jobfleet(&["queue", "resume", "default"]);
    assert!(
        resume.stdout.contains("queue default resumed"),
        "{}",
        resume.stdout
    );
    let wait = fleet.jobfleet(&["wait", &long, &short, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    assert_eq!(fleet.queue_stats("default")["paused"], false);
}

#[test]
fn cancel_by_task_and_purge_count_first_ask_without_yes_and_survive_a_sigkill() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&["--concurrency", "1"]);
    let running = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 10000}"#, "--key", "long-one"]);
    assert_eq!(running.code, 0, "{}", running.stderr);
    fleet.until(Duration::from_secs(20), "the worker to run the long job", |f| {
        f.queue_stats("default")["active"].as_u64() == Some(1)
    });
    let sleeps = fleet.submit_lines("sleep", &lines(3, |_| r#"{"ms": 1}"#.into()), &[]);
    let echoes = fleet.submit_lines("echo", &lines(2, |i| format!("{{\"n\": {i}}}")), &[]);
    let later = fleet.jobfleet(&["submit", "sleep", "{}", "--delay", "1h"]);
    assert_eq!(later.code, 0, "{}", later.stderr);

    let browse = fleet.jobfleet(&[
        "jobs", "default", "--state", "pending", "--task", "sleep", "--json",
    ]);
    let listed: Vec<String> = browse
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, sleeps, "pending sleeps, in the order they will run");
    let table = fleet.jobfleet(&["jobs", "default", "--state", "active"]);
    assert!(table.stdout.contains("long-one"), "{}", table.stdout);

    // Without a terminal and without --yes nothing is cancelled.
    let refused = fleet.jobfleet(&["cancel", "--queue", "default", "--task", "sleep", "--running"]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("Cancel 5 jobs (3 pending, 1 scheduled, 1 running) of task sleep")
            && refused.stderr.contains("pass --yes"),
        "{}",
        refused.stderr
    );
    assert_eq!(fleet.queue_stats("default")["pending"], 5);

    // The worker running the long job dies just before the cancel: the
    // cancel still ends that job cancelled (not run again) once recovered.
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    let done = fleet.jobfleet(&["cancel", "-q", "default", "--task", "sleep", "--running", "--yes"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    assert!(
        done.stdout
            .contains("cancelled 5 jobs (3 pending, 1 scheduled, 1 running) of task sleep"),
        "{}",
        done.stdout
    );
    fleet.start_worker(&[]);
    let ended = fleet.jobfleet(&["wait", "long-one", "--timeout", "30s"]);
    assert_eq!(ended.code, 1, "cancelled, not completed: {}", ended.stderr);
    assert_eq!(
        fleet.jobfleet(&["status", "long-one", "--json"]).json()["state"],
        "cancelled"
    );
    let mut args = vec!["wait", "--timeout", "30s"];
    args.extend(echoes.iter().map(String::as_str));
    let wait = fleet.jobfleet(&args);
    assert_eq!(wait.code, 0, "the echoes were not touched: {}", wait.stderr);

    // Purge: nothing to do now but say so; then a paused backlog goes.
    assert!(
        fleet
            .jobfleet(&["queue", "purge", "default", "--yes"])
            .stdout
            .contains("nothing to purge")
    );
    fleet.jobfleet(&["queue", "pause", "default"]);
    let backlog = fleet.submit_lines("echo", &lines(4, |i| format!("{{\"n\": {i}}}")), &[]);
    let ask = fleet.jobfleet(&["queue", "purge", "default"]);
    assert_eq!(ask.code, 3);
    assert!(
        ask.stderr.contains("Cancel the 4 waiting jobs of queue default"),
        "{}",
        ask.stderr
    );
    let purge = fleet.jobfleet(&["queue", "purge", "default", "-y"]);
    assert!(
        purge.stdout.contains("4 waiting jobs cancelled"),
        "{}",
        purge.stdout
    );
    for id in &backlog {
        let job = fleet.jobfleet(&["status", id, "--json"]).json();
        assert_eq!(
            (&job["state"], &job["error"]),
            (&"cancelled".into(), &"purged".into()),
            "{job}"
        );
    }
}

#[test]
fn a_tasks_progress_shows_in_status_and_wait_and_survives_a_sigkill() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&[]);
    let run = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 4000, "steps": 8}"#, "--key", "steps"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    fleet.until(Duration::from_secs(20), "a progress report", |f| {
        f.jobfleet(&["status", "steps", "--json"]).json()["progress"].as_f64() >= Some(0.25)
    });
    let status = fleet.jobfleet(&["status", "steps"]);
    assert!(
        status
            .stdout
            .lines()
            .any(|l| l.starts_with("progress:") && l.contains("% (step ")),
        "{}",
        status.stdout
    );
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    // A second job waited on by `submit --wait`: progress lines without a
    // terminal, then the result.
    let waited = fleet.jobfleet(&["submit", "sleep", r#"{"ms": 2000, "steps": 2}"#, "--wait"]);
    assert_eq!(waited.code, 0, "{}", waited.stderr);
    let id = waited.stdout.lines().next().unwrap().to_string();
    assert!(
        waited.stderr.contains(&format!("{id}: 50% (step 1 of 2)")),
        "{}",
        waited.stderr
    );
    let wait = fleet.jobfleet(&["wait", "steps", "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    let job = fleet.jobfleet(&["status", "steps", "--json"]).json();
    assert_eq!(
        (&job["progress"], &job["progress_message"]),
        (&1.0.into(), &"step 8 of 8".into()),
        "{job}"
    );
    assert_eq!(job["recoveries"], 1, "{job}");
}

#[test]
fn a_schedule_fires_each_tick_once_across_workers_through_a_sigkill_and_missed_ticks_fire_once() {
    let mut fleet = Fleet::new();
    let workers: Vec<usize> = (0..3).map(|_| fleet.start_worker(&[])).collect();
    let add = fleet.jobfleet(&[
        "schedule",
        "add",
        "beat",
        "echo",
        r#"{"beat": 1}"#,
        "--every",
        "1s",
    ]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    assert!(
        add.stdout
            .contains("schedule beat added on queue default: echo every 1s"),
        "{}",
        add.stdout
    );
    let schedule = |f: &Fleet| f.jobfleet(&["schedule", "list", "--json"]).json()[0].clone();
    let first = schedule(&fleet)["next_ms"].as_u64().unwrap();
    let fired_through = |f: &Fleet, tick: u64| schedule(f)["last_ms"].as_u64() >= Some(tick);
    fleet.until(Duration::from_secs(20), "three ticks", |f| {
        fired_through(f, first + 2000)
    });
    fleet.workers[workers[0]].signal("KILL");
    fleet.workers[workers[0]].wait_exit(Duration::from_secs(5));
    fleet.until(Duration::from_secs(20), "three more ticks", |f| {
        fired_through(f, first + 5000)
    });
    let pause = fleet.jobfleet(&["schedule", "pause", "beat"]);
    assert!(pause.stdout.contains("schedule beat paused"), "{}", pause.stdout);
    let last = schedule(&fleet)["last_ms"].as_u64().unwrap();

    // Each tick fired at most once, and every job the schedule submitted is
    // one of its ticks (a tick found more than an interval late counts as
    // missed and fires once for all, so on a loaded machine one may be
    // skipped; the first and the last fired).
    let ticks: Vec<String> = (first..=last)
        .step_by(1000)
        .map(|t| format!("beat@{t}"))
        .filter(|id| fleet.jobfleet(&["status", id]).code == 0)
        .collect();
    assert!(
        ticks.contains(&format!("beat@{first}")) && ticks.contains(&format!("beat@{last}")),
        "{ticks:?}"
    );
    assert!(ticks.len() >= 5, "{ticks:?}");
    let mut args = vec!["wait", "--timeout", "30s"];
    args.extend(ticks.iter().map(String::as_str));
    let wait = fleet.jobfleet(&args);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    assert_eq!(fleet.queue_stats("default")["submitted"], ticks.len() as u64);
    let listed = fleet.jobfleet(&["schedule", "list"]);
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("beat") && l.contains("paused")),
        "{}",
        listed.stdout
    );

    // Hours of ticks missed while nothing ran fire once.
    let hourly = fleet.jobfleet(&["schedule", "add", "hourly", "noop", "--every", "1h"]);
    assert_eq!(hourly.code, 0, "{}", hourly.stderr);
    for w in &workers[1..] {
        fleet.workers[*w].signal("KILL");
        fleet.workers[*w].wait_exit(Duration::from_secs(5));
    }
    let next = fleet
        .jobfleet(&["schedule", "list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hourly")
        .unwrap()["next_ms"]
        .as_u64()
        .unwrap();
    let missed = next - 5 * 3_600_000;
    let key = format!("{}:{{default}}:schedule_next", fleet.prefix);
    fleet.cmd_at(&key, &format!("ZADD {key} {missed} hourly"));
    fleet.start_worker(&[]);
    let id = format!("hourly@{missed}");
    fleet.until(Duration::from_secs(20), "the missed tick's job", |f| {
        f.jobfleet(&["status", &id]).code == 0
    });
    let wait = fleet.jobfleet(&["wait", &id, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    let hourly = fleet
        .jobfleet(&["schedule", "list", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "hourly")
        .unwrap()
        .clone();
    assert_eq!(
        hourly["next_ms"].as_u64(),
        Some(next),
        "the next tick after now: {hourly}"
    );
    assert_eq!(
        fleet.queue_stats("default")["submitted"],
        ticks.len() as u64 + 1,
        "one job for five missed ticks"
    );
}

#[test]
fn a_concurrency_limit_holds_fleet_wide_through_a_sigkill() {
    let mut fleet = Fleet::new();
    let limit = fleet.jobfleet(&["queue", "limit", "default", "--concurrency", "2"]);
    assert_eq!(limit.code, 0, "{}", limit.stderr);
    assert!(
        limit.stdout.contains("at most 2 running at once"),
        "{}",
        limit.stdout
    );
    // The victim alone first, so it surely holds jobs when it dies.
    let victim = fleet.start_worker(&["--concurrency", "4"]);
    let ids = fleet.submit_lines("sleep", &lines(8, |_| r#"{"ms": 700}"#.into()), &[]);
    let peak = std::cell::Cell::new(0u64);
    fleet.until(Duration::from_secs(20), "the victim to run jobs", |f| {
        let active = f.queue_stats("default")["active"].as_u64().unwrap_or(0);
        peak.set(peak.get().max(active));
        active > 0
    });
    fleet.start_worker(&["--concurrency", "4"]);
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    let mut args = vec!["wait", "--timeout", "60s"];
    args.extend(ids.iter().map(String::as_str));
    let waiting = fleet.spawn_jobfleet(&args, "");
    fleet.until(Duration::from_secs(60), "every job to finish", |f| {
        let q = f.queue_stats("default");
        peak.set(peak.get().max(q["active"].as_u64().unwrap_or(0)));
        q["completed"].as_u64() == Some(8)
    });
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(peak.get() <= 2, "at most 2 ran at once, saw {}", peak.get());
    assert!(fleet.queue_stats("default")["recovered"].as_u64() >= Some(1));
    let show = fleet.jobfleet(&["queue", "show", "default"]);
    assert!(
        show.stdout.contains("limits     at most 2 running at once"),
        "{}",
        show.stdout
    );
    let clear = fleet.jobfleet(&["queue", "limit", "default", "--clear"]);
    assert!(clear.stdout.contains("no limits"), "{}", clear.stdout);
}

#[test]
fn a_unique_job_stays_one_job_through_a_sigkill_and_debounce_keeps_the_latest_payload() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&[]);
    let submit = |f: &Fleet, extra: &[&str]| {
        let mut args = vec!["submit", "sleep", r#"{"ms": 3000}"#, "--unique-for", "10m"];
        args.extend_from_slice(extra);
        let run = f.jobfleet(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        (run.stdout.trim().to_string(), run.stderr)
    };
    let (id, _) = submit(&fleet, &[]);
    fleet.until(Duration::from_secs(20), "the victim to run the job", |f| {
        f.queue_stats("default")["active"].as_u64() == Some(1)
    });
    let (again, said) = submit(&fleet, &[]);
    assert_eq!(again, id);
    assert!(
        said.contains("with the same unique key is still pending or running"),
        "{said}"
    );
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    fleet.until(Duration::from_secs(20), "the job to be recovered", |f| {
        f.queue_stats("default")["recovered"].as_u64() == Some(1)
    });
    assert_eq!(submit(&fleet, &[]).0, id, "recovered: still the one job");
    assert_eq!(fleet.jobfleet(&["wait", &id, "--timeout", "30s"]).code, 0);
    let (fresh, _) = submit(&fleet, &[]);
    assert_ne!(fresh, id, "once it completed, a new job");
    assert_eq!(fleet.queue_stats("default")["submitted"], 2);

    let debounce = |n: u32| {
        let payload = format!("{{\"n\": {n}}}");
        let run = fleet.jobfleet(&[
            "submit",
            "echo",
            &payload,
            "--unique-key",
            "reindex",
            "--debounce",
            "1s",
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    let d = debounce(1);
    assert_eq!(debounce(2), d);
    assert_eq!(debounce(3), d);
    let done = fleet.jobfleet(&["wait", &d, "--timeout", "30s", "--json"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let job = fleet.jobfleet(&["status", &d, "--json"]).json();
    assert_eq!(
        job["result"],
        serde_json::json!({"n": 3}),
        "the latest payload ran, once: {job}"
    );
}

#[test]
fn a_batch_callback_runs_once_when_a_worker_is_killed_as_the_last_jobs_finish() {
    let mut fleet = Fleet::new();
    let victim = fleet.start_worker(&["--concurrency", "4"]);
    fleet.start_worker(&["--concurrency", "4"]);
    let input = lines(16, |i| format!("{{\"ms\": {}}}", 200 + (i % 4) * 100));
    let run = fleet.jobfleet_stdin(
        &["batch", "sleep", "--on-complete", "echo", r#"{"report": true}"#],
        &input,
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let id = run.stdout.trim().to_string();
    assert!(
        run.stderr
            .contains(&format!("batch {id}: 16 jobs on queue default, then echo once")),
        "{}",
        run.stderr
    );
    let status = |f: &Fleet| f.jobfleet(&["batch", "status", &id, "--json"]).json();
    fleet.until(Duration::from_secs(30), "most of the batch to complete", |f| {
        status(f)["completed"].as_u64() >= Some(10)
    });
    fleet.workers[victim].signal("KILL");
    fleet.workers[victim].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    let callback = format!("{id}:callback");
    fleet.until(Duration::from_secs(30), "the callback job", |f| {
        f.jobfleet(&["status", &callback]).code == 0
    });
    let wait = fleet.jobfleet(&["wait", &callback, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}", wait.stderr);
    let job = fleet.jobfleet(&["status", &callback, "--json"]).json();
    assert_eq!(
        job["result"],
        serde_json::json!({"batch": id, "total": 16, "completed": 16, "dead": 0, "cancelled": 0, "data": {"report": true}}),
        "{job}"
    );
    let done = status(&fleet);
    assert_eq!(
        (&done["finished"], &done["callback_id"]),
        (&true.into(), &callback.clone().into()),
        "{done}"
    );
    assert_eq!(
        fleet.queue_stats("default")["submitted"],
        17,
        "sixteen jobs, one callback"
    );
    let shown = fleet.jobfleet(&["batch", "status", &id]);
    assert!(shown.stdout.contains("finished   yes"), "{}", shown.stdout);
    let bad = fleet.jobfleet_stdin(&["batch", "echo"], "{\"ok\": 1}\nnot json\n");
    assert_eq!(bad.code, 3);
    assert!(
        bad.stderr.contains("line 2: payload is not valid JSON")
            && bad.stderr.contains("nothing was submitted"),
        "{}",
        bad.stderr
    );
    assert_eq!(fleet.queue_stats("default")["submitted"], 17);
}
