//! [`OmniPaxos`]: one server's node of the replicated log.

use crate::{
    ballot_leader_election::Ballot,
    ble::{Ble, HeartbeatMsg},
    clock::Clock,
    errors::{CompactionErr, ConfigError, ProposeErr},
    messages::{ballot_leader_election::BLEMessage, sequence_paxos::PaxosMessage, Message},
    node::{
        forwarding::ReturnedAppend,
        reads::{ReadId, ReadIndex},
        role::Phase,
        succession::MigrationStatus,
        Node,
    },
    quorum::Quorum,
    storage::{Entry, StopSign, Storage},
    trace::NodeDispatch,
    util::{LogEntry, NodeId, NodeStats},
};
use std::ops::RangeBounds;

pub use crate::config::{ClusterConfig, OmniPaxosConfig, ServerConfig};

/// One server's node of the replicated log: Sequence Paxos driven by Ballot Leader Election.
///
/// The node is *sans-IO*: it never reads a clock, opens a socket or spawns a thread. You own the
/// network and the clock, and drive it with this loop:
///
/// 1. Call [`tick`](Self::tick) at a fixed period (e.g. every 10 ms). All timeouts in
///    [`ServerConfig`] count these calls.
/// 2. Call [`handle_incoming`](Self::handle_incoming) for every message received, and
///    [`append`](Self::append) for every entry to replicate.
/// 3. Then call [`take_outgoing_messages`](Self::take_outgoing_messages) (or
///    [`outgoing_messages`](Self::outgoing_messages)) and send each message to
///    [`Message::get_receiver`]. Messages may be lost, duplicated or reordered: the protocol
///    copes. Tell the node when a connection comes back with [`reconnected`](Self::reconnected).
/// 4. Read what is decided with [`read_decided_suffix`](Self::read_decided_suffix) (or
///    [`read_entries`](Self::read_entries)) from the index you applied up to, and apply it to your
///    state machine.
///
/// **One storage write per pass.** Everything the node does between two takes of its outgoing
/// messages (any number of messages handled and entries appended) is written to storage in one
/// [`Storage::write_atomically`], when the messages are taken: handle a burst of messages, then
/// take the output once, and a backlog costs a few large writes instead of one per message.
/// A backend whose writes cost next to nothing (`MemoryStorage`) asks instead to be written
/// after every message it handles ([`Storage::writes_at_once`]): then what a message changed
/// shows as soon as it is handled (appends still wait for the take).
///
/// **Storage before send, and before sight.** Everything a message depends on (a promise,
/// accepted entries, a decided index) is written before the message is handed to you, so a
/// message taken from the node may be sent at once. And everything the getters and reads show
/// is written: after a crash, rebuilding the node on the same storage
/// ([`OmniPaxosConfig::build`]) recovers at least what you saw. (So with a backend written
/// once per pass, the state you see moves when you take the outgoing messages, not while you
/// hand messages in.)
///
/// **Storage failures.** If the storage backend returns an error, the node panics with a message
/// naming the failed operation: continuing with state that may not be on disk could break
/// safety. Rebuild the node on its storage to recover.
///
/// **Batching.** On the leader, appends are put in the log `batch_size` at a time; a partial
/// batch goes after `flush_batch_tick_timeout` ticks, or at once with
/// [`flush_batch`](Self::flush_batch). With the default `batch_size` 1 nothing waits: whatever
/// was appended since the last take goes into the log when the outgoing messages are taken (or
/// at the end of a tick), in one placement and one write. A service that calls `flush_batch` at the end of each
/// pass of its event loop batches by load: whatever arrived during one write goes out in the
/// next, and a lone request goes out at once, with no timer in its way.
pub struct OmniPaxos<T: Entry, B: Storage<T>> {
    ble: Ble,
    node: Node<T, B>,
    election_clock: Clock,
    resend_clock: Clock,
    flush_clock: Clock,
    /// The dispatcher every call runs under (the custom logger's, feature `logging`).
    dispatch: NodeDispatch,
}

