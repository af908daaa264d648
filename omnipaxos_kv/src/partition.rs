//! Links between servers that a test can cut: a TCP relay per pair of servers, through which
//! one server connects to the other (see [`crate::cluster::ClusterOptions::partitionable`]).
//!
//! A cut link closes the connections it carries and closes every new one at once, so both
//! servers see their peer as disconnected (their reconnect attempts fail until the link is
//! restored), while both processes keep running: a real partition, unlike a paused process.
//! Client connections do not go through relays.

use std::collections::HashMap;
use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a relay waits to connect to its server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Default)]
struct LinkState {
    cut: AtomicBool,
    stopped: AtomicBool,
    next: AtomicU64,
    /// The open connections (both sides of each), to close them when the link is cut.
    conns: Mutex<HashMap<u64, (TcpStream, TcpStream)>>,
}

impl LinkState {
    fn close_all(&self) {
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(|e| e.into_inner()));
        for (a, b) in conns.into_values() {
            let _ = a.shutdown(Shutdown::Both);
            let _ = b.shutdown(Shutdown::Both);
        }
    }
}

/// A relay on a loopback port to one server's address, for one other server's connections.
pub struct Link {
    addr: String,
    state: Arc<LinkState>,
}

impl Link {
    /// Listens on a free loopback port and relays what arrives there to `target`.
    pub fn start(target: String) -> io::Result<Link> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let state = Arc::new(LinkState::default());
        let st = state.clone();
        std::thread::Builder::new()
            .name("link-relay".into())
            .spawn(move || accept_loop(listener, target, st))?;
        Ok(Link { addr, state })
    }

    /// The address servers connect to instead of the target's.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Cuts the link (`true`) or restores it (`false`).
    pub fn set_cut(&self, cut: bool) {
        self.state.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.state.close_all();
        }
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::SeqCst);
        self.state.close_all();
        // Wakes the accept loop so that it sees `stopped`.
        let _ = TcpStream::connect_timeout(
            &self.addr.parse().expect("a socket address"),
            Duration::from_millis(100),
        );
    }
}

fn accept_loop(listener: TcpListener, target: String, state: Arc<LinkState>) {
    let Ok(target_addr) = target.parse::<std::net::SocketAddr>() else {
        return;
    };
    for incoming in listener.incoming() {
        if state.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(inbound) = incoming else { continue };
        if state.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let Ok(outbound) = TcpStream::connect_timeout(&target_addr, CONNECT_TIMEOUT) else {
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let id = state.next.fetch_add(1, Ordering::Relaxed);
        let (Ok(a), Ok(b)) = (inbound.try_clone(), outbound.try_clone()) else {
            continue;
        };
        state
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, (a, b));
        // A cut that raced with this connection: close it too.
        if state.cut.load(Ordering::SeqCst) {
            state.close_all();
            continue;
        }
        for (from, to) in [(&inbound, &outbound), (&outbound, &inbound)] {
            let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
                continue;
            };
            let st = state.clone();
            let _ = std::thread::Builder::new()
                .name("link-pump".into())
                .spawn(move || {
                    let _ = io::copy(&mut from, &mut to);
                    let _ = from.shutdown(Shutdown::Both);
                    let _ = to.shutdown(Shutdown::Both);
                    st.conns
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&id);
                });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn relays_and_cuts() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = server.local_addr().unwrap().to_string();
        let echo = std::thread::spawn(move || {
            // Echoes every connection until it closes.
            for s in server.incoming().take(2) {
                let mut s = s.unwrap();
                let mut r = s.try_clone().unwrap();
                std::thread::spawn(move || {
                    let _ = io::copy(&mut r, &mut s);
                });
            }
        });
        let link = Link::start(target).unwrap();
        let mut c = TcpStream::connect(link.addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");

        link.set_cut(true);
        assert!(link.is_cut());
        // The open connection is closed, and a new one is closed at once.
        let mut rest = Vec::new();
        assert!(matches!(c.read_to_end(&mut rest), Ok(0) | Err(_)));
        let mut d = TcpStream::connect(link.addr()).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = d.write_all(b"lost");
        assert!(matches!(d.read(&mut buf), Ok(0) | Err(_)));

        link.set_cut(false);
        let mut e = TcpStream::connect(link.addr()).unwrap();
        e.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        e.write_all(b"pong").unwrap();
        e.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
        drop(e);
        drop(link);
        echo.join().unwrap();
    }
}
