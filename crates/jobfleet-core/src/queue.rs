//! [`Queue`]: one queue's transitions, each a single Lua script call.

pub mod admin;
pub mod batches;
pub mod schedules;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{AsyncCommands, Value};
use serde::Serialize;

use crate::client::{Client, Confirmation};
use crate::error::{Error, Result};
use crate::job::{ClaimedJob, Job, JobSpec, new_job_id, validate_job_id, validate_queue_name};
use crate::keys::QueueKeys;
use crate::scripts;
use crate::task::{Handle, Task};

/// Jobs per submit script call: large enough to amortize the round trip,
/// small enough that one call never blocks Redis for long.
const SUBMIT_CHUNK: usize = 1000;

/// Dead-set entries per retry or purge script call.
const DEAD_CHUNK: usize = 1000;

/// The most shards a queue may have.
pub const MAX_SHARDS: u32 = 1024;

/// How long a handle trusts the shard count it read (a raised count
/// reaches every producer and worker within this).
const SHARDS_TTL: Duration = Duration::from_secs(2);

/// A handle on one queue. Cheap to clone; its keys are built once.
///
/// A queue has one shard or more (see [`Queue::set_shards`]): shard 0 has
/// the `{queue}` hash tag, shard `i` the `{queue#i}` tag, so on a Redis
/// Cluster the shards spread over the nodes. Whole-queue operations
/// (submit, status, cancel, stats, the dead set) span every shard; the
/// worker's transitions (claim, ack, fail, heartbeat, recover...) act on
/// this handle's shard, shard 0 unless the handle came from
/// [`Queue::shards`].
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    name: Arc<str>,
    keys: Arc<QueueKeys>,
    shard: u32,
    layout: Arc<Layout>,
}

/// What every handle on one queue shares: the shard count as last read, and
/// the producer's round-robin position.
#[derive(Debug)]
struct Layout {
    /// HASH of the queue's settings (`shards`), in shard 0's slot.
    meta: String,
    known: std::sync::Mutex<Option<(u32, tokio::time::Instant)>>,
    next: std::sync::atomic::AtomicU64,
}

/// The shard an idempotency key lands on among `shards`: FNV-1a (32 bit)
/// of the id's bytes, modulo the count. Every producer, in any language,
/// must agree on it (see `docs/PROTOCOL.md`).
pub fn shard_of(id: &str, shards: u32) -> u32 {
    fnv1a(FNV_BASIS, id.as_bytes()) % shards.max(1)
}

const FNV_BASIS: u32 = 0x811c_9dc5;

/// FNV-1a (32 bit) of `bytes`, continuing from `hash`.
fn fnv1a(mut hash: u32, bytes: &[u8]) -> u32 {
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// What submitting one job did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The job's id (the idempotency key when one was given).
    pub id: String,
    /// False when a job with this id already existed and was left alone.
    pub created: bool,
}

/// Why an attempt failed, which decides what happens next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// A retry may help: retry with backoff while attempts remain.
    Retry,
    /// A retry cannot help (bad input, corrupt file): bury at once.
    Permanent,
    /// The job was cancelled while it ran.
    Cancelled,
}

impl FailKind {
    fn as_str(self) -> &'static str {
        match self {
            FailKind::Retry => "retry",
            FailKind::Permanent => "permanent",
            FailKind::Cancelled => "cancelled",
        }
    }
}

/// What the fail transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// A retry is scheduled at this Redis time (ms).
    Scheduled {
        /// When the retry is due.
        run_at_ms: u64,
    },
    /// The job was buried in the dead set.
    Dead,
    /// The job ended cancelled.
    Cancelled,
    /// Refused: this worker no longer holds the job (the fence).
    Stale,
}

/// What cancel did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelOutcome {
    /// Removed from pending or scheduled: it will never run.
    Cancelled,
    /// Running: its worker was asked to stop it.
    Cancelling,
    /// Already final in this state; nothing changed.
    AlreadyFinal(crate::JobState),
    /// No such job in this queue.
    NotFound,
}

/// What one recover pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Dead workers removed from the queue's workers set.
    pub workers: u64,
    /// Their jobs put back in pending.
    pub requeued: u64,
    /// Their jobs buried by the poison-pill cap.
    pub buried: u64,
}

