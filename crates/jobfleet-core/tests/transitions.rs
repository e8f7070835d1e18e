//! Every Lua transition and every refusal, against a real redis-server that
//! each test starts for itself.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::time::Duration;

use jobfleet_core::{
    CancelOutcome, Client, ConnectOptions, Error, EventKind, FailKind, FailOutcome, Feed, JobSpec, JobState,
    Policy,
};
use jobfleet_testkit::TestRedis;
use serde_json::json;

async fn client_with(server: &TestRedis, policy: Policy) -> Client {
    let options = ConnectOptions {
        policy,
        prefix: server.prefix(),
        ..ConnectOptions::default()
    };
    Client::connect_with(&server.url(), options)
        .await
        .expect("connect")
}

/// A policy whose retries are due at once, so tests need not wait.
fn instant_retries() -> Policy {
    Policy {
        backoff_base: Duration::ZERO,
        backoff_jitter: 0.0,
        ..Policy::default()
    }
}

async fn setup() -> (TestRedis, Client) {
    let server = TestRedis::start();
    let client = client_with(&server, instant_retries()).await;
    (server, client)
}

fn echo(n: i64) -> JobSpec {
    JobSpec::new("echo", &json!({ "n": n }))
}

#[tokio::test]
async fn submit_claim_ack_runs_fifo_and_records_the_result() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let ids: Vec<String> = q
        .submit_batch(&[echo(1), echo(2), echo(3)])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    q.heartbeat("w1", true).await.unwrap();

    let claimed = q.claim("w1", 2).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| &j.id).collect::<Vec<_>>(),
        vec![&ids[0], &ids[1]]
    );
    assert_eq!(claimed[0].task, "echo");
    assert_eq!(claimed[0].payload, r#"{"n":1}"#);
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(q.status(&ids[0]).await.unwrap().unwrap().state, JobState::Active);

    let applied = q
        .ack("w1", &[(ids[0].clone(), r#"{"ok":true}"#.into())])
        .await
        .unwrap();
    assert_eq!(applied, vec![true]);
    let job = q.status(&ids[0]).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed);
    assert_eq!(job.result, Some(json!({"ok": true})));
    assert_eq!(job.worker.as_deref(), Some("w1"));

    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.pending, stats.active, stats.completed, stats.submitted),
        (1, 1, 1, 3)
    );
}

#[tokio::test]
async fn a_second_ack_of_the_same_job_is_refused() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.heartbeat("w1", true).await.unwrap();
    q.claim("w1", 1).await.unwrap();
    assert_eq!(
        q.ack("w1", &[(id.clone(), "1".into())]).await.unwrap(),
        vec![true]
    );
    assert_eq!(
        q.ack("w1", &[(id.clone(), "2".into())]).await.unwrap(),
        vec![false]
    );
    assert_eq!(q.status(&id).await.unwrap().unwrap().result, Some(json!(1)));
    assert_eq!(q.stats().await.unwrap().completed, 1);
}

#[tokio::test]
async fn a_stale_worker_cannot_ack_or_fail_a_recovered_job() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.heartbeat("stale", true).await.unwrap();
    q.claim("stale", 1).await.unwrap();

    // A zero dead-after window declares every worker dead.
    let recovered = q.recover(Duration::ZERO).await.unwrap();
    assert_eq!((recovered.workers, recovered.requeued), (1, 1));
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Pending, 0),
        "the lost attempt is not counted"
    );

    q.heartbeat("fresh", true).await.unwrap();
    assert_eq!(q.claim("fresh", 1).await.unwrap()[0].id, id);
    assert_eq!(
        q.ack("stale", &[(id.clone(), "0".into())]).await.unwrap(),
        vec![false]
    );
    assert_eq!(
        q.fail("stale", &id, "late", FailKind::Permanent).await.unwrap(),
        FailOutcome::Stale
    );
    assert_eq!(
        q.ack("fresh", &[(id.clone(), "1".into())]).await.unwrap(),
        vec![true]
    );
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.result, job.recoveries),
        (JobState::Completed, Some(json!(1)), 1)
    );

    // The stale worker learns it was recovered instead of silently carrying on.
    assert_eq!(q.heartbeat("stale", false).await.unwrap(), None);
    assert!(matches!(
        q.claim("stale", 1).await,
        Err(Error::WorkerRecovered(_))
    ));
}

#[tokio::test]
async fn failures_retry_until_attempts_run_out_then_the_job_is_dead() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1).max_attempts(2)).await.unwrap().id;
    q.heartbeat("w", true).await.unwrap();

    q.claim("w", 1).await.unwrap();
    let outcome = q.fail("w", &id, "boom 1", FailKind::Retry).await.unwrap();
    assert!(matches!(outcome, FailOutcome::Scheduled { .. }));
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.error.as_deref()),
        (JobState::Scheduled, Some("boom 1"))
    );

    assert_eq!(q.promote_due(100).await.unwrap(), 1);
    let claimed = q.claim("w", 1).await.unwrap();
    assert_eq!(claimed[0].attempt, 2);
    assert_eq!(
        q.fail("w", &id, "boom 2", FailKind::Retry).await.unwrap(),
        FailOutcome::Dead
    );

    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Dead, 2));
    assert_eq!(job.error.as_deref(), Some("boom 2"));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.failed, stats.retried, stats.dead), (2, 1, 1));
}

