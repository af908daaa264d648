//! A client of the service: one request at a time, hedged onto another server when its server
//! is slow to answer, moved at once when its connection breaks. Each request keeps its
//! `(client_id, command_id)` across retries and hedges, so the servers apply it once however
//! often it reaches the log.
//!
//! **Failover.** A request goes to the client's current server. If no answer came after the
//! *hedge delay* (twice the slowest of the client's last 32 answers, at least
//! [`MIN_HEDGE_DELAY`], at most the attempt timeout), the same request also goes to the next
//! server, and whichever answers first wins; the client then stays on that server. A broken
//! connection moves the request on at once. So a paused or partitioned server costs a client
//! one hedge delay (tens of milliseconds), not an attempt timeout. Once the servers have all
//! been tried, the request is resent to each in turn every attempt timeout (a server may have
//! lost it in a leader change). A client that moved away from its first server goes back to
//! it after [`REBALANCE_AFTER`] without failures, so clients stay spread over the servers.

use crate::kv::{ClientId, CommandId, KVCommand, KVResult};
use crate::net::{
    read_frame, write_frame, BoxStream, ClientRequest, Hello, ServerReply, StatusInfo,
    StreamWriter, Welcome, PROTOCOL_VERSION,
};
use crate::tls::{server_name_for, Identity, TlsError, CLIENT_ALPN};
use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Shortest hedge delay.
pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(50);
/// Shortest time a request's first server gets to connect (see [`KvClient`]).
pub const MIN_CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Time without failures after which a client returns to its first server.
pub const REBALANCE_AFTER: Duration = Duration::from_secs(2);
/// Answers whose latency sets the hedge delay.
const LATENCY_WINDOW: usize = 32;

