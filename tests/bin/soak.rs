//! `jobfleet-soak`: a bounded soak of the whole system. Starts a private
//! redis-server (append-only, fsync always) and chaos workers, submits a
//! steady mixed load (quick, slow, retried and failing jobs), kills a random
//! worker every so often, restarts Redis once, then drains and reports: jobs
//! submitted, completed, dead, lost (must be 0), duplicate runs, recovery
//! time after a kill, and Redis memory over time.
//!
//! Settings (environment): SOAK_SECONDS (600), SOAK_RATE jobs/s (200),
//! SOAK_WORKERS (3), SOAK_KILL_EVERY seconds (20), SOAK_KEEP_COMPLETED
//! seconds (60: completed and dead records expire after it, so memory goes
//! flat).
//! Run it through `scripts/soak.sh`. Exit status 1 if any job was lost.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jobfleet_core::{Client, ConnectOptions, EventKind, Feed, JobSpec, JobState, new_job_id};
use jobfleet_testkit::{RedisOptions, RedisServer};
use serde_json::json;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the soak has seen so far.
#[derive(Default)]
struct Ledger {
    /// Acknowledged submits not yet seen final.
    outstanding: HashSet<String>,
    finals: HashMap<JobState, u64>,
    /// Jobs expected to run exactly once (no failure injected).
    clean: HashSet<String>,
    /// pid of a killed worker -> when it was killed.
    killed: HashMap<u32, Instant>,
    recovery: Vec<Duration>,
}

impl Ledger {
    fn finish(&mut self, id: &str, state: JobState) {
        if self.outstanding.remove(id) {
            *self.finals.entry(state).or_default() += 1;
        }
    }
}

struct Workers {
    program: PathBuf,
    url: String,
    log: PathBuf,
    dir: PathBuf,
    keep_completed: u64,
    children: Vec<Child>,
    started: usize,
}

