//! A `PersistentStorage` in a temporary directory that is removed with it.
#![allow(dead_code)]

use commitlog::LogOptions;
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{StopSign, Storage, StorageOp, StorageResult},
};
use omnipaxos_storage::{
    conformance::{TestEntry, TestSnapshot},
    persistent_storage::{Durability, PersistentStorage, PersistentStorageConfig},
};
use tempfile::TempDir;

/// A small-segment configuration, so that tests cross segment boundaries, rewrites and
/// checkpoints often (also while the crash test kills).
pub fn small_config(path: &std::path::Path) -> PersistentStorageConfig {
    let mut log = LogOptions::new(path);
    log.segment_max_bytes(256 * 1024).index_max_items(1000);
    let mut cfg = PersistentStorageConfig::with(path, log, sled::Config::new());
    cfg.set_log_rewrite_threshold(16);
    cfg.set_checkpoint_interval(100);
    cfg
}

pub struct TempStorage {
    pub s: PersistentStorage<TestEntry>,
    pub cfg: PersistentStorageConfig,
    pub dir: TempDir,
}

impl TempStorage {
    /// A fresh storage with `small_config`.
    pub fn fresh() -> Self {
        Self::fresh_with(Durability::Immediate)
    }

    /// A fresh storage with `small_config` and `Durability::Deferred`: the same code without
    /// the syncs (a reopen drops the storage, which syncs), for the long random tests; the
    /// crash test covers what the syncs are for.
    pub fn fresh_deferred() -> Self {
        Self::fresh_with(Durability::Deferred)
    }

    fn fresh_with(durability: Durability) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = small_config(&dir.path().join("store"));
        cfg.set_durability(durability);
        let s = PersistentStorage::try_new(cfg.clone()).expect("new");
        TempStorage { s, cfg, dir }
    }

    /// Drops the storage and opens its directory again.
    pub fn reopen(self) -> Self {
        let TempStorage { s, cfg, dir } = self;
        drop(s);
        let s = PersistentStorage::try_open(cfg.clone()).expect("reopen");
        TempStorage { s, cfg, dir }
    }
}

impl Storage<TestEntry> for TempStorage {
    fn write_atomically(&mut self, ops: Vec<StorageOp<TestEntry>>) -> StorageResult<()> {
        self.s.write_atomically(ops)
    }
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<TestEntry>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        self.s.write_atomically_with_record(ops, record)
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        self.s.get_node_record()
    }
    fn append_entry(&mut self, entry: TestEntry) -> StorageResult<()> {
        self.s.append_entry(entry)
    }
    fn append_entries(&mut self, entries: Vec<TestEntry>) -> StorageResult<()> {
        self.s.append_entries(entries)
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<TestEntry>) -> StorageResult<()> {
        self.s.append_on_prefix(from_idx, entries)
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.s.set_promise(n_prom)
    }
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.s.set_decided_idx(ld)
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        self.s.get_decided_idx()
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.s.set_accepted_round(na)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.s.get_accepted_round()
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<TestEntry>> {
        self.s.get_entries(from, to)
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        self.s.get_log_len()
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<TestEntry>> {
        self.s.get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.s.get_promise()
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.s.set_stopsign(s)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.s.get_stopsign()
    }
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.s.trim(idx)
    }
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.s.set_compacted_idx(idx)
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        self.s.get_compacted_idx()
    }
    fn set_snapshot(&mut self, snapshot: Option<TestSnapshot>) -> StorageResult<()> {
        self.s.set_snapshot(snapshot)
    }
    fn get_snapshot(&self) -> StorageResult<Option<TestSnapshot>> {
        self.s.get_snapshot()
    }
}

/// Copies the directory tree `from` to `to` (created).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).expect("cp");
        }
    }
}
