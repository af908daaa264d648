//! Messages of compaction: a trim requested by the leader, a snapshot by any node.

use super::role::B;
use crate::ballot_leader_election::Ballot;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) enum Compaction {
    /// Trim the log below this absolute index.
    Trim(usize),
    /// Snapshot the log below this absolute index (or the decided index).
    Snapshot(Option<usize>),
}

/// A compaction request in the configuration of ballot `n` (the sender's promise).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct CompactionMsg {
    pub(crate) n: Ballot,
    pub(crate) compaction: Compaction,
}

impl fmt::Display for CompactionMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.compaction {
            Compaction::Trim(i) => write!(f, "Trim n={} @{i}", B(self.n)),
            Compaction::Snapshot(Some(i)) => write!(f, "SnapshotReq n={} @{i}", B(self.n)),
            Compaction::Snapshot(None) => write!(f, "SnapshotReq n={}", B(self.n)),
        }
    }
}