impl Workers {
    fn start(&mut self) {
        self.started += 1;
        let stderr = std::fs::File::create(self.dir.join(format!("worker-{}.log", self.started))).unwrap();
        let child = Command::new(&self.program)
            .args([
                "--queue",
                "soak",
                "--concurrency",
                "8",
                "--heartbeat",
                "200ms",
                "--dead-after",
                "2s",
            ])
            .args(["--backoff", "200ms"])
            .args(["--keep-completed", &format!("{}s", self.keep_completed)])
            .args(["--keep-dead", &format!("{}s", self.keep_completed)])
            .env("JOBFLEET_REDIS", &self.url)
            .env("CHAOS_LOG", &self.log)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start a chaos worker");
        self.children.push(child);
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::main]
async fn main() {
    let seconds = setting("SOAK_SECONDS", 600);
    let rate = setting("SOAK_RATE", 200);
    let kill_every = Duration::from_secs(setting("SOAK_KILL_EVERY", 20));
    let keep_completed = setting("SOAK_KEEP_COMPLETED", 60);
    let dir = tempfile::tempdir().expect("scratch dir");
    let mut redis = RedisServer::start_with(RedisOptions {
        aof: true,
        ..Default::default()
    });
    let here = std::env::current_exe().unwrap();
    let mut workers = Workers {
        program: here.with_file_name("jobfleet-chaos-worker"),
        url: redis.url(),
        log: dir.path().join("executions.log"),
        dir: dir.path().to_path_buf(),
        keep_completed,
        children: Vec::new(),
        started: 0,
    };
    for _ in 0..setting("SOAK_WORKERS", 3) {
        workers.start();
    }
    let options = ConnectOptions {
        retries: 10,
        ..ConnectOptions::default()
    };
    let client = Client::connect_with(&redis.url(), options)
        .await
        .expect("connect");
    let queue = client.queue("soak").expect("queue");
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut events = client.events(&["soak".to_string()]).await.expect("subscribe");
    let watcher = {
        let (ledger, queue) = (ledger.clone(), queue.clone());
        tokio::spawn(async move {
            while let Some(feed) = events.next().await {
                match feed {
                    Feed::Subscribed | Feed::Lagged => {
                        // Events published while we were cut off are lost:
                        // read the outstanding jobs' states instead.
                        let ids: Vec<String> = ledger.lock().unwrap().outstanding.iter().cloned().collect();
                        for chunk in ids.chunks(1000) {
                            if let Ok(jobs) = queue.status_many(chunk).await {
                                let mut l = ledger.lock().unwrap();
                                for job in jobs.into_iter().flatten().filter(|j| j.state.is_final()) {
                                    l.finish(&job.id, job.state);
                                }
                            }
                        }
                    }
                    Feed::Message { payload, .. } => {
                        let Ok(e) = serde_json::from_str::<jobfleet_core::Event>(&payload) else {
                            continue;
                        };
                        let mut l = ledger.lock().unwrap();
                        match e.state {
                            EventKind::Completed => l.finish(&e.id, JobState::Completed),
                            EventKind::Dead => l.finish(&e.id, JobState::Dead),
                            EventKind::Cancelled => l.finish(&e.id, JobState::Cancelled),
                            EventKind::Recovered => {
                                let pid = l
                                    .killed
                                    .keys()
                                    .copied()
                                    .find(|p| e.worker.contains(&format!("-{p}-")));
                                if let Some(pid) = pid {
                                    let at = l.killed.remove(&pid).unwrap();
                                    l.recovery.push(at.elapsed());
                                }
                            }
                            EventKind::Failed | EventKind::Progress => {}
                        }
                    }
                }
            }
        })
    };

    let memory = |client: Client| async move {
        let info: String = redis::cmd("INFO")
            .arg("memory")
            .query_async(&mut client.conn())
            .await
            .ok()?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    let mut memory_samples = vec![(0u64, memory(client.clone()).await.unwrap_or(0))];
    println!(
        "soak: {seconds}s at {rate} jobs/s, a worker killed every {}s, one Redis restart",
        kill_every.as_secs()
    );

    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let (mut next_kill, mut restarted, mut next_sample) = (kill_every, false, 30u64);
    let (mut submitted, mut n) = (0u64, 0u64);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut random = |below: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % below
    };
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let mut specs = Vec::new();
        let mut clean = Vec::new();
        for _ in 0..rate.div_ceil(10) {
            n += 1;
            let roll = random(100);
            let (ms, fail) = match roll {
                0..=59 => (random(20), None),
                60..=84 => (20 + random(180), None),
                85..=94 => (random(10), Some("retry")),
                _ => (random(10), Some("permanent")),
            };
            let id = new_job_id();
            if fail.is_none() {
                clean.push(id.clone());
            }
            specs.push(
                JobSpec::new("record", &json!({"n": n, "ms": ms, "fail": fail}))
                    .id(id)
                    .max_attempts(2),
            );
        }
        // The ids are known before the call, so they are ledgered first: a
        // job can finish (and its event arrive) before the submit returns.
        {
            let mut l = ledger.lock().unwrap();
            l.outstanding.extend(specs.iter().filter_map(|s| s.id.clone()));
            l.clean.extend(clean);
        }
        // Explicit ids also make a retried batch idempotent across the restart.
        while queue.submit_batch(&specs).await.is_err() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        submitted += specs.len() as u64;
        let elapsed = started.elapsed();
        if elapsed >= next_kill {
            next_kill += kill_every;
            let victim = random(workers.children.len() as u64) as usize;
            let mut child = workers.children.remove(victim);
            let pid = child.id();
            let _ = child.kill();
            let _ = child.wait();
            ledger.lock().unwrap().killed.insert(pid, Instant::now());
            workers.start();
            println!(
                "{:>5}s  killed worker pid {pid} with SIGKILL, started a replacement",
                elapsed.as_secs()
            );
        }
        if !restarted && elapsed >= Duration::from_secs(seconds / 2) {
            restarted = true;
            redis.kill();
            tokio::time::sleep(Duration::from_secs(2)).await;
            redis.restart();
            println!("{:>5}s  restarted Redis (down 2s)", elapsed.as_secs());
        }
        if elapsed.as_secs() >= next_sample {
            next_sample += 30;
            if let Some(m) = memory(client.clone()).await {
                memory_samples.push((elapsed.as_secs(), m));
                let out = ledger.lock().unwrap().outstanding.len();
                println!(
                    "{:>5}s  submitted {submitted}, unfinished {out}, redis memory {:.1} MiB",
                    elapsed.as_secs(),
                    m as f64 / 1048576.0
                );
            }
        }
    }
    println!("draining...");
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    while !ledger.lock().unwrap().outstanding.is_empty() && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end_memory = memory(client.clone()).await.unwrap_or(0);
    watcher.abort();

