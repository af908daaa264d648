//! Trim and snapshots: errors, what reads show, syncing servers behind a compacted prefix, and
//! bounded memory.

mod common;
use common::*;
use omnipaxos::{util::LogEntry, ClusterConfig, CompactionErr};
use omnipaxos_sim::{PlainEntry, Sim, SimConfig, SimEntry, SimSnapshot};

const E: u64 = 10;

fn snapshot_of(tags: std::ops::Range<u64>) -> SimSnapshot {
    SimSnapshot::of(tags)
}

/// Appends `tags` at `at` and runs until nodes `on` decided them.
fn append_decided_on(s: &mut MemSim, at: u64, tags: std::ops::Range<u64>, on: &[u64]) {
    for t in tags.clone() {
        s.append(at, SimEntry { id: t }).unwrap();
    }
    let want = tags.end as usize - 1;
    s.run_until(20, |s| on.iter().all(|p| s.decided(*p) >= want))
        .expect("decided");
}

#[test]
fn trim_is_for_the_leader_and_only_below_what_all_accepted() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    append_decided(&mut s, l, 1..21, 20);
    assert_eq!(
        s.node_mut(f).unwrap().trim(Some(5)),
        Err(CompactionErr::NotCurrentLeader(l))
    );
    assert_eq!(
        s.node_mut(l).unwrap().trim(Some(25)),
        Err(CompactionErr::NotAllDecided(20))
    );
    s.node_mut(l).unwrap().trim(Some(10)).unwrap();
    s.run(3);
    for p in 1..=3 {
        let node = s.node(p).unwrap();
        assert_eq!(node.get_compacted_idx(), 10);
        assert_eq!(node.read(3), Some(LogEntry::Trimmed(10)));
        let v = node.read_entries(..).unwrap();
        assert_eq!(v.len(), 11, "one Trimmed element then 10 entries");
        assert_eq!(v[0], LogEntry::Trimmed(10));
        assert_eq!(v[1], LogEntry::Decided(SimEntry { id: 11 }));
        assert_eq!(node.read(10), Some(LogEntry::Decided(SimEntry { id: 11 })));
    }
    assert_eq!(
        s.node_mut(l).unwrap().trim(Some(5)),
        Err(CompactionErr::TrimmedIndex(10))
    );
    // A crashed follower accepted up to 20: trimming stops there.
    s.crash(f);
    append_decided(&mut s, l, 21..25, 20);
    assert_eq!(
        s.node_mut(l).unwrap().trim(Some(24)),
        Err(CompactionErr::NotAllDecided(20))
    );
    s.node_mut(l).unwrap().trim(None).unwrap();
    assert_eq!(s.node(l).unwrap().get_compacted_idx(), 20);
}

#[test]
fn snapshot_errors_and_read_shapes() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..21, 20);
    let node = s.node_mut(l).unwrap();
    assert_eq!(
        node.snapshot(Some(30), false),
        Err(CompactionErr::UndecidedIndex(20))
    );
    node.snapshot(Some(12), false).unwrap();
    assert_eq!(
        node.snapshot(Some(5), true),
        Err(CompactionErr::TrimmedIndex(12))
    );
    s.run(3);
    for p in 1..=3 {
        let node = s.node(p).unwrap();
        assert_eq!(node.get_compacted_idx(), 12);
        // Snapshot + entries.
        let v = node.read_entries(..).unwrap();
        assert_eq!(v.len(), 9);
        match &v[0] {
            LogEntry::Snapshotted(sn) => {
                assert_eq!(sn.trimmed_idx, 12);
                assert_eq!(sn.snapshot, snapshot_of(1..13));
            }
            other => panic!("expected the snapshot first, got {other:?}"),
        }
        assert_eq!(v[1], LogEntry::Decided(SimEntry { id: 13 }));
        // A compacted index reads as the snapshot; later indices keep their absolute place.
        assert!(matches!(node.read(0), Some(LogEntry::Snapshotted(_))));
        assert_eq!(node.read(19), Some(LogEntry::Decided(SimEntry { id: 20 })));
        assert_eq!(node.read(20), None);
    }
    // Snapshot only: everything decided compacted.
    s.node_mut(l).unwrap().snapshot(None, false).unwrap();
    s.run(3);
    let v = s.node(l).unwrap().read_entries(..).unwrap();
    assert_eq!(v.len(), 1);
    assert!(
        matches!(&v[0], LogEntry::Snapshotted(sn) if sn.trimmed_idx == 20 && sn.snapshot == snapshot_of(1..21))
    );
    // Snapshot + StopSign.
    let next = ClusterConfig {
        configuration_id: 2,
        nodes: vec![1, 2, 3],
        flexible_quorum: None,
    };
    s.node_mut(l).unwrap().reconfigure(next, None).unwrap();
    s.run_until(20, |s| {
        s.pids()
            .all(|p| s.node(p).unwrap().is_reconfigured().is_some())
    })
    .unwrap();
    let v = s.node(l).unwrap().read_entries(..).unwrap();
    assert_eq!(v.len(), 2);
    assert!(matches!(v[0], LogEntry::Snapshotted(_)));
    assert!(matches!(v[1], LogEntry::StopSign(_, true)));
    // The stop sign is never compacted.
    s.node_mut(l).unwrap().snapshot(None, false).unwrap();
    assert_eq!(s.node(l).unwrap().get_compacted_idx(), 20);
}

