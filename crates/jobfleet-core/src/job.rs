//! The job model: what a producer submits ([`JobSpec`]), what a worker
//! claims ([`ClaimedJob`]), what `status` reads ([`Job`]) and the states a
//! job moves through ([`JobState`]).
//!
//! A job's HASH fields (a wire format, see `docs/PROTOCOL.md`): `task`,
//! `payload` (JSON text), `state`, `attempts`, `max_attempts`, `timeout_ms`,
//! `created_ms`, `run_at_ms`, `started_ms`, `finished_ms`, `worker`,
//! `result` (JSON text), `error`, `recoveries`, `cancel`.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where a job is in its lifecycle. `Completed`, `Dead` and `Cancelled` are
/// final: every accepted job ends in exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// In the pending list, ready to be claimed.
    Pending,
    /// Waiting for its run-at time (a delay, or a retry's backoff).
    Scheduled,
    /// Claimed by a worker, in its processing list.
    Active,
    /// Ran and succeeded.
    Completed,
    /// Out of attempts, or failed with a permanent error.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::Scheduled,
        JobState::Active,
        JobState::Completed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// True for completed, dead and cancelled.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Dead | JobState::Cancelled)
    }

    /// The name stored in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Scheduled => "scheduled",
            JobState::Active => "active",
            JobState::Completed => "completed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored state name.
    pub fn parse(s: &str) -> Option<JobState> {
        JobState::ALL.into_iter().find(|state| state.as_str() == s)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Defaults applied at submit time.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default per-attempt timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default payload size limit (bytes of JSON text).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Default result size limit (bytes of JSON text).
pub const DEFAULT_MAX_RESULT_BYTES: usize = 1024 * 1024;
/// The longest delay (and per-attempt timeout) a job may have: 100 years.
/// Redis stamps are unix ms in a double, so anything much larger would not
/// be exact; the submit script refuses more too.
pub const MAX_DELAY: Duration = Duration::from_millis(3_155_760_000_000);
/// How long a unique key's lock holds when only a key or a debounce is given.
pub const DEFAULT_UNIQUE_FOR: Duration = Duration::from_secs(24 * 3600);

/// FNV-1a, 64 bit.
fn fnv1a_64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A job to submit.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Name of the task that runs it.
    pub task: String,
    /// The payload as JSON text (validated on construction).
    pub payload: String,
    /// A caller-chosen id: submitting twice with the same id creates the job
    /// once (while its record lives). `None` gives a fresh UUIDv7.
    pub id: Option<String>,
    /// How many times it may run before it is buried.
    pub max_attempts: u32,
    /// The longest one attempt may run.
    pub timeout: Duration,
    /// Run no earlier than this long after submission.
    pub delay: Duration,
    /// Keep the record at least this long once the job completed or was
    /// cancelled, so its id (an idempotency key) holds that long even when
    /// the fleet's retention (`--keep-completed`) is shorter. `None`: the
    /// retention alone.
    pub key_ttl: Option<Duration>,
    /// A W3C trace context (`traceparent`): the worker's span for the job
    /// becomes its child.
    pub traceparent: Option<String>,
    /// At most one live job per unique key (see [`JobSpec::unique_for`]).
    pub unique: Option<Unique>,
    /// The batch it belongs to (set by [`Queue::batch_add`](crate::Queue::batch_add)).
    pub batch: Option<String>,
}

/// A job's uniqueness: while a job of the same key is pending, scheduled or
/// running, a submit gives that job's id instead of a new job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unique {
    /// The key; `None`: the task and the payload (as JSON, keys sorted).
    pub key: Option<String>,
    /// The longest the lock holds, whatever the job's state (a safety net
    /// for a job that never ends).
    pub lock_for: Duration,
    /// Debounce: the job runs this long after the last submit of its key,
    /// each submit while it waits replacing its payload.
    pub debounce: Option<Duration>,
}

impl JobSpec {
    /// A job for `task` with a JSON payload.
    pub fn new(task: impl Into<String>, payload: &serde_json::Value) -> JobSpec {
        JobSpec::with_json_text(task, payload.to_string())
    }

    /// A job whose payload is JSON text the caller already has. The text is
    /// checked at submit time ([`crate::Queue::submit`] refuses invalid JSON).
    pub fn with_json_text(task: impl Into<String>, payload: String) -> JobSpec {
        JobSpec {
            task: task.into(),
            payload,
            id: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            timeout: DEFAULT_TIMEOUT,
            delay: Duration::ZERO,
            key_ttl: None,
            traceparent: None,
            unique: None,
            batch: None,
        }
    }

    /// Sets an idempotency key as the job's id.
    pub fn id(mut self, id: impl Into<String>) -> JobSpec {
        self.id = Some(id.into());
        self
    }