#[tokio::test]
async fn backoff_is_exponential_with_bounded_jitter_on_redis_time() {
    let server = TestRedis::start();
    let policy = Policy {
        backoff_base: Duration::from_secs(10),
        backoff_jitter: 0.25,
        ..Policy::default()
    };
    let client = client_with(&server, policy).await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1).max_attempts(5)).await.unwrap().id;
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 1).await.unwrap();
    let started = q.status(&id).await.unwrap().unwrap().started_ms.unwrap();
    let FailOutcome::Scheduled { run_at_ms } = q.fail("w", &id, "x", FailKind::Retry).await.unwrap() else {
        panic!("expected a retry");
    };
    let delay = run_at_ms - started;
    assert!((10_000..=12_600).contains(&delay), "first backoff {delay} ms");
    // Not due yet: promote moves nothing.
    assert_eq!(q.promote_due(100).await.unwrap(), 0);
    assert_eq!(q.status(&id).await.unwrap().unwrap().run_at_ms, Some(run_at_ms));
}

#[tokio::test]
async fn a_permanent_error_buries_at_once_and_dead_jobs_can_be_retried_and_purged() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let a = q.submit(echo(1).max_attempts(5)).await.unwrap().id;
    let b = q.submit(echo(2)).await.unwrap().id;
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 2).await.unwrap();
    assert_eq!(
        q.fail("w", &a, "corrupt", FailKind::Permanent).await.unwrap(),
        FailOutcome::Dead
    );
    assert_eq!(
        q.fail("w", &b, "corrupt", FailKind::Permanent).await.unwrap(),
        FailOutcome::Dead
    );
    let dead = q.dead_list(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].error.as_deref(), Some("corrupt"));

    assert_eq!(q.dead_retry(std::slice::from_ref(&a)).await.unwrap(), 1);
    let job = q.status(&a).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0));
    assert_eq!(q.claim("w", 5).await.unwrap().len(), 1);

    assert_eq!(q.dead_purge(&[]).await.unwrap(), 1);
    assert_eq!(q.status(&b).await.unwrap(), None);
    assert_eq!(q.stats().await.unwrap().dead, 0);
}

#[tokio::test]
async fn the_dead_set_is_capped_and_finished_records_expire() {
    let server = TestRedis::start();
    let policy = Policy {
        dead_max_count: 2,
        ..instant_retries()
    };
    let client = client_with(&server, policy).await;
    let q = client.queue("default").unwrap();
    let ids: Vec<String> = q
        .submit_batch(&[echo(1), echo(2), echo(3), echo(4)])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 4).await.unwrap();
    for id in &ids[..3] {
        q.fail("w", id, "bad", FailKind::Permanent).await.unwrap();
    }
    q.ack("w", &[(ids[3].clone(), "null".into())]).await.unwrap();

    assert_eq!(q.stats().await.unwrap().dead, 2);
    assert_eq!(
        q.status(&ids[0]).await.unwrap(),
        None,
        "the oldest dead record is dropped"
    );
    let ttl = |id: &str| server.cmd(&format!("TTL {}", q.keys().job(id)));
    let dead_ttl: i64 = ttl(&ids[2]).trim_start_matches(':').trim().parse().unwrap();
    let done_ttl: i64 = ttl(&ids[3]).trim_start_matches(':').trim().parse().unwrap();
    assert!(dead_ttl > 6 * 24 * 3600, "dead ttl {dead_ttl}");
    assert!((3000..=3600).contains(&done_ttl), "completed ttl {done_ttl}");
}

#[tokio::test]
async fn a_key_ttl_keeps_the_idempotency_key_past_a_shorter_retention() {
    let server = TestRedis::start();
    let policy = Policy {
        completed_retention: Duration::ZERO,
        ..instant_retries()
    };
    let client = client_with(&server, policy).await;
    let q = client.queue("default").unwrap();
    let kept = q
        .submit(echo(1).id("kept").key_ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    let plain = q.submit(echo(2).id("plain")).await.unwrap();
    let cancelled = q
        .submit(echo(3).id("gone").key_ttl(Duration::from_millis(1500)))
        .await
        .unwrap();
    assert!(kept.created && plain.created && cancelled.created);
    q.cancel("gone").await.unwrap();
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "the cancelled entry is skipped");
    q.ack("w", &[("kept".into(), "1".into()), ("plain".into(), "2".into())])
        .await
        .unwrap();

    let ttl = |id: &str| -> i64 {
        let reply = server.cmd(&format!("TTL {}", q.keys().job(id)));
        reply.trim_start_matches(':').trim().parse().unwrap()
    };
    assert!((590..=600).contains(&ttl("kept")), "{}", ttl("kept"));
    assert_eq!(q.status("kept").await.unwrap().unwrap().key_ttl_s, Some(600));
    assert_eq!(
        q.status("plain").await.unwrap(),
        None,
        "retention 0 deletes at once"
    );
    // The cancelled record keeps its 1.5 s, rounded up to 2 s.
    assert!((1..=2).contains(&ttl("gone")), "{}", ttl("gone"));

    let again = q
        .submit(echo(9).id("kept").key_ttl(Duration::from_secs(600)))
        .await
        .unwrap();
    assert!(!again.created, "the key still names the finished job");
    assert!(
        q.submit(echo(9).id("plain")).await.unwrap().created,
        "no ttl: the key is free"
    );
}

#[tokio::test]
async fn a_traceparent_is_stored_and_handed_to_the_worker_and_a_bad_one_refused() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let id = q.submit(echo(1).traceparent(tp)).await.unwrap().id;
    let plain = q.submit(echo(2)).await.unwrap().id;
    assert_eq!(
        q.status(&id).await.unwrap().unwrap().traceparent.as_deref(),
        Some(tp)
    );
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 2).await.unwrap();
    assert_eq!(claimed[0].traceparent.as_deref(), Some(tp));
    assert_eq!(
        (claimed[1].id.as_str(), claimed[1].traceparent.as_deref()),
        (plain.as_str(), None)
    );
    let err = q.submit(echo(3).traceparent("00-zz-01")).await.unwrap_err();
    assert!(matches!(err, Error::InvalidTraceparent(_)), "{err}");
}

