//! The randomized tier: many seeds of faults, then heal, with safety checked after every step.
//!
//! * `cargo test -p omnipaxos_sim --test randomized` runs the per-PR tier: 1,000 seeds x 2,000
//!   ticks on 3 nodes and as many on 5 nodes.
//! * `OMNIPAXOS_SIM_SEEDS=100000 cargo test -p omnipaxos_sim --test randomized -- --ignored`
//!   runs the long tier (100x more seeds by default).
//! * `OMNIPAXOS_SIM_SEED=<seed> OMNIPAXOS_SIM_NODES=<n> cargo test -p omnipaxos_sim --test
//!   randomized replay -- --nocapture` replays one seed (the command a failure prints).

use omnipaxos_sim::{randomized::run_seed, SimStats};
use std::sync::Mutex;

const TICKS: u64 = 2_000;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[derive(Default, Debug)]
struct Totals {
    seeds: u64,
    compacting_seeds: u64,
    reconfiguring_seeds: u64,
    stats: SimStats,
    max_heal_ticks_in_timeouts: f64,
    max_fresh_ticks_in_timeouts: f64,
}

fn add(t: &mut Totals, s: &SimStats) {
    t.stats.ticks += s.ticks;
    t.stats.appends += s.appends;
    t.stats.decided += s.decided;
    t.stats.leader_changes += s.leader_changes;
    t.stats.crashes += s.crashes;
    t.stats.leader_crashes_in_accept += s.leader_crashes_in_accept;
    t.stats.snapshot_installs += s.snapshot_installs;
    t.stats.reconfigurations += s.reconfigurations;
    t.stats.decided_after_reconfiguration += s.decided_after_reconfiguration;
    t.stats.migrations += s.migrations;
    t.stats.returned_appends += s.returned_appends;
    t.stats.net.sent += s.net.sent;
    t.stats.net.dropped += s.net.dropped;
    t.stats.net.duplicated += s.net.duplicated;
}

/// Runs `seeds` seeds on `nodes` nodes on all cores; returns the totals.
fn run_tier(nodes: usize, first_seed: u64, seeds: u64) -> Totals {
    let totals = Mutex::new(Totals::default());
    let next = Mutex::new(first_seed);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let seed = {
                    let mut n = next.lock().unwrap();
                    if *n >= first_seed + seeds {
                        return;
                    }
                    *n += 1;
                    *n - 1
                };
                // A panic inside a node (not a failed check, which names its seed) still says
                // which seed to replay.
                let r = std::panic::catch_unwind(|| run_seed(seed, nodes, TICKS)).unwrap_or_else(
                    |_| {
                        panic!(
                            "seed {seed} panicked; replay: OMNIPAXOS_SIM_SEED={seed} \
                             OMNIPAXOS_SIM_NODES={nodes} cargo test -p omnipaxos_sim --test \
                             randomized replay -- --nocapture"
                        )
                    },
                );
                let mut t = totals.lock().unwrap();
                t.seeds += 1;
                if r.compaction != omnipaxos_sim::randomized::Compaction::None {
                    t.compacting_seeds += 1;
                }
                if r.reconfigured {
                    t.reconfiguring_seeds += 1;
                }
                add(&mut t, &r.stats);
                let e = r.election_timeout as f64;
                t.max_heal_ticks_in_timeouts =
                    t.max_heal_ticks_in_timeouts.max(r.heal_ticks as f64 / e);
                t.max_fresh_ticks_in_timeouts = t
                    .max_fresh_ticks_in_timeouts
                    .max(r.fresh_decide_ticks as f64 / e);
            });
        }
    });
    totals.into_inner().unwrap()
}

