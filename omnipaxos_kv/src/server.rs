//! The server: one OmniPaxos node on [`PersistentStorage`], its connections to the other
//! servers and to clients ([`crate::links`]), and the key-value map built from the decided log.
//!
//! # The event loop
//!
//! One task owns the node and the map. Each **pass** of its loop:
//!
//! 1. waits for something to do: a tick, client requests, peer messages (or goes on at once
//!    while peer messages are left over from the last pass);
//! 2. takes what is ready without waiting, up to [`CLIENT_BATCH`] client events and
//!    [`PEER_BATCH`] peer events;
//! 3. handles the client events (cheap: appends), then peer events until the pass has spent
//!    [`PEER_PASS_BUDGET`] (the rest waits for the next pass, in order);
//! 4. ends the pass (`State::end_pass`): closes the node's batch (what arrived during the
//!    pass goes into one write), hands the node's outgoing messages to the connections (a
//!    leader's accepts of new entries first, before its own write, so that the followers'
//!    writes overlap it; then the rest, after the node wrote what they depend on: one write
//!    per pass), applies what was decided
//!    (answering the clients this server coordinates), answers the reads that are ready, and
//!    publishes a snapshot of its state for status requests and metrics.
//!
//! So batching follows the load, with no timer in a request's way: a lone request goes out in
//! the pass it arrives in, and whatever arrives while a pass is busy writing goes out together
//! in the next one (unless `flush_batch_ticks` asks for a timer, see [`ServerFile`]).
//!
//! # Reads
//!
//! A `Get` is not written to the log. Its server asks the node for a *read index*
//! ([`OmniPaxos::request_read`]): the leader confirms with one round of messages to a quorum
//! that it still leads, and names an index that covers every entry decided before the read
//! arrived. Once this server applied its decided log that far, it answers from its map. So a
//! `Get` is linearizable without a disk write, at any server; a leader cut off from a quorum
//! cannot confirm, and its reads wait for the next leader instead of answering a stale value.
//!
//! So a follower that resumes with a long backlog of peer messages keeps answering: status
//! requests are answered by the connection tasks from the last snapshot, and client requests
//! are handled at the start of every pass, which is at most one budget long (plus one message).

use crate::config::{ServerFile, ServerSettings};
use crate::kv::{Applied, ClientId, Command, CommandId, Database, KVCommand, KVResult, NodeId};
use crate::links::{accept_loop, connect_loop, ClientEvent, ConnId, Outbox, PeerEvent, Shared};
use crate::metered_storage::MeteredStorage;
use crate::metrics::{Metrics, RequestKind, RequestResult, Role};
use crate::net::{ClientRequest, PeerMessage, ServerReply, StatusInfo, MAX_PEER_FRAME_LEN};
use omnipaxos::{
    messages::Message,
    util::{AppendOutcome, FlexibleQuorum, LogEntry, ReadId, ReadIndex},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::persistent_storage::Durability;
use omnipaxos_storage::{PersistentStorage, PersistentStorageConfig};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn, Instrument};

/// The storage the node runs on: the persistent log, metered.
pub type NodeStorage = MeteredStorage<PersistentStorage<Command>>;
type Node = OmniPaxos<Command, NodeStorage>;

/// Client events handled per pass at most.
pub const CLIENT_BATCH: usize = 256;
/// Peer events taken per pass at most.
pub const PEER_BATCH: usize = 256;
/// Time a pass may spend on peer events before it ends and lets clients and ticks in.
pub const PEER_PASS_BUDGET: Duration = Duration::from_millis(10);
/// Capacity of each event channel (peer, client): a full channel makes its readers wait.
const CHANNEL_CAPACITY: usize = 65_536;

/// An error that stops the server.
#[derive(Debug)]
pub struct ServerError(pub String);

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ServerError {}

