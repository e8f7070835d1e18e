//! Fault injection: the real binaries, a real redis-server, and the faults
//! a fleet meets in production. Every test ends with the total-queue check
//! ([`util::Verdict`]): nothing acknowledged is lost.

mod util;

use std::time::{Duration, Instant};

use jobfleet_testkit::{Proxy, RedisOptions, RedisServer};
use util::{Fleet, Verdict, bin};

fn record_jobs(n: usize, ms: impl Fn(usize) -> usize) -> String {
    (0..n)
        .map(|i| format!("{{\"n\": {i}, \"ms\": {}}}\n", ms(i)))
        .collect()
}

/// A small deterministic pseudo-random sequence (no clock, no extra crate).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % below as u64) as usize
    }
}

#[test]
fn sigkill_of_random_workers_every_second_loses_nothing() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    let flags = ["--concurrency", "8"];
    for _ in 0..3 {
        fleet.start(&worker, &flags);
    }
    let ids = fleet.submit_lines("record", &record_jobs(5000, |i| 2 + i % 8), &[]);
    assert_eq!(ids.len(), 5000);

    let mut rng = Lcg(42);
    let mut kills = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let q = fleet.queue_stats("default");
        if q["completed"].as_u64().unwrap_or(0) + q["dead"].as_u64().unwrap_or(0) >= 5000 {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish: {q}");
        let alive: Vec<usize> = (0..fleet.workers.len())
            .filter(|&i| fleet.workers[i].child.is_some())
            .collect();
        let victim = alive[rng.next(alive.len())];
        fleet.workers[victim].signal("KILL");
        fleet.workers[victim].wait_exit(Duration::from_secs(5));
        kills += 1;
        fleet.start(&worker, &flags);
        // The fault cadence itself: roughly one kill a second.
        std::thread::sleep(Duration::from_millis(700 + rng.next(600) as u64));
    }
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(60));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 5000, "{verdict:?}");
    eprintln!("{kills} workers killed; {} duplicate runs", verdict.duplicates);
    assert!(kills >= 1);
}

#[test]
fn a_stopped_worker_is_recovered_and_its_late_acks_are_refused() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    let frozen = fleet.start(&worker, &["--concurrency", "4"]);
    let ids = fleet.submit_lines("record", &record_jobs(4, |_| 1500), &[]);
    fleet.until(Duration::from_secs(10), "the frozen worker to hold jobs", |f| {
        f.queue_stats("default")["active"].as_u64() == Some(4)
    });
    fleet.workers[frozen].signal("STOP");
    fleet.start(&worker, &["--concurrency", "4"]);
    fleet.until(
        Duration::from_secs(20),
        "the stopped worker's jobs to be recovered",
        |f| f.queue_stats("default")["recovered"].as_u64() == Some(4),
    );
    fleet.workers[frozen].signal("CONT");

    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(30));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 4);
    fleet.until(
        Duration::from_secs(10),
        "the late acks to be refused and logged",
        |f| f.workers[frozen].log().matches("outcome refused").count() == 4,
    );
    let log = fleet.workers[frozen].log();
    assert!(log.contains("declared dead"), "{log}");
    assert_eq!(
        fleet.queue_stats("default")["completed"],
        4,
        "late acks were not applied"
    );
}

