//! The one seam between jobfleet and Redis' topologies. Everything above
//! this module (queues, the worker, the CLI, the dashboard) sends commands
//! through a [`Conn`] and subscribes through `Topology::subscribe`, and never
//! asks which topology it runs on.
//!
//! - **One server** (`redis://`, `rediss://`): the `redis` crate's
//!   [`ConnectionManager`], which reconnects to the same address by itself.
//! - **Sentinel** (`redis+sentinel://`): the sentinels name the primary (the
//!   crate's [`SentinelClient`], which also checks the node's `ROLE`). The
//!   crate does not follow a failover, so [`Conn`] does: a connection error
//!   or a `READONLY` reply (the node was demoted) drops the connection, and
//!   the next command asks the sentinels again; a `+switch-master` notice
//!   from any sentinel does the same before anything fails, and tells
//!   subscriptions to resubscribe on the new primary.
//! - **Redis Cluster** (a `redis://` URL of any node, found to be one by
//!   `INFO cluster`, or several comma-separated seeds): the crate's async
//!   cluster connection, which routes each command and script by its keys'
//!   slot and follows `MOVED`, `ASK`, `TRYAGAIN` and failovers. Pub/sub is
//!   sharded (`SSUBSCRIBE`), one cluster connection per slot of channels,
//!   so the crate's replay after a reconnect is one command on one slot.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::{ConnectionLike, ConnectionManager, MultiplexedConnection};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ErrorKind, IntoConnectionInfo, RedisError, RedisFuture,
    RedisResult, Value,
};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// Where jobfleet's Redis is, parsed from a URL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Endpoint {
    /// One server: any URL the `redis` crate reads (`redis://`, `rediss://`, `unix://`).
    Single(String),
    /// A primary that Sentinel names.
    Sentinel(SentinelEndpoint),
    /// Redis Cluster seed nodes, from `redis://host:port,host:port...`
    /// (one URL per node, credentials and options copied to each).
    Seeds(Vec<String>),
}

/// `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER[/db][?sentinel_password=...&tls=true]`.
#[derive(Clone, PartialEq)]
pub(crate) struct SentinelEndpoint {
    pub(crate) sentinels: Vec<(String, u16)>,
    pub(crate) master: String,
    pub(crate) db: i64,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) sentinel_username: Option<String>,
    pub(crate) sentinel_password: Option<String>,
    /// `tls=true` (verified) or `tls=insecure`, for the sentinels and the data nodes.
    pub(crate) tls: Option<redis::TlsMode>,
}

impl std::fmt::Debug for SentinelEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelEndpoint")
            .field("sentinels", &self.sentinels)
            .field("master", &self.master)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// The URL with any password replaced by `***` (also a Sentinel URL's
/// `sentinel_password=` option).
pub fn redact_url(url: &str) -> String {
    let redacted = redact_userinfo(url);
    match redacted.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.contains("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => redacted,
    }
}

fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            let hidden = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".into()
            };
            format!("{}{hidden}{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_string(),
    }
}

impl SentinelEndpoint {
    /// The address of one sentinel, over TLS when the URL says so.
    fn sentinel_addr(&self, (host, port): &(String, u16)) -> ConnectionAddr {
        match self.tls {
            Some(mode) => ConnectionAddr::TcpTls {
                host: host.clone(),
                port: *port,
                insecure: mode == redis::TlsMode::Insecure,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host.clone(), *port),
        }
    }
}

/// The sentinel port when a host names none.
const SENTINEL_PORT: u16 = 26379;