impl<T: Entry, B: Storage<T>> OmniPaxos<T, B> {
    /// Builds a node from a validated configuration.
    pub(crate) fn new(cfg: OmniPaxosConfig, storage: B) -> Result<Self, ConfigError> {
        let dispatch = NodeDispatch::for_server(&cfg.server_config);
        let _log = dispatch.enter();
        let (node, recovered_promise) = Node::new(&cfg, storage)?;
        let pid = cfg.server_config.pid;
        let peers: Vec<NodeId> = cfg
            .cluster_config
            .nodes
            .iter()
            .copied()
            .filter(|p| *p != pid)
            .collect();
        let quorum = Quorum::new(
            cfg.cluster_config.nodes.len(),
            cfg.cluster_config.flexible_quorum,
        );
        let mut ble = Ble::new(
            pid,
            cfg.cluster_config.configuration_id,
            peers,
            quorum,
            cfg.server_config.leader_priority,
            recovered_promise,
        );
        ble.set_can_lead(node.can_lead());
        Ok(OmniPaxos {
            ble,
            node,
            election_clock: Clock::new(cfg.server_config.election_tick_timeout),
            resend_clock: Clock::new(cfg.server_config.resend_message_tick_timeout),
            flush_clock: Clock::new(cfg.server_config.flush_batch_tick_timeout),
            dispatch,
        })
    }

    /// Appends `entry` to the replicated log.
    ///
    /// On the leader the entry joins the current batch; on a follower it is forwarded to the
    /// leader, resent until the leader has it and taken once however often the message is
    /// duplicated; while no leader is known it waits here. It is decided once a write quorum
    /// accepted it: watch [`get_decided_idx`](Self::get_decided_idx).
    ///
    /// **Nothing is lost silently.** An append that returned `Ok` at a node that keeps running
    /// is eventually decided, or handed back by
    /// [`take_returned_appends`](Self::take_returned_appends) saying whether it may be decided
    /// (its leader was replaced before this node learned its fate). The library never decides
    /// one append twice by itself; an application that re-appends what may be decided must
    /// deduplicate with its own ids (as `omnipaxos_kv` does).
    ///
    /// Errors with [`ProposeErr::PendingReconfigEntry`] (giving the entry back) once the
    /// configuration is stopped or being stopped by a reconfiguration.
    // `ProposeErr` hands the proposal back, as in omnipaxos 0.2; boxing it would break users.
    #[allow(clippy::result_large_err)]
    pub fn append(&mut self, entry: T) -> Result<(), ProposeErr<T>> {
        let _log = self.dispatch.enter();
        self.node
            .append(entry)
            .map_err(ProposeErr::PendingReconfigEntry)
    }

    /// Takes the appends made on this node that the library hands back, oldest first, each
    /// with what is known of it ([`AppendOutcome`](crate::util::AppendOutcome)): `NotDecided` ones never reached a log that
    /// can be decided (append them again if they still matter); `Unknown` ones were sent to a
    /// leader that was replaced before this node learned their fate (re-append only if you
    /// deduplicate). See [`append`](Self::append).
    ///
    /// Kept until taken (the newest 10,000; [`NodeStats::returned_appends`] counts them all),
    /// and carried over by [`start_next_config`](Self::start_next_config).
    #[must_use = "the appends handed back are lost unless the application acts on them"]
    pub fn take_returned_appends(&mut self) -> Vec<ReturnedAppend<T>> {
        self.node.take_returned()
    }

    /// The entries of [`take_returned_appends`](Self::take_returned_appends) without their
    /// outcome.
    #[must_use = "the appends handed back are lost unless the application acts on them"]
    pub fn take_uncertain_appends(&mut self) -> Vec<T> {
        self.node
            .take_returned()
            .into_iter()
            .map(|r| r.entry)
            .collect()
    }

    /// Closes the current batch now: the leader puts its partial batch in the log, a follower
    /// forwards what waits (see the type's docs on batching).
    pub fn flush_batch(&mut self) {
        let _log = self.dispatch.enter();
        self.node.flush_batch();
    }

    /// Asks for a linearizable read. Once [`take_ready_reads`](Self::take_ready_reads) returns
    /// it with an index, apply the decided log at least up to that index and read your state:
    /// the result reflects every entry decided before this call. No entry is written to the
    /// log; the leader confirms it still leads with one round of messages (shared by all reads
    /// waiting), then tells the index.
    ///
    /// A read is retried with each new leader until it is answered; there is no timeout here:
    /// give up on your side if you must. After a reconfiguration, ask on the next node: once
    /// the leader of this configuration holds its stop sign, reads asked here are not answered
    /// any more (they stay in [`pending_reads`](Self::pending_reads)), since the next
    /// configuration may already decide entries this log never holds.
    pub fn request_read(&mut self) -> ReadId {
        let _log = self.dispatch.enter();
        self.node.request_read()
    }

