//! An application written for crates.io `omnipaxos` 0.2.4 that sends its messages as bytes
//! (serde + bincode), with only the feature `toml_config` enabled on `omnipaxos`: in 0.2.4 that
//! feature also enabled `serde`, so `Message<T>` is `Serialize` and `Deserialize`.
//!
//! The library part depends on `omnipaxos` alone (no storage crate, which would enable `serde`
//! by itself), so `cargo build -p compat_messages_ours --lib`, run on its own, proves that
//! `toml_config` brings `serde`. The tests run a cluster whose every message travels as bytes.
//!
//! The same file is compiled and run against 0.2.4 (`compat/upstream/messages`) and against this
//! workspace (`compat/ours/messages`); the two crates differ only in their `Cargo.toml`.

use omnipaxos::{macros::Entry, messages::Message, util::NodeId};
use serde::{Deserialize, Serialize};

/// A replicated key-value write.
#[derive(Clone, Debug, PartialEq, Entry, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: u64,
}

/// The bytes sent on the wire for `msg`.
pub fn encode(msg: &Message<KeyValue>) -> Vec<u8> {
    bincode::serialize(msg).expect("a message always serializes")
}

/// The message in `bytes`, or `None` if they are not one.
pub fn decode(bytes: &[u8]) -> Option<Message<KeyValue>> {
    bincode::deserialize(bytes).ok()
}

/// Where the bytes of `msg` go.
pub fn destination(msg: &Message<KeyValue>) -> NodeId {
    msg.get_receiver()
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::{util::LogEntry, ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
    use omnipaxos_storage::memory_storage::MemoryStorage;
    use std::collections::HashMap;

    type Server = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

    fn cluster() -> HashMap<NodeId, Server> {
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
                (*pid, config.build(MemoryStorage::default()).expect("valid"))
            })
            .collect()
    }

    /// One round: every server ticks, and every message travels as bytes until none is left.
    /// Returns how many bytes were sent.
    fn round(servers: &mut HashMap<NodeId, Server>) -> usize {
        let mut wire: Vec<(NodeId, Vec<u8>)> = Vec::new();
        let mut sent = 0;
        let mut out = Vec::new();
        for server in servers.values_mut() {
            server.tick();
            server.take_outgoing_messages(&mut out);
        }
        loop {
            for msg in out.drain(..) {
                wire.push((destination(&msg), encode(&msg)));
            }
            if wire.is_empty() {
                return sent;
            }
            for (to, bytes) in wire.drain(..) {
                sent += bytes.len();
                let msg = decode(&bytes).expect("our own bytes decode");
                assert_eq!(msg.get_receiver(), to);
                if let Some(server) = servers.get_mut(&to) {
                    server.handle_incoming(msg);
                    server.take_outgoing_messages(&mut out);
                }
            }
        }
    }

    #[test]
    fn a_cluster_whose_messages_travel_as_bytes_agrees() {
        let mut servers = cluster();
        let mut bytes = 0;
        for _ in 0..50 {
            bytes += round(&mut servers);
        }
        let leader = servers[&1].get_current_leader().expect("a leader").0;
        for i in 0..10 {
            servers
                .get_mut(&leader)
                .unwrap()
                .append(KeyValue {
                    key: format!("k{i}"),
                    value: i,
                })
                .expect("append");
        }
        for _ in 0..50 {
            bytes += round(&mut servers);
        }
        assert!(bytes > 0);
        for server in servers.values() {
            let decided: Vec<u64> = server
                .read_decided_suffix(0)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| match e {
                    LogEntry::Decided(kv) => Some(kv.value),
                    _ => None,
                })
                .collect();
            assert_eq!(decided, (0..10).collect::<Vec<u64>>());
        }
    }

    #[test]
    fn garbage_is_not_a_message() {
        assert!(decode(&[0xff; 3]).is_none());
    }
}
