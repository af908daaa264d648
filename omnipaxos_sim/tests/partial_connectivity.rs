//! The partial-connectivity scenarios of the Omni-Paxos paper (EuroSys 2023, Section 2), with
//! its bound: after the cut, a new append is decided within 4 election timeouts (plus 2 message
//! delays, 0 here), with at most one leader change over a partition of 50 election timeouts.

mod common;
use common::*;
use omnipaxos_sim::SimEntry;

const E: u64 = 10; // election timeout in ticks (SimConfig::new)

/// Appends one entry per tick at the serving leader (or at `fallback` while none serves).
struct Client {
    next_tag: u64,
    /// (tick appended, tag)
    log: Vec<(u64, u64)>,
}

impl Client {
    fn new() -> Self {
        Client {
            next_tag: 1_000,
            log: Vec::new(),
        }
    }

    fn tick(&mut self, s: &mut MemSim, fallback: u64) {
        let at = s.leader().unwrap_or(fallback);
        let tag = self.next_tag;
        self.next_tag += 1;
        if s.append(at, SimEntry { id: tag }).is_ok() {
            self.log.push((s.now(), tag));
        }
        s.step();
    }

    /// Runs until an entry appended at or after tick `since` is decided; returns the ticks taken.
    fn until_new_decided(
        &mut self,
        s: &mut MemSim,
        fallback: u64,
        since: u64,
        max: u64,
    ) -> Option<u64> {
        for i in 0..max {
            let decided_new = self
                .log
                .iter()
                .any(|&(t, tag)| t >= since && s.checker().is_decided(tag));
            if decided_new {
                return Some(i);
            }
            self.tick(s, fallback);
        }
        None
    }
}

fn stable_cluster(n: usize) -> (MemSim, Client, u64) {
    let mut s = sim(n);
    let l = elect(&mut s, 50);
    let mut c = Client::new();
    for _ in 0..20 {
        c.tick(&mut s, l);
    }
    s.run(5);
    assert!(s.checker().decided_log().len() >= 10);
    (s, c, l)
}

fn cut_all_among(s: &mut MemSim, nodes: &[u64]) {
    for &a in nodes {
        for &b in nodes {
            if a != b {
                s.net().set_both(a, b, false);
            }
        }
    }
}

/// Runs 50 election timeouts of the partition with the client going, and returns how many new
/// leader ballots served in that time.
fn leader_changes_over_50_timeouts(s: &mut MemSim, c: &mut Client, fallback: u64) -> u64 {
    let before = s.stats().leader_changes;
    for _ in 0..50 * E {
        c.tick(s, fallback);
    }
    s.stats().leader_changes - before
}

#[test]
fn quorum_loss_a_quorum_connected_follower_takes_over() {
    let (mut s, mut c, l) = stable_cluster(5);
    let q = if l == 1 { 2 } else { 1 };
    let others: Vec<u64> = s.pids().filter(|p| *p != q).collect();
    // The leader reaches only Q; Q reaches everyone.
    cut_all_among(&mut s, &others);
    let cut_at = s.now();
    let took = c
        .until_new_decided(&mut s, q, cut_at, 4 * E)
        .expect("a new append is decided within 4 election timeouts of the cut");
    println!(
        "quorum-loss: decided again {took} ticks after the cut ({:.1} election timeouts)",
        took as f64 / E as f64
    );
    assert_eq!(
        s.leader(),
        Some(q),
        "Q, the only quorum-connected node, leads"
    );
    let changes = leader_changes_over_50_timeouts(&mut s, &mut c, q);
    assert_eq!(changes, 0, "no further leader change after Q took over");
    s.net().heal();
    let target = s.checker().decided_log().len();
    s.run_until(5 * E, |s| s.pids().all(|p| s.decided(p) >= target))
        .expect("all catch up");
}