/// A queue's sizes and counters (the `stats --json` shape).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QueueStats {
    /// Queue name.
    pub name: String,
    /// Ready to run.
    pub pending: u64,
    /// Waiting for a delay or a retry backoff.
    pub scheduled: u64,
    /// Held by live workers now.
    pub active: u64,
    /// In the dead set.
    pub dead: u64,
    /// Ever completed.
    pub completed: u64,
    /// Failed attempts, ever.
    pub failed: u64,
    /// Retries scheduled, ever.
    pub retried: u64,
    /// Ever cancelled.
    pub cancelled: u64,
    /// Ever submitted (idempotent duplicates not counted).
    pub submitted: u64,
    /// Jobs handed back after their worker died, ever.
    pub recovered: u64,
    /// Live workers serving this queue.
    pub workers: u64,
    /// How long the oldest pending job has been ready to run, in ms (0 when
    /// none is pending): the queue's latency.
    pub oldest_pending_ms: u64,
    /// Paused: no worker claims from it (see [`Queue::pause`]).
    pub paused: bool,
    /// The cap on jobs running at once, summed over the shards (see
    /// [`Queue::set_limits`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u64>,
    /// The most jobs started per second, summed over the shards.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Pending jobs a worker passed on because it does not run their task,
    /// by task (counted in `pending` too): they wait for a worker that
    /// does (see [`FleetStats::unserved`](crate::FleetStats::unserved)).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub parked: BTreeMap<String, u64>,
    /// How many shards the queue has (in a shard's own stats: 1).
    pub shards: u32,
    /// Which shard these are (0 for a whole queue's).
    #[serde(skip_serializing_if = "is_zero")]
    pub shard: u32,
    /// Each shard's own, when asked for ([`Queue::stats_by_shard`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub by_shard: Vec<QueueStats>,
    /// On a Cluster, in a shard's own stats when asked for: the primary
    /// that holds it (`host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Which shard to ask about which ids (indices into `ids`, only those
/// `missing` says are still unknown): in round 0 each id's own shard (where
/// its job lives unless the shard count was raised since), in round 1 every
/// other shard.
fn probe_plan(
    ids: &[String],
    shards: u32,
    round: u32,
    missing: impl Fn(usize) -> bool,
) -> Vec<(u32, Vec<usize>)> {
    let mut plan: Vec<(u32, Vec<usize>)> = (0..shards).map(|s| (s, Vec::new())).collect();
    for (i, id) in ids.iter().enumerate() {
        if !missing(i) {
            continue;
        }
        let home = shard_of(id, shards);
        for (shard, idx) in plan.iter_mut() {
            if (round == 0) == (*shard == home) {
                idx.push(i);
            }
        }
    }
    plan.retain(|(_, idx)| !idx.is_empty());
    plan
}

/// The shards to look for an id in: its key's shard first (where a job
/// with an idempotency key lives), then the rest.
fn probe_order(id: &str, shards: u32) -> impl Iterator<Item = u32> {
    let first = shard_of(id, shards);
    std::iter::once(first).chain((0..shards).filter(move |&s| s != first))
}

impl Queue {
    pub(crate) fn new(client: Client, name: &str) -> Result<Queue> {
        validate_queue_name(name)?;
        let keys = QueueKeys::new(client.prefix(), name);
        Ok(Queue {
            layout: Arc::new(Layout {
                meta: keys.meta.clone(),
                known: std::sync::Mutex::new(None),
                next: std::sync::atomic::AtomicU64::new(rand::random::<u32>() as u64),
            }),
            keys: Arc::new(keys),
            name: name.into(),
            shard: 0,
            client,
        })
    }

    /// The handle on shard `shard` of this queue.
    pub fn at_shard(&self, shard: u32) -> Queue {
        Queue {
            client: self.client.clone(),
            name: self.name.clone(),
            keys: Arc::new(QueueKeys::shard(self.client.prefix(), &self.name, shard)),
            shard,
            layout: self.layout.clone(),
        }
    }

