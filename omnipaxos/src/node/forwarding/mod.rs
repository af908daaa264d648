//! The forwarding room: every append made at this node, from the application's call until it is
//! decided or handed back; and, while this node leads, the proposals other nodes forward to it.
//!
//! # The contract
//!
//! An `append` that returned `Ok` at a node that keeps running is eventually **decided**, or
//! **handed back** to the application ([`crate::OmniPaxos::take_returned_appends`]), saying
//! whether it is *certainly not decided* or *may be decided*. The library never decides one
//! append twice on its own (a proposal duplicated or resent by the network is taken once), but
//! it does not try to find out whether an append whose leader was replaced made it: it hands it
//! back. An application that re-appends what may be decided must deduplicate with its own ids
//! (as `omnipaxos_kv` does with its command ids).
//!
//! # How an append travels
//!
//! ```text
//!  append ─> Queued ──(leader of ballot n known; batch full or flushed)──> Sent(n)
//!              ^   (a leader of ours: straight into its batch)             │ Placed{n, idx}
//!              │                                                           v   from the leader
//!              └──── Unplaced: it never reached the log ────────── Placed(round n, idx)
//!                                                                          │
//!        decided: our accepted round is still n and our decided index passed idx ──> (done)
//!        our promise left n while Sent, or a sync of another round replaced the log at idx
//!        ──> handed back as "may be decided"; the configuration stopped while Queued ──>
//!        handed back as "not decided"
//! ```
//!
//! At every resend timeout a follower sends again what the leader has not said it received,
//! and, when the leader has everything but some of it is not known placed, an empty proposal
//! that asks the leader to repeat where it placed them (a lost `Placed` must not leave sent
//! appends, and the buffer they fill, waiting forever).
//!
//! A placed append is decided exactly when a node whose log was accepted in that append's round
//! decides its index: in one round every log is a prefix of that round's leader's log, where the
//! leader placed it. A sync of a newer round that keeps our log below the append's index keeps
//! it in the new round's log too (it is relabelled to that round).
//!
//! # Numbering
//!
//! Proposals are numbered per node *incarnation* (raised each time the node is built on its
//! storage, in the node record), so a leader tells a restarted node's new proposals from old
//! ones of its previous incarnation still in flight, without any change of ballot. Within one
//! leader's ballot, the leader takes proposal `k` of an incarnation only after `0..k`, once.
//!
//! On a *legacy* backend (one that keeps no node record) every incarnation is numbered alike, so
//! a node that restarts forwards only in ballots above the one it promised before (its
//! *fence*); appends it gets meanwhile are handed back as "not decided" at the next resend.

mod outcome;

use super::{
    core::{Core, Origin},
    role::{leader::Leader, Role},
    wire::forward::{ForwardMsg, ForwardStopSign, Placed, PlacedRun, Proposals},
};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage},
    util::NodeId,
};
use std::collections::VecDeque;

/// What the library knows of an append it hands back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AppendOutcome {
    /// It is certainly not decided (it never reached any leader's log, or the configuration
    /// stopped before): append it again if it still matters.
    NotDecided,
    /// It may or may not be decided (its leader was replaced before this node learned its
    /// fate): re-append it only if the application deduplicates.
    Unknown,
}

/// An append handed back to the application, with what is known of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReturnedAppend<T> {
    /// The entry given to `append`.
    pub entry: T,
    /// Whether it may be decided.
    pub outcome: AppendOutcome,
}

/// Handed-back appends kept until taken (the oldest go first).
const RETURNED_KEPT: usize = 10_000;
/// Incarnations per node a leader keeps numbering for.
const INCARNATIONS_KEPT: usize = 4;

/// Proposals sent to the leader of `n`, not placed yet. Invariant: numbered consecutively.
struct Sent<T> {
    n: Ballot,
    /// The first proposal sent in this ballot.
    base: u64,
    entries: VecDeque<(u64, T)>,
    /// All numbered below this reached the leader (no need to send them again).
    received: u64,
}

/// Appends of ours placed at `idx..idx + len` of the log of round `round`. Entries are kept
/// when they may have to be handed back and are not in our log (ours as a follower, or ours as
/// a deposed leader).
struct PlacedOwn<T> {
    round: Ballot,
    first_seq: u64,
    idx: usize,
    len: usize,
    entries: Option<Vec<T>>,
}

/// A follower's numbering in our ballot.
struct Session {
    origin: Origin,
    /// All numbered below this were taken.
    received: u64,
    /// Placements not confirmed by the follower yet.
    placed: Vec<PlacedRun>,
    /// An acknowledgement is owed.
    dirty: bool,
}

