//! Ballot Leader Election (BLE): who should lead, resilient to partial connectivity.
//!
//! Every `election_tick_timeout` ticks a node ends a heartbeat round: it looks at the replies to
//! the requests it sent at the start of the round (and only those), then starts the next round.
//!
//! * A node is **quorum-connected** when it heard from enough servers (itself included) to both
//!   take over and decide.
//! * A leader is **happy** while it is quorum-connected; a follower is happy while it hears its
//!   leader and the leader says it is happy.
//! * A node **takes over** (a ballot with a higher `n`) only when it is unhappy, every reply it got
//!   is unhappy, and it is itself quorum-connected. Among such candidates that see each other, only
//!   the one with the highest `(priority, pid)` does, so that a cold start elects one leader.
//!
//! So a node that still reaches a happy leader (or a happy follower of it) never disrupts it (the
//! *chained* scenario), and a quorum-connected node takes over from a leader that lost its quorum
//! even if it still reaches that leader (the *quorum-loss* and *constrained election* scenarios).
//!
//! **Fast failover.** The peers' replies in the round in which a leader crashes were given
//! before they noticed (they still say happy), so that round cannot justify a takeover, and
//! waiting for the next full round would add a whole election timeout to every failover. Two
//! rules remove that wait without weakening the takeover condition:
//!
//! * A follower whose leader stopped answering (no reply at all in a round, not a reply saying
//!   it lost its quorum: late replies cause that for a round, and the leader recovers from it)
//!   becomes unhappy and sends a fresh reply to the latest request of each peer: a reply
//!   replaces the same peer's earlier reply of that round, so the peer's round sees the news.
//! * Such a follower also runs a *confirmation round*: it ends as soon as every peer that
//!   answered the last round has answered and all of them are unhappy (else at the timeout,
//!   like any round). This happens at most once per loss of the leader (never two short
//!   rounds in a row), and a round with a happy reply runs its full length, so a node cut off
//!   from a leader that others still reach (the chained scenario) does not flood them.
//!
//! `OmniPaxos::set_fast_failover(false)` (on by default) turns both rules off: a follower then waits
//! for the next full round. Measured by `cargo bench -p omnipaxos_sim --bench failover` (200
//! seeds, 3 and 5 nodes, election timeout 10 ticks): after a leader crash the survivors decide
//! a new entry one election timeout sooner at the median (17 against 27 ticks on a perfect
//! network, 18-22 against 27-28 with 5-10% message loss); without crashes, on networks losing
//! 5-10% of messages, they cause 27-75% more leader changes, with as many entries decided and
//! as many ticks with a leader. The rules pay for themselves, so they stay on.

use crate::{
    ballot_leader_election::Ballot,
    quorum::Quorum,
    util::{ConfigurationId, NodeId},
};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// Asks a peer for its state in heartbeat round `round`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct HeartbeatRequest {
    /// The configuration of the sender.
    pub(crate) config_id: ConfigurationId,
    pub(crate) round: u32,
}

/// A peer's state, in answer to a request of round `round`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct HeartbeatReply {
    pub(crate) round: u32,
    /// The replier's own ballot.
    pub(crate) ballot: Ballot,
    /// The leader the replier follows (`Ballot::default()` if none).
    pub(crate) leader: Ballot,
    /// A leader that reaches a quorum, or a follower of one.
    pub(crate) happy: bool,
    /// The replier reached a quorum in its last round.
    pub(crate) quorum_connected: bool,
}

/// The messages of the election.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) enum HeartbeatMsg {
    Request(HeartbeatRequest),
    Reply(HeartbeatReply),
}

impl HeartbeatMsg {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            HeartbeatMsg::Request(_) => "HeartbeatRequest",
            HeartbeatMsg::Reply(_) => "HeartbeatReply",
        }
    }
}

impl fmt::Display for HeartbeatMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::node::wire::role::B;
        match self {
            HeartbeatMsg::Request(r) => write!(f, "HeartbeatRequest round={}", r.round),
            HeartbeatMsg::Reply(r) => write!(
                f,
                "HeartbeatReply round={} ballot={} leader={}{}{}",
                r.round,
                B(r.ballot),
                B(r.leader),
                if r.happy { " happy" } else { "" },
                if r.quorum_connected { " connected" } else { "" }
            ),
        }
    }
}

