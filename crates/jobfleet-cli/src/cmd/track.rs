//! Waiting for submitted jobs with a progress bar (on a terminal) or plain
//! progress lines (otherwise), then a summary. Shared by `submit --wait`
//! and `thumbnail --wait`.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jobfleet_core::{Client, Finished, JobState, Subscription};

use crate::Outcome;
use crate::output::{WaitOutput, outln};

/// How to report while waiting.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// Print one JSON line per finished job on stdout.
    pub json: bool,
    /// What the jobs are called in the summary ("jobs", "photos").
    pub noun: &'static str,
    /// A name to show beside a failed job's id (an input file, say).
    pub labels: Option<&'a std::collections::HashMap<String, String>>,
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
    let total = jobs.len() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let interactive = std::io::stderr().is_terminal();
    if interactive {
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg} {per_sec} eta {eta}",
            )
            .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let (mut completed, mut dead, mut cancelled) = (0u64, 0u64, 0u64);
    let mut last_line = Instant::now();
    let stdout = WaitOutput::default();
    let waiting = client.wait_with(events, jobs, None, |f: &Finished| {
        match f.state {
            JobState::Completed => completed += 1,
            JobState::Cancelled => cancelled += 1,
            _ => dead += 1,
        }
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
        }
        bar.set_message(format!("completed {completed}, failed {}", dead + cancelled));
        bar.inc(1);
        if !interactive && last_line.elapsed() >= Duration::from_secs(5) {
            last_line = Instant::now();
            eprintln!(
                "progress: {}/{total} finished ({completed} completed, {} failed)",
                completed + dead + cancelled,
                dead + cancelled
            );
        }
    });
    let outcome = tokio::select! {
        outcome = waiting => outcome?,
        error = stdout.failed() => return Err(error.into()),
    };
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
        total as f64 / elapsed.as_secs_f64().max(1e-9),
        report.noun,
    );
    Ok(if completed == total {
        Outcome::Success
    } else {
        Outcome::JobsFailed
    })
}
