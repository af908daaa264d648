//! [`OmniPaxos`]: one server's node of the replicated log.

use crate::{
    ballot_leader_election::Ballot,
    ble::Ble,
    errors::{CompactionErr, ConfigError, ProposeErr},
    messages::{ballot_leader_election::HeartbeatMsg, Message},
    quorum::Quorum,
    sequence_paxos::migration::MigrationStatus,
    sequence_paxos::{Phase, SequencePaxos},
    storage::{Entry, StopSign, Storage},
    util::{LogEntry, NodeId, NodeStats},
};
use std::ops::RangeBounds;

pub use crate::config::{ClusterConfig, OmniPaxosConfig, ServerConfig};

/// Counts ticks and fires every `period` of them.
struct Clock {
    period: u64,
    elapsed: u64,
}

impl Clock {
    fn new(period: u64) -> Self {
        Clock { period, elapsed: 0 }
    }

    /// Starts a new period now.
    fn restart(&mut self) {
        self.elapsed = 0;
    }

    fn tick(&mut self) -> bool {
        self.elapsed += 1;
        if self.elapsed >= self.period {
            self.elapsed = 0;
            true
        } else {
            false
        }
    }
}

/// One server's node of the replicated log: Sequence Paxos driven by Ballot Leader Election.
///
/// The node is *sans-IO*: it never reads a clock, opens a socket or spawns a thread. You own the
/// network and the clock, and drive it with this loop:
///
/// 1. Call [`tick`](Self::tick) at a fixed period (e.g. every 10 ms). All timeouts in
///    [`ServerConfig`] count these calls.
/// 2. Call [`handle_incoming`](Self::handle_incoming) for every message received.
/// 3. After either, call [`take_outgoing_messages`](Self::take_outgoing_messages) (or
///    [`outgoing_messages`](Self::outgoing_messages)) and send each message to
///    [`Message::get_receiver`]. Messages may be lost, duplicated or reordered: the protocol
///    copes. Tell the node when a connection comes back with [`reconnected`](Self::reconnected).
/// 4. Read what is decided with [`read_decided_suffix`](Self::read_decided_suffix) (or
///    [`read_entries`](Self::read_entries)) from the index you applied up to, and apply it to your
///    state machine.
///
/// **Storage before send.** Everything a message depends on (a promise, accepted entries, a
/// decided index) is written to storage, with [`Storage::write_atomically`], before the message
/// is handed to you. So a message taken from the node may be sent at once; and after a crash,
/// rebuilding the node on the same storage ([`OmniPaxosConfig::build`]) recovers it.
///
/// **Storage failures.** If the storage backend returns an error, the node panics with a message
/// naming the failed operation: continuing with state that may not be on disk could break
/// safety. Rebuild the node on its storage to recover.
///
/// Replication messages are built when you take the outgoing messages, so that everything
/// appended between two takes travels to each follower in one message. On the leader, a full
/// batch (with the default `batch_size` of 1: every append) is written to storage in one write
/// when the node next acts (a take, a message, a tick), so the appends in between also share
/// one storage write; until then they count in [`get_batched_len`](Self::get_batched_len)
/// and not yet in [`get_accepted_idx`](Self::get_accepted_idx). (A leader that is a write
/// quorum on its own writes at once: that decides the entries.)
pub struct OmniPaxos<T: Entry, B: Storage<T>> {
    ble: Ble,
    sp: SequencePaxos<T, B>,
    config_id: u32,
    election_clock: Clock,
    resend_clock: Clock,
    flush_clock: Clock,
}

impl<T: Entry, B: Storage<T>> OmniPaxos<T, B> {
    /// Builds a node from a validated configuration.
    pub(crate) fn new(cfg: OmniPaxosConfig, storage: B) -> Self {
        let (sp, recovered_promise) = SequencePaxos::new(&cfg, storage);
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
        ble.set_can_lead(sp.can_lead());
        OmniPaxos {
            ble,
            sp,
            config_id: cfg.cluster_config.configuration_id,
            election_clock: Clock::new(cfg.server_config.election_tick_timeout),
            resend_clock: Clock::new(cfg.server_config.resend_message_tick_timeout),
            flush_clock: Clock::new(cfg.server_config.flush_batch_tick_timeout),
        }
    }

