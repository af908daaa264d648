//! The randomized tier: per seed, draw faults, topology changes, crashes, pauses, compaction,
//! reconfigurations and a workload; run with the safety checks and the simulated applications
//! (see [`crate::app`]) after every step; then heal and check liveness, that every application
//! caught up, and that no append was lost silently.
//!
//! Two profiles:
//!
//! * [`Profile::Full`]: what a seed may draw. Reconfiguration in most seeds (chains of up to four
//!   configurations: servers joining, removed, the leader replaced, a majority replaced; a new
//!   reconfiguration while the previous one still migrates), stragglers cut off across a stop
//!   and healed later, nodes crashed in the middle of pulling an old log, crash-restart rates up
//!   to 0.02 per node per tick, compaction (trims, snapshots, local snapshots) in most seeds,
//!   with an entry type with snapshots ([`SimEntry`]) or without ([`PlainEntry`]).
//! * [`Profile::Stable`]: one configuration, entries with snapshots, snapshots for compaction;
//!   faults, crashes and the checks as in `Full`, except that appends lost silently are only
//!   counted ([`RunReport::appends_lost`]), as they were before the fix of issue 16 (a deposed
//!   leader's own appends) made the full profile fail on them.
//!
//! Either profile runs on in-memory storage or on disk ([`Backing`]).

use crate::{
    checker::Slot,
    cluster::{Backend, Sim, SimConfig, SimStats},
    disk::DiskBackend,
    entry::{FromTag, PlainEntry, SimEntry, Tagged},
    network::{Faults, Filter},
    rng::Rng,
};
use omnipaxos::{
    storage::Entry,
    util::{FlexibleQuorum, NodeId},
    ClusterConfig, ServerConfig,
};
use omnipaxos_storage::persistent_storage::Durability;
use serde::{Deserialize, Serialize};

/// What a seed may draw.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Everything (see the module docs).
    Full,
    /// One configuration, entries with snapshots, snapshot compaction.
    Stable,
}

/// Where the simulated nodes keep their storage.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Backing {
    /// `MemoryStorage` that survives a crash; half the seeds write after every input, half
    /// once per take of the outgoing messages.
    #[default]
    Memory,
    /// `PersistentStorage` in a directory per node ([`DiskBackend`], `Durability::Deferred`):
    /// every restart reopens the node's files, so the storage's scan, replay, checkpoints and
    /// rewrites run under the same faults and checks. A seed takes about 80 times as long (a
    /// quarter of a second, against 3 ms in memory).
    Disk,
}

/// What one seed did, and how fast the cluster recovered after healing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Counters of the run.
    pub stats: SimStats,
    /// Hash of the whole run; equal for equal seeds.
    pub trace: u64,
    /// Ticks after healing until one leader was agreed and every decided entry was decided
    /// everywhere.
    pub heal_ticks: u64,
    /// Ticks a fresh append then took to be decided.
    pub fresh_decide_ticks: u64,
    /// The election timeout drawn for the seed.
    pub election_timeout: u64,
    /// How the seed compacted.
    pub compaction: Compaction,
    /// Whether its entries have snapshots ([`SimEntry`]) or not ([`PlainEntry`]).
    pub snapshots: bool,
    /// Reconfigurations the seed drew.
    pub reconfigurations_drawn: u64,
    /// Configurations decided (the first one counts): 3 or more is a chain.
    pub configurations: u64,
    /// Stragglers cut off across a stop, released while they had not learned of it.
    pub stragglers: u64,
    /// Of those, how many learned of the stop later (from an offer, a `Moved`, a leader).
    pub straggler_stops: u64,
    /// Appends the application made again after they were handed back as uncertain.
    pub reappended: u64,
    /// Appends the nodes accepted.
    pub appends_accepted: u64,
    /// Of those, decided.
    pub appends_decided: u64,
    /// Not decided, handed back.
    pub appends_handed_back: u64,
    /// Neither, at nodes that crashed since.
    pub appends_lost_at_crashed: u64,
    /// Neither, at nodes that never crashed since: lost silently (a failure of the full
    /// profile; only counted in the stable one).
    pub appends_lost: u64,
    /// Storages reopened from their directories ([`Backing::Disk`]; 0 in memory).
    pub disk_reopens: u64,
}