#[test]
fn a_worker_partitioned_longer_than_dead_after_has_its_jobs_run_elsewhere_and_its_late_acks_refused() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    // The cut-off worker reaches Redis only through a proxy the test owns.
    let proxy = Proxy::start(fleet.redis().port());
    let proxy_url = proxy.url();
    let cut = fleet.start(&worker, &["--concurrency", "4", "--redis", &proxy_url]);
    let ids = fleet.submit_lines("record", &record_jobs(4, |_| 1500), &[]);
    fleet.until(
        Duration::from_secs(10),
        "the worker behind the proxy to hold jobs",
        |f| f.queue_stats("default")["active"].as_u64() == Some(4),
    );
    proxy.partition();
    fleet.start(&worker, &["--concurrency", "4"]);
    fleet.until(
        Duration::from_secs(20),
        "the cut-off worker's jobs to be recovered (dead-after is 1s)",
        |f| f.queue_stats("default")["recovered"].as_u64() == Some(4),
    );
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(30));
    assert_eq!(
        verdict.completed, 4,
        "the jobs ran elsewhere while it was cut off"
    );
    // Its jobs finish meanwhile; their acks wait in the network until the heal.
    std::thread::sleep(Duration::from_millis(1600));
    proxy.heal();
    fleet.until(
        Duration::from_secs(20),
        "the late acks to be refused and logged",
        |f| f.workers[cut].log().matches("outcome refused").count() >= 4,
    );
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(30));
    verdict.assert_sound();
    // Both ran each job to its end (the fence cannot stop a task already
    // running, only its outcome): 4 duplicates, none of them applied.
    assert_eq!(verdict.duplicates, 4, "{verdict:?}");
    let q = fleet.queue_stats("default");
    assert_eq!(
        (q["completed"].as_u64(), q["active"].as_u64()),
        (Some(4), Some(0)),
        "{q}"
    );
    // The healed worker carries on under a fresh id.
    let more = fleet.submit_lines("record", &record_jobs(8, |_| 5), &[]);
    assert_eq!(
        Verdict::check(&fleet, &more, Duration::from_secs(30)).completed,
        8
    );
    let log = fleet.workers[cut].log();
    assert!(log.contains("declared dead"), "{log}");
}

#[test]
fn a_producer_partitioned_mid_batch_fails_clearly_and_a_resubmit_with_its_key_runs_each_job_once() {
    let mut fleet = Fleet::new();
    fleet.start_chaos_worker(&["--concurrency", "8"]);
    let proxy = Proxy::start(fleet.redis().port());
    let lines = record_jobs(20_000, |_| 0);
    // Half the batch now; the rest only once the cut is made, so the cut
    // always lands mid-batch.
    let (first_half, second_half) = lines.split_at(lines.len() / 2);
    let (first_half, second_half) = (first_half.to_string(), second_half.to_string());
    let (cut_made, wait_for_cut) = std::sync::mpsc::channel::<()>();
    // Submitting through the proxy; cut once the first ids are printed.
    let mut producer = std::process::Command::new(bin("jobfleet"))
        .args([
            "--redis",
            &proxy.url(),
            "submit",
            "record",
            "--stdin",
            "--key",
            "batch",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn jobfleet");
    let mut stdin = producer.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let _ = stdin.write_all(first_half.as_bytes());
        let _ = wait_for_cut.recv();
        let _ = stdin.write_all(second_half.as_bytes());
    });
    let mut stdout = std::io::BufReader::new(producer.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).expect("the first id");
    proxy.partition();
    let _ = cut_made.send(());
    let started = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("the rest of stdout");
    let status = producer.wait().expect("the producer exits");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut producer.stderr.take().unwrap(), &mut stderr).unwrap();
    let _ = writer.join();
    assert_eq!(status.code(), Some(3), "a cut-off producer fails: {stderr}");
    assert!(stderr.contains("error:"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "it gave up within its timeout"
    );
    let acknowledged: Vec<String> = util::ids(&format!("{first}{rest}"));
    assert!(
        !acknowledged.is_empty() && acknowledged.len() < 20_000,
        "{}",
        acknowledged.len()
    );
    proxy.heal();

    // Resubmitting the whole batch with the same key is safe.
    let again = fleet.submit_lines("record", &record_jobs(20_000, |_| 0), &["--key", "batch"]);
    assert_eq!(again.len(), 20_000);
    let verdict = Verdict::check(&fleet, &again, Duration::from_secs(120));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 20_000);
    assert_eq!(verdict.duplicates, 0, "each job ran once: {verdict:?}");
    for id in &acknowledged {
        assert!(
            again.contains(id),
            "an acknowledged id is part of the batch: {id}"
        );
    }
}

