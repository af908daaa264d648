//! Proposals appended at a node that is not the leader in its accept phase.
//!
//! A follower forwards its proposals to the leader in a *forwarding session* the leader opened
//! for it (given in `AcceptSync`). Proposals are numbered within the session; the leader takes
//! number `k` only if it took `0..k` and not `k` itself, and acknowledges once they are in its
//! log. So a forward that is lost is resent until acknowledged, and one that is duplicated,
//! reordered or resent is appended once.
//!
//! ```text
//!  append ─> unsent ─(session with leader L; batch full or flush tick)─> in flight to L
//!                                                                          │   │
//!                           ForwardAck from L (they are in L's log) <──────┘   │ L replaced
//!                                                                               v
//!             re-forwarded to the next leader, tagged with their old identity: orphans
//! ```
//!
//! When the leader changes before acknowledging, proposals in flight may or may not be in the
//! old leader's log. They are re-forwarded with the identity of their first forward, and the new
//! leader appends each only if the runs of its log (see [`super::origins`]) show it is not there
//! already. A leader always records a forwarded proposal under the identity of its first
//! forward, so one check finds it however many leaders it went through.

use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{ForwardAck, PaxosMsg, PreviousForward, ProposalForward},
    storage::Entry,
    util::NodeId,
};
use std::collections::{HashMap, VecDeque};

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Session {
    leader: Ballot,
    id: u64,
    next_seq: u64,
}

/// Proposals sent in the current session and not acknowledged.
struct Batch<T> {
    first_seq: u64,
    entries: Vec<T>,
    previous: Option<PreviousForward>,
    /// Our decided index when the batch was sent: the leader's log was at least that long, so
    /// that is the lowest index where it can have appended them.
    min_idx: usize,
}

/// Proposals sent to a leader that was replaced before it acknowledged them.
pub(crate) struct Orphan<T> {
    pub(crate) previous: PreviousForward,
    pub(crate) entries: Vec<T>,
}

/// The follower side: proposals waiting to reach the leader's log.
pub(crate) struct Forwarder<T> {
    unsent: Vec<T>,
    session: Option<Session>,
    in_flight: VecDeque<Batch<T>>,
    orphans: Vec<Orphan<T>>,
}

