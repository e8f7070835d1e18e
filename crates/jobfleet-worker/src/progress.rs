//! Progress reports from a running task to Redis: at most one write in
//! flight per job, later reports collapsing into the latest, so a task may
//! report as often as it likes. Nothing is spawned until the first report,
//! so a job that never reports costs nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobfleet_core::Queue;
use jobfleet_core::worker_protocol::WorkerProtocol;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::worker::Shared;

/// One attempt's reporter: the job, the worker id it was claimed under, and
/// the channel to the task that writes the reports.
pub(crate) struct Reporter {
    shared: Arc<Shared>,
    queue: String,
    shard: u32,
    worker: String,
    id: String,
    /// The latest report and the task writing it, from the first report on.
    writer: Mutex<Option<Writer>>,
}

/// The sender of the latest report (fraction, message) and its writing task.
type Writer = (watch::Sender<(f64, String)>, JoinHandle<()>);

/// How long the end of an attempt waits for its last report to be written.
const FLUSH_WAIT: Duration = Duration::from_secs(1);

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    pub(crate) fn new(shared: Arc<Shared>, job: &jobfleet_core::ClaimedJob, worker: String) -> Reporter {
        Reporter {
            shared,
            queue: job.queue.clone(),
            shard: job.shard,
            worker,
            id: job.id.clone(),
            writer: Mutex::new(None),
        }
    }

    /// Hands a report to the writer, starting it on the first report. Needs
    /// a tokio runtime, which async and blocking handlers both run on.
    pub(crate) fn report(&self, fraction: f64, message: String) {
        let mut writer = self.writer.lock().expect("poisoned");
        if let Some((latest, _)) = writer.as_ref() {
            latest.send_replace((fraction, message));
            return;
        }
        let Ok(queue) = self.shared.shard(&self.queue, self.shard) else {
            return;
        };
        let (latest, rx) = watch::channel((fraction, message));
        let task = tokio::spawn(write(queue, self.worker.clone(), self.id.clone(), rx));
        *writer = Some((latest, task));
    }

    /// Once the attempt has ended: lets the last report be written (for up
    /// to a second) before the outcome is, so a job that reached 100% says so.
    pub(crate) async fn finish(&self) {
        let taken = self.writer.lock().expect("poisoned").take();
        if let Some((latest, task)) = taken {
            drop(latest);
            let _ = tokio::time::timeout(FLUSH_WAIT, task).await;
        }
    }
}

/// Writes the latest report until the reporter (and so the attempt) is gone.
async fn write(queue: Queue, worker: String, id: String, mut rx: watch::Receiver<(f64, String)>) {
    loop {
        let (fraction, message) = rx.borrow_and_update().clone();
        match queue.progress(&worker, &id, fraction, &message).await {
            Ok(true) => {}
            // Refused: the attempt ended, or the job was given to another worker.
            Ok(false) => return,
            Err(e) => tracing::debug!(job = %id, error = %e, "a progress report was not written"),
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
