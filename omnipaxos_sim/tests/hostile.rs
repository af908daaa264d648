//! Hostile input: bytes that do not decode, and well-formed messages that lie about who sent
//! them, which configuration they belong to, or carry impossible indices and ballots. None may
//! panic a node or break the safety checks (run after every step by the simulator).

mod common;
use bincode::Options;
use common::*;
use omnipaxos::{
    ballot_leader_election::{Ballot, HeartbeatMsg},
    messages::{sequence_paxos::PaxosMsg, Message},
};
use omnipaxos_sim::{Rng, SimEntry, Verdict};
use std::{cell::RefCell, rc::Rc};

fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_limit(1 << 20)
}

/// Real messages of a busy 3-node cluster.
fn captured_messages() -> Vec<Message<SimEntry>> {
    let mut s = sim(3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    s.set_filter(Some(Box::new(move |m| {
        sink.borrow_mut().push(m.clone());
        Verdict::Pass
    })));
    let l = elect(&mut s, 50);
    for t in 1..40 {
        let at = 1 + t % 3;
        let _ = s.append(at, SimEntry { id: t });
        s.step();
        if t == 20 {
            s.crash(l);
        }
    }
    s.run(100);
    let v = seen.borrow().clone();
    v
}

#[test]
fn random_bytes_decode_to_errors_without_panicking() {
    let mut rng = Rng::new(99);
    let mut errors = 0;
    for _ in 0..20_000 {
        let len = rng.range(0, 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if codec().deserialize::<Message<SimEntry>>(&bytes).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > 19_000,
        "only {errors} of 20000 random byte strings were rejected"
    );
}

#[test]
fn huge_length_prefixes_are_errors_not_allocations() {
    let msgs = captured_messages();
    let mut checked = 0;
    for m in msgs.iter().filter(|m| kind(m) == "AcceptDecide").take(20) {
        let bytes = codec().serialize(m).unwrap();
        // Overwrite every 8-byte window with a huge number: one of them is the length of the
        // entries; a decoder that trusted it would try to allocate exabytes.
        for i in 0..bytes.len().saturating_sub(8) {
            let mut b = bytes.clone();
            b[i..i + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let _ = codec().deserialize::<Message<SimEntry>>(&b);
            // The default options (no limit) must not allocate without bound either.
            let _ = bincode::deserialize::<Message<SimEntry>>(&b);
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn flipped_bytes_of_real_messages_never_panic_a_node() {
    let msgs = captured_messages();
    let mut s = sim(3);
    let l = elect(&mut s, 50);
    let mut rng = Rng::new(5);
    let mut delivered = 0;
    for m in msgs.iter().cycle().take(5_000) {
        let mut b = codec().serialize(m).unwrap();
        for _ in 0..rng.range(1, 4) {
            let i = rng.index(b.len());
            b[i] ^= 1 << rng.range(0, 7);
        }
        if let Ok(bad) = codec().deserialize::<Message<SimEntry>>(&b) {
            let to = bad.get_receiver();
            if let Some(node) = s.node_mut(to) {
                node.handle_incoming(bad);
                delivered += 1;
            }
        }
        s.step();
    }
    assert!(
        delivered > 1_000,
        "only {delivered} mutated messages decoded"
    );
    // Still a working cluster (the checker ran after every step).
    let l2 = elect(&mut s, 200);
    append_decided(&mut s, l2, 1_000_000..1_000_005, 100);
    let _ = l;
}

/// Turns `m` into a hostile variant of kind `k`.
fn make_hostile(m: &Message<SimEntry>, k: u64, rng: &mut Rng) -> Message<SimEntry> {
    let mut m = m.clone();
    let huge = [usize::MAX, usize::MAX / 2, 1 << 40][rng.index(3)];
    let extreme = Ballot::with(1, u32::MAX, u32::MAX, 1 + rng.range(0, 2));
    match (&mut m, k) {
        (Message::SequencePaxos(p), 0) => p.from = 99,
        (Message::BLE(b), 0) => b.from = 99,
        (Message::SequencePaxos(p), 1) => p.to = 42,
        (Message::BLE(b), 1) => b.to = 42,
        (Message::SequencePaxos(p), 2) => set_config(&mut p.msg, 7),
        (Message::BLE(b), 2) => {
            if let HeartbeatMsg::Request(r) = &mut b.msg {
                r.config_id = 7
            }
        }
        (Message::SequencePaxos(p), 3) => set_indices(&mut p.msg, huge),
        (Message::SequencePaxos(p), 4) => set_ballot(&mut p.msg, Ballot::default()),
        (Message::SequencePaxos(p), _) => set_ballot(&mut p.msg, extreme),
        (Message::BLE(b), _) => {
            if let HeartbeatMsg::Reply(r) = &mut b.msg {
                r.ballot.n = u32::MAX;
                r.leader = extreme;
            }
        }
    }
    m
}

fn set_config(msg: &mut PaxosMsg<SimEntry>, c: u32) {
    let mut b = msg.ballot();
    b.config_id = c;
    set_ballot(msg, b);
}

fn set_ballot(msg: &mut PaxosMsg<SimEntry>, b: Ballot) {
    match msg {
        PaxosMsg::PrepareReq(m) => m.n = b,
        PaxosMsg::Prepare(m) => m.n = b,
        PaxosMsg::Promise(m) => m.n = b,
        PaxosMsg::AcceptSync(m) => m.n = b,
        PaxosMsg::AcceptDecide(m) => m.n = b,
        PaxosMsg::AcceptStopSign(m) => m.n = b,
        PaxosMsg::Accepted(m) => m.n = b,
        PaxosMsg::Decide(m) => m.n = b,
        PaxosMsg::NotAccepted(m) => m.n = b,
        PaxosMsg::ResyncReq(m) => m.n = b,
        PaxosMsg::ProposalForward(m) => m.n = b,
        PaxosMsg::ForwardAck(m) => m.n = b,
        PaxosMsg::ForwardStopSign(m) => m.n = b,
        PaxosMsg::NewBallotReq(m) => m.n = b,
        PaxosMsg::Compaction(m) => m.n = b,
        PaxosMsg::Migration(_) => {}
    }
}

fn set_indices(msg: &mut PaxosMsg<SimEntry>, i: usize) {
    match msg {
        PaxosMsg::Prepare(m) => {
            m.accepted_idx = i;
            m.decided_idx = i;
        }
        PaxosMsg::Promise(m) => {
            m.accepted_idx = i;
            if let Some(s) = &mut m.log_sync {
                s.sync_idx = i;
            }
        }
        PaxosMsg::AcceptSync(m) => m.log_sync.sync_idx = i,
        PaxosMsg::AcceptDecide(m) => m.start_idx = i,
        PaxosMsg::AcceptStopSign(m) => m.idx = i,
        PaxosMsg::Accepted(m) => m.accepted_idx = i,
        PaxosMsg::ResyncReq(m) => {
            m.accepted_idx = i;
            m.decided_idx = i;
        }
        PaxosMsg::ProposalForward(m) => m.first_seq = i as u64,
        PaxosMsg::ForwardAck(m) => m.session = i as u64,
        _ => {}
    }
}

/// Structurally hostile messages (unknown sender, wrong receiver, other configuration,
/// impossible indices, zero or maximal ballots) delivered throughout a busy run.
#[test]
fn hostile_messages_never_panic_nor_break_safety() {
    let msgs = captured_messages();
    for seed in 0..20u64 {
        let mut s = sim(3);
        let mut rng = Rng::new(seed);
        let l = elect(&mut s, 50);
        let mut tag = 1;
        for _ in 0..400 {
            if rng.chance(0.3) {
                let at = 1 + rng.range(0, 2);
                let _ = s.append(at, SimEntry { id: tag });
                tag += 1;
            }
            if rng.chance(0.5) {
                let m = &msgs[rng.index(msgs.len())];
                // Kinds 0-4 only; maximal ballots are exercised below (they stall elections by
                // design: no ballot is higher).
                let k = rng.range(0, 4);
                let bad = make_hostile(m, k, &mut rng);
                let to = bad.get_receiver();
                if let Some(node) = s.node_mut(to) {
                    node.handle_incoming(bad);
                }
            }
            s.step();
        }
        // Ignored or harmless: the cluster still has its leader and decides.
        let leader = elect(&mut s, 200);
        append_decided(&mut s, leader, 1_000_000..1_000_003, 200);
        let _ = l;
    }
}

#[test]
fn maximal_ballots_never_panic_nor_break_safety() {
    let msgs = captured_messages();
    let mut s = sim(3);
    let mut rng = Rng::new(3);
    elect(&mut s, 50);
    for i in 0..300u64 {
        let m = &msgs[rng.index(msgs.len())];
        let bad = make_hostile(m, 5, &mut rng);
        if let Some(node) = s.node_mut(bad.get_receiver()) {
            node.handle_incoming(bad);
        }
        let _ = s.append(1 + i % 3, SimEntry { id: i + 1 });
        s.step();
    }
    s.run(200);
    // Safety was checked after every step; a ballot at its maximum must not overflow anything.
    assert!(s.pids().all(|p| s.node(p).is_some()));
}