impl Endpoint {
    /// Reads a URL; a Sentinel URL is checked here, any other is left to the
    /// `redis` crate.
    pub(crate) fn parse(url: &str) -> Result<Endpoint> {
        let Some(rest) = url.strip_prefix("redis+sentinel://") else {
            return parse_seeds(url);
        };
        let bad = |why: &str| {
            Error::InvalidUrl(format!(
                "{why}; a Sentinel URL reads redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME"
            ))
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(|| bad("no master name"))?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let mut sentinels = Vec::new();
        for host in hosts.split(',').filter(|h| !h.is_empty()) {
            let (name, port) = if let Some(bracketed) = host.strip_prefix('[') {
                // [v6 address] or [v6 address]:port
                let (name, after) = bracketed
                    .split_once(']')
                    .ok_or_else(|| bad(&format!("{host:?} has no closing ']'")))?;
                match after {
                    "" => (name, SENTINEL_PORT),
                    _ => match after.strip_prefix(':') {
                        Some(port) => (name, parse_port(port).map_err(|e| bad(&e))?),
                        None => return Err(bad(&format!("{host:?}: expected ':port' after ']'"))),
                    },
                }
            } else {
                match host.split_once(':') {
                    None => (host, SENTINEL_PORT),
                    Some((_, port)) if port.contains(':') => {
                        return Err(bad(&format!(
                            "{host:?}: put an IPv6 address in brackets, [::1]:26379"
                        )));
                    }
                    Some((name, port)) => (name, parse_port(port).map_err(|e| bad(&e))?),
                }
            };
            if name.is_empty() {
                return Err(bad("a sentinel has no host"));
            }
            sentinels.push((name.to_string(), port));
        }
        if sentinels.is_empty() {
            return Err(bad("no sentinel host"));
        }
        let mut segments = path.split('/');
        let master = decode(segments.next().unwrap_or(""));
        if master.is_empty() {
            return Err(bad("no master name"));
        }
        let db = match segments.next().filter(|s| !s.is_empty()) {
            Some(db) => db
                .parse::<i64>()
                .map_err(|_| bad(&format!("{db:?} is not a database number")))?,
            None => 0,
        };
        if let Some(extra) = segments.find(|s| !s.is_empty()) {
            return Err(bad(&format!("unexpected {extra:?} after the database number")));
        }
        let (username, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (non_empty(decode(user)), Some(decode(password))),
                None => (None, Some(decode(info))),
            },
            None => (None, None),
        };
        let mut endpoint = SentinelEndpoint {
            sentinels,
            master,
            db,
            username,
            password,
            sentinel_username: None,
            sentinel_password: None,
            tls: None,
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "sentinel_password" => endpoint.sentinel_password = non_empty(value.into_owned()),
                "sentinel_username" => endpoint.sentinel_username = non_empty(value.into_owned()),
                "tls" => {
                    endpoint.tls = match &*value {
                        "true" | "1" | "yes" => Some(redis::TlsMode::Secure),
                        "insecure" => Some(redis::TlsMode::Insecure),
                        "false" | "0" | "no" => None,
                        other => return Err(bad(&format!("tls={other}: use tls=true or tls=insecure"))),
                    }
                }
                other => return Err(bad(&format!("unknown option {other:?}"))),
            }
        }
        Ok(Endpoint::Sentinel(endpoint))
    }
}

/// `redis://[user:password@]host:port,host:port.../...`: one URL per seed;
/// any other URL is one server (which may still be a Cluster node).
fn parse_seeds(url: &str) -> Result<Endpoint> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(Endpoint::Single(url.to_string()));
    };
    if !matches!(scheme, "redis" | "rediss") {
        return Ok(Endpoint::Single(url.to_string()));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    if !hosts.contains(',') {
        return Ok(Endpoint::Single(url.to_string()));
    }
    let seeds: Vec<String> = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect();
    if seeds.is_empty() {
        return Err(Error::InvalidUrl(
            "no host; a Cluster URL reads redis://[user:password@]host:port[,host:port...]".into(),
        ));
    }
    Ok(Endpoint::Seeds(seeds))
}