/// Runs 1,500 jobs through a Redis that goes away for `outage` mid-run
/// (SIGKILL, then a restart from its append-only file).
fn redis_outage(outage: Duration) -> (Fleet, Vec<String>) {
    let redis = RedisServer::start_with(RedisOptions {
        aof: true,
        ..Default::default()
    });
    let mut fleet = Fleet::with_redis(redis);
    for _ in 0..2 {
        fleet.start_chaos_worker(&["--concurrency", "8", "--dead-after", "3s"]);
    }
    let ids = fleet.submit_lines("record", &record_jobs(1500, |_| 5), &[]);
    let mut args = vec!["wait", "--timeout", "120s"];
    args.extend(ids.iter().map(String::as_str));
    let waiter = fleet.spawn_jobfleet(&args, "");
    fleet.until(Duration::from_secs(30), "some jobs to complete", |f| {
        f.queue_stats("default")["completed"].as_u64() >= Some(100)
    });
    fleet.redis_mut().kill();
    std::thread::sleep(outage);
    fleet.redis_mut().restart();
    let output = waiter.wait_with_output().expect("waiting producer");
    assert_eq!(
        output.status.code(),
        Some(0),
        "the waiting producer reconnected and saw every job complete: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (fleet, ids)
}

#[test]
fn a_redis_restart_with_appendfsync_always_loses_no_acknowledged_submit() {
    let (fleet, ids) = redis_outage(Duration::from_millis(500));
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(30));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 1500);
}

#[test]
fn redis_gone_for_ten_seconds_workers_back_off_log_once_and_resume() {
    let (fleet, ids) = redis_outage(Duration::from_secs(10));
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(30));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 1500);
    for worker in &fleet.workers {
        let log = worker.log();
        for what in ["claim", "heartbeat", "recover", "promote"] {
            let warnings = log.matches(&format!("{what}: redis unavailable")).count();
            assert!(
                warnings <= 1,
                "{what} warned {warnings} times for one outage:\n{log}"
            );
        }
        assert!(log.contains("redis unavailable"), "the outage was logged:\n{log}");
        assert!(
            log.contains("redis reachable again"),
            "the recovery was logged:\n{log}"
        );
    }
}

#[test]
fn sigterm_to_every_worker_under_load_then_new_workers_lose_nothing() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    for _ in 0..3 {
        fleet.start(&worker, &["--concurrency", "8", "--grace", "2s"]);
    }
    let ids = fleet.submit_lines("record", &record_jobs(1200, |_| 50), &[]);
    fleet.until(Duration::from_secs(30), "the run to be under way", |f| {
        f.queue_stats("default")["completed"].as_u64() >= Some(100)
    });
    for w in &fleet.workers {
        w.signal("TERM");
    }
    for w in &mut fleet.workers {
        assert_eq!(w.wait_exit(Duration::from_secs(15)), Some(0), "log:\n{}", w.log());
    }
    for _ in 0..2 {
        fleet.start(&worker, &["--concurrency", "8"]);
    }
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(60));
    verdict.assert_sound();
    assert_eq!(verdict.completed, 1200);
    let q = fleet.queue_stats("default");
    assert_eq!(q["recovered"], 0, "work was handed back, not recovered: {q}");
}

