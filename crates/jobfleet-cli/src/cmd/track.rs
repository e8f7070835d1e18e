//! Waiting for submitted jobs with a progress bar (on a terminal) or plain
//! progress lines (otherwise), then a summary. Shared by `submit --wait`
//! and `thumbnail --wait`.

use std::cell::Cell;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobfleet_core::{Client, Finished, JobState, Subscription};

use crate::Outcome;
use crate::output::{WaitOutput, outln, percent};

/// How to report while waiting.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Print one JSON line per finished job on stdout.
    pub json: bool,
    /// What the jobs are called in the summary ("jobs", "photos").
    pub noun: &'static str,
    /// A name to show beside a failed job's id (an input file, say).
    pub labels: Option<&'a std::collections::HashMap<String, String>>,
    /// Give up waiting after this long (the jobs keep running); exit 2.
    pub wait_timeout: Option<Duration>,
    /// Print a completed job's result on stdout (one job, no --json).
    pub print_result: bool,
    /// The jobs' task.
    pub task: &'a str,
}

/// Warns at once when no live worker serves `queue`, or none of those
/// that do runs `task`: the jobs would wait until one starts.
async fn warn_if_unserved(client: &Client, queue: &str, task: &str) {
    let Ok(workers) = client.workers().await else {
        return;
    };
    if !workers.iter().any(|w| w.queues.iter().any(|q| q == queue)) {
        eprintln!(
            "warning: no live worker serves queue {queue}: the jobs wait until one starts \
             (jobfleet-worker --queue {queue})"
        );
    } else if !workers.iter().any(|w| w.runs(queue, task)) {
        eprintln!(
            "warning: no live worker runs task {task} on queue {queue}: the jobs wait until one \
             that does starts (the workers of the queue run other tasks)"
        );
    }
}

/// How often a single job's record is read for its task's progress report.
const TASK_PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// How often a progress line is printed when stderr is not a terminal.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Where a wait stands, in the words `stats` uses.
#[derive(Debug, Clone, Copy)]
struct Progress {
    total: u64,
    completed: u64,
    dead: u64,
    cancelled: u64,
    elapsed: Duration,
}

impl Progress {
    fn finished(&self) -> u64 {
        self.completed + self.dead + self.cancelled
    }

    /// Jobs finished per second so far, once there is something to go by.
    fn rate(&self) -> Option<f64> {
        let secs = self.elapsed.as_secs_f64();
        (self.finished() >= 10 && secs >= 1.0).then(|| self.finished() as f64 / secs)
    }

    /// The bar's message: counts, the rate as a whole number, and an ETA
    /// only once the rate means something.
    fn message(&self) -> String {
        let mut text = format!(
            "{} completed, {} dead, {} cancelled",
            self.completed, self.dead, self.cancelled
        );
        if let Some(rate) = self.rate() {
            let left = self.total.saturating_sub(self.finished()) as f64 / rate;
            text.push_str(&format!(
                ", {rate:.0}/s, about {} left",
                humantime::format_duration(Duration::from_secs(left.ceil() as u64))
            ));
        }
        text
    }

    /// A line for a log: `12/100 finished: ...`.
    fn line(&self) -> String {
        format!("{}/{} finished: {}", self.finished(), self.total, self.message())
    }
}

/// How to wait again for `jobs` (at most a few ids named).
fn wait_again(jobs: &[(String, String)], left: &[String]) -> String {
    let queue = jobs.first().map(|(q, _)| q.as_str()).unwrap_or("default");
    let shown: Vec<&str> = left.iter().take(3).map(String::as_str).collect();
    format!(
        "jobfleet wait -q {queue} {}{}",
        shown.join(" "),
        if left.len() > shown.len() { " ..." } else { "" }
    )
}

/// Subscribes to `queue`'s events when the caller will wait: before anything
/// is submitted, so no completion can be missed.
pub async fn subscribe_if(client: &Client, queue: &str, wait: bool) -> anyhow::Result<Option<Subscription>> {
    Ok(match wait {
        true => Some(client.events(&[queue.to_string()]).await?),
        false => None,
    })
}

