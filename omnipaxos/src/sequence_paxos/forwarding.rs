//! Proposals appended at a node that is not the leader in its accept phase.
//!
//! A follower forwards its proposals to the leader in a *forwarding session* the leader opened
//! for it (given in `AcceptSync`). Proposals are numbered within the session; the leader appends
//! number `k` only if it has appended `0..k` and not `k` itself, and acknowledges the number it
//! expects next. So a forward that is lost is resent until acknowledged, and one that is
//! duplicated, reordered or resent is appended once.
//!
//! ```text
//!  append ──> unsent ──(session with leader L; batch full or flush tick)──> in flight to L
//!                                                                    │
//!                          ForwardAck from L ──> dropped (L has them) ┘
//! ```
//!
//! When the leader changes before acknowledging, proposals in flight may or may not be in the
//! old leader's log. Sending them to the new leader could decide them twice, so they are given up
//! (counted in `abandoned`); proposals never sent go to the new leader. A restarted node gets a
//! new session, so numbers from before its crash never collide with new ones.

use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{ForwardAck, PaxosMsg, ProposalForward},
    storage::Entry,
    util::NodeId,
};
use std::collections::{HashMap, VecDeque};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Session {
    leader: Ballot,
    id: u64,
}

/// The follower side: proposals waiting to reach the leader.
pub(crate) struct Forwarder<T> {
    unsent: Vec<T>,
    session: Option<Session>,
    /// Sent in `session` and not acknowledged, numbered from `in_flight_first`.
    in_flight: VecDeque<T>,
    in_flight_first: u64,
    /// Proposals in flight to a leader that was replaced before it acknowledged them.
    abandoned: u64,
}

impl<T: Entry> Forwarder<T> {
    pub(crate) fn new() -> Self {
        Forwarder {
            unsent: Vec::new(),
            session: None,
            in_flight: VecDeque::new(),
            in_flight_first: 0,
            abandoned: 0,
        }
    }

    pub(crate) fn push(&mut self, entry: T) {
        self.unsent.push(entry);
    }

    pub(crate) fn unsent_len(&self) -> usize {
        self.unsent.len()
    }

    /// The session held for `leader`, if any (reported in a `Promise`).
    pub(crate) fn session_for(&self, leader: Ballot) -> Option<u64> {
        self.session.filter(|s| s.leader == leader).map(|s| s.id)
    }

    pub(crate) fn abandoned(&self) -> u64 {
        self.abandoned
    }

    fn abandon_in_flight(&mut self) {
        self.abandoned += self.in_flight.len() as u64;
        self.in_flight.clear();
        self.in_flight_first = 0;
    }

    /// This node now follows `leader` (it promised it): a session with any other leader ends.
    pub(crate) fn follow(&mut self, leader: Ballot) {
        if self.session.is_some_and(|s| s.leader != leader) {
            self.abandon_in_flight();
            self.session = None;
        }
    }

    /// `leader` opened session `id` for us. The first session per leader is kept: an extra one
    /// (from a duplicated promise) would strand what is in flight in the first.
    pub(crate) fn open_session(&mut self, leader: Ballot, id: u64) {
        match self.session {
            Some(s) if s.leader == leader => {}
            _ => {
                self.follow(leader);
                self.session = Some(Session { leader, id });
            }
        }
    }

    /// This node becomes leader: what it never sent is its own to propose.
    pub(crate) fn take_for_leader(&mut self) -> Vec<T> {
        self.abandon_in_flight();
        self.session = None;
        std::mem::take(&mut self.unsent)
    }

    /// Sends the unsent proposals if there is a session and (`force` or) a full batch.
    pub(crate) fn flush(
        &mut self,
        batch_size: usize,
        force: bool,
        out: &mut impl FnMut(NodeId, PaxosMsg<T>),
    ) {
        let Some(s) = self.session else { return };
        if self.unsent.is_empty() || (!force && self.unsent.len() < batch_size) {
            return;
        }
        let first_seq = self.in_flight_first + self.in_flight.len() as u64;
        let entries = std::mem::take(&mut self.unsent);
        self.in_flight.extend(entries.iter().cloned());
        out(
            s.leader.pid,
            PaxosMsg::ProposalForward(ProposalForward {
                n: s.leader,
                session: s.id,
                first_seq,
                entries,
            }),
        );
    }

    /// Sends again what is in flight (at most `max` proposals per message).
    pub(crate) fn resend(&mut self, max: usize, out: &mut impl FnMut(NodeId, PaxosMsg<T>)) {
        let Some(s) = self.session else { return };
        if self.in_flight.is_empty() {
            return;
        }
        out(
            s.leader.pid,
            PaxosMsg::ProposalForward(ProposalForward {
                n: s.leader,
                session: s.id,
                first_seq: self.in_flight_first,
                entries: self.in_flight.iter().take(max).cloned().collect(),
            }),
        );
    }

    pub(crate) fn handle_ack(&mut self, ack: &ForwardAck) {
        let Some(s) = self.session else { return };
        if s.leader != ack.n || s.id != ack.session {
            return;
        }
        let sent_end = self.in_flight_first + self.in_flight.len() as u64;
        let upto = ack.next_seq.min(sent_end);
        while self.in_flight_first < upto {
            self.in_flight.pop_front();
            self.in_flight_first += 1;
        }
    }
}

/// At most this many sessions are remembered per follower (older ones belong to incarnations
/// that crashed).
const SESSIONS_PER_PEER: usize = 4;

/// The leader side: which forwarded proposals each session already delivered.
#[derive(Default)]
pub(crate) struct ForwardSessions {
    next_id: u64,
    /// Per peer: `(session id, number expected next)`, oldest first.
    by_peer: HashMap<NodeId, Vec<(u64, u64)>>,
}

impl ForwardSessions {
    /// The session for `peer` after its promise: the one it holds if we know it, else a new one.
    pub(crate) fn session_for_promise(&mut self, peer: NodeId, held: Option<u64>) -> u64 {
        let sessions = self.by_peer.entry(peer).or_default();
        if let Some(id) = held {
            if sessions.iter().any(|(s, _)| *s == id) {
                return id;
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        if sessions.len() >= SESSIONS_PER_PEER {
            sessions.remove(0);
        }
        sessions.push((id, 0));
        id
    }

    /// The session `id` of `peer` sent `len` proposals numbered from `first_seq`. Returns how many
    /// leading ones to skip (already appended) and the number expected next, or `None` for an
    /// unknown session or a gap (earlier proposals missing: they will be resent).
    pub(crate) fn receive(
        &mut self,
        peer: NodeId,
        id: u64,
        first_seq: u64,
        len: usize,
    ) -> Option<(usize, u64)> {
        let sessions = self.by_peer.get_mut(&peer)?;
        let (_, next) = sessions.iter_mut().find(|(s, _)| *s == id)?;
        if first_seq > *next {
            return None;
        }
        let end = first_seq.checked_add(len as u64)?;
        let skip = (*next - first_seq).min(len as u64) as usize;
        *next = (*next).max(end);
        Some((skip, *next))
    }

    /// The acknowledgement for session `id` of `peer`.
    pub(crate) fn ack(&self, n: Ballot, peer: NodeId, id: u64) -> Option<ForwardAck> {
        let next = self
            .by_peer
            .get(&peer)?
            .iter()
            .find(|(s, _)| *s == id)
            .map(|(_, next)| *next)?;
        Some(ForwardAck {
            n,
            session: id,
            next_seq: next,
        })
    }
}
