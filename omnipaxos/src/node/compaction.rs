//! Compaction: trimming the log, and folding a decided prefix into a snapshot.
//!
//! * **Trim** (leader only) discards the entries below an index that every server has
//!   *decided* (not merely accepted: a follower that accepted entries without learning they
//!   were decided would otherwise be synced past them) and holds (no server still pulling its
//!   prefix), so no server can ever need them again; the followers trim too. The snapshot, if
//!   any, goes with them: reads show `Trimmed(idx)`.
//! * **Snapshot** (any server) folds decided entries into `T::Snapshot` (`create`, then `merge`
//!   into the existing snapshot) and drops them; unless local, the others do the same.
//! * A prefix still being pulled (a server that joined) is never compacted: compaction is
//!   refused ([`CompactionErr::PendingPrefix`]) until it is here.
//!
//! A stop sign is never compacted: compaction stops at the last entry. For entry types without
//! snapshots, `snapshot` trims, under the rules of trim.

use super::{
    core::Core,
    role::{sync, Role},
    wire::compaction::{Compaction, CompactionMsg},
};
use crate::{
    errors::CompactionErr,
    storage::{Entry, Snapshot, Storage, StorageOp},
    util::NodeId,
};

/// Trims the log below `idx` (default: as far as every server holds it decided) everywhere.
pub(crate) fn trim<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    role: &Role<T>,
    idx: Option<usize>,
) -> Result<(), CompactionErr> {
    let Some(trimmable) = role.leader().and_then(|l| l.trimmable(core)) else {
        let leader = core.log.promise().pid;
        return Err(CompactionErr::NotCurrentLeader(if leader == core.pid {
            0
        } else {
            leader
        }));
    };
    let pending = core.log.record().pending_below;
    let compacted = core.log.compacted_idx();
    let idx = idx.unwrap_or(trimmable);
    if idx < compacted {
        return Err(CompactionErr::TrimmedIndex(compacted));
    }
    if pending > 0 && idx > compacted {
        return Err(CompactionErr::PendingPrefix(pending));
    }
    if idx > trimmable {
        return Err(CompactionErr::NotAllDecided(trimmable));
    }
    if idx > compacted {
        trim_local(core, idx);
    }
    send(core, Compaction::Trim(idx));
    Ok(())
}

/// Folds the decided entries below `idx` (default: the decided index) into the snapshot, here
/// and, unless `local_only`, on the other servers.
pub(crate) fn snapshot<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    role: &Role<T>,
    idx: Option<usize>,
    local_only: bool,
) -> Result<(), CompactionErr> {
    if !T::Snapshot::use_snapshots()
        || core.log.compacted_idx() > 0
            && !sync::has_decided_base(core)
            && core.log.record().pending_below == 0
    {
        // No snapshot can be made (entries without snapshots, or a log trimmed before: a
        // snapshot of the rest would pass for the whole log): this trims, under trim's rules.
        return trim(core, role, idx);
    }
    let decided = core.decided_entries();
    let compacted = core.log.compacted_idx();
    let pending = core.log.record().pending_below;
    let idx = idx.unwrap_or(decided);
    if idx > decided {
        return Err(CompactionErr::UndecidedIndex(core.log.decided_idx()));
    }
    if idx < compacted {
        return Err(CompactionErr::TrimmedIndex(compacted));
    }
    if pending > 0 && idx > compacted {
        return Err(CompactionErr::PendingPrefix(pending));
    }
    if idx > compacted {
        snapshot_local(core, idx);
    }
    if !local_only {
        send(core, Compaction::Snapshot(Some(idx)));
    }
    Ok(())
}

fn send<T: Entry, B: Storage<T>>(core: &mut Core<T, B>, compaction: Compaction) {
    let n = core.log.promise();
    core.broadcast(CompactionMsg { n, compaction });
}

fn trim_local<T: Entry, B: Storage<T>>(core: &mut Core<T, B>, idx: usize) {
    let mut ops = vec![StorageOp::Trim(idx), StorageOp::SetCompactedIdx(idx)];
    if core.log.has_snapshot() {
        ops.push(StorageOp::SetSnapshot(None));
    }
    core.log.stage_all(ops);
}

fn snapshot_local<T: Entry, B: Storage<T>>(core: &mut Core<T, B>, idx: usize) {
    if !sync::has_decided_base(core) {
        // Our prefix was trimmed without a snapshot: a snapshot of the rest would pass for the
        // whole log, and trimming here could take entries another server still needs. Nothing.
        return;
    }
    let snapshot = sync::decided_snapshot(core, idx);
    core.log.stage_all([
        StorageOp::SetSnapshot(Some(snapshot)),
        StorageOp::Trim(idx),
        StorageOp::SetCompactedIdx(idx),
    ]);
    core.stats.snapshots_taken += 1;
}

/// A compaction requested by `from`: a trim comes from our leader, a snapshot from anyone.
/// Each compacts only what we decided ourselves, and nothing while we still pull our prefix.
pub(crate) fn handle<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    from: NodeId,
    c: CompactionMsg,
) {
    let decided = core.decided_entries();
    let compacted = core.log.compacted_idx();
    if core.log.record().pending_below > 0 {
        return;
    }
    match c.compaction {
        Compaction::Trim(idx) => {
            let from_our_leader = c.n == core.log.promise() && c.n.pid == from;
            let idx = idx.min(decided);
            if from_our_leader && idx > compacted {
                trim_local(core, idx);
            }
        }
        Compaction::Snapshot(idx) => {
            let idx = idx.unwrap_or(decided).min(decided);
            if T::Snapshot::use_snapshots() && idx > compacted {
                snapshot_local(core, idx);
            }
        }
    }
}