pub(crate) struct Forwarding<T> {
    inc: u64,
    next_seq: u64,
    queued: VecDeque<(u64, T)>,
    sent: Option<Sent<T>>,
    placed: VecDeque<PlacedOwn<T>>,
    returned: VecDeque<ReturnedAppend<T>>,
    returned_total: u64,
    /// Placements taken in (sent back in `Proposals::acked`).
    acked: u64,
    /// Leader side: the ballot we take proposals in, and the followers' numbering there.
    intake: Option<(Ballot, Vec<Session>)>,
    /// A reconfiguration requested here, forwarded until our log has a stop sign.
    pending_stopsign: Option<StopSign>,
    /// Legacy backends: forward only in ballots above this.
    fence: Option<Ballot>,
}

impl<T: Entry> Forwarding<T> {
    /// `fence`: on a legacy backend, the promise the node was built with.
    pub(crate) fn new(inc: u64, fence: Option<Ballot>) -> Self {
        Forwarding {
            inc,
            next_seq: 0,
            queued: VecDeque::new(),
            sent: None,
            placed: VecDeque::new(),
            returned: VecDeque::new(),
            returned_total: 0,
            acked: 0,
            intake: None,
            pending_stopsign: None,
            fence,
        }
    }

    /// Appends waiting to be sent.
    pub(crate) fn queued_len(&self) -> usize {
        self.queued.len()
    }

    pub(crate) fn returned_total(&self) -> u64 {
        self.returned_total
    }

    pub(crate) fn has_pending_stopsign(&self) -> bool {
        self.pending_stopsign.is_some()
    }

    fn give_back(&mut self, entry: T, outcome: AppendOutcome) {
        self.returned_total += 1;
        if self.returned.len() == RETURNED_KEPT {
            self.returned.pop_front();
        }
        self.returned.push_back(ReturnedAppend { entry, outcome });
    }

    pub(crate) fn take_returned(&mut self) -> Vec<ReturnedAppend<T>> {
        self.returned.drain(..).collect()
    }

    /// Hands back appends taken from the node this one continues (`start_next_config`).
    pub(crate) fn keep_returned(&mut self, r: Vec<ReturnedAppend<T>>) {
        for a in r {
            self.give_back(a.entry, a.outcome);
        }
    }

