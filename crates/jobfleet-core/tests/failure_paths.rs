//! The failure paths of the scripts: stale entries, rolled-back or lost
//! writes, hand-written records, clocks that step back, oversized input.
//! Each test sets up, against a real redis-server, a state that a crash, a
//! failover, an expired record or a careless producer leaves behind, and
//! checks that no job is lost, run twice, or left hanging.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::time::Duration;

use jobfleet_core::{
    CancelOutcome, Client, ConnectOptions, Error, FailKind, FailOutcome, JobSpec, JobState, Policy,
};
use jobfleet_testkit::TestRedis;
use serde_json::json;

async fn setup_with(policy: Policy) -> (TestRedis, Client) {
    let server = TestRedis::start();
    let options = ConnectOptions {
        policy,
        prefix: server.prefix(),
        ..ConnectOptions::default()
    };
    let client = Client::connect_with(&server.url(), options).await.unwrap();
    (server, client)
}

async fn setup() -> (TestRedis, Client) {
    setup_with(Policy {
        backoff_base: Duration::ZERO,
        backoff_jitter: 0.0,
        ..Policy::default()
    })
    .await
}

fn echo(n: i64) -> JobSpec {
    JobSpec::new("echo", &json!({ "n": n }))
}

/// Runs one raw command (test set-up that no client API would do).
async fn raw<T: redis::FromRedisValue>(client: &Client, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(&mut client.conn()).await.unwrap()
}

/// Writes a pending echo job by hand, as a producer skipping every check
/// would: its record, then its id on pending.
async fn write_pending(client: &Client, q: &jobfleet_core::Queue, id: &[u8], payload: &str) {
    let mut key = q.keys().job_prefix.clone().into_bytes();
    key.extend_from_slice(id);
    let _: () = raw(
        client,
        redis::cmd("HSET")
            .arg(&key)
            .arg("task")
            .arg("echo")
            .arg("payload")
            .arg(payload)
            .arg("state")
            .arg("pending"),
    )
    .await;
    let _: () = raw(client, redis::cmd("LPUSH").arg(&q.keys().pending).arg(id)).await;
}

/// Runs the shipped submit script for one echo job the way a producer in
/// another language would, bypassing the Rust client's checks.
async fn eval_submit(
    client: &Client,
    q: &jobfleet_core::Queue,
    job_key: &[u8],
    id: &[u8],
    delay_ms: &str,
) -> redis::RedisResult<Vec<i64>> {
    let submit = jobfleet_core::scripts::SOURCES
        .iter()
        .find(|(name, _)| *name == "submit.lua")
        .unwrap()
        .1;
    let k = q.keys();
    redis::cmd("EVAL")
        .arg(submit)
        .arg(5)
        .arg(&k.pending)
        .arg(&k.scheduled)
        .arg(&k.stats)
        .arg(&k.dead)
        .arg(job_key)
        .arg(&k.notify)
        .arg(id)
        .arg("echo")
        .arg("{}")
        .arg(3)
        .arg(1000)
        .arg(delay_ms)
        .query_async(&mut client.conn())
        .await
}

#[tokio::test]
async fn a_new_job_leaves_the_dead_set_and_an_old_entry_never_deletes_it() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    q.submit(echo(1).id("k")).await.unwrap();
    q.claim("w", 1).await.unwrap();
    assert_eq!(
        q.fail("w", "k", "bad", FailKind::Permanent).await.unwrap(),
        FailOutcome::Dead
    );
    // The dead record expires (retention) while its id stays in the dead set.
    let _: () = raw(&client, redis::cmd("DEL").arg(q.keys().job("k"))).await;
    assert!(q.submit(echo(2).id("k")).await.unwrap().created);
    let score: Option<f64> = raw(&client, redis::cmd("ZSCORE").arg(&q.keys().dead).arg("k")).await;
    assert_eq!(score, None, "a new job's id leaves the dead set");

    // An entry left by an older producer, aged past every cap: the next
    // burial trims it, and must not delete the live job it now names.
    let _: () = raw(&client, redis::cmd("ZADD").arg(&q.keys().dead).arg(1).arg("k")).await;
    let other = q.submit(echo(3)).await.unwrap().id;
    let claimed = q.claim("w", 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    q.fail("w", &other, "bad", FailKind::Permanent).await.unwrap();
    let live = q
        .status("k")
        .await
        .unwrap()
        .expect("the live job keeps its record");
    assert_eq!(live.state, JobState::Active);
    let score: Option<f64> = raw(&client, redis::cmd("ZSCORE").arg(&q.keys().dead).arg("k")).await;
    assert_eq!(score, None, "the stale entry is dropped");
    assert_eq!(q.ack("w", &[("k".into(), "2".into())]).await.unwrap(), vec![true]);
}

