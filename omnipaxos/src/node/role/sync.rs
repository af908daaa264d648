//! Log syncs: bringing another node's log to ours from the point where the two agree
//! ([`log_sync_for`]), and applying one to ours ([`plan_log_sync`], [`apply_log_sync`]).
//!
//! What goes below the sync point, when the receiver lacks part of our prefix:
//!
//! * **a snapshot**, when we compacted into one: a `Complete` one (ours) when the receiver is
//!   behind our compacted prefix, or a `Delta` of the decided entries it lacks when it still
//!   has its base (its decided log up to where we still have entries). The receiver merges a
//!   delta into a snapshot of *its* decided log, its own decided entries after its snapshot
//!   included, so nothing it decided is dropped;
//! * **"trimmed"**, when the application trimmed our log without a snapshot below where the
//!   receiver needs it (only a server that joined after the trim can be there: a trim waits
//!   until every server decided what it removes);
//! * **"pending"**, for a server that joined our configuration and lacks the log of the
//!   configurations before it (entry types with snapshots): we send from where our
//!   configuration's log starts, with the stops before it, and the receiver pulls the old log
//!   from several servers at once (see `succession`).

use super::super::{
    core::{Core, Note},
    record::Start,
    wire::role::{LogSync, SyncPrefix},
};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Snapshot, SnapshotType, Storage, StorageOp},
};

/// Whether we can merge a delta into a snapshot of our decided log: we hold that log as
/// entries, or as a snapshot and entries; not trimmed, not pending.
pub(crate) fn has_decided_base<T: Entry, B: Storage<T>>(core: &Core<T, B>) -> bool {
    core.log.record().pending_below == 0
        && (core.log.compacted_idx() == 0 || core.log.has_snapshot())
}

/// The decided index we tell a leader that syncs us. Without a base for a delta we say 0, so
/// that it sends what it has from the start (a complete snapshot, or its log).
///
/// (A server still pulling its prefix has no base either: it gets a complete snapshot if the
/// leader compacted past where its log starts, else the log from there.)
pub(crate) fn reported_decided<T: Entry, B: Storage<T>>(core: &Core<T, B>) -> usize {
    if T::Snapshot::use_snapshots() && !has_decided_base(core) {
        0
    } else {
        core.log.decided_idx()
    }
}

/// The log from `sync_idx` on, for a node whose log agrees with ours below `sync_idx` and whose
/// decided index is `peer_decided`. `tail` serves entries the leader keeps in memory.
pub(crate) fn log_sync_for<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    sync_idx: usize,
    peer_decided: usize,
    tail: Option<(&std::collections::VecDeque<T>, usize)>,
) -> LogSync<T> {
    let log_end = core.log.log_end();
    let compacted = core.log.compacted_idx();
    let decided = core.decided_entries();
    let sync_idx = sync_idx.min(log_end);
    let snapshots = T::Snapshot::use_snapshots();
    let start = core.log.record().start.index().unwrap_or(0);
    let trimmed = compacted > 0 && !core.log.has_snapshot() && core.log.record().pending_below == 0;
    let (from, prefix) = if snapshots
        && peer_decided < start
        && sync_idx < start
        && compacted <= start
        && !trimmed
    {
        // It lacks the log of the configurations before ours: it pulls that from several
        // servers at once; we send what follows. (Our own prefix may be pending too: it
        // is then not trimmed, only not here yet.)
        let chain = core.log.record().chain.clone();
        (start, SyncPrefix::Pending { chain })
    } else if sync_idx < compacted {
        // Behind our compacted prefix: our snapshot stands in for it, or it was trimmed.
        match (snapshots, core.log.has_snapshot()) {
            (true, true) => {
                let snap = core.log.snapshot().map(SnapshotType::Complete);
                match snap {
                    Some(snapshot) => (compacted, SyncPrefix::Snapshot { snapshot, from: 0 }),
                    None => (compacted, SyncPrefix::Trimmed),
                }
            }
            _ => (compacted, SyncPrefix::Trimmed),
        }
    } else if snapshots
        && compacted > 0
        && core.log.has_snapshot()
        && peer_decided >= compacted
        && peer_decided < decided
        && peer_decided <= sync_idx
    {
        // It lags our decided index but has its decided log up to where we still have entries:
        // the decided entries it lacks go as a delta, to merge into a snapshot of its own
        // decided log.
        let delta = T::Snapshot::create(&entries(core, peer_decided, decided, tail));
        let snapshot = SnapshotType::Delta(delta);
        (
            decided,
            SyncPrefix::Snapshot {
                snapshot,
                from: peer_decided,
            },
        )
    } else {
        (sync_idx, SyncPrefix::Kept)
    };
    LogSync {
        prefix,
        suffix: entries(core, from, log_end, tail),
        sync_idx: from,
        stopsign: core.log.stopsign().cloned(),
    }
}

