//! A client of the service: one request at a time, retried on another server when its server
//! dies or does not answer in time. Each request keeps its `(client_id, command_id)` across
//! retries, so the servers apply it once however often it reaches the log.

use crate::kv::{ClientId, CommandId, KVCommand, KVResult};
use crate::net::{
    read_frame, write_frame, ClientRequest, FrameError, Hello, ServerReply, StatusInfo, Welcome,
    PROTOCOL_VERSION,
};
use std::time::{Duration, Instant};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

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

struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
}

async fn connect(addr: &str, hello: &Hello, timeout: Duration) -> Result<Conn, String> {
    let fut = async {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        write_frame(&mut writer, hello)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        match read_frame::<Welcome, _>(&mut reader).await {
            Ok(Welcome::Accepted(_)) => Ok(Conn { reader, writer }),
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
    let hello = Hello::Client {
        version: PROTOCOL_VERSION,
        client_id: random_client_id(),
    };
    let mut conn = connect(addr, &hello, timeout).await?;
    let fut = async {
        write_frame(&mut conn.writer, &ClientRequest::Status)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match read_frame::<ServerReply, _>(&mut conn.reader).await {
                Ok(ServerReply::Status(s)) => return Ok(s),
                Ok(_) => continue,
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(format!("{addr}: no status answer")))
}

/// A client connected to one server at a time.
pub struct KvClient {
    client_id: ClientId,
    servers: Vec<String>,
    current: usize,
    conn: Option<Conn>,
    next_id: CommandId,
    attempt_timeout: Duration,
    deadline: Duration,
}

impl KvClient {
    /// A client of the servers at `servers` (`host:port`), starting with the first.
    /// `attempt_timeout` is how long it waits for an answer before it resends (a second time
    /// on the same server, then on the next one); `deadline` bounds one request in total.
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
        KvClient {
            client_id,
            servers,
            current: 0,
            conn: None,
            next_id: 1,
            attempt_timeout,
            deadline,
        }
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

    fn next_server(&mut self) {
        self.conn = None;
        if !self.servers.is_empty() {
            self.current = (self.current + 1) % self.servers.len();
        }
    }

    /// Runs one command until a server answers or the deadline passes.
    pub async fn execute(&mut self, cmd: KVCommand) -> Result<KVResult, ClientError> {
        if self.servers.is_empty() {
            return Err(ClientError::Unavailable("no server addresses".into()));
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
        let mut tries_here = 0;
        while start.elapsed() < self.deadline {
            if self.conn.is_none() {
                let hello = Hello::Client {
                    version: PROTOCOL_VERSION,
                    client_id: self.client_id,
                };
                let addr = self.servers[self.current].clone();
                match connect(&addr, &hello, self.attempt_timeout).await {
                    Ok(c) => {
                        self.conn = Some(c);
                        tries_here = 0;
                    }
                    Err(e) => {
                        last_error = e;
                        self.next_server();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                continue;
            };
            if let Err(e) = write_frame(&mut conn.writer, &request).await {
                last_error = e.to_string();
                self.next_server();
                continue;
            }
            tries_here += 1;
            let wait = async {
                loop {
                    match read_frame::<ServerReply, _>(&mut conn.reader).await {
                        Ok(ServerReply::Done(rid, r)) if rid == id => return Ok(Ok(r)),
                        Ok(ServerReply::Refused(rid, why)) if rid == id => return Ok(Err(why)),
                        Ok(_) => continue,
                        Err(e) => return Err::<Result<KVResult, String>, FrameError>(e),
                    }
                }
            };
            match tokio::time::timeout(self.attempt_timeout, wait).await {
                Ok(Ok(Ok(r))) => return Ok(r),
                Ok(Ok(Err(why))) => return Err(ClientError::Refused(why)),
                Ok(Err(e)) => {
                    last_error = format!("{}: {e}", self.servers[self.current]);
                    self.next_server();
                }
                Err(_) => {
                    last_error = format!("{}: no answer in time", self.servers[self.current]);
                    if tries_here >= 2 {
                        self.next_server();
                    }
                }
            }
        }
        Err(ClientError::Unavailable(last_error))
    }
}
