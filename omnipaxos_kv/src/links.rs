//! A server's connections: the accept loop, one connect loop per lower-id peer, the handshake
//! (TLS if configured, then `Hello`/`Welcome`), and one reader and one writer task per
//! connection. None of these tasks touches the OmniPaxos node: readers turn what arrives into
//! events on two channels (peers, clients) that the event loop in [`crate::server`] drains;
//! writers send what the event loop queued. Status requests are answered here, from the
//! snapshot the event loop publishes after each pass, so they never wait behind the node.

use crate::kv::{ClientId, Command, NodeId};
use crate::metrics::{LinkKind, Metrics, RequestKind, RequestResult};
use crate::net::{
    encode, read_frame, read_frame_limited, write_frame, BoxStream, ClientRequest, FrameError,
    Hello, PeerMessage, ServerReply, StatusInfo, StreamReader, StreamWriter, Welcome,
    MAX_PEER_FRAME_LEN, PROTOCOL_VERSION,
};
use crate::tls::{cert_names_server, server_name_of, ServerTls, PEER_ALPN, TLS_HANDSHAKE_BYTE};
use omnipaxos::messages::Message;
use rustls::pki_types::{CertificateDer, ServerName};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn, Instrument};

/// Identifies one connection of this server.
pub(crate) type ConnId = u64;
/// The sending side of a connection's writer task (encoded frames).
pub(crate) type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// How long a new connection may take for its TLS handshake and its [`Hello`].
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts to connect to a peer.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// What the peer connections tell the event loop.
pub(crate) enum PeerEvent {
    Up(NodeId, ConnId, Outbox),
    Down(NodeId, ConnId),
    /// (Boxed: messages carry snapshots of the map, much larger than the other events.)
    Message(NodeId, Box<Message<Command>>),
}

/// What the client connections tell the event loop.
pub(crate) enum ClientEvent {
    Up(ConnId, ClientId, Outbox),
    Down(ConnId),
    /// An `Append` (status requests are answered by the connection task).
    Request(ConnId, ClientId, ClientRequest),
}

/// What the connection tasks share.
pub(crate) struct Shared {
    pub me: NodeId,
    pub nodes: Vec<NodeId>,
    pub peer_events: mpsc::Sender<PeerEvent>,
    pub client_events: mpsc::Sender<ClientEvent>,
    /// The server's state as of the end of the event loop's last pass.
    pub status: watch::Receiver<StatusInfo>,
    pub metrics: Arc<Metrics>,
    pub tls: ServerTls,
    pub next_conn: AtomicU64,
}

