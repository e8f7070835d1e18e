//! [`RedisCluster`]: a real Redis Cluster (primaries with a replica each) on
//! free loopback ports, built with `redis-cli --cluster create`, for the
//! Cluster and sharded-queue tests. Nodes are found by port: after a
//! failover or a slot migration any of them may own any slot.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{RedisOptions, RedisServer, redis_server_binary};

/// `cluster-node-timeout`: how long a primary may be silent before its
/// replica takes over.
pub(crate) const NODE_TIMEOUT_MS: u64 = 1000;

/// Primaries with replicas, slots spread evenly by `redis-cli`.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct ClusterNode {
    pub id: String,
    pub port: u16,
    pub primary: bool,
    pub failed: bool,
    /// The primary's id, for a replica.
    pub replica_of: Option<String>,
    /// Slot ranges served (primaries), inclusive.
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// Starts `primaries * (1 + replicas)` nodes, joins them with
    /// `redis-cli --cluster create ... --cluster-replicas N --cluster-yes`,
    /// and waits until every node says `cluster_state:ok`, knows every
    /// other node, and every replica is in sync.
    pub fn start(primaries: usize, replicas: usize) -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                RedisServer::start_with(RedisOptions {
                    cluster: true,
                    ..RedisOptions::default()
                })
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port())).collect();
        let output = Command::new(redis_cli_binary())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok(Duration::from_secs(60));
        cluster
    }

    /// The test binary's cluster (three primaries, a replica each), started
    /// on first use and kept until the binary ends, once it is whole again
    /// (a test before may have killed a node). The guard lets a test that
    /// kills nodes or moves slots have it to itself.
    pub fn shared() -> std::sync::MutexGuard<'static, RedisCluster> {
        let cluster = shared_cluster();
        cluster.wait_ok(Duration::from_secs(60));
        cluster
    }

    /// A `redis://` URL of one live node (any node serves as a seed).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.live_port())
    }

    /// A `redis://` URL naming every node, comma-separated.
    pub fn seeds_url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port()))
            .collect();
        format!("redis://{}", seeds.join(","))
    }

    /// Every node's port, in start order.
    pub fn node_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port()).collect()
    }

    /// The node on `port` (to kill or restart it).
    pub fn node(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|n| n.port() == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// The cluster as one live node sees it.
    pub fn topology(&self) -> Vec<ClusterNode> {
        parse_nodes(&cli(self.live_port(), &["CLUSTER", "NODES"]))
    }

    /// The ports of the primaries that serve slots now, by their first slot.
    pub fn primaries(&self) -> Vec<u16> {
        let mut primaries: Vec<ClusterNode> = self
            .topology()
            .into_iter()
            .filter(|n| n.primary && !n.failed && !n.slots.is_empty())
            .collect();
        primaries.sort_by_key(|n| n.slots[0].0);
        primaries.into_iter().map(|n| n.port).collect()
    }

    /// Runs one command with `redis-cli -c` (which follows redirections) and
    /// returns what it printed, trimmed.
    pub fn cmd(&self, args: &[&str]) -> String {
        cli_cluster(self.live_port(), args)
    }

    /// The slot of `key`.
    pub fn keyslot(&self, key: &str) -> u16 {
        let reply = cli(self.live_port(), &["CLUSTER", "KEYSLOT", key]);
        reply
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("CLUSTER KEYSLOT said {reply:?}"))
    }

    /// The port of the primary serving `slot`.
    pub fn slot_owner(&self, slot: u16) -> u16 {
        self.topology()
            .into_iter()
            .find(|n| n.primary && !n.failed && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|n| n.port)
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// How many keys the node on `port` holds.
    pub fn dbsize(&self, port: u16) -> u64 {
        cli(port, &["DBSIZE"]).trim().parse().unwrap_or(0)
    }

    /// Moves `slot` to the primary on `to` the way `redis-cli --cluster
    /// reshard` does (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE` in batches of
    /// `batch` keys with `pause` between them, then `SETSLOT NODE` on every
    /// primary), so clients meet `ASK` and `TRYAGAIN` while it runs.
    /// Returns how many keys moved.
    pub fn migrate_slot(&self, slot: u16, to: u16, batch: usize, pause: Duration) -> usize {
        let migration = self.begin_migration(slot, to);
        let mut moved = 0;
        loop {
            let keys = migration.keys_left(batch);
            if keys.is_empty() {
                break;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            migration.migrate(&keys);
            moved += keys.len();
            std::thread::sleep(pause);
        }
        migration.finish();
        moved
    }

    /// Starts moving `slot` to the primary on `to` (`SETSLOT IMPORTING` on
    /// it, `MIGRATING` on the owner), leaving every key where it is: the
    /// test then moves keys one by one ([`Migration::migrate`]) and ends it
    /// ([`Migration::finish`]).
    pub fn begin_migration(&self, slot: u16, to: u16) -> Migration {
        let nodes = self.topology();
        let from = self.slot_owner(slot);
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let id = |port: u16| {
            nodes
                .iter()
                .find(|n| n.port == port)
                .map(|n| n.id.clone())
                .unwrap_or_else(|| panic!("no node on {port}"))
        };
        let migration = Migration {
            slot,
            from,
            to,
            to_id: id(to),
            others: nodes
                .iter()
                .filter(|n| n.primary && !n.failed && n.port != from && n.port != to)
                .map(|n| n.port)
                .collect(),
        };
        let slot_text = slot.to_string();
        expect_ok(cli(
            to,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &id(from)],
        ));
        expect_ok(cli(
            from,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &migration.to_id],
        ));
        migration
    }

    /// Waits until every live node says `cluster_state:ok` with all 16384
    /// slots served, knows every live node, and every replica's link to its
    /// primary is up.
    pub fn wait_ok(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            match self.health() {
                Ok(()) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("the cluster is not healthy after {limit:?}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn health(&self) -> Result<(), String> {
        let live: Vec<u16> = self
            .nodes
            .iter()
            .filter(|n| crate::send(n.port(), "PING").starts_with("+PONG"))
            .map(|n| n.port())
            .collect();
        for &port in &live {
            let info = fields(&cli(port, &["CLUSTER", "INFO"]));
            if info.get("cluster_state").map(String::as_str) != Some("ok") {
                return Err(format!(
                    "{port}: cluster_state is {:?}",
                    info.get("cluster_state")
                ));
            }
            if info.get("cluster_slots_ok").map(String::as_str) != Some("16384") {
                return Err(format!(
                    "{port}: cluster_slots_ok is {:?}",
                    info.get("cluster_slots_ok")
                ));
            }
            let nodes = parse_nodes(&cli(port, &["CLUSTER", "NODES"]));
            for &other in &live {
                if !nodes.iter().any(|n| n.port == other && !n.failed) {
                    return Err(format!("{port} does not know {other} as live"));
                }
            }
            let replication = fields(&cli(port, &["INFO", "replication"]));
            if replication.get("role").map(String::as_str) == Some("slave")
                && replication.get("master_link_status").map(String::as_str) != Some("up")
            {
                return Err(format!("{port}: replica link is not up"));
            }
        }
        Ok(())
    }

    fn live_port(&self) -> u16 {
        self.nodes
            .iter()
            .map(|n| n.port())
            .find(|&p| crate::send(p, "PING").starts_with("+PONG"))
            .expect("no cluster node answers")
    }
}

/// A slot on its way from one primary to another (see
/// [`RedisCluster::begin_migration`]).
#[derive(Debug)]
pub struct Migration {
    slot: u16,
    from: u16,
    to: u16,
    to_id: String,
    others: Vec<u16>,
}

impl Migration {
    /// Up to `n` keys of the slot still on the old owner.
    pub fn keys_left(&self, n: usize) -> Vec<String> {
        let reply = cli(
            self.from,
            &["CLUSTER", "GETKEYSINSLOT", &self.slot.to_string(), &n.to_string()],
        );
        reply
            .lines()
            .filter(|k| !k.is_empty())
            .map(String::from)
            .collect()
    }

    /// Moves `keys` to the new owner (`MIGRATE ... KEYS`).
    pub fn migrate(&self, keys: &[&str]) {
        let to = self.to.to_string();
        let mut args = vec!["MIGRATE", "127.0.0.1", to.as_str(), "", "0", "5000", "KEYS"];
        args.extend(keys.iter().copied());
        let reply = cli(self.from, &args);
        assert!(reply == "OK" || reply == "NOKEY", "MIGRATE said {reply:?}");
    }

    /// Moves what is left and gives the slot to the new owner: on it
    /// first, then the old one, then every other primary (as redis-cli
    /// does), so no node ever answers for a slot it lost.
    pub fn finish(self) {
        loop {
            let keys = self.keys_left(100);
            if keys.is_empty() {
                break;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.migrate(&keys);
        }
        let slot = self.slot.to_string();
        expect_ok(cli(self.to, &["CLUSTER", "SETSLOT", &slot, "NODE", &self.to_id]));
        expect_ok(cli(
            self.from,
            &["CLUSTER", "SETSLOT", &slot, "NODE", &self.to_id],
        ));
        for &port in &self.others {
            let _ = cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &self.to_id]);
        }
    }
}