/// The whole server program: logging to stderr (see [`crate::logging`]), settings from
/// `CLUSTER_CONFIG_FILE`, `SERVER_CONFIG_FILE` and `OMNIPAXOS_*`, then [`run_server`] on a
/// one-thread runtime (the tasks of a server wake each other without crossing threads).
/// Returns the process exit code: 0 after a clean stop, 2 for bad settings, 1 for any other
/// failure (each printed on stderr first).
pub fn serve_from_env() -> i32 {
    crate::logging::init_logging(crate::logging::SERVER_DEFAULT_FILTER);
    let settings = match ServerSettings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("server: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
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
            error!(error = %e, "server stopped");
            eprintln!("server: {e}");
            1
        }
    }
}

/// Opens the persistent log of `settings` (the one place the server opens storage).
fn open_storage(settings: &ServerSettings, metrics: &Metrics) -> Result<NodeStorage, ServerError> {
    let data_dir = settings.data_dir();
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| ServerError(format!("cannot create data directory {data_dir}: {e}")))?;
    let mut cfg = PersistentStorageConfig::with_path(&data_dir);
    cfg.set_durability(if settings.server.fsync {
        Durability::Immediate
    } else {
        Durability::Deferred
    });
    let storage = PersistentStorage::try_open(cfg)
        .map_err(|e| ServerError(format!("cannot open the log in {data_dir}: {e}")))?;
    Ok(MeteredStorage::new(
        storage,
        metrics.storage.clone(),
        settings.server.fsync,
    ))
}

fn node_config(settings: &ServerSettings) -> OmniPaxosConfig {
    OmniPaxosConfig {
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
            pid: settings.server.server_id,
            election_tick_timeout: settings.server.election_ticks,
            batch_size: settings.server.batch_size,
            // Unset: the event loop closes the batch at the end of each pass (and the node's
            // own timer, at every tick, finds it empty).
            flush_batch_tick_timeout: settings.server.flush_batch_ticks.unwrap_or(1),
            ..Default::default()
        },
    }
}

/// Opens the storage, replays the log and serves until the process is stopped (SIGTERM or
/// Ctrl-C end it cleanly; SIGKILL loses nothing that was acknowledged).
pub async fn run_server(settings: ServerSettings) -> Result<(), ServerError> {
    let me = settings.server.server_id;
    let span = tracing::info_span!("server", id = me);
    run(settings).instrument(span).await
}

