//! Fail-recovery on real disks: the simulated nodes run on `PersistentStorage`, one temporary
//! directory per node. A crash drops the node (and with it its storage, closing sled); a
//! restart opens the same directory again and rebuilds the node on what it holds, then calls
//! `fail_recovery()` as the seeds do. The simulator's checker runs after every step (decided
//! prefixes agree, decided indices and promises never go back, also across restarts).
//!
//! What a SIGKILL at any instant leaves on disk is tested in `omnipaxos_storage`'s crash test;
//! here a crash happens between two storage calls, and what is tested is that a node rebuilt
//! from its directory alone (no state carried over in memory) is the node that crashed.

use omnipaxos::{
    storage::Storage,
    util::{LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_sim::{checker::Slot, DiskBackend, Faults, Rng, Sim, SimConfig, SimEntry};
use omnipaxos_storage::persistent_storage::{
    Durability, PersistentStorage, PersistentStorageConfig,
};
use std::{cell::Cell, rc::Rc};

type DiskSim = Sim<SimEntry, DiskBackend>;

fn disk_sim(
    nodes: usize,
    seed: u64,
    faults: Faults,
    durability: Durability,
) -> (DiskSim, Rc<Cell<u64>>) {
    let mut cfg = SimConfig::new(nodes, seed);
    cfg.faults = faults;
    let backend = DiskBackend::new(durability);
    let reopens = backend.reopens();
    (Sim::with_backend(cfg, backend), reopens)
}

/// Runs until one leader serves and every running node follows it; returns it.
fn elect(sim: &mut DiskSim, max_ticks: u64) -> NodeId {
    sim.run_until(max_ticks, |s| {
        s.leader().is_some_and(|l| {
            s.pids()
                .filter(|p| s.is_up(*p))
                .all(|p| s.node(p).unwrap().get_current_leader().map(|x| x.0) == Some(l))
        })
    })
    .unwrap_or_else(|| panic!("no leader agreed within {max_ticks} ticks"));
    sim.leader().unwrap()
}

/// Runs until every running node decided everything the checker saw decided, and entry
/// `last` is decided.
fn run_until_all_decided(sim: &mut DiskSim, last: u64, max_ticks: u64) {
    sim.run_until(max_ticks, |s| {
        s.checker().is_decided(last)
            && s.pids()
                .filter(|p| s.is_up(*p))
                .all(|p| s.decided(p) >= s.checker().decided_log().len())
    })
    .unwrap_or_else(|| panic!("entry {last} not decided everywhere within {max_ticks} ticks"));
}

fn append_decided(sim: &mut DiskSim, at: NodeId, tags: std::ops::Range<u64>, max_ticks: u64) {
    for t in tags.clone() {
        sim.append(at, SimEntry { id: t }).expect("append");
    }
    run_until_all_decided(sim, tags.end - 1, max_ticks);
}

fn decided_tags(sim: &DiskSim) -> Vec<u64> {
    sim.checker()
        .decided_log()
        .iter()
        .filter_map(|s| match s {
            Slot::Entry(e) => Some(e.id),
            _ => None,
        })
        .collect()
}

/// What a node shows of its durable state: promise, decided and compacted index, and its log
/// (entries as `Debug` text: `LogEntry` has no `PartialEq`).
fn durable_view<S: Storage<SimEntry>>(
    op: &OmniPaxos<SimEntry, S>,
) -> (String, usize, usize, String) {
    let decided = op.get_decided_idx();
    let log = op
        .read_entries(..op.get_accepted_idx())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    (
        format!("{:?}", op.get_promise()),
        decided,
        op.get_compacted_idx(),
        log,
    )
}

#[test]
fn whole_cluster_restarts_from_disk_and_keeps_deciding() {
    let (mut s, reopens) = disk_sim(3, 7, Faults::NONE, Durability::Immediate);
    let l = elect(&mut s, 100);
    append_decided(&mut s, l, 1..21, 50);
    let before: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    let old_promise = s.node(l).unwrap().get_promise();
    for p in 1..=3 {
        s.crash(p);
    }
    s.run(5);
    for p in 1..=3 {
        s.restart(p);
    }
    assert_eq!(reopens.get(), 3, "each node reopened its directory");
    let after: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    assert_eq!(
        before, after,
        "the nodes rebuilt from disk are the nodes that crashed"
    );
    for p in 1..=3 {
        assert_eq!(s.decided(p), 20);
    }
    // `fail_recovery` once more, after the rebuild (the restart already called it): harmless.
    for p in 1..=3 {
        s.node_mut(p).unwrap().fail_recovery();
        assert_eq!(durable_view(s.node(p).unwrap()), after[p as usize - 1]);
    }
    let l2 = elect(&mut s, 200);
    assert!(
        s.node(l2).unwrap().get_promise() > old_promise,
        "a ballot is never reused after a restart from disk"
    );
    append_decided(&mut s, l2, 21..31, 100);
    assert_eq!(decided_tags(&s), (1..31).collect::<Vec<_>>());
}

/// Random crashes (leaders included) and restarts while the cluster decides, on a lossy,
/// reordering network, with extra `fail_recovery()` calls on running nodes. The checker
/// verifies safety after every step. Afterwards no entry is decided twice, few are lost (only
/// an append still in the memory of a node that crashed can be), the cluster decides new
/// entries, and a last whole-cluster restart shows the same state.
fn crash_restart_run(seed: u64, nodes: usize, ticks: u64, durability: Durability) {
    let faults = Faults {
        drop: 0.02,
        duplicate: 0.01,
        max_delay: 3,
    };
    let (mut s, reopens) = disk_sim(nodes, seed, faults, durability);
    let mut rng = Rng::new(seed ^ 0xD15C);
    let max_down = (nodes - 1) / 2;
    let mut down: Vec<(NodeId, u64)> = Vec::new();
    let mut next_tag = 1u64;
    let mut extra_recoveries = 0;
    // Like an application that deduplicates: an append handed back is appended again, under a
    // new tag standing for the same request (`request[tag]`).
    let mut request: Vec<u64> = vec![0];
    let mut requests = 0u64;
    for t in 0..ticks {
        for pid in 1..=nodes as NodeId {
            let back = s
                .node_mut(pid)
                .map(|o| o.take_returned_appends())
                .unwrap_or_default();
            for r in back {
                let req = request[r.entry.id as usize];
                if s.append(pid, SimEntry { id: next_tag }).is_ok() {
                    request.push(req);
                    next_tag += 1;
                }
            }
        }
        if rng.chance(0.15) {
            let pid = 1 + rng.index(nodes) as NodeId;
            if s.is_up(pid) && s.append(pid, SimEntry { id: next_tag }).is_ok() {
                requests += 1;
                request.push(requests);
                next_tag += 1;
            }
        }
        if rng.chance(0.02) && down.len() < max_down {
            // Half of the crashes hit the leader.
            let pid = match s.leader() {
                Some(l) if rng.chance(0.5) => l,
                _ => 1 + rng.index(nodes) as NodeId,
            };
            if s.is_up(pid) {
                s.crash(pid);
                down.push((pid, t + rng.range(5, 120)));
            }
        }
        down.retain(|&(pid, at)| {
            if at <= t {
                s.restart(pid);
                false
            } else {
                true
            }
        });
        if rng.chance(0.01) {
            let pid = 1 + rng.index(nodes) as NodeId;
            if let Some(op) = s.node_mut(pid) {
                op.fail_recovery();
                extra_recoveries += 1;
            }
        }
        s.step();
    }
    s.heal();
    let last = next_tag - 1;
    assert!(last >= 20, "seed {seed}: only {last} appends");
    // After healing, a new entry is decided everywhere (and with it what came before).
    let l = elect(&mut s, 1000);
    append_decided(&mut s, l, last + 1..last + 2, 1000);
    let mut tags = decided_tags(&s);
    tags.sort_unstable();
    let n = tags.len();
    tags.dedup();
    assert_eq!(tags.len(), n, "seed {seed}: an entry was decided twice");
    assert!(
        tags.iter().all(|t| (1..=last + 1).contains(t)),
        "seed {seed}: decided entries that were never appended"
    );
    let mut served: Vec<u64> = tags
        .iter()
        .filter(|t| (**t as usize) < request.len())
        .map(|t| request[*t as usize])
        .collect();
    served.sort_unstable();
    served.dedup();
    let lost = requests as usize - served.len();
    assert!(
        lost * 10 <= requests as usize,
        "seed {seed}: {lost} of {requests} requests lost"
    );
    let last = last + 1;
    let stats = s.stats();
    assert!(
        stats.crashes >= 5 && reopens.get() >= 5,
        "seed {seed}: only {} crashes, {} reopens",
        stats.crashes,
        reopens.get()
    );
    assert!(extra_recoveries > 0, "seed {seed}: no extra fail_recovery");
    eprintln!(
        "seed {seed}, {nodes} nodes: {} crashes ({} of a leader in accept phase), {} reopens, \
         {} extra fail_recovery, {n} of {last} entries decided, {} leader changes",
        stats.crashes,
        stats.leader_crashes_in_accept,
        reopens.get(),
        extra_recoveries,
        stats.leader_changes
    );

    // A last restart of everyone from disk shows the same nodes.
    let before: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    let pids: Vec<_> = s.pids().collect();
    for &p in &pids {
        s.crash(p);
    }
    for &p in &pids {
        s.restart(p);
    }
    let after: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    assert_eq!(before, after, "seed {seed}: state after the final restart");
    let l = elect(&mut s, 500);
    append_decided(&mut s, l, last + 1..last + 6, 500);
}

#[test]
fn random_crashes_on_disk_keep_decided_entries_three_nodes() {
    for seed in 1..=3 {
        crash_restart_run(seed, 3, 1500, Durability::Immediate);
    }
}

#[test]
fn random_crashes_on_disk_keep_decided_entries_five_nodes_deferred() {
    // `Deferred` durability: a simulated crash drops the storage, which flushes it, so the
    // node must come back exactly as with `Immediate` (what a kill loses is tested in the
    // storage crate). Faster, so a longer run.
    for seed in 10..=11 {
        crash_restart_run(seed, 5, 2500, Durability::Deferred);
    }
}

/// Compaction on disk: trimmed and snapshotted prefixes stay compacted across restarts, the
/// entries after them stay readable at their absolute indices, and a node that was down during
/// the trim is brought up to date.
#[test]
fn compaction_survives_restarts_from_disk() {
    let (mut s, _) = disk_sim(3, 3, Faults::NONE, Durability::Immediate);
    let l = elect(&mut s, 100);
    append_decided(&mut s, l, 1..41, 100);
    let f = if l == 1 { 2 } else { 1 };
    // A local snapshot on a follower; then a trim, which does not reach that far.
    s.node_mut(f)
        .unwrap()
        .snapshot(Some(30), true)
        .expect("snapshot");
    s.node_mut(l).unwrap().trim(Some(20)).expect("trim");
    s.run_until(100, |s| {
        s.pids()
            .all(|p| s.node(p).unwrap().get_compacted_idx() == if p == f { 30 } else { 20 })
    })
    .expect("the trim reaches every node");
    let before: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    for p in 1..=3 {
        s.crash(p);
        s.restart(p);
    }
    let after: Vec<_> = s.pids().map(|p| durable_view(s.node(p).unwrap())).collect();
    assert_eq!(before, after);
    assert_eq!(s.node(f).unwrap().get_compacted_idx(), 30);
    // Snapshotted over a trimmed prefix: shown as compacted either way.
    assert!(matches!(
        s.node(f).unwrap().read(5),
        Some(LogEntry::Snapshotted(_) | LogEntry::Trimmed(_))
    ));
    assert!(matches!(
        s.node(f).unwrap().read(35),
        Some(LogEntry::Decided(SimEntry { id: 36 }))
    ));
    let other = (1..=3).find(|p| *p != l && *p != f).unwrap();
    assert!(matches!(
        s.node(other).unwrap().read(5),
        Some(LogEntry::Trimmed(_))
    ));
    assert!(matches!(
        s.node(other).unwrap().read(25),
        Some(LogEntry::Decided(SimEntry { id: 26 }))
    ));
    // A node down during the next trim catches up after its restart.
    let l = elect(&mut s, 200);
    let down = if l == 1 { 3 } else { 1 };
    s.crash(down);
    append_decided(&mut s, l, 41..61, 100);
    s.restart(down);
    run_until_all_decided(&mut s, 60, 300);
    assert_eq!(decided_tags(&s), (1..61).collect::<Vec<_>>());
}

/// The seeds' recipe, without the simulator: build a node on `PersistentStorage::open(path)`,
/// drop it, build it again on the same path, call `fail_recovery()` (twice): the node is what
/// it was, and goes on deciding. A single-node cluster decides on its own.
#[test]
fn rebuild_on_the_same_path_then_fail_recovery_is_harmless() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("node-1");
    let config = || OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: vec![1],
            flexible_quorum: None,
        },
        server_config: ServerConfig {
            pid: 1,
            election_tick_timeout: 5,
            ..Default::default()
        },
    };
    let open = || {
        let mut cfg = PersistentStorageConfig::default();
        cfg.set_path(&path);
        PersistentStorage::<SimEntry>::try_open(cfg).expect("open")
    };
    let run = |op: &mut OmniPaxos<SimEntry, PersistentStorage<SimEntry>>, want: usize| {
        for _ in 0..200 {
            if op.get_decided_idx() >= want {
                return;
            }
            op.tick();
            let _ = op.outgoing_messages();
        }
        panic!("decided {} of {want}", op.get_decided_idx());
    };
    let mut op = config().build(open()).expect("build");
    for id in 1..=10 {
        op.append(SimEntry { id }).expect("append");
    }
    run(&mut op, 10);
    let before = durable_view(&op);
    drop(op);

    let mut op = config().build(open()).expect("rebuild");
    assert_eq!(durable_view(&op), before, "rebuilt from disk alone");
    op.fail_recovery();
    assert_eq!(durable_view(&op), before, "after fail_recovery");
    op.fail_recovery();
    assert_eq!(durable_view(&op), before, "after a second fail_recovery");
    for id in 11..=15 {
        op.append(SimEntry { id }).expect("append after recovery");
    }
    run(&mut op, 15);
    let ids: Vec<u64> = op
        .read_decided_suffix(0)
        .expect("decided entries")
        .into_iter()
        .filter_map(|e| match e {
            LogEntry::Decided(e) => Some(e.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, (1..=15).collect::<Vec<_>>());
}
