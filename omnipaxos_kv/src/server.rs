//! The server: one OmniPaxos node on [`PersistentStorage`], its TCP connections to the other
//! servers and to clients, and the key-value map built from the decided log.
//!
//! One task owns the OmniPaxos node and the map. It `select!`s over a tick interval and a
//! channel of events that the connection tasks feed (one reader and one writer task per
//! connection). After every batch of events it sends the node's outgoing messages, applies the
//! newly decided entries and answers the clients whose commands it coordinated.

use crate::config::{ServerFile, ServerSettings};
use crate::kv::{Applied, ClientId, Command, Database, KVCommand, KVResult, NodeId};
use crate::net::{
    read_frame, read_frame_limited, write_frame, ClientRequest, FrameError, Hello, PeerMessage,
    ServerReply, StatusInfo, Welcome, MAX_PEER_FRAME_LEN, PROTOCOL_VERSION,
};
use log::{debug, error, info, warn};
use omnipaxos::{
    messages::Message, util::FlexibleQuorum, util::LogEntry, ClusterConfig, OmniPaxos,
    OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::persistent_storage::Durability;
use omnipaxos_storage::{PersistentStorage, PersistentStorageConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type Node = OmniPaxos<Command, PersistentStorage<Command>>;
type ConnId = u64;
/// The sending side of a connection's writer task (encoded frames).
type Outbox = mpsc::UnboundedSender<Vec<u8>>;

/// How long a new connection may take to send its [`Hello`].
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts to connect to a peer.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// Events handled per batch before the node's output is flushed.
const EVENT_BATCH: usize = 256;

/// An error that stops the server at start-up.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

enum Event {
    PeerUp(NodeId, ConnId, Outbox),
    PeerDown(NodeId, ConnId),
    /// (Boxed: messages carry snapshots of the map, much larger than the other events.)
    FromPeer(NodeId, Box<Message<Command>>),
    ClientUp(ConnId, ClientId, Outbox),
    ClientDown(ConnId),
    FromClient(ConnId, ClientId, ClientRequest),
}

struct Shared {
    me: NodeId,
    nodes: Vec<NodeId>,
    events: mpsc::Sender<Event>,
    next_conn: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn conn_id(&self) -> ConnId {
        self.next_conn
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}

/// The whole server program: logging to stderr (filtered by `RUST_LOG`, default `info`, with
/// commitlog's per-file messages and a spurious sled warning muted), settings from
/// `CLUSTER_CONFIG_FILE`, `SERVER_CONFIG_FILE` and `OMNIPAXOS_*`, then [`run_server`] on a
/// two-thread runtime. Returns the process exit code: 0 after a clean stop, 2 for bad settings,
/// 1 for any other failure (each printed on stderr first).
pub fn serve_from_env() -> i32 {
    // A second logger (when a program calls this after setting up its own) is not an error.
    let _ = env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("info,commitlog=warn,sled::config=off"),
    )
    .try_init();
    let settings = match ServerSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("server: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("server: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run_server(settings)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("server: {e}");
            1
        }
    }
}

/// Opens the storage, replays the log and serves until the process is stopped (SIGTERM or
/// Ctrl-C end it cleanly; SIGKILL loses nothing that was acknowledged).
pub async fn run_server(settings: ServerSettings) -> Result<(), ServerError> {
    let me = settings.server.server_id;
    let data_dir = settings.data_dir();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| ServerError(format!("cannot create data directory {data_dir}: {e}")))?;
    let mut storage_cfg = PersistentStorageConfig::with_path(&data_dir);
    storage_cfg.set_durability(if settings.server.fsync {
        Durability::Immediate
    } else {
        Durability::Deferred
    });
    let storage = PersistentStorage::open(storage_cfg)
        .map_err(|e| ServerError(format!("cannot open the log in {data_dir}: {e}")))?;
    let op_config = OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: settings.cluster.nodes.clone(),
            flexible_quorum: settings
                .cluster
                .initial_flexible_quorum
                .map(|q| FlexibleQuorum {
                    read_quorum_size: q.read_quorum_size,
                    write_quorum_size: q.write_quorum_size,
                }),
        },
        server_config: ServerConfig {
            pid: me,
            election_tick_timeout: settings.server.election_ticks,
            batch_size: settings.server.batch_size,
            flush_batch_tick_timeout: 1,
            ..Default::default()
        },
    };
    let node: Node = op_config
        .build(storage)
        .map_err(|e| ServerError(format!("invalid OmniPaxos configuration: {e}")))?;
    let fresh = node.get_decided_idx() == 0;
    let mut state = State {
        me,
        node,
        db: Database::new(),
        peers: HashMap::new(),
        clients: HashMap::new(),
        routes: HashMap::new(),
        outgoing: Vec::new(),
        cfg: settings.server.clone(),
        initial_leader_pending: fresh && settings.cluster.initial_leader == Some(me),
    };
    state.apply_decided()?;
    info!(
        "server {me}: recovered {} decided entries from {data_dir} ({} keys)",
        state.db.applied_len(),
        state.db.len()
    );

    let listen = format!(
        "{}:{}",
        settings.server.listen_address, settings.server.listen_port
    );
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| ServerError(format!("cannot listen on {listen}: {e}")))?;
    info!("server {me}: listening on {listen}");

    let (tx, mut rx) = mpsc::channel::<Event>(65_536);
    let shared = Arc::new(Shared {
        me,
        nodes: settings.cluster.nodes.clone(),
        events: tx,
        next_conn: std::sync::atomic::AtomicU64::new(1),
    });
    tokio::spawn(accept_loop(listener, shared.clone()));
    for (i, &peer) in settings.cluster.nodes.iter().enumerate() {
        if peer < me {
            let addr = settings.cluster.node_addrs[i].clone();
            tokio::spawn(connect_loop(peer, addr, shared.clone()));
        }
    }

    let mut tick = tokio::time::interval(Duration::from_millis(settings.server.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_timer = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServerError(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut events = Vec::with_capacity(EVENT_BATCH);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                state.node.tick();
                if state.initial_leader_pending && !state.peers.is_empty() {
                    state.initial_leader_pending = false;
                    state.node.try_become_leader();
                }
            }
            n = rx.recv_many(&mut events, EVENT_BATCH) => {
                if n == 0 {
                    return Err(ServerError("event channel closed".into()));
                }
                for ev in events.drain(..) {
                    state.handle(ev);
                }
            }
            _ = stats_timer.tick() => state.write_stats(),
            _ = tokio::signal::ctrl_c() => {
                info!("server {me}: interrupted, stopping");
                return Ok(());
            }
            _ = term.recv() => {
                info!("server {me}: terminated, stopping");
                return Ok(());
            }
        }
        state.retry_uncertain();
        state.flush();
        state.apply_decided()?;
    }
}

