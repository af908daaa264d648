//! Log syncs: bringing another node's log to ours from the point where the two agree, and
//! applying one to ours.
//!
//! When snapshots are in use and we compacted our log, the decided prefix the other node lacks
//! goes as a snapshot: a `Complete` one (ours) when it is behind our compacted prefix, or else a
//! `Delta` of the decided entries it lacks, when it still has its base (its decided log up to
//! where we still have entries). The receiver of a delta merges it into a snapshot of *its*
//! decided log, its own decided entries after its snapshot included, so nothing it decided is
//! dropped.

use super::SequencePaxos;
use crate::{
    messages::sequence_paxos::{ForwardedRuns, LogSync},
    storage::{Entry, Snapshot, SnapshotType, Storage, StorageOp},
};

/// What we know of the node a sync is for.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PeerLog {
    /// Its decided index: its log up to there is final, a base a delta can be merged into.
    pub(super) decided: usize,
}

/// A log sync checked against our log, ready to be written.
pub(super) struct SyncPlan<T: Entry> {
    pub(super) ops: Vec<StorageOp<T>>,
    /// Where our log is replaced from, and where its entries end after.
    pub(super) start: usize,
    pub(super) end: usize,
    /// Our accepted index after (the stop sign counted).
    pub(super) accepted: usize,
    pub(super) forwarded: ForwardedRuns,
    /// Whether it installs a snapshot.
    pub(super) installs_snapshot: bool,
    /// Whether it replaces our prefix up to `start` (a snapshot, or a compacted prefix).
    pub(super) replaces_prefix: bool,
}

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    /// Whether we can merge a delta into a snapshot of our decided log: we hold that log as
    /// entries, or as a snapshot and entries, not as a compacted prefix without a snapshot (a
    /// predecessor's log still to pull, or a trim).
    pub(super) fn has_decided_base(&self) -> bool {
        self.migration.is_none()
            && (self.storage.compacted_idx() == 0 || self.storage.has_snapshot())
    }

    /// The decided index we tell a leader that syncs us. Without a base for a delta we say 0, so
    /// that it sends what it has from the start (a complete snapshot, or its log).
    pub(super) fn reported_decided(&self) -> usize {
        if T::Snapshot::use_snapshots() && !self.has_decided_base() {
            0
        } else {
            self.storage.decided_idx()
        }
    }

    /// The log from `sync_idx` on, for a node whose log agrees with ours below `sync_idx`.
    pub(super) fn log_sync_for(&self, sync_idx: usize, peer: PeerLog) -> LogSync<T> {
        let log_end = self.storage.log_end();
        let compacted = self.storage.compacted_idx();
        let decided = self.storage.decided_idx().min(log_end);
        let sync_idx = sync_idx.min(log_end);
        let snapshots = T::Snapshot::use_snapshots();
        let mut compacted_prefix = false;
        let (from, decided_snapshot, snapshot_from) = if sync_idx < compacted {
            // Behind our compacted prefix: our snapshot stands in for it.
            let snap = if snapshots {
                self.storage.snapshot().map(SnapshotType::Complete)
            } else {
                None
            };
            compacted_prefix = snap.is_none();
            (compacted, snap, 0)
        } else if snapshots
            && compacted > 0
            && self.storage.has_snapshot()
            && peer.decided >= compacted
            && peer.decided < decided
            && peer.decided <= sync_idx
        {
            // It lags our decided index but has its decided log up to where we still have
            // entries: the decided entries it lacks go as a delta, to merge into a snapshot of
            // its own decided log.
            let delta = T::Snapshot::create(&self.entries_for_sync(peer.decided, decided));
            (decided, Some(SnapshotType::Delta(delta)), peer.decided)
        } else if let Some(end) = self
            .predecessor_end()
            .filter(|end| snapshots && sync_idx < *end && peer.decided < *end)
        {
            // It lacks the log of the configuration ours continues: it pulls that from several
            // servers at once (it is offered to it), so we send only what follows.
            compacted_prefix = true;
            (end, None, 0)
        } else {
            (sync_idx, None, 0)
        };
        // A receiver whose prefix this replaces also gets the runs of the decided entries just
        // below it that we know, so that it can check forwards of those too when it leads.
        let runs_from = if decided_snapshot.is_some() || compacted_prefix {
            from.saturating_sub(self.runs_horizon())
        } else {
            from
        };
        LogSync {
            decided_snapshot,
            suffix: self.entries_for_sync(from, log_end),
            sync_idx: from,
            snapshot_from,
            stopsign: self.storage.stopsign().cloned(),
            forwarded: self.origins.runs_in(runs_from, log_end),
            compacted_prefix,
        }
    }

    fn entries_for_sync(&self, from: usize, to: usize) -> Vec<T> {
        match &self.leader {
            Some(l) => l.entries(&self.storage, from, to),
            None => self.storage.entries(from, to),
        }
    }

    /// For a sync whose sender's log below `sync_idx` is compacted without a snapshot
    /// (`compacted_prefix`): the operations that compact ours to there, if we are behind it.
    /// Everything below `sync_idx` is decided, so our entries there are decided and the same.
    pub(super) fn compacted_prefix_ops(
        &self,
        compacted_prefix: bool,
        sync_idx: usize,
    ) -> Option<Vec<StorageOp<T>>> {
        let keep = self
            .storage
            .decided_idx()
            .min(self.storage.log_end())
            .max(self.storage.compacted_idx());
        if !compacted_prefix || sync_idx <= keep {
            return None;
        }
        let mut ops = vec![
            StorageOp::SetSnapshot(None),
            StorageOp::Trim(sync_idx),
            StorageOp::SetCompactedIdx(sync_idx),
        ];
        if self.storage.decided_idx() < sync_idx {
            ops.push(StorageOp::SetDecidedIndex(sync_idx));
        }
        Some(ops)
    }

    /// Operations that make our prefix `0..to` the snapshot `snap` (a `Delta` covers
    /// `from..to` and is merged into a snapshot of our decided log up to `from`).
    /// `Ok(None)`: nothing to do, we decided up to `to` already. `Err`: a delta that does not
    /// start at our decided index.
    pub(super) fn snapshot_ops(
        &self,
        snap: SnapshotType<T>,
        from: usize,
        to: usize,
    ) -> Result<Option<Vec<StorageOp<T>>>, ()> {
        let decided = self.storage.decided_idx().min(self.storage.log_end());
        if to <= decided || to <= self.storage.compacted_idx() {
            return Ok(None);
        }
        let snapshot = match snap {
            SnapshotType::Complete(s) => s,
            SnapshotType::Delta(d) => {
                // A delta needs our decided log as its base.
                if from != decided || !self.has_decided_base() {
                    return Err(());
                }
                let mut base = self.decided_snapshot(decided);
                base.merge(d);
                base
            }
        };
        let mut ops = vec![
            StorageOp::SetSnapshot(Some(snapshot)),
            StorageOp::Trim(to),
            StorageOp::SetCompactedIdx(to),
        ];
        if self.storage.decided_idx() < to {
            ops.push(StorageOp::SetDecidedIndex(to));
        }
        Ok(Some(ops))
    }

    /// A snapshot of our log up to `idx` (decided): our snapshot merged with the entries after
    /// it. After a trim without snapshot, it covers what followed the trim.
    pub(super) fn decided_snapshot(&self, idx: usize) -> T::Snapshot {
        let compacted = self.storage.compacted_idx();
        let entries = self.storage.entries(compacted, idx.max(compacted));
        match self.storage.snapshot() {
            Some(mut s) if compacted > 0 => {
                if !entries.is_empty() {
                    s.merge(T::Snapshot::create(&entries));
                }
                s
            }
            _ => T::Snapshot::create(&entries),
        }
    }

    /// How to make our log `log[..sync.sync_idx] ++ sync.suffix (+ stop sign)`, never touching
    /// decided entries. `None` if the sync does not fit our log (it starts beyond our end, or is
    /// a delta for another decided index).
    pub(super) fn plan_log_sync(&self, sync: LogSync<T>) -> Option<SyncPlan<T>> {
        let LogSync {
            decided_snapshot,
            mut suffix,
            sync_idx,
            snapshot_from,
            stopsign,
            forwarded,
            compacted_prefix,
        } = sync;
        let mut ops = Vec::with_capacity(8);
        let mut log_end = self.storage.log_end();
        // Our prefix up to here is final (decided or compacted): keep it.
        let mut installs_snapshot = false;
        let mut replaces_prefix = false;
        let mut keep = self
            .storage
            .decided_idx()
            .min(log_end)
            .max(self.storage.compacted_idx());
        if let Some(snap) = decided_snapshot {
            if let Some(snap_ops) = self.snapshot_ops(snap, snapshot_from, sync_idx).ok()? {
                ops.extend(snap_ops);
                log_end = log_end.max(sync_idx);
                keep = sync_idx;
                installs_snapshot = true;
                replaces_prefix = true;
            }
        } else if let Some(trim_ops) = self.compacted_prefix_ops(compacted_prefix, sync_idx) {
            ops.extend(trim_ops);
            log_end = log_end.max(sync_idx);
            keep = sync_idx;
            replaces_prefix = true;
        }
        let mut start = sync_idx;
        if start > log_end {
            return None;
        }
        if start < keep {
            let skip = keep - start;
            if skip > suffix.len() {
                return None;
            }
            suffix.drain(..skip);
            start = keep;
        }
        let end = start.checked_add(suffix.len())?;
        let accepted = end + usize::from(stopsign.is_some());
        ops.push(StorageOp::AppendOnPrefix(start, suffix));
        ops.push(StorageOp::SetStopsign(stopsign));
        Some(SyncPlan {
            ops,
            start,
            end,
            accepted,
            forwarded,
            installs_snapshot,
            replaces_prefix,
        })
    }

    /// Writes a planned sync (with `extra` operations in the same atomic write).
    pub(super) fn apply_log_sync(
        &mut self,
        mut plan: SyncPlan<T>,
        extra: Vec<StorageOp<T>>,
        what: &str,
    ) {
        plan.ops.extend(extra);
        // The sync (up to a snapshot's or compacted prefix's end) and the caller (up to the
        // leader's decided index) may both raise the decided index: the higher wins, whatever
        // their order (the lower one last would leave the index below the compacted prefix).
        let decided = plan
            .ops
            .iter()
            .filter_map(|op| match op {
                StorageOp::SetDecidedIndex(i) => Some(*i),
                _ => None,
            })
            .max();
        if let Some(decided) = decided {
            plan.ops
                .retain(|op| !matches!(op, StorageOp::SetDecidedIndex(_)));
            plan.ops.push(StorageOp::SetDecidedIndex(decided));
        }
        self.storage.write(plan.ops, what);
        if plan.replaces_prefix {
            self.origins.replace_prefix(plan.start, &plan.forwarded);
        }
        self.origins
            .apply_sync(plan.start, &plan.forwarded, plan.end);
        if plan.installs_snapshot {
            self.stats.snapshot_installs += 1;
        }
        self.check_migration_superseded();
    }
}
