//! The node: Sequence Paxos, in rooms. Each room owns its state and its messages, and gets the
//! small [`Core`] (log, outbox, configuration, clock) borrowed for one call.
//!
//! ```text
//!                        ┌───────────────────────── Node ─────────────────────────┐
//!   OmniPaxos ──append──>│ forwarding ──propose──> role (Follower | Leader | Stopped)│
//!   (facade,             │   ^  │ Proposals/Placed     │ Prepare/Promise/AcceptSync/ │
//!    election,           │   │  v                      │ AcceptDecide/Accepted/Decide│
//!    clocks)  ──handle──>│   notes: Placed, Replaced, Unplaced, SteppedDown         │
//!             ──tick────>│ succession (stop, offer, pull, stragglers): Ask/Offer/   │
//!             <─take─────│   Pull/Entries/Snapshot      reads: ReadReq/ReadConfirm/ │
//!                        │ compaction: Trim/SnapshotReq      ReadConfirmed/ReadIndex│
//!                        │              core: log (staged → durable), outbox, clock │
//!                        └──────────────────────────────────────────────────────────┘
//! ```
//!
//! * [`role`]: who leads; the leader's prepare and accept phases, the follower's handlers, log
//!   syncs. The only room that writes the replicated part of the log.
//! * [`forwarding`]: every append made here until it is decided or handed back; the leader's
//!   intake of other nodes' proposals.
//! * [`succession`]: the log across configurations: the durable start of our log, pulls of the
//!   old log, stragglers.
//! * [`reads`]: linearizable reads by read index.
//! * [`compaction`]: trim and snapshot.
//!
//! Rooms talk to each other only through the node: a room leaves a [`Note`] in the core, and
//! the node hands it to the room it concerns after the call (a leader placing a follower's
//! proposals in its log tells forwarding, which acknowledges them; a sync replacing our log
//! tells forwarding which of our appends it may have removed). No room imports another room,
//! except that forwarding and reads look at the role (who leads) and forwarding puts
//! proposals into the leader's batch.
//!
//! **Following one append at a follower**: `OmniPaxos::append` → [`Node::append`] →
//! `forwarding` queues it and sends `Proposals` to the leader → at the leader,
//! [`Node::handle`] → `forwarding` takes it in once → `role` (leader) batches it into the log
//! and leaves a `Placed` note → `forwarding` acknowledges its place → `role` streams it and
//! decides it → back at the follower, `role` accepts and decides it, and `forwarding` sees its
//! index decided in its round.

mod compaction;
pub(crate) mod core;
pub(crate) mod forwarding;
pub(crate) mod log;
mod observe;
pub(crate) mod reads;
pub(crate) mod record;
pub(crate) mod role;
pub(crate) mod succession;
pub(crate) mod wire;

use self::core::{Core, Note};
use crate::{
    ballot_leader_election::Ballot,
    errors::{CompactionErr, ConfigError},
    storage::{Entry, StopSign, Storage, StorageOp},
    util::{LogEntry, NodeId, NodeStats},
    OmniPaxosConfig,
};
use forwarding::{Forwarding, ReturnedAppend};
use log::Log;
use reads::{ReadId, ReadIndex, Reads};
use record::{NodeRecord, Start, Stop};
use role::{Phase, Role};
use std::ops::RangeBounds;
use succession::{MigrationStatus, Succession};
use wire::PaxosMsg;

pub(crate) struct Node<T: Entry, B: Storage<T>> {
    core: Core<T, B>,
    role: Role<T>,
    fwd: Forwarding<T>,
    succ: Succession<T>,
    reads: Reads,
    /// What the observer reported last (feature `tracing`; see `observe`).
    seen: observe::Seen,
    /// An input reached the node since its outgoing messages were last taken. Without one a
    /// take has nothing to write or build (every room acts only on inputs), and returns at once.
    /// Set by every entry point that settles, ticks or hands over.
    touched: bool,
}

