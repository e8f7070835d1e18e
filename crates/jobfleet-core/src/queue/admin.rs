//! Queue administration: pause and resume, browse jobs by state, cancel by
//! filter, purge. Every call works shard by shard (one slot per script), so
//! it runs the same on one server and on a Cluster.

use std::collections::HashMap;

use redis::AsyncCommands;

use super::Queue;
use crate::error::{Error, Result};
use crate::job::{Job, JobState, validate_task_name};
use crate::scripts;

/// Entries looked at per script call or read when sweeping a list or set.
const SWEEP_CHUNK: usize = 500;

/// The most entries one browse looks at per shard and list while filtering
/// by task, so a browse of a huge backlog stays bounded.
const BROWSE_SCAN_MAX: usize = 20_000;

/// Which unfinished jobs a sweep takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this task's jobs (`None`: any task).
    pub task: Option<String>,
    /// Running jobs too (their workers are told to stop them), not only
    /// the waiting ones (pending, parked and scheduled).
    pub running: bool,
}

/// What a sweep matched (a count) or did (a cancel), by where the jobs were.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Ready to run (including parked ones).
    pub pending: u64,
    /// Waiting for their time.
    pub scheduled: u64,
    /// Running (a cancel only asks their workers to stop them).
    pub active: u64,
}

impl Swept {
    /// All of them.
    pub fn total(&self) -> u64 {
        self.pending + self.scheduled + self.active
    }
}

impl std::ops::AddAssign for Swept {
    fn add_assign(&mut self, other: Swept) {
        self.pending += other.pending;
        self.scheduled += other.scheduled;
        self.active += other.active;
    }
}

impl Queue {
    /// Pauses the queue, fleet-wide and at once: from the next claim on no
    /// worker takes its jobs (running ones finish). Submits still land.
    /// Returns false when it was already paused.
    pub async fn pause(&self) -> Result<bool> {
        let now = self.client.redis_time_ms().await?;
        let mut fresh = false;
        for shard in self.shards().await? {
            let set: bool = self
                .client
                .conn()
                .hset_nx(&shard.keys.meta, "paused", now)
                .await?;
            fresh |= set;
        }
        Ok(fresh)
    }

    /// Resumes a paused queue and wakes its workers. Returns false when it
    /// was not paused.
    pub async fn resume(&self) -> Result<bool> {
        let mut was = false;
        for shard in self.shards().await? {
            let removed: u64 = self.client.conn().hdel(&shard.keys.meta, "paused").await?;
            was |= removed > 0;
            let publish = if self.client.sharded_pubsub() {
                "SPUBLISH"
            } else {
                "PUBLISH"
            };
            let _: () = redis::cmd(publish)
                .arg(&shard.keys.notify)
                .arg(1)
                .query_async(&mut self.client.conn())
                .await?;
        }
        Ok(was)
    }

