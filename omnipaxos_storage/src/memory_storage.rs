//! An in-memory storage backend.
use crate::{check_ops, chunked_log::ChunkedLog, InvalidOpError};
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
};

/// Keeps everything in memory. Fast; lost when the process exits.
///
/// `write_atomically` checks the whole batch before applying any of it: a batch with an
/// operation that does not fit the log returns an [`InvalidOpError`] and changes nothing.
#[derive(Clone, Debug)]
pub struct MemoryStorage<T: Entry> {
    /// The stored entries; position `i` has absolute index `trimmed_idx + i`. In chunks:
    /// appending never moves what is stored, and a trim drops whole chunks.
    log: ChunkedLog<T>,
    promise: Option<Ballot>,
    accepted_round: Option<Ballot>,
    decided_idx: usize,
    /// Absolute index of `log[0]`: entries below it were trimmed.
    trimmed_idx: usize,
    compacted_idx: usize,
    snapshot: Option<T::Snapshot>,
    stopsign: Option<StopSign>,
    /// The node record (see [`Storage::write_atomically_with_record`]).
    node_record: Option<Vec<u8>>,
    /// What [`Storage::writes_at_once`] answers.
    at_once: bool,
}

impl<T: Entry> Default for MemoryStorage<T> {
    fn default() -> Self {
        MemoryStorage {
            log: ChunkedLog::default(),
            promise: None,
            accepted_round: None,
            decided_idx: 0,
            trimmed_idx: 0,
            compacted_idx: 0,
            snapshot: None,
            stopsign: None,
            node_record: None,
            at_once: true,
        }
    }
}

impl<T: Entry> MemoryStorage<T> {
    /// Sets whether the node writes to this storage after every input (`true`, the default:
    /// a write to memory costs next to nothing, and what the node shows moves at once) or once
    /// per take of its outgoing messages (`false`: the timing of a durable backend, e.g. to
    /// test an application against it). See [`Storage::writes_at_once`].
    pub fn with_writes_at_once(mut self, at_once: bool) -> Self {
        self.at_once = at_once;
        self
    }
}

impl<T: Entry> MemoryStorage<T> {
    /// Absolute index of the first stored entry (entries below it were trimmed).
    #[cfg_attr(not(feature = "conformance"), allow(dead_code))]
    pub(crate) fn first_idx(&self) -> usize {
        self.trimmed_idx
    }

    /// Absolute index after the last stored entry.
    fn end(&self) -> usize {
        self.trimmed_idx + self.log.len()
    }

    /// Applies one operation that [`check_ops`] accepted.
    fn apply(&mut self, op: StorageOp<T>) {
        match op {
            StorageOp::AppendEntry(e) => self.log.push(e),
            StorageOp::AppendEntries(v) => self.log.append(v),
            StorageOp::AppendOnPrefix(from, v) => {
                self.log.truncate(from - self.trimmed_idx);
                self.log.append(v);
            }
            StorageOp::SetPromise(b) => self.promise = Some(b),
            StorageOp::SetDecidedIndex(i) => self.decided_idx = i,
            StorageOp::SetAcceptedRound(b) => self.accepted_round = Some(b),
            StorageOp::SetCompactedIdx(i) => self.compacted_idx = i,
            StorageOp::Trim(idx) => {
                if idx > self.trimmed_idx {
                    self.log.drop_front(idx - self.trimmed_idx);
                    self.trimmed_idx = idx;
                }
            }
            StorageOp::SetStopsign(s) => self.stopsign = s,
            StorageOp::SetSnapshot(s) => self.snapshot = s,
        }
    }

    fn apply_all(&mut self, ops: Vec<StorageOp<T>>) -> Result<(), InvalidOpError> {
        check_ops(self.trimmed_idx, self.end(), &ops)?;
        for op in ops {
            self.apply(op);
        }
        Ok(())
    }

    /// [`Self::apply_all`], leaving `ops` empty with its allocation.
    fn apply_draining(&mut self, ops: &mut Vec<StorageOp<T>>) -> Result<(), InvalidOpError> {
        if let Err(e) = check_ops(self.trimmed_idx, self.end(), ops) {
            ops.clear();
            return Err(e);
        }
        for op in ops.drain(..) {
            self.apply(op);
        }
        Ok(())
    }
}

impl<T: Entry> Storage<T> for MemoryStorage<T> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        Ok(self.apply_all(ops)?)
    }
    fn write_atomically_draining(&mut self, ops: &mut Vec<StorageOp<T>>) -> StorageResult<()> {
        Ok(self.apply_draining(ops)?)
    }
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        // `apply_all` checks the whole batch before it changes anything, so the record is
        // replaced exactly when the operations are applied.
        self.apply_all(ops)?;
        self.node_record = Some(record);
        Ok(())
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.node_record.clone())
    }
    fn writes_at_once(&self) -> bool {
        self.at_once
    }
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.log.push(entry);
        Ok(())
    }
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.log.append(entries);
        Ok(())
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        Ok(self.apply_all(vec![StorageOp::AppendOnPrefix(from_idx, entries)])?)
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
        if from < self.trimmed_idx || from >= to || to > self.end() {
            return Ok(Vec::new());
        }
        Ok(self
            .log
            .range_to_vec(from - self.trimmed_idx, to - self.trimmed_idx))
    }
    fn get_entries_with<F: FnMut(T)>(&self, from: usize, to: usize, f: F) -> StorageResult<usize> {
        if from < self.trimmed_idx || from >= to || to > self.end() {
            return Ok(0);
        }
        self.log
            .for_each_cloned(from - self.trimmed_idx, to - self.trimmed_idx, f);
        Ok(to - from)
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.log.len())
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        self.get_entries(from, self.end())
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

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::storage::NoSnapshot;

    #[derive(Clone, Debug)]
    struct E;
    impl Entry for E {
        type Snapshot = NoSnapshot;
    }

    /// What `write_atomically_draining` is for: the node's operations vector comes back
    /// empty with its allocation, so a write allocates no vector of its own.
    #[test]
    fn draining_writes_keep_the_callers_allocation() {
        let mut s = MemoryStorage::<E>::default();
        let mut ops = Vec::with_capacity(8);
        for i in 0..3 {
            ops.push(StorageOp::AppendEntry(E));
            ops.push(StorageOp::SetDecidedIndex(i + 1));
            let buf = ops.as_ptr();
            s.write_atomically_draining(&mut ops).expect("write");
            assert!(ops.is_empty());
            assert_eq!(ops.capacity(), 8, "the allocation was given away");
            assert_eq!(ops.as_ptr(), buf, "the allocation was replaced");
        }
        assert_eq!(s.get_log_len().unwrap(), 3);
        assert_eq!(s.get_decided_idx().unwrap(), 3);
    }
}
