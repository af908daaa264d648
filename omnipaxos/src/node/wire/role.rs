//! Messages of the role room: leader election's second half (prepare/promise), replication
//! (accept/decide) and repair (resync). Every one carries the ballot `n` it belongs to.

use super::fmt_entries;
use crate::{
    ballot_leader_election::Ballot,
    node::record::Stop,
    storage::{Entry, SnapshotType, StopSign},
};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// A node that lost track of the leader (recovery after a crash, a missed `Prepare`) asks the
/// leader of ballot `n` to prepare it again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct PrepareReq {
    pub(crate) n: Ballot,
    /// The sender's promise, so that a leader with a lower ballot knows to take a higher one.
    pub(crate) n_prom: Ballot,
}

/// The leader of ballot `n` asks for a promise, telling how far its own log goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct Prepare {
    pub(crate) n: Ballot,
    pub(crate) decided_idx: usize,
    pub(crate) n_accepted: Ballot,
    pub(crate) accepted_idx: usize,
}

/// What a log sync brings below `sync_idx`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) enum SyncPrefix<T: Entry> {
    /// Nothing: the receiver's log below `sync_idx` agrees with the sender's.
    Kept,
    /// A snapshot of the decided prefix: `Complete` covers `0..sync_idx`; `Delta` covers
    /// `from..sync_idx` and is merged into the receiver's own decided log up to `from`.
    Snapshot {
        snapshot: SnapshotType<T>,
        from: usize,
    },
    /// The sender's log below `sync_idx` was trimmed (the application compacted it without a
    /// snapshot): the receiver takes it as trimmed too.
    Trimmed,
    /// Below `sync_idx` is the log of the configurations before ours (`chain`, its last stop
    /// ending at `sync_idx`): the receiver pulls it from the servers that hold it.
    Pending { chain: Vec<Stop> },
}

/// Part of a log: the receiver makes its log `prefix ++ suffix (++ stop sign)`, the suffix
/// starting at absolute index `sync_idx`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) struct LogSync<T: Entry> {
    pub(crate) prefix: SyncPrefix<T>,
    pub(crate) suffix: Vec<T>,
    pub(crate) sync_idx: usize,
    pub(crate) stopsign: Option<StopSign>,
}

impl<T: Entry> LogSync<T> {
    /// The end of the log after the sync (a stop sign counts as one); `None` on overflow.
    pub(crate) fn end(&self) -> Option<usize> {
        self.sync_idx
            .checked_add(self.suffix.len())?
            .checked_add(usize::from(self.stopsign.is_some()))
    }
}

/// A follower promises ballot `n` and reports its log beyond what the leader has.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) struct Promise<T: Entry> {
    pub(crate) n: Ballot,
    pub(crate) n_accepted: Ballot,
    pub(crate) decided_idx: usize,
    pub(crate) accepted_idx: usize,
    /// The follower's log beyond what the leader reported, if it may be more up to date.
    pub(crate) log_sync: Option<Box<LogSync<T>>>,
    /// Below this index the follower's log is still being pulled (0: it holds it all).
    pub(crate) pending_below: usize,
}

/// The leader sets the follower's log to its own from `log_sync.sync_idx` on.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) struct AcceptSync<T: Entry> {
    pub(crate) n: Ballot,
    pub(crate) decided_idx: usize,
    /// Boxed: syncs are rare, and every message is as large as the largest kind.
    pub(crate) log_sync: Box<LogSync<T>>,
}

/// The leader streams `entries`, which start at absolute index `start_idx`.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) struct AcceptDecide<T: Entry> {
    pub(crate) n: Ballot,
    pub(crate) decided_idx: usize,
    pub(crate) start_idx: usize,
    pub(crate) entries: Vec<T>,
}

/// The leader appends a stop sign at absolute index `idx`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct AcceptStopSign {
    pub(crate) n: Ballot,
    pub(crate) idx: usize,
    pub(crate) ss: StopSign,
}

/// A follower reports how far it accepted and decided in ballot `n`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct Accepted {
    pub(crate) n: Ballot,
    pub(crate) accepted_idx: usize,
    pub(crate) decided_idx: usize,
    /// Below this index the follower's log is still being pulled (0: it holds it all).
    pub(crate) pending_below: usize,
}

/// The leader tells its decided index.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct Decide {
    pub(crate) n: Ballot,
    pub(crate) decided_idx: usize,
}

/// The sender promised a ballot higher than the one it was addressed in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct NotAccepted {
    pub(crate) n: Ballot,
    pub(crate) n_prom: Ballot,
}

/// A follower of ballot `n` missed part of the stream and asks to be synchronised again.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct ResyncReq {
    pub(crate) n: Ballot,
    pub(crate) n_accepted: Ballot,
    pub(crate) accepted_idx: usize,
    pub(crate) decided_idx: usize,
}

