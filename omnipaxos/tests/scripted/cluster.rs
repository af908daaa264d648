//! A tiny cluster for the scripts: real `OmniPaxos` nodes on `MemoryStorage`, a network that
//! delivers a message only when a script says so, and safety checks after every command.
//!
//! # Commands
//!
//! Nodes are named by pid; `<who>` is `all` or a comma list (`1,3`). Messages print in their
//! `Display` form, `from->to Kind fields`; ballots print as `n.pid`, `-` for none.
//!
//! | command | what it does |
//! |---|---|
//! | `cluster n=3 [election=10] [resend=100] [flush=200] [batch=1] [buffer=100000] [quorum=R/W] [priorities=1:0,2:5] [fast_failover=on\|off]` | builds nodes `1..=n` of configuration 1 (ticks; the defaults shown) |
//! | `tick <who> [k] [quiet]` | ticks the nodes `k` times (pid order within a tick); prints what they send, as `t<i>: msg` when `k > 1` |
//! | `deliver [filter] [skip=j] [limit=k] [quiet]` | delivers the pending messages that match (after the first `j`, at most `k`), oldest first; prints each, and under it (indented) what the receiver sends. Messages sent meanwhile wait for the next command |
//! | `stabilize [filter] [quiet]` | delivers until nothing that matches is pending |
//! | `pending [filter]` | lists the pending messages |
//! | `drop [filter]` / `dup [filter]` | loses / duplicates (at the end of the queue) the pending messages that match |
//! | `cut a-b ...` / `cut a->b` / `isolate a` / `heal [a-b ...]` | cuts links (both ways, one way, all of `a`'s) or heals them (all when no argument). Messages on a cut link are lost: pending ones when it is cut (printed), new ones when sent (printed with `(cut)`) |
//! | `append <node> <v>...` / `flush <node>` | `append` each value / `flush_batch` |
//! | `crash <node>` / `restart <node>` | drops the node, keeping what its storage holds / builds it again on that storage and calls `fail_recovery` |
//! | `reconfigure <node> id=2 nodes=1,2,4 [quorum=R/W]` | proposes a stop sign |
//! | `start-next-config <node>` / `join <pid> id=2 nodes=1,2,4 [quorum=R/W]` | continues a stopped node in its next configuration / starts a node on fresh storage with `build_for_server` (any configuration: a stray server too) |
//! | `trim <node> [idx]` / `snapshot <node> [idx] [local]` | compaction |
//! | `read <node>` / `ready-reads <node>` | `request_read` / `take_ready_reads` |
//! | `returned <node>` | `take_returned_appends` |
//! | `try-leader <node>` / `set-priority <node> <p>` / `reconnected <node> <peer>` | the other inputs |
//! | `status [who]` / `log [who]` | each node's state / its log as `read_entries(..)` shows it |
//! | `hide <kind>...` / `show <kind>...\|all` | leaves messages of these kinds out of the output (`Heartbeat*`: a prefix) |
//!
//! A filter is made of link terms (`1->2`, `1->*`, `*->2`), kinds (`Prepare`, `Heartbeat*`) and
//! excluded kinds (`!Entries`): a message matches when it matches one link term (if any) and
//! one kind (if any), and no excluded kind.
//!
//! After every command the harness checks, on every running node (strays the script started
//! included): no two nodes decided different entries at one index (a compacted prefix is
//! checked through its snapshot), the decided index never decreases (across a restart too),
//! and one stop sign per configuration. A violation fails the script whatever it expected.

