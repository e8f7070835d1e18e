//! `jobfleet stats` and `jobfleet workers`.

use std::time::Duration;

use jobfleet_core::{Client, FleetStats, TopologyInfo, WorkerInfo};

use crate::Outcome;
use crate::connect::Target;
use crate::output::{duration_ms, out, outln, table};

#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Only this queue (repeatable) [default: every known queue].
    #[arg(long = "queue", short = 'q')]
    queues: Vec<String>,
    /// JSON: {"queues": [...], "workers": [...], "redis": {primary, replicas}}.
    #[arg(long)]
    json: bool,
    /// Refresh every second until Ctrl-C.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
    /// Also each shard of a sharded queue (a `Q#i` row; in JSON, `by_shard`).
    #[arg(long)]
    shards: bool,
}

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// JSON: a list of workers.
    #[arg(long)]
    json: bool,
}

pub async fn stats(target: &Target, args: StatsArgs) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    for q in &args.queues {
        jobfleet_core::validate_queue_name(q)?;
    }
    let read = || async {
        let mut stats = client.stats(&args.queues).await?;
        if args.shards {
            for q in &mut stats.queues {
                if q.shards > 1 {
                    q.by_shard = client.queue(&q.name)?.stats_by_shard().await?;
                    for (shard, node) in q.by_shard.iter_mut().zip(client.shard_nodes(&q.name).await?) {
                        shard.node = Some(node);
                    }
                }
            }
        }
        anyhow::Ok(stats)
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&read().await?)?)?;
        return Ok(Outcome::Success);
    }
    if !args.watch {
        out!("{}", render(&client, &read().await?).await)?;
        return Ok(Outcome::Success);
    }
    loop {
        let view = render(&client, &read().await?).await;
        // Clear the screen and home the cursor, then draw.
        out!("\x1b[2J\x1b[H{view}")?;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(Outcome::Success),
        }
    }
}

pub async fn workers(target: &Target, args: WorkersArgs) -> anyhow::Result<Outcome> {
    let client = target.connect().await?;
    let workers = client.workers().await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&workers)?)?;
    } else {
        out!("{}", render_workers(&workers, redis_now(&client).await))?;
    }
    Ok(Outcome::Success)
}

async fn render(client: &Client, stats: &FleetStats) -> String {
    let rows: Vec<Vec<String>> = stats
        .queues
        .iter()
        .flat_map(|q| {
            let name = match q.shards {
                1 => q.name.clone(),
                n => format!("{} ({n} shards)", q.name),
            };
            std::iter::once((name, q)).chain(q.by_shard.iter().map(|s| {
                let at = s.node.as_ref().map(|n| format!(" on {n}")).unwrap_or_default();
                (format!("{}#{}{at}", s.name, s.shard), s)
            }))
        })
        .map(|(name, q)| {
            [
                q.pending,
                q.scheduled,
                q.active,
                q.dead,
                q.completed,
                q.failed,
                q.retried,
                q.cancelled,
            ]
            .iter()
            .map(u64::to_string)
            .fold(vec![name], |mut row, n| {
                row.push(n);
                row
            })
        })
        .collect();
    let mut out = if rows.is_empty() {
        "no queues yet: submit a job to create one\n".to_string()
    } else {
        table(
            &[
                "QUEUE",
                "PENDING",
                "SCHEDULED",
                "ACTIVE",
                "DEAD",
                "COMPLETED",
                "FAILED",
                "RETRIED",
                "CANCELLED",
            ],
            &rows,
        )
    };
    for q in stats.queues.iter().filter(|q| q.paused) {
        out.push_str(&format!(
            "queue {} is paused: no worker claims its jobs (jobfleet queue resume {})\n",
            q.name, q.name
        ));
    }
    for unserved in stats.unserved() {
        out.push_str(&format!("warning: {unserved}\n"));
    }
    out.push('\n');
    out.push_str(&render_workers(&stats.workers, redis_now(client).await));
    out.push('\n');
    out.push_str(&render_redis(&stats.redis));
    out
}

/// One line for the primary, one per replica with its lag.
fn render_redis(redis: &TopologyInfo) -> String {
    if redis.mode == "cluster" {
        let mut out = format!("redis: cluster of {} nodes\n", redis.nodes.len());
        for n in &redis.nodes {
            let state = if n.failed { " FAILED" } else { "" };
            match &n.replica_of {
                Some(p) => out.push_str(&format!("  replica {} of {p}{state}\n", n.addr)),
                None => out.push_str(&format!("  primary {} ({} slots){state}\n", n.addr, n.slots)),
            }
        }
        return out;
    }
    let mut out = match &redis.master_name {
        Some(master) => format!(
            "redis: primary {} (Sentinel master {master}, {} sentinels in the URL)\n",
            redis.primary, redis.sentinels
        ),
        None => format!("redis: primary {}\n", redis.primary),
    };
    if redis.replicas.is_empty() {
        out.push_str("  no replicas: a failure of this node loses what it had not saved\n");
    }
    for r in &redis.replicas {
        out.push_str(&format!(
            "  replica {} {}, {} bytes behind, last ack {}s ago\n",
            r.addr, r.state, r.lag_bytes, r.lag_secs
        ));
    }
    out
}

fn render_workers(workers: &[WorkerInfo], now_ms: u64) -> String {
    if workers.is_empty() {
        return "no live workers: start one with jobfleet-worker\n".into();
    }
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                w.queues.join(","),
                w.concurrency.to_string(),
                w.active.to_string(),
                w.processed.to_string(),
                format!("{} ago", duration_ms(now_ms.saturating_sub(w.last_heartbeat_ms))),
            ]
        })
        .collect();
    table(
        &[
            "WORKER",
            "HOST",
            "PID",
            "QUEUES",
            "SLOTS",
            "ACTIVE",
            "PROCESSED",
            "LAST BEAT",
        ],
        &rows,
    )
}

/// Redis' clock in ms (heartbeats are stamped with it, not with ours).
async fn redis_now(client: &Client) -> u64 {
    client.redis_time_ms().await.unwrap_or(0)
}