    /// Appends `entry` to the replicated log.
    ///
    /// On the leader the entry joins the current batch; on a follower it is forwarded to the
    /// leader, resent until the leader has it and appended there once however often the message
    /// is duplicated; while no leader is known it waits here. It is decided once a write quorum
    /// accepted it: watch [`get_decided_idx`](Self::get_decided_idx).
    ///
    /// Like any consensus log, an entry that has not reached a quorum may be lost when its leader
    /// fails: an application that must not lose a request re-appends it if it is not decided in
    /// time, and deduplicates (as `omnipaxos_kv` does). A forward whose fate the library cannot
    /// know comes back through [`take_uncertain_appends`](Self::take_uncertain_appends).
    ///
    /// Errors with [`ProposeErr::PendingReconfigEntry`] (giving the entry back) once the
    /// configuration is being stopped by a reconfiguration.
    // `ProposeErr` hands the proposal back, as in omnipaxos 0.2; boxing it would break users.
    #[allow(clippy::result_large_err)]
    pub fn append(&mut self, entry: T) -> Result<(), ProposeErr<T>> {
        self.sp
            .append(entry)
            .map_err(ProposeErr::PendingReconfigEntry)
    }

    /// Takes the appends made on this node whose fate the library cannot know, oldest first.
    ///
    /// An append forwarded to a leader that is replaced before it acknowledges it is retried
    /// with the next leader, which appends it unless its log holds it already. When that leader
    /// cannot tell (it lacks the history of its log, after restarts), it gives the append up
    /// rather than risk deciding it twice, and it comes back here; so do appends still waiting
    /// here when the configuration is stopped. Each may or may not be decided: re-append those
    /// your application deduplicates (as `omnipaxos_kv` does), and report the others as of
    /// unknown outcome. Nothing is lost without coming back here, except with a crash of this
    /// node or as any consensus log loses entries whose leader fails before a quorum has them.
    ///
    /// Kept until taken (the newest 10,000; [`NodeStats::uncertain_appends`] counts them all), and
    /// carried over by [`start_next_config`](Self::start_next_config).
    #[must_use = "the appends handed back are lost unless the application acts on them"]
    pub fn take_uncertain_appends(&mut self) -> Vec<T> {
        self.sp.take_uncertain_appends()
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
        let valid = new_configuration.validate().and_then(|_| {
            if new_configuration.configuration_id > self.config_id {
                Ok(())
            } else {
                Err(ConfigError::InvalidConfig(format!(
                    "configuration_id must be higher than the current one ({}), got {}",
                    self.config_id, new_configuration.configuration_id
                )))
            }
        });
        if let Err(e) = valid {
            return Err(ProposeErr::ConfigError(e, new_configuration, metadata));
        }
        self.sp
            .reconfigure(StopSign::with(new_configuration, metadata))
            .map_err(|ss| ProposeErr::PendingReconfigConfig(ss.next_config, ss.metadata))
    }

    /// The decided stop sign, once this configuration is stopped. Then:
    ///
    /// * if this server is in `next_config`, continue with
    ///   [`start_next_config`](Self::start_next_config);
    /// * if it is not, it was removed: keep this node running for a while, so that it can serve
    ///   its log to the servers that join (see [`get_migration_status`](Self::get_migration_status)
    ///   on those); it takes part in nothing else.
    ///
    /// A servers that joins `next_config` builds its node with
    /// [`ClusterConfig::build_for_server`] on empty storage; the log of this configuration is
    /// then pulled to it from several servers at once.
    pub fn is_reconfigured(&self) -> Option<StopSign> {
        self.sp.decided_stopsign()
    }

