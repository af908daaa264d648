//! Each node in its own thread, messages over channels, ticks from a real clock.
//!
//! `cargo run -p omnipaxos_guide --example channels`

use omnipaxos::{messages::Message, util::LogEntry, util::NodeId, ClusterConfig};
use omnipaxos_guide::{kv, KeyValue, KvNode};
use omnipaxos_storage::MemoryStorage;
use std::{
    collections::HashMap,
    sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender},
    thread,
    time::{Duration, Instant},
};

// ANCHOR: input
/// What a server's thread receives: a message from a peer, a request from a client, or the
/// order to stop.
enum Input {
    Peer(Box<Message<KeyValue>>), // boxed: a message is much larger than the other inputs
    Append(KeyValue),
    Stop,
}
// ANCHOR_END: input

// ANCHOR: server
/// Period of `tick()`. With `election_tick_timeout = 5`, a heartbeat round lasts 50 ms.
const TICK: Duration = Duration::from_millis(10);

/// The event loop of one server: receive, tick on time, send, apply what is decided.
fn run_server(
    mut node: KvNode,
    inbox: Receiver<Input>,
    peers: HashMap<NodeId, Sender<Input>>,
    applied_tx: Sender<(NodeId, KeyValue)>,
) {
    let pid = node.get_pid();
    let mut outgoing = Vec::new();
    let mut applied_up_to = 0; // the decided index this server's state machine has reached
    let mut next_tick = Instant::now() + TICK;
    loop {
        // Wait for input, but no longer than the next tick is due.
        let wait = next_tick.saturating_duration_since(Instant::now());
        match inbox.recv_timeout(wait) {
            Ok(Input::Peer(msg)) => node.handle_incoming(*msg),
            Ok(Input::Append(entry)) => node.append(entry).expect("not reconfiguring"),
            Ok(Input::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() >= next_tick {
            node.tick();
            next_tick += TICK;
        }
        // Send everything the node produced. Its storage already holds what the messages
        // promise, so they can go out at once. A peer that is gone is simply unreachable.
        node.take_outgoing_messages(&mut outgoing);
        for msg in outgoing.drain(..) {
            if let Some(peer) = peers.get(&msg.get_receiver()) {
                let _ = peer.send(Input::Peer(Box::new(msg)));
            }
        }
        // Apply the newly decided entries, in order, exactly once.
        if let Some(entries) = node.read_decided_suffix(applied_up_to) {
            for entry in entries {
                if let LogEntry::Decided(kv) = entry {
                    let _ = applied_tx.send((pid, kv));
                }
            }
            applied_up_to = node.get_decided_idx();
        }
    }
}
// ANCHOR_END: server

// ANCHOR: main
/// Starts three servers, sends ten writes to server 1, and checks all servers apply them.
pub fn main() {
    let cluster = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    let (senders, inboxes): (HashMap<_, _>, Vec<_>) = cluster
        .nodes
        .iter()
        .map(|&pid| {
            let (tx, rx) = channel();
            ((pid, tx), (pid, rx))
        })
        .unzip();
    let (applied_tx, applied_rx) = channel();
    let mut threads = Vec::new();
    for (pid, inbox) in inboxes {
        let node: KvNode = omnipaxos_guide::node_config(&cluster, pid)
            .build(MemoryStorage::default())
            .expect("a valid configuration");
        let peers = senders.clone();
        let applied_tx = applied_tx.clone();
        threads.push(thread::spawn(move || {
            run_server(node, inbox, peers, applied_tx)
        }));
    }

    // Clients may talk to any server: node 1 forwards to the leader if it is not the leader.
    for i in 0..10 {
        senders[&1]
            .send(Input::Append(kv("counter", i)))
            .expect("server 1 runs");
    }

    // Every server applies the same ten writes, in the same order.
    let mut applied: HashMap<NodeId, Vec<u64>> = HashMap::new();
    while applied.values().map(Vec::len).sum::<usize>() < 30 {
        let (pid, kv) = applied_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writes are decided");
        applied.entry(pid).or_default().push(kv.value);
    }
    for (pid, values) in &applied {
        assert_eq!(values, &(0..10).collect::<Vec<_>>(), "server {pid}");
    }
    println!("all servers applied {:?}", applied[&1]);

    for tx in senders.values() {
        let _ = tx.send(Input::Stop);
    }
    for t in threads {
        t.join().expect("server thread");
    }
}
// ANCHOR_END: main