/// A reply received in the current round, with its sender.
#[derive(Copy, Clone, Debug)]
struct Reply {
    from: NodeId,
    r: HeartbeatReply,
}

pub(crate) struct Ble {
    pid: NodeId,
    config_id: ConfigurationId,
    peers: Vec<NodeId>,
    quorum: Quorum,
    /// The priority of this node's next ballot.
    priority: u32,
    /// This node's ballot. Invariant: `current.pid == pid`, and each takeover's ballot is above
    /// the previous one and above the leader it followed (so a takeover never reuses a
    /// ballot; checked in debug builds).
    current: Ballot,
    /// The leader this node follows; `Ballot::default()` when none is known.
    leader: Ballot,
    happy: bool,
    quorum_connected: bool,
    /// The heartbeat round in progress.
    rnd: Round,
    /// A ballot above ours that a peer promised (reported by Sequence Paxos); a happy leader
    /// takes a ballot above it at the end of the round unless somebody happily follows it.
    higher_promise: Option<Ballot>,
    outgoing: Vec<(NodeId, HeartbeatMsg)>,
    /// Whether this node may take over. A server that joined a configuration does not until it
    /// knows where the log it continues ends: leading with an empty log would lose it.
    can_lead: bool,
    /// The fast-failover rules' state (see the module docs).
    ff: FastFailover,
    /// Per peer, the newest of our rounds it answered; a peer missing here never answered. An
    /// answer after a round of ours that got none means the link was down one way or both (an
    /// answer needs both), and what was sent meanwhile may be lost.
    last_reply: Vec<(NodeId, u32)>,
}

/// The heartbeat round in progress.
struct Round {
    /// Its number (requests and replies carry it).
    n: u32,
    /// Replies of this round, at most one per peer.
    replies: Vec<Reply>,
    /// The leader was adopted during this round (from a promise): the round's replies say
    /// nothing about it yet, so the round cannot justify a takeover.
    leader_is_new: bool,
}

/// The state of the fast-failover rules: fresh replies when this node loses its leader, and the
/// confirmation round that follows.
struct FastFailover {
    /// Whether the rules are on (`OmniPaxos::set_fast_failover`). Off, `announce_unhappy` and
    /// `confirm_next` stay false.
    on: bool,
    /// The current round is a confirmation round: it ends as soon as every node in `expected`
    /// replied and every reply is unhappy. Set only by a round whose evaluation lost the leader,
    /// and cleared by the next round's start, so two short rounds never follow each other.
    confirming: bool,
    /// The round of the latest heartbeat request answered, per peer (for fresh replies when this
    /// node becomes unhappy).
    answered: Vec<(NodeId, u32)>,
    /// This node became unhappy in the round just evaluated: tell the peers (see `answered`).
    announce_unhappy: bool,
    /// The peers that replied in the last round (those a confirmation round waits for).
    expected: Vec<NodeId>,
    /// Whether the round that is starting may be a confirmation round (see `confirming`).
    confirm_next: bool,
}

impl Ble {
    /// A node that has promised `recovered_promise` before (if any) starts with no leader and a
    /// ballot number at least as high as that promise.
    pub(crate) fn new(
        pid: NodeId,
        config_id: ConfigurationId,
        peers: Vec<NodeId>,
        quorum: Quorum,
        priority: u32,
        recovered_promise: Option<Ballot>,
    ) -> Self {
        let n = recovered_promise.map_or(0, |b| b.n);
        Ble {
            pid,
            config_id,
            peers,
            quorum,
            priority,
            current: Ballot::with(config_id, n, priority, pid),
            leader: Ballot::default(),
            happy: false,
            // Optimistic until the first round is evaluated: at a cold start, peers then defer to
            // the best candidate instead of all taking over at once.
            quorum_connected: true,
            rnd: Round {
                n: 0,
                replies: Vec::new(),
                leader_is_new: false,
            },
            higher_promise: None,
            outgoing: Vec::new(),
            can_lead: true,
            ff: FastFailover {
                on: true,
                confirming: false,
                answered: Vec::new(),
                announce_unhappy: false,
                expected: Vec::new(),
                confirm_next: false,
            },
            last_reply: Vec::new(),
        }
    }