use omnipaxos::{
    ballot_leader_election::Ballot,
    messages::Message,
    storage::{Entry, Snapshot},
    util::{FlexibleQuorum, LogEntry, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt,
};

// The commands, in a room of their own (they see the cluster's private state).
#[path = "commands.rs"]
mod commands;
pub(crate) use commands::Runner;

/// The scripts' log entry: a number, printed as itself.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V(pub(crate) u64);

impl fmt::Debug for V {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The snapshot of a prefix: its values in order, so that a script shows what it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Snap(Vec<u64>);

impl Snapshot<V> for Snap {
    fn create(entries: &[V]) -> Self {
        Snap(entries.iter().map(|e| e.0).collect())
    }
    fn merge(&mut self, delta: Self) {
        self.0.extend(delta.0);
    }
    fn use_snapshots() -> bool {
        true
    }
}

impl Entry for V {
    type Snapshot = Snap;
}

type Node = OmniPaxos<V, MemoryStorage<V>>;
type Msg = Message<V>;

fn ballot(b: Ballot) -> String {
    if b == Ballot::default() {
        "-".to_string()
    } else {
        format!("{}.{}", b.n, b.pid)
    }
}

fn join_values(v: &[u64]) -> String {
    v.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

struct Slot {
    /// The configuration the node runs in (the one it is rebuilt in after a crash).
    cluster: ClusterConfig,
    /// `None` while crashed.
    node: Option<Node>,
    /// What the storage durably held when the node crashed.
    storage: Option<MemoryStorage<V>>,
    /// The highest decided index seen on this storage (stability check).
    decided: usize,
}

/// A message selector: link terms and kinds.
#[derive(Default)]
struct Filter {
    links: Vec<(Option<NodeId>, Option<NodeId>)>,
    kinds: Vec<String>,
    /// Kinds excluded (`!Kind`).
    not_kinds: Vec<String>,
    limit: Option<usize>,
    /// Matching messages to pass over (left pending) before the first one taken.
    skip: usize,
    quiet: bool,
}

fn kind_matches(pattern: &str, kind: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => kind.starts_with(prefix),
        None => pattern == kind,
    }
}

impl Filter {
    fn parse(args: &[&str]) -> Result<Self, String> {
        let mut f = Filter::default();
        for a in args {
            if *a == "quiet" {
                f.quiet = true;
            } else if let Some(k) = a.strip_prefix("skip=") {
                f.skip = k.parse().map_err(|_| format!("bad skip `{a}`"))?;
            } else if let Some(k) = a.strip_prefix("limit=") {
                f.limit = Some(k.parse().map_err(|_| format!("bad limit `{a}`"))?);
            } else if let Some((from, to)) = a.split_once("->") {
                let end = |s: &str| -> Result<Option<NodeId>, String> {
                    if s == "*" {
                        Ok(None)
                    } else {
                        s.parse().map(Some).map_err(|_| format!("bad link `{a}`"))
                    }
                };
                f.links.push((end(from)?, end(to)?));
            } else if a.starts_with(|c: char| c.is_ascii_uppercase()) {
                f.kinds.push(a.to_string());
            } else if let Some(k) = a.strip_prefix('!') {
                f.not_kinds.push(k.to_string());
            } else {
                return Err(format!("bad filter term `{a}`"));
            }
        }
        Ok(f)
    }

    fn matches(&self, m: &Msg) -> bool {
        let link = self.links.is_empty()
            || self.links.iter().any(|(a, b)| {
                a.map_or(true, |a| a == m.get_sender()) && b.map_or(true, |b| b == m.get_receiver())
            });
        let kind = self.kinds.is_empty() || self.kinds.iter().any(|k| kind_matches(k, m.kind()));
        let excluded = self.not_kinds.iter().any(|k| kind_matches(k, m.kind()));
        link && kind && !excluded
    }
}

/// Parses `key=value` arguments.
fn kv<'a>(args: &[&'a str]) -> Result<BTreeMap<&'a str, &'a str>, String> {
    let mut m = BTreeMap::new();
    for a in args {
        let (k, v) = a
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, got `{a}`"))?;
        m.insert(k, v);
    }
    Ok(m)
}

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("expected a number, got `{s}`"))
}

fn pids(s: &str) -> Result<Vec<NodeId>, String> {
    s.split(',').map(num).collect()
}

fn quorum(s: &str) -> Result<FlexibleQuorum, String> {
    let (r, w) = s
        .split_once('/')
        .ok_or_else(|| format!("quorum is R/W, got `{s}`"))?;
    Ok(FlexibleQuorum {
        read_quorum_size: num(r)?,
        write_quorum_size: num(w)?,
    })
}