    /// Turns this stopped node into the node of the next configuration, on the same storage:
    /// the log goes on at the index of the stop sign, with everything before it decided, and
    /// this server offers it to the servers that join.
    ///
    /// Errors, handing this node back unchanged, if the configuration is not stopped, or
    /// `server_config` is invalid or not this server's, or this server is not in the next
    /// configuration.
    // The node is handed back with the error so that nothing is lost; boxing would not help.
    #[allow(clippy::result_large_err)]
    pub fn start_next_config(
        self,
        server_config: ServerConfig,
    ) -> Result<OmniPaxos<T, B>, (ConfigError, Self)> {
        let Some(ss) = self.sp.decided_stopsign() else {
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
        if cfg.server_config.pid != self.sp.pid() {
            let e = ConfigError::InvalidConfig(format!(
                "server_config.pid: {} is not this server ({})",
                cfg.server_config.pid,
                self.sp.pid()
            ));
            return Err((e, self));
        }
        let notice = self.sp.stop_notice();
        let old_nodes = self.sp.members().to_vec();
        let mut sp = self.sp;
        let uncertain = sp.take_uncertain_appends();
        let mut next = OmniPaxos::new(cfg, sp.into_storage());
        next.sp.keep_uncertain_appends(uncertain);
        // The old configuration's servers that missed the stop learn it from our offers.
        next.sp.offer_also_to(&old_nodes);
        if let Some((ss, prefix)) = notice {
            next.sp.continue_after_notice(ss, prefix);
        }
        Ok(next)
    }

    /// Consumes the node and returns its storage.
    pub fn into_storage(self) -> B {
        self.sp.into_storage()
    }

    /// The identifier of this node's configuration.
    pub fn get_configuration_id(&self) -> u32 {
        self.sp.config_id()
    }

    /// While this node pulls the log of the configuration it continues (it joined it), how far
    /// it got; `None` otherwise. Until the pull completes, reads of that log return `None`.
    pub fn get_migration_status(&self) -> Option<MigrationStatus> {
        self.sp.migration()
    }

    /// Handles a message received from another server. Messages for another pid, from a pid
    /// outside the configuration or of another configuration are ignored, as are malformed ones.
    pub fn handle_incoming(&mut self, m: Message<T>) {
        if m.get_receiver() != self.sp.pid() {
            return;
        }
        match m {
            Message::SequencePaxos(p) => {
                self.sp.handle(p);
                if let Some(n) = self.sp.take_new_ballot_wanted() {
                    // A follower that restarted asks us to lead on in a higher ballot.
                    if let Some(b) = self.ble.lead_on_above(n) {
                        self.sp.handle_leader(b);
                    }
                }
                self.ble.observe_promise(self.sp.promise());
            }
            Message::BLE(b) => {
                if let HeartbeatMsg::Request(r) = &b.msg {
                    if r.config_id < self.config_id {
                        // A server of ours still in a configuration we left.
                        self.sp.tell_moved(b.from, r.config_id);
                        return;
                    }
                }
                if b.from != self.sp.pid() && self.is_member(b.from) && !self.sp.is_sealed() {
                    self.ble.handle(b);
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

    fn is_member(&self, pid: NodeId) -> bool {
        self.sp.is_member(pid)
    }

    /// Advances the node's clock by one tick: ends election rounds, resends what may have been
    /// lost, and flushes a partial batch, each at its configured period.
    pub fn tick(&mut self) {
        self.sp.tick();
        if self.sp.is_sealed() {
            // A stopped configuration elects nobody; it only offers its log to the next one.
            if self.resend_clock.tick() {
                self.sp.resend_timeout();
            }
            return;
        }
        if self.election_clock.tick() {
            self.end_election_round();
        }
        if self.resend_clock.tick() {
            self.sp.resend_timeout();
        }
        if self.flush_clock.tick() {
            self.sp.flush_batch_timeout();
        }
    }

    /// Ends the election round: the election decides who leads (with what Sequence Paxos
    /// reports), and Sequence Paxos follows a new leader.
    fn end_election_round(&mut self) {
        if let Some(h) = self.sp.take_higher_promise() {
            self.ble.report_higher_promise(h);
        }
        self.ble.set_can_lead(self.sp.can_lead());
        if let Some(leader) = self.ble.round_end(self.sp.promise()) {
            self.sp.handle_leader(leader);
        }
    }

    /// Moves the messages to send into `buffer` (appending; reuse the buffer between calls).
    pub fn take_outgoing_messages(&mut self, buffer: &mut Vec<Message<T>>) {
        buffer.extend(self.sp.take_outgoing().map(Message::SequencePaxos));
        buffer.extend(self.ble.take_outgoing().map(Message::BLE));
    }

    /// The messages to send, in a new vector.
    #[must_use = "the messages must be sent to their receivers"]
    pub fn outgoing_messages(&mut self) -> Vec<Message<T>> {
        let mut v = Vec::new();
        self.take_outgoing_messages(&mut v);
        v
    }

    /// The entry at `idx`, or `None` beyond the end of the log. A compacted index gives the
    /// `Trimmed`/`Snapshotted` element.
    pub fn read(&self, idx: usize) -> Option<LogEntry<T>> {
        self.sp.read(idx..=idx).and_then(|mut v| v.pop())
    }

    /// The entries in `r` (absolute indices), or `None` if `r` is empty or reaches beyond the
    /// end of the log. A compacted prefix is one `Trimmed`/`Snapshotted` element.
    pub fn read_entries<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        self.sp.read(r)
    }

    /// The decided entries from `from_idx` on, or `None` when `from_idx >= get_decided_idx()`.
    pub fn read_decided_suffix(&self, from_idx: usize) -> Option<Vec<LogEntry<T>>> {
        self.sp.read_decided_suffix(from_idx)
    }

    /// The decided index: entries below it are decided (absolute; a stop sign counts as one).
    pub fn get_decided_idx(&self) -> usize {
        self.sp.decided_idx()
    }

    /// The end of the local log (absolute; a stop sign counts as one).
    pub fn get_accepted_idx(&self) -> usize {
        self.sp.accepted_idx()
    }

    /// The compacted index: entries below it are trimmed or snapshotted.
    pub fn get_compacted_idx(&self) -> usize {
        self.sp.compacted_idx()
    }

    /// Entries appended here and waiting for their batch to be replicated.
    pub fn get_batched_len(&self) -> usize {
        self.sp.batched_len()
    }

    /// The leader this node follows, and whether this node is that leader in its accept phase
    /// (ready to replicate). `None` before any leader is known.
    pub fn get_current_leader(&self) -> Option<(NodeId, bool)> {
        let prom = self.sp.promise();
        if prom.pid == 0 {
            return None;
        }
        let serving =
            prom.pid == self.sp.pid() && self.sp.is_leader() && self.sp.phase() == Phase::Accept;
        Some((prom.pid, serving))
    }

    /// The ballot this node promised (`Ballot::default()` if none).
    pub fn get_promise(&self) -> Ballot {
        self.sp.promise()
    }

    /// This node's pid.
    pub fn get_pid(&self) -> NodeId {
        self.sp.pid()
    }

    /// Counters of what this node did (snapshots taken and installed, forwards given up).
    pub fn get_stats(&self) -> NodeStats {
        self.sp.stats()
    }

    /// The storage backend (e.g. to inspect it in tests).
    pub fn get_storage(&self) -> &B {
        self.sp.storage()
    }

    /// Takes over leadership at once with a ballot higher than any this node has seen. Another
    /// node may still win with a higher ballot.
    pub fn try_become_leader(&mut self) {
        if self.sp.is_sealed() {
            // A stopped configuration elects nobody.
            return;
        }
        self.ble.set_can_lead(self.sp.can_lead());
        if let Some(b) = self.ble.force_takeover(self.sp.promise()) {
            self.sp.handle_leader(b);
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
    /// Only the leader can trim, and only what every server has accepted, so that no server
    /// ever needs the entries again. Errors: [`CompactionErr::NotCurrentLeader`] on another
    /// node, [`CompactionErr::NotAllDecided`] beyond what all accepted,
    /// [`CompactionErr::TrimmedIndex`] below what is already compacted.
    pub fn trim(&mut self, trim_idx: Option<usize>) -> Result<(), CompactionErr> {
        self.sp.trim(trim_idx)
    }

    /// Folds the decided entries below `compact_idx` (default: the decided index) into a
    /// snapshot (`Snapshot::create`, merged into the previous one) and drops them; reads show
    /// `LogEntry::Snapshotted`. Unless `local_only`, the other servers do the same (each up to
    /// what it decided). Any server can snapshot.
    ///
    /// For entry types without snapshots this trims (with the rules of [`trim`](Self::trim)).
    /// Errors: [`CompactionErr::UndecidedIndex`] beyond the decided index,
    /// [`CompactionErr::TrimmedIndex`] below what is already compacted.
    pub fn snapshot(
        &mut self,
        compact_idx: Option<usize>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        self.sp.snapshot(compact_idx, local_only)
    }

    /// The transport reconnected to `pid`: the node resynchronises with it at once instead of
    /// waiting for a resend timeout.
    pub fn reconnected(&mut self, pid: NodeId) {
        self.sp.reconnected(pid);
    }

    /// Recovery after a crash, as the seeds name it. Building the node on its persisted storage
    /// already recovers it; calling this (again) only asks the leader to resynchronise this
    /// node, which is harmless at any time.
    pub fn fail_recovery(&mut self) {
        self.sp.fail_recovery();
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
