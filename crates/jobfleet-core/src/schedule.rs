//! Schedules: a job submitted on a cron expression (in a time zone) or at a
//! fixed interval, by the fleet itself. There is no leader: every worker
//! looks for due schedules of the queues it serves, and the script that
//! fires a tick (`schedule_fire.lua`) moves the schedule on and creates the
//! tick's job in one step, so each tick fires exactly once fleet-wide. The
//! job's id names the tick (`<schedule>@<tick ms>`), so it can be found.
//!
//! Missed ticks (no worker ran, Redis was down) fire once: the oldest
//! missed tick's job is submitted, then the schedule goes on from the next
//! tick after now.

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shortest interval a schedule may have.
pub const MIN_EVERY: Duration = Duration::from_secs(1);

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// A cron expression (five fields, or six with seconds first), read in
    /// the IANA time zone `tz` (UTC when `None`).
    Cron {
        /// The expression, e.g. `*/5 * * * *`.
        cron: String,
        /// The time zone, e.g. `Europe/Paris`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tz: Option<String>,
    },
    /// Every `every_ms` milliseconds, from when it was added.
    Every {
        /// The interval, ms.
        every_ms: u64,
    },
}

/// A schedule as stored (the JSON in `P:{Q}:schedules`, see PROTOCOL.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// Its name, unique in its queue.
    pub name: String,
    /// When it fires.
    pub when: When,
    /// The task of the jobs it submits.
    pub task: String,
    /// Their payload (JSON).
    pub payload: serde_json::Value,
    /// Their attempts.
    pub max_attempts: u32,
    /// Their per-attempt timeout, ms (0: none).
    pub timeout_ms: u64,
    /// Paused: it fires no tick until resumed.
    #[serde(default)]
    pub paused: bool,
}

/// A schedule with where it stands, as `schedule list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleState {
    /// The schedule.
    #[serde(flatten)]
    pub schedule: Schedule,
    /// Its queue.
    pub queue: String,
    /// When it fires next (Redis ms); `None` while paused.
    pub next_ms: Option<u64>,
    /// The tick it fired last (Redis ms), and that job's id.
    pub last_ms: Option<u64>,
    /// The id of the job of the last tick.
    pub last_job: Option<String>,
}

/// Checks a schedule name: 1 to 64 characters from letters, digits, `_`,
/// `-`, `.` and `:` (it becomes part of job ids).
pub fn validate_schedule_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidSchedule(format!(
            "invalid schedule name {name:?}: use 1 to 64 characters from letters, digits, '_', '-', '.' and ':'"
        )))
    }
}

impl When {
    /// A cron schedule, checked: the expression parses and the zone exists.
    pub fn cron(expression: &str, tz: Option<&str>) -> Result<When> {
        let when = When::Cron {
            cron: expression.to_string(),
            tz: tz.map(String::from),
        };
        when.next_after(0)?;
        Ok(when)
    }

    /// An interval schedule, checked: at least [`MIN_EVERY`].
    pub fn every(interval: Duration) -> Result<When> {
        if interval < MIN_EVERY {
            return Err(Error::InvalidSchedule(format!(
                "--every {} is too short: at least 1s",
                humantime::format_duration(interval)
            )));
        }
        Ok(When::Every {
            every_ms: interval.as_millis() as u64,
        })
    }

    /// The first tick strictly after `after_ms` (unix ms); `None` when there
    /// is none (a cron expression that never matches again).
    pub fn next_after(&self, after_ms: u64) -> Result<Option<u64>> {
        match self {
            When::Every { every_ms } => Ok(Some(after_ms + every_ms.max(&1))),
            When::Cron { cron, tz } => {
                let parsed = croner::Cron::from_str(cron).map_err(|e| {
                    Error::InvalidSchedule(format!(
                        "cron expression {cron:?} does not parse: {e}; use five fields, as in \"*/5 * * * *\""
                    ))
                })?;
                // Cron ticks fall on whole seconds.
                let after = Utc
                    .timestamp_millis_opt((after_ms / 1000 * 1000) as i64)
                    .single()
                    .ok_or_else(|| Error::InvalidSchedule(format!("time {after_ms} is out of range")))?;
                let next = match tz {
                    None => parsed
                        .find_next_occurrence(&after, false)
                        .map(|t| t.timestamp_millis()),
                    Some(tz) => {
                        let zone: chrono_tz::Tz = tz.parse().map_err(|_| {
                            Error::InvalidSchedule(format!(
                                "unknown time zone {tz:?}: use an IANA name such as Europe/Paris"
                            ))
                        })?;
                        parsed
                            .find_next_occurrence(&after.with_timezone(&zone), false)
                            .map(|t| t.timestamp_millis())
                    }
                };
                Ok(next.ok().map(|ms| ms.max(0) as u64))
            }
        }
    }

    /// The schedule as the CLI takes it: `--cron "…" [--tz Z]` or `--every D`.
    pub fn describe(&self) -> String {
        match self {
            When::Cron { cron, tz: None } => format!("cron \"{cron}\" (UTC)"),
            When::Cron { cron, tz: Some(tz) } => format!("cron \"{cron}\" ({tz})"),
            When::Every { every_ms } => {
                format!(
                    "every {}",
                    humantime::format_duration(Duration::from_millis(*every_ms))
                )
            }
        }
    }
}

/// The id of the job a schedule submits for the tick at `tick_ms`.
pub fn tick_job_id(schedule: &str, tick_ms: u64) -> String {
    format!("{schedule}@{tick_ms}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_ticks_follow_the_expression_in_its_time_zone() {
        // 2026-12-01T10:02:00Z.
        let t = 1_796_119_320_000;
        let every5 = When::cron("*/5 * * * *", None).unwrap();
        assert_eq!(every5.next_after(t).unwrap(), Some(t + 3 * 60_000));
        assert_eq!(
            every5.next_after(t + 1).unwrap(),
            Some(t + 3 * 60_000),
            "whole seconds"
        );
        // 08:00 in Paris (UTC+1 in December) is 07:00 UTC.
        let paris = When::cron("0 8 * * *", Some("Europe/Paris")).unwrap();
        assert_eq!(paris.next_after(t).unwrap(), Some(1_796_194_800_000));
        assert!(
            When::cron("not cron", None)
                .unwrap_err()
                .to_string()
                .contains("does not parse")
        );
        assert!(
            When::cron("* * * * *", Some("Mars/Olympus"))
                .unwrap_err()
                .to_string()
                .contains("unknown time zone")
        );
    }

    #[test]
    fn intervals_are_at_least_a_second() {
        assert_eq!(
            When::every(Duration::from_secs(30))
                .unwrap()
                .next_after(1000)
                .unwrap(),
            Some(31_000)
        );
        assert!(When::every(Duration::from_millis(10)).is_err());
        assert!(validate_schedule_name("nightly-report").is_ok());
        assert!(validate_schedule_name("has space").is_err());
    }
}
