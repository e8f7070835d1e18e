//! The hub: one Redis event subscription and one stats read a second, fanned
//! out to every open page through a broadcast channel, plus the state a page
//! that connects later starts from.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jobfleet_core::{
    Client, Event, EventKind, FleetStats, QueueStats, Subscription, TopologyInfo, Unserved, WorkerInfo,
};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Throughput points kept: one a second, five minutes.
const HISTORY: usize = 300;
/// Events a page starts with and keeps.
const RECENT_EVENTS: usize = 200;
/// The latency window, and the most samples kept per task within it.
const LATENCY_WINDOW: Duration = Duration::from_secs(300);
const LATENCY_SAMPLES: usize = 5000;
/// Events are sent to pages in batches, at most this often, so thousands of
/// jobs a second cost a page ten messages a second, not thousands.
const BATCH_EVERY: Duration = Duration::from_millis(100);
const BATCH_MAX: usize = 500;
/// The longest error text an event carries to the feed (the job detail has
/// it whole).
const FEED_ERROR_CHARS: usize = 300;

/// One message for the pages, already serialized.
#[derive(Debug, Clone)]
pub(crate) struct Push {
    /// The SSE event name: `snapshot`, `stats`, `events` or `resync`.
    pub kind: &'static str,
    /// Its JSON data.
    pub data: Arc<str>,
}

/// Shared by the relay, the stats loop and every open stream.
#[derive(Debug)]
pub(crate) struct Hub {
    tx: broadcast::Sender<Push>,
    /// Held while a message is recorded and sent, and while a new stream
    /// subscribes and copies it, so a page misses nothing and sees nothing
    /// twice between its snapshot and its first message.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The latest `stats` message.
    stats: Option<Arc<str>>,
    /// Completed and failed per second, oldest first.
    history: VecDeque<Point>,
    /// Latest events, oldest first.
    recent: VecDeque<Event>,
    /// Per task: (when seen, duration ms) of completed jobs, oldest first.
    latency: HashMap<String, VecDeque<(Instant, u64)>>,
}

/// One second of throughput.
#[derive(Debug, Clone, Copy, Serialize)]
struct Point {
    /// Unix ms (this host's clock; only for the chart's axis).
    t: u64,
    completed: f64,
    failed: f64,
}

/// One task's latency over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Latency {
    pub task: String,
    pub samples: usize,
    pub p50_ms: u64,
    pub p95_ms: u64,
}

/// Parked jobs of a task no live worker of their queue runs, for the page.
#[derive(Debug, Serialize)]
struct UnservedTask {
    queue: String,
    task: String,
    jobs: u64,
    /// The warning, worded as `jobfleet queue list` prints it.
    text: String,
}

impl From<Unserved> for UnservedTask {
    fn from(u: Unserved) -> UnservedTask {
        UnservedTask {
            text: u.to_string(),
            queue: u.queue,
            task: u.task,
            jobs: u.jobs,
        }
    }
}

/// The `stats` message.
#[derive(Debug, Serialize)]
struct StatsMessage<'a> {
    /// Redis time, ms: worker heartbeats are on this clock.
    now_ms: u64,
    queues: &'a [QueueStats],
    workers: &'a [WorkerInfo],
    /// Which node is primary, and the replicas' lag.
    redis: &'a TopologyInfo,
    /// Tasks whose parked jobs wait for a worker that runs them.
    unserved: Vec<UnservedTask>,
    latency: Vec<Latency>,
    point: Option<Point>,
    /// Set when Redis could not be read this second (the rest is stale).
    error: Option<String>,
}

impl Hub {
    /// Subscribes to every queue's events (failing at once when Redis is
    /// unreachable) and starts the relay and the stats loop, which run
    /// until `stop`.
    pub(crate) async fn start(client: Client, stop: CancellationToken) -> jobfleet_core::Result<Arc<Hub>> {
        let events = client.events(&[]).await?;
        let (tx, _) = broadcast::channel(1024);
        let hub = Arc::new(Hub {
            tx,
            state: Mutex::default(),
        });
        tokio::spawn(relay(hub.clone(), events, stop.clone()));
        tokio::spawn(stats_loop(hub.clone(), client, stop));
        Ok(hub)
    }

