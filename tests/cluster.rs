//! The real binaries on a real Redis Cluster (three primaries, a replica
//! each, one cluster for this whole file, one test at a time): a queue of six
//! shards spread over every primary, run end to end from the CLI, and a
//! primary killed with SIGKILL under load.

mod util;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use jobfleet_core::QueueKeys;
use jobfleet_testkit::RedisCluster;
use util::dashboard::Dashboard;
use util::load::{Waiter, start_load};
use util::{Fleet, Verdict, bin, http_get};

#[test]
fn a_six_shard_queue_runs_end_to_end_from_the_cli() {
    let cluster = RedisCluster::shared();
    let mut fleet = Fleet::with_url(cluster.seeds_url());
    let run = fleet.jobfleet(&["queue", "create", "photos", "--shards", "6"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("6 shard(s) (was 1)"), "{}", run.stdout);
    let shown = fleet.jobfleet(&["queue", "show", "photos", "--json"]).json();
    assert_eq!(shown["shards"], 6);
    assert_eq!(shown["by_shard"].as_array().map(Vec::len), Some(6));
    let owners: HashSet<u16> = (0..6)
        .map(|i| cluster.slot_owner(cluster.keyslot(&QueueKeys::shard("jobfleet", "photos", i).pending)))
        .collect();
    assert_eq!(owners.len(), 3, "the shards live on all three primaries");
    for i in 0..6 {
        let owner = cluster.slot_owner(cluster.keyslot(&QueueKeys::shard("jobfleet", "photos", i).pending));
        assert_eq!(
            shown["by_shard"][i as usize]["node"],
            format!("127.0.0.1:{owner}"),
            "queue show names each shard's primary"
        );
    }

    // Workers learn the shard count from Redis: no flag.
    fleet.start_worker(&["-q", "photos", "--concurrency", "4"]);
    fleet.start_worker(&["-q", "photos", "--concurrency", "4"]);
    let lines: String = (0..300).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    let run = fleet.jobfleet_stdin(
        &[
            "submit",
            "echo",
            "--stdin",
            "-q",
            "photos",
            "--wait",
            "--wait-timeout",
            "60s",
        ],
        &lines,
    );
    assert_eq!(run.code, 0, "every job completed: {}", run.stderr);
    let ids = util::ids(&run.stdout);
    assert_eq!(ids.len(), 300);

    let stats = fleet
        .jobfleet(&["stats", "--shards", "--json", "-q", "photos"])
        .json();
    let q = &stats["queues"][0];
    assert_eq!(
        (q["completed"].as_u64(), q["pending"].as_u64()),
        (Some(300), Some(0)),
        "{q}"
    );
    assert_eq!(q["workers"], 2);
    for shard in q["by_shard"].as_array().unwrap() {
        assert_eq!(shard["completed"], 50, "each shard ran its sixth: {shard}");
    }
    assert_eq!(stats["redis"]["mode"], "cluster");

    // Inspection and cancel find a job on whichever shard it is.
    let status = fleet.jobfleet(&["status", &ids[123], "--json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_eq!(status.json()["state"], "completed");
    let later = fleet.jobfleet_stdin(
        &["submit", "echo", "--stdin", "-q", "photos", "--delay", "1h"],
        "{}\n{}\n{}\n",
    );
    for id in util::ids(&later.stdout) {
        let run = fleet.jobfleet(&["cancel", &id]);
        assert_eq!(run.code, 0, "{}", run.stderr);
    }
    let q = fleet.queue_stats("photos");
    assert_eq!(
        (q["scheduled"].as_u64(), q["cancelled"].as_u64()),
        (Some(0), Some(3)),
        "{q}"
    );
    let text = fleet.jobfleet(&["stats", "--shards"]).stdout;
    assert!(
        text.contains("photos (6 shards)") && text.contains("photos#5 on 127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("redis: cluster of 6 nodes"), "{text}");

    // The dashboard reads the whole queue and finds any job.
    let dashboard = Dashboard::start(&fleet, &[]);
    let stats: serde_json::Value = serde_json::from_str(&http_get(dashboard.port, "/api/stats")).unwrap();
    let photos = stats["queues"]
        .as_array()
        .and_then(|qs| qs.iter().find(|q| q["name"] == "photos"))
        .unwrap_or_else(|| panic!("no photos queue in {stats}"));
    assert_eq!(
        (photos["completed"].as_u64(), photos["shards"].as_u64()),
        (Some(300), Some(6))
    );
    assert_eq!(stats["redis"]["mode"], "cluster");
    let job: serde_json::Value =
        serde_json::from_str(&http_get(dashboard.port, &format!("/api/jobs/{}", ids[201]))).unwrap();
    assert_eq!(job["state"], "completed", "{job}");

    // A raised count reaches the running workers, without a restart or flag.
    let run = fleet.jobfleet(&["queue", "create", "photos", "--shards", "8"]);
    assert!(run.stdout.contains("8 shard(s) (was 6)"), "{}", run.stdout);
    let lines: String = (0..80).map(|n| format!("{{\"n\": {n}}}\n")).collect();
    let run = fleet.jobfleet_stdin(
        &[
            "submit",
            "echo",
            "--stdin",
            "-q",
            "photos",
            "--wait",
            "--wait-timeout",
            "30s",
        ],
        &lines,
    );
    assert_eq!(run.code, 0, "the new shards' jobs completed: {}", run.stderr);
    let stats = fleet
        .jobfleet(&["stats", "--shards", "--json", "-q", "photos"])
        .json();
    let shards = stats["queues"][0]["by_shard"].as_array().unwrap().clone();
    assert_eq!(shards.len(), 8);
    assert!(shards[6]["completed"].as_u64() > Some(0) && shards[7]["completed"].as_u64() > Some(0));
}

#[test]
fn killing_a_primary_under_load_loses_no_acknowledged_submit() {
    let mut cluster = RedisCluster::shared();
    let queue = "ledger";
    let mut fleet = Fleet::with_url(cluster.url());
    assert_eq!(
        fleet.jobfleet(&["queue", "create", queue, "--shards", "6"]).code,
        0
    );
    let worker = bin("jobfleet-chaos-worker");
    let flags = [
        "--concurrency",
        "8",
        "-q",
        queue,
        "--replicas",
        "1",
        "--dead-after",
        "8s",
    ];
    fleet.start(&worker, &flags);
    fleet.start(&worker, &flags);
    // A producer that waits for its jobs through the kill: its sharded
    // subscription must follow the takeover.
    let waiter = Waiter::start(&fleet, queue, "cluster-waited", 60);
    let load = start_load(&cluster.seeds_url(), queue, 1);
    fleet.until(
        Duration::from_secs(60),
        "jobs to complete before the fault",
        |f| f.queue_stats(queue)["completed"].as_u64() >= Some(200),
    );

    // The primary holding shard 0 dies; its replica takes over.
    let victim = cluster.slot_owner(cluster.keyslot(&QueueKeys::shard("jobfleet", queue, 0).pending));
    cluster.node(victim).kill();
    let killed_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.primaries().contains(&victim) || cluster.primaries().len() < 3 {
        assert!(Instant::now() < deadline, "no replica took over from {victim}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The new primary has no replica until the killed node rejoins as one:
    // until then `--replicas 1` cannot be confirmed there, and submits that
    // place a job on it exit 3 (not acknowledged, so the ledger allows them).
    cluster.node(victim).restart();
    cluster.wait_ok(Duration::from_secs(60));
    assert!(!cluster.primaries().contains(&victim), "it rejoined as a replica");
    let rejoined_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while load.acked_since(rejoined_at) < 10 {
        assert!(
            Instant::now() < deadline,
            "submits were not acknowledged again after the takeover"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let ledger = load.finish();
    let waited = waiter.ids();
    waiter.finish("the kill");
    // The waiter's jobs were submitted before the kill; they are checked by
    // its exit code above, and may run (not unexpected).
    let mut maybe = ledger.attempted.clone();
    maybe.extend(waited);
    let verdict = Verdict::check_allowing(&fleet, &ledger.acknowledged, &maybe, Duration::from_secs(90));
    eprintln!(
        "cluster kill: {} submits acknowledged, {} producer runs refused; first refusal: {}",
        ledger.acknowledged.len(),
        ledger.refused_runs,
        ledger.first_refusal.as_deref().unwrap_or("none").trim()
    );
    assert!(
        ledger.acknowledged.len() >= 200,
        "the load ran: {}",
        ledger.acknowledged.len()
    );
    verdict.assert_sound();
    assert_eq!(
        verdict.completed, verdict.submitted,
        "every acknowledged submit completed"
    );
    eprintln!("takeover and rejoin took {:?}", rejoined_at - killed_at);
}
