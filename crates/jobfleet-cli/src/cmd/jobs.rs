//! `jobfleet jobs QUEUE --state S`: browse a queue's jobs by state.

use clap::ValueEnum;
use jobfleet_core::JobState;

use crate::Outcome;
use crate::connect::Target;
use crate::output::{duration_ms, out, outln, table, timestamp};

/// The states a queue indexes (final ones other than dead are only records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Browsable {
    Pending,
    Scheduled,
    Active,
    Dead,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The queue.
    queue: String,
    /// Which jobs: pending (in the order they will run), scheduled (soonest first), active
    /// (running now), dead (newest first).
    #[arg(long, value_enum, default_value = "pending")]
    state: Browsable,
    /// Only this task's jobs.
    #[arg(long)]
    task: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// JSON: the job records.
    #[arg(long)]
    json: bool,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    jobfleet_core::validate_queue_name(&args.queue)?;
    let state = match args.state {
        Browsable::Pending => JobState::Pending,
        Browsable::Scheduled => JobState::Scheduled,
        Browsable::Active => JobState::Active,
        Browsable::Dead => JobState::Dead,
    };
    let client = target.connect().await?;
    let jobs = client
        .queue(&args.queue)?
        .jobs(state, args.task.as_deref(), args.limit)
        .await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&jobs)?)?;
        return Ok(Outcome::Success);
    }
    if jobs.is_empty() {
        let of = args.task.map(|t| format!(" of task {t}")).unwrap_or_default();
        outln!("no {state} jobs{of} in queue {}", args.queue)?;
        return Ok(Outcome::Success);
    }
    let now = client.redis_time_ms().await?;
    let age = |ms: Option<u64>| ms.map(|t| duration_ms(now.saturating_sub(t))).unwrap_or_default();
    let (when, rows): (&str, Vec<Vec<String>>) = match state {
        JobState::Scheduled => (
            "RUNS AT",
            jobs.iter()
                .map(|j| row(j, j.run_at_ms.map(timestamp).unwrap_or_default()))
                .collect(),
        ),
        JobState::Active => (
            "RUNNING FOR",
            jobs.iter().map(|j| row(j, age(j.started_ms))).collect(),
        ),
        JobState::Dead => (
            "DIED",
            jobs.iter()
                .map(|j| row(j, j.finished_ms.map(timestamp).unwrap_or_default()))
                .collect(),
        ),
        _ => (
            "WAITING FOR",
            jobs.iter()
                .map(|j| {
                    row(
                        j,
                        age(Some(j.run_at_ms.unwrap_or(j.created_ms).max(j.created_ms))),
                    )
                })
                .collect(),
        ),
    };
    out!(
        "{}",
        table(&["ID", "TASK", when, "ATTEMPTS", "WORKER", "ERROR"], &rows)
    )?;
    Ok(Outcome::Success)
}

fn row(job: &jobfleet_core::Job, when: String) -> Vec<String> {
    vec![
        job.id.clone(),
        job.task.clone(),
        when,
        format!("{}/{}", job.attempts, job.max_attempts),
        job.worker.clone().unwrap_or_default(),
        job.error.clone().unwrap_or_default(),
    ]
}
