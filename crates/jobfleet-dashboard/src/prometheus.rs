//! `/metrics`: queue-level series in the Prometheus text format, from a
//! `metrics-exporter-prometheus` recorder that is never installed globally
//! (each scrape sets its values through `metrics::with_local_recorder`), so
//! a program that embeds the dashboard keeps its own global recorder.

use std::collections::BTreeSet;
use std::sync::Mutex;

use jobfleet_core::FleetStats;
use metrics::{Unit, counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

/// The dashboard's private recorder and the handle that renders it.
pub(crate) struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// The (queue, task) series of the parked gauge the last scrape set: a
    /// task whose parked jobs are gone is set to 0, not left at its last count.
    parked: Mutex<BTreeSet<(String, String)>>,
    /// The (gauge, queue) series of the limit gauges the last scrape set: a
    /// limit lifted since is set to 0 (which no limit can be), not left at
    /// its last value.
    limited: Mutex<BTreeSet<(&'static str, String)>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

/// (name, help) of the per-queue gauges: sizes now.
const GAUGES: [(&str, &str); 5] = [
    ("jobfleet_queue_pending", "Jobs ready to run."),
    (
        "jobfleet_queue_scheduled",
        "Jobs waiting for a delay or a retry backoff.",
    ),
    ("jobfleet_queue_active", "Jobs held by live workers."),
    ("jobfleet_queue_dead", "Jobs in the dead-letter set."),
    ("jobfleet_queue_workers", "Live workers serving the queue."),
];

/// The per-queue latency gauge, in seconds.
const OLDEST: &str = "jobfleet_queue_oldest_pending_seconds";

/// The per-queue pause flag, 1 or 0.
const PAUSED: &str = "jobfleet_queue_paused";

/// The per-queue and task gauge of parked jobs.
const PARKED: &str = "jobfleet_queue_parked";

/// The per-queue limits (`jobfleet queue limit`), only for queues that have
/// one: the cap on jobs running at once, and on jobs started per second.
const CONCURRENCY_LIMIT: &str = "jobfleet_queue_concurrency_limit";
const RATE_LIMIT: &str = "jobfleet_queue_rate_limit";

/// (name, help) of the per-queue counters: totals since the queue began.
const COUNTERS: [(&str, &str); 6] = [
    ("jobfleet_queue_submitted_total", "Jobs submitted."),
    ("jobfleet_queue_completed_total", "Jobs completed."),
    ("jobfleet_queue_failed_total", "Failed attempts."),
    ("jobfleet_queue_retried_total", "Retries scheduled."),
    ("jobfleet_queue_cancelled_total", "Jobs cancelled."),
    (
        "jobfleet_queue_recovered_total",
        "Jobs handed back after their worker died.",
    ),
];

impl Exporter {
    pub(crate) fn new() -> Exporter {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for (name, help) in GAUGES {
                describe_gauge!(name, Unit::Count, help);
            }
            for (name, help) in COUNTERS {
                describe_counter!(name, Unit::Count, help);
            }
            describe_gauge!("jobfleet_workers", Unit::Count, "Live worker processes.");
            describe_gauge!(
                OLDEST,
                Unit::Seconds,
                "How long the oldest pending job has waited to run (0: none pending): the queue's latency."
            );
            describe_gauge!(PAUSED, "1 while the queue is paused: no worker claims its jobs.");
            describe_gauge!(
                PARKED,
                Unit::Count,
                "Pending jobs passed on by workers that do not run their task, waiting for one that does."
            );
            describe_gauge!(
                CONCURRENCY_LIMIT,
                Unit::Count,
                "The most jobs of the queue running at once, fleet-wide (only queues with a limit; 0 once it is lifted)."
            );
            describe_gauge!(
                RATE_LIMIT,
                "The most jobs of the queue started per second, fleet-wide (only queues with a limit; 0 once it is lifted)."
            );
        });
        Exporter {
            recorder,
            handle,
            parked: Mutex::default(),
            limited: Mutex::default(),
        }
    }

    /// Sets every series from `stats` and renders the text format.
    pub(crate) fn render(&self, stats: &FleetStats) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            let mut limited: BTreeSet<(&'static str, String)> = BTreeSet::new();
            for q in &stats.queues {
                let gauges = [q.pending, q.scheduled, q.active, q.dead, q.workers];
                for ((name, _), value) in GAUGES.into_iter().zip(gauges) {
                    gauge!(name, "queue" => q.name.clone()).set(value as f64);
                }
                gauge!(OLDEST, "queue" => q.name.clone()).set(q.oldest_pending_ms as f64 / 1000.0);
                gauge!(PAUSED, "queue" => q.name.clone()).set(if q.paused { 1.0 } else { 0.0 });
                for (task, &jobs) in &q.parked {
                    gauge!(PARKED, "queue" => q.name.clone(), "task" => task.clone()).set(jobs as f64);
                }
                let limits = [
                    (CONCURRENCY_LIMIT, q.concurrency_limit.map(|c| c as f64)),
                    (RATE_LIMIT, q.rate_limit),
                ];
                for (name, limit) in limits {
                    if let Some(limit) = limit {
                        gauge!(name, "queue" => q.name.clone()).set(limit);
                        limited.insert((name, q.name.clone()));
                    }
                }
                let counters = [
                    q.submitted,
                    q.completed,
                    q.failed,
                    q.retried,
                    q.cancelled,
                    q.recovered,
                ];
                for ((name, _), value) in COUNTERS.into_iter().zip(counters) {
                    counter!(name, "queue" => q.name.clone()).absolute(value);
                }
            }
            gauge!("jobfleet_workers").set(stats.workers.len() as f64);
            let parked: BTreeSet<(String, String)> = stats
                .queues
                .iter()
                .flat_map(|q| q.parked.keys().map(|task| (q.name.clone(), task.clone())))
                .collect();
            let mut last = self.parked.lock().expect("poisoned");
            for (queue, task) in last.difference(&parked) {
                gauge!(PARKED, "queue" => queue.clone(), "task" => task.clone()).set(0.0);
            }
            *last = parked;
            let mut last = self.limited.lock().expect("poisoned");
            for (name, queue) in last.difference(&limited) {
                gauge!(*name, "queue" => queue.clone()).set(0.0);
            }
            *last = limited;
        });
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobfleet_core::QueueStats;

    #[test]
    fn renders_every_queue_series_with_help_and_type() {
        let mut stats = FleetStats {
            queues: vec![QueueStats {
                name: "images".into(),
                pending: 3,
                completed: 41,
                oldest_pending_ms: 2500,
                paused: true,
                parked: [("resize".to_string(), 2)].into(),
                concurrency_limit: Some(10),
                rate_limit: Some(12.5),
                ..QueueStats::default()
            }],
            workers: vec![Default::default(), Default::default()],
            redis: Default::default(),
        };
        let exporter = Exporter::new();
        let text = exporter.render(&stats);
        for line in [
            "jobfleet_queue_pending{queue=\"images\"} 3",
            "jobfleet_queue_dead{queue=\"images\"} 0",
            "jobfleet_queue_completed_total{queue=\"images\"} 41",
            "jobfleet_workers 2",
            "jobfleet_queue_oldest_pending_seconds{queue=\"images\"} 2.5",
            "# TYPE jobfleet_queue_completed_total counter",
            "# TYPE jobfleet_queue_pending gauge",
            "# HELP jobfleet_queue_pending Jobs ready to run.",
            "jobfleet_queue_paused{queue=\"images\"} 1",
            "# TYPE jobfleet_queue_paused gauge",
            "# HELP jobfleet_queue_paused 1 while the queue is paused: no worker claims its jobs.",
            "jobfleet_queue_parked{queue=\"images\",task=\"resize\"} 2",
            "# TYPE jobfleet_queue_parked gauge",
            "jobfleet_queue_concurrency_limit{queue=\"images\"} 10",
            "# TYPE jobfleet_queue_concurrency_limit gauge",
            "jobfleet_queue_rate_limit{queue=\"images\"} 12.5",
            "# TYPE jobfleet_queue_rate_limit gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }

        assert!(
            text.lines()
                .any(|l| l.starts_with("# HELP jobfleet_queue_rate_limit ") && l.contains("per second")),
            "{text}"
        );

        // Resumed, the parked jobs were taken and the rate limit lifted: the
        // series say so.
        stats.queues[0].paused = false;
        stats.queues[0].parked.clear();
        stats.queues[0].rate_limit = None;
        let text = exporter.render(&stats);
        for line in [
            "jobfleet_queue_paused{queue=\"images\"} 0",
            "jobfleet_queue_parked{queue=\"images\",task=\"resize\"} 0",
            "jobfleet_queue_concurrency_limit{queue=\"images\"} 10",
            "jobfleet_queue_rate_limit{queue=\"images\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no line {line:?} in:\n{text}");
        }
    }

    #[test]
    fn limit_series_exist_only_for_queues_that_have_a_limit() {
        let stats = FleetStats {
            queues: vec![QueueStats {
                name: "free".into(),
                ..QueueStats::default()
            }],
            ..FleetStats::default()
        };
        let text = Exporter::new().render(&stats);
        assert!(
            text.contains("jobfleet_queue_pending{queue=\"free\"} 0"),
            "{text}"
        );
        assert!(!text.contains("jobfleet_queue_concurrency_limit{"), "{text}");
        assert!(!text.contains("jobfleet_queue_rate_limit{"), "{text}");
    }
}
