//! Reconfiguration scenarios: replace a follower, the leader, a majority; grow and shrink; a
//! reconfiguration while the previous one still migrates; a source lost in the middle of a
//! transfer; removed servers that stay quiet. Each runs on a lossy network, with the safety
//! checks after every step, and checks that the new configuration decides, that the log goes on
//! at the old indices, and that joiners end up holding the old log (as a snapshot of it).

mod common;
use common::*;
use omnipaxos::{messages::Message, util::LogEntry, ClusterConfig};
use omnipaxos_sim::{Faults, Sim, SimConfig, SimEntry, SimSnapshot, Verdict};
use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

/// Seeds each scenario runs with (`OMNIPAXOS_RECONFIG_SEEDS` for more; `OMNIPAXOS_RECONFIG_SEED`
/// runs one, e.g. with `OMNIPAXOS_SIM_VERBOSE=1`).
fn for_seeds(f: impl Fn(u64)) {
    let seeds: u64 = std::env::var("OMNIPAXOS_RECONFIG_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let only: Option<u64> = std::env::var("OMNIPAXOS_RECONFIG_SEED")
        .ok()
        .and_then(|v| v.parse().ok());
    for seed in 0..seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(seed)));
        if let Err(e) = r {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("seed {seed} failed: {msg}");
        }
    }
}

const E: u64 = 10;

const LOSSY: Faults = Faults {
    drop: 0.05,
    duplicate: 0.02,
    max_delay: 2,
};

fn lossy_sim(nodes: usize, seed: u64) -> MemSim {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = LOSSY;
    cfg.capacity = 12;
    Sim::new(cfg)
}

fn config(id: u32, nodes: &[u64]) -> ClusterConfig {
    ClusterConfig {
        configuration_id: id,
        nodes: nodes.to_vec(),
        flexible_quorum: None,
    }
}

/// Like a client: appends tags from `tags` at whichever node leads, and after a leader change
/// (which may lose entries no majority accepted) goes on with fresh tags, until as many tags of
/// the range as it holds are decided.
fn decide_tags(s: &mut MemSim, tags: std::ops::Range<u64>, max_ticks: u64) {
    let want = (tags.end - tags.start) as usize;
    let pool = tags.start..tags.start + 100 * want as u64;
    let mut next = tags.start;
    let mut leader = None;
    let deadline = s.now() + max_ticks;
    let decided = |s: &MemSim| pool.clone().filter(|t| s.checker().is_decided(*t)).count();
    while decided(s) < want {
        assert!(
            s.now() < deadline,
            "{want} tags from {} not decided within {max_ticks} ticks ({} were)",
            tags.start,
            decided(s)
        );
        let now_leader = s.leader();
        if let Some(l) = now_leader.filter(|_| now_leader != leader) {
            // A new leader: append what is missing again (as new tags).
            leader = now_leader;
            let missing = want - decided(s);
            for _ in 0..missing {
                if s.append(l, SimEntry { id: next }).is_ok() {
                    next += 1;
                }
            }
            assert!(next < pool.end, "too many retries");
        }
        s.advance_configurations();
        s.step();
    }
}

/// Steps (moving servers on to new configurations like an application would) until `cond`.
fn run_advancing(s: &mut MemSim, max_ticks: u64, cond: impl FnMut(&MemSim) -> bool) -> Option<u64> {
    s.run_until_with(max_ticks, |s| s.advance_configurations(), cond)
}

/// Runs until every member of `next` runs it, is done migrating, and follows one leader.
fn settle_in(s: &mut MemSim, next: &ClusterConfig, max_ticks: u64) -> u64 {
    let want = next.clone();
    run_advancing(s, max_ticks, |s| {
        let leader = s.leader();
        let decided = s.checker().decided_log().len();
        want.nodes.iter().all(|p| {
            s.node(*p).is_some_and(|o| {
                o.get_configuration_id() == want.configuration_id
                    && o.get_migration_status().is_none()
                    && leader.is_some()
                    && o.get_current_leader().map(|x| x.0) == leader
                    && o.get_decided_idx() >= decided
                    // It holds the old log (not only where it ends).
                    && !matches!(o.read(0), Some(LogEntry::Trimmed(_)))
            })
        })
    })
    .unwrap_or_else(|| {
        let state: Vec<_> = want
            .nodes
            .iter()
            .map(|p| {
                s.node(*p).map(|o| {
                    (
                        *p,
                        o.get_configuration_id(),
                        o.get_migration_status(),
                        o.get_current_leader(),
                    )
                })
            })
            .collect();
        panic!("configuration {want:?} did not settle within {max_ticks} ticks: {state:?}")
    })
}

