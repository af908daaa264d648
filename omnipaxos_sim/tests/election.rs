//! Ballot Leader Election: first election, takeover, priorities, explicit takeover, timeouts.

mod common;
use common::*;
use omnipaxos::util::LogEntry;
use omnipaxos_sim::{Sim, SimConfig, SimEntry};

#[test]
fn first_election_elects_one_leader_that_all_follow() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    // Equal priorities: the highest pid wins the cold start, and nobody else ever served.
    assert_eq!(l, 3);
    assert_eq!(s.stats().leader_changes, 0);
    append_decided(&mut s, 1, 1..4, 20);
    assert_eq!(decided_tags(&s), vec![1, 2, 3]);
}

#[test]
fn leader_crash_is_followed_by_takeover_and_nothing_decided_is_lost() {
    let mut s = sim(5);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..11, 20);
    s.crash(l);
    let new = elect(&mut s, 60);
    assert_ne!(new, l);
    append_decided(&mut s, new, 11..21, 20);
    assert_eq!(decided_tags(&s), (1..21).collect::<Vec<_>>());
    // The old leader comes back as a follower and catches up.
    s.restart(l);
    s.run_until(60, |s| s.decided(l) == 20)
        .expect("restarted node catches up");
    assert_eq!(s.leader(), Some(new));
}

/// Crashes the leader `l` after `phase` more ticks, appends entry 2 at `at`, and returns the
/// ticks until it is decided.
fn crash_and_time_next_decide(s: &mut MemSim, l: u64, at: u64, phase: u64) -> u64 {
    for _ in 0..phase {
        s.step();
    }
    s.crash(l);
    s.append(at, SimEntry { id: 2 }).unwrap();
    // Like an application that deduplicates: an append handed back because its leader was
    // replaced before placing it is appended again.
    let start = s.now();
    while !s.checker().is_decided(2) {
        assert!(
            s.now() < start + 100,
            "an entry is decided after the leader crashed"
        );
        for r in s.node_mut(at).unwrap().take_returned_appends() {
            s.node_mut(at).unwrap().append(r.entry).unwrap();
        }
        s.step();
    }
    s.now() - start
}

#[test]
fn failover_takes_a_few_election_timeouts() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..2, 10);
    let other = s.pids().find(|p| *p != l).unwrap();
    let ticks = crash_and_time_next_decide(&mut s, l, other, 0);
    // Election timeout is 10 ticks: detection, takeover and the first decide within 4 of them.
    assert!(ticks <= 40, "failover took {ticks} ticks");
}

/// Failover within two election timeouts, whatever the phase of the heartbeat round in which
/// the leader crashes: a follower that loses its leader confirms with a short round instead of
/// waiting a whole round for its peers to notice too.
#[test]
fn failover_within_two_election_timeouts_at_every_crash_phase() {
    const E: u64 = 10; // SimConfig's election timeout, in ticks
    for n in [3, 5] {
        let mut worst = (0, 0);
        let mut all = Vec::new();
        for phase in 0..E {
            let mut s = sim(n);
            let l = elect(&mut s, 50);
            append_decided(&mut s, l, 1..2, 10);
            let other = s.pids().find(|p| *p != l).unwrap();
            let ticks = crash_and_time_next_decide(&mut s, l, other, phase);
            all.push(ticks);
            worst = worst.max((ticks, phase));
        }
        all.sort_unstable();
        println!("{n} nodes: failover ticks at phases 0..{E}: {all:?}");
        // One tick of message latency each way for the heartbeats, the takeover and the decide.
        assert!(
            worst.0 <= 2 * E + 4,
            "{n} nodes: failover took {} ticks (> 2 election timeouts) when the leader crashed {} ticks into a round",
            worst.0,
            worst.1
        );
    }
}