    /// The reads asked here that are ready (see [`request_read`](Self::request_read)).
    #[must_use = "ready reads are answered from the application's state"]
    pub fn take_ready_reads(&mut self) -> Vec<ReadIndex> {
        self.node.take_ready_reads()
    }

    /// Reads asked here and not ready yet.
    pub fn pending_reads(&self) -> usize {
        self.node.pending_reads()
    }

    /// Proposes to stop this configuration and continue the log in `new_configuration`, with
    /// `metadata` decided alongside. Once decided, [`is_reconfigured`](Self::is_reconfigured)
    /// returns the stop sign.
    ///
    /// Errors if `new_configuration` is invalid (its id must also be higher than this one's) or
    /// a reconfiguration is already under way.
    #[allow(clippy::result_large_err)]
    pub fn reconfigure(
        &mut self,
        new_configuration: ClusterConfig,
        metadata: Option<Vec<u8>>,
    ) -> Result<(), ProposeErr<T>> {
        let _log = self.dispatch.enter();
        let current = self.get_configuration_id();
        let valid = new_configuration.validate().and_then(|_| {
            if new_configuration.configuration_id > current {
                Ok(())
            } else {
                Err(ConfigError::InvalidConfig(format!(
                    "configuration_id must be higher than the current one ({current}), got {}",
                    new_configuration.configuration_id
                )))
            }
        });
        if let Err(e) = valid {
            return Err(ProposeErr::ConfigError(e, new_configuration, metadata));
        }
        self.node
            .reconfigure(StopSign::with(new_configuration, metadata))
            .map_err(|ss| ProposeErr::PendingReconfigConfig(ss.next_config, ss.metadata))
    }

    /// The decided stop sign, once this configuration is stopped: its stop sign is decided
    /// here, after every entry before it. Then:
    ///
    /// * if this server is in `next_config`, continue with
    ///   [`start_next_config`](Self::start_next_config);
    /// * if it is not, it was removed: keep this node running for a while, so that it can serve
    ///   its log to the servers that join (see [`get_migration_status`](Self::get_migration_status)
    ///   on those); it takes part in nothing else.
    ///
    /// A server that missed the stop learns it from a server that holds it, pulls the entries
    /// it lacks, and then decides the stop sign too: its application sees every entry first.
    /// A server that joins `next_config` builds its node with [`ClusterConfig::build_for_server`]
    /// on empty storage.
    pub fn is_reconfigured(&self) -> Option<StopSign> {
        self.node.decided_stopsign()
    }

    /// Whether this configuration is over or being stopped: appends are refused.
    pub fn is_stopped(&self) -> bool {
        self.node.is_sealed()
    }

    /// Turns this stopped node into the node of the next configuration, on the same storage:
    /// the log goes on at the index of the stop sign, with everything before it decided.
    ///
    /// Errors, handing this node back unchanged, if the configuration is not stopped, or
    /// `server_config` is invalid or not this server's, or this server is not in the next
    /// configuration.
    // The node is handed back with the error so that nothing is lost; boxing would not help.
    #[allow(clippy::result_large_err)]
    pub fn start_next_config(
        mut self,
        server_config: ServerConfig,
    ) -> Result<OmniPaxos<T, B>, (ConfigError, Self)> {
        let _log = self.dispatch.enter();
        let Some(ss) = self.node.decided_stopsign() else {
            let e = ConfigError::InvalidConfig(
                "start_next_config: this configuration has not decided a stop sign".into(),
            );
            return Err((e, self));
        };
        let cfg = OmniPaxosConfig {
            cluster_config: ss.next_config.clone(),
            server_config,
        };
        if let Err(e) = cfg.validate() {
            return Err((e, self));
        }
        if cfg.server_config.pid != self.node.pid() {
            let e = ConfigError::InvalidConfig(format!(
                "server_config.pid: {} is not this server ({})",
                cfg.server_config.pid,
                self.node.pid()
            ));
            return Err((e, self));
        }
        // Stopped first (if the decision showed before the role stopped): the appends still
        // held here come back and are carried over.
        self.node.hand_over();
        let returned = self.node.take_returned();
        let storage = self.node.into_storage();
        match OmniPaxos::new(cfg, storage) {
            Ok(mut next) => {
                next.node.keep_returned(returned);
                Ok(next)
            }
            Err(e) => panic!("OmniPaxos: start_next_config could not build the next node: {e}"),
        }
    }

