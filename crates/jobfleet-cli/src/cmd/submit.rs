//! `jobfleet submit`: one job from the command line, or one job per line of
//! stdin, streamed in batches (bounded memory, a few batches in flight).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobfleet_core::{JobSpec, Queue, Submitted};
use tokio::io::AsyncBufReadExt;

use crate::Outcome;
use crate::cmd::batches::Batches;
use crate::cmd::track;
use crate::connect::Target;
use crate::output::StdoutError;

/// Jobs per submit call when reading stdin.
const BATCH: usize = 1000;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Task name (built in: noop, echo, sleep, fail, thumbnail).
    task: String,
    /// JSON payload, e.g. '{"ms": 50}' [default: {}].
    #[arg(conflicts_with = "stdin")]
    payload: Option<String>,
    /// Queue to submit to.
    #[arg(long, short = 'q', default_value = "default")]
    queue: String,
    /// Read one JSON payload per line from stdin and submit them in batches.
    #[arg(long)]
    stdin: bool,
    /// Run no earlier than this from now (e.g. 10s, 5m).
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    delay: Option<Duration>,
    /// Run no earlier than this time, RFC 3339 in UTC (e.g. 2026-12-24T08:00:00Z),
    /// on Redis' clock; a time already past runs at once.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    at: Option<std::time::SystemTime>,
    /// Attempts before the job is dead.
    #[arg(long, default_value_t = jobfleet_core::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,
    /// The job's timeout: the longest one attempt may run before it fails (not
    /// how long --wait waits: that is --wait-timeout).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Idempotency key used as the job id: submitting it again returns the
    /// same job, for as long as its record is kept (while it waits or runs,
    /// then the workers' --keep-completed, 1 h by default, or --keep-dead;
    /// at least --key-ttl when given); after that the key makes a new job.
    /// With --stdin, line N gets KEY-N.
    #[arg(long)]
    key: Option<String>,
    /// Keep the finished record, and so the --key, at least this long (e.g.
    /// 24h) even when the workers' --keep-completed is shorter.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    key_ttl: Option<Duration>,
    /// Unique: while a job of the same task and payload (or --unique-key) is
    /// pending, scheduled or running, print its id instead of submitting
    /// another. The lock holds at most this long (e.g. 10m).
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
    unique_for: Option<Duration>,
    /// The unique key, instead of the task and payload (implies unique, for a
    /// day unless --unique-for).
    #[arg(long, value_name = "KEY")]
    unique_key: Option<String>,
    /// Debounce: the job runs this long after the last submit of its unique
    /// key; a submit while it still waits replaces its payload and restarts
    /// the wait (the latest payload wins). Implies unique.
    #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION", conflicts_with_all = ["delay", "at"], requires = "unique_key")]
    debounce: Option<Duration>,
    /// W3C trace context (00-<trace id>-<span id>-<flags>) stored on the job:
    /// the worker's span for it joins that trace.
    #[arg(long, env = "TRACEPARENT", value_name = "TRACEPARENT")]
    traceparent: Option<String>,
    /// Wait for every job to finish; exit 1 if any failed, died or was cancelled.
    /// One job's result is printed when it completes.
    #[arg(long)]
    wait: bool,
    /// With --wait: stop waiting after this long (exit 2); the jobs keep
    /// running. Not the job's own --timeout.
    #[arg(long, requires = "wait", value_parser = humantime::parse_duration)]
    wait_timeout: Option<Duration>,
    /// Machine-readable output: one JSON object per line.
    #[arg(long)]
    json: bool,
}

