//! The follower: promise, synchronise, accept, decide.
//!
//! ```text
//!                 Prepare(n)                AcceptSync(n)
//!   (any) ──────────────────> Promised(n) ───────────────> Accepting(n) ──┐ AcceptDecide,
//!     ^  restart: Recover       │  AcceptDecide of n:      ^  │ gap        │ AcceptStopSign,
//!     │  (PrepareReq to all     │  ResyncReq               │  └─ResyncReq  │ Decide: extend
//!     │   until a Prepare)      v                          └───────────────┘
//! ```
//!
//! The phase is not stored: a follower *accepts* in its promised ballot exactly when its
//! accepted round is that ballot (an `AcceptSync` of it was applied). In that ballot its log is
//! a prefix of the leader's and is only ever extended, never cut, whatever the order in which
//! the leader's messages arrive (a duplicated or late `AcceptSync` cannot undo what came after).

use super::{
    super::{
        core::Core,
        wire::role::{
            AcceptDecide, AcceptStopSign, AcceptSync, Accepted, Decide, NotAccepted, Prepare,
            PrepareReq, Promise, ResyncReq, RoleMsg, SyncPrefix,
        },
    },
    sync,
};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp},
    util::NodeId,
};

/// A follower's own state (the rest is its promise and log, in storage).
#[derive(Clone, Debug, Default)]
pub(crate) struct Follower {
    /// Rebuilt from storage that held a promise (or asked to recover): it asks its peers for a
    /// `Prepare` every resend timeout until one comes.
    recovering: bool,
    /// An `Accepted` is owed to the leader; sent (once, coalesced) at the next take.
    accepted_owed: bool,
    /// The decided index in the last `Accepted` sent.
    decided_reported: usize,
    /// When the last `ResyncReq` was sent. One goes at most every election timeout (a round
    /// trip takes less than that, or the election would not work either), so a burst of
    /// out-of-order messages costs one resync.
    resync_sent_at: Option<u64>,
}

/// How a leader's message in ballot `n` relates to our promise.
pub(crate) enum Standing {
    /// Our promised ballot, and we accept in it (its `AcceptSync` was applied).
    Synced,
    /// Our promised ballot, but we have not applied its `AcceptSync` yet.
    Promised,
    /// Not our ballot (answered already).
    Other,
}

/// Classifies a leader's message in ballot `n` from `from`, answering one that is not for our
/// ballot: a lower ballot learns our promise; a higher one is asked for a `Prepare`.
pub(crate) fn standing<T: Entry, B: Storage<T>>(
    core: &mut Core<T, B>,
    from: NodeId,
    n: Ballot,
) -> Standing {
    let prom = core.log.promise();
    if n.pid != from {
        Standing::Other
    } else if n == prom {
        // The common case (a message of the leader we promised) is decided by equality alone.
        if core.log.accepted_round() == n {
            Standing::Synced
        } else {
            Standing::Promised
        }
    } else if n < prom {
        core.send(from, RoleMsg::NotAccepted(NotAccepted { n, n_prom: prom }));
        Standing::Other
    } else {
        core.send(from, RoleMsg::PrepareReq(PrepareReq { n, n_prom: prom }));
        Standing::Other
    }
}

impl Follower {
    /// A follower rebuilt from storage that held a promise: it recovers.
    pub(crate) fn recovering() -> Self {
        Follower {
            recovering: true,
            ..Default::default()
        }
    }

    pub(crate) fn is_recovering(&self) -> bool {
        self.recovering
    }

