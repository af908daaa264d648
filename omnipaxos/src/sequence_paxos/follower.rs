//! The follower's handlers: promise, synchronise, accept, decide.

use super::{sync::PeerLog, Phase, SequencePaxos};
use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{
        AcceptDecide, AcceptStopSign, AcceptSync, Accepted, Decide, ForwardedRuns, NotAccepted,
        PaxosMsg, Prepare, PrepareReq, Promise, ResyncReq,
    },
    storage::{Entry, StopSign, Storage, StorageOp},
    util::NodeId,
};

/// How a message's ballot relates to our promise.
enum Standing {
    /// Addressed in our promised ballot, in which we accepted already (an `AcceptSync` of it was
    /// applied). Our log is then a prefix of the leader's and is only ever extended: never cut,
    /// whatever the order in which the leader's messages arrive.
    Synced,
    /// Our promised ballot, but we have not applied its `AcceptSync` yet.
    Promised,
    /// Not our ballot (answered already).
    Other,
}

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    /// Classifies a leader's message in ballot `n` from `from`, answering one that is not for
    /// our ballot: a lower ballot learns our promise; a higher one is asked for a `Prepare`.
    fn standing(&mut self, from: NodeId, n: Ballot) -> Standing {
        let prom = self.storage.promise();
        if n.pid != from {
            return Standing::Other;
        }
        if n < prom {
            self.send(from, PaxosMsg::NotAccepted(NotAccepted { n, n_prom: prom }));
            Standing::Other
        } else if n > prom {
            self.send(from, PaxosMsg::PrepareReq(PrepareReq { n, n_prom: prom }));
            Standing::Other
        } else if self.storage.accepted_round() == n {
            self.phase = Phase::Accept;
            Standing::Synced
        } else {
            Standing::Promised
        }
    }

    pub(super) fn handle_prepare(&mut self, from: NodeId, p: Prepare) {
        let prom = self.storage.promise();
        if p.n.pid != from {
            return;
        }
        if p.n < prom {
            self.send(
                from,
                PaxosMsg::NotAccepted(NotAccepted {
                    n: p.n,
                    n_prom: prom,
                }),
            );
            return;
        }
        if let Some(l) = self.leader.take() {
            self.step_down(*l);
        }
        if p.n > prom {
            self.storage.set_promise(p.n);
        }
        self.forwarder.follow(p.n);
        let na = self.storage.accepted_round();
        // Having accepted in this ballot already (the leader re-prepares us), we stay in its
        // accept phase: our log can only be extended in it.
        self.phase = if na == p.n {
            Phase::Accept
        } else {
            Phase::Prepare
        };
        let la = self.storage.accepted_idx();
        // Report our log beyond the leader's only if it may be more up to date.
        let leader_log = PeerLog {
            decided: p.decided_idx,
        };
        let log_sync = if na > p.n_accepted {
            Some(Box::new(self.log_sync_for(p.decided_idx, leader_log)))
        } else if na == p.n_accepted && la > p.accepted_idx {
            Some(Box::new(self.log_sync_for(p.accepted_idx, leader_log)))
        } else {
            None
        };
        // The leader may lack the runs of forwarded entries it holds (it restarted): ours of the
        // entries it shares with us are the same.
        let log_end = self.storage.log_end();
        let runs_end = p.runs_known_from.min(log_end);
        let runs_from = self
            .storage
            .decided_idx()
            .min(log_end)
            .saturating_sub(self.runs_horizon())
            .min(runs_end);
        let runs = self.origins.runs_in(runs_from, runs_end);
        let promise = Promise {
            n: p.n,
            n_accepted: na,
            decided_idx: self.reported_decided(),
            accepted_idx: la,
            log_sync,
            forward_session: self.forwarder.session_for(p.n),
            runs,
            runs_end,
        };
        self.send(from, PaxosMsg::Promise(promise));
    }

    /// We led, and a higher ballot took over: what we never sent goes to the new leader.
    fn step_down(&mut self, l: super::leader::LeaderState<T>) {
        let (unsent, orphans, stopsign) = l.into_unsent();
        for e in unsent {
            self.forwarder.push(e);
        }
        self.forwarder.adopt_orphans(orphans);
        if self.storage.stopsign().is_none() && self.pending_stopsign.is_none() {
            self.pending_stopsign = stopsign;
        }
    }

    pub(super) fn handle_accept_sync(&mut self, from: NodeId, a: AcceptSync<T>) {
        match self.standing(from, a.n) {
            Standing::Other => return,
            Standing::Synced => {
                // A repeated or resent sync in the same ballot only extends our log (after
                // installing the snapshot of a decided prefix we lack, if it has one).
                let s = *a.log_sync;
                if let Some(snap) = s.decided_snapshot {
                    match self.snapshot_ops(snap, s.snapshot_from, s.sync_idx) {
                        Err(()) => {
                            self.request_resync();
                            return;
                        }
                        Ok(Some(ops)) => {
                            self.storage.write(ops, "install_snapshot");
                            self.origins.replace_prefix(s.sync_idx, &s.forwarded);
                            self.stats.snapshot_installs += 1;
                            self.check_migration_superseded();
                        }
                        Ok(None) => {}
                    }
                } else if let Some(ops) = self.compacted_prefix_ops(s.compacted_prefix, s.sync_idx)
                {
                    self.storage.write(ops, "adopt_compacted_prefix");
                    self.origins.replace_prefix(s.sync_idx, &s.forwarded);
                    self.check_migration_superseded();
                }
                let extended = self.extend_in_ballot(
                    s.sync_idx,
                    s.suffix,
                    s.stopsign,
                    a.decided_idx,
                    &s.forwarded,
                );
                if !extended {
                    return;
                }
            }
            Standing::Promised => {
                let Some(plan) = self.plan_log_sync(*a.log_sync) else {
                    self.request_resync();
                    return;
                };
                let mut extra = vec![StorageOp::SetAcceptedRound(a.n)];
                let new_decided = a.decided_idx.min(plan.accepted);
                if new_decided > self.storage.decided_idx() {
                    extra.push(StorageOp::SetDecidedIndex(new_decided));
                }
                self.apply_log_sync(plan, extra, "accept_sync");
                self.phase = Phase::Accept;
            }
        }
        self.resync_sent_at = None;
        self.accepted_owed = true;
        self.forwarder.open_session(a.n, a.forward_session);
        let batch = self.batch_size;
        self.flush_forwards(batch, true);
        self.ask_for_new_ballot(false);
        self.forward_stopsign();
    }

    pub(super) fn handle_accept_decide(&mut self, from: NodeId, a: AcceptDecide<T>) {
        match self.standing(from, a.n) {
            Standing::Synced => {
                if self.extend_in_ballot(a.start_idx, a.entries, None, a.decided_idx, &a.forwarded)
                {
                    self.accepted_owed = true;
                }
            }
            Standing::Promised => self.request_resync(),
            Standing::Other => {}
        }
    }

    pub(super) fn handle_accept_stopsign(&mut self, from: NodeId, a: AcceptStopSign) {
        match self.standing(from, a.n) {
            Standing::Synced => {
                let decided = self.storage.decided_idx();
                let none = ForwardedRuns::default();
                if self.extend_in_ballot(a.idx, Vec::new(), Some(a.ss), decided, &none) {
                    self.accepted_owed = true;
                }
            }
            Standing::Promised => self.request_resync(),
            Standing::Other => {}
        }
    }

    pub(super) fn handle_decide(&mut self, from: NodeId, d: Decide) {
        if let Standing::Synced = self.standing(from, d.n) {
            let new_decided = d.decided_idx.min(self.storage.accepted_idx());
            if new_decided > self.storage.decided_idx() {
                self.storage.set_decided_idx(new_decided);
            }
        }
    }

    /// Extends our log, synchronised in the leader's ballot, with `entries` starting at `start`
    /// (and a stop sign after them), and raises the decided index to `decided` as far as our log
    /// goes. Within one ballot our log is a prefix of the leader's, so what overlaps is already
    /// ours. Returns false on a gap (then a resync is requested).
    fn extend_in_ballot(
        &mut self,
        start: usize,
        mut entries: Vec<T>,
        stopsign: Option<StopSign>,
        decided: usize,
        forwarded: &ForwardedRuns,
    ) -> bool {
        let log_end = self.storage.log_end();
        if start > log_end {
            self.request_resync();
            return false;
        }
        let mut ops = Vec::with_capacity(3);
        let mut new_end = log_end;
        let end = start.saturating_add(entries.len());
        if self.storage.stopsign().is_none() && end > log_end {
            entries.drain(..log_end - start);
            new_end = end;
            ops.push(StorageOp::AppendEntries(entries));
        }
        let mut new_accepted = new_end + usize::from(self.storage.stopsign().is_some());
        if let Some(ss) = stopsign {
            if self.storage.stopsign().is_none() && end == new_end {
                ops.push(StorageOp::SetStopsign(Some(ss)));
                new_accepted = new_end + 1;
            }
        }
        let new_decided = decided.min(new_accepted);
        if new_decided > self.storage.decided_idx() {
            ops.push(StorageOp::SetDecidedIndex(new_decided));
        }
        self.storage.write(ops, "accept_entries");
        if new_end > log_end {
            self.origins.appended(log_end, new_end, forwarded);
        }
        true
    }

    /// Asks our leader to synchronise us again (at most once per election timeout).
    pub(super) fn request_resync(&mut self) {
        let prom = self.storage.promise();
        let recently = self
            .resync_sent_at
            .is_some_and(|t| self.now < t + self.election_timeout);
        if recently || prom.pid == self.pid || prom == Ballot::default() {
            return;
        }
        self.resync_sent_at = Some(self.now);
        let req = ResyncReq {
            n: prom,
            n_accepted: self.storage.accepted_round(),
            accepted_idx: self.storage.accepted_idx(),
            decided_idx: self.reported_decided(),
        };
        self.send(prom.pid, PaxosMsg::ResyncReq(req));
    }

    /// Resend timeout of a follower in the accept phase.
    pub(super) fn follower_resend(&mut self) {
        if self.decided_reported < self.storage.decided_idx() {
            // Tell the leader what we decided, so it stops resending decides.
            self.accepted_owed = true;
        }
    }

    /// Queues the coalesced `Accepted` owed to the leader.
    pub(super) fn follower_build_outgoing(&mut self) {
        if !self.accepted_owed || self.phase != Phase::Accept {
            return;
        }
        self.accepted_owed = false;
        let prom = self.storage.promise();
        let decided_idx = self.storage.decided_idx();
        self.decided_reported = decided_idx;
        let acc = Accepted {
            n: prom,
            accepted_idx: self.storage.accepted_idx(),
            decided_idx,
        };
        self.send(prom.pid, PaxosMsg::Accepted(acc));
    }
}
