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
    let shown = redact(url);
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

/// The URL with any password replaced by `***` (also a Sentinel URL's
/// `sentinel_password=` option).
pub fn redact(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_error_messages() {
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(redact("redis://:s3cret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("rediss://app:s3cret@host"), "rediss://app:***@host");
        assert_eq!(redact("redis://token@host"), "redis://***@host");
        assert_eq!(
            redact("redis+sentinel://:pw@h1:26379,h2:26379/main"),
            "redis+sentinel://:***@h1:26379,h2:26379/main"
        );
        assert_eq!(
            redact("redis+sentinel://h:1/m?sentinel_password=pw&tls=true"),
            "redis+sentinel://h:1/m?sentinel_password=***&tls=true"
        );
    }
}
