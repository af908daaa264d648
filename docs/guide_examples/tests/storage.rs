//! Chapter "Storage": the two backends, and a backend of your own checked by the conformance
//! suite.

use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
    ClusterConfig,
};
use omnipaxos_guide::{kv, node_config, KeyValue, LocalCluster};
use omnipaxos_storage::{persistent_storage::Durability, MemoryStorage};
use omnipaxos_storage::{PersistentStorage, PersistentStorageConfig};

#[test]
fn persistent_storage_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // ANCHOR: persistent
    let mut storage_config = PersistentStorageConfig::with_path(dir.path().join("node-1"));
    // The default: every write is synced before `write_atomically` returns.
    storage_config.set_durability(Durability::Immediate);
    let storage: PersistentStorage<KeyValue> =
        PersistentStorage::try_open(storage_config.clone()).expect("storage opens");

    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1],
        ..Default::default()
    };
    let mut node = node_config(&cluster, 1).build(storage).unwrap();
    // A single-server cluster decides on its own.
    let mut outgoing = Vec::new();
    node.append(kv("k", 42)).unwrap();
    for _ in 0..20 {
        node.tick();
        node.take_outgoing_messages(&mut outgoing);
    }
    assert_eq!(node.get_decided_idx(), 1);

    // Stop the process (here: drop the node and its storage), then start again on the same
    // directory: the node recovers its log.
    drop(node);
    let storage: PersistentStorage<KeyValue> =
        PersistentStorage::try_open(storage_config).expect("storage reopens");
    let node = node_config(&cluster, 1).build(storage).unwrap();
    assert_eq!(node.get_decided_idx(), 1);
    // ANCHOR_END: persistent
}

// ANCHOR: own_storage
/// A backend of your own: here, one that wraps another and counts the atomic writes (e.g. to
/// export them as a metric). A real one would keep the state in your database.
#[derive(Default)]
pub struct CountingStorage<S> {
    inner: S,
    /// Calls of `write_atomically` so far.
    pub atomic_writes: u64,
}

impl<T: Entry, S: Storage<T>> Storage<T> for CountingStorage<S> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.atomic_writes += 1;
        self.inner.write_atomically(ops)
    }
    // A wrapper forwards the node record too: without these two, the trait's defaults would
    // make it a legacy backend even on a storage that keeps the record.
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        self.atomic_writes += 1;
        self.inner.write_atomically_with_record(ops, record)
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        self.inner.get_node_record()
    }
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.inner.append_entry(entry)
    }
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.inner.append_entries(entries)
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.inner.append_on_prefix(from_idx, entries)
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.inner.set_promise(n_prom)
    }
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.inner.set_decided_idx(ld)
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        self.inner.get_decided_idx()
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.inner.set_accepted_round(na)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_accepted_round()
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        self.inner.get_entries(from, to)
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        self.inner.get_log_len()
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        self.inner.get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_promise()
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.inner.set_stopsign(s)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.get_stopsign()
    }
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.inner.trim(idx)
    }
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.inner.set_compacted_idx(idx)
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        self.inner.get_compacted_idx()
    }
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.inner.set_snapshot(snapshot)
    }
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.inner.get_snapshot()
    }
}
// ANCHOR_END: own_storage

// ANCHOR: vec_storage
/// A backend written from scratch: the state in memory, copied for each atomic write. It
/// implements only what the trait requires (`write_atomically` and the getters) and the node
/// record; every setter keeps its default, a one-operation `write_atomically`.
pub struct VecStorage<T: Entry> {
    state: VecState<T>,
}

/// Everything a node stores. `Clone`, so that a write can be applied to a copy and kept only
/// if every operation fits.
#[derive(Clone)]
struct VecState<T: Entry> {
    /// The stored entries; `entries[i]` has absolute index `first + i`.
    entries: Vec<T>,
    /// Absolute index of `entries[0]` (entries below it were trimmed).
    first: usize,
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: usize,
    compacted_idx: usize,
    stopsign: Option<StopSign>,
    snapshot: Option<T::Snapshot>,
    /// The node record: bytes the node encodes, stored as they are.
    record: Option<Vec<u8>>,
}

impl<T: Entry> Default for VecStorage<T> {
    fn default() -> Self {
        // Fresh is empty: no promise, no accepted round, indices 0.
        VecStorage {
            state: VecState {
                entries: Vec::new(),
                first: 0,
                promise: None,
                accepted_round: None,
                decided_idx: 0,
                compacted_idx: 0,
                stopsign: None,
                snapshot: None,
                record: None,
            },
        }
    }
}

impl<T: Entry> VecState<T> {
    fn end(&self) -> usize {
        self.first + self.entries.len()
    }