impl<T: Entry, B: Storage<T>> Node<T, B> {
    /// Builds the node on `storage` for a validated configuration. Returns also the promise the
    /// storage held (the node then recovers, and the election starts above it).
    pub(crate) fn new(
        cfg: &OmniPaxosConfig,
        storage: B,
    ) -> Result<(Self, Option<Ballot>), ConfigError> {
        let ours = cfg.cluster_config.clone();
        let mut log = match Log::load(storage, NodeRecord::fresh(ours.clone())) {
            Ok(log) => log,
            Err(e) => panic!("OmniPaxos: cannot load the storage: {e}"),
        };
        let id = ours.configuration_id;
        if log.is_legacy() && id > 1 {
            return Err(ConfigError::InvalidConfig(format!(
                "cluster_config.configuration_id {id}: the storage backend does not store the node \
                 record (Storage::write_atomically_with_record), which a configuration after the \
                 first needs (where its log starts must survive a restart)"
            )));
        }
        let theirs = log.record().config.clone();
        if theirs.configuration_id == id {
            if theirs != ours {
                return Err(ConfigError::InvalidConfig(format!(
                    "cluster_config: the storage belongs to configuration {id} with nodes {:?}, \
                     not {:?}",
                    theirs.nodes, ours.nodes
                )));
            }
        } else if theirs.configuration_id < id {
            // A server in both configurations: its stopped log becomes the start of ours.
            let ss = log.stopsign().cloned().filter(|_| log.stopsign_decided());
            let Some(ss) = ss.filter(|ss| ss.next_config == ours) else {
                return Err(ConfigError::InvalidConfig(format!(
                    "cluster_config.configuration_id {id}: the storage holds configuration {}, \
                     which has not decided a stop sign into this configuration",
                    theirs.configuration_id
                )));
            };
            let end = log.log_end();
            log.set_record(|r| {
                r.push_stop(Stop {
                    config: theirs,
                    end,
                    ss,
                });
                r.config = ours.clone();
                r.start = Start::At(end);
            });
            log.stage_all([
                StorageOp::SetStopsign(None),
                StorageOp::SetAcceptedRound(Ballot::default()),
                StorageOp::SetPromise(Ballot::default()),
                StorageOp::SetDecidedIndex(end),
            ]);
            log.flush();
        } else {
            return Err(ConfigError::InvalidConfig(format!(
                "cluster_config.configuration_id {id}: the storage belongs to the later \
                 configuration {}",
                theirs.configuration_id
            )));
        }
        let promise = log.promise();
        let recovered = (promise != Ballot::default()).then_some(promise);
        let inc = log.record().incarnation;
        let fence = recovered.filter(|_| log.is_legacy());
        let mut core = Core::new(cfg, log);
        let succ = Succession::new(&mut core);
        let mut node = Node {
            role: Role::new(recovered.is_some()),
            fwd: Forwarding::new(inc, fence),
            succ,
            reads: Reads::new(inc, fence),
            seen: observe::Seen::default(),
            touched: true,
            core,
        };
        if recovered.is_some() {
            node.role.recover(&mut node.core);
        }
        node.settle();
        Ok((node, recovered))
    }

    // ----- inputs -----

    /// Handles a message from `from`.
    pub(crate) fn handle(&mut self, from: NodeId, m: PaxosMsg<T>) {
        if from == self.core.pid {
            return;
        }
        let core = &mut self.core;
        match m.ballot() {
            None => {
                // Succession messages cross configurations: the room checks each kind.
                if let PaxosMsg::Succession(s) = m {
                    self.succ.handle(core, from, s);
                }
            }
            Some(b) => {
                let ours = core.config_id();
                if b.config_id < ours && b.config_id != 0 {
                    // A server still in a configuration that stopped before ours.
                    self.succ.contact_from_old(core, from, b.config_id);
                } else if b.config_id == ours && core.is_peer(from) {
                    if self.succ.is_over(core) {
                        self.succ.contact_from_own(core, from);
                    }
                    // A PrepareReq may come from a node that promised nobody yet.
                    let prepare_req =
                        matches!(&m, PaxosMsg::Role(wire::role::RoleMsg::PrepareReq(_)));
                    if core.valid_ballot(b) || prepare_req {
                        self.dispatch(from, m);
                    }
                }
            }
        }
        self.settle();
        if self.core.log.writes_at_once() {
            // A backend whose writes cost next to nothing: what the message changed is written,
            // and shows, at once (see `Storage::writes_at_once`).
            self.core.log.flush();
            self.after_write();
            self.observe();
        }
    }

    fn dispatch(&mut self, from: NodeId, m: PaxosMsg<T>) {
        let core = &mut self.core;
        match m {
            PaxosMsg::Role(r) => self.role.handle(core, from, r),
            PaxosMsg::Compaction(c) => {
                if !self.role.is_stopped() {
                    compaction::handle(core, from, c)
                }
            }
            PaxosMsg::Forward(f) => self.fwd.handle(core, &mut self.role, from, f),
            PaxosMsg::Read(r) => self.reads.handle(core, &self.role, from, r),
            PaxosMsg::Succession(_) => {}
        }
    }

