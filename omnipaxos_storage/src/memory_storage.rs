//! An in-memory storage backend.
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
};

/// Keeps everything in memory. Fast; lost when the process exits.
#[derive(Clone, Debug)]
pub struct MemoryStorage<T: Entry> {
    log: Vec<T>,
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: usize,
    /// Absolute index of `log[0]`.
    trimmed_idx: usize,
    compacted_idx: usize,
    snapshot: Option<T::Snapshot>,
    stopsign: Option<StopSign>,
}

impl<T: Entry> Default for MemoryStorage<T> {
    fn default() -> Self {
        MemoryStorage {
            log: Vec::new(),
            promise: None,
            accepted_round: None,
            decided_idx: 0,
            trimmed_idx: 0,
            compacted_idx: 0,
            snapshot: None,
            stopsign: None,
        }
    }
}

impl<T: Entry> MemoryStorage<T> {
    fn apply(&mut self, op: StorageOp<T>) {
        match op {
            StorageOp::AppendEntry(e) => self.log.push(e),
            StorageOp::AppendEntries(mut v) => self.log.append(&mut v),
            StorageOp::AppendOnPrefix(from, mut v) => {
                self.log.truncate(from.saturating_sub(self.trimmed_idx));
                self.log.append(&mut v);
            }
            StorageOp::SetPromise(b) => self.promise = Some(b),
            StorageOp::SetDecidedIndex(i) => self.decided_idx = i,
            StorageOp::SetAcceptedRound(b) => self.accepted_round = Some(b),
            StorageOp::SetCompactedIdx(i) => self.compacted_idx = i,
            StorageOp::Trim(idx) => {
                let n = idx.saturating_sub(self.trimmed_idx).min(self.log.len());
                self.log.drain(..n);
                self.trimmed_idx = self.trimmed_idx.max(idx);
            }
            StorageOp::SetStopsign(s) => self.stopsign = s,
            StorageOp::SetSnapshot(s) => self.snapshot = s,
        }
    }
}

impl<T: Entry> Storage<T> for MemoryStorage<T> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        for op in ops {
            self.apply(op);
        }
        Ok(())
    }
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.apply(StorageOp::AppendEntry(entry));
        Ok(())
    }
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.apply(StorageOp::AppendEntries(entries));
        Ok(())
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.apply(StorageOp::AppendOnPrefix(from_idx, entries));
        Ok(())
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.promise = Some(n_prom);
        Ok(())
    }
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.decided_idx = ld;
        Ok(())
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.decided_idx)
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.accepted_round = Some(na);
        Ok(())
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.accepted_round)
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        if from < self.trimmed_idx || from > to {
            return Ok(Vec::new());
        }
        let (f, t) = (from - self.trimmed_idx, to - self.trimmed_idx);
        Ok(self.log.get(f..t).map(<[T]>::to_vec).unwrap_or_default())
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.log.len())
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        if from < self.trimmed_idx {
            return Ok(Vec::new());
        }
        Ok(self
            .log
            .get(from - self.trimmed_idx..)
            .map(<[T]>::to_vec)
            .unwrap_or_default())
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.promise)
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.stopsign = s;
        Ok(())
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.stopsign.clone())
    }
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.apply(StorageOp::Trim(idx));
        Ok(())
    }
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.compacted_idx = idx;
        Ok(())
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.compacted_idx)
    }
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.snapshot = snapshot;
        Ok(())
    }
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.snapshot.clone())
    }
}