/// Why a request failed. Its effect is unknown: it may still be applied (once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientError {
    /// No server answered before the deadline.
    Unavailable(String),
    /// A server refused the command (e.g. during a reconfiguration).
    Refused(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Unavailable(s) => write!(f, "no server answered: {s}"),
            ClientError::Refused(s) => write!(f, "refused: {s}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A fresh client id: random enough to be unique among the clients of a cluster.
pub fn random_client_id() -> ClientId {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x = nanos ^ ((std::process::id() as u64) << 32);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    x ^= COUNTER
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    splitmix(x).max(1)
}

pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// TLS settings of a client: the cluster's CA, optionally a client certificate, and the name
/// to check servers' certificates against (default: the host of the address connected to).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
    server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl ClientTls {
    /// TLS with `identity` (its CA; its certificate, if any, is presented to servers that
    /// require client certificates).
    pub fn new(identity: &Identity, server_name: Option<String>) -> Result<Self, TlsError> {
        Ok(ClientTls {
            config: identity.client_config(CLIENT_ALPN)?,
            server_name,
        })
    }

    /// Reads the CA file and, if given, a certificate and key file.
    pub fn from_files(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
        server_name: Option<String>,
    ) -> Result<Self, TlsError> {
        Self::new(&Identity::from_files(ca, cert_and_key)?, server_name)
    }
}

/// Opens a connection to `addr` (TLS if `tls`) and does the handshake.
async fn open(
    addr: &str,
    hello: &Hello,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<(crate::net::StreamReader, StreamWriter), String> {
    let fut = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: BoxStream = match tls {
            Some(t) => {
                let name = server_name_for(addr, t.server_name.as_deref()).map_err(|e| e.0)?;
                let s = tokio_rustls::TlsConnector::from(t.config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("{addr}: TLS handshake failed: {e}"))?;
                Box::new(s)
            }
            None => Box::new(tcp),
        };
        let (mut reader, mut writer) = crate::net::split(stream);
        write_frame(&mut writer, hello)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        writer.flush().await.map_err(|e| format!("{addr}: {e}"))?;
        match read_frame::<Welcome, _>(&mut reader).await {
            Ok(Welcome::Accepted(_)) => Ok((reader, writer)),
            Ok(Welcome::Refused(r)) => Err(format!("{addr} refused the connection: {r}")),
            Err(e) => Err(format!("{addr}: {e}")),
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: handshake timed out")))
}

/// Asks the server at `addr` for its view of the cluster.
pub async fn status(addr: &str, timeout: Duration) -> Result<StatusInfo, String> {
    status_with(addr, None, timeout).await
}

/// [`status`], over TLS if `tls`.
pub async fn status_with(
    addr: &str,
    tls: Option<&ClientTls>,
    timeout: Duration,
) -> Result<StatusInfo, String> {
    let hello = Hello::Client {
        version: PROTOCOL_VERSION,
        client_id: random_client_id(),
    };
    let start = Instant::now();
    let (mut reader, mut writer) = open(addr, &hello, tls, timeout).await?;
    let fut = async {
        write_frame(&mut writer, &ClientRequest::Status)
            .await
            .map_err(|e| e.to_string())?;
        writer.flush().await.map_err(|e| e.to_string())?;
        loop {
            match read_frame::<ServerReply, _>(&mut reader).await {
                Ok(ServerReply::Status(s)) => return Ok(s),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(timeout.saturating_sub(start.elapsed()), fut)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no status answer")))
}

/// What a connection's reader task reports: the server's index, the connection's generation,
/// and a reply or the reason the connection ended.
type Report = (usize, u64, Result<ServerReply, String>);

/// An open connection to one server. Its reader task feeds the client's report channel, so
/// that waiting on several servers at once is one `recv` (and cancelling a wait loses nothing).
struct Link {
    writer: StreamWriter,
    generation: u64,
    reader: JoinHandle<()>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A client of the cluster (see the module documentation for how it fails over).
pub struct KvClient {
    client_id: ClientId,
    servers: Vec<String>,
    current: usize,
    links: Vec<Option<Link>>,
    generation: u64,
    reports_tx: mpsc::UnboundedSender<Report>,
    reports: mpsc::UnboundedReceiver<Report>,
    next_id: CommandId,
    attempt_timeout: Duration,
    deadline: Duration,
    hedging: bool,
    recent: VecDeque<Duration>,
    last_failure: Option<Instant>,
    tls: Option<ClientTls>,
}

impl KvClient {
    /// A client of the servers at `servers` (`host:port`), starting with the first.
    /// `attempt_timeout` bounds the hedge delay and is how long a request waits before it is
    /// resent once every server has it; `deadline` bounds one request in total.
    pub fn new(servers: Vec<String>, attempt_timeout: Duration, deadline: Duration) -> Self {
        Self::with_id(random_client_id(), servers, attempt_timeout, deadline)
    }

    /// Like [`new`](Self::new) with a chosen client id (unique among the cluster's clients).
    pub fn with_id(
        client_id: ClientId,
        servers: Vec<String>,
        attempt_timeout: Duration,
        deadline: Duration,
    ) -> Self {
        let (reports_tx, reports) = mpsc::unbounded_channel();
        KvClient {
            client_id,
            links: servers.iter().map(|_| None).collect(),
            servers,
            current: 0,
            generation: 0,
            reports_tx,
            reports,
            next_id: 1,
            attempt_timeout,
            deadline,
            hedging: true,
            recent: VecDeque::with_capacity(LATENCY_WINDOW),
            last_failure: None,
            tls: None,
        }
    }

    /// Connects over TLS from now on.
    pub fn with_tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(tls);
        self.links.iter_mut().for_each(|l| *l = None);
        self
    }

    /// Turns hedging off (on by default): a request then waits a whole attempt timeout on a
    /// server before it moves on, as clients before hedging did (for comparisons).
    pub fn without_hedging(mut self) -> Self {
        self.hedging = false;
        self
    }

    /// This client's id.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The server the client currently talks to.
    pub fn current_server(&self) -> &str {
        self.servers.get(self.current).map_or("", |s| s.as_str())
    }

    /// `Put(key, value)`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), ClientError> {
        self.execute(KVCommand::Put(key.into(), value.into()))
            .await
            .map(|_| ())
    }

    /// `Delete(key)`.
    pub async fn delete(&mut self, key: &str) -> Result<(), ClientError> {
        self.execute(KVCommand::Delete(key.into()))
            .await
            .map(|_| ())
    }

    /// `Get(key)`: linearizable.
    pub async fn get(&mut self, key: &str) -> Result<Option<String>, ClientError> {
        match self.execute(KVCommand::Get(key.into())).await? {
            KVResult::Read(v) => Ok(v),
            KVResult::Write => Err(ClientError::Refused(
                "the server answered a Get as a write".into(),
            )),
        }
    }

    /// How long to wait for the first server before asking another one too.
    fn hedge_delay(&self) -> Duration {
        if !self.hedging {
            return self.attempt_timeout;
        }
        let slowest = self.recent.iter().max().copied().unwrap_or_default();
        (slowest * 2).max(MIN_HEDGE_DELAY).min(self.attempt_timeout)
    }

    /// How long the first server of a request may take to connect and take it: a server's
    /// connection tasks answer the handshake at once even while its event loop is busy, so
    /// four hedge delays (at least [`MIN_CONNECT_TIMEOUT`]) are plenty; a paused server never
    /// answers it.
    fn connect_timeout(&self) -> Duration {
        if !self.hedging {
            return self.attempt_timeout;
        }
        (self.hedge_delay() * 4)
            .max(MIN_CONNECT_TIMEOUT)
            .min(self.attempt_timeout)
    }

    async fn ensure_link(&mut self, s: usize, timeout: Duration) -> Result<(), String> {
        if self.links[s].is_some() {
            return Ok(());
        }
        let hello = Hello::Client {
            version: PROTOCOL_VERSION,
            client_id: self.client_id,
        };
        let (mut reader, writer) =
            open(&self.servers[s], &hello, self.tls.as_ref(), timeout).await?;
        self.generation += 1;
        let generation = self.generation;
        let tx = self.reports_tx.clone();
        let reader = tokio::spawn(async move {
            loop {
                let r = read_frame::<ServerReply, _>(&mut reader).await;
                let end = r.is_err();
                if tx
                    .send((s, generation, r.map_err(|e| e.to_string())))
                    .is_err()
                    || end
                {
                    return;
                }
            }
        });
        self.links[s] = Some(Link {
            writer,
            generation,
            reader,
        });
        Ok(())
    }

    /// Sends `request` to server `s`, connecting first if needed.
    async fn send_to(
        &mut self,
        s: usize,
        request: &ClientRequest,
        timeout: Duration,
    ) -> Result<(), String> {
        self.ensure_link(s, timeout).await?;
        let Some(link) = self.links[s].as_mut() else {
            return Err("no connection".into());
        };
        let r = async {
            write_frame(&mut link.writer, request)
                .await
                .map_err(|e| e.to_string())?;
            link.writer.flush().await.map_err(|e| e.to_string())
        };
        match tokio::time::timeout(timeout, r).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.links[s] = None;
                Err(format!("{}: {e}", self.servers[s]))
            }
            Err(_) => {
                self.links[s] = None;
                Err(format!("{}: send timed out", self.servers[s]))
            }
        }
    }

    /// Runs one command until a server answers or the deadline passes.
    pub async fn execute(&mut self, cmd: KVCommand) -> Result<KVResult, ClientError> {
        let n = self.servers.len();
        if n == 0 {
            return Err(ClientError::Unavailable("no server addresses".into()));
        }
        if self.current != 0
            && self
                .last_failure
                .map_or(true, |t| t.elapsed() >= REBALANCE_AFTER)
        {
            self.current = 0;
        }
        let id = self.next_id;
        self.next_id += 1;
        let request = ClientRequest::Append {
            id,
            acked_below: id,
            cmd,
        };
        let start = Instant::now();
        let mut last_error = String::from("deadline passed");
        // Servers that have the request, in the order it was sent to them.
        let mut holders: Vec<usize> = Vec::new();
        // Servers that failed (refused, broken, too slow to connect) during this request:
        // a hedge skips them while others are left.
        let mut failed: Vec<usize> = Vec::new();
        let mut next_move = start;
        loop {
            let remaining = self.deadline.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return Err(ClientError::Unavailable(last_error));
            }
            if Instant::now() >= next_move {
                // Send to a server that does not have the request and has not failed (the
                // current one first); when there is none, resend to the holder that has had
                // it longest, or, with no holder, start a new round over all servers.
                let from = holders.last().copied().unwrap_or(self.current + n - 1);
                let fresh = (1..=n)
                    .map(|k| (from + k) % n)
                    .find(|s| !holders.contains(s) && !failed.contains(s));
                let s = match fresh {
                    Some(s) => s,
                    None if !holders.is_empty() => {
                        let s = holders.remove(0);
                        holders.push(s);
                        s
                    }
                    None => {
                        // Every server failed: pause briefly, then try them all again.
                        failed.clear();
                        tokio::time::sleep(Duration::from_millis(20).min(remaining)).await;
                        self.current
                    }
                };
                // A hedge connects with a short timeout: a paused server accepts connections
                // (the kernel does) but never answers the handshake.
                let timeout = if holders.is_empty() {
                    self.connect_timeout()
                } else {
                    self.hedge_delay()
                }
                .min(remaining);
                tracing::debug!(
                    client = self.client_id,
                    id,
                    server = %self.servers[s],
                    holders = holders.len(),
                    elapsed = ?start.elapsed(),
                    "sending"
                );
                match self.send_to(s, &request, timeout).await {
                    Ok(()) => {
                        if !holders.contains(&s) {
                            holders.push(s);
                        }
                        let wait = if holders.len() == 1 {
                            self.hedge_delay()
                        } else {
                            self.attempt_timeout
                        };
                        next_move = Instant::now() + wait;
                    }
                    Err(e) => {
                        last_error = e;
                        self.last_failure = Some(Instant::now());
                        holders.retain(|&h| h != s);
                        failed.push(s);
                        if holders.is_empty() {
                            // Nobody has the request: try the next server at once.
                            self.current = (s + 1) % n;
                            continue;
                        }
                        // Others have it: listen to them before trying another server.
                        next_move = Instant::now() + self.hedge_delay();
                    }
                }
            }
            let wait = next_move
                .saturating_duration_since(Instant::now())
                .min(self.deadline.saturating_sub(start.elapsed()));
            let report = match tokio::time::timeout(wait, self.reports.recv()).await {
                Ok(Some(r)) => r,
                Ok(None) => return Err(ClientError::Unavailable("client closed".into())),
                Err(_) => {
                    if !holders.is_empty() {
                        self.last_failure = Some(Instant::now());
                        last_error = format!(
                            "{}: no answer in time",
                            self.servers[holders[holders.len() - 1]]
                        );
                    }
                    continue;
                }
            };
            match report {
                (s, _, Ok(ServerReply::Done(rid, r))) if rid == id => {
                    self.current = s;
                    if self.recent.len() == LATENCY_WINDOW {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(start.elapsed());
                    return Ok(r);
                }
                (_, _, Ok(ServerReply::Refused(rid, why))) if rid == id => {
                    return Err(ClientError::Refused(why))
                }
                (_, _, Ok(_)) => {} // an answer to an earlier request, or a status
                (s, generation, Err(e)) => {
                    if self.links[s].as_ref().map(|l| l.generation) == Some(generation) {
                        self.links[s] = None;
                        last_error = format!("{}: {e}", self.servers[s]);
                        self.last_failure = Some(Instant::now());
                        holders.retain(|&h| h != s);
                        failed.push(s);
                        if holders.is_empty() {
                            self.current = (s + 1) % n;
                            next_move = Instant::now();
                        }
                    }
                }
            }
        }
    }
}