/// A configuration from `id=.. nodes=.. [quorum=R/W]`.
fn cluster_config(args: &BTreeMap<&str, &str>) -> Result<ClusterConfig, String> {
    for k in args.keys() {
        if !["id", "nodes", "quorum"].contains(k) {
            return Err(format!("unknown argument `{k}`"));
        }
    }
    Ok(ClusterConfig {
        configuration_id: num(args.get("id").ok_or("missing id=")?)?,
        nodes: pids(args.get("nodes").ok_or("missing nodes=")?)?,
        flexible_quorum: args.get("quorum").map(|q| quorum(q)).transpose()?,
    })
}

pub(crate) struct Cluster {
    /// Every server's settings but its pid and priority.
    server: ServerConfig,
    /// `OmniPaxos::set_fast_failover` of every node built.
    fast_failover: bool,
    priorities: BTreeMap<NodeId, u32>,
    slots: BTreeMap<NodeId, Slot>,
    /// Messages sent and not delivered yet, oldest first.
    queue: VecDeque<Msg>,
    /// Cut links (sender, receiver).
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Kinds left out of the output.
    hidden: Vec<String>,
    /// The entry decided at each index, as any node showed it (agreement check).
    decided: BTreeMap<usize, u64>,
    /// The stop sign decided in each configuration, and its index.
    stops: BTreeMap<u32, (usize, String)>,
}

impl Cluster {
    fn new(args: &[&str]) -> Result<Self, String> {
        let a = kv(args)?;
        for k in a.keys() {
            let known = [
                "n",
                "election",
                "resend",
                "flush",
                "batch",
                "buffer",
                "quorum",
                "priorities",
                "fast_failover",
            ];
            if !known.contains(k) {
                return Err(format!("unknown argument `{k}`"));
            }
        }
        let get = |k: &str, d: u64| -> Result<u64, String> { a.get(k).map_or(Ok(d), |v| num(v)) };
        let n = get("n", 3)?;
        let server = ServerConfig {
            election_tick_timeout: get("election", 10)?,
            resend_message_tick_timeout: get("resend", 100)?,
            flush_batch_tick_timeout: get("flush", 200)?,
            batch_size: get("batch", 1)? as usize,
            buffer_size: get("buffer", 100_000)? as usize,
            ..Default::default()
        };
        let fast_failover = match a.get("fast_failover").copied() {
            None | Some("on") => true,
            Some("off") => false,
            Some(v) => return Err(format!("fast_failover is on or off, got `{v}`")),
        };
        let mut priorities = BTreeMap::new();
        if let Some(p) = a.get("priorities") {
            for term in p.split(',') {
                let (pid, prio) = term
                    .split_once(':')
                    .ok_or_else(|| format!("priorities are pid:p, got `{term}`"))?;
                priorities.insert(num(pid)?, num(prio)?);
            }
        }
        let config = ClusterConfig {
            configuration_id: 1,
            nodes: (1..=n).collect(),
            flexible_quorum: a.get("quorum").map(|q| quorum(q)).transpose()?,
        };
        let mut c = Cluster {
            server,
            fast_failover,
            priorities,
            slots: BTreeMap::new(),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            hidden: Vec::new(),
            decided: BTreeMap::new(),
            stops: BTreeMap::new(),
        };
        for pid in 1..=n {
            let node = c
                .build(pid, config.clone(), MemoryStorage::default())
                .map_err(|e| format!("node {pid}: {e}"))?;
            c.slots.insert(
                pid,
                Slot {
                    cluster: config.clone(),
                    node: Some(node),
                    storage: None,
                    decided: 0,
                },
            );
        }
        Ok(c)
    }

    fn server_config(&self, pid: NodeId) -> ServerConfig {
        ServerConfig {
            pid,
            leader_priority: self.priorities.get(&pid).copied().unwrap_or(0),
            ..self.server.clone()
        }
    }

    fn build(
        &self,
        pid: NodeId,
        cluster: ClusterConfig,
        storage: MemoryStorage<V>,
    ) -> Result<Node, String> {
        let mut node = OmniPaxosConfig {
            cluster_config: cluster,
            server_config: self.server_config(pid),
        }
        .build(storage)
        .map_err(|e| format!("error: {e}"))?;
        node.set_fast_failover(self.fast_failover);
        Ok(node)
    }

