//! The README's scripts, run as a new user would: `scripts/demo.sh` must find
//! the binaries wherever cargo put them (`CARGO_TARGET_DIR`), and give up
//! with a message naming the cause, never hang, when Redis is not there.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The target directory this test binary was built into (`<target>/debug/deps/<exe>`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .nth(3)
        .expect("<target>/debug/deps/<exe>")
        .to_path_buf()
}

/// Runs `scripts/demo.sh` with a small batch and unoptimized binaries (the
/// test run has just built them), with `CARGO_TARGET_DIR` set to `target`.
fn demo(target: &Path, redis: Option<&str>) -> (Output, Duration) {
    let mut cmd = Command::new("bash");
    cmd.arg("scripts/demo.sh")
        .arg("200")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("CARGO_TARGET_DIR", target)
        .env("DEMO_PROFILE", "dev")
        .env_remove("JOBFLEET_PREFIX")
        .env_remove("JOBFLEET_REDIS");
    if let Some(url) = redis {
        cmd.env("JOBFLEET_REDIS", url);
    }
    let started = Instant::now();
    let output = cmd.output().expect("run bash");
    (output, started.elapsed())
}

#[test]
fn demo_runs_with_a_cargo_target_dir_and_fails_fast_without_redis() {
    // Another path to the same build, so the binaries are where cargo says,
    // not under ./target, and the build is already warm.
    let scratch = tempfile::tempdir().unwrap();
    let elsewhere = scratch.path().join("target");
    std::os::unix::fs::symlink(target_dir(), &elsewhere).unwrap();

    let (output, _) = demo(&elsewhere, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("== binaries in {}/debug", elsewhere.display())),
        "{stdout}"
    );
    assert!(stdout.contains("== stats"), "{stdout}");

    // Nothing listens on port 1: the demo must say so at once.
    let (output, took) = demo(&elsewhere, Some("redis://127.0.0.1:1"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("cannot use the Redis at redis://127.0.0.1:1"),
        "{stderr}"
    );
    assert!(took < Duration::from_secs(60), "gave up only after {took:?}");
}
