//! The worker's shared state and [`run`], which wires the claim loop, the
//! acker and the background loops together and shuts them down in order.

use jobfleet_core::worker_protocol::WorkerProtocol;
use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jobfleet_core::{Client, ConnectOptions, Policy, Queue, WorkerInfo};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::task::Registry;
use crate::{acker, claim, heartbeat, listener, promote, recover};

/// How a worker runs. Defaults live with the command-line flags
/// (`jobfleet-worker --help`); [`Config::new`] gives the same ones.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis URL (`redis://`, `rediss://`, `user:password@` all work), or
    /// `redis+sentinel://host:port[,host:port...]/MASTER_NAME`.
    pub redis_url: String,
    /// Key prefix.
    pub prefix: String,
    /// Queues to serve, highest priority first.
    pub queues: Vec<String>,
    /// Weights of `queues`, one each, instead of strict priority: each claim
    /// tries the queues in a random order drawn by weight, so a queue of
    /// weight 3 comes first three times as often as one of weight 1 and no
    /// queue starves. Empty: strict priority.
    pub weights: Vec<u32>,
    /// Jobs run at once (slots).
    pub concurrency: usize,
    /// How often the worker says it is alive.
    pub heartbeat: Duration,
    /// A worker silent this long is declared dead and its jobs recovered.
    pub dead_after: Duration,
    /// How long in-flight jobs may run on after a shutdown begins.
    pub grace: Duration,
    /// Fallback poll when no notification arrives (a missed one costs this).
    pub poll_interval: Duration,
    /// How often due scheduled jobs are promoted.
    pub promote_interval: Duration,
    /// How often the worker compares its processing lists with what it
    /// holds, handing back jobs it does not run (an outcome Redis rolled
    /// back, a lost claim reply). It also does so after any Redis outage.
    pub reconcile_interval: Duration,
    /// Folders file-reading tasks (thumbnail) may read and write.
    pub allow_dirs: Vec<PathBuf>,
    /// Decompression-bomb and size limits of the thumbnail task.
    pub thumbnail_limits: jobfleet_thumbnail::Limits,
    /// Retention, retry and size policy.
    pub policy: Policy,
    /// Replicas that must confirm each outcome (ack, fail) and each job a
    /// task submits; 0 does not ask. An outcome they do not confirm in time
    /// is logged and counted, not undone: a failover would only run the job
    /// again.
    pub replicas: u32,
    /// How long to wait for them.
    pub replica_timeout: Duration,
}

impl Config {
    /// A config with the documented defaults for one Redis URL.
    pub fn new(redis_url: impl Into<String>) -> Config {
        Config {
            redis_url: redis_url.into(),
            prefix: jobfleet_core::DEFAULT_PREFIX.into(),
            queues: vec!["default".into()],
            concurrency: std::thread::available_parallelism().map_or(4, |n| n.get()),
            heartbeat: Duration::from_secs(1),
            dead_after: Duration::from_secs(10),
            grace: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            promote_interval: Duration::from_millis(250),
            reconcile_interval: Duration::from_secs(5),
            allow_dirs: Vec::new(),
            weights: Vec::new(),
            thumbnail_limits: jobfleet_thumbnail::Limits::default(),
            policy: Policy::default(),
            replicas: 0,
            replica_timeout: Duration::from_secs(2),
        }
    }
}

