//! Chapters "Flexible quorums" and "Batching and performance tuning".

use omnipaxos::{errors::ConfigError, util::FlexibleQuorum, ClusterConfig};
use omnipaxos_guide::{kv, node_config, KvNode, LocalCluster};
use omnipaxos_storage::MemoryStorage;

#[test]
fn flexible_quorum() {
    // ANCHOR: flexible
    // Five servers: an entry is decided by 2 of them, a new leader needs 4 promises.
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3, 4, 5],
        flexible_quorum: Some(FlexibleQuorum {
            read_quorum_size: 4,
            write_quorum_size: 2,
        }),
    };
    let mut local = LocalCluster::new(cluster.nodes.iter().map(|&pid| -> KvNode {
        node_config(&cluster, pid)
            .build(MemoryStorage::default())
            .unwrap()
    }));
    let leader = local.elect(100);
    // Three followers go down: the leader and one follower still decide.
    let followers: Vec<u64> = (1..=5).filter(|p| *p != leader).collect();
    for &p in &followers[..3] {
        local.crash(p);
    }
    local.node(leader).append(kv("x", 1)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(1)));
    // But if the leader goes down too, one server cannot gather 4 promises: no new leader.
    local.crash(leader);
    local.run(100);
    assert_eq!(local.leader(), None);
    // ANCHOR_END: flexible
}

#[test]
fn quorums_must_intersect() {
    // ANCHOR: invalid_quorum
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3, 4, 5],
        flexible_quorum: Some(FlexibleQuorum {
            read_quorum_size: 3,
            write_quorum_size: 2, // 3 + 2 = 5: a read and a write quorum could miss each other
        }),
    };
    match cluster.validate() {
        Err(ConfigError::InvalidConfig(msg)) => assert!(msg.contains("must exceed"), "{msg}"),
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    // ANCHOR_END: invalid_quorum
}

#[test]
fn batching() {
    // ANCHOR: batching
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut local = LocalCluster::new([1, 2, 3].map(|pid| -> KvNode {
        let mut config = node_config(&cluster, pid);
        config.server_config.batch_size = 10; // replicate 10 entries per message ...
        config.server_config.flush_batch_tick_timeout = 5; // ... or what there is, every 5 ticks
        config.build(MemoryStorage::default()).unwrap()
    }));
    let leader = local.elect(100);
    // A partial batch waits ...
    for i in 0..7 {
        local.node(leader).append(kv("k", i)).unwrap();
    }
    local.deliver();
    assert_eq!(local.node(leader).get_batched_len(), 7);
    assert_eq!(local.node(leader).get_decided_idx(), 0);
    // ... until the flush timeout replicates it.
    assert!(local.run_until(5, |c| c.nodes[&leader].get_decided_idx() == 7));
    // A full batch goes out the next time the messages are taken.
    for i in 7..17 {
        local.node(leader).append(kv("k", i)).unwrap();
    }
    local.deliver();
    assert_eq!(local.node(leader).get_decided_idx(), 17);
    // ANCHOR_END: batching
}
