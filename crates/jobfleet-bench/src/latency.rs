//! Submit-to-completion latency, one job at a time, as a producer sees it:
//! the events subscription is opened once, then each job is submitted and
//! its final event awaited before the next one.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jobfleet_core::{Client, EventKind, JobSpec, Queue};
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Jobs measured.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    /// Jobs run first and not measured (connections, caches, thread wake-ups).
    #[arg(long, default_value_t = 50)]
    warmup: usize,
    /// Pause between jobs, so the fleet is idle (parked) when each arrives.
    #[arg(long, default_value_t = 2)]
    gap_ms: u64,
    /// Task to run.
    #[arg(long, default_value = "noop")]
    task: String,
}

pub async fn run(client: &Client, queue: &Queue, args: Args) -> anyhow::Result<serde_json::Value> {
    let mut events = client.events(&[queue.name().to_string()]).await?;
    let mut total = Vec::with_capacity(args.jobs);
    let mut submit = Vec::with_capacity(args.jobs);
    for i in 0..args.warmup + args.jobs {
        tokio::time::sleep(Duration::from_millis(args.gap_ms)).await;
        let start = Instant::now();
        let job = queue.submit(JobSpec::new(&args.task, &json!({}))).await?;
        let submitted = start.elapsed();
        let final_event = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.next_event().await {
                    Some(Some(e)) if e.id == job.id && e.state.is_final() => return Ok(e.state),
                    Some(Some(_)) => {}
                    Some(None) => bail!("the events subscription reconnected mid-run; rerun"),
                    None => bail!("the events subscription ended"),
                }
            }
        })
        .await
        .with_context(|| format!("job {} did not finish within 10s: are workers running?", job.id))??;
        if final_event != EventKind::Completed {
            bail!("job {} ended {final_event:?}, not completed", job.id);
        }
        if i >= args.warmup {
            total.push(start.elapsed());
            submit.push(submitted);
        }
    }
    let (t, s) = (summary(&mut total), summary(&mut submit));
    eprintln!(
        "latency over {} jobs (gap {} ms): submit->completed p50 {:.3} ms p99 {:.3} ms max {:.3} ms; \
         submit call alone p50 {:.3} ms",
        args.jobs, args.gap_ms, t["p50_ms"], t["p99_ms"], t["max_ms"], s["p50_ms"]
    );
    Ok(json!({"jobs": args.jobs, "gap_ms": args.gap_ms, "total": t, "submit_call": s}))
}

/// Percentiles in ms (nearest rank).
fn summary(samples: &mut [Duration]) -> serde_json::Value {
    samples.sort();
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let rank = |p: f64| {
        let n = samples.len();
        samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
    };
    let mean = samples.iter().sum::<Duration>() / samples.len().max(1) as u32;
    json!({
        "p50_ms": ms(rank(0.50)),
        "p90_ms": ms(rank(0.90)),
        "p99_ms": ms(rank(0.99)),
        "p999_ms": ms(rank(0.999)),
        "max_ms": ms(rank(1.0)),
        "mean_ms": ms(mean),
    })
}
