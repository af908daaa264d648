//! The wire: the messages each room of the node exchanges with its counterpart on other
//! servers, one module per room, gathered in [`PaxosMsg`]. They are the library's business:
//! users only route them ([`crate::messages::Message`] is opaque).

pub(crate) mod compaction;
pub(crate) mod forward;
pub(crate) mod reads;
pub(crate) mod role;
pub(crate) mod succession;

use crate::{ballot_leader_election::Ballot, storage::Entry};
use compaction::CompactionMsg;
use forward::ForwardMsg;
use reads::ReadMsg;
use role::RoleMsg;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;
use succession::SuccessionMsg;

/// A message of one of the node's rooms.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) enum PaxosMsg<T: Entry> {
    Role(RoleMsg<T>),
    Compaction(CompactionMsg),
    Forward(ForwardMsg<T>),
    Succession(SuccessionMsg<T>),
    Read(ReadMsg),
}

impl<T: Entry> PaxosMsg<T> {
    /// The ballot the message belongs to; `None` for succession messages, which cross
    /// configurations.
    pub(crate) fn ballot(&self) -> Option<Ballot> {
        match self {
            PaxosMsg::Role(m) => Some(m.ballot()),
            PaxosMsg::Compaction(m) => Some(m.n),
            PaxosMsg::Forward(m) => Some(m.ballot()),
            PaxosMsg::Read(m) => Some(m.ballot()),
            PaxosMsg::Succession(_) => None,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            PaxosMsg::Role(m) => m.kind(),
            PaxosMsg::Compaction(_) => "Compaction",
            PaxosMsg::Forward(m) => m.kind(),
            PaxosMsg::Succession(m) => m.kind(),
            PaxosMsg::Read(m) => m.kind(),
        }
    }
}

impl<T: Entry> PaxosMsg<T> {
    /// The number of log entries the message carries.
    pub(crate) fn entry_count(&self) -> usize {
        match self {
            PaxosMsg::Role(RoleMsg::AcceptDecide(a)) => a.entries.len(),
            PaxosMsg::Role(RoleMsg::AcceptSync(a)) => a.log_sync.suffix.len(),
            PaxosMsg::Role(RoleMsg::Promise(p)) => {
                p.log_sync.as_ref().map_or(0, |s| s.suffix.len())
            }
            PaxosMsg::Forward(ForwardMsg::Proposals(p)) => p.entries.len(),
            PaxosMsg::Succession(SuccessionMsg::Entries { entries, .. }) => entries.len(),
            _ => 0,
        }
    }
}

impl<T: Entry> fmt::Display for PaxosMsg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaxosMsg::Role(m) => m.fmt(f),
            PaxosMsg::Compaction(m) => m.fmt(f),
            PaxosMsg::Forward(m) => m.fmt(f),
            PaxosMsg::Succession(m) => m.fmt(f),
            PaxosMsg::Read(m) => m.fmt(f),
        }
    }
}

macro_rules! into_paxos_msg {
    ($($variant:ident($ty:ty)),*) => {$(
        impl<T: Entry> From<$ty> for PaxosMsg<T> {
            fn from(m: $ty) -> Self {
                PaxosMsg::$variant(m)
            }
        }
    )*};
}
into_paxos_msg!(
    Role(RoleMsg<T>),
    Compaction(CompactionMsg),
    Forward(ForwardMsg<T>),
    Succession(SuccessionMsg<T>),
    Read(ReadMsg)
);

/// Entries as `[a b c]` (each by its `Debug`), at most a few, for the scripted tests' traces.
pub(crate) fn fmt_entries<T: fmt::Debug>(v: &[T]) -> String {
    const SHOWN: usize = 8;
    let mut s = String::from("[");
    for (i, e) in v.iter().take(SHOWN).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{e:?}"));
    }
    if v.len() > SHOWN {
        s.push_str(&format!(" +{}", v.len() - SHOWN));
    }
    s.push(']');
    s
}
