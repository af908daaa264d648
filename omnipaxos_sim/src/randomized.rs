//! The randomized tier: per seed, draw faults, topology changes, crashes, pauses and a workload;
//! run with the safety checks after every step; then heal and check liveness.

use crate::{
    cluster::{Sim, SimConfig, SimStats},
    entry::SimEntry,
    network::Faults,
    rng::Rng,
};
use omnipaxos::{
    util::{FlexibleQuorum, NodeId},
    ClusterConfig, ServerConfig,
};

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
    /// Whether the seed reconfigured.
    pub reconfigured: bool,
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

/// A new configuration for the cluster: replace one server, grow or shrink by two, or replace a
/// majority, with fresh pids up to `capacity`.
fn next_configuration(
    sim: &Sim<SimEntry, crate::cluster::MemoryBackend<SimEntry>>,
    rng: &mut Rng,
    capacity: usize,
) -> ClusterConfig {
    let current = sim.newest_config();
    let mut nodes = current.nodes.clone();
    let mut spare: Vec<NodeId> = (1..=capacity as NodeId)
        .filter(|p| !nodes.contains(p) && sim.node(*p).is_none() && !sim.pids().any(|q| q == *p))
        .collect();
    match rng.range(0, 3) {
        0 => {
            // Replace one server (maybe the leader).
            let out = rng.index(nodes.len());
            nodes.remove(out);
            if let Some(p) = spare.pop() {
                nodes.push(p);
            }
        }
        1 if nodes.len() <= 3 => {
            // Grow by two.
            for _ in 0..2 {
                if let Some(p) = spare.pop() {
                    nodes.push(p);
                }
            }
        }
        1 => {
            // Shrink by two.
            nodes.truncate(nodes.len() - 2);
        }
        _ => {
            // Replace a majority.
            let keep = nodes.len() / 2;
            nodes.truncate(keep.max(1));
            while nodes.len() < current.nodes.len() {
                match spare.pop() {
                    Some(p) => nodes.push(p),
                    None => break,
                }
            }
        }
    }
    nodes.sort_unstable();
    ClusterConfig {
        configuration_id: current.configuration_id + 1,
        nodes,
        flexible_quorum: None,
    }
}

fn random_pid(rng: &mut Rng, n: usize) -> NodeId {
    rng.index(n) as NodeId + 1
}

