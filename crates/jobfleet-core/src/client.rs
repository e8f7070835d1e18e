//! [`Client`]: the connection to jobfleet's Redis, queue handles, and the
//! cross-queue reads (find a job by id, wait, events, fleet stats, workers).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::connection::{Conn, Delivery, Mode, Subscriber, Topology};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::job::{Job, JobState, validate_job_id, validate_queue_name};
use crate::keys::{DEFAULT_PREFIX, GlobalKeys};
use crate::queue::{Queue, QueueStats};
use crate::scripts;

/// Retention, retry and size policy. The defaults keep Redis memory bounded:
/// finished records expire and the dead set is capped.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How long a completed or cancelled job's record is kept (0: deleted at once).
    pub completed_retention: Duration,
    /// How long a dead job is kept, in the dead set and as a record.
    pub dead_retention: Duration,
    /// The most jobs the dead set holds; the oldest are dropped first.
    pub dead_max_count: u64,
    /// Retry backoff: base * 2^(attempt-1), capped, plus jitter.
    pub backoff_base: Duration,
    /// The longest retry backoff.
    pub backoff_cap: Duration,
    /// Up to this fraction is added to each backoff at random, so retries of
    /// jobs that failed together spread out.
    pub backoff_jitter: f64,
    /// A job whose worker died this many times while running it is buried.
    pub poison_cap: u32,
    /// The largest payload accepted, bytes of JSON text: checked by this
    /// client before submitting, and by the claim script for every job
    /// (whoever wrote it), which buries a larger one.
    pub max_payload_bytes: usize,
    /// The largest result a worker writes back, bytes of JSON text (results
    /// are spliced into events); a larger one fails the job permanently.
    pub max_result_bytes: usize,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            completed_retention: Duration::from_secs(3600),
            dead_retention: Duration::from_secs(7 * 24 * 3600),
            dead_max_count: 100_000,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(3600),
            backoff_jitter: 0.25,
            poison_cap: 3,
            max_payload_bytes: crate::job::DEFAULT_MAX_PAYLOAD_BYTES,
            max_result_bytes: crate::job::DEFAULT_MAX_RESULT_BYTES,
        }
    }
}

/// A connection to jobfleet's Redis. Cheap to clone: clones share one
/// multiplexed, self-reconnecting connection.
#[derive(Clone)]
pub struct Client {
    topology: Arc<Topology>,
    conn: Conn,
    /// With `replicas > 0`: connections of their own for writes confirmed
    /// with `WAIT`, which blocks the connection it is sent on until the
    /// replicas have applied the write; several, so that many writes wait
    /// for their replicas at once.
    durable: Arc<[Conn]>,
    next_durable: Arc<AtomicUsize>,
    replication: Replication,
    prefix: Arc<str>,
    global: Arc<GlobalKeys>,
    policy: Arc<Policy>,
    /// Queues this client has already added to the known-queues set.
    registered: Arc<Mutex<HashSet<String>>>,
    /// Worker outcomes written but not confirmed by enough replicas.
    unconfirmed: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A job that reached a final state, as `wait` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finished {
    /// The job id.
    pub id: String,
    /// Its queue.
    pub queue: String,
    /// The final state.
    pub state: JobState,
    /// The result, when completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The error, when dead or cancelled by its worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What `wait` found.
#[derive(Debug, Clone, Default)]
pub struct WaitReport {
    /// Jobs that reached a final state, in the order they did.
    pub finished: Vec<Finished>,
    /// Jobs with no record (never submitted, or expired).
    pub missing: Vec<String>,
    /// Jobs still not final when the timeout ran out.
    pub unfinished: Vec<String>,
}

/// One live worker process, as it describes itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Worker id (changes if the worker is recovered and re-registers).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Queues it serves, in priority order.
    pub queues: Vec<String>,
    /// The tasks it runs (it claims no other); empty from a worker that
    /// does not say, which runs whatever it claims.
    #[serde(default)]
    pub tasks: Vec<String>,
    /// Its concurrency (slots).
    pub concurrency: u32,
    /// Jobs running now.
    pub active: u32,
    /// Jobs it has finished (any outcome).
    pub processed: u64,
    /// When it started (Redis ms).
    pub started_ms: u64,
    /// Its last heartbeat (Redis ms).
    pub last_heartbeat_ms: u64,
}

/// Queue and worker statistics (the `stats --json` shape).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FleetStats {
    /// One entry per queue.
    pub queues: Vec<QueueStats>,
    /// Live workers.
    pub workers: Vec<WorkerInfo>,
    /// The Redis servers: which node is primary, the replicas' lag.
    pub redis: TopologyInfo,
}

/// Parked jobs of a task no live worker of their queue runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unserved {
    /// The queue.
    pub queue: String,
    /// The task.
    pub task: String,
    /// How many of its jobs wait.
    pub jobs: u64,
}

impl std::fmt::Display for Unserved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jobs = match self.jobs {
            1 => "1 job waits".to_string(),
            n => format!("{n} jobs wait"),
        };
        write!(
            f,
            "no live worker runs task {} on queue {}: {jobs} for one",
            self.task, self.queue
        )
    }
}

