//! Prometheus metrics of a worker process. The recording calls are no-ops
//! until [`install`] sets up the exporter (`jobfleet-worker --metrics ADDR`).
//!
//! Series: `jobfleet_jobs_total{queue,task,outcome}` (completed, retried,
//! dead, cancelled, refused), `jobfleet_job_duration_seconds{queue,task}`,
//! `jobfleet_jobs_in_flight`, `jobfleet_claim_batch_size`,
//! `jobfleet_redis_call_seconds{op}`, `jobfleet_redis_outages_total{loop}`,
//! `jobfleet_unconfirmed_writes_total` (outcomes `--replicas` did not confirm).

use std::net::SocketAddr;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Serves `/metrics` on `addr` for the rest of the process.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    const SECONDS: [f64; 14] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
    ];
    const BATCH: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Full("jobfleet_claim_batch_size".into()), &BATCH))
        .map_err(|e| e.to_string())?
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
    describe();
    Ok(())
}

/// The `# HELP` and unit of every series.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "jobfleet_jobs_total",
        Unit::Count,
        "Attempts that ended, by outcome: completed, retried, dead, cancelled, refused."
    );
    describe_histogram!(
        "jobfleet_job_duration_seconds",
        Unit::Seconds,
        "How long an attempt ran, from claim to outcome."
    );
    describe_gauge!(
        "jobfleet_jobs_in_flight",
        Unit::Count,
        "Jobs this worker is running now."
    );
    describe_histogram!(
        "jobfleet_claim_batch_size",
        Unit::Count,
        "Jobs taken by one claim."
    );
    describe_histogram!(
        "jobfleet_redis_call_seconds",
        Unit::Seconds,
        "Round trip of the worker's Redis calls, by operation."
    );
    describe_counter!(
        "jobfleet_redis_outages_total",
        Unit::Count,
        "Times one of the worker's loops lost Redis, by loop."
    );
    describe_counter!(
        "jobfleet_unconfirmed_writes_total",
        Unit::Count,
        "Acks and fails that --replicas did not confirm in time."
    );
}

pub(crate) fn job_finished(queue: &str, task: &str, outcome: &'static str) {
    metrics::counter!("jobfleet_jobs_total", "queue" => queue.to_string(), "task" => task.to_string(), "outcome" => outcome)
        .increment(1);
}

pub(crate) fn job_duration(queue: &str, task: &str, took: Duration) {
    metrics::histogram!("jobfleet_job_duration_seconds", "queue" => queue.to_string(), "task" => task.to_string())
        .record(took.as_secs_f64());
}

pub(crate) fn in_flight(running: usize) {
    metrics::gauge!("jobfleet_jobs_in_flight").set(running as f64);
}

pub(crate) fn claim_batch(n: usize) {
    metrics::histogram!("jobfleet_claim_batch_size").record(n as f64);
}

pub(crate) fn redis_call(op: &'static str, took: Duration) {
    metrics::histogram!("jobfleet_redis_call_seconds", "op" => op).record(took.as_secs_f64());
}

pub(crate) fn outage(what: &'static str) {
    metrics::counter!("jobfleet_redis_outages_total", "loop" => what).increment(1);
}

pub(crate) fn unconfirmed_writes(total: u64) {
    metrics::counter!("jobfleet_unconfirmed_writes_total").absolute(total);
}