    /// Which shard this handle acts on.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// How many shards the queue has (1 unless raised with
    /// [`Queue::set_shards`]); read from Redis at most every 2 s.
    pub async fn shard_count(&self) -> Result<u32> {
        if let Some((n, at)) = *self.layout.known.lock().expect("poisoned")
            && at.elapsed() < SHARDS_TTL
        {
            return Ok(n);
        }
        // Read before most whole-queue calls: a connection that broke (Redis
        // restarting) is given a few seconds to come back, as the calls that
        // follow would.
        let mut backoff = Duration::from_millis(50);
        let n: Option<u32> = loop {
            match self.client.conn().hget(&self.layout.meta, "shards").await {
                Ok(n) => break n,
                Err(e) if (e.is_io_error() || e.is_timeout()) && backoff < Duration::from_secs(2) => {
                    tracing::debug!(error = %e, "reading the shard count failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let n = n.unwrap_or(1).clamp(1, MAX_SHARDS);
        *self.layout.known.lock().expect("poisoned") = Some((n, tokio::time::Instant::now()));
        Ok(n)
    }

    /// A handle on every shard, shard 0 first.
    pub async fn shards(&self) -> Result<Vec<Queue>> {
        let n = self.shard_count().await?;
        Ok((0..n).map(|i| self.at_shard(i)).collect())
    }

    /// Sets the queue's shard count. It may only grow: a shard's jobs stay
    /// where they are, and producers and workers take the new shards within
    /// 2 s. Returns the count before.
    pub async fn set_shards(&self, shards: u32) -> Result<u32> {
        if !(1..=MAX_SHARDS).contains(&shards) {
            return Err(Error::InvalidShards(format!(
                "{shards} shards: a queue has 1 to {MAX_SHARDS}"
            )));
        }
        let before: u32 = scripts::SET_SHARDS
            .on(&self.client)
            .key(&self.layout.meta)
            .arg(shards)
            .invoke_async(&mut self.client.conn())
            .await?;
        if before > shards {
            return Err(Error::InvalidShards(format!(
                "queue {} has {before} shards; a shard count can only grow (its jobs live in every shard)",
                self.name
            )));
        }
        *self.layout.known.lock().expect("poisoned") = None;
        self.client.register_queue(&self.name).await?;
        Ok(before)
    }

    /// The events channel of every shard.
    pub async fn event_channels(&self) -> Result<Vec<String>> {
        Ok(self
            .shards()
            .await?
            .into_iter()
            .map(|q| q.keys.events.clone())
            .collect())
    }

    /// A fresh id for a job without one that hashes to the next shard in
    /// turn (round robin per producer): every job then lives on
    /// `shard_of(id)`, and a resubmit with the same ids (after an
    /// unconfirmed submit) reaches the same shards. The id is a UUID v7
    /// whose last two hex digits (random bits) are chosen to land on the
    /// shard; with more shards than that reaches, the hash alone spreads.
    fn new_placed_id(&self, shards: u32) -> String {
        let turn = self
            .layout
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let want = (turn % shards as u64) as u32;
        let mut id = new_job_id();
        for _ in 0..8 {
            let (head, _) = id.split_at(id.len() - 2);
            let state = fnv1a(FNV_BASIS, head.as_bytes());
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for pair in 0..256usize {
                let tail = [HEX[pair >> 4], HEX[pair & 15]];
                if fnv1a(state, &tail) % shards == want {
                    return format!("{head}{}", std::str::from_utf8(&tail).expect("hex"));
                }
            }
            id = new_job_id();
        }
        id
    }

    /// Where each of `ids` has a record, if anywhere.
    async fn find_shards(&self, ids: &[String]) -> Result<Vec<Option<u32>>> {
        let found = self
            .probe(
                ids,
                |pipe, key| {
                    pipe.exists(key);
                },
                |exists: &bool| *exists,
            )
            .await?;
        Ok(found.into_iter().map(|f| f.map(|(shard, _)| shard)).collect())
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The queue's keys.
    pub fn keys(&self) -> &QueueKeys {
        &self.keys
    }

    /// The client this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Submits a job of a typed [`Task`]; its [`Handle`] waits for the
    /// typed output.
    pub async fn enqueue<T: Task>(&self, payload: &T::Payload) -> Result<Handle<T>> {
        self.enqueue_with::<T>(payload, |spec| spec).await
    }

    /// [`Queue::enqueue`], with the job's options set on its spec (an id,
    /// a delay, attempts, a timeout).
    pub async fn enqueue_with<T: Task>(
        &self,
        payload: &T::Payload,
        options: impl FnOnce(JobSpec) -> JobSpec,
    ) -> Result<Handle<T>> {
        let payload = serde_json::to_string(payload).map_err(|e| Error::InvalidPayload(e.to_string()))?;
        let spec = options(JobSpec::with_json_text(T::NAME, payload));
        let submitted = self.submit(spec).await?;
        Ok(Handle::new(
            self.client.clone(),
            self.name.to_string(),
            submitted.id,
            submitted.created,
        ))
    }

    /// Submits one job.
    pub async fn submit(&self, spec: JobSpec) -> Result<Submitted> {
        let mut out = self.submit_batch(std::slice::from_ref(&spec)).await?;
        out.pop()
            .ok_or_else(|| Error::Protocol("submit returned nothing".into()))
    }

    /// Submits many jobs: one script call per 1,000 jobs, the calls pipelined
    /// on the shared connection. Every spec is validated before anything is
    /// sent, so a bad one submits none.
    pub async fn submit_batch(&self, specs: &[JobSpec]) -> Result<Vec<Submitted>> {
        let limit = self.client.policy().max_payload_bytes;
        for spec in specs {
            spec.validate(limit)?;
        }
        self.client.register_queue(&self.name).await?;
        let shards = self.shard_count().await?;
        if shards == 1 {
            return self.at_shard(0).submit_to_shard(specs).await;
        }
        // The jobs whose id the caller gave (idempotency keys).
        let keyed: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].id.is_some()).collect();
        // Every job lives on the shard its id hashes to. An id the caller
        // gave (an idempotency key) that already names a job goes where that
        // job is: a key used before the shard count was raised may hash
        // elsewhere now, and must still find its job.
        let specs: Vec<JobSpec> = specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if s.id.is_none() {
                    s.id = Some(self.new_placed_id(shards));
                }
                s
            })
            .collect();
        let keyed_ids: Vec<String> = keyed
            .iter()
            .map(|&i| specs[i].id.clone().unwrap_or_default())
            .collect();
        let mut home: Vec<Option<u32>> = vec![None; specs.len()];
        if !keyed.is_empty() {
            for (&i, found) in keyed.iter().zip(self.find_shards(&keyed_ids).await?) {
                home[i] = found;
            }
        }
        let mut by_shard: Vec<Vec<usize>> = vec![Vec::new(); shards as usize];
        for (i, spec) in specs.iter().enumerate() {
            // A batch job goes where its batch is; a unique job where its key's lock is.
            let placed_by = spec
                .batch
                .clone()
                .or_else(|| spec.unique_key_text())
                .unwrap_or_else(|| spec.id.clone().unwrap_or_default());
            let shard = home[i].unwrap_or_else(|| shard_of(&placed_by, shards));
            by_shard[shard as usize].push(i);
        }
        let parts: Vec<(u32, Vec<usize>)> = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, idx)| !idx.is_empty())
            .map(|(shard, idx)| (shard as u32, idx))
            .collect();
        let calls = parts.iter().map(|(shard, idx)| {
            let part: Vec<JobSpec> = idx.iter().map(|&i| specs[i].clone()).collect();
            let handle = self.at_shard(*shard);
            async move { handle.submit_to_shard(&part).await }
        });
        let replies = futures_util::future::join_all(calls).await;
        let mut out: Vec<Option<Submitted>> = vec![None; specs.len()];
        // The fewest replicas any shard's write reached, when one fell short.
        let mut short: Option<u32> = None;
        for (reply, (_, idx)) in replies.into_iter().zip(&parts) {
            match reply {
                Ok(submitted) => {
                    for (s, &i) in submitted.into_iter().zip(idx) {
                        out[i] = Some(s);
                    }
                }
                Err(Error::NotReplicated { reached, .. }) => {
                    short = Some(short.map_or(reached, |r| r.min(reached)));
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(reached) = short {
            // Every id of the batch: the caller resubmits them with their keys.
            let replication = self.client.replication();
            return Err(Error::NotReplicated {
                wanted: replication.replicas,
                reached,
                timeout: replication.timeout,
                ids: specs.iter().filter_map(|s| s.id.clone()).collect(),
            });
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| Error::Protocol("submit returned a short reply".into())))
            .collect()
    }

    /// Submits to this handle's shard (specs already validated).
    async fn submit_to_shard(&self, specs: &[JobSpec]) -> Result<Vec<Submitted>> {
        let ids: Vec<String> = specs
            .iter()
            .map(|s| s.id.clone().unwrap_or_else(new_job_id))
            .collect();
        let invocations: Vec<_> = specs
            .chunks(SUBMIT_CHUNK)
            .zip(ids.chunks(SUBMIT_CHUNK))
            .map(|(specs, ids)| {
                let mut inv = scripts::SUBMIT.on(&self.client).prepare_invoke();
                inv.key(&self.keys.pending)
                    .key(&self.keys.scheduled)
                    .key(&self.keys.stats)
                    .key(&self.keys.dead)
                    .arg(&self.keys.notify);
                // A longer layout only when a job of the call needs it: no
                // extra bytes per job otherwise.
                let stride = specs.iter().map(JobSpec::stride).max().unwrap_or(6);
                for (spec, id) in specs.iter().zip(ids) {
                    inv.key(self.keys.job(id))
                        .arg(id)
                        .arg(&spec.task)
                        .arg(&spec.payload)
                        .arg(spec.max_attempts)
                        .arg(spec.timeout.as_millis() as u64)
                        .arg(spec.delay.as_millis() as u64);
                    if stride >= 8 {
                        inv.arg(spec.key_ttl_secs())
                            .arg(spec.traceparent.as_deref().unwrap_or(""));
                    }
                    if stride == 12 {
                        let unique = spec.unique.as_ref();
                        let debounce = unique.is_some_and(|u| u.debounce.is_some());
                        inv.arg(spec.unique_key_text().unwrap_or_default())
                            .arg(unique.map_or(0, |u| u.lock_for.as_millis() as u64))
                            .arg(if debounce { "1" } else { "0" })
                            .arg(spec.batch.as_deref().unwrap_or(""));
                    }
                }
                inv
            })
            .collect();
        let calls = invocations.iter().map(|inv| self.client.write::<Vec<Value>>(inv));
        let replies = try_join_all(calls).await?;
        let short = replies.iter().find_map(|(_, c)| match c {
            Confirmation::Short { reached } => Some(*reached),
            _ => None,
        });
        if let Some(reached) = short {
            let replication = self.client.replication();
            return Err(Error::NotReplicated {
                wanted: replication.replicas,
                reached,
                timeout: replication.timeout,
                ids,
            });
        }
        let created: Vec<Value> = replies.into_iter().flat_map(|(c, _)| c).collect();
        if created.len() != ids.len() {
            return Err(Error::Protocol("submit returned a short reply".into()));
        }
        // 1 created, 0 the id existed, or the id of the live job holding the
        // unique key.
        Ok(ids
            .into_iter()
            .zip(created)
            .map(|(id, c)| match c {
                Value::Int(n) => Submitted { id, created: n == 1 },
                other => Submitted {
                    id: text(other),
                    created: false,
                },
            })
            .collect())
    }

    /// Deletes this queue's counters and workers set if it holds no job and
    /// no live worker serves it (see [`Client::forget_queue`], which also
    /// drops the name from the known queues).
    pub(crate) async fn forget(&self, live_within: Duration) -> Result<()> {
        let shards = self.shards().await?;
        // Every shard is checked before any is forgotten.
        for shard in &shards {
            let stats = shard.stats_here().await?;
            if stats.pending + stats.scheduled + stats.active + stats.dead > 0 {
                return shard.forget_here(live_within).await;
            }
        }
        for shard in shards.iter().rev() {
            shard.forget_here(live_within).await?;
        }
        // The shard count stays: producers and workers that still know the
        // queue must keep finding all of its shards.
        Ok(())
    }

    async fn forget_here(&self, live_within: Duration) -> Result<()> {
        let reply: String = scripts::FORGET
            .on(&self.client)
            .key(&self.keys.pending)
            .key(&self.keys.scheduled)
            .key(&self.keys.dead)
            .key(&self.keys.workers)
            .key(&self.keys.stats)
            .arg(&self.keys.processing_prefix)
            .arg(live_within.as_millis() as u64)
            .invoke_async(&mut self.client.conn())
            .await?;
        match reply.strip_prefix("busy:") {
            None if reply == "forgotten" => Ok(()),
            None => Err(Error::Protocol(format!("forget replied {reply:?}"))),
            Some(what) => Err(Error::QueueBusy {
                queue: self.name.to_string(),
                what: match what {
                    "active" => "jobs in a worker's processing list".to_string(),
                    "workers" => "a live worker serves it".to_string(),
                    other => format!("{other} jobs"),
                },
            }),
        }
    }

    /// Cancels a job: at once when pending or scheduled, cooperatively (its
    /// worker is told) when running.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        validate_job_id(id)?;
        let shards = self.shard_count().await?;
        if shards == 1 {
            return self.at_shard(0).cancel_here(id).await;
        }
        for shard in probe_order(id, shards) {
            let handle = self.at_shard(shard);
            let exists: bool = self.client.conn().exists(handle.keys.job(id)).await?;
            if exists {
                return handle.cancel_here(id).await;
            }
        }
        Ok(CancelOutcome::NotFound)
    }

