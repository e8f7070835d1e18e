//! jobfleet-dashboard: the live web dashboard of a jobfleet fleet, one page
//! pushed from the server over Server-Sent Events.
//!
//! # Layout
//!
//! - [`serve`] (or [`bind`] then [`Bound::serve`]): checks the [`Options`],
//!   binds, subscribes to Redis and serves until the shutdown future ends.
//! - `hub`: the dashboard's one Redis event subscription (a pattern over
//!   every queue) and its once-a-second stats read, fanned out to every
//!   browser through a tokio broadcast channel. It also keeps what a page
//!   that connects later starts from: the throughput history (~5 minutes),
//!   the latest 200 events (progress reports are passed on, not kept) and
//!   the per-task latency windows.
//! - `api`: the HTTP routes: the page and its assets, `/api/stream` (SSE),
//!   job detail and cancel, queue pause and resume, jobs by state,
//!   schedules (list, pause, resume, remove), dead letters with retry and
//!   purge, `/metrics`, `/healthz`.
//! - `guard`: the Host check, the token check, the CSRF defence of
//!   state-changing routes and the security headers (a strict
//!   Content-Security-Policy).
//! - `prometheus`: `/metrics` in the Prometheus text format.
//! - `assets/`: `index.html`, `app.js`, `app.css`, embedded in the binary with
//!   `include_str!`: no CDN, works offline.
//!
//! Several dashboards, on any hosts, show the same live events: each one
//! subscribes to Redis pub/sub itself; they share nothing else.
//!
//! # Security
//!
//! The dashboard can retry, purge and cancel jobs and pause queues, so:
//!
//! - it listens on loopback by default, and refuses a non-loopback address
//!   without a token ([`DashboardError::TokenRequired`]);
//! - every request must name it in its `Host` header (HTTP 421 otherwise,
//!   and for an HTTP/1.1 request without one): a loopback name or address
//!   (`localhost`, any `127.x.y.z`, `[::1]`), the listen address, or a name
//!   in [`Options::allow_hosts`], with any port. Loopback is no boundary
//!   against the operator's own browser: a page on evil.example whose name
//!   is re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with the
//!   dashboard there, but still says `Host: evil.example`. The check holds
//!   with a token too, except on a wildcard address (0.0.0.0, `::`): there
//!   the operator chose to expose the dashboard under whatever names reach
//!   the machine, every name is accepted, and the token (which such a page
//!   does not have) is the guard;
//! - with a token, every request must carry it (`Authorization: Bearer T`,
//!   or `?token=T`, which the page keeps for its own calls);
//! - state changes are POST only and need the `X-Jobfleet: 1` header, which
//!   a cross-site form cannot send, and a same-origin `Origin` and
//!   `Sec-Fetch-Site` when the browser sends them;
//! - the page builds its DOM with `textContent` only, and the server sends
//!   `Content-Security-Policy: script-src 'self'`, so job data (payloads,
//!   errors, task names) can never run as script;
//! - at most [`Options::max_streams`] live streams are open at once (503
//!   beyond), since each holds a connection and a broadcast receiver.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobfleet_dashboard::DashboardError> {
//! let client = jobfleet_core::Client::connect("redis://127.0.0.1:6379").await?;
//! let options = jobfleet_dashboard::Options {
//!     listen: "127.0.0.1:8080".parse().unwrap(),
//!     token: None,
//!     allow_hosts: vec!["dashboard.internal".into()],
//!     max_streams: jobfleet_dashboard::DEFAULT_MAX_STREAMS,
//! };
//! let shutdown = async {
//!     let _ = tokio::signal::ctrl_c().await;
//! };
//! jobfleet_dashboard::serve(client, options, shutdown).await
//! # }
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod api;
mod guard;
mod hub;
mod prometheus;

/// The live streams (open pages) served at once unless told otherwise.
pub const DEFAULT_MAX_STREAMS: usize = 64;

/// How the dashboard listens.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to listen on. Anything but loopback requires a token.
    pub listen: SocketAddr,
    /// When set, every request must carry it.
    pub token: Option<String>,
    /// Host names (or IP addresses) requests may name besides loopback ones
    /// and the listen address, without a port: how the dashboard is reached
    /// through a proxy or a DNS name. Moot on a wildcard address with a
    /// token, which answers to any name.
    pub allow_hosts: Vec<String>,
    /// The most live streams open at once; one more gets 503.
    pub max_streams: usize,
}

impl Options {
    /// Checks the options before anything is started: a non-loopback address
    /// needs a token, a token must be usable in a header and a URL, allowed
    /// hosts must be host names and at least one stream must be allowed.
    pub fn check(&self) -> Result<(), DashboardError> {
        if let Some(token) = &self.token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(DashboardError::InvalidToken);
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(DashboardError::TokenRequired(self.listen));
        }
        if let Some(bad) = self.allow_hosts.iter().find(|n| guard::allowed_name(n).is_none()) {
            return Err(DashboardError::InvalidAllowedHost(bad.clone()));
        }
        if self.max_streams == 0 {
            return Err(DashboardError::NoStreams);
        }
        Ok(())
    }
}

/// Why the dashboard could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to listen on {0} without a token: anyone who can reach it could retry, purge and \
         cancel jobs; set one with --token or JOBFLEET_DASHBOARD_TOKEN, or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// An empty token, or one with spaces or control characters.
    #[error("the token must be one or more printable ASCII characters without spaces")]
    InvalidToken,
    /// An allowed host that is no host name or IP address, or has a port.
    #[error(
        "cannot allow host {0:?}: give a host name or IP address without a scheme or port, \
         e.g. --allow-host dashboard.internal"
    )]
    InvalidAllowedHost(String),
    /// A stream limit of 0.
    #[error("--max-streams must be at least 1: with 0 no page could get live updates")]
    NoStreams,
    /// The address could not be bound (the reason is the error's source).
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Redis could not be reached for the event subscription.
    #[error(transparent)]
    Redis(#[from] jobfleet_core::Error),
    /// The HTTP server failed.
    #[error("serving http: {0}")]
    Serve(std::io::Error),
}

