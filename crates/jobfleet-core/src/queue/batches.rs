//! Batches: jobs submitted together whose callback job runs once, when the
//! last of them is final (completed, dead or cancelled), with the batch's id
//! and counts. The batch, its jobs and its callback live on one shard (the
//! batch id's), so the scripts that end a job count it in the same step.

use std::collections::HashMap;

use redis::AsyncCommands;
use serde::Serialize;

use super::{Queue, Submitted, shard_of};
use crate::error::{Error, Result};
use crate::job::{JobSpec, new_job_id};
use crate::scripts;

/// Where a batch stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStatus {
    /// The batch id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// How many jobs it holds; `None` while jobs are still being added.
    pub total: Option<u64>,
    /// Its jobs that completed.
    pub completed: u64,
    /// Its jobs that died.
    pub dead: u64,
    /// Its jobs that were cancelled.
    pub cancelled: u64,
    /// Every job is final (and the callback, if any, was submitted).
    pub finished: bool,
    /// The callback job's id, once submitted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_id: Option<String>,
}

impl Queue {
    /// The handle on the shard that holds batch `id`.
    async fn batch_home(&self, id: &str) -> Result<Queue> {
        Ok(self.at_shard(shard_of(id, self.shard_count().await?)))
    }

    /// Opens a batch: jobs are added with [`Queue::batch_add`], then it is
    /// sealed with [`Queue::batch_seal`]. When every job is final, `callback`
    /// (if any) is submitted once, as job `<id>:callback`, its payload
    /// `{"batch", "total", "completed", "dead", "cancelled", "data"}` with the
    /// callback's own payload as `data`. Returns the batch id.
    pub async fn batch_open(&self, callback: Option<&JobSpec>) -> Result<String> {
        if let Some(cb) = callback {
            cb.validate(self.client.policy().max_payload_bytes)?;
        }
        let id = new_job_id();
        let home = self.batch_home(&id).await?;
        let now = self.client.redis_time_ms().await?;
        let mut fields: Vec<(&str, String)> = vec![("created_ms", now.to_string())];
        if let Some(cb) = callback {
            fields.extend([
                ("callback_task", cb.task.clone()),
                ("callback_payload", cb.payload.clone()),
                ("callback_max_attempts", cb.max_attempts.to_string()),
                ("callback_timeout_ms", (cb.timeout.as_millis() as u64).to_string()),
            ]);
        }
        let _: () = self
            .client
            .conn()
            .hset_multiple(home.keys.batch(&id), &fields)
            .await?;
        self.client.register_queue(&self.name).await?;
        Ok(id)
    }

    /// Adds jobs to an open batch (any number of calls before the seal).
    pub async fn batch_add(&self, id: &str, specs: &[JobSpec]) -> Result<Vec<Submitted>> {
        let specs: Vec<JobSpec> = specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.batch = Some(id.to_string());
                s
            })
            .collect();
        self.submit_batch(&specs).await
    }

    /// Seals a batch: its total is the jobs [`Queue::batch_add`] created in
    /// it (a job whose id existed already, or a unique duplicate, did not
    /// join). From here, the last of them to end finishes it; if all have
    /// ended already, this does. Returns the total.
    pub async fn batch_seal(&self, id: &str) -> Result<u64> {
        let home = self.batch_home(id).await?;
        let base = home.keys.batch("");
        let base = base.trim_end_matches("batch:");
        let total: i64 = scripts::BATCH_SEAL
            .on(&self.client)
            .key(home.keys.batch(id))
            .arg(0)
            .arg(base)
            .arg(id)
            .invoke_async(&mut self.client.conn())
            .await?;
        u64::try_from(total).map_err(|_| {
            Error::InvalidBatch(format!(
                "batch {id} is not open in queue {}: never opened, sealed already, or expired",
                self.name
            ))
        })
    }

    /// A batch's counts, or `None` when this queue has no such batch.
    pub async fn batch_status(&self, id: &str) -> Result<Option<BatchStatus>> {
        let home = self.batch_home(id).await?;
        let f: HashMap<String, String> = self.client.conn().hgetall(home.keys.batch(id)).await?;
        if f.is_empty() {
            return Ok(None);
        }
        let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
        Ok(Some(BatchStatus {
            id: id.to_string(),
            queue: self.name.to_string(),
            total: num("total"),
            completed: num("completed").unwrap_or(0),
            dead: num("dead").unwrap_or(0),
            cancelled: num("cancelled").unwrap_or(0),
            finished: f.contains_key("fired"),
            callback_id: f.get("callback_id").cloned(),
        }))
    }
}
