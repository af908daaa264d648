//! crates.io `omnipaxos` 0.2.4, on crates.io `omnipaxos_storage` 0.2.4's `MemoryStorage`.

use crate::workload::{Applying, Cluster, Payload};
use omnipaxos_storage_up::memory_storage::MemoryStorage;
use omnipaxos_up::{
    messages::Message, util::LogEntry, ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};

/// Three nodes of omnipaxos 0.2.4.
pub struct Upstream<P: Payload + omnipaxos_up::storage::Entry> {
    nodes: Vec<OmniPaxos<P, MemoryStorage<P>>>,
    live: [bool; 3],
    applied_idx: [usize; 3],
    applied: [u64; 3],
    last_seq: [Option<u64>; 3],
    buf: Vec<Message<P>>,
}

impl<P: Payload + omnipaxos_up::storage::Entry> Cluster<P> for Upstream<P> {
    const NAME: &'static str = "omnipaxos 0.2.4";

    fn new(election_ticks: u64) -> Self {
        let cluster = ClusterConfig {
            configuration_id: 1,
            nodes: vec![1, 2, 3],
            flexible_quorum: None,
        };
        let nodes = (1..=3)
            .map(|pid| {
                let server = ServerConfig {
                    pid,
                    election_tick_timeout: election_ticks,
                    resend_message_tick_timeout: election_ticks,
                    flush_batch_tick_timeout: election_ticks,
                    batch_size: 1,
                    ..Default::default()
                };
                OmniPaxosConfig {
                    cluster_config: cluster.clone(),
                    server_config: server,
                }
                .build(MemoryStorage::default())
                .expect("valid configuration")
            })
            .collect();
        let mut c = Upstream {
            nodes,
            live: [true; 3],
            applied_idx: [0; 3],
            applied: [0; 3],
            last_seq: [None; 3],
            buf: Vec::new(),
        };
        crate::workload::elect(&mut c, 1_000);
        c
    }

    fn leader(&self) -> Option<usize> {
        (0..3).find(|&i| {
            self.live[i] && self.nodes[i].get_current_leader() == Some((i as u64 + 1, true))
        })
    }

    fn propose(&mut self, node: usize, seq: u64) {
        self.nodes[node]
            .append(P::make(seq))
            .expect("the configuration is not stopped");
    }

    fn deliver(&mut self, apply_at: Applying) -> bool {
        for i in 0..3 {
            if self.live[i] {
                self.nodes[i].take_outgoing_messages(&mut self.buf);
            }
        }
        let moved = !self.buf.is_empty();
        for m in self.buf.drain(..) {
            let to = m.get_receiver() as usize - 1;
            if self.live[to] {
                self.nodes[to].handle_incoming(m);
            }
        }
        for i in 0..3 {
            if self.live[i] && apply_at.includes(i) {
                self.apply(i);
            }
        }
        moved
    }

    fn tick(&mut self) {
        for i in 0..3 {
            if self.live[i] {
                self.nodes[i].tick();
            }
        }
    }

    fn crash(&mut self, node: usize) {
        self.live[node] = false;
    }

    fn applied(&self, node: usize) -> u64 {
        self.applied[node]
    }

    fn last_applied_seq(&self, node: usize) -> Option<u64> {
        self.last_seq[node]
    }
}

impl<P: Payload + omnipaxos_up::storage::Entry> Upstream<P> {
    fn apply(&mut self, i: usize) {
        let node = &self.nodes[i];
        let Some(entries) = node.read_decided_suffix(self.applied_idx[i]) else {
            return;
        };
        for e in entries {
            if let LogEntry::Decided(e) = e {
                self.last_seq[i] = Some(e.seq());
                self.applied[i] += 1;
            }
        }
        self.applied_idx[i] = node.get_decided_idx();
    }
}