    /// Whether the queue is paused (on any of its shards).
    pub async fn is_paused(&self) -> Result<bool> {
        for shard in self.shards().await? {
            let paused: bool = self.client.conn().hexists(&shard.keys.meta, "paused").await?;
            if paused {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Counts the unfinished jobs `filter` takes, changing nothing.
    pub async fn count_where(&self, filter: &Filter) -> Result<Swept> {
        self.sweep(filter, None).await
    }

    /// Cancels the unfinished jobs `filter` takes: waiting ones at once
    /// (with `reason` as their error when given), running ones by telling
    /// their workers. Jobs submitted or promoted while it sweeps may escape
    /// it. Returns what it cancelled (or asked to stop).
    pub async fn cancel_where(&self, filter: &Filter, reason: Option<&str>) -> Result<Swept> {
        self.sweep(filter, Some(reason.unwrap_or(""))).await
    }

    /// Cancels every waiting job (pending, parked, scheduled) with the error
    /// `purged`; running jobs finish. The records stay for the cancelled
    /// retention, so waiters and idempotency keys see a final state.
    pub async fn purge(&self) -> Result<Swept> {
        self.cancel_where(&Filter::default(), Some("purged")).await
    }

    async fn sweep(&self, filter: &Filter, cancel: Option<&str>) -> Result<Swept> {
        if let Some(task) = &filter.task {
            validate_task_name(task)?;
        }
        let mut swept = Swept::default();
        for shard in self.shards().await? {
            let mut lists = vec![shard.keys.pending.clone()];
            lists.extend(shard.parked_lists(filter.task.as_deref()).await?);
            swept.scheduled += shard
                .sweep_one(&shard.keys.scheduled, true, filter, cancel)
                .await?;
            for list in &lists {
                swept.pending += shard.sweep_one(list, false, filter, cancel).await?;
            }
            if filter.running {
                for job in shard.active_here(filter.task.as_deref(), usize::MAX).await? {
                    swept.active += 1;
                    if cancel.is_some() {
                        shard.cancel_here(&job.id).await?;
                    }
                }
            }
        }
        Ok(swept)
    }

    /// The parked lists of this shard (only `task`'s when given).
    async fn parked_lists(&self, task: Option<&str>) -> Result<Vec<String>> {
        let tasks: Vec<String> = self.client.conn().smembers(&self.keys.parked).await?;
        Ok(tasks
            .iter()
            .filter(|t| task.is_none_or(|want| want == t.as_str()))
            .map(|t| self.keys.parked_list(t))
            .collect())
    }

    /// Runs cancel_where.lua over one list or the scheduled set, a chunk per call.
    async fn sweep_one(&self, key: &str, zset: bool, filter: &Filter, cancel: Option<&str>) -> Result<u64> {
        let (mut offset, mut matched) = (0u64, 0u64);
        loop {
            let (n, next, looked): (u64, u64, usize) = scripts::CANCEL_WHERE
                .on(&self.client)
                .key(key)
                .key(&self.keys.stats)
                .arg(if zset { "zset" } else { "list" })
                .arg(offset)
                .arg(SWEEP_CHUNK)
                .arg(&self.keys.job_prefix)
                .arg(filter.task.as_deref().unwrap_or(""))
                .arg(&self.keys.events)
                .arg(&*self.name)
                .arg(self.client.policy().completed_retention.as_secs())
                .arg(cancel.unwrap_or(""))
                .arg(if cancel.is_some() { "cancel" } else { "count" })
                .invoke_async(&mut self.client.conn())
                .await?;
            matched += n;
            offset = next;
            if looked < SWEEP_CHUNK {
                return Ok(matched);
            }
        }
    }

    /// Up to `limit` of the queue's jobs in `state`, optionally of one task:
    /// pending ones in the order they will be claimed, scheduled ones
    /// soonest first, active ones by worker, dead ones newest first. Final
    /// states other than dead are not indexed: read those by id.
    pub async fn jobs(&self, state: JobState, task: Option<&str>, limit: usize) -> Result<Vec<Job>> {
        if let Some(task) = task {
            validate_task_name(task)?;
        }
        let mut all = Vec::new();
        for shard in self.shards().await? {
            let found = match state {
                JobState::Pending => {
                    let mut found = Vec::new();
                    for list in shard.parked_lists(task).await? {
                        found.extend(shard.browse(&list, Order::ClaimEnd, state, task, limit).await?);
                    }
                    let pending = shard.keys.pending.clone();
                    found.extend(
                        shard
                            .browse(&pending, Order::ClaimEnd, state, task, limit)
                            .await?,
                    );
                    found
                }
                JobState::Scheduled => {
                    let scheduled = shard.keys.scheduled.clone();
                    shard
                        .browse(&scheduled, Order::Lowest, state, task, limit)
                        .await?
                }
                JobState::Dead => {
                    let dead = shard.keys.dead.clone();
                    shard.browse(&dead, Order::Highest, state, task, limit).await?
                }
                JobState::Active => shard.active_here(task, limit).await?,
                JobState::Completed | JobState::Cancelled => return Err(Error::NotBrowsable(state)),
            };
            all.extend(found);
        }
        match state {
            JobState::Scheduled => all.sort_by_key(|j| j.run_at_ms.unwrap_or(0)),
            JobState::Dead => all.sort_by_key(|j| std::cmp::Reverse(j.finished_ms)),
            _ => {}
        }
        all.truncate(limit);
        Ok(all)
    }

    /// The jobs this shard's live workers hold, optionally of one task.
    async fn active_here(&self, task: Option<&str>, limit: usize) -> Result<Vec<Job>> {
        let workers: Vec<String> = self.client.conn().zrange(&self.keys.workers, 0, -1).await?;
        let mut found = Vec::new();
        for worker in workers {
            let list = self.keys.processing(&worker);
            found.extend(
                self.browse(&list, Order::ClaimEnd, JobState::Active, task, limit)
                    .await?,
            );
            if found.len() >= limit {
                break;
            }
        }
        Ok(found)
    }

    /// Reads a list or set of this shard in chunks, keeping the records in
    /// `state` (of `task`), until `limit` are found or the scan bound.
    async fn browse(
        &self,
        key: &str,
        order: Order,
        state: JobState,
        task: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>> {
        let mut found = Vec::new();
        let mut offset = 0usize;
        while found.len() < limit && offset < BROWSE_SCAN_MAX {
            let (start, stop) = (offset as isize, (offset + SWEEP_CHUNK - 1) as isize);
            let mut conn = self.client.conn();
            let ids: Vec<String> = match order {
                Order::ClaimEnd => {
                    let mut ids: Vec<String> = conn.lrange(key, -stop - 1, -start - 1).await?;
                    ids.reverse();
                    ids
                }
                Order::Lowest => conn.zrange(key, start, stop).await?,
                Order::Highest => conn.zrevrange(key, start, stop).await?,
            };
            offset += SWEEP_CHUNK;
            let exhausted = ids.len() < SWEEP_CHUNK;
            for job in self.records_here(&ids).await?.into_iter().flatten() {
                if job.state == state && task.is_none_or(|t| t == job.task) && found.len() < limit {
                    found.push(job);
                }
            }
            if exhausted {
                break;
            }
        }
        Ok(found)
    }

    /// The records of `ids` on this shard.
    async fn records_here(&self, ids: &[String]) -> Result<Vec<Option<Job>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hgetall(self.keys.job(id));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut self.client.conn()).await?;
        Ok(ids
            .iter()
            .zip(rows)
            .map(|(id, fields)| Job::from_fields(id, &self.name, fields))
            .collect())
    }
}

/// Where a browse starts reading.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// A list from its claim end (the next to be claimed first).
    ClaimEnd,
    /// A ZSET by ascending score.
    Lowest,
    /// A ZSET by descending score.
    Highest,
}

/// Fleet-wide flow control of a queue (see [`Queue::set_limits`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// The most jobs of the queue running at once.
    pub concurrency: Option<u64>,
    /// The most jobs started per second (a token bucket).
    pub rate: Option<f64>,
    /// How many may start at once after a quiet spell [default: one
    /// second's worth of `rate`].
    pub burst: Option<f64>,
}