/// Entries `from..to` of our log, from the leader's in-memory tail when it has them.
fn entries<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    from: usize,
    to: usize,
    tail: Option<(&std::collections::VecDeque<T>, usize)>,
) -> Vec<T> {
    if let Some((tail, tail_start)) = tail {
        if from >= tail_start && to <= tail_start + tail.len() {
            return tail
                .range(from - tail_start..to - tail_start)
                .cloned()
                .collect();
        }
    }
    core.log.entries(from, to)
}

/// A snapshot of our log up to `idx` (decided): our snapshot merged with the entries after
/// it. After a trim without snapshot, it covers what followed the trim.
pub(crate) fn decided_snapshot<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    idx: usize,
) -> T::Snapshot {
    let compacted = core.log.compacted_idx();
    let entries = core.log.entries(compacted, idx.max(compacted));
    match core.log.snapshot() {
        Some(mut s) if compacted > 0 => {
            if !entries.is_empty() {
                s.merge(T::Snapshot::create(&entries));
            }
            s
        }
        _ => T::Snapshot::create(&entries),
    }
}

/// Operations that make our prefix `0..to` the snapshot `snap` (a `Delta` covers `from..to`
/// and is merged into a snapshot of our decided log up to `from`). `Ok(None)`: nothing to
/// do, we decided up to `to` already. `Err`: a delta that does not start at our decided index.
pub(crate) fn snapshot_ops<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    snap: SnapshotType<T>,
    from: usize,
    to: usize,
) -> Result<Option<Vec<StorageOp<T>>>, ()> {
    let decided = core.decided_entries();
    if to <= decided || to <= core.log.compacted_idx() {
        return Ok(None);
    }
    let snapshot = match snap {
        SnapshotType::Complete(s) => s,
        SnapshotType::Delta(d) => {
            if from != decided || !has_decided_base(core) {
                return Err(());
            }
            let mut base = decided_snapshot(core, decided);
            base.merge(d);
            base
        }
    };
    Ok(Some(vec![
        StorageOp::SetSnapshot(Some(snapshot)),
        StorageOp::Trim(to),
        StorageOp::SetCompactedIdx(to),
        StorageOp::SetDecidedIndex(to),
    ]))
}

/// Operations that take our prefix below `to` as trimmed (the sender trimmed it), if we are
/// behind it. Everything below `to` is decided.
fn trimmed_ops<T: Entry>(decided: usize, compacted: usize, to: usize) -> Option<Vec<StorageOp<T>>> {
    if to <= decided.max(compacted) {
        return None;
    }
    Some(vec![
        StorageOp::SetSnapshot(None),
        StorageOp::Trim(to),
        StorageOp::SetCompactedIdx(to),
        StorageOp::SetDecidedIndex(to),
    ])
}

/// A log sync checked against our log, ready to be written.
pub(crate) struct SyncPlan<T: Entry> {
    ops: Vec<StorageOp<T>>,
    /// Where our log changes from: the start of the suffix, or lower where a snapshot or a
    /// trimmed or pending prefix replaces our undecided entries.
    replaced_from: usize,
    /// Our accepted index after (the stop sign counted).
    pub(crate) accepted: usize,
    installs_snapshot: bool,
    /// The prefix below the sync point becomes pending: the start of our log and the stops.
    pending: Option<(usize, Vec<super::super::record::Stop>)>,
}

