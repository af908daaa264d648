//! What the integration tests of three-node clusters on `MemoryStorage` share: the entry type,
//! the node type and the settings.

use omnipaxos::{
    storage::{Entry, NoSnapshot},
    util::NodeId,
    ClusterConfig, OmniPaxos, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;

/// A log entry: a number.
#[derive(Clone, Debug, PartialEq)]
pub struct V(pub u64);

impl Entry for V {
    type Snapshot = NoSnapshot;
}

/// A node on `MemoryStorage`.
pub type Node = OmniPaxos<V, MemoryStorage<V>>;

/// Server `pid`: election every 5 ticks, resends every 10.
pub fn server(pid: NodeId) -> ServerConfig {
    ServerConfig {
        pid,
        election_tick_timeout: 5,
        resend_message_tick_timeout: 10,
        ..Default::default()
    }
}

/// Configuration `id` of servers 1, 2 and 3.
pub fn cluster_config(id: u32) -> ClusterConfig {
    ClusterConfig {
        configuration_id: id,
        nodes: vec![1, 2, 3],
        ..Default::default()
    }
}
