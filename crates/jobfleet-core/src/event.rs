//! Events: one JSON object per state change a user cares about, published on
//! each queue's events channel by the Lua transitions.

use serde::{Deserialize, Deserializer, Serialize};

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    /// The job ran and succeeded (final).
    Completed,
    /// An attempt failed; a retry is scheduled at `run_at_ms`.
    Failed,
    /// The job was buried: out of attempts or a permanent error (final).
    Dead,
    /// The job was cancelled (final).
    Cancelled,
    /// Its worker died; the job went back to pending.
    Recovered,
    /// The running task reported how far it has come (`progress`, `message`).
    Progress,
}

impl EventKind {
    /// True when the job will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::Completed | EventKind::Dead | EventKind::Cancelled
        )
    }
}

/// One event, as published (a wire format: see `docs/PROTOCOL.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The job id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Its task name.
    pub task: String,
    /// What happened.
    pub state: EventKind,
    /// The attempt it concerns (from 1).
    #[serde(deserialize_with = "lenient_u32")]
    pub attempt: u32,
    /// The worker involved ('' when none, e.g. a cancel of a pending job).
    pub worker: String,
    /// When it happened (Redis unix ms).
    #[serde(deserialize_with = "lenient_u64")]
    pub ms: u64,
    /// How long the attempt ran, ms (completed, failed, dead).
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub duration_ms: Option<u64>,
    /// The task's result (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error (failed, dead, cancelled by the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the retry is due (failed).
    #[serde(
        default,
        deserialize_with = "lenient_opt_u64",
        skip_serializing_if = "Option::is_none"
    )]
    pub run_at_ms: Option<u64>,
    /// The fraction done, 0 to 1 (progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// What the task is doing ('' when it said nothing; progress).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Numbers in events are read leniently: an event is a hint that a waiter
/// must not drop over its number format. A negative figure (Redis' clock
/// stepped back between two stamps) reads as 0, a fraction is truncated, and
/// anything out of range saturates.
fn lenient_number(n: &serde_json::Number) -> u64 {
    if let Some(u) = n.as_u64() {
        u
    } else if n.as_i64().is_some() {
        0
    } else {
        n.as_f64()
            .map_or(0, |f| if f.is_nan() || f < 0.0 { 0 } else { f as u64 })
    }
}

fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    serde_json::Number::deserialize(d).map(|n| lenient_number(&n))
}

fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    lenient_u64(d).map(|n| n.min(u64::from(u32::MAX)) as u32)
}

fn lenient_opt_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<serde_json::Number>::deserialize(d).map(|n| n.as_ref().map(lenient_number))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_read_leniently() {
        let event: Event = serde_json::from_str(
            r#"{"id":"a","queue":"q","task":"t","state":"completed","attempt":1.0,"worker":"w",
                "ms":-3,"duration_ms":-12,"run_at_ms":1.5e3}"#,
        )
        .unwrap();
        assert_eq!(
            (event.attempt, event.ms, event.duration_ms, event.run_at_ms),
            (1, 0, Some(0), Some(1500))
        );
    }
}
