//! End to end: `jobfleet dashboard` processes against a private redis-server
//! and real workers, read with a plain HTTP client and driven in a real
//! headless Chromium.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::log::{EnableParams as LogEnable, EventEntryAdded, LogEntryLevel};
use chromiumoxide::cdp::browser_protocol::page::{
    CaptureScreenshotFormat, EventJavascriptDialogOpening, HandleJavaScriptDialogParams,
};
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use serde_json::{Value, json};
use util::dashboard::Dashboard;
use util::{Fleet, bin, ids};

const XSS: &str = "<script>alert(1)</script>";
const TOKEN: &str = "s3cret-t0ken";

#[test]
fn two_dashboards_stream_the_same_live_events() {
    let mut fleet = Fleet::new();
    let one = Dashboard::start(&fleet, &[]);
    let two = Dashboard::start(&fleet, &[]);
    assert_ne!(one.port, two.port);
    // The snapshot comes once the dashboard's Redis subscription is live.
    let mut streams = [&one, &two].map(|d| {
        let mut sse = Sse::open(d.port, "/api/stream");
        let (kind, _) = sse.next(Duration::from_secs(10)).expect("a snapshot");
        assert_eq!(kind, "snapshot");
        sse
    });

    fleet.start_worker(&[]);
    let run = fleet.jobfleet(&["submit", "echo", r#"{"hello": "both"}"#, "--wait"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The id, then (one job, no --json) its result.
    let lines = ids(&run.stdout);
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert_eq!(lines[1], r#"{"hello":"both"}"#);
    let id = lines[0].clone();

    for sse in &mut streams {
        let event = sse.find_event(Duration::from_secs(10), |e| e["id"] == id.as_str());
        assert_eq!(
            (&event["state"], &event["queue"], &event["task"]),
            (&json!("completed"), &json!("default"), &json!("echo"))
        );
        assert!(event["duration_ms"].is_u64(), "{event}");
        // And the stats pushed every second catch up with it.
        let stats = sse.find("stats", Duration::from_secs(5), |s| {
            s["queues"][0]["completed"] == 1 && s["latency"][0]["task"] == "echo"
        });
        assert_eq!(stats["queues"][0]["name"], "default");
        assert_eq!(stats["workers"].as_array().unwrap().len(), 1);
    }
}

#[test]
fn a_non_loopback_address_needs_a_token_which_every_request_must_carry() {
    let fleet = Fleet::new();
    let refused = run_briefly(&fleet, &["dashboard", "--listen", "0.0.0.0:0"]);
    assert_ne!(refused.0, 0, "it must not start");
    assert!(
        refused
            .1
            .contains("refusing to listen on 0.0.0.0:0 without a token")
            && refused.1.contains("--token"),
        "{}",
        refused.1
    );

    let dash = Dashboard::start(&fleet, &["--listen", "0.0.0.0:0", "--token", TOKEN]);
    assert!(dash.url.ends_with(&format!("/?token={TOKEN}")), "{}", dash.url);
    let bearer_value = format!("Bearer {TOKEN}");
    let bearer = ("Authorization", bearer_value.as_str());
    for path in [
        "/",
        "/app.js",
        "/api/stats",
        "/metrics",
        "/healthz",
        "/api/stream",
    ] {
        assert_eq!(http(dash.port, "GET", path, &[], None).status, 401, "{path}");
    }
    let wrong = http(
        dash.port,
        "GET",
        "/api/stats",
        &[("Authorization", "Bearer s3cret-t0keN")],
        None,
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        http(dash.port, "GET", "/api/stats?token=nope", &[], None).status,
        401
    );
    assert_eq!(http(dash.port, "GET", "/api/stats", &[bearer], None).status, 200);
    assert_eq!(http(dash.port, "GET", "/healthz", &[bearer], None).body, "ok\n");

    // The page keeps the token for its script and style sheet.
    let page = http(dash.port, "GET", &format!("/?token={TOKEN}"), &[], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(&format!("src=\"/app.js?token={TOKEN}\"")),
        "{}",
        page.body
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let js = http(dash.port, "GET", &format!("/app.js?token={TOKEN}"), &[], None);
    assert_eq!(
        (js.status, js.header("content-type")),
        (200, Some("text/javascript; charset=utf-8"))
    );
    assert!(
        !js.body.contains("innerHTML"),
        "the page never parses data as HTML"
    );

    // State changes: POST only, with the custom header, from this origin.
    let retry = "/api/queues/default/dead/retry";
    let body = Some(r#"{"all": true}"#);
    let json_type = ("Content-Type", "application/json");
    let csrf = ("X-Jobfleet", "1");
    let host_value = format!("127.0.0.1:{}", dash.port);
    let host = ("Host", host_value.as_str());
    let post = |headers: &[(&str, &str)]| http(dash.port, "POST", retry, headers, body);
    assert_eq!(post(&[json_type, csrf]).status, 401, "no token");
    assert_eq!(post(&[bearer, json_type]).status, 403, "no custom header");
    let cross_site = post(&[bearer, json_type, csrf, ("Sec-Fetch-Site", "cross-site")]);
    assert_eq!(cross_site.status, 403);
    let other_origin = [bearer, json_type, csrf, host, ("Origin", "http://evil.example")];
    assert_eq!(post(&other_origin).status, 403);
    let origin = format!("http://127.0.0.1:{}", dash.port);
    let same_origin = [
        bearer,
        json_type,
        csrf,
        host,
        ("Origin", origin.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    let ok = post(&same_origin);
    assert_eq!((ok.status, ok.json()), (200, json!({"retried": 0})));
    for path in [
        retry,
        "/api/queues/default/dead/purge",
        "/api/jobs/some-id/cancel",
    ] {
        assert_eq!(
            http(dash.port, "GET", path, &[bearer], None).status,
            405,
            "{path}"
        );
    }

    // Cancel a waiting job through the API.
    let id = ids(&fleet.jobfleet(&["submit", "noop", "--delay", "1h"]).stdout)
        .pop()
        .unwrap();
    let cancel = http(
        dash.port,
        "POST",
        &format!("/api/jobs/{id}/cancel"),
        &[bearer, csrf],
        None,
    );
    assert_eq!(
        (cancel.status, cancel.json()),
        (200, json!({"outcome": "cancelled"}))
    );
    let job = http(dash.port, "GET", &format!("/api/jobs/{id}"), &[bearer], None).json();
    assert_eq!(job["state"], "cancelled");
    assert_eq!(
        http(dash.port, "GET", "/api/jobs/no-such-job", &[bearer], None).status,
        404
    );
}

#[test]
fn a_page_naming_another_host_is_refused_unless_that_name_is_allowed() {
    let fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &["--allow-host", "dash.test"]);
    let port = dash.port;
    let named = |host: &str, method: &str, path: &str, extra: &[(&str, &str)]| {
        let host = format!("{host}:{port}");
        let mut headers = vec![("Host", host.as_str())];
        headers.extend_from_slice(extra);
        http(port, method, path, &headers, Some("{}"))
    };
    // What a rebinding page on evil.example would send, same-origin as far as
    // its browser knows.
    let evil = "http://evil.example";
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/stream"),
        ("GET", "/api/queues/default/dead"),
        ("POST", "/api/queues/default/dead/purge"),
    ] {
        let origin = format!("{evil}:{port}");
        let extra = [
            ("X-Jobfleet", "1"),
            ("Origin", origin.as_str()),
            ("Sec-Fetch-Site", "same-origin"),
            ("Content-Type", "application/json"),
        ];
        let refused = named("evil.example", method, path, &extra);
        assert_eq!(refused.status, 421, "{method} {path}");
        let error = refused.json()["error"].as_str().unwrap().to_string();
        assert!(
            error.contains(&format!("\"evil.example:{port}\"")) && error.contains("dash.test"),
            "{error}"
        );
    }
    for host in ["127.0.0.1", "localhost", "dash.test", "DASH.TEST"] {
        assert_eq!(named(host, "GET", "/api/stats", &[]).status, 200, "{host}");
    }

    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /api/stats HTTP/1.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let (status, _) = read_head(&mut BufReader::new(stream));
    assert_eq!(status, 421, "an HTTP/1.1 request without a Host");

    let refused = run_briefly(&fleet, &["dashboard", "--allow-host", "dash.test:8080"]);
    assert_ne!(refused.0, 0);
    assert!(
        refused.1.contains("cannot allow host \"dash.test:8080\""),
        "{}",
        refused.1
    );
}

#[test]
fn live_streams_are_bounded_and_a_closed_one_frees_its_place() {
    let fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &["--max-streams", "2"]);
    let first = Sse::open(dash.port, "/api/stream");
    let _second = Sse::open(dash.port, "/api/stream");
    let refused = http(dash.port, "GET", "/api/stream", &[], None);
    assert_eq!(refused.status, 503);
    let error = refused.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("at most 2") && error.contains("--max-streams"),
        "{error}"
    );
    // Everything else still answers.
    assert_eq!(http(dash.port, "GET", "/api/stats", &[], None).status, 200);

    // The place is freed once the server sees the connection close, which
    // the client cannot observe: poll for it.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut third = loop {
        match Sse::try_open(dash.port, "/api/stream") {
            Ok(sse) => break sse,
            Err(503) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(status) => panic!("the freed place was not given back: {status}"),
        }
    };
    let (kind, _) = third.next(Duration::from_secs(10)).expect("a snapshot");
    assert_eq!(kind, "snapshot");
    assert_eq!(Sse::try_open(dash.port, "/api/stream").err(), Some(503));
}

#[test]
fn job_errors_come_back_as_json_never_as_markup() {
    let mut fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &[]);
    fleet.start_worker(&[]);
    let id = fail_with_xss(&fleet, "default");

    let job = http(dash.port, "GET", &format!("/api/jobs/{id}"), &[], None);
    assert_eq!(job.status, 200);
    assert_eq!(job.header("content-type"), Some("application/json"));
    assert_eq!(job.header("x-content-type-options"), Some("nosniff"));
    let job = job.json();
    assert_eq!(
        (job["state"].as_str(), job["error"].as_str()),
        (Some("dead"), Some(XSS))
    );
    assert_eq!(job["payload"]["message"], XSS);

    let dead = http(dash.port, "GET", "/api/queues/default/dead", &[], None).json();
    assert_eq!(dead[0]["id"], id.as_str());
    assert_eq!(dead[0]["error"], XSS);
}

#[test]
fn metrics_scrape_parses_and_has_the_queue_series() {
    let mut fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &[]);
    fleet.start_worker(&["--queue", "metered"]);
    let run = fleet.jobfleet_stdin(
        &["submit", "echo", "--stdin", "--queue", "metered", "--wait"],
        "{}\n{}\n{}\n",
    );
    assert_eq!(run.code, 0, "{}", run.stderr);

    let scrape = http(dash.port, "GET", "/metrics", &[], None);
    assert_eq!(scrape.status, 200);
    assert!(scrape.header("content-type").unwrap().starts_with("text/plain"));
    let mut series = std::collections::HashMap::new();
    for line in scrape.body.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line:?}"));
        series.insert(name, value);
    }
    for (name, value) in [
        ("jobfleet_queue_completed_total{queue=\"metered\"}", 3.0),
        ("jobfleet_queue_submitted_total{queue=\"metered\"}", 3.0),
        ("jobfleet_queue_failed_total{queue=\"metered\"}", 0.0),
        ("jobfleet_queue_pending{queue=\"metered\"}", 0.0),
        ("jobfleet_queue_scheduled{queue=\"metered\"}", 0.0),
        ("jobfleet_queue_active{queue=\"metered\"}", 0.0),
        ("jobfleet_queue_dead{queue=\"metered\"}", 0.0),
        ("jobfleet_queue_workers{queue=\"metered\"}", 1.0),
        ("jobfleet_workers", 1.0),
    ] {
        assert_eq!(series.get(name), Some(&value), "{name} in:\n{}", scrape.body);
    }
    assert!(
        scrape
            .body
            .contains("# TYPE jobfleet_queue_completed_total counter")
    );
    assert!(scrape.body.contains("# TYPE jobfleet_queue_pending gauge"));
}