    fn node(&mut self, pid: NodeId) -> Result<&mut Node, String> {
        self.slots
            .get_mut(&pid)
            .ok_or_else(|| format!("no node {pid}"))?
            .node
            .as_mut()
            .ok_or_else(|| format!("node {pid} is down"))
    }

    fn who(&self, s: &str) -> Result<Vec<NodeId>, String> {
        if s == "all" {
            Ok(self.slots.keys().copied().collect())
        } else {
            let v = pids(s)?;
            for p in &v {
                if !self.slots.contains_key(p) {
                    return Err(format!("no node {p}"));
                }
            }
            Ok(v)
        }
    }

    fn hidden(&self, m: &Msg) -> bool {
        self.hidden.iter().any(|k| kind_matches(k, m.kind()))
    }

    /// Takes what `pid` sends and puts it on the network; returns the lines to print (`prefix`
    /// before each).
    fn emit(&mut self, pid: NodeId, prefix: &str) -> Vec<String> {
        let mut msgs = Vec::new();
        if let Some(node) = self.slots.get_mut(&pid).and_then(|s| s.node.as_mut()) {
            node.take_outgoing_messages(&mut msgs);
        }
        let mut lines = Vec::new();
        for m in msgs {
            let cut = self.cut.contains(&(m.get_sender(), m.get_receiver()));
            if !self.hidden(&m) {
                let mark = if cut { " (cut)" } else { "" };
                lines.push(format!("{prefix}{m}{mark}"));
            }
            if !cut {
                self.queue.push_back(m);
            }
        }
        lines
    }

    /// Delivers the messages pending now that match `f`; returns the lines to print.
    fn deliver(&mut self, f: &Filter) -> Vec<String> {
        let pending: Vec<Msg> = self.queue.drain(..).collect();
        let mut kept = Vec::new();
        let mut lines = Vec::new();
        let mut delivered = 0;
        let mut skipped = 0;
        for m in pending {
            if !f.matches(&m) || f.limit.is_some_and(|l| delivered >= l) {
                kept.push(m);
                continue;
            }
            if skipped < f.skip {
                skipped += 1;
                kept.push(m);
                continue;
            }
            delivered += 1;
            let to = m.get_receiver();
            let shown = !self.hidden(&m);
            let line = m.to_string();
            match self.slots.get_mut(&to).map(|s| s.node.as_mut()) {
                None => lines.push(format!("{line} (no such node)")),
                Some(None) => {
                    if shown {
                        lines.push(format!("{line} (down)"))
                    }
                }
                Some(Some(node)) => {
                    node.handle_incoming(m);
                    let sent = self.emit(to, "  ");
                    if shown || !sent.is_empty() {
                        lines.push(line);
                    }
                    lines.extend(sent);
                }
            }
        }
        let new: Vec<Msg> = self.queue.drain(..).collect();
        self.queue.extend(kept);
        self.queue.extend(new);
        lines
    }

    /// The state of `pid` in one line.
    fn status(&self, pid: NodeId) -> String {
        let slot = &self.slots[&pid];
        let Some(n) = &slot.node else {
            return format!("{pid}: down");
        };
        let leader = match n.get_current_leader() {
            None => "leader=none".to_string(),
            Some((l, true)) => format!("leader={l} serving"),
            Some((l, false)) => format!("leader={l}"),
        };
        let mut s = format!(
            "{pid}: {leader} promise={} accepted={} decided={} compacted={} config={}",
            ballot(n.get_promise()),
            n.get_accepted_idx(),
            n.get_decided_idx(),
            n.get_compacted_idx(),
            n.get_configuration_id(),
        );
        if let Some(ss) = n.is_reconfigured() {
            s.push_str(&format!(" reconfigured={}", stop_text(&ss)));
        } else if n.is_stopped() {
            s.push_str(" stopped");
        }
        if n.get_batched_len() > 0 {
            s.push_str(&format!(" batched={}", n.get_batched_len()));
        }
        if n.pending_reads() > 0 {
            s.push_str(&format!(" reads={}", n.pending_reads()));
        }
        if n.get_stats().returned_appends > 0 {
            s.push_str(&format!(" returned={}", n.get_stats().returned_appends));
        }
        if let Some(m) = n.get_migration_status() {
            s.push_str(&format!(
                " pulling={}/{} sources={}",
                m.received, m.prefix_end, m.sources
            ));
        }
        s
    }

