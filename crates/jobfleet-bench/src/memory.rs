//! Redis memory per pending job: `used_memory` before and after a backlog of
//! no-op jobs is submitted through the typed client (no workers running).

use jobfleet_core::{Client, JobSpec, Queue};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs in the backlog.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Jobs per submit_batch call.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
}

pub async fn run(client: &Client, queue: &Queue, args: Args) -> anyhow::Result<serde_json::Value> {
    // Register the queue first, so the known-queues set is not counted.
    queue.submit_batch(&[]).await?;
    let before = used_memory(client).await?;
    let mut sample_id = None;
    let mut left = args.jobs;
    while left > 0 {
        let n = left.min(args.batch.max(1));
        let specs = vec![JobSpec::new("noop", &json!({})); n];
        let submitted = queue.submit_batch(&specs).await?;
        sample_id = submitted.last().map(|s| s.id.clone());
        left -= n;
    }
    let after = used_memory(client).await?;
    let per_job = (after as f64 - before as f64) / args.jobs.max(1) as f64;
    // One job record's own size, as Redis counts it (the rest of the per-job
    // cost is its id in the pending list and the keyspace entry).
    let record: Option<u64> = match &sample_id {
        Some(id) => redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(queue.keys().job(id))
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut client.conn())
            .await
            .ok(),
        None => None,
    };
    eprintln!(
        "memory: {} pending no-op jobs grew used_memory by {} bytes: {per_job:.1} bytes per job \
         (MEMORY USAGE of one job record: {})",
        args.jobs,
        after as i64 - before as i64,
        record.map_or("n/a".into(), |r| format!("{r} bytes")),
    );
    Ok(json!({
        "jobs": args.jobs,
        "used_memory_before": before,
        "used_memory_after": after,
        "bytes_per_job": (per_job * 10.0).round() / 10.0,
        "job_record_memory_usage": record,
    }))
}

/// Redis' `used_memory` (bytes the allocator holds for data and buffers).
pub async fn used_memory(client: &Client) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut client.conn())
        .await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("INFO memory has no used_memory line"))
}