    /// Consumes the node and returns its storage (with everything staged written).
    pub fn into_storage(self) -> B {
        let _log = self.dispatch.enter();
        self.node.into_storage()
    }

    /// The identifier of this node's configuration.
    pub fn get_configuration_id(&self) -> u32 {
        self.node.config().configuration_id
    }

    /// While this node pulls the log of the configurations before its own (it joined), how far
    /// it got; `None` otherwise. Until the pull completes, reads of that log return `None`.
    pub fn get_migration_status(&self) -> Option<MigrationStatus> {
        self.node.migration()
    }

    /// Handles a message received from another server. Messages for another pid, from a pid
    /// outside the configurations this node knows, or malformed ones are ignored.
    pub fn handle_incoming(&mut self, m: Message<T>) {
        let _log = self.dispatch.enter();
        report!(TRACE, messages::received; pid = self.node.pid(),
            config_id = self.get_configuration_id(), from = m.get_sender(), to = m.get_receiver(),
            kind = m.kind(), "a message is handled (ignored if `to` is not this node)");
        if m.get_receiver() != self.node.pid() {
            return;
        }
        match m {
            Message::SequencePaxos(p) => {
                self.node.handle(p.from, p.msg);
                self.ble.observe_promise(self.node.staged_promise());
            }
            Message::BLE(b) => {
                if let HeartbeatMsg::Request(r) = &b.msg {
                    if r.config_id != self.get_configuration_id() || self.node.is_sealed() {
                        // A server still in a configuration that stopped, or ours is over.
                        self.node.heartbeat_from(b.from, r.config_id);
                        return;
                    }
                }
                if b.from != self.node.pid() && self.node.is_peer(b.from) && !self.node.is_sealed()
                {
                    if self.ble.handle(b.from, b.msg) {
                        // The link to this peer was down for a round or more: what was sent to
                        // it meanwhile may be lost, so a leader repairs as after a reconnect.
                        self.node.link_restored(b.from);
                    }
                    if self.ble.round_complete_early() {
                        // A confirmation round has its replies: end it now, and give the next
                        // round a full timeout.
                        self.election_clock.restart();
                        self.end_election_round();
                    }
                }
            }
        }
    }

    /// Advances the node's clock by one tick: ends election rounds, resends what may have been
    /// lost, and flushes a partial batch, each at its configured period.
    pub fn tick(&mut self) {
        let _log = self.dispatch.enter();
        self.node.tick();
        if self.node.is_sealed() {
            // A stopped configuration elects nobody; it only serves its log.
            if self.resend_clock.tick() {
                self.node.resend();
            }
        } else {
            if self.election_clock.tick() {
                self.end_election_round();
            }
            if self.resend_clock.tick() {
                self.node.resend();
            }
            if self.flush_clock.tick() {
                self.node.flush_batch();
            }
        }
        self.node.end_tick();
    }

    /// Ends the election round: the election decides who leads (with what Sequence Paxos
    /// reports), and Sequence Paxos follows a new leader.
    fn end_election_round(&mut self) {
        if let Some(h) = self.node.take_higher_promise() {
            self.ble.report_higher_promise(h);
        }
        self.ble.set_can_lead(self.node.can_lead());
        if let Some(leader) = self.ble.round_end(self.node.staged_promise()) {
            self.node.handle_leader(leader);
        }
    }

    /// Moves the messages to send into `buffer` (appending; reuse the buffer between calls),
    /// after writing to storage everything they depend on.
    pub fn take_outgoing_messages(&mut self, buffer: &mut Vec<Message<T>>) {
        let _log = self.dispatch.enter();
        let from = self.node.pid();
        self.node.take_outgoing(|to, msg| {
            buffer.push(Message::SequencePaxos(PaxosMessage { from, to, msg }))
        });
        buffer.extend(
            self.ble
                .take_outgoing()
                .map(|(to, msg)| Message::BLE(BLEMessage { from, to, msg })),
        );
    }

