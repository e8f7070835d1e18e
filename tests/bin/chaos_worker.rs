//! A worker for the fault-injection tests: the built-in tasks plus tasks
//! that misbehave on purpose, built with the worker library the way a user
//! builds a worker of their own.
//!
//! - `record` `{"n": N, "ms": M, "fail": null|"retry"|"permanent"}`: sleeps
//!   M ms, appends "<job id> <N>" to the file named by `CHAOS_LOG` (one
//!   O_APPEND write per line), so the checker sees every execution that ran
//!   to its end; then fails if asked to.
//! - `panic`: the handler panics.
//! - `hang`: never returns (the job's timeout must end it).
//! - `crash`: aborts the whole worker process (a poison pill).

use std::io::Write;
use std::time::Duration;

use jobfleet_worker::{JobContext, Registry};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Record {
    n: u64,
    #[serde(default)]
    ms: u64,
    #[serde(default)]
    fail: Option<String>,
}

fn main() {
    let mut registry = Registry::with_builtins();
    registry
        .register("record", |ctx: JobContext, p: Record| async move {
            tokio::time::sleep(Duration::from_millis(p.ms)).await;
            let path = std::env::var("CHAOS_LOG").expect("CHAOS_LOG names the execution log");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| jobfleet_worker::TaskError::retry(e.to_string()))?;
            file.write_all(format!("{} {}\n", ctx.id, p.n).as_bytes())
                .map_err(|e| jobfleet_worker::TaskError::retry(e.to_string()))?;
            match p.fail.as_deref() {
                Some("permanent") => Err(jobfleet_worker::TaskError::permanent("failed on purpose")),
                Some(_) => Err(jobfleet_worker::TaskError::retry("failed on purpose")),
                None => Ok(p.n),
            }
        })
        .register("panic", |_, _: Value| async move {
            if std::env::var_os("CHAOS_NEVER").is_none() {
                panic!("this handler always panics");
            }
            Ok(())
        })
        .register("hang", |_, _: Value| async move {
            std::future::pending::<()>().await;
            Ok(())
        })
        .register("crash", |_, _: Value| async move {
            if std::env::var_os("CHAOS_NEVER").is_none() {
                std::process::abort();
            }
            Ok(())
        });
    jobfleet_worker::cli::main(registry)
}
