//! A steady load of producers for the fault tests: `jobfleet submit` runs
//! one after another, each batch under its own idempotency key, and a
//! ledger of what each was told.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::bin;

/// What a load of producers did: every id they were told was submitted,
/// every id they tried, and when each acknowledgement came.
#[derive(Debug, Default)]
pub struct Ledger {
    pub acknowledged: Vec<String>,
    pub attempted: Vec<String>,
    pub acked_at: Vec<Instant>,
    pub refused_runs: usize,
    /// What the first refused run said.
    pub first_refusal: Option<String>,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    ledger: Arc<Mutex<Ledger>>,
    thread: JoinHandle<()>,
}

/// Starts a producer submitting batches of 20 `record` jobs to `queue`, one
/// `jobfleet submit` per batch, each batch under its own idempotency key
/// (so the id of every job tried is known) until stopped.
pub fn start_load(url: &str, queue: &str, replicas: u32) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let (url, queue) = (url.to_string(), queue.to_string());
    let (s, l) = (stop.clone(), ledger.clone());
    let thread = std::thread::spawn(move || {
        let mut batch = 0;
        while !s.load(Ordering::SeqCst) {
            batch += 1;
            let key = format!("{queue}-{batch}");
            let input: String = (1..=20).map(|i| format!("{{\"n\": {i}, \"ms\": 5}}\n")).collect();
            let output = run_with_stdin(
                Command::new(bin("jobfleet"))
                    .args(["submit", "record", "--stdin", "-q", &queue, "--key", &key])
                    .args(["--replicas", &replicas.to_string(), "--replica-timeout", "3s"])
                    .env("JOBFLEET_REDIS", &url),
                &input,
            );
            let printed = super::ids(&String::from_utf8_lossy(&output.stdout));
            let mut ledger = l.lock().unwrap();
            ledger.attempted.extend((1..=20).map(|i| format!("{key}-{i}")));
            if !printed.is_empty() {
                ledger.acked_at.push(Instant::now());
            }
            ledger.acknowledged.extend(printed);
            if !output.status.success() {
                ledger.refused_runs += 1;
                if ledger.first_refusal.is_none() {
                    ledger.first_refusal = Some(String::from_utf8_lossy(&output.stderr).into_owned());
                }
            }
        }
    });
    Load { stop, ledger, thread }
}

impl Load {
    pub fn acked_since(&self, t: Instant) -> usize {
        self.ledger
            .lock()
            .unwrap()
            .acked_at
            .iter()
            .filter(|a| **a > t)
            .count()
    }

    pub fn finish(self) -> Ledger {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the producer thread");
        Arc::try_unwrap(self.ledger)
            .expect("one owner")
            .into_inner()
            .unwrap()
    }
}

pub fn run_with_stdin(command: &mut Command, input: &str) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobfleet");
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_string();
    std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    child.wait_with_output().expect("jobfleet")
}

/// A producer that submits `n` slow `record` jobs (keys `KEY-1`..`KEY-n`)
/// and waits for them with `--wait`, through whatever fault the test
/// brings about.
pub struct Waiter {
    child: std::process::Child,
    key: String,
    n: usize,
}

impl Waiter {
    pub fn start(fleet: &super::Fleet, queue: &str, key: &str, n: usize) -> Waiter {
        let lines: String = (1..=n).map(|i| format!("{{\"n\": {i}, \"ms\": 20}}\n")).collect();
        let child = fleet.spawn_jobfleet(
            &["submit", "record", "--stdin", "-q", queue, "--key", key, "--wait"],
            &lines,
        );
        Waiter {
            child,
            key: key.to_string(),
            n,
        }
    }

    /// The ids it submits.
    pub fn ids(&self) -> Vec<String> {
        (1..=self.n).map(|i| format!("{}-{i}", self.key)).collect()
    }

    /// Waits for it to end; it must have seen every job finish (exit 0).
    pub fn finish(self, through: &str) {
        let output = self.child.wait_with_output().expect("the waiting producer");
        assert_eq!(
            output.status.code(),
            Some(0),
            "the waiting producer saw its jobs through {through}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