/// The path of `redis-cli` (beside `redis-server`), or a panic that says
/// how to get it.
pub fn redis_cli_binary() -> PathBuf {
    let beside = redis_server_binary().with_file_name("redis-cli");
    if beside.exists() {
        return beside;
    }
    panic!("redis-cli is not installed; install it (Debian: apt-get install redis-tools)");
}

fn cli(port: u16, args: &[&str]) -> String {
    run_cli(port, args, false)
}

fn cli_cluster(port: u16, args: &[&str]) -> String {
    run_cli(port, args, true)
}

fn run_cli(port: u16, args: &[&str], follow: bool) -> String {
    let mut command = Command::new(redis_cli_binary());
    command.args(["-h", "127.0.0.1", "-p", &port.to_string()]);
    if follow {
        command.arg("-c");
    }
    let output = command.args(args).output().expect("run redis-cli");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn expect_ok(reply: String) {
    assert_eq!(reply.trim(), "OK", "CLUSTER SETSLOT said {reply:?}");
}

fn fields(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_nodes(text: &str) -> Vec<ClusterNode> {
    text.lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.len() < 8 {
                return None;
            }
            let addr = words[1].split('@').next()?;
            let port = addr.rsplit(':').next()?.parse().ok()?;
            let flags: Vec<&str> = words[2].split(',').collect();
            let slots = words[8..]
                .iter()
                .filter(|w| !w.starts_with('['))
                .filter_map(|w| match w.split_once('-') {
                    Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                    None => w.parse().ok().map(|s| (s, s)),
                })
                .collect();
            Some(ClusterNode {
                id: words[0].to_string(),
                port,
                primary: flags.contains(&"master"),
                failed: flags
                    .iter()
                    .any(|f| *f == "fail" || *f == "fail?" || *f == "noaddr"),
                replica_of: (words[3] != "-").then(|| words[3].to_string()),
                slots,
            })
        })
        .collect()
}