    /// The log of `pid` as `read_entries` shows it: decided entries, then `|` and the
    /// undecided ones.
    fn log(&self, pid: NodeId) -> String {
        let slot = &self.slots[&pid];
        let Some(n) = &slot.node else {
            return format!("{pid}: down");
        };
        let mut parts = Vec::new();
        let from = match n.get_migration_status() {
            Some(m) => {
                parts.push(format!("pending<{}", m.prefix_end));
                m.prefix_end
            }
            None => 0,
        };
        let mut bar = false;
        for e in n.read_entries(from..).unwrap_or_default() {
            let undecided = matches!(e, LogEntry::Undecided(_) | LogEntry::StopSign(_, false));
            if undecided && !bar {
                parts.push("|".to_string());
                bar = true;
            }
            parts.push(match e {
                LogEntry::Decided(v) | LogEntry::Undecided(v) => v.0.to_string(),
                LogEntry::Trimmed(i) => format!("trimmed<{i}"),
                LogEntry::Snapshotted(s) => {
                    format!("snapshot<{}[{}]", s.trimmed_idx, join_values(&s.snapshot.0))
                }
                LogEntry::StopSign(ss, _) => stop_text(&ss),
            });
        }
        if parts.is_empty() {
            format!("{pid}: (empty)")
        } else {
            format!("{pid}: {}", parts.join(" "))
        }
    }

    /// The safety checks, after every command.
    fn check(&mut self) -> Result<(), String> {
        for (&pid, slot) in self.slots.iter_mut() {
            let Some(n) = &slot.node else {
                continue;
            };
            let d = n.get_decided_idx();
            if d < slot.decided {
                return Err(format!(
                    "stability: node {pid}'s decided index went from {} down to {d}",
                    slot.decided
                ));
            }
            slot.decided = d;
            let c = n.get_configuration_id();
            let from = n.get_migration_status().map_or(0, |m| m.prefix_end);
            let mut idx = from;
            for e in n.read_decided_suffix(from).unwrap_or_default() {
                match e {
                    LogEntry::Decided(v) => {
                        if let Some(old) = self.decided.insert(idx, v.0) {
                            if old != v.0 {
                                return Err(format!(
                                    "agreement: node {pid} decided {} at index {idx}, another \
                                     node decided {old}",
                                    v.0
                                ));
                            }
                        }
                        idx += 1;
                    }
                    LogEntry::Snapshotted(s) => {
                        let vals = &s.snapshot.0;
                        if vals.len() != s.trimmed_idx {
                            return Err(format!(
                                "agreement: node {pid}'s snapshot of 0..{} holds {} entries",
                                s.trimmed_idx,
                                vals.len()
                            ));
                        }
                        for (i, v) in vals.iter().enumerate() {
                            if let Some(old) = self.decided.insert(i, *v) {
                                if old != *v {
                                    return Err(format!(
                                        "agreement: node {pid}'s snapshot holds {v} at index \
                                         {i}, another node decided {old}"
                                    ));
                                }
                            }
                        }
                        idx = s.trimmed_idx;
                    }
                    LogEntry::Trimmed(i) => idx = i,
                    LogEntry::StopSign(ss, _) => {
                        let text = stop_text(&ss);
                        let old = self.stops.entry(c).or_insert((idx, text.clone()));
                        if *old != (idx, text.clone()) {
                            return Err(format!(
                                "agreement: node {pid} decided the stop sign {text} at {idx} in \
                                 configuration {c}, another node {} at {}",
                                old.1, old.0
                            ));
                        }
                        idx += 1;
                    }
                    LogEntry::Undecided(v) => {
                        return Err(format!(
                            "node {pid}'s decided suffix holds the undecided entry {}",
                            v.0
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}

fn stop_text(ss: &omnipaxos::storage::StopSign) -> String {
    let nodes: Vec<String> = ss.next_config.nodes.iter().map(|p| p.to_string()).collect();
    format!(
        "stop(c{}:{})",
        ss.next_config.configuration_id,
        nodes.join(",")
    )
}