#[tokio::test]
async fn cancel_removes_waiting_jobs_and_asks_the_worker_to_stop_a_running_one() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let pending = q.submit(echo(1)).await.unwrap().id;
    let delayed = q
        .submit(echo(2).delay(Duration::from_secs(3600)))
        .await
        .unwrap()
        .id;
    let running = q.submit(echo(3)).await.unwrap().id;

    assert_eq!(q.cancel(&pending).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(q.cancel(&delayed).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(q.stats().await.unwrap().scheduled, 0);

    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "cancelled jobs are never claimed");
    assert_eq!(claimed[0].id, running);

    let mut control = client
        .subscribe(vec![q.keys().control.clone()], vec![])
        .await
        .unwrap();
    assert_eq!(q.cancel(&running).await.unwrap(), CancelOutcome::Cancelling);
    let Some(Feed::Message { payload, .. }) = control.next().await else {
        panic!("no control message")
    };
    assert_eq!(payload, format!("cancel {running}"));
    // However the worker ends the attempt, a requested cancel wins.
    assert_eq!(
        q.fail("w", &running, "stopped", FailKind::Retry).await.unwrap(),
        FailOutcome::Cancelled
    );
    assert_eq!(
        q.status(&running).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(
        q.cancel(&running).await.unwrap(),
        CancelOutcome::AlreadyFinal(JobState::Cancelled)
    );
    assert_eq!(q.cancel("no-such-job").await.unwrap(), CancelOutcome::NotFound);
    assert_eq!(q.stats().await.unwrap().cancelled, 3);
}

#[tokio::test]
async fn an_idempotency_key_creates_the_job_once() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let first = q.submit(echo(1).id("order-42")).await.unwrap();
    let second = q.submit(echo(2).id("order-42")).await.unwrap();
    assert_eq!((first.id.as_str(), first.created), ("order-42", true));
    assert_eq!((second.id.as_str(), second.created), ("order-42", false));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.submitted), (1, 1));
    assert_eq!(
        q.status("order-42").await.unwrap().unwrap().payload,
        json!({"n": 1})
    );
}

#[tokio::test]
async fn delayed_jobs_wait_in_scheduled_until_due() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let later = q
        .submit(echo(1).delay(Duration::from_secs(3600)))
        .await
        .unwrap()
        .id;
    let now = q
        .submit(echo(2).delay(Duration::from_millis(1)))
        .await
        .unwrap()
        .id;
    let job = q.status(&later).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Scheduled);
    assert!(job.run_at_ms.unwrap() >= job.created_ms + 3_600_000);

    // The 1 ms delay is due once Redis' clock has moved past it.
    let mut moved = 0;
    while moved == 0 {
        moved = q.promote_due(100).await.unwrap();
    }
    assert_eq!(moved, 1);
    assert_eq!(q.status(&now).await.unwrap().unwrap().state, JobState::Pending);
    assert_eq!(
        q.status(&later).await.unwrap().unwrap().state,
        JobState::Scheduled
    );
}

#[tokio::test]
async fn stats_give_the_age_of_the_oldest_pending_job() {
    let (server, client) = setup().await;
    let q = client.queue("default").unwrap();
    assert_eq!(q.stats().await.unwrap().oldest_pending_ms, 0, "nothing pending");
    let first = q.submit(echo(1)).await.unwrap().id;
    q.submit(echo(2)).await.unwrap();
    // The first job (at the claim end) was created a minute ago on Redis' clock.
    let key = format!("{}:{{default}}:job:{first}", server.prefix());
    let reply = server.cmd(&format!("HGET {key} created_ms"));
    let created: u64 = reply.lines().last().unwrap().parse().unwrap();
    server.cmd(&format!("HSET {key} created_ms {}", created - 60_000));
    let age = q.stats().await.unwrap().oldest_pending_ms;
    assert!((60_000..70_000).contains(&age), "{age}");

    q.heartbeat("w1", true).await.unwrap();
    q.claim("w1", 1).await.unwrap();
    assert!(
        q.stats().await.unwrap().oldest_pending_ms < 60_000,
        "the next one is young"
    );
}

#[tokio::test]
async fn a_job_that_keeps_killing_its_worker_is_buried_at_the_poison_cap() {
    let server = TestRedis::start();
    let policy = Policy {
        poison_cap: 2,
        ..instant_retries()
    };
    let client = client_with(&server, policy).await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1).max_attempts(10)).await.unwrap().id;
    for worker in ["w1", "w2"] {
        q.heartbeat(worker, true).await.unwrap();
        assert_eq!(q.claim(worker, 1).await.unwrap().len(), 1);
        q.recover(Duration::ZERO).await.unwrap();
    }
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.recoveries), (JobState::Dead, 2));
    assert!(job.error.unwrap().contains("poison-pill cap 2"));
}

#[tokio::test]
async fn recover_leaves_live_workers_alone() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.submit(echo(1)).await.unwrap();
    q.heartbeat("alive", true).await.unwrap();
    q.claim("alive", 1).await.unwrap();
    let r = q.recover(Duration::from_secs(60)).await.unwrap();
    assert_eq!((r.workers, r.requeued), (0, 0));
    assert_eq!(q.stats().await.unwrap().active, 1);
}

#[tokio::test]
async fn requeue_hands_back_unfinished_work_without_counting_the_attempt() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.submit_batch(&[echo(1), echo(2)]).await.unwrap();
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 2).await.unwrap();
    assert_eq!(q.requeue("w", true).await.unwrap(), 2);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.active, stats.workers), (2, 0, 0));
    let job = q.status(&claimed[0].id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0));
}