async fn run(settings: ServerSettings) -> Result<(), ServerError> {
    let me = settings.server.server_id;
    let s = &settings.server;
    let tls = settings
        .tls()
        .map_err(|e| ServerError(format!("cannot set up TLS: {e}")))?;
    info!(
        nodes = ?settings.cluster.nodes,
        listen = %format!("{}:{}", s.listen_address, s.listen_port),
        data_dir = %settings.data_dir(),
        fsync = s.fsync,
        tick_ms = s.tick_ms,
        election_ticks = s.election_ticks,
        batch_size = s.batch_size,
        flush_batch_ticks = ?s.flush_batch_ticks,
        snapshot_interval = s.snapshot_interval,
        tls_peers = s.tls_peers,
        tls_clients = s.tls_clients,
        tls_client_auth = s.tls_client_auth,
        metrics_port = ?s.metrics_port,
        "starting"
    );
    let metrics = Arc::new(Metrics::default());
    metrics.server_id.store(me, Relaxed);
    let storage = open_storage(&settings, &metrics)?;
    let node: Node = node_config(&settings)
        .build(storage)
        .map_err(|e| ServerError(format!("invalid OmniPaxos configuration: {e}")))?;
    let fresh = node.get_decided_idx() == 0;
    let (status_tx, status_rx) = watch::channel(StatusInfo {
        id: me,
        leader: None,
        decided_idx: 0,
        applied: 0,
        compacted_idx: 0,
        peers_connected: Vec::new(),
    });
    let mut state = State {
        me,
        node,
        db: Database::new(),
        peers: HashMap::new(),
        clients: HashMap::new(),
        routes: HashMap::new(),
        pending: HashMap::new(),
        reads: HashMap::new(),
        client_reads: HashMap::new(),
        ready_reads: Vec::new(),
        outgoing: Vec::new(),
        cfg: settings.server.clone(),
        initial_leader_pending: fresh && settings.cluster.initial_leader == Some(me),
        leader_seen: None,
        metrics: metrics.clone(),
        status: status_tx,
    };
    state.apply_decided()?;
    state.publish();
    info!(
        entries = state.db.applied_len(),
        keys = state.db.len(),
        "recovered the decided log"
    );

    let listen = format!("{}:{}", s.listen_address, s.listen_port);
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(|e| ServerError(format!("cannot listen on {listen}: {e}")))?;
    info!(addr = %listen, "listening");
    if let Some(port) = s.metrics_port {
        let addr = format!("{}:{port}", s.metrics_address);
        let l = TcpListener::bind(&addr)
            .await
            .map_err(|e| ServerError(format!("cannot listen for metrics on {addr}: {e}")))?;
        info!(url = %format!("http://{addr}/metrics"), "serving metrics");
        tokio::spawn(crate::metrics::serve(l, metrics.clone()).in_current_span());
    }

    let (peer_tx, mut peer_rx) = mpsc::channel::<PeerEvent>(CHANNEL_CAPACITY);
    let (client_tx, mut client_rx) = mpsc::channel::<ClientEvent>(CHANNEL_CAPACITY);
    let shared = Arc::new(Shared {
        me,
        nodes: settings.cluster.nodes.clone(),
        peer_events: peer_tx,
        client_events: client_tx,
        status: status_rx,
        metrics: metrics.clone(),
        tls,
        next_conn: std::sync::atomic::AtomicU64::new(1),
    });
    tokio::spawn(accept_loop(listener, shared.clone()).in_current_span());
    for (i, &peer) in settings.cluster.nodes.iter().enumerate() {
        if peer < me {
            let addr = settings.cluster.node_addrs[i].clone();
            tokio::spawn(connect_loop(peer, addr, shared.clone()).in_current_span());
        }
    }

    let mut tick = tokio::time::interval(Duration::from_millis(s.tick_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stats_timer = tokio::time::interval(Duration::from_secs(1));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| ServerError(format!("cannot install the SIGTERM handler: {e}")))?;
    let mut client_events: Vec<ClientEvent> = Vec::with_capacity(CLIENT_BATCH);
    let mut peer_events: Vec<PeerEvent> = Vec::with_capacity(PEER_BATCH);
    loop {
        let backlog = !peer_events.is_empty();
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {
                info!("interrupted, stopping");
                return Ok(());
            }
            _ = term.recv() => {
                info!("terminated, stopping");
                return Ok(());
            }
            _ = tick.tick() => state.on_tick(),
            n = client_rx.recv_many(&mut client_events, CLIENT_BATCH) => {
                if n == 0 {
                    return Err(ServerError("client event channel closed".into()));
                }
            }
            n = peer_rx.recv_many(&mut peer_events, PEER_BATCH), if !backlog => {
                if n == 0 {
                    return Err(ServerError("peer event channel closed".into()));
                }
            }
            _ = stats_timer.tick() => state.write_stats(),
            () = std::future::ready(()), if backlog => {}
        }
        let pass_start = Instant::now();
        top_up(&mut client_rx, &mut client_events, CLIENT_BATCH);
        top_up(&mut peer_rx, &mut peer_events, PEER_BATCH);
        let mut handled = client_events.len();
        for ev in client_events.drain(..) {
            state.handle_client_event(ev);
        }
        // Peer events until the budget is spent (at least one, so every pass progresses); the
        // rest stays, in order, for the next pass.
        let mut rest = std::mem::take(&mut peer_events).into_iter();
        for ev in rest.by_ref() {
            state.handle_peer_event(ev);
            handled += 1;
            if pass_start.elapsed() >= PEER_PASS_BUDGET {
                break;
            }
        }
        peer_events = rest.collect();
        if state.send_ahead() {
            // Let the connection tasks put those accepts on the wire before this thread
            // blocks in the write (on a one-thread runtime they run only when we yield).
            tokio::task::yield_now().await;
        }
        state.end_pass()?;
        metrics.pass_events.fetch_add(handled as u64, Relaxed);
        metrics.pass_seconds.observe(pass_start.elapsed());
    }
}