fn decode(text: &str) -> String {
    // Percent-decoding of a URL part; `+` is a plain character here.
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_port(port: &str) -> std::result::Result<u16, String> {
    port.parse::<u16>().map_err(|_| format!("{port:?} is not a port"))
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// How long finding the primary (asking the sentinels, checking its role)
/// may take before the attempt counts as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Which servers jobfleet talks to, and who is primary now.
pub(crate) struct Topology {
    kind: Kind,
    /// Bumped on every `+switch-master` for our master: connections made
    /// before are dropped, subscriptions resubscribe.
    epoch: watch::Sender<u64>,
}

enum Kind {
    Single(redis::Client),
    Sentinel {
        endpoint: SentinelEndpoint,
        resolver: Box<tokio::sync::Mutex<SentinelClient>>,
        /// The primary last found, for `stats` (`host:port`).
        primary: Mutex<Option<String>>,
        /// The last `+switch-master` heard: until every sentinel has caught
        /// up, some still name the old primary, which in a planned failover
        /// still answers `ROLE master` (it is demoted later). A lookup that
        /// lands on `old` goes to `new` instead.
        switched: Mutex<Option<Switch>>,
    },
    Cluster {
        /// The seed nodes' URLs (any node serves: the rest is discovered).
        seeds: Vec<String>,
    },
}

/// A `+switch-master` announcement: from `old` to `new` (`host`, `port`).
#[derive(Debug, Clone, PartialEq)]
struct Switch {
    old: (String, u16),
    new: (String, u16),
}

impl Switch {
    /// Reads `<master> <old ip> <old port> <new ip> <new port>`.
    fn parse(payload: &str, master: &str) -> Option<Switch> {
        let words: Vec<&str> = payload.split(' ').collect();
        match words[..] {
            [name, old_ip, old_port, new_ip, new_port] if name == master => Some(Switch {
                old: (old_ip.to_string(), old_port.parse().ok()?),
                new: (new_ip.to_string(), new_port.parse().ok()?),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Single(client) => write!(f, "Topology::Single({})", client.get_connection_info().addr()),
            Kind::Sentinel { endpoint, .. } => write!(f, "Topology::Sentinel({endpoint:?})"),
            Kind::Cluster { seeds } => write!(f, "Topology::Cluster({} seeds)", seeds.len()),
        }
    }
}

/// What `stats` says of the topology.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mode {
    Single,
    Sentinel { master: String, sentinels: usize },
    Cluster,
}

impl Topology {
    /// Builds the topology for a URL; with Sentinel, starts watching the
    /// sentinels for failovers (the watch ends with the topology).
    pub(crate) async fn open(url: &str) -> Result<Arc<Topology>> {
        let kind = match Endpoint::parse(url)? {
            Endpoint::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                if is_cluster_node(&client).await? {
                    Kind::Cluster { seeds: vec![url] }
                } else {
                    Kind::Single(client)
                }
            }
            Endpoint::Seeds(seeds) => {
                for seed in &seeds {
                    // Each must read as a URL; the crate says what is wrong.
                    redis::Client::open(seed.as_str())?;
                }
                Kind::Cluster { seeds }
            }
            Endpoint::Sentinel(endpoint) => {
                let resolver = sentinel_client(&endpoint)?;
                Kind::Sentinel {
                    endpoint,
                    resolver: Box::new(tokio::sync::Mutex::new(resolver)),
                    primary: Mutex::new(None),
                    switched: Mutex::new(None),
                }
            }
        };
        let topology = Arc::new(Topology {
            kind,
            epoch: watch::Sender::new(0),
        });
        if let Kind::Sentinel { endpoint, .. } = &topology.kind {
            let alive = topology.epoch.subscribe();
            tokio::spawn(watch_sentinels(
                Arc::downgrade(&topology),
                alive,
                endpoint.clone(),
            ));
        }
        Ok(topology)
    }

    /// A client for the primary as of now (with Sentinel: asked of the
    /// sentinels, its role checked).
    pub(crate) async fn primary(&self) -> RedisResult<redis::Client> {
        match &self.kind {
            Kind::Single(client) => Ok(client.clone()),
            // Cluster commands and subscriptions go through the crate's
            // cluster connection, which routes each by its slot.
            Kind::Cluster { .. } => Err(RedisError::from((
                ErrorKind::Client,
                "a Redis Cluster has no single primary",
            ))),
            Kind::Sentinel {
                resolver,
                primary,
                switched,
                ..
            } => {
                let found = tokio::time::timeout(RESOLVE_TIMEOUT, async {
                    resolver.lock().await.async_get_client().await
                })
                .await
                .map_err(|_| io_error("timed out asking the sentinels for the primary"))??;
                let info = found.get_connection_info().clone();
                let announced = switched.lock().expect("poisoned").clone();
                let found = match announced {
                    Some(switch) if addr_is(info.addr(), &switch.old) => {
                        // A sentinel that has not heard of the switch yet.
                        let moved = redis::Client::open(
                            info.set_addr(with_host(found.get_connection_info().addr(), &switch.new)),
                        )?;
                        check_primary(&moved).await?;
                        moved
                    }
                    _ => found,
                };
                *primary.lock().expect("poisoned") = Some(found.get_connection_info().addr().to_string());
                Ok(found)
            }
        }
    }

    /// The primary's address as last seen (`host:port`).
    pub(crate) fn primary_addr(&self) -> Option<String> {
        match &self.kind {
            Kind::Single(client) => Some(client.get_connection_info().addr().to_string()),
            Kind::Sentinel { primary, .. } => primary.lock().expect("poisoned").clone(),
            Kind::Cluster { .. } => None,
        }
    }

    pub(crate) fn mode(&self) -> Mode {
        match &self.kind {
            Kind::Single(_) => Mode::Single,
            Kind::Sentinel { endpoint, .. } => Mode::Sentinel {
                master: endpoint.master.clone(),
                sentinels: endpoint.sentinels.len(),
            },
            Kind::Cluster { .. } => Mode::Cluster,
        }
    }

    /// Whether pub/sub is sharded (`SPUBLISH`/`SSUBSCRIBE`): on a Cluster,
    /// where a plain `PUBLISH` would be copied to every node.
    pub(crate) fn sharded_pubsub(&self) -> bool {
        matches!(self.kind, Kind::Cluster { .. })
    }

    /// Changes whenever the sentinels announce a new primary.
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    fn epoch(&self) -> u64 {
        *self.epoch.borrow()
    }

    /// The sentinels announced a new primary: connections made before are
    /// dropped, and lookups that still name the old one go to the new one.
    fn switched(&self, switch: Switch) {
        if let Kind::Sentinel { switched, .. } = &self.kind {
            *switched.lock().expect("poisoned") = Some(switch);
        }
        self.epoch.send_modify(|e| *e += 1);
    }

    /// A command connection. `retries`: connection attempts per command
    /// before it fails (with back-off); with Sentinel, attempts go on for
    /// `failover_wait` at least, the time a failover takes.
    pub(crate) async fn connect(
        self: &Arc<Self>,
        retries: usize,
        response_timeout: Duration,
        failover_wait: Duration,
    ) -> Result<Conn> {
        let connection_timeout = Duration::from_secs(2);
        match &self.kind {
            Kind::Single(client) => {
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_number_of_retries(retries)
                    .set_max_delay(Duration::from_secs(2))
                    .set_connection_timeout(Some(connection_timeout))
                    .set_response_timeout(Some(response_timeout));
                let manager = ConnectionManager::new_with_config(client.clone(), config).await?;
                Ok(Conn(Inner::Single(manager)))
            }
            Kind::Sentinel { .. } => {
                let failover = Arc::new(Failover {
                    topology: self.clone(),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(connection_timeout))
                        .set_response_timeout(Some(response_timeout)),
                    retries,
                    failover_wait,
                    current: Mutex::new(None),
                    failed: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    serial: AtomicU64::new(0),
                });
                // The first connection must work, so a caller learns at once
                // that no primary can be found.
                failover.get(false).await?;
                Ok(Conn(Inner::Sentinel(failover)))
            }
            Kind::Cluster { seeds } => {
                // A failover (a replica taking over) takes the cluster's
                // node timeout and an election: commands wait it out for
                // about `failover_wait`, retrying every 50 ms to 1 s.
                let patience = (failover_wait.as_millis() as u64 / 500)
                    .max(retries as u64)
                    .clamp(4, 120);
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .retries(patience as u32)
                    .min_retry_wait(50)
                    .max_retry_wait(1000)
                    .connection_timeout(connection_timeout)
                    .response_timeout(response_timeout)
                    .build()?;
                Ok(Conn(Inner::Cluster(client.get_async_connection().await?)))
            }
        }
    }

    /// Subscribes to `channels` and channel `patterns` (not on a Cluster,
    /// where a sharded subscription takes channels only). Returns once the
    /// server confirmed every subscription.
    pub(crate) async fn subscribe(
        &self,
        channels: &[String],
        patterns: &[String],
    ) -> RedisResult<Subscriber> {
        if let Kind::Cluster { seeds } = &self.kind {
            if !patterns.is_empty() {
                return Err(RedisError::from((
                    ErrorKind::Client,
                    "a Redis Cluster subscription takes channels, not patterns",
                )));
            }
            return Subscriber::sharded(seeds, channels).await;
        }
        let mut pubsub = self.primary().await?.get_async_pubsub().await?;
        if !channels.is_empty() {
            pubsub.subscribe(channels).await?;
        }
        if !patterns.is_empty() {
            pubsub.psubscribe(patterns).await?;
        }
        Ok(Subscriber::Plain(Box::pin(pubsub.into_on_message())))
    }
}

/// Whether the server is a Redis Cluster node (`cluster_enabled:1`). A
/// server that does not offer `INFO` (some managed services) is taken as
/// one server; any other error fails.
async fn is_cluster_node(client: &redis::Client) -> RedisResult<bool> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let info: RedisResult<String> = redis::cmd("INFO").arg("cluster").query_async(&mut conn).await;
    match info {
        Ok(info) => Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1")),
        // A service that does not offer `INFO` (or not to this user).
        Err(e) if e.code().is_some_and(|c| c == "NOPERM") || e.to_string().contains("unknown command") => {
            Ok(false)
        }
        // Anything else (unreachable, a password, LOADING, BUSY...) is the
        // caller's to report or retry: guessing would pick the wrong mode.
        Err(e) => Err(e),
    }
}

