//! Fast failover of the leader election (`OmniPaxos::set_fast_failover`): what it buys after a
//! leader crash, and what it costs on lossy networks without crashes.
//!
//! Run with `cargo bench -p omnipaxos_sim --bench failover` (`FAILOVER_SEEDS=20` for a quick
//! look). Every figure is in simulated ticks and deterministic: the same build prints the same
//! table. Election timeout 10 ticks, resend 20 (the simulator's defaults); a client appends one
//! entry every `CLIENT_EVERY` ticks to the serving leader (to the lowest running pid while there
//! is none; it forwards the entry), and appends handed back are dropped.
//!
//! * **Crash**: once a leader serves and all nodes follow it, `WARM_UP` ticks plus a random
//!   0..=`CRASH_SPREAD` more (any phase of the heartbeat rounds), the leader crashes. Measured:
//!   ticks until another node serves as leader, and ticks until the decided log grows past what
//!   was decided at the crash (the survivors decided a new entry). A run that gets neither
//!   within `GIVE_UP` ticks is counted apart.
//! * **No crash**: `LONG_RUN` ticks from the start, no crash: leader changes after the first
//!   election, entries decided, appends handed back to the client (what a leader change costs
//!   an application: an append in flight is returned, as not or maybe decided), and ticks in
//!   which no node served as leader after the first election.

use omnipaxos_sim::{Faults, MemoryBackend, Rng, Sim, SimConfig, SimEntry};

type S = Sim<SimEntry, MemoryBackend<SimEntry>>;

/// Ticks between two client appends.
const CLIENT_EVERY: u64 = 2;
/// Steady state before the crash, at least (ticks after every node follows the first leader).
const WARM_UP: u64 = 50;
/// The crash comes up to this many ticks after `WARM_UP` (uniformly).
const CRASH_SPREAD: u64 = 100;
/// A run that has not elected or decided within this many ticks after the crash gives up.
const GIVE_UP: u64 = 3_000;
/// Length of a run without crashes (ticks).
const LONG_RUN: u64 = 10_000;
/// Seeds per cell unless `FAILOVER_SEEDS` says otherwise.
const SEEDS: u64 = 200;

/// A network of the table.
struct Profile {
    name: &'static str,
    faults: Faults,
}

fn profiles() -> Vec<Profile> {
    let loss = |drop: f64| Faults {
        drop,
        ..Faults::NONE
    };
    vec![
        Profile {
            name: "perfect",
            faults: Faults::NONE,
        },
        Profile {
            name: "5% loss",
            faults: loss(0.05),
        },
        Profile {
            name: "10% loss",
            faults: loss(0.10),
        },
        Profile {
            name: "delay 0-3 (reorder)",
            faults: Faults {
                max_delay: 3,
                ..Faults::NONE
            },
        },
        Profile {
            name: "10% loss, 5% dup, delay 0-3",
            faults: Faults {
                drop: 0.10,
                duplicate: 0.05,
                max_delay: 3,
            },
        },
    ]
}

fn sim(nodes: usize, seed: u64, faults: Faults, fast_failover: bool) -> S {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = faults;
    cfg.fast_failover = fast_failover;
    let mut s = Sim::new(cfg);
    s.set_replay(format!(
        "cargo bench -p omnipaxos_sim --bench failover (nodes {nodes}, seed {seed}, \
         {faults:?}, fast_failover {fast_failover})"
    ));
    s
}

/// One tick of the client, then one step of the simulation.
fn step(s: &mut S, next_tag: &mut u64) {
    for p in s.pids().collect::<Vec<_>>() {
        if let Some(node) = s.node_mut(p) {
            // Dropped: the client keeps sending new entries.
            drop(node.take_returned_appends());
        }
    }
    if s.now() % CLIENT_EVERY == 0 {
        let at = s.leader().or_else(|| s.pids().find(|p| s.is_up(*p)));
        if let Some(at) = at {
            if s.append(at, SimEntry { id: *next_tag }).is_ok() {
                *next_tag += 1;
            }
        }
    }
    s.step();
}

/// Whether one leader serves and every running node follows it.
fn settled(s: &S) -> bool {
    s.leader().is_some_and(|l| {
        s.pids()
            .filter(|p| s.is_up(*p))
            .all(|p| s.node(p).and_then(|n| n.get_current_leader()).map(|x| x.0) == Some(l))
    })
}

/// The figures of one crash run: ticks from the crash until a new leader serves and until a
/// new entry is decided (`None`: not within `GIVE_UP`).
struct CrashRun {
    elected: Option<u64>,
    decided: Option<u64>,
}