/// How a seed compacts its log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Compaction {
    /// Never.
    None,
    /// Snapshots taken by random nodes (sometimes local only).
    Snapshot,
    /// Trims by the leader.
    Trim,
    /// Both.
    Both,
}

/// The shape of the network for a while.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Topology {
    Full,
    Split,
    OneWay,
    Clog,
    QuorumLoss,
    Chained,
    IsolateLeader,
}

const TOPOLOGIES: [Topology; 7] = [
    Topology::Full,
    Topology::Split,
    Topology::OneWay,
    Topology::Clog,
    Topology::QuorumLoss,
    Topology::Chained,
    Topology::IsolateLeader,
];

/// A new configuration: replace a follower, replace the leader, add servers, remove servers,
/// or replace a majority, with fresh pids up to `capacity`.
fn next_configuration<T: Entry + Tagged + PartialEq, B: Backend<T>>(
    sim: &Sim<T, B>,
    rng: &mut Rng,
    capacity: usize,
) -> ClusterConfig {
    let current = sim.newest_config();
    let mut nodes = current.nodes.clone();
    let mut spare: Vec<NodeId> = (1..=capacity as NodeId)
        .filter(|p| !sim.pids().any(|q| q == *p))
        .collect();
    spare.reverse();
    let leader = sim.leader().filter(|l| nodes.contains(l));
    match rng.range(0, 4) {
        0 => {
            // Replace a follower.
            let followers: Vec<usize> = (0..nodes.len())
                .filter(|i| Some(nodes[*i]) != leader)
                .collect();
            if let (Some(p), false) = (spare.pop(), followers.is_empty()) {
                nodes[followers[rng.index(followers.len())]] = p;
            }
        }
        1 => {
            // Replace the leader (or some server if none leads).
            let out = leader
                .and_then(|l| nodes.iter().position(|p| *p == l))
                .unwrap_or_else(|| rng.index(nodes.len()));
            if let Some(p) = spare.pop() {
                nodes[out] = p;
            }
        }
        2 if nodes.len() < 7 => {
            // Servers join.
            for _ in 0..rng.range(1, 2) {
                if let Some(p) = spare.pop() {
                    nodes.push(p);
                }
            }
        }
        3 if nodes.len() > 3 => {
            // Servers are removed.
            for _ in 0..rng.range(1, (nodes.len() as u64 - 3).min(2)) {
                nodes.remove(rng.index(nodes.len()));
            }
        }
        _ => {
            // Replace a majority.
            let keep = (nodes.len() - 1) / 2;
            while nodes.len() > keep {
                nodes.remove(rng.index(nodes.len()));
            }
            while nodes.len() < current.nodes.len() {
                match spare.pop() {
                    Some(p) => nodes.push(p),
                    None => break,
                }
            }
        }
    }
    nodes.sort_unstable();
    nodes.dedup();
    ClusterConfig {
        configuration_id: current.configuration_id + 1,
        nodes,
        flexible_quorum: None,
    }
}

fn random_pid(rng: &mut Rng, n: usize) -> NodeId {
    rng.index(n) as NodeId + 1
}

fn apply_topology<T: Entry + Tagged + PartialEq, B: Backend<T>>(
    sim: &mut Sim<T, B>,
    t: Topology,
    rng: &mut Rng,
) {
    let n = sim.config().capacity;
    let leader = sim.leader().unwrap_or_else(|| random_pid(rng, n));
    let net = sim.net();
    net.heal();
    match t {
        Topology::Full => {}
        Topology::Split => {
            let side: Vec<bool> = (0..n).map(|_| rng.chance(0.5)).collect();
            for a in 1..=n {
                for b in 1..=n {
                    if side[a - 1] != side[b - 1] {
                        net.set_link(a as NodeId, b as NodeId, false);
                    }
                }
            }
        }
        Topology::OneWay => {
            for _ in 0..rng.range(1, n as u64) {
                let (a, b) = (random_pid(rng, n), random_pid(rng, n));
                net.set_link(a, b, false);
            }
        }
        Topology::Clog => {
            let p = 0.2 + rng.unit() * 0.3;
            for a in 1..=n as NodeId {
                for b in 1..=n as NodeId {
                    if rng.chance(p) {
                        net.set_link(a, b, false);
                    }
                }
            }
        }
        Topology::QuorumLoss => {
            // One hub stays connected to all; all links among the others are cut.
            let hub = loop {
                let h = random_pid(rng, n);
                if h != leader || n == 1 {
                    break h;
                }
            };
            for a in 1..=n as NodeId {
                for b in 1..=n as NodeId {
                    if a != hub && b != hub {
                        net.set_link(a, b, false);
                    }
                }
            }
        }
        Topology::Chained => {
            let other = random_pid(rng, n);
            net.set_both(leader, other, false);
        }
        Topology::IsolateLeader => {
            for p in 1..=n as NodeId {
                net.set_both(leader, p, false);
            }
        }
    }
}

