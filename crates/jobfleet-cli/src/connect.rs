//! Connecting to Redis with an error message that names the URL (with any
//! password hidden) and says what to do.

use jobfleet_core::{Client, ConnectOptions, ConnectTrouble};

/// Where the fleet's Redis is.
#[derive(Debug, Clone)]
pub struct Target {
    /// Redis URL.
    pub url: String,
    /// Key prefix.
    pub prefix: String,
    /// Replicas that must confirm each submit (0: not asked).
    pub replicas: u32,
    /// How long to wait for them.
    pub replica_timeout: std::time::Duration,
}

impl Target {
    /// Connects, failing fast with a clear message when Redis is unreachable.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let options = ConnectOptions {
            prefix: self.prefix.clone(),
            retries: 1,
            replicas: self.replicas,
            replica_timeout: self.replica_timeout,
            ..ConnectOptions::default()
        };
        Client::connect_with(&self.url, options)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", explain(&self.url, &e)))
    }
}

/// What a connection error means, and what to do, for the user.
pub fn explain(url: &str, e: &jobfleet_core::Error) -> String {
    let shown = jobfleet_core::redact_url(url);
    let sentinel = url.starts_with("redis+sentinel://");
    match e.connect_trouble() {
        ConnectTrouble::BadUrl => format!(
            "the Redis URL {shown} cannot be used; write it as redis://[user:password@]host:port[/db] \
             (rediss:// for TLS, redis+sentinel://host:port,.../MASTER_NAME for Sentinel)"
        ),
        ConnectTrouble::Credentials => format!(
            "Redis at {shown} refused the credentials, or wants some: put the password in the URL \
             (redis://:PASSWORD@host:port, or user:PASSWORD@ with ACL users{})",
            if sentinel {
                "; a sentinel's own password goes in ?sentinel_password="
            } else {
                ""
            }
        ),
        ConnectTrouble::Unreachable | ConnectTrouble::Other if sentinel => format!(
            "cannot reach a primary through the sentinels at {shown}; are they running, and do they \
             watch that master name? Point --redis (or JOBFLEET_REDIS) at them"
        ),
        ConnectTrouble::Unreachable | ConnectTrouble::Other => {
            format!("cannot reach Redis at {shown}; is it running? Point --redis (or JOBFLEET_REDIS) at it")
        }
    }
}
