//! Chapters "Flexible quorums" and "Batching and performance tuning".

use omnipaxos::{errors::ConfigError, util::FlexibleQuorum, ClusterConfig};
use omnipaxos_guide::{kv, node_config, KeyValue, KvNode, LocalCluster};
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

/// A three-server cluster whose batches close only when the application says so (the timer
/// is set far beyond the tests' length). Its storage is written once per take of the outgoing
/// messages, as a durable backend is (`MemoryStorage` would otherwise write after every message
/// handled), so the examples show the timing of a real deployment.
fn cluster_without_batch_timer() -> LocalCluster<KeyValue, MemoryStorage<KeyValue>> {
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    LocalCluster::new([1, 2, 3].map(|pid| -> KvNode {
        let mut config = node_config(&cluster, pid);
        config.server_config.batch_size = 100;
        config.server_config.flush_batch_tick_timeout = 1_000_000;
        config
            .build(MemoryStorage::default().with_writes_at_once(false))
            .unwrap()
    }))
}

#[test]
fn flush_at_the_end_of_each_pass() {
    let mut local = cluster_without_batch_timer();
    let leader = local.elect(100);
    let follower = if leader == 1 { 2 } else { 1 };
    // ANCHOR: flush_batch
    // One pass of the event loop on the leader: the requests that arrived since the last pass
    // are appended (up to `batch_size`, they wait in the batch) ...
    for i in 0..3 {
        local.node(leader).append(kv("k", i)).unwrap();
    }
    assert_eq!(local.node(leader).get_batched_len(), 3);
    // ... and at the end of the pass the batch is closed, then the messages are taken: the
    // three entries go out in one write and one message per follower, with no tick.
    local.node(leader).flush_batch();
    local.deliver();
    assert_eq!(local.node(leader).get_decided_idx(), 3);

    // The same on a follower: its appends are forwarded together when its pass ends ...
    local.node(follower).append(kv("k", 3)).unwrap();
    local.node(follower).append(kv("k", 4)).unwrap();
    local.node(follower).flush_batch();
    local.deliver();
    // ... and join the leader's batch, which goes out at the end of the leader's pass.
    assert_eq!(local.node(leader).get_batched_len(), 2);
    local.node(leader).flush_batch();
    local.deliver();
    assert_eq!(local.node(leader).get_decided_idx(), 5);
    // ANCHOR_END: flush_batch
}

#[test]
fn accepts_ahead_of_the_leaders_write() {
    let mut local = cluster_without_batch_timer();
    let leader = local.elect(100);
    let f = if leader == 1 { 2 } else { 1 };
    let g = 6 - leader - f;
    // Only the leader and f are connected: the leader needs f's write *and* its own.
    local.set_link(leader, g, false);
    // ANCHOR: ahead_of_write
    local.node(leader).append(kv("x", 1)).unwrap();
    local.node(leader).flush_batch();
    // The accepts may leave before the leader writes the entry ...
    let mut ahead = Vec::new();
    local.node(leader).take_messages_ahead_of_write(&mut ahead);
    assert!(ahead.iter().any(|m| m.get_receiver() == f));
    assert_eq!(local.node(leader).get_accepted_idx(), 0, "not written yet");
    // ... so f writes it while the leader does.
    let mut replies = Vec::new();
    for m in ahead.into_iter().filter(|m| m.get_receiver() == f) {
        local.node(f).handle_incoming(m);
    }
    local.node(f).take_outgoing_messages(&mut replies); // f writes, then acknowledges
    for m in replies {
        local.node(leader).handle_incoming(m);
    }
    // f's acknowledgement alone is not a quorum: the leader counts itself only once its own
    // write is done ...
    assert_eq!(local.node(leader).get_decided_idx(), 0);
    // ... which happens when the rest of its messages are taken.
    let mut rest = Vec::new();
    local.node(leader).take_outgoing_messages(&mut rest);
    assert_eq!(local.node(leader).get_accepted_idx(), 1);
    assert_eq!(local.node(leader).get_decided_idx(), 1);
    // ANCHOR_END: ahead_of_write
}
