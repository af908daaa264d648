//! [`MeteredStorage`]: a storage backend that counts and times the writes of the one it wraps.
//!
//! Every method is passed on to the inner backend unchanged (its own overrides of the provided
//! methods included), so wrapping changes no behaviour: atomicity, durability and the node
//! record are the inner backend's.

use crate::metrics::StorageMetrics;
use omnipaxos::ballot_leader_election::Ballot;
use omnipaxos::storage::{Entry, StopSign, Storage, StorageOp, StorageResult};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

/// Wraps a backend and reports its writes to [`StorageMetrics`].
pub struct MeteredStorage<S> {
    inner: S,
    metrics: Arc<StorageMetrics>,
    /// Whether the inner backend syncs its writes (e.g. `Durability::Immediate`: all but those
    /// that only set the decided index). Otherwise only writes that change the promise or the
    /// accepted round count as synced, which is what `PersistentStorage` with
    /// `Durability::Deferred` does.
    sync_all: bool,
}

impl<S> MeteredStorage<S> {
    /// Wraps `inner`; `sync_all` says whether it syncs every write.
    pub fn new(inner: S, metrics: Arc<StorageMetrics>, sync_all: bool) -> Self {
        MeteredStorage {
            inner,
            metrics,
            sync_all,
        }
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether a write of `ops` is synced, and the entries it writes. A write that only sets
    /// the decided index is not synced on its own (see `Durability::Immediate`; the rare one
    /// that decides a stop sign is, and is counted as not).
    fn count<T: Entry>(&self, ops: &[StorageOp<T>]) -> (bool, u64) {
        let mut guarded = false;
        let mut only_decided = true;
        let mut entries = 0u64;
        for op in ops {
            match op {
                StorageOp::AppendEntry(_) => entries += 1,
                StorageOp::AppendEntries(v) | StorageOp::AppendOnPrefix(_, v) => {
                    entries += v.len() as u64
                }
                StorageOp::SetPromise(_) | StorageOp::SetAcceptedRound(_) => guarded = true,
                StorageOp::SetDecidedIndex(_) => continue,
                _ => {}
            }
            only_decided = false;
        }
        (guarded || (self.sync_all && !only_decided), entries)
    }

    fn timed<R>(
        &mut self,
        synced: bool,
        entries: u64,
        f: impl FnOnce(&mut S) -> StorageResult<R>,
    ) -> StorageResult<R> {
        let start = Instant::now();
        let r = f(&mut self.inner);
        let m = &self.metrics;
        m.write_seconds.observe(start.elapsed());
        m.writes.fetch_add(1, Relaxed);
        match &r {
            Ok(_) => {
                if synced {
                    m.synced_writes.fetch_add(1, Relaxed);
                }
                m.entries_written.fetch_add(entries, Relaxed);
            }
            Err(_) => {
                m.errors.fetch_add(1, Relaxed);
            }
        }
        r
    }
}

impl<T: Entry, S: Storage<T>> Storage<T> for MeteredStorage<S> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        let (synced, entries) = self.count(&ops);
        self.timed(synced, entries, |s| s.write_atomically(ops))
    }

    fn write_atomically_draining(&mut self, ops: &mut Vec<StorageOp<T>>) -> StorageResult<()> {
        let (synced, entries) = self.count(ops);
        self.timed(synced, entries, |s| s.write_atomically_draining(ops))
    }

    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        let (synced, entries) = self.count(&ops);
        self.timed(synced, entries, |s| {
            s.write_atomically_with_record(ops, record)
        })
    }

    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        self.inner.get_node_record()
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        let sync = self.sync_all;
        self.timed(sync, 1, |s| s.append_entry(entry))
    }

    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        let (sync, n) = (self.sync_all, entries.len() as u64);
        self.timed(sync, n, |s| s.append_entries(entries))
    }

    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        let (sync, n) = (self.sync_all, entries.len() as u64);
        self.timed(sync, n, |s| s.append_on_prefix(from_idx, entries))
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.timed(true, 0, |s| s.set_promise(n_prom))
    }

    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        // Synced with the next write (see `count`).
        self.timed(false, 0, |s| s.set_decided_idx(ld))
    }

    fn get_decided_idx(&self) -> StorageResult<usize> {
        self.inner.get_decided_idx()
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.timed(true, 0, |s| s.set_accepted_round(na))
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.inner.get_accepted_round()
    }

    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        self.inner.get_entries(from, to)
    }

    fn get_entries_with<F: FnMut(T)>(&self, from: usize, to: usize, f: F) -> StorageResult<usize> {
        self.inner.get_entries_with(from, to, f)
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
        let sync = self.sync_all;
        self.timed(sync, 0, |st| st.set_stopsign(s))
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.get_stopsign()
    }

    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        let sync = self.sync_all;
        self.timed(sync, 0, |s| s.trim(idx))
    }

    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        let sync = self.sync_all;
        self.timed(sync, 0, |s| s.set_compacted_idx(idx))
    }

    fn get_compacted_idx(&self) -> StorageResult<usize> {
        self.inner.get_compacted_idx()
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        let sync = self.sync_all;
        self.timed(sync, 0, |s| s.set_snapshot(snapshot))
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.inner.get_snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{Command, KVCommand};
    use omnipaxos_storage::MemoryStorage;

    fn cmd(id: u64) -> Command {
        Command {
            client_id: 1,
            coordinator_id: 1,
            id,
            acked_below: id,
            kv_cmd: KVCommand::Get("k".into()),
        }
    }

    #[test]
    fn counts_writes_and_entries_and_passes_everything_on() {
        let m = Arc::new(StorageMetrics::default());
        let mut s = MeteredStorage::new(MemoryStorage::<Command>::default(), m.clone(), false);
        s.write_atomically(vec![
            StorageOp::AppendEntries(vec![cmd(1), cmd(2)]),
            StorageOp::SetDecidedIndex(1),
        ])
        .unwrap();
        s.append_entry(cmd(3)).unwrap();
        s.set_promise(Ballot::default()).unwrap();
        assert_eq!(m.writes.load(Relaxed), 3);
        assert_eq!(m.entries_written.load(Relaxed), 3);
        assert_eq!(m.synced_writes.load(Relaxed), 1, "only the promise syncs");
        assert_eq!(m.write_seconds.count(), 3);
        assert_eq!(s.get_log_len().unwrap(), 3);
        assert_eq!(s.get_decided_idx().unwrap(), 1);
        assert_eq!(s.inner().get_log_len().unwrap(), 3);
    }
}