impl Queue {
    /// Sets the queue's limits, enforced by every claim fleet-wide from the
    /// next one on; `None` fields are removed. On a queue of N shards each
    /// shard gets 1/N of each limit (the concurrency rounded up).
    pub async fn set_limits(&self, limits: Limits) -> Result<()> {
        if limits.concurrency == Some(0) || limits.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            return Err(Error::InvalidLimit(
                "a concurrency or rate limit must be above 0 (clear it to lift it)".into(),
            ));
        }
        if limits.burst.is_some_and(|b| !(b >= 1.0 && b.is_finite())) {
            return Err(Error::InvalidLimit("--burst must be at least 1".into()));
        }
        let shards = self.shards().await?;
        let n = shards.len() as u64;
        for shard in &shards {
            let mut pipe = redis::pipe();
            pipe.atomic();
            pipe.hdel(
                &shard.keys.meta,
                &["concurrency", "rate", "burst", "tokens", "tokens_ms"],
            );
            if let Some(c) = limits.concurrency {
                pipe.hset(&shard.keys.meta, "concurrency", c.div_ceil(n));
            }
            if let Some(r) = limits.rate {
                pipe.hset(&shard.keys.meta, "rate", r / n as f64);
                let burst = limits.burst.unwrap_or(r) / n as f64;
                pipe.hset(&shard.keys.meta, "burst", burst.max(1.0));
            }
            let _: () = pipe.query_async(&mut self.client.conn()).await?;
        }
        Ok(())
    }
}