/// The tags of the decided log below `end` (from the first configuration's log, and later
/// ones for what follows it).
fn tags_below(s: &MemSim, end: usize) -> Vec<u64> {
    let mut tags: Vec<u64> = Vec::new();
    for c in 1..=8 {
        let log = s.checker().decided_log_of(c);
        for (i, slot) in log.iter().enumerate().take(end) {
            if let omnipaxos_sim::checker::Slot::Entry(e) = slot {
                if i == tags.len() {
                    tags.push(e.id);
                }
            }
        }
    }
    tags
}

/// Checks that `pid` holds the old log `0..end`: as entries, or as a snapshot equal to the one
/// of the decided entries.
fn holds_old_log(s: &MemSim, pid: u64, end: usize) {
    let node = s.node(pid).unwrap();
    let old = tags_below(s, end);
    assert_eq!(old.len(), end, "the old log is all entries");
    match node.read(0) {
        Some(LogEntry::Decided(e)) => {
            for (i, tag) in old.iter().enumerate() {
                assert_eq!(node.read(i), Some(LogEntry::Decided(SimEntry { id: *tag })));
            }
            assert_eq!(e.id, old[0]);
        }
        Some(LogEntry::Snapshotted(snap)) => {
            assert!(
                snap.trimmed_idx >= end,
                "node {pid}: snapshot ends before the old log"
            );
            let expected = SimSnapshot::of(tags_below(s, snap.trimmed_idx));
            assert_eq!(
                snap.snapshot, expected,
                "node {pid}: the snapshot is of the decided log"
            );
        }
        other => panic!("node {pid} does not hold the old log: read(0) = {other:?}"),
    }
}

/// Checks that `pid`'s log continues at `end` with the new configuration's first entry (or holds
/// it folded into a snapshot that goes beyond `end`).
fn continues_at(s: &MemSim, pid: u64, end: usize) {
    match s.node(pid).unwrap().read(end) {
        Some(LogEntry::Decided(e)) => {
            assert!(
                e.id > 1_000,
                "node {pid}: the log continues at {end} ({e:?})"
            )
        }
        Some(LogEntry::Snapshotted(snap)) => assert!(snap.trimmed_idx > end),
        other => panic!("node {pid}: read({end}) = {other:?}"),
    }
}

/// The index the next configuration's log starts at (the stop sign's index), seen from `pid`
/// while it is still in the old configuration.
fn stop_index(s: &MemSim, config_id: u32) -> usize {
    s.checker()
        .decided_log_of(config_id)
        .iter()
        .position(|slot| matches!(slot, omnipaxos_sim::checker::Slot::StopSign(..)))
        .expect("the stop sign is in the decided log")
}

/// Runs the old configuration until the stop sign is decided at `pid`; returns its index.
fn wait_stopped(s: &mut MemSim, pid: u64, max_ticks: u64) -> usize {
    s.run_until(max_ticks, |s| {
        s.node(pid).is_some_and(|o| o.is_reconfigured().is_some())
    })
    .expect("the stop sign is decided");
    let config_id = s.node(pid).unwrap().get_configuration_id();
    stop_index(s, config_id)
}

/// The common scenario: a 3- or 5-node cluster on a lossy network decides `0..100`, then
/// reconfigures to `next`; the new configuration decides new entries while joiners migrate,
/// and every member ends up with the old log.
fn scenario(nodes: usize, seed: u64, next: ClusterConfig, before: impl FnOnce(&mut MemSim)) {
    let mut s = lossy_sim(nodes, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..101, 2_000);
    before(&mut s);
    let proposer = s.leader().expect("a leader");
    let old_members: Vec<u64> = (1..=nodes as u64).collect();
    while s
        .reconfigure(s.leader().unwrap_or(proposer), next.clone())
        .is_err()
    {
        s.step();
    }
    let witness = *old_members
        .iter()
        .find(|p| s.is_up(**p))
        .expect("an old member is up");
    let end = wait_stopped(&mut s, witness, 2_000);
    assert!(end >= 100, "the old log holds the 100 entries");
    // New entries while the joiners migrate, at the old indices' continuation.
    decide_tags(&mut s, 1_001..1_051, 3_000);
    settle_in(&mut s, &next, 3_000);
    let reconfigured = s.stats().decided_after_reconfiguration;
    assert!(
        reconfigured >= 50,
        "the new configuration decided ({reconfigured})"
    );
    for &p in &next.nodes {
        let node = s.node(p).unwrap();
        assert!(
            node.get_decided_idx() >= end + 50,
            "node {p} decided the new entries"
        );
        continues_at(&s, p, end);
        holds_old_log(&s, p, end);
    }
    // Removed servers learned it.
    for p in old_members.iter().filter(|p| !next.nodes.contains(p)) {
        if let Some(node) = s.node(*p) {
            let ss = node
                .is_reconfigured()
                .expect("a removed server learns the stop");
            assert_eq!(ss.next_config, next);
        }
    }
}