    /// A new append: into the leader's batch if we lead, else queued for the leader.
    pub(crate) fn append<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &mut Role<T>,
        entry: T,
    ) {
        let seq = self.next_seq;
        self.next_seq += 1;
        match role.leader_mut() {
            Some(l) => l.propose(core, entry, (core.pid, self.inc), seq),
            None => {
                self.queued.push_back((seq, entry));
                if self.queued.len() >= core.timing.batch_size {
                    self.send_queued(core);
                }
            }
        }
    }

    /// Proposes a stop sign: ours if we lead, else forwarded until our log has one.
    pub(crate) fn reconfigure<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &mut Role<T>,
        ss: StopSign,
    ) {
        match role.leader_mut() {
            Some(l) => l.propose_stopsign(core, ss),
            None => {
                self.pending_stopsign = Some(ss);
                self.send_stopsign(core);
            }
        }
    }

    /// We lead: appends that waited here for a leader go into our batch.
    #[inline]
    pub(crate) fn propose_queued<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &mut Role<T>,
    ) {
        // Nothing waits (the common case): settled at every input.
        if self.queued.is_empty() && self.pending_stopsign.is_none() {
            return;
        }
        let Some(l) = role.leader_mut() else {
            return;
        };
        let origin = (core.pid, self.inc);
        while let Some((seq, e)) = self.queued.pop_front() {
            l.propose(core, e, origin, seq);
        }
        // And a reconfiguration asked here before we led.
        if let Some(ss) = self.pending_stopsign.take() {
            l.propose_stopsign(core, ss);
        }
    }

    /// The leader of our promise, if we may forward to it now.
    fn forward_target<B: Storage<T>>(&self, core: &Core<T, B>) -> Option<Ballot> {
        let prom = core.log.promise();
        let ok = prom.pid != 0
            && prom.pid != core.pid
            && core.is_peer(prom.pid)
            && self.fence.map_or(true, |f| prom > f);
        ok.then_some(prom)
    }

    /// Sends the queued appends to the leader (if one is known).
    pub(crate) fn send_queued<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if self.queued.is_empty() {
            return;
        }
        let Some(n) = self.forward_target(core) else {
            return;
        };
        self.leave_ballots_below(n);
        let base = self.queued[0].0;
        let sent = self.sent.get_or_insert_with(|| Sent {
            n,
            base,
            entries: VecDeque::new(),
            received: base,
        });
        let room = core.timing.buffer_size.saturating_sub(sent.entries.len());
        let k = self.queued.len().min(room);
        if k == 0 {
            return;
        }
        let first_seq = self.queued[0].0;
        let moved: Vec<(u64, T)> = self.queued.drain(..k).collect();
        let entries = moved.iter().map(|(_, e)| e.clone()).collect();
        sent.entries.extend(moved);
        debug_assert!(
            sent.entries
                .iter()
                .zip(sent.entries.iter().skip(1))
                .all(|(a, b)| b.0 == a.0.wrapping_add(1)),
            "proposals sent to {n:?} are not numbered consecutively"
        );
        let msg = Proposals {
            n,
            inc: self.inc,
            base: sent.base,
            first_seq,
            entries,
            acked: self.acked,
        };
        core.send(n.pid, ForwardMsg::Proposals(msg));
    }

    /// Our promise is `n` now: what was sent to an earlier leader may or may not be in the log.
    fn leave_ballots_below(&mut self, n: Ballot) {
        if self.sent.as_ref().is_some_and(|s| s.n != n) {
            if let Some(s) = self.sent.take() {
                for (_, e) in s.entries {
                    self.give_back(e, AppendOutcome::Unknown);
                }
            }
        }
    }

    fn send_stopsign<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if core.log.stopsign().is_some() {
            self.pending_stopsign = None;
        }
        let (Some(ss), Some(n)) = (self.pending_stopsign.clone(), self.forward_target(core)) else {
            return;
        };
        core.send(
            n.pid,
            ForwardMsg::ForwardStopSign(ForwardStopSign { n, ss }),
        );
    }

    /// Every resend timeout: resend what the leader did not confirm; on a fenced legacy node,
    /// hand back what cannot be forwarded.
    pub(crate) fn resend<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let prom = core.log.promise();
        if let Some(f) = self.fence {
            let fenced = prom.pid != 0 && prom.pid != core.pid && prom <= f;
            if fenced {
                while let Some((_, e)) = self.queued.pop_front() {
                    self.give_back(e, AppendOutcome::NotDecided);
                }
            }
        }
        if let Some(s) = &self.sent {
            if s.n == prom {
                let unconfirmed: Vec<T> = s
                    .entries
                    .iter()
                    .filter(|(seq, _)| *seq >= s.received)
                    .map(|(_, e)| e.clone())
                    .collect();
                let first = s.entries.iter().find(|(seq, _)| *seq >= s.received);
                // All of them reached the leader but some are not known placed: the `Placed`
                // that said where may have been lost, and the leader sends its placements only
                // when asked. An empty proposal asks (it is taken as a resend of nothing). Without
                // it the sent entries would wait forever, and with them, once they fill the
                // buffer, every later append.
                let first_seq = match first {
                    Some((seq, _)) => Some(*seq),
                    None => (!s.entries.is_empty()).then_some(s.received),
                };
                if let Some(first_seq) = first_seq {
                    let msg = Proposals {
                        n: s.n,
                        inc: self.inc,
                        base: s.base,
                        first_seq,
                        entries: unconfirmed,
                        acked: self.acked,
                    };
                    core.send(s.n.pid, ForwardMsg::Proposals(msg));
                }
            }
        }
        self.send_queued(core);
        self.send_stopsign(core);
    }

    /// A message of the forwarding room from `from` (a peer of our configuration).
    pub(crate) fn handle<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &mut Role<T>,
        from: NodeId,
        m: ForwardMsg<T>,
    ) {
        match m {
            ForwardMsg::Proposals(p) => {
                let Some(l) = role.leader_mut() else {
                    return;
                };
                if p.n != l.ballot() || core.log.stopsign().is_some() {
                    return;
                }
                self.take_in(core, l, from, p);
            }
            ForwardMsg::Placed(p) => self.handle_placed(p),
            ForwardMsg::ForwardStopSign(f) => {
                let valid = f.ss.next_config.validate().is_ok()
                    && f.ss.next_config.configuration_id > core.config_id();
                if let Some(l) = role.leader_mut() {
                    if f.n == l.ballot() && valid {
                        l.propose_stopsign(core, f.ss);
                    }
                }
            }
        }
    }

    /// Leader: proposals forwarded by `from`; each is taken once, in order.
    fn take_in<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        l: &mut Leader<T>,
        from: NodeId,
        p: Proposals<T>,
    ) {
        let n = l.ballot();
        if self.intake.as_ref().map_or(true, |(b, _)| *b != n) {
            self.intake = Some((n, Vec::new()));
        }
        let Some((_, sessions)) = self.intake.as_mut() else {
            return;
        };
        let origin = (from, p.inc);
        let idx = match sessions.iter().position(|s| s.origin == origin) {
            Some(i) => i,
            None => {
                let mine: Vec<usize> = (0..sessions.len())
                    .filter(|i| sessions[*i].origin.0 == from)
                    .collect();
                if mine.len() >= INCARNATIONS_KEPT {
                    // Keep the newest incarnations: an older one than all of them is stale.
                    let oldest = *mine
                        .iter()
                        .min_by_key(|i| sessions[**i].origin.1)
                        .expect("at least one");
                    if sessions[oldest].origin.1 > p.inc {
                        return;
                    }
                    sessions.swap_remove(oldest);
                }
                sessions.push(Session {
                    origin,
                    received: p.base,
                    placed: Vec::new(),
                    dirty: false,
                });
                sessions.len() - 1
            }
        };
        let s = &mut sessions[idx];
        s.placed
            .retain(|r| r.first_seq.saturating_add(r.len) > p.acked);
        s.dirty = true;
        if p.first_seq > s.received {
            // A gap (an earlier forward was lost): the acknowledgement tells where to resend
            // from.
            return;
        }
        let skip = (s.received - p.first_seq) as usize;
        let first = s.received;
        let take: Vec<T> = p.entries.into_iter().skip(skip).collect();
        s.received += take.len() as u64;
        for (seq, e) in (first..).zip(take) {
            l.propose(core, e, origin, seq);
        }
    }

    /// After every input: appends whose index our decided log passed in their round are done;
    /// what was sent to a replaced leader comes back.
    #[inline]
    pub(crate) fn settle<B: Storage<T>>(&mut self, core: &Core<T, B>) {
        // Nothing of ours in flight and no intake open (a follower whose application appends
        // nothing): nothing to settle, at every input.
        if self.placed.is_empty() && self.sent.is_none() && self.intake.is_none() {
            return;
        }
        self.settle_now(core);
    }

    fn settle_now<B: Storage<T>>(&mut self, core: &Core<T, B>) {
        let decided = core.log.decided_idx();
        let round = core.log.accepted_round();
        while let Some(p) = self.placed.front() {
            if p.idx + p.len <= decided && p.round == round {
                self.placed.pop_front();
            } else {
                break;
            }
        }
        let prom = core.log.promise();
        if self.sent.as_ref().is_some_and(|s| s.n != prom) {
            self.leave_ballots_below(prom);
        }
        if self
            .intake
            .as_ref()
            .is_some_and(|(b, _)| *b != prom || prom.pid != core.pid)
        {
            self.intake = None;
        }
    }

    /// Leader: the acknowledgements owed (built at each take of the outgoing messages).
    pub(crate) fn build_outgoing<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let Some((n, sessions)) = self.intake.as_mut() else {
            return;
        };
        for s in sessions.iter_mut().filter(|s| s.dirty) {
            s.dirty = false;
            let msg = Placed {
                n: *n,
                inc: s.origin.1,
                received: s.received,
                runs: s.placed.clone(),
            };
            core.out.push((s.origin.0, ForwardMsg::Placed(msg).into()));
        }
    }

    /// The configuration is over: nothing more can be decided in it. Our appends still queued
    /// or sent come back; placed ones are decided if our (final) log decided them in their
    /// round, else they may be.
    pub(crate) fn stopped<B: Storage<T>>(&mut self, core: &Core<T, B>) {
        self.settle(core);
        while let Some((_, e)) = self.queued.pop_front() {
            self.give_back(e, AppendOutcome::NotDecided);
        }
        if let Some(s) = self.sent.take() {
            for (_, e) in s.entries {
                self.give_back(e, AppendOutcome::Unknown);
            }
        }
        for p in std::mem::take(&mut self.placed) {
            match p.entries {
                Some(entries) => {
                    for e in entries {
                        self.give_back(e, AppendOutcome::Unknown);
                    }
                }
                None => self.returned_total += p.len as u64,
            }
        }
        self.intake = None;
        self.pending_stopsign = None;
    }
}