/// Moves what `rx` holds into `buf` without waiting, up to `max` events in `buf`.
fn top_up<T>(rx: &mut mpsc::Receiver<T>, buf: &mut Vec<T>, max: usize) {
    while buf.len() < max {
        match rx.try_recv() {
            Ok(ev) => buf.push(ev),
            Err(_) => break,
        }
    }
}

/// A client command this server received and has not answered yet.
struct Pending {
    since: Instant,
    kind: RequestKind,
}

/// A `Get` waiting for its read index.
struct WaitingRead {
    client_id: ClientId,
    id: CommandId,
    key: String,
}

struct State {
    me: NodeId,
    node: Node,
    db: Database,
    peers: HashMap<NodeId, Vec<(ConnId, Outbox)>>,
    /// Open client connections: the writer, and the client on it.
    clients: HashMap<ConnId, (Outbox, ClientId)>,
    /// The connection to answer each client on (its latest).
    routes: HashMap<ClientId, ConnId>,
    /// Commands received here and not answered yet, for the latency metrics.
    pending: HashMap<(ClientId, CommandId), Pending>,
    /// `Get`s asked of the node and not answered yet.
    reads: HashMap<ReadId, WaitingRead>,
    /// The same, per client and command (a retried `Get` waits for the read already asked).
    client_reads: HashMap<ClientId, BTreeMap<CommandId, ReadId>>,
    /// Reads the node declared ready whose index this server has not applied yet.
    ready_reads: Vec<ReadIndex>,
    outgoing: Vec<Message<Command>>,
    cfg: ServerFile,
    initial_leader_pending: bool,
    /// The leader as of the end of the last pass.
    leader_seen: Option<NodeId>,
    metrics: Arc<Metrics>,
    status: watch::Sender<StatusInfo>,
}

fn kind_of(cmd: &KVCommand) -> RequestKind {
    match cmd {
        KVCommand::Put(..) => RequestKind::Put,
        KVCommand::Delete(_) => RequestKind::Delete,
        KVCommand::Get(_) => RequestKind::Get,
    }
}

impl State {
    fn on_tick(&mut self) {
        self.node.tick();
        if self.initial_leader_pending && !self.peers.is_empty() {
            self.initial_leader_pending = false;
            self.node.try_become_leader();
        }
    }

    fn handle_peer_event(&mut self, ev: PeerEvent) {
        match ev {
            PeerEvent::Up(id, conn, sender) => {
                info!(peer = id, "peer connected");
                // The newest connection is used; older ones stay as fallbacks until they close
                // (a restarted peer's old connection closes soon; an impostor's going away
                // must not cut the real peer off).
                self.peers.entry(id).or_default().push((conn, sender));
                self.node.reconnected(id);
            }
            PeerEvent::Down(id, conn) => {
                if let Some(conns) = self.peers.get_mut(&id) {
                    conns.retain(|(c, _)| *c != conn);
                    if conns.is_empty() {
                        info!(peer = id, "peer disconnected");
                        self.peers.remove(&id);
                    } else {
                        self.node.reconnected(id);
                    }
                }
            }
            PeerEvent::Message(id, msg) => {
                if msg.get_sender() != id || msg.get_receiver() != self.me {
                    warn!(
                        peer = id,
                        claimed_sender = msg.get_sender(),
                        receiver = msg.get_receiver(),
                        "dropped a message whose sender is not its connection's peer"
                    );
                } else {
                    self.metrics.peer_messages_in.fetch_add(1, Relaxed);
                    self.node.handle_incoming(*msg);
                }
            }
        }
    }