    fn apply(&mut self, op: StorageOp<T>) -> StorageResult<()> {
        match op {
            StorageOp::AppendEntry(e) => self.entries.push(e),
            StorageOp::AppendEntries(mut v) => self.entries.append(&mut v),
            StorageOp::AppendOnPrefix(from, mut v) => {
                if from < self.first || from > self.end() {
                    // Bad input is an error, and (see `write`) changes nothing.
                    return Err(format!(
                        "AppendOnPrefix({from}) outside the stored entries {}..{}",
                        self.first,
                        self.end()
                    )
                    .into());
                }
                self.entries.truncate(from - self.first);
                self.entries.append(&mut v);
            }
            StorageOp::SetPromise(b) => self.promise = Some(b),
            StorageOp::SetDecidedIndex(i) => self.decided_idx = i,
            StorageOp::SetAcceptedRound(b) => self.accepted_round = Some(b),
            StorageOp::SetCompactedIdx(i) => self.compacted_idx = i,
            StorageOp::Trim(idx) => {
                if idx > self.first {
                    let n = (idx - self.first).min(self.entries.len());
                    self.entries.drain(..n);
                    self.first = idx;
                }
            }
            StorageOp::SetStopsign(s) => self.stopsign = s,
            StorageOp::SetSnapshot(s) => self.snapshot = s,
        }
        Ok(())
    }
}

impl<T: Entry> VecStorage<T> {
    /// All of `ops` (and the record, if given) or nothing: they are applied to a copy, which
    /// replaces the state only if every operation succeeded. (A durable backend would write
    /// the batch as one transaction instead.)
    fn write(&mut self, ops: Vec<StorageOp<T>>, record: Option<Vec<u8>>) -> StorageResult<()> {
        let mut next = self.state.clone();
        for op in ops {
            next.apply(op)?;
        }
        if record.is_some() {
            next.record = record;
        }
        self.state = next;
        Ok(())
    }
}

impl<T: Entry> Storage<T> for VecStorage<T> {
    // Required: the atomic write and the getters.
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.write(ops, None)
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.state.decided_idx)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.state.accepted_round)
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        let s = &self.state;
        if from < s.first || from >= to || to > s.end() {
            return Ok(Vec::new()); // not all stored: nothing
        }
        Ok(s.entries[from - s.first..to - s.first].to_vec())
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.state.entries.len())
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        self.get_entries(from, self.state.end())
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.state.promise)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.state.stopsign.clone())
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.state.compacted_idx)
    }
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.state.snapshot.clone())
    }

    // The node record: optional for the trait, but without it this is a legacy backend.
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        self.write(ops, Some(record))
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.state.record.clone())
    }
}
// ANCHOR_END: vec_storage

/// The conformance suite against the backend written from scratch.
mod vec_storage_conformance {
    use super::VecStorage;
    use omnipaxos_storage::conformance::Backend;

    omnipaxos_storage::storage_conformance_tests!(Backend::new(VecStorage::default));
}

#[test]
fn a_cluster_runs_and_restarts_on_the_backend_from_scratch() {
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut local = LocalCluster::new([1, 2, 3].map(|pid| {
        node_config(&cluster, pid)
            .build(VecStorage::<KeyValue>::default())
            .unwrap()
    }));
    let leader = local.elect(100);
    local.node(leader).append(kv("a", 1)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(1)));
    let follower = if leader == 1 { 2 } else { 1 };
    // The node wrote its record when it was built; a restart finds it, with the log.
    let storage = local.crash(follower);
    assert!(storage.get_node_record().unwrap().is_some());
    let node = node_config(&cluster, follower).build(storage).unwrap();
    assert_eq!(node.get_decided_idx(), 1);
    local.nodes.insert(follower, node);
    local.node(follower).append(kv("b", 2)).unwrap();
    assert!(local.run_until(100, |c| c.all_decided(2)));
}

// ANCHOR: conformance
/// The conformance suite, one `#[test]` per check, against the custom backend.
mod counting_storage_conformance {
    use super::CountingStorage;
    use omnipaxos_storage::{conformance::Backend, MemoryStorage};

    omnipaxos_storage::storage_conformance_tests!(Backend::new(
        CountingStorage::<MemoryStorage<_>>::default
    ));
}
// ANCHOR_END: conformance

#[test]
fn the_custom_backend_runs_a_cluster() {
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut local = LocalCluster::new([1, 2, 3].map(|pid| {
        node_config(&cluster, pid)
            .build(CountingStorage::<MemoryStorage<KeyValue>>::default())
            .unwrap()
    }));
    let leader = local.elect(100);
    local.node(leader).append(kv("a", 1)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(1)));
    assert!(local.node(leader).get_storage().atomic_writes > 0);
}
