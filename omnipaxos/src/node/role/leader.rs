//! The leader in its accept phase: batch proposals into the log, stream them to the followers,
//! decide, repair followers that fell behind. The prepare phase is in [`super::prepare`].
//!
//! A [`Leader`] exists only while this node leads; it is dropped when a higher ballot takes
//! over, and what it held that never reached the log goes back to the forwarding room as
//! [`Note::Unplaced`] (its proposals) and [`Note::StopSignBack`].

use super::{
    super::{
        core::{push_placed_note, Core, Note, Origin},
        wire::{
            forward::PlacedRun,
            role::{Accepted, LogSync, NotAccepted, PrepareReq, ResyncReq, RoleMsg},
        },
    },
    progress::{Progress, Stream},
    sync,
};
use crate::{
    ballot_leader_election::Ballot,
    quorum::quorum_index,
    storage::{Entry, StopSign, Storage, StorageOp},
    util::NodeId,
};
use std::collections::VecDeque;

/// With `batch_size` 1, proposals beyond this many between two takes go into the log at once:
/// a bound on the memory a burst can take (as the staged entries have).
const UNBATCHED_MAX: usize = 1 << 16;

/// Proposals of one origin, numbered `first_seq..first_seq + len`, in a batch.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct BatchRun {
    origin: Origin,
    first_seq: u64,
    len: u64,
}

/// Proposals not in the log yet, with who made them. Invariant: the runs cover `entries`
/// exactly, in order.
#[derive(Debug)]
pub(crate) struct Batch<T> {
    entries: Vec<T>,
    runs: Vec<BatchRun>,
}

impl<T> Default for Batch<T> {
    fn default() -> Self {
        Batch {
            entries: Vec::new(),
            runs: Vec::new(),
        }
    }
}

impl<T> Batch<T> {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn push(&mut self, entry: T, origin: Origin, seq: u64) {
        match self.runs.last_mut() {
            Some(r) if r.origin == origin && r.first_seq.wrapping_add(r.len) == seq => r.len += 1,
            _ => self.runs.push(BatchRun {
                origin,
                first_seq: seq,
                len: 1,
            }),
        }
        self.entries.push(entry);
        debug_assert_eq!(
            self.runs.iter().map(|r| r.len).sum::<u64>(),
            self.entries.len() as u64,
            "the batch's runs do not cover its entries"
        );
    }

    /// Gives every proposal back as [`Note::Unplaced`].
    pub(crate) fn give_back(self, notes: &mut Vec<Note<T>>) {
        let mut entries = self.entries.into_iter();
        for r in self.runs {
            notes.push(Note::Unplaced {
                origin: r.origin,
                entries: entries.by_ref().take(r.len as usize).collect(),
            });
        }
    }
}

/// The phase of the leader in its ballot.
pub(crate) enum LeaderPhase<T: Entry> {
    /// Collecting promises: the log syncs they carried, by sender.
    Prepare { syncs: Vec<(NodeId, LogSync<T>)> },
    /// The log is adopted: it was accepted in `adopted_round` and its entries ended at
    /// `adopted_end`. A log accepted in that round agrees with ours up to the shorter of the two
    /// (both are prefixes of that round's leader's log), but not beyond.
    Accept {
        adopted_round: Ballot,
        adopted_end: usize,
    },
}

pub(crate) struct Leader<T: Entry> {
    pub(super) n: Ballot,
    /// One per peer, in the order of `Core::peers`.
    pub(super) progress: Vec<(NodeId, Progress)>,
    pub(super) phase: LeaderPhase<T>,
    /// Proposals not in the log yet.
    pub(super) batch: Batch<T>,
    /// A stop sign proposed here, appended after the batch.
    pub(super) pending_stopsign: Option<StopSign>,
    /// The newest entries of the log, `tail_start..tail_start + tail.len()`, kept to stream
    /// them without reading storage. Invariant (accept phase): `tail_start + tail.len()` is
    /// the log end.
    pub(super) tail: VecDeque<T>,
    pub(super) tail_start: usize,
    /// A peer promised a ballot above ours; the leader election hears of it.
    pub(super) higher_promise: Option<Ballot>,
    /// Scratch space for the decided-index computation.
    scratch: Vec<usize>,
}

