//! An application written for crates.io `omnipaxos` 0.2.4 and `omnipaxos_storage` 0.2.4 with its
//! feature `persistent_storage`: three servers on `PersistentStorage`, stopped and restarted on
//! the same directories; the restarted servers recover the decided log and carry on.
//!
//! Only the storage's directory is configured (`PersistentStorageConfig::with_path`), the part of
//! the storage configuration that both versions share: 0.2.4's options are RocksDB's, ours are
//! commitlog's and sled's.
//!
//! The same file is compiled and run against 0.2.4 (`compat/upstream/persistence`) and against
//! this workspace (`compat/ours/persistence`); the two crates differ only in their `Cargo.toml`.

use omnipaxos::{
    macros::Entry,
    messages::Message,
    util::{LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
use serde::{Deserialize, Serialize};
use std::{collections::HashMap, path::Path};

/// A replicated key-value write.
#[derive(Clone, Debug, PartialEq, Entry, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: u64,
}

type Server = OmniPaxos<KeyValue, PersistentStorage<KeyValue>>;

/// Opens (creating or reopening) the storage of server `pid` under `dir`.
pub fn open_storage(dir: &Path, pid: NodeId) -> PersistentStorage<KeyValue> {
    let path = dir.join(format!("node{pid}"));
    let config = PersistentStorageConfig::with_path(path.to_str().expect("utf-8").to_string());
    PersistentStorage::open(config)
}

/// Builds (or rebuilds after a stop) the three servers, each on its storage under `dir`.
pub fn cluster(dir: &Path) -> HashMap<NodeId, Server> {
    let nodes: Vec<NodeId> = vec![1, 2, 3];
    nodes
        .iter()
        .map(|pid| {
            let config = OmniPaxosConfig {
                cluster_config: ClusterConfig {
                    configuration_id: 1,
                    nodes: nodes.clone(),
                    ..Default::default()
                },
                server_config: ServerConfig {
                    pid: *pid,
                    election_tick_timeout: 5,
                    ..Default::default()
                },
            };
            let server = config
                .build(open_storage(dir, *pid))
                .expect("valid configuration");
            (*pid, server)
        })
        .collect()
}

/// One round: every server ticks, then every message is delivered.
pub fn round(servers: &mut HashMap<NodeId, Server>) {
    let mut buffer: Vec<Message<KeyValue>> = Vec::new();
    for server in servers.values_mut() {
        server.tick();
        server.take_outgoing_messages(&mut buffer);
    }
    while !buffer.is_empty() {
        let mut next = Vec::new();
        for msg in buffer.drain(..) {
            if let Some(server) = servers.get_mut(&msg.get_receiver()) {
                server.handle_incoming(msg);
                server.take_outgoing_messages(&mut next);
            }
        }
        buffer = next;
    }
}

/// The values `server` decided, in log order.
pub fn decided_values(server: &Server) -> Vec<u64> {
    server
        .read_decided_suffix(0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Decided(kv) => Some(kv.value),
            _ => None,
        })
        .collect()
}

/// Runs rounds until a leader is agreed on, and returns it.
pub fn elect(servers: &mut HashMap<NodeId, Server>) -> NodeId {
    for _ in 0..1_000 {
        round(servers);
        let leaders: Vec<Option<NodeId>> = servers
            .values()
            .map(|s| s.get_current_leader().map(|(pid, _)| pid))
            .collect();
        if leaders[0].is_some() && leaders.iter().all(|l| *l == leaders[0]) {
            return leaders[0].unwrap();
        }
    }
    panic!("no leader elected");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(servers: &mut HashMap<NodeId, Server>, leader: NodeId, values: std::ops::Range<u64>) {
        for value in values {
            servers
                .get_mut(&leader)
                .unwrap()
                .append(KeyValue {
                    key: format!("k{value}"),
                    value,
                })
                .expect("append");
        }
        for _ in 0..50 {
            round(servers);
        }
    }

    #[test]
    fn a_restarted_cluster_recovers_its_log_and_carries_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut servers = cluster(dir.path());
        let leader = elect(&mut servers);
        append(&mut servers, leader, 0..5);
        for server in servers.values() {
            assert_eq!(decided_values(server), vec![0, 1, 2, 3, 4]);
        }
        // Stop every server (closing its storage) and start them again on the same files.
        drop(servers);
        let mut servers = cluster(dir.path());
        for server in servers.values() {
            assert_eq!(server.get_decided_idx(), 5, "the decided index survives");
            assert_eq!(decided_values(server), vec![0, 1, 2, 3, 4]);
        }
        let leader = elect(&mut servers);
        append(&mut servers, leader, 5..8);
        for server in servers.values() {
            assert_eq!(decided_values(server), (0..8).collect::<Vec<u64>>());
        }
    }
}
