//! What the log holds ([`Entry`], [`Snapshot`], [`StopSign`]) and where it is kept ([`Storage`]).
//!
//! A node keeps everything it promised, accepted and decided in a [`Storage`] backend that you
//! choose: `omnipaxos_storage::MemoryStorage` for tests and volatile setups,
//! `omnipaxos_storage::PersistentStorage` (commitlog + sled) to survive crashes, or your own.
//!
//! # Contract of a backend
//!
//! * **Absolute indices.** Entry `i` is the `i`-th entry ever appended to the log, whatever was
//!   trimmed before it. `get_entries(from, to)` takes absolute indices.
//! * **Fresh is empty.** A new backend returns `None` for promise and accepted round, 0 for the
//!   decided and compacted index, no stop sign, no snapshot.
//! * **Atomic writes.** [`Storage::write_atomically`] applies all operations or none, also when
//!   the process crashes in the middle; when it returns `Ok`, the data is as durable as the
//!   backend promises (the node sends messages that depend on it right after).
//! * **Errors are values.** A failed operation returns `Err`; the node then stops with a panic
//!   that names the operation rather than let its memory run ahead of its storage.
//!
//! `omnipaxos_storage::conformance` has a test suite every backend should pass.

use crate::{ballot_leader_election::Ballot, ClusterConfig};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::{error::Error, fmt::Debug};

/// The type of the entries in the replicated log.
///
/// Usually derived: `#[derive(Clone, Debug, Entry)]` (feature `macros`), with
/// `#[snapshot(MySnapshot)]` when the log can be compacted into snapshots.
pub trait Entry: Clone + Debug {
    /// How a prefix of the log is compacted. [`NoSnapshot`] when snapshots are not used.
    #[cfg(not(feature = "serde"))]
    type Snapshot: Snapshot<Self>;
    /// How a prefix of the log is compacted. [`NoSnapshot`] when snapshots are not used.
    #[cfg(feature = "serde")]
    type Snapshot: Snapshot<Self> + Serialize + for<'a> Deserialize<'a>;
}

/// A compact replacement for a prefix of decided entries, e.g. the state of a key-value map.
pub trait Snapshot<T: Entry>: Clone + Debug {
    /// Folds `entries` (in log order) into a snapshot.
    fn create(entries: &[T]) -> Self;
    /// Applies `delta`, a snapshot of the entries that directly follow the ones in `self`.
    fn merge(&mut self, delta: Self);
    /// Whether snapshots are used. When `false`, compaction only trims, and lagging servers are
    /// synchronised with log entries.
    fn use_snapshots() -> bool;
}

/// The snapshot type for entries that do not use snapshots (`use_snapshots() == false`).
#[derive(Copy, Clone, Debug, Default, Eq, PartialEq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct NoSnapshot;

impl<T: Entry> Snapshot<T> for NoSnapshot {
    /// Never called for `NoSnapshot` (snapshots are off); returns the unit value.
    fn create(_entries: &[T]) -> Self {
        NoSnapshot
    }

    /// Never called for `NoSnapshot` (snapshots are off); does nothing.
    fn merge(&mut self, _delta: Self) {}

    fn use_snapshots() -> bool {
        false
    }
}

/// A snapshot sent to a lagging server.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(bound = ""))]
pub enum SnapshotType<T: Entry> {
    /// The whole prefix up to the sync point: replaces what the receiver has.
    Complete(T::Snapshot),
    /// Only what follows the receiver's own snapshot: merged into it.
    Delta(T::Snapshot),
}

/// Marks the end of a configuration. Once decided, nothing more is decided in this
/// configuration, and the servers of `next_config` continue the log.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub struct StopSign {
    /// The configuration that continues the log.
    pub next_config: ClusterConfig,
    /// Application data decided together with the stop sign.
    pub metadata: Option<Vec<u8>>,
}

