//! `jobfleet schedule add|list|remove|pause|resume`: jobs the fleet submits
//! on a cron expression or at an interval.

use std::time::Duration;

use clap::Subcommand;
use jobfleet_core::{Schedule, When};

use crate::Outcome;
use crate::connect::Target;
use crate::output::{out, outln, table, timestamp};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Add a schedule (or replace the one of that name): the fleet submits TASK with PAYLOAD on
    /// every tick, each tick exactly once whatever the number of workers. Ticks missed while no
    /// worker ran fire once, not once each. The jobs' ids are NAME@TICK_MS.
    Add {
        /// The schedule's name, unique in its queue.
        name: String,
        /// The task to submit.
        task: String,
        /// Its payload, JSON.
        #[arg(default_value = "{}")]
        payload: String,
        /// A cron expression: five fields (minute hour day-of-month month day-of-week), or six
        /// with seconds first, e.g. "*/5 * * * *".
        #[arg(long, required_unless_present = "every", conflicts_with = "every")]
        cron: Option<String>,
        /// The cron expression's IANA time zone, e.g. Europe/Paris [default: UTC].
        #[arg(long, requires = "cron")]
        tz: Option<String>,
        /// A fixed interval instead of a cron expression, e.g. 30s (at least 1s).
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<Duration>,
        /// The queue the jobs go to (the schedule lives there too).
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
        /// The jobs' attempts.
        #[arg(long, default_value_t = jobfleet_core::DEFAULT_MAX_ATTEMPTS)]
        max_attempts: u32,
        /// The jobs' timeout: the longest one attempt may run.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// List schedules: when each fires next, and its last tick's job.
    List {
        /// Only this queue's [default: every queue].
        #[arg(long, short = 'q')]
        queue: Option<String>,
        /// JSON: one object per schedule.
        #[arg(long)]
        json: bool,
    },
    /// Remove a schedule; the jobs it submitted stay.
    Remove {
        /// The schedule.
        name: String,
        /// Its queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
    },
    /// Pause a schedule: no tick fires until it is resumed.
    Pause {
        /// The schedule.
        name: String,
        /// Its queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
    },
    /// Resume a paused schedule, from its next tick after now (ticks while paused do not fire).
    Resume {
        /// The schedule.
        name: String,
        /// Its queue.
        #[arg(long, short = 'q', default_value = "default")]
        queue: String,
    },
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    match args.action {
        Action::Add {
            name,
            task,
            payload,
            cron,
            tz,
            every,
            queue,
            max_attempts,
            timeout,
        } => {
            let payload: serde_json::Value = serde_json::from_str(&payload).map_err(|e| {
                anyhow::anyhow!("payload is not valid JSON: {e}; pass a JSON document such as '{{\"n\": 1}}'")
            })?;
            let when = match (cron, every) {
                (Some(cron), _) => When::cron(&cron, tz.as_deref())?,
                (None, Some(every)) => When::every(every)?,
                (None, None) => unreachable!("clap requires --cron or --every"),
            };
            jobfleet_core::schedule::validate_schedule_name(&name)?;
            let client = target.connect().await?;
            let schedule = Schedule {
                name: name.clone(),
                when,
                task,
                payload,
                max_attempts,
                timeout_ms: timeout.as_millis() as u64,
                paused: false,
            };
            let q = client.queue(&queue)?;
            let fresh = q.schedule_add(&schedule).await?;
            let state = q.schedule(&name).await?;
            let next = state
                .and_then(|s| s.next_ms)
                .map(|t| format!(", next at {}", timestamp(t)))
                .unwrap_or_else(|| ", and it never fires again".into());
            outln!(
                "schedule {name} {} on queue {queue}: {} {}{next}",
                if fresh { "added" } else { "replaced" },
                schedule.task,
                schedule.when.describe()
            )?;
        }
        Action::List { queue, json } => {
            let client = target.connect().await?;
            let queues = match queue {
                Some(q) => vec![q],
                None => client.queue_names().await?,
            };
            let mut all = Vec::new();
            for q in queues {
                all.extend(client.queue(&q)?.schedules().await?);
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&all)?)?;
            } else if all.is_empty() {
                outln!("no schedules: add one with jobfleet schedule add NAME --every 1h TASK")?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|s| {
                        vec![
                            s.schedule.name.clone(),
                            s.queue.clone(),
                            s.schedule.task.clone(),
                            s.schedule.when.describe(),
                            match (s.schedule.paused, s.next_ms) {
                                (true, _) => "paused".into(),
                                (false, Some(t)) => timestamp(t),
                                (false, None) => "never".into(),
                            },
                            s.last_job.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                out!(
                    "{}",
                    table(&["SCHEDULE", "QUEUE", "TASK", "WHEN", "NEXT", "LAST JOB"], &rows)
                )?;
            }
        }
        Action::Remove { name, queue } => {
            let client = target.connect().await?;
            if client.queue(&queue)?.schedule_remove(&name).await? {
                outln!("schedule {name} removed from queue {queue}")?;
            } else {
                anyhow::bail!("no schedule {name} in queue {queue}: see jobfleet schedule list");
            }
        }
        Action::Pause { name, queue } => set_paused(target, &name, &queue, true).await?,
        Action::Resume { name, queue } => set_paused(target, &name, &queue, false).await?,
    }
    Ok(Outcome::Success)
}

async fn set_paused(target: &Target, name: &str, queue: &str, paused: bool) -> anyhow::Result<()> {
    let client = target.connect().await?;
    let changed = client.queue(queue)?.schedule_set_paused(name, paused).await?;
    let word = if paused { "paused" } else { "resumed" };
    if changed {
        outln!("schedule {name} {word}")?;
    } else {
        outln!(
            "schedule {name} was already {}",
            if paused { "paused" } else { "running" }
        )?;
    }
    Ok(())
}