#[tokio::test]
async fn dead_retry_and_purge_leave_a_job_that_is_not_dead_alone() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w1", true).await.unwrap();
    q.submit(echo(1).id("k")).await.unwrap();
    assert_eq!(q.claim("w1", 1).await.unwrap().len(), 1);
    let _: () = raw(&client, redis::cmd("ZADD").arg(&q.keys().dead).arg(1).arg("k")).await;

    assert_eq!(
        q.dead_retry(&[]).await.unwrap(),
        0,
        "an active job is not retried"
    );
    let pending: u64 = raw(&client, redis::cmd("LLEN").arg(&q.keys().pending)).await;
    assert_eq!(pending, 0, "so no second worker can claim it");
    let _: () = raw(&client, redis::cmd("ZADD").arg(&q.keys().dead).arg(1).arg("k")).await;
    assert_eq!(q.dead_purge(&["k".to_string()]).await.unwrap(), 0);
    assert_eq!(q.stats().await.unwrap().dead, 0, "the stale entries are gone");
    assert_eq!(q.status("k").await.unwrap().unwrap().state, JobState::Active);
    assert_eq!(
        q.ack("w1", &[("k".into(), "1".into())]).await.unwrap(),
        vec![true]
    );
}

#[tokio::test]
async fn claim_and_promote_skip_entries_whose_job_has_moved_on() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w1", true).await.unwrap();
    q.heartbeat("w2", true).await.unwrap();
    q.submit(echo(1).id("k")).await.unwrap();
    assert_eq!(q.claim("w1", 1).await.unwrap().len(), 1);
    // A duplicate entry for the running job, in pending and in scheduled.
    let _: () = raw(&client, redis::cmd("LPUSH").arg(&q.keys().pending).arg("k")).await;
    let _: () = raw(
        &client,
        redis::cmd("ZADD").arg(&q.keys().scheduled).arg(1).arg("k"),
    )
    .await;
    assert_eq!(q.promote_due(10).await.unwrap(), 0);
    assert!(q.claim("w2", 10).await.unwrap().is_empty(), "w2 never holds k");
    let held: u64 = raw(&client, redis::cmd("LLEN").arg(q.keys().processing("w2"))).await;
    assert_eq!(held, 0);
    let job = q.status("k").await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempts, job.worker.as_deref()),
        (JobState::Active, 1, Some("w1"))
    );
}

#[tokio::test]
async fn a_stop_meant_for_another_job_is_a_retry_not_a_cancel() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.claim("w", 1).await.unwrap();
    let outcome = q
        .fail("w", &id, "cancelled while running", FailKind::Cancelled)
        .await
        .unwrap();
    assert!(matches!(outcome, FailOutcome::Scheduled { .. }), "{outcome:?}");
    assert_eq!(q.status(&id).await.unwrap().unwrap().state, JobState::Scheduled);
}

#[tokio::test]
async fn a_cancel_requested_while_running_survives_a_hand_back() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let drained = q.submit(echo(1)).await.unwrap().id;
    let reconciled = q.submit(echo(2)).await.unwrap().id;
    let kept = q.submit(echo(3)).await.unwrap().id;
    assert_eq!(q.claim("w", 3).await.unwrap().len(), 3);
    for id in [&drained, &reconciled] {
        assert_eq!(q.cancel(id).await.unwrap(), CancelOutcome::Cancelling);
    }
    assert_eq!(
        q.cancel_requested(&[drained.clone(), kept.clone()])
            .await
            .unwrap(),
        vec![true, false]
    );

    // A reconcile that finds a cancelled job it does not hold ends it.
    q.reconcile("w", &[drained.clone(), kept.clone()]).await.unwrap();
    assert_eq!(
        q.status(&reconciled).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    // So does a graceful hand-back; the uncancelled job goes back to pending.
    assert_eq!(q.requeue("w", true).await.unwrap(), 2);
    assert_eq!(
        q.status(&drained).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(q.status(&kept).await.unwrap().unwrap().state, JobState::Pending);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.cancelled), (1, 2));
}