#[test]
fn entries_then_stopsign_read_shape() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..4, 20);
    let next = ClusterConfig {
        configuration_id: 2,
        nodes: vec![1, 2, 3],
        flexible_quorum: None,
    };
    s.node_mut(l)
        .unwrap()
        .reconfigure(next.clone(), Some(vec![1]))
        .unwrap();
    s.run_until(20, |s| {
        s.pids()
            .all(|p| s.node(p).unwrap().is_reconfigured().is_some())
    })
    .unwrap();
    let v = s.node(l).unwrap().read_entries(..).unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!(v[2], LogEntry::Decided(SimEntry { id: 3 }));
    match &v[3] {
        LogEntry::StopSign(ss, true) => assert_eq!(ss.next_config, next),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.node(l).unwrap().read_decided_suffix(3).unwrap().len(), 1);
}

#[test]
fn a_server_behind_the_compacted_prefix_gets_a_complete_snapshot() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    append_decided(&mut s, l, 1..6, 20);
    s.crash(f);
    append_decided(&mut s, l, 6..31, 20);
    s.node_mut(l).unwrap().snapshot(Some(25), false).unwrap();
    s.run(2);
    s.restart(f);
    s.run_until(5 * E, |s| s.decided(f) == 30)
        .expect("the follower catches up");
    let node = s.node(f).unwrap();
    assert_eq!(node.get_compacted_idx(), 25);
    assert_eq!(node.get_stats().snapshot_installs, 1);
    match node.read(0) {
        Some(LogEntry::Snapshotted(sn)) => assert_eq!(sn.snapshot, snapshot_of(1..26)),
        other => panic!("{other:?}"),
    }
    assert_eq!(node.read(25), Some(LogEntry::Decided(SimEntry { id: 26 })));
}

/// Trap: syncing a lagging follower with a delta snapshot dropped the follower's own decided
/// entries from the merged snapshot.
#[test]
fn a_delta_keeps_the_followers_own_decided_entries() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    append_decided(&mut s, l, 1..11, 20);
    s.node_mut(l).unwrap().snapshot(Some(10), false).unwrap();
    // The follower decides two more entries after its snapshot, then falls behind.
    append_decided(&mut s, l, 11..13, 20);
    assert_eq!(s.node(f).unwrap().get_compacted_idx(), 10);
    assert_eq!(s.decided(f), 12);
    for p in s.pids().collect::<Vec<_>>() {
        s.net().set_both(f, p, false);
    }
    let other = s.pids().find(|p| *p != l && *p != f).unwrap();
    append_decided_on(&mut s, l, 13..21, &[l, other]);
    s.net().heal();
    s.run_until(5 * E, |s| s.decided(f) == 20)
        .expect("the follower catches up");
    let node = s.node(f).unwrap();
    assert_eq!(
        node.get_stats().snapshot_installs,
        1,
        "synced with a snapshot"
    );
    assert_eq!(
        node.get_compacted_idx(),
        20,
        "the delta covered what it lacked"
    );
    match node.read(0) {
        // The merge of its snapshot (1..=10), its own decided 11 and 12, and the delta 13..=20.
        Some(LogEntry::Snapshotted(sn)) => assert_eq!(sn.snapshot, snapshot_of(1..21)),
        other => panic!("{other:?}"),
    }
}

