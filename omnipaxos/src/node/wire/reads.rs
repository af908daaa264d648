//! Messages of the reads room: linearizable reads without a log write (read index).

use super::role::B;
use crate::ballot_leader_election::Ballot;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// The kinds are named as the protocol's writeups name them (their `Read` prefix is what tells
/// them apart from the other rooms' kinds in traces and scripts).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[allow(clippy::enum_variant_names)] // The names are the wire's (serde variant names).
pub(crate) enum ReadMsg {
    /// A follower (incarnation `inc`) asks the leader of `n` for a read index for its read `id`.
    ReadReq { n: Ballot, inc: u64, id: u64 },
    /// The leader of `n` asks: do you still follow `n`? (confirmation round `round`)
    ReadConfirm { n: Ballot, round: u64 },
    /// Yes, in round `round`.
    ReadConfirmed { n: Ballot, round: u64 },
    /// The leader of `n` answers read `id` of incarnation `inc`: wait until you decided `idx`.
    ReadIndex {
        n: Ballot,
        inc: u64,
        id: u64,
        idx: usize,
    },
}

impl ReadMsg {
    pub(crate) fn ballot(&self) -> Ballot {
        match self {
            ReadMsg::ReadReq { n, .. }
            | ReadMsg::ReadConfirm { n, .. }
            | ReadMsg::ReadConfirmed { n, .. }
            | ReadMsg::ReadIndex { n, .. } => *n,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ReadMsg::ReadReq { .. } => "ReadReq",
            ReadMsg::ReadConfirm { .. } => "ReadConfirm",
            ReadMsg::ReadConfirmed { .. } => "ReadConfirmed",
            ReadMsg::ReadIndex { .. } => "ReadIndex",
        }
    }
}

impl fmt::Display for ReadMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadMsg::ReadReq { n, inc, id } => {
                write!(f, "ReadReq n={} id={inc}.{id}", B(*n))
            }
            ReadMsg::ReadConfirm { n, round } => write!(f, "ReadConfirm n={} round={round}", B(*n)),
            ReadMsg::ReadConfirmed { n, round } => {
                write!(f, "ReadConfirmed n={} round={round}", B(*n))
            }
            ReadMsg::ReadIndex { n, inc, id, idx } => {
                write!(f, "ReadIndex n={} id={inc}.{id} idx={idx}", B(*n))
            }
        }
    }
}
