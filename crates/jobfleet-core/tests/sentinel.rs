//! The client on a Sentinel-managed primary: it finds the primary through
//! the sentinels, confirms writes on replicas when asked, and follows a
//! failover by itself (commands, subscriptions). One group (a primary, two
//! replicas, three sentinels) serves every test of this file, one test at a
//! time.

// The group's lock is held for a whole test on purpose: it serializes the
// tests (each on a runtime of its own), not tasks within one.
#![allow(clippy::await_holding_lock)]

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use jobfleet_core::{Client, ConnectOptions, Error, EventKind, JobSpec, JobState};
use jobfleet_testkit::SentinelGroup;
use serde_json::json;

fn group() -> MutexGuard<'static, SentinelGroup> {
    static GROUP: OnceLock<Mutex<SentinelGroup>> = OnceLock::new();
    let group = GROUP
        .get_or_init(|| Mutex::new(SentinelGroup::start(2, 3)))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    group.wait_healthy(Duration::from_secs(60));
    group
}

async fn connect(url: &str, prefix: &str, replicas: u32, replica_timeout: Duration) -> Client {
    let options = ConnectOptions {
        prefix: prefix.into(),
        replicas,
        replica_timeout,
        ..ConnectOptions::default()
    };
    Client::connect_with(url, options)
        .await
        .expect("connect through the sentinels")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sentinels_name_the_primary_and_stats_show_its_replicas() {
    let group = group();
    let client = connect(&group.url(), "names", 0, Duration::ZERO).await;
    let topology = client.topology().await.unwrap();
    assert_eq!(topology.mode, "sentinel");
    assert_eq!(topology.master_name.as_deref(), Some("jobfleet-test"));
    assert_eq!(topology.sentinels, 3);
    assert_eq!(topology.primary, format!("127.0.0.1:{}", group.primary_port()));
    assert_eq!(topology.replicas.len(), 2, "{topology:?}");
    assert!(
        topology.replicas.iter().all(|r| r.state == "online"),
        "{topology:?}"
    );

    let wrong = Client::connect(&group.url().replace("jobfleet-test", "no-such-master")).await;
    assert!(wrong.is_err(), "a master no sentinel knows must fail to connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_returns_only_once_the_replicas_asked_for_have_it() {
    let group = group();
    let durable = connect(&group.url(), "durable", 2, Duration::from_secs(2)).await;
    let q = durable.queue("q").unwrap();
    let ok = q.submit(JobSpec::new("echo", &json!({"n": 1}))).await.unwrap();
    assert!(ok.created);
    // Every replica has it at once: WAIT said so.
    for port in group.node_ports() {
        let key = format!("durable:{{q}}:job:{}", ok.id);
        let reply = jobfleet_testkit::send(port, &format!("EXISTS {key}"));
        assert!(reply.starts_with(":1"), "node {port} lacks the job: {reply}");
    }

    // More replicas than there are: written, but not confirmed, and said so.
    let greedy = connect(&group.url(), "durable", 3, Duration::from_millis(300)).await;
    let q = greedy.queue("q").unwrap();
    let spec = JobSpec::new("echo", &json!({"n": 2})).id("keyed-2");
    match q.submit(spec.clone()).await {
        Err(Error::NotReplicated {
            wanted: 3,
            reached: 2,
            ids,
            ..
        }) => assert_eq!(ids, ["keyed-2"]),
        other => panic!("expected NotReplicated, got {other:?}"),
    }
    // Submitting again with the same id is safe: the one job stays.
    let again = durable.queue("q").unwrap().submit(spec).await.unwrap();
    assert!(!again.created, "the retry found the job already there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_failover_is_followed_by_commands_and_subscriptions() {
    let group = group();
    let client = connect(&group.url(), "switch", 0, Duration::ZERO).await;
    let q = client.queue("q").unwrap();
    let mut events = client.events(&["q".to_string()]).await.unwrap();
    let old = group.primary_port();
    group.failover();
    let new = group.wait_new_primary(old, Duration::from_secs(30));
    assert_ne!(old, new);

    // The client moves by itself once it hears the sentinels' announcement
    // (within moments; the old primary is still writable for seconds, so
    // nothing else would make it move yet).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = client.topology().await.unwrap().primary;
        if seen == format!("127.0.0.1:{new}") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client stayed on {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Commands go to the new primary: the job is there.
    let job = q
        .submit(JobSpec::new("echo", &json!({})))
        .await
        .expect("a submit after the failover");
    let key = format!("switch:{{q}}:job:{}", job.id);
    assert!(jobfleet_testkit::send(new, &format!("EXISTS {key}")).starts_with(":1"));
    q.heartbeat("w1", true).await.unwrap();
    let claimed = q.claim("w1", 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    q.ack("w1", &[(job.id.clone(), "1".into())]).await.unwrap();
    assert_eq!(
        q.status(&job.id).await.unwrap().unwrap().state,
        JobState::Completed
    );

    // The subscription moved too: it says it resubscribed (what was
    // published meanwhile is lost, and a reader re-reads states), then
    // delivers events published on the new primary.
    let resubscribed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.next().await {
                Some(jobfleet_core::Feed::Subscribed) => return,
                Some(_) => continue,
                None => panic!("the subscription ended"),
            }
        }
    })
    .await;
    assert!(
        resubscribed.is_ok(),
        "the subscription never moved to the new primary"
    );
    let second = q.submit(JobSpec::new("echo", &json!({}))).await.unwrap();
    let claimed = q.claim("w1", 1).await.unwrap();
    assert_eq!(claimed[0].id, second.id);
    q.ack("w1", &[(second.id.clone(), "2".into())]).await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.next_event().await {
                Some(Some(e)) if e.id == second.id && e.state == EventKind::Completed => return,
                Some(_) => continue,
                None => panic!("the subscription ended"),
            }
        }
    })
    .await;
    assert!(seen.is_ok(), "no completion event from the new primary");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resubmit_of_a_job_the_replica_lacks_is_not_confirmed() {
    // A primary and one replica, no sentinels: durable writes need only WAIT.
    let primary = jobfleet_testkit::RedisServer::start();
    let replica = jobfleet_testkit::RedisServer::start_with(jobfleet_testkit::RedisOptions {
        replica_of: Some(primary.port()),
        ..Default::default()
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !primary.cmd("INFO replication").contains("state=online") {
        assert!(std::time::Instant::now() < deadline, "the replica did not sync");
        std::thread::sleep(Duration::from_millis(20));
    }
    let plain = connect(&primary.url(), "lag", 0, Duration::ZERO).await;
    // Long enough for a loaded machine's replica in the warm-up, well
    // short of the 3 s the replica is held for below.
    let durable = connect(&primary.url(), "lag", 1, Duration::from_secs(1)).await;
    let q = durable.queue("q").unwrap();
    // Use every durable connection once while the replica keeps up: each
    // has written, and the replica has all of it.
    for _ in 0..8 {
        q.submit(JobSpec::new("echo", &json!({}))).await.unwrap();
    }

    // Hold the replica's main thread in a read-only script for 3 s: it
    // applies nothing meanwhile.
    let port = replica.port();
    let busy = std::thread::spawn(move || {
        jobfleet_testkit::send(
            port,
            "EVAL \"local s = redis.call('TIME')[1] while tonumber(redis.call('TIME')[1]) - s < 3 do end return 1\" 0",
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    // Written unconfirmed (the replica lacks it), then submitted again on
    // the durable connection: the job exists, so nothing new is created,
    // but the replica still lacks it and the resubmit must say so. (The
    // submit script always writes, so its WAIT covers the job it found;
    // Redis 7.0 also advances a connection's offset on a script call that
    // wrote nothing, but that is not a promise of the protocol.)
    let spec = JobSpec::new("echo", &json!({"n": 3})).id("lagging-3");
    plain.queue("q").unwrap().submit(spec.clone()).await.unwrap();
    match q.submit(spec).await {
        Err(Error::NotReplicated { reached: 0, ids, .. }) => assert_eq!(ids, ["lagging-3"]),
        other => panic!("a resubmit the replica lacks was confirmed: {other:?}"),
    }
    busy.join().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_refused_with_readonly_is_sent_again_to_the_primary() {
    // A group of its own: the test turns its primary into a replica behind
    // the sentinels' back, as a demotion the client hears of only through
    // READONLY replies.
    let group = SentinelGroup::start(1, 1);
    let primary = group.primary_port();
    let client = connect(&group.url(), "ro", 0, Duration::ZERO).await;
    let q = client.queue("q").unwrap();
    q.submit(JobSpec::new("echo", &json!({}))).await.unwrap();
    let elsewhere = jobfleet_testkit::RedisServer::start();
    let reply = jobfleet_testkit::send(primary, &format!("REPLICAOF 127.0.0.1 {}", elsewhere.port()));
    assert!(reply.starts_with("+OK"), "{reply}");
    assert_eq!(jobfleet_testkit::role(primary), "slave");
    // Primary again a moment later.
    let heal = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        jobfleet_testkit::send(primary, "REPLICAOF NO ONE")
    });
    let job = q
        .submit(JobSpec::new("echo", &json!({"n": 1})))
        .await
        .expect("the refused write was sent again once the node was primary");
    assert!(heal.join().unwrap().starts_with("+OK"));
    let key = format!("ro:{{q}}:job:{}", job.id);
    assert!(jobfleet_testkit::send(primary, &format!("EXISTS {key}")).starts_with(":1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinels_that_require_a_password_are_asked_with_sentinel_password() {
    let group = SentinelGroup::start_with(1, 1, Some("s3cret"));
    let url = format!("{}?sentinel_password=s3cret", group.url());
    let client = connect(&url, "auth", 0, Duration::ZERO).await;
    assert_eq!(
        client.topology().await.unwrap().primary,
        format!("127.0.0.1:{}", group.primary_port())
    );
    // Without it, or with a wrong one, connecting fails at once, saying why.
    for url in [group.url(), format!("{}?sentinel_password=wrong", group.url())] {
        let started = std::time::Instant::now();
        let e = Client::connect(&url).await.expect_err("refused");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{url}: took {:?}",
            started.elapsed()
        );
        let text = e.to_string();
        assert!(
            text.contains("NOAUTH") || text.contains("WRONGPASS") || text.contains("uthentication"),
            "{url}: {text}"
        );
    }
}