    /// Moves into `buffer` the messages that may be sent *before* this node writes what it
    /// staged: a leader's accepts of entries it appended but has not written yet, and the
    /// read-index protocol's messages (requests, confirmation rounds and read indices depend
    /// on no write). Send them, then call
    /// [`take_outgoing_messages`](Self::take_outgoing_messages), which writes and hands out
    /// the rest: the followers' writes then overlap the leader's own, as in etcd's raft, and
    /// reads do not wait for writes.
    ///
    /// Optional: without it, the accepts leave with the other messages, after the leader's
    /// write. It is safe because an accept acknowledges nothing: the leader counts itself
    /// towards a quorum only once its own write is done, decided indices in these messages are
    /// written ones, and a node never promises or acknowledges what it has not written. If the
    /// leader crashes before its write, its followers may hold entries it lost; they are
    /// decided only if a quorum holds them, and the next leader adopts them then.
    pub fn take_messages_ahead_of_write(&mut self, buffer: &mut Vec<Message<T>>) {
        let from = self.node.pid();
        self.node.take_ahead(|to, msg| {
            buffer.push(Message::SequencePaxos(PaxosMessage { from, to, msg }))
        });
    }

    /// The messages to send, in a new vector.
    #[must_use = "the messages must be sent to their receivers"]
    pub fn outgoing_messages(&mut self) -> Vec<Message<T>> {
        let mut v = Vec::new();
        self.take_outgoing_messages(&mut v);
        v
    }

    /// The entry at `idx`, or `None` beyond the end of the log or in a prefix still being
    /// pulled. A compacted index gives the `Trimmed`/`Snapshotted` element.
    pub fn read(&self, idx: usize) -> Option<LogEntry<T>> {
        let _log = self.dispatch.enter();
        self.node.read(idx..=idx).and_then(|mut v| v.pop())
    }