    /// A new page: its receiver and the snapshot it starts from.
    pub(crate) fn join(&self) -> (broadcast::Receiver<Push>, Push) {
        let state = self.state.lock().expect("poisoned");
        let rx = self.tx.subscribe();
        let data = format!(
            r#"{{"stats":{},"history":{},"events":{}}}"#,
            state.stats.as_deref().unwrap_or("null"),
            serde_json::to_string(&state.history).expect("history serializes"),
            serde_json::to_string(&state.recent).expect("events serialize"),
        );
        (
            rx,
            Push {
                kind: "snapshot",
                data: data.into(),
            },
        )
    }

    /// Records a batch of events and sends it to every page.
    fn publish_events(&self, batch: Vec<Event>) {
        let data: Arc<str> = serde_json::to_string(&batch).expect("events serialize").into();
        let mut state = self.state.lock().expect("poisoned");
        let now = Instant::now();
        for event in batch {
            if let (EventKind::Completed, Some(ms)) = (event.state, event.duration_ms) {
                let samples = state.latency.entry(event.task.clone()).or_default();
                samples.push_back((now, ms));
                if samples.len() > LATENCY_SAMPLES {
                    samples.pop_front();
                }
            }
            // Progress reports go to the pages as they come, but would crowd
            // the state changes out of the feed a new page starts with.
            if event.state == EventKind::Progress {
                continue;
            }
            state.recent.push_back(event);
            if state.recent.len() > RECENT_EVENTS {
                state.recent.pop_front();
            }
        }
        let _ = self.tx.send(Push { kind: "events", data });
    }

    fn publish_resync(&self) {
        let _state = self.state.lock().expect("poisoned");
        let _ = self.tx.send(Push {
            kind: "resync",
            data: Arc::from("{}"),
        });
    }

    /// Records a stats reading (or the error that stopped one) and sends it.
    fn publish_stats(&self, now_ms: u64, stats: &FleetStats, point: Option<Point>, error: Option<String>) {
        let mut state = self.state.lock().expect("poisoned");
        if let Some(point) = point {
            state.history.push_back(point);
            if state.history.len() > HISTORY {
                state.history.pop_front();
            }
        }
        let latency = latency(&mut state.latency, Instant::now());
        let message = StatsMessage {
            now_ms,
            queues: &stats.queues,
            workers: &stats.workers,
            redis: &stats.redis,
            unserved: stats.unserved().into_iter().map(UnservedTask::from).collect(),
            latency,
            point,
            error,
        };
        let data: Arc<str> = serde_json::to_string(&message).expect("stats serialize").into();
        state.stats = Some(data.clone());
        let _ = self.tx.send(Push { kind: "stats", data });
    }
}

/// Reads the Redis subscription into batches for the pages until `stop`.
async fn relay(hub: Arc<Hub>, mut events: Subscription, stop: CancellationToken) {
    let mut batch: Vec<Event> = Vec::new();
    let mut flush = tokio::time::interval(BATCH_EVERY);
    flush.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            next = events.next_event() => match next {
                None => {
                    tracing::warn!("the event subscription ended");
                    return;
                }
                // Reconnected: events published meanwhile were missed.
                Some(None) => hub.publish_resync(),
                Some(Some(event)) => {
                    batch.push(for_feed(event));
                    if batch.len() >= BATCH_MAX {
                        hub.publish_events(std::mem::take(&mut batch));
                    }
                }
            },
            _ = flush.tick(), if !batch.is_empty() => hub.publish_events(std::mem::take(&mut batch)),
            _ = stop.cancelled() => return,
        }
    }
}

/// An event trimmed for the feed: results can be large (an `echo` returns
/// its whole payload) and the page shows them only in the job detail.
fn for_feed(mut event: Event) -> Event {
    event.result = None;
    if let Some(error) = &mut event.error
        && let Some((cut, _)) = error.char_indices().nth(FEED_ERROR_CHARS)
    {
        error.truncate(cut);
        error.push('…');
    }
    event
}

