//! Chapter "Testing your application with the simulator".

// ANCHOR: command
use omnipaxos::{macros::Entry, util::LogEntry};
use omnipaxos_sim::{Faults, Sim, SimConfig, Tagged};
use std::collections::BTreeMap;

/// The application's entry type: a client request with a unique id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, Entry)]
pub struct Command {
    /// Unique per request: the simulator traces every decided entry back to one append.
    pub request_id: u64,
    /// The key written.
    pub key: u8,
    /// Its new value.
    pub value: u64,
}

impl Tagged for Command {
    fn tag(&self) -> u64 {
        self.request_id
    }
}
// ANCHOR_END: command

// ANCHOR: apply
/// The application's state machine: what a server computes from its decided log.
fn apply(entries: &[LogEntry<Command>]) -> BTreeMap<u8, u64> {
    let mut map = BTreeMap::new();
    for e in entries {
        if let LogEntry::Decided(c) = e {
            map.insert(c.key, c.value);
        }
    }
    map
}
// ANCHOR_END: apply

// ANCHOR: scenario
/// One seeded run: a lossy network, a client, a crash and a partition.
fn run(seed: u64) {
    let mut config = SimConfig::new(5, seed);
    config.faults = Faults {
        drop: 0.05,      // 5% of messages are lost,
        duplicate: 0.02, // 2% arrive twice,
        max_delay: 3,    // and each takes 0 to 3 ticks (so they are reordered).
    };
    let mut sim: Sim<Command, _> = Sim::new(config);
    let mut next_id = 0;
    for round in 0..40 {
        // The client sends a request to whichever server leads (or to server 1).
        let at = sim.leader().unwrap_or(1);
        next_id += 1;
        let cmd = Command {
            request_id: next_id,
            key: (next_id % 4) as u8,
            value: next_id,
        };
        let _ = sim.append(at, cmd); // a crashed server refuses: the request is lost
        match round {
            10 => sim.crash(sim.leader().unwrap_or(2)),
            20 => {
                // Cut server 1 off from everyone but server 2.
                for p in 3..=5 {
                    sim.net().set_both(1, p, false);
                }
            }
            30 => sim.heal(), // links restored, crashed servers restarted on their storage
            _ => {}
        }
        // Every step checks agreement, validity, stability and more; a violation panics with
        // the seed.
        sim.run(5);
    }
    sim.heal();
    let end = sim.checker().decided_log().len();
    sim.run_until(500, |s| s.pids().all(|p| s.decided(p) >= end))
        .expect("all servers catch up after healing");
    // The application's own invariant: every server computes the same state.
    let states: Vec<_> = sim
        .pids()
        .map(|p| {
            apply(
                &sim.node(p)
                    .unwrap()
                    .read_decided_suffix(0)
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert!(states.windows(2).all(|w| w[0] == w[1]), "seed {seed}");
    assert!(end > 20, "seed {seed}: only {end} entries decided");
}

#[test]
fn the_store_survives_faults() {
    for seed in 0..10 {
        run(seed);
    }
}
// ANCHOR_END: scenario

/// A scenario that holds back messages of one kind: the follower that never gets `Decide`
/// messages still learns what is decided from the leader's next `AcceptDecide`.
#[test]
fn filter_messages_by_kind() {
    let mut sim: Sim<Command, _> = Sim::new(SimConfig::new(3, 1));
    sim.run_until(100, |s| s.leader().is_some())
        .expect("a leader");
    let leader = sim.leader().unwrap();
    let follower = (1..=3).find(|p| *p != leader).unwrap();
    // ANCHOR: filter
    use omnipaxos_sim::{inspect::kind, Verdict};
    sim.set_filter(Some(Box::new(move |m| {
        if kind(m) == "Decide" && m.get_receiver() == follower {
            Verdict::Drop
        } else {
            Verdict::Pass
        }
    })));
    // ANCHOR_END: filter
    for id in 1..=2 {
        let cmd = Command {
            request_id: id,
            key: 1,
            value: id,
        };
        sim.append(leader, cmd).unwrap();
        sim.run(5);
    }
    sim.run_until(100, |s| s.decided(follower) >= 1)
        .expect("the follower learns the first decision from the second AcceptDecide");
}