impl FleetStats {
    /// The parked tasks that no live worker serving their queue runs: their
    /// jobs wait until such a worker starts.
    pub fn unserved(&self) -> Vec<Unserved> {
        let mut out = Vec::new();
        for q in &self.queues {
            for (task, &jobs) in &q.parked {
                if jobs > 0 && !self.workers.iter().any(|w| w.runs(&q.name, task)) {
                    out.push(Unserved {
                        queue: q.name.clone(),
                        task: task.clone(),
                        jobs,
                    });
                }
            }
        }
        out
    }
}

impl WorkerInfo {
    /// Whether this worker claims `task`'s jobs from `queue`.
    pub fn runs(&self, queue: &str, task: &str) -> bool {
        self.queues.iter().any(|q| q == queue)
            && (self.tasks.is_empty() || self.tasks.iter().any(|t| t == task))
    }
}

/// The Redis servers behind a client, as `stats` and the dashboard show them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopologyInfo {
    /// `single`, `sentinel` or `cluster`.
    pub mode: String,
    /// The primary's address (`host:port`).
    pub primary: String,
    /// With Sentinel: the master name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub master_name: Option<String>,
    /// With Sentinel: how many sentinels the URL names.
    pub sentinels: usize,
    /// The primary's replication offset (bytes of writes since it became primary).
    pub offset: u64,
    /// Its replicas, as the primary sees them.
    pub replicas: Vec<ReplicaInfo>,
    /// On a Cluster: every node, as `CLUSTER NODES` lists it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<ClusterNodeInfo>,
}

/// One node of a Redis Cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNodeInfo {
    /// `host:port`.
    pub addr: String,
    /// `primary` or `replica`.
    pub role: String,
    /// Whether the cluster holds it failed.
    pub failed: bool,
    /// How many of the 16384 slots it serves (primaries).
    pub slots: u32,
    /// Which: inclusive ranges.
    #[serde(skip)]
    pub ranges: Vec<(u16, u16)>,
    /// A replica's primary (`host:port`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica_of: Option<String>,
}

impl ClusterNodeInfo {
    /// Reads `CLUSTER NODES` text.
    fn parse_all(text: &str) -> Vec<ClusterNodeInfo> {
        let rows: Vec<Vec<&str>> = text
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .filter(|w| w.len() >= 8)
            .collect();
        let addr_of = |id: &str| {
            rows.iter()
                .find(|w| w[0] == id)
                .map(|w| w[1].split('@').next().unwrap_or("").to_string())
        };
        let mut nodes: Vec<ClusterNodeInfo> = rows
            .iter()
            .map(|w| {
                let flags: Vec<&str> = w[2].split(',').collect();
                let ranges: Vec<(u16, u16)> = w[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|n| (n, n)),
                    })
                    .collect();
                let slots = ranges
                    .iter()
                    .map(|(a, b)| u32::from(*b) + 1 - u32::from(*a))
                    .sum();
                ClusterNodeInfo {
                    addr: w[1].split('@').next().unwrap_or("").to_string(),
                    role: if flags.contains(&"master") {
                        "primary"
                    } else {
                        "replica"
                    }
                    .into(),
                    failed: flags.iter().any(|f| f.starts_with("fail")),
                    slots,
                    ranges,
                    replica_of: (w[3] != "-").then(|| addr_of(w[3])).flatten(),
                }
            })
            .collect();
        nodes.sort_by(|a, b| (&a.role, &a.addr).cmp(&(&b.role, &b.addr)));
        nodes
    }
}

/// One replica of the primary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaInfo {
    /// `host:port`.
    pub addr: String,
    /// `online` once in sync; `wait_bgsave`, `send_bulk` while catching up.
    pub state: String,
    /// Bytes of writes it has not confirmed yet.
    pub lag_bytes: u64,
    /// Seconds since it last confirmed its offset.
    pub lag_secs: u64,
}

impl TopologyInfo {
    /// Reads `INFO replication` text.
    fn from_info(info: &str) -> TopologyInfo {
        let mut topology = TopologyInfo {
            mode: "single".into(),
            ..TopologyInfo::default()
        };
        let mut offsets = Vec::new();
        for line in info.lines().map(str::trim) {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            if key == "master_repl_offset" {
                topology.offset = value.parse().unwrap_or(0);
            } else if key.starts_with("slave") && key[5..].chars().all(|c| c.is_ascii_digit()) {
                let field = |name: &str| {
                    value
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                        .unwrap_or("")
                        .to_string()
                };
                offsets.push(field("offset").parse::<u64>().unwrap_or(0));
                topology.replicas.push(ReplicaInfo {
                    addr: format!("{}:{}", field("ip"), field("port")),
                    state: field("state"),
                    lag_bytes: 0,
                    lag_secs: field("lag").parse().unwrap_or(0),
                });
            }
        }
        for (replica, offset) in topology.replicas.iter_mut().zip(offsets) {
            replica.lag_bytes = topology.offset.saturating_sub(offset);
        }
        topology
    }
}

