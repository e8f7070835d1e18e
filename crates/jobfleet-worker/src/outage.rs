//! Logs a Redis outage once when it starts and once when it ends, instead of
//! once per failed call, and gives the backoff to wait before trying again.
//! When an outage ends it asks for a reconcile: the Redis that answers now
//! may be a promoted replica, or a restart, that lost recent writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::worker::Shared;

/// One background loop's view of whether Redis is reachable.
#[derive(Debug)]
pub(crate) struct Outage {
    what: &'static str,
    down: bool,
    backoff: Duration,
    /// Set when an outage ends (the worker's `reconcile_due`).
    reconcile: Arc<AtomicBool>,
}

impl Outage {
    pub(crate) fn new(what: &'static str, shared: &Shared) -> Outage {
        Outage {
            what,
            down: false,
            backoff: Duration::from_millis(100),
            reconcile: shared.reconcile_due.clone(),
        }
    }

    /// Records a failure; returns how long to wait before the next try.
    pub(crate) fn failed(&mut self, error: &jobfleet_core::Error) -> Duration {
        if !self.down {
            crate::metrics::outage(self.what);
            tracing::warn!(%error, "{}: redis unavailable; retrying with backoff", self.what);
            self.down = true;
        } else {
            tracing::debug!(%error, "{}: still failing", self.what);
        }
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(2));
        wait
    }

    /// Records a success.
    pub(crate) fn ok(&mut self) {
        if self.down {
            tracing::info!("{}: redis reachable again", self.what);
            self.down = false;
            self.reconcile.store(true, Ordering::Release);
        }
        self.backoff = Duration::from_millis(100);
    }
}
