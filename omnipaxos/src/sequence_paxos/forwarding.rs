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
//!
//! **Given up, handed back.** Where the new leader's history of its log is partial (it
//! restarted, and no follower could fill the gap), it cannot tell; it takes the number but does
//! not append the proposal, and its acknowledgement says so (`ForwardAck::given_up`, kept until
//! `ProposalForward::acked` shows the follower took it in). The follower hands such proposals
//! back to the application (`OmniPaxos::take_uncertain_appends`), and so it does with whatever
//! still waits here when the configuration stops: nothing leaves without a trace.
//!
//! **One incarnation per ballot.** A node that restarts forgets what it forwarded, while its
//! old forwards may still be in flight (or resent by the network) and reach the leader after
//! the new incarnation started numbering. Had both incarnations numbered in one session, the
//! leader would take the old proposals for new ones and drop the new ones as seen. So a node
//! forwards only in ballots above the one it had promised when it was built (its *fence*): its
//! earlier incarnations promised at most that one, so they never forwarded in such a ballot. A
//! follower that restarts under the same leader asks it for a higher ballot
//! ([`crate::messages::sequence_paxos::NewBallotReq`]) once it has proposals to forward, and
//! keeps them until then. Within one incarnation and one ballot a follower uses a single
//! session, the first that reaches it, so a session is numbered by one incarnation, from 0.

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
    /// Invariant: a session's leader ballot is above `fence`.
    session: Option<Session>,
    in_flight: VecDeque<Batch<T>>,
    orphans: Vec<Orphan<T>>,
    /// The ballot this node had promised when it was built: it forwards only in higher ones
    /// of that configuration (see the module docs). Forwards in other configurations never
    /// meet: a node acts only on its own configuration's.
    fence: Ballot,
    /// The ballot whose leader we last asked for a higher one.
    asked: Option<Ballot>,
    /// Appends of ours the library gave up on (see `give_back`), newest last; at most
    /// `UNCERTAIN_KEPT`.
    uncertain: VecDeque<T>,
    /// How many appends were ever given back (kept or not).
    uncertain_total: u64,
}

/// At most this many appends given back wait to be taken; older ones are dropped (still counted).
const UNCERTAIN_KEPT: usize = 10_000;

impl<T: Entry> Forwarder<T> {
    /// A forwarder for a node that had promised `fence` when it was built.
    pub(crate) fn new(fence: Ballot) -> Self {
        Forwarder {
            unsent: Vec::new(),
            session: None,
            in_flight: VecDeque::new(),
            orphans: Vec::new(),
            fence,
            asked: None,
            uncertain: VecDeque::new(),
            uncertain_total: 0,
        }
    }

    /// Appends of ours whose fate the library cannot know (given up by a leader, or left when
    /// the configuration stopped), for the application.
    pub(crate) fn give_back(&mut self, entries: impl IntoIterator<Item = T>) {
        for e in entries {
            self.uncertain_total += 1;
            if self.uncertain.len() == UNCERTAIN_KEPT {
                self.uncertain.pop_front();
            }
            self.uncertain.push_back(e);
        }
    }

    /// Takes the appends given back so far, oldest first.
    pub(crate) fn take_uncertain(&mut self) -> Vec<T> {
        self.uncertain.drain(..).collect()
    }

    /// How many appends were ever given back.
    pub(crate) fn uncertain_total(&self) -> u64 {
        self.uncertain_total
    }

