//! When the node writes what it staged, as its storage asks (`Storage::writes_at_once`).
//!
//! `MemoryStorage` asks to be written after every message handled: a leader's decision shows
//! right after the `Accepted` that made it, before the application takes the outgoing messages
//! (the timing of 0.2.4). A durable backend (here `MemoryStorage` with
//! `with_writes_at_once(false)`) is written once per take: the decision shows after the take.
//! Either way the application's appends wait for the take, and nothing unwritten is sent.

mod common;

use common::{cluster_config, server, Node, V};
use omnipaxos::{
    messages::Message, storage::Storage, util::LogEntry, util::NodeId, OmniPaxosConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::BTreeMap;

fn cluster(at_once: bool) -> BTreeMap<NodeId, Node> {
    let mut nodes: BTreeMap<NodeId, Node> = [1, 2, 3]
        .into_iter()
        .map(|pid| {
            let cfg = OmniPaxosConfig {
                cluster_config: cluster_config(1),
                server_config: server(pid),
            };
            let storage = MemoryStorage::default().with_writes_at_once(at_once);
            assert_eq!(storage.writes_at_once(), at_once);
            (pid, cfg.build(storage).unwrap())
        })
        .collect();
    for _ in 0..100 {
        for n in nodes.values_mut() {
            n.tick();
        }
        settle(&mut nodes);
        if leader(&nodes).is_some() {
            return nodes;
        }
    }
    panic!("no leader elected");
}

fn leader(nodes: &BTreeMap<NodeId, Node>) -> Option<NodeId> {
    nodes
        .iter()
        .find(|(pid, n)| n.get_current_leader() == Some((**pid, true)))
        .map(|(pid, _)| *pid)
}

/// Delivers every message (taking after every handled one) until none is left.
fn settle(nodes: &mut BTreeMap<NodeId, Node>) {
    let mut msgs = Vec::new();
    for n in nodes.values_mut() {
        n.take_outgoing_messages(&mut msgs);
    }
    while !msgs.is_empty() {
        let mut next = Vec::new();
        for m in msgs {
            if let Some(n) = nodes.get_mut(&m.get_receiver()) {
                n.handle_incoming(m);
                n.take_outgoing_messages(&mut next);
            }
        }
        msgs = next;
    }
}

/// Appends `V(7)` at the leader and brings the followers' `Accepted`s back to it, handled but
/// with nothing taken from the leader since. Returns the leader and its pending messages.
fn accepted_not_taken(nodes: &mut BTreeMap<NodeId, Node>) -> NodeId {
    let l = leader(nodes).unwrap();
    let base = nodes[&l].get_decided_idx();
    nodes.get_mut(&l).unwrap().append(V(7)).unwrap();
    // An append waits for the take, whatever the storage asks.
    assert_eq!(nodes[&l].get_accepted_idx(), base);
    let mut accepts = Vec::new();
    nodes
        .get_mut(&l)
        .unwrap()
        .take_outgoing_messages(&mut accepts);
    assert_eq!(nodes[&l].get_accepted_idx(), base + 1);
    let mut replies: Vec<Message<V>> = Vec::new();
    for m in accepts {
        let to = m.get_receiver();
        let f = nodes.get_mut(&to).unwrap();
        f.handle_incoming(m);
        f.take_outgoing_messages(&mut replies);
    }
    for m in replies.into_iter().filter(|m| m.get_receiver() == l) {
        nodes.get_mut(&l).unwrap().handle_incoming(m);
    }
    l
}

#[test]
fn memory_storage_shows_a_decision_as_soon_as_the_accepted_is_handled() {
    let mut nodes = cluster(true);
    let base = nodes[&leader(&nodes).unwrap()].get_decided_idx();
    let l = accepted_not_taken(&mut nodes);
    // No take since the Accepted: the decision is written, and readable, already.
    assert_eq!(nodes[&l].get_decided_idx(), base + 1);
    assert_eq!(
        nodes[&l].read_decided_suffix(base),
        Some(vec![LogEntry::Decided(V(7))])
    );
    // The followers learn it with the leader's next messages, as usual.
    settle(&mut nodes);
    for n in nodes.values() {
        assert_eq!(n.get_decided_idx(), base + 1);
    }
}

#[test]
fn a_backend_written_per_take_shows_the_decision_after_the_take() {
    let mut nodes = cluster(false);
    let base = nodes[&leader(&nodes).unwrap()].get_decided_idx();
    let l = accepted_not_taken(&mut nodes);
    assert_eq!(
        nodes[&l].get_decided_idx(),
        base,
        "not written before the take"
    );
    assert_eq!(nodes[&l].read_decided_suffix(base), None);
    let mut out = Vec::new();
    nodes.get_mut(&l).unwrap().take_outgoing_messages(&mut out);
    assert_eq!(nodes[&l].get_decided_idx(), base + 1);
    assert_eq!(
        nodes[&l].read_decided_suffix(base),
        Some(vec![LogEntry::Decided(V(7))])
    );
}

/// A follower handles the leader's accept of `V(2)`, which carries the decision of `V(7)`.
/// Returns (decided, accepted) at the follower before it takes its own messages, and after.
fn follower_sees(at_once: bool) -> ((usize, usize), (usize, usize), usize) {
    let mut nodes = cluster(at_once);
    let base = nodes[&leader(&nodes).unwrap()].get_decided_idx();
    let l = accepted_not_taken(&mut nodes);
    // The followers did not hear of the decision yet: it goes with the next accept.
    nodes.get_mut(&l).unwrap().append(V(2)).unwrap();
    let mut accepts = Vec::new();
    nodes
        .get_mut(&l)
        .unwrap()
        .take_outgoing_messages(&mut accepts);
    let f = if l == 1 { 2 } else { 1 };
    for m in accepts.into_iter().filter(|m| m.get_receiver() == f) {
        nodes.get_mut(&f).unwrap().handle_incoming(m);
    }
    let before = (nodes[&f].get_decided_idx(), nodes[&f].get_accepted_idx());
    let mut out = Vec::new();
    nodes.get_mut(&f).unwrap().take_outgoing_messages(&mut out);
    let after = (nodes[&f].get_decided_idx(), nodes[&f].get_accepted_idx());
    (before, after, base)
}

#[test]
fn a_follower_shows_what_an_accept_decided_when_its_storage_is_written() {
    let (before, after, base) = follower_sees(true);
    assert_eq!(before, (base + 1, base + 2), "memory storage: at once");
    assert_eq!(after, (base + 1, base + 2));
    let (before, after, base) = follower_sees(false);
    assert_eq!(before, (base, base + 1), "per take: not before the take");
    assert_eq!(after, (base + 1, base + 2));
}

#[test]
fn with_batch_size_one_appends_go_into_the_log_together_at_the_take() {
    let mut nodes = cluster(true);
    let l = leader(&nodes).unwrap();
    let base = nodes[&l].get_accepted_idx();
    let n = nodes.get_mut(&l).unwrap();
    for i in 0..3 {
        n.append(V(100 + i)).unwrap();
    }
    // Nothing leaves or shows before the take: the appends wait together.
    assert_eq!(n.get_batched_len(), 3);
    assert_eq!(n.get_accepted_idx(), base);
    let mut out = Vec::new();
    n.take_outgoing_messages(&mut out);
    // At the take they are placed and written at once, and each follower gets one message.
    assert_eq!(n.get_batched_len(), 0);
    assert_eq!(n.get_accepted_idx(), base + 3);
    for f in [1, 2, 3].into_iter().filter(|p| *p != l) {
        assert_eq!(out.iter().filter(|m| m.get_receiver() == f).count(), 1);
    }
    for m in out {
        let to = m.get_receiver();
        nodes.get_mut(&to).unwrap().handle_incoming(m);
    }
    settle(&mut nodes);
    for node in nodes.values() {
        assert_eq!(node.get_decided_idx(), base + 3);
    }
}

/// The read-index protocol's messages depend on no write, so they leave ahead of it
/// (`take_messages_ahead_of_write`): a follower that staged an accept hands out its read
/// request at once, and its `Accepted` only with the take that writes it.
#[test]
fn read_requests_leave_ahead_of_the_write_and_acknowledgements_after_it() {
    let mut nodes = cluster(false);
    let l = leader(&nodes).unwrap();
    let f = *nodes.keys().find(|p| **p != l).unwrap();
    nodes.get_mut(&l).unwrap().append(V(7)).unwrap();
    let mut from_leader = Vec::new();
    nodes
        .get_mut(&l)
        .unwrap()
        .take_outgoing_messages(&mut from_leader);
    // Everything decided anywhere when the read is asked; entry 7 is not yet.
    let decided_before = nodes.values().map(|n| n.get_decided_idx()).max().unwrap();
    let fo = nodes.get_mut(&f).unwrap();
    let accepted = fo.get_accepted_idx();
    for m in from_leader.iter().filter(|m| m.get_receiver() == f) {
        fo.handle_incoming(m.clone());
    }
    let read = fo.request_read();
    let mut ahead = Vec::new();
    fo.take_messages_ahead_of_write(&mut ahead);
    let kinds: Vec<&str> = ahead.iter().map(Message::kind).collect();
    assert_eq!(kinds, ["ReadReq"], "{ahead:?}");
    assert_eq!(fo.get_accepted_idx(), accepted, "not written yet");
    let mut rest = Vec::new();
    fo.take_outgoing_messages(&mut rest);
    let kinds: Vec<&str> = rest.iter().map(Message::kind).collect();
    assert!(kinds.contains(&"Accepted"), "{rest:?}");
    assert!(!kinds.contains(&"ReadReq"), "sent twice: {rest:?}");
    assert_eq!(fo.get_accepted_idx(), accepted + 1);
    // The leader's confirmation round leaves ahead of its write too, and the read is answered
    // with an index that covers everything decided when it was asked.
    for m in ahead.into_iter().chain(rest) {
        let to = m.get_receiver();
        nodes.get_mut(&to).unwrap().handle_incoming(m);
    }
    let mut confirm = Vec::new();
    nodes
        .get_mut(&l)
        .unwrap()
        .take_messages_ahead_of_write(&mut confirm);
    assert!(
        confirm.iter().any(|m| m.kind() == "ReadConfirm"),
        "{confirm:?}"
    );
    for m in confirm {
        let to = m.get_receiver();
        nodes.get_mut(&to).unwrap().handle_incoming(m);
    }
    settle(&mut nodes);
    let ready = nodes.get_mut(&f).unwrap().take_ready_reads();
    let r = ready
        .iter()
        .find(|r| r.id == read)
        .expect("the read is ready");
    assert!(
        r.index >= decided_before,
        "read index {} below {decided_before}, decided before the read",
        r.index
    );
}
