//! `start_next_config` carries over every append the stopped configuration did not decide.
//!
//! An application may see its configuration end (`is_reconfigured`, or the decided stop sign in
//! `read_decided_suffix`) as soon as the stop sign's decision is written, which a `tick` does;
//! the messages that decision causes are built at the next `take_outgoing_messages`. An
//! application that moves on right then, with `start_next_config`, must still get back the
//! appends its node held (the forwarding contract: an append that returned `Ok` is decided or
//! handed back), not lose them with the old node.

mod common;

use common::{cluster_config, server, Node, V};
use omnipaxos::{
    messages::Message,
    util::{AppendOutcome, NodeId},
    OmniPaxosConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::BTreeMap;

/// Moves messages among `nodes` until none is left; messages to `held` are kept aside in
/// `held_msgs` (handed to it later), and `held` itself sends nothing.
fn deliver(
    nodes: &mut BTreeMap<NodeId, Node>,
    mut msgs: Vec<Message<V>>,
    held: NodeId,
    held_msgs: &mut Vec<Message<V>>,
) {
    while !msgs.is_empty() {
        let mut next = Vec::new();
        for m in msgs {
            let to = m.get_receiver();
            if to == held {
                held_msgs.push(m);
            } else if let Some(n) = nodes.get_mut(&to) {
                n.handle_incoming(m);
                n.take_outgoing_messages(&mut next);
            }
        }
        msgs = next;
    }
}

#[test]
fn appends_held_when_the_stop_sign_is_decided_come_back_across_start_next_config() {
    let mut nodes: BTreeMap<NodeId, Node> = [1, 2, 3]
        .into_iter()
        .map(|pid| {
            let cfg = OmniPaxosConfig {
                cluster_config: cluster_config(1),
                server_config: server(pid),
            };
            (pid, cfg.build(MemoryStorage::default()).unwrap())
        })
        .collect();
    // Elect a leader with every message delivered.
    let mut leader = None;
    for _ in 0..200 {
        let mut msgs = Vec::new();
        for n in nodes.values_mut() {
            n.tick();
            n.take_outgoing_messages(&mut msgs);
        }
        let mut none = Vec::new();
        deliver(&mut nodes, msgs, 0, &mut none);
        leader = nodes
            .values()
            .find_map(|n| n.get_current_leader().filter(|l| l.1).map(|l| l.0));
        let all_follow = leader.is_some_and(|l| {
            nodes
                .values()
                .all(|n| n.get_current_leader().map(|x| x.0) == Some(l))
        });
        if all_follow {
            break;
        }
    }
    let leader = leader.expect("a leader");
    let follower = [1, 2, 3].into_iter().find(|p| *p != leader).unwrap();

    // The follower appends; its forward is lost (it sends nothing from now on).
    nodes.get_mut(&follower).unwrap().append(V(7)).unwrap();
    // The leader stops the configuration; it and the third server decide the stop sign.
    let mut held_msgs = Vec::new();
    nodes
        .get_mut(&leader)
        .unwrap()
        .reconfigure(cluster_config(2), None)
        .unwrap();
    let mut msgs = Vec::new();
    nodes
        .get_mut(&leader)
        .unwrap()
        .take_outgoing_messages(&mut msgs);
    deliver(&mut nodes, msgs, follower, &mut held_msgs);
    for _ in 0..20 {
        let mut msgs = Vec::new();
        for (pid, n) in nodes.iter_mut() {
            if *pid != follower {
                n.tick();
                n.take_outgoing_messages(&mut msgs);
            }
        }
        deliver(&mut nodes, msgs, follower, &mut held_msgs);
    }
    assert!(nodes[&leader].is_reconfigured().is_some());

    // The follower hears the leader and ticks; it does not take its outgoing messages before
    // it sees the stop sign decided and moves on.
    let f = nodes.get_mut(&follower).unwrap();
    for m in held_msgs {
        f.handle_incoming(m);
    }
    f.tick();
    assert!(
        f.is_reconfigured().is_some(),
        "the follower decided the stop sign"
    );
    let old = nodes.remove(&follower).unwrap();
    let mut next = old
        .start_next_config(server(follower))
        .ok()
        .expect("the next configuration");
    let back = next.take_returned_appends();
    assert_eq!(back.len(), 1, "the append comes back: {back:?}");
    assert_eq!(back[0].entry, V(7));
    assert_eq!(back[0].outcome, AppendOutcome::Unknown);
}
