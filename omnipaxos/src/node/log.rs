//! The node's view of its [`Storage`]: the small state cached, writes *staged* and written in
//! one `write_atomically` when the node's output is taken, and reads shaped as [`LogEntry`]s.
//!
//! Two views of the same state:
//!
//! * **staged**: what the protocol works with. Every change is applied here at once and queued
//!   as a [`StorageOp`].
//! * **durable**: what the backend holds. Everything the application sees (getters, reads) and
//!   every message that depends on the state is taken from here, after a [`Log::flush`].
//!
//! So everything a node does between two takes of its outgoing messages costs one storage
//! write (a follower that works through a backlog of the leader's messages writes once), and
//! yet nothing that is not durable is ever seen outside the node: a crash before the flush is
//! as if the messages handled since the last flush had been lost on the way.
//!
//! Invariants (checked in debug builds after every change): in both views
//! `compacted_idx <= log_end` and `decided_idx <= accepted_idx()`; the durable view is the
//! staged view with the queued operations not applied.
//!
//! A backend error panics with the name of the failed operation (see [`crate::OmniPaxos`]):
//! continuing with state that may not be durable would break Paxos.

use super::record::NodeRecord;
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, NodeRecordUnsupported, Snapshot, StopSign, Storage, StorageOp},
    util::{LogEntry, SnapshottedEntry},
};
use std::ops::{Bound, RangeBounds};

/// Unwraps a storage result, or stops the node naming the operation that failed.
fn expect_storage<R>(r: crate::storage::StorageResult<R>, operation: &str) -> R {
    match r {
        Ok(v) => v,
        Err(e) => {
            report!(ERROR, storage::failed; operation, error = %e,
                "a storage operation failed: the node stops (rebuild it on its storage)");
            panic!("OmniPaxos: storage operation `{operation}` failed: {e}")
        }
    }
}

/// Staged entries beyond this many are written at once, whatever the caller does: a bound on
/// the memory a backlog can take.
const STAGED_ENTRIES_MAX: usize = 1 << 16;

/// The small state of the log.
#[derive(Debug, Default, PartialEq)]
struct State {
    promise: Ballot,
    accepted_round: Ballot,
    decided_idx: usize,
    compacted_idx: usize,
    /// Absolute end of the entries (a stop sign, if any, sits at this index).
    log_end: usize,
    stopsign: Option<StopSign>,
    has_snapshot: bool,
}

impl Clone for State {
    fn clone(&self) -> Self {
        State {
            stopsign: self.stopsign.clone(),
            ..*self
        }
    }

    /// Every write copies the staged state to the durable one: the stop sign, which rarely
    /// changes, is cloned only when it did.
    fn clone_from(&mut self, source: &Self) {
        if self.stopsign != source.stopsign {
            self.stopsign.clone_from(&source.stopsign);
        }
        let State {
            promise,
            accepted_round,
            decided_idx,
            compacted_idx,
            log_end,
            stopsign: _,
            has_snapshot,
        } = *source;
        self.promise = promise;
        self.accepted_round = accepted_round;
        self.decided_idx = decided_idx;
        self.compacted_idx = compacted_idx;
        self.log_end = log_end;
        self.has_snapshot = has_snapshot;
    }
}

impl State {
    fn accepted_idx(&self) -> usize {
        self.log_end + usize::from(self.stopsign.is_some())
    }

    fn apply<T: Entry>(&mut self, op: &StorageOp<T>) {
        match op {
            StorageOp::AppendEntry(_) => self.log_end += 1,
            StorageOp::AppendEntries(v) => self.log_end += v.len(),
            StorageOp::AppendOnPrefix(from, v) => self.log_end = from + v.len(),
            StorageOp::SetPromise(b) => self.promise = *b,
            StorageOp::SetDecidedIndex(i) => self.decided_idx = *i,
            StorageOp::SetAcceptedRound(b) => self.accepted_round = *b,
            StorageOp::SetCompactedIdx(i) => self.compacted_idx = *i,
            StorageOp::Trim(i) => self.log_end = self.log_end.max(*i),
            StorageOp::SetStopsign(s) => self.stopsign = s.clone(),
            StorageOp::SetSnapshot(s) => self.has_snapshot = s.is_some(),
        }
    }

    fn check(&self, view: &str) {
        debug_assert!(
            self.compacted_idx <= self.log_end,
            "{view}: compacted index {} beyond the log end {}",
            self.compacted_idx,
            self.log_end
        );
        debug_assert!(
            self.decided_idx <= self.accepted_idx(),
            "{view}: decided index {} beyond the accepted index {}",
            self.decided_idx,
            self.accepted_idx()
        );
    }
}

/// Reads of up to this many entries go through [`Storage::get_entries_with`]; longer ones through
/// `get_entries`, whose vector costs less per entry than an entry at a time.
const SMALL_READ: usize = 32;

