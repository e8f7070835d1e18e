//! The claim loop: take free slots first, then claim that many jobs (one
//! script call per queue, highest priority first), start each on its slot,
//! and sleep until notified (or the fallback poll) when there is no work.
//!
//! It is also the one place that reconciles (hands back what our processing
//! lists hold that we do not run), so a reconcile never races a claim whose
//! jobs are not yet recorded as held.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jobfleet_core::{ClaimedJob, Error};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::acker::Done;
use crate::outage::Outage;
use crate::runner;
use crate::worker::Shared;

/// The most jobs one claim call asks for.
const MAX_CLAIM_BATCH: usize = 256;

/// What one round of claim calls across the queues got.
struct Claim {
    /// The worker id the jobs were claimed under.
    worker: String,
    jobs: Vec<ClaimedJob>,
    /// A queue answered that this id was recovered: re-register.
    recovered: bool,
    /// A later queue's call failed after earlier ones succeeded.
    failed: Option<Error>,
}

/// Claims and starts jobs until `shutdown` resolves.
pub(crate) async fn run(
    shared: &Arc<Shared>,
    jobs: &mut JoinSet<()>,
    done: mpsc::UnboundedSender<Done>,
    hand_back: CancellationToken,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let slots = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut outage = Outage::new("claim", shared);
    let mut next_reconcile = Instant::now() + shared.config.reconcile_interval;
    loop {
        // A slot before a claim: never hold a job that cannot start.
        let first = tokio::select! {
            biased;
            _ = &mut shutdown => return,
            Some(_) = jobs.join_next(), if !jobs.is_empty() => continue,
            permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let mut permits = vec![first];
        while permits.len() < MAX_CLAIM_BATCH {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        if shared.reconcile_due.swap(false, Ordering::AcqRel) || Instant::now() >= next_reconcile {
            match reconcile(shared).await {
                Ok(()) => next_reconcile = Instant::now() + shared.config.reconcile_interval,
                Err(e) => {
                    shared.reconcile_due.store(true, Ordering::Release);
                    drop(permits);
                    if back_off(&mut shutdown, outage.failed(&e)).await {
                        return;
                    }
                    continue;
                }
            }
        }
        let claim = match claim(shared, permits.len()).await {
            Ok(claim) => claim,
            Err(e) => {
                // Redis may have run the claim and lost the reply, leaving
                // jobs in our processing list that nothing runs.
                shared.reconcile_due.store(true, Ordering::Release);
                drop(permits);
                if back_off(&mut shutdown, outage.failed(&e)).await {
                    return;
                }
                continue;
            }
        };
        let idle = claim.jobs.is_empty() && !claim.recovered && claim.failed.is_none();
        if claim.failed.is_none() {
            outage.ok();
        }
        if !claim.jobs.is_empty() {
            crate::metrics::claim_batch(claim.jobs.len());
        }
        let mut permits = permits.into_iter();
        start(
            shared,
            jobs,
            &done,
            &hand_back,
            &claim.worker,
            claim.jobs,
            &mut permits,
        );
        drop(permits);
        if claim.recovered {
            // What was claimed from the queues before the one that refused
            // runs under the old id, which is kept beating until it is written.
            shared.reregister(&claim.worker).await;
        }
        if let Some(e) = claim.failed {
            shared.reconcile_due.store(true, Ordering::Release);
            if back_off(&mut shutdown, outage.failed(&e)).await {
                return;
            }
        } else if idle {
            // Idle: wait for a notification or the fallback poll, reaping
            // finished jobs meanwhile without claiming again.
            let poll = tokio::time::sleep(shared.config.poll_interval);
            tokio::pin!(poll);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut shutdown => return,
                    _ = shared.wake.notified() => break,
                    _ = &mut poll => break,
                    Some(_) = jobs.join_next(), if !jobs.is_empty() => {}
                }
            }
        }
    }
}

/// Waits `wait` after a failed call; true when shutdown came first.
async fn back_off(
    shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    wait: std::time::Duration,
) -> bool {
    tokio::select! {
        _ = shutdown.as_mut() => true,
        _ = tokio::time::sleep(wait) => false,
    }
}

/// Records the claimed jobs as held and starts each on one of `permits`.
fn start(
    shared: &Arc<Shared>,
    jobs: &mut JoinSet<()>,
    done: &mpsc::UnboundedSender<Done>,
    hand_back: &CancellationToken,
    worker: &str,
    claimed: Vec<ClaimedJob>,
    permits: &mut impl Iterator<Item = tokio::sync::OwnedSemaphorePermit>,
) {
    shared.held.lock().expect("poisoned").extend(
        claimed
            .iter()
            .map(|j| ((j.queue.clone(), j.id.clone()), worker.to_string())),
    );
    for job in claimed {
        let permit = permits.next().expect("never more jobs than permits");
        let cancel = CancellationToken::new();
        {
            let mut running = shared.running.lock().expect("poisoned");
            running.insert((job.queue.clone(), job.id.clone()), cancel.clone());
            crate::metrics::in_flight(running.len());
        }
        let (shared, done, hand_back, worker) = (
            shared.clone(),
            done.clone(),
            hand_back.clone(),
            worker.to_string(),
        );
        let (span, trace) = job_span(&job);
        let reporter = Arc::new(crate::progress::Reporter::new(
            shared.clone(),
            &job,
            worker.clone(),
        ));
        let work = async move {
            let started = std::time::Instant::now();
            let outcome = runner::run(
                &shared.registry,
                &job,
                cancel,
                hand_back,
                shared.client.policy(),
                trace,
                Some(reporter.clone()),
            )
            .await;
            reporter.finish().await;
            tracing::debug!(
                ms = started.elapsed().as_millis() as u64,
                outcome = match &outcome {
                    Some(runner::Outcome::Completed(_)) => "completed",
                    Some(runner::Outcome::Failed(..)) => "failed",
                    None => "handed back",
                },
                "attempt ended"
            );
            crate::metrics::job_duration(&job.queue, &job.task, started.elapsed());
            {
                let mut running = shared.running.lock().expect("poisoned");
                running.remove(&(job.queue.clone(), job.id.clone()));
                crate::metrics::in_flight(running.len());
            }
            if let Some(outcome) = outcome {
                shared.processed.fetch_add(1, Ordering::Relaxed);
                let _ = done.send(Done { worker, job, outcome });
            }
            drop(permit);
        };
        jobs.spawn(tracing::Instrument::instrument(work, span));
    }
}