    /// A BLE heartbeat request of configuration `c` from `from` (a server still in a stopped
    /// configuration hears where it ended; one of ours hears it when ours is over).
    pub(crate) fn heartbeat_from(&mut self, from: NodeId, c: crate::util::ConfigurationId) {
        let core = &mut self.core;
        if c < core.config_id() {
            self.succ.contact_from_old(core, from, c);
        } else if c == core.config_id() {
            self.succ.contact_from_own(core, from);
        }
        self.settle();
    }

    /// Appends `entry` (or hands it back if the configuration is stopped or stopping).
    pub(crate) fn append(&mut self, entry: T) -> Result<(), T> {
        if self.is_stopping() {
            return Err(entry);
        }
        let decided = self.core.log.decided_idx();
        self.fwd.append(&mut self.core, &mut self.role, entry);
        self.settle_append(decided);
        Ok(())
    }

    /// `settle` after an append, which changes little: the append's place noted (a leader's), or
    /// the append queued (a follower's). Unless it decided something (a leader alone a write
    /// quorum), filled a follower's batch or left other notes, the other rooms have nothing new
    /// to act on (the append changes no promise, role, stop or decided index), and the full
    /// `settle` is skipped: the hot path of a leader taking appends.
    ///
    /// The notes of a leader's appends (`Placed`) then wait, merged, for the next routing: the
    /// next call that settles, or the next take of the outgoing messages (which routes them
    /// first).
    fn settle_append(&mut self, decided_before: usize) {
        self.touched = true;
        let quiet = self.core.log.decided_idx() == decided_before
            && self.fwd.queued_len() < self.core.timing.batch_size
            && self.core.notes.iter().all(Note::is_placed);
        if quiet {
            self.observe();
        } else {
            self.settle();
        }
    }

    /// Proposes a stop sign. Errors if the configuration is already stopped or stopping.
    pub(crate) fn reconfigure(&mut self, ss: StopSign) -> Result<(), StopSign> {
        if self.is_stopping() {
            return Err(ss);
        }
        report!(INFO, reconfig::stopsign_proposed; core = self.core,
            next_config_id = ss.next_config.configuration_id, next_nodes = ?ss.next_config.nodes,
            "a stop sign is proposed: this configuration will end");
        self.fwd.reconfigure(&mut self.core, &mut self.role, ss);
        self.settle();
        Ok(())
    }

    /// The leader election chose `b`.
    pub(crate) fn handle_leader(&mut self, b: Ballot) {
        self.role.handle_leader(&mut self.core, b);
        self.settle();
    }

    /// The application asked to take over: the new promise is written (and shows) at once.
    pub(crate) fn take_over(&mut self, b: Ballot) {
        self.touched = true;
        self.handle_leader(b);
        self.core.log.flush();
    }

    /// One tick.
    pub(crate) fn tick(&mut self) {
        self.core.now += 1;
        self.touched = true;
    }

    /// The end of a tick: what it staged is written, so that a node whose application rarely
    /// takes its messages (a single server has none to send) still shows its state.
    pub(crate) fn end_tick(&mut self) {
        // (`tick`, which comes first, marked the node.)
        self.role.place_unbatched(&mut self.core);
        self.route_notes();
        self.core.log.flush();
        self.after_write();
    }

    /// What becomes true once the staged writes are done: reads whose index is now written
    /// as decided are ready (they look at the durable decided index, which only a write moves).
    fn after_write(&mut self) {
        self.reads.settle(&mut self.core, &self.role);
    }

    /// Every resend timeout: resend what may have been lost.
    pub(crate) fn resend(&mut self) {
        let core = &mut self.core;
        self.succ.resend(core);
        if !self.role.is_stopped() {
            self.role.resend(core);
            self.fwd.resend(core);
            self.reads.resend(core, &self.role);
        }
        self.settle();
    }

    /// Closes the current batch: the leader puts it in its log, a follower forwards it.
    pub(crate) fn flush_batch(&mut self) {
        self.role.flush_batch(&mut self.core);
        self.fwd.send_queued(&mut self.core);
        self.settle();
    }

    pub(crate) fn reconnected(&mut self, pid: NodeId) {
        if self.core.is_peer(pid) {
            self.role.reconnected(&mut self.core, pid);
            self.settle();
        }
    }

    /// The leader election heard `pid` again after a round in which it did not: the link was
    /// down and what was sent meanwhile may be lost. A leader streams to it again from what it
    /// confirmed. (Only the leader acts: the follower sees the same silence, and its
    /// `ResyncReq` would make the leader send the same sync twice.)
    pub(crate) fn link_restored(&mut self, pid: NodeId) {
        if self.core.is_peer(pid) && self.role.leader().is_some() {
            self.role.reconnected(&mut self.core, pid);
            self.settle();
        }
    }

