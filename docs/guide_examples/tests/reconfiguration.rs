//! Chapter "Reconfiguration and log migration": replace server 3 by server 4.

use omnipaxos::{util::LogEntry, ClusterConfig};
use omnipaxos_guide::{kv, node_config, KvNode, LocalCluster};
use omnipaxos_storage::MemoryStorage;

#[test]
fn replace_a_server() {
    let mut local = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = local.elect(100);
    for i in 0..20 {
        local.node(leader).append(kv("counter", i)).unwrap();
    }
    assert!(local.run_until(100, |c| c.all_decided(20)));

    // ANCHOR: propose
    // Configuration 2: servers 1, 2 and 4 (3 leaves, 4 joins). Any server can propose it.
    let next = ClusterConfig {
        configuration_id: 2,
        nodes: vec![1, 2, 4],
        ..Default::default()
    };
    local
        .node(1)
        .reconfigure(next.clone(), None)
        .expect("no reconfiguration pending");
    // The stop sign is decided like an entry; after it, configuration 1 accepts no appends.
    assert!(local.run_until(100, |c| c
        .nodes
        .values()
        .all(|n| n.is_reconfigured().is_some())));
    assert!(local.node(1).append(kv("late", 0)).is_err());
    // ANCHOR_END: propose

    // ANCHOR: move_on
    // Servers 1 and 2 continue on their storage.
    for pid in [1, 2] {
        let old = local.nodes.remove(&pid).unwrap();
        let ss = old.is_reconfigured().expect("stopped");
        assert_eq!(ss.next_config, next);
        let server_config = node_config(&next, pid).server_config;
        let new = old
            .start_next_config(server_config)
            .map_err(|(e, _)| e)
            .unwrap();
        local.nodes.insert(pid, new);
    }
    // Server 4 joins on empty storage.
    let joiner: KvNode = next
        .clone()
        .build_for_server(
            node_config(&next, 4).server_config,
            MemoryStorage::default(),
        )
        .unwrap();
    local.nodes.insert(4, joiner);
    // Server 3 is not in the next configuration: it keeps running for a while, to serve its
    // log to the joiner, and takes part in nothing else.
    // ANCHOR_END: move_on

    // ANCHOR: migrate
    // The joiner pulls the old log (20 entries) from servers 1, 2 and 3 in parallel, while
    // configuration 2 already decides new entries.
    local.node(4).append(kv("new", 100)).unwrap();
    assert!(local.run_until(200, |c| {
        let n = &c.nodes[&4];
        // `get_migration_status()` is `Some(progress)` while the pull runs.
        n.get_stats().migrations_completed == 1 && n.get_decided_idx() == 21
    }));
    assert!(local.node(4).get_migration_status().is_none());
    // The stop sign was at index 20 of configuration 1; configuration 2 continues the log
    // there: the old entries are 0..20, the new entry is at 20.
    let joiner = local.node(4);
    assert!(matches!(joiner.read(20), Some(LogEntry::Decided(e)) if e.key == "new"));
    assert_eq!(joiner.get_stats().migrated_entries, 20);
    // ANCHOR_END: migrate
    // The pulled prefix is kept as a snapshot of the old log.
    match joiner.read(0) {
        Some(LogEntry::Snapshotted(s)) => assert_eq!(s.snapshot.map["counter"], 19),
        other => panic!("expected the migrated snapshot, got {other:?}"),
    }
}