    async fn cancel_here(&self, id: &str) -> Result<CancelOutcome> {
        let reply: String = scripts::CANCEL
            .on(&self.client)
            .key(&self.keys.pending)
            .key(&self.keys.scheduled)
            .key(&self.keys.stats)
            .key(self.keys.job(id))
            .arg(id)
            .arg(&self.keys.events)
            .arg(&self.keys.control)
            .arg(&*self.name)
            .arg(self.client.policy().completed_retention.as_secs())
            .invoke_async(&mut self.client.conn())
            .await?;
        Ok(match reply.as_str() {
            "cancelled" => CancelOutcome::Cancelled,
            "cancelling" => CancelOutcome::Cancelling,
            "missing" => CancelOutcome::NotFound,
            other => CancelOutcome::AlreadyFinal(
                other
                    .strip_prefix("final:")
                    .and_then(crate::JobState::parse)
                    .ok_or_else(|| Error::Protocol(format!("cancel replied {other:?}")))?,
            ),
        })
    }

    /// Reads one job, or `None` when this queue has no such job.
    pub async fn status(&self, id: &str) -> Result<Option<Job>> {
        validate_job_id(id)?;
        for shard in probe_order(id, self.shard_count().await?) {
            let key = self.at_shard(shard).keys.job(id);
            let fields: HashMap<String, String> = self.client.conn().hgetall(key).await?;
            if let Some(job) = Job::from_fields(id, &self.name, fields) {
                return Ok(Some(job));
            }
        }
        Ok(None)
    }

