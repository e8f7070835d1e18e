//! jobfleet-core: the contract between producers and workers.
//!
//! # Layout
//!
//! - [`keys`]: the whole Redis key schema, every per-queue key under one
//!   `{queue}` hash tag.
//! - `scripts/*.lua`: one Lua script per state transition (submit, claim,
//!   ack, fail, heartbeat, recover, promote, cancel, requeue, reconcile, dead
//!   retry and purge, stats, forget), each opening with its KEYS/ARGV/returns
//!   header; [`scripts::SOURCES`] holds them as sent to Redis.
//! - [`job`]: the job model ([`JobSpec`] to submit, [`ClaimedJob`] for a
//!   worker, [`Job`] as read back, [`JobState`]).
//! - [`event`]: the JSON events published on each queue's events channel.
//! - [`Client`]: the connection, queue handles, waiting, events, stats.
//! - [`Queue`]: one queue's transitions, each a single script call.
//!
//! Only this crate knows key names and Lua; everything else calls the typed
//! API below.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> jobfleet_core::Result<()> {
//! use jobfleet_core::{Client, JobSpec};
//! let client = Client::connect("redis://127.0.0.1:6379").await?;
//! let queue = client.queue("default")?;
//! let job = queue.submit(JobSpec::new("echo", &serde_json::json!({"hi": 1}))).await?;
//! let report = client
//!     .wait(&[("default".into(), job.id.clone())], None, |_| {})
//!     .await?;
//! println!("{:?}", report.finished);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod connection;
pub mod error;
pub mod event;
pub mod job;
pub mod keys;
pub mod queue;
pub mod schedule;
pub mod scripts;
pub mod task;
pub mod trace;
pub mod worker_protocol;

pub use client::{
    Client, ClusterNodeInfo, ConnectOptions, Feed, Finished, FleetStats, Policy, ReplicaInfo, Replication,
    SUBSCRIPTION_BUFFER, Subscription, TopologyInfo, Unserved, WaitReport, WorkerInfo,
};
pub use connection::{Conn, redact_url};
pub use error::{ConnectTrouble, Error, Result};
pub use event::{Event, EventKind};
pub use job::{
    ClaimedJob, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT,
    Job, JobSpec, JobState, MAX_DELAY, new_job_id, validate_job_id, validate_queue_name, validate_task_name,
};
pub use keys::{DEFAULT_PREFIX, GlobalKeys, QueueKeys};
pub use queue::admin::{Filter, Limits, Swept};
pub use queue::batches::BatchStatus;
pub use queue::{
    CancelOutcome, FailKind, FailOutcome, MAX_SHARDS, Queue, QueueStats, Recovered, Submitted, shard_of,
};
pub use schedule::{Schedule, ScheduleState, When};
pub use task::{Handle, Task};
pub use trace::TraceContext;