#[test]
fn replace_one_follower() {
    for_seeds(|seed| {
        let mut leader = 0;
        scenario(3, seed, config(2, &[1, 2, 4]), |s| {
            leader = s.leader().unwrap();
        });
        assert!(leader > 0);
    });
}

#[test]
fn replace_the_leader() {
    for_seeds(replace_the_leader_with);
}

fn replace_the_leader_with(seed: u64) {
    let mut s = lossy_sim(3, seed);
    let l = elect(&mut s, 200);
    decide_tags(&mut s, 1..101, 2_000);
    let mut nodes: Vec<u64> = (1..=3).filter(|p| *p != l).collect();
    nodes.push(4);
    let next = config(2, &nodes);
    s.reconfigure(l, next.clone()).unwrap();
    let end = wait_stopped(&mut s, l, 2_000);
    decide_tags(&mut s, 1_001..1_051, 3_000);
    settle_in(&mut s, &next, 3_000);
    let new_leader = s.leader().unwrap();
    assert_ne!(
        new_leader, l,
        "the removed leader does not lead the new configuration"
    );
    for &p in &nodes {
        holds_old_log(&s, p, end);
        continues_at(&s, p, end);
    }
    assert!(s.node(l).unwrap().is_reconfigured().is_some());
}

#[test]
fn replace_a_majority() {
    for_seeds(|seed| scenario(3, seed, config(2, &[1, 5, 6]), |_| {}));
}

#[test]
fn replace_every_server() {
    for_seeds(|seed| scenario(3, seed, config(2, &[7, 8, 9]), |_| {}));
}

#[test]
fn grow_three_to_five() {
    for_seeds(|seed| scenario(3, seed, config(2, &[1, 2, 3, 4, 5]), |_| {}));
}

#[test]
fn shrink_five_to_three() {
    for_seeds(|seed| scenario(5, seed, config(2, &[1, 2, 3]), |_| {}));
}

#[test]
fn a_source_crashes_in_the_middle_of_the_transfer() {
    for_seeds(a_source_crashes_in_the_middle_of_the_transfer_with);
}

fn a_source_crashes_in_the_middle_of_the_transfer_with(seed: u64) {
    let mut s = lossy_sim(3, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..301, 3_000);
    let next = config(2, &[1, 2, 3, 4]);
    let l = s.leader().unwrap();
    s.reconfigure(l, next.clone()).unwrap();
    let end = wait_stopped(&mut s, l, 2_000);
    // Wait until the joiner pulls, then crash one of its sources for good.
    run_advancing(&mut s, 2_000, |s| {
        s.node(4)
            .and_then(|o| o.get_migration_status())
            .is_some_and(|m| m.received > 0)
    })
    .expect("the joiner starts pulling");
    let victim = (1..=3).find(|p| *p != s.leader().unwrap_or(0)).unwrap();
    s.crash(victim);
    decide_tags(&mut s, 1_001..1_021, 3_000);
    run_advancing(&mut s, 3_000, |s| {
        s.node(4)
            .is_some_and(|o| o.get_migration_status().is_none())
    })
    .expect("the joiner finishes from the other sources");
    holds_old_log(&s, 4, end);
    let stats = s.node(4).unwrap().get_stats();
    assert_eq!(stats.migrations_completed, 1);
    assert!(stats.migrated_entries > 0);
}

#[test]
fn pulls_from_several_sources_in_parallel() {
    for_seeds(pulls_from_several_sources_in_parallel_with);
}

