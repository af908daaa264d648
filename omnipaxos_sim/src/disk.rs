//! Simulated nodes on real disks: each node runs on a `PersistentStorage` in a directory of its
//! own, so that a restart goes through the storage's real `open` (its scan, replay and
//! checkpoints) instead of keeping the store in memory.
//!
//! A simulated crash drops the node, and with it its storage, between two storage calls: what
//! a node had written is what it finds. What a SIGKILL in the middle of a write leaves on disk
//! is the storage crate's crash test; here the question is whether a node rebuilt from its
//! directory alone is the node that crashed.

use crate::cluster::Backend;
use omnipaxos::{storage::Entry, util::NodeId};
use omnipaxos_storage::persistent_storage::{
    Durability, PersistentStorage, PersistentStorageConfig,
};
use serde::{de::DeserializeOwned, Serialize};
use std::{
    cell::Cell,
    collections::BTreeMap,
    path::{Path, PathBuf},
    rc::Rc,
};
use tempfile::TempDir;

/// One directory per node and incarnation (a node that joins a configuration afresh gets a new
/// one), below a temporary directory removed when the backend is dropped.
pub struct DiskBackend {
    root: TempDir,
    durability: Durability,
    incarnation: BTreeMap<NodeId, u32>,
    /// `open` calls that found an existing storage (reopens after a crash).
    reopens: Rc<Cell<u64>>,
}

impl DiskBackend {
    /// A backend under a new temporary directory. `Durability::Deferred` is enough for the
    /// simulator (its crashes come between storage calls, and dropping a storage flushes it)
    /// and much faster than `Immediate`. Panics if no temporary directory can be made.
    pub fn new(durability: Durability) -> Self {
        DiskBackend {
            root: tempfile::tempdir().expect("a temporary directory for the simulated disks"),
            durability,
            incarnation: BTreeMap::new(),
            reopens: Rc::new(Cell::new(0)),
        }
    }

    /// A counter of the reopens of an existing storage, shared with the backend.
    pub fn reopens(&self) -> Rc<Cell<u64>> {
        Rc::clone(&self.reopens)
    }

    fn path(&self, pid: NodeId) -> PathBuf {
        let inc = self.incarnation.get(&pid).copied().unwrap_or(0);
        self.root.path().join(format!("node-{pid}-{inc}"))
    }

    /// Small settings, so that what takes millions of writes in production happens in a
    /// short run too: log rewrites after trims, checkpoints that `open` rolls forward from,
    /// and several commitlog segments.
    fn config(&self, path: &Path) -> PersistentStorageConfig {
        let mut cfg = PersistentStorageConfig::with_path(path);
        cfg.set_durability(self.durability);
        cfg.set_log_rewrite_threshold(64);
        cfg.set_checkpoint_interval(256);
        let mut log = cfg.get_commitlog_options();
        log.segment_max_bytes(64 * 1024);
        cfg.set_commitlog_options(log);
        cfg
    }
}

impl<T> Backend<T> for DiskBackend
where
    T: Entry + Serialize + DeserializeOwned,
{
    type S = PersistentStorage<T>;

    /// Panics (naming the node and the directory) if the storage cannot be opened: a node
    /// that cannot reopen what it wrote is a failure the run reports.
    fn open(&mut self, pid: NodeId) -> Self::S {
        let path = self.path(pid);
        if path.exists() {
            self.reopens.set(self.reopens.get() + 1);
        }
        PersistentStorage::try_open(self.config(&path))
            .unwrap_or_else(|e| panic!("node {pid}: opening {} failed: {e}", path.display()))
    }

    fn fresh(&mut self, pid: NodeId) -> Self::S {
        let old = self.path(pid);
        *self.incarnation.entry(pid).or_insert(0) += 1;
        // The old node was dropped before this call; its files are no longer needed.
        let _ = std::fs::remove_dir_all(old);
        let path = self.path(pid);
        PersistentStorage::try_new(self.config(&path))
            .unwrap_or_else(|e| panic!("node {pid}: creating {} failed: {e}", path.display()))
    }
}