/// A message from a [`Subscription`].
#[derive(Debug, Clone, PartialEq)]
pub enum Feed {
    /// (Re)subscribed: messages published while disconnected were missed, so
    /// state read before this point may be stale.
    Subscribed,
    /// The reader fell so far behind that messages were dropped (the buffer
    /// is bounded): as after a resubscription, state read before may be stale.
    Lagged,
    /// A message on one of the channels.
    Message {
        /// The channel it came on.
        channel: String,
        /// Its payload.
        payload: String,
    },
}

/// Messages a [`Subscription`] buffers for a slow reader before it drops
/// them (and says so with [`Feed::Lagged`]).
pub const SUBSCRIPTION_BUFFER: usize = 10_000;

/// A pub/sub subscription that reconnects by itself. A background task reads
/// the connection into a bounded local buffer, so a slow reader never makes
/// Redis buffer its output (Redis would disconnect it) and never grows this
/// process' memory without bound: past [`SUBSCRIPTION_BUFFER`] messages are
/// dropped and the reader is told.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Feed>,
    lagged: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    /// The next message; `None` never happens while the subscription lives.
    pub async fn next(&mut self) -> Option<Feed> {
        if self.lagged.swap(false, Ordering::AcqRel) {
            return Some(Feed::Lagged);
        }
        let feed = self.rx.recv().await;
        if self.lagged.swap(false, Ordering::AcqRel) {
            // Dropped while we waited: say so first, the message is newer.
            return Some(Feed::Lagged);
        }
        feed
    }

    /// The next event; `Some(None)` when events may have been missed (a
    /// resubscription, a reader that fell behind, or a message that is not a
    /// valid event), after which state must be read again.
    pub async fn next_event(&mut self) -> Option<Option<Event>> {
        match self.next().await? {
            Feed::Subscribed | Feed::Lagged => Some(None),
            Feed::Message { payload, .. } => match serde_json::from_str::<Event>(&payload) {
                Ok(event) => Some(Some(event)),
                Err(e) => {
                    tracing::debug!(%e, "an event could not be read; treating it as missed");
                    Some(None)
                }
            },
        }
    }

    /// Events already received and not yet read, without waiting.
    fn buffered_events(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        while let Ok(feed) = self.rx.try_recv() {
            if let Feed::Message { payload, .. } = feed
                && let Ok(event) = serde_json::from_str::<Event>(&payload)
            {
                events.push(event);
            }
        }
        events
    }
}

/// The writing end of a [`Subscription`]'s bounded buffer.
struct Feeder {
    tx: mpsc::Sender<Feed>,
    lagged: Arc<AtomicBool>,
}

impl Feeder {
    fn new(capacity: usize) -> (Feeder, mpsc::Receiver<Feed>, Arc<AtomicBool>) {
        let (tx, rx) = mpsc::channel(capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        (
            Feeder {
                tx,
                lagged: lagged.clone(),
            },
            rx,
            lagged,
        )
    }

    /// Buffers `feed`, or drops it and flags the loss when the buffer is
    /// full. False once the reader is gone.
    fn deliver(&self, feed: Feed) -> bool {
        match self.tx.try_send(feed) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.lagged.store(true, Ordering::Release);
                true
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How the client connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Key prefix (default `jobfleet`).
    pub prefix: String,
    /// Retention, retry and size policy.
    pub policy: Policy,
    /// Reconnect attempts per failing command before it errors.
    pub retries: usize,
    /// How long a command may wait for its reply.
    pub response_timeout: Duration,
    /// Replicas that must confirm each submit (and each worker outcome)
    /// before it counts as written: 0 (the default) does not ask.
    pub replicas: u32,
    /// How long to wait for those replicas (at least 1 ms: `WAIT` with 0
    /// would wait forever).
    pub replica_timeout: Duration,
    /// With Sentinel: how long a command waits for a new primary when the
    /// current one is gone (sentinels need `down-after-milliseconds` plus an
    /// election), before it fails.
    pub failover_wait: Duration,
}

/// Connections for durable writes, per client: each `WAIT` holds its
/// connection until the replicas have applied the write, so one connection
/// would apply every batch's replication wait one after another.
const DURABLE_CONNECTIONS: usize = 4;

/// Durable writes: how many replicas confirm a write, within how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replicas asked for (0: writes are not confirmed).
    pub replicas: u32,
    /// How long `WAIT` waits for them.
    pub timeout: Duration,
}

/// What `WAIT` said of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Confirmation {
    /// Not asked (`replicas` is 0).
    NotAsked,
    /// Enough replicas have it.
    Confirmed,
    /// Only `reached` replicas confirmed it in time.
    Short {
        /// Replicas that did.
        reached: u32,
    },
}

impl Default for ConnectOptions {
    fn default() -> ConnectOptions {
        ConnectOptions {
            prefix: DEFAULT_PREFIX.to_string(),
            policy: Policy::default(),
            retries: 3,
            response_timeout: Duration::from_secs(10),
            replicas: 0,
            replica_timeout: Duration::from_secs(2),
            failover_wait: Duration::from_secs(15),
        }
    }
}

