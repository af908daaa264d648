//! The reads room: linearizable reads without a log write (*read index*).
//!
//! A read asked at any node gets an index from the leader: every entry decided before the
//! read was asked is below it. Once the asking node has decided up to that index, the
//! application answers the read from its state (applied at least that far).
//!
//! ```text
//!  follower: request_read ── ReadReq ──> leader
//!  leader:   reads waiting ── ReadConfirm(round) ──> followers ── ReadConfirmed(round) ──>
//!            enough still follow us: index = max(decided, end of the log we adopted)
//!            ── ReadIndex ──> follower (or our own read)        ready once decided >= index
//! ```
//!
//! **Why it is linearizable.** The leader answers only after enough servers confirmed, *after
//! the read arrived*, that they still follow its ballot: `n - read_quorum + 1` of them (itself
//! included), so that every read quorum contains one of them. A newer leader needs a read
//! quorum of promises before it decides anything, so no entry was decided in a newer ballot
//! before the confirmation, and every entry decided in an older one is in the log the leader
//! adopted (below its end) or was decided by this leader (below its decided index). No clock
//! is involved: message delays can be anything. All reads waiting when a round starts share
//! it; reads that arrive during a round wait for the next one.
//!
//! A read whose leader changes before it answered is asked again from the next leader. The
//! application decides how long it waits (there is no timeout here).
//!
//! **Reconfiguration.** A leader whose log holds a stop sign starts no round: once the stop
//! sign is decided the next configuration decides entries beyond this log, so no index here
//! is linearizable any more. Such reads stay pending; the application asks them again on the
//! node of the next configuration.

use super::{core::Core, role::Role, wire::reads::ReadMsg};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Storage},
    util::NodeId,
};

/// Identifies a read asked at this node ([`crate::OmniPaxos::request_read`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReadId(pub u64);

/// A read that can be answered: this node decided up to `index`, which covers every entry
/// decided before the read was asked, and holds that decided log (a server that joined holds
/// the log before its configuration once it pulled it). Apply the decided log at least up to
/// `index`, then read.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ReadIndex {
    /// The read.
    pub id: ReadId,
    /// The decided index the read must see.
    pub index: usize,
}

/// A read asked here.
#[derive(Clone, Debug)]
struct Mine {
    id: u64,
    /// The leader asked, and when.
    asked: Option<(Ballot, u64)>,
    /// The index the leader gave.
    index: Option<usize>,
}

/// A confirmation round of the leader.
#[derive(Clone, Debug)]
struct Round {
    n: Ballot,
    number: u64,
    started: u64,
    index: usize,
    /// Reads it answers.
    reads: Vec<Asker>,
    confirmed: Vec<NodeId>,
}

/// A read waiting at the leader: the node that asked (ours: our pid), its incarnation and its
/// read id.
type Asker = (NodeId, u64, u64);

/// Read ids are numbered per incarnation (see the forwarding room's numbering): an answer
/// meant for a read of a crashed incarnation, still in flight, is never taken for a new one's.
pub(crate) struct Reads {
    inc: u64,
    /// Legacy backends (no node record, every incarnation numbered alike): ask only leaders
    /// above this ballot (the promise the node was built with).
    fence: Option<Ballot>,
    next_id: u64,
    mine: Vec<Mine>,
    ready: Vec<ReadIndex>,
    /// Leader: reads for the next round.
    waiting: Vec<Asker>,
    round: Option<Round>,
    next_round: u64,
}

impl Reads {
    pub(crate) fn new(inc: u64, fence: Option<Ballot>) -> Self {
        Reads {
            inc,
            fence,
            next_id: 0,
            mine: Vec::new(),
            ready: Vec::new(),
            waiting: Vec::new(),
            round: None,
            next_round: 0,
        }
    }

