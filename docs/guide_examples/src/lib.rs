//! The code of the OmniPaxos user guide (`docs/` in the repository).
//!
//! Every Rust block of the book is included from this crate with mdBook anchors, and runs under
//! `cargo test --workspace --all-features`: the shared pieces live here, each chapter's code in
//! `tests/` or `examples/` (the examples are run by `tests/examples.rs`).

use omnipaxos::{
    macros::Entry,
    messages::Message,
    storage::{Entry, Snapshot, StopSign, Storage},
    util::{LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::MemoryStorage;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

// ANCHOR: entry
/// One write to the key-value store: the entry type of the guide's replicated log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Entry)]
#[snapshot(KvSnapshot)]
pub struct KeyValue {
    /// The key written.
    pub key: String,
    /// Its new value.
    pub value: u64,
}
// ANCHOR_END: entry

// ANCHOR: snapshot
/// The compacted form of a prefix of the log: the last value of every key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvSnapshot {
    /// Key to value, as the entries of the prefix left it.
    pub map: HashMap<String, u64>,
}

impl Snapshot<KeyValue> for KvSnapshot {
    fn create(entries: &[KeyValue]) -> Self {
        let mut map = HashMap::new();
        for e in entries {
            map.insert(e.key.clone(), e.value);
        }
        KvSnapshot { map }
    }

    fn merge(&mut self, delta: Self) {
        // `delta` covers the entries right after ours: its values are newer.
        self.map.extend(delta.map);
    }

    fn use_snapshots() -> bool {
        true
    }
}
// ANCHOR_END: snapshot

/// A `KeyValue` in one line, for examples and tests.
pub fn kv(key: &str, value: u64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
    }
}

// ANCHOR: state_machine
/// The application's state: the key-value map the decided log builds, and how far into the
/// log it got.
#[derive(Debug, Default)]
pub struct KvStore {
    /// Key to value, as the applied entries left it.
    pub map: HashMap<String, u64>,
    /// The log index applied up to (exclusive): the next read starts here.
    pub applied: usize,
    /// The stop sign, once the configuration ended: move the node on to the next
    /// configuration and keep reading from `applied` (the stop sign's index) there.
    pub stopped: Option<StopSign>,
}

impl KvStore {
    /// Applies what `node` decided since the last call, in log order, each entry once. Errors
    /// if the log it needs next was trimmed away without a snapshot.
    pub fn catch_up<B: Storage<KeyValue>>(
        &mut self,
        node: &OmniPaxos<KeyValue, B>,
    ) -> Result<(), String> {
        let Some(entries) = node.read_decided_suffix(self.applied) else {
            return Ok(()); // nothing new is decided (or the old log is still being pulled)
        };
        for entry in entries {
            match entry {
                LogEntry::Decided(KeyValue { key, value }) => {
                    self.map.insert(key, value);
                    self.applied += 1;
                }
                // A compacted prefix (always the first element): its snapshot is the state
                // up to its end.
                LogEntry::Snapshotted(s) => {
                    self.map = s.snapshot.map;
                    self.applied = s.trimmed_idx;
                }
                // Discarded without a snapshot before we applied it (see "Compaction").
                LogEntry::Trimmed(idx) => {
                    return Err(format!("entries {}..{idx} were trimmed", self.applied));
                }
                // The configuration ends here; the next one continues the log at this same
                // index, so `applied` stays where it is.
                LogEntry::StopSign(ss, _decided) => {
                    self.stopped = Some(ss);
                    return Ok(());
                }
                LogEntry::Undecided(_) => unreachable!("a decided suffix is decided"),
            }
        }
        Ok(())
    }
}
// ANCHOR_END: state_machine

/// The node type most chapters use.
pub type KvNode = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

/// Builds the node `pid` of `cluster`, with `election_tick_timeout` 5.
pub fn node_config(cluster: &ClusterConfig, pid: NodeId) -> OmniPaxosConfig {
    OmniPaxosConfig {
        cluster_config: cluster.clone(),
        server_config: ServerConfig {
            pid,
            election_tick_timeout: 5,
            resend_message_tick_timeout: 20,
            ..Default::default()
        },
    }
}

