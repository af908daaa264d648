//! The node's view of its [`Storage`]: a cache of the small state, reads shaped as
//! [`LogEntry`]s, and writes that go to storage first.
//!
//! Invariant: every cached value equals what the backend holds. Writes call
//! `write_atomically` and update the cache only when it succeeded, so the node's memory never
//! runs ahead of its storage. A backend error panics with the name of the failed operation (see
//! [`crate::OmniPaxos`]): continuing with state that may not be durable would break Paxos.

use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Snapshot, StopSign, Storage, StorageOp, StorageResult},
    util::{LogEntry, SnapshottedEntry},
};
use std::{
    marker::PhantomData,
    ops::{Bound, RangeBounds},
};

/// Unwraps a storage result, or stops the node naming the operation that failed.
pub(crate) fn expect_storage<R>(r: StorageResult<R>, operation: &str) -> R {
    match r {
        Ok(v) => v,
        Err(e) => panic!("OmniPaxos: storage operation `{operation}` failed: {e}"),
    }
}

/// The cached part of the storage state.
#[derive(Clone, Debug, Default)]
struct Cached {
    promise: Ballot,
    accepted_round: Ballot,
    decided_idx: usize,
    compacted_idx: usize,
    /// Absolute end of the entries (a stop sign, if any, sits at this index).
    log_end: usize,
    stopsign: Option<StopSign>,
    /// Whether a snapshot is stored.
    has_snapshot: bool,
}

pub(crate) struct InternalStorage<T: Entry, B: Storage<T>> {
    backend: B,
    /// Invariants: `compacted_idx <= log_end`, `decided_idx <= accepted_idx()`.
    c: Cached,
    _t: PhantomData<T>,
}

impl<T: Entry, B: Storage<T>> InternalStorage<T, B> {
    /// Loads the cached state from `backend`. Returns also whether the backend held a promise
    /// (then the node recovers from it).
    pub(crate) fn load(backend: B) -> (Self, Option<Ballot>) {
        let promise = expect_storage(backend.get_promise(), "get_promise");
        let accepted_round = expect_storage(backend.get_accepted_round(), "get_accepted_round");
        let compacted_idx = expect_storage(backend.get_compacted_idx(), "get_compacted_idx");
        let log_len = expect_storage(backend.get_log_len(), "get_log_len");
        let stopsign = expect_storage(backend.get_stopsign(), "get_stopsign");
        let decided_idx = expect_storage(backend.get_decided_idx(), "get_decided_idx");
        let has_snapshot = expect_storage(backend.get_snapshot(), "get_snapshot").is_some();
        let log_end = compacted_idx + log_len;
        let accepted_idx = log_end + usize::from(stopsign.is_some());
        let c = Cached {
            promise: promise.unwrap_or_default(),
            accepted_round: accepted_round.unwrap_or_default(),
            // A backend whose decided index runs past its log cannot be trusted beyond its log.
            decided_idx: decided_idx.min(accepted_idx),
            compacted_idx,
            log_end,
            stopsign,
            has_snapshot,
        };
        (
            InternalStorage {
                backend,
                c,
                _t: PhantomData,
            },
            promise,
        )
    }

    pub(crate) fn promise(&self) -> Ballot {
        self.c.promise
    }
    /// The round we last accepted in (the default one, never, while the sync marker is stored).
    pub(crate) fn accepted_round(&self) -> Ballot {
        if self.awaiting_sync() {
            Ballot::default()
        } else {
            self.c.accepted_round
        }
    }
    /// Whether the stored accepted round is the marker of a server that continued a
    /// configuration without knowing where the old log ended ([`sync_marker`]): it must not
    /// lead before a leader synced it. The marker goes with the first real accepted round.
    pub(crate) fn awaiting_sync(&self) -> bool {
        let r = self.c.accepted_round;
        r.pid == 0 && r != Ballot::default()
    }
    pub(crate) fn decided_idx(&self) -> usize {
        self.c.decided_idx
    }
    pub(crate) fn compacted_idx(&self) -> usize {
        self.c.compacted_idx
    }
    /// Absolute end of the entries, without the stop sign.
    pub(crate) fn log_end(&self) -> usize {
        self.c.log_end
    }
    /// Absolute end of the log, counting a stop sign as one slot.
    pub(crate) fn accepted_idx(&self) -> usize {
        self.c.log_end + usize::from(self.c.stopsign.is_some())
    }
    /// Whether the compacted prefix is in a snapshot (not merely trimmed).
    pub(crate) fn has_snapshot(&self) -> bool {
        self.c.has_snapshot
    }
    pub(crate) fn stopsign(&self) -> Option<&StopSign> {
        self.c.stopsign.as_ref()
    }
    /// Whether the log ends with a decided stop sign.
    pub(crate) fn stopsign_decided(&self) -> bool {
        self.c.stopsign.is_some() && self.c.decided_idx == self.accepted_idx()
    }