pub async fn run(target: &Target, mut args: Args) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    if let Some(at) = args.at {
        // Job times are on Redis' clock: the delay is measured against it.
        let at_ms = at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let now_ms = client.redis_time_ms().await?;
        if at_ms <= now_ms {
            eprintln!(
                "note: {} is already past on Redis' clock; the job runs at once",
                humantime::format_rfc3339_seconds(at)
            );
        }
        args.delay = Some(Duration::from_millis(at_ms.saturating_sub(now_ms)));
    }
    let queue = client.queue(&args.queue)?;
    let mut events = track::subscribe_if(&client, &args.queue, args.wait).await?;
    let started = Instant::now();
    let mut out = Printer {
        json: args.json,
        silent: args.json && args.wait,
        queue: args.queue.clone(),
        stdout: std::io::BufWriter::new(std::io::stdout()),
        ids: Vec::new(),
        keep_ids: args.wait,
    };
    if args.stdin {
        submit_stdin(&queue, &args, &mut out).await?;
    } else {
        let payload = args.payload.clone().unwrap_or_else(|| "{}".into());
        check_json(&payload).map_err(|e| {
            anyhow::anyhow!("payload is not valid JSON: {e}; pass a JSON document such as '{{\"n\": 1}}'")
        })?;
        let spec = spec(&args, payload, args.key.clone());
        let unique = spec.unique.is_some();
        let submitted = queue.submit(spec).await?;
        if !submitted.created && args.debounce.is_some() {
            eprintln!(
                "job {} was still waiting: its payload is replaced and it runs {} from now (debounce)",
                submitted.id,
                humantime::format_duration(args.debounce.unwrap_or_default())
            );
        } else if !submitted.created && unique && args.key.as_deref() != Some(submitted.id.as_str()) {
            eprintln!(
                "job {} with the same unique key is still pending or running: not submitted again",
                submitted.id
            );
        } else if !submitted.created {
            eprintln!(
                "job {} already exists: not submitted again (idempotency key)",
                submitted.id
            );
        }
        out.print(&[submitted])?;
    }
    out.stdout.flush().map_err(StdoutError)?;
    match events.as_mut() {
        None => Ok(Outcome::Success),
        Some(events) => {
            let jobs: Vec<(String, String)> = out
                .ids
                .iter()
                .map(|id| (args.queue.clone(), id.clone()))
                .collect();
            let report = track::Report {
                json: args.json,
                noun: "jobs",
                labels: None,
                wait_timeout: args.wait_timeout,
                print_result: !args.stdin && jobs.len() == 1,
                task: &args.task,
            };
            track::wait(&client, events, &jobs, started, report).await
        }
    }
}

fn spec(args: &Args, payload: String, key: Option<String>) -> JobSpec {
    let mut spec = JobSpec::with_json_text(&args.task, payload)
        .max_attempts(args.max_attempts)
        .timeout(args.timeout)
        .delay(args.delay.unwrap_or_default());
    spec.id = key;
    spec.key_ttl = args.key_ttl;
    spec.traceparent = args.traceparent.clone();
    if let Some(lock_for) = args.unique_for {
        spec = spec.unique_for(lock_for);
    }
    if let Some(key) = &args.unique_key {
        spec = spec.unique_key(key);
    }
    if let Some(window) = args.debounce {
        spec = spec.debounce(window);
    }
    spec
}

fn check_json(text: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map(|_| ())
}

async fn submit_stdin(queue: &Queue, args: &Args, out: &mut Printer) -> anyhow::Result<()> {
    let limit = queue.client().policy().max_payload_bytes;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut batches = Batches::new(queue);
    let mut batch = Vec::with_capacity(BATCH);
    let (mut line_no, mut submitted) = (0usize, 0usize);
    let mut bad_line = None;
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        line_no += 1;
        let payload = line.trim();
        if payload.is_empty() {
            continue;
        }
        if payload.len() > limit {
            bad_line = Some(format!(
                "line {line_no}: payload is {} bytes, over the {limit} byte limit",
                payload.len()
            ));
            break;
        }
        if let Err(e) = check_json(payload) {
            bad_line = Some(format!("line {line_no}: payload is not valid JSON: {e}"));
            break;
        }
        let key = args.key.as_ref().map(|k| format!("{k}-{line_no}"));
        batch.push(spec(args, payload.to_string(), key));
        if batch.len() == BATCH {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            submitted += out.print(&batches.send(full).await?)?;
        }
    }
    if !batch.is_empty() {
        submitted += out.print(&batches.send(batch).await?)?;
    }
    while !batches.is_empty() {
        submitted += out.print(&batches.next().await?)?;
    }
    out.stdout.flush().map_err(StdoutError)?;
    if let Some(problem) = bad_line {
        bail!(
            "{problem}; {submitted} jobs before it were submitted (their ids are printed above), \
             nothing from that line on; fix the line and submit the rest"
        );
    }
    if submitted == 0 {
        bail!(
            "stdin had no payloads: give one JSON payload per line, e.g. echo '{{\"n\": 1}}' | jobfleet submit echo --stdin"
        );
    }
    Ok(())
}

/// Prints submitted ids as they come (and keeps them when waiting).
struct Printer {
    json: bool,
    /// With --wait --json the final records carry the ids; print nothing now.
    silent: bool,
    queue: String,
    stdout: std::io::BufWriter<std::io::Stdout>,
    ids: Vec<String>,
    keep_ids: bool,
}

impl Printer {
    fn print(&mut self, submitted: &[Submitted]) -> anyhow::Result<usize> {
        for s in submitted {
            if self.silent {
            } else if self.json {
                let line = serde_json::json!({"id": s.id, "queue": self.queue, "created": s.created});
                writeln!(self.stdout, "{line}").map_err(StdoutError)?;
            } else {
                writeln!(self.stdout, "{}", s.id).map_err(StdoutError)?;
            }
            if self.keep_ids {
                self.ids.push(s.id.clone());
            }
        }
        Ok(submitted.len())
    }
}