/// Waits for `jobs` on a subscription opened before they were submitted.
/// Failures are named as they happen; exit status says whether all completed.
pub async fn wait(
    client: &Client,
    events: &mut Subscription,
    jobs: &[(String, String)],
    started: Instant,
    report: Report<'_>,
) -> anyhow::Result<Outcome> {
    // Listening for Ctrl-C from here on, before anything is said, so a
    // reader that saw the warning below knows an interrupt is handled.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    if let Some((queue, _)) = jobs.first() {
        warn_if_unserved(client, queue, report.task).await;
    }
    let total = jobs.len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let interactive = std::io::stderr().is_terminal();
    if interactive {
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    // Cells: the callback counts, the ticker below reads.
    let (completed, dead, cancelled) = (Cell::new(0u64), Cell::new(0u64), Cell::new(0u64));
    let progress = || Progress {
        total,
        completed: completed.get(),
        dead: dead.get(),
        cancelled: cancelled.get(),
        elapsed: started.elapsed(),
    };
    let stdout = WaitOutput::default();
    let print_result = report.print_result && !report.json;
    // A block of its own: the wait borrows the counters and stdout.
    let outcome = {
        let waiting = client.wait_with(events, jobs, report.wait_timeout, |f: &Finished| {
            let counter = match f.state {
                JobState::Completed => &completed,
                JobState::Cancelled => &cancelled,
                _ => &dead,
            };
            counter.set(counter.get() + 1);
            if f.state != JobState::Completed {
                let label = report
                    .labels
                    .and_then(|l| l.get(&f.id))
                    .map(|l| format!(" ({l})"));
                let line = format!(
                    "{}{} {}: {}",
                    f.id,
                    label.unwrap_or_default(),
                    f.state,
                    f.error.as_deref().unwrap_or("(no error recorded)")
                );
                if interactive {
                    bar.println(line)
                } else {
                    eprintln!("{line}")
                }
            }
            if report.json {
                stdout.write(|| outln!("{}", serde_json::to_string(f).expect("serializable")));
            } else if print_result && f.state == JobState::Completed {
                let result = f.result.clone().unwrap_or(serde_json::Value::Null);
                stdout.write(|| outln!("{result}"));
            }
            bar.set_message(progress().message());
            bar.inc(1);
        });
        tokio::pin!(waiting);
        // Without a terminal, a progress line every few seconds, completions or not.
        let mut lines =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        // One job: what its task reports, read from its record.
        let mut task_progress = tokio::time::interval(TASK_PROGRESS_EVERY);
        let mut last_reported = None;
        loop {
            tokio::select! {
                outcome = &mut waiting => break outcome?,
                _ = task_progress.tick(), if total == 1 => {
                    let (queue, id) = &jobs[0];
                    let now = match client.queue(queue)?.status(id).await {
                        Ok(Some(job)) => job.progress.map(|p| percent(p, job.progress_message.as_deref())),
                        _ => None,
                    };
                    if now.is_some() && now != last_reported {
                        let text = now.clone().unwrap_or_default();
                        if interactive {
                            bar.set_message(text);
                        } else {
                            eprintln!("{id}: {text}");
                        }
                        last_reported = now;
                    }
                }
                error = stdout.failed() => return Err(error.into()),
                _ = lines.tick(), if !interactive => eprintln!("progress: {}", progress().line()),
                _ = interrupt.recv() => {
                    bar.finish_and_clear();
                    let ids: Vec<String> = jobs.iter().map(|(_, id)| id.clone()).collect();
                    eprintln!(
                        "interrupted: the jobs keep running in the fleet; wait for them again with: {}",
                        wait_again(jobs, &ids)
                    );
                    return Ok(Outcome::Interrupted);
                }
            }
        }
    };
    let (completed, dead, cancelled) = (completed.get(), dead.get(), cancelled.get());
    stdout.finish()?;
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    let missing = outcome.missing.len() as u64;
    for id in &outcome.missing {
        eprintln!("{id} missing: no record (its record expired, or it was deleted)");
    }
    let counted = if total == 1 {
        report.noun.trim_end_matches('s')
    } else {
        report.noun
    };
    eprintln!(
        "{total} {counted}: {completed} completed, {dead} dead, {cancelled} cancelled{} in {:.2}s ({:.0} {}/s)",
        if missing > 0 {
            format!(", {missing} missing")
        } else {
            String::new()
        },
        elapsed.as_secs_f64(),
        (completed + dead + cancelled) as f64 / elapsed.as_secs_f64().max(1e-9),
        report.noun,
    );
    if !outcome.unfinished.is_empty() {
        eprintln!(
            "{} {} still not finished after {}: they keep running; wait again with: {}",
            outcome.unfinished.len(),
            if outcome.unfinished.len() == 1 {
                report.noun.trim_end_matches('s')
            } else {
                report.noun
            },
            humantime::format_duration(report.wait_timeout.unwrap_or_default()),
            wait_again(jobs, &outcome.unfinished)
        );
        return Ok(if dead + cancelled > 0 {
            Outcome::JobsFailed
        } else {
            Outcome::TimedOut
        });
    }
    Ok(if completed == total {
        Outcome::Success
    } else {
        Outcome::JobsFailed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_uses_the_words_of_stats_whole_rates_and_no_eta_before_it_means_something() {
        let early = Progress {
            total: 1000,
            completed: 3,
            dead: 1,
            cancelled: 0,
            elapsed: Duration::from_millis(300),
        };
        assert_eq!(early.message(), "3 completed, 1 dead, 0 cancelled");
        let later = Progress {
            total: 1000,
            completed: 240,
            dead: 10,
            cancelled: 0,
            elapsed: Duration::from_secs(5),
        };
        assert_eq!(
            later.line(),
            "250/1000 finished: 240 completed, 10 dead, 0 cancelled, 50/s, about 15s left"
        );
    }
}
