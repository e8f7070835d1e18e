//! The client on a real Redis Cluster (three primaries, a replica each,
//! started once for this file): cluster mode found from one node's URL or
//! from seeds, a queue sharded over every primary, sharded pub/sub, and a
//! slot of a live queue migrated while jobs run. Each test has a key prefix
//! of its own; the tests that move slots or kill nodes take the cluster for
//! themselves.

// The cluster's lock is held for a whole test on purpose: it serializes the
// tests (each on a runtime of its own), not tasks within one.
#![allow(clippy::await_holding_lock)]

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use jobfleet_core::{
    CancelOutcome, Client, ConnectOptions, Feed, JobSpec, JobState, Policy, Queue, QueueKeys,
};
use jobfleet_testkit::RedisCluster;
use serde_json::json;

async fn connect(url: &str, prefix: &str) -> Client {
    let options = ConnectOptions {
        prefix: prefix.into(),
        policy: Policy {
            backoff_base: Duration::ZERO,
            backoff_jitter: 0.0,
            ..Policy::default()
        },
        ..ConnectOptions::default()
    };
    Client::connect_with(url, options)
        .await
        .expect("connect to the cluster")
}

/// The primaries that hold the keys of `queue`'s shards.
fn primaries_of(cluster: &RedisCluster, prefix: &str, queue: &str, shards: u32) -> HashSet<u16> {
    (0..shards)
        .map(|i| cluster.slot_owner(cluster.keyslot(&QueueKeys::shard(prefix, queue, i).pending)))
        .collect()
}

/// Submits `specs`; their ids, in order.
async fn submit_ids(q: &Queue, specs: &[JobSpec]) -> Vec<String> {
    q.submit_batch(specs)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect()
}

