//! Appends whose fate the library cannot know come back to the application
//! (`take_uncertain_appends`) instead of vanishing: the forward a leader gives up, and what still
//! waits at a node when its configuration stops.

mod common;
use common::*;
use omnipaxos::{messages::Message, ClusterConfig};
use omnipaxos_sim::{SimEntry, Verdict};
use std::{cell::RefCell, rc::Rc};

const E: u64 = 10;

/// Holds back (drops, keeping a copy) `f`'s forwards, and drops what `also_drop` picks.
fn hold_forwards(
    s: &mut MemSim,
    f: u64,
    also_drop: impl Fn(&Message<SimEntry>) -> bool + 'static,
) -> Rc<RefCell<Vec<Message<SimEntry>>>> {
    let held = Rc::new(RefCell::new(Vec::new()));
    let h = held.clone();
    s.set_filter(Some(Box::new(move |m| {
        if kind(m) == "ProposalForward" && m.get_sender() == f {
            h.borrow_mut().push(m.clone());
            return Verdict::Drop;
        }
        if also_drop(m) {
            return Verdict::Drop;
        }
        Verdict::Pass
    })));
    held
}

fn next_config(s: &MemSim) -> ClusterConfig {
    ClusterConfig {
        configuration_id: 2,
        nodes: s.pids().collect(),
        flexible_quorum: None,
    }
}

/// A forward that reaches the leader after it appended a stop sign is given up, and the
/// leader's acknowledgement says so: the entry comes back at the follower, undecided.
#[test]
fn a_forward_the_stopping_leader_refuses_comes_back() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = s.pids().find(|p| *p != l).unwrap();
    append_decided(&mut s, f, 1..4, 60);
    // `f`'s forward is held back, and so are the accepts that would decide the stop sign.
    let held = hold_forwards(&mut s, f, |m| kind(m) == "Accepted");
    s.append(f, SimEntry { id: 10 }).unwrap();
    s.run(2);
    assert_eq!(held.borrow().len(), 1, "the forward is in flight");
    let cfg = next_config(&s);
    s.reconfigure(l, cfg).unwrap();
    s.run(2);
    assert!(s.node(l).unwrap().is_reconfigured().is_none());
    // The forward arrives after the stop sign.
    let late: Vec<Message<SimEntry>> = held.borrow_mut().drain(..).collect();
    for m in late {
        s.node_mut(l).unwrap().handle_incoming(m);
    }
    s.run(2);
    assert_eq!(s.node(l).unwrap().get_stats().abandoned_forwards, 1);
    assert_eq!(
        s.node(f).unwrap().get_stats().uncertain_appends,
        1,
        "the acknowledgement told the follower"
    );
    s.set_filter(None);
    s.run_until(5 * E, |s| s.node(l).unwrap().is_reconfigured().is_some())
        .expect("the stop sign is decided");
    let back = s.node_mut(f).unwrap().take_uncertain_appends();
    assert_eq!(back, vec![SimEntry { id: 10 }]);
    assert!(!s.checker().is_decided(10));
    assert!(s.node_mut(f).unwrap().take_uncertain_appends().is_empty());
    assert_eq!(s.node(f).unwrap().get_stats().uncertain_appends, 1);
}

/// Appends still waiting at a follower when the configuration stops (its forwards lost on the
/// way) come back once it learns of the stop, and survive `start_next_config`.
#[test]
fn appends_waiting_when_the_configuration_stops_come_back() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = s.pids().find(|p| *p != l).unwrap();
    append_decided(&mut s, f, 1..4, 60);
    let held = hold_forwards(&mut s, f, |_| false);
    for id in 10..13 {
        s.append(f, SimEntry { id }).unwrap();
    }
    let cfg = next_config(&s);
    s.reconfigure(l, cfg).unwrap();
    s.run_until(5 * E, |s| {
        s.pids()
            .all(|p| s.node(p).unwrap().is_reconfigured().is_some())
    })
    .expect("every server decides the stop sign");
    assert!(!held.borrow().is_empty(), "the forwards were lost");
    s.run_until(3 * E, |s| {
        s.node(f).unwrap().get_stats().uncertain_appends == 3
    })
    .expect("the follower hands its waiting appends back");
    s.start_next_config(f).unwrap();
    let back = s.node_mut(f).unwrap().take_uncertain_appends();
    assert_eq!(back, (10..13).map(|id| SimEntry { id }).collect::<Vec<_>>());
    assert!((10..13).all(|id| !s.checker().is_decided(id)));
}

/// A leader that cannot tell whether its log holds a proposal forwarded to its predecessor
/// (it restarted since those entries were appended, and the follower never had them, so nobody
/// can tell it their history) gives the proposal up rather than risk deciding it twice; the
/// follower gets it back.
#[test]
fn a_forward_the_new_leader_cannot_check_comes_back() {
    let mut s = sim(3);
    let a = elect(&mut s, 50);
    let others: Vec<u64> = s.pids().filter(|p| *p != a).collect();
    let (f, c) = (others[0], others[1]);
    append_decided(&mut s, a, 1..6, 60);
    #[derive(Default)]
    struct Net {
        /// Everything to and from `f` is lost.
        cut_f: bool,
        /// `f`'s forwards to `a` are held back (kept here, never delivered).
        forwards: Vec<Message<SimEntry>>,
    }
    let net = Rc::new(RefCell::new(Net::default()));
    let n = net.clone();
    s.set_filter(Some(Box::new(move |m| {
        let mut n = n.borrow_mut();
        if kind(m) == "ProposalForward" && m.get_sender() == f && m.get_receiver() == a {
            n.forwards.push(m.clone());
            return Verdict::Drop;
        }
        if n.cut_f && (m.get_sender() == f || m.get_receiver() == f) {
            return Verdict::Drop;
        }
        Verdict::Pass
    })));
    // `c` accepts entries 6..9 that `f` never hears of, then restarts: it forgets their history.
    net.borrow_mut().cut_f = true;
    for id in 6..9 {
        s.append(a, SimEntry { id }).unwrap();
    }
    s.run_until(3 * E, |s| s.node(c).unwrap().get_accepted_idx() == 8)
        .expect("c accepts");
    s.crash(c);
    s.restart(c);
    // `f` (decided 5) forwards a proposal; `a` crashes before it arrives.
    s.append(f, SimEntry { id: 100 }).unwrap();
    s.run(2);
    assert!(!net.borrow().forwards.is_empty());
    s.crash(a);
    net.borrow_mut().cut_f = false;
    // `c` takes over with `f`'s promise, and adopts its own log (the longer one).
    s.node_mut(c).unwrap().try_become_leader();
    s.run_until(5 * E, |s| {
        s.node(f).unwrap().get_stats().uncertain_appends == 1
    })
    .expect("the new leader gives the forward up and tells the follower");
    assert_eq!(s.leader(), Some(c));
    assert_eq!(s.node(c).unwrap().get_stats().abandoned_forwards, 1);
    let back = s.node_mut(f).unwrap().take_uncertain_appends();
    assert_eq!(back, vec![SimEntry { id: 100 }]);
    // Appended again, it is decided.
    net.borrow_mut().forwards.clear();
    s.set_filter(None);
    s.append(f, back[0]).unwrap();
    s.run_until(5 * E, |s| s.checker().is_decided(100))
        .expect("appended again, it is decided");
}
