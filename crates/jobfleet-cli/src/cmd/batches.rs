//! Submitting a stream of jobs in batches, a few calls in flight at once and
//! results kept in order: what `submit --stdin` and `thumbnail` share.

use std::collections::VecDeque;

use jobfleet_core::{JobSpec, Queue, Submitted};
use tokio::task::JoinHandle;

/// Submit calls in flight at once: enough to hide the round trip, few enough
/// to keep memory bounded however long the input.
const IN_FLIGHT: usize = 4;

/// Batches on their way to Redis.
pub struct Batches {
    queue: Queue,
    in_flight: VecDeque<JoinHandle<jobfleet_core::Result<Vec<Submitted>>>>,
}

impl Batches {
    pub fn new(queue: &Queue) -> Batches {
        Batches {
            queue: queue.clone(),
            in_flight: VecDeque::new(),
        }
    }

    /// Sends a batch; when the pipeline is full, waits for the oldest call
    /// and returns what it submitted.
    pub async fn send(&mut self, specs: Vec<JobSpec>) -> anyhow::Result<Vec<Submitted>> {
        let queue = self.queue.clone();
        self.in_flight
            .push_back(tokio::spawn(async move { queue.submit_batch(&specs).await }));
        if self.in_flight.len() < IN_FLIGHT {
            return Ok(Vec::new());
        }
        self.next().await
    }

    /// Waits for the oldest call in flight; empty when none is left.
    pub async fn next(&mut self) -> anyhow::Result<Vec<Submitted>> {
        match self.in_flight.pop_front() {
            Some(call) => Ok(call.await??),
            None => Ok(Vec::new()),
        }
    }

    /// Whether any call is still in flight.
    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }
}
