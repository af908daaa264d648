//! The leader's prepare phase: take over a ballot, collect promises from a read quorum, adopt
//! the most up-to-date log among them, synchronise every follower that promised, and start
//! accepting.
//!
//! ```text
//!   become_leader(n) ── Prepare ──> followers ── Promise (+ their log beyond ours) ──>
//!   read quorum promised: adopt the highest (accepted round, length) log ── AcceptSync ──>
//!   each follower, from where its log surely agrees with ours ── accept phase
//! ```

use super::{
    super::{
        core::{Core, Note},
        wire::role::{Prepare, Promise, RoleMsg},
    },
    leader::{Leader, LeaderPhase},
    progress::{Progress, PromiseInfo},
    sync,
};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Storage, StorageOp},
    util::NodeId,
};

/// The `Prepare` of ballot `n`, telling how far our log goes.
pub(crate) fn prepare_msg<T: Entry, B: Storage<T>>(core: &Core<T, B>, n: Ballot) -> Prepare {
    Prepare {
        n,
        // Without a base for a delta, ask for what the followers have from the start.
        decided_idx: sync::reported_decided(core),
        n_accepted: core.log.accepted_round(),
        accepted_idx: core.log.accepted_idx(),
    }
}

impl<T: Entry> Leader<T> {
    /// Takes over with ballot `n`: promise it, ask the peers for promises.
    pub(crate) fn start<B: Storage<T>>(core: &mut Core<T, B>, n: Ballot) -> Self {
        core.log.stage(StorageOp::SetPromise(n));
        let mut l = Leader::new(n, &core.peers, core.log.log_end());
        let prep = prepare_msg(core, n);
        core.broadcast(RoleMsg::<T>::Prepare(prep));
        l.check_prepare_quorum(core);
        l
    }

    /// How far a promiser's log surely equals ours (once our log is adopted): its decided
    /// entries (our adopted log holds every decided entry), and more if it accepted in our
    /// round (its log is a prefix of ours) or in that of our adopted log (both are prefixes of
    /// that round's log, up to where the adopted log ends).
    fn shared_with(&self, info: &PromiseInfo) -> usize {
        let LeaderPhase::Accept {
            adopted_round,
            adopted_end,
        } = self.phase
        else {
            return info.decided_idx;
        };
        let same = if info.n_accepted == self.n {
            info.accepted_idx
        } else if info.n_accepted == adopted_round && adopted_round != Ballot::default() {
            info.accepted_idx.min(adopted_end)
        } else {
            0
        };
        same.max(info.decided_idx)
    }