    /// The configuration stopped: nothing waiting here will reach its log any more (and what
    /// is in flight may or may not have).
    pub(crate) fn give_back_all(&mut self) {
        self.session = None;
        let unsent = std::mem::take(&mut self.unsent);
        let in_flight: Vec<T> = self.in_flight.drain(..).flat_map(|b| b.entries).collect();
        let orphans: Vec<T> = self.orphans.drain(..).flat_map(|o| o.entries).collect();
        self.give_back(in_flight.into_iter().chain(orphans).chain(unsent));
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

    /// `leader` opened session `id` for us. The first session per leader is kept: an extra one
    /// (from a duplicated promise) would strand what is in flight in the first. Refused at or
    /// below the fence: an earlier incarnation of ours may have forwarded in that ballot.
    pub(crate) fn open_session(&mut self, leader: Ballot, id: u64) {
        if self.fenced(leader) {
            return;
        }
        match self.session {
            Some(s) if s.leader == leader => {}
            _ => {
                self.follow(leader);
                self.session = Some(Session {
                    leader,
                    id,
                    next_seq: 0,
                });
            }
        }
    }

    /// Whether an earlier incarnation of ours may have forwarded in ballot `n`.
    fn fenced(&self, n: Ballot) -> bool {
        n.config_id == self.fence.config_id && n <= self.fence
    }

    /// Whether to ask the leader of `promise` (which we follow in its accept phase) for a
    /// higher ballot: we may not forward in this one and have proposals waiting. `again`: also
    /// if we asked already (a resend).
    pub(crate) fn should_ask_new_ballot(&mut self, promise: Ballot, again: bool) -> bool {
        let waiting = !self.unsent.is_empty() || !self.orphans.is_empty();
        if !self.fenced(promise) || !waiting || (!again && self.asked == Some(promise)) {
            return false;
        }
        self.asked = Some(promise);
        true
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
        s: &Session,
        acked: u64,
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
                acked,
            }),
        );
        batch
    }

    /// Below which number every acknowledgement of the session was taken in.
    fn acked(&self, s: &Session) -> u64 {
        self.in_flight.front().map_or(s.next_seq, |b| b.first_seq)
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
        let Some(mut s) = self.session else {
            return;
        };
        let acked = self.acked(&s);
        for o in self.orphans.drain(..) {
            let first_seq = s.next_seq;
            s.next_seq = s.next_seq.wrapping_add(o.entries.len() as u64);
            let b = Batch {
                first_seq,
                entries: o.entries,
                previous: Some(o.previous),
                min_idx: decided_idx,
            };
            let b = Self::send_batch(&s, acked, b, out);
            self.in_flight.push_back(b);
        }
        self.session = Some(s);
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
                &s,
                acked,
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
        self.session = Some(s);
    }

    /// Sends again what is in flight, consecutive batches of new proposals as one message (so
    /// one delivery repairs a whole run of lost or reordered ones).
    pub(crate) fn resend(&mut self, out: &mut impl FnMut(NodeId, PaxosMsg<T>)) {
        let Some(s) = self.session else {
            return;
        };
        let acked = self.acked(&s);
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
                acked,
            });
        }
        if let Some(p) = pending {
            out(s.leader.pid, PaxosMsg::ProposalForward(p));
        }
    }

    /// The leader is done with our proposals numbered below `ack.next_seq`: those it gave up
    /// go back to the application.
    pub(crate) fn handle_ack(&mut self, ack: &ForwardAck) {
        let Some(s) = self.session else { return };
        if s.leader != ack.n || s.id != ack.session {
            return;
        }
        let given_up = |seq: u64| ack.given_up.iter().any(|(a, b)| (*a..*b).contains(&seq));
        let mut back = Vec::new();
        while let Some(b) = self.in_flight.front_mut() {
            if ack.next_seq <= b.first_seq {
                break;
            }
            let end = b.first_seq.saturating_add(b.entries.len() as u64);
            let k = (ack.next_seq.min(end) - b.first_seq) as usize;
            if ack.given_up.is_empty() && k == b.entries.len() {
                // The usual case: the whole batch is in the leader's log.
                self.in_flight.pop_front();
                continue;
            }
            let first = b.first_seq;
            for (i, e) in b.entries.drain(..k).enumerate() {
                if given_up(first.wrapping_add(i as u64)) {
                    back.push(e);
                }
            }
            b.first_seq = b.first_seq.wrapping_add(k as u64);
            if let Some(p) = &mut b.previous {
                p.first_seq = p.first_seq.wrapping_add(k as u64);
            }
            if b.entries.is_empty() {
                self.in_flight.pop_front();
            }
        }
        self.give_back(back);
    }
}

/// At most this many sessions are remembered per follower, oldest dropped first (a bound for
/// hostile input). A promise without a session gets the newest session if nothing was
/// forwarded in it yet, so a follower has the one it forwards in (it forwards in one session
/// per ballot) and at most one unused.
const SESSIONS_PER_PEER: usize = 8;

/// A follower's session at the leader.
#[derive(Clone, Debug)]
struct PeerSession {
    id: u64,
    /// Proposals numbered below this were taken (appended to the batch, or found or given up).
    next_seq: u64,
    /// The first proposal taken into the batch and not yet in the log, if any.
    unflushed_from: Option<u64>,
    /// Numbers `start..end` of proposals taken but given up, ascending, not yet known to be
    /// taken in by the follower (see `ProposalForward::acked`); at most `GIVEN_UP_KEPT`.
    given_up: Vec<(u64, u64)>,
}

/// At most this many ranges of given-up proposals are remembered per session (oldest dropped).
const GIVEN_UP_KEPT: usize = 64;

/// The leader side: which forwarded proposals each session delivered.
#[derive(Default)]
pub(crate) struct ForwardSessions {
    next_id: u64,
    /// Per peer, oldest first.
    by_peer: HashMap<NodeId, Vec<PeerSession>>,
}