    fn handle_client_event(&mut self, ev: ClientEvent) {
        match ev {
            ClientEvent::Up(conn, client_id, sender) => {
                self.clients.insert(conn, (sender, client_id));
                self.routes.insert(client_id, conn);
            }
            ClientEvent::Down(conn) => {
                if let Some((_, client_id)) = self.clients.remove(&conn) {
                    if self.routes.get(&client_id) == Some(&conn) {
                        self.routes.remove(&client_id);
                        // Nobody is left to answer: the client retries elsewhere.
                        let metrics = &self.metrics;
                        self.pending.retain(|(c, _), p| {
                            if *c == client_id {
                                metrics.request(p.kind, RequestResult::Abandoned);
                            }
                            *c != client_id
                        });
                        self.forget_reads(client_id, CommandId::MAX);
                    }
                }
            }
            ClientEvent::Request(
                conn,
                client_id,
                ClientRequest::Append {
                    id,
                    acked_below,
                    cmd,
                },
            ) => {
                self.routes.insert(client_id, conn);
                // The client has the answers below `acked_below`: reads of those that still
                // wait here have nobody to go to.
                self.forget_reads(client_id, acked_below.min(id));
                self.pending.entry((client_id, id)).or_insert(Pending {
                    since: Instant::now(),
                    kind: kind_of(&cmd),
                });
                let command = Command {
                    client_id,
                    coordinator_id: self.me,
                    id,
                    acked_below,
                    kv_cmd: cmd,
                };
                match command.kv_cmd {
                    KVCommand::Get(_) => self.submit_get(command),
                    _ => self.submit(command),
                }
            }
            ClientEvent::Request(conn, _, ClientRequest::Status) => {
                // The connection tasks answer status requests; kept for completeness.
                let info = self.status.borrow().clone();
                self.reply(conn, &ServerReply::Status(info));
            }
        }
    }

    /// Where every `Get` goes: the node is asked for a read index (no log entry); the read is
    /// answered from the map once it is ready and applied (see [`Self::answer_reads`]).
    fn submit_get(&mut self, command: Command) {
        let KVCommand::Get(key) = command.kv_cmd else {
            return self.submit(command);
        };
        let (client_id, id) = (command.client_id, command.id);
        if self.cfg.unsafe_local_reads {
            let v = self.db.local_get(&key);
            self.answer(client_id, id, ServerReply::Done(id, KVResult::Read(v)));
            return;
        }
        let mine = self.client_reads.entry(client_id).or_default();
        if mine.contains_key(&id) {
            // A retry of a read that waits here: it is answered when that one is.
            return;
        }
        let read = self.node.request_read();
        mine.insert(id, read);
        self.reads.insert(read, WaitingRead { client_id, id, key });
    }

    /// Drops the reads of `client_id` waiting here with ids below `below` (nobody waits for
    /// their answers). The node still completes them; their answers are then ignored.
    fn forget_reads(&mut self, client_id: ClientId, below: CommandId) {
        let Some(mine) = self.client_reads.get_mut(&client_id) else {
            return;
        };
        let keep = mine.split_off(&below);
        for read in std::mem::replace(mine, keep).into_values() {
            self.reads.remove(&read);
        }
        if mine.is_empty() {
            self.client_reads.remove(&client_id);
        }
    }

    /// Answers the reads the node declared ready whose index the map has reached (after
    /// [`Self::apply_decided`], that is all of them unless the decided log could not be read).
    fn answer_reads(&mut self) {
        self.ready_reads.extend(self.node.take_ready_reads());
        if self.ready_reads.is_empty() {
            return;
        }
        let applied = self.db.applied_len();
        let ready = std::mem::take(&mut self.ready_reads);
        for r in ready {
            if r.index > applied {
                self.ready_reads.push(r);
                continue;
            }
            let Some(w) = self.reads.remove(&r.id) else {
                continue; // forgotten: its client moved on
            };
            if let Some(mine) = self.client_reads.get_mut(&w.client_id) {
                mine.remove(&w.id);
                if mine.is_empty() {
                    self.client_reads.remove(&w.client_id);
                }
            }
            let v = self.db.local_get(&w.key);
            self.answer(
                w.client_id,
                w.id,
                ServerReply::Done(w.id, KVResult::Read(v)),
            );
        }
    }

    /// Appends a command to the log; answers the client with `Refused` if the node refuses it.
    fn submit(&mut self, command: Command) {
        let (client_id, id) = (command.client_id, command.id);
        if let Err(e) = self.node.append(command) {
            let reply = ServerReply::Refused(id, format!("cannot append: {e:?}"));
            self.answer(client_id, id, reply);
        }
    }

