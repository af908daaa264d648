//! Criterion micro-benchmarks of the replication hot paths, on a 3-node cluster with
//! `MemoryStorage`, entries of 8 B and 256 B, 1,000 entries per iteration:
//!
//! * `leader_append`: the leader appends the entries and builds its outgoing messages.
//! * `follower_accept`: a follower handles the leader's `AcceptDecide` carrying them and builds
//!   its `Accepted`.
//! * `decide`: the leader handles the followers' `Accepted`, decides, and builds the `Decide`.
//!
//! Each iteration starts from a freshly elected cluster (built outside the timed part).
//! `omnipaxos_bench` compares the whole loop with omnipaxos 0.2.4 and raft.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use omnipaxos::{
    messages::Message,
    storage::{Entry, NoSnapshot},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::hint::black_box;

const ENTRIES: usize = 1_000;

#[derive(Clone, Debug)]
struct E8(#[allow(dead_code)] u64);
impl Entry for E8 {
    type Snapshot = NoSnapshot;
}

#[derive(Clone, Debug)]
struct E256(#[allow(dead_code)] [u8; 256]);
impl Entry for E256 {
    type Snapshot = NoSnapshot;
}

trait Make: Entry {
    fn make(i: usize) -> Self;
}
impl Make for E8 {
    fn make(i: usize) -> Self {
        E8(i as u64)
    }
}
impl Make for E256 {
    fn make(i: usize) -> Self {
        E256([i as u8; 256])
    }
}

type Node<T> = OmniPaxos<T, MemoryStorage<T>>;

/// Moves every outgoing message to its receiver until none is left.
fn settle<T: Entry>(nodes: &mut [Node<T>]) {
    let mut buf = Vec::new();
    for _ in 0..1_000 {
        for n in nodes.iter_mut() {
            n.take_outgoing_messages(&mut buf);
        }
        if buf.is_empty() {
            return;
        }
        for m in buf.drain(..) {
            let to = m.get_receiver() as usize - 1;
            nodes[to].handle_incoming(m);
        }
    }
}

/// Three nodes with node 1 elected and in its accept phase.
fn cluster<T: Entry>() -> Vec<Node<T>> {
    let cc = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        flexible_quorum: None,
    };
    let mut nodes: Vec<Node<T>> = (1..=3)
        .map(|pid| {
            OmniPaxosConfig {
                cluster_config: cc.clone(),
                server_config: ServerConfig {
                    pid,
                    leader_priority: if pid == 1 { 10 } else { 0 },
                    ..Default::default()
                },
            }
            .build(MemoryStorage::default())
            .expect("valid configuration")
        })
        .collect();
    for _ in 0..100 {
        for n in nodes.iter_mut() {
            n.tick();
        }
        settle(&mut nodes);
        if nodes[0].get_current_leader() == Some((1, true)) {
            return nodes;
        }
    }
    panic!("no leader elected");
}

/// The cluster after the leader appended `ENTRIES` entries, with the leader's messages taken.
fn appended<T: Make>() -> (Vec<Node<T>>, Vec<Message<T>>) {
    let mut nodes = cluster::<T>();
    for i in 0..ENTRIES {
        nodes[0].append(T::make(i)).expect("appended");
    }
    let msgs = nodes[0].outgoing_messages();
    (nodes, msgs)
}

fn bench_size<T: Make>(c: &mut Criterion, label: &str) {
    let mut g = c.benchmark_group(format!("hot_paths/{label}"));
    g.throughput(Throughput::Elements(ENTRIES as u64));
    g.sample_size(20);

    g.bench_function("leader_append", |b| {
        b.iter_batched(
            cluster::<T>,
            |mut nodes| {
                let mut buf = Vec::new();
                for i in 0..ENTRIES {
                    nodes[0].append(T::make(i)).expect("appended");
                }
                nodes[0].take_outgoing_messages(&mut buf);
                black_box(buf);
                nodes
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("follower_accept", |b| {
        b.iter_batched(
            || {
                let (nodes, msgs) = appended::<T>();
                let to_2: Vec<Message<T>> =
                    msgs.into_iter().filter(|m| m.get_receiver() == 2).collect();
                (nodes, to_2)
            },
            |(mut nodes, msgs)| {
                for m in msgs {
                    nodes[1].handle_incoming(m);
                }
                black_box(nodes[1].outgoing_messages());
                nodes
            },
            BatchSize::LargeInput,
        )
    });

    g.bench_function("decide", |b| {
        b.iter_batched(
            || {
                let (mut nodes, msgs) = appended::<T>();
                for m in msgs {
                    let to = m.get_receiver() as usize - 1;
                    nodes[to].handle_incoming(m);
                }
                let mut acks = nodes[1].outgoing_messages();
                acks.extend(nodes[2].outgoing_messages());
                (nodes, acks)
            },
            |(mut nodes, acks)| {
                for m in acks {
                    nodes[0].handle_incoming(m);
                }
                assert_eq!(nodes[0].get_decided_idx(), ENTRIES);
                black_box(nodes[0].outgoing_messages());
                nodes
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn hot_paths(c: &mut Criterion) {
    bench_size::<E8>(c, "8B");
    bench_size::<E256>(c, "256B");
}

/// The criterion group (in a module of its own: the macro makes an undocumented `pub fn`).
mod group {
    use super::*;

    criterion_group! {
        name = benches;
        config = Criterion::default()
            .warm_up_time(std::time::Duration::from_millis(500))
            .measurement_time(std::time::Duration::from_secs(3));
        targets = hot_paths
    }
}
criterion_main!(group::benches);
