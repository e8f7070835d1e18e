//! The claim loop: take free slots first, then claim that many jobs (one
//! script call per queue, highest priority first), start each on its slot,
//! and sleep until notified (or the fallback poll) when there is no work.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use jobfleet_core::{ClaimedJob, Error};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::acker::Done;
use crate::outage::Outage;
use crate::runner;
use crate::worker::Shared;

/// The most jobs one claim call asks for.
const MAX_CLAIM_BATCH: usize = 256;

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
    let mut outage = Outage::new("claim");
    // Set when a claim failed: Redis may have run it and lost the reply,
    // leaving jobs in our processing list that nothing runs.
    let mut unsure = false;
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
        if unsure {
            match reconcile(shared).await {
                Ok(()) => unsure = false,
                Err(e) => {
                    drop(permits);
                    let wait = outage.failed(&e);
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            }
        }
        match claim(shared, permits.len()).await {
            Ok((worker, claimed)) if !claimed.is_empty() => {
                outage.ok();
                crate::metrics::claim_batch(claimed.len());
                shared
                    .held
                    .lock()
                    .expect("poisoned")
                    .extend(claimed.iter().map(|j| j.id.clone()));
                for (job, permit) in claimed.into_iter().zip(permits) {
                    let cancel = tokio_util::sync::CancellationToken::new();
                    {
                        let mut running = shared.running.lock().expect("poisoned");
                        running.insert(job.id.clone(), cancel.clone());
                        crate::metrics::in_flight(running.len());
                    }
                    let (shared, done, hand_back, worker) =
                        (shared.clone(), done.clone(), hand_back.clone(), worker.clone());
                    jobs.spawn(async move {
                        let started = std::time::Instant::now();
                        let outcome = runner::run(&shared.registry, &job, cancel, hand_back).await;
                        crate::metrics::job_duration(&job.queue, &job.task, started.elapsed());
                        {
                            let mut running = shared.running.lock().expect("poisoned");
                            running.remove(&job.id);
                            crate::metrics::in_flight(running.len());
                        }
                        if let Some(outcome) = outcome {
                            shared.processed.fetch_add(1, Ordering::Relaxed);
                            let _ = done.send(Done { worker, job, outcome });
                        }
                        drop(permit);
                    });
                }
            }
            Ok(_) => {
                outage.ok();
                drop(permits);
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
            Err(Error::WorkerRecovered(stale)) => shared.reregister(&stale).await,
            Err(e) => {
                unsure = true;
                drop(permits);
                let wait = outage.failed(&e);
                tokio::select! {
                    _ = &mut shutdown => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

/// Hands back whatever our processing lists hold that we do not know of.
async fn reconcile(shared: &Shared) -> jobfleet_core::Result<()> {
    let worker = shared.id();
    let held: Vec<String> = shared.held.lock().expect("poisoned").iter().cloned().collect();
    for q in &shared.queues {
        let n = q.reconcile(&worker, &held).await?;
        if n > 0 {
            tracing::warn!(
                queue = q.name(),
                jobs = n,
                "handed back jobs claimed by a call whose reply was lost"
            );
        }
    }
    Ok(())
}

/// Claims up to `n` jobs across the queues in priority order; returns the
/// worker id they were claimed under with the jobs.
async fn claim(shared: &Shared, n: usize) -> jobfleet_core::Result<(String, Vec<ClaimedJob>)> {
    let worker = shared.id();
    let mut claimed = Vec::new();
    for q in &shared.queues {
        let started = std::time::Instant::now();
        claimed.extend(q.claim(&worker, n - claimed.len()).await?);
        crate::metrics::redis_call("claim", started.elapsed());
        if claimed.len() == n {
            break;
        }
    }
    Ok((worker, claimed))
}