/// The Promise direction: a new leader behind a follower's compacted prefix adopts its snapshot.
#[test]
fn a_new_leader_behind_a_followers_compacted_prefix_adopts_the_snapshot() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let others: Vec<u64> = s.pids().filter(|p| *p != l).collect();
    let (a, b) = (others[0], others[1]);
    for p in s.pids().collect::<Vec<_>>() {
        s.net().set_both(a, p, false);
    }
    append_decided_on(&mut s, l, 1..21, &[l, b]);
    s.node_mut(l).unwrap().snapshot(Some(20), false).unwrap();
    s.run(2);
    assert_eq!(s.node(b).unwrap().get_compacted_idx(), 20);
    s.crash(l);
    s.net().heal();
    s.node_mut(a).unwrap().try_become_leader();
    s.run_until(5 * E, |s| s.leader() == Some(a) && s.decided(a) >= 20)
        .expect("A leads with B's decided prefix");
    let node = s.node(a).unwrap();
    assert_eq!(node.get_compacted_idx(), 20);
    assert!(
        matches!(node.read(0), Some(LogEntry::Snapshotted(sn)) if sn.snapshot == snapshot_of(1..21))
    );
    append_decided(&mut s, a, 21..24, 20);
}

#[test]
fn without_snapshots_compaction_trims_and_sync_stays_plain() {
    let mut s: Sim<PlainEntry, _> = Sim::new(SimConfig::new(3, 1));
    s.run_until(50, |s| s.leader().is_some()).unwrap();
    let l = s.leader().unwrap();
    let f = if l == 1 { 2 } else { 1 };
    for id in 1..=20 {
        s.append(l, PlainEntry { id }).unwrap();
    }
    s.run(5);
    // `snapshot` trims, so it follows trim's rules.
    assert_eq!(
        s.node_mut(f).unwrap().snapshot(Some(5), false),
        Err(CompactionErr::NotCurrentLeader(l))
    );
    s.node_mut(l).unwrap().snapshot(Some(10), false).unwrap();
    s.run(2);
    assert!(s
        .pids()
        .all(|p| s.node(p).unwrap().read(0) == Some(LogEntry::Trimmed(10))));
    // A follower that falls behind (above the trim) is synced with entries.
    for p in s.pids().collect::<Vec<_>>() {
        s.net().set_both(f, p, false);
    }
    for id in 21..=30 {
        s.append(l, PlainEntry { id }).unwrap();
    }
    s.run(5);
    s.net().heal();
    s.run_until(5 * E, |s| s.decided(f) == 30).unwrap();
    assert!(s
        .pids()
        .all(|p| s.node(p).unwrap().get_stats().snapshot_installs == 0));
    assert_eq!(s.node(f).unwrap().get_compacted_idx(), 10);
}

/// 1,000,000 appends with a snapshot every 10,000 decided entries: no node retains more than
/// 10,000 entries plus one batch.
#[test]
fn retained_log_stays_bounded_over_a_million_appends() {
    const BATCH: usize = 1_000;
    let mut cfg = SimConfig::new(3, 1);
    cfg.server.batch_size = BATCH;
    let mut s: MemSim = Sim::new(cfg);
    let l = elect(&mut s, 50);
    let mut last_snapshot = 0;
    let mut max_retained = 0;
    let mut next = 1u64;
    while next <= 1_000_000 {
        let chunk: Vec<SimEntry> = (next..next + BATCH as u64)
            .map(|id| SimEntry { id })
            .collect();
        next += BATCH as u64;
        s.append_batch(l, chunk).unwrap();
        s.step();
        let decided = s.node(l).unwrap().get_decided_idx();
        if decided >= last_snapshot + 10_000 {
            s.node_mut(l).unwrap().snapshot(None, false).unwrap();
            last_snapshot = decided;
        }
        for p in 1..=3 {
            let n = s.node(p).unwrap();
            let retained = n.get_accepted_idx() - n.get_compacted_idx();
            max_retained = max_retained.max(retained);
            assert!(
                retained <= 10_000 + BATCH,
                "node {p} retains {retained} entries"
            );
        }
    }
    s.run(5);
    assert_eq!(s.decided(l), 1_000_000);
    println!("max retained entries: {max_retained}");
}