    /// Asks every peer for a `Prepare` (after a restart, or when asked to recover).
    pub(crate) fn start_recovery<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        self.recovering = true;
        send_prepare_req_to_all(core);
    }

    /// Whether we accept in our promised ballot.
    pub(crate) fn is_accepting<T: Entry, B: Storage<T>>(core: &Core<T, B>) -> bool {
        let prom = core.log.promise();
        prom != Ballot::default() && core.log.accepted_round() == prom
    }

    pub(crate) fn handle_prepare<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        p: Prepare,
    ) {
        let prom = core.log.promise();
        if p.n.pid != from {
            return;
        }
        if p.n < prom {
            core.send(
                from,
                RoleMsg::NotAccepted(NotAccepted {
                    n: p.n,
                    n_prom: prom,
                }),
            );
            return;
        }
        if p.n > prom {
            core.log.stage(StorageOp::SetPromise(p.n));
        }
        self.recovering = false;
        self.accepted_owed = false;
        let na = core.log.accepted_round();
        let la = core.log.accepted_idx();
        // Report our log beyond the leader's only if it may be more up to date.
        let log_sync = if na > p.n_accepted {
            Some(Box::new(sync::log_sync_for(
                core,
                p.decided_idx,
                p.decided_idx,
                None,
            )))
        } else if na == p.n_accepted && la > p.accepted_idx {
            Some(Box::new(sync::log_sync_for(
                core,
                p.accepted_idx,
                p.decided_idx,
                None,
            )))
        } else {
            None
        };
        let promise = Promise {
            n: p.n,
            n_accepted: na,
            decided_idx: sync::reported_decided(core),
            accepted_idx: la,
            log_sync,
            pending_below: core.log.record().pending_below,
        };
        core.send(from, RoleMsg::Promise(promise));
    }

    pub(crate) fn handle_accept_sync<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: AcceptSync<T>,
    ) {
        match standing(core, from, a.n) {
            Standing::Other => return,
            Standing::Synced => {
                // A repeated or resent sync in our ballot only extends our log (after taking
                // the prefix it brings, if we lack it).
                let s = *a.log_sync;
                let prefix_ops = match s.prefix {
                    SyncPrefix::Snapshot { snapshot, from } => {
                        match sync::snapshot_ops(core, snapshot, from, s.sync_idx) {
                            Err(()) => {
                                self.request_resync(core);
                                return;
                            }
                            Ok(Some(ops)) => {
                                core.stats.snapshot_installs += 1;
                                Some(ops)
                            }
                            Ok(None) => None,
                        }
                    }
                    SyncPrefix::Trimmed if core.decided_entries() < s.sync_idx => Some(vec![
                        StorageOp::SetSnapshot(None),
                        StorageOp::Trim(s.sync_idx),
                        StorageOp::SetCompactedIdx(s.sync_idx),
                        StorageOp::SetDecidedIndex(s.sync_idx),
                    ]),
                    _ => None,
                };
                if let Some(ops) = prefix_ops {
                    let from = core.decided_entries().max(core.log.compacted_idx());
                    core.log.stage_all(ops);
                    core.notes.push(super::super::core::Note::Replaced {
                        round: a.n,
                        prev_round: a.n,
                        from,
                    });
                }
                if !self.extend_in_ballot(core, s.sync_idx, s.suffix, s.stopsign, a.decided_idx) {
                    return;
                }
            }
            Standing::Promised => {
                let Some(plan) = sync::plan_log_sync(core, *a.log_sync) else {
                    self.request_resync(core);
                    return;
                };
                sync::apply_log_sync(core, plan, a.n, a.decided_idx);
            }
        }
        self.recovering = false;
        self.resync_sent_at = None;
        self.accepted_owed = true;
    }

    pub(crate) fn handle_accept_decide<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: AcceptDecide<T>,
    ) {
        match standing(core, from, a.n) {
            Standing::Synced => {
                if self.extend_in_ballot(core, a.start_idx, a.entries, None, a.decided_idx) {
                    self.accepted_owed = true;
                }
            }
            Standing::Promised => self.request_resync(core),
            Standing::Other => {}
        }
    }

    pub(crate) fn handle_accept_stopsign<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: AcceptStopSign,
    ) {
        match standing(core, from, a.n) {
            Standing::Synced => {
                let decided = core.log.decided_idx();
                if self.extend_in_ballot(core, a.idx, Vec::new(), Some(a.ss), decided) {
                    self.accepted_owed = true;
                }
            }
            Standing::Promised => self.request_resync(core),
            Standing::Other => {}
        }
    }

    pub(crate) fn handle_decide<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        d: Decide,
    ) {
        if let Standing::Synced = standing(core, from, d.n) {
            let new_decided = d.decided_idx.min(core.log.accepted_idx());
            if new_decided > core.log.decided_idx() {
                core.log.stage(StorageOp::SetDecidedIndex(new_decided));
                // The leader learns what we decided (a trim waits for it).
                self.accepted_owed = true;
            }
        }
    }

    /// Extends our log, synchronised in the leader's ballot, with `entries` starting at `start`
    /// (and a stop sign after them), and raises the decided index to `decided` as far as our
    /// log goes. Within one ballot our log is a prefix of the leader's, so what overlaps is
    /// already ours. Returns false on a gap (then a resync is requested).
    fn extend_in_ballot<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        start: usize,
        mut entries: Vec<T>,
        stopsign: Option<StopSign>,
        decided: usize,
    ) -> bool {
        let log_end = core.log.log_end();
        if start > log_end {
            self.request_resync(core);
            return false;
        }
        let has_ss = core.log.stopsign().is_some();
        let end = start.saturating_add(entries.len());
        let mut new_end = log_end;
        if !has_ss && end > log_end {
            entries.drain(..log_end - start);
            new_end = end;
            core.log.stage(StorageOp::AppendEntries(entries));
        }
        if let Some(ss) = stopsign {
            if !has_ss && end == new_end {
                core.log.stage(StorageOp::SetStopsign(Some(ss)));
            }
        }
        let new_decided = decided.min(core.log.accepted_idx());
        if new_decided > core.log.decided_idx() {
            core.log.stage(StorageOp::SetDecidedIndex(new_decided));
        }
        true
    }

    /// Asks our leader to synchronise us again (at most once per election timeout).
    pub(crate) fn request_resync<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let prom = core.log.promise();
        let recently = self
            .resync_sent_at
            .is_some_and(|t| core.now < t + core.timing.election_timeout);
        if recently || prom.pid == core.pid || prom == Ballot::default() {
            return;
        }
        self.resync_sent_at = Some(core.now);
        let req = ResyncReq {
            n: prom,
            n_accepted: core.log.accepted_round(),
            accepted_idx: core.log.accepted_idx(),
            decided_idx: sync::reported_decided(core),
        };
        core.send(prom.pid, RoleMsg::ResyncReq(req));
    }

    /// The leader election chose `b`, another node: make sure it prepares us.
    pub(crate) fn follow<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>, b: Ballot) {
        let prom = core.log.promise();
        if self.recovering || b > prom {
            // Ask the new leader to prepare us, in case its Prepare was lost (also while we
            // still accept in an older ballot: its leader is gone). Every election round until
            // we promised it.
            core.send(
                b.pid,
                RoleMsg::PrepareReq(PrepareReq { n: b, n_prom: prom }),
            );
        }
    }

    /// Every resend timeout.
    pub(crate) fn resend<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if self.recovering {
            send_prepare_req_to_all(core);
        } else if Self::is_accepting(core) && self.decided_reported < core.log.decided_idx() {
            // Tell the leader what we decided, so it stops resending decides.
            self.accepted_owed = true;
        }
    }

    /// The transport reconnected to our leader: ask to be synchronised at once.
    pub(crate) fn reconnected<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pid: NodeId,
    ) {
        if core.log.promise().pid == pid {
            self.resync_sent_at = None;
            self.request_resync(core);
        }
    }

    /// Queues the coalesced `Accepted` owed to the leader (after the log was flushed).
    pub(crate) fn build_outgoing<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if !self.accepted_owed || !Self::is_accepting(core) {
            return;
        }
        self.accepted_owed = false;
        let prom = core.log.promise();
        let decided_idx = core.log.decided_idx();
        self.decided_reported = decided_idx;
        let acc = Accepted {
            n: prom,
            accepted_idx: core.log.accepted_idx(),
            decided_idx,
            pending_below: core.log.record().pending_below,
        };
        core.send(prom.pid, RoleMsg::Accepted(acc));
    }
}

/// Asks every peer to prepare us (their leader answers).
pub(crate) fn send_prepare_req_to_all<T: Entry, B: Storage<T>>(core: &mut Core<T, B>) {
    let prom = core.log.promise();
    let n = Ballot {
        config_id: core.config_id(),
        ..prom
    };
    core.broadcast(RoleMsg::<T>::PrepareReq(PrepareReq { n, n_prom: prom }));
}