impl Shared {
    fn conn_id(&self) -> ConnId {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

/// How the transport of a connection was authenticated.
enum LinkAuth {
    Plain,
    Tls {
        /// The peer offered the peer ALPN (and so had to present a certificate of the CA).
        peer_alpn: bool,
        /// The verified leaf certificate it presented, if any.
        cert: Option<CertificateDer<'static>>,
    },
}

pub(crate) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let shared = shared.clone();
                tokio::spawn(
                    async move {
                        if let Err(e) = handle_incoming(stream, shared).await {
                            warn!(%addr, error = %e, "incoming connection closed");
                        }
                    }
                    .in_current_span(),
                );
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Checks a [`Hello`] from a connecting peer or client; `Err` is the reason to refuse it.
pub(crate) fn check_hello(me: NodeId, nodes: &[NodeId], hello: &Hello) -> Result<(), String> {
    match hello {
        Hello::Server { version, .. } | Hello::Client { version, .. }
            if *version != PROTOCOL_VERSION =>
        {
            Err(format!(
                "protocol version {version} is not supported (this server speaks {PROTOCOL_VERSION})"
            ))
        }
        Hello::Server { id, .. } if !nodes.contains(id) => {
            Err(format!("server id {id} is not a member of the cluster {nodes:?}"))
        }
        Hello::Server { id, .. } if *id == me => {
            Err(format!("server id {id} is this server's own id"))
        }
        Hello::Server { id, .. } if *id < me => Err(format!(
            "server {id} must not connect to server {me}: servers connect to lower ids only"
        )),
        _ => Ok(()),
    }
}

/// Checks that the transport fits what the [`Hello`] claims: with TLS on peer links a server
/// must come over TLS with the peer ALPN and a certificate naming `server-<its id>`; with TLS
/// on client links a client must come over TLS.
fn check_auth(tls: &ServerTls, auth: &LinkAuth, hello: &Hello) -> Result<(), String> {
    match (hello, auth) {
        (
            Hello::Server { id, .. },
            LinkAuth::Tls {
                peer_alpn: true,
                cert: Some(c),
            },
        ) => cert_names_server(c, *id),
        (Hello::Server { .. }, LinkAuth::Plain) if tls.peer_acceptor.is_none() => Ok(()),
        (Hello::Server { .. }, _) => Err(
            "servers must connect over TLS, with the peer ALPN and a certificate of the cluster's CA"
                .into(),
        ),
        (Hello::Client { .. }, LinkAuth::Tls { peer_alpn: true, .. }) => {
            Err("a client must not use the peer ALPN".into())
        }
        (Hello::Client { .. }, LinkAuth::Tls { .. }) => Ok(()),
        (Hello::Client { .. }, LinkAuth::Plain) if tls.client_acceptor.is_none() => Ok(()),
        (Hello::Client { .. }, LinkAuth::Plain) => Err("clients must connect over TLS".into()),
    }
}

/// The TLS handshake, if this connection starts one and TLS is configured; plaintext otherwise.
async fn secure(tcp: TcpStream, shared: &Shared) -> Result<(BoxStream, LinkAuth), FrameError> {
    if !shared.tls.any() {
        return Ok((Box::new(tcp), LinkAuth::Plain));
    }
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await? == 0 || first[0] != TLS_HANDSHAKE_BYTE {
        return Ok((Box::new(tcp), LinkAuth::Plain));
    }
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
    let start = match acceptor.await {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.tls_failure(LinkKind::Client);
            return Err(FrameError::Decode(format!("not a TLS client hello: {e}")));
        }
    };
    let peer_alpn = start
        .client_hello()
        .alpn()
        .is_some_and(|mut a| a.any(|p| p == PEER_ALPN));
    let (link, config) = if peer_alpn {
        (LinkKind::Peer, shared.tls.peer_acceptor.clone())
    } else {
        (LinkKind::Client, shared.tls.client_acceptor.clone())
    };
    let Some(config) = config else {
        shared.metrics.tls_failure(link);
        return Err(FrameError::Decode(format!(
            "TLS handshake for a {} link, but TLS is off on those links here",
            if peer_alpn { "peer" } else { "client" }
        )));
    };
    let stream = match start.into_stream(config).await {
        Ok(s) => s,
        Err(e) => {
            shared.metrics.tls_failure(link);
            return Err(FrameError::Decode(format!(
                "TLS handshake of a {} link failed: {e}",
                if peer_alpn { "peer" } else { "client" }
            )));
        }
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned());
    Ok((Box::new(stream), LinkAuth::Tls { peer_alpn, cert }))
}

async fn handle_incoming(tcp: TcpStream, shared: Arc<Shared>) -> Result<(), FrameError> {
    let _ = tcp.set_nodelay(true);
    let handshake = async {
        let (stream, auth) = secure(tcp, &shared).await?;
        let (mut reader, writer) = crate::net::split(stream);
        let hello: Hello = read_frame(&mut reader).await?;
        Ok::<_, FrameError>((reader, writer, auth, hello))
    };
    let (mut reader, mut writer, auth, hello) =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(FrameError::Decode(format!(
                    "no handshake within {} s",
                    HANDSHAKE_TIMEOUT.as_secs()
                )))
            }
        };
    let link = match hello {
        Hello::Server { .. } => LinkKind::Peer,
        Hello::Client { .. } => LinkKind::Client,
    };
    if let Err(reason) = check_hello(shared.me, &shared.nodes, &hello)
        .and_then(|()| check_auth(&shared.tls, &auth, &hello))
    {
        shared.metrics.refused(link);
        let _ = write_frame(&mut writer, &Welcome::Refused(reason.clone())).await;
        let _ = writer.flush().await;
        return Err(FrameError::Decode(format!("refused: {reason}")));
    }
    write_frame(&mut writer, &Welcome::Accepted(shared.me)).await?;
    writer.flush().await?;
    shared.metrics.accepted(link);
    let conn = shared.conn_id();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(writer_task(writer, out_rx));
    match hello {
        Hello::Server { id, .. } => {
            if shared
                .peer_events
                .send(PeerEvent::Up(id, conn, out_tx))
                .await
                .is_err()
            {
                return Ok(());
            }
            let r = peer_reader(&mut reader, id, &shared).await;
            let _ = shared.peer_events.send(PeerEvent::Down(id, conn)).await;
            r
        }
        Hello::Client { client_id, .. } => {
            info!(client_id, conn, "client connected");
            if shared
                .client_events
                .send(ClientEvent::Up(conn, client_id, out_tx.clone()))
                .await
                .is_err()
            {
                return Ok(());
            }
            let r = client_reader(&mut reader, conn, client_id, &out_tx, &shared).await;
            let _ = shared.client_events.send(ClientEvent::Down(conn)).await;
            r
        }
    }
}