pub(crate) struct Log<T: Entry, B: Storage<T>> {
    backend: B,
    durable: State,
    staged: State,
    ops: Vec<StorageOp<T>>,
    /// Entries among `ops`.
    staged_entries: usize,
    record: NodeRecord,
    durable_record: NodeRecord,
    /// `record` may differ from `durable_record` (it was handed out for a change since the
    /// last flush): saves comparing the two on every flush.
    record_touched: bool,
    /// The backend does not store the node record (its trait methods are the defaults): the
    /// record lives in memory only.
    legacy: bool,
    /// The backend asks for a write after every input (see [`Storage::writes_at_once`]).
    at_once: bool,
}

impl<T: Entry, B: Storage<T>> Log<T, B> {
    /// Loads the state from `backend`, and raises the incarnation in its record (a write).
    /// `fresh_record` is the record of a node that never ran on this storage.
    pub(crate) fn load(backend: B, fresh_record: NodeRecord) -> Result<Self, String> {
        let promise = expect_storage(backend.get_promise(), "get_promise");
        let accepted_round = expect_storage(backend.get_accepted_round(), "get_accepted_round");
        let compacted_idx = expect_storage(backend.get_compacted_idx(), "get_compacted_idx");
        let log_len = expect_storage(backend.get_log_len(), "get_log_len");
        let stopsign = expect_storage(backend.get_stopsign(), "get_stopsign");
        let decided_idx = expect_storage(backend.get_decided_idx(), "get_decided_idx");
        let has_snapshot = expect_storage(backend.get_snapshot(), "get_snapshot").is_some();
        let stored = expect_storage(backend.get_node_record(), "get_node_record");
        let record = match stored {
            Some(bytes) => NodeRecord::decode(&bytes)
                .map_err(|e| format!("the storage's node record is damaged: {e}"))?,
            None => fresh_record,
        };
        let log_end = compacted_idx
            .checked_add(log_len)
            .ok_or("the storage's log end overflows")?;
        let mut state = State {
            promise: promise.unwrap_or_default(),
            accepted_round: accepted_round.unwrap_or_default(),
            decided_idx,
            compacted_idx,
            log_end,
            stopsign,
            has_snapshot,
        };
        // A backend whose decided index runs past its log cannot be trusted beyond its log.
        state.decided_idx = state.decided_idx.min(state.accepted_idx());
        let at_once = backend.writes_at_once();
        let mut log = Log {
            backend,
            durable: state.clone(),
            staged: state,
            ops: Vec::new(),
            staged_entries: 0,
            durable_record: record.clone(),
            record,
            record_touched: true,
            legacy: false,
            at_once,
        };
        log.record.incarnation = log.record.incarnation.wrapping_add(1);
        let bytes = log.record.encode();
        match log.backend.write_atomically_with_record(Vec::new(), bytes) {
            Ok(()) => log.durable_record = log.record.clone(),
            Err(e) if e.is::<NodeRecordUnsupported>() => log.legacy = true,
            Err(e) => {
                report!(ERROR, storage::failed; operation = "write_node_record", error = %e,
                    "a storage operation failed: the node stops (rebuild it on its storage)");
                panic!("OmniPaxos: storage operation `write_node_record` failed: {e}")
            }
        }
        Ok(log)
    }

    /// Whether the backend keeps the node record only in memory (see [`Storage`]).
    pub(crate) fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// Whether the backend asks for a write after every input (see
    /// [`Storage::writes_at_once`]).
    pub(crate) fn writes_at_once(&self) -> bool {
        self.at_once
    }

    // ----- the staged view (what the protocol works with) -----

    pub(crate) fn promise(&self) -> Ballot {
        self.staged.promise
    }
    pub(crate) fn accepted_round(&self) -> Ballot {
        self.staged.accepted_round
    }
    pub(crate) fn decided_idx(&self) -> usize {
        self.staged.decided_idx
    }
    pub(crate) fn compacted_idx(&self) -> usize {
        self.staged.compacted_idx
    }
    /// Absolute end of the entries, without the stop sign.
    pub(crate) fn log_end(&self) -> usize {
        self.staged.log_end
    }
    /// Absolute end of the log, counting a stop sign as one slot.
    pub(crate) fn accepted_idx(&self) -> usize {
        self.staged.accepted_idx()
    }
    pub(crate) fn has_snapshot(&self) -> bool {
        self.staged.has_snapshot
    }
    pub(crate) fn stopsign(&self) -> Option<&StopSign> {
        self.staged.stopsign.as_ref()
    }
    /// Whether the log ends with a decided stop sign.
    pub(crate) fn stopsign_decided(&self) -> bool {
        self.staged.stopsign.is_some() && self.staged.decided_idx == self.staged.accepted_idx()
    }
    pub(crate) fn record(&self) -> &NodeRecord {
        &self.record
    }

