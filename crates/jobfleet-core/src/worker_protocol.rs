//! The worker's side of the protocol: claim, ack, fail, heartbeat and the
//! recovery passes. A producer never needs these; they are a trait of their
//! own so that [`Queue`](crate::Queue)'s own methods are the producer's API (submit,
//! enqueue, status, cancel, stats, dead jobs). A worker written in Rust
//! imports the trait:
//!
//! ```no_run
//! use jobfleet_core::worker_protocol::WorkerProtocol;
//!
//! # async fn run(queue: jobfleet_core::Queue) -> jobfleet_core::Result<()> {
//! queue.heartbeat("worker-1", true).await?;
//! for job in queue.claim("worker-1", 10).await? {
//!     queue.ack("worker-1", &[(job.id, "null".to_string())]).await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! docs/PROTOCOL.md ("Writing a compatible worker") describes the same steps
//! for any language.

use std::future::Future;
use std::time::Duration;

use crate::queue::{FailOutcome, Recovered};
use crate::{ClaimedJob, FailKind, Result};

/// Claim, ack, fail, heartbeat and recovery on a [`Queue`](crate::Queue) (one
/// shard of it: a worker serves each shard, see [`Queue::shards`](crate::Queue::shards)).
pub trait WorkerProtocol {
    /// Claims up to `n` jobs for `worker`, moving them from pending into its
    /// processing list. Fails with [`Error::WorkerRecovered`](crate::Error::WorkerRecovered) when the worker
    /// is no longer registered.
    fn claim(&self, worker: &str, n: usize) -> impl Future<Output = Result<Vec<ClaimedJob>>> + Send {
        self.claim_for(worker, n, &[])
    }

    /// Claims like [`WorkerProtocol::claim`], but only jobs of `tasks` (all
    /// tasks when empty): a pending job of another task is parked for a
    /// worker that runs it, never claimed and failed here. A paused queue
    /// gives nothing.
    fn claim_for(
        &self,
        worker: &str,
        n: usize,
        tasks: &[String],
    ) -> impl Future<Output = Result<Vec<ClaimedJob>>> + Send;

    /// Completes jobs `worker` holds, in one script call. `results` pairs
    /// each id with its result as JSON text. Returns, per job, whether the ack
    /// was applied (false: refused by the fence, the worker no longer held it).
    fn ack(
        &self,
        worker: &str,
        results: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<bool>>> + Send;

    /// Records how far a job `worker` runs has come (`fraction` from 0 to 1,
    /// and what it is doing) and publishes a `progress` event. Returns false
    /// when refused: the job is no longer this worker's to report on.
    fn progress(
        &self,
        worker: &str,
        id: &str,
        fraction: f64,
        message: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records a failed attempt of a job `worker` holds.
    fn fail(
        &self,
        worker: &str,
        id: &str,
        error: &str,
        kind: FailKind,
    ) -> impl Future<Output = Result<FailOutcome>> + Send;

    /// Registers (`register`) or refreshes `worker`'s heartbeat. Returns the
    /// Redis time, or `None` when a refresh found the worker recovered.
    fn heartbeat(&self, worker: &str, register: bool) -> impl Future<Output = Result<Option<u64>>> + Send;

    /// Hands the jobs of workers silent for longer than `dead_after` back to
    /// pending (or buries poison pills). Safe to run from many workers.
    fn recover(&self, dead_after: Duration) -> impl Future<Output = Result<Recovered>> + Send;

    /// Moves up to `limit` due jobs from scheduled to pending.
    fn promote_due(&self, limit: usize) -> impl Future<Output = Result<u64>> + Send;

    /// Hands every job `worker` holds back to pending (its attempt is not
    /// counted); with `leave`, also removes the worker from the queue.
    fn requeue(&self, worker: &str, leave: bool) -> impl Future<Output = Result<u64>> + Send;

    /// Hands back every job in `worker`'s processing list that is not in
    /// `held` (the jobs it runs or has yet to write back): for after a claim
    /// whose reply was lost, or an outcome Redis rolled back (a failover, a
    /// crash before fsync). Jobs whose cancel was requested end cancelled.
    /// Returns how many were handed back.
    fn reconcile(&self, worker: &str, held: &[String]) -> impl Future<Output = Result<u64>> + Send;

    /// Which of `ids` have had their cancel requested (the record's `cancel`
    /// flag), in one pipelined round trip: for a worker that may have missed
    /// the control message while it was resubscribing.
    fn cancel_requested(&self, ids: &[String]) -> impl Future<Output = Result<Vec<bool>>> + Send;
}
