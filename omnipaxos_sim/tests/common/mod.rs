//! Helpers shared by the scenario tests.
#![allow(dead_code)]

use omnipaxos::messages::Message;
use omnipaxos_sim::{MemoryBackend, Sim, SimConfig, SimEntry};

pub type MemSim = Sim<SimEntry, MemoryBackend<SimEntry>>;

/// The name of a message's kind, for filters (see `omnipaxos_sim::inspect::kind`).
pub fn kind(m: &Message<SimEntry>) -> &'static str {
    omnipaxos_sim::inspect::kind(m)
}

/// A cluster of `n` nodes on a perfect network (election timeout 10, resend 20).
pub fn sim(n: usize) -> MemSim {
    Sim::new(SimConfig::new(n, 1))
}

/// Runs until one leader serves and every running node follows it; returns it.
pub fn elect(sim: &mut MemSim, max_ticks: u64) -> u64 {
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

/// Appends entries tagged `tags` at `at`, and runs until every running node decided them.
pub fn append_decided(
    sim: &mut MemSim,
    at: u64,
    tags: std::ops::Range<u64>,
    max_ticks: u64,
) -> u64 {
    for t in tags.clone() {
        sim.append(at, SimEntry { id: t }).unwrap();
    }
    let last = tags.end - 1;
    sim.run_until(max_ticks, |s| {
        s.checker().is_decided(last)
            && s.pids()
                .filter(|p| s.is_up(*p))
                .all(|p| s.decided(p) >= s.checker().decided_log().len())
    })
    .unwrap_or_else(|| {
        panic!("entries {tags:?} appended at {at} not decided everywhere within {max_ticks} ticks")
    })
}

/// The tags of the decided log.
pub fn decided_tags(sim: &MemSim) -> Vec<u64> {
    sim.checker()
        .decided_log()
        .iter()
        .filter_map(|s| match s {
            omnipaxos_sim::checker::Slot::Entry(e) => Some(e.id),
            _ => None,
        })
        .collect()
}

/// A filter that drops the first `n` messages of `kind` (matching `when`), and counts the drops.
pub fn drop_first(
    kind_name: &'static str,
    n: usize,
    when: impl Fn(&Message<SimEntry>) -> bool + 'static,
) -> (
    omnipaxos_sim::network::Filter<SimEntry>,
    std::rc::Rc<std::cell::Cell<usize>>,
) {
    let dropped = std::rc::Rc::new(std::cell::Cell::new(0));
    let d = dropped.clone();
    let f = Box::new(move |m: &Message<SimEntry>| {
        if kind(m) == kind_name && d.get() < n && when(m) {
            d.set(d.get() + 1);
            omnipaxos_sim::Verdict::Drop
        } else {
            omnipaxos_sim::Verdict::Pass
        }
    });
    (f, dropped)
}
