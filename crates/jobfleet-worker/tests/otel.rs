//! The `otel` feature: the worker binary exports each attempt's span over
//! OTLP/HTTP as a child of the job's traceparent. A receiver the test owns
//! takes the export; a real redis-server carries the job.
#![cfg(feature = "otel")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use jobfleet_core::{Client, JobSpec, JobState};
use jobfleet_testkit::RedisServer;

/// Accepts OTLP/HTTP requests and sends each body of `POST /v1/traces` on.
fn receiver() -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap_or(0);
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n",
            );
            if request_line.starts_with("POST /v1/traces") {
                let _ = tx.send(body);
            }
        }
    });
    (port, rx)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_attempt_is_exported_as_a_child_of_the_jobs_traceparent() {
    let server = RedisServer::start();
    let (port, exports) = receiver();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_jobfleet-worker"))
        .args([
            "--redis",
            &server.url(),
            "--heartbeat",
            "100ms",
            "--poll",
            "100ms",
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let client = Client::connect(&server.url()).await.unwrap();
    let q = client.queue("default").unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";
    let spec = JobSpec::new("echo", &serde_json::json!({"n": 1}))
        .traceparent(format!("00-{trace_id}-{parent_id}-01"));
    let id = q.submit(spec).await.unwrap().id;
    client
        .wait(
            &[(String::from("default"), id.clone())],
            Some(Duration::from_secs(20)),
            |_| {},
        )
        .await
        .unwrap();
    assert_eq!(q.status(&id).await.unwrap().unwrap().state, JobState::Completed);

    // SIGTERM: the worker stops and flushes what it has not exported yet.
    let _ = Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status();
    let status = worker.wait().unwrap();
    assert!(status.success(), "{status}");

    let bytes = |hex: &str| -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    let (trace, parent) = (bytes(trace_id), bytes(parent_id));
    let exported: Vec<Vec<u8>> = exports.try_iter().collect();
    assert!(!exported.is_empty(), "nothing was exported");
    assert!(
        exported
            .iter()
            .any(|body| contains(body, &trace) && contains(body, &parent) && contains(body, b"job")),
        "no exported span named `job` in the trace with the submitted parent ({} exports)",
        exported.len()
    );
}
