//! Test helpers shared by every jobfleet test suite.
//!
//! [`RedisServer`] starts a private `redis-server` on a free loopback port, in
//! its own temporary directory, and kills it on drop. Tests never share a
//! database and never need the machine's own Redis. When `redis-server` is not
//! installed the helper panics with a message that says how to install it: a
//! missing server is a failure, never a skip.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod cluster;
mod proxy;
mod sentinel;

pub use cluster::{ClusterNode, Migration, RedisCluster, TestRedis, redis_cli_binary};
pub use proxy::Proxy;
pub use sentinel::{SentinelGroup, role};

/// How a test wants its server configured.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// Turn on the append-only file with `appendfsync always`, so a restart
    /// keeps every acknowledged write (used by the restart tests).
    pub aof: bool,
    /// Serve TLS only, with a self-signed certificate made by `openssl`;
    /// [`RedisServer::url`] is then a `rediss://` URL that skips certificate
    /// verification (`#insecure`), and [`RedisServer::cmd`] is unavailable.
    pub tls: bool,
    /// Start as a replica of the server on this loopback port.
    pub replica_of: Option<u16>,
    /// Start as a Redis Cluster node (`--cluster-enabled yes`, its
    /// `nodes.conf` in its own directory); see [`RedisCluster`].
    pub cluster: bool,
}