#[test]
fn a_paused_queue_holds_new_and_recovered_jobs_until_it_is_resumed() {
    let mut fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &[]);
    let first = fleet.start_worker(&[]);
    let get = |path: &str| http(dash.port, "GET", path, &[], None);
    let post = |path: &str| http(dash.port, "POST", path, &[("X-Jobfleet", "1")], None);
    let listed = |state: &str| {
        let jobs = get(&format!("/api/queues/default/jobs?state={state}"));
        assert_eq!(jobs.status, 200, "{}", jobs.body);
        let mut found: Vec<String> = jobs
            .json()
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().into())
            .collect();
        found.sort();
        found
    };
    let paused = || {
        let stats = get("/api/stats").json();
        let default = stats["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == "default")
            .cloned();
        default.map(|q| q["paused"].clone())
    };
    let paused_gauge = || {
        let scrape = get("/metrics").body;
        let series = scrape
            .lines()
            .find_map(|l| l.strip_prefix("jobfleet_queue_paused{queue=\"default\"} "));
        series.map(String::from)
    };

    // Long enough to be running still when its worker is killed below.
    let sleeper = ids(&fleet.jobfleet(&["submit", "sleep", r#"{"ms": 10000}"#]).stdout)
        .pop()
        .unwrap();
    fleet.until(Duration::from_secs(10), "the sleep job to start", |_| {
        get(&format!("/api/jobs/{sleeper}")).json()["state"] == "active"
    });
    let pause = post("/api/queues/default/pause");
    assert_eq!(
        (pause.status, pause.json()),
        (200, json!({"paused": true, "changed": true}))
    );
    assert_eq!(
        post("/api/queues/default/pause").json(),
        json!({"paused": true, "changed": false})
    );
    assert_eq!(paused(), Some(json!(true)));

    // A job submitted now waits; the running one runs on.
    let echo = ids(&fleet.jobfleet(&["submit", "echo", r#"{"held": true}"#]).stdout)
        .pop()
        .unwrap();
    assert_eq!(listed("pending"), vec![echo.clone()]);
    assert_eq!(listed("active"), vec![sleeper.clone()]);

    // Its worker dies; the job is handed back, and waits too.
    fleet.workers[first].signal("KILL");
    fleet.workers[first].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    fleet.until(Duration::from_secs(20), "the sleep job to be recovered", |f| {
        f.queue_stats("default")["recovered"] == 1
    });
    assert_eq!(get(&format!("/api/jobs/{sleeper}")).json()["state"], "pending");
    let mut both = vec![sleeper.clone(), echo.clone()];
    both.sort();
    assert_eq!(listed("pending"), both);
    assert_eq!(paused_gauge().as_deref(), Some("1"));

    // Only browsable states are.
    let bogus = get("/api/queues/default/jobs?state=bogus");
    assert_eq!(bogus.status, 400);
    let error = bogus.json()["error"].as_str().unwrap().to_string();
    assert!(error.contains("pending, scheduled, active or dead"), "{error}");
    assert_eq!(get("/api/queues/default/jobs?state=completed").status, 400);

    let resume = post("/api/queues/default/resume");
    assert_eq!(
        (resume.status, resume.json()),
        (200, json!({"paused": false, "changed": true}))
    );
    assert_eq!(
        post("/api/queues/default/resume").json(),
        json!({"paused": false, "changed": false})
    );
    assert_eq!(paused(), Some(json!(false)));
    let wait = fleet.jobfleet(&["wait", &sleeper, &echo, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}{}", wait.stdout, wait.stderr);
    assert_eq!(paused_gauge().as_deref(), Some("0"));
}

#[test]
fn schedules_fire_through_a_sigkill_and_are_paused_resumed_and_removed_over_the_api() {
    let mut fleet = Fleet::new();
    let dash = Dashboard::start(&fleet, &[]);
    let get = |path: &str| http(dash.port, "GET", path, &[], None);
    let post = |path: &str| http(dash.port, "POST", path, &[("X-Jobfleet", "1")], None);
    let beat = || {
        let listed = get("/api/schedules");
        assert_eq!(listed.status, 200, "{}", listed.body);
        let listed = listed.json();
        let found = listed.as_array().unwrap().iter().find(|s| s["name"] == "beat");
        found
            .cloned()
            .unwrap_or_else(|| panic!("no schedule beat in {listed}"))
    };
    let last_ms = || beat()["last_ms"].as_u64();

    let add = fleet.jobfleet(&["schedule", "add", "beat", "echo", "{}", "--every", "1s"]);
    assert_eq!(add.code, 0, "{}", add.stderr);
    let added = beat();
    assert_eq!(
        (
            &added["queue"],
            &added["task"],
            &added["describe"],
            &added["paused"]
        ),
        (
            &json!("default"),
            &json!("echo"),
            &json!("every 1s"),
            &json!(false)
        ),
        "{added}"
    );
    assert_eq!(added["when"], json!({"every": {"every_ms": 1000}}));
    assert!(added["next_ms"].is_u64(), "{added}");
    assert_eq!(added["last_job"], Value::Null, "no worker has fired it yet");

    // A worker fires it; the tick's job runs.
    let first = fleet.start_worker(&[]);
    fleet.until(Duration::from_secs(20), "the first tick's job", |_| {
        beat()["last_job"].is_string()
    });
    let id = beat()["last_job"].as_str().unwrap().to_string();
    assert!(id.starts_with("beat@"), "{id}");
    let wait = fleet.jobfleet(&["wait", &id, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}{}", wait.stdout, wait.stderr);
    assert_eq!(get(&format!("/api/jobs/{id}")).json()["state"], "completed");

    // Paused: it has no next tick.
    let pause = post("/api/queues/default/schedules/beat/pause");
    assert_eq!(
        (pause.status, pause.json()),
        (200, json!({"paused": true, "changed": true}))
    );
    assert_eq!(
        post("/api/queues/default/schedules/beat/pause").json(),
        json!({"paused": true, "changed": false})
    );
    let paused = beat();
    assert_eq!(
        (&paused["paused"], &paused["next_ms"]),
        (&json!(true), &Value::Null),
        "{paused}"
    );
    let at_pause = paused["last_ms"].as_u64();

    // Resumed, it fires again; its worker is killed with SIGKILL, and another
    // one goes on firing it.
    let resume = post("/api/queues/default/schedules/beat/resume");
    assert_eq!(
        (resume.status, resume.json()),
        (200, json!({"paused": false, "changed": true}))
    );
    assert_eq!(
        post("/api/queues/default/schedules/beat/resume").json(),
        json!({"paused": false, "changed": false})
    );
    let resumed = beat();
    assert_eq!(resumed["paused"], false, "{resumed}");
    assert!(resumed["next_ms"].is_u64(), "{resumed}");
    fleet.until(Duration::from_secs(20), "a tick after the resume", |_| {
        last_ms() > at_pause
    });
    let before_kill = last_ms();
    fleet.workers[first].signal("KILL");
    fleet.workers[first].wait_exit(Duration::from_secs(5));
    fleet.start_worker(&[]);
    fleet.until(Duration::from_secs(20), "a tick after the kill", |_| {
        last_ms() > before_kill
    });
    let latest = beat()["last_job"].as_str().unwrap().to_string();
    let wait = fleet.jobfleet(&["wait", &latest, "--timeout", "30s"]);
    assert_eq!(wait.code, 0, "{}{}", wait.stdout, wait.stderr);

    // State changes need the CSRF header, and are POST only.
    let bare = http(
        dash.port,
        "POST",
        "/api/queues/default/schedules/beat/pause",
        &[],
        None,
    );
    assert_eq!(bare.status, 403);
    assert_eq!(get("/api/queues/default/schedules/beat/remove").status, 405);
    assert_eq!(beat()["paused"], false);

    // Removed, it is gone; what it is not there to remove, pause or resume is 404.
    let remove = post("/api/queues/default/schedules/beat/remove");
    assert_eq!((remove.status, remove.json()), (200, json!({"removed": true})));
    assert_eq!(get("/api/schedules").json(), json!([]));
    for action in ["remove", "pause", "resume"] {
        let missing = post(&format!("/api/queues/default/schedules/beat/{action}"));
        assert_eq!(missing.status, 404, "{action}: {}", missing.body);
        let error = missing.json()["error"].as_str().unwrap().to_string();
        assert!(error.contains("no schedule beat"), "{error}");
    }
    assert_eq!(
        post("/api/queues/default/schedules/has%20space/pause").status,
        400,
        "not a schedule name"
    );

    // A queue's limits are in its stats and its gauges.
    let limit = fleet.jobfleet(&["queue", "limit", "default", "--concurrency", "3"]);
    assert_eq!(limit.code, 0, "{}", limit.stderr);
    let stats = get("/api/stats").json();
    let default = stats["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .cloned()
        .unwrap_or_else(|| panic!("no queue default in {stats}"));
    assert_eq!(default["concurrency_limit"], 3, "{default}");
    assert_eq!(default.get("rate_limit"), None, "{default}");
    let scrape = get("/metrics").body;
    assert!(
        scrape
            .lines()
            .any(|l| l == "jobfleet_queue_concurrency_limit{queue=\"default\"} 3"),
        "{scrape}"
    );
    assert!(!scrape.contains("jobfleet_queue_rate_limit{"), "{scrape}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_updates_live_and_retries_a_dead_job_in_a_real_browser() {
    let mut fleet = Fleet::new();
    fleet.start_worker(&["--concurrency", "4"]);
    let doomed = fleet.start_worker(&["--queue", "letters"]);
    let doomed_pid = fleet.workers[doomed].pid();
    let dash = Dashboard::start(&fleet, &["--token", TOKEN]);
    let dead_id = fail_with_xss(&fleet, "letters");
    let five = fleet.jobfleet_stdin(&["submit", "echo", "--stdin", "--wait"], &"{}\n".repeat(5));
    assert_eq!(five.code, 0, "{}", five.stderr);

    let browser = Chromium::launch().await;
    let page = &browser.page;
    page.goto(dash.url.as_str()).await.expect("load the page");

    // Live counts: what is done shows, then what gets done meanwhile.
    let completed = r#"#queues tr[data-queue="default"] td[data-col="completed"]"#;
    wait_text(page, completed, "5").await;
    wait_text(page, "#conn", "live").await;
    // Which node is primary, and its replicas (none here).
    let primary = format!("primary 127.0.0.1:{} · 0 replicas", fleet.redis().port());
    wait_text(page, "#sum-redis", &primary).await;
    let more = fleet.jobfleet_stdin(&["submit", "echo", "--stdin", "--wait"], &"{}\n".repeat(20));
    assert_eq!(more.code, 0, "{}", more.stderr);
    wait_text(page, completed, "25").await;
    wait_for(page, r#"#latency tr[data-task="echo"]"#).await;
    wait_for(
        page,
        &format!(r#"#feed li[data-id="{dead_id}"][data-state="dead"]"#),
    )
    .await;

    // A worker that dies disappears.
    let worker_row = format!(r#"#workers tr[data-pid="{doomed_pid}"]"#);
    wait_for(page, &worker_row).await;
    fleet.workers[doomed].signal("KILL");
    fleet.workers[doomed].wait_exit(Duration::from_secs(5));
    until_js(
        page,
        &format!("!document.querySelector('{worker_row}')"),
        "the dead worker to go",
    )
    .await;

    // The dead letter, its error shown as text.
    let dead_row = format!(r#"#dead tr[data-id="{dead_id}"]"#);
    wait_text(page, &format!("{dead_row} td.error"), XSS).await;
    click(page, &format!("{dead_row} button.id")).await;
    wait_text(page, "#job-error", XSS).await;
    let markup: Value = eval(
        page,
        "[document.scripts.length, document.getElementById('job-error').childElementCount]",
    )
    .await;
    assert_eq!(markup, json!([1, 0]), "the error became no element");
    // The job shown has a URL of its own.
    let hash: String = eval(page, "location.hash").await;
    assert_eq!(hash, format!("#job=letters/{dead_id}"));

    // Retry it from the page: with no worker left on its queue, it waits.
    click(page, &format!("{dead_row} button.retry")).await;
    until_js(
        page,
        &format!("!document.querySelector('{dead_row}')"),
        "the row to leave the dead letters",
    )
    .await;
    let status = fleet.jobfleet(&["status", &dead_id, "--json"]).json();
    assert_eq!(status["state"], "pending", "{status}");
    wait_text(
        page,
        r#"#queues tr[data-queue="letters"] td[data-col="pending"]"#,
        "1",
    )
    .await;
    // The jobs of the selected queue, pending ones first, list it too.
    wait_for(page, &format!(r#"#jobs tr[data-id="{dead_id}"]"#)).await;

    // And cancel it from its detail.
    click(page, &format!(r#"#feed li[data-id="{dead_id}"] button.id"#)).await;
    wait_for(page, "#job-cancel").await;
    click(page, "#job-cancel").await;
    wait_text(page, "#job-note", "Cancelled.").await;
    let status = fleet.jobfleet(&["status", &dead_id, "--json"]).json();
    assert_eq!(status["state"], "cancelled", "{status}");
    wait_text(
        page,
        r#"#queues tr[data-queue="letters"] td[data-col="cancelled"]"#,
        "1",
    )
    .await;

    // Pause a queue from its row: it is marked, and the click selects no queue.
    let default_row = r#"#queues tr[data-queue="default"]"#;
    click(page, &format!("{default_row} button.pause")).await;
    wait_for(page, &format!("{default_row} .badge.paused")).await;
    let chosen: String = eval(
        page,
        "document.querySelector('#queues tr.selected').dataset.queue",
    )
    .await;
    assert_eq!(chosen, "letters", "the button's click is not the row's");
    let queues = fleet.jobfleet(&["queue", "list", "--json"]).json();
    let default = queues.as_array().unwrap().iter().find(|q| q["name"] == "default");
    assert_eq!(default.map(|q| &q["paused"]), Some(&json!(true)), "{queues}");

    // A job submitted meanwhile waits, its age shows, and its URL opens it.
    let held = ids(&fleet.jobfleet(&["submit", "echo", "{}"]).stdout)
        .pop()
        .unwrap();
    until_js(
        page,
        &format!(r#"document.querySelector('{default_row} td[data-col="oldest"]').textContent !== '–'"#),
        "the age of the oldest pending job",
    )
    .await;
    let _: Value = eval(page, &format!("location.hash = '#job=default/{held}'")).await;
    wait_text(page, "#job dd.mono", &held).await;
    wait_text(page, "#job .badge", "pending").await;

    // Resumed from the same button, the queue runs it.
    click(page, &format!("{default_row} button.pause")).await;
    until_js(
        page,
        &format!("!document.querySelector('{default_row} .badge.paused')"),
        "the paused badge to go",
    )
    .await;
    wait_text(page, "#job .badge", "completed").await;

    // A dead job is retried from its own page.
    let doomed_twice = fail_with_xss(&fleet, "default");
    let _: Value = eval(page, &format!("location.hash = '#job=default/{doomed_twice}'")).await;
    wait_for(page, "#job-retry").await;
    click(page, "#job-retry").await;
    wait_text(page, "#job-note", "Retried: pending again.").await;

    let shot = target_dir().join("dashboard-screenshot.png");
    let params = ScreenshotParams::builder()
        .format(CaptureScreenshotFormat::Png)
        .full_page(true)
        .build();
    page.save_screenshot(params, &shot)
        .await
        .expect("take a screenshot");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "{}",
        shot.display()
    );
    browser.assert_clean().await;
}

// ---- the dashboard process -------------------------------------------------

/// Runs `jobfleet ARGS`, which must exit within 10 s: (exit code, stderr).
fn run_briefly(fleet: &Fleet, args: &[&str]) -> (i32, String) {
    let mut child = Command::new(bin("jobfleet"))
        .args(args)
        .env("JOBFLEET_REDIS", fleet.url.clone())
        .env("JOBFLEET_PREFIX", &fleet.prefix)
        .env_remove("JOBFLEET_DASHBOARD_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn jobfleet");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("jobfleet {args:?} was still running after 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (status.code().unwrap_or(-1), stderr)
}

/// Submits a `fail` job whose error is markup, and waits for it to die.
fn fail_with_xss(fleet: &Fleet, queue: &str) -> String {
    let payload = json!({ "message": XSS, "permanent": true }).to_string();
    let run = fleet.jobfleet(&["submit", "fail", &payload, "--queue", queue, "--wait"]);
    assert_eq!(run.code, 1, "the job dies: {}", run.stderr);
    ids(&run.stdout).pop().unwrap()
}

/// `name{labels} value` → (`name{labels}`, value), or `None` when the line
/// is not a sample of the text format.
fn parse_sample(line: &str) -> Option<(String, f64)> {
    let (series, value) = line.rsplit_once(' ')?;
    let name_end = series.find('{').unwrap_or(series.len());
    let name = &series[..name_end];
    let name_ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    let labels = &series[name_end..];
    let labels_ok = labels.is_empty()
        || (labels.starts_with('{')
            && labels.ends_with('}')
            && labels[1..labels.len() - 1].split(',').all(|pair| {
                pair.split_once('=').is_some_and(|(k, v)| {
                    !k.is_empty() && v.starts_with('"') && v.ends_with('"') && v.len() >= 2
                })
            }));
    (name_ok && labels_ok).then_some(())?;
    Some((series.to_string(), value.parse().ok()?))
}

// ---- a plain HTTP/1.1 client -------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a fresh connection to 127.0.0.1:`port`. A `Host` header
/// is added unless given.
fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or("");
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let (status, headers) = read_head(&mut reader);
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        while let Some(chunk) = read_chunk(&mut reader) {
            body.extend(chunk);
        }
    } else {
        reader.read_to_end(&mut body).unwrap();
    }
    Response {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

fn read_head(reader: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        let line = line.trim_end();
        if line.is_empty() {
            return (status, headers);
        }
        let (name, value) = line.split_once(':').expect("a header");
        headers.push((name.to_string(), value.trim().to_string()));
    }
}

/// The next chunk of a chunked body; `None` at its end.
fn read_chunk(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).ok()?;
    let size = usize::from_str_radix(size.trim(), 16).ok()?;
    let mut chunk = vec![0; size + 2];
    reader.read_exact(&mut chunk).ok()?;
    chunk.truncate(size);
    (size > 0).then_some(chunk)
}

/// A server-sent event stream, read as it comes.
struct Sse {
    reader: BufReader<TcpStream>,
    pending: String,
}

impl Sse {
    fn open(port: u16, path: &str) -> Sse {
        Sse::try_open(port, path).unwrap_or_else(|status| panic!("the stream answered {status}"))
    }

    /// Opens a stream, or says which status refused it.
    fn try_open(port: u16, path: &str) -> Result<Sse, u16> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to the dashboard");
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader);
        if status != 200 {
            return Err(status);
        }
        let content_type = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        assert_eq!(content_type.map(|(_, v)| v.as_str()), Some("text/event-stream"));
        Ok(Sse {
            reader,
            pending: String::new(),
        })
    }

    /// The next event (name, data) within `limit`.
    fn next(&mut self, limit: Duration) -> Option<(String, String)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(end) = self.pending.find("\n\n") {
                let block: String = self.pending.drain(..end + 2).collect();
                let (mut kind, mut data) = (String::from("message"), Vec::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((kind, data.join("\n")));
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let stream = self.reader.get_ref();
            stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let chunk = read_chunk(&mut self.reader)?;
            self.pending
                .push_str(&String::from_utf8(chunk).expect("UTF-8 events"));
        }
    }

    /// Reads until an event named `kind` whose data satisfies `check`.
    fn find(&mut self, kind: &str, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + limit;
        while let Some((name, data)) = self.next(deadline.saturating_duration_since(Instant::now())) {
            let value: Value = serde_json::from_str(&data).expect("JSON data");
            if name == kind && check(&value) {
                return value;
            }
        }
        panic!("no matching {kind:?} event within {limit:?}");
    }

    /// Reads until a job event (in an `events` batch) satisfies `check`.
    fn find_event(&mut self, limit: Duration, check: impl Fn(&Value) -> bool) -> Value {
        let batch = self.find("events", limit, |b| b.as_array().unwrap().iter().any(&check));
        batch
            .as_array()
            .unwrap()
            .iter()
            .find(|e| check(e))
            .unwrap()
            .clone()
    }
}

// ---- the browser ------------------------------------------------------------------

/// A headless Chromium with one page, recording what must never happen on
/// it: dialogs (an `alert` would be script from job data), uncaught
/// exceptions, `console.error`, and logged errors (a Content-Security-Policy
/// violation is one).
struct Chromium {
    browser: Browser,
    page: Page,
    incidents: Arc<Mutex<Vec<String>>>,
    _profile: tempfile::TempDir,
}

impl Chromium {
    async fn launch() -> Chromium {
        let executable = ensure_chromium();
        let profile = tempfile::tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(1280, 1000)
            .viewport(None)
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ])
            .build()
            .expect("a browser config");
        let (browser, mut handler) = Browser::launch(config).await.expect("launch chromium");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        let page = browser.new_page("about:blank").await.expect("open a page");
        page.execute(LogEnable::default()).await.expect("enable the log");
        let incidents = Arc::new(Mutex::new(Vec::new()));
        let mut dialogs = page
            .event_listener::<EventJavascriptDialogOpening>()
            .await
            .unwrap();
        let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let mut console = page.event_listener::<EventConsoleApiCalled>().await.unwrap();
        let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
        let (seen, dismiss) = (incidents.clone(), page.clone());
        tokio::spawn(async move {
            loop {
                let incident = tokio::select! {
                    Some(d) = dialogs.next() => {
                        // Dismissed, so the test fails on the record instead of hanging.
                        let _ = dismiss.execute(HandleJavaScriptDialogParams::new(false)).await;
                        format!("a {:?} dialog: {}", d.r#type, d.message)
                    }
                    Some(e) = exceptions.next() => format!("an exception: {:?}", e.exception_details.exception),
                    Some(c) = console.next() => match c.r#type {
                        ConsoleApiCalledType::Error => format!("console.error: {:?}", c.args),
                        _ => continue,
                    },
                    // Content-Security-Policy violations and failed loads.
                    Some(l) = log.next() => match l.entry.level {
                        LogEntryLevel::Error => format!("a logged error: {}", l.entry.text),
                        _ => continue,
                    },
                    else => return,
                };
                seen.lock().unwrap().push(incident);
            }
        });
        Chromium {
            browser,
            page,
            incidents,
            _profile: profile,
        }
    }

    /// Fails when a dialog, an exception or a console error happened.
    async fn assert_clean(mut self) {
        // Events are delivered in order: one more round trip flushes them.
        let _: Value = eval(&self.page, "1").await;
        let incidents = self.incidents.lock().unwrap().clone();
        assert!(incidents.is_empty(), "the page had: {incidents:#?}");
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
    }
}

/// The Chromium binary, installed from Debian's packages when missing.
fn ensure_chromium() -> PathBuf {
    let path = Path::new("/usr/bin/chromium");
    if !path.exists() {
        eprintln!("chromium is missing; installing Debian's chromium package");
        let sudo = if is_root() { vec![] } else { vec!["sudo"] };
        let apt = |args: &[&str]| {
            let mut command: Vec<&str> = sudo.clone();
            command.extend(args);
            let status = Command::new(command[0])
                .args(&command[1..])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .expect("run apt-get");
            assert!(status.success(), "{command:?} failed");
        };
        apt(&["apt-get", "update", "-qq"]);
        apt(&["apt-get", "install", "-y", "-qq", "chromium"]);
    }
    assert!(
        path.exists(),
        "chromium is not installed (apt-get install chromium)"
    );
    path.to_path_buf()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `target/`, where the screenshot goes.
fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).expect("the target dir").to_path_buf()
}

/// Evaluates a JS expression in the page; its value goes through JSON text,
/// so `null` and `undefined` come back as `None`/`null` too.
async fn eval<T: serde::de::DeserializeOwned>(page: &Page, expression: &str) -> T {
    let json: String = page
        .evaluate(format!("JSON.stringify(({expression}) ?? null)"))
        .await
        .unwrap_or_else(|e| panic!("evaluate {expression}: {e}"))
        .into_value()
        .unwrap_or_else(|e| panic!("the value of {expression}: {e}"));
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("the value of {expression}: {e}: {json}"))
}

/// Polls a JS condition until it is true, failing after 15 s.
async fn until_js(page: &Page, condition: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !eval::<bool>(page, &format!("!!({condition})")).await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_for(page: &Page, selector: &str) {
    let css = serde_json::to_string(selector).unwrap();
    until_js(page, &format!("document.querySelector({css})"), selector).await;
}

/// Waits until the element's text is exactly `text`.
async fn wait_text(page: &Page, selector: &str, text: &str) {
    let css = serde_json::to_string(selector).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Option<String> = eval(
            page,
            &format!("document.querySelector({css})?.textContent ?? null"),
        )
        .await;
        if got.as_deref() == Some(text) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {selector} to read {text:?}; it reads {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks an element as a user would (scrolled into view, a real mouse event).
async fn click(page: &Page, selector: &str) {
    page.find_element(selector)
        .await
        .unwrap_or_else(|e| panic!("find {selector}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {selector}: {e}"));
}