#[tokio::test]
async fn a_hand_written_job_with_missing_fields_is_claimed_with_blanks() {
    let (server, client) = setup().await;
    let q = client.queue("default").unwrap();
    server.cmd(&format!("HSET {} state pending", q.keys().job("manual")));
    server.cmd(&format!("LPUSH {} manual", q.keys().pending));
    server.cmd(&format!("LPUSH {} ghost", q.keys().pending));
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 5).await.unwrap();
    assert_eq!(claimed.len(), 1, "an id without a record is dropped");
    assert_eq!((claimed[0].task.as_str(), claimed[0].payload.as_str()), ("", ""));
    assert_eq!(q.stats().await.unwrap().active, 1);
}

#[tokio::test]
async fn wait_sees_jobs_finish_before_and_after_it_starts() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let early = q.submit(echo(1)).await.unwrap().id;
    let late = q.submit(echo(2)).await.unwrap().id;
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 2).await.unwrap();
    q.ack("w", &[(early.clone(), "1".into())]).await.unwrap();

    let jobs = vec![
        ("default".to_string(), early.clone()),
        ("default".to_string(), late.clone()),
        ("default".to_string(), "never-submitted".to_string()),
    ];
    let waiter = {
        let client = client.clone();
        tokio::spawn(async move { client.wait(&jobs, Some(Duration::from_secs(20)), |_| {}).await })
    };
    // The waiter subscribes, then reads states; the late job completes after.
    let mut events = client.events(&["default".to_string()]).await.unwrap();
    tokio::task::yield_now().await;
    q.fail("w", &late, "bad input", FailKind::Permanent)
        .await
        .unwrap();
    let report = waiter.await.unwrap().unwrap();
    assert_eq!(report.missing, vec!["never-submitted".to_string()]);
    assert!(report.unfinished.is_empty());
    let mut states: Vec<_> = report.finished.iter().map(|f| (f.id.clone(), f.state)).collect();
    states.sort();
    let mut expected = vec![(early, JobState::Completed), (late.clone(), JobState::Dead)];
    expected.sort();
    assert_eq!(states, expected);

    let event = loop {
        if let Some(Some(event)) = events.next_event().await {
            break event;
        }
    };
    assert_eq!(
        (event.id, event.state, event.error.as_deref()),
        (late, EventKind::Dead, Some("bad input"))
    );
}

#[tokio::test]
async fn wait_times_out_on_jobs_that_do_not_finish() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    let report = client
        .wait(
            &[("default".into(), id.clone())],
            Some(Duration::from_millis(200)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.unfinished, vec![id]);
}

#[tokio::test]
async fn bad_input_is_refused_before_anything_is_written() {
    let (_server, client) = setup().await;
    assert!(matches!(
        client.queue("bad{name}"),
        Err(Error::InvalidQueueName(_))
    ));
    assert!(matches!(client.queue(""), Err(Error::InvalidQueueName(_))));
    let q = client.queue("default").unwrap();
    let bad_json = JobSpec::with_json_text("echo", "{not json".into());
    assert!(matches!(q.submit(bad_json).await, Err(Error::InvalidPayload(_))));
    let huge = JobSpec::with_json_text("echo", format!("\"{}\"", "x".repeat(2 * 1024 * 1024)));
    let err = q.submit(huge).await.unwrap_err();
    assert!(err.to_string().contains("over the 1048576 byte limit"), "{err}");
    assert!(matches!(
        q.submit(echo(1).id("has space")).await,
        Err(Error::InvalidJobId(_))
    ));
    // A batch with one bad job submits none.
    let batch = [echo(1), JobSpec::with_json_text("echo", "nope".into())];
    assert!(q.submit_batch(&batch).await.is_err());
    assert_eq!(q.stats().await.unwrap().submitted, 0);
}

#[tokio::test]
async fn stats_and_find_job_span_every_known_queue() {
    let (_server, client) = setup().await;
    let id = client.queue("emails").unwrap().submit(echo(1)).await.unwrap().id;
    client.queue("images").unwrap().submit(echo(2)).await.unwrap();
    assert_eq!(client.queue_names().await.unwrap(), vec!["emails", "images"]);
    assert_eq!(client.find_job(&id, None).await.unwrap().queue, "emails");
    assert!(matches!(
        client.find_job("nope", None).await,
        Err(Error::JobNotFound(_))
    ));
    let stats = client.stats(&[]).await.unwrap();
    assert_eq!(stats.queues.iter().map(|q| q.pending).sum::<u64>(), 2);
}

#[tokio::test]
async fn a_job_cancelled_while_its_worker_died_ends_cancelled_not_rerun() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 1).await.unwrap();
    assert_eq!(q.cancel(&id).await.unwrap(), CancelOutcome::Cancelling);
    q.recover(Duration::ZERO).await.unwrap();
    assert_eq!(q.status(&id).await.unwrap().unwrap().state, JobState::Cancelled);
    assert_eq!(q.stats().await.unwrap().pending, 0);
}

#[tokio::test]
async fn reconcile_hands_back_claimed_jobs_the_worker_never_received() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.submit_batch(&[echo(1), echo(2), echo(3)]).await.unwrap();
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 3).await.unwrap();
    // The worker only ever saw the first job (the reply was lost, say).
    let held = vec![claimed[0].id.clone()];
    assert_eq!(q.reconcile("w", &held).await.unwrap(), 2);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.active), (2, 1));
    let job = q.status(&claimed[1].id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0));
    assert_eq!(
        q.ack("w", &[(claimed[0].id.clone(), "1".into())]).await.unwrap(),
        vec![true]
    );
}

