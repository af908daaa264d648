//! Compaction: trimming the log, and folding a decided prefix into a snapshot.
//!
//! * **Trim** (leader only) discards the entries below an index that every server has accepted,
//!   so no server can ever need them again; the followers trim too. The snapshot, if any, goes
//!   with them: reads show `Trimmed(idx)`.
//! * **Snapshot** (any server) folds decided entries into `T::Snapshot` (`create`, then `merge`
//!   into the existing snapshot) and drops them; unless local, the others do the same. A server
//!   behind a compacted prefix is synchronised with a snapshot (see [`super::sync`]).
//!
//! A stop sign is never compacted: compaction stops at the last entry.
//!
//! For entry types without snapshots (`use_snapshots() == false`), `snapshot` trims, under the
//! rules of trim: a snapshot would be the only way to bring a lagging server up to date.

use super::{progress::Progress, Phase, SequencePaxos};
use crate::{
    errors::CompactionErr,
    messages::sequence_paxos::{Compaction, CompactionReq, PaxosMsg},
    storage::{Entry, Snapshot, Storage, StorageOp},
    util::NodeId,
};

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    /// The highest index every server accepted in our ballot (and we decided): the limit of a
    /// trim. `None` if we do not lead in the accept phase.
    fn trimmable_idx(&self) -> Option<usize> {
        let l = self.leader.as_ref()?;
        if self.phase != Phase::Accept {
            return None;
        }
        let mut min = self.storage.decided_idx().min(self.storage.log_end());
        for (_, p) in l.progress() {
            let acc = match p {
                Progress::Streaming(s) => s.accepted.unwrap_or(0),
                _ => 0,
            };
            min = min.min(acc);
        }
        Some(min)
    }

    /// Trims the log below `idx` (default: as far as every server accepted) on all servers.
    pub(crate) fn trim(&mut self, idx: Option<usize>) -> Result<(), CompactionErr> {
        let Some(trimmable) = self.trimmable_idx() else {
            let leader = self.storage.promise().pid;
            return Err(CompactionErr::NotCurrentLeader(if leader == self.pid {
                0
            } else {
                leader
            }));
        };
        let compacted = self.storage.compacted_idx();
        let idx = idx.unwrap_or(trimmable);
        if idx < compacted {
            return Err(CompactionErr::TrimmedIndex(compacted));
        }
        if idx > trimmable {
            return Err(CompactionErr::NotAllDecided(trimmable));
        }
        if idx > compacted {
            self.trim_local(idx);
        }
        self.send_compaction(Compaction::Trim(idx));
        Ok(())
    }

    /// Folds the decided entries below `idx` (default: the decided index) into the snapshot,
    /// here and, unless `local_only`, on the other servers.
    pub(crate) fn snapshot(
        &mut self,
        idx: Option<usize>,
        local_only: bool,
    ) -> Result<(), CompactionErr> {
        if !T::Snapshot::use_snapshots() {
            return self.trim(idx);
        }
        let decided = self.storage.decided_idx().min(self.storage.log_end());
        let compacted = self.storage.compacted_idx();
        let idx = idx.unwrap_or(decided);
        if idx > decided {
            return Err(CompactionErr::UndecidedIndex(self.storage.decided_idx()));
        }
        if idx < compacted {
            return Err(CompactionErr::TrimmedIndex(compacted));
        }
        if idx > compacted && !self.defer_compaction(idx) {
            self.snapshot_local(idx);
        }
        if !local_only {
            self.send_compaction(Compaction::Snapshot(Some(idx)));
        }
        Ok(())
    }

    fn send_compaction(&mut self, compaction: Compaction) {
        let n = self.storage.promise();
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.send(to, PaxosMsg::Compaction(CompactionReq { n, compaction }));
        }
    }

    fn trim_local(&mut self, idx: usize) {
        self.cancel_migration();
        let mut ops = vec![StorageOp::Trim(idx), StorageOp::SetCompactedIdx(idx)];
        if T::Snapshot::use_snapshots() && self.storage.snapshot().is_some() {
            ops.push(StorageOp::SetSnapshot(None));
        }
        self.storage.write(ops, "trim");
    }

    fn snapshot_local(&mut self, idx: usize) {
        if !self.has_decided_base() {
            // Our prefix is compacted without a snapshot (trimmed, or a predecessor's log we
            // never received): a snapshot of the rest would pass for the whole log. Trim instead.
            self.storage.write(
                vec![StorageOp::Trim(idx), StorageOp::SetCompactedIdx(idx)],
                "snapshot_without_base",
            );
            return;
        }
        let snapshot = self.decided_snapshot(idx);
        self.storage.write(
            vec![
                StorageOp::SetSnapshot(Some(snapshot)),
                StorageOp::Trim(idx),
                StorageOp::SetCompactedIdx(idx),
            ],
            "snapshot",
        );
        self.stats.snapshots_taken += 1;
    }

    /// A compaction requested by `from`. A trim comes from our leader; a snapshot from anyone.
    /// Each compacts only what we decided ourselves.
    pub(super) fn handle_compaction(&mut self, from: NodeId, c: CompactionReq) {
        let decided = self.storage.decided_idx().min(self.storage.log_end());
        let compacted = self.storage.compacted_idx();
        match c.compaction {
            Compaction::Trim(idx) => {
                let from_our_leader = c.n == self.storage.promise() && c.n.pid == from;
                let idx = idx.min(decided);
                if from_our_leader && idx > compacted {
                    self.trim_local(idx);
                }
            }
            Compaction::Snapshot(idx) => {
                let idx = idx.unwrap_or(decided).min(decided);
                if T::Snapshot::use_snapshots() && idx > compacted && !self.defer_compaction(idx) {
                    self.snapshot_local(idx);
                }
            }
        }
    }
}
