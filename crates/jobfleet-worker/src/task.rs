//! Tasks: named handlers a worker runs, the registry that holds them, and
//! the error a handler returns (which says whether a retry can help).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What a task handler returns: a JSON result, or an error.
pub type TaskResult = Result<serde_json::Value, TaskError>;

/// A task's failure. A failing job is a value, never a failure of the
/// worker: a retryable error is retried with backoff while attempts remain,
/// a permanent one buries the job at once with the message on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    /// What went wrong, recorded on the job.
    pub message: String,
    /// Whether running the job again could succeed.
    pub retryable: bool,
}

impl TaskError {
    /// An error a retry may fix (a timeout, a busy service).
    pub fn retry(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: true,
        }
    }

    /// An error no retry can fix (bad input, a corrupt file).
    pub fn permanent(message: impl Into<String>) -> TaskError {
        TaskError {
            message: message.into(),
            retryable: false,
        }
    }
}

// `?` in a handler: the common errors are retryable by default (a file not
// there yet, a service that answered garbage); say `TaskError::permanent`
// where a retry cannot help.

impl From<std::io::Error> for TaskError {
    fn from(e: std::io::Error) -> TaskError {
        TaskError::retry(e.to_string())
    }
}

impl From<serde_json::Error> for TaskError {
    fn from(e: serde_json::Error) -> TaskError {
        TaskError::retry(format!("JSON: {e}"))
    }
}

impl From<anyhow::Error> for TaskError {
    fn from(e: anyhow::Error) -> TaskError {
        // The whole chain: "reading config: No such file or directory".
        TaskError::retry(format!("{e:#}"))
    }
}

/// What a handler knows about the job it runs.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job id.
    pub id: String,
    /// The queue it came from.
    pub queue: String,
    /// The task name.
    pub task: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The attempts allowed.
    pub max_attempts: u32,
    /// Cancelled when the job is cancelled or times out: long-running
    /// handlers (blocking ones especially) should check it and stop early.
    pub cancel: CancellationToken,
    /// This attempt's trace context when the job was submitted with one: the
    /// submitted trace, with this attempt's span as its span. Pass
    /// `trace.to_string()` as the `traceparent` of jobs the task submits.
    pub trace: Option<jobfleet_core::TraceContext>,
    /// Where [`JobContext::progress`] reports go (none: nowhere, as in a
    /// handler called outside a worker).
    pub(crate) reporter: Option<Arc<crate::progress::Reporter>>,
}

impl JobContext {
    /// Reports how far the job has come: `fraction` from 0 to 1 and what it
    /// is doing. The report is stored on the job (`jobfleet status`, the
    /// dashboard) and published as a `progress` event (`submit --wait`,
    /// `jobfleet events`). It returns at once, from async and blocking
    /// handlers alike; reports are written in order, one at a time, and
    /// reports made while one is being written collapse into the latest, so
    /// calling it often costs Redis nothing extra. A fraction outside 0 to 1
    /// is clamped; one that is not a number is ignored.
    pub fn progress(&self, fraction: f64, message: impl Into<String>) {
        if let Some(reporter) = &self.reporter
            && !fraction.is_nan()
        {
            reporter.report(fraction.clamp(0.0, 1.0), message.into());
        }
    }
}

/// A registered handler: takes the payload as the JSON text stored on the job.
type Handler = Arc<dyn Fn(JobContext, String) -> BoxFuture<'static, TaskResult> + Send + Sync>;

/// The tasks a worker can run, by name.
#[derive(Clone, Default)]
pub struct Registry {
    tasks: HashMap<String, Handler>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("tasks", &self.names()).finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry with the built-in tasks `noop`, `echo`, `sleep` and `fail`.
    /// [`crate::run`] adds `thumbnail` (it needs the configured folders)
    /// unless the registry already has a task of that name.
    pub fn with_builtins() -> Registry {
        let mut registry = Registry::new();
        crate::builtin::register(&mut registry);
        registry
    }