/// What a subscription delivers.
pub(crate) enum Delivery {
    Message {
        channel: String,
        payload: String,
    },
    /// The subscription was made again (after a reconnect or a slot move):
    /// messages may have been missed meanwhile.
    Resubscribed,
}

/// A live subscription: a plain pub/sub connection, or sharded ones on a
/// Cluster.
pub(crate) enum Subscriber {
    Plain(std::pin::Pin<Box<dyn futures_util::Stream<Item = redis::Msg> + Send>>),
    Sharded(Box<Sharded>),
}

/// Sharded subscriptions: one cluster connection per slot of channels (the
/// crate replays a connection's sharded subscriptions in one command, which
/// must not span slots), their pushes on one queue.
pub(crate) struct Sharded {
    groups: Vec<(ClusterConnection, Vec<String>)>,
    pushes: tokio::sync::mpsc::UnboundedReceiver<redis::PushInfo>,
    /// Kept so that a subscription to no channel waits instead of ending.
    _sender: tokio::sync::mpsc::UnboundedSender<redis::PushInfo>,
    /// Confirmations still to come for our own `SSUBSCRIBE`s, by channel;
    /// any other confirmation is the crate resubscribing.
    unconfirmed: std::collections::HashMap<String, usize>,
}

impl Subscriber {
    async fn sharded(seeds: &[String], channels: &[String]) -> RedisResult<Subscriber> {
        let mut by_slot: std::collections::HashMap<redis::cluster_routing::Slot, Vec<String>> =
            std::collections::HashMap::new();
        for channel in channels {
            by_slot
                .entry(redis::cluster_routing::Slot::for_key(channel.as_bytes()))
                .or_default()
                .push(channel.clone());
        }
        let (tx, pushes) = tokio::sync::mpsc::unbounded_channel();
        let mut unconfirmed = std::collections::HashMap::new();
        for channel in channels {
            *unconfirmed.entry(channel.clone()).or_insert(0) += 1;
        }
        // One connection per slot, made side by side.
        let groups = futures_util::future::try_join_all(by_slot.into_values().map(|channels| {
            let tx = tx.clone();
            async move {
                let client = ClusterClientBuilder::new(seeds.iter().map(String::as_str))
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .connection_timeout(Duration::from_secs(2))
                    .response_timeout(Duration::from_secs(5))
                    .push_sender(tx)
                    .build()?;
                let mut conn = client.get_async_connection().await?;
                conn.ssubscribe(&channels).await?;
                RedisResult::Ok((conn, channels))
            }
        }))
        .await?;
        Ok(Subscriber::Sharded(Box::new(Sharded {
            groups,
            pushes,
            _sender: tx,
            unconfirmed,
        })))
    }