/// Reads the fleet's stats once a second until `stop`, turning the change
/// in the completed and failed counters into a throughput point.
async fn stats_loop(hub: Arc<Hub>, client: Client, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<(Instant, u64, u64)> = None;
    let mut stats = FleetStats::default();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let read = async {
            Ok::<_, jobfleet_core::Error>((client.redis_time_ms().await?, client.stats(&[]).await?))
        };
        match read.await {
            Ok((now_ms, fresh)) => {
                stats = fresh;
                let now = Instant::now();
                let (completed, failed) = stats
                    .queues
                    .iter()
                    .fold((0, 0), |(c, f), q| (c + q.completed, f + q.failed));
                let point = last.map(|(then, c0, f0)| {
                    let secs = now.duration_since(then).as_secs_f64().max(0.001);
                    Point {
                        t: unix_ms(),
                        // Counters go back only when Redis lost its data.
                        completed: completed.saturating_sub(c0) as f64 / secs,
                        failed: failed.saturating_sub(f0) as f64 / secs,
                    }
                });
                last = Some((now, completed, failed));
                hub.publish_stats(now_ms, &stats, point, None);
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading stats failed");
                last = None;
                hub.publish_stats(0, &stats, None, Some(e.to_string()));
            }
        }
    }
}

/// Drops samples older than the window and returns each task's p50 and
/// p95, sorted by task name.
fn latency(windows: &mut HashMap<String, VecDeque<(Instant, u64)>>, now: Instant) -> Vec<Latency> {
    let mut out = Vec::new();
    windows.retain(|task, samples| {
        while samples
            .front()
            .is_some_and(|(seen, _)| now.duration_since(*seen) > LATENCY_WINDOW)
        {
            samples.pop_front();
        }
        if samples.is_empty() {
            return false;
        }
        let mut durations: Vec<u64> = samples.iter().map(|(_, ms)| *ms).collect();
        durations.sort_unstable();
        out.push(Latency {
            task: task.clone(),
            samples: durations.len(),
            p50_ms: percentile(&durations, 50),
            p95_ms: percentile(&durations, 95),
        });
        true
    });
    out.sort_by(|a, b| a.task.cmp(&b.task));
    out
}