/// A dashboard bound to its address, not yet serving. Lets a caller learn
/// the port (when it asked for port 0) before serving.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: Option<String>,
    hosts: guard::Hosts,
    max_streams: usize,
}

/// Checks the options and binds the address.
pub async fn bind(options: Options) -> Result<Bound, DashboardError> {
    options.check()?;
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| DashboardError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| DashboardError::Bind {
        addr: options.listen,
        source,
    })?;
    // From the address asked for: a wildcard one stays a wildcard.
    let hosts = guard::Hosts::new(options.listen, options.token.is_some(), &options.allow_hosts);
    Ok(Bound {
        listener,
        addr,
        token: options.token,
        hosts,
        max_streams: options.max_streams,
    })
}

impl Bound {
    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's URL, with the token in the query when one is set.
    pub fn url(&self) -> String {
        let mut url = format!("http://{}/", self.addr);
        if let Some(token) = &self.token {
            url.push_str("?token=");
            url.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
        url
    }

    /// Subscribes to Redis events, starts the stats loop and serves until
    /// `shutdown` ends. Open event streams are closed on shutdown so the
    /// server can drain.
    pub async fn serve(
        self,
        client: jobfleet_core::Client,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let stop = CancellationToken::new();
        let hub = hub::Hub::start(client.clone(), stop.clone()).await?;
        let app = api::router(api::AppState {
            client,
            hub,
            exporter: Arc::new(prometheus::Exporter::new()),
            stop: stop.clone(),
            index: Arc::from(api::index_html(self.token.as_deref())),
            guard: Arc::new(guard::Guard {
                token: self.token.map(Arc::from),
                hosts: self.hosts,
            }),
            streams: Arc::new(Semaphore::new(self.max_streams.min(Semaphore::MAX_PERMITS))),
            max_streams: self.max_streams,
        });
        tracing::info!(addr = %self.addr, "dashboard listening");
        let stopping = stop.clone();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                stopping.cancel();
            })
            .await;
        stop.cancel();
        result.map_err(DashboardError::Serve)
    }
}

/// Serves the dashboard for `client` until `shutdown` ends: [`bind`], then
/// [`Bound::serve`].
pub async fn serve(
    client: jobfleet_core::Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DashboardError> {
    bind(options).await?.serve(client, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(listen: &str, token: Option<&str>) -> Options {
        Options {
            listen: listen.parse().unwrap(),
            token: token.map(String::from),
            allow_hosts: Vec::new(),
            max_streams: DEFAULT_MAX_STREAMS,
        }
    }

    #[test]
    fn loopback_needs_no_token_but_anything_else_does() {
        assert!(options("127.0.0.1:8080", None).check().is_ok());
        assert!(options("[::1]:8080", None).check().is_ok());
        for listen in ["0.0.0.0:8080", "[::]:8080", "192.0.2.7:80"] {
            let err = options(listen, None).check().unwrap_err();
            assert!(matches!(err, DashboardError::TokenRequired(_)), "{listen}");
            assert!(err.to_string().contains("without a token"), "{err}");
            assert!(options(listen, Some("s3cret")).check().is_ok());
        }
    }

    #[test]
    fn tokens_must_fit_a_header_and_a_url() {
        for bad in ["", "two words", "tab\there", "caf\u{e9}"] {
            assert!(
                matches!(
                    options("127.0.0.1:1", Some(bad)).check(),
                    Err(DashboardError::InvalidToken)
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn allowed_hosts_must_be_names_and_streams_more_than_none() {
        let mut allowing = options("127.0.0.1:1", None);
        allowing.allow_hosts = vec!["dash.example".into(), "192.0.2.7".into(), "fd00::1".into()];
        assert!(allowing.check().is_ok());
        for bad in ["dash.example:8080", "http://dash.example", "a b", ""] {
            allowing.allow_hosts = vec!["dash.example".into(), bad.into()];
            let err = allowing.check().unwrap_err();
            assert!(
                matches!(&err, DashboardError::InvalidAllowedHost(h) if h == bad),
                "{bad:?}"
            );
            assert!(err.to_string().contains("without a scheme or port"), "{err}");
        }
        let mut none = options("127.0.0.1:1", None);
        none.max_streams = 0;
        assert!(matches!(none.check(), Err(DashboardError::NoStreams)));
    }

    #[tokio::test]
    async fn the_printed_url_carries_the_token_percent_encoded() {
        let bound = bind(options("127.0.0.1:0", Some("a+b/c&d"))).await.unwrap();
        let port = bound.local_addr().port();
        assert_ne!(port, 0);
        assert_eq!(
            bound.url(),
            format!("http://127.0.0.1:{port}/?token=a%2Bb%2Fc%26d")
        );
        let bound = bind(options("127.0.0.1:0", None)).await.unwrap();
        assert_eq!(bound.url(), format!("http://{}/", bound.local_addr()));
    }

    #[tokio::test]
    async fn a_taken_port_is_a_bind_error_that_names_the_address() {
        let taken = bind(options("127.0.0.1:0", None)).await.unwrap();
        let addr = taken.local_addr().to_string();
        let err = bind(options(&addr, None)).await.unwrap_err();
        assert!(matches!(err, DashboardError::Bind { .. }));
        assert_eq!(err.to_string(), format!("cannot listen on {addr}"));
        let source = std::error::Error::source(&err).expect("the io error is the source");
        assert!(source.to_string().contains("in use"), "{source}");
    }
}
