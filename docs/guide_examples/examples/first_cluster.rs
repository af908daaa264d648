//! A three-node cluster in one program: build the nodes, move their messages, append, read.
//!
//! `cargo run -p omnipaxos_guide --example first_cluster`

// ANCHOR: main
use omnipaxos::{macros::Entry, util::LogEntry, ClusterConfig, OmniPaxos, OmniPaxosConfig};
use omnipaxos::{messages::Message, ServerConfig};
use omnipaxos_storage::MemoryStorage;

/// What the replicated log holds: one write of a key-value store.
#[derive(Clone, Debug, Entry)]
pub struct KeyValue {
    /// The key written.
    pub key: String,
    /// Its new value.
    pub value: u64,
}

type Node = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

/// Builds the cluster, decides one entry and prints it from every node.
pub fn main() {
    // 1. The configuration every server shares, and one node per server.
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut nodes: Vec<Node> = cluster
        .nodes
        .iter()
        .map(|&pid| {
            let server = ServerConfig {
                pid,
                election_tick_timeout: 5,
                resend_message_tick_timeout: 20,
                ..Default::default()
            };
            OmniPaxosConfig {
                cluster_config: cluster.clone(),
                server_config: server,
            }
            .build(MemoryStorage::default())
            .expect("a valid configuration")
        })
        .collect();

    // 2. Any node accepts appends: before a leader is known the entry waits, on a follower it
    //    is forwarded to the leader.
    nodes[0]
        .append(KeyValue {
            key: "a".into(),
            value: 1,
        })
        .expect("the configuration is not stopped");

    // 3. The "network": tick every node, and deliver what they send until nothing is left;
    //    until every node decided the entry.
    let mut in_flight: Vec<Message<KeyValue>> = Vec::new();
    let mut ticks = 0;
    while nodes.iter().any(|node| node.get_decided_idx() < 1) {
        assert!(ticks < 1_000, "not decided after {ticks} ticks");
        ticks += 1;
        for node in nodes.iter_mut() {
            node.tick();
            node.take_outgoing_messages(&mut in_flight);
        }
        while let Some(msg) = in_flight.pop() {
            let receiver = &mut nodes[msg.get_receiver() as usize - 1];
            receiver.handle_incoming(msg);
            receiver.take_outgoing_messages(&mut in_flight);
        }
    }

    // 4. Every node decided the entry, at the same index.
    for node in &nodes {
        assert_eq!(node.get_decided_idx(), 1);
        match node.read_decided_suffix(0).as_deref() {
            Some([LogEntry::Decided(kv)]) => {
                println!("node {}: {} = {}", node.get_pid(), kv.key, kv.value)
            }
            other => panic!("unexpected log {other:?}"),
        }
    }
    let (leader, _) = nodes[0].get_current_leader().expect("a leader is known");
    println!("leader: node {leader}; decided after {ticks} ticks");
}
// ANCHOR_END: main
