//! Runs one claimed job: looks up its task (which parses the payload), enforces its
//! timeout, catches a panicking handler and honours cancellation. Whatever
//! happens becomes an [`Outcome`] value; nothing here can stop the worker.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use jobfleet_core::{ClaimedJob, FailKind, Policy};
use tokio_util::sync::CancellationToken;

use crate::task::{JobContext, Registry, TaskError};

/// How an attempt ended, to be written back by the acker.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Succeeded with this result (JSON text).
    Completed(String),
    /// Failed.
    Failed(FailKind, String),
}

/// Why a running job was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Someone cancelled the job.
    Cancelled,
    /// The worker is shutting down past its grace period: the job will be
    /// handed back, so no outcome is recorded.
    HandBack,
}

/// Runs `job`; `None` means it was stopped for hand-back. A result over the
/// policy's size limit fails the job permanently (results are spliced into
/// events and kept in the job's record).
pub(crate) async fn run(
    registry: &Registry,
    job: &ClaimedJob,
    cancel: CancellationToken,
    hand_back: CancellationToken,
    policy: &Policy,
    trace: Option<jobfleet_core::TraceContext>,
    reporter: Option<std::sync::Arc<crate::progress::Reporter>>,
) -> Option<Outcome> {
    let Some(handler) = registry.get(&job.task) else {
        let message = if job.task.is_empty() {
            "job record has no task name".to_string()
        } else {
            format!(
                "unknown task '{}': this worker runs {}",
                job.task,
                registry.names().join(", ")
            )
        };
        return Some(Outcome::Failed(FailKind::Permanent, message));
    };
    let ctx = JobContext {
        id: job.id.clone(),
        queue: job.queue.clone(),
        task: job.task.clone(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        cancel: cancel.clone(),
        trace,
        reporter,
    };
    let work = AssertUnwindSafe(handler(ctx, job.payload.clone())).catch_unwind();
    let timeout = if job.timeout.is_zero() {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        job.timeout
    };
    let stopped = async {
        tokio::select! {
            _ = cancel.cancelled() => Stop::Cancelled,
            _ = hand_back.cancelled() => Stop::HandBack,
        }
    };
    let result = tokio::select! {
        result = tokio::time::timeout(timeout, work) => result,
        stop = stopped => {
            return match stop {
                Stop::Cancelled => Some(Outcome::Failed(FailKind::Cancelled, "cancelled while running".into())),
                Stop::HandBack => None,
            };
        }
    };
    Some(match result {
        Ok(Ok(Ok(value))) => {
            let text = value.to_string();
            if text.len() > policy.max_result_bytes {
                Outcome::Failed(
                    FailKind::Permanent,
                    format!(
                        "result is {} bytes, over the {} byte limit",
                        text.len(),
                        policy.max_result_bytes
                    ),
                )
            } else {
                Outcome::Completed(text)
            }
        }
        Ok(Ok(Err(TaskError { message, retryable }))) => {
            let kind = if retryable {
                FailKind::Retry
            } else {
                FailKind::Permanent
            };
            Outcome::Failed(kind, message)
        }
        Ok(Err(panic)) => Outcome::Failed(
            FailKind::Retry,
            format!("task panicked: {}", panic_message(panic)),
        ),
        Err(_) => {
            // Tell a blocking handler to give up; its thread cannot be killed.
            cancel.cancel();
            Outcome::Failed(
                FailKind::Retry,
                format!("timed out after {}", humantime::format_duration(timeout)),
            )
        }
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: Box<dyn Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}
