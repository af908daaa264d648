//! Chapter "Linearizable reads": reads by read index, at any server, without a log write.

use omnipaxos::util::{NodeId, ReadId, ReadIndex};
use omnipaxos_guide::{kv, node_config, KvNode, KvStore, LocalCluster};
use std::collections::HashMap;

// ANCHOR: server
/// The application side of one server: its state machine, and the `Get`s waiting for their
/// read index.
#[derive(Default)]
struct KvServer {
    store: KvStore,
    /// Read id -> the key a client asked for.
    gets: HashMap<ReadId, String>,
    /// Reads the node declared ready, not answered yet.
    ready: Vec<ReadIndex>,
}

impl KvServer {
    /// A client's `Get(key)`: nothing is appended; the node asks the leader for a read index.
    fn get(&mut self, node: &mut KvNode, key: &str) {
        let id = node.request_read();
        self.gets.insert(id, key.to_string());
    }

    /// A client's `Put(key, value)`: appended, answered once decided (not shown).
    fn put(&mut self, node: &mut KvNode, key: &str, value: u64) {
        node.append(kv(key, value)).expect("not reconfiguring");
    }

    /// At the end of each pass of the event loop, after the outgoing messages were taken: the
    /// answers to the `Get`s that can be answered now.
    fn answer_reads(&mut self, node: &mut KvNode) -> Vec<(String, Option<u64>)> {
        // A read is ready once this node decided up to its index ...
        self.ready.extend(node.take_ready_reads());
        // ... so apply the decided log (it reaches every ready index), then read the state.
        if let Err(e) = self.store.catch_up(node) {
            eprintln!("cannot apply the log: {e}"); // the reads wait
        }
        let mut answers = Vec::new();
        for read in std::mem::take(&mut self.ready) {
            if read.index > self.store.applied {
                self.ready.push(read); // not applied that far yet: keep it for the next pass
            } else if let Some(key) = self.gets.remove(&read.id) {
                let value = self.store.map.get(&key).copied();
                answers.push((key, value));
            }
        }
        answers
    }
}
// ANCHOR_END: server

fn other_than(pids: &[NodeId], not: NodeId) -> Vec<NodeId> {
    pids.iter().copied().filter(|p| *p != not).collect()
}

#[test]
fn a_read_at_a_follower() {
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    let follower = other_than(&[1, 2, 3], leader)[0];

    // ANCHOR: event_loop
    let mut server = KvServer::default();
    server.put(cluster.node(leader), "x", 1);
    server.get(cluster.node(follower), "x");
    let mut answers = Vec::new();
    // The passes of the follower's event loop (here: every node ticks and the harness
    // delivers all messages).
    for _ in 0..100 {
        cluster.run(1);
        answers = server.answer_reads(cluster.node(follower));
        if !answers.is_empty() {
            break;
        }
    }
    // The put was decided before the get was answered, so the get sees it.
    assert_eq!(answers, vec![("x".to_string(), Some(1))]);
    assert_eq!(cluster.node(follower).pending_reads(), 0);
    // ANCHOR_END: event_loop
}

#[test]
fn reads_share_one_round() {
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    let mut server = KvServer::default();
    server.put(cluster.node(leader), "y", 5);
    cluster.deliver();
    // ANCHOR: many
    // Reads asked together are confirmed by one round of messages, whatever their number.
    for _ in 0..100 {
        server.get(cluster.node(leader), "y");
    }
    assert_eq!(cluster.node(leader).pending_reads(), 100);
    cluster.deliver();
    let answers = server.answer_reads(cluster.node(leader));
    assert_eq!(answers.len(), 100);
    assert!(answers.iter().all(|a| a.1 == Some(5)));
    // ANCHOR_END: many
}

#[test]
fn a_deposed_leader_reads_stale_state_unless_it_uses_a_read_index() {
    // ANCHOR: stale
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let old = cluster.elect(100);
    let mut old_server = KvServer::default();
    old_server.put(cluster.node(old), "x", 1);
    assert!(cluster.run_until(50, |c| c.all_decided(1)));

    // The old leader is cut off; the other two elect a new leader and decide x = 2.
    let others = other_than(&[1, 2, 3], old);
    for &p in &others {
        cluster.set_link(old, p, false);
    }
    assert!(cluster.run_until(100, |c| c.leader().is_some_and(|l| l != old)));
    let new = cluster.leader().unwrap();
    cluster.node(new).append(kv("x", 2)).unwrap();
    assert!(cluster.run_until(50, |c| c.nodes[&new].get_decided_idx() == 2));

    // Reading the old leader's local state returns x = 1: a write that completed before
    // this read is missing. Not linearizable.
    old_server.store.catch_up(cluster.node(old)).unwrap();
    assert_eq!(old_server.store.map["x"], 1);

    // A read index on the old leader is not answered: it cannot get a quorum to confirm it.
    old_server.get(cluster.node(old), "x");
    cluster.run(50);
    assert!(old_server.answer_reads(cluster.node(old)).is_empty());
    assert_eq!(cluster.node(old).pending_reads(), 1);

    // Once it hears from the others again, the read is asked of the new leader and sees x = 2.
    for &p in &others {
        cluster.set_link(old, p, true);
    }
    let mut answers = Vec::new();
    for _ in 0..100 {
        cluster.run(1);
        answers = old_server.answer_reads(cluster.node(old));
        if !answers.is_empty() {
            break;
        }
    }
    assert_eq!(answers, vec![("x".to_string(), Some(2))]);
    // ANCHOR_END: stale
}

#[test]
fn reads_do_not_survive_the_node() {
    let mut cluster = LocalCluster::with_pids(&[1, 2, 3]);
    let leader = cluster.elect(100);
    let follower = other_than(&[1, 2, 3], leader)[0];
    let cluster_config = omnipaxos::ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    // ANCHOR: lost
    let mut server = KvServer::default();
    server.get(cluster.node(follower), "x");
    // The server crashes before the read is answered, and restarts on its storage.
    let storage = cluster.crash(follower);
    let node: KvNode = node_config(&cluster_config, follower)
        .build(storage)
        .unwrap();
    // The new node knows nothing of the read: the application asks again. Read ids start
    // over with each node, so forget the old ones: the first new id is the old first id.
    assert_eq!(node.pending_reads(), 0);
    cluster.nodes.insert(follower, node);
    let old_ids: Vec<ReadId> = server.gets.drain().map(|(id, _)| id).collect();
    server.ready.clear();
    server.get(cluster.node(follower), "x");
    assert!(server.gets.keys().all(|id| old_ids.contains(id)));
    // ANCHOR_END: lost
    let mut answers = Vec::new();
    for _ in 0..100 {
        cluster.run(1);
        answers = server.answer_reads(cluster.node(follower));
        if !answers.is_empty() {
            break;
        }
    }
    assert_eq!(answers, vec![("x".to_string(), None)]);
}
