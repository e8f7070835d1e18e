//! The worker run in-process against a real redis-server: normal runs,
//! crashes, graceful shutdown, Redis restarts, timeouts, panics, bad input.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jobfleet_core::{Client, JobSpec, JobState, Policy, Queue};
use jobfleet_testkit::{RedisOptions, RedisServer};
use jobfleet_worker::{Config, Registry, TaskError};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Short windows so crash recovery takes well under a second.
fn config(server: &RedisServer) -> Config {
    Config {
        concurrency: 8,
        heartbeat: Duration::from_millis(100),
        dead_after: Duration::from_millis(500),
        grace: Duration::from_secs(5),
        poll_interval: Duration::from_millis(200),
        promote_interval: Duration::from_millis(20),
        policy: Policy {
            backoff_base: Duration::from_millis(10),
            ..Policy::default()
        },
        ..Config::new(server.url())
    }
}

/// Counts executions per job id, to check "exactly once".
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, u32>>>);

impl Runs {
    fn registry(&self) -> Registry {
        let mut registry = Registry::with_builtins();
        let runs = self.clone();
        registry.register("count", move |ctx, p: Value| {
            *runs.0.lock().unwrap().entry(ctx.id).or_default() += 1;
            let ms = p["ms"].as_u64().unwrap_or(0);
            async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(p)
            }
        });
        registry
    }
}

struct Worker {
    stop: CancellationToken,
    handle: JoinHandle<Result<(), jobfleet_worker::WorkerError>>,
}

impl Worker {
    fn start(config: Config, registry: Registry) -> Worker {
        let stop = CancellationToken::new();
        let handle = tokio::spawn(jobfleet_worker::run(
            config,
            registry,
            stop.clone().cancelled_owned(),
        ));
        Worker { stop, handle }
    }

    async fn shutdown(self) {
        self.stop.cancel();
        self.handle.await.unwrap().unwrap();
    }

    /// Drops the worker without any shutdown, as SIGKILL would.
    async fn crash(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }
}

async fn submit(q: &Queue, specs: Vec<JobSpec>) -> Vec<(String, String)> {
    q.submit_batch(&specs)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (q.name().to_string(), s.id))
        .collect()
}