/// Sends what the event loop queued for one connection, several frames per write.
async fn writer_task(mut writer: StreamWriter, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::new();
    let mut buf = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        buf.clear();
        for b in batch.drain(..) {
            buf.extend_from_slice(&b);
        }
        if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn peer_reader(
    reader: &mut StreamReader,
    id: NodeId,
    shared: &Shared,
) -> Result<(), FrameError> {
    loop {
        let msg: PeerMessage = read_frame_limited(reader, MAX_PEER_FRAME_LEN).await?;
        let PeerMessage::Paxos(m) = msg;
        if shared
            .peer_events
            .send(PeerEvent::Message(id, Box::new(m)))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

async fn client_reader(
    reader: &mut StreamReader,
    conn: ConnId,
    client_id: ClientId,
    outbox: &Outbox,
    shared: &Shared,
) -> Result<(), FrameError> {
    loop {
        let req: ClientRequest = match read_frame(reader).await {
            Ok(r) => r,
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        match req {
            ClientRequest::Status => {
                // From the snapshot of the last pass: never queued behind the node's work.
                let info = shared.status.borrow().clone();
                match encode(&ServerReply::Status(info)) {
                    Ok(bytes) => {
                        let _ = outbox.send(bytes);
                        shared
                            .metrics
                            .request(RequestKind::Status, RequestResult::Ok);
                    }
                    Err(e) => error!(error = %e, "cannot encode a status reply"),
                }
            }
            req => {
                if shared
                    .client_events
                    .send(ClientEvent::Request(conn, client_id, req))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        }
    }
}

pub(crate) async fn connect_loop(peer: NodeId, addr: String, shared: Arc<Shared>) {
    loop {
        match connect_once(peer, &addr, &shared).await {
            Ok(()) => info!(peer, "connection to peer closed"),
            Err(e) => debug!(peer, %addr, error = %e, "cannot connect to peer"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn connect_once(peer: NodeId, addr: &str, shared: &Shared) -> Result<(), FrameError> {
    let tcp = TcpStream::connect(addr).await?;
    let _ = tcp.set_nodelay(true);
    let stream: BoxStream = match &shared.tls.peer_connector {
        Some(cfg) => {
            let name = ServerName::try_from(server_name_of(peer))
                .map_err(|e| FrameError::Decode(format!("bad server name: {e}")))?;
            let connect = tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp);
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    shared.metrics.tls_failure(LinkKind::Peer);
                    error!(peer, %addr, error = %e, "TLS handshake with peer failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    return Err(FrameError::Io(e));
                }
                Err(_) => return Err(FrameError::Decode("TLS handshake timed out".into())),
            }
        }
        None => Box::new(tcp),
    };
    let (mut reader, mut writer) = crate::net::split(stream);
    write_frame(
        &mut writer,
        &Hello::Server {
            version: PROTOCOL_VERSION,
            id: shared.me,
        },
    )
    .await?;
    writer.flush().await?;
    let welcome: Welcome =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut reader)).await {
            Ok(r) => r?,
            Err(_) => return Err(FrameError::Decode("no handshake answer within 5 s".into())),
        };
    match welcome {
        Welcome::Accepted(id) if id == peer => {}
        Welcome::Accepted(id) => {
            error!(peer, %addr, answered_as = id, "peer address answered as another server");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err(FrameError::Decode(format!(
                "{addr} is server {id}, not {peer}"
            )));
        }
        Welcome::Refused(reason) => {
            error!(peer, %reason, "peer refused the connection");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err(FrameError::Decode(reason));
        }
    }
    let conn = shared.conn_id();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(writer_task(writer, out_rx));
    if shared
        .peer_events
        .send(PeerEvent::Up(peer, conn, out_tx))
        .await
        .is_err()
    {
        return Ok(());
    }
    let r = peer_reader(&mut reader, peer, shared).await;
    let _ = shared.peer_events.send(PeerEvent::Down(peer, conn)).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_checks() {
        let nodes = [1, 2, 3];
        let server = |id| Hello::Server {
            version: PROTOCOL_VERSION,
            id,
        };
        assert!(check_hello(2, &nodes, &server(3)).is_ok());
        assert!(check_hello(2, &nodes, &server(9))
            .unwrap_err()
            .contains("not a member"));
        assert!(check_hello(2, &nodes, &server(2))
            .unwrap_err()
            .contains("own id"));
        assert!(check_hello(2, &nodes, &server(1))
            .unwrap_err()
            .contains("lower ids"));
        let client = Hello::Client {
            version: 99,
            client_id: 5,
        };
        assert!(check_hello(2, &nodes, &client)
            .unwrap_err()
            .contains("version"));
    }

    #[test]
    fn plaintext_peers_and_clients_follow_the_tls_switches() {
        let plain = ServerTls::plaintext();
        let server = Hello::Server {
            version: PROTOCOL_VERSION,
            id: 3,
        };
        let client = Hello::Client {
            version: PROTOCOL_VERSION,
            client_id: 1,
        };
        assert!(check_auth(&plain, &LinkAuth::Plain, &server).is_ok());
        assert!(check_auth(&plain, &LinkAuth::Plain, &client).is_ok());
        let tls_client = LinkAuth::Tls {
            peer_alpn: false,
            cert: None,
        };
        assert!(check_auth(&plain, &tls_client, &client).is_ok());
        assert!(check_auth(&plain, &tls_client, &server).is_err());
        let peer_without_cert = LinkAuth::Tls {
            peer_alpn: true,
            cert: None,
        };
        assert!(check_auth(&plain, &peer_without_cert, &server).is_err());
        assert!(check_auth(&plain, &peer_without_cert, &client).is_err());
    }
}
