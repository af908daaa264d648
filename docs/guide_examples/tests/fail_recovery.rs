//! Chapter "Fail-recovery": a server crashes and comes back on its persistent storage.

use omnipaxos::{util::LogEntry, ClusterConfig, OmniPaxos};
use omnipaxos_guide::{kv, node_config, KeyValue, LocalCluster};
use omnipaxos_storage::{PersistentStorage, PersistentStorageConfig};
use std::path::Path;

type Node = OmniPaxos<KeyValue, PersistentStorage<KeyValue>>;

// ANCHOR: open_node
/// Starts server `pid` on its storage directory: a fresh one the first time, and the state of
/// its previous run after a crash or a restart.
fn open_node(cluster: &ClusterConfig, pid: u64, dir: &Path) -> Node {
    let config = PersistentStorageConfig::with_path(dir.join(format!("node-{pid}")));
    let storage = PersistentStorage::try_open(config).expect("the storage opens");
    node_config(cluster, pid)
        .build(storage)
        .expect("a valid configuration")
}
// ANCHOR_END: open_node

#[test]
fn a_follower_crashes_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut local = LocalCluster::new([1, 2, 3].map(|pid| open_node(&cluster, pid, dir.path())));
    let leader = local.elect(100);
    let follower = if leader == 1 { 2 } else { 1 };

    // ANCHOR: recover
    local.node(leader).append(kv("before", 1)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(1)));

    // The follower crashes. Dropping its storage closes the files, as the end of the process
    // would.
    drop(local.crash(follower));

    // The others go on without it: two of three are a majority.
    local.node(leader).append(kv("while down", 2)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(2)));

    // It restarts on the same directory: it remembers what it promised, accepted and decided,
    // and the leader brings it up to date.
    let mut node = open_node(&cluster, follower, dir.path());
    assert_eq!(
        node.get_decided_idx(),
        1,
        "what it had decided before the crash"
    );
    node.fail_recovery(); // optional: asks the leader to resynchronise at once
    local.nodes.insert(follower, node);
    assert!(local.run_until(100, |c| c.all_decided(2)));
    let log = local.node(follower).read_decided_suffix(0).unwrap();
    assert!(matches!(&log[1], LogEntry::Decided(e) if e.key == "while down"));
    // ANCHOR_END: recover
}