fn apply_topology(
    sim: &mut Sim<SimEntry, crate::cluster::MemoryBackend<SimEntry>>,
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

/// Runs seed `seed` on `nodes` nodes for `ticks` ticks of faults, then heals and checks that
/// the cluster agrees on a leader, decides everything decided anywhere on every node, and decides
/// a fresh append. Panics (with the replay command) on any violation.
pub fn run_seed(seed: u64, nodes: usize, ticks: u64) -> RunReport {
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
    let cfg = SimConfig {
        nodes,
        capacity: nodes + 4,
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
    };
    let mut sim: Sim<SimEntry, _> = Sim::new(cfg);
    if rng.chance(0.3) {
        for pid in 1..=nodes as NodeId {
            let skew = 0.75 + rng.unit() * 0.5;
            sim.set_skew(pid, skew);
        }
    }
    let compaction = match rng.range(0, 9) {
        0 | 1 => Compaction::Snapshot,
        2 => Compaction::Trim,
        _ => Compaction::None,
    };
    let p_append = 0.02 + rng.unit() * 0.3;
    let p_crash = [0.0, 0.001, 0.003, 0.01][rng.index(4)];
    let mut down: Vec<(NodeId, u64)> = Vec::new();
    let mut next_topology = rng.range(50, 400);
    let mut next_tag: u64 = 1;
    // Reconfigure in some seeds (twice in some of those, the second while the first may still be
    // migrating).
    let mut reconfigs: Vec<u64> = Vec::new();
    if rng.chance(0.15) {
        reconfigs.push(rng.range(200, ticks * 3 / 5));
        if rng.chance(0.3) {
            reconfigs.push(reconfigs[0] + rng.range(20, 200));
        }
    }
    let reconfigures = !reconfigs.is_empty();
    let capacity = nodes + 4;
    let mut pending_config: Option<ClusterConfig> = None;

    for t in 0..ticks {
        if reconfigs.first() == Some(&t) && pending_config.is_none() {
            reconfigs.remove(0);
            pending_config = Some(next_configuration(&sim, &mut rng, capacity));
        }
        if let Some(next) = pending_config.clone() {
            // Propose at some node until the stop sign is decided somewhere.
            let decided = sim.pids().any(|p| {
                sim.node(p)
                    .and_then(|o| o.is_reconfigured())
                    .is_some_and(|ss| ss.next_config == next)
            });
            if decided {
                pending_config = None;
            } else if rng.chance(0.05) {
                let members = sim.members();
                let pid = members[rng.index(members.len())];
                let _ = sim.reconfigure(pid, next);
            }
        }
        sim.advance_configurations();
        let members = sim.members();
        let max_down = (members.len() - 1) / 2;
        if t == next_topology {
            let topo = TOPOLOGIES[rng.index(TOPOLOGIES.len())];
            apply_topology(&mut sim, topo, &mut rng);
            next_topology += rng.range(50, 400);
        }
        if rng.chance(p_append) {
            let pid = members[rng.index(members.len())];
            for _ in 0..rng.range(1, 3) {
                let _ = sim.append(pid, SimEntry { id: next_tag });
                next_tag += 1;
            }
        }
        if rng.chance(p_crash) && down.len() < max_down {
            let pid = members[rng.index(members.len())];
            if sim.is_up(pid) {
                sim.crash(pid);
                down.push((pid, t + rng.range(10, 300)));
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
        if compaction != Compaction::None && rng.chance(0.01) {
            let pid = match compaction {
                Compaction::Trim => sim.leader().unwrap_or(members[0]),
                _ => members[rng.index(members.len())],
            };
            let upto = rng.chance(0.5);
            let local = rng.chance(0.3);
            if let Some(op) = sim.node_mut(pid) {
                let idx = upto.then(|| op.get_decided_idx().saturating_sub(5));
                // Errors (not decided, already compacted, not the leader) are expected here.
                let _ = match compaction {
                    Compaction::Trim => op.trim(idx),
                    _ => op.snapshot(idx, local),
                };
            }
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
    sim.net().set_faults(Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay,
    });
    // Decided entries (a stop sign ending the log is not an entry of the next configuration).
    let log = sim.checker().decided_log();
    let target = log.len()
        - usize::from(matches!(
            log.last(),
            Some(crate::checker::Slot::StopSign(_))
        ));
    // A reconfiguration still under way finishes while healing: allow for its migration.
    let bound = 10 * election_timeout + 2 * resend + if reconfigures { 10 * resend } else { 0 };
    // Converged: one leader that every node follows, every decided entry decided everywhere,
    // and this holds for two election timeouts (the election has settled, not just passed by).
    let settle = 2 * election_timeout;
    let mut since: Option<u64> = None;
    let heal_ticks = sim
        .run_until_with(bound + settle, |s| s.advance_configurations(), |s| {
            let members = s.members();
            let agreed = s.leader().is_some_and(|l| {
                members.iter().all(|&p| {
                    s.node(p).is_some_and(|o| {
                        o.get_current_leader().map(|x| x.0) == Some(l)
                            && o.get_configuration_id() == s.newest_config().configuration_id
                            && o.get_migration_status().is_none()
                    }) && s.decided(p) >= target
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
        })
        .map(|t| t - settle)
        .unwrap_or_else(|| {
            sim.liveness_failure(&format!(
                "no agreed leader with every decided entry everywhere within {bound} ticks of healing \
                 (leader {:?}, decided {:?}, target {target}, members {:?}, configurations {:?}, migrating {:?})",
                sim.leader(),
                sim.pids().map(|p| sim.decided(p)).collect::<Vec<_>>(),
                sim.members(),
                sim.pids().map(|p| sim.node(p).map(|o| o.get_configuration_id())).collect::<Vec<_>>(),
                sim.pids().filter(|p| sim.node(*p).is_some_and(|o| o.get_migration_status().is_some())).collect::<Vec<_>>(),
            ))
        });
    let leader = sim.leader().expect("a leader after healing");
    let tag = next_tag;
    if let Err(e) = sim.append(leader, SimEntry { id: tag }) {
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
        if let Err(e) = sim.append(*p, SimEntry { id: t }) {
            sim.liveness_failure(&format!("append at follower {p} after healing failed: {e}"));
        }
        tags.push((*p, t));
    }
    // A follower restarted by the heal forwards only in a new ballot (it asks the leader for
    // one): a prepare round more, and the repair of what the network loses in it (a follower
    // that stops making progress is resynced after two resend timeouts).
    let forward_bound = fresh_bound + 2 * sim.config().server.flush_batch_tick_timeout + 3 * resend;
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
    RunReport {
        seed,
        stats: sim.stats(),
        trace: sim.trace_hash(),
        heal_ticks,
        fresh_decide_ticks,
        election_timeout,
        compaction,
        reconfigured: reconfigures,
    }
}