    fn reply(&self, conn: ConnId, reply: &ServerReply) {
        if let Some((sender, _)) = self.clients.get(&conn) {
            match crate::net::encode(reply) {
                Ok(bytes) => {
                    let _ = sender.send(bytes);
                }
                Err(e) => error!(error = %e, "cannot encode a reply"),
            }
        }
    }

    /// Answers command `id` of `client_id` (if the client is connected) and counts it.
    fn answer(&mut self, client_id: ClientId, id: CommandId, reply: ServerReply) {
        if let Some(p) = self.pending.remove(&(client_id, id)) {
            let result = match reply {
                ServerReply::Refused(..) => RequestResult::Refused,
                _ => RequestResult::Ok,
            };
            self.metrics.request(p.kind, result);
            if result == RequestResult::Ok {
                self.metrics.latency(p.kind, p.since.elapsed());
            }
        }
        if let Some(&conn) = self.routes.get(&client_id) {
            self.reply(conn, &reply);
        }
    }

    /// The first part of ending a pass: commands handed back are appended again (so that they
    /// travel with this pass's messages), the batch is closed (unless a batch timer was
    /// configured), and the accepts that may leave before this node's own write are sent (a
    /// leader's new entries: the followers' writes then overlap ours). Whether any were sent.
    fn send_ahead(&mut self) -> bool {
        self.retry_returned();
        if self.cfg.flush_batch_ticks.is_none() {
            self.node.flush_batch();
        }
        self.node.take_messages_ahead_of_write(&mut self.outgoing);
        let any = !self.outgoing.is_empty();
        self.send_outgoing();
        any
    }

    /// Ends a pass of the event loop, after [`Self::send_ahead`]: the outgoing messages are
    /// sent (the node writes what they depend on first: everything appended during the pass
    /// goes out in one write); what is decided is applied and its clients answered; ready reads
    /// are answered from the map; and the state seen by status requests and metrics is
    /// published.
    fn end_pass(&mut self) -> Result<(), ServerError> {
        self.flush();
        self.apply_decided()?;
        self.answer_reads();
        self.publish();
        Ok(())
    }

    /// Commands the node handed back: appended again while their client waits for them here.
    ///
    /// Both outcomes keep exactly-once semantics: one that is certainly not decided can only
    /// take effect through the new append, and one of unknown outcome is applied at most once
    /// however often it is decided, because the map deduplicates by `(client_id, id)` and
    /// ignores a command below its client's `acked_below` (see [`Database::apply`]). A command
    /// whose client left or was answered is dropped: the client retries it elsewhere with the
    /// same id if it still needs it.
    fn retry_returned(&mut self) {
        for r in self.node.take_returned_appends() {
            let cmd = r.entry;
            let waiting = self.pending.contains_key(&(cmd.client_id, cmd.id));
            let outcome = match r.outcome {
                AppendOutcome::NotDecided => "not decided",
                AppendOutcome::Unknown => "of unknown outcome",
                // Whatever a later core may say: appending again is safe (see above).
                _ => "handed back",
            };
            if waiting {
                debug!(
                    command = cmd.id,
                    client = cmd.client_id,
                    outcome,
                    "command handed back, appended again"
                );
                self.submit(cmd);
            } else {
                debug!(
                    command = cmd.id,
                    client = cmd.client_id,
                    outcome,
                    "command handed back, nobody waits for it here"
                );
            }
        }
    }

    /// Sends the node's messages, after the node wrote what they depend on.
    fn flush(&mut self) {
        self.node.take_outgoing_messages(&mut self.outgoing);
        self.send_outgoing();
    }

