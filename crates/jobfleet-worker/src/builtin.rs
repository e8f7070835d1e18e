//! The built-in tasks: `thumbnail` (the image pipeline), and `noop`, `echo`,
//! `sleep` and `fail`, for benchmarks, tests and smoke checks.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use jobfleet_thumbnail::{AllowedDirs, Limits, ThumbnailRequest};

use crate::task::{Registry, TaskError};

/// `sleep` payload: `{"ms": 50}`; with `"steps": N` it sleeps in N steps,
/// reporting progress after each (`step i of N`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sleep {
    ms: u64,
    #[serde(default)]
    steps: u32,
}

/// `fail` payload: `{"message": "why", "permanent": false}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fail {
    #[serde(default = "default_fail_message")]
    message: String,
    #[serde(default)]
    permanent: bool,
}

fn default_fail_message() -> String {
    "failed on purpose".into()
}

pub(crate) fn register(registry: &mut Registry) {
    registry
        .register("noop", |_, _: Value| async { Ok(Value::Null) })
        .register("echo", |_, payload: Value| async move { Ok(payload) })
        .register("sleep", |ctx, p: Sleep| async move {
            if p.steps == 0 {
                tokio::time::sleep(Duration::from_millis(p.ms)).await;
            }
            for step in 1..=p.steps {
                tokio::time::sleep(Duration::from_millis(p.ms / u64::from(p.steps))).await;
                ctx.progress(
                    f64::from(step) / f64::from(p.steps),
                    format!("step {step} of {}", p.steps),
                );
            }
            Ok(json!({ "slept_ms": p.ms }))
        })
        .register("fail", |_, p: Fail| async move {
            Err::<Value, _>(if p.permanent {
                TaskError::permanent(p.message)
            } else {
                TaskError::retry(p.message)
            })
        });
}

/// Registers `thumbnail`: the payload is a [`ThumbnailRequest`]; paths must
/// resolve inside `dirs`; the work runs on the blocking pool. Corrupt or
/// hostile input is a permanent error; transient I/O is retried, and so is
/// a path outside this worker's folders, which another worker of the fleet
/// may allow (a worker with no folder does not run the task at all).
pub(crate) fn register_thumbnail(registry: &mut Registry, dirs: AllowedDirs, limits: Limits) {
    registry.register_blocking("thumbnail", move |_, request: ThumbnailRequest| {
        jobfleet_thumbnail::thumbnail(&request, &dirs, &limits).map_err(|e| match &e {
            jobfleet_thumbnail::ThumbnailError::OutsideAllowedDirs(_) => TaskError::retry(format!(
                "{e} of this worker (retried: another worker may allow it)"
            )),
            _ if e.is_permanent() => TaskError::permanent(e.to_string()),
            _ => TaskError::retry(e.to_string()),
        })
    });
}
