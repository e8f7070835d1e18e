//! A queue's schedules (see [`crate::schedule`]): added, listed, paused,
//! resumed and removed here; fired by every worker through
//! [`Queue::fire_due_schedules`]. They live on the queue's shard 0, and
//! their jobs too, whatever the shard count.

use std::collections::HashMap;

use redis::Value;

use super::{Queue, text};
use crate::error::{Error, Result};
use crate::job::validate_task_name;
use crate::schedule::{Schedule, ScheduleState, When, tick_job_id, validate_schedule_name};
use crate::scripts;

/// Schedule name -> a tick (Redis ms).
type Ticks = HashMap<String, u64>;

/// Due schedules fired per call.
const FIRE_BATCH: usize = 100;

impl Queue {
    /// Adds a schedule, or replaces the one of that name (its next tick is
    /// counted afresh from now). Returns true when it is new.
    pub async fn schedule_add(&self, schedule: &Schedule) -> Result<bool> {
        validate_schedule_name(&schedule.name)?;
        validate_task_name(&schedule.task)?;
        let base = self.at_shard(0);
        let now = self.client.redis_time_ms().await?;
        let next = schedule.when.next_after(now)?;
        let json = serde_json::to_string(schedule).expect("a schedule serializes");
        let mut pipe = redis::pipe();
        pipe.atomic().hset(&base.keys.schedules, &schedule.name, &json);
        match next.filter(|_| !schedule.paused) {
            Some(next) => pipe.zadd(&base.keys.schedule_next, &schedule.name, next),
            None => pipe.zrem(&base.keys.schedule_next, &schedule.name),
        };
        let (fresh, _): (u64, Value) = pipe.query_async(&mut self.client.conn()).await?;
        self.client.register_queue(&self.name).await?;
        Ok(fresh == 1)
    }

    /// Removes a schedule (the jobs it submitted stay). Returns false when
    /// there was none of that name.
    pub async fn schedule_remove(&self, name: &str) -> Result<bool> {
        let base = self.at_shard(0);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hdel(&base.keys.schedules, name)
            .zrem(&base.keys.schedule_next, name)
            .hdel(&base.keys.schedule_last, name);
        let (removed, _, _): (u64, Value, Value) = pipe.query_async(&mut self.client.conn()).await?;
        Ok(removed == 1)
    }

    /// Pauses (`true`) or resumes a schedule. A resumed one goes on from its
    /// next tick after now: ticks while paused do not fire. Returns false
    /// when it already was in that state.
    pub async fn schedule_set_paused(&self, name: &str, paused: bool) -> Result<bool> {
        let mut schedule = self
            .schedule(name)
            .await?
            .ok_or_else(|| Error::InvalidSchedule(format!("no schedule {name} in queue {}", self.name)))?
            .schedule;
        if schedule.paused == paused {
            return Ok(false);
        }
        schedule.paused = paused;
        self.schedule_add(&schedule).await?;
        Ok(true)
    }

    /// One schedule, with its next and last ticks.
    pub async fn schedule(&self, name: &str) -> Result<Option<ScheduleState>> {
        Ok(self
            .schedules()
            .await?
            .into_iter()
            .find(|s| s.schedule.name == name))
    }

    /// The queue's schedules, by name.
    pub async fn schedules(&self) -> Result<Vec<ScheduleState>> {
        let base = self.at_shard(0);
        let mut pipe = redis::pipe();
        pipe.hgetall(&base.keys.schedules)
            .zrange_withscores(&base.keys.schedule_next, 0, -1)
            .hgetall(&base.keys.schedule_last);
        let (specs, next, last): (HashMap<String, String>, Vec<(String, u64)>, Ticks) =
            pipe.query_async(&mut self.client.conn()).await?;
        let next: Ticks = next.into_iter().collect();
        let mut out: Vec<ScheduleState> = specs
            .into_iter()
            .filter_map(|(name, json)| {
                let schedule: Schedule = serde_json::from_str(&json).ok()?;
                let last_ms = last.get(&name).copied();
                Some(ScheduleState {
                    queue: self.name.to_string(),
                    next_ms: next.get(&name).copied(),
                    last_job: last_ms.map(|t| tick_job_id(&name, t)),
                    last_ms,
                    schedule,
                })
            })
            .collect();
        out.sort_by(|a, b| a.schedule.name.cmp(&b.schedule.name));
        Ok(out)
    }

    /// Fires the queue's due schedules (a worker's maintenance, like
    /// promoting delayed jobs; safe from any number of workers at once).
    /// Returns how many jobs were created.
    pub async fn fire_due_schedules(&self) -> Result<u64> {
        let base = self.at_shard(0);
        let reply: Vec<Value> = scripts::SCHEDULES_DUE
            .on(&self.client)
            .key(&base.keys.schedule_next)
            .key(&base.keys.schedules)
            .arg(FIRE_BATCH)
            .invoke_async(&mut self.client.conn())
            .await?;
        let mut fields = reply.into_iter().map(text);
        let now: u64 = fields.next().and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut created = 0;
        while let (Some(name), Some(tick), Some(json)) = (fields.next(), fields.next(), fields.next()) {
            let tick: u64 = tick.parse().unwrap_or(0);
            let Ok(schedule) = serde_json::from_str::<Schedule>(&json) else {
                tracing::warn!(queue = %self.name, schedule = %name, "a schedule's record does not parse; it is skipped");
                continue;
            };
            if schedule.paused {
                continue;
            }
            let next = following(&schedule.when, tick, now).unwrap_or_else(|e| {
                tracing::warn!(queue = %self.name, schedule = %name, error = %e, "a schedule ends");
                None
            });
            let fired: u64 = scripts::SCHEDULE_FIRE
                .on(&self.client)
                .key(&base.keys.schedule_next)
                .key(&base.keys.schedules)
                .key(&base.keys.pending)
                .key(&base.keys.stats)
                .arg(&name)
                .arg(tick)
                .arg(&json)
                .arg(next.unwrap_or(0))
                .arg(&base.keys.notify)
                .arg(tick_job_id(&name, tick))
                .arg(&base.keys.job_prefix)
                .arg(&base.keys.schedule_last)
                .arg(&schedule.task)
                .arg(schedule.payload.to_string())
                .arg(schedule.max_attempts)
                .arg(schedule.timeout_ms)
                .invoke_async(&mut self.client.conn())
                .await?;
            if fired == 2 {
                created += 1;
            }
        }
        Ok(created)
    }
}

/// The tick after firing `tick` at `now`: the first after now, so ticks
/// missed while nothing ran fire once, not once each. An interval keeps its
/// phase (ticks stay `tick + k * every`).
fn following(when: &When, tick: u64, now: u64) -> Result<Option<u64>> {
    match when {
        When::Every { every_ms } => {
            let every = (*every_ms).max(1);
            let behind = now.saturating_sub(tick) / every;
            Ok(Some(tick + (behind + 1) * every))
        }
        When::Cron { .. } => when.next_after(now.max(tick)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missed_ticks_fire_once_and_intervals_keep_their_phase() {
        let every = When::Every { every_ms: 1000 };
        assert_eq!(following(&every, 5000, 5000).unwrap(), Some(6000));
        assert_eq!(following(&every, 5000, 5300).unwrap(), Some(6000));
        // Four ticks missed: the next is the first after now.
        assert_eq!(following(&every, 5000, 9400).unwrap(), Some(10_000));
    }
}
