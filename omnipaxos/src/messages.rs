//! The messages servers exchange. Route each one to [`Message::get_receiver`] and serialize it
//! (feature `serde`); what is inside is the library's business and may change in any release.
//!
//! A node ignores messages addressed to another pid, messages from pids outside the
//! configurations it knows, and malformed ones: a message decoded from untrusted bytes never
//! panics a node.

use crate::{ble::HeartbeatMsg, node::wire::PaxosMsg, storage::Entry, util::NodeId};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// Messages of Sequence Paxos (log replication, reconfiguration, reads).
pub mod sequence_paxos {
    use super::*;

    /// A Sequence Paxos message with its sender and receiver.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct PaxosMessage<T: Entry> {
        /// Sender.
        pub from: NodeId,
        /// Receiver.
        pub to: NodeId,
        pub(crate) msg: PaxosMsg<T>,
    }
}

/// Messages of Ballot Leader Election.
pub mod ballot_leader_election {
    use super::*;

    /// A heartbeat message with its sender and receiver.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct BLEMessage {
        /// Sender.
        pub from: NodeId,
        /// Receiver.
        pub to: NodeId,
        pub(crate) msg: HeartbeatMsg,
    }
}

use ballot_leader_election::BLEMessage;
use sequence_paxos::PaxosMessage;

/// A message between two servers.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub enum Message<T: Entry> {
    /// Log replication.
    SequencePaxos(PaxosMessage<T>),
    /// Leader election.
    BLE(BLEMessage),
}

impl<T: Entry> Message<T> {
    /// The sender's pid.
    pub fn get_sender(&self) -> NodeId {
        match self {
            Message::SequencePaxos(m) => m.from,
            Message::BLE(m) => m.from,
        }
    }

    /// The pid to deliver the message to.
    pub fn get_receiver(&self) -> NodeId {
        match self {
            Message::SequencePaxos(m) => m.to,
            Message::BLE(m) => m.to,
        }
    }

    /// The kind of the message (`"Prepare"`, `"AcceptDecide"`, `"Offer"`, `"HeartbeatRequest"`,
    /// ...: the name of its innermost serde variant, with `Heartbeat` before the election's),
    /// for tests that hold or drop messages by kind. Not a stable interface.
    #[doc(hidden)]
    pub fn kind(&self) -> &'static str {
        match self {
            Message::SequencePaxos(m) => m.msg.kind(),
            Message::BLE(m) => m.msg.kind(),
        }
    }
}

impl<T: Entry> Message<T> {
    /// The ballot a Sequence Paxos message belongs to (`None` for election and succession
    /// messages), for tests. Not a stable interface.
    #[doc(hidden)]
    pub fn ballot(&self) -> Option<crate::ballot_leader_election::Ballot> {
        match self {
            Message::SequencePaxos(m) => m.msg.ballot(),
            Message::BLE(_) => None,
        }
    }

    /// The number of log entries the message carries (0 for most kinds), for tests and
    /// benchmarks that model links by their load. Not a stable interface.
    #[doc(hidden)]
    pub fn entry_count(&self) -> usize {
        match self {
            Message::SequencePaxos(m) => m.msg.entry_count(),
            Message::BLE(_) => 0,
        }
    }
}

/// One line: `from->to Kind fields…`, the form the scripted tests read. Not a stable format.
impl<T: Entry> fmt::Display for Message<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}->{} ", self.get_sender(), self.get_receiver())?;
        match self {
            Message::SequencePaxos(m) => m.msg.fmt(f),
            Message::BLE(m) => m.msg.fmt(f),
        }
    }
}
