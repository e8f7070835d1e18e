//! `jobfleet queue create|show|forget`: commands about whole queues.

use std::time::Duration;

use clap::Subcommand;

use crate::Outcome;
use crate::connect::Target;
use crate::output::outln;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
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
                outln!("queue {name}")?;
                outln!("  shards     {}", stats.shards)?;
                outln!("  pending    {}", stats.pending)?;
                outln!("  scheduled  {}", stats.scheduled)?;
                outln!("  active     {}", stats.active)?;
                outln!("  dead       {}", stats.dead)?;
                outln!("  completed  {}", stats.completed)?;
                outln!("  workers    {}", stats.workers)?;
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