fn check_non_vacuous(t: &Totals) {
    println!("{t:#?}");
    assert!(
        t.stats.decided > t.seeds * 10,
        "too few decided entries: {t:?}"
    );
    assert!(
        t.stats.leader_changes > 0,
        "no leader change happened: {t:?}"
    );
    assert!(
        t.stats.leader_crashes_in_accept > 0,
        "no leader crashed in its accept phase: {t:?}"
    );
    assert!(
        t.stats.net.dropped > 0 && t.stats.net.duplicated > 0,
        "the network did no harm: {t:?}"
    );
    assert!(
        t.compacting_seeds * 5 >= t.seeds,
        "fewer than a fifth of the seeds compact: {t:?}"
    );
    assert!(
        t.stats.snapshot_installs > 0,
        "no node was ever synced from a snapshot: {t:?}"
    );
    assert!(
        t.reconfiguring_seeds * 10 >= t.seeds,
        "fewer than a tenth of the seeds reconfigure: {t:?}"
    );
    assert!(
        t.stats.returned_appends > 0,
        "no append was ever handed back as uncertain: {t:?}"
    );
    assert!(
        t.stats.decided_after_reconfiguration > 0 && t.stats.migrations > 0,
        "nothing was decided after a reconfiguration, or no log migrated: {t:?}"
    );
}

#[test]
fn tier_3_nodes() {
    let seeds = env_u64("OMNIPAXOS_SIM_PR_SEEDS").unwrap_or(1_000);
    let first = env_u64("OMNIPAXOS_SIM_FIRST_SEED").unwrap_or(0);
    let t = run_tier(3, first, seeds);
    check_non_vacuous(&t);
}

#[test]
fn tier_5_nodes() {
    let seeds = env_u64("OMNIPAXOS_SIM_PR_SEEDS").unwrap_or(1_000);
    let first = env_u64("OMNIPAXOS_SIM_FIRST_SEED").unwrap_or(0);
    let t = run_tier(5, 1_000_000 + first, seeds);
    check_non_vacuous(&t);
}

#[test]
#[ignore = "long tier: 100x the per-PR seeds; run with --ignored"]
fn long_tier() {
    let seeds = env_u64("OMNIPAXOS_SIM_SEEDS").unwrap_or(100_000);
    for nodes in [3, 5] {
        let t = run_tier(nodes, 10_000_000 * nodes as u64, seeds);
        check_non_vacuous(&t);
    }
}

/// Seeds that once failed (found by sweeps beyond the per-PR range), run with every test. A
/// change to the protocol changes what they do, so they guard less over time than the
/// scenario tests written for each bug, but they cost little.
#[test]
fn seeds_that_once_failed() {
    for (seed, nodes) in [
        // A restarted follower's old forwards displaced its new ones (fixed by the fence).
        (3833, 3),
        (1_002_886, 5),
        // A leader evicted the forwarding session a follower still used.
        (447, 3),
        (1596, 3),
        (5483, 3),
        (6503, 3),
        // A leader that adopted a log synced above a compacted prefix set its decided index
        // below that prefix.
        (1_001_838, 5),
        // A straggler that did not know where the old log ended promised a leader (erasing
        // its wait marker) and led the next configuration from the wrong index.
        (65_151, 3),
        // A follower restarted by the heal needed a new ballot to forward (bound widened).
        (1_088_493, 5),
    ] {
        run_seed(seed, nodes, TICKS);
    }
}

#[test]
fn same_seed_same_trace() {
    for (seed, nodes) in [(17, 3), (4242, 5)] {
        let a = run_seed(seed, nodes, TICKS);
        let b = run_seed(seed, nodes, TICKS);
        assert_eq!(a, b, "seed {seed} did not replay identically");
    }
    assert_ne!(run_seed(1, 3, TICKS).trace, run_seed(2, 3, TICKS).trace);
}

#[test]
fn replay() {
    let Some(seed) = env_u64("OMNIPAXOS_SIM_SEED") else {
        return;
    };
    let nodes = env_u64("OMNIPAXOS_SIM_NODES").unwrap_or(3) as usize;
    let ticks = env_u64("OMNIPAXOS_SIM_TICKS").unwrap_or(TICKS);
    let r = run_seed(seed, nodes, ticks);
    println!("{r:#?}");
}