impl ForwardSessions {
    /// The session for `peer` after its promise: the one it holds if we know it, else the
    /// newest if nothing was forwarded in it (the peer may hold that one already, from an earlier
    /// sync), else a new one.
    pub(crate) fn session_for_promise(&mut self, peer: NodeId, held: Option<u64>) -> u64 {
        let sessions = self.by_peer.entry(peer).or_default();
        if let Some(id) = held {
            if sessions.iter().any(|s| s.id == id) {
                return id;
            }
        }
        if let Some(s) = sessions.last().filter(|s| s.next_seq == 0) {
            return s.id;
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
            given_up: Vec::new(),
        });
        id
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

    /// The follower took in our acknowledgements below `acked`: what we gave up there is told.
    pub(crate) fn taken_in(&mut self, peer: NodeId, id: u64, acked: u64) {
        if let Some(s) = self.get(peer, id) {
            s.given_up.retain(|(_, end)| *end > acked);
        }
    }

    /// Proposal `seq` of the session is given up (taken, but not appended).
    pub(crate) fn give_up(&mut self, peer: NodeId, id: u64, seq: u64) {
        let Some(s) = self.get(peer, id) else {
            return;
        };
        match s.given_up.last_mut() {
            Some((_, end)) if *end == seq => *end = seq.saturating_add(1),
            _ => {
                if s.given_up.len() == GIVEN_UP_KEPT {
                    s.given_up.remove(0);
                }
                s.given_up.push((seq, seq.saturating_add(1)));
            }
        }
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
        let next_seq = s.unflushed_from.unwrap_or(s.next_seq);
        Some(ForwardAck {
            n,
            session: id,
            next_seq,
            given_up: s
                .given_up
                .iter()
                .copied()
                .filter(|(start, _)| *start < next_seq)
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::NoSnapshot;

    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    struct E(u64);

    impl Entry for E {
        type Snapshot = NoSnapshot;
    }

    fn sent(f: &mut Forwarder<E>) -> Vec<ProposalForward<E>> {
        let mut out = Vec::new();
        f.flush(1, 100, true, 0, &mut |_, m| {
            if let PaxosMsg::ProposalForward(p) = m {
                out.push(p)
            }
        });
        out
    }

    #[test]
    fn a_restarted_node_forwards_only_above_the_ballot_it_had_promised() {
        let fence = Ballot::with(1, 4, 0, 3);
        let mut f = Forwarder::new(fence);
        f.push(E(1));
        // The leader it promised before the crash: no session, and it asks for a higher ballot,
        // once (and again only at a resend).
        f.open_session(fence, 7);
        assert!(sent(&mut f).is_empty());
        assert!(f.should_ask_new_ballot(fence, false));
        assert!(!f.should_ask_new_ballot(fence, false));
        assert!(f.should_ask_new_ballot(fence, true));
        // The same leader in a higher ballot: a session, numbered from 0.
        let next = Ballot::with(1, 5, 0, 3);
        assert!(!f.should_ask_new_ballot(next, false));
        f.open_session(next, 8);
        let p = sent(&mut f);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].n, p[0].session, p[0].first_seq), (next, 8, 0));
        // A ballot of another configuration is never fenced (its forwards cannot meet ours).
        let other = Ballot::with(2, 1, 0, 3);
        let mut g = Forwarder::<E>::new(fence);
        g.push(E(2));
        assert!(!g.should_ask_new_ballot(other, false));
        g.open_session(other, 1);
        assert_eq!(sent(&mut g).len(), 1);
    }

    #[test]
    fn nothing_to_forward_asks_for_nothing() {
        let fence = Ballot::with(1, 4, 0, 3);
        let mut f = Forwarder::<E>::new(fence);
        assert!(!f.should_ask_new_ballot(fence, true));
    }

    #[test]
    fn a_promise_without_a_session_gets_the_newest_unused_one() {
        let mut s = ForwardSessions::default();
        let a = s.session_for_promise(2, None);
        assert_eq!(s.session_for_promise(2, None), a, "unused: given again");
        assert_eq!(s.receive(2, a, 0, 3), Some(0));
        let b = s.session_for_promise(2, None);
        assert_ne!(b, a, "used: a new one");
        assert_eq!(s.session_for_promise(2, Some(a)), a, "the held one");
        assert_eq!(s.session_for_promise(2, None), b);
        assert_ne!(s.session_for_promise(3, None), b, "per peer");
        // Numbering: a repeat is skipped, a gap is refused, the rest is taken.
        assert_eq!(s.receive(2, a, 1, 4), Some(2));
        assert_eq!(s.receive(2, a, 9, 1), None);
        assert_eq!(s.receive(2, 99, 0, 1), None, "unknown session");
    }
}
