//! An application written for crates.io `omnipaxos` 0.2.4: an in-process three-server cluster
//! with a derived `Entry` and `MemoryStorage`, messages moved by hand.
//!
//! The same file is compiled and run against 0.2.4 (`compat/upstream`) and against this
//! workspace (`compat/ours`); the two crates differ only in their `Cargo.toml`.

use omnipaxos::{
    macros::Entry,
    messages::Message,
    util::{LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::HashMap;

/// A replicated key-value write.
#[derive(Clone, Debug, PartialEq, Entry)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: u64,
}

type Server = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

/// Builds the servers of a three-server cluster.
pub fn cluster() -> HashMap<NodeId, Server> {
    let nodes: Vec<NodeId> = vec![1, 2, 3];
    let cluster_config = ClusterConfig {
        configuration_id: 1,
        nodes: nodes.clone(),
        ..Default::default()
    };
    nodes
        .iter()
        .map(|pid| {
            let server_config = ServerConfig {
                pid: *pid,
                election_tick_timeout: 5,
                ..Default::default()
            };
            let config = OmniPaxosConfig {
                cluster_config: cluster_config.clone(),
                server_config,
            };
            let server = config
                .build(MemoryStorage::default())
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

/// The writes `server` decided, in log order.
pub fn decided_writes(server: &Server) -> Vec<KeyValue> {
    server
        .read_decided_suffix(0)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Decided(kv) => Some(kv),
            _ => None,
        })
        .collect()
}

/// The leader every server agrees on, if any.
pub fn leader(servers: &HashMap<NodeId, Server>) -> Option<NodeId> {
    let leaders: Vec<Option<NodeId>> = servers
        .values()
        .map(|s| s.get_current_leader().map(|(pid, _)| pid))
        .collect();
    let first = leaders[0];
    if first.is_some() && leaders.iter().all(|l| *l == first) {
        first
    } else {
        None
    }
}

#[test]
fn three_servers_agree_on_the_writes_in_order() {
    let mut servers = cluster();
    let mut rounds = 0;
    let leader = loop {
        round(&mut servers);
        rounds += 1;
        assert!(rounds < 1_000, "no leader elected");
        if let Some(l) = leader(&servers) {
            break l;
        }
    };
    // Append at a follower too: it is forwarded to the leader.
    let follower = *servers.keys().find(|p| **p != leader).unwrap();
    let writes: Vec<KeyValue> = (0..10)
        .map(|i| KeyValue {
            key: format!("k{i}"),
            value: i,
        })
        .collect();
    for (i, w) in writes.iter().enumerate() {
        let at = if i % 2 == 0 { leader } else { follower };
        servers
            .get_mut(&at)
            .unwrap()
            .append(w.clone())
            .expect("append");
    }
    for _ in 0..100 {
        round(&mut servers);
    }
    for server in servers.values() {
        assert_eq!(server.get_decided_idx(), writes.len());
        let decided = decided_writes(server);
        let mut sorted = decided.clone();
        sorted.sort_by_key(|kv| kv.value);
        assert_eq!(sorted, writes, "every write decided once");
        assert_eq!(
            decided,
            decided_writes(&servers[&leader]),
            "the same order everywhere"
        );
    }
}