    pub(crate) fn fail_recovery(&mut self) {
        self.role.recover(&mut self.core);
        self.settle();
    }

    pub(crate) fn request_read(&mut self) -> ReadId {
        let id = self.reads.request(&mut self.core, &self.role);
        self.settle();
        id
    }

    pub(crate) fn trim(&mut self, idx: Option<usize>) -> Result<(), CompactionErr> {
        let r = compaction::trim(&mut self.core, &self.role, idx);
        self.settle();
        // What the application asked is done (and shows) when the call returns.
        self.core.log.flush();
        r
    }

    pub(crate) fn snapshot(
        &mut self,
        idx: Option<usize>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        let r = compaction::snapshot(&mut self.core, &self.role, idx, local_only);
        self.settle();
        self.core.log.flush();
        r
    }

    /// Routes the notes the rooms left, and moves the rooms on: appends decided, reads ready,
    /// a configuration that is over stops its role.
    fn settle(&mut self) {
        self.touched = true;
        // Told by a server of ours that our configuration is over: stop at once, before any
        // room acts on it. (When we decided the stop sign ourselves, the role stops after the
        // messages that tell the others; see `take_outgoing`.)
        if self.succ.known_stop().is_some() && !self.role.is_stopped() {
            self.stop_role();
        }
        loop {
            self.route_notes();
            // Appends that waited for a leader, if we are it now.
            self.fwd.propose_queued(&mut self.core, &mut self.role);
            if self.core.notes.is_empty() {
                break;
            }
        }
        self.fwd.settle(&self.core);
        self.succ.settle(&mut self.core);
        if self.fwd.queued_len() >= self.core.timing.batch_size {
            self.fwd.send_queued(&mut self.core);
        }
        self.reads.settle(&mut self.core, &self.role);
        if self.succ.known_stop().is_some() && !self.role.is_stopped() {
            self.stop_role();
        }
        // Notes left by the last rooms (a pull that completed).
        self.route_notes();
        self.observe();
    }

    /// Hands the notes the rooms left to the forwarding room (which may leave more: they wait
    /// for the next call). The list's memory is kept for the next notes.
    #[inline]
    fn route_notes(&mut self) {
        if !self.core.notes.is_empty() {
            self.route_notes_now();
        }
    }

    fn route_notes_now(&mut self) {
        let mut notes: Vec<Note<T>> = std::mem::take(&mut self.core.notes);
        for n in notes.drain(..) {
            self.fwd.note(&mut self.core, &mut self.role, n);
        }
        if self.core.notes.is_empty() {
            self.core.notes = notes;
        }
    }

    fn stop_role(&mut self) {
        self.role.stop(&mut self.core);
        self.route_notes();
        self.fwd.stopped(&self.core);
    }

    /// Hands out the messages that may leave before what is staged is written (see
    /// `OmniPaxos::take_messages_ahead_of_write`); writes nothing.
    pub(crate) fn take_ahead(&mut self, mut f: impl FnMut(NodeId, PaxosMsg<T>)) {
        if !self.touched {
            return;
        }
        self.role.place_unbatched(&mut self.core);
        self.route_notes();
        // Of the messages queued so far, only the read-index protocol's: they depend on no
        // write (a request, a leader's confirmation round, a promise confirmed as staged, and
        // a read index that the reader waits for in the decided log it learns after our
        // write). The others may depend on the write.
        if self
            .core
            .out
            .iter()
            .any(|(_, m)| matches!(m, PaxosMsg::Read(_)))
        {
            let mut rest = Vec::with_capacity(self.core.out.len());
            for (to, m) in self.core.out.drain(..) {
                if matches!(m, PaxosMsg::Read(_)) {
                    f(to, m);
                } else {
                    rest.push((to, m));
                }
            }
            self.core.out = rest;
        }
        // And what `build_ahead` adds.
        let queued = self.core.out.len();
        self.role.build_ahead(&mut self.core);
        for (to, m) in self.core.out.drain(queued..) {
            f(to, m);
        }
    }