#[tokio::test]
async fn an_ack_after_redis_clock_stepped_back_still_releases_its_waiter() {
    // Retention 0: the record is gone at the ack, so whether the waiter reads
    // the job before or after it, only the event can tell it completed.
    let (_server, client) = setup_with(Policy {
        completed_retention: Duration::ZERO,
        ..Policy::default()
    })
    .await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.claim("w", 1).await.unwrap();
    // The claim was stamped by a clock an hour ahead of the one acking.
    let future = client.redis_time_ms().await.unwrap() + 3_600_000;
    let _: () = raw(
        &client,
        redis::cmd("HSET")
            .arg(q.keys().job(&id))
            .arg("started_ms")
            .arg(future),
    )
    .await;

    let mut events = client.events(&["default".into()]).await.unwrap();
    let mut waiter_events = client.events(&["default".into()]).await.unwrap();
    let waiter = {
        let (client, id) = (client.clone(), id.clone());
        tokio::spawn(async move {
            client
                .wait_with(
                    &mut waiter_events,
                    &[("default".into(), id)],
                    Some(Duration::from_secs(5)),
                    |_| {},
                )
                .await
        })
    };
    q.ack("w", &[(id.clone(), "1".into())]).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next_event())
        .await
        .expect("the completed event could not be read")
        .unwrap()
        .unwrap();
    assert_eq!(event.duration_ms, Some(0), "a negative duration is clamped");
    let report = waiter.await.unwrap().unwrap();
    assert!(
        report.unfinished.is_empty() && report.missing.is_empty(),
        "{report:?}"
    );
    assert_eq!(report.finished[0].state, JobState::Completed);
}

#[tokio::test]
async fn an_id_that_is_not_utf8_is_buried_by_claim_not_looped() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let bad: &[u8] = b"job-\xff\xfe";
    let mut key = q.keys().job_prefix.clone().into_bytes();
    key.extend_from_slice(bad);
    write_pending(&client, &q, bad, "{}").await;
    let good = q.submit(echo(1)).await.unwrap().id;

    let claimed = q.claim("w", 10).await.unwrap();
    assert_eq!(claimed.iter().map(|j| &j.id).collect::<Vec<_>>(), vec![&good]);
    let state: Option<String> = raw(&client, redis::cmd("HGET").arg(&key).arg("state")).await;
    assert_eq!(state.as_deref(), Some("dead"));
    let error: String = raw(&client, redis::cmd("HGET").arg(&key).arg("error")).await;
    assert!(error.starts_with("job id is not valid UTF-8"), "{error}");
    assert_eq!(q.stats().await.unwrap().dead, 1);
    assert_eq!(
        q.dead_retry(&[]).await.unwrap(),
        0,
        "it stays dead: no client could ack it"
    );

    // The submit script refuses such an id from any producer.
    let err = eval_submit(&client, &q, &key, bad, "0")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("jobfleet: invalid job #1: the id must be"), "{err}");
}

#[tokio::test]
async fn a_delay_too_large_to_represent_is_refused_not_run_at_once() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let huge = echo(1).delay(Duration::from_secs(u64::MAX / 4));
    let err = q.submit(huge).await.unwrap_err();
    assert!(
        matches!(err, Error::DurationTooLong { what: "delay", .. }),
        "{err}"
    );
    assert_eq!(q.stats().await.unwrap().submitted, 0);

    // A producer that skips the client's check meets the script's.
    let k = q.keys();
    let reply = eval_submit(&client, &q, k.job("x").as_bytes(), b"x", "99999999999999999999").await;
    let err = reply.unwrap_err().to_string();
    assert!(err.contains("delay_ms must be a decimal integer"), "{err}");
    let pending: u64 = raw(&client, redis::cmd("LLEN").arg(&k.pending)).await;
    assert_eq!(pending, 0);
    assert!(q.status("x").await.unwrap().is_none());
}

#[tokio::test]
async fn cancelling_a_pending_job_does_not_walk_the_backlog() {
    let (_server, client) = setup_with(Policy {
        completed_retention: Duration::ZERO,
        ..Policy::default()
    })
    .await;
    let q = client.queue("default").unwrap();
    let ids: Vec<String> = q
        .submit_batch(&(0..5).map(echo).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(q.cancel(&ids[0]).await.unwrap(), CancelOutcome::Cancelled);
    let len: u64 = raw(&client, redis::cmd("LLEN").arg(&q.keys().pending)).await;
    assert_eq!(len, 5, "no LREM: the entry stays until a claim skips it");
    assert_eq!(
        q.stats().await.unwrap().pending,
        4,
        "but it is not counted as pending"
    );
    // Until then the record stays (even with retention 0), so the id cannot
    // name a new job while the stale entry waits.
    assert!(!q.submit(echo(9).id(ids[0].clone())).await.unwrap().created);

    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|j| j.id.clone()).collect::<Vec<_>>(),
        ids[1..].to_vec()
    );
    assert!(
        q.status(&ids[0]).await.unwrap().is_none(),
        "retention applies once skipped"
    );
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.pending, stats.cancelled), (0, 1));
}