impl StopSign {
    /// A stop sign that hands over to `next_config`.
    pub fn with(next_config: ClusterConfig, metadata: Option<Vec<u8>>) -> Self {
        StopSign {
            next_config,
            metadata,
        }
    }
}

/// The result type of storage operations.
pub type StorageResult<T> = Result<T, Box<dyn Error>>;

/// One write in a [`Storage::write_atomically`] batch; each mirrors a `Storage` setter.
#[derive(Debug)]
pub enum StorageOp<T: Entry> {
    /// Appends an entry at the end of the log.
    AppendEntry(T),
    /// Appends entries at the end of the log.
    AppendEntries(Vec<T>),
    /// Removes the entries from the absolute index on, then appends.
    AppendOnPrefix(usize, Vec<T>),
    /// Sets the promised ballot.
    SetPromise(Ballot),
    /// Sets the decided index (absolute, exclusive).
    SetDecidedIndex(usize),
    /// Sets the ballot in which the log was last accepted.
    SetAcceptedRound(Ballot),
    /// Sets the compacted index (absolute, exclusive).
    SetCompactedIdx(usize),
    /// Removes the entries below the absolute index.
    Trim(usize),
    /// Sets or clears the stop sign.
    SetStopsign(Option<StopSign>),
    /// Sets or clears the snapshot.
    SetSnapshot(Option<T::Snapshot>),
}

/// Where a node keeps its log and its Paxos state.
///
/// See the [module documentation](self) for the contract. All indices are absolute.
///
/// A backend implements [`write_atomically`](Self::write_atomically) and the getters; the
/// setters are shorthand for a one-operation `write_atomically` and have default
/// implementations (a backend may override them, e.g. to skip building the vector).
///
/// **The node record.** Besides the state of omnipaxos 0.2.4 (promise, accepted round, decided
/// and compacted index, stop sign, snapshot), a node keeps a small *record* that must survive a
/// restart: where its configuration's log starts and whether the part before is still being
/// pulled, the stop signs of the configurations before it, and its incarnation. The node encodes
/// it into bytes; a backend stores them as they are, atomically with the operations written with
/// them ([`write_atomically_with_record`](Self::write_atomically_with_record)), and returns them
/// from [`get_node_record`](Self::get_node_record). Both have default implementations, so that a
/// backend written for 0.2.4 still builds: a backend that does not override them is a *legacy*
/// backend, on which the node keeps its record in memory only (see the crate documentation for
/// what that costs after a restart).
pub trait Storage<T: Entry> {
    /// Applies all `ops` in order, or none of them: on `Err`, the storage must be as it was
    /// before the call (also after a crash in the middle of it).
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()>;

    /// [`write_atomically`](Self::write_atomically) that leaves the vector to the caller:
    /// applies all of `ops` in order or none of them, and returns with `ops` empty (whatever
    /// the result) but keeping its allocation, which the node reuses for its next write.
    ///
    /// The node writes its operations through this method (those that come with a new node
    /// record go through [`write_atomically_with_record`](Self::write_atomically_with_record)).
    /// The default takes the vector and calls `write_atomically`, so a backend need not
    /// implement it; a backend whose writes cost next to nothing (memory) overrides it to
    /// spare an allocation per write.
    fn write_atomically_draining(&mut self, ops: &mut Vec<StorageOp<T>>) -> StorageResult<()> {
        self.write_atomically(std::mem::take(ops))
    }

