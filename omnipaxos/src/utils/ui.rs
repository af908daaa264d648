//! The states omnipaxos 0.2.4 gave its dashboard (`omnipaxos_ui`):
//! [`OmniPaxos::get_ui_states`] returns an [`OmniPaxosStates`].
//!
//! The types and fields are 0.2.4's. They are filled from the node's public getters, so two of
//! them hold less than in 0.2.4, which read the leader election's and the leader's internals:
//!
//! * `heartbeats` (in both structs) is empty: 0.3 does not expose which servers answered the
//!   last heartbeat round. Use your transport's view of its connections for liveness.
//! * `cluster_state.accepted_indexes` is indexed by pid (index 0 unused, as in 0.2.4) and holds
//!   this node's own accepted index at its pid and 0 for every other server, which is what a
//!   0.2.4 node that had never led showed (empty for a pid above [`MAX_INDEXED_PID`]). 0.3 does
//!   not expose the leader's view of its followers' progress.

use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Storage},
    util::NodeId,
    OmniPaxos,
};

/// A server's answer to a heartbeat, as omnipaxos 0.2.4's dashboard showed it (the election's
/// own messages are the library's business; this is a view with 0.2.4's fields).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The heartbeat round answered.
    pub round: u32,
    /// The replying server's ballot.
    pub ballot: Ballot,
    /// The leader the replying server follows.
    pub leader: Ballot,
    /// Whether the replying server is content with its leader.
    pub happy: bool,
}

/// The largest pid that gets an entry in [`ClusterState::accepted_indexes`] (which is indexed by
/// pid, so a larger one would need a vector that large).
pub const MAX_INDEXED_PID: usize = 65_535;

/// What this node knows of the other servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterState {
    /// Accepted indexes by pid (`accepted_indexes[pid]`); the vector is `pid + 1` long for this
    /// node's `pid`, and only this node's own entry is known (the others are 0). Empty if the
    /// pid is above [`MAX_INDEXED_PID`].
    pub accepted_indexes: Vec<usize>,
    /// The heartbeat replies of the last round, this node's included, in 0.2.4. Always empty
    /// here (see the [module docs](self)).
    pub heartbeats: Vec<HeartbeatReply>,
}

/// The states of one node, for a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmniPaxosStates {
    /// This node's own ballot in the leader election
    /// ([`OmniPaxos::get_election_ballot`]).
    pub current_ballot: Ballot,
    /// The leader this node follows, if any ([`OmniPaxos::get_current_leader`]).
    pub current_leader: Option<NodeId>,
    /// The decided index ([`OmniPaxos::get_decided_idx`]).
    pub decided_idx: usize,
    /// The heartbeat replies of the last round in 0.2.4; always empty here (see the
    /// [module docs](self)).
    pub heartbeats: Vec<HeartbeatReply>,
    /// What this node knows of the other servers.
    pub cluster_state: ClusterState,
}

impl<T: Entry, B: Storage<T>> OmniPaxos<T, B> {
    /// The states omnipaxos 0.2.4's dashboard showed (see [`crate::utils::ui`] for what is not
    /// known here).
    pub fn get_ui_states(&self) -> OmniPaxosStates {
        // Indexed by pid, as in 0.2.4; a pid above `MAX_INDEXED_PID` would make the vector
        // huge, so it stays empty then.
        let accepted_indexes = match usize::try_from(self.get_pid()) {
            Ok(pid) if pid <= MAX_INDEXED_PID => {
                let mut v = vec![0; pid + 1];
                v[pid] = self.get_accepted_idx();
                v
            }
            _ => Vec::new(),
        };
        OmniPaxosStates {
            current_ballot: self.get_election_ballot(),
            current_leader: self.get_current_leader().map(|(leader, _)| leader),
            decided_idx: self.get_decided_idx(),
            heartbeats: Vec::new(),
            cluster_state: ClusterState {
                accepted_indexes,
                heartbeats: Vec::new(),
            },
        }
    }
}
