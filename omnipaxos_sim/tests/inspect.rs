//! `omnipaxos_sim::inspect` reads what tests may know of a message from its serialized form:
//! its kind, the entries it carries, its ballot.

mod common;
use common::*;
use omnipaxos::messages::Message;
use omnipaxos_sim::{inspect, SimEntry, Verdict};
use std::{cell::RefCell, rc::Rc};

fn sent_while(s: &mut MemSim, f: impl FnOnce(&mut MemSim)) -> Vec<Message<SimEntry>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    s.set_filter(Some(Box::new(move |m| {
        sink.borrow_mut().push(m.clone());
        Verdict::Pass
    })));
    f(s);
    s.set_filter(None);
    let v = seen.borrow().clone();
    v
}

#[test]
fn kinds_entries_and_ballots_of_real_messages() {
    let mut s = sim(3);
    let mut leader = 0;
    let during_election = sent_while(&mut s, |s| leader = elect(s, 50));
    let ballot = s.node(leader).unwrap().get_promise();
    let prepares: Vec<_> = during_election
        .iter()
        .filter(|m| inspect::kind(m) == "Prepare")
        .collect();
    assert!(!prepares.is_empty());
    assert!(prepares
        .iter()
        .all(|m| inspect::ballot(m).is_some_and(|b| b <= ballot && b.pid == m.get_sender())));
    assert!(during_election
        .iter()
        .any(|m| inspect::kind(m) == "Promise" && inspect::ballot(m) == Some(ballot)));
    assert!(during_election
        .iter()
        .any(|m| inspect::kind(m) == "HeartbeatRequest"));
    let replication = sent_while(&mut s, |s| {
        s.append_batch(leader, (1..=7).map(|id| SimEntry { id }).collect())
            .unwrap();
        s.run(5);
    });
    let accepts: Vec<_> = replication
        .iter()
        .filter(|m| inspect::kind(m) == "AcceptDecide")
        .collect();
    assert_eq!(accepts.len(), 2, "one batch per follower");
    for m in accepts {
        assert_eq!(inspect::entries(m), 7);
        assert_eq!(inspect::ballot(m), Some(ballot));
    }
    assert!(replication
        .iter()
        .filter(|m| inspect::kind(m) != "AcceptDecide")
        .all(|m| inspect::entries(m) == 0));
}
