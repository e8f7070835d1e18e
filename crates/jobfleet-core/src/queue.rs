//! [`Queue`]: one queue's transitions, each a single Lua script call.

use std::collections::HashMap;
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

/// A handle on one queue. Cheap to clone; its keys are built once.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    name: Arc<str>,
    keys: Arc<QueueKeys>,
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
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
}

impl Queue {
    pub(crate) fn new(client: Client, name: &str) -> Result<Queue> {
        validate_queue_name(name)?;
        Ok(Queue {
            keys: Arc::new(QueueKeys::new(client.prefix(), name)),
            name: name.into(),
            client,
        })
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
        let ids: Vec<String> = specs
            .iter()
            .map(|s| s.id.clone().unwrap_or_else(new_job_id))
            .collect();
        let invocations: Vec<_> = specs
            .chunks(SUBMIT_CHUNK)
            .zip(ids.chunks(SUBMIT_CHUNK))
            .map(|(specs, ids)| {
                let mut inv = scripts::SUBMIT.prepare_invoke();
                inv.key(&self.keys.pending)
                    .key(&self.keys.scheduled)
                    .key(&self.keys.stats)
                    .key(&self.keys.dead)
                    .arg(&self.keys.notify);
                for (spec, id) in specs.iter().zip(ids) {
                    inv.key(self.keys.job(id))
                        .arg(id)
                        .arg(&spec.task)
                        .arg(&spec.payload)
                        .arg(spec.max_attempts)
                        .arg(spec.timeout.as_millis() as u64)
                        .arg(spec.delay.as_millis() as u64);
                }
                inv
            })
            .collect();
        let calls = invocations.iter().map(|inv| self.client.write::<Vec<i64>>(inv));
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
        let created: Vec<i64> = replies.into_iter().flat_map(|(c, _)| c).collect();
        if created.len() != ids.len() {
            return Err(Error::Protocol("submit returned a short reply".into()));
        }
        Ok(ids
            .into_iter()
            .zip(created)
            .map(|(id, c)| Submitted { id, created: c == 1 })
            .collect())
    }