fn tasks(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn ids_of(jobs: &[jobfleet_core::ClaimedJob]) -> Vec<&str> {
    jobs.iter().map(|j| j.id.as_str()).collect()
}

#[tokio::test]
async fn a_worker_claims_only_the_tasks_it_runs_and_parks_the_rest_for_one_that_does() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let specs = [
        echo(1),
        JobSpec::new("resize", &json!({})),
        echo(2),
        JobSpec::new("resize", &json!({})),
    ];
    let ids: Vec<String> = q
        .submit_batch(&specs)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    q.heartbeat("echoes", true).await.unwrap();
    q.heartbeat("resizer", true).await.unwrap();

    // A worker that runs echo only takes the echoes; the resizes wait,
    // still pending, never attempted, counted per task.
    let claimed = q.claim_for("echoes", 10, &tasks(&["echo"])).await.unwrap();
    assert_eq!(ids_of(&claimed), [&ids[0], &ids[2]]);
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.pending, 2);
    assert_eq!(stats.parked.get("resize"), Some(&2));
    assert!(stats.oldest_pending_ms < 60_000);
    let parked = q.status(&ids[1]).await.unwrap().unwrap();
    assert_eq!((parked.state, parked.attempts), (JobState::Pending, 0));
    assert!(
        q.claim_for("echoes", 10, &tasks(&["echo"]))
            .await
            .unwrap()
            .is_empty()
    );
    let browse = q.jobs(JobState::Pending, Some("resize"), 10).await.unwrap();
    assert_eq!(
        browse.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(),
        [&ids[1], &ids[3]]
    );

    // A worker that runs it takes them in submit order, before new work.
    let newer = q.submit(JobSpec::new("resize", &json!({}))).await.unwrap().id;
    let claimed = q
        .claim_for("resizer", 10, &tasks(&["echo", "resize"]))
        .await
        .unwrap();
    assert_eq!(ids_of(&claimed), [&ids[1], &ids[3], &newer]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.active), (0, 5));
    assert!(stats.parked.is_empty(), "{:?}", stats.parked);

    // A parked job cancelled while it waits is skipped, like a pending one.
    let lonely = q.submit(JobSpec::new("resize", &json!({}))).await.unwrap().id;
    assert!(
        q.claim_for("echoes", 10, &tasks(&["echo"]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.cancel(&lonely).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(q.stats().await.unwrap().pending, 0);
    assert!(
        q.claim_for("resizer", 10, &tasks(&["resize"]))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        q.status(&lonely).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
}

#[tokio::test]
async fn a_paused_queue_gives_no_job_on_any_shard_until_it_is_resumed() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.set_shards(3).await.unwrap();
    let ids: Vec<String> = q
        .submit_batch(&(0..12).map(echo).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let shards = q.shards().await.unwrap();
    for s in &shards {
        s.heartbeat("w", true).await.unwrap();
    }
    assert!(q.pause().await.unwrap());
    assert!(!q.pause().await.unwrap(), "already paused");
    assert!(q.is_paused().await.unwrap());
    for s in &shards {
        assert!(s.claim("w", 100).await.unwrap().is_empty(), "shard {}", s.shard());
    }
    let stats = q.stats().await.unwrap();
    assert!(stats.paused);
    assert_eq!((stats.pending, stats.active), (12, 0));

    let mut notify = client
        .subscribe(shards.iter().map(|s| s.keys().notify.clone()).collect(), vec![])
        .await
        .unwrap();
    assert!(q.resume().await.unwrap());
    // Workers are woken (on every shard's channel).
    let mut woken = 0;
    while woken < shards.len() {
        if let Some(Feed::Message { .. }) = notify.next().await {
            woken += 1;
        }
    }
    assert!(!q.resume().await.unwrap(), "not paused any more");
    let mut claimed = Vec::new();
    for s in &shards {
        claimed.extend(s.claim("w", 100).await.unwrap().into_iter().map(|j| j.id));
    }
    claimed.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(claimed, all);
    assert!(!q.stats().await.unwrap().paused);
}

#[tokio::test]
async fn cancel_where_takes_one_tasks_waiting_jobs_and_purge_takes_every_waiting_job() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let report = |n| JobSpec::new("report", &json!({ "n": n }));
    let ids: Vec<String> = q
        .submit_batch(&[
            report(1),
            echo(1),
            report(2),
            report(3).delay(Duration::from_secs(3600)),
            echo(2).delay(Duration::from_secs(3600)),
            report(4),
            echo(3),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    q.heartbeat("w", true).await.unwrap();
    // report 1 runs; echo 1 and 3 are parked by a worker that runs only report.
    let running = q.claim_for("w", 1, &tasks(&["report"])).await.unwrap();
    assert_eq!(ids_of(&running), [&ids[0]]);
    let mut events = client.events(&["default".to_string()]).await.unwrap();

    let filter = jobfleet_core::Filter {
        task: Some("report".into()),
        running: false,
    };
    let counted = q.count_where(&filter).await.unwrap();
    assert_eq!((counted.pending, counted.scheduled, counted.active), (2, 1, 0));
    let with_running = jobfleet_core::Filter {
        running: true,
        ..filter.clone()
    };
    assert_eq!(q.count_where(&with_running).await.unwrap().active, 1);
    assert_eq!(q.stats().await.unwrap().pending, 4, "counting changes nothing");

    let done = q
        .cancel_where(&filter, Some("not needed any more"))
        .await
        .unwrap();
    assert_eq!(done.total(), 3);
    for i in [2, 3, 5] {
        let job = q.status(&ids[i]).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Cancelled, "job {i}");
        assert_eq!(job.error.as_deref(), Some("not needed any more"));
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        if let Some(Some(event)) = events.next_event().await {
            assert_eq!(event.state, EventKind::Cancelled);
            seen.push(event.id);
        }
    }
    seen.sort();
    let mut want = vec![ids[2].clone(), ids[3].clone(), ids[5].clone()];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(
        q.status(&ids[0]).await.unwrap().unwrap().state,
        JobState::Active,
        "running: left alone"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.scheduled, stats.cancelled), (2, 1, 3));

    // Purge: every waiting job, parked and scheduled ones too; the running one finishes.
    let purged = q.purge().await.unwrap();
    assert_eq!((purged.pending, purged.scheduled, purged.active), (2, 1, 0));
    for i in [1, 4, 6] {
        let job = q.status(&ids[i]).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.error.as_deref()),
            (JobState::Cancelled, Some("purged")),
            "job {i}"
        );
    }
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.scheduled, stats.active), (0, 0, 1));
    assert!(q.claim("w", 10).await.unwrap().is_empty());
    assert_eq!(
        q.ack("w", &[(ids[0].clone(), "null".into())]).await.unwrap(),
        [true]
    );
    assert_eq!(q.purge().await.unwrap().total(), 0);
}