impl<T: Entry> Leader<T> {
    pub(super) fn new(n: Ballot, peers: &[NodeId], log_end: usize) -> Self {
        Leader {
            n,
            progress: peers.iter().map(|p| (*p, Progress::Unpromised)).collect(),
            phase: LeaderPhase::Prepare { syncs: Vec::new() },
            batch: Batch::default(),
            pending_stopsign: None,
            tail: VecDeque::new(),
            tail_start: log_end,
            higher_promise: None,
            scratch: Vec::with_capacity(peers.len() + 1),
        }
    }

    pub(crate) fn ballot(&self) -> Ballot {
        self.n
    }

    pub(crate) fn is_accepting(&self) -> bool {
        matches!(self.phase, LeaderPhase::Accept { .. })
    }

    /// The index a read must see (see `reads`): every entry decided before now is below it.
    /// `0` outside the accept phase.
    pub(crate) fn read_floor<B: Storage<T>>(&self, core: &Core<T, B>) -> usize {
        match self.phase {
            LeaderPhase::Accept { adopted_end, .. } => core.log.decided_idx().max(adopted_end),
            LeaderPhase::Prepare { .. } => 0,
        }
    }

    pub(crate) fn batched_len(&self) -> usize {
        self.batch.len()
    }

    pub(crate) fn has_pending_stopsign(&self) -> bool {
        self.pending_stopsign.is_some()
    }

    pub(super) fn progress_mut(&mut self, pid: NodeId) -> Option<&mut Progress> {
        self.progress
            .iter_mut()
            .find(|(p, _)| *p == pid)
            .map(|(_, pr)| pr)
    }

    /// We stop leading: what never reached the log goes back to the forwarding room.
    pub(crate) fn step_down<B: Storage<T>>(self, core: &mut Core<T, B>) {
        if self.is_accepting() {
            // Our undecided entries, while our log still holds them: among them may be appends
            // of ours that the next leader's log will not have.
            let from = core.decided_entries().max(core.log.compacted_idx());
            let end = core.log.log_end();
            let entries = if from >= self.tail_start && end <= self.tail_start + self.tail.len() {
                self.tail
                    .range(from - self.tail_start..end - self.tail_start)
                    .cloned()
                    .collect()
            } else {
                core.log.entries(from, end)
            };
            core.notes.push(Note::SteppedDown {
                n: self.n,
                from,
                entries,
            });
        }
        self.batch.give_back(&mut core.notes);
        if let Some(ss) = self.pending_stopsign {
            core.notes.push(Note::StopSignBack(ss));
        }
    }

    /// A peer promised `b`: if it is above our ballot, the election hears of it.
    pub(super) fn note_higher_promise(&mut self, b: Ballot) {
        if b > self.n && self.higher_promise.map_or(true, |h| b > h) {
            self.higher_promise = Some(b);
        }
    }