struct State {
    me: NodeId,
    node: Node,
    db: Database,
    peers: HashMap<NodeId, Vec<(ConnId, Outbox)>>,
    clients: HashMap<ConnId, Outbox>,
    routes: HashMap<ClientId, ConnId>,
    outgoing: Vec<Message<Command>>,
    cfg: ServerFile,
    initial_leader_pending: bool,
}

impl State {
    fn handle(&mut self, ev: Event) {
        match ev {
            Event::PeerUp(id, conn, sender) => {
                info!("server {}: connected to server {id}", self.me);
                // The newest connection is used; older ones stay as fallbacks until they close
                // (a restarted peer's old connection closes soon; an impostor's going away
                // must not cut the real peer off).
                self.peers.entry(id).or_default().push((conn, sender));
                self.node.reconnected(id);
            }
            Event::PeerDown(id, conn) => {
                if let Some(conns) = self.peers.get_mut(&id) {
                    conns.retain(|(c, _)| *c != conn);
                    if conns.is_empty() {
                        info!("server {}: lost connection to server {id}", self.me);
                        self.peers.remove(&id);
                    } else {
                        self.node.reconnected(id);
                    }
                }
            }
            Event::FromPeer(id, msg) => {
                if msg.get_sender() != id || msg.get_receiver() != self.me {
                    warn!(
                        "server {}: dropped a message from server {id} that claims to be from {} to {}",
                        self.me,
                        msg.get_sender(),
                        msg.get_receiver()
                    );
                } else {
                    self.node.handle_incoming(*msg);
                }
            }
            Event::ClientUp(conn, client_id, sender) => {
                debug!("server {}: client {client_id} connected", self.me);
                self.clients.insert(conn, sender);
                self.routes.insert(client_id, conn);
            }
            Event::ClientDown(conn) => {
                self.clients.remove(&conn);
                self.routes.retain(|_, c| *c != conn);
            }
            Event::FromClient(conn, client_id, req) => self.handle_client(conn, client_id, req),
        }
    }

    fn reply(&self, conn: ConnId, reply: &ServerReply) {
        if let Some(sender) = self.clients.get(&conn) {
            match crate::net::encode(reply) {
                Ok(bytes) => {
                    let _ = sender.send(bytes);
                }
                Err(e) => error!("server {}: cannot encode a reply: {e}", self.me),
            }
        }
    }

