//! A running `jobfleet dashboard` for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{Fleet, bin};

/// A running `jobfleet dashboard`; killed on drop.
pub struct Dashboard {
    child: Child,
    pub port: u16,
    /// The URL it printed.
    pub url: String,
}

impl Dashboard {
    /// Starts one on a free loopback port (unless `extra` says `--listen`)
    /// and waits until it prints its URL.
    pub fn start(fleet: &Fleet, extra: &[&str]) -> Dashboard {
        let mut args = vec!["dashboard"];
        if !extra.contains(&"--listen") {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        args.extend(extra);
        let mut child = Command::new(bin("jobfleet"))
            .args(&args)
            .env("JOBFLEET_REDIS", fleet.url.clone())
            .env("JOBFLEET_PREFIX", &fleet.prefix)
            .env_remove("JOBFLEET_DASHBOARD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jobfleet dashboard");
        let (tx, rx) = mpsc::channel();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.strip_prefix("jobfleet dashboard: serving ") {
                        let authority = url.trim_start_matches("http://").split('/').next().unwrap();
                        let port = authority.rsplit(':').next().unwrap().parse().unwrap();
                        return Dashboard {
                            child,
                            port,
                            url: url.replace("0.0.0.0", "127.0.0.1"),
                        };
                    }
                    seen.push_str(&line);
                    seen.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the dashboard printed no URL; stderr:\n{seen}");
                }
            }
        }
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
