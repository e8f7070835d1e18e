//! Events: one JSON object per state change a user cares about, published on
//! each queue's events channel by the Lua transitions.

use serde::{Deserialize, Serialize};

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
    pub attempt: u32,
    /// The worker involved ('' when none, e.g. a cancel of a pending job).
    pub worker: String,
    /// When it happened (Redis unix ms).
    pub ms: u64,
    /// How long the attempt ran, ms (completed, failed, dead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// The task's result (completed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error (failed, dead, cancelled by the worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the retry is due (failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<u64>,
}
