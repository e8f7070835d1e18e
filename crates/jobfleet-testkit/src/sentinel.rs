//! [`SentinelGroup`]: a primary, its replicas and `redis-server --sentinel`
//! processes watching them, on free loopback ports; the topology every
//! production Redis runs, for the failover tests.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    RedisOptions, RedisServer, free_port, reap_with_this_process, redis_server_binary, resp_words, send,
    send_all,
};

/// The master name the sentinels watch.
pub const MASTER: &str = "jobfleet-test";

/// How long a primary may be silent before the sentinels call it down.
const DOWN_AFTER_MS: u64 = 1000;

/// A primary with replicas and sentinels. Nodes are found by port: after a
/// failover any of them may be primary.
#[derive(Debug)]
pub struct SentinelGroup {
    nodes: Vec<RedisServer>,
    sentinels: Vec<Sentinel>,
    /// The password the sentinels require (`requirepass`), if any.
    sentinel_password: Option<String>,
}

#[derive(Debug)]
struct Sentinel {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl SentinelGroup {
    /// Starts a primary, `replicas` replicas (in sync before this returns)
    /// and `sentinels` sentinels (a quorum of a majority), and waits until
    /// every sentinel knows every replica and every other sentinel.
    pub fn start(replicas: usize, sentinels: usize) -> SentinelGroup {
        SentinelGroup::start_with(replicas, sentinels, None)
    }

    /// [`SentinelGroup::start`], with sentinels that require a password
    /// (and use it between themselves).
    pub fn start_with(replicas: usize, sentinels: usize, sentinel_password: Option<&str>) -> SentinelGroup {
        let primary = RedisServer::start();
        let mut nodes = vec![];
        for _ in 0..replicas {
            nodes.push(RedisServer::start_with(RedisOptions {
                replica_of: Some(primary.port()),
                ..RedisOptions::default()
            }));
        }
        nodes.insert(0, primary);
        let mut group = SentinelGroup {
            nodes,
            sentinels: vec![],
            sentinel_password: sentinel_password.map(String::from),
        };
        let primary_port = group.nodes[0].port();
        group.wait_replicas_online(primary_port, Duration::from_secs(20));
        let quorum = sentinels / 2 + 1;
        for _ in 0..sentinels {
            group
                .sentinels
                .push(start_sentinel(primary_port, quorum, sentinel_password));
        }
        group.wait_healthy(Duration::from_secs(30));
        group
    }

    /// `redis+sentinel://` URL naming every sentinel.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{MASTER}", hosts.join(","))
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// Every data node's port.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The primary's port as the first answering sentinel names it.
    pub fn primary_port(&self) -> u16 {
        for sentinel in &self.sentinels {
            if let Some(port) = self.master_addr(sentinel.port) {
                return port;
            }
        }
        panic!("no sentinel names a primary");
    }

    /// The node on `port`.
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Kills the primary with SIGKILL, as a machine dying would; returns
    /// its port.
    pub fn kill_primary(&mut self) -> u16 {
        let port = self.primary_port();
        self.node(port).kill();
        port
    }

    /// Asks a sentinel for a graceful failover (`SENTINEL FAILOVER`).
    pub fn failover(&self) {
        let reply = self.ask(self.sentinels[0].port, &format!("SENTINEL FAILOVER {MASTER}"));
        assert!(reply.starts_with("+OK"), "SENTINEL FAILOVER refused: {reply}");
    }

