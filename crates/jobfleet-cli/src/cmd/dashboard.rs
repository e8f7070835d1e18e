//! `jobfleet dashboard`: serves the live web dashboard until Ctrl-C.

use anyhow::Context;

use crate::Outcome;
use crate::connect::Target;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on. Anything but a loopback address requires --token.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Require this token on every request: header `Authorization: Bearer TOKEN`, or `?token=TOKEN`
    /// in the page's URL (the printed URL has it).
    #[arg(long, env = "JOBFLEET_DASHBOARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Also answer to this host name or IP, without a port (repeatable): what a proxy or a DNS name
    /// puts in the Host header. Requests naming any other host are refused, a guard against DNS
    /// rebinding; loopback names and the --listen address are always accepted, and with --token
    /// on 0.0.0.0 or [::] every name is.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_hosts: Vec<String>,
    /// The most live streams (open pages) served at once; one more is refused with 503.
    #[arg(long, default_value_t = jobfleet_dashboard::DEFAULT_MAX_STREAMS)]
    max_streams: usize,
}

pub async fn run(target: &Target, args: Args) -> anyhow::Result<Outcome> {
    let options = jobfleet_dashboard::Options {
        listen: args.listen,
        token: args.token,
        allow_hosts: args.allow_hosts,
        max_streams: args.max_streams,
    };
    // Refuse an unsafe address before touching Redis.
    options.check()?;
    let client = target.connect().await?;
    let bound = jobfleet_dashboard::bind(options).await?;
    eprintln!("jobfleet dashboard: serving {}", bound.url());
    eprintln!("press Ctrl-C to stop");
    bound
        .serve(client, shutdown_signal())
        .await
        .context("the dashboard stopped")?;
    Ok(Outcome::Success)
}

/// Ctrl-C, or SIGTERM where there is one.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
