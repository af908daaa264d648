//! The role room: a node is the leader of its promised ballot, a follower, or stopped (its
//! configuration is over). The role is a value: each variant holds only what that role needs,
//! and code that needs the leader's data matches on the role once.
//!
//! ```text
//!              election chose us (ballot n)               Prepare(n' > n)
//!   Follower ──────────────────────────────> Leader(n) ─────────────────> Follower
//!       │                                      │  prepare ──(read quorum)──> accept
//!       └──────────── configuration over ──────┴─────────────────────────> Stopped
//! ```
//!
//! * [`follower`]: promise, synchronise, accept, decide.
//! * [`leader`]: the leader's state and its accept phase; [`prepare`]: its prepare phase;
//!   [`replicate`]: how it streams its log to the followers.
//! * [`sync`]: log syncs, made and applied; [`progress`]: what the leader knows of each follower.

pub(crate) mod follower;
pub(crate) mod leader;
mod prepare;
mod progress;
mod replicate;
pub(crate) mod sync;

use super::{core::Core, wire::role::RoleMsg};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Storage},
    util::NodeId,
};
use follower::Follower;
use leader::Leader;

/// The phase a node is in, as [`crate::OmniPaxos`] reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Promised nothing yet, or promised and waiting for the leader's sync.
    Prepare,
    /// Accepting (a follower synced in its promised ballot, or the leader after adoption).
    Accept,
    /// Rebuilt from storage that held a promise: asking for a `Prepare`.
    Recover,
    /// The configuration is over.
    Stopped,
}

pub(crate) enum Role<T: Entry> {
    Follower(Follower),
    Leader(Box<Leader<T>>),
    /// The configuration is over (its stop sign is decided, or a server that holds it said so):
    /// the role takes part in nothing more.
    Stopped,
}

impl<T: Entry> Role<T> {
    /// The role of a node built on storage that held `promise` (recovering) or nothing.
    pub(crate) fn new(recovering: bool) -> Self {
        Role::Follower(if recovering {
            Follower::recovering()
        } else {
            Follower::default()
        })
    }

