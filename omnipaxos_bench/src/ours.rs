//! This workspace's `omnipaxos`, on its `MemoryStorage`.

omnipaxos_cluster!(
    /// Three nodes of this omnipaxos.
    Ours,
    omnipaxos,
    omnipaxos_storage,
    "ours"
);