#[tokio::test]
async fn jobs_are_browsed_by_state_in_the_order_that_matters() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let ids: Vec<String> = q
        .submit_batch(&[
            echo(1),
            echo(2),
            JobSpec::new("fail", &json!({})),
            echo(3),
            echo(4).delay(Duration::from_secs(7200)),
            echo(5).delay(Duration::from_secs(3600)),
        ])
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    let browse = |state, task: Option<&'static str>, limit| {
        let q = q.clone();
        async move {
            q.jobs(state, task, limit)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(browse(JobState::Pending, None, 10).await, ids[..4]);
    assert_eq!(browse(JobState::Pending, None, 2).await, ids[..2]);
    assert_eq!(
        browse(JobState::Pending, Some("fail"), 10).await,
        [ids[2].clone()]
    );
    assert_eq!(
        browse(JobState::Scheduled, None, 10).await,
        [ids[5].clone(), ids[4].clone()]
    );

    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 3).await.unwrap();
    assert_eq!(browse(JobState::Active, None, 10).await.len(), 3);
    assert_eq!(browse(JobState::Active, Some("fail"), 10).await, [ids[2].clone()]);
    q.fail("w", &ids[2], "broken", FailKind::Permanent).await.unwrap();
    assert_eq!(browse(JobState::Dead, None, 10).await, [ids[2].clone()]);
    assert_eq!(browse(JobState::Pending, None, 10).await, [ids[3].clone()]);
    assert!(matches!(
        q.jobs(JobState::Completed, None, 10).await,
        Err(Error::NotBrowsable(JobState::Completed))
    ));
}

#[tokio::test]
async fn progress_is_recorded_and_published_only_for_the_worker_holding_the_job() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.heartbeat("w1", true).await.unwrap();
    assert!(!q.progress("w1", &id, 0.1, "not yet claimed").await.unwrap());
    q.claim("w1", 1).await.unwrap();
    let mut events = client.events(&["default".to_string()]).await.unwrap();

    assert!(q.progress("w1", &id, 0.25, "resizing").await.unwrap());
    let event = loop {
        if let Some(Some(event)) = events.next_event().await {
            break event;
        }
    };
    assert_eq!(event.state, EventKind::Progress);
    assert_eq!(
        (event.progress, event.message.as_deref()),
        (Some(0.25), Some("resizing"))
    );
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.progress, job.progress_message.as_deref()),
        (Some(0.25), Some("resizing"))
    );
    assert!(q.progress("w1", &id, 0.5, "").await.unwrap());
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!((job.progress, job.progress_message), (Some(0.5), None));
    assert!(matches!(
        q.progress("w1", &id, 1.5, "").await,
        Err(Error::InvalidProgress(_))
    ));
    assert!(!q.progress("w2", &id, 0.9, "not mine").await.unwrap());

    // Declared dead: its reports are refused, and the job keeps the last one.
    assert_eq!(q.recover(Duration::ZERO).await.unwrap().requeued, 1);
    assert!(!q.progress("w1", &id, 0.75, "too late").await.unwrap());
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!((job.state, job.progress), (JobState::Pending, Some(0.5)));
}

#[tokio::test]
async fn a_due_schedule_fires_once_whatever_the_number_of_workers_and_missed_ticks_fire_once() {
    let (server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.set_shards(2).await.unwrap();
    let schedule = jobfleet_core::Schedule {
        name: "beat".into(),
        when: jobfleet_core::When::every(Duration::from_secs(3600)).unwrap(),
        task: "echo".into(),
        payload: json!({"tick": true}),
        max_attempts: 2,
        timeout_ms: 5000,
        paused: false,
    };
    assert!(q.schedule_add(&schedule).await.unwrap());
    let added = q.schedule("beat").await.unwrap().unwrap();
    let first = added.next_ms.unwrap();
    let now = client.redis_time_ms().await.unwrap();
    assert!(
        (now + 3_599_000..=now + 3_600_000).contains(&first),
        "{first} vs {now}"
    );
    assert_eq!(q.fire_due_schedules().await.unwrap(), 0, "not due yet");

    // Five ticks were missed (as if no worker ran for five hours).
    let missed = first - 5 * 3_600_000;
    let next_key = q.keys().schedule_next.clone();
    server.cmd(&format!("ZADD {next_key} {missed} beat"));
    // Three workers look at once: one tick fires, once.
    let workers: Vec<Client> =
        futures_util::future::join_all((0..3).map(|_| client_with(&server, Policy::default()))).await;
    let fired = futures_util::future::join_all(
        workers
            .iter()
            .map(|c| async move { c.queue("default").unwrap().fire_due_schedules().await.unwrap() }),
    )
    .await;
    assert_eq!(fired.iter().sum::<u64>(), 1, "{fired:?}");
    let id = format!("beat@{missed}");
    let job = q.status(&id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.task.as_str(), job.max_attempts),
        (JobState::Pending, "echo", 2)
    );
    assert_eq!(job.payload, json!({"tick": true}));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.submitted), (1, 1));
    let state = q.schedule("beat").await.unwrap().unwrap();
    assert_eq!(
        state.next_ms,
        Some(first),
        "on from the next tick after now, in phase"
    );
    assert_eq!(state.last_job.as_deref(), Some(id.as_str()));

    // Paused: no tick fires; resumed: from the next tick after now.
    assert!(q.schedule_set_paused("beat", true).await.unwrap());
    assert!(
        !q.schedule_set_paused("beat", true).await.unwrap(),
        "already paused"
    );
    assert_eq!(q.schedule("beat").await.unwrap().unwrap().next_ms, None);
    server.cmd(&format!("ZADD {next_key} {missed} beat"));
    assert_eq!(
        q.fire_due_schedules().await.unwrap(),
        0,
        "a paused schedule never fires"
    );
    assert!(q.schedule_set_paused("beat", false).await.unwrap());
    let resumed = q.schedule("beat").await.unwrap().unwrap().next_ms.unwrap();
    assert!(resumed > client.redis_time_ms().await.unwrap());
    assert_eq!(q.stats().await.unwrap().submitted, 1);
    assert!(q.schedule_remove("beat").await.unwrap());
    assert!(!q.schedule_remove("beat").await.unwrap());
    assert_eq!(q.fire_due_schedules().await.unwrap(), 0);
    assert!(q.schedules().await.unwrap().is_empty());

    // A cron schedule in a time zone.
    let cron = jobfleet_core::Schedule {
        name: "morning".into(),
        when: jobfleet_core::When::cron("0 8 * * *", Some("Europe/Paris")).unwrap(),
        ..schedule
    };
    q.schedule_add(&cron).await.unwrap();
    let next = q.schedule("morning").await.unwrap().unwrap().next_ms.unwrap();
    assert_eq!(next % 60_000, 0);
    assert_eq!(
        Some(next),
        cron.when
            .next_after(client.redis_time_ms().await.unwrap())
            .unwrap()
    );
}

