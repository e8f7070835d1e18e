//! Typed tasks: one definition of a task's name, payload and output, shared
//! by the code that submits it ([`crate::Queue::enqueue`]) and the worker
//! that runs it (`jobfleet_worker::Registry::task`), so a misspelled name
//! or a payload of the wrong shape does not compile.
//!
//! ```no_run
//! # async fn demo() -> jobfleet_core::Result<()> {
//! use jobfleet_core::{Client, Task};
//!
//! /// Resizes one image (a worker registers the same type).
//! struct Resize;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Image { path: String, width: u32 }
//!
//! impl Task for Resize {
//!     const NAME: &'static str = "resize";
//!     type Payload = Image;
//!     type Output = String;
//! }
//!
//! let client = Client::connect("redis://127.0.0.1:6379").await?;
//! let job = client
//!     .queue("images")?
//!     .enqueue::<Resize>(&Image { path: "/data/a.jpg".into(), width: 256 })
//!     .await?;
//! let written: String = job.wait().await?;
//! # Ok(())
//! # }
//! ```

use std::marker::PhantomData;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::job::JobState;

/// A task's contract: the name its jobs carry, what they take, what they
/// return.
pub trait Task {
    /// The task name (what `JobSpec::task` holds and a worker registers).
    const NAME: &'static str;
    /// A job's payload, as JSON.
    type Payload: Serialize + DeserializeOwned + Send + 'static;
    /// A completed job's result, as JSON.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// A job submitted with [`crate::Queue::enqueue`]: its id, and its typed
/// output once it completes.
#[derive(Debug)]
pub struct Handle<T: Task> {
    client: Client,
    queue: String,
    id: String,
    created: bool,
    task: PhantomData<fn() -> T>,
}

impl<T: Task> Handle<T> {
    pub(crate) fn new(client: Client, queue: String, id: String, created: bool) -> Handle<T> {
        Handle {
            client,
            queue,
            id,
            created,
            task: PhantomData,
        }
    }

    /// The job id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// False when a job with this id (idempotency key) already existed.
    pub fn created(&self) -> bool {
        self.created
    }

    /// Waits until the job is final: its output when it completed, else
    /// [`Error::JobFailed`] with its state and error.
    pub async fn wait(&self) -> Result<T::Output> {
        self.wait_for(None).await
    }

    /// [`Handle::wait`], giving up after `timeout` with
    /// [`Error::WaitTimedOut`] (the job keeps running).
    pub async fn wait_timeout(&self, timeout: Duration) -> Result<T::Output> {
        self.wait_for(Some(timeout)).await
    }

    async fn wait_for(&self, timeout: Option<Duration>) -> Result<T::Output> {
        let jobs = [(self.queue.clone(), self.id.clone())];
        let mut report = self.client.wait(&jobs, timeout, |_| {}).await?;
        if !report.missing.is_empty() {
            return Err(Error::JobNotFound(self.id.clone()));
        }
        let Some(finished) = report.finished.pop() else {
            return Err(Error::WaitTimedOut(self.id.clone()));
        };
        match finished.state {
            JobState::Completed => {
                let result = finished.result.unwrap_or(serde_json::Value::Null);
                serde_json::from_value(result).map_err(|e| Error::OutputMismatch {
                    id: self.id.clone(),
                    task: T::NAME,
                    why: e.to_string(),
                })
            }
            state => Err(Error::JobFailed {
                id: self.id.clone(),
                state,
                error: finished.error.unwrap_or_default(),
            }),
        }
    }
}