#[test]
fn constrained_election_a_stale_quorum_connected_node_is_elected() {
    let (mut s, mut c, l) = stable_cluster(5);
    let q = if l == 1 { 2 } else { 1 };
    // Phase 1: Q cannot reach the leader; entries are decided without Q, so Q's log is behind.
    s.net().set_both(l, q, false);
    let decided_before = s.checker().decided_log().len();
    for _ in 0..3 * E {
        c.tick(&mut s, l);
    }
    assert!(s.checker().decided_log().len() > decided_before);
    assert!(
        s.decided(q) < s.checker().decided_log().len(),
        "Q is behind"
    );
    assert_eq!(
        s.leader(),
        Some(l),
        "Q did not disrupt the leader it cannot reach"
    );
    // Phase 2: the leader is cut from everyone, and the other followers from each other.
    for p in s.pids().collect::<Vec<_>>() {
        s.net().set_both(l, p, false);
    }
    let followers: Vec<u64> = s.pids().filter(|p| *p != l && *p != q).collect();
    cut_all_among(&mut s, &followers);
    let cut_at = s.now();
    let log_before = decided_tags(&s);
    let took = c
        .until_new_decided(&mut s, q, cut_at, 4 * E)
        .expect("a new append is decided within 4 election timeouts of the cut");
    println!(
        "constrained election: decided again {took} ticks after the cut ({:.1} election timeouts)",
        took as f64 / E as f64
    );
    assert_eq!(s.leader(), Some(q));
    // No decided entry moved (the checker also verifies this after every step).
    assert_eq!(&decided_tags(&s)[..log_before.len()], &log_before[..]);
    let changes = leader_changes_over_50_timeouts(&mut s, &mut c, q);
    assert_eq!(changes, 0);
}

#[test]
fn chained_no_livelock_and_the_cut_follower_catches_up() {
    let (mut s, mut c, b) = stable_cluster(3);
    let (a, cc) = match b {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    // Only the leader B and follower C cannot talk.
    s.net().set_both(b, cc, false);
    let cut_at = s.now();
    let took = c
        .until_new_decided(&mut s, a, cut_at, 4 * E)
        .expect("progress continues after the cut");
    println!("chained: decided again {took} ticks after the cut");
    let changes = leader_changes_over_50_timeouts(&mut s, &mut c, a);
    assert!(
        changes <= 1,
        "{changes} leader changes over 50 election timeouts"
    );
    let decided = s.checker().decided_log().len();
    assert!(
        decided > 50 * E as usize / 2,
        "progress continued: {decided} decided"
    );
    s.net().heal();
    let target = s.checker().decided_log().len();
    s.run_until(5 * E, |s| s.decided(cc) >= target)
        .expect("C catches up after healing");
}

#[test]
fn one_way_link_does_not_stop_progress() {
    let (mut s, mut c, l) = stable_cluster(3);
    let f = if l == 1 { 2 } else { 1 };
    // The leader's messages no longer reach F; F's still reach the leader.
    s.net().set_link(l, f, false);
    let cut_at = s.now();
    c.until_new_decided(&mut s, l, cut_at, 4 * E)
        .expect("progress continues");
    let changes = leader_changes_over_50_timeouts(&mut s, &mut c, l);
    assert!(changes <= 1, "{changes} leader changes");
    s.net().heal();
    let target = s.checker().decided_log().len();
    s.run_until(5 * E, |s| s.pids().all(|p| s.decided(p) >= target))
        .expect("all catch up");
}

#[test]
fn link_flapping_every_election_timeout_does_not_stop_progress() {
    let (mut s, mut c, l) = stable_cluster(5);
    let f = if l == 1 { 2 } else { 1 };
    let start = s.checker().decided_log().len();
    let before = s.stats().leader_changes;
    for round in 0..50 {
        s.net().set_both(l, f, round % 2 == 1);
        for _ in 0..E {
            c.tick(&mut s, l);
        }
    }
    let decided = s.checker().decided_log().len() - start;
    assert!(
        decided as u64 > 40 * E,
        "only {decided} decided while the link flapped"
    );
    assert!(s.stats().leader_changes - before <= 1);
}