    /// Takes a proposal of `origin` (numbered `seq`); a full batch goes into the log.
    ///
    /// With `batch_size` 1 (no batching asked for) the proposal goes into the log at the next
    /// take of the outgoing messages ([`Self::place_unbatched`]), with whatever else was
    /// proposed since the last one: nothing of it shows or leaves before that take anyway, and
    /// a burst of proposals then costs one placement instead of one each.
    pub(crate) fn propose<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        entry: T,
        origin: Origin,
        seq: u64,
    ) {
        self.batch.push(entry, origin, seq);
        let full = if core.timing.batch_size <= 1 {
            self.batch.len() >= UNBATCHED_MAX
        } else {
            self.batch.len() >= core.timing.batch_size
        };
        if full {
            self.flush_batch(core);
        }
    }

    /// With `batch_size` 1: puts what was proposed since the last take into the log (called
    /// when the outgoing messages are taken, and at the end of a tick).
    pub(crate) fn place_unbatched<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if core.timing.batch_size <= 1 && self.batch.len() > 0 {
            self.flush_batch(core);
        }
    }

    pub(crate) fn propose_stopsign<B: Storage<T>>(&mut self, core: &mut Core<T, B>, ss: StopSign) {
        if self.pending_stopsign.is_none() && core.log.stopsign().is_none() {
            self.pending_stopsign = Some(ss);
            self.flush_batch(core);
        }
    }

    /// Appends the batch (then a proposed stop sign) to our log. Nothing in the prepare phase:
    /// proposals wait for the adopted log.
    pub(crate) fn flush_batch<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if !self.is_accepting() || core.log.stopsign().is_some() {
            return;
        }
        let grew = self.batch.len() > 0;
        if grew {
            if self.batch.len() == 1 {
                if let (Some(e), Some(r)) = (self.batch.entries.pop(), self.batch.runs.pop()) {
                    self.place_one(core, e, r.origin, r.first_seq);
                }
            }
            let mut idx = core.log.log_end();
            // Drained, not taken: the batch keeps its memory for the next proposals.
            let batch = &mut self.batch;
            for r in batch.runs.drain(..) {
                push_placed_note(
                    &mut core.notes,
                    self.n,
                    r.origin,
                    PlacedRun {
                        first_seq: r.first_seq,
                        len: r.len,
                        idx,
                    },
                );
                idx += r.len as usize;
            }
            // One clone of each entry for the storage; the originals move into the tail.
            if !batch.entries.is_empty() {
                core.log
                    .stage(StorageOp::AppendEntries(batch.entries.clone()));
                self.tail.extend(batch.entries.drain(..));
            }
            debug_assert_eq!(
                self.tail_start + self.tail.len(),
                core.log.log_end(),
                "the leader's tail must end where its log ends"
            );
        }
        if let Some(ss) = self.pending_stopsign.take() {
            core.log.stage(StorageOp::SetStopsign(Some(ss)));
            self.try_decide(core);
        } else if grew {
            self.decide_if_alone(core);
        }
    }

    /// Puts `entry`, proposal `seq` of `origin`, at the end of our log (staged), and notes where.
    fn place_one<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        entry: T,
        origin: Origin,
        seq: u64,
    ) {
        let idx = core.log.log_end();
        let run = PlacedRun {
            first_seq: seq,
            len: 1,
            idx,
        };
        push_placed_note(&mut core.notes, self.n, origin, run);
        // One clone for the storage; the original moves into the tail.
        core.log.stage(StorageOp::AppendEntry(entry.clone()));
        self.tail.push_back(entry);
    }

    /// Alone a write quorum, appending decides.
    fn decide_if_alone<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if core.quorum.write_size() <= 1 {
            self.try_decide(core);
        }
    }

    /// Raises the decided index to the highest index a write quorum accepted in our ballot.
    ///
    /// Our own log counts as staged: the decided index is written in the same atomic write as
    /// the entries it covers, and no message carrying it leaves before that write.
    pub(crate) fn try_decide<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if !self.is_accepting() {
            return;
        }
        self.scratch.clear();
        self.scratch.push(core.log.accepted_idx());
        for (_, p) in &self.progress {
            if let Progress::Streaming(Stream {
                accepted: Some(a), ..
            }) = p
            {
                self.scratch.push(*a);
            }
        }
        let idx = quorum_index(&mut self.scratch, core.quorum.write_size());
        if idx > core.log.decided_idx() {
            core.log.stage(StorageOp::SetDecidedIndex(idx));
        }
    }

    pub(crate) fn handle_accepted<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: Accepted,
    ) {
        let accepted_idx = core.log.accepted_idx();
        if a.n != self.n || !self.is_accepting() {
            return;
        }
        if a.accepted_idx > accepted_idx || a.decided_idx > a.accepted_idx {
            // Nobody can have accepted more than we sent: malformed.
            report!(DEBUG, messages::malformed; core = core, from, kind = "Accepted",
                "an Accepted beyond what was sent is dropped");
            return;
        }
        let Some(s) = self.progress_mut(from).and_then(Progress::stream_mut) else {
            return;
        };
        s.accepted = Some(
            s.accepted
                .map_or(a.accepted_idx, |old| old.max(a.accepted_idx)),
        );
        debug_assert!(
            s.accepted.is_some_and(|x| x <= accepted_idx),
            "{from} confirmed more than this leader accepted"
        );
        s.decided_known = s.decided_known.max(a.decided_idx);
        s.pending_below = a.pending_below;
        if a.accepted_idx > core.log.decided_idx() {
            // Only an accept beyond the decided index can decide more.
            self.try_decide(core);
        }
    }

    pub(crate) fn handle_resync_req<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        r: ResyncReq,
    ) {
        if r.n != self.n || !self.is_accepting() {
            return;
        }
        let log_end = core.log.log_end();
        let n = self.n;
        match self.progress_mut(from) {
            Some(Progress::Streaming(_)) => {
                let sync_idx = if r.n_accepted == n {
                    r.accepted_idx
                } else {
                    r.decided_idx
                }
                .min(log_end);
                self.start_stream(core, from, sync_idx, r.decided_idx);
            }
            Some(_) => {
                let prep = super::prepare::prepare_msg(core, n);
                core.send(from, RoleMsg::Prepare(prep));
            }
            None => {}
        }
    }

    pub(crate) fn handle_prepare_req<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        r: PrepareReq,
    ) {
        self.note_higher_promise(r.n_prom);
        // The peer lost its place (it restarted, or missed our Prepare): it must promise again.
        if let Some(pr) = self.progress_mut(from) {
            *pr = Progress::Unpromised;
        }
        let prep = super::prepare::prepare_msg(core, self.n);
        core.send(from, RoleMsg::Prepare(prep));
    }

    pub(crate) fn handle_not_accepted(&mut self, na: NotAccepted) {
        if na.n == self.n {
            self.note_higher_promise(na.n_prom);
        }
    }

    pub(crate) fn reconnected<B: Storage<T>>(&mut self, core: &mut Core<T, B>, pid: NodeId) {
        let n = self.n;
        let accepting = self.is_accepting();
        match self.progress_mut(pid) {
            Some(Progress::Streaming(s)) => {
                let (from, decided) = (s.accepted.unwrap_or(s.sync_idx), s.decided_known);
                if accepting {
                    self.start_stream(core, pid, from, decided);
                }
            }
            Some(_) => {
                let prep = super::prepare::prepare_msg(core, n);
                core.send(pid, RoleMsg::Prepare(prep));
            }
            None => {}
        }
    }

    /// The highest index below which every server holds its log, decided: the limit of a
    /// trim (nobody may ever need those entries again). `None` outside the accept phase.
    pub(crate) fn trimmable<B: Storage<T>>(&self, core: &Core<T, B>) -> Option<usize> {
        if !self.is_accepting() {
            return None;
        }
        if core.log.record().pending_below > 0 {
            // We still pull our own prefix: nothing can go yet.
            return Some(0);
        }
        let mut min = core.decided_entries();
        for (_, p) in &self.progress {
            let held = match p {
                // What it decided, not what it accepted: a follower that accepted entries but
                // has not learned they are decided would otherwise be synced past them, with
                // the trimmed prefix standing in for entries it never saw decided.
                Progress::Streaming(s) if s.pending_below == 0 => s.decided_known,
                _ => 0,
            };
            min = min.min(held);
        }
        Some(min)
    }

    /// Sends `AcceptSync` from `sync_idx` to `pid` and (re)starts streaming after it.
    pub(super) fn start_stream<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pid: NodeId,
        sync_idx: usize,
        peer_decided: usize,
    ) {
        let log_sync = sync::log_sync_for(
            core,
            sync_idx,
            peer_decided,
            Some((&self.tail, self.tail_start)),
        );
        let decided_idx = core.log.decided_idx();
        let log_end = core.log.log_end();
        let has_ss = core.log.stopsign().is_some();
        let n = self.n;
        let Some(pr) = self.progress_mut(pid) else {
            return;
        };
        let (accepted, decided_known, pending_below) = match pr {
            Progress::Streaming(s) => (
                s.accepted,
                s.decided_known.max(peer_decided),
                s.pending_below,
            ),
            Progress::Promised(info) => (None, peer_decided, info.pending_below),
            Progress::Unpromised => (None, peer_decided, 0),
        };
        *pr = Progress::Streaming(Stream {
            next_idx: log_end,
            stopsign_sent: has_ss,
            accepted,
            decided_known,
            decided_sent: decided_idx,
            accepted_at_last_check: None,
            // The point where its log agrees with ours, not where this sync's entries start
            // (after a snapshot they start later): a resend must not assume more.
            sync_idx,
            pending_below,
        });
        let msg = RoleMsg::AcceptSync(super::super::wire::role::AcceptSync {
            n,
            decided_idx,
            log_sync: Box::new(log_sync),
        });
        core.send(pid, msg);
    }
}