    /// Reads many jobs, a pipelined round trip per shard (missing ones are
    /// `None`).
    pub async fn status_many(&self, ids: &[String]) -> Result<Vec<Option<Job>>> {
        let found = self
            .probe(
                ids,
                |pipe, key| {
                    pipe.hgetall(key);
                },
                |fields: &HashMap<String, String>| !fields.is_empty(),
            )
            .await?;
        Ok(ids
            .iter()
            .zip(found)
            .map(|(id, f)| f.and_then(|(_, fields)| Job::from_fields(id, &self.name, fields)))
            .collect())
    }

    /// Reads `fields` of many jobs, a pipelined round trip per shard; `None`
    /// for an id with no record.
    pub async fn fields_many(
        &self,
        ids: &[String],
        fields: &[&str],
    ) -> Result<Vec<Option<Vec<Option<String>>>>> {
        // `created_ms` first: every record has it, so an absent one (and no
        // other field) means no record.
        let found = self
            .probe(
                ids,
                |pipe, key| {
                    pipe.cmd("HMGET").arg(key).arg("created_ms").arg(fields);
                },
                |row: &Vec<Option<String>>| row.iter().any(Option::is_some),
            )
            .await?;
        Ok(found
            .into_iter()
            .map(|f| f.map(|(_, mut row)| row.split_off(1)))
            .collect())
    }

