//! Batching, the flush timeout, and flexible quorums in both phases.

mod common;
use common::*;
use omnipaxos::util::FlexibleQuorum;
use omnipaxos_sim::{Sim, SimConfig, SimEntry, Verdict};
use std::{cell::RefCell, rc::Rc};

fn counting_accepts(s: &mut MemSim) -> Rc<RefCell<Vec<usize>>> {
    let sizes = Rc::new(RefCell::new(Vec::new()));
    let sink = sizes.clone();
    s.set_filter(Some(Box::new(move |m| {
        if kind(m) == "AcceptDecide" {
            sink.borrow_mut().push(omnipaxos_sim::inspect::entries(m));
        }
        Verdict::Pass
    })));
    sizes
}

#[test]
fn a_full_batch_is_replicated_in_one_message_per_follower() {
    let mut cfg = SimConfig::new(3, 1);
    cfg.server.batch_size = 5;
    cfg.server.flush_batch_tick_timeout = 1_000;
    let mut s: MemSim = Sim::new(cfg);
    let l = elect(&mut s, 50);
    let sizes = counting_accepts(&mut s);
    for t in 1..=4 {
        s.append(l, SimEntry { id: t }).unwrap();
    }
    s.run(20);
    assert_eq!(s.node(l).unwrap().get_batched_len(), 4);
    assert_eq!(s.checker().decided_log().len(), 0, "a partial batch waits");
    assert!(sizes.borrow().is_empty());
    s.append(l, SimEntry { id: 5 }).unwrap();
    s.run(3);
    assert_eq!(decided_tags(&s), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        *sizes.borrow(),
        vec![5, 5],
        "one message of 5 entries to each follower"
    );
}

#[test]
fn the_flush_timeout_replicates_a_partial_batch() {
    let mut cfg = SimConfig::new(3, 1);
    cfg.server.batch_size = 100;
    cfg.server.flush_batch_tick_timeout = 7;
    let mut s: MemSim = Sim::new(cfg);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    s.append(l, SimEntry { id: 1 }).unwrap();
    s.append(f, SimEntry { id: 2 }).unwrap();
    let ticks = s
        .run_until(30, |s| {
            s.checker().is_decided(1) && s.checker().is_decided(2)
        })
        .expect("the partial batches were flushed");
    assert!(ticks <= 2 * 7 + 2, "took {ticks} ticks");
}

#[test]
fn appends_between_takes_are_coalesced_into_one_message() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let sizes = counting_accepts(&mut s);
    // batch_size 1: each append is in the log at once, but the messages are built when the
    // outgoing messages are taken, so 100 appends travel as one message per follower.
    s.append_batch(l, (1..=100).map(|id| SimEntry { id }).collect())
        .unwrap();
    s.run(2);
    assert_eq!(*sizes.borrow(), vec![100, 100]);
    assert_eq!(s.node(l).unwrap().get_decided_idx(), 100);
}

#[test]
fn flexible_quorum_decides_with_a_small_write_quorum() {
    // 5 nodes, read 4, write 2: two nodes are enough to decide.
    let mut cfg = SimConfig::new(5, 1);
    cfg.flexible_quorum = Some(FlexibleQuorum {
        read_quorum_size: 4,
        write_quorum_size: 2,
    });
    let mut s: MemSim = Sim::new(cfg);
    let l = elect(&mut s, 50);
    let others: Vec<u64> = s.pids().filter(|p| *p != l).collect();
    for &p in &others[1..] {
        s.crash(p);
    }
    append_decided(&mut s, l, 1..6, 20);
    assert_eq!(s.decided(l), 5);
    // Accept phase needs 2, but a new leader needs 4 promises: with only 3 nodes up, none.
    s.crash(l);
    s.restart(others[1]);
    s.restart(others[2]);
    s.run(200);
    assert_eq!(s.leader(), None, "3 promises are not a read quorum of 4");
    s.restart(others[3]);
    let l2 = elect(&mut s, 200);
    // The new leader learned everything decided with only 2 accepts.
    append_decided(&mut s, l2, 6..8, 50);
    assert_eq!(decided_tags(&s), (1..8).collect::<Vec<_>>());
}

#[test]
fn flexible_quorum_elects_with_a_small_read_quorum() {
    // 5 nodes, read 2, write 4: a leader is elected with 2 promises, but deciding needs 4.
    let mut cfg = SimConfig::new(5, 1);
    cfg.flexible_quorum = Some(FlexibleQuorum {
        read_quorum_size: 2,
        write_quorum_size: 4,
    });
    let mut s: MemSim = Sim::new(cfg);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..3, 20);
    let others: Vec<u64> = s.pids().filter(|p| *p != l).collect();
    s.crash(others[0]);
    s.crash(others[1]);
    s.append(l, SimEntry { id: 3 }).unwrap();
    s.run(100);
    assert!(
        !s.checker().is_decided(3),
        "3 accepts are not a write quorum of 4"
    );
    s.restart(others[0]);
    s.run_until(100, |s| s.checker().is_decided(3))
        .expect("decided with 4 accepts");
}
