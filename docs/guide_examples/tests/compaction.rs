//! Chapter "Compaction": trimming and snapshots.

use omnipaxos::{errors::CompactionErr, util::LogEntry};
use omnipaxos_guide::{kv, LocalCluster};

#[test]
fn trim_and_snapshot() {
    let mut local = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = local.elect(100);
    let follower = if leader == 1 { 2 } else { 1 };
    for i in 0..10 {
        local
            .node(leader)
            .append(kv(&format!("k{}", i % 3), i))
            .unwrap();
    }
    assert!(local.run_until(100, |c| c.all_decided(10)));

    // ANCHOR: snapshot
    // Fold the first 6 decided entries into a snapshot, on every server.
    local.node(follower).snapshot(Some(6), false).unwrap();
    local.run(5);
    for pid in [1, 2, 3] {
        let node = local.node(pid);
        assert_eq!(node.get_compacted_idx(), 6);
        match node.read(0) {
            Some(LogEntry::Snapshotted(s)) => {
                assert_eq!(s.trimmed_idx, 6);
                assert_eq!(s.snapshot.map["k0"], 3); // the last write of k0 below index 6
            }
            other => panic!("expected a snapshot, got {other:?}"),
        }
        // The entries after it keep their indices.
        assert!(matches!(node.read(6), Some(LogEntry::Decided(e)) if e.value == 6));
    }
    // ANCHOR_END: snapshot

    // ANCHOR: trim
    // Trimming discards entries without a snapshot: only the leader may do it, and only up to
    // what every server has accepted.
    assert_eq!(
        local.node(follower).trim(Some(8)),
        Err(CompactionErr::NotCurrentLeader(leader))
    );
    assert!(matches!(
        local.node(leader).trim(Some(100)),
        Err(CompactionErr::NotAllDecided(10))
    ));
    local.node(leader).trim(Some(8)).unwrap();
    local.run(5);
    assert!(matches!(
        local.node(follower).read(0),
        Some(LogEntry::Trimmed(8))
    ));
    assert_eq!(
        local.node(leader).snapshot(Some(5), false),
        Err(CompactionErr::TrimmedIndex(8))
    );
    // ANCHOR_END: trim
}