    pub(crate) fn handle_promise<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        p: Promise<T>,
    ) {
        let asked_from = sync::reported_decided(core);
        // A promise must be well-formed for the Prepare we sent: never accepted in a round above
        // the one promised, decided within what it accepted, and (in the prepare phase) its log
        // sync must start no earlier than we asked and end at its accepted index. One that is
        // not would mislead the adoption; it is dropped.
        let mut valid = p.n == self.n && p.n_accepted <= p.n && p.decided_idx <= p.accepted_idx;
        if valid && !self.is_accepting() {
            let own = (core.log.accepted_round(), core.log.accepted_idx());
            valid = match &p.log_sync {
                Some(s) => {
                    let starts_where_asked = s.sync_idx >= asked_from
                        || !matches!(s.prefix, super::super::wire::role::SyncPrefix::Kept);
                    starts_where_asked
                        && s.end() == Some(p.accepted_idx)
                        && (p.n_accepted, p.accepted_idx) > own
                }
                None => (p.n_accepted, p.accepted_idx) <= own,
            };
        }
        if !valid {
            report!(DEBUG, messages::malformed; core = core, from, kind = "Promise",
                "a promise that does not fit our Prepare is dropped");
            return;
        }
        let info = PromiseInfo {
            n_accepted: p.n_accepted,
            decided_idx: p.decided_idx,
            accepted_idx: p.accepted_idx,
            pending_below: p.pending_below,
        };
        match &mut self.phase {
            LeaderPhase::Prepare { syncs } => {
                syncs.retain(|(pid, _)| *pid != from);
                if let Some(s) = p.log_sync {
                    syncs.push((from, *s));
                }
                if let Some(pr) = self.progress_mut(from) {
                    *pr = Progress::Promised(info);
                }
                self.check_prepare_quorum(core);
            }
            LeaderPhase::Accept { .. } => self.sync_follower(core, from, info),
        }
    }

    fn check_prepare_quorum<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if self.is_accepting() {
            return;
        }
        let promised = self
            .progress
            .iter()
            .filter(|(_, p)| p.is_promised())
            .count();
        if core.quorum.is_prepare_quorum(promised + 1) {
            self.adopt_and_accept(core);
        }
    }

    /// End of the prepare phase: adopt the most up-to-date log among the promises (highest
    /// accepted round, then longest), synchronise the followers, and start accepting.
    fn adopt_and_accept<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let LeaderPhase::Prepare { syncs } = &mut self.phase else {
            return;
        };
        let own_round = core.log.accepted_round();
        let mut best_key = (own_round, core.log.accepted_idx());
        let mut best: Option<NodeId> = None;
        let mut max_decided = core.log.decided_idx();
        for (pid, pr) in &self.progress {
            if let Progress::Promised(info) = pr {
                max_decided = max_decided.max(info.decided_idx);
                if (info.n_accepted, info.accepted_idx) > best_key {
                    best_key = (info.n_accepted, info.accepted_idx);
                    best = Some(*pid);
                }
            }
        }
        let mut adopted_round = own_round;
        let mut plan = None;
        if let Some(best) = best {
            let sync = syncs
                .iter()
                .position(|(pid, _)| *pid == best)
                .map(|i| syncs.swap_remove(i).1);
            plan = sync.and_then(|s| sync::plan_log_sync(core, s));
            if plan.is_none() {
                // The most up-to-date log cannot be applied to ours (it does not fit): adopting
                // our own instead could lose decided entries. Count that promise out; it is
                // asked for again.
                if let Some(pr) = self.progress_mut(best) {
                    *pr = Progress::Unpromised;
                }
                return self.check_prepare_quorum(core);
            }
            adopted_round = best_key.0;
        }
        match plan {
            Some(plan) => sync::apply_log_sync(core, plan, self.n, max_decided),
            None => {
                let prev_round = core.log.accepted_round();
                core.log.stage(StorageOp::SetAcceptedRound(self.n));
                let decided = max_decided.min(core.log.accepted_idx());
                if decided > core.log.decided_idx() {
                    core.log.stage(StorageOp::SetDecidedIndex(decided));
                }
                // Our whole log is the adopted one.
                let from = core.log.log_end();
                core.notes.push(Note::Replaced {
                    round: self.n,
                    prev_round,
                    from,
                });
            }
        }
        self.phase = LeaderPhase::Accept {
            adopted_round,
            adopted_end: core.log.log_end(),
        };
        report!(INFO, election::prepare_done; core = core, ballot = self.n.n,
            adopted_from = best.unwrap_or(core.pid), adopted_round = adopted_round.n,
            adopted_end = core.log.log_end(), decided_idx = core.log.decided_idx(),
            "the leader adopted the most up-to-date log of a read quorum: it accepts from now on");
        self.tail.clear();
        self.tail_start = core.log.log_end();
        let promised: Vec<(NodeId, PromiseInfo)> = self
            .progress
            .iter()
            .filter_map(|(pid, pr)| match pr {
                Progress::Promised(info) => Some((*pid, *info)),
                _ => None,
            })
            .collect();
        for (pid, info) in promised {
            self.sync_follower(core, pid, info);
        }
        if core.log.stopsign().is_some() {
            // The adopted log ends with a stop sign: nothing more goes into it.
            std::mem::take(&mut self.batch).give_back(&mut core.notes);
            if let Some(ss) = self.pending_stopsign.take() {
                core.notes.push(Note::StopSignBack(ss));
            }
        }
        self.flush_batch(core);
        self.try_decide(core);
    }

    /// Sends `AcceptSync` to a follower that promised, from the point where its log surely
    /// agrees with ours, and starts streaming to it.
    fn sync_follower<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pid: NodeId,
        info: PromiseInfo,
    ) {
        let sync_idx = self.shared_with(&info).min(core.log.log_end());
        self.start_stream(core, pid, sync_idx, info.decided_idx);
    }
}
