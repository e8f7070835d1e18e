//! `jobfleet queue list|create|show|pause|resume|purge|forget`: commands
//! about whole queues.

use std::time::Duration;

use clap::Subcommand;

use crate::Outcome;
use crate::connect::Target;
use crate::output::{confirm, duration_ms, outln, table};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List the known queues with their sizes, latency and whether they are paused.
    List {
        /// JSON: one stats object per queue.
        #[arg(long)]
        json: bool,
    },
    /// Create a queue, or raise its shard count. A queue of N shards spreads its jobs over N
    /// hash slots (on a Redis Cluster: over the nodes); producers and workers pick the count
    /// up by themselves within seconds. The count can only grow.
    Create {
        /// The queue.
        name: String,
        /// How many shards (1 to 1024).
        #[arg(long, default_value_t = 1)]
        shards: u32,
    },
    /// Show a queue: its shard count and its sizes.
    Show {
        /// The queue.
        name: String,
        /// JSON: the queue's stats with a `by_shard` list.
        #[arg(long)]
        json: bool,
    },
    /// Pause a queue fleet-wide, at once: no worker claims its jobs until it is resumed (running
    /// jobs finish; submits still land).
    Pause {
        /// The queue.
        name: String,
    },
    /// Resume a paused queue; its workers wake at once.
    Resume {
        /// The queue.
        name: String,
    },
    /// Limit a queue fleet-wide: how many of its jobs run at once (--concurrency) and how many
    /// start per second (--rate, a token bucket). Every claim enforces them from the next one on;
    /// options not given are lifted. Without any option (or with --clear): no limits.
    Limit {
        /// The queue.
        name: String,
        /// The most jobs running at once, across every worker.
        #[arg(long)]
        concurrency: Option<u64>,
        /// The most jobs started per second: 100/s, 300/m, 10/h, or a number per second.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// How many may start at once after a quiet spell [default: one second's worth of --rate].
        #[arg(long, requires = "rate")]
        burst: Option<f64>,
        /// Lift every limit.
        #[arg(long, conflicts_with_all = ["concurrency", "rate"])]
        clear: bool,
    },
    /// Cancel every waiting job of a queue (pending and scheduled; running jobs finish). The
    /// jobs end `cancelled` with the error `purged`, so waiters see them end. Asks first
    /// unless --yes.
    Purge {
        /// The queue.
        name: String,
        /// Don't ask (needed without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Forget a queue that is empty and no worker serves: its counters go, and it leaves `stats`.
    /// Refused (exit 3) while it holds any job or a live worker serves it.
    Forget {
        /// The queue.
        name: String,
        /// A worker that beat within this long still serves the queue.
        #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
        live_within: Duration,
    },
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::List { json } => {
            let client = target.connect().await?;
            let stats = client.stats(&[]).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&stats.queues)?)?;
            } else if stats.queues.is_empty() {
                outln!("no queues yet: submit a job (jobfleet submit TASK) or start a worker")?;
            } else {
                let rows: Vec<Vec<String>> = stats
                    .queues
                    .iter()
                    .map(|q| {
                        vec![
                            q.name.clone(),
                            if q.paused { "paused" } else { "running" }.into(),
                            q.pending.to_string(),
                            q.scheduled.to_string(),
                            q.active.to_string(),
                            q.dead.to_string(),
                            q.workers.to_string(),
                            if q.pending > 0 {
                                duration_ms(q.oldest_pending_ms)
                            } else {
                                "-".into()
                            },
                        ]
                    })
                    .collect();
                crate::output::out!(
                    "{}",
                    table(
                        &[
                            "QUEUE",
                            "STATE",
                            "PENDING",
                            "SCHEDULED",
                            "ACTIVE",
                            "DEAD",
                            "WORKERS",
                            "OLDEST"
                        ],
                        &rows
                    )
                )?;
                for unserved in stats.unserved() {
                    eprintln!("warning: {unserved}");
                }
            }
        }
        Action::Limit {
            name,
            concurrency,
            rate,
            burst,
            clear: _,
        } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            let limits = jobfleet_core::Limits {
                concurrency,
                rate,
                burst,
            };
            client.queue(&name)?.set_limits(limits).await?;
            outln!("queue {name}: {}", describe_limits(concurrency, rate))?;
        }
        Action::Pause { name } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            if client.queue(&name)?.pause().await? {
                outln!(
                    "queue {name} paused: no worker claims its jobs until `jobfleet queue resume {name}`"
                )?;
            } else {
                outln!("queue {name} was already paused")?;
            }
        }
        Action::Resume { name } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            if client.queue(&name)?.resume().await? {
                outln!("queue {name} resumed")?;
            } else {
                outln!("queue {name} was not paused")?;
            }
        }
        Action::Purge { name, yes } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            let queue = client.queue(&name)?;
            let waiting = queue.count_where(&jobfleet_core::Filter::default()).await?;
            if waiting.total() == 0 {
                outln!("queue {name} has no waiting jobs; nothing to purge")?;
                return Ok(Outcome::Success);
            }
            if !yes
                && !confirm(&format!(
                    "Cancel the {} waiting jobs of queue {name} ({} pending, {} scheduled)?",
                    waiting.total(),
                    waiting.pending,
                    waiting.scheduled
                ))?
            {
                outln!("nothing purged")?;
                return Ok(Outcome::Success);
            }
            let done = queue.purge().await?;
            outln!(
                "purged queue {name}: {} waiting jobs cancelled ({} pending, {} scheduled)",
                done.total(),
                done.pending,
                done.scheduled
            )?;
        }
        Action::Create { name, shards } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            let before = client.queue(&name)?.set_shards(shards).await?;
            if before == shards {
                outln!("queue {name}: {shards} shard(s), unchanged")?;
            } else {
                outln!("queue {name}: {shards} shard(s) (was {before})")?;
            }
        }
        Action::Show { name, json } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            let queue = client.queue(&name)?;
            let mut stats = queue.stats().await?;
            stats.by_shard = queue.stats_by_shard().await?;
            for (shard, node) in stats.by_shard.iter_mut().zip(client.shard_nodes(&name).await?) {
                shard.node = Some(node);
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&stats)?)?;
            } else {
                outln!("queue {name}{}", if stats.paused { " (paused)" } else { "" })?;
                outln!("  shards     {}", stats.shards)?;
                outln!("  pending    {}", stats.pending)?;
                outln!("  scheduled  {}", stats.scheduled)?;
                outln!("  active     {}", stats.active)?;
                outln!("  dead       {}", stats.dead)?;
                outln!("  completed  {}", stats.completed)?;
                outln!("  workers    {}", stats.workers)?;
                if stats.pending > 0 {
                    outln!("  oldest     {}", duration_ms(stats.oldest_pending_ms))?;
                }
                if stats.concurrency_limit.is_some() || stats.rate_limit.is_some() {
                    outln!(
                        "  limits     {}",
                        describe_limits(stats.concurrency_limit, stats.rate_limit)
                    )?;
                }
                for (task, n) in &stats.parked {
                    outln!("  waiting for a worker that runs {task}: {n}")?;
                }
                if stats.shards > 1 {
                    for s in &stats.by_shard {
                        let at = s.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
                        outln!(
                            "  shard {}{at}: {} pending, {} active, {} completed",
                            s.shard,
                            s.pending,
                            s.active,
                            s.completed
                        )?;
                    }
                }
            }
        }
        Action::Forget { name, live_within } => {
            jobfleet_core::validate_queue_name(&name)?;
            let client = target.connect().await?;
            client.forget_queue(&name, live_within).await?;
            outln!("forgot queue {name}")?;
        }
    }
    Ok(Outcome::Success)
}

/// "at most 10 running, 100 started per second", or "no limits".
fn describe_limits(concurrency: Option<u64>, rate: Option<f64>) -> String {
    let mut parts = Vec::new();
    if let Some(c) = concurrency {
        parts.push(format!("at most {c} running at once"));
    }
    if let Some(r) = rate {
        parts.push(format!(
            "at most {} started per second",
            (r * 1000.0).round() / 1000.0
        ));
    }
    if parts.is_empty() {
        "no limits".into()
    } else {
        parts.join(", ")
    }
}

/// A rate: `100/s`, `300/m`, `10/h`, or a number per second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (n, per) = match text.split_once('/') {
        Some((n, unit)) => (
            n,
            match unit {
                "s" | "sec" | "second" => 1.0,
                "m" | "min" | "minute" => 60.0,
                "h" | "hour" => 3600.0,
                _ => return Err(format!("unknown unit {unit:?}: use /s, /m or /h")),
            },
        ),
        None => (text, 1.0),
    };
    match n.trim().parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n / per),
        _ => Err(format!(
            "{text:?} is not a rate: use a number above 0, as in 100/s"
        )),
    }
}
