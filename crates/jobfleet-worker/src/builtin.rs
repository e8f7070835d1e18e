//! The built-in tasks: `noop`, `echo`, `sleep` and `fail`, for benchmarks,
//! tests and smoke checks.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::task::{Registry, TaskError};

/// `sleep` payload: `{"ms": 50}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sleep {
    ms: u64,
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
        .register("sleep", |_, p: Sleep| async move {
            tokio::time::sleep(Duration::from_millis(p.ms)).await;
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