    fn handle_client(&mut self, conn: ConnId, client_id: ClientId, req: ClientRequest) {
        match req {
            ClientRequest::Status => {
                let info = StatusInfo {
                    id: self.me,
                    leader: self.node.get_current_leader().map(|(l, _)| l),
                    decided_idx: self.node.get_decided_idx(),
                    applied: self.db.applied_len(),
                    compacted_idx: self.node.get_compacted_idx(),
                    peers_connected: {
                        let mut p: Vec<NodeId> = self.peers.keys().copied().collect();
                        p.sort_unstable();
                        p
                    },
                };
                self.reply(conn, &ServerReply::Status(info));
            }
            ClientRequest::Append {
                id,
                acked_below,
                cmd,
            } => {
                if self.cfg.unsafe_local_reads {
                    if let KVCommand::Get(k) = &cmd {
                        let v = self.db.local_get(k);
                        self.reply(conn, &ServerReply::Done(id, KVResult::Read(v)));
                        return;
                    }
                }
                self.routes.insert(client_id, conn);
                let command = Command {
                    client_id,
                    coordinator_id: self.me,
                    id,
                    acked_below,
                    kv_cmd: cmd,
                };
                if let Err(e) = self.node.append(command) {
                    self.reply(
                        conn,
                        &ServerReply::Refused(id, format!("cannot append: {e:?}")),
                    );
                }
            }
        }
    }

    /// Commands the node handed back as of unknown outcome (their forward was given up) are
    /// appended again: the map applies a command once however often it is decided.
    fn retry_uncertain(&mut self) {
        for cmd in self.node.take_uncertain_appends() {
            debug!(
                "server {}: command {} of client {} came back uncertain, appended again",
                self.me, cmd.id, cmd.client_id
            );
            let (id, client_id) = (cmd.id, cmd.client_id);
            if let Err(e) = self.node.append(cmd) {
                if let Some(&conn) = self.routes.get(&client_id) {
                    self.reply(
                        conn,
                        &ServerReply::Refused(id, format!("cannot append: {e:?}")),
                    );
                }
            }
        }
    }

    fn flush(&mut self) {
        self.node.take_outgoing_messages(&mut self.outgoing);
        for msg in self.outgoing.drain(..) {
            let to = msg.get_receiver();
            if let Some((_, sender)) = self.peers.get(&to).and_then(|c| c.last()) {
                match crate::net::encode_limited(&PeerMessage::Paxos(msg), MAX_PEER_FRAME_LEN) {
                    Ok(bytes) => {
                        let _ = sender.send(bytes);
                    }
                    Err(e) => error!("server {}: cannot encode a message: {e}", self.me),
                }
            }
        }
    }

    fn apply_decided(&mut self) -> Result<(), ServerError> {
        let decided = self.node.get_decided_idx();
        let from = self.db.applied_len();
        if decided <= from {
            return Ok(());
        }
        let entries = self.node.read_decided_suffix(from).unwrap_or_default();
        for entry in entries {
            match entry {
                LogEntry::Decided(cmd) => {
                    let applied = self.db.apply(&cmd);
                    if cmd.coordinator_id != self.me {
                        continue;
                    }
                    let result = match applied {
                        Applied::New(r) | Applied::Duplicate(r) => r,
                        Applied::Stale => continue,
                    };
                    if let Some(&conn) = self.routes.get(&cmd.client_id) {
                        self.reply(conn, &ServerReply::Done(cmd.id, result));
                    }
                }
                LogEntry::StopSign(..) => self.db.skip_entry(),
                LogEntry::Snapshotted(s) => {
                    // The log before `trimmed_idx` was compacted (here, or by the leader that
                    // brought us up to date): the snapshot is the state after it.
                    self.db = Database::from_snapshot(&s.snapshot, s.trimmed_idx);
                    debug!(
                        "server {}: map rebuilt from a snapshot of the log up to {}",
                        self.me, s.trimmed_idx
                    );
                }
                other => {
                    return Err(ServerError(format!(
                        "unexpected decided log entry at {}: {other:?} (servers compact by snapshots only)",
                        self.db.applied_len()
                    )))
                }
            }
        }
        self.compact();
        Ok(())
    }

    /// Folds the applied log into a snapshot once `snapshot_interval` entries piled up since
    /// the last one (each server on its own schedule), so the log does not grow without end.
    fn compact(&mut self) {
        let interval = self.cfg.snapshot_interval;
        let applied = self.db.applied_len();
        if interval == 0 || applied < self.node.get_compacted_idx().saturating_add(interval) {
            return;
        }
        match self.node.snapshot(Some(applied), true) {
            Ok(()) => debug!("server {}: log compacted up to {applied}", self.me),
            Err(e) => warn!(
                "server {}: cannot compact the log up to {applied}: {e:?}",
                self.me
            ),
        }
    }

