//! A timed run: spawn a command (the `jobfleet submit` CLI, fed a file of
//! payloads), poll the queue's completed counter until it has grown by
//! `--expect`, and report the timings and each named process's CPU.
//!
//! Timing lives in one process, so the start (spawn) and the end (the poll
//! that sees the last completion) are on one clock. A poll is one stats
//! script call: at the default 5 ms that is 200 calls a second, noise next
//! to the hundreds of thousands of commands a run makes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobfleet_core::Queue;
use serde_json::json;

use crate::cpu;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Completions to wait for (0: only run the command).
    #[arg(long, default_value_t = 0)]
    expect: u64,
    /// Count completions from this value of the completed counter
    /// [default: its value when the run starts].
    #[arg(long)]
    baseline: Option<u64>,
    /// Jobs the command submits (for the enqueue rate).
    #[arg(long, default_value_t = 0)]
    jobs: u64,
    /// File fed to the command's stdin.
    #[arg(long)]
    stdin_file: Option<std::path::PathBuf>,
    /// A process whose CPU time to report, as NAME=PID (repeatable).
    #[arg(long = "pid", value_parser = parse_pid)]
    pids: Vec<(String, u32)>,
    /// Poll interval, ms.
    #[arg(long, default_value_t = 5)]
    poll_ms: u64,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// The command to run (after `--`); none: just wait for completions.
    #[arg(last = true)]
    command: Vec<String>,
}

fn parse_pid(s: &str) -> Result<(String, u32), String> {
    let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
    Ok((name.to_string(), pid.parse().map_err(|e| format!("{e}"))?))
}

pub async fn run(queue: &Queue, args: Args) -> anyhow::Result<serde_json::Value> {
    let baseline = match args.baseline {
        Some(b) => b,
        None => queue.stats().await?.completed,
    };
    let cpu_before: Vec<Option<Duration>> = args.pids.iter().map(|(_, p)| cpu::used(*p, false)).collect();
    let children_before = cpu::used(std::process::id(), true).unwrap_or_default();
    let start = Instant::now();
    let mut child = match args.command.split_first() {
        Some((program, rest)) => {
            let stdin = match &args.stdin_file {
                Some(path) => Stdio::from(
                    std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
                ),
                None => Stdio::null(),
            };
            Some(
                std::process::Command::new(program)
                    .args(rest)
                    .stdin(stdin)
                    .stdout(Stdio::null())
                    .spawn()
                    .with_context(|| format!("starting {program}"))?,
            )
        }
        None => None,
    };
    let mut command_done: Option<Duration> = None;
    let mut first: Option<(Duration, u64)> = None;
    // When the completions crossed each tenth of `expect`.
    let mut tenths: Vec<Duration> = Vec::new();
    let deadline = start + Duration::from_secs(args.timeout);
    let mut done = 0;
    loop {
        if let Some(c) = child.as_mut()
            && command_done.is_none()
            && let Some(status) = c.try_wait()?
        {
            command_done = Some(start.elapsed());
            if !status.success() {
                bail!("the command failed: {status}");
            }
        }
        if args.expect > 0 {
            done = queue.stats().await?.completed.saturating_sub(baseline);
            let now = start.elapsed();
            if done > 0 && first.is_none() {
                first = Some((now, done));
            }
            while (tenths.len() as u64) < 10 && done * 10 >= args.expect * (tenths.len() as u64 + 1) {
                tenths.push(now);
            }
        }
        let finished = done >= args.expect && (child.is_none() || command_done.is_some());
        if finished {
            break;
        }
        if Instant::now() > deadline {
            if let Some(c) = child.as_mut() {
                let _ = c.kill();
            }
            bail!(
                "timed out after {}s with {done} of {} completions",
                args.timeout,
                args.expect
            );
        }
        tokio::time::sleep(Duration::from_millis(args.poll_ms)).await;
    }
    let wall = start.elapsed();
    let secs = |d: Duration| (d.as_secs_f64() * 1e4).round() / 1e4;
    let rate = |n: u64, d: Duration| (n as f64 / d.as_secs_f64().max(1e-9)).round();
    let mut cpu = serde_json::Map::new();
    for ((name, pid), before) in args.pids.iter().zip(cpu_before) {
        if let (Some(b), Some(a)) = (before, cpu::used(*pid, false)) {
            let used = a.saturating_sub(b);
            cpu.insert(
                name.clone(),
                json!({"cpu_s": secs(used), "util": (used.as_secs_f64() / wall.as_secs_f64() * 100.0).round() / 100.0}),
            );
        }
    }
    if let Some(d) = command_done {
        let used = cpu::used(std::process::id(), true)
            .unwrap_or_default()
            .saturating_sub(children_before);
        cpu.insert(
            "command".into(),
            json!({"cpu_s": secs(used), "util": (used.as_secs_f64() / d.as_secs_f64() * 100.0).round() / 100.0}),
        );
    }
    let mut report = json!({ "wall_s": secs(wall), "cpu": cpu });
    if let Some(d) = command_done {
        report["command_s"] = json!(secs(d));
        if args.jobs > 0 {
            report["enqueue_per_s"] = json!(rate(args.jobs, d));
        }
    }
    if args.expect > 0 {
        report["completed"] = json!(done);
        report["e2e_per_s"] = json!(rate(args.expect, wall));
        if let Some((t, n)) = first {
            report["first_completion_s"] = json!(secs(t));
            report["steady_per_s"] = json!(rate(args.expect - n, wall.saturating_sub(t)));
        }
        // Rate within each tenth of the run: flat when throughput does not
        // depend on how much is left in the backlog.
        let per_tenth: Vec<f64> = tenths
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, t)| rate(args.expect / 10, t.saturating_sub(tenths[i - 1])))
            .collect();
        report["per_tenth_per_s"] = json!(per_tenth);
    }
    eprintln!("run: {report}");
    Ok(report)
}
