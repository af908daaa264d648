//! Chapter "Leader election": the first election, priorities, `try_become_leader`, failover,
//! and the partial-connectivity scenarios of the Omni-Paxos paper.

use omnipaxos::{ClusterConfig, ServerConfig};
use omnipaxos_guide::{kv, node_config, KvNode, LocalCluster};
use omnipaxos_sim::{Sim, SimConfig, SimEntry};
use omnipaxos_storage::MemoryStorage;

#[test]
fn priorities_and_takeover() {
    // ANCHOR: priority
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let mut local = LocalCluster::new([1, 2, 3].map(|pid| -> KvNode {
        let mut config = node_config(&cluster, pid);
        // Server 1 should lead when it can: a higher priority wins a contested election.
        config.server_config.leader_priority = if pid == 1 { 10 } else { 0 };
        config.build(MemoryStorage::default()).unwrap()
    }));
    assert_eq!(local.elect(100), 1);
    // ANCHOR_END: priority

    // ANCHOR: try_become_leader
    // Move leadership by hand, e.g. before taking server 1 down for maintenance.
    local.node(3).try_become_leader();
    local.run(5);
    assert_eq!(local.leader(), Some(3));
    // A happy leader is not replaced because another server has a higher priority.
    local.run(100);
    assert_eq!(local.leader(), Some(3));
    // ANCHOR_END: try_become_leader
}

#[test]
fn default_priorities_elect_the_highest_pid() {
    let mut local = LocalCluster::with_pids(&[1, 2, 3]);
    assert_eq!(local.elect(100), 3);
}

#[test]
fn failover_after_a_leader_crash() {
    // ANCHOR: failover
    let mut local = LocalCluster::with_pids(&[1, 2, 3]);
    let old = local.elect(100);
    local.node(old).append(kv("a", 1)).unwrap();
    assert!(local.run_until(50, |c| c.all_decided(1)));
    let _storage = local.crash(old);
    // election_tick_timeout is 5 ticks here: a new leader serves within two rounds (and a tick
    // or two for the messages of the takeover).
    let mut ticks = 0;
    while local.leader().is_none() {
        local.run(1);
        ticks += 1;
        assert!(
            ticks <= 2 * 5 + 2,
            "failover took more than 2 election timeouts"
        );
    }
    println!("new leader after {ticks} ticks");
    // ANCHOR_END: failover
}

#[test]
fn quorum_loss() {
    // ANCHOR: quorum_loss
    // Five servers; every link is cut except those of server `q`: the leader still reaches q,
    // but no longer a quorum. Only q is connected to a quorum, and it must take over.
    let mut sim: Sim<SimEntry, _> = Sim::new(SimConfig::new(5, 1));
    sim.run_until(100, |s| s.leader().is_some()).unwrap();
    let leader = sim.leader().unwrap();
    let q = if leader == 1 { 2 } else { 1 };
    let others: Vec<u64> = sim.pids().filter(|p| *p != q).collect();
    for &a in &others {
        for &b in &others {
            if a != b {
                sim.net().set_both(a, b, false);
            }
        }
    }
    sim.run_until(4 * 10, |s| s.leader() == Some(q))
        .expect("q takes over within 4 election timeouts");
    sim.append(q, SimEntry { id: 1 }).unwrap();
    sim.run_until(20, |s| s.checker().is_decided(1))
        .expect("and the cluster makes progress again");
    // ANCHOR_END: quorum_loss
}

#[test]
fn constrained_election() {
    // ANCHOR: constrained
    let mut sim: Sim<SimEntry, _> = Sim::new(SimConfig::new(5, 1));
    sim.run_until(100, |s| s.leader().is_some()).unwrap();
    let leader = sim.leader().unwrap();
    let q = if leader == 1 { 2 } else { 1 };
    // Phase 1: q cannot reach the leader; entries are decided without q, so q falls behind.
    sim.net().set_both(leader, q, false);
    for id in 1..=10 {
        sim.append(leader, SimEntry { id }).unwrap();
        sim.run(3);
    }
    assert!(
        sim.decided(q) < sim.checker().decided_log().len(),
        "q is behind"
    );
    // Phase 2: the leader is cut from everyone, and the other followers from each other.
    // Only q reaches a quorum, and it is elected although its log is behind.
    let followers: Vec<u64> = sim.pids().filter(|p| *p != leader && *p != q).collect();
    for p in sim.pids().collect::<Vec<_>>() {
        sim.net().set_both(leader, p, false);
    }
    for &a in &followers {
        for &b in &followers {
            if a != b {
                sim.net().set_both(a, b, false);
            }
        }
    }
    sim.run_until(4 * 10, |s| s.leader() == Some(q))
        .expect("q takes over within 4 election timeouts");
    sim.append(q, SimEntry { id: 100 }).unwrap();
    sim.run_until(20, |s| s.checker().is_decided(100))
        .expect("progress, with every entry decided before still in place");
    // ANCHOR_END: constrained
}

#[test]
fn chained() {
    // ANCHOR: chained
    // Three servers; only the link between the leader and one follower is cut. The cut
    // follower still hears a happy server (the other follower), so it does not disrupt
    // the leader: no leader changes back and forth.
    let mut sim: Sim<SimEntry, _> = Sim::new(SimConfig::new(3, 1));
    sim.run_until(100, |s| s.leader().is_some()).unwrap();
    let leader = sim.leader().unwrap();
    let cut = sim.pids().find(|p| *p != leader).unwrap();
    sim.net().set_both(leader, cut, false);
    let changes_before = sim.stats().leader_changes;
    for id in 1..=50 {
        let at = sim.leader().unwrap_or(leader);
        let _ = sim.append(at, SimEntry { id });
        sim.run(10);
    }
    assert!(sim.stats().leader_changes - changes_before <= 1);
    assert!(sim.checker().decided_log().len() >= 40);
    // ANCHOR_END: chained
}

#[test]
fn server_config_defaults_are_one_tick_rounds() {
    let s = ServerConfig::default();
    assert_eq!(s.election_tick_timeout, 1);
    assert_eq!(s.resend_message_tick_timeout, 100);
    assert_eq!(s.flush_batch_tick_timeout, 200);
    assert_eq!(s.batch_size, 1);
    assert_eq!(s.buffer_size, 100_000);
}

#[test]
fn check_quorum() {
    // ANCHOR: check_quorum
    let mut local = LocalCluster::with_pids(&[1, 2, 3]);
    let old = local.elect(100);
    assert_eq!(local.node(old).get_current_leader(), Some((old, true)));
    // The leader is cut off from both followers (it keeps running).
    for p in [1, 2, 3] {
        if p != old {
            local.set_link(old, p, false);
        }
    }
    // Within two election timeouts (5 ticks each here) it no longer names itself leader:
    // an application that routes requests by `get_current_leader` stops sending them there.
    let mut ticks = 0;
    while local.node(old).get_current_leader().is_some() {
        local.run(1);
        ticks += 1;
        assert!(ticks <= 2 * 5, "still leader after {ticks} ticks");
    }
    // Meanwhile the other two elect a leader of their own.
    assert!(local.run_until(100, |c| c.leader().is_some_and(|l| l != old)));
    // ANCHOR_END: check_quorum
    println!("the cut-off leader stepped down after {ticks} ticks");
}