#[tokio::test]
async fn concurrency_and_rate_limits_hold_across_workers() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.submit_batch(&(0..50).map(echo).collect::<Vec<_>>())
        .await
        .unwrap();
    for w in ["w1", "w2"] {
        q.heartbeat(w, true).await.unwrap();
    }
    q.set_limits(jobfleet_core::Limits {
        concurrency: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.concurrency_limit, stats.rate_limit), (Some(3), None));
    let first = q.claim("w1", 10).await.unwrap();
    assert_eq!(first.len(), 3, "capped at 3");
    assert!(
        q.claim("w2", 10).await.unwrap().is_empty(),
        "fleet-wide: w1 holds all 3"
    );
    q.ack("w1", &[(first[0].id.clone(), "null".into())])
        .await
        .unwrap();
    assert_eq!(q.claim("w2", 10).await.unwrap().len(), 1, "one slot came free");

    // A worker declared dead still counts until its jobs are handed back.
    assert_eq!(q.recover(Duration::ZERO).await.unwrap().requeued, 3);
    for w in ["w1", "w2"] {
        q.heartbeat(w, true).await.unwrap();
    }
    assert_eq!(q.claim("w2", 10).await.unwrap().len(), 3);

    // A rate of 2 per second with a burst of 4: four at once, then none.
    let held = q.stats().await.unwrap().active;
    q.set_limits(jobfleet_core::Limits {
        rate: Some(2.0),
        burst: Some(4.0),
        ..Default::default()
    })
    .await
    .unwrap();
    assert_eq!(q.claim("w1", 10).await.unwrap().len(), 4);
    assert!(q.claim("w1", 10).await.unwrap().len() <= 1, "the bucket is empty");
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.concurrency_limit, stats.rate_limit), (None, Some(2.0)));
    assert!(stats.active >= held + 4);

    q.set_limits(jobfleet_core::Limits::default()).await.unwrap();
    assert!(q.claim("w1", 100).await.unwrap().len() >= 30, "lifted");
    assert!(matches!(
        q.set_limits(jobfleet_core::Limits {
            concurrency: Some(0),
            ..Default::default()
        })
        .await,
        Err(Error::InvalidLimit(_))
    ));
}

#[tokio::test]
async fn a_unique_job_is_submitted_once_while_it_lives_and_a_debounced_one_takes_the_latest_payload() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.set_shards(3).await.unwrap();
    let unique = |n: i64| echo(n).unique_for(Duration::from_secs(600));
    let first = q.submit(unique(1)).await.unwrap();
    assert!(first.created);
    let again = q.submit(unique(1)).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.created),
        (first.id.as_str(), false),
        "pending: the same job"
    );
    let other = q.submit(unique(2)).await.unwrap();
    assert!(other.created, "another payload is another key");
    let keyed = |n: i64| echo(n).unique_key("report-42");
    let by_key = q.submit(keyed(7)).await.unwrap();
    assert_eq!(
        q.submit(keyed(8)).await.unwrap().id,
        by_key.id,
        "one job per given key, whatever the payload"
    );

    // Running: still the same job. Final: a new one.
    let shards = q.shards().await.unwrap();
    let mut claimed = Vec::new();
    for s in &shards {
        s.heartbeat("w", true).await.unwrap();
        claimed.extend(
            s.claim("w", 10)
                .await
                .unwrap()
                .into_iter()
                .map(|j| (s.clone(), j)),
        );
    }
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        q.submit(unique(1)).await.unwrap().id,
        first.id,
        "running: the same job"
    );
    for (s, job) in &claimed {
        s.ack("w", &[(job.id.clone(), "null".into())]).await.unwrap();
    }
    let after = q.submit(unique(1)).await.unwrap();
    assert!(after.created && after.id != first.id, "completed: a new job");
    assert_eq!(q.stats().await.unwrap().submitted, 4);

    // Debounce: one job, run a window after the last submit, with the latest payload.
    let debounced = |n: i64| echo(n).unique_key("reindex").debounce(Duration::from_secs(3600));
    let d1 = q.submit(debounced(1)).await.unwrap();
    let before = q.status(&d1.id).await.unwrap().unwrap().run_at_ms.unwrap();
    let d2 = q.submit(debounced(2)).await.unwrap();
    assert_eq!((d2.id.as_str(), d2.created), (d1.id.as_str(), false));
    let job = q.status(&d1.id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.payload.clone()),
        (JobState::Scheduled, json!({"n": 2}))
    );
    assert!(job.run_at_ms.unwrap() >= before, "the window restarted");
    assert_eq!(q.stats().await.unwrap().scheduled, 1);
    assert!(matches!(
        q.submit(echo(1).unique_key("")).await,
        Err(Error::InvalidUnique(_))
    ));
}