    /// Writes `ops` atomically, then updates the cache. `what` names the operation in a panic.
    ///
    /// On the hot path (one append, or a decided index) this copies a few integers: the cached
    /// stop sign is cloned only when an operation sets it.
    pub(crate) fn write(&mut self, ops: Vec<StorageOp<T>>, what: &str) {
        if ops.is_empty() {
            return;
        }
        let c = &self.c;
        let (mut promise, mut accepted_round) = (c.promise, c.accepted_round);
        let (mut decided_idx, mut compacted_idx) = (c.decided_idx, c.compacted_idx);
        let (mut log_end, mut has_snapshot) = (c.log_end, c.has_snapshot);
        let mut new_stopsign = None;
        for op in &ops {
            match op {
                StorageOp::AppendEntry(_) => log_end += 1,
                StorageOp::AppendEntries(v) => log_end += v.len(),
                StorageOp::AppendOnPrefix(from, v) => log_end = from + v.len(),
                StorageOp::SetPromise(b) => promise = *b,
                StorageOp::SetDecidedIndex(i) => decided_idx = *i,
                StorageOp::SetAcceptedRound(b) => accepted_round = *b,
                StorageOp::SetCompactedIdx(i) => compacted_idx = *i,
                StorageOp::Trim(i) => log_end = log_end.max(*i),
                StorageOp::SetStopsign(s) => new_stopsign = Some(s.clone()),
                StorageOp::SetSnapshot(s) => has_snapshot = s.is_some(),
            }
        }
        debug_assert!(
            compacted_idx <= log_end,
            "compacted {compacted_idx} beyond log end {log_end}"
        );
        expect_storage(self.backend.write_atomically(ops), what);
        let c = &mut self.c;
        c.promise = promise;
        c.accepted_round = accepted_round;
        c.decided_idx = decided_idx;
        c.compacted_idx = compacted_idx;
        c.log_end = log_end;
        c.has_snapshot = has_snapshot;
        if let Some(s) = new_stopsign {
            c.stopsign = s;
        }
    }

    pub(crate) fn set_promise(&mut self, b: Ballot) {
        self.write(vec![StorageOp::SetPromise(b)], "set_promise");
    }

    pub(crate) fn set_decided_idx(&mut self, idx: usize) {
        self.write(vec![StorageOp::SetDecidedIndex(idx)], "set_decided_idx");
    }

    /// Entries at absolute `from..to`, all of which must be stored.
    pub(crate) fn entries(&self, from: usize, to: usize) -> Vec<T> {
        if from >= to {
            return Vec::new();
        }
        let v = expect_storage(self.backend.get_entries(from, to), "get_entries");
        assert_eq!(
            v.len(),
            to - from,
            "OmniPaxos: storage operation `get_entries({from}, {to})` returned {} entries",
            v.len()
        );
        v
    }

    pub(crate) fn snapshot(&self) -> Option<T::Snapshot> {
        expect_storage(self.backend.get_snapshot(), "get_snapshot")
    }

    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    pub(crate) fn into_backend(self) -> B {
        self.backend
    }

    /// The log in `r` as [`LogEntry`]s; `None` if `r` reaches beyond the log or is empty.
    pub(crate) fn read<R: RangeBounds<usize>>(&self, r: R) -> Option<Vec<LogEntry<T>>> {
        let accepted = self.accepted_idx();
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
        if from >= to || to > accepted {
            return None;
        }
        let mut out = Vec::with_capacity((to - from).min(1 << 16));
        let compacted = self.c.compacted_idx;
        if from < compacted {
            out.push(self.compacted_entry());
        }
        let entries_from = from.max(compacted);
        let entries_to = to.min(self.c.log_end);
        if entries_from < entries_to {
            let decided = self.c.decided_idx;
            let entries = self.entries(entries_from, entries_to);
            out.extend(entries.into_iter().enumerate().map(|(i, e)| {
                if entries_from + i < decided {
                    LogEntry::Decided(e)
                } else {
                    LogEntry::Undecided(e)
                }
            }));
        }
        if to > self.c.log_end {
            if let Some(ss) = &self.c.stopsign {
                out.push(LogEntry::StopSign(ss.clone(), self.stopsign_decided()));
            }
        }
        Some(out)
    }

    fn compacted_entry(&self) -> LogEntry<T> {
        let compacted = self.c.compacted_idx;
        match self.snapshot() {
            Some(s) if T::Snapshot::use_snapshots() => {
                LogEntry::Snapshotted(SnapshottedEntry::with(compacted, s))
            }
            _ => LogEntry::Trimmed(compacted),
        }
    }

    /// The decided entries from `from` on; `None` when `from` is at or past the decided index.
    pub(crate) fn read_decided_suffix(&self, from: usize) -> Option<Vec<LogEntry<T>>> {
        let decided = self.c.decided_idx;
        if from < decided {
            self.read(from..decided)
        } else {
            None
        }
    }
}

/// The accepted round stored by a server of configuration `config_id` that must wait for a
/// leader's sync before it may lead: a ballot nobody owns (pid 0), distinct from the default.
/// It lives in the accepted round, not the promise, because promising a leader (which comes
/// before its sync) must not erase it; and every read of the accepted round shows it as
/// "never accepted" (see `InternalStorage::accepted_round`).
pub(crate) fn sync_marker(config_id: crate::util::ConfigurationId) -> Ballot {
    Ballot {
        config_id: config_id.max(1),
        n: 0,
        priority: 0,
        pid: 0,
    }
}