    /// The next message, or `None` when the subscription broke (open a new
    /// one).
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        match self {
            Subscriber::Plain(stream) => {
                let msg = stream.next().await?;
                Some(Delivery::Message {
                    channel: msg.get_channel_name().to_string(),
                    payload: msg.get_payload().unwrap_or_default(),
                })
            }
            Subscriber::Sharded(sharded) => sharded.next().await,
        }
    }
}

impl Sharded {
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            let push = self.pushes.recv().await?;
            let text = |i: usize| match push.data.get(i) {
                Some(v) => redis::from_redis_value_ref::<String>(v).ok(),
                None => None,
            };
            match push.kind {
                redis::PushKind::SMessage => {
                    let (Some(channel), Some(payload)) = (text(0), text(1)) else {
                        continue;
                    };
                    return Some(Delivery::Message { channel, payload });
                }
                redis::PushKind::SSubscribe => {
                    let Some(channel) = text(0) else { continue };
                    match self.unconfirmed.get_mut(&channel) {
                        Some(n) if *n > 0 => *n -= 1,
                        _ => return Some(Delivery::Resubscribed),
                    }
                }
                // The server dropped the channel: its slot moved to another
                // node. Subscribe again (routed to the new owner).
                redis::PushKind::SUnsubscribe => {
                    let Some(channel) = text(0) else { continue };
                    let group = self.groups.iter_mut().find(|(_, chans)| chans.contains(&channel));
                    let Some((conn, _)) = group else { continue };
                    *self.unconfirmed.entry(channel.clone()).or_insert(0) += 1;
                    if let Err(e) = conn.ssubscribe(&channel).await {
                        tracing::debug!(error = %e, channel, "sharded resubscribe failed; reopening");
                        return None;
                    }
                    return Some(Delivery::Resubscribed);
                }
                // The crate would retry the lost node's address from a slot
                // map nothing refreshes (this connection sends no commands):
                // open a new subscription on a fresh view of the cluster.
                redis::PushKind::Disconnection => return None,
                _ => continue,
            }
        }
    }
}

fn sentinel_client(endpoint: &SentinelEndpoint) -> Result<SentinelClient> {
    let addrs = endpoint
        .sentinels
        .iter()
        .map(|sentinel| endpoint.sentinel_addr(sentinel));
    let mut builder = SentinelClientBuilder::new(addrs, &endpoint.master, SentinelServerType::Master)?
        .set_client_to_redis_db(endpoint.db);
    if let Some(mode) = endpoint.tls {
        builder = builder
            .set_client_to_redis_tls_mode(mode)
            .set_client_to_sentinel_tls_mode(mode);
    }
    if let Some(user) = &endpoint.username {
        builder = builder.set_client_to_redis_username(user);
    }
    if let Some(password) = &endpoint.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(user) = &endpoint.sentinel_username {
        builder = builder.set_client_to_sentinel_username(user);
    }
    if let Some(password) = &endpoint.sentinel_password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    Ok(builder.build()?)
}

/// How long the watcher listens to one sentinel before it reconnects (a
/// sentinel whose machine died silently would otherwise hold it forever).
const WATCH_REFRESH: Duration = Duration::from_secs(30);