/// The nearest-rank percentile of sorted, non-empty `values`.
fn percentile(values: &[u64], p: usize) -> u64 {
    let rank = (p * values.len()).div_ceil(100).max(1);
    values[rank - 1]
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, task: &str, state: EventKind, duration_ms: Option<u64>) -> Event {
        Event {
            id: id.into(),
            queue: "default".into(),
            task: task.into(),
            state,
            attempt: 1,
            worker: "w1".into(),
            ms: 1,
            duration_ms,
            result: Some(serde_json::json!({"big": "result"})),
            error: None,
            run_at_ms: None,
            progress: None,
            message: None,
        }
    }

    fn hub() -> Hub {
        Hub {
            tx: broadcast::channel(16).0,
            state: Mutex::default(),
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<u64> = (1..=100).collect();
        assert_eq!((percentile(&values, 50), percentile(&values, 95)), (50, 95));
        assert_eq!((percentile(&[7], 50), percentile(&[7], 95)), (7, 7));
        assert_eq!((percentile(&[1, 9], 50), percentile(&[1, 9], 95)), (1, 9));
    }

    #[test]
    fn latency_is_per_task_over_completed_events_in_the_window() {
        let hub = hub();
        let mut batch = vec![event("f", "echo", EventKind::Failed, Some(10_000))];
        batch.extend((1..=20).map(|ms| event("e", "echo", EventKind::Completed, Some(ms))));
        batch.push(event("s", "sleep", EventKind::Completed, Some(500)));
        hub.publish_events(batch);
        let mut state = hub.state.lock().unwrap();
        let now = Instant::now();
        let got = latency(&mut state.latency, now);
        let expect = |task: &str, samples, p50_ms, p95_ms| Latency {
            task: task.into(),
            samples,
            p50_ms,
            p95_ms,
        };
        assert_eq!(
            got,
            vec![expect("echo", 20, 10, 19), expect("sleep", 1, 500, 500)]
        );
        // Past the window, everything is dropped.
        assert!(latency(&mut state.latency, now + LATENCY_WINDOW + Duration::from_secs(1)).is_empty());
        assert!(state.latency.is_empty());
    }

    #[test]
    fn a_new_page_gets_the_latest_events_then_only_what_follows() {
        let hub = hub();
        hub.publish_events(
            (0..RECENT_EVENTS + 5)
                .map(|i| event(&i.to_string(), "echo", EventKind::Completed, None))
                .collect(),
        );
        let (mut rx, snapshot) = hub.join();
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot.data).unwrap();
        let events = snapshot["events"].as_array().unwrap();
        assert_eq!(events.len(), RECENT_EVENTS);
        assert_eq!(events[0]["id"], "5", "the oldest were dropped");
        assert_eq!(snapshot["stats"], serde_json::Value::Null);
        assert!(
            rx.try_recv().is_err(),
            "nothing sent before the page joined reaches it"
        );
        hub.publish_events(vec![event("next", "echo", EventKind::Completed, None)]);
        let push = rx.try_recv().unwrap();
        assert_eq!(push.kind, "events");
        assert!(push.data.contains("\"next\""));
    }

    #[test]
    fn feed_events_drop_results_and_cut_long_errors() {
        let mut e = event("x", "fail", EventKind::Dead, None);
        e.error = Some("é".repeat(1000));
        let e = for_feed(e);
        assert_eq!(e.result, None);
        assert_eq!(e.error.unwrap().chars().count(), FEED_ERROR_CHARS + 1);
    }

    #[test]
    fn stats_name_the_parked_tasks_no_live_worker_runs() {
        let hub = hub();
        let queue = |name: &str| QueueStats {
            name: name.into(),
            pending: 3,
            parked: [("resize".to_string(), 3)].into(),
            ..QueueStats::default()
        };
        let stats = FleetStats {
            queues: vec![queue("images"), queue("served")],
            workers: vec![WorkerInfo {
                queues: vec!["served".into()],
                ..WorkerInfo::default()
            }],
            redis: TopologyInfo::default(),
        };
        hub.publish_stats(0, &stats, None, None);
        let (_, snapshot) = hub.join();
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot.data).unwrap();
        assert_eq!(
            snapshot["stats"]["unserved"],
            serde_json::json!([{
                "queue": "images",
                "task": "resize",
                "jobs": 3,
                "text": "no live worker runs task resize on queue images: 3 jobs wait for one",
            }])
        );
    }

    #[test]
    fn stats_carry_a_queue_s_limits_only_when_it_has_them() {
        let hub = hub();
        let stats = FleetStats {
            queues: vec![
                QueueStats {
                    name: "limited".into(),
                    concurrency_limit: Some(10),
                    rate_limit: Some(2.5),
                    ..QueueStats::default()
                },
                QueueStats {
                    name: "free".into(),
                    ..QueueStats::default()
                },
            ],
            ..FleetStats::default()
        };
        hub.publish_stats(0, &stats, None, None);
        let (_, snapshot) = hub.join();
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot.data).unwrap();
        let queues = &snapshot["stats"]["queues"];
        assert_eq!(queues[0]["concurrency_limit"], 10);
        assert_eq!(queues[0]["rate_limit"], 2.5);
        // The page reads a missing field as no limit.
        assert_eq!(queues[1].get("concurrency_limit"), None);
        assert_eq!(queues[1].get("rate_limit"), None);
    }

    #[test]
    fn stats_history_keeps_five_minutes() {
        let hub = hub();
        let stats = FleetStats::default();
        for i in 0..HISTORY + 10 {
            let point = Point {
                t: i as u64,
                completed: 1.0,
                failed: 0.0,
            };
            hub.publish_stats(0, &stats, Some(point), None);
        }
        let (_, snapshot) = hub.join();
        let snapshot: serde_json::Value = serde_json::from_str(&snapshot.data).unwrap();
        let history = snapshot["history"].as_array().unwrap();
        assert_eq!(history.len(), HISTORY);
        assert_eq!(history[0]["t"], 10);
        assert_eq!(snapshot["stats"]["point"]["t"], (HISTORY + 9) as u64);
    }
}
