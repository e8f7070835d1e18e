//! The promote loop: moves due jobs (delays and retry backoffs) from
//! scheduled to pending, judged by Redis' clock, and every 250 ms fires
//! the due schedules of the queues served (every worker does; the
//! script makes each tick fire once).

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::outage::Outage;
use crate::worker::Shared;

/// Jobs moved per script call; a larger backlog takes several calls.
const BATCH: usize = 1000;

/// How often due schedules are looked for: a tick fires within this much
/// (well under the shortest interval, 1 s, so a tick is not found so late
/// that it counts as missed).
const SCHEDULES_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut outage = Outage::new("promote", &shared);
    let mut schedules_due = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(shared.config.promote_interval) => {}
        }
        if tokio::time::Instant::now() >= schedules_due {
            schedules_due = tokio::time::Instant::now() + SCHEDULES_EVERY;
            // Schedules live on each queue's shard 0.
            for q in shared.queues().iter().filter(|q| q.shard() == 0) {
                match q.fire_due_schedules().await {
                    Ok(n) if n > 0 => tracing::debug!(queue = q.name(), jobs = n, "fired schedules"),
                    Ok(_) => {}
                    Err(e) => {
                        outage.failed(&e);
                        break;
                    }
                }
            }
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
