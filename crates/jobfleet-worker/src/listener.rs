//! The listener: one pub/sub connection per worker process, subscribed to
//! each queue's notify channel (wake the claim loop) and control channel
//! (cancel a running job). After a reconnect it wakes the claim loop, since
//! notifications may have been missed; the fallback poll covers the rest.

use std::sync::Arc;
use std::time::Duration;

use jobfleet_core::Feed;
use tokio_util::sync::CancellationToken;

use crate::worker::Shared;

pub(crate) async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut channels = Vec::new();
    for q in &shared.queues {
        channels.push(q.keys().notify.clone());
        channels.push(q.keys().control.clone());
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
            Some(Feed::Subscribed) => shared.wake.notify_one(),
            Some(Feed::Message { channel, payload }) => {
                if channel.ends_with(":control") {
                    if let Some(id) = payload.strip_prefix("cancel ") {
                        let token = shared.running.lock().expect("poisoned").get(id).cloned();
                        if let Some(token) = token {
                            tracing::info!(job = id, "cancelling a running job");
                            token.cancel();
                        }
                    }
                } else {
                    shared.wake.notify_one();
                }
            }
        }
    }
}