fn pulls_from_several_sources_in_parallel_with(seed: u64) {
    let mut s = lossy_sim(5, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..401, 4_000);
    let next = config(2, &[1, 2, 3, 4, 5, 6]);
    let l = s.leader().unwrap();
    // Count who serves the joiner's pulls.
    let servers: Rc<RefCell<BTreeMap<u64, usize>>> = Rc::default();
    let seen = servers.clone();
    s.set_filter(Some(Box::new(move |m: &Message<SimEntry>| {
        if kind(m) == "MigrationEntries" && m.get_receiver() == 6 {
            *seen.borrow_mut().entry(m.get_sender()).or_default() += 1;
        }
        Verdict::Pass
    })));
    s.reconfigure(l, next.clone()).unwrap();
    let end = wait_stopped(&mut s, l, 2_000);
    settle_in(&mut s, &next, 4_000);
    holds_old_log(&s, 6, end);
    let servers = servers.borrow();
    assert!(
        servers.len() >= 2,
        "the old log came from several servers at once: {servers:?}"
    );
}

#[test]
#[ignore = "bug 2 of issue 16: fails on the current core (a joiner's application reads the old log as Trimmed, no migration)"]
fn reconfigure_again_while_the_previous_one_still_migrates() {
    for_seeds(reconfigure_again_while_the_previous_one_still_migrates_with);
}

fn reconfigure_again_while_the_previous_one_still_migrates_with(seed: u64) {
    let mut s = lossy_sim(3, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..201, 3_000);
    // Hold back what node 4 pulls, so that its migration is still running when configuration 2
    // is stopped in turn.
    let hold = Rc::new(std::cell::Cell::new(true));
    let h = hold.clone();
    s.set_filter(Some(Box::new(move |m: &Message<SimEntry>| {
        let k = kind(m);
        let pulled = k == "MigrationEntries" || k == "MigrationSnapshot";
        if h.get() && pulled && m.get_receiver() == 4 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })));
    let second = config(2, &[1, 2, 4]);
    let l = s.leader().unwrap();
    s.reconfigure(l, second.clone()).unwrap();
    let end2 = wait_stopped(&mut s, l, 2_000);
    let third = config(3, &[1, 4, 5]);
    // Like a client: propose it to configuration 2's leader, again after a leader change, until
    // it is decided.
    let mut proposed_to = None;
    let mut still_pulling = false;
    for _ in 0..3_000 {
        let stopped = [1, 2, 4].iter().any(|p| {
            s.node(*p)
                .is_some_and(|o| o.get_configuration_id() == 2 && o.is_reconfigured().is_some())
        });
        if stopped {
            break;
        }
        if let Some(l) = s.leader() {
            let in_second = s.node(l).unwrap().get_configuration_id() == 2;
            if in_second && proposed_to != Some(l) && s.reconfigure(l, third.clone()).is_ok() {
                proposed_to = Some(l);
                still_pulling |= s.node(4).unwrap().get_migration_status().is_some();
            }
        }
        s.advance_configurations();
        s.step();
    }
    assert!(
        proposed_to.is_some(),
        "configuration 2 takes the second reconfiguration"
    );
    assert!(
        still_pulling,
        "node 4 is still pulling configuration 1's log"
    );
    hold.set(false);
    decide_tags(&mut s, 1_001..1_031, 4_000);
    settle_in(&mut s, &third, 4_000);
    for p in [1, 4, 5] {
        holds_old_log(&s, p, end2);
        assert_eq!(s.node(p).unwrap().get_configuration_id(), 3);
    }
}

#[test]
fn removed_servers_stay_quiet_and_learn_it() {
    for_seeds(removed_servers_stay_quiet_and_learn_it_with);
}