fn crash_run(nodes: usize, seed: u64, faults: Faults, fast_failover: bool) -> CrashRun {
    let mut s = sim(nodes, seed, faults, fast_failover);
    let mut tag = 1;
    let mut waited = 0;
    while !settled(&s) {
        waited += 1;
        if waited > GIVE_UP {
            s.liveness_failure("no leader before the crash");
        }
        step(&mut s, &mut tag);
    }
    let extra = Rng::new(seed ^ 0xFA11_0FE5).range(0, CRASH_SPREAD);
    for _ in 0..WARM_UP + extra {
        step(&mut s, &mut tag);
    }
    // On a lossy network the leader may be between two ballots just now: crash the next one
    // that serves.
    let mut waited = 0;
    let old = loop {
        if let Some(l) = s.leader() {
            break l;
        }
        waited += 1;
        if waited > GIVE_UP {
            s.liveness_failure("no leader to crash");
        }
        step(&mut s, &mut tag);
    };
    s.crash(old);
    let at_crash = s.checker().decided_log().len();
    let start = s.now();
    let (mut elected, mut decided) = (None, None);
    while s.now() - start < GIVE_UP && (elected.is_none() || decided.is_none()) {
        step(&mut s, &mut tag);
        let t = s.now() - start;
        if elected.is_none() && s.leader().is_some_and(|l| l != old) {
            elected = Some(t);
        }
        if decided.is_none() && s.checker().decided_log().len() > at_crash {
            decided = Some(t);
        }
    }
    CrashRun { elected, decided }
}

/// The figures of one run without crashes.
struct CalmRun {
    leader_changes: u64,
    decided: u64,
    handed_back: u64,
    leaderless: u64,
}

fn calm_run(nodes: usize, seed: u64, faults: Faults, fast_failover: bool) -> CalmRun {
    let mut s = sim(nodes, seed, faults, fast_failover);
    let mut tag = 1;
    let mut leaderless = 0;
    let mut elected = false;
    while s.now() < LONG_RUN {
        step(&mut s, &mut tag);
        let serving = s.leader().is_some();
        elected |= serving;
        if elected && !serving {
            leaderless += 1;
        }
    }
    let stats = s.stats();
    CalmRun {
        leader_changes: stats.leader_changes,
        decided: stats.decided,
        handed_back: stats.returned_appends,
        leaderless,
    }
}

/// `p`-th percentile (nearest rank) of sorted `v`.
fn percentile(v: &[u64], p: u64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = (p * v.len() as u64).div_ceil(100).max(1);
    v[rank as usize - 1]
}

fn spread(mut v: Vec<u64>) -> String {
    v.sort_unstable();
    format!(
        "{} / {} / {}",
        percentile(&v, 50),
        percentile(&v, 90),
        v.last().copied().unwrap_or(0)
    )
}

fn mean(v: &[u64]) -> f64 {
    v.iter().sum::<u64>() as f64 / v.len().max(1) as f64
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported (the table is one).
    let seeds = std::env::var("FAILOVER_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEEDS);
    println!("## Leader crash ({seeds} seeds per row; ticks after the crash, p50 / p90 / max)\n");
    println!(
        "| nodes | network | fast failover | new leader serves | new entry decided | gave up |"
    );
    println!("|---|---|---|---|---|---|");
    for nodes in [3, 5] {
        for p in profiles() {
            for ff in [true, false] {
                let runs: Vec<CrashRun> = (0..seeds)
                    .map(|seed| crash_run(nodes, seed, p.faults, ff))
                    .collect();
                let elected: Vec<u64> = runs.iter().filter_map(|r| r.elected).collect();
                let decided: Vec<u64> = runs.iter().filter_map(|r| r.decided).collect();
                let gave_up = runs
                    .iter()
                    .filter(|r| r.elected.is_none() || r.decided.is_none())
                    .count();
                println!(
                    "| {nodes} | {} | {} | {} | {} | {gave_up} |",
                    p.name,
                    on_off(ff),
                    spread(elected),
                    spread(decided)
                );
            }
        }
    }
    println!(
        "\n## No crash ({seeds} seeds per row, {LONG_RUN} ticks each; means per run, \
         client entry every {CLIENT_EVERY} ticks)\n"
    );
    println!(
        "| nodes | network | fast failover | leader changes | entries decided | appends handed back | leaderless ticks |"
    );
    println!("|---|---|---|---|---|---|---|");
    for nodes in [3, 5] {
        for p in profiles() {
            for ff in [true, false] {
                let runs: Vec<CalmRun> = (0..seeds)
                    .map(|seed| calm_run(nodes, seed, p.faults, ff))
                    .collect();
                let changes: Vec<u64> = runs.iter().map(|r| r.leader_changes).collect();
                let decided: Vec<u64> = runs.iter().map(|r| r.decided).collect();
                let handed_back: Vec<u64> = runs.iter().map(|r| r.handed_back).collect();
                let leaderless: Vec<u64> = runs.iter().map(|r| r.leaderless).collect();
                println!(
                    "| {nodes} | {} | {} | {:.2} | {:.0} | {:.1} | {:.1} |",
                    p.name,
                    on_off(ff),
                    mean(&changes),
                    mean(&decided),
                    mean(&handed_back),
                    mean(&leaderless)
                );
            }
        }
    }
}
