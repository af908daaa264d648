//! Transfers: the entries and snapshots a pull receives, driving the pulls (requests to the
//! sources, timeouts), and what completes them: a joiner's pending prefix filled, or a
//! straggler's missing entries delivered as entries and its stop sign decided.

use super::{
    pull::{Pull, Request},
    Pulling, Succession,
};
use crate::{
    ballot_leader_election::Ballot,
    node::{
        core::{Core, Note},
        record::Stop,
        role::sync,
        wire::succession::SuccessionMsg,
    },
    storage::{Entry, Snapshot, Storage, StorageOp},
    util::NodeId,
};

impl<T: Entry> Succession<T> {
    pub(super) fn handle_entries<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: usize,
        entries: Vec<T>,
    ) {
        let n = entries.len();
        if n == 0 {
            return;
        }
        let taken = match &mut self.pulling {
            Some(Pulling::Prefix { pull, .. }) => {
                let part = T::Snapshot::create(&entries);
                pull.receive(from, a, n, part)
            }
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => {
                pull.receive(from, a, n, entries)
            }
            None => false,
        };
        if taken {
            core.stats.migrated_entries += n as u64;
        }
        self.drive(core);
    }

    pub(super) fn handle_snapshot<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        upto: usize,
        snapshot: T::Snapshot,
    ) {
        if !T::Snapshot::use_snapshots() || upto == 0 {
            return;
        }
        match &mut self.pulling {
            Some(Pulling::Prefix { pull, base, .. }) if pull.snapshot_asked_from(from) => {
                if upto <= pull.from || base.as_ref().is_some_and(|(u, _)| *u >= upto) {
                    pull.no_snapshot(from);
                } else if upto < pull.end {
                    // It covers the start of what we pull: the parts after it merge into it.
                    pull.covered_up_to(upto);
                    *base = Some((upto, snapshot));
                } else if upto >= core.log.compacted_idx() && upto <= core.decided_entries() {
                    // It covers all we pull and more of what we decided (the source compacted
                    // past it): it replaces our log up to its end (decided entries only: our
                    // undecided ones stay as the round we accept in put them).
                    let mut ops = vec![StorageOp::SetSnapshot(Some(snapshot))];
                    if core.log.compacted_idx() < upto {
                        ops.extend([StorageOp::Trim(upto), StorageOp::SetCompactedIdx(upto)]);
                    }
                    if core.log.decided_idx() < upto {
                        ops.push(StorageOp::SetDecidedIndex(upto));
                    }
                    // (Decided entries only: nothing any room placed is replaced.)
                    core.log.stage_all(ops);
                    core.log.set_record(|r| r.pending_below = 0);
                    core.stats.snapshot_installs += 1;
                    core.stats.migrations_completed += 1;
                    self.pulling = None;
                    return;
                } else {
                    // Beyond what we decided: asked again once we decided more.
                    pull.no_snapshot(from);
                }
            }
            Some(Pulling::Tail { pull, stop, .. })
                if pull.snapshot_asked_from(from) && upto > pull.end =>
            {
                // The application compacted past the end of our configuration: the entries we
                // lack exist only inside snapshots that reach into the next configuration. We
                // decide the stop with our log up to it pending: the next configuration's
                // sync brings a snapshot that covers it.
                let stop = stop.clone();
                self.pulling = None;
                self.seal_pending(core, stop);
                return;
            }
            Some(Pulling::Tail { pull, .. }) if pull.snapshot_asked_from(from) => {
                // The application compacted the entries we lack into a snapshot: it stands in
                // for them.
                if upto > core.decided_entries() && upto <= pull.end {
                    let from_idx = core.decided_entries();
                    if let Ok(Some(ops)) = sync::snapshot_ops(
                        core,
                        crate::storage::SnapshotType::Complete(snapshot),
                        0,
                        upto,
                    ) {
                        core.log.stage_all(ops);
                        core.stats.snapshot_installs += 1;
                        core.notes.push(Note::Replaced {
                            round: Ballot::default(),
                            prev_round: core.log.accepted_round(),
                            from: from_idx,
                        });
                    }
                    if let Some(Pulling::Tail { pull, .. }) = &mut self.pulling {
                        pull.covered_up_to(upto);
                    }
                } else {
                    pull.no_snapshot(from);
                }
            }
            _ => {}
        }
        self.drive(core);
    }

    /// Sends the requests the pull wants, and completes it when it has everything.
    pub(super) fn drive<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Some(Pulling::Tail {
            pull,
            trimmed_below,
            ..
        }) = &mut self.pulling
        {
            // What we hold meanwhile (decided, or a pending prefix) is not pulled.
            let held = core.decided_entries().max(core.log.compacted_idx());
            if held > pull.from {
                pull.covered_up_to(held.min(pull.end));
            }
            let t = *trimmed_below;
            if t > pull.from && t <= pull.end && t > core.decided_entries() {
                // The application trimmed the entries we lack: we take them as trimmed too.
                let from_idx = core.decided_entries();
                core.log.stage_all([
                    StorageOp::SetSnapshot(None),
                    StorageOp::Trim(t),
                    StorageOp::SetCompactedIdx(t),
                    StorageOp::SetDecidedIndex(t),
                ]);
                core.notes.push(Note::Replaced {
                    round: Ballot::default(),
                    prev_round: core.log.accepted_round(),
                    from: from_idx,
                });
                pull.covered_up_to(t);
            }
        }
        let now = core.now;
        let requests = match &mut self.pulling {
            Some(Pulling::Prefix { pull, .. }) => pull.assign(now),
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => pull.assign(now),
            None => return,
        };
        for (to, r) in requests {
            let m = match r {
                Request::Entries { from, to } => SuccessionMsg::Pull { from, to },
                Request::Snapshot => SuccessionMsg::PullSnapshot,
            };
            core.send(to, m);
        }
        let complete = match &self.pulling {
            Some(Pulling::Prefix { pull, .. }) => pull.complete(),
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => pull.complete(),
            None => false,
        };
        if complete {
            match self.pulling.take() {
                Some(Pulling::Prefix { pull, base, .. }) => self.finish_prefix(core, pull, base),
                Some(Pulling::Tail { pull, stop, .. }) => self.finish_tail(core, pull, stop),
                Some(Pulling::Catchup { pull }) => self.finish_catchup(core, pull),
                None => {}
            }
        }
    }

    pub(super) fn finish_prefix<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pull: Pull<T::Snapshot>,
        base: Option<(usize, T::Snapshot)>,
    ) {
        let end = pull.end;
        let mut full = base.map(|(_, s)| s);
        for (_, _, part) in pull.into_parts() {
            match full.as_mut() {
                Some(f) => f.merge(part),
                None => full = Some(part),
            }
        }
        let pending = core.log.record().pending_below;
        if pending != end || core.log.compacted_idx() != end {
            // Something else brought the prefix meanwhile (a snapshot sync).
            core.log.set_record(|r| r.pending_below = 0);
            return;
        }
        let full = full.unwrap_or_else(|| T::Snapshot::create(&[]));
        core.log.stage(StorageOp::SetSnapshot(Some(full)));
        core.log.set_record(|r| r.pending_below = 0);
        core.stats.migrations_completed += 1;
    }

    pub(super) fn finish_tail<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pull: Pull<Vec<T>>,
        stop: Stop,
    ) {
        let from = pull.from;
        if core.decided_entries() > from || core.log.compacted_idx() > from {
            // Our log moved meanwhile; pull again from where it is.
            self.learned = None;
            self.learn_stop(core, stop);
            return;
        }
        let mut entries = Vec::with_capacity(stop.end - from);
        for (_, _, part) in pull.into_parts() {
            entries.extend(part);
        }
        core.log.stage_all([
            StorageOp::AppendOnPrefix(from, entries),
            StorageOp::SetStopsign(Some(stop.ss.clone())),
            StorageOp::SetDecidedIndex(stop.end + 1),
        ]);
        core.notes.push(Note::Replaced {
            round: Ballot::default(),
            prev_round: core.log.accepted_round(),
            from,
        });
        self.learned = None;
    }

    pub(super) fn finish_catchup<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pull: Pull<Vec<T>>,
    ) {
        let (from, end) = (pull.from, pull.end);
        if core.log.log_end() >= end || core.decided_entries().max(core.log.compacted_idx()) != from
        {
            // A leader's sync brought it meanwhile.
            return;
        }
        let mut entries = Vec::with_capacity(end - from);
        for (_, _, part) in pull.into_parts() {
            entries.extend(part);
        }
        core.log.stage_all([
            StorageOp::AppendOnPrefix(from, entries),
            StorageOp::SetDecidedIndex(end),
        ]);
        core.stats.migrations_completed += 1;
    }

    /// Decides the stop sign of our configuration with the log before it pending (see
    /// `handle_snapshot`).
    pub(super) fn seal_pending<B: Storage<T>>(&mut self, core: &mut Core<T, B>, stop: Stop) {
        let from = core.decided_entries();
        core.log.stage_all([
            StorageOp::SetSnapshot(None),
            StorageOp::Trim(stop.end),
            StorageOp::SetCompactedIdx(stop.end),
            // (Undecided entries of ours beyond the end go.)
            StorageOp::AppendOnPrefix(stop.end, Vec::new()),
            StorageOp::SetStopsign(Some(stop.ss.clone())),
            StorageOp::SetDecidedIndex(stop.end + 1),
        ]);
        core.log.set_record(|r| r.pending_below = stop.end);
        core.notes.push(Note::Replaced {
            round: Ballot::default(),
            prev_round: core.log.accepted_round(),
            from,
        });
        self.learned = None;
    }
}
