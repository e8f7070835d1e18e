//! The heartbeat loop: refreshes this worker's entry in each queue's workers
//! set and its description, on a timer independent of task load. A refresh
//! that finds the entry gone means the fleet declared this worker dead.
//! Ids retired by a re-registration are refreshed too while they hold jobs.
//! Each beat also reads the queues' shard counts, so a raised count is
//! served within one heartbeat.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::sync::Arc;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::outage::Outage;
use crate::worker::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut outage = Outage::new("heartbeat", &shared);
    let mut tick = tokio::time::interval(shared.config.heartbeat);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match beat(&shared).await {
            Ok(()) => outage.ok(),
            Err(e) => {
                outage.failed(&e);
            }
        }
    }
}

async fn beat(shared: &Shared) -> jobfleet_core::Result<()> {
    let id = shared.id();
    let mut recovered = false;
    // Each shard is beaten on its own: one node that is down (a Cluster
    // failing over) must not make this worker look dead on the others.
    let mut failed = None;
    if let Err(e) = shared.refresh_shards().await {
        failed = Some(e);
    }
    let queues = shared.queues();
    for q in queues.iter() {
        match q.heartbeat(&id, false).await {
            Ok(beat) => recovered |= beat.is_none(),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    // Ids retired by a re-registration still hold jobs in queues where they
    // were not recovered: keep them alive there until those are written
    // (the claim loop's reconcile retires them for good).
    let retired: Vec<String> = shared.retired.lock().expect("poisoned").clone();
    for old in &retired {
        for q in queues.iter() {
            if let Err(e) = q.heartbeat(old, false).await {
                failed = failed.or(Some(e));
            }
        }
    }
    if recovered {
        shared.reregister(&id).await;
    }
    shared
        .client
        .publish_worker_info(&shared.info(), shared.info_ttl())
        .await?;
    failed.map_or(Ok(()), Err)
}
