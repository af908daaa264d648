//! Linearizable reads by read index (`request_read` / `take_ready_reads`), in scenarios where a
//! read could go stale: a deposed leader that still believes it leads, a follower that still
//! follows it, message delays without any clock, a restart between asking and answering.
//!
//! The simulator checks every answered read (see `Sim::request_read`): its index covers every
//! entry any node had decided when the read was asked, the node decided that far, and its
//! application applied that far. The randomized tiers ask reads at random nodes too; these
//! scenarios make sure the dangerous cases happen.

mod common;
use common::*;
use omnipaxos_sim::{Faults, Sim, SimConfig, SimEntry};

const E: u64 = 10; // election timeout in ticks (SimConfig::new)

/// Cuts `pid` off from every other node (both directions).
fn isolate(s: &mut MemSim, pid: u64) {
    for q in s.pids().collect::<Vec<_>>() {
        if q != pid {
            s.net().set_both(pid, q, false);
        }
    }
}

#[test]
fn a_read_at_the_leader_is_answered_at_its_decided_index() {
    let mut s = sim(3);
    let l = elect(&mut s, 20 * E);
    append_decided(&mut s, l, 1..6, 20 * E);
    s.request_read(l).unwrap();
    s.run_until(5 * E, |s| s.pending_reads(l) == 0)
        .expect("the leader answers its read");
    assert_eq!(s.stats().reads_answered, 1);
}

#[test]
fn a_read_at_a_follower_goes_through_the_leader() {
    let mut s = sim(3);
    let l = elect(&mut s, 20 * E);
    append_decided(&mut s, l, 1..6, 20 * E);
    let f = (1..=3).find(|p| *p != l).unwrap();
    let asked = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = asked.clone();
    s.set_filter(Some(Box::new(move |m| {
        sink.borrow_mut()
            .push((kind(m), m.get_sender(), m.get_receiver()));
        omnipaxos_sim::Verdict::Pass
    })));
    s.request_read(f).unwrap();
    s.run_until(5 * E, |s| s.pending_reads(f) == 0)
        .expect("the follower's read is answered");
    let seen = asked.borrow();
    assert!(seen.contains(&("ReadReq", f, l)), "{seen:?}");
    assert!(seen.contains(&("ReadIndex", l, f)), "{seen:?}");
    assert!(seen
        .iter()
        .any(|(k, from, _)| *k == "ReadConfirm" && *from == l));
}

/// The leader is cut off; the others elect a new leader and decide more. Reads asked at the old
/// leader (which still believes it leads for a while) and at a follower that the old leader
/// still has are not answered from the old view: they wait, and once the partition heals they
/// are answered at an index that covers the new entries.
#[test]
fn a_deposed_leader_does_not_answer_reads_from_its_stale_view() {
    let mut s = sim(5);
    let l1 = elect(&mut s, 20 * E);
    append_decided(&mut s, l1, 1..6, 20 * E);
    // The old leader keeps one follower; the other three form a majority without it.
    let f1 = (1..=5).find(|p| *p != l1).unwrap();
    let majority: Vec<u64> = (1..=5).filter(|p| *p != l1 && *p != f1).collect();
    for &a in &[l1, f1] {
        for &b in &majority {
            s.net().set_both(a, b, false);
        }
    }
    let l2 = s
        .run_until(40 * E, |s| {
            s.leader().is_some_and(|l| majority.contains(&l))
        })
        .map(|_| s.leader().unwrap())
        .expect("the majority elects a new leader");
    for t in 100..110 {
        s.append(l2, SimEntry { id: t }).unwrap();
    }
    s.run_until(20 * E, |s| s.checker().is_decided(109))
        .expect("the majority decides");
    let before = s.stats().reads_answered;
    s.request_read(l1).unwrap();
    s.request_read(f1).unwrap();
    s.run(20 * E);
    assert_eq!(
        s.stats().reads_answered,
        before,
        "a read was answered on the minority side of the partition"
    );
    assert_eq!(s.pending_reads(l1) + s.pending_reads(f1), 2);
    s.heal();
    s.run_until(40 * E, |s| s.pending_reads(l1) + s.pending_reads(f1) == 0)
        .expect("after healing, both reads are answered (by the new leader)");
    assert_eq!(s.stats().reads_answered, before + 2);
}

/// Reads asked every few ticks at every node, on a network that loses, duplicates and delays
/// messages (no clock bounds any delay), while the leader is cut off every 400 ticks: each
/// answered read is checked, and most are answered.
#[test]
fn reads_under_loss_duplication_and_delay_stay_linearizable() {
    for seed in 0..20 {
        let mut cfg = SimConfig::new(3, seed);
        cfg.faults = Faults {
            drop: 0.1,
            duplicate: 0.1,
            max_delay: 8,
        };
        cfg.server.election_tick_timeout = 30;
        cfg.server.resend_message_tick_timeout = 25;
        let mut s: MemSim = Sim::new(cfg);
        let mut tag = 1;
        for t in 0..1_500u64 {
            if t % 3 == 0 {
                let at = 1 + t % 3;
                let _ = s.append(at, SimEntry { id: tag });
                tag += 1;
            }
            if t % 7 == 0 {
                let _ = s.request_read(1 + (t / 7) % 3);
            }
            if t % 400 == 200 {
                if let Some(l) = s.leader() {
                    isolate(&mut s, l);
                }
            }
            if t % 400 == 350 {
                s.net().heal();
            }
            s.step();
        }
        s.heal();
        s.run(100 * E);
        let st = s.stats();
        assert!(
            st.reads_answered * 2 > st.reads_requested,
            "seed {seed}: only {} of {} reads answered",
            st.reads_answered,
            st.reads_requested
        );
    }
}

/// A follower asks a read, crashes, and comes back: the answer meant for its old incarnation
/// (still in flight) is not taken for the new incarnation's read of the same number.
#[test]
fn an_answer_for_a_crashed_incarnation_is_not_taken_for_a_new_read() {
    let mut s = sim(3);
    let l = elect(&mut s, 20 * E);
    append_decided(&mut s, l, 1..4, 20 * E);
    let f = (1..=3).find(|p| *p != l).unwrap();
    // Slow answers: the leader's ReadIndex to f is held back until f restarted.
    let held = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let sink = held.clone();
    s.set_filter(Some(Box::new(move |m| {
        if kind(m) == "ReadIndex" && m.get_receiver() == f && sink.borrow().is_empty() {
            sink.borrow_mut().push(m.clone());
            omnipaxos_sim::Verdict::Drop
        } else {
            omnipaxos_sim::Verdict::Pass
        }
    })));
    s.request_read(f).unwrap();
    s.run_until(5 * E, |_| !held.borrow().is_empty())
        .expect("the leader answers");
    s.crash(f);
    // More is decided while f is down.
    let other = (1..=3).find(|p| *p != l && *p != f).unwrap();
    for t in 10..15 {
        s.append(l, SimEntry { id: t }).unwrap();
    }
    s.run_until(20 * E, |s| s.decided(other) >= 7)
        .expect("the others decide");
    s.restart(f);
    s.request_read(f).unwrap();
    // The old answer arrives now: it must be ignored (the simulator fails the run if the new
    // read were answered with the old, lower index).
    let old = held.borrow_mut().pop().unwrap();
    s.node_mut(f).unwrap().handle_incoming(old);
    s.run_until(20 * E, |s| s.pending_reads(f) == 0)
        .expect("the new read is answered");
}