    /// The entries in `r` (absolute indices), or `None` if `r` is empty, reaches beyond the end
    /// of the log, or starts in a prefix still being pulled. A compacted prefix is one
    /// `Trimmed`/`Snapshotted` element.
    pub fn read_entries<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        let _log = self.dispatch.enter();
        self.node.read(r)
    }

    /// The decided entries from `from_idx` on, or `None` when `from_idx >= get_decided_idx()`
    /// (or `from_idx` is in a prefix still being pulled).
    pub fn read_decided_suffix(&self, from_idx: usize) -> Option<Vec<LogEntry<T>>> {
        let _log = self.dispatch.enter();
        self.node.read_decided_suffix(from_idx)
    }

    /// The decided index: entries below it are decided (absolute; a stop sign counts as one).
    pub fn get_decided_idx(&self) -> usize {
        self.node.decided_idx()
    }

    /// The end of the local log (absolute; a stop sign counts as one).
    pub fn get_accepted_idx(&self) -> usize {
        self.node.accepted_idx()
    }

    /// The compacted index: entries below it are trimmed, snapshotted, or (a server that joined)
    /// still being pulled.
    pub fn get_compacted_idx(&self) -> usize {
        self.node.compacted_idx()
    }

    /// Entries appended here and not in the log yet (in the current batch, or waiting to be
    /// forwarded). With `batch_size` 1, a leader's appends count here until the next take of
    /// the outgoing messages (or the end of a tick) puts them in the log.
    pub fn get_batched_len(&self) -> usize {
        self.node.batched_len()
    }

    /// Turns the leader election's *fast failover* on or off (on when built). On, a follower
    /// whose leader did not answer a whole heartbeat round tells its peers at once and runs a
    /// short confirmation round, so the survivors take over about one election timeout sooner
    /// after a leader crash; off, they take over at the end of the next full round. The takeover
    /// rule and safety are the same either way. On networks that lose many messages it costs
    /// extra leader changes (measured in the guide's *Leader election* chapter); all servers of
    /// a cluster should use the same setting. Not stored: set it again after a restart.
    pub fn set_fast_failover(&mut self, on: bool) {
        self.ble.set_fast_failover(on);
    }

    /// The leader this node follows, and whether this node is that leader in its accept phase
    /// and still reaches a quorum (ready to serve). `None` before any leader is known, and on
    /// a leader that was cut off from a quorum for an election round (it then knows of no
    /// leader it could name: within two election timeouts of a partition it stops calling
    /// itself leader).
    pub fn get_current_leader(&self) -> Option<(NodeId, bool)> {
        let prom = self.node.promise();
        if prom.pid == 0 {
            return None;
        }
        if prom.pid == self.node.pid() {
            let sealed = self.node.is_sealed();
            if !self.node.is_leader() && !sealed {
                // Our own ballot, of an incarnation before a restart (or one we stepped down
                // from): nobody leads it. (A stopped configuration keeps naming its last
                // leader, never as serving.)
                return None;
            }
            let leading = self.node.is_leader() && !sealed;
            if leading && !self.ble.is_happy() {
                return None;
            }
            let serving = leading && self.node.phase() == Phase::Accept;
            return Some((prom.pid, serving));
        }
        Some((prom.pid, false))
    }

    /// The ballot this node promised (`Ballot::default()` if none).
    pub fn get_promise(&self) -> Ballot {
        self.node.promise()
    }

    /// This node's pid.
    pub fn get_pid(&self) -> NodeId {
        self.node.pid()
    }

    /// Counters of what this node did (snapshots taken and installed, appends handed back).
    pub fn get_stats(&self) -> NodeStats {
        self.node.stats()
    }

    /// The storage backend (e.g. to inspect it in tests). It may lag what the node works with
    /// until the next take of the outgoing messages.
    pub fn get_storage(&self) -> &B {
        self.node.storage()
    }

    /// Takes over leadership at once with a ballot higher than any this node has seen. Another
    /// node may still win with a higher ballot.
    pub fn try_become_leader(&mut self) {
        let _log = self.dispatch.enter();
        if self.node.is_sealed() {
            // A stopped configuration elects nobody.
            return;
        }
        self.ble.set_can_lead(self.node.can_lead());
        if let Some(b) = self.ble.force_takeover(self.node.staged_promise()) {
            self.node.take_over(b);
        }
    }

    /// Sets this node's leader priority: among candidates of the same round, the highest
    /// priority wins. A current leader keeps its ballot; the priority applies from the next
    /// election on.
    pub fn set_priority(&mut self, p: u32) {
        self.ble.set_priority(p);
    }

    /// Trims the log below `trim_idx` (default: as far as possible) on every server: the
    /// entries are discarded and reads show `LogEntry::Trimmed`.
    ///
    /// Only the leader can trim, and only what every server has decided, so that no server
    /// ever needs the entries again. Errors: [`CompactionErr::NotCurrentLeader`] on another
    /// node, [`CompactionErr::NotAllDecided`] beyond what all decided,
    /// [`CompactionErr::TrimmedIndex`] below what is already compacted,
    /// [`CompactionErr::PendingPrefix`] while this server still pulls its prefix.
    pub fn trim(&mut self, trim_idx: Option<usize>) -> Result<(), CompactionErr> {
        let _log = self.dispatch.enter();
        self.node.trim(trim_idx)
    }

    /// Folds the decided entries below `compact_idx` (default: the decided index) into a
    /// snapshot (`Snapshot::create`, merged into the previous one) and drops them; reads show
    /// `LogEntry::Snapshotted`. Unless `local_only`, the other servers do the same (each up to
    /// what it decided). Any server can snapshot.
    ///
    /// For entry types without snapshots this trims (with the rules of [`trim`](Self::trim)).
    /// Errors: [`CompactionErr::UndecidedIndex`] beyond the decided index,
    /// [`CompactionErr::TrimmedIndex`] below what is already compacted,
    /// [`CompactionErr::PendingPrefix`] while this server still pulls its prefix.
    pub fn snapshot(
        &mut self,
        compact_idx: Option<usize>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        let _log = self.dispatch.enter();
        self.node.snapshot(compact_idx, local_only)
    }

    /// The transport reconnected to `pid`: the node resynchronises with it at once instead of
    /// waiting for a resend timeout.
    pub fn reconnected(&mut self, pid: NodeId) {
        let _log = self.dispatch.enter();
        self.node.reconnected(pid);
    }

    /// Recovery after a crash, as the seeds name it. Building the node on its persisted storage
    /// already recovers it; calling this (again) only asks the leader to resynchronise this
    /// node, which is harmless at any time.
    pub fn fail_recovery(&mut self) {
        let _log = self.dispatch.enter();
        self.node.fail_recovery();
    }

    /// The leader election's current leader ballot (for diagnostics and tests).
    pub fn get_election_leader(&self) -> Ballot {
        self.ble.leader()
    }

    /// This node's own current ballot in the leader election.
    pub fn get_election_ballot(&self) -> Ballot {
        self.ble.current_ballot()
    }
}
