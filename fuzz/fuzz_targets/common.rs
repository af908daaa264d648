//! What both fuzz binaries build: the entry type and a node of a 3-server cluster.

use omnipaxos::{storage::NoSnapshot, ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};

/// An entry: a number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E(pub u64);

impl omnipaxos::storage::Entry for E {
    type Snapshot = NoSnapshot;
}

/// Node `pid` of configuration 1 with servers 1, 2 and 3 (short timeouts: elections and
/// resends happen within a few ticks).
pub fn node(pid: u64) -> OmniPaxos<E, MemoryStorage<E>> {
    OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: vec![1, 2, 3],
            flexible_quorum: None,
        },
        server_config: ServerConfig {
            pid,
            election_tick_timeout: 2,
            resend_message_tick_timeout: 4,
            ..Default::default()
        },
    }
    .build(MemoryStorage::default())
    .expect("a valid configuration")
}