impl<T: Entry> Forwarder<T> {
    pub(crate) fn new() -> Self {
        Forwarder {
            unsent: Vec::new(),
            session: None,
            in_flight: VecDeque::new(),
            orphans: Vec::new(),
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

    /// This node now follows `leader` (it promised it): a session with another leader ends, and
    /// what is in flight in it becomes orphaned.
    pub(crate) fn follow(&mut self, leader: Ballot) {
        let Some(s) = self.session else { return };
        if s.leader == leader {
            return;
        }
        self.session = None;
        for b in self.in_flight.drain(..) {
            // A proposal keeps the identity of its first forward: that is the one a leader
            // records when it appends it, whichever leader that is.
            let previous = b.previous.unwrap_or(PreviousForward {
                n: s.leader,
                session: s.id,
                first_seq: b.first_seq,
                min_idx: b.min_idx,
            });
            // Consecutive proposals of one session travel again as one message.
            match self.orphans.last_mut() {
                Some(o)
                    if o.previous.n == previous.n
                        && o.previous.session == previous.session
                        && o.previous.first_seq.wrapping_add(o.entries.len() as u64)
                            == previous.first_seq =>
                {
                    o.previous.min_idx = o.previous.min_idx.min(previous.min_idx);
                    o.entries.extend(b.entries);
                }
                _ => self.orphans.push(Orphan {
                    previous,
                    entries: b.entries,
                }),
            }
        }
    }

    /// `leader` opened session `id` for us, in which it expects proposal `next_seq` next. The
    /// first session per leader is kept: an extra one (from a duplicated promise) would strand
    /// what is in flight in the first. A session we open is numbered on from `next_seq`: the
    /// leader may have kept it from before we restarted, and takes each number once.
    pub(crate) fn open_session(&mut self, leader: Ballot, id: u64, next_seq: u64) {
        match self.session {
            Some(s) if s.leader == leader => {}
            _ => {
                self.follow(leader);
                self.session = Some(Session {
                    leader,
                    id,
                    next_seq,
                });
            }
        }
    }

    /// Orphans handed back by a leader state that never got to check them.
    pub(crate) fn adopt_orphans(&mut self, orphans: Vec<Orphan<T>>) {
        self.orphans.extend(orphans);
    }

    /// This node becomes leader: its never-sent proposals, and its orphans for it to check.
    pub(crate) fn take_for_leader(&mut self) -> (Vec<T>, Vec<Orphan<T>>) {
        self.follow(Ballot::default());
        self.session = None;
        (
            std::mem::take(&mut self.unsent),
            std::mem::take(&mut self.orphans),
        )
    }

    fn send_batch(
        s: &mut Session,
        batch: Batch<T>,
        out: &mut impl FnMut(NodeId, PaxosMsg<T>),
    ) -> Batch<T> {
        out(
            s.leader.pid,
            PaxosMsg::ProposalForward(ProposalForward {
                n: s.leader,
                session: s.id,
                first_seq: batch.first_seq,
                entries: batch.entries.clone(),
                previous: batch.previous,
            }),
        );
        batch
    }

    /// Sends orphans (tagged with their old identity) and, on `force` or a full batch, the
    /// unsent proposals, if there is a session. At most `max` proposals go in one message.
    /// `decided_idx` is ours now.
    pub(crate) fn flush(
        &mut self,
        batch_size: usize,
        max: usize,
        force: bool,
        decided_idx: usize,
        out: &mut impl FnMut(NodeId, PaxosMsg<T>),
    ) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        for o in self.orphans.drain(..) {
            let first_seq = s.next_seq;
            s.next_seq = s.next_seq.wrapping_add(o.entries.len() as u64);
            let b = Batch {
                first_seq,
                entries: o.entries,
                previous: Some(o.previous),
                min_idx: decided_idx,
            };
            let b = Self::send_batch(s, b, out);
            self.in_flight.push_back(b);
        }
        if self.unsent.is_empty() || (!force && self.unsent.len() < batch_size) {
            return;
        }
        let mut entries = std::mem::take(&mut self.unsent);
        while !entries.is_empty() {
            let rest = if entries.len() > max {
                entries.split_off(max)
            } else {
                Vec::new()
            };
            let first_seq = s.next_seq;
            s.next_seq = s.next_seq.wrapping_add(entries.len() as u64);
            let b = Self::send_batch(
                s,
                Batch {
                    first_seq,
                    entries,
                    previous: None,
                    min_idx: decided_idx,
                },
                out,
            );
            self.in_flight.push_back(b);
            entries = rest;
        }
    }

    /// Sends again what is in flight, consecutive batches of new proposals as one message (so
    /// one delivery repairs a whole run of lost or reordered ones).
    pub(crate) fn resend(&mut self, out: &mut impl FnMut(NodeId, PaxosMsg<T>)) {
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let mut pending: Option<ProposalForward<T>> = None;
        for b in self.in_flight.iter() {
            if let Some(p) = &mut pending {
                if p.previous.is_none() && b.previous.is_none() {
                    p.entries.extend(b.entries.iter().cloned());
                    continue;
                }
                out(
                    s.leader.pid,
                    PaxosMsg::ProposalForward(pending.take().unwrap()),
                );
            }
            pending = Some(ProposalForward {
                n: s.leader,
                session: s.id,
                first_seq: b.first_seq,
                entries: b.entries.clone(),
                previous: b.previous,
            });
        }
        if let Some(p) = pending {
            out(s.leader.pid, PaxosMsg::ProposalForward(p));
        }
    }

    pub(crate) fn handle_ack(&mut self, ack: &ForwardAck) {
        let Some(s) = self.session else { return };
        if s.leader != ack.n || s.id != ack.session {
            return;
        }
        while let Some(b) = self.in_flight.front_mut() {
            let end = b.first_seq.saturating_add(b.entries.len() as u64);
            if end <= ack.next_seq {
                self.in_flight.pop_front();
            } else {
                if ack.next_seq > b.first_seq {
                    let k = (ack.next_seq - b.first_seq) as usize;
                    b.entries.drain(..k);
                    b.first_seq = b.first_seq.wrapping_add(k as u64);
                    if let Some(p) = &mut b.previous {
                        p.first_seq = p.first_seq.wrapping_add(k as u64);
                    }
                }
                break;
            }
        }
    }
}

/// At most this many sessions are remembered per follower (older ones belong to incarnations
/// that crashed). Generous: every promise without a session opens one, and a follower keeps the
/// first that reaches it, so under message loss the one in use can be an early one; forgotten,
/// its proposals would never be acknowledged (found by the simulator with 4).
const SESSIONS_PER_PEER: usize = 1024;

/// A follower's session at the leader.
#[derive(Copy, Clone, Debug)]
struct PeerSession {
    id: u64,
    /// Proposals numbered below this were taken (appended to the batch, or found or given up).
    next_seq: u64,
    /// The first proposal taken into the batch and not yet in the log, if any.
    unflushed_from: Option<u64>,
}

/// The leader side: which forwarded proposals each session delivered.
#[derive(Default)]
pub(crate) struct ForwardSessions {
    next_id: u64,
    /// Per peer, oldest first.
    by_peer: HashMap<NodeId, Vec<PeerSession>>,
}

impl ForwardSessions {
    /// The session for `peer` after its promise: the one it holds if we know it, else a new one.
    pub(crate) fn session_for_promise(&mut self, peer: NodeId, held: Option<u64>) -> u64 {
        let sessions = self.by_peer.entry(peer).or_default();
        if let Some(id) = held {
            if sessions.iter().any(|s| s.id == id) {
                return id;
            }
        }
        self.next_id += 1;
        let id = self.next_id;
        if sessions.len() >= SESSIONS_PER_PEER {
            sessions.remove(0);
        }
        sessions.push(PeerSession {
            id,
            next_seq: 0,
            unflushed_from: None,
        });
        id
    }

