//! Snapshot tests of the wire format: key names, the job HASH, job JSON and
//! event JSON persist in production Redis and other languages write them, so
//! any change here is a migration (update `docs/PROTOCOL.md` with it).

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