    /// Waits until every sentinel names a primary other than `old` and that
    /// node says it is master; returns its port.
    pub fn wait_new_primary(&self, old: u16, limit: Duration) -> u16 {
        let deadline = Instant::now() + limit;
        loop {
            let named: Vec<Option<u16>> = self.sentinels.iter().map(|s| self.master_addr(s.port)).collect();
            if let Some(Some(port)) = named.first()
                && *port != old
                && named.iter().all(|p| *p == Some(*port))
                && role(*port) == "master"
            {
                return *port;
            }
            assert!(
                Instant::now() < deadline,
                "no new primary within {limit:?}: sentinels name {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a killed node again, empty (as a machine that rebooted without
    /// its data); the sentinels turn it into a replica of the primary.
    pub fn restart_node(&mut self, port: u16) {
        self.node(port).restart();
    }

    /// Restarts every node that is not running (a test that killed one and
    /// failed before restarting it), then waits until the group is whole.
    pub fn revive(&mut self, limit: Duration) {
        for node in &mut self.nodes {
            if !node.is_running() {
                node.restart();
            }
        }
        self.wait_healthy(limit);
    }

    /// Waits until the group is whole again: every node up and replicating
    /// from the primary every sentinel names, each sentinel seeing every
    /// replica and the other sentinels.
    pub fn wait_healthy(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let replicas = self.nodes.len() - 1;
        let others = self.sentinels.len() - 1;
        loop {
            let state = self.health(replicas, others);
            match state {
                Ok(()) => return,
                Err(why) if Instant::now() > deadline => panic!("the Sentinel group is not healthy: {why}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn health(&self, replicas: usize, others: usize) -> Result<(), String> {
        let primary = self.primary_port();
        for s in &self.sentinels {
            if self.master_addr(s.port) != Some(primary) {
                return Err(format!("sentinel {} names another primary", s.port));
            }
            let fields = pairs(&self.ask(s.port, &format!("SENTINEL MASTER {MASTER}")));
            let flags = fields.get("flags").cloned().unwrap_or_default();
            if flags != "master" {
                return Err(format!("sentinel {} sees the primary as {flags}", s.port));
            }
            let known = |name: &str| {
                fields
                    .get(name)
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0)
            };
            if known("num-other-sentinels") < others {
                return Err(format!(
                    "sentinel {} knows {} other sentinels",
                    s.port,
                    known("num-other-sentinels")
                ));
            }
            // Replicas it sees up (a killed one lingers as s_down).
            let up = self
                .ask(s.port, &format!("SENTINEL REPLICAS {MASTER}"))
                .matches("\r\nflags\r\n$5\r\nslave\r\n")
                .count();
            if up < replicas {
                return Err(format!("sentinel {} sees {up} replicas up", s.port));
            }
        }
        self.replicas_online(primary, replicas)
    }

    /// One command to a sentinel (after `AUTH` when they need a password).
    pub fn ask(&self, sentinel: u16, line: &str) -> String {
        match &self.sentinel_password {
            None => send(sentinel, line),
            Some(password) => send_all(sentinel, &[&format!("AUTH {password}"), line])
                .pop()
                .unwrap_or_default(),
        }
    }

    fn master_addr(&self, sentinel: u16) -> Option<u16> {
        let words = resp_words(&self.ask(sentinel, &format!("SENTINEL GET-MASTER-ADDR-BY-NAME {MASTER}")));
        words.get(1).and_then(|p| p.parse().ok())
    }

    fn replicas_online(&self, primary: u16, replicas: usize) -> Result<(), String> {
        let info = send(primary, "INFO replication");
        let online = info
            .lines()
            .filter(|l| l.starts_with("slave") && l.contains("state=online"))
            .count();
        if online < replicas {
            return Err(format!("the primary has {online} replicas online"));
        }
        Ok(())
    }

    fn wait_replicas_online(&self, primary: u16, limit: Duration) {
        let deadline = Instant::now() + limit;
        while let Err(why) = self.replicas_online(primary, self.nodes.len() - 1) {
            assert!(Instant::now() < deadline, "replicas did not sync: {why}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A node's role (`master`, `slave`), or empty when it does not answer.
pub fn role(port: u16) -> String {
    send(port, "ROLE").split("\r\n").nth(2).unwrap_or("").to_string()
}

/// A flat RESP array of field, value, field, value... as a map.
fn pairs(reply: &str) -> HashMap<String, String> {
    let words = resp_words(reply);
    words
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (c[0].clone(), c[1].clone()))
        .collect()
}

fn start_sentinel(primary: u16, quorum: usize, password: Option<&str>) -> Sentinel {
    let mut last_error = String::new();
    for _ in 0..5 {
        let dir = tempfile::tempdir().expect("a directory for the sentinel");
        let port = free_port();
        match spawn_sentinel(dir.path(), port, primary, quorum, password) {
            Ok(child) => {
                return Sentinel {
                    child: Some(child),
                    port,
                    _dir: dir,
                };
            }
            Err(e) => last_error = e,
        }
    }
    panic!("could not start a sentinel: {last_error}");
}

fn spawn_sentinel(
    dir: &Path,
    port: u16,
    primary: u16,
    quorum: usize,
    password: Option<&str>,
) -> Result<Child, String> {
    // Sentinel rewrites its configuration file as it learns the topology:
    // each one has its own.
    let config = dir.join("sentinel.conf");
    let mut text = format!(
        "port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {dir}\n\
         sentinel monitor {MASTER} 127.0.0.1 {primary} {quorum}\n\
         sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n\
         sentinel failover-timeout {MASTER} 4000\n\
         sentinel parallel-syncs {MASTER} 2\n",
        dir = dir.display()
    );
    if let Some(password) = password {
        text.push_str(&format!(
            "requirepass {password}\nsentinel sentinel-pass {password}\n"
        ));
    }
    std::fs::write(&config, text).map_err(|e| format!("write {}: {e}", config.display()))?;
    let mut child = Command::new(redis_server_binary())
        .arg(&config)
        .arg("--sentinel")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn redis-server --sentinel: {e}"))?;
    reap_with_this_process(child.id(), dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A sentinel with a password answers -NOAUTH: up all the same.
        let pong = send(port, "PING");
        if pong.starts_with("+PONG") || pong.starts_with("-NOAUTH") {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the sentinel exited at start-up with {status} (port {port} taken?)"
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!("the sentinel did not answer PING on port {port}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