fn removed_servers_stay_quiet_and_learn_it_with(seed: u64) {
    let mut s = lossy_sim(5, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..51, 2_000);
    let next = config(2, &[1, 2, 3]);
    let l = s.leader().unwrap();
    s.reconfigure(l, next.clone()).unwrap();
    wait_stopped(&mut s, l, 2_000);
    settle_in(&mut s, &next, 3_000);
    // From now on, 4 and 5 send nothing but offers of the old log (which 1, 2 and 3 already
    // answered), and nothing they send changes the new configuration's leader.
    let from_removed: Rc<RefCell<BTreeMap<&'static str, usize>>> = Rc::default();
    let seen = from_removed.clone();
    s.set_filter(Some(Box::new(move |m: &Message<SimEntry>| {
        if m.get_sender() >= 4 {
            *seen.borrow_mut().entry(kind(m)).or_default() += 1;
        }
        Verdict::Pass
    })));
    let ballots: Vec<_> = [4, 5]
        .iter()
        .map(|p| s.node(*p).unwrap().get_election_ballot())
        .collect();
    // Even a removed server trying to take over does not disturb anyone.
    s.node_mut(4).unwrap().try_become_leader();
    s.node_mut(5).unwrap().try_become_leader();
    decide_tags(&mut s, 1_001..1_031, 2_000);
    s.run(500);
    let after: Vec<_> = [4, 5]
        .iter()
        .map(|p| s.node(*p).unwrap().get_election_ballot())
        .collect();
    assert_eq!(ballots, after, "removed servers take no ballot");
    assert!(s.leader().is_some_and(|l| l <= 3));
    for (k, n) in from_removed.borrow().iter() {
        assert!(
            k.starts_with("Migration"),
            "a removed server sent {n} {k} messages"
        );
    }
    for p in [4, 5] {
        let ss = s
            .node(p)
            .unwrap()
            .is_reconfigured()
            .expect("it knows it was removed");
        assert!(!ss.next_config.nodes.contains(&p));
    }
}

#[test]
fn a_server_that_missed_the_stop_learns_it() {
    for_seeds(a_server_that_missed_the_stop_learns_it_with);
}

fn a_server_that_missed_the_stop_learns_it_with(seed: u64) {
    let mut s = lossy_sim(3, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..51, 2_000);
    let l = s.leader().unwrap();
    let f = (1..=3).find(|p| *p != l).unwrap();
    // `f` is down while the stop sign is decided; it stays in the next configuration.
    s.crash(f);
    let next = config(2, &[1, 2, 3, 4]);
    s.reconfigure(l, next.clone()).unwrap();
    wait_stopped(&mut s, l, 2_000);
    decide_tags(&mut s, 1_001..1_021, 3_000);
    s.restart(f);
    settle_in(&mut s, &next, 3_000);
    decide_tags(&mut s, 1_021..1_031, 2_000);
    let caught_up = run_advancing(&mut s, 1_000, |s| {
        s.node(f).unwrap().get_decided_idx() >= s.checker().decided_log().len()
    });
    assert!(caught_up.is_some(), "node {f} decides in configuration 2");
    assert_eq!(s.node(f).unwrap().get_configuration_id(), 2);
}

#[test]
fn the_new_configuration_decides_while_the_joiner_pulls() {
    for_seeds(the_new_configuration_decides_while_the_joiner_pulls_with);
}