/// Listens on the sentinels' `+switch-master` channel (one sentinel at a
/// time, the next when it fails, and afresh every [`WATCH_REFRESH`]) and
/// marks the topology switched when our master moves. Ends when the
/// topology is dropped (`alive` then closes).
async fn watch_sentinels(
    topology: Weak<Topology>,
    mut alive: watch::Receiver<u64>,
    endpoint: SentinelEndpoint,
) {
    let mut backoff = Duration::from_millis(100);
    let mut next = 0usize;
    loop {
        let addr = endpoint.sentinel_addr(&endpoint.sentinels[next % endpoint.sentinels.len()]);
        next += 1;
        let mut settings = redis::RedisConnectionInfo::default();
        if let Some(user) = &endpoint.sentinel_username {
            settings = settings.set_username(user);
        }
        if let Some(password) = &endpoint.sentinel_password {
            settings = settings.set_password(password);
        }
        let info = addr
            .into_connection_info()
            .map(|i| i.set_redis_settings(settings));
        let subscribed = async {
            let client = redis::Client::open(info?)?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            RedisResult::Ok(pubsub)
        };
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(RESOLVE_TIMEOUT, subscribed).await {
            backoff = Duration::from_millis(100);
            let mut stream = pubsub.on_message();
            let refresh = tokio::time::sleep(WATCH_REFRESH);
            tokio::pin!(refresh);
            loop {
                let msg = tokio::select! {
                    msg = stream.next() => msg,
                    _ = &mut refresh => None,
                    gone = alive.changed() => match gone {
                        Ok(()) => continue,
                        Err(_) => return,
                    },
                };
                let Some(msg) = msg else { break };
                let Some(topology) = topology.upgrade() else {
                    return;
                };
                let payload: String = msg.get_payload().unwrap_or_default();
                if let Some(switch) = Switch::parse(&payload, &endpoint.master) {
                    tracing::info!(announcement = %payload, "sentinels announced a new primary");
                    topology.switched(switch);
                }
            }
        }
        if topology.strong_count() == 0 {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            gone = alive.changed() => if gone.is_err() { return },
        }
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

fn addr_is(addr: &ConnectionAddr, (host, port): &(String, u16)) -> bool {
    match addr {
        ConnectionAddr::Tcp(h, p) | ConnectionAddr::TcpTls { host: h, port: p, .. } => h == host && p == port,
        _ => false,
    }
}

/// `addr` with another host and port, its TLS settings kept.
fn with_host(addr: &ConnectionAddr, (host, port): &(String, u16)) -> ConnectionAddr {
    match addr {
        ConnectionAddr::TcpTls {
            insecure, tls_params, ..
        } => ConnectionAddr::TcpTls {
            host: host.clone(),
            port: *port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.clone(), *port),
    }
}

/// Fails unless the node says it is a primary.
async fn check_primary(client: &redis::Client) -> RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let role: redis::Role = redis::cmd("ROLE").query_async(&mut conn).await?;
    match role {
        redis::Role::Primary { .. } => Ok(()),
        _ => Err(io_error("the announced primary is not a primary (yet)")),
    }
}

fn io_error(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Io, what))
}

/// A command connection to the primary, whatever the topology. Cheap to
/// clone: clones share one multiplexed connection. Use it as any `redis`
/// async connection (`query_async`, `invoke_async`, `AsyncCommands`).
#[derive(Clone)]
pub struct Conn(Inner);

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Sentinel(Arc<Failover>),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Inner::Single(_) => f.write_str("Conn::Single"),
            Inner::Sentinel(_) => f.write_str("Conn::Sentinel"),
            Inner::Cluster(_) => f.write_str("Conn::Cluster"),
        }
    }
}

/// A connection that follows the primary: connected lazily to whoever the
/// sentinels name, dropped on a connection error, a `READONLY` reply or a
/// switch announced by the sentinels.
struct Failover {
    topology: Arc<Topology>,
    config: AsyncConnectionConfig,
    retries: usize,
    failover_wait: Duration,
    current: Mutex<Option<Current>>,
    /// When the last attempt to find a primary gave up, and why.
    failed: Mutex<Option<(tokio::time::Instant, String)>>,
    /// One connection attempt at a time.
    connecting: tokio::sync::Mutex<()>,
    serial: AtomicU64,
}

#[derive(Clone)]
struct Current {
    serial: u64,
    /// The topology epoch it was made in.
    epoch: u64,
    conn: MultiplexedConnection,
}

/// How often a command refused with `READONLY` (it ran on a demoted
/// primary, so nothing was applied) is sent again to the new primary.
const READONLY_RETRIES: usize = 5;

impl Failover {
    fn cached(&self) -> Option<Current> {
        let epoch = self.topology.epoch();
        self.current
            .lock()
            .expect("poisoned")
            .clone()
            .filter(|c| c.epoch == epoch)
    }