    /// Runs one command per id on its job HASH (`read` adds it for a key),
    /// a pipelined round trip per shard: first in each id's own shard (where
    /// its job lives unless the shard count was raised since), then in the
    /// others for the ids not `found` yet. Per id: the shard it was found
    /// in, and the reply there.
    async fn probe<T: redis::FromRedisValue>(
        &self,
        ids: &[String],
        read: impl Fn(&mut redis::Pipeline, String),
        found: impl Fn(&T) -> bool,
    ) -> Result<Vec<Option<(u32, T)>>> {
        let mut out: Vec<Option<(u32, T)>> = ids.iter().map(|_| None).collect();
        let shards = self.shard_count().await?;
        for round in 0..=1 {
            for (shard, idx) in probe_plan(ids, shards, round, |i| out[i].is_none()) {
                let handle = self.at_shard(shard);
                for chunk in idx.chunks(1000) {
                    let mut pipe = redis::pipe();
                    for &i in chunk {
                        read(&mut pipe, handle.keys.job(&ids[i]));
                    }
                    let replies: Vec<T> = pipe.query_async(&mut self.client.conn()).await?;
                    for (&i, reply) in chunk.iter().zip(replies) {
                        if found(&reply) {
                            out[i] = Some((shard, reply));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The queue's sizes and counters, summed over its shards (one script
    /// call each).
    pub async fn stats(&self) -> Result<QueueStats> {
        let shards = self.stats_by_shard().await?;
        let mut total = QueueStats {
            name: self.name.to_string(),
            ..QueueStats::default()
        };
        for s in &shards {
            total.pending += s.pending;
            total.scheduled += s.scheduled;
            total.active += s.active;
            total.dead += s.dead;
            total.completed += s.completed;
            total.failed += s.failed;
            total.retried += s.retried;
            total.cancelled += s.cancelled;
            total.submitted += s.submitted;
            total.recovered += s.recovered;
            // A worker serves every shard: counted once.
            total.workers = total.workers.max(s.workers);
            total.oldest_pending_ms = total.oldest_pending_ms.max(s.oldest_pending_ms);
            total.paused |= s.paused;
            if let Some(c) = s.concurrency_limit {
                *total.concurrency_limit.get_or_insert(0) += c;
            }
            if let Some(r) = s.rate_limit {
                *total.rate_limit.get_or_insert(0.0) += r;
            }
            for (task, n) in &s.parked {
                *total.parked.entry(task.clone()).or_default() += n;
            }
        }
        total.shards = shards.len() as u32;
        Ok(total)
    }

    /// The sizes and counters of each shard, shard 0 first.
    pub async fn stats_by_shard(&self) -> Result<Vec<QueueStats>> {
        let handles = self.shards().await?;
        try_join_all(handles.iter().map(|q| q.stats_here())).await
    }

    async fn stats_here(&self) -> Result<QueueStats> {
        let reply: Vec<Value> = scripts::STATS
            .on(&self.client)
            .key(&self.keys.pending)
            .key(&self.keys.scheduled)
            .key(&self.keys.dead)
            .key(&self.keys.workers)
            .key(&self.keys.stats)
            .arg(&self.keys.processing_prefix)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.meta)
            .arg(&self.keys.parked)
            .invoke_async(&mut self.client.conn())
            .await?;
        let mut fields = reply.into_iter().map(text);
        let mut num = || fields.next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        let mut stats = QueueStats {
            name: self.name.to_string(),
            shard: self.shard,
            shards: 1,
            pending: num(),
            scheduled: num(),
            dead: num(),
            active: num(),
            workers: num(),
            oldest_pending_ms: num(),
            ..QueueStats::default()
        };
        while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
            if field == "limit:rate" {
                stats.rate_limit = value.parse().ok();
                continue;
            }
            let value = value.parse().unwrap_or(0);
            if let Some(task) = field.strip_prefix("parked:") {
                stats.parked.insert(task.to_string(), value);
                continue;
            }
            match field.as_str() {
                "paused" => stats.paused = true,
                "limit:concurrency" => stats.concurrency_limit = Some(value),
                "completed" => stats.completed = value,
                "failed" => stats.failed = value,
                "retried" => stats.retried = value,
                "cancelled" => stats.cancelled = value,
                "submitted" => stats.submitted = value,
                "recovered" => stats.recovered = value,
                _ => {}
            }
        }
        Ok(stats)
    }

    /// The most recently buried jobs, newest first, at most `limit`.
    pub async fn dead_list(&self, limit: usize) -> Result<Vec<Job>> {
        let mut ids = Vec::new();
        for shard in self.shards().await? {
            let newest: Vec<String> = self
                .client
                .conn()
                .zrevrange(&shard.keys.dead, 0, limit as isize - 1)
                .await?;
            ids.extend(newest);
        }
        let mut all: Vec<Job> = self.status_many(&ids).await?.into_iter().flatten().collect();
        all.sort_by_key(|j| std::cmp::Reverse(j.finished_ms));
        all.truncate(limit);
        Ok(all)
    }

    /// Gives dead jobs (all when `ids` is empty) a fresh set of attempts.
    /// Only records still dead are retried. Works in chunks of 1,000, one
    /// script call each, so a large dead set never blocks Redis for long.
    pub async fn dead_retry(&self, ids: &[String]) -> Result<u64> {
        let mut total = 0;
        for shard in self.shards().await? {
            total += shard
                .dead_chunks(scripts::DEAD_RETRY.on(&self.client), ids, |inv| {
                    inv.key(&shard.keys.dead)
                        .key(&shard.keys.pending)
                        .arg(&shard.keys.job_prefix)
                        .arg(&shard.keys.notify);
                })
                .await?;
        }
        Ok(total)
    }

    /// Deletes dead jobs (all when `ids` is empty) for good, in chunks like
    /// [`Queue::dead_retry`]. Only records still dead are deleted.
    pub async fn dead_purge(&self, ids: &[String]) -> Result<u64> {
        let mut total = 0;
        for shard in self.shards().await? {
            total += shard
                .dead_chunks(scripts::DEAD_PURGE.on(&self.client), ids, |inv| {
                    inv.key(&shard.keys.dead).arg(&shard.keys.job_prefix);
                })
                .await?;
        }
        Ok(total)
    }

    /// Runs a dead-set script over `ids` (every entry when empty), a chunk
    /// per call. `head` adds the script's fixed KEYS and ARGV.
    async fn dead_chunks(
        &self,
        script: &redis::Script,
        ids: &[String],
        head: impl Fn(&mut redis::ScriptInvocation<'_>),
    ) -> Result<u64> {
        let mut total = 0;
        if ids.is_empty() {
            loop {
                let mut inv = script.prepare_invoke();
                head(&mut inv);
                inv.arg("all").arg(DEAD_CHUNK);
                let (done, examined): (u64, usize) = inv.invoke_async(&mut self.client.conn()).await?;
                total += done;
                if examined < DEAD_CHUNK {
                    return Ok(total);
                }
            }
        }
        for chunk in ids.chunks(DEAD_CHUNK) {
            let mut inv = script.prepare_invoke();
            head(&mut inv);
            inv.arg("ids").arg(chunk);
            let (done, _): (u64, usize) = inv.invoke_async(&mut self.client.conn()).await?;
            total += done;
        }
        Ok(total)
    }
}

/// A reply element as text (bulk or simple strings, integers).
pub(crate) fn text(v: Value) -> String {
    match v {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::SimpleString(s) => s,
        Value::Int(i) => i.to_string(),
        Value::Okay => "OK".to_string(),
        _ => String::new(),
    }
}

/// The worker's side of a queue (see [`WorkerProtocol`](crate::worker_protocol::WorkerProtocol)).
impl crate::worker_protocol::WorkerProtocol for Queue {
    async fn claim_for(&self, worker: &str, n: usize, tasks: &[String]) -> Result<Vec<ClaimedJob>> {
        let policy = self.client.policy();
        let reply: Vec<Value> = scripts::CLAIM
            .on(&self.client)
            .key(&self.keys.pending)
            .key(self.keys.processing(worker))
            .key(&self.keys.workers)
            .key(&self.keys.stats)
            .key(&self.keys.dead)
            .arg(worker)
            .arg(n)
            .arg(&self.keys.job_prefix)
            .arg(policy.max_payload_bytes)
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(policy.completed_retention.as_secs())
            .arg(policy.dead_retention.as_secs())
            .arg(policy.dead_max_count)
            .arg(policy.dead_retention.as_millis() as u64)
            .arg(&self.keys.notify)
            .arg(&self.keys.meta)
            .arg(&self.keys.parked)
            .arg(&self.keys.processing_prefix)
            .arg(tasks)
            .invoke_async(&mut self.client.conn())
            .await?;
        let mut fields = reply.into_iter();
        match fields.next().map(text).as_deref() {
            Some("ok") => {}
            Some("recovered") => return Err(Error::WorkerRecovered(worker.to_string())),
            other => return Err(Error::Protocol(format!("claim replied {other:?}"))),
        }
        let mut jobs = Vec::new();
        while let Some(id) = fields.next() {
            let mut next = || fields.next().map(text).unwrap_or_default();
            let (task, payload, attempt, max_attempts, timeout_ms, traceparent) =
                (next(), next(), next(), next(), next(), next());
            jobs.push(ClaimedJob {
                id: text(id),
                queue: self.name.to_string(),
                shard: self.shard,
                task,
                payload,
                attempt: attempt.parse().unwrap_or(1),
                max_attempts: max_attempts.parse().unwrap_or(1),
                timeout: Duration::from_millis(timeout_ms.parse().unwrap_or(0)),
                traceparent: Some(traceparent).filter(|t| !t.is_empty()),
            });
        }
        Ok(jobs)
    }

    async fn ack(&self, worker: &str, results: &[(String, String)]) -> Result<Vec<bool>> {
        let mut inv = scripts::ACK.on(&self.client).prepare_invoke();
        inv.key(self.keys.processing(worker))
            .key(&self.keys.stats)
            .arg(worker)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(self.client.policy().completed_retention.as_secs());
        for (id, result) in results {
            inv.arg(id).arg(result);
        }
        let (applied, confirmation): (Vec<i64>, _) = self.client.write(&inv).await?;
        self.client.unconfirmed("ack", results.len(), confirmation);
        Ok(applied.into_iter().map(|a| a == 1).collect())
    }

    async fn progress(&self, worker: &str, id: &str, fraction: f64, message: &str) -> Result<bool> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::InvalidProgress(fraction));
        }
        let recorded: i64 = scripts::PROGRESS
            .on(&self.client)
            .key(self.keys.job(id))
            .arg(worker)
            .arg(
                format!("{fraction:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.'),
            )
            .arg(message)
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(id)
            .invoke_async(&mut self.client.conn())
            .await?;
        Ok(recorded == 1)
    }

    async fn fail(&self, worker: &str, id: &str, error: &str, kind: FailKind) -> Result<FailOutcome> {
        let policy = self.client.policy();
        let jitter: f64 = rand::random::<f64>() * policy.backoff_jitter;
        let mut inv = scripts::FAIL.on(&self.client).prepare_invoke();
        inv.key(self.keys.processing(worker))
            .key(&self.keys.scheduled)
            .key(&self.keys.dead)
            .key(&self.keys.stats)
            .key(self.keys.job(id))
            .arg(worker)
            .arg(id)
            .arg(error)
            .arg(kind.as_str())
            .arg(policy.backoff_base.as_millis() as u64)
            .arg(policy.backoff_cap.as_millis() as u64)
            .arg(jitter)
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(&self.keys.job_prefix)
            .arg(policy.completed_retention.as_secs())
            .arg(policy.dead_retention.as_secs())
            .arg(policy.dead_max_count)
            .arg(policy.dead_retention.as_millis() as u64);
        let (reply, confirmation): (Vec<Value>, _) = self.client.write(&inv).await?;
        self.client.unconfirmed("fail", 1, confirmation);
        let mut fields = reply.into_iter().map(text);
        match fields.next().as_deref() {
            Some("scheduled") => Ok(FailOutcome::Scheduled {
                run_at_ms: fields.next().and_then(|t| t.parse().ok()).unwrap_or(0),
            }),
            Some("dead") => Ok(FailOutcome::Dead),
            Some("cancelled") => Ok(FailOutcome::Cancelled),
            Some("stale") => Ok(FailOutcome::Stale),
            other => Err(Error::Protocol(format!("fail replied {other:?}"))),
        }
    }

    async fn heartbeat(&self, worker: &str, register: bool) -> Result<Option<u64>> {
        let now: u64 = scripts::HEARTBEAT
            .on(&self.client)
            .key(&self.keys.workers)
            .arg(worker)
            .arg(if register { "1" } else { "0" })
            .invoke_async(&mut self.client.conn())
            .await?;
        Ok((now > 0).then_some(now))
    }

    async fn recover(&self, dead_after: Duration) -> Result<Recovered> {
        let policy = self.client.policy();
        let reply: Vec<u64> = scripts::RECOVER
            .on(&self.client)
            .key(&self.keys.workers)
            .key(&self.keys.pending)
            .key(&self.keys.dead)
            .key(&self.keys.stats)
            .arg(dead_after.as_millis() as u64)
            .arg(&self.keys.processing_prefix)
            .arg(&self.keys.job_prefix)
            .arg(policy.poison_cap)
            .arg(&self.keys.events)
            .arg(&self.keys.notify)
            .arg(&*self.name)
            .arg(policy.dead_retention.as_secs())
            .arg(policy.dead_max_count)
            .arg(policy.dead_retention.as_millis() as u64)
            .arg(policy.completed_retention.as_secs())
            .invoke_async(&mut self.client.conn())
            .await?;
        match reply[..] {
            [workers, requeued, buried] => Ok(Recovered {
                workers,
                requeued,
                buried,
            }),
            _ => Err(Error::Protocol("recover returned a short reply".into())),
        }
    }

    async fn promote_due(&self, limit: usize) -> Result<u64> {
        Ok(scripts::PROMOTE
            .on(&self.client)
            .key(&self.keys.scheduled)
            .key(&self.keys.pending)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.notify)
            .arg(limit)
            .invoke_async(&mut self.client.conn())
            .await?)
    }

    async fn requeue(&self, worker: &str, leave: bool) -> Result<u64> {
        Ok(scripts::REQUEUE
            .on(&self.client)
            .key(self.keys.processing(worker))
            .key(&self.keys.pending)
            .key(&self.keys.workers)
            .key(&self.keys.stats)
            .arg(worker)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.notify)
            .arg(if leave { "1" } else { "0" })
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(self.client.policy().completed_retention.as_secs())
            .invoke_async(&mut self.client.conn())
            .await?)
    }

    async fn reconcile(&self, worker: &str, held: &[String]) -> Result<u64> {
        Ok(scripts::RECONCILE
            .on(&self.client)
            .key(self.keys.processing(worker))
            .key(&self.keys.pending)
            .key(&self.keys.stats)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.notify)
            .arg(&self.keys.events)
            .arg(&*self.name)
            .arg(self.client.policy().completed_retention.as_secs())
            .arg(worker)
            .arg(held)
            .invoke_async(&mut self.client.conn())
            .await?)
    }

    async fn cancel_requested(&self, ids: &[String]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hexists(self.keys.job(id), "cancel");
        }
        Ok(pipe.query_async(&mut self.client.conn()).await?)
    }
}