    pub(crate) fn leader(&self) -> Ballot {
        self.leader
    }

    pub(crate) fn current_ballot(&self) -> Ballot {
        self.current
    }

    /// Sets the priority of this node's future ballots. A leader keeps the ballot it leads
    /// with; the new priority is used from its next takeover on.
    pub(crate) fn set_priority(&mut self, p: u32) {
        self.priority = p;
        if !self.is_leader() {
            self.current.priority = p;
        }
    }

    fn is_leader(&self) -> bool {
        self.leader == self.current && self.leader.pid == self.pid
    }

    /// Sequence Paxos promised `b`: if it is above the leader we follow, follow it (the election
    /// must not keep claiming a leader that Sequence Paxos already left).
    ///
    /// Our own ballots are never adopted this way: a promise of our own ballot may be from
    /// before a crash, and we lead only after a takeover of this incarnation.
    pub(crate) fn observe_promise(&mut self, b: Ballot) {
        // (A promise of nobody's ballot, pid 0, names no leader.)
        if b > self.leader && b.pid != self.pid && b.pid != 0 {
            self.leader = b;
            // We follow someone else now; a leader we were is no more. The replies of this round
            // predate the new leader, so it gets a round to show it is happy.
            self.happy = false;
            self.rnd.leader_is_new = true;
        }
    }

    /// Sequence Paxos saw a peer that promised `b`, above our ballot.
    pub(crate) fn report_higher_promise(&mut self, b: Ballot) {
        if b > self.current && self.higher_promise.map_or(true, |h| b > h) {
            self.higher_promise = Some(b);
        }
    }

    /// A ballot above everything this node has seen, or `None` if `n` is exhausted.
    fn next_ballot(&self, at_least_above: Ballot) -> Option<Ballot> {
        let mut n = self.current.n.max(self.leader.n).max(at_least_above.n);
        for rep in &self.rnd.replies {
            n = n.max(rep.r.ballot.n).max(rep.r.leader.n);
        }
        let n = n.checked_add(1)?;
        Some(Ballot::with(self.config_id, n, self.priority, self.pid))
    }

    fn become_leader(&mut self, b: Ballot) -> Ballot {
        debug_assert!(
            b.pid == self.pid && b > self.current && b > self.leader,
            "takeover ballot {b:?} is not above ours {:?} and our leader's {:?}",
            self.current,
            self.leader
        );
        self.current = b;
        self.leader = b;
        self.happy = self.quorum_connected;
        b
    }

    /// Sets whether this node may take over (see `can_lead`).
    pub(crate) fn set_can_lead(&mut self, can_lead: bool) {
        self.can_lead = can_lead;
    }

    /// Turns the fast-failover rules on or off (see the module docs).
    pub(crate) fn set_fast_failover(&mut self, on: bool) {
        self.ff.on = on;
    }

    /// Takes over at once with a ballot above `promise` (`try_become_leader`).
    pub(crate) fn force_takeover(&mut self, promise: Ballot) -> Option<Ballot> {
        if !self.can_lead {
            return None;
        }
        let b = self.next_ballot(promise)?;
        Some(self.become_leader(b))
    }

    /// Ends the heartbeat round: decides who leads, then starts the next round. Returns the new
    /// leader when it changed. `promise` is the ballot Sequence Paxos promised.
    pub(crate) fn round_end(&mut self, promise: Ballot) -> Option<Ballot> {
        // Our own ballot number never falls behind what we promised.
        if promise.n > self.current.n && !self.is_leader() {
            self.current.n = promise.n;
        }
        self.observe_promise(promise);
        // Before the first round there were no requests, so there is nothing to evaluate.
        let result = if self.rnd.n > 0 {
            self.evaluate(promise)
        } else {
            None
        };
        self.start_round();
        if std::mem::take(&mut self.ff.announce_unhappy) {
            for i in 0..self.ff.answered.len() {
                let (to, round) = self.ff.answered[i];
                self.reply(to, round);
            }
        }
        result
    }

