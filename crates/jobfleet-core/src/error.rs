//! The errors the client returns: only the cases a caller would match on.

/// Everything that can go wrong talking to jobfleet's Redis.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis could not be reached, or refused a command. Its text is the
    /// whole cause (it is not also given as a `source`, so a printed chain
    /// says it once).
    #[error("redis: {0}")]
    Redis(redis::RedisError),
    /// A queue name that would break the key schema.
    #[error("invalid queue name {0:?}: use 1 to 64 characters from letters, digits, '_', '-', '.' and ':'")]
    InvalidQueueName(String),
    /// A shard count that cannot be set.
    #[error("{0}")]
    InvalidShards(String),
    /// A job id (idempotency key) that cannot be used.
    #[error("invalid job id {0:?}: use 1 to 200 characters without whitespace")]
    InvalidJobId(String),
    /// A trace context that is not W3C `traceparent` text.
    #[error(
        "invalid traceparent {0:?}: use the W3C form 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"
    )]
    InvalidTraceparent(String),
    /// A payload that is not valid JSON.
    #[error("payload is not valid JSON: {0}")]
    InvalidPayload(String),
    /// A payload over the configured size limit.
    #[error("payload is {size} bytes, over the {limit} byte limit")]
    PayloadTooLarge {
        /// Size of the rejected payload.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A delay or timeout too long to be represented.
    #[error("the {what} {given} is too long: at most 100 years")]
    DurationTooLong {
        /// "delay" or "timeout".
        what: &'static str,
        /// What was given, readable.
        given: String,
    },
    /// A queue that cannot be forgotten yet.
    #[error(
        "queue {queue} is not empty or still served ({what}); it can be forgotten once it is empty and no worker serves it"
    )]
    QueueBusy {
        /// The queue.
        queue: String,
        /// What keeps it.
        what: String,
    },
    /// A task name that is empty or too long.
    #[error("invalid task name {0:?}: use 1 to 200 characters")]
    InvalidTaskName(String),
    /// A schedule that cannot be used: its name, its cron expression, its
    /// time zone or its interval.
    #[error("{0}")]
    InvalidSchedule(String),
    /// A batch that cannot take this call.
    #[error("{0}")]
    InvalidBatch(String),
    /// Uniqueness that cannot be used.
    #[error("{0}")]
    InvalidUnique(String),
    /// A queue limit that cannot be set.
    #[error("{0}")]
    InvalidLimit(String),
    /// A progress fraction outside 0 to 1 (or not a number).
    #[error("progress {0} is not a fraction from 0 to 1")]
    InvalidProgress(f64),
    /// Jobs in a state no list or set holds, so they cannot be browsed.
    #[error(
        "{0} jobs are not indexed (only their records are kept): browse pending, scheduled, active or dead jobs, or read one by id"
    )]
    NotBrowsable(crate::JobState),
    /// No job with this id in any known queue.
    #[error("no job with id {0} (it may never have existed, or its record expired)")]
    JobNotFound(String),
    /// An id that names a job in several queues (ids are unique per queue).
    #[error("id {id} names a job in several queues ({}): say which with -q/--queue", queues.join(", "))]
    AmbiguousJob {
        /// The id.
        id: String,
        /// The queues that hold a job with it.
        queues: Vec<String>,
    },
    /// The worker was declared dead and its jobs handed to others; it must
    /// register under a fresh id.
    #[error("worker {0} was recovered by the fleet")]
    WorkerRecovered(String),
    /// A Redis URL that cannot be used.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(String),
    /// Submitted, but fewer replicas than asked confirmed it in time: a
    /// failover now could lose it. Submitting again with the same ids
    /// (idempotency keys) is safe.
    #[error(
        "only {reached} of {wanted} replicas confirmed the write within {timeout:?}: a failover now could lose it; \
         submit again with the same job ids (idempotency keys) to be sure, or check the replicas"
    )]
    NotReplicated {
        /// Replicas asked for.
        wanted: u32,
        /// Replicas that confirmed.
        reached: u32,
        /// How long we waited.
        timeout: std::time::Duration,
        /// The jobs written but not confirmed.
        ids: Vec<String>,
    },
    /// A job that ended dead or cancelled, waited on for its output.
    #[error("job {id} ended {state}: {error}")]
    JobFailed {
        /// The job id.
        id: String,
        /// Dead or cancelled.
        state: crate::job::JobState,
        /// Its last error.
        error: String,
    },
    /// A job still not final when the wait gave up (it keeps running).
    #[error("job {0} is not finished yet; it keeps running")]
    WaitTimedOut(String),
    /// A completed job whose result does not fit the task's output type.
    #[error("job {id} of task {task} completed with a result that is not its output type: {why}")]
    OutputMismatch {
        /// The job id.
        id: String,
        /// The task name.
        task: &'static str,
        /// Why it does not fit.
        why: String,
    },
    /// Redis answered something the protocol does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<redis::RedisError> for Error {
    fn from(e: redis::RedisError) -> Error {
        Error::Redis(e)
    }
}

/// What kind of trouble connecting was, to say the right thing about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectTrouble {
    /// The URL cannot be used as written.
    BadUrl,
    /// The server wants a password, or refused the one (or user) given.
    Credentials,
    /// Nothing answered (refused, timed out, no primary).
    Unreachable,
    /// Anything else.
    Other,
}

impl Error {
    /// Sorts an error from connecting.
    pub fn connect_trouble(&self) -> ConnectTrouble {
        match self {
            Error::InvalidUrl(_) => ConnectTrouble::BadUrl,
            Error::Redis(e) => {
                if e.kind() == redis::ErrorKind::InvalidClientConfig {
                    ConnectTrouble::BadUrl
                } else if crate::connection::is_auth_error(e) {
                    ConnectTrouble::Credentials
                } else if e.is_io_error() || e.is_timeout() || e.is_connection_refusal() {
                    ConnectTrouble::Unreachable
                } else {
                    ConnectTrouble::Other
                }
            }
            _ => ConnectTrouble::Other,
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