    fn send_outgoing(&mut self) {
        for msg in self.outgoing.drain(..) {
            let to = msg.get_receiver();
            if let Some((_, sender)) = self.peers.get(&to).and_then(|c| c.last()) {
                match crate::net::encode_limited(&PeerMessage::Paxos(msg), MAX_PEER_FRAME_LEN) {
                    Ok(bytes) => {
                        self.metrics.peer_messages_out.fetch_add(1, Relaxed);
                        let _ = sender.send(bytes);
                    }
                    Err(e) => error!(peer = to, error = %e, "cannot encode a message"),
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
                    match applied {
                        Applied::New(r) | Applied::Duplicate(r) => {
                            self.answer(cmd.client_id, cmd.id, ServerReply::Done(cmd.id, r))
                        }
                        Applied::Stale => {
                            self.pending.remove(&(cmd.client_id, cmd.id));
                        }
                    }
                }
                LogEntry::StopSign(..) => self.db.skip_entry(),
                LogEntry::Snapshotted(s) => {
                    // The log before `trimmed_idx` was compacted (here, or by the leader that
                    // brought us up to date): the snapshot is the state after it.
                    self.db = Database::from_snapshot(&s.snapshot, s.trimmed_idx);
                    debug!(
                        up_to = s.trimmed_idx,
                        "map rebuilt from a snapshot of the log"
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
            Ok(()) => debug!(up_to = applied, "log compacted"),
            Err(e) => warn!(up_to = applied, error = ?e, "cannot compact the log"),
        }
    }

    /// The leader this server follows and its own role, as the node reports them.
    fn leader_view(&self) -> (Option<NodeId>, Role) {
        match self.node.get_current_leader() {
            None => (None, Role::None),
            Some((l, true)) if l == self.me => (Some(l), Role::Leader),
            Some((l, false)) if l == self.me => (Some(l), Role::Candidate),
            Some((l, _)) => (Some(l), Role::Follower),
        }
    }

    /// Publishes the state as of the end of this pass: the status snapshot that connection
    /// tasks answer status requests from, and the metrics' gauges.
    fn publish(&mut self) {
        let (leader, role) = self.leader_view();
        let m = &self.metrics;
        if leader != self.leader_seen {
            if self.leader_seen.is_some() || leader.is_some() {
                m.leader_changes.fetch_add(1, Relaxed);
            }
            info!(from = ?self.leader_seen, to = ?leader, role = ?role, "leader changed");
            self.leader_seen = leader;
        }
        m.set_role(role);
        m.leader_id.store(leader.unwrap_or(0), Relaxed);
        let ballot = self.node.get_promise();
        m.ballot_n.store(u64::from(ballot.n), Relaxed);
        m.ballot_pid.store(ballot.pid, Relaxed);
        let decided = self.node.get_decided_idx();
        let compacted = self.node.get_compacted_idx();
        m.decided_idx.store(decided as u64, Relaxed);
        m.accepted_idx
            .store(self.node.get_accepted_idx() as u64, Relaxed);
        m.applied_idx.store(self.db.applied_len() as u64, Relaxed);
        m.compacted_idx.store(compacted as u64, Relaxed);
        m.batched_len
            .store(self.node.get_batched_len() as u64, Relaxed);
        match self.node.get_migration_status() {
            Some(ms) => {
                m.migration_active.store(1, Relaxed);
                m.migration_prefix_end.store(ms.prefix_end as u64, Relaxed);
                m.migration_received.store(ms.received as u64, Relaxed);
                m.migration_sources.store(ms.sources as u64, Relaxed);
            }
            None => {
                m.migration_active.store(0, Relaxed);
                m.migration_prefix_end.store(0, Relaxed);
                m.migration_received.store(0, Relaxed);
                m.migration_sources.store(0, Relaxed);
            }
        }
        m.peers_connected.store(self.peers.len() as u64, Relaxed);
        m.clients_connected
            .store(self.clients.len() as u64, Relaxed);
        let mut peers_connected: Vec<NodeId> = self.peers.keys().copied().collect();
        peers_connected.sort_unstable();
        let info = StatusInfo {
            id: self.me,
            leader,
            decided_idx: decided,
            applied: self.db.applied_len(),
            compacted_idx: compacted,
            peers_connected,
        };
        self.status.send_if_modified(|s| {
            let changed = *s != info;
            if changed {
                *s = info;
            }
            changed
        });
    }

    fn write_stats(&self) {
        if let Some(path) = &self.cfg.output_filepath {
            let leader = self.leader_seen;
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
                warn!(path = %path, error = %e, "cannot write the statistics file");
            }
        }
    }
}
