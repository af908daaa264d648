//! Sequence Paxos: the replicated log.
//!
//! A node is the leader of its promised ballot (state in [`leader::LeaderState`], which exists
//! only while it leads) or a follower. Phases:
//!
//! * `Idle`: a fresh follower that has promised nothing yet.
//! * `Prepare`: the leader collects promises / the follower promised and awaits `AcceptSync`.
//! * `Accept`: entries stream from the leader; followers accept and report; the leader decides.
//! * `Recover`: a node rebuilt from storage that held a promise; it asks its peers for a
//!   `Prepare` until the leader answers.
//!
//! Streams are index-based: `AcceptDecide` says where its entries start, and a follower applies
//! only what extends its log in the same ballot (within one ballot, a follower's log is always a
//! prefix of the leader's). Duplicated, reordered or stale messages are therefore harmless, and a
//! gap is noticed and repaired with a `ResyncReq`. A leader also repairs a follower that made no
//! progress for a resend timeout, so losing the last message of a burst is repaired too.
//!
//! Storage is always written before the messages that depend on it are queued.

mod compaction;
mod follower;
mod forwarding;
mod leader;
pub(crate) mod migration;
mod origins;
mod progress;
mod sync;

use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{PaxosMessage, PaxosMsg, PrefixId},
    quorum::Quorum,
    storage::{internal::InternalStorage, Entry, StopSign, Storage, StorageOp},
    util::{ConfigurationId, LogEntry, NodeId, NodeStats},
    OmniPaxosConfig,
};
use forwarding::Forwarder;
use leader::LeaderState;
use migration::{Migration, MigrationStatus, Offering, Predecessor};
use origins::Origins;
use std::ops::RangeBounds;

/// The phase of a node in its current ballot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    Prepare,
    Accept,
    Recover,
}

