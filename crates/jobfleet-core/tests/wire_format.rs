//! Snapshot tests of the wire format: key names, the job HASH, job JSON and
//! event JSON persist in production Redis and other languages write them, so
//! any change here is a migration (update `docs/PROTOCOL.md` with it).

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::BTreeMap;

use expect_test::expect;
use jobfleet_core::{Client, EventKind, GlobalKeys, JobSpec, QueueKeys};
use jobfleet_testkit::RedisServer;
use serde_json::json;

#[test]
fn key_names() {
    let q = QueueKeys::new("jobfleet", "default");
    let g = GlobalKeys::new("jobfleet");
    let all = [
        q.pending.clone(),
        q.scheduled.clone(),
        q.dead.clone(),
        q.workers.clone(),
        q.stats.clone(),
        q.notify.clone(),
        q.events.clone(),
        q.control.clone(),
        q.job("0192f0c1-aaaa-7bbb-8ccc-dddddddddddd"),
        q.processing("host-1234-abcd"),
        g.queues.clone(),
        g.workers.clone(),
        g.worker("host-1234-abcd"),
    ];
    expect![[r#"
        jobfleet:{default}:pending
        jobfleet:{default}:scheduled
        jobfleet:{default}:dead
        jobfleet:{default}:workers
        jobfleet:{default}:stats
        jobfleet:{default}:notify
        jobfleet:{default}:events
        jobfleet:{default}:control
        jobfleet:{default}:job:0192f0c1-aaaa-7bbb-8ccc-dddddddddddd
        jobfleet:{default}:processing:host-1234-abcd
        jobfleet:queues
        jobfleet:{workers}
        jobfleet:{workers}:host-1234-abcd
    "#]]
    .assert_eq(&(all.join("\n") + "\n"));
}

#[test]
fn sharded_key_names_and_the_shard_of_a_key() {
    let meta = QueueKeys::new("jobfleet", "photos").meta;
    let shard = |i| QueueKeys::shard("jobfleet", "photos", i);
    assert_eq!(
        shard(0).pending,
        QueueKeys::new("jobfleet", "photos").pending,
        "shard 0 is today's layout"
    );
    let mut lines = vec![meta];
    for i in [0, 1, 5] {
        let k = shard(i);
        lines.extend([
            k.pending.clone(),
            k.workers.clone(),
            k.notify.clone(),
            k.events.clone(),
            k.control.clone(),
            k.job("abc"),
            k.processing("w1"),
        ]);
    }
    expect![[r#"
        jobfleet:{photos}:meta
        jobfleet:{photos}:pending
        jobfleet:{photos}:workers
        jobfleet:{photos}:notify
        jobfleet:{photos}:events
        jobfleet:{photos}:control
        jobfleet:{photos}:job:abc
        jobfleet:{photos}:processing:w1
        jobfleet:{photos#1}:pending
        jobfleet:{photos#1}:workers
        jobfleet:{photos#1}:notify
        jobfleet:{photos#1}:events
        jobfleet:{photos#1}:control
        jobfleet:{photos#1}:job:abc
        jobfleet:{photos#1}:processing:w1
        jobfleet:{photos#5}:pending
        jobfleet:{photos#5}:workers
        jobfleet:{photos#5}:notify
        jobfleet:{photos#5}:events
        jobfleet:{photos#5}:control
        jobfleet:{photos#5}:job:abc
        jobfleet:{photos#5}:processing:w1
    "#]]
    .assert_eq(&(lines.join("\n") + "\n"));
    // FNV-1a 32 of the key's bytes, mod the count: what every producer in
    // every language computes (docs/PROTOCOL.md, "Sharded queues").
    let placed: Vec<String> = ["", "a", "welcome-42", "order:1001", "élan"]
        .iter()
        .map(|k| {
            format!(
                "{k:?} {} {}",
                jobfleet_core::shard_of(k, 6),
                jobfleet_core::shard_of(k, 1000)
            )
        })
        .collect();
    // Worked out independently (FNV-1a of "a" is 0xe40c292c).
    expect![[r#"
        "" 1 261
        "a" 4 220
        "welcome-42" 2 904
        "order:1001" 5 465
        "élan" 0 812
    "#]]
    .assert_eq(&(placed.join("\n") + "\n"));
}

/// Replaces values that differ from run to run, keeping the shape.
fn normalize(mut v: serde_json::Value) -> String {
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in obj.iter_mut() {
            if k.ends_with("_ms") || k == "ms" {
                *val = json!("<ms>");
            }
        }
    }
    serde_json::to_string_pretty(&v).unwrap()
}

#[tokio::test]
async fn job_hash_job_json_and_event_json() {
    let server = RedisServer::start();
    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let spec = JobSpec::new("echo", &json!({"hello": "world"})).id("job-1");
    q.submit(spec).await.unwrap();

    // The HASH as a producer in another language would see it.
    let raw = server.cmd(&format!("HGETALL {}", q.keys().job("job-1")));
    let lines: Vec<&str> = raw
        .lines()
        .filter(|l| !l.starts_with('*') && !l.starts_with('$'))
        .collect();
    let fields: BTreeMap<&str, &str> = lines
        .chunks(2)
        .map(|kv| (kv[0], if kv[0].ends_with("_ms") { "<ms>" } else { kv[1] }))
        .collect();
    expect![[r#"
        {
            "created_ms": "<ms>",
            "max_attempts": "3",
            "payload": "{\"hello\":\"world\"}",
            "state": "pending",
            "task": "echo",
            "timeout_ms": "<ms>",
        }
    "#]]
    .assert_debug_eq(&fields);

    let mut events = client.events(&[]).await.unwrap();
    q.heartbeat("w1", true).await.unwrap();
    q.claim("w1", 1).await.unwrap();
    q.ack("w1", &[("job-1".into(), r#"{"hello":"world"}"#.into())])
        .await
        .unwrap();

    let job = q.status("job-1").await.unwrap().unwrap();
    expect![[r#"
        {
          "attempts": 1,
          "created_ms": "<ms>",
          "finished_ms": "<ms>",
          "id": "job-1",
          "max_attempts": 3,
          "payload": {
            "hello": "world"
          },
          "queue": "default",
          "recoveries": 0,
          "result": {
            "hello": "world"
          },
          "started_ms": "<ms>",
          "state": "completed",
          "task": "echo",
          "timeout_ms": "<ms>",
          "worker": "w1"
        }"#]]
    .assert_eq(&normalize(serde_json::to_value(&job).unwrap()));

    let event = loop {
        if let Some(Some(event)) = events.next_event().await {
            break event;
        }
    };
    assert_eq!(event.state, EventKind::Completed);
    expect![[r#"
        {
          "attempt": 1,
          "duration_ms": "<ms>",
          "id": "job-1",
          "ms": "<ms>",
          "queue": "default",
          "result": {
            "hello": "world"
          },
          "state": "completed",
          "task": "echo",
          "worker": "w1"
        }"#]]
    .assert_eq(&normalize(serde_json::to_value(&event).unwrap()));
}