    /// Registers an async handler. The payload is deserialized into `P`
    /// straight from the job's JSON text; a payload that is not JSON, or does
    /// not fit `P`, is a permanent error that says which.
    pub fn register<P, R, F, Fut>(&mut self, name: &str, handler: F) -> &mut Registry
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(JobContext, P) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, TaskError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let task = name.to_string();
        self.tasks.insert(
            name.to_string(),
            Arc::new(move |ctx, payload| {
                let handler = handler.clone();
                let task = task.clone();
                Box::pin(async move {
                    let payload = parse_payload::<P>(&task, payload)?;
                    to_json(handler(ctx, payload).await?)
                })
            }),
        );
        self
    }

    /// Registers the handler of a typed [`jobfleet_core::Task`]: its name,
    /// payload and output types come from the same definition the
    /// producer's `Queue::enqueue` uses.
    pub fn task<T, F, Fut>(&mut self, handler: F) -> &mut Registry
    where
        T: jobfleet_core::Task,
        F: Fn(JobContext, T::Payload) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T::Output, TaskError>> + Send + 'static,
    {
        self.register(T::NAME, handler)
    }

    /// Registers a CPU-bound or blocking handler; it runs on tokio's blocking
    /// thread pool, never on the async executor, so heartbeats keep ticking.
    pub fn register_blocking<P, R, F>(&mut self, name: &str, handler: F) -> &mut Registry
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(JobContext, P) -> Result<R, TaskError> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.register(name, move |ctx, payload: P| {
            let handler = handler.clone();
            async move {
                match tokio::task::spawn_blocking(move || handler(ctx, payload)).await {
                    Ok(result) => result,
                    Err(e) if e.is_panic() => Err(TaskError::retry(format!(
                        "task panicked: {}",
                        crate::runner::panic_message(e.into_panic())
                    ))),
                    Err(e) => Err(TaskError::retry(format!("task was stopped: {e}"))),
                }
            }
        })
    }

    /// The registered task names, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tasks.keys().cloned().collect();
        names.sort();
        names
    }

    /// Whether a task of this name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.tasks.contains_key(name)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Handler> {
        self.tasks.get(name)
    }
}

fn parse_payload<P: DeserializeOwned>(task: &str, payload: String) -> Result<P, TaskError> {
    use serde_json::error::Category;
    serde_json::from_str(&payload).map_err(|e| match e.classify() {
        Category::Syntax | Category::Eof => TaskError::permanent(format!("payload is not valid JSON: {e}")),
        Category::Data | Category::Io => {
            TaskError::permanent(format!("payload does not fit task '{task}': {e}"))
        }
    })
}

fn to_json<R: Serialize>(result: R) -> TaskResult {
    serde_json::to_value(result).map_err(|e| TaskError::permanent(format!("result is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::TaskError;
    use anyhow::Context;

    #[test]
    fn question_mark_on_common_errors_gives_a_retryable_error_with_the_cause() {
        fn read() -> Result<Vec<u8>, TaskError> {
            Ok(std::fs::read("/no/such/file/anywhere")?)
        }
        let e = read().unwrap_err();
        assert!(e.retryable);
        assert!(e.message.contains("No such file"), "{}", e.message);

        fn parse() -> Result<serde_json::Value, TaskError> {
            Ok(serde_json::from_str("{not json")?)
        }
        let e = parse().unwrap_err();
        assert!(
            e.retryable && e.message.starts_with("JSON: key must be a string"),
            "{e:?}"
        );

        fn chained() -> Result<(), TaskError> {
            std::fs::read("/no/such/config").context("reading config")?;
            Ok(())
        }
        let e = chained().unwrap_err();
        assert!(e.retryable);
        assert!(
            e.message.starts_with("reading config: No such file"),
            "{}",
            e.message
        );
    }
}
