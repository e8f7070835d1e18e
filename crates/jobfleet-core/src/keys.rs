//! The whole Redis key schema: every key jobfleet reads or writes is named here.
//!
//! Every per-queue key carries the queue name as a hash tag (`{queue}`), so
//! all keys of one queue shard live in one Redis Cluster slot and every Lua
//! script touches a single slot. A queue of several shards has one tag per
//! shard: `{queue}` for shard 0, `{queue#i}` for shard `i`. Key names are a wire format (see `docs/PROTOCOL.md`):
//! changing one is a migration.

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "jobfleet";

/// The keys of one queue, built once per queue handle.
#[derive(Debug, Clone)]
pub struct QueueKeys {
    /// LIST of ids ready to run; producers push left, workers claim right.
    pub pending: String,
    /// ZSET id -> run-at (Redis ms): delayed jobs and retry backoff.
    pub scheduled: String,
    /// ZSET id -> when it died (Redis ms); capped by count and age.
    pub dead: String,
    /// ZSET worker id -> last heartbeat (Redis ms) of workers serving this queue.
    pub workers: String,
    /// HASH of counters: submitted, completed, failed, retried, dead, cancelled, recovered.
    pub stats: String,
    /// Pub/sub channel: "work is pending" (payload: how many).
    pub notify: String,
    /// Pub/sub channel: one JSON event per state change.
    pub events: String,
    /// Pub/sub channel: control messages to workers (`cancel <id>`).
    pub control: String,
    /// Prefix of the per-job HASH keys: `<job_prefix><id>`.
    pub job_prefix: String,
    /// Prefix of the per-worker processing LISTs: `<processing_prefix><worker>`.
    pub processing_prefix: String,
    /// HASH of the shard's settings: `shards` (shard 0's only) and `paused`
    /// (every shard's: when the queue was paused, Redis ms).
    pub meta: String,
    /// HASH schedule name -> schedule JSON (shard 0's only).
    pub schedules: String,
    /// ZSET schedule name -> its next tick (Redis ms); paused ones are absent.
    pub schedule_next: String,
    /// HASH schedule name -> the tick it fired last (Redis ms).
    pub schedule_last: String,
    /// SET of the tasks whose jobs are parked on this shard, each in the
    /// LIST `<parked>:<task>`: jobs a worker that lacks the task passed on.
    pub parked: String,
}

impl QueueKeys {
    /// Builds every key of `queue` under `prefix`. The queue name must have
    /// been validated (see [`crate::validate_queue_name`]).
    pub fn new(prefix: &str, queue: &str) -> QueueKeys {
        QueueKeys::shard(prefix, queue, 0)
    }

    /// The keys of shard `shard` of `queue`: shard 0's are [`QueueKeys::new`]'s
    /// (a queue of one shard is today's layout), shard `i`'s carry the hash
    /// tag `{queue#i}`, so shards land in different Cluster slots.
    pub fn shard(prefix: &str, queue: &str, shard: u32) -> QueueKeys {
        let base = if shard == 0 {
            format!("{prefix}:{{{queue}}}")
        } else {
            format!("{prefix}:{{{queue}#{shard}}}")
        };
        QueueKeys {
            meta: format!("{base}:meta"),
            parked: format!("{base}:parked"),
            schedules: format!("{base}:schedules"),
            schedule_next: format!("{base}:schedule_next"),
            schedule_last: format!("{base}:schedule_last"),
            pending: format!("{base}:pending"),
            scheduled: format!("{base}:scheduled"),
            dead: format!("{base}:dead"),
            workers: format!("{base}:workers"),
            stats: format!("{base}:stats"),
            notify: format!("{base}:notify"),
            events: format!("{base}:events"),
            control: format!("{base}:control"),
            job_prefix: format!("{base}:job:"),
            processing_prefix: format!("{base}:processing:"),
        }
    }

    /// HASH holding one job (see [`crate::job`] for its fields).
    pub fn job(&self, id: &str) -> String {
        format!("{}{id}", self.job_prefix)
    }

    /// HASH of one batch (see `common.lua`'s `batch_fire`).
    pub fn batch(&self, id: &str) -> String {
        format!("{}batch:{id}", self.job_prefix.trim_end_matches("job:"))
    }

    /// LIST of the parked ids of one task.
    pub fn parked_list(&self, task: &str) -> String {
        format!("{}:{task}", self.parked)
    }

    /// LIST of the ids one worker holds now.
    pub fn processing(&self, worker: &str) -> String {
        format!("{}{worker}", self.processing_prefix)
    }
}

/// Keys shared by all queues under one prefix. These never appear in the same
/// script as a queue's keys, so they may live in other Cluster slots.
#[derive(Debug, Clone)]
pub struct GlobalKeys {
    /// SET of known queue names (for stats and the dashboard).
    pub queues: String,
    /// ZSET worker id -> last heartbeat (Redis ms), across all queues.
    pub workers: String,
    /// Prefix of per-worker info HASHes (host, pid, queues, concurrency, ...).
    pub worker_prefix: String,
}

impl GlobalKeys {
    /// Builds the global keys under `prefix`.
    pub fn new(prefix: &str) -> GlobalKeys {
        GlobalKeys {
            queues: format!("{prefix}:queues"),
            workers: format!("{prefix}:{{workers}}"),
            worker_prefix: format!("{prefix}:{{workers}}:"),
        }
    }

    /// HASH describing one worker process; expires when it stops beating.
    pub fn worker(&self, id: &str) -> String {
        format!("{}{id}", self.worker_prefix)
    }
}