    // ----- the durable view (what the application sees) -----

    pub(crate) fn durable_promise(&self) -> Ballot {
        self.durable.promise
    }
    pub(crate) fn durable_decided_idx(&self) -> usize {
        self.durable.decided_idx
    }
    pub(crate) fn durable_accepted_idx(&self) -> usize {
        self.durable.accepted_idx()
    }
    pub(crate) fn durable_compacted_idx(&self) -> usize {
        self.durable.compacted_idx
    }
    pub(crate) fn durable_stopsign_decided(&self) -> Option<&StopSign> {
        let d = &self.durable;
        d.stopsign
            .as_ref()
            .filter(|_| d.decided_idx == d.accepted_idx())
    }
    pub(crate) fn durable_record(&self) -> &NodeRecord {
        &self.durable_record
    }
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    // ----- writes -----

    /// Queues `op`, applying it to the staged view.
    pub(crate) fn stage(&mut self, op: StorageOp<T>) {
        self.stage_one(op);
        self.after_staging();
    }

    /// Queues all `ops` (the invariants are checked after the last one: a batch may pass
    /// through states that are not valid on their own, like a stop sign cleared before the
    /// decided index that counted it).
    pub(crate) fn stage_all(&mut self, ops: impl IntoIterator<Item = StorageOp<T>>) {
        for op in ops {
            self.stage_one(op);
        }
        self.after_staging();
    }

    fn after_staging(&mut self) {
        self.staged.check("staged");
        if self.staged_entries >= STAGED_ENTRIES_MAX {
            self.flush();
        }
    }

    fn stage_one(&mut self, op: StorageOp<T>) {
        self.staged.apply(&op);
        match op {
            StorageOp::AppendEntry(e) => {
                self.staged_entries += 1;
                match self.ops.last_mut() {
                    Some(StorageOp::AppendEntries(v)) | Some(StorageOp::AppendOnPrefix(_, v)) => {
                        v.push(e)
                    }
                    Some(StorageOp::AppendEntry(_)) => {
                        let Some(StorageOp::AppendEntry(first)) = self.ops.pop() else {
                            unreachable!("the last operation is an AppendEntry");
                        };
                        self.ops.push(StorageOp::AppendEntries(vec![first, e]));
                    }
                    _ => self.ops.push(StorageOp::AppendEntry(e)),
                }
            }
            StorageOp::AppendEntries(mut w) => {
                self.staged_entries += w.len();
                match self.ops.last_mut() {
                    Some(StorageOp::AppendEntries(v)) | Some(StorageOp::AppendOnPrefix(_, v)) => {
                        v.append(&mut w)
                    }
                    Some(StorageOp::AppendEntry(_)) => {
                        let Some(StorageOp::AppendEntry(first)) = self.ops.pop() else {
                            unreachable!("the last operation is an AppendEntry");
                        };
                        w.insert(0, first);
                        self.ops.push(StorageOp::AppendEntries(w));
                    }
                    _ => self.ops.push(StorageOp::AppendEntries(w)),
                }
            }
            // Only the last value of these counts: keep one, at the end (after the entries
            // it may refer to).
            StorageOp::SetDecidedIndex(_) => {
                self.ops
                    .retain(|o| !matches!(o, StorageOp::SetDecidedIndex(_)));
                self.ops.push(op);
            }
            StorageOp::SetPromise(_) => {
                self.ops.retain(|o| !matches!(o, StorageOp::SetPromise(_)));
                self.ops.push(op);
            }
            other => {
                if let StorageOp::AppendOnPrefix(_, v) = &other {
                    self.staged_entries += v.len();
                }
                self.ops.push(other);
            }
        }
    }

    /// Changes the node record (written with the next flush).
    pub(crate) fn set_record(&mut self, f: impl FnOnce(&mut NodeRecord)) {
        f(&mut self.record);
        self.record_touched = true;
        self.record.check();
    }

    /// Writes everything staged in one `write_atomically`.
    #[inline]
    pub(crate) fn flush(&mut self) {
        // Called several times per input: the common case (nothing staged) stays out of line.
        if self.ops.is_empty() && !self.record_touched {
            return;
        }
        self.write_staged();
    }