/// A server of a configuration being stopped, cut off from everyone until a while after the
/// stop is decided.
#[derive(Copy, Clone, Debug)]
struct Straggler {
    pid: NodeId,
    /// The configuration being stopped.
    config_id: u32,
    release_at: Option<u64>,
}

fn isolate<T: Entry + Tagged + PartialEq, B: Backend<T>>(sim: &mut Sim<T, B>, pid: NodeId) {
    let n = sim.config().capacity as NodeId;
    for q in 1..=n {
        sim.net().set_both(pid, q, false);
    }
}

/// Runs seed `seed` of the full profile on `nodes` nodes for `ticks` ticks of faults, then heals
/// and checks that the cluster agrees on a leader, decides everything decided anywhere on every
/// node, decides a fresh append, that every application caught up, and that no append was lost
/// silently. Panics (with the replay command) on any violation.
pub fn run_seed(seed: u64, nodes: usize, ticks: u64) -> RunReport {
    run_seed_profile(seed, nodes, ticks, Profile::Full)
}

/// Like [`run_seed`], with the given profile. The seed chooses the entry type.
pub fn run_seed_profile(seed: u64, nodes: usize, ticks: u64, profile: Profile) -> RunReport {
    run_seed_on(seed, nodes, ticks, profile, Backing::Memory)
}

/// Like [`run_seed_profile`], with the nodes' storage in `backing`. A seed draws the same run
/// on either backing; the storage alone differs.
pub fn run_seed_on(
    seed: u64,
    nodes: usize,
    ticks: u64,
    profile: Profile,
    backing: Backing,
) -> RunReport {
    let snapshots = profile == Profile::Stable || Rng::new(seed ^ 0x00E7_7E57).chance(0.65);
    if snapshots {
        run_with_backing::<SimEntry>(seed, nodes, ticks, profile, None, backing)
    } else {
        run_with_backing::<PlainEntry>(seed, nodes, ticks, profile, None, backing)
    }
}

/// Runs seed `seed` with entries of type `T` on in-memory storage, with `filter` (if any)
/// seeing every message sent (tests use it to capture real messages).
pub fn run_with<T>(
    seed: u64,
    nodes: usize,
    ticks: u64,
    profile: Profile,
    filter: Option<Filter<T>>,
) -> RunReport
where
    T: Entry + FromTag + PartialEq + Serialize + for<'a> Deserialize<'a>,
{
    run_with_backing(seed, nodes, ticks, profile, filter, Backing::Memory)
}

/// [`run_with`] on the given backing.
pub fn run_with_backing<T>(
    seed: u64,
    nodes: usize,
    ticks: u64,
    profile: Profile,
    filter: Option<Filter<T>>,
    backing: Backing,
) -> RunReport
where
    T: Entry + FromTag + PartialEq + Serialize + for<'a> Deserialize<'a>,
{
    match backing {
        Backing::Memory => run_built(seed, nodes, ticks, profile, filter, "", Sim::new),
        Backing::Disk => {
            let backend = DiskBackend::new(Durability::Deferred);
            let reopens = backend.reopens();
            let mut report = run_built(
                seed,
                nodes,
                ticks,
                profile,
                filter,
                " OMNIPAXOS_SIM_BACKING=disk",
                |cfg| Sim::with_backend(cfg, backend),
            );
            report.disk_reopens = reopens.get();
            report
        }
    }
}