/// How to make our log `prefix ++ suffix (+ stop sign)`, never touching decided entries.
/// `None` if the sync does not fit our log (it starts beyond our end, is a delta for another
/// decided index, or names a start of our configuration that is not ours).
pub(crate) fn plan_log_sync<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    sync: LogSync<T>,
) -> Option<SyncPlan<T>> {
    let LogSync {
        prefix,
        mut suffix,
        sync_idx,
        stopsign,
    } = sync;
    let mut ops = Vec::with_capacity(8);
    let mut log_end = core.log.log_end();
    let decided = core.decided_entries();
    // Our prefix up to here is final (decided or compacted): keep it.
    let mut keep = decided.max(core.log.compacted_idx());
    let held = keep;
    let mut installs_snapshot = false;
    let mut pending = None;
    match prefix {
        SyncPrefix::Kept => {}
        SyncPrefix::Snapshot { snapshot, from } => {
            if !T::Snapshot::use_snapshots() {
                return None;
            }
            if let Some(snap_ops) = snapshot_ops(core, snapshot, from, sync_idx).ok()? {
                ops.extend(snap_ops);
                log_end = log_end.max(sync_idx);
                keep = sync_idx;
                installs_snapshot = true;
            }
        }
        SyncPrefix::Trimmed => {
            if let Some(t) = trimmed_ops(decided, core.log.compacted_idx(), sync_idx) {
                ops.extend(t);
                log_end = log_end.max(sync_idx);
                keep = sync_idx;
            }
        }
        SyncPrefix::Pending { chain } => {
            let ours = core.config_id();
            let fits = T::Snapshot::use_snapshots()
                && chain
                    .last()
                    .is_some_and(|s| s.next_id() == ours && s.end == sync_idx);
            if !fits {
                return None;
            }
            match core.log.record().start {
                Start::At(s) if s != sync_idx => return None,
                Start::Origin => return None,
                _ => {}
            }
            if decided < sync_idx {
                // We lack the old log (a server that joined): it becomes our pending prefix.
                ops.extend([
                    StorageOp::SetSnapshot(None),
                    StorageOp::Trim(sync_idx),
                    StorageOp::SetCompactedIdx(sync_idx),
                    StorageOp::SetDecidedIndex(sync_idx),
                ]);
                log_end = log_end.max(sync_idx);
                keep = sync_idx;
                pending = Some((sync_idx, chain));
            } else if core.log.record().start == Start::Unknown {
                pending = Some((sync_idx, chain));
            }
        }
    }
    let mut start = sync_idx;
    if start > log_end {
        return None;
    }
    if start < keep {
        let skip = keep - start;
        if skip > suffix.len() {
            // The sync ends before what we hold for sure: only its stop sign could be new,
            // and it cannot be placed.
            return None;
        }
        suffix.drain(..skip);
        start = keep;
    }
    let end = start.checked_add(suffix.len())?;
    if core.log.stopsign_decided() && (end != log_end || stopsign.as_ref() != core.log.stopsign()) {
        // Our configuration's end is decided, stop sign included (which `keep` does not
        // count): a sync may only confirm it. A leader always adopts a decided stop sign, so
        // only a malformed message asks otherwise.
        return None;
    }
    let accepted = end + usize::from(stopsign.is_some());
    ops.push(StorageOp::AppendOnPrefix(start, suffix));
    ops.push(StorageOp::SetStopsign(stopsign));
    let replaced_from = if keep > held { held } else { start };
    Some(SyncPlan {
        ops,
        replaced_from,
        accepted,
        installs_snapshot,
        pending,
    })
}

/// Writes a planned sync accepted in `round`, with the decided index raised to `decided` as
/// far as the new log goes.
pub(crate) fn apply_log_sync<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    plan: SyncPlan<T>,
    round: Ballot,
    decided: usize,
) {
    let SyncPlan {
        ops,
        replaced_from,
        accepted,
        installs_snapshot,
        pending,
    } = plan;
    if let Some((s, chain)) = pending {
        let first_pending = core.log.record().pending_below == 0 && core.decided_entries() < s;
        core.log.set_record(|r| {
            r.start = super::super::record::Start::At(s);
            if first_pending {
                r.pending_below = s;
            }
            for stop in chain {
                r.push_stop(stop);
            }
        });
    }
    let prev_round = core.log.accepted_round();
    core.log.stage_all(ops);
    if round != prev_round {
        core.log.stage(StorageOp::SetAcceptedRound(round));
    }
    let new_decided = decided.min(accepted);
    if new_decided > core.log.decided_idx() {
        core.log.stage(StorageOp::SetDecidedIndex(new_decided));
    }
    if installs_snapshot {
        core.stats.snapshot_installs += 1;
    }
    core.notes.push(Note::Replaced {
        round,
        prev_round,
        from: replaced_from,
    });
}