    /// Claims up to `n` jobs for `worker`, moving them from pending into its
    /// processing list. Fails with [`Error::WorkerRecovered`] when the worker
    /// is no longer registered.
    pub async fn claim(&self, worker: &str, n: usize) -> Result<Vec<ClaimedJob>> {
        let policy = self.client.policy();
        let reply: Vec<Value> = scripts::CLAIM
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
            let (task, payload, attempt, max_attempts, timeout_ms) = (next(), next(), next(), next(), next());
            jobs.push(ClaimedJob {
                id: text(id),
                queue: self.name.to_string(),
                task,
                payload,
                attempt: attempt.parse().unwrap_or(1),
                max_attempts: max_attempts.parse().unwrap_or(1),
                timeout: Duration::from_millis(timeout_ms.parse().unwrap_or(0)),
            });
        }
        Ok(jobs)
    }

    /// Completes jobs `worker` holds, in one script call. `results` pairs
    /// each id with its result as JSON text. Returns, per job, whether the ack
    /// was applied (false: refused by the fence, the worker no longer held it).
    pub async fn ack(&self, worker: &str, results: &[(String, String)]) -> Result<Vec<bool>> {
        let mut inv = scripts::ACK.prepare_invoke();
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

    /// Records a failed attempt of a job `worker` holds.
    pub async fn fail(&self, worker: &str, id: &str, error: &str, kind: FailKind) -> Result<FailOutcome> {
        let policy = self.client.policy();
        let jitter: f64 = rand::random::<f64>() * policy.backoff_jitter;
        let mut inv = scripts::FAIL.prepare_invoke();
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

    /// Registers (`register`) or refreshes `worker`'s heartbeat. Returns the
    /// Redis time, or `None` when a refresh found the worker recovered.
    pub async fn heartbeat(&self, worker: &str, register: bool) -> Result<Option<u64>> {
        let now: u64 = scripts::HEARTBEAT
            .key(&self.keys.workers)
            .arg(worker)
            .arg(if register { "1" } else { "0" })
            .invoke_async(&mut self.client.conn())
            .await?;
        Ok((now > 0).then_some(now))
    }

    /// Hands the jobs of workers silent for longer than `dead_after` back to
    /// pending (or buries poison pills). Safe to run from many workers.
    pub async fn recover(&self, dead_after: Duration) -> Result<Recovered> {
        let policy = self.client.policy();
        let reply: Vec<u64> = scripts::RECOVER
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

    /// Moves up to `limit` due jobs from scheduled to pending.
    pub async fn promote_due(&self, limit: usize) -> Result<u64> {
        Ok(scripts::PROMOTE
            .key(&self.keys.scheduled)
            .key(&self.keys.pending)
            .arg(&self.keys.job_prefix)
            .arg(&self.keys.notify)
            .arg(limit)
            .invoke_async(&mut self.client.conn())
            .await?)
    }

    /// Hands every job `worker` holds back to pending (its attempt is not
    /// counted); with `leave`, also removes the worker from the queue.
    pub async fn requeue(&self, worker: &str, leave: bool) -> Result<u64> {
        Ok(scripts::REQUEUE
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

    /// Hands back every job in `worker`'s processing list that is not in
    /// `held` (the jobs it runs or has yet to write back): for after a claim
    /// whose reply was lost, or an outcome Redis rolled back (a failover, a
    /// crash before fsync). Jobs whose cancel was requested end cancelled.
    /// Returns how many were handed back.
    pub async fn reconcile(&self, worker: &str, held: &[String]) -> Result<u64> {
        Ok(scripts::RECONCILE
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

    /// Which of `ids` have had their cancel requested (the record's `cancel`
    /// flag), in one pipelined round trip: for a worker that may have missed
    /// the control message while it was resubscribing.
    pub async fn cancel_requested(&self, ids: &[String]) -> Result<Vec<bool>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hexists(self.keys.job(id), "cancel");
        }
        Ok(pipe.query_async(&mut self.client.conn()).await?)
    }

    /// Deletes this queue's counters and workers set if it holds no job and
    /// no live worker serves it (see [`Client::forget_queue`], which also
    /// drops the name from the known queues).
    pub(crate) async fn forget(&self, live_within: Duration) -> Result<()> {
        let reply: String = scripts::FORGET
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
        let reply: String = scripts::CANCEL
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
        let fields: HashMap<String, String> = self.client.conn().hgetall(self.keys.job(id)).await?;
        Ok(Job::from_fields(id, &self.name, fields))
    }

    /// Reads many jobs in one pipelined round trip (missing ones are `None`).
    pub async fn status_many(&self, ids: &[String]) -> Result<Vec<Option<Job>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.job(id));
        }
        let all: Vec<HashMap<String, String>> = pipe.query_async(&mut self.client.conn()).await?;
        Ok(ids
            .iter()
            .zip(all)
            .map(|(id, fields)| Job::from_fields(id, &self.name, fields))
            .collect())
    }

    /// The queue's sizes and counters, read in one script call.
    pub async fn stats(&self) -> Result<QueueStats> {
        let reply: Vec<Value> = scripts::STATS
            .key(&self.keys.pending)
            .key(&self.keys.scheduled)
            .key(&self.keys.dead)
            .key(&self.keys.workers)
            .key(&self.keys.stats)
            .arg(&self.keys.processing_prefix)
            .invoke_async(&mut self.client.conn())
            .await?;
        let mut fields = reply.into_iter().map(text);
        let mut num = || fields.next().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
        let mut stats = QueueStats {
            name: self.name.to_string(),
            pending: num(),
            scheduled: num(),
            dead: num(),
            active: num(),
            workers: num(),
            ..QueueStats::default()
        };
        while let (Some(field), Some(value)) = (fields.next(), fields.next()) {
            let value = value.parse().unwrap_or(0);
            match field.as_str() {
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
        let ids: Vec<String> = self
            .client
            .conn()
            .zrevrange(&self.keys.dead, 0, limit as isize - 1)
            .await?;
        Ok(self.status_many(&ids).await?.into_iter().flatten().collect())
    }

    /// Gives dead jobs (all when `ids` is empty) a fresh set of attempts.
    /// Only records still dead are retried. Works in chunks of 1,000, one
    /// script call each, so a large dead set never blocks Redis for long.
    pub async fn dead_retry(&self, ids: &[String]) -> Result<u64> {
        self.dead_chunks(&scripts::DEAD_RETRY, ids, |inv| {
            inv.key(&self.keys.dead)
                .key(&self.keys.pending)
                .arg(&self.keys.job_prefix)
                .arg(&self.keys.notify);
        })
        .await
    }

    /// Deletes dead jobs (all when `ids` is empty) for good, in chunks like
    /// [`Queue::dead_retry`]. Only records still dead are deleted.
    pub async fn dead_purge(&self, ids: &[String]) -> Result<u64> {
        self.dead_chunks(&scripts::DEAD_PURGE, ids, |inv| {
            inv.key(&self.keys.dead).arg(&self.keys.job_prefix);
        })
        .await
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