    /// A new read asked here.
    pub(crate) fn request<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &Role<T>,
    ) -> ReadId {
        let id = self.next_id;
        self.next_id += 1;
        self.mine.push(Mine {
            id,
            asked: None,
            index: None,
        });
        self.ask_leader(core, role);
        ReadId(id)
    }

    pub(crate) fn take_ready(&mut self) -> Vec<ReadIndex> {
        std::mem::take(&mut self.ready)
    }

    pub(crate) fn pending(&self) -> usize {
        self.mine.len()
    }

    /// Sends our unanswered reads to the leader (ours go into the next round).
    fn ask_leader<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>, role: &Role<T>) {
        let prom = core.log.promise();
        let now = core.now;
        let resend = core.timing.resend_timeout;
        let leading = role
            .leader()
            .is_some_and(|l| l.is_accepting() && l.ballot() == prom);
        for m in self.mine.iter_mut().filter(|m| m.index.is_none()) {
            let due = match m.asked {
                None => true,
                Some((n, at)) => n != prom || now >= at.saturating_add(resend),
            };
            if !due {
                continue;
            }
            let asker = (core.pid, self.inc, m.id);
            let fenced = self.fence.is_some_and(|f| prom <= f);
            if leading {
                m.asked = Some((prom, now));
                if !self.waiting.contains(&asker) {
                    self.waiting.push(asker);
                }
            } else if prom.pid != 0 && prom.pid != core.pid && core.is_peer(prom.pid) && !fenced {
                m.asked = Some((prom, now));
                core.send(
                    prom.pid,
                    ReadMsg::ReadReq {
                        n: prom,
                        inc: self.inc,
                        id: m.id,
                    },
                );
            }
        }
        self.start_round(core, role);
    }

    /// Leader: starts a confirmation round for the waiting reads, if none runs.
    fn start_round<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>, role: &Role<T>) {
        if self.round.is_some() || self.waiting.is_empty() {
            return;
        }
        let Some(l) = role.leader().filter(|l| l.is_accepting()) else {
            return;
        };
        if core.log.stopsign().is_some() {
            // The configuration is stopping: once its stop sign is decided (perhaps already,
            // by an earlier leader), the next configuration decides entries that no index of
            // this log covers, and no confirmation here can rule them out. The reads stay
            // pending; the application asks them again on the next configuration's node.
            // Reads answered by rounds that started before the stop sign reached our log are
            // sound: it was then not decided in any ballot up to ours (it would be in the log
            // we adopted or our own), nor in a newer one (see the module docs), so the next
            // configuration had decided nothing when they were asked.
            return;
        }
        let n = l.ballot();
        let number = self.next_round;
        self.next_round += 1;
        self.round = Some(Round {
            n,
            number,
            started: core.now,
            index: l.read_floor(core),
            reads: std::mem::take(&mut self.waiting),
            confirmed: Vec::new(),
        });
        core.broadcast(ReadMsg::ReadConfirm { n, round: number });
        self.check_round(core);
    }

    /// Confirmations needed, ourselves included: enough that every read quorum holds one.
    fn needed<T: Entry, B: Storage<T>>(core: &Core<T, B>) -> usize {
        core.config.nodes.len() + 1 - core.quorum.read_size()
    }

    fn check_round<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let Some(r) = &self.round else {
            return;
        };
        if r.confirmed.len() + 1 < Self::needed(core) {
            return;
        }
        let Some(r) = self.round.take() else {
            return;
        };
        for (origin, inc, id) in r.reads {
            if origin == core.pid {
                if let Some(m) = self.mine.iter_mut().find(|m| m.id == id && inc == self.inc) {
                    m.index = Some(r.index);
                }
            } else {
                core.send(
                    origin,
                    ReadMsg::ReadIndex {
                        n: r.n,
                        inc,
                        id,
                        idx: r.index,
                    },
                );
            }
        }
    }

    pub(crate) fn handle<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &Role<T>,
        from: NodeId,
        m: ReadMsg,
    ) {
        match m {
            ReadMsg::ReadReq { n, inc, id } => {
                let ours = role
                    .leader()
                    .is_some_and(|l| l.ballot() == n && l.is_accepting());
                if ours && from != core.pid && !self.waiting.contains(&(from, inc, id)) {
                    self.waiting.push((from, inc, id));
                    self.start_round(core, role);
                }
            }
            ReadMsg::ReadConfirm { n, round } => {
                if n == core.log.promise() && n.pid == from {
                    core.send(from, ReadMsg::ReadConfirmed { n, round });
                }
            }
            ReadMsg::ReadConfirmed { n, round } => {
                if let Some(r) = self.round.as_mut() {
                    if r.n == n && r.number == round && !r.confirmed.contains(&from) {
                        r.confirmed.push(from);
                    }
                }
                self.check_round(core);
                self.start_round(core, role);
            }
            ReadMsg::ReadIndex { n, inc, id, idx } => {
                if n.pid != from || inc != self.inc {
                    return;
                }
                if let Some(m) = self.mine.iter_mut().find(|m| m.id == id) {
                    if m.asked.is_some_and(|(b, _)| b == n) && m.index.is_none() {
                        m.index = Some(idx);
                    }
                }
            }
        }
    }

    /// Every resend timeout: ask again what was not answered; a round that did not complete
    /// (lost messages) starts over with its reads.
    pub(crate) fn resend<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &Role<T>,
    ) {
        if let Some(r) = &self.round {
            let stale = core.now >= r.started.saturating_add(core.timing.resend_timeout);
            if stale {
                if let Some(r) = self.round.take() {
                    self.waiting.extend(r.reads);
                }
            }
        }
        self.ask_leader(core, role);
    }

    /// After every input: reads whose index this node decided are ready; a leader that stopped
    /// leading drops its rounds (the readers ask the next one).
    #[inline]
    pub(crate) fn settle<T: Entry, B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &Role<T>,
    ) {
        // No read here or asked of us: nothing to settle (the common case on a write path).
        if !(self.mine.is_empty() && self.waiting.is_empty() && self.round.is_none()) {
            self.settle_now(core, role);
        }
    }

    fn settle_now<T: Entry, B: Storage<T>>(&mut self, core: &mut Core<T, B>, role: &Role<T>) {
        let leading = role
            .leader()
            .filter(|l| l.is_accepting())
            .map(|l| l.ballot());
        if self.round.as_ref().is_some_and(|r| Some(r.n) != leading) {
            self.round = None;
        }
        if leading.is_none() {
            // Ours are asked again from the next leader; others' ask it themselves.
            self.waiting.clear();
        }
        // Ready once decided that far, and readable: a server that joined and still pulls the
        // log before its configuration cannot apply it yet.
        let record = core.log.durable_record();
        let readable = record.pending_below == 0 && record.start.index().is_some();
        let decided = if readable {
            core.log.durable_decided_idx()
        } else {
            0
        };
        let ready = &mut self.ready;
        self.mine.retain(|m| match m.index {
            Some(index) if decided >= index => {
                ready.push(ReadIndex {
                    id: ReadId(m.id),
                    index,
                });
                false
            }
            _ => true,
        });
        // Reads asked of a leader we no longer follow go to the new one.
        let prom = core.log.promise();
        if self
            .mine
            .iter()
            .any(|m| m.index.is_none() && m.asked.map_or(true, |(n, _)| n != prom))
        {
            self.ask_leader(core, role);
        }
    }
}