/// The span of one attempt. A job submitted with a `traceparent` gets a span
/// of its own in that trace, the submitted span as its parent; the span's
/// fields name both, so logs join the producer's trace.
fn job_span(job: &ClaimedJob) -> (tracing::Span, Option<jobfleet_core::TraceContext>) {
    let empty = tracing::field::Empty;
    let span = tracing::info_span!(
        "job",
        id = %job.id,
        queue = %job.queue,
        task = %job.task,
        attempt = job.attempt,
        trace_id = empty,
        span_id = empty,
        parent_span_id = empty,
    );
    let parent = job
        .traceparent
        .as_deref()
        .and_then(|t| jobfleet_core::TraceContext::parse(t).ok());
    let trace = parent.map(|parent| {
        // Exported spans take their span id from the exporter's tracer.
        #[cfg(feature = "otel")]
        let own = crate::otel::adopt(&span, &parent.to_string()).unwrap_or_else(|| parent.child());
        #[cfg(not(feature = "otel"))]
        let own = parent.child();
        span.record("trace_id", format!("{:032x}", own.trace_id));
        span.record("span_id", format!("{:016x}", own.span_id));
        span.record("parent_span_id", format!("{:016x}", parent.span_id));
        own
    });
    (span, trace)
}

/// The shard handles in priority order (or, with `weights`, in an order
/// drawn by weight), each queue's shards rotated to start at a random one.
fn claim_order(queues: &[jobfleet_core::Queue], weights: &[u32]) -> Vec<jobfleet_core::Queue> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < queues.len() {
        let name = queues[start].name();
        let end = start + queues[start..].iter().take_while(|q| q.name() == name).count();
        groups.push(&queues[start..end]);
        start = end;
    }
    if !weights.is_empty() {
        // Weighted sampling without replacement (Efraimidis and Spirakis):
        // sort by u^(1/w), u uniform in (0, 1).
        let mut keyed: Vec<(f64, &[jobfleet_core::Queue])> = groups
            .into_iter()
            .zip(weights.iter().chain(std::iter::repeat(&1)))
            .map(|(g, &w)| (rand::random::<f64>().powf(1.0 / f64::from(w.max(1))), g))
            .collect();
        keyed.sort_by(|a, b| b.0.total_cmp(&a.0));
        groups = keyed.into_iter().map(|(_, g)| g).collect();
    }
    let mut order = Vec::with_capacity(queues.len());
    for group in groups {
        let first = rand::random_range(0..group.len());
        order.extend(group[first..].iter().chain(&group[..first]).cloned());
    }
    order
}

/// Hands back whatever our processing lists hold that we do not know of,
/// under the current id and under retired ones; a retired id that holds
/// nothing any more leaves the queues.
async fn reconcile(shared: &Shared) -> jobfleet_core::Result<()> {
    let current = shared.id();
    let retired: Vec<String> = shared.retired.lock().expect("poisoned").clone();
    let queues = shared.queues();
    for worker in std::iter::once(&current).chain(&retired) {
        let mut holds = false;
        for q in queues.iter() {
            let held = shared.held_in(q.name(), worker);
            holds |= !held.is_empty();
            let n = q.reconcile(worker, &held).await?;
            if n > 0 {
                tracing::warn!(
                    queue = q.name(),
                    jobs = n,
                    "handed back jobs our processing list held but no task ran (a claim reply \
                     lost, or an outcome Redis rolled back)"
                );
            }
        }
        if *worker != current && !holds {
            for q in queues.iter() {
                q.requeue(worker, true).await?;
            }
            shared.retired.lock().expect("poisoned").retain(|r| r != worker);
        }
    }
    Ok(())
}

/// Claims up to `n` jobs across the queues in priority order. The shards of
/// one queue are tried from a random one on, so none starves. A refusal or
/// an error from a later queue keeps what earlier ones gave.
async fn claim(shared: &Shared, n: usize) -> jobfleet_core::Result<Claim> {
    let mut claim = Claim {
        worker: shared.id(),
        jobs: Vec::new(),
        recovered: false,
        failed: None,
    };
    for q in claim_order(&shared.queues(), &shared.config.weights) {
        let started = std::time::Instant::now();
        match q
            .claim_for(&claim.worker, n - claim.jobs.len(), &shared.tasks)
            .await
        {
            Ok(jobs) => claim.jobs.extend(jobs),
            Err(Error::WorkerRecovered(_)) => {
                claim.recovered = true;
                break;
            }
            Err(e) if claim.jobs.is_empty() => return Err(e),
            Err(e) => {
                claim.failed = Some(e);
                break;
            }
        }
        crate::metrics::redis_call("claim", started.elapsed());
        if claim.jobs.len() == n {
            break;
        }
    }
    Ok(claim)
}
