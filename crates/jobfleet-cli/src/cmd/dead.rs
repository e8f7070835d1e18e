//! `jobfleet dead list|retry|purge`: the dead-letter queue.

use clap::Subcommand;

use crate::Outcome;
use crate::connect::Target;
use crate::output::{out, outln, table, timestamp};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List dead jobs, most recent first.
    List {
        /// The queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// JSON: a list of jobs.
        #[arg(long)]
        json: bool,
    },
    /// Run dead jobs again with a fresh set of attempts (all of them when no id is given).
    Retry {
        /// The queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
        /// Job ids [default: every dead job in the queue].
        ids: Vec<String>,
    },
    /// Delete dead jobs for good (all of them when no id is given).
    Purge {
        /// The queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
        /// Job ids [default: every dead job in the queue].
        ids: Vec<String>,
    },
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    match args.action {
        Action::List { queue, limit, json } => {
            let jobs = client.queue(&queue)?.dead_list(limit).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&jobs)?)?;
            } else if jobs.is_empty() {
                outln!("no dead jobs in queue {queue}")?;
            } else {
                let rows: Vec<Vec<String>> = jobs
                    .iter()
                    .map(|j| {
                        vec![
                            j.id.clone(),
                            j.task.clone(),
                            j.finished_ms.map(timestamp).unwrap_or_default(),
                            format!("{}/{}", j.attempts, j.max_attempts),
                            j.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                out!("{}", table(&["ID", "TASK", "DIED", "ATTEMPTS", "ERROR"], &rows))?;
            }
        }
        Action::Retry { queue, ids } => {
            let n = client.queue(&queue)?.dead_retry(&ids).await?;
            outln!("{n} dead jobs sent back to pending in queue {queue}")?;
            if !ids.is_empty() && n < ids.len() as u64 {
                anyhow::bail!(
                    "{} of the given ids are not dead jobs in queue {queue}",
                    ids.len() as u64 - n
                );
            }
        }
        Action::Purge { queue, ids } => {
            let n = client.queue(&queue)?.dead_purge(&ids).await?;
            outln!("{n} dead jobs deleted from queue {queue}")?;
            if !ids.is_empty() && n < ids.len() as u64 {
                anyhow::bail!(
                    "{} of the given ids are not dead jobs in queue {queue}",
                    ids.len() as u64 - n
                );
            }
        }
    }
    Ok(Outcome::Success)
}