/// The Redis a lifecycle test runs on: its own `redis-server` by default,
/// or, with `JOBFLEET_TEST_TOPOLOGY=cluster`, a key prefix of its own on one
/// Redis Cluster shared by the test binary (three primaries, a replica each),
/// so the same tests check every transition on both topologies.
#[derive(Debug)]
pub enum TestRedis {
    /// A private server.
    Single(RedisServer),
    /// A prefix on the shared cluster.
    Cluster {
        /// The key prefix this test's client must use.
        prefix: String,
    },
}

impl TestRedis {
    /// Starts a server, or takes a fresh prefix on the shared cluster.
    pub fn start() -> TestRedis {
        match std::env::var("JOBFLEET_TEST_TOPOLOGY").as_deref() {
            Ok("cluster") => {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                drop(shared_cluster()); // started once, here
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                TestRedis::Cluster {
                    prefix: format!("t{n}"),
                }
            }
            Ok("single") | Err(_) => TestRedis::Single(RedisServer::start()),
            Ok(other) => panic!("JOBFLEET_TEST_TOPOLOGY={other}: use single or cluster"),
        }
    }

    /// The URL to connect to.
    pub fn url(&self) -> String {
        match self {
            TestRedis::Single(server) => server.url(),
            TestRedis::Cluster { .. } => shared_cluster().seeds_url(),
        }
    }

    /// The key prefix the test's client must use.
    pub fn prefix(&self) -> String {
        match self {
            TestRedis::Single(_) => "jobfleet".into(),
            TestRedis::Cluster { prefix } => prefix.clone(),
        }
    }

    /// Sends an inline command to the node that holds `key` (the server,
    /// or the key's primary on a cluster): for node-wide commands such as
    /// `INFO` and `CONFIG RESETSTAT`. Returns the raw reply.
    pub fn cmd_at(&self, key: &str, line: &str) -> String {
        match self {
            TestRedis::Single(server) => server.cmd(line),
            TestRedis::Cluster { .. } => {
                let cluster = shared_cluster();
                crate::send(cluster.slot_owner(cluster.keyslot(key)), line)
            }
        }
    }

    /// How many keys the test's prefix has (on every primary, on a cluster).
    pub fn count_keys(&self) -> usize {
        let pattern = format!("KEYS {}:*", self.prefix());
        match self {
            TestRedis::Single(server) => crate::resp_words(&server.cmd(&pattern)).len(),
            TestRedis::Cluster { .. } => shared_cluster()
                .primaries()
                .into_iter()
                .map(|p| crate::resp_words(&crate::send(p, &pattern)).len())
                .sum(),
        }
    }

    /// Sends one inline command whose first argument is a key (to the node
    /// that owns it, on a cluster); returns the raw reply.
    pub fn cmd(&self, line: &str) -> String {
        match self {
            TestRedis::Single(server) => server.cmd(line),
            TestRedis::Cluster { .. } => {
                let cluster = shared_cluster();
                let key = line.split_whitespace().nth(1).expect("a command with a key");
                crate::send(cluster.slot_owner(cluster.keyslot(key)), line)
            }
        }
    }
}

fn shared_cluster() -> std::sync::MutexGuard<'static, RedisCluster> {
    static CLUSTER: std::sync::OnceLock<std::sync::Mutex<RedisCluster>> = std::sync::OnceLock::new();
    CLUSTER
        .get_or_init(|| std::sync::Mutex::new(RedisCluster::start(3, 1)))
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
