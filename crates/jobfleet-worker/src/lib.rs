//! jobfleet-worker: runs jobs from Redis queues, as a library and as the
//! `jobfleet-worker` binary.
//!
//! # Layout
//!
//! - [`run`] and [`Config`] (`worker.rs`): start-up, shared state, and the
//!   graceful shutdown order.
//! - [`Registry`], [`TaskError`], [`JobContext`] (`task.rs`): named handlers.
//! - `builtin.rs`: the built-in tasks `noop`, `echo`, `sleep`, `fail`.
//! - `claim.rs`: the claim loop (slot first, then claim, then start).
//! - `runner.rs`: runs one job (timeout, panic, cancel) into an outcome.
//! - `acker.rs`: writes outcomes back, batching acks.
//! - [`cli`]: the `jobfleet-worker` command line, reusable by binaries that
//!   register tasks of their own.
//! - [`metrics`]: Prometheus series (`--metrics ADDR`).
//! - One module per background loop: `heartbeat.rs`, `recover.rs`,
//!   `promote.rs`, `listener.rs` (notify and control channels).
//!
//! # Example: a worker with a task of your own
//!
//! ```no_run
//! use jobfleet_worker::{Config, Registry, TaskError};
//!
//! #[derive(serde::Deserialize)]
//! struct Greet { name: String }
//!
//! # async fn demo() -> Result<(), jobfleet_worker::WorkerError> {
//! let mut registry = Registry::with_builtins();
//! registry.register("greet", |_ctx, p: Greet| async move {
//!     if p.name.is_empty() {
//!         return Err(TaskError::permanent("name is empty"));
//!     }
//!     Ok(format!("hello, {}", p.name))
//! });
//! let config = Config::new("redis://127.0.0.1:6379");
//! jobfleet_worker::run(config, registry, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod acker;
mod builtin;
mod claim;
pub mod cli;
mod heartbeat;
mod listener;
pub mod metrics;
#[cfg(feature = "otel")]
mod otel;
mod outage;
mod progress;
mod promote;
mod recover;
mod runner;
mod task;
mod worker;

pub use task::{JobContext, Registry, TaskError, TaskResult};
pub use worker::{Config, WorkerError, run};