/// Claims and acks everything `q`'s shards hold, as one worker; returns
/// the ids it ran, by shard.
async fn drain(q: &Queue, worker: &str) -> HashMap<u32, Vec<String>> {
    let mut ran: HashMap<u32, Vec<String>> = HashMap::new();
    for shard in q.shards().await.unwrap() {
        shard.heartbeat(worker, true).await.unwrap();
        loop {
            let jobs = shard.claim(worker, 100).await.unwrap();
            if jobs.is_empty() {
                break;
            }
            let results: Vec<(String, String)> =
                jobs.iter().map(|j| (j.id.clone(), "{}".to_string())).collect();
            assert!(jobs.iter().all(|j| j.shard == shard.shard()));
            let applied = shard.ack(worker, &results).await.unwrap();
            assert!(applied.iter().all(|a| *a), "every ack applies");
            ran.entry(shard.shard())
                .or_default()
                .extend(jobs.into_iter().map(|j| j.id));
        }
    }
    ran
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_mode_is_found_from_any_node_and_from_seeds() {
    let cluster = RedisCluster::shared();
    for url in [cluster.url(), cluster.seeds_url()] {
        let client = connect(&url, "found").await;
        let topology = client.topology().await.unwrap();
        assert_eq!(topology.mode, "cluster", "{url}");
        let primaries: Vec<_> = topology.nodes.iter().filter(|n| n.role == "primary").collect();
        assert_eq!(primaries.len(), 3, "{topology:?}");
        assert_eq!(primaries.iter().map(|n| n.slots).sum::<u32>(), 16384);
        assert_eq!(
            topology.nodes.iter().filter(|n| n.replica_of.is_some()).count(),
            3
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_shard_queue_spreads_over_every_primary_and_runs_every_job_once() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.seeds_url(), "spread").await;
    let q = client.queue("images").unwrap();
    assert_eq!(q.shard_count().await.unwrap(), 1);
    assert_eq!(q.set_shards(6).await.unwrap(), 1);
    assert_eq!(q.shard_count().await.unwrap(), 6);
    assert_eq!(
        primaries_of(&cluster, "spread", "images", 6),
        cluster.primaries().into_iter().collect(),
        "the six shards' slots cover every primary"
    );

    let mut events = client.events(&["images".to_string()]).await.unwrap();
    let specs: Vec<JobSpec> = (0..600)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })))
        .collect();
    let submitted = q.submit_batch(&specs).await.unwrap();
    let ids: HashSet<String> = submitted.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids.len(), 600);

    let by_shard = q.stats_by_shard().await.unwrap();
    assert_eq!(by_shard.len(), 6);
    for s in &by_shard {
        assert_eq!(
            s.pending, 100,
            "round robin gives each shard a sixth: {by_shard:?}"
        );
    }
    for primary in cluster.primaries() {
        assert!(
            cluster.dbsize(primary) > 0,
            "primary {primary} holds some of the queue"
        );
    }

    let ran = drain(&q, "w1").await;
    assert_eq!(ran.len(), 6, "every shard ran jobs");
    let all: Vec<&String> = ran.values().flatten().collect();
    assert_eq!(all.len(), 600, "each job ran once");
    assert_eq!(all.into_iter().cloned().collect::<HashSet<_>>(), ids);

    // Every completion was published on its shard's channel, and reached us.
    let mut completed = HashSet::new();
    while completed.len() < 600 {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Feed::Message { payload, .. })) => {
                let event: jobfleet_core::Event = serde_json::from_str(&payload).unwrap();
                assert_eq!(event.queue, "images");
                if event.state == jobfleet_core::EventKind::Completed {
                    completed.insert(event.id);
                }
            }
            Ok(Some(_)) => {}
            other => panic!("events stopped after {} completions: {other:?}", completed.len()),
        }
    }
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.completed, stats.pending, stats.shards), (600, 0, 6));

    // The whole-queue reads span the shards.
    let report = client
        .wait(
            &submitted
                .iter()
                .map(|s| ("images".to_string(), s.id.clone()))
                .collect::<Vec<_>>(),
            Some(Duration::from_secs(10)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(report.finished.len(), 600);
    let some = &submitted[17].id;
    assert_eq!(q.status(some).await.unwrap().unwrap().state, JobState::Completed);
    assert_eq!(client.find_job(some, None).await.unwrap().queue, "images");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_lands_on_one_shard_and_stays_unique() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.url(), "keys").await;
    let q = client.queue("mail").unwrap();
    q.set_shards(4).await.unwrap();
    let spec = || JobSpec::new("send", &json!({"to": "a@example.com"})).id("welcome-42");
    assert!(q.submit(spec()).await.unwrap().created);
    assert!(
        !q.submit(spec()).await.unwrap().created,
        "the same key from another producer"
    );
    let other = connect(&cluster.seeds_url(), "keys").await;
    assert!(!other.queue("mail").unwrap().submit(spec()).await.unwrap().created);
    let shard = jobfleet_core::shard_of("welcome-42", 4);
    let stats = q.stats_by_shard().await.unwrap();
    assert_eq!(stats[shard as usize].pending, 1, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.pending).sum::<u64>(), 1);

    // Cancel, status and the dead set find it wherever it is.
    assert_eq!(q.cancel("welcome-42").await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(
        q.status("welcome-42").await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    assert_eq!(q.cancel("no-such-job").await.unwrap(), CancelOutcome::NotFound);

    let failing: Vec<JobSpec> = (0..8)
        .map(|n| JobSpec::new("boom", &json!({ "n": n })).max_attempts(1))
        .collect();
    q.submit_batch(&failing).await.unwrap();
    for shard in q.shards().await.unwrap() {
        shard.heartbeat("w", true).await.unwrap();
        for job in shard.claim("w", 10).await.unwrap() {
            shard
                .fail("w", &job.id, "boom", jobfleet_core::FailKind::Retry)
                .await
                .unwrap();
        }
    }
    assert_eq!(q.dead_list(100).await.unwrap().len(), 8);
    assert_eq!(q.stats().await.unwrap().dead, 8);
    assert_eq!(q.dead_retry(&[]).await.unwrap(), 8);
    assert_eq!(q.stats().await.unwrap().pending, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_shard_count_loses_nothing() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.url(), "raise").await;
    let q = client.queue("grow").unwrap();
    let first: Vec<JobSpec> = (0..50)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })))
        .collect();
    let mut ids: HashSet<String> = submit_ids(&q, &first).await.into_iter().collect();
    // Keys used before the raise; after it, most hash to another shard.
    let keyed: Vec<JobSpec> = (0..12)
        .map(|n| JobSpec::new("echo", &json!({ "key": n })).id(format!("order-{n}")))
        .collect();
    ids.extend(q.submit_batch(&keyed).await.unwrap().into_iter().map(|s| s.id));
    assert_eq!(q.set_shards(3).await.unwrap(), 1);
    assert!(
        (0..12).any(|n| jobfleet_core::shard_of(&format!("order-{n}"), 3) != 0),
        "some keys hash away from shard 0 now"
    );
    let again = q.submit_batch(&keyed).await.unwrap();
    assert!(
        again.iter().all(|s| !s.created),
        "a key used before the raise still finds its job"
    );
    assert_eq!(
        q.stats().await.unwrap().pending,
        62,
        "no second copy of any keyed job"
    );
    let err = q.set_shards(2).await.expect_err("a shard count never shrinks");
    assert!(err.to_string().contains("can only grow"), "{err}");
    let second: Vec<JobSpec> = (0..60)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })))
        .collect();
    ids.extend(q.submit_batch(&second).await.unwrap().into_iter().map(|s| s.id));
    let ran = drain(&q, "w").await;
    assert_eq!(
        ran[&0].len(),
        50 + 12 + 20,
        "shard 0 kept its jobs and took its turn"
    );
    let all: HashSet<String> = ran.into_values().flatten().collect();
    assert_eq!(all, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_migrated_under_load_loses_nothing_and_events_follow_it() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.seeds_url(), "move").await;
    let q = client.queue("busy").unwrap();
    q.set_shards(3).await.unwrap();
    let mut events = client.events(&["busy".to_string()]).await.unwrap();
    let specs: Vec<JobSpec> = (0..3000)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })))
        .collect();
    let ids: HashSet<String> = submit_ids(&q, &specs).await.into_iter().collect();

    // Shard 0's slot moves to another primary while a worker claims and
    // acks and a producer submits.
    let keys = QueueKeys::shard("move", "busy", 0);
    let slot = cluster.keyslot(&keys.pending);
    let from = cluster.slot_owner(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    let worker = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut ran = Vec::new();
            let mut idle = 0;
            while idle < 20 {
                let mut any = false;
                for shard in q.shards().await.unwrap() {
                    shard.heartbeat("mover", true).await.unwrap();
                    let jobs = shard.claim("mover", 50).await.unwrap();
                    if jobs.is_empty() {
                        continue;
                    }
                    any = true;
                    let results: Vec<(String, String)> =
                        jobs.iter().map(|j| (j.id.clone(), "{}".to_string())).collect();
                    let applied = shard.ack("mover", &results).await.unwrap();
                    assert!(applied.iter().all(|a| *a));
                    ran.extend(jobs.into_iter().map(|j| j.id));
                }
                if any {
                    idle = 0;
                } else {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            ran
        })
    };
    let producer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for round in 0..20 {
                let specs: Vec<JobSpec> = (0..50)
                    .map(|n| JobSpec::new("echo", &json!({ "round": round, "n": n })))
                    .collect();
                ids.extend(q.submit_batch(&specs).await.unwrap().into_iter().map(|s| s.id));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            ids
        })
    };
    let moved = tokio::task::block_in_place(|| cluster.migrate_slot(slot, to, 20, Duration::from_millis(5)));
    assert!(moved > 10, "the slot held the shard's keys: {moved}");
    assert_eq!(cluster.slot_owner(slot), to);

    let mut all = ids;
    all.extend(producer.await.unwrap());
    let ran = worker.await.unwrap();
    let ran_set: HashSet<String> = ran.iter().cloned().collect();
    assert_eq!(ran.len(), ran_set.len(), "no job ran twice");
    let missing: Vec<&String> = all.difference(&ran_set).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} jobs never ran, e.g. {missing:?}",
        all.len() - ran_set.len()
    );
    let stats = q.stats().await.unwrap();
    assert_eq!(
        (stats.completed, stats.pending, stats.active),
        (all.len() as u64, 0, 0),
        "{stats:?}"
    );

    // The events subscription followed the slot to its new owner: a job
    // submitted now and completed on shard 0 is heard.
    let late = q.at_shard(0);
    let key = (0..)
        .map(|n| format!("after-the-move-{n}"))
        .find(|k| jobfleet_core::shard_of(k, 3) == 0)
        .unwrap();
    q.submit(JobSpec::new("echo", &json!({})).id(&key)).await.unwrap();
    late.heartbeat("late", true).await.unwrap();
    let job = late
        .claim("late", 1)
        .await
        .unwrap()
        .pop()
        .expect("the job is on shard 0");
    late.ack("late", &[(job.id.clone(), "{}".into())]).await.unwrap();
    let heard = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(feed) = events.next().await {
            if let Feed::Message { payload, .. } = feed
                && payload.contains(&key)
                && payload.contains("completed")
            {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        heard,
        Ok(true),
        "the completion on the moved slot reached the subscriber"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_meets_a_half_moved_slot_drops_no_id() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.url(), "half").await;
    let q = client.queue("split").unwrap();
    // Every key claim declares exists (a held job, a dead one, a worker,
    // counters), so the claim runs on the old owner mid-migration instead of
    // being turned away with TRYAGAIN before it starts.
    q.heartbeat("w", true).await.unwrap();
    let first = q
        .submit_batch(&[
            JobSpec::new("echo", &json!("held")),
            JobSpec::new("boom", &json!("dies")).max_attempts(1),
        ])
        .await
        .unwrap();
    let claimed = q.claim("w", 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    q.fail("w", &first[1].id, "boom", jobfleet_core::FailKind::Permanent)
        .await
        .unwrap();
    let specs: Vec<JobSpec> = (0..10)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })))
        .collect();
    let ids: Vec<String> = submit_ids(&q, &specs).await.into_iter().collect();

    // The record of the fourth job in claim order moves to the new owner;
    // its id, and everything else, stays behind for now.
    let keys = q.keys().clone();
    let slot = cluster.keyslot(&keys.pending);
    let from = cluster.slot_owner(slot);
    let to = *cluster.primaries().iter().find(|&&p| p != from).unwrap();
    let migration = cluster.begin_migration(slot, to);
    migration.migrate(&[&keys.job(&ids[3])]);

    let before = q.claim("w", 10).await.unwrap();
    let got: Vec<&str> = before.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(
        got,
        ids[..3].iter().map(String::as_str).collect::<Vec<_>>(),
        "claimed up to the moved record"
    );
    let left = cluster.cmd(&["LRANGE", &keys.pending, "0", "-1"]);
    assert_eq!(
        left.lines().count(),
        7,
        "the moved job's id and the rest are back in pending: {left}"
    );

    migration.finish();
    assert_eq!(cluster.slot_owner(slot), to);
    let after = q.claim("w", 10).await.unwrap();
    let mut all: Vec<String> = before.into_iter().chain(after).map(|j| j.id).collect();
    all.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(all, want, "every job claimed once, none dropped as orphaned");
    let stats = client.queue("split").unwrap().stats().await.unwrap();
    assert_eq!((stats.pending, stats.active), (0, 11), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_of_every_shard_are_promoted_and_run() {
    let cluster = RedisCluster::shared();
    let client = connect(&cluster.url(), "later").await;
    let q = client.queue("timed").unwrap();
    q.set_shards(4).await.unwrap();
    let specs: Vec<JobSpec> = (0..40)
        .map(|n| JobSpec::new("echo", &json!({ "n": n })).delay(Duration::from_millis(300)))
        .collect();
    let ids: HashSet<String> = submit_ids(&q, &specs).await.into_iter().collect();
    let stats = q.stats_by_shard().await.unwrap();
    assert!(stats.iter().all(|s| s.scheduled == 10), "{stats:?}");
    assert_eq!(drain(&q, "early").await.len(), 0, "nothing is due yet");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut promoted = 0;
    while promoted < 40 {
        assert!(tokio::time::Instant::now() < deadline, "only {promoted} promoted");
        for shard in q.shards().await.unwrap() {
            promoted += shard.promote_due(100).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ran: HashSet<String> = drain(&q, "late").await.into_values().flatten().collect();
    assert_eq!(ran, ids);
}