impl Client {
    /// Connects with default options.
    pub async fn connect(url: &str) -> Result<Client> {
        Client::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects; fails when Redis cannot be reached after the retries.
    ///
    /// `url` is `redis://[user:password@]host:port[/db]` (or `rediss://`) for
    /// one server, or
    /// `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/db]`
    /// (options `?sentinel_password=...&tls=true`) for a primary that
    /// Sentinel names; the client follows a failover by itself.
    pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Client> {
        let topology = Topology::open(url).await?;
        // A WAIT may take its whole timeout: the reply must be allowed longer.
        let response_timeout = options
            .response_timeout
            .max(options.replica_timeout + Duration::from_secs(1));
        let connect = || topology.connect(options.retries, response_timeout, options.failover_wait);
        let mut conn = connect().await?;
        // A server that wants a password says so only to the first command.
        let () = redis::cmd("PING").query_async(&mut conn).await?;
        let mut durable = Vec::new();
        if options.replicas > 0 {
            for _ in 0..DURABLE_CONNECTIONS {
                durable.push(connect().await?);
            }
        }
        Ok(Client {
            topology,
            conn,
            durable: durable.into(),
            next_durable: Arc::default(),
            replication: Replication {
                replicas: options.replicas,
                // WAIT with 0 would wait forever.
                timeout: options.replica_timeout.max(Duration::from_millis(1)),
            },
            global: Arc::new(GlobalKeys::new(&options.prefix)),
            prefix: options.prefix.into(),
            policy: Arc::new(options.policy),
            registered: Arc::default(),
            unconfirmed: Arc::default(),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The global keys.
    pub fn global_keys(&self) -> &GlobalKeys {
        &self.global
    }

    /// A connection handle (multiplexed; clones are cheap). It always
    /// talks to the primary, following a failover.
    pub fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The durable-write setting in force.
    pub fn replication(&self) -> Replication {
        self.replication
    }

    /// Runs a script that writes; with `replicas > 0`, in one pipeline with
    /// `WAIT` on the durable connection, so the confirmation covers exactly
    /// this write (a `WAIT` on a fresh connection would confirm nothing).
    pub(crate) async fn write<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<(T, Confirmation)> {
        if self.durable.is_empty() {
            let reply = invocation.invoke_async(&mut self.conn()).await?;
            return Ok((reply, Confirmation::NotAsked));
        }
        let next = self.next_durable.fetch_add(1, Ordering::Relaxed);
        let durable = &self.durable[next % self.durable.len()];
        let Replication { replicas, timeout } = self.replication;
        let mut pipe = redis::pipe();
        pipe.invoke_script(invocation)
            .cmd("WAIT")
            .arg(replicas)
            .arg(timeout.as_millis() as u64);
        let mut conn = durable.clone();
        let reply: redis::RedisResult<(T, u32)> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                // The script did not run: load it and send the pair again.
                invocation.load_async(&mut conn).await?;
                pipe.query_async(&mut conn).await
            }
            other => other,
        };
        let (value, reached) = reply?;
        let confirmation = if reached >= replicas {
            Confirmation::Confirmed
        } else {
            Confirmation::Short { reached }
        };
        Ok((value, confirmation))
    }

    /// Worker outcomes (acks, fails) written on the primary but not
    /// confirmed by the replicas asked for, since this client connected.
    /// Such an outcome is not undone: a failover now would roll it back and
    /// the job would run again (at least once, never lost).
    pub fn unconfirmed_writes(&self) -> u64 {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    pub(crate) fn unconfirmed(&self, what: &str, jobs: usize, confirmation: Confirmation) {
        if let Confirmation::Short { reached } = confirmation {
            self.unconfirmed.fetch_add(jobs as u64, Ordering::Relaxed);
            tracing::warn!(
                what,
                jobs,
                reached,
                wanted = self.replication.replicas,
                "written but not confirmed by the replicas in time: a failover now would run these jobs again"
            );
        }
    }

    /// Which servers this client talks to, and the replicas' lag (read from
    /// the primary's `INFO replication`).
    pub async fn topology(&self) -> Result<TopologyInfo> {
        if self.topology.mode() == Mode::Cluster {
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut self.conn())
                .await?;
            let nodes = ClusterNodeInfo::parse_all(&text);
            let primaries: Vec<&str> = nodes
                .iter()
                .filter(|n| n.role == "primary" && !n.failed && n.slots > 0)
                .map(|n| n.addr.as_str())
                .collect();
            return Ok(TopologyInfo {
                mode: "cluster".into(),
                primary: primaries.join(","),
                nodes,
                ..TopologyInfo::default()
            });
        }
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut self.conn())
            .await?;
        let mut topology = TopologyInfo::from_info(&info);
        topology.primary = self.topology.primary_addr().unwrap_or_default();
        if let Mode::Sentinel { master, sentinels } = self.topology.mode() {
            topology.mode = "sentinel".into();
            topology.master_name = Some(master);
            topology.sentinels = sentinels;
        }
        Ok(topology)
    }

    /// On a Cluster, the primary (`host:port`) that holds each shard of
    /// `queue`, shard 0 first; on one server, nothing.
    pub async fn shard_nodes(&self, queue: &str) -> Result<Vec<String>> {
        if self.topology.mode() != Mode::Cluster {
            return Ok(Vec::new());
        }
        let nodes = self.topology().await?.nodes;
        let mut out = Vec::new();
        for shard in self.queue(queue)?.shards().await? {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(&shard.keys().pending)
                .query_async(&mut self.conn())
                .await?;
            let owner = nodes
                .iter()
                .find(|n| {
                    n.role == "primary"
                        && !n.failed
                        && n.ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot))
                })
                .map(|n| n.addr.clone())
                .unwrap_or_else(|| "?".into());
            out.push(owner);
        }
        Ok(out)
    }

    /// Whether this client's pub/sub is sharded (on a Redis Cluster).
    pub fn sharded_pubsub(&self) -> bool {
        self.topology.sharded_pubsub()
    }

    /// A handle on queue `name` (the name is validated).
    pub fn queue(&self, name: &str) -> Result<Queue> {
        Queue::new(self.clone(), name)
    }

    /// Adds a queue to the known-queues set, once per client.
    pub(crate) async fn register_queue(&self, name: &str) -> Result<()> {
        if self.registered.lock().expect("poisoned").contains(name) {
            return Ok(());
        }
        let _: () = self.conn().sadd(&self.global.queues, name).await?;
        self.registered.lock().expect("poisoned").insert(name.to_string());
        Ok(())
    }

    /// Removes an empty queue nobody serves: its counters, its workers set
    /// and its name in the known-queues set. Refused with
    /// [`Error::QueueBusy`] while it holds any job or a live worker (one that
    /// beat within `live_within`) serves it.
    pub async fn forget_queue(&self, name: &str, live_within: Duration) -> Result<()> {
        let queue = self.queue(name)?;
        queue.forget(live_within).await?;
        let _: () = self.conn().srem(&self.global.queues, name).await?;
        self.registered.lock().expect("poisoned").remove(name);
        // A producer may have submitted between the two steps (the set lives
        // in another Cluster slot): a queue with work is known again.
        let stats = queue.stats().await?;
        if stats.pending + stats.scheduled + stats.active + stats.dead > 0 {
            let _: () = self.conn().sadd(&self.global.queues, name).await?;
            return Err(Error::QueueBusy {
                queue: name.to_string(),
                what: "jobs submitted meanwhile".into(),
            });
        }
        Ok(())
    }

    /// Every known queue, sorted by name.
    pub async fn queue_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.conn().smembers(&self.global.queues).await?;
        names.sort();
        Ok(names)
    }

    /// Finds a job by id: in `queue` when given, else in every known queue.
    /// An id is unique within a queue only: when it names a job in several
    /// queues and none is given, the answer is [`Error::AmbiguousJob`].
    pub async fn find_job(&self, id: &str, queue: Option<&str>) -> Result<Job> {
        validate_job_id(id)?;
        let names = match queue {
            Some(q) => vec![q.to_string()],
            None => self.queue_names().await?,
        };
        let mut found = Vec::new();
        for name in names {
            if let Some(job) = self.queue(&name)?.status(id).await? {
                found.push(job);
            }
        }
        match found.len() {
            0 => Err(Error::JobNotFound(id.to_string())),
            1 => Ok(found.pop().expect("one")),
            _ => Err(Error::AmbiguousJob {
                id: id.to_string(),
                queues: found.into_iter().map(|j| j.queue).collect(),
            }),
        }
    }

    /// Finds the queue of each job id (in `queue` when given, else in every
    /// known queue), a pipelined round trip per queue. Ids with no record
    /// are left out; an id in two queues is [`Error::AmbiguousJob`].
    pub async fn locate_jobs(&self, ids: &[String], queue: Option<&str>) -> Result<HashMap<String, String>> {
        for id in ids {
            validate_job_id(id)?;
        }
        let names = match queue {
            Some(q) => vec![q.to_string()],
            None => self.queue_names().await?,
        };
        let mut found: HashMap<String, String> = HashMap::new();
        for name in names {
            // Every id in every queue: an id found twice is ambiguous.
            let rows = self.queue(&name)?.fields_many(ids, &["state"]).await?;
            for (id, row) in ids.iter().zip(rows) {
                if row.is_none() {
                    continue;
                }
                if let Some(first) = found.insert(id.clone(), name.clone()) {
                    return Err(Error::AmbiguousJob {
                        id: id.clone(),
                        queues: vec![first, name.clone()],
                    });
                }
            }
        }
        Ok(found)
    }

    /// Subscribes to channels and channel patterns. Returns once the first
    /// subscription is confirmed, so anything published after this returns
    /// is delivered.
    pub async fn subscribe(&self, channels: Vec<String>, patterns: Vec<String>) -> Result<Subscription> {
        // Boxed: the subscription's future is large and deeply nested, and
        // every caller's own future would otherwise hold it whole.
        Box::pin(self.subscribe_to(Channels::Fixed { channels, patterns })).await
    }

    async fn subscribe_to(&self, source: Channels) -> Result<Subscription> {
        let (feeder, mut rx, lagged) = Feeder::new(SUBSCRIPTION_BUFFER);
        let topology = self.topology.clone();
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            let mut warned = false;
            let mut switched = topology.changes();
            loop {
                switched.mark_unchanged();
                let opened = match source.resolve(&client).await {
                    Ok((channels, patterns)) => open_subscriber(&topology, &channels, &patterns)
                        .await
                        .map(|s| (s, channels))
                        .map_err(Error::Redis),
                    Err(e) => Err(e),
                };
                match opened {
                    Ok((mut subscriber, mut channels)) => {
                        if warned {
                            tracing::info!("pub/sub connection restored");
                        }
                        warned = false;
                        backoff = Duration::from_millis(50);
                        if !feeder.deliver(Feed::Subscribed) {
                            return;
                        }
                        let mut recheck = tokio::time::interval(CHANNELS_RECHECK);
                        recheck.tick().await;
                        loop {
                            let delivery = tokio::select! {
                                delivery = subscriber.next() => delivery,
                                // A new primary: this connection may still
                                // stand, but nothing is published here now.
                                _ = switched.changed() => None,
                                // New queues or shards: the new subscription
                                // is made before the old one goes, so nothing
                                // published meanwhile is missed.
                                _ = recheck.tick(), if source.changes() => {
                                    if let Ok((now, _)) = source.resolve(&client).await
                                        && now != channels
                                        && let Ok(wider) = open_subscriber(&topology, &now, &[]).await
                                    {
                                        subscriber = wider;
                                        channels = now;
                                    }
                                    continue;
                                }
                            };
                            let feed = match delivery {
                                None => break,
                                Some(Delivery::Resubscribed) => Feed::Subscribed,
                                Some(Delivery::Message { channel, payload }) => {
                                    Feed::Message { channel, payload }
                                }
                            };
                            if !feeder.deliver(feed) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !warned {
                            tracing::warn!(error = %e, "pub/sub connection lost; reconnecting with backoff");
                            warned = true;
                        }
                    }
                }
                if feeder.tx.is_closed() {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        });
        // The first connection must work, so a caller learns at once that
        // Redis is unreachable instead of waiting forever.
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(Feed::Subscribed)) => Ok(Subscription { rx, lagged, task }),
            _ => {
                task.abort();
                let pubsub = open_subscriber(&self.topology, &[], &[]).await;
                Err(match pubsub {
                    Err(e) => Error::Redis(e),
                    Ok(_) => Error::Protocol("could not subscribe".into()),
                })
            }
        }
    }

    /// Subscribes to the events of `queues` (every queue, present and
    /// future, when empty). Shards a queue gains later, and on a Cluster
    /// queues created later, are subscribed to within 5 s.
    pub async fn events(&self, queues: &[String]) -> Result<Subscription> {
        for q in queues {
            validate_queue_name(q)?;
        }
        if queues.is_empty() && !self.topology.sharded_pubsub() {
            let pattern = format!("{}:{{*}}:events", self.prefix);
            return self.subscribe(vec![], vec![pattern]).await;
        }
        Box::pin(self.subscribe_to(Channels::Events(queues.to_vec()))).await
    }

    /// Waits until every job in `jobs` (queue, id) is final, or `timeout`
    /// runs out, calling `on_final` for each job as it finishes.
    pub async fn wait(
        &self,
        jobs: &[(String, String)],
        timeout: Option<Duration>,
        on_final: impl FnMut(&Finished),
    ) -> Result<WaitReport> {
        let queues: HashSet<&String> = jobs.iter().map(|(q, _)| q).collect();
        let queues: Vec<String> = queues.into_iter().cloned().collect();
        let mut events = self.events(&queues).await?;
        self.wait_with(&mut events, jobs, timeout, on_final).await
    }

    /// [`Client::wait`] on a subscription the caller opened earlier (before
    /// submitting, say). The subscription must cover the jobs' queues.
    ///
    /// No race: the subscription exists before the states are read, so a job
    /// is either already final when read or its event arrives afterwards.
    /// After a reconnect the states are read again.
    pub async fn wait_with(
        &self,
        events: &mut Subscription,
        jobs: &[(String, String)],
        timeout: Option<Duration>,
        mut on_final: impl FnMut(&Finished),
    ) -> Result<WaitReport> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut report = WaitReport::default();
        // (queue, id): an id names a job within one queue only.
        let mut remaining: HashSet<(String, String)> = jobs.iter().cloned().collect();
        let mut finish =
            |event: Event, remaining: &mut HashSet<(String, String)>, report: &mut WaitReport| {
                if event.state.is_final() && remaining.remove(&(event.queue.clone(), event.id.clone())) {
                    let finished = finished_from(event);
                    on_final(&finished);
                    report.finished.push(finished);
                }
            };
        let mut resync = true;
        while resync || !remaining.is_empty() {
            if std::mem::take(&mut resync) {
                let (finals, absent) = self.settle_retrying(&mut remaining, deadline).await?;
                for f in finals {
                    finish(f, &mut remaining, &mut report);
                }
                // A job without a record may have finished and been deleted
                // at once (retention 0) just before the read: its event was
                // published before the read, and is buffered or on its way
                // (a Cluster's sharded subscription takes a few more hops),
                // so it is given a moment. Anything else without one is
                // missing.
                for event in events.buffered_events() {
                    finish(event, &mut remaining, &mut report);
                }
                let grace = Instant::now() + ABSENT_GRACE;
                while absent.iter().any(|job| remaining.contains(job)) {
                    match tokio::time::timeout_at(grace, events.next_event()).await {
                        Ok(Some(Some(event))) => finish(event, &mut remaining, &mut report),
                        Ok(Some(None)) => resync = true,
                        Ok(None) | Err(_) => break,
                    }
                }
                for job in absent {
                    if remaining.remove(&job) {
                        report.missing.push(job.1);
                    }
                }
                continue;
            }
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, events.next_event()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
                None => events.next_event().await,
            };
            match next {
                None => return Err(Error::Protocol("event subscription ended".into())),
                Some(None) => resync = true,
                Some(Some(event)) => finish(event, &mut remaining, &mut report),
            }
        }
        report.unfinished = remaining.into_iter().map(|(_, id)| id).collect();
        Ok(report)
    }

    /// [`Client::settle`], retried while Redis is unreachable (it may be
    /// restarting) until the deadline, or for a minute without one.
    async fn settle_retrying(
        &self,
        remaining: &mut HashSet<(String, String)>,
        deadline: Option<Instant>,
    ) -> Result<(Vec<Event>, Vec<(String, String)>)> {
        let give_up = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(60));
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.settle(remaining).await {
                Err(Error::Redis(e)) if Instant::now() + backoff < give_up => {
                    tracing::debug!(error = %e, "reading job states failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }

    /// Reads the state of every remaining job: returns the final ones (as
    /// events) and the ids that have no record.
    async fn settle(
        &self,
        remaining: &HashSet<(String, String)>,
    ) -> Result<(Vec<Event>, Vec<(String, String)>)> {
        let mut by_queue: HashMap<&String, Vec<&String>> = HashMap::new();
        for (q, id) in remaining {
            by_queue.entry(q).or_default().push(id);
        }
        let (mut finals, mut absent) = (Vec::new(), Vec::new());
        for (q, ids) in by_queue {
            let ids: Vec<String> = ids.into_iter().cloned().collect();
            let rows = self
                .queue(q)?
                .fields_many(&ids, &["state", "result", "error"])
                .await?;
            for (id, row) in ids.iter().zip(rows) {
                let Some(row) = row else {
                    absent.push((q.clone(), id.to_string()));
                    continue;
                };
                let mut row = row.into_iter();
                let (state, result, error) =
                    (row.next().flatten(), row.next().flatten(), row.next().flatten());
                let Some(state) = state else { continue };
                let kind = match JobState::parse(&state) {
                    Some(JobState::Completed) => crate::EventKind::Completed,
                    Some(JobState::Dead) => crate::EventKind::Dead,
                    Some(JobState::Cancelled) => crate::EventKind::Cancelled,
                    _ => continue,
                };
                finals.push(Event {
                    id: id.to_string(),
                    queue: q.clone(),
                    task: String::new(),
                    state: kind,
                    attempt: 0,
                    worker: String::new(),
                    ms: 0,
                    duration_ms: None,
                    result: result.and_then(|r| serde_json::from_str(&r).ok()),
                    error,
                    run_at_ms: None,
                    progress: None,
                    message: None,
                });
            }
        }
        Ok((finals, absent))
    }

    /// Publishes what a worker process is, under the global workers set;
    /// returns the Redis time (ms).
    pub async fn publish_worker_info(&self, info: &WorkerInfo, ttl: Duration) -> Result<u64> {
        let queues = info.queues.join(",");
        let tasks = serde_json::to_string(&info.tasks).unwrap_or_default();
        Ok(scripts::WORKER_INFO
            .on(self)
            .key(&self.global.workers)
            .key(self.global.worker(&info.id))
            .arg(&info.id)
            .arg(ttl.as_millis() as u64)
            .arg(&[
                ("host", info.host.as_str()),
                ("queues", queues.as_str()),
                ("tasks", tasks.as_str()),
                ("pid", &info.pid.to_string()),
                ("concurrency", &info.concurrency.to_string()),
                ("active", &info.active.to_string()),
                ("processed", &info.processed.to_string()),
                ("started_ms", &info.started_ms.to_string()),
            ])
            .invoke_async(&mut self.conn())
            .await?)
    }

    /// Removes a worker's description (on shutdown).
    pub async fn remove_worker_info(&self, id: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.zrem(&self.global.workers, id).del(self.global.worker(id));
        let _: () = pipe.query_async(&mut self.conn()).await?;
        Ok(())
    }

    /// Live workers (whose description has not expired), sorted by id.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let ids: Vec<String> = self.conn().zrange(&self.global.workers, 0, -1).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.global.worker(id));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut self.conn()).await?;
        let mut workers: Vec<WorkerInfo> = ids
            .into_iter()
            .zip(rows)
            .filter(|(_, f)| !f.is_empty())
            .map(|(id, f)| {
                let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
                let list = |k: &str| -> Vec<String> {
                    f.get(k)
                        .map(|q| q.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
                        .unwrap_or_default()
                };
                WorkerInfo {
                    host: f.get("host").cloned().unwrap_or_default(),
                    pid: num("pid") as u32,
                    queues: list("queues"),
                    tasks: f
                        .get("tasks")
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or_default(),
                    concurrency: num("concurrency") as u32,
                    active: num("active") as u32,
                    processed: num("processed"),
                    started_ms: num("started_ms"),
                    last_heartbeat_ms: num("last_heartbeat_ms"),
                    id,
                }
            })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    /// Stats of `queues` (every known queue when empty) and live workers.
    pub async fn stats(&self, queues: &[String]) -> Result<FleetStats> {
        let names = if queues.is_empty() {
            self.queue_names().await?
        } else {
            queues.to_vec()
        };
        let mut stats = FleetStats::default();
        for name in names {
            stats.queues.push(self.queue(&name)?.stats().await?);
        }
        stats.workers = self.workers().await?;
        stats.redis = self.topology().await?;
        Ok(stats)
    }

    /// Redis' own clock, unix ms: the clock every job timestamp uses.
    pub async fn redis_time_ms(&self) -> Result<u64> {
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut self.conn()).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// One of Redis' settings (`CONFIG GET name`), when the server lets us
    /// read it (managed services often refuse `CONFIG`).
    pub async fn config_value(&self, name: &str) -> Option<String> {
        let reply: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut self.conn())
            .await;
        reply.ok().and_then(|v| v.into_iter().nth(1))
    }
}

/// How long a waiter gives the event of a job it found without a record
/// (finished and deleted at once) to arrive before calling it missing.
const ABSENT_GRACE: Duration = Duration::from_millis(500);

/// How often a subscription to queues' events looks for new shards (and,
/// on a Cluster, new queues).
const CHANNELS_RECHECK: Duration = Duration::from_secs(5);

/// What a subscription listens to.
enum Channels {
    Fixed {
        channels: Vec<String>,
        patterns: Vec<String>,
    },
    /// The events channel of every shard of these queues (every known queue
    /// when empty), read again on every (re)subscription and every 5 s.
    Events(Vec<String>),
}

impl Channels {
    fn changes(&self) -> bool {
        matches!(self, Channels::Events(_))
    }

    async fn resolve(&self, client: &Client) -> Result<(Vec<String>, Vec<String>)> {
        match self {
            Channels::Fixed { channels, patterns } => Ok((channels.clone(), patterns.clone())),
            Channels::Events(queues) => {
                let names = match queues.is_empty() {
                    true => client.queue_names().await?,
                    false => queues.clone(),
                };
                let mut channels = Vec::new();
                for q in &names {
                    channels.extend(client.queue(q)?.event_channels().await?);
                }
                channels.sort();
                Ok((channels, Vec::new()))
            }
        }
    }
}

fn finished_from(event: Event) -> Finished {
    Finished {
        id: event.id,
        queue: event.queue,
        state: match event.state {
            crate::EventKind::Completed => JobState::Completed,
            crate::EventKind::Cancelled => JobState::Cancelled,
            _ => JobState::Dead,
        },
        result: event.result,
        error: event.error,
    }
}

async fn open_subscriber(
    topology: &Topology,
    channels: &[String],
    patterns: &[String],
) -> redis::RedisResult<Subscriber> {
    match tokio::time::timeout(Duration::from_secs(5), topology.subscribe(channels, patterns)).await {
        Ok(result) => result,
        Err(_) => Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "timed out connecting for pub/sub",
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_replication_gives_each_replica_and_its_lag() {
        let info = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
                    slave0:ip=10.0.0.2,port=6380,state=online,offset=1000,lag=0\r\n\
                    slave1:ip=10.0.0.3,port=6381,state=wait_bgsave,offset=0,lag=3\r\n\
                    master_failover_state:no-failover\r\nmaster_repl_offset:1200\r\n";
        let t = TopologyInfo::from_info(info);
        assert_eq!(t.offset, 1200);
        assert_eq!(
            t.replicas,
            vec![
                ReplicaInfo {
                    addr: "10.0.0.2:6380".into(),
                    state: "online".into(),
                    lag_bytes: 200,
                    lag_secs: 0
                },
                ReplicaInfo {
                    addr: "10.0.0.3:6381".into(),
                    state: "wait_bgsave".into(),
                    lag_bytes: 1200,
                    lag_secs: 3
                },
            ]
        );
        assert!(TopologyInfo::from_info("role:master\r\n").replicas.is_empty());
    }

    #[tokio::test]
    async fn a_reader_that_fell_behind_is_told_and_the_buffer_stays_bounded() {
        let (feeder, rx, lagged) = Feeder::new(3);
        let mut sub = Subscription {
            rx,
            lagged,
            task: tokio::spawn(async {}),
        };
        let message = |i: usize| Feed::Message {
            channel: "c".into(),
            payload: i.to_string(),
        };
        for i in 0..5 {
            assert!(feeder.deliver(message(i)));
        }
        assert_eq!(sub.next().await, Some(Feed::Lagged));
        assert_eq!(
            sub.next_event().await,
            Some(None),
            "a message that is not an event reads as missed"
        );
        assert_eq!(sub.next().await, Some(message(1)));
        assert_eq!(sub.next().await, Some(message(2)));
        assert!(feeder.deliver(message(5)));
        assert_eq!(sub.next().await, Some(message(5)), "nothing was lost since");
        drop(sub);
        assert!(!feeder.deliver(message(6)), "the reader is gone");
    }
}
