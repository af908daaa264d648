//! crates.io `omnipaxos` 0.2.4, on crates.io `omnipaxos_storage` 0.2.4's `MemoryStorage`.

omnipaxos_cluster!(
    /// Three nodes of omnipaxos 0.2.4.
    Upstream,
    omnipaxos_up,
    omnipaxos_storage_up,
    "omnipaxos 0.2.4"
);
