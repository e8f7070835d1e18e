//! `jobfleet wait`, `status` and `cancel`: commands about given job ids.

use std::time::{Duration, Instant};

use anyhow::bail;
use jobfleet_core::{CancelOutcome, Client, Job, JobState};

use crate::Outcome;
use crate::connect::Target;
use crate::output::{WaitOutput, duration_ms, out, outln, percent, timestamp};

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Job ids.
    #[arg(required = true)]
    ids: Vec<String>,
    /// Give up after this long (exit 2) [default: wait forever].
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// The jobs' queue [default: look in every queue].
    #[arg(long, short = 'q')]
    queue: Option<String>,
    /// One JSON object per finished job.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Job id.
    id: String,
    /// The job's queue [default: look in every queue].
    #[arg(long, short = 'q')]
    queue: Option<String>,
    /// The whole job as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// Job ids (or a filter: --queue with --task).
    #[arg(required_unless_present = "task", conflicts_with = "task")]
    ids: Vec<String>,
    /// The jobs' queue [default: look in every queue].
    #[arg(long, short = 'q')]
    queue: Option<String>,
    /// Cancel every waiting job of this task in --queue (pending and scheduled), with a count
    /// first and a question unless --yes.
    #[arg(long, requires = "queue")]
    task: Option<String>,
    /// With --task: the running jobs of the task too (their workers are told to stop them).
    #[arg(long, requires = "task")]
    running: bool,
    /// With --task: don't ask (needed without a terminal).
    #[arg(long, short = 'y', requires = "task")]
    yes: bool,
}

fn not_found(id: &str, queue: Option<&str>) -> String {
    format!(
        "no job with id {id}{}; check the id (finished jobs are kept for an hour by default)",
        queue.map(|q| format!(" in queue {q}")).unwrap_or_default()
    )
}

/// The (queue, id) of every job, in one pipelined pass per queue, failing
/// with a clear message for an unknown id; retried for a while when Redis is
/// unreachable, since a waiting producer should ride out a Redis restart.
async fn locate(
    client: &Client,
    ids: &[String],
    queue: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let give_up = Instant::now() + Duration::from_secs(60);
    let found = loop {
        match client.locate_jobs(ids, queue).await {
            Ok(found) => break found,
            Err(jobfleet_core::Error::Redis(e)) if Instant::now() < give_up => {
                eprintln!("redis unavailable ({e}); retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    ids.iter()
        .map(|id| match found.get(id) {
            Some(q) => Ok((q.clone(), id.clone())),
            None => bail!("{}", not_found(id, queue)),
        })
        .collect()
}

pub async fn wait(target: &Target, args: WaitArgs) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    let pairs = locate(&client, &args.ids, args.queue.as_deref()).await?;
    let started = Instant::now();
    let stdout = WaitOutput::default();
    let waiting = client.wait(&pairs, args.timeout, |f| {
        stdout.write(|| {
            if args.json {
                outln!("{}", serde_json::to_string(f).expect("serializable"))
            } else {
                match &f.error {
                    Some(error) if f.state != JobState::Completed => outln!("{} {}: {error}", f.id, f.state),
                    _ => outln!("{} {}", f.id, f.state),
                }
            }
        })
    });
    let report = tokio::select! {
        report = waiting => report?,
        error = stdout.failed() => return Err(error.into()),
    };
    stdout.finish()?;
    for id in &report.missing {
        eprintln!("{id}: its record disappeared while waiting (expired or deleted)");
    }
    if !report.unfinished.is_empty() {
        eprintln!(
            "timed out after {:.1}s; still unfinished: {}",
            started.elapsed().as_secs_f64(),
            report.unfinished.join(" ")
        );
        return Ok(Outcome::TimedOut);
    }
    let all_completed =
        report.missing.is_empty() && report.finished.iter().all(|f| f.state == JobState::Completed);
    Ok(if all_completed {
        Outcome::Success
    } else {
        Outcome::JobsFailed
    })
}

pub async fn status(target: &Target, args: StatusArgs) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    let job = match client.find_job(&args.id, args.queue.as_deref()).await {
        Err(jobfleet_core::Error::JobNotFound(_)) => bail!("{}", not_found(&args.id, args.queue.as_deref())),
        other => other?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&job)?)?;
    } else {
        out!("{}", describe(&job))?;
    }
    Ok(Outcome::Success)
}

