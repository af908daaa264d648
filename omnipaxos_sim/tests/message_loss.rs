//! Every kind of message can be lost and the protocol still gets there: what is lost is resent
//! (on the resend timeout, 20 ticks here) or repaired when a gap is noticed.

mod common;
use common::*;
use omnipaxos::ClusterConfig;
use omnipaxos_sim::SimEntry;

const RESEND: u64 = 20;

/// Elects a leader while dropping the first `n` messages of `kind`; checks the drops happened
/// and that the cluster still decides.
fn election_survives_loss_of(kind_name: &'static str, n: usize) {
    let mut s = sim(3);
    let (f, dropped) = drop_first(kind_name, n, |_| true);
    s.set_filter(Some(f));
    let l = elect(&mut s, 100 + 2 * RESEND);
    assert_eq!(dropped.get(), n, "the test dropped no {kind_name}");
    append_decided(&mut s, l, 1..6, 2 * RESEND);
    assert_eq!(decided_tags(&s), vec![1, 2, 3, 4, 5]);
}

#[test]
fn lost_prepare_is_resent() {
    election_survives_loss_of("Prepare", 2);
}

#[test]
fn lost_promise_is_recovered() {
    election_survives_loss_of("Promise", 2);
}

#[test]
fn lost_accept_sync_is_resent() {
    election_survives_loss_of("AcceptSync", 2);
}

/// After election, drops the first `n` messages of `kind`, appends, and checks that everything
/// is decided on every node.
fn replication_survives_loss_of(kind_name: &'static str, n: usize) {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let (f, dropped) = drop_first(kind_name, n, |_| true);
    s.set_filter(Some(f));
    append_decided(&mut s, l, 1..4, 3 * RESEND);
    assert_eq!(dropped.get(), n, "the test dropped no {kind_name}");
    append_decided(&mut s, l, 4..8, 3 * RESEND);
    assert_eq!(decided_tags(&s), (1..8).collect::<Vec<_>>());
}

#[test]
fn lost_accept_is_repaired() {
    // The last message of a burst: no later message shows the gap; the resend timeout repairs it.
    replication_survives_loss_of("AcceptDecide", 2);
}

#[test]
fn lost_accepted_is_recovered() {
    replication_survives_loss_of("Accepted", 2);
}

#[test]
fn lost_decide_is_resent() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    // Let the entry be accepted everywhere, then lose the decides that follow.
    let (f, dropped) = drop_first("Decide", 4, |_| true);
    s.set_filter(Some(f));
    s.append(l, SimEntry { id: 1 }).unwrap();
    s.run_until(4 * RESEND, |s| s.pids().all(|p| s.decided(p) == 1))
        .expect("followers learn the decided index although Decides were lost");
    assert!(dropped.get() > 0);
}

#[test]
fn gap_in_the_stream_is_noticed_and_resynced() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    let (filter, dropped) = drop_first("AcceptDecide", 1, move |m| m.get_receiver() == f);
    s.set_filter(Some(filter));
    s.append(l, SimEntry { id: 1 }).unwrap();
    s.step();
    s.append(l, SimEntry { id: 2 }).unwrap();
    // The second AcceptDecide shows F a gap: it asks for a resync at once.
    s.run_until(5, |s| s.decided(f) == 2)
        .expect("the gap was repaired without waiting for a resend timeout");
    assert_eq!(dropped.get(), 1);
}

#[test]
fn lost_prepare_req_of_a_recovering_node_is_resent() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..4, 20);
    let f = if l == 1 { 2 } else { 1 };
    s.crash(f);
    append_decided(&mut s, l, 4..6, 20);
    let (filter, dropped) = drop_first("PrepareReq", 4, |_| true);
    s.set_filter(Some(filter));
    s.restart(f);
    s.run_until(4 * RESEND, |s| s.decided(f) == 5)
        .expect("the restarted node is brought up to date");
    assert!(dropped.get() >= 2, "dropped {}", dropped.get());
}

#[test]
fn dropped_forward_is_retried() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    let (filter, dropped) = drop_first("Proposals", 2, |_| true);
    s.set_filter(Some(filter));
    s.append(f, SimEntry { id: 7 }).unwrap();
    s.run_until(3 * RESEND, |s| s.checker().is_decided(7))
        .expect("the forward was retried");
    assert_eq!(dropped.get(), 2);
    s.run(RESEND * 3);
    assert_eq!(decided_tags(&s), vec![7], "decided once");
}

#[test]
fn duplicated_forward_is_decided_once() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    s.set_filter(Some(Box::new(|m| {
        if kind(m) == "Proposals" {
            omnipaxos_sim::Verdict::Duplicate
        } else {
            omnipaxos_sim::Verdict::Pass
        }
    })));
    for t in 1..=5 {
        s.append(f, SimEntry { id: t }).unwrap();
        s.step();
    }
    s.run(3 * RESEND);
    // The checker fails the run if any append is decided twice.
    assert_eq!(decided_tags(&s), vec![1, 2, 3, 4, 5]);
}

#[test]
fn lost_acks_and_a_leader_crash_still_decide_a_forward_once() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    // The leader appends and replicates the forward, but its acknowledgement is lost, and then
    // the leader crashes: the follower re-forwards to the new leader, which finds it in its log.
    let (filter, _) = drop_first("Placed", 100, |_| true);
    s.set_filter(Some(filter));
    s.append(f, SimEntry { id: 9 }).unwrap();
    s.run_until(10, |s| s.checker().is_decided(9))
        .expect("decided");
    s.crash(l);
    elect(&mut s, 100);
    s.run(4 * RESEND);
    assert_eq!(decided_tags(&s), vec![9]);
}

#[test]
fn lost_stopsign_messages_are_resent() {
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let f = if l == 1 { 2 } else { 1 };
    append_decided(&mut s, l, 1..3, 20);
    let (f1, d1) = drop_first("ForwardStopSign", 1, |_| true);
    s.set_filter(Some(f1));
    let next = ClusterConfig {
        configuration_id: 2,
        nodes: vec![1, 2, 3],
        flexible_quorum: None,
    };
    s.node_mut(f)
        .unwrap()
        .reconfigure(next.clone(), None)
        .unwrap();
    s.run(2);
    assert_eq!(d1.get(), 1);
    let (f2, d2) = drop_first("AcceptStopSign", 2, |_| true);
    s.set_filter(Some(f2));
    s.run_until(5 * RESEND, |s| {
        s.pids()
            .all(|p| s.node(p).unwrap().is_reconfigured().is_some())
    })
    .expect("the stop sign is decided everywhere");
    assert!(d2.get() >= 1);
    let ss = s.node(1).unwrap().is_reconfigured().unwrap();
    assert_eq!(ss.next_config, next);
    // Sealed: nothing more can be appended to this configuration.
    assert!(s.append(l, SimEntry { id: 100 }).is_err());
}