/// A private `redis-server` process; killed (and its files removed) on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a server with persistence off.
    pub fn start() -> RedisServer {
        RedisServer::start_with(RedisOptions::default())
    }

    /// Starts a server with the given options, retrying on a fresh port if the
    /// chosen one was taken between picking it and binding it.
    pub fn start_with(options: RedisOptions) -> RedisServer {
        let dir = tempfile::tempdir().expect("create a temporary directory for redis-server");
        let mut last_error = String::new();
        for _ in 0..5 {
            // A cluster node also listens on its port + 10000.
            let port = loop {
                let port = free_port();
                if !options.cluster || port <= 55535 {
                    break port;
                }
            };
            match spawn(port, dir.path(), &options) {
                Ok(child) => {
                    return RedisServer {
                        child: Some(child),
                        port,
                        dir,
                        options,
                    };
                }
                Err(e) => last_error = e,
            }
        }
        panic!("could not start redis-server: {last_error}");
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL for this server (`rediss://` with TLS on).
    pub fn url(&self) -> String {
        if self.options.tls {
            format!("rediss://127.0.0.1:{}/#insecure", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// The server's working directory (where the AOF lives).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server runs (it was not killed, or was restarted since).
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Starts the server again on the same port and directory (after
    /// [`RedisServer::kill`]); with AOF on, it reloads what it had.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn(self.port, self.dir.path(), &self.options) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(e) if Instant::now() > deadline => panic!("could not restart redis-server: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Sends one command in the inline protocol and returns the raw reply;
    /// enough for test set-up without pulling a client into this crate.
    pub fn cmd(&self, line: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        stream.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut buf = [0u8; 65536];
        let n = stream.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one command in the inline protocol to a loopback port; returns the
/// raw reply, or an empty string when nothing answers.
pub fn send(port: u16, line: &str) -> String {
    send_all(port, &[line]).pop().unwrap_or_default()
}

/// Sends commands in the inline protocol on one connection (an `AUTH`
/// first, say); returns each raw reply, fewer when the server stops
/// answering.
pub fn send_all(port: u16, lines: &[&str]) -> Vec<String> {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return Vec::new();
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let text: String = lines.iter().map(|l| format!("{l}\r\n")).collect();
    if stream.write_all(text.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut replies = Vec::new();
    let mut start = 0;
    while replies.len() < lines.len() {
        // Take every complete reply buffered so far, then read more.
        while replies.len() < lines.len()
            && let Some(end) = resp_end(&buf, start)
        {
            replies.push(String::from_utf8_lossy(&buf[start..end]).into_owned());
            start = end;
        }
        if replies.len() == lines.len() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    replies
}

/// The words of a RESP reply (bulk strings, simple strings, integers),
/// flattened; enough to read replies in test set-up.
pub fn resp_words(reply: &str) -> Vec<String> {
    reply
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('*') && !l.starts_with('$'))
        .map(|l| l.trim_start_matches(['+', ':']).to_string())
        .collect()
}

/// Where the RESP reply starting at `i` ends, once it is all in `b`.
fn resp_end(b: &[u8], i: usize) -> Option<usize> {
    if i >= b.len() {
        return None;
    }
    let end = i + b[i..].windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&b[i + 1..end]).ok()?;
    let next = end + 2;
    match b[i] {
        b'$' => {
            let n: i64 = line.parse().ok()?;
            if n < 0 {
                return Some(next);
            }
            let stop = next + n as usize + 2;
            (b.len() >= stop).then_some(stop)
        }
        b'*' => {
            let n: i64 = line.parse().ok()?;
            let mut at = next;
            for _ in 0..n.max(0) {
                at = resp_end(b, at)?;
            }
            Some(at)
        }
        _ => Some(next),
    }
}

/// The path of `redis-server`, or a panic that says how to get it.
pub fn redis_server_binary() -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let candidate = Path::new(dir).join("redis-server");
        if candidate.exists() {
            return candidate;
        }
    }
    if let Ok(path) = std::env::var("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("redis-server");
            if candidate.exists() {
                return candidate;
            }
        }
    }
    panic!(
        "redis-server is not installed; install it (Debian: apt-get install redis-server) \
         or run scripts/test.sh, which installs it"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

fn spawn(port: u16, dir: &Path, options: &RedisOptions) -> Result<Child, String> {
    let mut command = Command::new(redis_server_binary());
    let log = dir.join("redis.log");
    if options.tls {
        make_certificate(dir)?;
        let _ = std::fs::remove_file(&log);
        command
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key-file")
            .arg(dir.join("key.pem"))
            .arg("--tls-ca-cert-file")
            .arg(dir.join("cert.pem"))
            .arg("--logfile")
            .arg(&log);
    } else {
        command.arg("--port").arg(port.to_string());
    }
    command
        .args(["--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(["--maxmemory-policy", "noeviction", "--protected-mode", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(primary) = options.replica_of {
        command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
    }
    if options.cluster {
        command.args(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
        command.args(["--cluster-node-timeout", &cluster::NODE_TIMEOUT_MS.to_string()]);
    }
    if options.aof {
        command.args(["--appendonly", "yes", "--appendfsync", "always"]);
    } else {
        command.args(["--appendonly", "no"]);
    }
    let mut child = command.spawn().map_err(|e| format!("spawn redis-server: {e}"))?;
    reap_with_this_process(child.id(), dir);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // A TLS server cannot be pinged in plain text: its log says when it is ready.
        if options.tls {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return Ok(child);
            }
        } else if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut reply = [0u8; 64];
            if stream.write_all(b"PING\r\n").is_ok()
                && stream
                    .read(&mut reply)
                    .map(|n| reply[..n].starts_with(b"+PONG"))
                    .unwrap_or(false)
            {
                return Ok(child);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "redis-server exited at start-up with {status} (port {port} taken?)"
            ));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(format!(
                "redis-server did not answer PING on port {port} within 10s"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes sure process `pid` dies with this one, even when this process
/// never runs its destructors (a server held in a `static`, shared by the
/// tests of one binary, or a test that aborts): a shell polls both and,
/// once this process is gone (and only then), kills `pid` and removes
/// `dir`, its scratch folder.
pub fn reap_with_this_process(pid: u32, dir: &Path) {
    let me = std::process::id();
    let dir = dir.display().to_string().replace('\'', "");
    let script = format!(
        "while kill -0 {me} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         if ! kill -0 {me} 2>/dev/null; then kill -9 {pid} 2>/dev/null; sleep 0.2; rm -rf '{dir}'; fi"
    );
    let _ = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A self-signed certificate for 127.0.0.1 in `dir` (cert.pem, key.pem).
fn make_certificate(dir: &Path) -> Result<(), String> {
    if dir.join("cert.pem").exists() {
        return Ok(());
    }
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("run openssl to make a test certificate (install openssl): {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("openssl could not make a test certificate".into())
    }
}
