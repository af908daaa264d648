//! How fast a server that joins catches up a 100,000-entry log over bandwidth-limited links,
//! pulling from 1, 2 and 4 servers of the old configuration.
//!
//! Run with `cargo bench -p omnipaxos_sim --bench migration`. Time is in ticks: each directed
//! link carries at most `BANDWIDTH` entries per tick (a message costs its entries, at least 1),
//! in order, so a source's link to the joiner is the bottleneck and `k` sources give `k` times
//! the bandwidth. The figure is the ticks from the joiner's start until it holds the whole old
//! log (its migration finished), median over a few seeds of message order.

use omnipaxos::{
    messages::Message,
    util::{LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_sim::{Rng, SimEntry};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::collections::{BTreeMap, VecDeque};

const LOG: u64 = 100_000;
/// Entries per tick per directed link.
const BANDWIDTH: u64 = 500;
const JOINER: NodeId = 10;

type Node = OmniPaxos<SimEntry, MemoryStorage<SimEntry>>;

fn server(pid: NodeId) -> ServerConfig {
    ServerConfig {
        pid,
        election_tick_timeout: 10,
        resend_message_tick_timeout: 50,
        flush_batch_tick_timeout: 2,
        batch_size: 1_000,
        buffer_size: 10_000,
        ..Default::default()
    }
}

/// What a message costs on a link, in entries (at least 1).
fn cost(m: &Message<SimEntry>) -> u64 {
    omnipaxos_sim::inspect::entries(m).max(1) as u64
}

/// A directed link's FIFO queue: each message with its remaining cost (in entries).
type LinkQueue = VecDeque<(Message<SimEntry>, u64)>;

/// Links with a bandwidth: per directed link a FIFO queue; the head message's remaining cost.
struct Net {
    links: BTreeMap<(NodeId, NodeId), LinkQueue>,
    bandwidth: Option<u64>,
}

impl Net {
    fn send(&mut self, m: Message<SimEntry>) {
        let c = cost(&m);
        self.links
            .entry((m.get_sender(), m.get_receiver()))
            .or_default()
            .push_back((m, c));
    }

    /// One tick of transmission: what arrives.
    fn transmit(&mut self, rng: &mut Rng) -> Vec<Message<SimEntry>> {
        let mut out = Vec::new();
        for q in self.links.values_mut() {
            let mut budget = self.bandwidth.unwrap_or(u64::MAX);
            while let Some((_, left)) = q.front_mut() {
                if *left > budget {
                    *left -= budget;
                    break;
                }
                budget -= *left;
                out.push(q.pop_front().unwrap().0);
            }
        }
        // Links are independent: interleave their arrivals.
        for i in (1..out.len()).rev() {
            out.swap(i, rng.index(i + 1));
        }
        out
    }
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    net: Net,
    rng: Rng,
    buf: Vec<Message<SimEntry>>,
}

impl Cluster {
    fn step(&mut self) {
        for n in self.nodes.values_mut() {
            n.tick();
        }
        self.flush();
        for m in self.net.transmit(&mut self.rng) {
            if let Some(n) = self.nodes.get_mut(&m.get_receiver()) {
                n.handle_incoming(m);
            }
        }
        self.flush();
    }

    fn flush(&mut self) {
        for n in self.nodes.values_mut() {
            n.take_outgoing_messages(&mut self.buf);
        }
        for m in self.buf.drain(..) {
            self.net.send(m);
        }
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(p, n)| n.get_current_leader() == Some((**p, true)))
            .map(|(p, _)| *p)
    }

    fn run_until(&mut self, max: u64, mut cond: impl FnMut(&Cluster) -> bool) -> u64 {
        for t in 0..max {
            if cond(self) {
                return t;
            }
            self.step();
        }
        panic!("condition not reached in {max} ticks");
    }
}

/// Ticks for a joiner to pull the `LOG`-entry log from `k` sources.
fn catch_up_ticks(k: u64, seed: u64) -> u64 {
    let old: Vec<NodeId> = (1..=k).collect();
    let c1 = ClusterConfig {
        configuration_id: 1,
        nodes: old.clone(),
        flexible_quorum: None,
    };
    let mut cluster = Cluster {
        nodes: old
            .iter()
            .map(|p| {
                let cfg = OmniPaxosConfig {
                    cluster_config: c1.clone(),
                    server_config: server(*p),
                };
                (*p, cfg.build(MemoryStorage::default()).expect("valid"))
            })
            .collect(),
        net: Net {
            links: BTreeMap::new(),
            bandwidth: None,
        },
        rng: Rng::new(seed),
        buf: Vec::new(),
    };
    // Fill the log on an unlimited network.
    cluster.run_until(1_000, |c| c.leader().is_some());
    let leader = cluster.leader().unwrap();
    let mut next = 0;
    while next < LOG {
        let node = cluster.nodes.get_mut(&leader).unwrap();
        for _ in 0..10_000.min(LOG - next) {
            node.append(SimEntry { id: next + 1 }).expect("append");
            next += 1;
        }
        cluster.step();
    }
    cluster.run_until(10_000, |c| {
        c.nodes.values().all(|n| n.get_decided_idx() as u64 >= LOG)
    });
    // Reconfigure: the same servers plus the joiner.
    let mut nodes2 = old.clone();
    nodes2.push(JOINER);
    let c2 = ClusterConfig {
        configuration_id: 2,
        nodes: nodes2,
        flexible_quorum: None,
    };
    cluster
        .nodes
        .get_mut(&leader)
        .unwrap()
        .reconfigure(c2.clone(), None)
        .expect("reconfigure");
    cluster.run_until(10_000, |c| {
        c.nodes.values().all(|n| n.is_reconfigured().is_some())
    });
    let olds: Vec<(NodeId, Node)> = std::mem::take(&mut cluster.nodes).into_iter().collect();
    for (p, n) in olds {
        let next = n
            .start_next_config(server(p))
            .map_err(|(e, _)| e)
            .expect("next config");
        cluster.nodes.insert(p, next);
    }
    // From now on the links are limited.
    cluster.net.bandwidth = Some(BANDWIDTH);
    let joiner = c2
        .build_for_server(server(JOINER), MemoryStorage::default())
        .expect("joiner");
    cluster.nodes.insert(JOINER, joiner);
    cluster.run_until(1_000_000, |c| {
        let j = &c.nodes[&JOINER];
        j.get_migration_status().is_none() && matches!(j.read(0), Some(LogEntry::Snapshotted(_)))
    })
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters nothing here.
    let seeds = 5;
    println!(
        "Joiner catching up a {LOG}-entry log, links of {BANDWIDTH} entries/tick (median of {seeds} runs)"
    );
    println!(
        "{:>8} {:>12} {:>10} {:>14}",
        "sources", "ticks", "speedup", "goal (0.7 k)"
    );
    let base = median((0..seeds).map(|s| catch_up_ticks(1, s)).collect());
    println!("{:>8} {:>12} {:>10.2} {:>14}", 1, base, 1.0, "-");
    for k in [2, 4] {
        let t = median((0..seeds).map(|s| catch_up_ticks(k, s)).collect());
        let speedup = base as f64 / t as f64;
        println!(
            "{:>8} {:>12} {:>10.2} {:>14.1}",
            k,
            t,
            speedup,
            0.7 * k as f64
        );
    }
    println!(
        "floor: {} ticks to move {LOG} entries over one link",
        LOG / BANDWIDTH
    );
}
