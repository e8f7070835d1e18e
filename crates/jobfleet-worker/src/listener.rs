//! The listener: one pub/sub connection per worker process, subscribed to
//! each queue's notify channel (wake the claim loop) and control channel
//! (cancel a running job of that queue). After a reconnect, or when it fell
//! behind, messages may have been missed: it wakes the claim loop, re-reads
//! the cancel flags of the running jobs, and asks for a reconcile.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use jobfleet_core::Feed;
use tokio_util::sync::CancellationToken;

use crate::worker::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut layout = shared.layout.subscribe();
    loop {
        layout.mark_unchanged();
        tokio::select! {
            _ = listen(&shared, &stop) => return,
            // A queue's shard count grew: subscribe to its new shards too.
            _ = layout.changed() => {}
        }
    }
}

async fn listen(shared: &Arc<Shared>, stop: &CancellationToken) {
    let mut channels = Vec::new();
    // Control channel -> its queue: a cancel names an id within one queue.
    let mut control: HashMap<String, String> = HashMap::new();
    for q in shared.queues().iter() {
        channels.push(q.keys().notify.clone());
        channels.push(q.keys().control.clone());
        control.insert(q.keys().control.clone(), q.name().to_string());
    }
    let mut subscription = loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            sub = shared.client.subscribe(channels.clone(), vec![]) => match sub {
                Ok(sub) => break sub,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to notifications yet; polling meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    loop {
        let feed = tokio::select! {
            _ = stop.cancelled() => return,
            feed = subscription.next() => feed,
        };
        match feed {
            None => return,
            // `subscribe` returned once subscribed: each of these is a
            // resubscription or a loss.
            Some(Feed::Subscribed | Feed::Lagged) => {
                shared.wake.notify_one();
                shared.reconcile_due.store(true, Ordering::Release);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = recheck_cancels(shared) => {}
                }
            }
            Some(Feed::Message { channel, payload }) => match control.get(&channel) {
                Some(queue) => {
                    if let Some(id) = payload.strip_prefix("cancel ") {
                        cancel(shared, queue, id);
                    }
                }
                None => shared.wake.notify_one(),
            },
        }
    }
}

fn cancel(shared: &Shared, queue: &str, id: &str) {
    let token = shared
        .running
        .lock()
        .expect("poisoned")
        .get(&(queue.to_string(), id.to_string()))
        .cloned();
    if let Some(token) = token {
        tracing::info!(queue, job = id, "cancelling a running job");
        token.cancel();
    }
}

/// Cancel messages published while we were not subscribed are lost: read
/// the running jobs' cancel flags instead (retried until Redis answers).
async fn recheck_cancels(shared: &Shared) {
    for q in shared.queues().iter() {
        let ids: Vec<String> = {
            let running = shared.running.lock().expect("poisoned");
            running
                .keys()
                .filter(|(queue, _)| queue == q.name())
                .map(|(_, id)| id.clone())
                .collect()
        };
        let mut backoff = Duration::from_millis(100);
        let flags = loop {
            match q.cancel_requested(&ids).await {
                Ok(flags) => break flags,
                Err(e) => {
                    tracing::debug!(error = %e, "re-reading cancel flags failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        };
        for (id, flagged) in ids.iter().zip(flags) {
            if flagged {
                cancel(shared, q.name(), id);
            }
        }
    }
}
