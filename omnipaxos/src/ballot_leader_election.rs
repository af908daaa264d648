//! Ballots: the rounds in which servers lead.
//!
//! The election itself runs inside [`crate::OmniPaxos`]; its messages are in
//! [`crate::messages::ballot_leader_election`].

use crate::util::{ConfigurationId, NodeId};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// A leader's round ("epoch") number.
///
/// Ballots are ordered by `(n, priority, pid)`; `config_id` only breaks the (never useful) tie
/// between ballots of different configurations, so that `Ord` agrees with `Eq`.
/// `Ballot::default()` (all zero) is lower than any ballot a node ever uses.
#[derive(Clone, Copy, Eq, Debug, Default, PartialEq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct Ballot {
    /// The configuration this ballot belongs to.
    pub config_id: ConfigurationId,
    /// The round number; a takeover uses a number higher than any it has seen.
    pub n: u32,
    /// The owner's priority: among equal `n`, the higher priority wins.
    pub priority: u32,
    /// The owner of the ballot; breaks remaining ties.
    pub pid: NodeId,
}

impl Ballot {
    /// A ballot with these fields.
    pub fn with(config_id: ConfigurationId, n: u32, priority: u32, pid: NodeId) -> Ballot {
        Ballot {
            config_id,
            n,
            priority,
            pid,
        }
    }
}

impl Ord for Ballot {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.n, self.priority, self.pid, self.config_id).cmp(&(
            other.n,
            other.priority,
            other.pid,
            other.config_id,
        ))
    }
}

impl PartialOrd for Ballot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
