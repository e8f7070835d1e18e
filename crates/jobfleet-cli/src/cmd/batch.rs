//! `jobfleet batch TASK --on-complete CALLBACK [PAYLOAD] < payloads` and
//! `jobfleet batch status ID`: jobs whose callback runs once, when the last
//! of them is final.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use jobfleet_core::JobSpec;
use tokio::io::AsyncBufReadExt;

use crate::Outcome;
use crate::connect::Target;
use crate::output::outln;

/// Jobs per submit call.
const CHUNK: usize = 1000;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// The task of the batch's jobs; stdin has one JSON payload per line, as for
    /// `submit --stdin`.
    #[arg(required = true)]
    task: Option<String>,
    /// The callback: a job of TASK submitted once every job of the batch is final
    /// (completed, dead or cancelled), with payload {"batch", "total", "completed", "dead",
    /// "cancelled", "data": PAYLOAD}. Its id is BATCH_ID:callback.
    #[arg(long, num_args = 1..=2, value_names = ["TASK", "PAYLOAD"])]
    on_complete: Vec<String>,
    /// Queue to submit to.
    #[arg(long, short = 'q', default_value = "default")]
    queue: String,
    /// Attempts of each job (and of the callback).
    #[arg(long, default_value_t = jobfleet_core::DEFAULT_MAX_ATTEMPTS)]
    max_attempts: u32,
    /// Each job's timeout (and the callback's).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Show a batch: its total, how many of its jobs completed, died or were cancelled, and its
    /// callback job.
    Status {
        /// The batch id (printed by `jobfleet batch`).
        id: String,
        /// Its queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
        /// JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    if let Some(Action::Status { id, queue, json }) = args.action {
        let client = target.connect().await?;
        let Some(status) = client.queue(&queue)?.batch_status(&id).await? else {
            bail!("no batch {id} in queue {queue} (batches are kept 7 days after they finish)");
        };
        if json {
            outln!("{}", serde_json::to_string_pretty(&status)?)?;
        } else {
            let total = status.total.map_or("still being added".into(), |t| t.to_string());
            outln!("batch {id} (queue {queue})")?;
            outln!("  total      {total}")?;
            outln!("  completed  {}", status.completed)?;
            outln!("  dead       {}", status.dead)?;
            outln!("  cancelled  {}", status.cancelled)?;
            outln!("  finished   {}", if status.finished { "yes" } else { "no" })?;
            if let Some(cb) = &status.callback_id {
                outln!("  callback   {cb}")?;
            }
        }
        return Ok(Outcome::Success);
    }
    let task = args.task.clone().unwrap_or_default();
    let spec = |payload: String| {
        JobSpec::with_json_text(&task, payload)
            .max_attempts(args.max_attempts)
            .timeout(args.timeout)
    };
    // Every line is checked before anything is submitted: a batch is all or nothing.
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut specs = Vec::new();
    let mut line_no = 0;
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        line_no += 1;
        let payload = line.trim();
        if payload.is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(payload) {
            bail!("line {line_no}: payload is not valid JSON: {e}; nothing was submitted");
        }
        specs.push(spec(payload.to_string()));
    }
    if specs.is_empty() {
        bail!(
            "stdin had no payloads: give one JSON payload per line, e.g. seq 3 | sed 's/.*/{{\"n\": &}}/' | jobfleet batch echo"
        );
    }
    let callback = match args.on_complete.as_slice() {
        [] => None,
        [cb, rest @ ..] => {
            let payload = rest.first().cloned().unwrap_or_else(|| "null".into());
            serde_json::from_str::<serde::de::IgnoredAny>(&payload)
                .map_err(|e| anyhow::anyhow!("the --on-complete payload is not valid JSON: {e}"))?;
            let mut callback = spec(payload);
            callback.task = cb.clone();
            Some(callback)
        }
    };
    let client = target.connect().await?;
    let queue = client.queue(&args.queue)?;
    let id = queue.batch_open(callback.as_ref()).await?;
    for chunk in specs.chunks(CHUNK) {
        queue.batch_add(&id, chunk).await.with_context(|| {
            format!("adding jobs to batch {id}; it is left open, its callback will not run")
        })?;
    }
    queue.batch_seal(&id).await?;
    outln!("{id}")?;
    eprintln!(
        "batch {id}: {} jobs on queue {}{}; see jobfleet batch status {id}",
        specs.len(),
        args.queue,
        callback
            .map(|c| format!(", then {} once", c.task))
            .unwrap_or_default()
    );
    Ok(Outcome::Success)
}