    /// Applies all `ops` in order and then replaces the node record with `record`, all or
    /// nothing (like [`write_atomically`](Self::write_atomically)).
    ///
    /// The default implementation returns [`NodeRecordUnsupported`] without writing anything:
    /// override it together with [`get_node_record`](Self::get_node_record).
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        let _ = (ops, record);
        Err(Box::new(NodeRecordUnsupported))
    }

    /// The node record last written with
    /// [`write_atomically_with_record`](Self::write_atomically_with_record); `None` when fresh
    /// (and, by default, always).
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Whether the node writes what it staged after every message it handles, instead of once
    /// per take of its outgoing messages (a tick is written at its end either way).
    ///
    /// `false` (the default) suits a backend whose writes cost a sync: everything the node does
    /// between two takes costs one write, and the state the application sees moves when it
    /// takes the outgoing messages. `true` suits a backend whose writes cost next to nothing
    /// (memory): what a message changed shows as soon as it is handled (on the leader, a
    /// decision can be read right after the `Accepted` that made it), as in 0.2.4. The
    /// application's own appends are still written with the next take, so a burst of them is
    /// one write. Either way, nothing that is not written is ever sent or shown.
    fn writes_at_once(&self) -> bool {
        false
    }

    /// Appends an entry at the end of the log.
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntry(entry)])
    }

    /// Appends entries at the end of the log.
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntries(entries)])
    }

    /// Removes the entries at absolute index `from_idx` and after, then appends `entries`.
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendOnPrefix(from_idx, entries)])
    }

    /// Sets the promised ballot.
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetPromise(n_prom)])
    }

    /// Sets the decided index: entries below it are decided.
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetDecidedIndex(ld)])
    }

    /// The decided index (0 when fresh).
    fn get_decided_idx(&self) -> StorageResult<usize>;

    /// Sets the ballot in which the log was last accepted.
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetAcceptedRound(na)])
    }

    /// The ballot in which the log was last accepted; `None` when fresh.
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>>;

    /// The entries at absolute indices `from..to`. If any of them is not stored (compacted or
    /// beyond the end), returns an empty vector.
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>>;

    /// [`get_entries`](Self::get_entries) handed to `f` one entry at a time, in index order,
    /// with no vector in between. Returns how many entries `f` received: `to - from`, or 0 when
    /// any of them is not stored (as `get_entries` returns an empty vector then). On `Err`, `f`
    /// received none of them.
    ///
    /// The node reads a few entries for the application ([`read`](crate::OmniPaxos::read) and
    /// friends, up to 32 entries at a time; longer reads use `get_entries`) through this
    /// method. The default calls `get_entries`, so a backend need not implement it; a backend
    /// that holds its entries in memory overrides it to clone each entry straight into the
    /// node's answer, sparing a vector per read.
    fn get_entries_with<F: FnMut(T)>(
        &self,
        from: usize,
        to: usize,
        mut f: F,
    ) -> StorageResult<usize>
    where
        Self: Sized,
    {
        let v = self.get_entries(from, to)?;
        let n = v.len();
        v.into_iter().for_each(&mut f);
        Ok(n)
    }

    /// The number of entries stored, i.e. after the compacted prefix. The absolute end of the
    /// log is `get_compacted_idx() + get_log_len()`.
    fn get_log_len(&self) -> StorageResult<usize>;

    /// The entries from absolute index `from` to the end; empty if `from` is not stored.
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>>;

    /// The promised ballot; `None` when fresh.
    fn get_promise(&self) -> StorageResult<Option<Ballot>>;

    /// Sets or clears the stop sign.
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetStopsign(s)])
    }

    /// The stop sign, if any.
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>>;

    /// Removes the entries below absolute index `idx`.
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::Trim(idx)])
    }

    /// Sets the compacted index: the entries below it are trimmed or in the snapshot.
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetCompactedIdx(idx)])
    }

    /// The compacted index (0 when fresh).
    fn get_compacted_idx(&self) -> StorageResult<usize>;

    /// Sets or clears the snapshot.
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetSnapshot(snapshot)])
    }

    /// The snapshot, if any.
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>>;
}

/// The error of a backend that does not store the node record (the default
/// [`Storage::write_atomically_with_record`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRecordUnsupported;

impl std::fmt::Display for NodeRecordUnsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("this storage backend does not store the node record (a legacy backend)")
    }
}

impl Error for NodeRecordUnsupported {}