    /// Sets the number of attempts (at least 1).
    pub fn max_attempts(mut self, n: u32) -> JobSpec {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> JobSpec {
        self.timeout = timeout;
        self
    }

    /// Delays the first run.
    pub fn delay(mut self, delay: Duration) -> JobSpec {
        self.delay = delay;
        self
    }

    /// Keeps the finished record, and so its idempotency key, at least this
    /// long (rounded up to whole seconds).
    pub fn key_ttl(mut self, ttl: Duration) -> JobSpec {
        self.key_ttl = Some(ttl);
        self
    }

    /// Carries a W3C trace context to the worker.
    pub fn traceparent(mut self, traceparent: impl Into<String>) -> JobSpec {
        self.traceparent = Some(traceparent.into());
        self
    }

    /// Makes the job unique for `lock_for`: while a job of the same key
    /// (the task and payload, or [`JobSpec::unique_key`]) is pending,
    /// scheduled or running, submitting gives that job's id
    /// ([`Submitted::created`](crate::Submitted) false) instead of a new job.
    pub fn unique_for(mut self, lock_for: Duration) -> JobSpec {
        let unique = self.unique.get_or_insert(Unique {
            key: None,
            lock_for,
            debounce: None,
        });
        unique.lock_for = lock_for;
        self
    }

    /// The unique key (implies [`JobSpec::unique_for`] of a day if not set).
    pub fn unique_key(mut self, key: impl Into<String>) -> JobSpec {
        self.unique
            .get_or_insert(Unique {
                key: None,
                lock_for: DEFAULT_UNIQUE_FOR,
                debounce: None,
            })
            .key = Some(key.into());
        self
    }

    /// Debounces the job: it runs `window` after the last submit of its
    /// unique key, and each submit while it still waits replaces its
    /// payload (the latest wins) and restarts the window. Implies unique.
    pub fn debounce(mut self, window: Duration) -> JobSpec {
        self.unique
            .get_or_insert(Unique {
                key: None,
                lock_for: DEFAULT_UNIQUE_FOR,
                debounce: None,
            })
            .debounce = Some(window);
        self.delay = window;
        self
    }

    /// The unique key sent to Redis: the given one, or the task and a hash
    /// of the payload with its object keys sorted.
    pub(crate) fn unique_key_text(&self) -> Option<String> {
        let unique = self.unique.as_ref()?;
        Some(match &unique.key {
            Some(key) => key.clone(),
            None => {
                let canonical = serde_json::from_str::<serde_json::Value>(&self.payload)
                    .map(|v| v.to_string())
                    .unwrap_or_else(|_| self.payload.clone());
                let hash = fnv1a_64(canonical.as_bytes());
                // Keys are at most 200 bytes: a long task name is hashed too.
                if self.task.len() <= 150 {
                    format!("{}:{hash:016x}", self.task)
                } else {
                    format!("{:016x}:{hash:016x}", fnv1a_64(self.task.as_bytes()))
                }
            }
        })
    }

    /// The submit script's layout for it: 6 values, 8 (key TTL, trace
    /// context) or 12 (unique, batch).
    pub(crate) fn stride(&self) -> usize {
        if self.unique.is_some() || self.batch.is_some() {
            12
        } else if self.key_ttl.is_some_and(|t| !t.is_zero()) || self.traceparent.is_some() {
            8
        } else {
            6
        }
    }

    /// `key_ttl` in whole seconds, rounded up ("0": none).
    pub(crate) fn key_ttl_secs(&self) -> u64 {
        self.key_ttl.map_or(0, |t| t.as_millis().div_ceil(1000) as u64)
    }

    pub(crate) fn validate(&self, max_payload_bytes: usize) -> Result<()> {
        validate_task_name(&self.task)?;
        if let Some(id) = &self.id {
            validate_job_id(id)?;
        }
        if self.payload.len() > max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                size: self.payload.len(),
                limit: max_payload_bytes,
            });
        }
        serde_json::from_str::<serde::de::IgnoredAny>(&self.payload)
            .map_err(|e| Error::InvalidPayload(e.to_string()))?;
        if let Some(tp) = &self.traceparent {
            crate::trace::TraceContext::parse(tp)?;
        }
        let key_ttl = self.key_ttl.unwrap_or_default();
        if let Some(unique) = &self.unique {
            if let Some(key) = &unique.key
                && (key.is_empty() || key.len() > 200)
            {
                return Err(Error::InvalidUnique("a unique key must be 1 to 200 bytes".into()));
            }
            if unique.lock_for.is_zero() {
                return Err(Error::InvalidUnique("--unique-for must be above 0".into()));
            }
            if unique.debounce.is_some() && unique.key.is_none() {
                return Err(Error::InvalidUnique(
                    "debounce needs a unique key (--unique-key): the payload changes from submit to submit"
                        .into(),
                ));
            }
        }
        let lock_for = self.unique.as_ref().map(|u| u.lock_for).unwrap_or_default();
        for (what, value) in [
            ("delay", self.delay),
            ("timeout", self.timeout),
            ("key TTL", key_ttl),
            ("unique lock", lock_for),
        ] {
            if value > MAX_DELAY {
                return Err(Error::DurationTooLong {
                    what,
                    given: humantime::format_duration(value).to_string(),
                });
            }
        }
        Ok(())
    }
}

