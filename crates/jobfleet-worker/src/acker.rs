//! The acker: writes job outcomes back to Redis. Completions that arrive
//! together are written in one ack script call per queue, so acks of many
//! concurrent jobs cost one round trip. A write that fails (Redis away) is
//! retried with backoff; nothing is dropped.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::HashMap;
use std::sync::Arc;

use jobfleet_core::{ClaimedJob, FailOutcome};
use tokio::sync::mpsc;

use crate::outage::Outage;
use crate::runner::Outcome;
use crate::worker::Shared;

/// Outcomes written per round.
const MAX_BATCH: usize = 1024;

/// One finished attempt, waiting to be written.
#[derive(Debug)]
pub(crate) struct Done {
    /// The worker id the job was claimed under (the fence checks it).
    pub(crate) worker: String,
    pub(crate) job: ClaimedJob,
    pub(crate) outcome: Outcome,
}

/// Writes outcomes until every sender is gone and all are written.
pub(crate) async fn run(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut outage = Outage::new("ack", &shared);
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        // A write that failed may still have been applied (the reply was
        // lost): its retry is then refused by the fence, which is no news.
        let mut retrying = false;
        while !batch.is_empty() {
            let written = write(&shared, &mut batch, retrying).await;
            crate::metrics::unconfirmed_writes(shared.client.unconfirmed_writes());
            match written {
                Ok(()) => outage.ok(),
                Err(e) => {
                    retrying = true;
                    tokio::time::sleep(outage.failed(&e)).await
                }
            }
        }
    }
}

/// Writes the batch, removing what was written; on error the unwritten rest
/// stays in `batch`.
async fn write(shared: &Shared, batch: &mut Vec<Done>, retrying: bool) -> jobfleet_core::Result<()> {
    // Completions, grouped by (queue, worker), one script call per group.
    let mut groups: HashMap<(String, u32, String), Vec<usize>> = HashMap::new();
    for (i, done) in batch.iter().enumerate() {
        if matches!(done.outcome, Outcome::Completed(_)) {
            groups
                .entry((done.job.queue.clone(), done.job.shard, done.worker.clone()))
                .or_default()
                .push(i);
        }
    }
    let mut written = vec![false; batch.len()];
    let mut refusals = Vec::new();
    let result = async {
        for ((queue, shard, worker), indices) in &groups {
            let q = shared.shard(queue, *shard)?;
            let results: Vec<(String, String)> = indices
                .iter()
                .map(|&i| match &batch[i].outcome {
                    Outcome::Completed(result) => (batch[i].job.id.clone(), result.clone()),
                    Outcome::Failed(..) => unreachable!("only completions are grouped"),
                })
                .collect();
            let started = std::time::Instant::now();
            let applied = q.ack(worker, &results).await?;
            crate::metrics::redis_call("ack", started.elapsed());
            for (&i, applied) in indices.iter().zip(applied) {
                written[i] = true;
                let job = &batch[i].job;
                if applied {
                    crate::metrics::job_finished(&job.queue, &job.task, "completed");
                } else {
                    refusals.push(i);
                }
            }
        }
        for (i, done) in batch.iter().enumerate() {
            let Outcome::Failed(kind, message) = &done.outcome else { continue };
            let q = shared.shard(&done.job.queue, done.job.shard)?;
            let started = std::time::Instant::now();
            let outcome = q.fail(&done.worker, &done.job.id, message, *kind).await?;
            crate::metrics::redis_call("fail", started.elapsed());
            written[i] = true;
            let label = match outcome {
                FailOutcome::Scheduled { .. } => "retried",
                FailOutcome::Dead => "dead",
                FailOutcome::Cancelled => "cancelled",
                FailOutcome::Stale => {
                    refusals.push(i);
                    continue;
                }
            };
            crate::metrics::job_finished(&done.job.queue, &done.job.task, label);
            let (id, task, attempt) = (&done.job.id, &done.job.task, done.job.attempt);
            match outcome {
                FailOutcome::Scheduled { .. } => {
                    tracing::info!(job = %id, task = %task, attempt, error = %message, "job failed; retry scheduled")
                }
                FailOutcome::Dead => {
                    tracing::warn!(job = %id, task = %task, attempt, error = %message, "job is dead")
                }
                FailOutcome::Cancelled => tracing::info!(job = %id, task = %task, "job cancelled"),
                FailOutcome::Stale => unreachable!("refusals are reported below"),
            }
        }
        Ok(())
    }
    .await;
    for i in refusals {
        refused(shared, &batch[i], retrying).await;
    }
    {
        // Written (applied or refused): no longer ours in Redis.
        let mut held = shared.held.lock().expect("poisoned");
        for (done, &w) in batch.iter().zip(&written) {
            if w {
                held.remove(&(done.job.queue.clone(), done.job.id.clone()));
            }
        }
    }
    let mut keep = written.into_iter();
    batch.retain(|_| !keep.next().expect("one flag per outcome"));
    result
}

/// Reports an outcome the fence refused. When retrying after a failed
/// write, the refusal may be our own earlier write whose reply was lost: the
/// job's record then shows this worker's outcome, and there is nothing to say.
async fn refused(shared: &Shared, done: &Done, retrying: bool) {
    let (queue, id) = (&done.job.queue, &done.job.id);
    if retrying
        && let Ok(q) = shared.shard(queue, done.job.shard)
        && let Ok(Some(job)) = q.status(id).await
        && job.worker.as_deref() == Some(done.worker.as_str())
        && job.state != jobfleet_core::JobState::Active
    {
        tracing::debug!(job = %id, "outcome already written; its reply had been lost");
        return;
    }
    crate::metrics::job_finished(queue, &done.job.task, "refused");
    tracing::warn!(
        job = %id,
        worker = %done.worker,
        "outcome refused: this worker no longer holds the job (it was declared dead and the job \
         was handed to another worker), so the result is discarded"
    );
}