    /// The current connection, or a new one to whoever is primary now.
    /// `patient`: wait out a failover (up to `failover_wait`); the first
    /// connection is not, so a wrong URL is reported at once.
    async fn get(&self, patient: bool) -> RedisResult<Current> {
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        let asked_at = tokio::time::Instant::now();
        let _one = self.connecting.lock().await;
        if let Some(current) = self.cached() {
            return Ok(current);
        }
        // The caller before us gave up while we queued: share its verdict
        // instead of starting another wait of our own.
        if let Some((at, why)) = self.failed.lock().expect("poisoned").clone()
            && at >= asked_at
        {
            return Err(RedisError::from((ErrorKind::Io, "no primary", why)));
        }
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 0;
        loop {
            let epoch = self.topology.epoch();
            let opened = async {
                let client = self.topology.primary().await?;
                client
                    .get_multiplexed_async_connection_with_config(&self.config)
                    .await
            };
            let failed = match opened.await {
                Ok(conn) => {
                    let current = Current {
                        serial: self.serial.fetch_add(1, Ordering::Relaxed),
                        epoch,
                        conn,
                    };
                    *self.current.lock().expect("poisoned") = Some(current.clone());
                    *self.failed.lock().expect("poisoned") = None;
                    return Ok(current);
                }
                // A wrong password or user does not heal by waiting.
                Err(e) if is_auth_error(&e) => Some(e),
                // A primary that is gone is replaced within seconds: wait
                // for that as long as `failover_wait` allows.
                Err(e)
                    if attempt >= self.retries && (!patient || asked_at.elapsed() >= self.failover_wait) =>
                {
                    Some(e)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no primary yet; asking the sentinels again");
                    None
                }
            };
            if let Some(e) = failed {
                *self.failed.lock().expect("poisoned") = Some((tokio::time::Instant::now(), e.to_string()));
                return Err(e);
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// Drops connection `serial` if it is still the current one.
    fn drop_conn(&self, serial: u64) {
        let mut current = self.current.lock().expect("poisoned");
        if current.as_ref().is_some_and(|c| c.serial == serial) {
            *current = None;
        }
    }

    /// Sends `request`, following the primary: a `READONLY` refusal is
    /// sent again on a fresh connection, a broken connection is dropped
    /// (the error is returned: the command may or may not have run).
    async fn run(&self, request: Request<'_>) -> RedisResult<Vec<Value>> {
        let mut refused = 0;
        loop {
            let mut current = self.get(true).await?;
            let reply = match request {
                Request::One(cmd) => current.conn.req_packed_command(cmd).await.map(|v| vec![v]),
                Request::Pipeline(pipeline, offset, count) => {
                    current.conn.req_packed_commands(pipeline, offset, count).await
                }
            };
            // Server errors come back as values; a replica refuses every
            // write, so a reply with a READONLY in it applied no write at all
            // and the whole request can be sent again.
            let demoted = match &reply {
                Ok(values) => values.iter().any(value_is_readonly),
                Err(e) => is_readonly(e),
            };
            if demoted {
                self.drop_conn(current.serial);
                if refused < READONLY_RETRIES {
                    tracing::info!(
                        "the node we wrote to is a replica now; asking the sentinels for the primary"
                    );
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(100 * refused as u64)).await;
                    continue;
                }
                return reply;
            }
            if let Err(e) = &reply
                && (e.is_unrecoverable_error() || e.is_io_error() || e.is_timeout())
            {
                self.drop_conn(current.serial);
            }
            return reply;
        }
    }
}

/// A reply (or an element of one) that is a `READONLY` refusal.
fn value_is_readonly(value: &Value) -> bool {
    match value {
        Value::ServerError(e) => {
            e.kind() == Some(redis::ServerErrorKind::ReadOnly)
                || e.code() == "READONLY"
                || e.details().is_some_and(|d| d.contains("READONLY"))
        }
        Value::Array(items) => items.iter().any(value_is_readonly),
        _ => false,
    }
}

#[derive(Clone, Copy)]
enum Request<'a> {
    One(&'a Cmd),
    Pipeline(&'a redis::Pipeline, usize, usize),
}

/// Credentials the server (or a sentinel) refused, or wants.
pub(crate) fn is_auth_error(e: &RedisError) -> bool {
    e.kind() == ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        || [
            "NOAUTH",
            "WRONGPASS",
            "invalid password",
            "invalid username-password",
        ]
        .iter()
        .any(|m| e.to_string().contains(m))
}

/// A write refused by a replica: the node was demoted (or is being).
pub(crate) fn is_readonly(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        || e.code() == Some("READONLY")
        || e.to_string().contains("READONLY")
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.0 {
            Inner::Single(manager) => manager.req_packed_command(cmd),
            Inner::Sentinel(failover) => {
                let failover = failover.clone();
                Box::pin(async move {
                    let mut reply = failover.run(Request::One(cmd)).await?;
                    Ok(reply.pop().unwrap_or(Value::Nil))
                })
            }
            Inner::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.0 {
            Inner::Single(manager) => manager.req_packed_commands(pipeline, offset, count),
            Inner::Sentinel(failover) => {
                let failover = failover.clone();
                Box::pin(async move { failover.run(Request::Pipeline(pipeline, offset, count)).await })
            }
            Inner::Cluster(cluster) => {
                let mut cluster = cluster.clone();
                Box::pin(async move { cluster_pipeline(&mut cluster, pipeline, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.0 {
            Inner::Single(manager) => manager.get_db(),
            Inner::Sentinel(failover) => failover.topology_db(),
            Inner::Cluster(_) => 0,
        }
    }
}

/// How often a pipeline that a Cluster redirected is sent again.
const CLUSTER_REDIRECTS: u64 = 10;

/// Sends a pipeline on a Cluster. The crate sends a pipeline to the node its
/// slot map names and follows no redirection inside it: after a failover or
/// during a slot migration, a reply carries `MOVED`, `ASK`, `TRYAGAIN` or
/// `CLUSTERDOWN` for commands that did not run. Then a single command on the
/// pipeline's first key (which the crate does follow, refreshing its map on
/// `MOVED`) precedes sending the whole pipeline again, so its commands stay
/// together on one node (a script and its `WAIT`).
async fn cluster_pipeline(
    cluster: &mut ClusterConnection,
    pipeline: &redis::Pipeline,
    offset: usize,
    count: usize,
) -> RedisResult<Vec<Value>> {
    let mut tries = 0;
    loop {
        let reply = cluster.req_packed_commands(pipeline, offset, count).await;
        let redirected = match &reply {
            Ok(values) => values.iter().any(value_is_redirect),
            Err(e) => is_redirect(e),
        };
        if !redirected || tries >= CLUSTER_REDIRECTS {
            return reply;
        }
        tries += 1;
        if let Some(key) = first_key(pipeline) {
            let _: RedisResult<Value> = redis::cmd("EXISTS").arg(key).query_async(cluster).await;
        }
        tokio::time::sleep(Duration::from_millis(20 * tries)).await;
    }
}

/// The first key a pipeline's commands name (a script's first KEYS entry).
fn first_key(pipeline: &redis::Pipeline) -> Option<Vec<u8>> {
    pipeline.cmd_iter().find_map(|cmd| {
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .filter_map(|a| match a {
                redis::Arg::Simple(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        let name = args.first()?.to_ascii_uppercase();
        match name.as_slice() {
            b"EVALSHA" | b"EVAL" => (args.get(2).copied() != Some(b"0".as_slice()))
                .then(|| args.get(3).map(|k| k.to_vec()))
                .flatten(),
            b"WAIT" | b"PING" | b"INFO" | b"TIME" => None,
            _ => args.get(1).map(|k| k.to_vec()),
        }
    })
}

fn is_redirect(e: &RedisError) -> bool {
    use redis::ServerErrorKind as K;
    matches!(
        e.kind(),
        ErrorKind::Server(K::Moved | K::Ask | K::TryAgain | K::ClusterDown)
    ) || matches!(e.code(), Some("MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN"))
}

fn value_is_redirect(value: &Value) -> bool {
    match value {
        Value::ServerError(e) => {
            use redis::ServerErrorKind as K;
            matches!(e.kind(), Some(K::Moved | K::Ask | K::TryAgain | K::ClusterDown))
                || matches!(e.code(), "MOVED" | "ASK" | "TRYAGAIN" | "CLUSTERDOWN")
        }
        _ => false,
    }
}

impl Failover {
    fn topology_db(&self) -> i64 {
        match &self.topology.kind {
            Kind::Sentinel { endpoint, .. } => endpoint.db,
            Kind::Single(client) => client.get_connection_info().redis_settings().db(),
            Kind::Cluster { .. } => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinel(url: &str) -> SentinelEndpoint {
        match Endpoint::parse(url).expect("parses") {
            Endpoint::Sentinel(e) => e,
            other => panic!("not a sentinel endpoint: {other:?}"),
        }
    }

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(redact_url("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redact_url("redis://:s3cret@host:6379/0"),
            "redis://:***@host:6379/0"
        );
        assert_eq!(redact_url("rediss://app:s3cret@host"), "rediss://app:***@host");
        assert_eq!(redact_url("redis://token@host"), "redis://***@host");
        assert_eq!(
            redact_url("redis+sentinel://:pw@h1:26379,h2:26379/main"),
            "redis+sentinel://:***@h1:26379,h2:26379/main"
        );
        assert_eq!(
            redact_url("redis+sentinel://h:1/m?sentinel_password=pw&tls=true"),
            "redis+sentinel://h:1/m?sentinel_password=***&tls=true"
        );
    }

    #[test]
    fn sentinel_urls_name_every_sentinel_the_master_and_the_credentials() {
        let e = sentinel(
            "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:5000/main/2?sentinel_password=s&tls=insecure",
        );
        assert_eq!(
            e.sentinels,
            vec![
                ("10.0.0.1".to_string(), 26380),
                ("10.0.0.2".to_string(), SENTINEL_PORT),
                ("::1".to_string(), 5000)
            ]
        );
        assert_eq!(e.master, "main");
        assert_eq!(e.db, 2);
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert_eq!(e.sentinel_password.as_deref(), Some("s"));
        assert_eq!(e.tls, Some(redis::TlsMode::Insecure));
        let plain = sentinel("redis+sentinel://:secret@h:1/m");
        assert_eq!(
            (plain.username, plain.password),
            (None, Some("secret".to_string()))
        );
        assert_eq!(
            Endpoint::parse("redis://h:6379").unwrap(),
            Endpoint::Single("redis://h:6379".into())
        );
    }

    #[test]
    fn a_sentinel_url_that_cannot_work_says_why() {
        for (url, why) in [
            ("redis+sentinel://h:1", "no master name"),
            ("redis+sentinel://h:1/", "no master name"),
            ("redis+sentinel:///m", "no sentinel host"),
            ("redis+sentinel://h:port/m", "is not a port"),
            ("redis+sentinel://h:1/m?tls=maybe", "tls=maybe"),
            ("redis+sentinel://h:1/m?color=red", "unknown option"),
            ("redis+sentinel://::1/m", "put an IPv6 address in brackets"),
            ("redis+sentinel://[::1/m", "no closing ']'"),
            ("redis+sentinel://[::1]x/m", "expected ':port'"),
            ("redis+sentinel://h:1/m/0/extra", "unexpected \"extra\""),
        ] {
            let e = Endpoint::parse(url).expect_err(url).to_string();
            assert!(e.contains(why), "{url}: {e}");
            assert!(
                e.contains("redis+sentinel://[user:password@]host:port"),
                "{url}: {e}"
            );
        }
    }
}