/// A job as readable lines.
fn describe(job: &Job) -> String {
    let mut lines = vec![
        ("id", job.id.clone()),
        ("queue", job.queue.clone()),
        ("task", job.task.clone()),
        ("state", job.state.to_string()),
        ("attempts", format!("{} of {}", job.attempts, job.max_attempts)),
        ("timeout", duration_ms(job.timeout_ms)),
        ("payload", job.payload.to_string()),
        ("created", timestamp(job.created_ms)),
    ];
    if let Some(ms) = job.run_at_ms.filter(|_| job.state == JobState::Scheduled) {
        lines.push(("runs at", timestamp(ms)));
    }
    if let Some(ms) = job.started_ms {
        lines.push(("started", timestamp(ms)));
    }
    if let Some(ms) = job.finished_ms {
        let took = job
            .started_ms
            .map(|s| format!(" (ran {})", duration_ms(ms.saturating_sub(s))));
        lines.push((
            "finished",
            format!("{}{}", timestamp(ms), took.unwrap_or_default()),
        ));
    }
    if let Some(worker) = &job.worker {
        lines.push(("worker", worker.clone()));
    }
    if job.recoveries > 0 {
        lines.push(("recoveries", job.recoveries.to_string()));
    }
    if let Some(fraction) = job.progress {
        lines.push(("progress", percent(fraction, job.progress_message.as_deref())));
    }
    if let Some(result) = &job.result {
        lines.push(("result", result.to_string()));
    }
    if let Some(error) = &job.error {
        lines.push(("error", error.clone()));
    }
    lines
        .iter()
        .map(|(k, v)| format!("{:<11}{v}\n", format!("{k}:")))
        .collect()
}

pub async fn cancel(target: &Target, args: CancelArgs) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    if let (Some(task), Some(queue)) = (&args.task, &args.queue) {
        let queue = client.queue(queue)?;
        let filter = jobfleet_core::Filter {
            task: Some(task.clone()),
            running: args.running,
        };
        let found = queue.count_where(&filter).await?;
        let what = describe_swept(&found);
        if found.total() == 0 {
            outln!("no unfinished {task} jobs to cancel in queue {}", queue.name())?;
            return Ok(Outcome::Success);
        }
        let question = format!("Cancel {what} of task {task} in queue {}?", queue.name());
        if !args.yes && !crate::output::confirm(&question)? {
            outln!("nothing cancelled")?;
            return Ok(Outcome::Success);
        }
        let done = queue.cancel_where(&filter, None).await?;
        outln!(
            "cancelled {} of task {task} in queue {}",
            describe_swept(&done),
            queue.name()
        )?;
        if done.active > 0 {
            outln!("the running ones end cancelled once their workers stop them")?;
        }
        return Ok(Outcome::Success);
    }
    for (queue, id) in locate(&client, &args.ids, args.queue.as_deref()).await? {
        match client.queue(&queue)?.cancel(&id).await? {
            CancelOutcome::Cancelled => outln!("{id} cancelled")?,
            CancelOutcome::Cancelling => {
                outln!("{id} cancelling: it is running; its worker was told to stop it")?
            }
            CancelOutcome::AlreadyFinal(state) => outln!("{id} already {state}; nothing to cancel")?,
            CancelOutcome::NotFound => bail!("no job with id {id} (its record expired meanwhile)"),
        }
    }
    Ok(Outcome::Success)
}

/// "3 jobs (2 pending, 1 scheduled, ...)".
fn describe_swept(swept: &jobfleet_core::Swept) -> String {
    let mut parts = vec![
        format!("{} pending", swept.pending),
        format!("{} scheduled", swept.scheduled),
    ];
    if swept.active > 0 {
        parts.push(format!("{} running", swept.active));
    }
    format!("{} jobs ({})", swept.total(), parts.join(", "))
}