    fn write_staged(&mut self) {
        let record_changed = self.record_touched && self.record != self.durable_record;
        self.record_touched = record_changed;
        if self.ops.is_empty() && !record_changed {
            return;
        }
        self.staged_entries = 0;
        let r = if record_changed && !self.legacy {
            // The backend takes the operations; a few slots are ready for the next ones (a
            // write rarely has more than entries, a decided index and a promise).
            let ops = std::mem::replace(&mut self.ops, Vec::with_capacity(4));
            self.backend
                .write_atomically_with_record(ops, self.record.encode())
        } else {
            // The vector comes back empty, with its allocation if the backend kept it.
            self.backend.write_atomically_draining(&mut self.ops)
        };
        debug_assert!(self.ops.is_empty(), "the backend left operations unwritten");
        expect_storage(r, "write_atomically");
        self.durable.clone_from(&self.staged);
        if record_changed {
            self.durable_record = self.record.clone();
            self.record_touched = false;
        }
    }

    // ----- reads the protocol makes (of the staged log: they flush first) -----

    /// Entries at absolute `from..to`, all of which must be stored.
    pub(crate) fn entries(&mut self, from: usize, to: usize) -> Vec<T> {
        if from >= to {
            return Vec::new();
        }
        self.flush();
        let v = expect_storage(self.backend.get_entries(from, to), "get_entries");
        assert_eq!(
            v.len(),
            to - from,
            "OmniPaxos: storage operation `get_entries({from}, {to})` returned {} entries",
            v.len()
        );
        v
    }

    /// The stored snapshot.
    pub(crate) fn snapshot(&mut self) -> Option<T::Snapshot> {
        self.flush();
        expect_storage(self.backend.get_snapshot(), "get_snapshot")
    }

    pub(crate) fn into_backend(mut self) -> B {
        self.flush();
        self.backend
    }

    // ----- reads the application makes (of the durable log) -----

    /// The log in `r` as [`LogEntry`]s; `None` if `r` reaches beyond the log, is empty, or
    /// starts in the pending prefix (the log of an earlier configuration still being pulled).
    pub(crate) fn read<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        let d = &self.durable;
        let accepted = d.accepted_idx();
        let from = match r.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.checked_add(1)?,
            Bound::Unbounded => 0,
        };
        let to = match r.end_bound() {
            Bound::Included(i) => i.checked_add(1)?,
            Bound::Excluded(i) => *i,
            Bound::Unbounded => accepted,
        };
        if from >= to || to > accepted || from < self.durable_record.pending_below {
            return None;
        }
        let mut out = Vec::with_capacity((to - from).min(1 << 16));
        if from < d.compacted_idx {
            out.push(self.compacted_entry());
        }
        let entries_from = from.max(d.compacted_idx);
        let entries_to = to.min(d.log_end);
        if entries_from < entries_to {
            let decided = d.decided_idx;
            let tag = |i: usize, e: T| {
                if i < decided {
                    LogEntry::Decided(e)
                } else {
                    LogEntry::Undecided(e)
                }
            };
            // What the backend handed over is counted in `out`, and must agree with what it
            // reported: both are `to - from`, or the read is wrong.
            let start = out.len();
            let reported = if entries_to - entries_from <= SMALL_READ {
                // Straight into the answer, with no vector in between (one entry per decision
                // when few are in flight: the allocation would be most of the read).
                expect_storage(
                    self.backend
                        .get_entries_with(entries_from, entries_to, |e| {
                            let i = entries_from + (out.len() - start);
                            out.push(tag(i, e));
                        }),
                    "get_entries",
                )
            } else {
                // Many entries: one vector, copied in bulk, costs less per entry.
                let v = expect_storage(
                    self.backend.get_entries(entries_from, entries_to),
                    "get_entries",
                );
                let n = v.len();
                out.extend(
                    v.into_iter()
                        .enumerate()
                        .map(|(i, e)| tag(entries_from + i, e)),
                );
                n
            };
            let got = out.len() - start;
            assert!(
                reported == got && got == entries_to - entries_from,
                "OmniPaxos: storage operation `get_entries({entries_from}, {entries_to})` returned {got} entries (reported {reported})",
            );
        }
        if to > d.log_end {
            if let Some(ss) = &d.stopsign {
                let decided = d.decided_idx == accepted;
                out.push(LogEntry::StopSign(ss.clone(), decided));
            }
        }
        Some(out)
    }

    fn compacted_entry(&self) -> LogEntry<T> {
        let compacted = self.durable.compacted_idx;
        let snapshot = if self.durable.has_snapshot && T::Snapshot::use_snapshots() {
            expect_storage(self.backend.get_snapshot(), "get_snapshot")
        } else {
            None
        };
        match snapshot {
            Some(s) => LogEntry::Snapshotted(SnapshottedEntry::with(compacted, s)),
            None => LogEntry::Trimmed(compacted),
        }
    }

    /// The decided entries from `from` on; `None` when `from` is at or past the decided index
    /// (or in the pending prefix).
    pub(crate) fn read_decided_suffix(&self, from: usize) -> Option<Vec<LogEntry<T>>> {
        let decided = self.durable.decided_idx;
        if from < decided {
            self.read(from..decided)
        } else {
            None
        }
    }
}