// ANCHOR: local_cluster
/// Several nodes in one process, with a network that delivers every message unless its link is
/// cut. Enough to try every feature of OmniPaxos in a test; `omnipaxos_sim` adds loss, delay,
/// reordering and safety checks.
pub struct LocalCluster<T: Entry, B: Storage<T>> {
    /// The running nodes by pid (a crashed node is removed, its storage handed back).
    pub nodes: BTreeMap<NodeId, OmniPaxos<T, B>>,
    /// Directed links `(from, to)` that drop every message.
    pub cut: HashSet<(NodeId, NodeId)>,
    buffer: Vec<Message<T>>,
}

impl<T: Entry, B: Storage<T>> LocalCluster<T, B> {
    /// A cluster of the given nodes.
    pub fn new(nodes: impl IntoIterator<Item = OmniPaxos<T, B>>) -> Self {
        LocalCluster {
            nodes: nodes.into_iter().map(|n| (n.get_pid(), n)).collect(),
            cut: HashSet::new(),
            buffer: Vec::new(),
        }
    }

    /// The node `pid`; panics if it is not running.
    pub fn node(&mut self, pid: NodeId) -> &mut OmniPaxos<T, B> {
        self.nodes.get_mut(&pid).expect("node is running")
    }

    /// Delivers messages until none is left. A message to a node that is not running, or over
    /// a cut link, is lost.
    pub fn deliver(&mut self) {
        for node in self.nodes.values_mut() {
            node.take_outgoing_messages(&mut self.buffer);
        }
        while let Some(m) = self.buffer.pop() {
            let (from, to) = (m.get_sender(), m.get_receiver());
            if self.cut.contains(&(from, to)) {
                continue;
            }
            if let Some(node) = self.nodes.get_mut(&to) {
                node.handle_incoming(m);
                node.take_outgoing_messages(&mut self.buffer);
            }
        }
    }

    /// `ticks` times: every node ticks, then all messages are delivered.
    pub fn run(&mut self, ticks: usize) {
        for _ in 0..ticks {
            for node in self.nodes.values_mut() {
                node.tick();
            }
            self.deliver();
        }
    }

    /// Runs until `done` holds, at most `max_ticks` ticks; returns whether it held.
    pub fn run_until(&mut self, max_ticks: usize, mut done: impl FnMut(&Self) -> bool) -> bool {
        for _ in 0..max_ticks {
            if done(self) {
                return true;
            }
            self.run(1);
        }
        done(self)
    }

    /// The pid of the node that serves as leader (in its accept phase), if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .find(|n| n.get_current_leader() == Some((n.get_pid(), true)))
            .map(|n| n.get_pid())
    }

    /// Runs until a leader serves; returns it. Panics after `max_ticks`.
    pub fn elect(&mut self, max_ticks: usize) -> NodeId {
        assert!(
            self.run_until(max_ticks, |c| c.leader().is_some()),
            "no leader after {max_ticks} ticks"
        );
        self.leader().expect("a leader serves")
    }

    /// Cuts (or restores, with `up`) both directions between `a` and `b`.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, up: bool) {
        for link in [(a, b), (b, a)] {
            if up {
                self.cut.remove(&link);
            } else {
                self.cut.insert(link);
            }
        }
    }

    /// Stops node `pid` as a crash would, and returns its storage.
    pub fn crash(&mut self, pid: NodeId) -> B {
        self.nodes
            .remove(&pid)
            .expect("node is running")
            .into_storage()
    }

    /// Whether every running node decided at least `idx` entries.
    pub fn all_decided(&self, idx: usize) -> bool {
        self.nodes.values().all(|n| n.get_decided_idx() >= idx)
    }
}
// ANCHOR_END: local_cluster

impl LocalCluster<KeyValue, MemoryStorage<KeyValue>> {
    /// A fresh cluster of nodes `pids` (configuration 1, in-memory storage).
    pub fn with_pids(pids: &[NodeId]) -> Self {
        let cluster = ClusterConfig {
            configuration_id: 1,
            nodes: pids.to_vec(),
            ..Default::default()
        };
        LocalCluster::new(pids.iter().map(|&pid| {
            node_config(&cluster, pid)
                .build(MemoryStorage::default())
                .expect("valid configuration")
        }))
    }
}

/// The decided `KeyValue`s of `entries` (skipping compacted prefixes and stop signs).
pub fn decided_values(entries: &[LogEntry<KeyValue>]) -> Vec<KeyValue> {
    entries
        .iter()
        .filter_map(|e| match e {
            LogEntry::Decided(kv) => Some(kv.clone()),
            _ => None,
        })
        .collect()
}