/// The run itself, on the cluster `build` makes from the drawn configuration; `replay_env` is
/// what the replay command needs besides the seed to choose the same backing.
fn run_built<T, B>(
    seed: u64,
    nodes: usize,
    ticks: u64,
    profile: Profile,
    filter: Option<Filter<T>>,
    replay_env: &str,
    build: impl FnOnce(SimConfig) -> Sim<T, B>,
) -> RunReport
where
    T: Entry + FromTag + PartialEq + Serialize + for<'a> Deserialize<'a>,
    B: Backend<T>,
{
    let full = profile == Profile::Full;
    let mut rng = Rng::new(seed ^ 0x005E_ED0F_5EED);
    let max_delay = if rng.chance(0.2) { 0 } else { rng.range(1, 20) };
    let faults = Faults {
        drop: if rng.chance(0.2) {
            0.0
        } else {
            rng.unit() * 0.3
        },
        duplicate: if rng.chance(0.3) {
            0.0
        } else {
            rng.unit() * 0.1
        },
        max_delay,
    };
    // A heartbeat round must outlast a round trip (up to 2 delays) with some margin.
    let election_timeout = 3 * max_delay + rng.range(4, 12);
    let resend = 2 * max_delay + rng.range(6, 30);
    let batch_size = [1, 1, 1, 2, 5, 20][rng.index(6)];
    let flexible_quorum = if rng.chance(0.25) && nodes >= 3 {
        let read = rng.range(nodes as u64 / 2 + 1, nodes as u64) as usize;
        let write = nodes + 1 - read;
        Some(FlexibleQuorum {
            read_quorum_size: read,
            write_quorum_size: write,
        })
    } else {
        None
    };
    let priorities = if rng.chance(0.2) {
        (0..nodes).map(|_| rng.range(0, 3) as u32).collect()
    } else {
        Vec::new()
    };
    let capacity = nodes + 10;
    let cfg = SimConfig {
        nodes,
        capacity,
        seed,
        server: ServerConfig {
            election_tick_timeout: election_timeout,
            resend_message_tick_timeout: resend,
            batch_size,
            flush_batch_tick_timeout: rng.range(1, 10),
            buffer_size: [100, 1_000, 100_000][rng.index(3)],
            ..Default::default()
        },
        flexible_quorum,
        faults,
        priorities,
        fast_failover: true,
        // Half the seeds write after every input (MemoryStorage's default), half once per take
        // (a durable backend's timing). A stream of its own: the other choices stay as they were.
        writes_at_once: Rng::new(seed ^ 0x0A70_0CE5).chance(0.5),
    };
    let mut sim = build(cfg);
    // Sweeps that look for the protocol's own failures behind the applications' may turn the
    // application checks off.
    let app_checks = std::env::var("OMNIPAXOS_SIM_APP_CHECKS").as_deref() != Ok("0");
    sim.set_check_applications(app_checks);
    sim.set_replay(format!(
        "OMNIPAXOS_SIM_SEED={seed} OMNIPAXOS_SIM_NODES={nodes}{}{}{replay_env} cargo test -p \
         omnipaxos_sim --test randomized replay -- --nocapture",
        if profile == Profile::Stable {
            " OMNIPAXOS_SIM_PROFILE=stable"
        } else {
            ""
        },
        if app_checks {
            ""
        } else {
            " OMNIPAXOS_SIM_APP_CHECKS=0"
        }
    ));
    if filter.is_some() {
        sim.set_filter(filter);
    }
    if rng.chance(0.3) {
        for pid in 1..=nodes as NodeId {
            let skew = 0.75 + rng.unit() * 0.5;
            sim.set_skew(pid, skew);
        }
    }
    let compaction = if !full {
        Compaction::Snapshot
    } else if rng.chance(0.15) {
        Compaction::None
    } else {
        [Compaction::Snapshot, Compaction::Trim, Compaction::Both][rng.index(3)]
    };
    let p_compact = [0.003, 0.01, 0.03][rng.index(3)];
    let p_append = 0.02 + rng.unit() * 0.3;
    // Crash-restart, per node and tick: none in a quarter of the seeds, else up to 0.02 (low
    // rates more often).
    let p_crash = if rng.chance(0.25) {
        0.0
    } else {
        let u = rng.unit();
        0.02 * u * u
    };
    // Crashes of nodes that pull an old log, per node and tick while they pull.
    let p_crash_pulling = [0.0, 0.01, 0.05, 0.2][rng.index(4)];
    let p_reappend = [0.0, 0.5, 1.0][rng.index(3)];
    // Linearizable reads, drawn from a generator of their own (the other draws stay as they
    // were before reads existed): per tick, at a random member.
    let mut read_rng = Rng::new(seed ^ 0x0000_5EAD_0F5E);
    let p_read = [0.0, 0.01, 0.05, 0.2][read_rng.index(4)];
    // Half the seeds send a leader's accepts ahead of its write, some crashing right then.
    let ahead_of_write = read_rng.chance(0.5);
    if ahead_of_write {
        sim.set_ahead_of_write(Some([0.0, 0.01, 0.05][read_rng.index(3)]));
    }
    let mut down: Vec<(NodeId, u64)> = Vec::new();
    let mut next_topology = rng.range(50, 400);
    let mut next_tag: u64 = 1;
    // Reconfigurations: in most seeds, up to three (a chain of four configurations); the next
    // one may start while the previous one still migrates.
    let mut reconfigs: Vec<u64> = Vec::new();
    if full && rng.chance(0.65) {
        let count = [1, 1, 2, 2, 3][rng.index(5)];
        let mut at = rng.range(100, ticks * 2 / 5);
        for _ in 0..count {
            reconfigs.push(at);
            at += rng.range(20, 300);
        }
    }
    let reconfigurations_drawn = reconfigs.len() as u64;
    let p_straggler = [0.0, 0.5, 1.0][rng.index(3)];
    let mut pending_config: Option<(ClusterConfig, Option<Vec<u8>>)> = None;
    let mut straggler: Option<Straggler> = None;
    let mut missed_stops: Vec<(NodeId, u32)> = Vec::new();
    let mut reappended = 0u64;

    // On a failure, the counters so far are kept for the caller (see `take_partial_report`).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for t in 0..ticks {
            if reconfigs.first().is_some_and(|at| *at <= t) && pending_config.is_none() {
                reconfigs.remove(0);
                let next = next_configuration(&sim, &mut rng, capacity);
                let metadata = rng.chance(0.5).then(|| vec![rng.range(0, 255) as u8; 3]);
                let current = sim.newest_config();
                if straggler.is_none() && rng.chance(p_straggler) {
                    // A server of the configuration being stopped misses the stop.
                    let leader = sim.leader();
                    let candidates: Vec<NodeId> = current
                        .nodes
                        .iter()
                        .copied()
                        .filter(|p| Some(*p) != leader && sim.is_up(*p))
                        .collect();
                    if !candidates.is_empty() {
                        let pid = candidates[rng.index(candidates.len())];
                        isolate(&mut sim, pid);
                        straggler = Some(Straggler {
                            pid,
                            config_id: current.configuration_id,
                            release_at: None,
                        });
                    }
                }
                pending_config = Some((next, metadata));
            }
            if let Some((next, metadata)) = pending_config.clone() {
                // Propose at some node until the stop sign is decided somewhere.
                let decided = sim.pids().any(|p| {
                    sim.node(p)
                        .and_then(|o| o.is_reconfigured())
                        .is_some_and(|ss| ss.next_config == next)
                }) || sim.newest_config().configuration_id >= next.configuration_id;
                if decided {
                    pending_config = None;
                } else if rng.chance(0.05) {
                    let members = sim.members();
                    let pid = members[rng.index(members.len())];
                    let _ = sim.reconfigure_with(pid, next, metadata);
                }
            }
            if let Some(s) = straggler.as_mut() {
                let stopped = sim.checker().stop_of(s.config_id).is_some();
                match s.release_at {
                    None if stopped => s.release_at = Some(t + rng.range(50, 400)),
                    Some(at) if at <= t => {
                        let missed = sim.node(s.pid).map_or(true, |o| {
                            o.get_configuration_id() == s.config_id && o.is_reconfigured().is_none()
                        });
                        if missed {
                            missed_stops.push((s.pid, s.config_id));
                        }
                        let n = capacity as NodeId;
                        let pid = s.pid;
                        for q in 1..=n {
                            sim.net().set_both(pid, q, true);
                        }
                        straggler = None;
                    }
                    _ => {}
                }
            }
            sim.advance_configurations();
            let members = sim.members();
            let max_down = (members.len() - 1) / 2;
            if t == next_topology {
                let topo = TOPOLOGIES[rng.index(TOPOLOGIES.len())];
                apply_topology(&mut sim, topo, &mut rng);
                if let Some(s) = straggler {
                    isolate(&mut sim, s.pid);
                }
                next_topology += rng.range(50, 400);
            }
            if rng.chance(p_append) {
                let pid = members[rng.index(members.len())];
                for _ in 0..rng.range(1, 3) {
                    let _ = sim.append(pid, T::from_tag(next_tag));
                    next_tag += 1;
                }
            }
            if read_rng.chance(p_read) {
                let pid = members[read_rng.index(members.len())];
                let _ = sim.request_read(pid);
            }
            // What the nodes hand back as uncertain, an application appends again (as new
            // appends: it deduplicates by its own request ids).
            for _ in sim.take_uncertain_appends() {
                if rng.chance(p_reappend) {
                    let members = sim.members();
                    let pid = members[rng.index(members.len())];
                    if sim.append(pid, T::from_tag(next_tag)).is_ok() {
                        reappended += 1;
                    }
                    next_tag += 1;
                }
            }
            for &pid in &members {
                if down.len() >= max_down || !sim.is_up(pid) {
                    continue;
                }
                let pulling = sim
                    .node(pid)
                    .is_some_and(|o| o.get_migration_status().is_some());
                if rng.chance(p_crash) {
                    sim.crash(pid);
                    down.push((pid, t + rng.range(10, 300)));
                } else if pulling && rng.chance(p_crash_pulling) {
                    sim.crash(pid);
                    down.push((pid, t + rng.range(1, 60)));
                }
            }
            down.retain(|&(pid, at)| {
                if at <= t {
                    sim.restart(pid);
                    false
                } else {
                    true
                }
            });
            if rng.chance(0.001) {
                let pid = members[rng.index(members.len())];
                let ticks = rng.range(5, 3 * election_timeout);
                sim.pause(pid, ticks);
            }
            if rng.chance(0.0005) {
                let pid = members[rng.index(members.len())];
                if let Some(op) = sim.node_mut(pid) {
                    op.try_become_leader();
                }
            }
            if compaction != Compaction::None && rng.chance(p_compact) {
                let trim = match compaction {
                    Compaction::Trim => true,
                    Compaction::Both => rng.chance(0.5),
                    _ => false,
                };
                let pid = if trim {
                    sim.leader().unwrap_or(members[0])
                } else {
                    members[rng.index(members.len())]
                };
                let upto = rng.chance(0.5);
                let local = rng.chance(0.3);
                let idx = upto.then(|| sim.decided(pid).saturating_sub(rng.range(0, 10) as usize));
                // Errors (not decided, already compacted, not the leader) are expected here.
                let _ = if trim {
                    sim.trim(pid, idx)
                } else {
                    sim.snapshot(pid, idx, local)
                };
            }
            if rng.chance(0.0005) {
                let pid = members[rng.index(members.len())];
                let p = rng.range(0, 3) as u32;
                if let Some(op) = sim.node_mut(pid) {
                    op.set_priority(p);
                }
            }
            sim.step();
        }

        // Heal: all links up, no loss, every node running.
        sim.heal();
        // Recovery is measured without faults: no more crashes before a write either.
        if ahead_of_write {
            sim.set_ahead_of_write(Some(0.0));
        }
        sim.net().set_faults(Faults {
            drop: 0.0,
            duplicate: 0.0,
            max_delay,
        });
        let reconfigures = reconfigurations_drawn > 0;
        // Decided entries (a stop sign ending the log is not an entry of the next configuration).
        let log = sim.checker().decided_log();
        let target = log.len() - usize::from(matches!(log.last(), Some(Slot::StopSign(_))));
        // A reconfiguration still under way finishes while healing: allow for its migration.
        let bound = 10 * election_timeout + 2 * resend + if reconfigures { 10 * resend } else { 0 };
        // Converged: one leader that every node follows, every decided entry decided everywhere and
        // applied by every application, and this holds for two election timeouts (the election has
        // settled, not just passed by).
        let settle = 2 * election_timeout;
        let mut since: Option<u64> = None;
        // A reconfiguration the application asked for and that is not decided yet goes on
        // while healing (the node that holds the proposal forwards it once it has a leader):
        // the application proposes it again now and then, as it did before, and recovery
        // includes it. Otherwise it could stop the configuration under the appends below.
        let asked = pending_config.clone();
        let heal_ticks = sim
            .run_until_with(
                bound + settle,
                |s| {
                    s.advance_configurations();
                    let _ = s.take_uncertain_appends();
                    if let Some((next, metadata)) = &asked {
                        let done = s.newest_config().configuration_id >= next.configuration_id
                            || s.pids().any(|p| {
                                s.node(p)
                                    .and_then(|o| o.is_reconfigured())
                                    .is_some_and(|ss| ss.next_config == *next)
                            });
                        if !done && s.now() % resend == 0 {
                            if let Some(l) = s.leader() {
                                let _ = s.reconfigure_with(l, next.clone(), metadata.clone());
                            }
                        }
                    }
                },
                |s| {
                    let members = s.members();
                    let reconfigured = asked.as_ref().map_or(true, |(next, _)| {
                        s.newest_config().configuration_id >= next.configuration_id
                    });
                    let agreed = reconfigured
                        && s.leader().is_some_and(|l| {
                            members.iter().all(|&p| {
                                s.node(p).is_some_and(|o| {
                                    o.get_current_leader().map(|x| x.0) == Some(l)
                                        && o.get_configuration_id()
                                            == s.newest_config().configuration_id
                                        && o.get_migration_status().is_none()
                                }) && s.decided(p) >= target
                                    && (!s.checks_applications()
                                        || s.app(p).is_some_and(|a| a.applied() >= target))
                            })
                        });
                    match (agreed, since) {
                        (false, _) => {
                            since = None;
                            false
                        }
                        (true, None) => {
                            since = Some(s.now());
                            false
                        }
                        (true, Some(t)) => s.now() - t >= settle,
                    }
                },
            )
            .map(|t| t - settle)
            .unwrap_or_else(|| {
                sim.liveness_failure(&format!(
                "no agreed leader with every decided entry decided and applied everywhere within \
                 {bound} ticks of healing (leader {:?}, decided {:?}, applied {:?}, target \
                 {target}, members {:?}, configurations {:?}, migrating {:?})",
                sim.leader(),
                sim.pids().map(|p| sim.decided(p)).collect::<Vec<_>>(),
                sim.pids()
                    .map(|p| sim.app(p).map(|a| a.applied()))
                    .collect::<Vec<_>>(),
                sim.members(),
                sim.pids()
                    .map(|p| sim.node(p).map(|o| o.get_configuration_id()))
                    .collect::<Vec<_>>(),
                sim.pids()
                    .filter(|p| sim
                        .node(*p)
                        .is_some_and(|o| o.get_migration_status().is_some()))
                    .collect::<Vec<_>>(),
            ))
            });
        let leader = sim.leader().expect("a leader after healing");
        let tag = next_tag;
        if let Err(e) = sim.append(leader, T::from_tag(tag)) {
            sim.liveness_failure(&format!("append at the leader after healing failed: {e}"));
        }
        let fresh_bound = 2 * election_timeout + sim.config().server.flush_batch_tick_timeout;
        let fresh_decide_ticks = sim
            .run_until(fresh_bound, |s| s.checker().is_decided(tag))
            .unwrap_or_else(|| {
                sim.liveness_failure(&format!(
                    "a fresh append at leader {leader} was not decided within {fresh_bound} ticks"
                ))
            });
        // Also one at each follower: forwarded, it must reach the decided log too.
        let followers: Vec<NodeId> = sim
            .members()
            .into_iter()
            .filter(|p| *p != leader && sim.is_up(*p))
            .collect();
        let mut tags = Vec::new();
        for (k, p) in followers.iter().enumerate() {
            let t = tag + 1 + k as u64;
            if let Err(e) = sim.append(*p, T::from_tag(t)) {
                sim.liveness_failure(&format!("append at follower {p} after healing failed: {e}"));
            }
            tags.push((*p, t));
        }
        // A follower restarted by the heal forwards only in a new ballot (it asks the leader for
        // one): a prepare round more, and the repair of what the network loses in it (a follower
        // that stops making progress is resynced after two resend timeouts).
        let forward_bound =
            fresh_bound + 2 * sim.config().server.flush_batch_tick_timeout + 3 * resend;
        if sim
            .run_until(forward_bound, |s| {
                tags.iter().all(|(_, t)| s.checker().is_decided(*t))
            })
            .is_none()
        {
            sim.liveness_failure(&format!(
                "fresh appends at the followers {tags:?} (pid, tag) were not all decided within \
             {forward_bound} ticks"
            ));
        }
        // No append lost silently: each one a node accepted and still holds (it did not crash
        // since) is decided or was handed back. Appends still on their way get a few more resend
        // timeouts. (The report walks every append: it is looked at every 8 ticks only.)
        let drain_bound = 4 * resend + 2 * election_timeout;
        let _ = sim.run_until_with(
            drain_bound,
            |s| {
                let _ = s.take_uncertain_appends();
            },
            |s| s.now() % 8 == 0 && s.append_report().lost.is_empty(),
        );
        let _ = sim.take_uncertain_appends();
        let appends = sim.append_report();
        if full && !appends.lost.is_empty() {
            sim.fail(&format!(
                "lost appends: {} appends that returned Ok at nodes that never crashed since were \
             neither decided nor handed back by take_uncertain_appends (first (tag, node): {:?}; \
             accepted {}, decided {}, handed back {}, undecided at crashed nodes {})",
                appends.lost.len(),
                &appends.lost[..appends.lost.len().min(5)],
                appends.accepted,
                appends.decided,
                appends.handed_back,
                appends.lost_at_crashed,
            ));
        }
        if let (true, Err(e)) = (sim.checks_applications(), sim.check_applications()) {
            sim.fail(&e);
        }
        let straggler_stops = missed_stops
            .iter()
            .filter(|(pid, c)| {
                sim.node(*pid)
                    .is_some_and(|o| o.get_configuration_id() > *c || o.is_reconfigured().is_some())
            })
            .count() as u64;
        RunReport {
            seed,
            stats: sim.stats(),
            trace: sim.trace_hash(),
            heal_ticks,
            fresh_decide_ticks,
            election_timeout,
            compaction,
            snapshots: <T::Snapshot as omnipaxos::storage::Snapshot<T>>::use_snapshots(),
            reconfigurations_drawn,
            configurations: 1 + sim.stats().reconfigurations,
            stragglers: missed_stops.len() as u64,
            straggler_stops,
            reappended,
            appends_accepted: appends.accepted,
            appends_decided: appends.decided,
            appends_handed_back: appends.handed_back,
            appends_lost_at_crashed: appends.lost_at_crashed,
            appends_lost: appends.lost.len() as u64,
            disk_reopens: 0,
        }
    }));
    match outcome {
        Ok(report) => report,
        Err(e) => {
            let appends = sim.append_report();
            let partial = RunReport {
                seed,
                stats: sim.stats(),
                trace: sim.trace_hash(),
                heal_ticks: 0,
                fresh_decide_ticks: 0,
                election_timeout,
                compaction,
                snapshots: <T::Snapshot as omnipaxos::storage::Snapshot<T>>::use_snapshots(),
                reconfigurations_drawn,
                configurations: 1 + sim.stats().reconfigurations,
                stragglers: missed_stops.len() as u64,
                straggler_stops: 0,
                reappended,
                appends_accepted: appends.accepted,
                appends_decided: appends.decided,
                appends_handed_back: appends.handed_back,
                appends_lost_at_crashed: appends.lost_at_crashed,
                appends_lost: appends.lost.len() as u64,
                disk_reopens: 0,
            };
            PARTIAL.with(|p| *p.borrow_mut() = Some(partial));
            std::panic::resume_unwind(e)
        }
    }
}

thread_local! {
    static PARTIAL: std::cell::RefCell<Option<RunReport>> = const { std::cell::RefCell::new(None) };
}

/// The counters of the last seed that failed on this thread, up to its failure (for sweeps
/// that report what the failing seeds exercised too).
pub fn take_partial_report() -> Option<RunReport> {
    PARTIAL.with(|p| p.borrow_mut().take())
}
