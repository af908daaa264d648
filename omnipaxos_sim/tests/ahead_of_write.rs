//! A leader's accepts sent ahead of its own write
//! (`OmniPaxos::take_messages_ahead_of_write`): the followers' writes overlap the leader's, the
//! leader counts itself only once written, and a leader that crashes between sending and
//! writing loses nothing that was decided.

mod common;
use common::*;
use omnipaxos_sim::SimEntry;

const E: u64 = 10; // election timeout in ticks (SimConfig::new)

#[test]
fn accepts_leave_before_the_leaders_write_and_it_counts_itself_only_after() {
    let mut s = sim(3);
    let l = elect(&mut s, 20 * E);
    append_decided(&mut s, l, 1..3, 20 * E);
    s.note_direct_append(l, 10);
    let op = s.node_mut(l).unwrap();
    let accepted = op.get_accepted_idx();
    op.append(SimEntry { id: 10 }).unwrap();
    op.flush_batch();
    let mut ahead = Vec::new();
    op.take_messages_ahead_of_write(&mut ahead);
    let kinds: Vec<&str> = ahead.iter().map(kind).collect();
    assert_eq!(kinds, ["AcceptDecide", "AcceptDecide"], "{ahead:?}");
    assert!(ahead.iter().all(|m| m.entry_count() == 1));
    // Not written yet: the leader's log (what it shows) did not grow.
    assert_eq!(op.get_accepted_idx(), accepted);
    // The rest: the write happens, and nothing is sent twice.
    let mut rest = Vec::new();
    op.take_outgoing_messages(&mut rest);
    assert_eq!(op.get_accepted_idx(), accepted + 1);
    assert!(
        rest.iter().all(|m| m.entry_count() == 0),
        "entries sent again after the write: {rest:?}"
    );
    // Deliver everything: decided everywhere.
    for m in ahead.into_iter().chain(rest) {
        let to = m.get_receiver();
        s.node_mut(to).unwrap().handle_incoming(m);
    }
    s.run_until(5 * E, |s| s.pids().all(|p| s.decided(p) > accepted))
        .expect("the entry is decided everywhere");
    assert!(s.checker().is_decided(10));
}

/// The leader sends its accepts and crashes before its write: both followers hold the entry,
/// the leader does not. The next leader adopts the followers' longer log; the entry is decided
/// at the index the followers hold it, and the old leader gets it back when it returns.
#[test]
fn a_leader_that_crashes_before_its_write_loses_nothing_its_followers_hold() {
    let mut s = sim(3);
    let l = elect(&mut s, 20 * E);
    append_decided(&mut s, l, 1..3, 20 * E);
    s.note_direct_append(l, 10);
    let op = s.node_mut(l).unwrap();
    let idx = op.get_accepted_idx();
    op.append(SimEntry { id: 10 }).unwrap();
    op.flush_batch();
    let mut ahead = Vec::new();
    op.take_messages_ahead_of_write(&mut ahead);
    s.crash(l);
    for m in ahead {
        let to = m.get_receiver();
        s.node_mut(to).unwrap().handle_incoming(m);
    }
    let others: Vec<u64> = (1..=3).filter(|p| *p != l).collect();
    s.run_until(40 * E, |s| s.leader().is_some_and(|x| x != l))
        .expect("a follower takes over");
    s.run_until(10 * E, |s| s.checker().is_decided(10))
        .expect("the entry the followers hold is decided");
    s.restart(l);
    s.run_until(20 * E, |s| s.decided(l) > idx)
        .expect("the old leader learns it");
    assert_eq!(
        s.node(l).unwrap().read_decided_suffix(idx).map(|v| v.len()),
        Some(1)
    );
    for p in others {
        assert!(s.decided(p) > idx);
    }
}
