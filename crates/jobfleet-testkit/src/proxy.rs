//! [`Proxy`]: a TCP proxy a test puts between a process and Redis, to cut
//! the network without touching either end.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Forwards a loopback port to `127.0.0.1:upstream`. [`Proxy::partition`]
/// stops every byte both ways, on open connections and new ones, without
/// closing anything: as with a real partition, each side sees silence, not
/// an error, and what was sent meanwhile arrives after [`Proxy::heal`]
/// (TCP retransmits it). Stops on drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    blocked: Arc<AtomicBool>,
    stopped: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts forwarding.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("the proxy's address").port();
        let blocked = Arc::new(AtomicBool::new(false));
        let stopped = Arc::new(AtomicBool::new(false));
        let (b, s) = (blocked.clone(), stopped.clone());
        std::thread::spawn(move || accept(listener, upstream, b, s));
        Proxy {
            port,
            blocked,
            stopped,
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A `redis://` URL through the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Cuts the network: nothing passes until [`Proxy::heal`].
    pub fn partition(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    /// Lets traffic through again.
    pub fn heal(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, upstream: u16, blocked: Arc<AtomicBool>, stopped: Arc<AtomicBool>) {
    while !stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (from, to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ] {
                    let (Ok(from), Ok(to)) = (from, to) else { continue };
                    let (b, s) = (blocked.clone(), stopped.clone());
                    std::thread::spawn(move || pipe(from, to, b, s));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Copies one direction; holds bytes while blocked.
fn pipe(mut from: TcpStream, mut to: TcpStream, blocked: Arc<AtomicBool>, stopped: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    let hold = || {
        while blocked.load(Ordering::SeqCst) && !stopped.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    loop {
        hold();
        if stopped.load(Ordering::SeqCst) {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Read just before the cut: delivered after the heal.
                hold();
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