#[tokio::test]
async fn cancelled_entries_do_not_starve_a_claim() {
    let (_server, client) = setup().await;
    let q = client.queue("default").unwrap();
    let cancelled: Vec<String> = q
        .submit_batch(&(0..300).map(echo).collect::<Vec<_>>())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    for id in &cancelled {
        q.cancel(id).await.unwrap();
    }
    let live = q.submit(echo(1)).await.unwrap().id;
    let len: u64 = raw(&client, redis::cmd("LLEN").arg(&q.keys().pending)).await;
    assert_eq!(len, 301, "the cancelled entries wait in pending");
    q.heartbeat("w", true).await.unwrap();
    let claimed = q.claim("w", 1).await.unwrap();
    assert_eq!(claimed.len(), 1, "the claim pops past the cancelled entries");
    assert_eq!(claimed[0].id, live);
}

#[tokio::test]
async fn dead_retry_and_purge_of_every_job_work_in_chunks() {
    let (server, client) = setup().await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let n = 2_500;
    q.submit_batch(&(0..n).map(echo).collect::<Vec<_>>())
        .await
        .unwrap();
    let claimed = q.claim("w", n as usize).await.unwrap();
    for job in &claimed {
        q.fail("w", &job.id, "bad", FailKind::Permanent).await.unwrap();
    }
    assert_eq!(q.stats().await.unwrap().dead, n as u64);
    server.cmd_at(&q.keys().dead, "CONFIG RESETSTAT");
    assert_eq!(q.dead_retry(&[]).await.unwrap(), n as u64);
    let info = server.cmd_at(&q.keys().dead, "INFO commandstats");
    let calls: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        calls >= 3,
        "{n} dead jobs were retried in {calls} script calls, not in chunks"
    );
    assert_eq!(q.stats().await.unwrap().pending, n as u64);

    let claimed = q.claim("w", n as usize).await.unwrap();
    for job in &claimed {
        q.fail("w", &job.id, "bad", FailKind::Permanent).await.unwrap();
    }
    assert_eq!(q.dead_purge(&[]).await.unwrap(), n as u64);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.pending), (0, 0));
    assert_eq!(
        server.count_keys(),
        3,
        "only stats, workers and the queue list remain"
    );
}

#[tokio::test]
async fn the_dead_set_ages_without_new_burials() {
    let (_server, client) = setup_with(Policy {
        dead_retention: Duration::from_secs(3600),
        ..Policy::default()
    })
    .await;
    let q = client.queue("default").unwrap();
    q.heartbeat("w", true).await.unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    q.claim("w", 1).await.unwrap();
    q.fail("w", &id, "bad", FailKind::Permanent).await.unwrap();
    // Buried long ago (older than the retention): the queue stopped failing.
    let _: () = raw(&client, redis::cmd("ZADD").arg(&q.keys().dead).arg(1).arg(&id)).await;
    q.recover(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        q.stats().await.unwrap().dead,
        0,
        "the recover pass ages the dead set"
    );
    assert!(q.status(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_queue_is_forgotten_only_when_empty_and_unserved() {
    let (_server, client) = setup().await;
    let q = client.queue("old").unwrap();
    let id = q.submit(echo(1)).await.unwrap().id;
    let busy = client
        .forget_queue("old", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&busy, Error::QueueBusy { what, .. } if what.contains("pending")),
        "{busy}"
    );
    q.heartbeat("w", true).await.unwrap();
    q.claim("w", 1).await.unwrap();
    let busy = client
        .forget_queue("old", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&busy, Error::QueueBusy { what, .. } if what.contains("processing")),
        "{busy}"
    );
    q.ack("w", &[(id, "1".into())]).await.unwrap();
    let busy = client
        .forget_queue("old", Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(
        matches!(&busy, Error::QueueBusy { what, .. } if what.contains("live worker")),
        "{busy}"
    );

    client.forget_queue("old", Duration::ZERO).await.unwrap();
    assert!(client.queue_names().await.unwrap().is_empty());
    let stats_left: bool = raw(&client, redis::cmd("EXISTS").arg(&q.keys().stats)).await;
    assert!(!stats_left);
}

#[tokio::test]
async fn a_payload_over_the_limit_is_buried_at_claim_whoever_wrote_it() {
    let (_server, client) = setup_with(Policy {
        max_payload_bytes: 1000,
        ..Policy::default()
    })
    .await;
    let q = client.queue("default").unwrap();
    write_pending(&client, &q, b"big", &format!("\"{}\"", "x".repeat(5000))).await;
    q.heartbeat("w", true).await.unwrap();
    assert!(q.claim("w", 1).await.unwrap().is_empty());
    let job = q.status("big").await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Dead);
    assert_eq!(
        job.error.as_deref(),
        Some("payload is 5002 bytes, over the 1000 byte limit")
    );
}