    /// Writes what is staged, then hands out every message to send (`to`, message).
    pub(crate) fn take_outgoing(&mut self, mut f: impl FnMut(NodeId, PaxosMsg<T>)) {
        if !std::mem::take(&mut self.touched) {
            debug_assert!(
                self.core.out.is_empty() && self.core.notes.is_empty(),
                "output left since the last take without an input"
            );
            return;
        }
        self.role.place_unbatched(&mut self.core);
        self.route_notes();
        self.core.log.flush();
        self.role.build_outgoing(&mut self.core);
        self.fwd.build_outgoing(&mut self.core);
        // Building may read the log, which writes nothing new; but a leader may have decided
        // on the way: written before anything leaves.
        self.core.log.flush();
        if self.core.log.stopsign_decided() && !self.role.is_stopped() {
            self.stop_role();
            self.core.log.flush();
        }
        self.after_write();
        self.observe();
        for (to, m) in self.core.out.drain(..) {
            f(to, m);
        }
    }

    // ----- what the application sees (durable) -----

    pub(crate) fn pid(&self) -> NodeId {
        self.core.pid
    }
    pub(crate) fn config(&self) -> &crate::ClusterConfig {
        &self.core.config
    }
    pub(crate) fn is_peer(&self, pid: NodeId) -> bool {
        self.core.is_peer(pid)
    }
    pub(crate) fn promise(&self) -> Ballot {
        self.core.log.durable_promise()
    }
    /// The promise the protocol works with (staged): the election follows it.
    pub(crate) fn staged_promise(&self) -> Ballot {
        self.core.log.promise()
    }
    pub(crate) fn decided_idx(&self) -> usize {
        self.core.log.durable_decided_idx()
    }
    pub(crate) fn accepted_idx(&self) -> usize {
        self.core.log.durable_accepted_idx()
    }
    pub(crate) fn compacted_idx(&self) -> usize {
        self.core.log.durable_compacted_idx()
    }
    pub(crate) fn read<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        self.core.log.read(r)
    }
    pub(crate) fn read_decided_suffix(&self, from: usize) -> Option<Vec<LogEntry<T>>> {
        self.core.log.read_decided_suffix(from)
    }
    pub(crate) fn phase(&self) -> Phase {
        self.role.phase(&self.core)
    }
    pub(crate) fn is_leader(&self) -> bool {
        self.role.leader().is_some()
    }
    pub(crate) fn batched_len(&self) -> usize {
        self.role.leader().map_or(0, |l| l.batched_len()) + self.fwd.queued_len()
    }
    pub(crate) fn storage(&self) -> &B {
        self.core.log.backend()
    }
    pub(crate) fn into_storage(self) -> B {
        self.core.log.into_backend()
    }
    pub(crate) fn stats(&self) -> NodeStats {
        NodeStats {
            returned_appends: self.fwd.returned_total(),
            ..self.core.stats
        }
    }
    pub(crate) fn migration(&self) -> Option<MigrationStatus> {
        self.succ.status(&self.core)
    }
    pub(crate) fn take_returned(&mut self) -> Vec<ReturnedAppend<T>> {
        self.fwd.take_returned()
    }
    /// The application moves on to the next configuration (`start_next_config`): our role
    /// stops now if it has not yet. The stop sign's decision shows once written (a tick writes
    /// it), but the role stops at the next take of the outgoing messages; moving on before
    /// that must not lose the appends this node still holds: stopping hands them back.
    pub(crate) fn hand_over(&mut self) {
        self.touched = true;
        if self.core.log.stopsign_decided() && !self.role.is_stopped() {
            self.stop_role();
        }
    }
    pub(crate) fn keep_returned(&mut self, r: Vec<ReturnedAppend<T>>) {
        self.fwd.keep_returned(r);
    }
    pub(crate) fn take_ready_reads(&mut self) -> Vec<ReadIndex> {
        self.reads.take_ready()
    }
    pub(crate) fn pending_reads(&self) -> usize {
        self.reads.pending()
    }
    /// The decided stop sign of our configuration (durable).
    pub(crate) fn decided_stopsign(&self) -> Option<StopSign> {
        self.core.log.durable_stopsign_decided().cloned()
    }
    /// Whether our configuration is over (decided here or told): the election stops.
    pub(crate) fn is_sealed(&self) -> bool {
        self.succ.is_over(&self.core) || self.role.is_stopped()
    }
    /// Whether appends are refused: the configuration is over or a stop sign is on its way.
    fn is_stopping(&self) -> bool {
        self.is_sealed()
            || self.core.log.stopsign().is_some()
            || self.role.leader().is_some_and(|l| l.has_pending_stopsign())
            || self.fwd.has_pending_stopsign()
    }
    /// Whether this node may lead now.
    pub(crate) fn can_lead(&self) -> bool {
        !self.role.is_stopped() && self.succ.can_lead(&self.core)
    }
    pub(crate) fn take_higher_promise(&mut self) -> Option<Ballot> {
        self.role.take_higher_promise()
    }
}