    // Anything still outstanding: read its state one last time.
    let outstanding: Vec<String> = ledger.lock().unwrap().outstanding.iter().cloned().collect();
    let mut lost = Vec::new();
    for chunk in outstanding.chunks(1000) {
        for (id, job) in chunk
            .iter()
            .zip(queue.status_many(chunk).await.unwrap_or_default())
        {
            match job {
                Some(job) if job.state.is_final() => ledger.lock().unwrap().finish(id, job.state),
                Some(job) => lost.push(format!("{id} ({}, attempts {})", job.state, job.attempts)),
                None => lost.push(format!("{id} (no record)")),
            }
        }
    }
    let log = std::fs::read_to_string(dir.path().join("executions.log")).unwrap_or_default();
    let mut runs: HashMap<&str, u32> = HashMap::new();
    for line in log.lines() {
        *runs.entry(line.split(' ').next().unwrap_or("")).or_default() += 1;
    }
    let l = ledger.lock().unwrap();
    let duplicates: u32 = l
        .clean
        .iter()
        .map(|id| runs.get(id.as_str()).copied().unwrap_or(0).saturating_sub(1))
        .sum();
    let mut recovery = l.recovery.clone();
    recovery.sort();
    let ms = |d: Option<&Duration>| {
        d.map(|d| format!("{} ms", d.as_millis()))
            .unwrap_or_else(|| "n/a".into())
    };
    println!();
    println!("jobs submitted      {submitted}");
    println!(
        "completed           {}",
        l.finals.get(&JobState::Completed).unwrap_or(&0)
    );
    println!(
        "dead                {}",
        l.finals.get(&JobState::Dead).unwrap_or(&0)
    );
    println!("lost                {}", lost.len());
    println!(
        "duplicate runs      {duplicates} (of {} jobs meant to run once)",
        l.clean.len()
    );
    println!(
        "workers killed      {}",
        workers.started - setting("SOAK_WORKERS", 3) as usize
    );
    println!(
        "recovery after kill p50 {}, max {} ({} samples; dead-after is 2s)",
        ms(recovery.get(recovery.len() / 2)),
        ms(recovery.last()),
        recovery.len()
    );
    let start_memory = memory_samples[0].1;
    println!(
        "redis memory        start {:.1} MiB, end (drained) {:.1} MiB",
        start_memory as f64 / 1048576.0,
        end_memory as f64 / 1048576.0
    );
    let samples: Vec<String> = memory_samples
        .iter()
        .map(|(s, m)| format!("{s}s:{:.1}", *m as f64 / 1048576.0))
        .collect();
    println!("memory over time    {} (MiB)", samples.join(" "));
    if !lost.is_empty() {
        println!(
            "lost, first {}: {:?}",
            lost.len().min(20),
            &lost[..lost.len().min(20)]
        );
        // exit() skips destructors: stop the workers and Redis first.
        drop(l);
        drop(workers);
        drop(redis);
        std::process::exit(1);
    }
}
