//! Messages of the forwarding room: appends made at a node that does not lead, on their way to
//! the leader, and the leader's word on where they went.

use super::{fmt_entries, role::B};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign},
};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// Proposals numbered `first_seq..` that node incarnation `inc` forwards to the leader of `n`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) struct Proposals<T: Entry> {
    pub(crate) n: Ballot,
    pub(crate) inc: u64,
    /// The first proposal the sender forwarded in this ballot: the leader's numbering for it
    /// starts there.
    pub(crate) base: u64,
    pub(crate) first_seq: u64,
    pub(crate) entries: Vec<T>,
    /// The sender took in the placements of all its proposals numbered below this: the leader
    /// may forget them.
    pub(crate) acked: u64,
}

/// Proposals `first_seq..first_seq + len` are at log indices `idx..idx + len` of the leader's
/// log, in its ballot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct PlacedRun {
    pub(crate) first_seq: u64,
    pub(crate) len: u64,
    pub(crate) idx: usize,
}

/// The leader of `n` placed these proposals of incarnation `inc` in its log; all proposals of
/// that incarnation numbered below `received` reached it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct Placed {
    pub(crate) n: Ballot,
    pub(crate) inc: u64,
    pub(crate) received: u64,
    pub(crate) runs: Vec<PlacedRun>,
}

/// A reconfiguration requested at a follower, forwarded to the leader of `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct ForwardStopSign {
    pub(crate) n: Ballot,
    pub(crate) ss: StopSign,
}

#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) enum ForwardMsg<T: Entry> {
    Proposals(Proposals<T>),
    Placed(Placed),
    ForwardStopSign(ForwardStopSign),
}

impl<T: Entry> ForwardMsg<T> {
    pub(crate) fn ballot(&self) -> Ballot {
        match self {
            ForwardMsg::Proposals(m) => m.n,
            ForwardMsg::Placed(m) => m.n,
            ForwardMsg::ForwardStopSign(m) => m.n,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ForwardMsg::Proposals(_) => "Proposals",
            ForwardMsg::Placed(_) => "Placed",
            ForwardMsg::ForwardStopSign(_) => "ForwardStopSign",
        }
    }
}

impl<T: Entry> fmt::Display for ForwardMsg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardMsg::Proposals(m) => write!(
                f,
                "Proposals n={} inc={} #{} {} acked={}",
                B(m.n),
                m.inc,
                m.first_seq,
                fmt_entries(&m.entries),
                m.acked
            ),
            ForwardMsg::Placed(m) => {
                write!(
                    f,
                    "Placed n={} inc={} received={}",
                    B(m.n),
                    m.inc,
                    m.received
                )?;
                for r in &m.runs {
                    write!(f, " #{}+{}@{}", r.first_seq, r.len, r.idx)?;
                }
                Ok(())
            }
            ForwardMsg::ForwardStopSign(m) => write!(f, "ForwardStopSign n={}", B(m.n)),
        }
    }
}