/// Waits (bounded) until workers hold at least `n` jobs of `q`.
async fn until_active(q: &Queue, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while q.stats().await.unwrap().active < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "workers never held {n} jobs"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_all(client: &Client, jobs: &[(String, String)]) -> HashMap<String, JobState> {
    let report = client
        .wait(jobs, Some(Duration::from_secs(60)), |_| {})
        .await
        .unwrap();
    assert!(
        report.unfinished.is_empty(),
        "{} jobs never finished",
        report.unfinished.len()
    );
    assert!(report.missing.is_empty(), "lost jobs: {:?}", report.missing);
    report.finished.into_iter().map(|f| (f.id, f.state)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_across_three_workers_complete_exactly_once() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let runs = Runs::default();
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(config(&server), runs.registry()))
        .collect();
    let jobs = submit(
        &q,
        (0..1000)
            .map(|n| JobSpec::new("count", &json!({ "n": n })))
            .collect(),
    )
    .await;

    let states = wait_all(&client, &jobs).await;
    assert_eq!(states.len(), 1000);
    assert!(states.values().all(|s| *s == JobState::Completed));
    let runs = runs.0.lock().unwrap().clone();
    assert_eq!(runs.len(), 1000);
    assert!(
        runs.values().all(|&n| n == 1),
        "a job ran twice without any fault"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.completed, stats.pending, stats.active), (1000, 0, 0));
    let result = q.status(&jobs[7].1).await.unwrap().unwrap().result;
    assert_eq!(result, Some(json!({ "n": 7 })));
    for w in workers {
        w.shutdown().await;
    }
    assert_eq!(q.stats().await.unwrap().workers, 0, "workers leave on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_of_a_crashed_worker_are_recovered_and_completed_by_the_others() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let runs = Runs::default();
    let victim = Worker::start(config(&server), runs.registry());
    let jobs = submit(
        &q,
        (0..40)
            .map(|n| JobSpec::new("count", &json!({ "n": n, "ms": 300 })))
            .collect(),
    )
    .await;

    // Wait until the victim holds jobs, then kill it mid-job.
    let mut events = client.events(&[]).await.unwrap();
    until_active(&q, 1).await;
    victim.crash().await;
    let survivor = Worker::start(config(&server), runs.registry());

    let states = wait_all(&client, &jobs).await;
    assert!(states.values().all(|s| *s == JobState::Completed));
    let recovered = q.stats().await.unwrap().recovered;
    assert!(recovered >= 1, "the crashed worker's jobs were recovered");
    // The recovery was announced as events.
    let mut saw_recovered = false;
    while let Ok(Some(Some(e))) = tokio::time::timeout(Duration::from_millis(100), events.next_event()).await
    {
        saw_recovered |= e.state == jobfleet_core::EventKind::Recovered;
    }
    assert!(saw_recovered);
    survivor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_hands_unfinished_jobs_back() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let mut cfg = config(&server);
    cfg.grace = Duration::from_millis(200);
    cfg.concurrency = 2;
    let worker = Worker::start(cfg, Registry::with_builtins());
    let quick = submit(&q, vec![JobSpec::new("sleep", &json!({"ms": 1}))]).await;
    wait_all(&client, &quick).await;
    let slow = submit(
        &q,
        (0..4)
            .map(|_| JobSpec::new("sleep", &json!({"ms": 60_000})))
            .collect(),
    )
    .await;
    until_active(&q, 2).await;
    worker.shutdown().await;

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.active, stats.workers), (4, 0, 0));
    for (_, id) in &slow {
        let job = q.status(id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Pending, 0),
            "handed back uncounted"
        );
    }
    assert!(client.workers().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_no_job_and_workers_resume() {
    let mut server = RedisServer::start_with(RedisOptions {
        aof: true,
        ..Default::default()
    });
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let workers: Vec<Worker> = (0..2)
        .map(|_| Worker::start(config(&server), Registry::with_builtins()))
        .collect();
    let jobs = submit(
        &q,
        (0..300)
            .map(|_| JobSpec::new("sleep", &json!({"ms": 5})))
            .collect(),
    )
    .await;
    while q.stats().await.unwrap().completed < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.restart();

    let states = wait_all(&client, &jobs).await;
    assert_eq!(states.len(), 300);
    assert!(states.values().all(|s| *s == JobState::Completed));
    // New work after the restart is picked up too.
    let after = submit(&q, vec![JobSpec::new("echo", &json!("after"))]).await;
    assert_eq!(wait_all(&client, &after).await[&after[0].1], JobState::Completed);
    for w in workers {
        w.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_timeout_is_failed_and_retried() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let mut registry = Registry::with_builtins();
    registry.register("slow-once", |ctx, _: Value| async move {
        if ctx.attempt == 1 {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Ok(ctx.attempt)
    });
    let worker = Worker::start(config(&server), registry);
    let spec = JobSpec::new("slow-once", &json!({})).timeout(Duration::from_millis(200));
    let jobs = submit(&q, vec![spec]).await;
    assert_eq!(wait_all(&client, &jobs).await[&jobs[0].1], JobState::Completed);
    let job = q.status(&jobs[0].1).await.unwrap().unwrap();
    assert_eq!((job.attempts, job.result), (2, Some(json!(2))));
    assert_eq!(job.error.as_deref(), Some("timed out after 200ms"));
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_worker_has_its_late_ack_refused_and_re_registers() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let mut cfg = config(&server);
    cfg.dead_after = Duration::from_secs(60); // only our explicit recover runs
    let runs = Runs::default();
    let worker = Worker::start(cfg, runs.registry());
    let jobs = submit(&q, vec![JobSpec::new("count", &json!({"ms": 500}))]).await;
    until_active(&q, 1).await;
    let first_worker = q.status(&jobs[0].1).await.unwrap().unwrap().worker.unwrap();
    // Declare every worker dead while the job runs, as a network cut would.
    assert_eq!(q.recover(Duration::ZERO).await.unwrap().requeued, 1);

    assert_eq!(wait_all(&client, &jobs).await[&jobs[0].1], JobState::Completed);
    let job = q.status(&jobs[0].1).await.unwrap().unwrap();
    assert_eq!(
        runs.0.lock().unwrap()[&jobs[0].1],
        2,
        "the late first ack was refused; the job ran again"
    );
    assert_eq!(job.attempts, 1, "the interrupted attempt is not counted");
    assert_ne!(
        job.worker.unwrap(),
        first_worker,
        "the worker re-registered under a fresh id"
    );
    assert_eq!(q.stats().await.unwrap().completed, 1);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_end_in_a_defined_state_and_the_worker_keeps_serving() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let mut registry = Registry::with_builtins();
    registry.register("panics", |_, _: Value| async move {
        if true {
            panic!("handler bug");
        }
        Ok(())
    });
    registry.register_blocking("blocking-permanent", |_, _: Value| {
        Err::<(), _>(TaskError::permanent("corrupt input"))
    });
    let worker = Worker::start(config(&server), registry);
    let jobs = submit(
        &q,
        vec![
            JobSpec::new("no-such-task", &json!({})),
            JobSpec::with_json_text("echo", "[1,2]".into()),
            JobSpec::new("sleep", &json!({"seconds": 1})),
            JobSpec::new("panics", &json!({})).max_attempts(2),
            JobSpec::new("blocking-permanent", &json!({})),
            JobSpec::new("fail", &json!({"message": "nope", "permanent": true})),
            JobSpec::new("echo", &json!("still serving")),
        ],
    )
    .await;
    // Every job but the one of a task no worker runs ends; that one waits.
    let states = wait_all(&client, &jobs[1..]).await;
    let error = |i: usize| {
        let q = q.clone();
        let id = jobs[i].1.clone();
        async move { q.status(&id).await.unwrap().unwrap().error.unwrap() }
    };
    let unknown = q.status(&jobs[0].1).await.unwrap().unwrap();
    assert_eq!(
        (unknown.state, unknown.attempts),
        (JobState::Pending, 0),
        "{unknown:?}"
    );
    let fleet = client.stats(&["default".to_string()]).await.unwrap();
    assert_eq!(fleet.queues[0].parked.get("no-such-task"), Some(&1));
    assert_eq!(
        fleet
            .unserved()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["no live worker runs task no-such-task on queue default: 1 job waits for one"]
    );
    assert_eq!(states[&jobs[1].1], JobState::Completed);
    assert!(
        error(2).await.contains("payload does not fit task 'sleep'"),
        "{}",
        error(2).await
    );
    assert_eq!(error(3).await, "task panicked: handler bug");
    assert_eq!(q.status(&jobs[3].1).await.unwrap().unwrap().attempts, 2);
    assert_eq!(error(4).await, "corrupt input");
    assert_eq!(error(5).await, "nope");
    for i in [2, 3, 4, 5] {
        assert_eq!(states[&jobs[i].1], JobState::Dead, "job {i}");
    }
    assert_eq!(states[&jobs[6].1], JobState::Completed);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_can_be_cancelled() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let worker = Worker::start(config(&server), Registry::with_builtins());
    let jobs = submit(&q, vec![JobSpec::new("sleep", &json!({"ms": 60_000}))]).await;
    until_active(&q, 1).await;
    assert_eq!(
        q.cancel(&jobs[0].1).await.unwrap(),
        jobfleet_core::CancelOutcome::Cancelling
    );
    assert_eq!(wait_all(&client, &jobs).await[&jobs[0].1], JobState::Cancelled);
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_are_served_in_priority_order() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let high = client.queue("high").unwrap();
    let low = client.queue("low").unwrap();
    let low_jobs = submit(&low, (0..20).map(|_| JobSpec::new("noop", &json!({}))).collect()).await;
    let high_jobs = submit(&high, (0..20).map(|_| JobSpec::new("noop", &json!({}))).collect()).await;
    let mut cfg = config(&server);
    cfg.queues = vec!["high".into(), "low".into()];
    cfg.concurrency = 1;
    let worker = Worker::start(cfg, Registry::with_builtins());
    let mut all = high_jobs.clone();
    all.extend(low_jobs.clone());
    wait_all(&client, &all).await;
    let last_high = high
        .status_many(&high_jobs.iter().map(|j| j.1.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let first_low = low.status(&low_jobs[0].1).await.unwrap().unwrap();
    let latest_high = last_high
        .iter()
        .map(|j| j.as_ref().unwrap().started_ms.unwrap())
        .max()
        .unwrap();
    assert!(
        latest_high <= first_low.started_ms.unwrap(),
        "every high job started before any low job"
    );
    worker.shutdown().await;
}

/// The id the (only) live worker registered under.
async fn worker_id(client: &Client) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(w) = client.workers().await.unwrap().pop() {
            return w.id;
        }
        assert!(tokio::time::Instant::now() < deadline, "no worker registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Puts a completed job back the way a Redis that lost its ack would have
/// it (a failover to a replica that missed the write): active, in the
/// worker's processing list.
async fn roll_back_ack(client: &Client, q: &Queue, worker: &str, id: &str) {
    let mut pipe = redis::pipe();
    pipe.atomic()
        .lpush(q.keys().processing(worker), id)
        .ignore()
        .hset_multiple(q.keys().job(id), &[("state", "active"), ("worker", worker)])
        .ignore()
        .persist(q.keys().job(id))
        .ignore();
    let _: () = pipe.query_async(&mut client.conn()).await.unwrap();
}

/// Waits for the job to complete again after a rollback, and counts its runs.
async fn completed_again(client: &Client, runs: &Runs, jobs: &[(String, String)]) {
    assert_eq!(wait_all(client, jobs).await[&jobs[0].1], JobState::Completed);
    assert_eq!(
        runs.0.lock().unwrap()[&jobs[0].1],
        2,
        "the rolled-back job ran again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_names_a_job_in_one_queue_only() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (a, b) = (client.queue("a").unwrap(), client.queue("b").unwrap());
    let config = Config {
        queues: vec!["a".into(), "b".into()],
        ..config(&server)
    };
    let worker = Worker::start(config, Registry::with_builtins());
    let spec = || JobSpec::new("sleep", &json!({"ms": 1500})).id("same-id");
    let jobs = [submit(&a, vec![spec()]).await, submit(&b, vec![spec()]).await].concat();
    until_active(&a, 1).await;
    until_active(&b, 1).await;
    assert_eq!(
        a.cancel("same-id").await.unwrap(),
        jobfleet_core::CancelOutcome::Cancelling
    );
    let report = client
        .wait(&jobs, Some(Duration::from_secs(30)), |_| {})
        .await
        .unwrap();
    assert!(report.unfinished.is_empty(), "{report:?}");
    let state = |q: &Queue| {
        let q = q.clone();
        async move { q.status("same-id").await.unwrap().unwrap().state }
    };
    assert_eq!(state(&a).await, JobState::Cancelled);
    assert_eq!(
        state(&b).await,
        JobState::Completed,
        "the job in b was not cancelled"
    );
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_redis_rolled_back_is_handed_back_within_the_reconcile_interval() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let runs = Runs::default();
    let config = Config {
        reconcile_interval: Duration::from_millis(300),
        ..config(&server)
    };
    let worker = Worker::start(config, runs.registry());
    let jobs = submit(&q, vec![JobSpec::new("count", &json!({}))]).await;
    wait_all(&client, &jobs).await;
    let w = worker_id(&client).await;
    roll_back_ack(&client, &q, &w, &jobs[0].1).await;
    completed_again(&client, &runs, &jobs).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_pubsub_reconnect_missed_cancels_and_rollbacks_are_caught_up() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let runs = Runs::default();
    let config = Config {
        // Only the reconnect can trigger the reconcile in time.
        reconcile_interval: Duration::from_secs(3600),
        ..config(&server)
    };
    let worker = Worker::start(config, runs.registry());
    let done = submit(&q, vec![JobSpec::new("count", &json!({}))]).await;
    wait_all(&client, &done).await;
    let running = submit(&q, vec![JobSpec::new("count", &json!({"ms": 60_000}))]).await;
    until_active(&q, 1).await;
    let w = worker_id(&client).await;
    roll_back_ack(&client, &q, &w, &done[0].1).await;
    // A cancel whose control message the worker never got (as if published
    // while its pub/sub connection was down).
    let _: () = redis::cmd("HSET")
        .arg(q.keys().job(&running[0].1))
        .arg("cancel")
        .arg(1)
        .query_async(&mut client.conn())
        .await
        .unwrap();
    server.cmd("CLIENT KILL TYPE pubsub");
    assert_eq!(
        wait_all(&client, &running).await[&running[0].1],
        JobState::Cancelled
    );
    completed_again(&client, &runs, &done).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_claim_is_kept_when_a_later_queue_says_the_worker_was_recovered() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (a, b) = (client.queue("a").unwrap(), client.queue("b").unwrap());
    let runs = Runs::default();
    let config = Config {
        queues: vec!["a".into(), "b".into()],
        // Beats and recovery too slow to step in: only the claim loop acts.
        heartbeat: Duration::from_secs(20),
        dead_after: Duration::from_secs(60),
        ..config(&server)
    };
    let worker = Worker::start(config, runs.registry());
    let w = worker_id(&client).await;
    // The fleet declared the worker dead in b only.
    let _: () = redis::cmd("ZREM")
        .arg(&b.keys().workers)
        .arg(&w)
        .query_async(&mut client.conn())
        .await
        .unwrap();
    let jobs = submit(&a, vec![JobSpec::new("count", &json!({}))]).await;
    let report = client
        .wait(&jobs, Some(Duration::from_secs(10)), |_| {})
        .await
        .unwrap();
    assert_eq!(report.finished.len(), 1, "the job claimed from a was dropped");
    assert_eq!(runs.0.lock().unwrap()[&jobs[0].1], 1);
    // The old id leaves a once it holds nothing; a fresh one serves both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&a.keys().workers)
            .arg(0)
            .arg(-1)
            .query_async(&mut client.conn())
            .await
            .unwrap();
        if ids.len() == 1 && ids[0] != w {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "workers of a: {ids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let more = submit(&b, vec![JobSpec::new("count", &json!({}))]).await;
    wait_all(&client, &more).await;
    worker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_over_the_limit_fails_the_job_instead_of_filling_redis() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let mut config = config(&server);
    config.policy.max_result_bytes = 100;
    let worker = Worker::start(config, Registry::with_builtins());
    let payload = json!({"text": "x".repeat(500)});
    let jobs = submit(&q, vec![JobSpec::new("echo", &payload)]).await;
    assert_eq!(wait_all(&client, &jobs).await[&jobs[0].1], JobState::Dead);
    let job = q.status(&jobs[0].1).await.unwrap().unwrap();
    let expected = format!(
        "result is {} bytes, over the 100 byte limit",
        payload.to_string().len()
    );
    assert_eq!(job.error, Some(expected));
    worker.shutdown().await;
}

/// A typed task, defined once for both sides.
struct Double;

impl jobfleet_core::Task for Double {
    const NAME: &'static str = "double";
    type Payload = Numbers;
    type Output = Vec<i64>;
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Numbers {
    values: Vec<i64>,
    fail: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_task_is_enqueued_and_waited_on_with_its_own_types() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("typed").unwrap();
    let mut registry = Registry::new();
    registry.task::<Double, _, _>(|_, n: Numbers| async move {
        if n.fail {
            return Err(jobfleet_worker::TaskError::permanent("asked to fail"));
        }
        Ok(n.values.iter().map(|v| v * 2).collect())
    });
    let worker = Worker::start(
        Config {
            queues: vec!["typed".into()],
            ..config(&server)
        },
        registry,
    );
    let job = q
        .enqueue::<Double>(&Numbers {
            values: vec![1, 20],
            fail: false,
        })
        .await
        .unwrap();
    assert!(job.created());
    let out: Vec<i64> = job.wait().await.unwrap();
    assert_eq!(out, vec![2, 40]);
    // A failure is typed too: the state and the task's message.
    let failing = q
        .enqueue_with::<Double>(
            &Numbers {
                values: vec![],
                fail: true,
            },
            |s| s.id("typed-fail"),
        )
        .await
        .unwrap();
    match failing.wait().await {
        Err(jobfleet_core::Error::JobFailed { id, state, error }) => {
            assert_eq!(
                (id.as_str(), state, error.as_str()),
                ("typed-fail", JobState::Dead, "asked to fail")
            );
        }
        other => panic!("expected JobFailed, got {other:?}"),
    }
    // Waiting gives up when asked, and says the job keeps running.
    worker.shutdown().await;
    let pending = q
        .enqueue::<Double>(&Numbers {
            values: vec![3],
            fail: false,
        })
        .await
        .unwrap();
    match pending.wait_timeout(Duration::from_millis(200)).await {
        Err(jobfleet_core::Error::WaitTimedOut(id)) => assert_eq!(id, pending.id()),
        other => panic!("expected WaitTimedOut, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_queues_serve_the_light_queue_while_the_heavy_one_is_busy() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let (high, low) = (client.queue("high").unwrap(), client.queue("low").unwrap());
    let noop = || JobSpec::new("noop", &json!(null));
    submit(&high, (0..300).map(|_| noop()).collect()).await;
    let lows = submit(&low, (0..300).map(|_| noop()).collect()).await;
    let mut events = client.events(&["high".into(), "low".into()]).await.unwrap();
    let worker = Worker::start(
        Config {
            queues: vec!["high".into(), "low".into()],
            weights: vec![3, 1],
            concurrency: 2,
            ..config(&server)
        },
        Registry::with_builtins(),
    );
    // Strict priority would run all 300 of `high` first.
    let mut first = Vec::new();
    while first.len() < 300 {
        if let Some(Some(event)) = events.next_event().await
            && event.state == jobfleet_core::EventKind::Completed
        {
            first.push(event.queue);
        }
    }
    let light = first.iter().filter(|q| *q == "low").count();
    assert!(
        (15..200).contains(&light),
        "{light} of the first 300 completions were from the weight-1 queue"
    );
    wait_all(&client, &lows).await;
    worker.shutdown().await;
}
