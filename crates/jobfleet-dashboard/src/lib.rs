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
//!   the latest 200 events and the per-task latency windows.
//! - `api`: the HTTP routes: the page and its assets, `/api/stream` (SSE),
//!   job detail and cancel, dead letters with retry and purge, `/metrics`,
//!   `/healthz`.
//! - `guard`: the token check, the CSRF defence of state-changing routes
//!   and the security headers (a strict Content-Security-Policy).
//! - `prometheus`: `/metrics` in the Prometheus text format.
//! - `assets/`: `index.html`, `app.js`, `app.css`, embedded in the binary with
//!   `include_str!`: no CDN, works offline.
//!
//! Several dashboards, on any hosts, show the same live events: each one
//! subscribes to Redis pub/sub itself; they share nothing else.
//!
//! # Security
//!
//! The dashboard can retry, purge and cancel jobs, so:
//!
//! - it listens on loopback by default, and refuses a non-loopback address
//!   without a token ([`DashboardError::TokenRequired`]);
//! - with a token, every request must carry it (`Authorization: Bearer T`,
//!   or `?token=T`, which the page keeps for its own calls);
//! - state changes are POST only and need the `X-Jobfleet: 1` header, which
//!   a cross-site form cannot send, and a same-origin `Origin` and
//!   `Sec-Fetch-Site` when the browser sends them;
//! - the page builds its DOM with `textContent` only, and the server sends
//!   `Content-Security-Policy: script-src 'self'`, so job data (payloads,
//!   errors, task names) can never run as script.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), jobfleet_dashboard::DashboardError> {
//! let client = jobfleet_core::Client::connect("redis://127.0.0.1:6379").await?;
//! let options = jobfleet_dashboard::Options {
//!     listen: "127.0.0.1:8080".parse().unwrap(),
//!     token: None,
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

use tokio_util::sync::CancellationToken;

mod api;
mod guard;
mod hub;
mod prometheus;

/// How the dashboard listens.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to listen on. Anything but loopback requires a token.
    pub listen: SocketAddr,
    /// When set, every request must carry it.
    pub token: Option<String>,
}

impl Options {
    /// Checks the options before anything is started: a non-loopback address
    /// needs a token, and a token must be usable in a header and a URL.
    pub fn check(&self) -> Result<(), DashboardError> {
        if let Some(token) = &self.token
            && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(DashboardError::InvalidToken);
        }
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(DashboardError::TokenRequired(self.listen));
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
    Ok(Bound {
        listener,
        addr,
        token: options.token,
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
            token: self.token.map(Arc::from),
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