    pub(crate) fn leader(&self) -> Option<&Leader<T>> {
        match self {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn leader_mut(&mut self) -> Option<&mut Leader<T>> {
        match self {
            Role::Leader(l) => Some(l),
            _ => None,
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        matches!(self, Role::Stopped)
    }

    pub(crate) fn phase<B: Storage<T>>(&self, core: &Core<T, B>) -> Phase {
        match self {
            Role::Leader(l) if l.is_accepting() => Phase::Accept,
            Role::Leader(_) => Phase::Prepare,
            Role::Follower(f) if f.is_recovering() => Phase::Recover,
            Role::Follower(_) if Follower::is_accepting(core) => Phase::Accept,
            Role::Follower(_) => Phase::Prepare,
            Role::Stopped => Phase::Stopped,
        }
    }

    /// Stops leading, if we lead: what never reached the log goes back (see [`Leader`]).
    fn step_down<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Role::Leader(_) = self {
            let Role::Leader(l) = std::mem::replace(self, Role::Follower(Follower::default()))
            else {
                unreachable!("matched a leader");
            };
            l.step_down(core);
        }
    }

    /// The configuration is over: stop taking part.
    pub(crate) fn stop<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        self.step_down(core);
        *self = Role::Stopped;
    }

    /// The leader election chose `b`.
    pub(crate) fn handle_leader<B: Storage<T>>(&mut self, core: &mut Core<T, B>, b: Ballot) {
        if self.is_stopped() {
            return;
        }
        if b.pid == core.pid {
            if b > core.log.promise() {
                self.step_down(core);
                *self = Role::Leader(Box::new(Leader::start(core, b)));
            }
        } else {
            if self.leader().is_some_and(|l| b > l.ballot()) {
                // A leader of a higher ballot serves: we were deposed (our followers may
                // not have told us yet). Stop calling ourselves leader, and ask to follow.
                self.step_down(core);
            }
            if let Role::Follower(f) = self {
                f.follow(core, b);
            }
        }
    }

    /// Handles a message of the role room from `from` (a peer, checked by the node).
    pub(crate) fn handle<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        m: RoleMsg<T>,
    ) {
        if let RoleMsg::Prepare(p) = &m {
            if p.n > core.log.promise() && p.n.pid == from {
                // A higher ballot takes over from us.
                self.step_down(core);
            }
        }
        match self {
            Role::Stopped => {}
            Role::Leader(l) => match m {
                RoleMsg::Promise(p) => l.handle_promise(core, from, p),
                RoleMsg::Accepted(a) => l.handle_accepted(core, from, a),
                RoleMsg::ResyncReq(r) => l.handle_resync_req(core, from, r),
                RoleMsg::PrepareReq(r) => l.handle_prepare_req(core, from, r),
                RoleMsg::NotAccepted(na) => l.handle_not_accepted(na),
                // Messages of another leader's ballot: answered as a follower would (ours is
                // never theirs).
                RoleMsg::Prepare(_) => {}
                RoleMsg::AcceptSync(a) => {
                    follower::standing(core, from, a.n);
                }
                RoleMsg::AcceptDecide(a) => {
                    follower::standing(core, from, a.n);
                }
                RoleMsg::AcceptStopSign(a) => {
                    follower::standing(core, from, a.n);
                }
                RoleMsg::Decide(d) => {
                    follower::standing(core, from, d.n);
                }
            },
            Role::Follower(f) => match m {
                RoleMsg::Prepare(p) => f.handle_prepare(core, from, p),
                RoleMsg::AcceptSync(a) => f.handle_accept_sync(core, from, a),
                RoleMsg::AcceptDecide(a) => f.handle_accept_decide(core, from, a),
                RoleMsg::AcceptStopSign(a) => f.handle_accept_stopsign(core, from, a),
                RoleMsg::Decide(d) => f.handle_decide(core, from, d),
                // Leader messages: we lead no ballot.
                RoleMsg::Promise(_)
                | RoleMsg::Accepted(_)
                | RoleMsg::ResyncReq(_)
                | RoleMsg::PrepareReq(_)
                | RoleMsg::NotAccepted(_) => {}
            },
        }
    }

    /// Every resend timeout.
    pub(crate) fn resend<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        match self {
            Role::Leader(l) => l.resend(core),
            Role::Follower(f) => f.resend(core),
            Role::Stopped => {}
        }
    }

    /// Closes the current batch (a flush tick, or the application asked).
    pub(crate) fn flush_batch<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Role::Leader(l) = self {
            l.flush_batch(core);
        }
    }

    /// With `batch_size` 1: a leader puts what was proposed since the last take into its log.
    #[inline]
    pub(crate) fn place_unbatched<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Role::Leader(l) = self {
            l.place_unbatched(core);
        }
    }

    pub(crate) fn reconnected<B: Storage<T>>(&mut self, core: &mut Core<T, B>, pid: NodeId) {
        match self {
            Role::Leader(l) => l.reconnected(core, pid),
            Role::Follower(f) => f.reconnected(core, pid),
            Role::Stopped => {}
        }
    }

    /// Re-enter recovery: ask the leader to synchronise us again. Harmless at any time.
    pub(crate) fn recover<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Role::Follower(f) = self {
            if core.log.promise() != Ballot::default() {
                f.start_recovery(core);
            }
        }
    }

    /// Builds the messages that may leave before the staged writes are done (a leader's
    /// accepts of its staged entries).
    pub(crate) fn build_ahead<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Role::Leader(l) = self {
            l.build_ahead(core);
        }
    }

    /// Builds the messages owed after the log was flushed.
    pub(crate) fn build_outgoing<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        match self {
            Role::Leader(l) => l.build_outgoing(core),
            Role::Follower(f) => f.build_outgoing(core),
            Role::Stopped => {}
        }
    }

    /// A ballot above ours that a peer promised, reported once.
    pub(crate) fn take_higher_promise(&mut self) -> Option<Ballot> {
        self.leader_mut().and_then(|l| l.higher_promise.take())
    }
}