/// The same when the servers' heartbeat rounds are out of phase (as on real machines, which
/// start at different times): a follower restarted `shift` ticks late keeps that offset.
#[test]
fn failover_within_two_election_timeouts_with_rounds_out_of_phase() {
    const E: u64 = 10;
    for n in [3, 5] {
        for shift in 1..E {
            let mut all = Vec::new();
            for phase in 0..E {
                let mut s = sim(n);
                let l = elect(&mut s, 50);
                // Shift the rounds of every follower but one by a different amount.
                let followers: Vec<u64> = s.pids().filter(|p| *p != l).collect();
                for (i, f) in followers.iter().enumerate().skip(1) {
                    s.crash(*f);
                    for _ in 0..(shift * i as u64) % E {
                        s.step();
                    }
                    s.restart(*f);
                }
                // Let the restarted followers hear the leader for a few rounds.
                for _ in 0..3 * E {
                    s.step();
                }
                elect(&mut s, 50);
                assert_eq!(s.leader(), Some(l));
                append_decided(&mut s, l, 1..2, 20);
                all.push(crash_and_time_next_decide(&mut s, l, followers[0], phase));
            }
            all.sort_unstable();
            println!("{n} nodes, followers shifted by multiples of {shift} ticks: {all:?}");
            let worst = *all.last().unwrap();
            assert!(
                worst <= 2 * E + 4,
                "{n} nodes, shift {shift}: failover took {worst} ticks (> 2 election timeouts)"
            );
        }
    }
}

#[test]
fn priorities_choose_the_leader() {
    let mut cfg = SimConfig::new(3, 1);
    cfg.priorities = vec![0, 5, 1];
    let mut s: MemSim = Sim::new(cfg);
    assert_eq!(elect(&mut s, 50), 2);
    s.crash(2);
    // Node 3 (priority 1) beats node 1 (priority 0).
    assert_eq!(elect(&mut s, 80), 3);
}

#[test]
fn set_priority_applies_to_the_next_election() {
    let mut s = sim(3);
    assert_eq!(elect(&mut s, 50), 3);
    s.node_mut(1).unwrap().set_priority(10);
    s.run(30);
    assert_eq!(
        s.leader(),
        Some(3),
        "a happy leader is not replaced for priority"
    );
    s.crash(3);
    assert_eq!(elect(&mut s, 80), 1);
}

#[test]
fn try_become_leader_takes_over_at_once() {
    let mut s = sim(3);
    assert_eq!(elect(&mut s, 50), 3);
    append_decided(&mut s, 3, 1..6, 20);
    s.node_mut(1).unwrap().try_become_leader();
    s.run(5);
    assert_eq!(s.leader(), Some(1));
    let b = s.node(1).unwrap().get_promise();
    assert_eq!(b.pid, 1);
    append_decided(&mut s, 2, 6..9, 20);
    assert_eq!(decided_tags(&s), (1..9).collect::<Vec<_>>());
    // The takeover is stable: the old leader follows.
    s.run(100);
    assert_eq!(s.leader(), Some(1));
    assert_eq!(s.node(3).unwrap().get_current_leader(), Some((1, false)));
}

#[test]
fn single_node_cluster_decides_on_its_own() {
    let mut s = sim(1);
    assert_eq!(elect(&mut s, 20), 1);
    append_decided(&mut s, 1, 1..4, 5);
    let node = s.node(1).unwrap();
    assert_eq!(node.get_decided_idx(), 3);
    assert!(matches!(
        node.read(2),
        Some(LogEntry::Decided(SimEntry { id: 3 }))
    ));
}

/// Trap: with an election timeout of one tick, the first leader was replaced right after
/// start-up and entries given to it were lost.
#[test]
fn one_tick_election_timeout_keeps_its_first_leader_and_entries() {
    let mut cfg = SimConfig::new(3, 1);
    cfg.server.election_tick_timeout = 1;
    let mut s: MemSim = Sim::new(cfg);
    // Entries given to every node from the first tick on, before any leader exists.
    for (i, p) in [1u64, 2, 3].iter().enumerate() {
        s.append(*p, SimEntry { id: i as u64 + 1 }).unwrap();
    }
    let l = elect(&mut s, 20);
    s.append(l, SimEntry { id: 4 }).unwrap();
    s.run_until(30, |s| s.pids().all(|p| s.decided(p) == 4))
        .expect("all four entries decided everywhere");
    let mut tags = decided_tags(&s);
    tags.sort();
    assert_eq!(tags, vec![1, 2, 3, 4]);
    let changes = s.stats().leader_changes;
    s.run(200);
    assert_eq!(s.leader(), Some(l));
    assert_eq!(s.stats().leader_changes, changes, "the leader was replaced");
    assert_eq!(changes, 0);
}
