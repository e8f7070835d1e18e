//! The promote loop: moves due jobs (delays and retry backoffs) from
//! scheduled to pending, judged by Redis' clock.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::outage::Outage;
use crate::worker::Shared;

/// Jobs moved per script call; a larger backlog takes several calls.
const BATCH: usize = 1000;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut outage = Outage::new("promote", &shared);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.promote_interval) => {}
        }
        'queues: for q in shared.queues().iter() {
            loop {
                match q.promote_due(BATCH).await {
                    Ok(moved) => {
                        outage.ok();
                        if moved < BATCH as u64 {
                            break;
                        }
                    }
                    Err(e) => {
                        outage.failed(&e);
                        break 'queues;
                    }
                }
            }
        }
    }
}