    fn evaluate(&mut self, promise: Ballot) -> Option<Ballot> {
        self.quorum_connected = self.quorum.is_connected_quorum(self.rnd.replies.len() + 1);
        let old_leader = self.leader;
        // Follow the highest leader that somebody is happy with. A ballot of our own is not
        // adopted: it is from before a crash (we lead only after a takeover of our own).
        for rep in &self.rnd.replies {
            if rep.r.happy && rep.r.leader > self.leader && rep.r.leader.pid != self.pid {
                self.leader = rep.r.leader;
            }
        }
        let was_happy = self.happy;
        self.happy = if self.is_leader() {
            self.quorum_connected
        } else {
            self.hears_happy_leader()
        };
        // Our leader did not answer at all (crashed or cut off), as opposed to answering that it
        // lost its quorum for a round (which late replies can cause; it may recover by itself).
        let leader_silent = !self.is_leader()
            && self.leader != Ballot::default()
            && !self
                .rnd
                .replies
                .iter()
                .any(|rep| rep.from == self.leader.pid);
        self.ff.announce_unhappy = self.ff.on && was_happy && !self.happy && leader_silent;
        report_election_round!(self, was_happy, leader_silent);
        // A follower that just lost its leader confirms with a short round (see the module
        // docs), unless this round already was one.
        self.ff.confirm_next = self.ff.announce_unhappy
            && !self.ff.confirming
            && self.can_lead
            && !self.rnd.replies.is_empty();

        if self.is_leader() && self.happy {
            // A peer is stuck on a promise above our ballot (e.g. it crashed while taking over):
            // unless somebody happily follows that ballot, take one above it so the peer can
            // rejoin.
            if let Some(h) = self.higher_promise.take() {
                let followed = self
                    .rnd
                    .replies
                    .iter()
                    .any(|rep| rep.r.happy && rep.r.leader >= h);
                if h > self.current && !followed {
                    if let Some(b) = self.next_ballot(h) {
                        return Some(self.become_leader(b));
                    }
                }
            }
            return (self.leader != old_leader).then_some(self.leader);
        }
        self.higher_promise = None;

        let all_unhappy = self.rnd.replies.iter().all(|rep| !rep.r.happy);
        if !self.happy
            && self.can_lead
            && self.quorum_connected
            && all_unhappy
            && !self.rnd.leader_is_new
        {
            let me = (self.priority, self.pid);
            let better_candidate = self
                .rnd
                .replies
                .iter()
                .any(|rep| rep.r.quorum_connected && (rep.r.ballot.priority, rep.from) > me);
            if !better_candidate {
                if let Some(b) = self.next_ballot(promise) {
                    return Some(self.become_leader(b));
                }
            }
        }
        (self.leader != old_leader).then_some(self.leader)
    }

    /// Whether this round's replies include our leader saying it is happy.
    fn hears_happy_leader(&self) -> bool {
        let leader = self.leader;
        self.rnd
            .replies
            .iter()
            .any(|rep| rep.from == leader.pid && rep.r.leader == leader && rep.r.happy)
    }

    fn start_round(&mut self) {
        self.rnd.leader_is_new = false;
        self.ff.confirming = std::mem::take(&mut self.ff.confirm_next);
        self.ff.expected.clear();
        if self.ff.confirming {
            self.ff
                .expected
                .extend(self.rnd.replies.iter().map(|rep| rep.from));
        }
        if !self.is_leader() {
            // A former leader's ballot takes the priority set while it led.
            self.current.priority = self.priority;
        }
        self.rnd.n = self.rnd.n.wrapping_add(1);
        self.rnd.replies.clear();
        let req = HeartbeatRequest {
            config_id: self.config_id,
            round: self.rnd.n,
        };
        for &to in &self.peers {
            self.outgoing.push((to, HeartbeatMsg::Request(req)));
        }
    }

    fn valid_ballot(&self, b: &Ballot) -> bool {
        *b == Ballot::default() || (b.config_id == self.config_id && b.pid != 0)
    }