pub(crate) struct SequencePaxos<T: Entry, B: Storage<T>> {
    pid: NodeId,
    config_id: ConfigurationId,
    nodes: Vec<NodeId>,
    peers: Vec<NodeId>,
    quorum: Quorum,
    /// Our configuration as given (told to servers that missed its start).
    cluster_config: crate::ClusterConfig,
    storage: InternalStorage<T, B>,
    phase: Phase,
    /// Some exactly while this node leads its promised ballot.
    /// Invariant: `leader.is_some()` implies `storage.promise().pid == pid`.
    leader: Option<Box<LeaderState<T>>>,
    forwarder: Forwarder<T>,
    /// The runs of forwarded entries in our log.
    origins: Origins,
    /// Counters for monitoring.
    stats: NodeStats,
    /// The stopped configuration whose log ours continues, if we know it.
    predecessor: Option<Predecessor>,
    /// We know where our log starts: it continues a log we hold or were offered (a server that
    /// joins on empty storage learns it from an offer). See [`Self::can_lead`].
    knows_start: bool,
    /// Offers of our own stopped log received before we decided its stop sign.
    early_offers: u32,
    /// A stopped configuration's log we offer to servers that may lack it.
    offering: Option<Offering>,
    /// Our pull of a stopped configuration's log that we lack.
    migration: Option<Migration<T>>,
    /// Our configuration was stopped (a peer told us; we did not decide it ourselves): the stop
    /// sign and where it is.
    stop_notice: Option<(StopSign, Option<usize>)>,
    resend_timeout: u64,
    /// A reconfiguration requested here that is not in the log yet.
    pending_stopsign: Option<StopSign>,
    batch_size: usize,
    buffer_size: usize,
    outgoing: Vec<PaxosMessage<T>>,
    /// Follower: an `Accepted` is owed to the leader; sent (once, coalesced) at the next take.
    accepted_owed: bool,
    /// Follower: the decided index in the last `Accepted` sent.
    decided_reported: usize,
    /// Ticks since the node was built.
    now: u64,
    /// Follower: when the last `ResyncReq` was sent. One is sent at most every
    /// `election_tick_timeout` ticks (a round trip takes less than that, or the leader election
    /// would not work either), so a burst of out-of-order messages costs one resync.
    resync_sent_at: Option<u64>,
    election_timeout: u64,
    /// A peer promised a ballot above ours; the leader election takes it into account.
    higher_promise: Option<Ballot>,
    /// Leader: a follower asked us to lead on in a ballot above this one (ours).
    new_ballot_wanted: Option<Ballot>,
}

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    pub(crate) fn new(cfg: &OmniPaxosConfig, storage: B) -> (Self, Option<Ballot>) {
        let pid = cfg.server_config.pid;
        let nodes = cfg.cluster_config.nodes.clone();
        let peers: Vec<NodeId> = nodes.iter().copied().filter(|p| *p != pid).collect();
        let quorum = Quorum::new(nodes.len(), cfg.cluster_config.flexible_quorum);
        let (storage, recovered) = InternalStorage::load(storage);
        let origins = Origins::new(storage.log_end());
        // What we promised before this incarnation (see `forwarding`).
        let fence = storage.promise();
        let mut sp = SequencePaxos {
            pid,
            config_id: cfg.cluster_config.configuration_id,
            nodes,
            peers,
            quorum,
            cluster_config: cfg.cluster_config.clone(),
            storage,
            phase: Phase::Idle,
            leader: None,
            forwarder: Forwarder::new(fence),
            origins,
            stats: NodeStats::default(),
            predecessor: None,
            knows_start: false,
            early_offers: 0,
            offering: None,
            migration: None,
            stop_notice: None,
            resend_timeout: cfg.server_config.resend_message_tick_timeout,
            pending_stopsign: None,
            batch_size: cfg.server_config.batch_size,
            buffer_size: cfg.server_config.buffer_size,
            outgoing: Vec::new(),
            accepted_owed: false,
            decided_reported: 0,
            now: 0,
            resync_sent_at: None,
            election_timeout: cfg.server_config.election_tick_timeout,
            higher_promise: None,
            new_ballot_wanted: None,
        };
        let recovered = recovered.filter(|b| *b != Ballot::default());
        let converted = sp.continue_predecessor();
        if recovered.is_some() && !converted {
            sp.start_recovery();
        }
        (sp, recovered.filter(|_| !converted))
    }

    /// If our storage holds the log of the configuration we continue (its stop sign decided, and
    /// the next configuration is ours), take it over: keep its entries, decided, and drop its
    /// stop sign and ballots. Returns whether it did.
    fn continue_predecessor(&mut self) -> bool {
        let Some(ss) = self.storage.stopsign().cloned() else {
            return false;
        };
        if !self.storage.stopsign_decided() || ss.next_config.configuration_id != self.config_id {
            return false;
        }
        let old = self.storage.accepted_round().config_id;
        let end = self.storage.log_end();
        self.storage.write(
            vec![
                StorageOp::SetStopsign(None),
                StorageOp::SetAcceptedRound(Ballot::default()),
                StorageOp::SetPromise(Ballot::default()),
                StorageOp::SetDecidedIndex(end),
            ],
            "continue_configuration",
        );
        let prefix = PrefixId {
            config_id: old,
            end,
        };
        self.predecessor = Some(Predecessor { prefix });
        self.knows_start = true;
        self.offering = Some(Offering::new(prefix, ss, self.peers.clone()));
        true
    }

    /// Whether this node may lead. A leader must hold everything decided before, so a server
    /// that joins a later configuration (`configuration_id > 1`) on empty storage does not lead
    /// until it learned where the log it continues ends (from an offer, or from a leader it
    /// promised to). It follows meanwhile. The first configuration of a cluster is number 1.
    pub(crate) fn can_lead(&self) -> bool {
        if self.awaiting_sync() {
            return false;
        }
        self.knows_start
            || self.config_id <= 1
            || self.storage.log_end() > 0
            || self.storage.compacted_idx() > 0
            // Accepted a leader's sync, which brought its log (a promise alone does not).
            || self.storage.accepted_round() != Ballot::default()
    }

    /// Continues configuration `prefix.config_id`, stopped by `ss`, that we learned of from a
    /// peer without deciding its stop sign ourselves: we keep what we decided of its log; servers
    /// that hold the rest will offer it.
    pub(crate) fn continue_after_notice(&mut self, ss: StopSign, prefix: Option<PrefixId>) {
        let decided = self.storage.decided_idx().min(self.storage.log_end());
        self.storage.write(
            vec![
                StorageOp::AppendOnPrefix(decided.max(self.storage.compacted_idx()), Vec::new()),
                StorageOp::SetStopsign(None),
                StorageOp::SetPromise(Ballot::default()),
                // Without knowing where the old log ended we must not lead before a leader
                // synced us: the marker says so, durably.
                StorageOp::SetAcceptedRound(if prefix.is_some() {
                    Ballot::default()
                } else {
                    crate::storage::internal::sync_marker(self.config_id)
                }),
            ],
            "continue_configuration",
        );
        self.phase = Phase::Idle;
        self.outgoing.clear();
        match prefix {
            Some(prefix) if <T::Snapshot as crate::storage::Snapshot<T>>::use_snapshots() => {
                self.start_migration(prefix, ss);
            }
            // The old log cannot be pulled without snapshots: keep where it ends.
            Some(prefix) => self.adopt_prefix(prefix),
            // A leader brings us up to date; ask for it.
            None => self.start_recovery(),
        }
    }

    /// Whether we wait for a leader's sync before we may lead (see
    /// [`crate::storage::internal::sync_marker`]).
    fn awaiting_sync(&self) -> bool {
        self.storage.awaiting_sync()
    }

    // ----- getters -----

    pub(crate) fn pid(&self) -> NodeId {
        self.pid
    }
    pub(crate) fn promise(&self) -> Ballot {
        self.storage.promise()
    }
    pub(crate) fn cluster_config(&self) -> crate::ClusterConfig {
        self.cluster_config.clone()
    }
    pub(crate) fn members(&self) -> &[NodeId] {
        &self.nodes
    }
    pub(crate) fn is_member(&self, pid: NodeId) -> bool {
        self.nodes.contains(&pid)
    }
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }
    pub(crate) fn is_leader(&self) -> bool {
        self.leader.is_some()
    }
    pub(crate) fn decided_idx(&self) -> usize {
        self.storage.decided_idx()
    }
    pub(crate) fn accepted_idx(&self) -> usize {
        self.storage.accepted_idx()
    }
    pub(crate) fn compacted_idx(&self) -> usize {
        self.storage.compacted_idx()
    }
    pub(crate) fn read<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        let from = match r.start_bound() {
            std::ops::Bound::Included(i) => *i,
            std::ops::Bound::Excluded(i) => i.saturating_add(1),
            std::ops::Bound::Unbounded => 0,
        };
        // The log of a predecessor still being pulled cannot be read yet.
        if from < self.unreadable_below() {
            return None;
        }
        self.storage.read(r)
    }
    pub(crate) fn read_decided_suffix(&self, from: usize) -> Option<Vec<LogEntry<T>>> {
        if from < self.unreadable_below() {
            return None;
        }
        self.storage.read_decided_suffix(from)
    }
    pub(crate) fn decided_stopsign(&self) -> Option<StopSign> {
        if self.storage.stopsign_decided() {
            self.storage.stopsign().cloned()
        } else {
            self.stop_notice.as_ref().map(|(ss, _)| ss.clone())
        }
    }

    /// Whether this configuration is over: its stop sign is decided (or a peer said so).
    pub(crate) fn is_sealed(&self) -> bool {
        self.storage.stopsign_decided() || self.stop_notice.is_some()
    }

    /// The stop we learned of from a peer without deciding it ourselves, as the log to continue.
    /// `None` as the prefix: where it ended is not known.
    pub(crate) fn stop_notice(&self) -> Option<(StopSign, Option<PrefixId>)> {
        if self.storage.stopsign_decided() {
            return None;
        }
        self.stop_notice.as_ref().map(|(ss, end)| {
            (
                ss.clone(),
                end.map(|end| PrefixId {
                    config_id: self.config_id,
                    end,
                }),
            )
        })
    }

    pub(crate) fn config_id(&self) -> ConfigurationId {
        self.config_id
    }

    pub(crate) fn into_storage(self) -> B {
        self.storage.into_backend()
    }

    pub(crate) fn migration(&self) -> Option<MigrationStatus> {
        self.migration_status()
    }
    /// Entries collected in the current batch, not yet in the log.
    pub(crate) fn batched_len(&self) -> usize {
        self.leader.as_ref().map_or(0, |l| l.batched_len()) + self.forwarder.unsent_len()
    }
    pub(crate) fn stats(&self) -> NodeStats {
        NodeStats {
            uncertain_appends: self.forwarder.uncertain_total(),
            ..self.stats
        }
    }

    /// Appends of this node whose fate the library cannot know (see
    /// `OmniPaxos::take_uncertain_appends`).
    pub(crate) fn take_uncertain_appends(&mut self) -> Vec<T> {
        self.forwarder.take_uncertain()
    }

    /// Hands back appends taken from the node this one continues (`start_next_config`).
    pub(crate) fn keep_uncertain_appends(&mut self, entries: Vec<T>) {
        self.forwarder.give_back(entries);
    }
    pub(crate) fn storage(&self) -> &B {
        self.storage.backend()
    }
    /// A ballot above ours that a peer promised, reported once.
    pub(crate) fn take_higher_promise(&mut self) -> Option<Ballot> {
        self.higher_promise.take()
    }

    // ----- helpers -----

    fn send(&mut self, to: NodeId, msg: PaxosMsg<T>) {
        self.outgoing.push(PaxosMessage {
            from: self.pid,
            to,
            msg,
        });
    }

    fn note_higher_promise(&mut self, b: Ballot) {
        if b > self.storage.promise() && self.higher_promise.map_or(true, |h| b > h) {
            self.higher_promise = Some(b);
        }
    }

    /// Whether the configuration is stopped (a stop sign is in the log or proposed here).
    fn is_stopped(&self) -> bool {
        self.storage.stopsign().is_some()
            || self.pending_stopsign.is_some()
            || self
                .leader
                .as_ref()
                .is_some_and(|l| l.has_pending_stopsign())
    }

    /// Whether `b` is a ballot of this configuration that a node of it could own.
    fn valid_ballot(&self, b: &Ballot) -> bool {
        b.config_id == self.config_id && self.nodes.contains(&b.pid)
    }

    fn start_recovery(&mut self) {
        self.phase = Phase::Recover;
        self.send_prepare_req_to_all();
    }

    fn send_prepare_req_to_all(&mut self) {
        let prom = self.storage.promise();
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(
                to,
                PaxosMsg::PrepareReq(crate::messages::sequence_paxos::PrepareReq {
                    n: Ballot {
                        config_id: self.config_id,
                        ..prom
                    },
                    n_prom: prom,
                }),
            );
        }
    }

    // ----- inputs -----

    /// Handles a message addressed to this node.
    pub(crate) fn handle(&mut self, m: PaxosMessage<T>) {
        self.flush_full_batch();
        let from = m.from;
        if let PaxosMsg::Migration(mig) = m.msg {
            // Migration crosses configurations: any server may offer or ask for a stopped log.
            if from != self.pid {
                self.handle_migration(from, mig);
            }
            return;
        }
        if !self.peers.contains(&from) || self.storage.stopsign_decided() {
            // A stopped configuration acts on nothing but migration messages (one we only heard
            // was stopped still takes the decision of its stop sign).
            return;
        }
        let b = m.msg.ballot();
        if b.config_id != 0 && b.config_id < self.config_id {
            self.tell_moved(from, b.config_id);
            return;
        }
        // A PrepareReq may come from a node that promised nobody yet.
        let ballot_ok = self.valid_ballot(&b)
            || (matches!(m.msg, PaxosMsg::PrepareReq(_)) && b.config_id == self.config_id);
        if !ballot_ok {
            return;
        }
        match m.msg {
            PaxosMsg::PrepareReq(r) => self.handle_prepare_req(from, r),
            PaxosMsg::Prepare(p) => self.handle_prepare(from, p),
            PaxosMsg::Promise(p) => self.handle_promise(from, p),
            PaxosMsg::AcceptSync(a) => self.handle_accept_sync(from, a),
            PaxosMsg::AcceptDecide(a) => self.handle_accept_decide(from, a),
            PaxosMsg::AcceptStopSign(a) => self.handle_accept_stopsign(from, a),
            PaxosMsg::Accepted(a) => self.handle_accepted(from, a),
            PaxosMsg::Decide(d) => self.handle_decide(from, d),
            PaxosMsg::NotAccepted(na) => self.handle_not_accepted(na),
            PaxosMsg::ResyncReq(r) => self.handle_resync_req(from, r),
            PaxosMsg::ProposalForward(f) => self.handle_proposal_forward(from, f),
            PaxosMsg::ForwardAck(a) => self.forwarder.handle_ack(&a),
            PaxosMsg::ForwardStopSign(f) => self.handle_forward_stopsign(f),
            PaxosMsg::NewBallotReq(r) => self.handle_new_ballot_req(r),
            PaxosMsg::Compaction(c) => self.handle_compaction(from, c),
            PaxosMsg::Migration(_) => {}
        }
        self.check_stopped();
    }

    /// `to`, a server of ours, is still in configuration `stopped`, which we left: it missed
    /// the stop. Tell it. Only the direct successor (that did not restart since) can tell it
    /// where the old log ended.
    pub(crate) fn tell_moved(&mut self, to: NodeId, stopped: ConfigurationId) {
        if stopped >= self.config_id || !self.peers.contains(&to) || self.storage.stopsign_decided()
        {
            return;
        }
        let end = self
            .predecessor_prefix()
            .filter(|p| p.config_id == stopped)
            .map(|p| p.end);
        let moved = crate::messages::sequence_paxos::MigrationMsg::Moved {
            stopped,
            end,
            next_config: self.cluster_config(),
        };
        self.send(to, PaxosMsg::Migration(moved));
    }

    /// The leader election chose `b`.
    pub(crate) fn handle_leader(&mut self, b: Ballot) {
        if b.pid == self.pid {
            if b > self.storage.promise() {
                self.become_leader(b);
            }
        } else if self.phase == Phase::Recover
            || (b > self.storage.promise() && self.phase != Phase::Accept)
        {
            // Ask the new leader to prepare us, in case its Prepare was lost.
            let prom = self.storage.promise();
            self.send(
                b.pid,
                PaxosMsg::PrepareReq(crate::messages::sequence_paxos::PrepareReq {
                    n: b,
                    n_prom: prom,
                }),
            );
        }
    }

    /// Appends `entry` (or hands it back if the configuration is stopped).
    pub(crate) fn append(&mut self, entry: T) -> Result<(), T> {
        if self.is_stopped() {
            return Err(entry);
        }
        match &mut self.leader {
            Some(_) => self.leader_append(entry),
            None => {
                self.forwarder.push(entry);
                let batch = self.batch_size;
                self.flush_forwards(batch, false);
                self.ask_for_new_ballot(false);
            }
        }
        Ok(())
    }

    /// A follower that may not forward in its leader's ballot (it promised it before it was
    /// built: see [`forwarding`]) and has proposals waiting asks the leader for a higher ballot;
    /// once per ballot, and again at resends (`again`).
    fn ask_for_new_ballot(&mut self, again: bool) {
        let prom = self.storage.promise();
        if self.leader.is_some() || self.phase != Phase::Accept || prom.pid == self.pid {
            return;
        }
        if self.forwarder.should_ask_new_ballot(prom, again) {
            self.send(
                prom.pid,
                PaxosMsg::NewBallotReq(crate::messages::sequence_paxos::NewBallotReq { n: prom }),
            );
        }
    }

    /// How far below the decided index we keep the runs of forwarded entries (see `origins`).
    pub(super) fn runs_horizon(&self) -> usize {
        self.buffer_size.max(origins::RUNS_HORIZON)
    }

    /// Leader: a follower asked us to lead on in a ballot above this one (ours, in the accept
    /// phase when asked).
    pub(crate) fn take_new_ballot_wanted(&mut self) -> Option<Ballot> {
        self.new_ballot_wanted.take()
    }

    /// Proposes a stop sign. Errors if the configuration is already stopped.
    pub(crate) fn reconfigure(&mut self, ss: StopSign) -> Result<(), StopSign> {
        if self.is_stopped() {
            return Err(ss);
        }
        if self.leader.is_some() {
            self.leader_propose_stopsign(ss);
        } else {
            self.pending_stopsign = Some(ss);
            self.forward_stopsign();
        }
        Ok(())
    }

    fn forward_stopsign(&mut self) {
        let prom = self.storage.promise();
        if let Some(ss) = self.pending_stopsign.clone() {
            if prom.pid != 0 && prom.pid != self.pid && self.phase == Phase::Accept {
                self.send(
                    prom.pid,
                    PaxosMsg::ForwardStopSign(crate::messages::sequence_paxos::ForwardStopSign {
                        n: prom,
                        ss,
                    }),
                );
            }
        }
    }

    fn flush_forwards(&mut self, batch: usize, force: bool) {
        let pid = self.pid;
        let max = self.buffer_size;
        let decided = self.storage.decided_idx();
        let out = &mut self.outgoing;
        self.forwarder
            .flush(batch, max, force, decided, &mut |to, msg| {
                out.push(PaxosMessage { from: pid, to, msg })
            });
    }

    /// Every tick.
    pub(crate) fn tick(&mut self) {
        self.flush_full_batch();
        self.now += 1;
    }

    /// Every `resend_message_tick_timeout` ticks: resend what may have been lost.
    pub(crate) fn resend_timeout(&mut self) {
        self.check_stopped();
        self.migration_tick();
        if self.is_sealed() {
            // A stopped configuration only serves its log.
            return;
        }
        let keep_from = self
            .storage
            .decided_idx()
            .saturating_sub(self.runs_horizon());
        self.origins.prune(keep_from);
        if self.leader.is_some() {
            self.leader_resend();
        } else {
            match self.phase {
                Phase::Recover => self.send_prepare_req_to_all(),
                Phase::Accept => self.follower_resend(),
                Phase::Idle | Phase::Prepare => {}
            }
            let pid = self.pid;
            let out = &mut self.outgoing;
            self.forwarder
                .resend(&mut |to, msg| out.push(PaxosMessage { from: pid, to, msg }));
            self.ask_for_new_ballot(true);
            if self.storage.stopsign().is_none() {
                self.forward_stopsign();
            } else {
                self.pending_stopsign = None;
            }
        }
    }

    /// Every `flush_batch_tick_timeout` ticks: replicate a partial batch.
    pub(crate) fn flush_batch_timeout(&mut self) {
        if self.leader.is_some() {
            self.leader_flush_batch();
        } else {
            let batch = self.batch_size;
            self.flush_forwards(batch, true);
        }
    }

    /// The transport reconnected to `pid`: resynchronise with it.
    pub(crate) fn reconnected(&mut self, pid: NodeId) {
        if !self.peers.contains(&pid) {
            return;
        }
        if self.leader.is_some() {
            self.leader_reconnected(pid);
        } else if self.storage.promise().pid == pid {
            self.request_resync();
        }
    }

    /// Re-enter recovery: ask the leader to synchronise us again. Harmless at any time.
    pub(crate) fn fail_recovery(&mut self) {
        if self.leader.is_none() && self.storage.promise() != Ballot::default() {
            self.start_recovery();
        }
    }

    /// Drains the queued messages, building the coalesced replication messages first.
    pub(crate) fn take_outgoing(&mut self) -> std::vec::Drain<'_, PaxosMessage<T>> {
        if self.leader.is_some() {
            self.flush_full_batch();
            self.leader_build_outgoing();
        } else {
            self.follower_build_outgoing();
        }
        self.outgoing.drain(..)
    }
}
