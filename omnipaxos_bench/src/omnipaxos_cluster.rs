//! The adapter for an OmniPaxos version: this workspace's and crates.io 0.2.4 share their API
//! (the renamed dependency has the same paths), so one definition serves both.

/// Defines `$name`, three nodes of the OmniPaxos crate `$op` on the `MemoryStorage` of `$st`,
/// reported as `$label`. Every system gets the same settings in spirit: leader election every
/// `election_ticks`, everything else at its default (one entry per batch: no waiting).
macro_rules! omnipaxos_cluster {
    ($(#[$doc:meta])* $name:ident, $op:ident, $st:ident, $label:expr) => {
        $(#[$doc])*
        pub struct $name<P: $crate::workload::Payload + $op::storage::Entry> {
            nodes: Vec<$op::OmniPaxos<P, $st::memory_storage::MemoryStorage<P>>>,
            live: [bool; 3],
            applied_idx: [usize; 3],
            applied: [u64; 3],
            last_seq: [Option<u64>; 3],
            /// Reused between rounds.
            buf: Vec<$op::messages::Message<P>>,
        }

        impl<P: $crate::workload::Payload + $op::storage::Entry> $crate::workload::Cluster<P> for $name<P> {
            const NAME: &'static str = $label;

            fn new(election_ticks: u64) -> Self {
                let cluster = $op::ClusterConfig {
                    configuration_id: 1,
                    nodes: vec![1, 2, 3],
                    flexible_quorum: None,
                };
                let nodes = (1..=3)
                    .map(|pid| {
                        $op::OmniPaxosConfig {
                            cluster_config: cluster.clone(),
                            server_config: $op::ServerConfig {
                                pid,
                                election_tick_timeout: election_ticks,
                                resend_message_tick_timeout: election_ticks,
                                flush_batch_tick_timeout: election_ticks,
                                batch_size: 1,
                                ..Default::default()
                            },
                        }
                        .build($st::memory_storage::MemoryStorage::default())
                        .expect("valid configuration")
                    })
                    .collect();
                let mut c = $name {
                    nodes,
                    live: [true; 3],
                    applied_idx: [0; 3],
                    applied: [0; 3],
                    last_seq: [None; 3],
                    buf: Vec::new(),
                };
                $crate::workload::elect(&mut c, 1_000);
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

            fn deliver(&mut self, apply_at: $crate::workload::Applying) -> bool {
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

        impl<P: $crate::workload::Payload + $op::storage::Entry> $name<P> {
            fn apply(&mut self, i: usize) {
                let node = &self.nodes[i];
                let Some(entries) = node.read_decided_suffix(self.applied_idx[i]) else {
                    return;
                };
                for e in entries {
                    if let $op::util::LogEntry::Decided(e) = e {
                        self.last_seq[i] = Some(e.seq());
                        self.applied[i] += 1;
                    }
                }
                self.applied_idx[i] = node.get_decided_idx();
            }
        }
    };
}