    /// Whether the current round is a confirmation round that has all the replies it waits for:
    /// the caller then ends the round now ([`Ble::round_end`]) instead of at the timeout.
    pub(crate) fn round_complete_early(&self) -> bool {
        self.ff.confirming
            && self.rnd.replies.iter().all(|rep| !rep.r.happy)
            && self
                .ff
                .expected
                .iter()
                .all(|p| self.rnd.replies.iter().any(|rep| rep.from == *p))
    }

    /// Answers `to`'s heartbeat request of `round` with this node's freshest view: happy or
    /// connected at the end of the last round, or already in this round's replies (a healed
    /// leader need not wait a round).
    fn reply(&mut self, to: NodeId, round: u32) {
        let connected_now = self.quorum.is_connected_quorum(self.rnd.replies.len() + 1);
        let happy_now = if self.is_leader() {
            connected_now
        } else {
            self.hears_happy_leader()
        };
        let reply = HeartbeatReply {
            round,
            ballot: self.current,
            leader: self.leader,
            happy: self.happy || happy_now,
            // Only a possible candidate makes others defer to it.
            quorum_connected: (self.quorum_connected || connected_now) && self.can_lead,
        };
        self.outgoing.push((to, HeartbeatMsg::Reply(reply)));
    }

    /// Handles a heartbeat message from `from` (already checked to be a peer). Returns whether
    /// it answers a round of ours after an earlier round that `from` never answered: the link
    /// to it is back, and the caller repairs what it may have lost (as after
    /// [`crate::OmniPaxos::reconnected`]).
    pub(crate) fn handle(&mut self, from: NodeId, m: HeartbeatMsg) -> bool {
        let mut link_restored = false;
        match m {
            HeartbeatMsg::Request(req) => {
                if req.config_id != self.config_id {
                    return false;
                }
                match self.ff.answered.iter_mut().find(|(p, _)| *p == from) {
                    Some(a) => a.1 = req.round,
                    None => self.ff.answered.push((from, req.round)),
                }
                self.reply(from, req.round);
            }
            HeartbeatMsg::Reply(r) => {
                link_restored = self.note_reply(from, r.round);
                let well_formed = r.round == self.rnd.n
                    && r.ballot.pid == from
                    && self.valid_ballot(&r.ballot)
                    && self.valid_ballot(&r.leader)
                    && (r.leader == Ballot::default()
                        || self.peers.contains(&r.leader.pid)
                        || r.leader.pid == self.pid);
                if !well_formed {
                    report!(TRACE, messages::ignored; pid = self.pid, config_id = self.config_id,
                        from, kind = "HeartbeatReply",
                        "a heartbeat reply of another round, or with impossible ballots, is \
                         ignored");
                }
                if well_formed {
                    // A later reply of the same round is the peer's fresher view.
                    match self.rnd.replies.iter_mut().find(|rep| rep.from == from) {
                        Some(rep) => rep.r = r,
                        None => self.rnd.replies.push(Reply { from, r }),
                    }
                }
            }
        }
        link_restored
    }

    /// Records that `from` answered our request of `round`; whether a round of ours before it,
    /// after the last one it answered, got no answer (never for a peer that never answered: at
    /// a start nothing was lost). A late reply still counts for its round, and a repeated
    /// answer to an old request (a fast-failover notice) proves nothing about the link now.
    fn note_reply(&mut self, from: NodeId, round: u32) -> bool {
        if round.wrapping_sub(self.rnd.n) < u32::MAX / 2 && round != self.rnd.n {
            // From a round we did not start: not an answer to us.
            return false;
        }
        match self.last_reply.iter_mut().find(|(p, _)| *p == from) {
            Some((_, at)) => {
                let ahead = round.wrapping_sub(*at);
                if ahead == 0 || ahead >= u32::MAX / 2 {
                    return false;
                }
                *at = round;
                ahead >= 2
            }
            None => {
                self.last_reply.push((from, round));
                false
            }
        }
    }

    pub(crate) fn take_outgoing(&mut self) -> std::vec::Drain<'_, (NodeId, HeartbeatMsg)> {
        self.outgoing.drain(..)
    }

    /// Whether this node is happy: a leader that reached a quorum in its last round, or a
    /// follower that heard its leader say so.
    pub(crate) fn is_happy(&self) -> bool {
        self.happy
    }
}
