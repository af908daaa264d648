//! Small shared types: identifiers, the entries a read returns, and flexible quorums.

use crate::storage::{Entry, StopSign};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::marker::PhantomData;

/// Identifier of a server. Must not be 0 (0 means "nobody" in ballots).
pub type NodeId = u64;

/// Identifier of a cluster configuration. Must not be 0; each reconfiguration uses a larger id.
pub type ConfigurationId = u32;

/// An absolute log index below which the log was trimmed.
pub type TrimmedIndex = usize;

/// One element of the log as seen by [`crate::OmniPaxos::read`] and friends.
///
/// Indices are absolute: a compacted prefix is shown as a single `Trimmed` or `Snapshotted`
/// element, and the entries after it keep the indices they were appended at.
#[derive(Debug, Clone)]
pub enum LogEntry<T: Entry> {
    /// The entry is decided: it will never change and is at this index on every server.
    Decided(T),
    /// The entry is accepted locally but not (known to be) decided; it may still be replaced.
    Undecided(T),
    /// Everything below this absolute index was trimmed away (no snapshot kept).
    Trimmed(TrimmedIndex),
    /// Everything below `trimmed_idx` is folded into a snapshot.
    Snapshotted(SnapshottedEntry<T>),
    /// The configuration is stopped by this StopSign; the `bool` says whether it is decided.
    /// Once decided, start the new configuration's instance.
    StopSign(StopSign, bool),
}

impl<T: Entry + PartialEq> PartialEq for LogEntry<T>
where
    T::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (LogEntry::Decided(a), LogEntry::Decided(b)) => a == b,
            (LogEntry::Undecided(a), LogEntry::Undecided(b)) => a == b,
            (LogEntry::Trimmed(a), LogEntry::Trimmed(b)) => a == b,
            (LogEntry::Snapshotted(a), LogEntry::Snapshotted(b)) => a == b,
            (LogEntry::StopSign(a, x), LogEntry::StopSign(b, y)) => a == b && x == y,
            _ => false,
        }
    }
}

/// The compacted prefix of the log, folded into a snapshot.
#[derive(Debug, Clone)]
pub struct SnapshottedEntry<T: Entry> {
    /// Absolute index up to which (exclusive) the snapshot covers the log.
    pub trimmed_idx: TrimmedIndex,
    /// The snapshot of entries `0..trimmed_idx`.
    pub snapshot: T::Snapshot,
    _p: PhantomData<T>,
}

impl<T: Entry> SnapshottedEntry<T> {
    /// A snapshot element covering `0..trimmed_idx`.
    pub fn with(trimmed_idx: usize, snapshot: T::Snapshot) -> Self {
        Self {
            trimmed_idx,
            snapshot,
            _p: PhantomData,
        }
    }
}

impl<T: Entry> PartialEq for SnapshottedEntry<T>
where
    T::Snapshot: PartialEq,
{
    fn eq(&self, other: &Self) -> bool {
        self.trimmed_idx == other.trimmed_idx && self.snapshot == other.snapshot
    }
}

/// Quorum sizes for the two phases of Sequence Paxos.
///
/// The leader needs `read_quorum_size` promises to take over and `write_quorum_size` accepts to
/// decide. Any read quorum must intersect any write quorum: `read + write > n`. A small write
/// quorum makes deciding cheaper; the price is a larger read quorum for leader changes.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct FlexibleQuorum {
    /// Promises a new leader needs (prepare phase), between 1 and n.
    pub read_quorum_size: usize,
    /// Accepts an entry needs to be decided (accept phase), between 1 and n.
    pub write_quorum_size: usize,
}

pub use crate::node::{
    forwarding::{AppendOutcome, ReturnedAppend},
    reads::{ReadId, ReadIndex},
    succession::MigrationStatus,
};

/// Counters of what a node did, for monitoring and tests.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Snapshots this node took of its own log (`snapshot`, or asked by another server).
    pub snapshots_taken: u64,
    /// Times this node's log was brought up to date with a snapshot from another server.
    pub snapshot_installs: u64,
    /// Logs of earlier configurations this node pulled in full when it joined.
    pub migrations_completed: u64,
    /// Entries of such logs (and of stopped configurations it had missed) it received.
    pub migrated_entries: u64,
    /// Appends made on this node that were handed back (see
    /// [`OmniPaxos::take_returned_appends`](crate::OmniPaxos::take_returned_appends)).
    pub returned_appends: u64,
}

/// Default values of the server configuration, in ticks unless said otherwise.
pub mod defaults {
    /// Entries at most in one message to a follower, and in flight to it before it answers.
    pub const BUFFER_SIZE: usize = 100_000;
    /// Ticks per heartbeat round of the leader election.
    pub const ELECTION_TIMEOUT: u64 = 1;
    /// Ticks before a message that may have been lost is sent again.
    pub const RESEND_MESSAGE_TIMEOUT: u64 = 100;
    /// Ticks before a partial batch is flushed.
    pub const FLUSH_BATCH_TIMEOUT: u64 = 200;
    /// Entries per batch (1: no batching).
    pub const BATCH_SIZE: usize = 1;
}