fn the_new_configuration_decides_while_the_joiner_pulls_with(seed: u64) {
    let mut s = lossy_sim(3, seed);
    elect(&mut s, 200);
    decide_tags(&mut s, 1..201, 3_000);
    // Hold back everything node 4 pulls.
    let hold = Rc::new(std::cell::Cell::new(true));
    let h = hold.clone();
    s.set_filter(Some(Box::new(move |m: &Message<SimEntry>| {
        let k = kind(m);
        let pulled = k == "MigrationEntries" || k == "MigrationSnapshot";
        if h.get() && pulled && m.get_receiver() == 4 {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })));
    let next = config(2, &[1, 2, 4]);
    let l = s.leader().unwrap();
    s.reconfigure(l, next.clone()).unwrap();
    let end = wait_stopped(&mut s, l, 2_000);
    decide_tags(&mut s, 1_001..1_041, 4_000);
    let joiner = s.node(4).unwrap();
    assert!(
        joiner.get_migration_status().is_some(),
        "node 4 still pulls the old log"
    );
    assert_eq!(joiner.read(0), None, "the old log is not readable yet");
    // Node 4 takes part: it accepted the new entries (a majority of 2 of 3 may not need it, but
    // with links that work it is synced like any follower).
    run_advancing(&mut s, 2_000, |s| {
        s.node(4).unwrap().get_accepted_idx() >= end + 40
    })
    .expect("the joiner accepts new entries while it pulls");
    hold.set(false);
    settle_in(&mut s, &next, 4_000);
    holds_old_log(&s, 4, end);
}

/// Entry types without snapshots cannot migrate: joiners keep the old log as a compacted prefix
/// and the new configuration still works, also when it replaces a majority.
///
/// Ignored: with the application checks of issue 16, a joiner whose application reads the old
/// log as `Trimmed` fails (it can never rebuild its state). The lead decides whether such
/// joiners pull the entries one by one, or how else the application gets the old state.
#[test]
#[ignore = "issue 16: a joiner of an entry type without snapshots gets the old log only as Trimmed; fails the application check on the current core"]
fn entries_without_snapshots_reconfigure_too() {
    use omnipaxos_sim::PlainEntry;
    for seed in 0..10 {
        let mut cfg = SimConfig::new(3, seed);
        cfg.faults = LOSSY;
        cfg.capacity = 8;
        let mut s: Sim<PlainEntry, _> = Sim::new(cfg);
        s.run_until(500, |s| s.leader().is_some())
            .expect("a leader");
        let l = s.leader().unwrap();
        for id in 1..=50 {
            s.append(l, PlainEntry { id }).unwrap();
        }
        s.run_until(2_000, |s| s.checker().is_decided(50))
            .expect("decided");
        let next = config(2, &[1, 5, 6]);
        let mut proposed = false;
        let mut tag = 1_000;
        let done = s.run_until_with(
            6_000,
            |s| {
                s.advance_configurations();
                if let Some(l) = s.leader() {
                    let config_id = s.node(l).unwrap().get_configuration_id();
                    if !proposed && config_id == 1 {
                        proposed = s.reconfigure(l, next.clone()).is_ok();
                    } else if config_id == 2 && tag < 1_020 {
                        tag += 1;
                        let _ = s.append(l, PlainEntry { id: tag });
                    }
                }
            },
            |s| {
                (1_001..=1_020)
                    .filter(|t| s.checker().is_decided(*t))
                    .count()
                    >= 10
                    && [1, 5, 6]
                        .iter()
                        .all(|p| s.node(*p).is_some_and(|o| o.get_configuration_id() == 2))
            },
        );
        assert!(done.is_some(), "seed {seed}: configuration 2 decides");
        for p in [5, 6] {
            let node = s.node(p).unwrap();
            assert!(
                matches!(node.read(0), Some(LogEntry::Trimmed(_))),
                "seed {seed}"
            );
        }
        assert!(matches!(
            s.node(1).unwrap().read(0),
            Some(LogEntry::Decided(PlainEntry { id: 1 })) | Some(LogEntry::Trimmed(_))
        ));
    }
}

/// A server that missed the stop and was told it moved without being told where the old log
/// ended must not lead before a leader of the new configuration synced it: with a quorum of
/// servers that do not know that end either (joiners), it would decide a log that starts in the
/// wrong place. Promising that leader (before its sync arrives) must not lift the wait: the
/// randomized tier found a straggler leading configuration 3 from the wrong index after exactly
/// that (seed 65151, 3 nodes).
#[test]
fn a_straggler_does_not_lead_before_it_is_synced_even_after_promising() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..11, 60);
    let others: Vec<u64> = s.pids().filter(|p| *p != l).collect();
    let (f, g) = (others[0], others[1]);
    // `f` misses the stop; `l` and `g` move on, and `g` restarts, so it forgets where the old
    // log ended.
    s.crash(f);
    let next = config(2, &[1, 2, 3]);
    s.reconfigure(l, next).unwrap();
    wait_stopped(&mut s, l, 100);
    wait_stopped(&mut s, g, 100);
    s.start_next_config(l).unwrap();
    s.start_next_config(g).unwrap();
    s.crash(g);
    s.restart(g);
    // `f` hears only from `g`, which tells it that it moved but not where the old log ended
    // (no offers), and whose syncs never reach it.
    s.set_filter(Some(Box::new(move |m| {
        let to_f = m.get_receiver() == f;
        let hidden = ["AcceptSync", "AcceptDecide", "MigrationOffer"].contains(&kind(m));
        if to_f && (m.get_sender() == l || hidden) {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })));
    s.restart(f);
    s.node_mut(g).unwrap().try_become_leader();
    run_advancing(&mut s, 20 * E, |s| {
        let o = s.node(f).unwrap();
        o.get_configuration_id() == 2 && o.get_promise().pid == g
    })
    .expect("the straggler moves on and promises the new leader");
    s.node_mut(f).unwrap().try_become_leader();
    s.run(2 * E);
    let o = s.node(f).unwrap();
    assert_ne!(o.get_promise().pid, f, "the unsynced straggler took over");
    assert_ne!(o.get_current_leader().map(|x| x.0), Some(f));
    // Once synced, it follows as usual.
    s.set_filter(None);
    s.run_until(20 * E, |s| s.decided(f) == s.decided(g))
        .expect("the straggler is synced");
}