/// Connects, waiting for a Redis that cannot be reached yet (it may be
/// starting, or failing over) with a log line when it starts waiting and
/// when it ends; a URL or password that cannot work fails at once. `None`:
/// shut down while waiting.
async fn connect_patiently(
    url: &str,
    options: ConnectOptions,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Result<Option<Client>, WorkerError> {
    let mut backoff = Duration::from_millis(100);
    let mut waiting = false;
    loop {
        // Shutdown is polled first, so its signal handlers are installed
        // before anything is logged.
        let connected = tokio::select! {
            biased;
            _ = shutdown.as_mut() => return Ok(None),
            connected = Client::connect_with(url, options.clone()) => connected,
        };
        match connected {
            Ok(client) => {
                if waiting {
                    tracing::info!("redis reachable; starting");
                }
                return Ok(Some(client));
            }
            Err(jobfleet_core::Error::Redis(e))
                if e.is_io_error() || e.is_connection_refusal() || e.is_timeout() =>
            {
                if !waiting {
                    tracing::warn!(error = %e, "redis unreachable at start-up; waiting for it (retrying with backoff up to 2s)");
                    waiting = true;
                }
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.as_mut() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// Why a worker could not start (failing jobs never stop a worker).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Redis could not be reached at start-up.
    #[error(transparent)]
    Redis(#[from] jobfleet_core::Error),
}

/// A job as the worker tracks it: (queue, id).
pub(crate) type JobRef = (String, String);

/// What every part of a running worker shares.
pub(crate) struct Shared {
    pub(crate) client: Client,
    /// The queues served, one handle each, in priority order.
    logical: Vec<Queue>,
    /// A handle per shard of every queue served, in priority order (the
    /// shards of one queue side by side); replaced when a queue's shard
    /// count grows.
    queues: RwLock<Arc<Vec<Queue>>>,
    /// Bumped when `queues` is replaced (the listener resubscribes).
    pub(crate) layout: tokio::sync::watch::Sender<u64>,
    pub(crate) config: Config,
    pub(crate) registry: Registry,
    /// The registry's task names: the only tasks this worker claims.
    pub(crate) tasks: Vec<String>,
    /// The worker's current id; replaced when the fleet declared it dead.
    identity: RwLock<String>,
    reregistering: tokio::sync::Mutex<()>,
    /// Woken by notifications: there may be work.
    pub(crate) wake: Notify,
    /// Running jobs by (queue, id), with the token that cancels each. Ids
    /// are unique only within a queue.
    pub(crate) running: Mutex<HashMap<JobRef, CancellationToken>>,
    /// Every job this worker holds in a processing list as far as it knows,
    /// with the worker id it was claimed under: claimed, and its outcome not
    /// yet written. What `reconcile` keeps.
    pub(crate) held: Mutex<HashMap<JobRef, String>>,
    /// Ids this worker had before it re-registered that may still hold jobs
    /// in some queue: beaten on and reconciled until they hold nothing.
    pub(crate) retired: Mutex<Vec<String>>,
    /// Set when Redis may have lost or rolled back writes (an outage ended,
    /// pub/sub resubscribed, the worker re-registered): the claim loop
    /// reconciles before its next claim.
    pub(crate) reconcile_due: Arc<AtomicBool>,
    pub(crate) processed: AtomicU64,
    started_ms: AtomicU64,
    host: String,
}

impl Shared {
    pub(crate) fn id(&self) -> String {
        self.identity.read().expect("poisoned").clone()
    }

    /// A handle per shard of every queue served, in priority order.
    pub(crate) fn queues(&self) -> Arc<Vec<Queue>> {
        self.queues.read().expect("poisoned").clone()
    }

    /// The handle on shard `shard` of queue `name`.
    pub(crate) fn shard(&self, name: &str, shard: u32) -> jobfleet_core::Result<Queue> {
        self.queues()
            .iter()
            .find(|q| q.name() == name && q.shard() == shard)
            .cloned()
            .ok_or_else(|| {
                jobfleet_core::Error::Protocol(format!("claimed from unknown queue {name} shard {shard}"))
            })
    }

    /// Reads each queue's shard count; when one grew, registers this worker
    /// on the new shards and serves them from now on.
    pub(crate) async fn refresh_shards(&self) -> jobfleet_core::Result<()> {
        let layout = shard_layout(&self.logical).await?;
        let current = self.queues();
        if layout.len() == current.len() {
            return Ok(());
        }
        let id = self.id();
        for q in layout.iter().filter(|q| {
            !current
                .iter()
                .any(|c| c.name() == q.name() && c.shard() == q.shard())
        }) {
            q.heartbeat(&id, true).await?;
        }
        for q in &self.logical {
            let n = layout.iter().filter(|s| s.name() == q.name()).count();
            tracing::info!(queue = q.name(), shards = n, "serving the queue's shards");
        }
        *self.queues.write().expect("poisoned") = Arc::new(layout);
        self.layout.send_modify(|n| *n += 1);
        Ok(())
    }

    /// The ids of `queue`'s jobs held under `worker`.
    pub(crate) fn held_in(&self, queue: &str, worker: &str) -> Vec<String> {
        let held = self.held.lock().expect("poisoned");
        held.iter()
            .filter(|((q, _), w)| q == queue && w.as_str() == worker)
            .map(|((_, id), _)| id.clone())
            .collect()
    }

    pub(crate) fn info(&self) -> WorkerInfo {
        WorkerInfo {
            id: self.id(),
            host: self.host.clone(),
            pid: std::process::id(),
            queues: self.config.queues.clone(),
            tasks: self.tasks.clone(),
            concurrency: self.config.concurrency as u32,
            active: self.running.lock().expect("poisoned").len() as u32,
            processed: self.processed.load(Ordering::Relaxed),
            started_ms: self.started_ms.load(Ordering::Relaxed),
            last_heartbeat_ms: 0,
        }
    }

    /// How long the worker's description outlives its last heartbeat.
    pub(crate) fn info_ttl(&self) -> Duration {
        self.config.dead_after.max(self.config.heartbeat * 3)
    }

    /// Registers the current id in every queue and publishes the description.
    pub(crate) async fn register(&self) -> jobfleet_core::Result<()> {
        let id = self.id();
        for q in self.queues().iter() {
            q.heartbeat(&id, true).await?;
        }
        let now = self
            .client
            .publish_worker_info(&self.info(), self.info_ttl())
            .await?;
        self.started_ms
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
            .ok();
        Ok(())
    }

    /// Called when the fleet declared `stale` dead in some queue (its
    /// heartbeat was too old) and handed its jobs there to others: take a
    /// fresh id and register it. Acks of jobs recovered from the old id will
    /// be refused by the fence. In queues where the old id was not recovered,
    /// what it still holds is kept (and beaten on) until written; the rest
    /// (a partial claim that was never started) is handed back by the next
    /// reconcile.
    pub(crate) async fn reregister(&self, stale: &str) {
        let _guard = self.reregistering.lock().await;
        if self.id() != stale {
            return;
        }
        let fresh = new_worker_id(&self.host);
        tracing::warn!(
            old = stale,
            new = %fresh,
            "this worker was declared dead (no heartbeat within {}) and its jobs were handed to \
             other workers; results of those jobs will be refused; re-registering under a new id",
            humantime::format_duration(self.config.dead_after)
        );
        *self.identity.write().expect("poisoned") = fresh;
        self.retired.lock().expect("poisoned").push(stale.to_string());
        self.reconcile_due.store(true, Ordering::Release);
        let _ = self.client.remove_worker_info(stale).await;
        if let Err(e) = self.register().await {
            tracing::warn!(error = %e, "re-registering failed; the heartbeat loop will retry");
        }
    }
}

fn new_worker_id(host: &str) -> String {
    format!(
        "{host}-{}-{:06x}",
        std::process::id(),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Runs a worker until `shutdown` resolves, then shuts down gracefully: stop
/// claiming, let running jobs finish within the grace period, hand the rest
/// back to pending, leave the fleet.
///
/// Everything the worker starts is owned by this future: dropping it (as a
/// crash would) stops every job and loop without handing anything back, and
/// the fleet recovers the jobs after the dead-after window.
pub async fn run(
    config: Config,
    mut registry: Registry,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    check(&config)?;
    // A worker with no folder to read could only fail thumbnails: it does
    // not run the task, so their jobs wait for a worker that does.
    if !registry.contains("thumbnail") && config.allow_dirs.is_empty() {
        tracing::info!(
            "no --allow-dir: this worker runs no thumbnail jobs (they wait for one that allows their folder)"
        );
    } else if !registry.contains("thumbnail") {
        let dirs = jobfleet_thumbnail::AllowedDirs::new(&config.allow_dirs)
            .map_err(|e| WorkerError::Config(format!("--allow-dir: {e}")))?;
        crate::builtin::register_thumbnail(&mut registry, dirs, config.thumbnail_limits);
    }
    let options = ConnectOptions {
        prefix: config.prefix.clone(),
        policy: config.policy.clone(),
        replicas: config.replicas,
        replica_timeout: config.replica_timeout,
        ..ConnectOptions::default()
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let Some(client) = connect_patiently(&config.redis_url, options, shutdown.as_mut()).await? else {
        return Ok(());
    };
    warn_about_durability(&client).await;
    let logical = config
        .queues
        .iter()
        .map(|q| client.queue(q))
        .collect::<Result<Vec<_>, _>>()?;
    let queues = shard_layout(&logical).await?;
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into());
    let shared = Arc::new(Shared {
        identity: RwLock::new(new_worker_id(&host)),
        host,
        client,
        logical,
        queues: RwLock::new(Arc::new(queues)),
        layout: tokio::sync::watch::Sender::new(0),
        tasks: registry.names(),
        registry,
        config,
        reregistering: tokio::sync::Mutex::new(()),
        wake: Notify::new(),
        running: Mutex::default(),
        held: Mutex::default(),
        retired: Mutex::default(),
        reconcile_due: Arc::new(AtomicBool::new(false)),
        processed: AtomicU64::new(0),
        started_ms: AtomicU64::new(0),
    });
    shared.register().await?;
    tracing::info!(
        worker = %shared.id(),
        queues = ?shared.config.queues,
        concurrency = shared.config.concurrency,
        tasks = ?shared.registry.names(),
        "worker started"
    );

    let stop_loops = CancellationToken::new();
    let mut loops = JoinSet::new();
    loops.spawn(heartbeat::run(shared.clone(), stop_loops.clone()));
    loops.spawn(recover::run(shared.clone(), stop_loops.clone()));
    loops.spawn(promote::run(shared.clone(), stop_loops.clone()));
    loops.spawn(listener::run(shared.clone(), stop_loops.clone()));
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut acker = JoinSet::new();
    acker.spawn(acker::run(shared.clone(), done_rx));

    let hand_back = CancellationToken::new();
    let mut jobs = JoinSet::new();
    claim::run(&shared, &mut jobs, done_tx, hand_back.clone(), shutdown).await;

    let grace = shared.config.grace;
    tracing::info!(
        running = jobs.len(),
        "shutting down: no new jobs; waiting up to {} for running ones",
        humantime::format_duration(grace)
    );
    let drained = tokio::time::timeout(grace, async { while jobs.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            running = jobs.len(),
            "grace period over: handing unfinished jobs back"
        );
        hand_back.cancel();
        while jobs.join_next().await.is_some() {}
    }
    // Every sender is gone now, so the acker ends once it has written all.
    if tokio::time::timeout(grace.max(Duration::from_secs(5)), acker.join_next())
        .await
        .is_err()
    {
        tracing::warn!("could not write every outcome; those jobs will be recovered by the fleet");
    }
    // The loops stop before the worker leaves its queues: a heartbeat after
    // leaving would read as "recovered" and register a fresh id.
    stop_loops.cancel();
    while loops.join_next().await.is_some() {}
    let id = shared.id();
    let retired = shared.retired.lock().expect("poisoned").clone();
    for worker in std::iter::once(&id).chain(&retired) {
        for q in shared.queues().iter() {
            match q.requeue(worker, true).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(queue = q.name(), jobs = n, "handed unfinished jobs back"),
                Err(e) => tracing::warn!(error = %e, "could not hand jobs back; the fleet will recover them"),
            }
        }
    }
    let _ = shared.client.remove_worker_info(&id).await;
    tracing::info!(worker = %id, processed = shared.processed.load(Ordering::Relaxed), "worker stopped");
    Ok(())
}

/// A handle per shard of each queue, in the queues' order.
async fn shard_layout(queues: &[Queue]) -> jobfleet_core::Result<Vec<Queue>> {
    let mut layout = Vec::new();
    for q in queues {
        layout.extend(q.shards().await?);
    }
    Ok(layout)
}

/// Warns at start-up when Redis is set up to lose jobs: keys it may evict,
/// or no append-only file (a restart then loses everything since the last
/// snapshot, or everything when snapshots are off too).
async fn warn_about_durability(client: &Client) {
    match client.config_value("maxmemory-policy").await.as_deref() {
        Some("noeviction") | None => {}
        Some(policy) => tracing::warn!(
            "redis maxmemory-policy is {policy}: under memory pressure Redis may evict queue keys \
             and lose jobs; set it to noeviction"
        ),
    }
    if client.config_value("appendonly").await.as_deref() == Some("no") {
        let save = client.config_value("save").await.unwrap_or_default();
        let since = if save.trim().is_empty() {
            "every job (snapshots are off too)".to_string()
        } else {
            "the jobs written since its last snapshot".to_string()
        };
        tracing::warn!(
            "redis has appendonly no: a Redis restart or crash loses {since}; set appendonly yes \
             (see docs/RELIABILITY.md)"
        );
    }
}

fn check(config: &Config) -> Result<(), WorkerError> {
    if config.queues.is_empty() {
        return Err(WorkerError::Config(
            "no queue to serve: pass at least one --queue".into(),
        ));
    }
    for q in &config.queues {
        jobfleet_core::validate_queue_name(q)?;
    }
    if !config.weights.is_empty() && config.weights.len() != config.queues.len() {
        return Err(WorkerError::Config("give every queue a weight, or none".into()));
    }
    if config.weights.contains(&0) {
        return Err(WorkerError::Config(
            "a queue's weight must be at least 1 (leave a queue out instead)".into(),
        ));
    }
    if config.concurrency == 0 {
        return Err(WorkerError::Config("concurrency must be at least 1".into()));
    }
    if config.heartbeat.is_zero() {
        return Err(WorkerError::Config(
            "the heartbeat interval must be above zero".into(),
        ));
    }
    if config.reconcile_interval.is_zero() {
        return Err(WorkerError::Config(
            "the reconcile interval must be above zero".into(),
        ));
    }
    if config.dead_after <= config.heartbeat * 2 {
        return Err(WorkerError::Config(format!(
            "--dead-after ({}) must be more than twice --heartbeat ({}), or live workers would be \
             declared dead",
            humantime::format_duration(config.dead_after),
            humantime::format_duration(config.heartbeat)
        )));
    }
    Ok(())
}