#[test]
fn panics_hangs_and_poison_pills_end_dead_and_the_fleet_keeps_serving() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    let flags = ["--concurrency", "4", "--backoff", "20ms"];
    fleet.start(&worker, &flags);
    fleet.start(&worker, &flags);
    let submit = |fleet: &Fleet, task: &str, extra: &[&str]| {
        let mut args = vec!["submit", task];
        args.extend_from_slice(extra);
        let run = fleet.jobfleet(&args);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    let panics = submit(&fleet, "panic", &["--max-attempts", "2"]);
    let hangs = submit(&fleet, "hang", &["--max-attempts", "2", "--timeout", "300ms"]);
    // Let those end first: the pill takes down whatever runs beside it.
    let states = fleet.final_states(&[panics.clone(), hangs.clone()], Duration::from_secs(30));
    assert_eq!(
        states[&panics]["error"],
        "task panicked: this handler always panics"
    );
    assert_eq!(states[&hangs]["error"], "timed out after 300ms");
    let pill = submit(&fleet, "crash", &["--max-attempts", "10"]);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = fleet.jobfleet(&["status", &pill, "--json"]).json();
        if state["state"] == "dead" {
            break;
        }
        assert!(Instant::now() < deadline, "the poison pill never died: {state}");
        fleet.replace_exited(&worker, &flags);
        std::thread::sleep(Duration::from_millis(50));
    }
    fleet.replace_exited(&worker, &flags);
    let states = fleet.final_states(
        &[panics.clone(), hangs.clone(), pill.clone()],
        Duration::from_secs(30),
    );
    let pill_error = states[&pill]["error"].as_str().unwrap();
    assert!(pill_error.contains("poison-pill cap"), "{pill_error}");
    for id in [&panics, &hangs, &pill] {
        assert_eq!(states[id]["state"], "dead");
    }
    let after = submit(&fleet, "echo", &[r#"{"still": "serving"}"#]);
    assert_eq!(fleet.jobfleet(&["wait", &after, "--timeout", "30s"]).code, 0);
}

#[test]
fn bad_input_gets_a_clear_error_a_final_state_and_the_worker_keeps_serving() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&[]);
    let submit = |task: &str, payload: &str| {
        let run = fleet.jobfleet(&["submit", task, payload]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        run.stdout.trim().to_string()
    };
    let unknown = submit("no-such-task", "{}");
    let wrong_shape = submit("sleep", r#"{"seconds": 1}"#);
    // Records written by hand, as a producer in another language might.
    fleet
        .redis()
        .cmd("HSET jobfleet:{default}:job:by-hand task echo payload notjson state pending");
    fleet
        .redis()
        .cmd("HSET jobfleet:{default}:job:no-task state pending");
    fleet
        .redis()
        .cmd("LPUSH jobfleet:{default}:pending by-hand no-task");
    fleet.redis().cmd("SADD jobfleet:queues default");
    fleet.redis().cmd("PUBLISH jobfleet:{default}:notify 2");
    let ok = submit("echo", r#"{"fine": true}"#);

    let ids = [
        wrong_shape.clone(),
        "by-hand".into(),
        "no-task".into(),
        ok.clone(),
    ];
    let states = fleet.final_states(&ids, Duration::from_secs(30));
    let error = |id: &str| states[id]["error"].as_str().unwrap_or_default().to_string();
    // A task no worker runs is not claimed (nor buried): it waits, and
    // `stats` says why.
    let waiting = fleet.jobfleet(&["status", &unknown, "--json"]).json();
    assert_eq!(
        (&waiting["state"], &waiting["attempts"]),
        (&"pending".into(), &0.into()),
        "{waiting}"
    );
    let stats = fleet.jobfleet(&["stats"]);
    assert!(
        stats
            .stdout
            .contains("warning: no live worker runs task no-such-task on queue default: 1 job waits for one"),
        "{}",
        stats.stdout
    );
    assert!(error(&wrong_shape).contains("payload does not fit task 'sleep': unknown field `seconds`"));
    assert!(
        error("by-hand").starts_with("payload is not valid JSON"),
        "{}",
        error("by-hand")
    );
    assert_eq!(error("no-task"), "job record has no task name");
    for id in &ids[..3] {
        assert_eq!(states[id]["state"], "dead", "{id}");
    }
    assert_eq!(states[&ok]["state"], "completed");

    // A worker refuses a queue name that would break the key schema.
    let bad = std::process::Command::new(bin("jobfleet-worker"))
        .args(["--queue", "bad{queue}", "--redis", &fleet.url.clone()])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid queue name \"bad{queue}\""));
    // A URL that cannot work fails at once.
    let bad_url = std::process::Command::new(bin("jobfleet-worker"))
        .args(["--redis", "redis+sentinel://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(bad_url.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_url.stderr).contains("no master name"));
}

#[test]
fn a_worker_started_before_its_redis_waits_for_it_then_serves() {
    // A Redis that is down when the worker starts (its port known).
    let mut redis = RedisServer::start();
    redis.kill();
    let fleet = Fleet::with_url(redis.url());
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut worker = std::process::Command::new(bin("jobfleet-worker"))
        .args(["--heartbeat", "100ms", "--dead-after", "1s", "--poll", "200ms"])
        .env("JOBFLEET_REDIS", redis.url())
        .env("RUST_LOG", "info")
        .stderr(log.reopen().unwrap())
        .spawn()
        .unwrap();
    let read_log = || std::fs::read_to_string(log.path()).unwrap_or_default();
    fleet.until(Duration::from_secs(10), "the worker to say it waits", |_| {
        read_log().contains("redis unreachable at start-up; waiting for it")
    });
    assert!(
        worker.try_wait().unwrap().is_none(),
        "it waits instead of exiting: {}",
        read_log()
    );
    redis.restart();
    fleet.until(
        Duration::from_secs(20),
        "the worker to start once Redis is up",
        |_| read_log().contains("redis reachable; starting"),
    );
    let ids = fleet.submit_lines("echo", "{\"n\": 1}\n", &[]);
    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(20));
    assert_eq!(verdict.completed, 1, "{}", read_log());
    assert_eq!(
        read_log().matches("redis unreachable at start-up").count(),
        1,
        "logged once"
    );
    // And a worker waiting for Redis stops at once on SIGTERM.
    redis.kill();
    let second_log = tempfile::NamedTempFile::new().unwrap();
    let mut waiting = std::process::Command::new(bin("jobfleet-worker"))
        .env("JOBFLEET_REDIS", redis.url())
        .env("RUST_LOG", "info")
        .stderr(second_log.reopen().unwrap())
        .spawn()
        .unwrap();
    fleet.until(
        Duration::from_secs(10),
        "the second worker to say it waits",
        |_| {
            std::fs::read_to_string(second_log.path())
                .unwrap_or_default()
                .contains("waiting for it")
        },
    );
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &waiting.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = waiting.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "a waiting worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
    let _ = worker.kill();
    let _ = worker.wait();
}

#[test]
fn jobs_cancelled_while_pending_never_run_through_a_sigkill_and_a_new_worker() {
    let mut fleet = Fleet::new();
    let worker = bin("jobfleet-chaos-worker");
    let first = fleet.start(&worker, &["--concurrency", "4"]);
    assert!(
        fleet.workers[first].log().contains("appendonly no"),
        "the worker warns that this Redis loses jobs on a restart:\n{}",
        fleet.workers[first].log()
    );
    let ids = fleet.submit_lines("record", &record_jobs(200, |_| 20), &[]);
    // The newest 50 still wait behind ~1 s of work: cancel them in place.
    let mut args = vec!["cancel"];
    args.extend(ids[150..].iter().map(String::as_str));
    let cancel = fleet.jobfleet(&args);
    assert_eq!(cancel.code, 0, "{}", cancel.stderr);
    assert_eq!(
        cancel.stdout.matches(" cancelled\n").count(),
        50,
        "{}",
        cancel.stdout
    );
    fleet.until(
        Duration::from_secs(10),
        "the first worker to run some jobs",
        |f| f.queue_stats("default")["completed"].as_u64().unwrap_or(0) >= 20,
    );
    fleet.workers[first].signal("KILL");
    fleet.workers[first].wait_exit(Duration::from_secs(5));
    fleet.start(&worker, &["--concurrency", "4"]);

    let verdict = Verdict::check(&fleet, &ids, Duration::from_secs(60));
    verdict.assert_sound();
    assert_eq!((verdict.completed, verdict.cancelled), (150, 50), "{verdict:?}");
    let runs = fleet.executions();
    let ran: Vec<&String> = ids[150..].iter().filter(|id| runs.contains_key(*id)).collect();
    assert!(ran.is_empty(), "cancelled jobs ran: {ran:?}");
    assert_eq!(fleet.queue_stats("default")["pending"].as_u64(), Some(0));
}