#[tokio::test]
async fn a_batch_runs_its_callback_once_when_its_last_job_is_final_with_the_counts() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.set_shards(2).await.unwrap();
    let callback = JobSpec::new("report", &json!({"to": "ops"}));
    let id = q.batch_open(Some(&callback)).await.unwrap();
    let jobs: Vec<String> = q
        .batch_add(
            &id,
            &[
                echo(1),
                echo(2),
                echo(3),
                echo(4).delay(Duration::from_secs(3600)),
            ],
        )
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(q.batch_seal(&id).await.unwrap(), 4);
    assert!(matches!(q.batch_seal(&id).await, Err(Error::InvalidBatch(_))));
    assert!(
        matches!(q.batch_add(&id, &[echo(5)]).await, Err(Error::Redis(_))),
        "sealed: no more jobs"
    );
    let status = q.batch_status(&id).await.unwrap().unwrap();
    assert_eq!((status.total, status.finished), (Some(4), false));

    // One completes, one dies, the delayed one is cancelled, one is left.
    let home = q.at_shard(jobfleet_core::shard_of(&id, 2));
    home.heartbeat("w", true).await.unwrap();
    let claimed = home.claim("w", 3).await.unwrap();
    assert_eq!(claimed.len(), 3, "every job of the batch is on its shard");
    home.ack("w", &[(claimed[0].id.clone(), "1".into())])
        .await
        .unwrap();
    home.fail("w", &claimed[1].id, "broken", FailKind::Permanent)
        .await
        .unwrap();
    assert_eq!(q.cancel(&jobs[3]).await.unwrap(), CancelOutcome::Cancelled);
    let status = q.batch_status(&id).await.unwrap().unwrap();
    assert_eq!(
        (status.completed, status.dead, status.cancelled, status.finished),
        (1, 1, 1, false)
    );
    assert!(status.callback_id.is_none());

    // The last one ends: the callback is submitted, once, with the counts.
    home.ack("w", &[(claimed[2].id.clone(), "3".into())])
        .await
        .unwrap();
    let status = q.batch_status(&id).await.unwrap().unwrap();
    assert!(status.finished);
    let cb_id = status.callback_id.clone().unwrap();
    assert_eq!(cb_id, format!("{id}:callback"));
    let cb = q.status(&cb_id).await.unwrap().unwrap();
    assert_eq!((cb.task.as_str(), cb.state), ("report", JobState::Pending));
    assert_eq!(
        cb.payload,
        json!({"batch": id, "total": 4, "completed": 2, "dead": 1, "cancelled": 1, "data": {"to": "ops"}})
    );
    // A late duplicate ack or a second seal changes nothing.
    assert_eq!(
        home.ack("w", &[(claimed[2].id.clone(), "3".into())])
            .await
            .unwrap(),
        [false]
    );
    assert_eq!(
        q.stats().await.unwrap().submitted,
        5,
        "four jobs and one callback"
    );

    // A batch whose jobs all ended before the seal finishes at the seal.
    let quick = q.batch_open(None).await.unwrap();
    let only = q.batch_add(&quick, &[echo(9)]).await.unwrap().remove(0).id;
    q.cancel(&only).await.unwrap();
    assert_eq!(q.batch_seal(&quick).await.unwrap(), 1);
    let status = q.batch_status(&quick).await.unwrap().unwrap();
    assert_eq!(
        (status.cancelled, status.finished, status.callback_id),
        (1, true, None)
    );
    assert!(q.batch_status("no-such-batch").await.unwrap().is_none());
}

#[tokio::test]
async fn a_batch_job_cancelled_while_running_counts_and_a_claim_naming_no_tasks_takes_parked_jobs() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let id = q
        .batch_open(Some(&JobSpec::new("report", &json!(null))))
        .await
        .unwrap();
    let job = q.batch_add(&id, &[echo(1)]).await.unwrap().remove(0).id;
    // A job whose id exists already does not join the batch.
    let outside = q.submit(echo(2).id("taken")).await.unwrap().id;
    assert!(!q.batch_add(&id, &[echo(3).id("taken")]).await.unwrap()[0].created);
    assert_eq!(
        q.batch_seal(&id).await.unwrap(),
        1,
        "only the job that joined counts"
    );
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim_for("w", 10, &tasks(&["echo"])).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(q.cancel(&job).await.unwrap(), CancelOutcome::Cancelling);
    assert_eq!(
        q.fail("w", &job, "stopped", FailKind::Cancelled).await.unwrap(),
        FailOutcome::Cancelled
    );
    let status = q.batch_status(&id).await.unwrap().unwrap();
    assert_eq!((status.cancelled, status.finished), (1, true), "{status:?}");
    assert!(status.callback_id.is_some());
    q.ack("w", &[(outside, "null".into())]).await.unwrap();

    // The callback (task `report`) is parked by a worker that runs only echo,
    // and taken by a claim that names no tasks.
    assert!(q.claim_for("w", 10, &tasks(&["echo"])).await.unwrap().is_empty());
    assert_eq!(q.stats().await.unwrap().parked.get("report"), Some(&1));
    let any = q.claim("w", 10).await.unwrap();
    assert_eq!(
        any.iter().map(|j| j.task.as_str()).collect::<Vec<_>>(),
        ["report"]
    );
}