/// Checks a task name: 1 to 200 bytes.
pub fn validate_task_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 200 {
        return Err(Error::InvalidTaskName(name.to_string()));
    }
    Ok(())
}

/// Checks a caller-given job id: 1 to 200 bytes without ASCII whitespace
/// (the scripts apply the same rule, and ids are text: valid UTF-8).
pub fn validate_job_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > 200 || id.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r')) {
        return Err(Error::InvalidJobId(id.to_string()));
    }
    Ok(())
}

/// A fresh time-ordered job id.
pub fn new_job_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A job a worker has claimed and must ack or fail.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job id.
    pub id: String,
    /// The queue it came from.
    pub queue: String,
    /// The queue shard it came from (0 in a queue of one shard).
    pub shard: u32,
    /// Task name ('' when the stored record lacks one).
    pub task: String,
    /// Payload JSON text ('' when the stored record lacks one).
    pub payload: String,
    /// Which attempt this is, from 1.
    pub attempt: u32,
    /// The attempts allowed.
    pub max_attempts: u32,
    /// The longest this attempt may run.
    pub timeout: Duration,
    /// The W3C trace context given at submit, if any.
    pub traceparent: Option<String>,
}

/// A job as `status` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// Task name.
    pub task: String,
    /// Current state.
    pub state: JobState,
    /// Payload (JSON).
    pub payload: serde_json::Value,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Per-attempt timeout, ms.
    pub timeout_ms: u64,
    /// Submitted at (Redis ms).
    pub created_ms: u64,
    /// Due at, when scheduled (Redis ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at_ms: Option<u64>,
    /// Last attempt started at (Redis ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_ms: Option<u64>,
    /// Reached its final state at (Redis ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<u64>,
    /// The worker that ran (or runs) it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The task's result, once completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How many times its worker died while running it.
    pub recoveries: u32,
    /// The least time the finished record is kept, seconds (see
    /// [`JobSpec::key_ttl`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ttl_s: Option<u64>,
    /// The W3C trace context given at submit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// How far the latest attempt came, 0 to 1, as its task reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// What the task said with its latest progress report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_message: Option<String>,
}

impl Job {
    /// Builds a job from its HASH fields; `None` when the hash is empty.
    pub(crate) fn from_fields(id: &str, queue: &str, mut f: HashMap<String, String>) -> Option<Job> {
        if f.is_empty() {
            return None;
        }
        let num = |f: &HashMap<String, String>, k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        let json = |text: Option<String>| {
            text.map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)))
        };
        Some(Job {
            id: id.to_string(),
            queue: queue.to_string(),
            state: f
                .get("state")
                .and_then(|s| JobState::parse(s))
                .unwrap_or(JobState::Pending),
            attempts: num(&f, "attempts").unwrap_or(0) as u32,
            max_attempts: num(&f, "max_attempts").unwrap_or(1) as u32,
            timeout_ms: num(&f, "timeout_ms").unwrap_or(0),
            created_ms: num(&f, "created_ms").unwrap_or(0),
            run_at_ms: num(&f, "run_at_ms"),
            started_ms: num(&f, "started_ms"),
            finished_ms: num(&f, "finished_ms"),
            recoveries: num(&f, "recoveries").unwrap_or(0) as u32,
            key_ttl_s: num(&f, "key_ttl_s"),
            traceparent: f.remove("traceparent"),
            progress: f.get("progress").and_then(|p| p.parse().ok()),
            progress_message: f.remove("progress_msg"),
            task: f.remove("task").unwrap_or_default(),
            payload: json(f.remove("payload")).unwrap_or(serde_json::Value::Null),
            worker: f.remove("worker").filter(|w| !w.is_empty()),
            result: json(f.remove("result")),
            error: f.remove("error"),
        })
    }
}

/// Checks a queue name: it becomes part of every key, inside the `{}` hash
/// tag, so braces, whitespace and glob characters are refused.
pub fn validate_queue_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidQueueName(name.to_string()))
    }
}
