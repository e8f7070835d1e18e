//! The recover loop: every half dead-after window, hands the jobs of workers
//! whose heartbeat is too old back to pending. Every worker runs it; the
//! script is atomic, so concurrent runs cannot recover a job twice.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::outage::Outage;
use crate::worker::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut outage = Outage::new("recover", &shared);
    let period = (shared.config.dead_after / 2).max(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        for q in shared.queues().iter() {
            match q.recover(shared.config.dead_after).await {
                Ok(r) => {
                    outage.ok();
                    if r.workers > 0 {
                        tracing::warn!(
                            queue = q.name(),
                            dead_workers = r.workers,
                            requeued = r.requeued,
                            buried = r.buried,
                            "recovered the jobs of workers that stopped beating"
                        );
                    }
                }
                Err(e) => {
                    outage.failed(&e);
                    break;
                }
            }
        }
    }
}