    /// The next proposal number session `id` of `peer` expects (0 for an unknown session).
    pub(crate) fn next_seq(&self, peer: NodeId, id: u64) -> u64 {
        self.by_peer
            .get(&peer)
            .and_then(|v| v.iter().find(|s| s.id == id))
            .map_or(0, |s| s.next_seq)
    }

    fn get(&mut self, peer: NodeId, id: u64) -> Option<&mut PeerSession> {
        self.by_peer.get_mut(&peer)?.iter_mut().find(|s| s.id == id)
    }

    /// Session `id` of `peer` sent `len` proposals numbered from `first_seq`. Returns how many
    /// leading ones were taken before, or `None` for an unknown session or a gap (earlier
    /// proposals missing: they will be resent). The caller takes the rest.
    pub(crate) fn receive(
        &mut self,
        peer: NodeId,
        id: u64,
        first_seq: u64,
        len: usize,
    ) -> Option<usize> {
        let s = self.get(peer, id)?;
        if first_seq > s.next_seq {
            return None;
        }
        let end = first_seq.checked_add(len as u64)?;
        let skip = (s.next_seq - first_seq).min(len as u64) as usize;
        s.next_seq = s.next_seq.max(end);
        Some(skip)
    }

    /// Proposal `seq` of the session went into the batch (not yet into the log).
    pub(crate) fn batched(&mut self, peer: NodeId, id: u64, seq: u64) {
        if let Some(s) = self.get(peer, id) {
            if s.unflushed_from.is_none() {
                s.unflushed_from = Some(seq);
            }
        }
    }

    /// The batch went into the log.
    pub(crate) fn flushed(&mut self) {
        for s in self.by_peer.values_mut().flat_map(|v| v.iter_mut()) {
            s.unflushed_from = None;
        }
    }

    /// The acknowledgement for session `id` of `peer`: everything below it is in our log (or was
    /// found there, or given up).
    pub(crate) fn ack(&mut self, n: Ballot, peer: NodeId, id: u64) -> Option<ForwardAck> {
        let s = self.get(peer, id)?;
        Some(ForwardAck {
            n,
            session: id,
            next_seq: s.unflushed_from.unwrap_or(s.next_seq),
        })
    }
}