/// The messages of the role room.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) enum RoleMsg<T: Entry> {
    PrepareReq(PrepareReq),
    Prepare(Prepare),
    Promise(Promise<T>),
    AcceptSync(AcceptSync<T>),
    AcceptDecide(AcceptDecide<T>),
    AcceptStopSign(AcceptStopSign),
    Accepted(Accepted),
    Decide(Decide),
    NotAccepted(NotAccepted),
    ResyncReq(ResyncReq),
}

impl<T: Entry> RoleMsg<T> {
    /// The ballot the message belongs to.
    pub(crate) fn ballot(&self) -> Ballot {
        match self {
            RoleMsg::PrepareReq(m) => m.n,
            RoleMsg::Prepare(m) => m.n,
            RoleMsg::Promise(m) => m.n,
            RoleMsg::AcceptSync(m) => m.n,
            RoleMsg::AcceptDecide(m) => m.n,
            RoleMsg::AcceptStopSign(m) => m.n,
            RoleMsg::Accepted(m) => m.n,
            RoleMsg::Decide(m) => m.n,
            RoleMsg::NotAccepted(m) => m.n,
            RoleMsg::ResyncReq(m) => m.n,
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            RoleMsg::PrepareReq(_) => "PrepareReq",
            RoleMsg::Prepare(_) => "Prepare",
            RoleMsg::Promise(_) => "Promise",
            RoleMsg::AcceptSync(_) => "AcceptSync",
            RoleMsg::AcceptDecide(_) => "AcceptDecide",
            RoleMsg::AcceptStopSign(_) => "AcceptStopSign",
            RoleMsg::Accepted(_) => "Accepted",
            RoleMsg::Decide(_) => "Decide",
            RoleMsg::NotAccepted(_) => "NotAccepted",
            RoleMsg::ResyncReq(_) => "ResyncReq",
        }
    }
}

/// A ballot as `n.pid` (its round number and owner), the form the scripted tests read.
pub(crate) struct B(pub(crate) Ballot);

impl fmt::Display for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == Ballot::default() {
            f.write_str("-")
        } else {
            write!(f, "{}.{}", self.0.n, self.0.pid)
        }
    }
}

impl<T: Entry> fmt::Display for LogSync<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.prefix {
            SyncPrefix::Kept => {}
            SyncPrefix::Snapshot {
                snapshot: SnapshotType::Complete(_),
                ..
            } => f.write_str("snapshot ")?,
            SyncPrefix::Snapshot {
                snapshot: SnapshotType::Delta(_),
                from,
            } => write!(f, "delta({from}) ")?,
            SyncPrefix::Trimmed => f.write_str("trimmed ")?,
            SyncPrefix::Pending { chain } => write!(f, "pending({}) ", chain.len())?,
        }
        write!(f, "@{} {}", self.sync_idx, fmt_entries(&self.suffix))?;
        if self.stopsign.is_some() {
            f.write_str("+SS")?;
        }
        Ok(())
    }
}

impl<T: Entry> fmt::Display for RoleMsg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoleMsg::PrepareReq(m) => write!(f, "PrepareReq n={} prom={}", B(m.n), B(m.n_prom)),
            RoleMsg::Prepare(m) => write!(
                f,
                "Prepare n={} decided={} accepted={}@{}",
                B(m.n),
                m.decided_idx,
                B(m.n_accepted),
                m.accepted_idx
            ),
            RoleMsg::Promise(m) => {
                write!(
                    f,
                    "Promise n={} decided={} accepted={}@{}",
                    B(m.n),
                    m.decided_idx,
                    B(m.n_accepted),
                    m.accepted_idx
                )?;
                if let Some(s) = &m.log_sync {
                    write!(f, " sync={s}")?;
                }
                Ok(())
            }
            RoleMsg::AcceptSync(m) => write!(
                f,
                "AcceptSync n={} decided={} sync={}",
                B(m.n),
                m.decided_idx,
                m.log_sync
            ),
            RoleMsg::AcceptDecide(m) => write!(
                f,
                "AcceptDecide n={} decided={} @{} {}",
                B(m.n),
                m.decided_idx,
                m.start_idx,
                fmt_entries(&m.entries)
            ),
            RoleMsg::AcceptStopSign(m) => write!(f, "AcceptStopSign n={} @{}", B(m.n), m.idx),
            RoleMsg::Accepted(m) => write!(
                f,
                "Accepted n={} accepted={} decided={}",
                B(m.n),
                m.accepted_idx,
                m.decided_idx
            ),
            RoleMsg::Decide(m) => write!(f, "Decide n={} decided={}", B(m.n), m.decided_idx),
            RoleMsg::NotAccepted(m) => write!(f, "NotAccepted n={} prom={}", B(m.n), B(m.n_prom)),
            RoleMsg::ResyncReq(m) => write!(
                f,
                "ResyncReq n={} accepted={}@{} decided={}",
                B(m.n),
                B(m.n_accepted),
                m.accepted_idx,
                m.decided_idx
            ),
        }
    }
}