    fn write_stats(&self) {
        if let Some(path) = &self.cfg.output_filepath {
            let leader = self.node.get_current_leader().map(|(l, _)| l);
            let text = format!(
                "{{\"server_id\": {}, \"leader\": {}, \"decided_idx\": {}, \"applied\": {}, \"keys\": {}, \"peers_connected\": {}, \"clients_connected\": {}}}\n",
                self.me,
                leader.map_or("null".to_string(), |l| l.to_string()),
                self.node.get_decided_idx(),
                self.db.applied_len(),
                self.db.len(),
                self.peers.len(),
                self.clients.len()
            );
            if let Err(e) = std::fs::write(path, text) {
                warn!("server {}: cannot write {path}: {e}", self.me);
            }
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle_incoming(stream, shared.clone()).await {
                        warn!("server {}: connection from {addr}: {e}", shared.me);
                    }
                });
            }
            Err(e) => {
                warn!("server {}: accept failed: {e}", shared.me);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Checks a [`Hello`] from a connecting peer or client; `Err` is the reason to refuse it.
fn check_hello(me: NodeId, nodes: &[NodeId], hello: &Hello) -> Result<(), String> {
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

async fn handle_incoming(stream: TcpStream, shared: Arc<Shared>) -> Result<(), FrameError> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let hello: Hello = match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut reader)).await
    {
        Ok(r) => r?,
        Err(_) => return Err(FrameError::Decode("no handshake within 5 s".into())),
    };
    if let Err(reason) = check_hello(shared.me, &shared.nodes, &hello) {
        let _ = write_frame(&mut writer, &Welcome::Refused(reason.clone())).await;
        return Err(FrameError::Decode(format!("refused: {reason}")));
    }
    write_frame(&mut writer, &Welcome::Accepted(shared.me)).await?;
    let conn = shared.conn_id();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(writer_task(writer, out_rx));
    match hello {
        Hello::Server { id, .. } => {
            if shared
                .events
                .send(Event::PeerUp(id, conn, out_tx))
                .await
                .is_err()
            {
                return Ok(());
            }
            let r = peer_reader(&mut reader, id, &shared).await;
            let _ = shared.events.send(Event::PeerDown(id, conn)).await;
            r
        }
        Hello::Client { client_id, .. } => {
            if shared
                .events
                .send(Event::ClientUp(conn, client_id, out_tx))
                .await
                .is_err()
            {
                return Ok(());
            }
            let r = client_reader(&mut reader, conn, client_id, &shared).await;
            let _ = shared.events.send(Event::ClientDown(conn)).await;
            r
        }
    }
}

async fn writer_task(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    use tokio::io::AsyncWriteExt;
    let mut batch = Vec::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let mut buf = Vec::new();
        for b in batch.drain(..) {
            buf.extend_from_slice(&b);
        }
        if writer.write_all(&buf).await.is_err() {
            return;
        }
    }
}

async fn peer_reader(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    id: NodeId,
    shared: &Shared,
) -> Result<(), FrameError> {
    loop {
        let msg: PeerMessage = read_frame_limited(reader, MAX_PEER_FRAME_LEN).await?;
        let PeerMessage::Paxos(m) = msg;
        if shared
            .events
            .send(Event::FromPeer(id, Box::new(m)))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

async fn client_reader(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    conn: ConnId,
    client_id: ClientId,
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
        if shared
            .events
            .send(Event::FromClient(conn, client_id, req))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
}

async fn connect_loop(peer: NodeId, addr: String, shared: Arc<Shared>) {
    let me = shared.me;
    loop {
        match connect_once(peer, &addr, &shared).await {
            Ok(()) => info!("server {me}: connection to server {peer} closed"),
            Err(e) => debug!("server {me}: connection to server {peer} at {addr}: {e}"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

async fn connect_once(peer: NodeId, addr: &str, shared: &Shared) -> Result<(), FrameError> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    write_frame(
        &mut writer,
        &Hello::Server {
            version: PROTOCOL_VERSION,
            id: shared.me,
        },
    )
    .await?;
    let welcome: Welcome =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(&mut reader)).await {
            Ok(r) => r?,
            Err(_) => return Err(FrameError::Decode("no handshake answer within 5 s".into())),
        };
    match welcome {
        Welcome::Accepted(id) if id == peer => {}
        Welcome::Accepted(id) => {
            error!(
                "server {}: {addr} answered as server {id}, expected server {peer}",
                shared.me
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err(FrameError::Decode(format!(
                "{addr} is server {id}, not {peer}"
            )));
        }
        Welcome::Refused(reason) => {
            error!("server {}: server {peer} refused us: {reason}", shared.me);
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Err(FrameError::Decode(reason));
        }
    }
    let conn = shared.conn_id();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    tokio::spawn(writer_task(writer, out_rx));
    if shared
        .events
        .send(Event::PeerUp(peer, conn, out_tx))
        .await
        .is_err()
    {
        return Ok(());
    }
    let r = peer_reader(&mut reader, peer, shared).await;
    let _ = shared.events.send(Event::PeerDown(peer, conn)).await;
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
}
