//! The simulated cluster: nodes on virtual ticks, a faulty network, crash and restart on the
//! node's own storage, and the safety checks after every step.

use crate::{
    app::{App, Origin},
    checker::Checker,
    entry::Tagged,
    network::{Faults, Filter, NetStats, Network},
    rng::Rng,
};
use omnipaxos::{
    ballot_leader_election::Ballot,
    messages::Message,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
    util::{FlexibleQuorum, NodeId},
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::{
    cell::RefCell,
    collections::{BTreeMap, HashSet},
    rc::Rc,
};

/// Where the simulated nodes keep their storage, so that a crashed node restarts on what it
/// durably wrote.
pub trait Backend<T: Entry> {
    /// The storage a node runs on.
    type S: Storage<T>;
    /// Opens node `pid`'s storage: fresh the first time, what it durably holds afterwards. The
    /// previous instance of the node has been dropped.
    fn open(&mut self, pid: NodeId) -> Self::S;
    /// Replaces node `pid`'s storage with a fresh, empty one (a server joining a configuration).
    fn fresh(&mut self, pid: NodeId) -> Self::S;
}

/// A storage handle shared between the simulator and a node, so that it outlives the node.
pub struct Shared<S>(Rc<RefCell<S>>);

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Self {
        Shared(Rc::clone(&self.0))
    }
}

impl<T: Entry, S: Storage<T>> Storage<T> for Shared<S> {
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        self.0.borrow_mut().write_atomically(ops)
    }
    fn write_atomically_draining(&mut self, ops: &mut Vec<StorageOp<T>>) -> StorageResult<()> {
        self.0.borrow_mut().write_atomically_draining(ops)
    }
    fn writes_at_once(&self) -> bool {
        self.0.borrow().writes_at_once()
    }
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        self.0
            .borrow_mut()
            .write_atomically_with_record(ops, record)
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        self.0.borrow().get_node_record()
    }
    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.0.borrow_mut().append_entry(entry)
    }
    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.0.borrow_mut().append_entries(entries)
    }
    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.0.borrow_mut().append_on_prefix(from_idx, entries)
    }
    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.0.borrow_mut().set_promise(n_prom)
    }
    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.0.borrow_mut().set_decided_idx(ld)
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        self.0.borrow().get_decided_idx()
    }
    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.0.borrow_mut().set_accepted_round(na)
    }
    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        self.0.borrow().get_accepted_round()
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        self.0.borrow().get_entries(from, to)
    }
    fn get_entries_with<F: FnMut(T)>(&self, from: usize, to: usize, f: F) -> StorageResult<usize> {
        self.0.borrow().get_entries_with(from, to, f)
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        self.0.borrow().get_log_len()
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        self.0.borrow().get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        self.0.borrow().get_promise()
    }
    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.0.borrow_mut().set_stopsign(s)
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.0.borrow().get_stopsign()
    }
    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.0.borrow_mut().trim(idx)
    }
    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.0.borrow_mut().set_compacted_idx(idx)
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        self.0.borrow().get_compacted_idx()
    }
    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.0.borrow_mut().set_snapshot(snapshot)
    }
    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        self.0.borrow().get_snapshot()
    }
}

/// In-memory storage that survives a simulated crash (every write counts as durable).
pub struct MemoryBackend<T: Entry> {
    stores: BTreeMap<NodeId, Shared<MemoryStorage<T>>>,
    /// What the stores answer to `Storage::writes_at_once`.
    at_once: bool,
}

impl<T: Entry> Default for MemoryBackend<T> {
    /// Stores written once per take of the outgoing messages (the timing of a durable backend).
    fn default() -> Self {
        Self::with_writes_at_once(false)
    }
}

impl<T: Entry> MemoryBackend<T> {
    /// Stores that ask to be written after every message handled (`true`, as `MemoryStorage`
    /// does by default) or once per take (`false`).
    pub fn with_writes_at_once(at_once: bool) -> Self {
        MemoryBackend {
            stores: BTreeMap::new(),
            at_once,
        }
    }
}

impl<T: Entry> Backend<T> for MemoryBackend<T> {
    type S = Shared<MemoryStorage<T>>;
    fn open(&mut self, pid: NodeId) -> Self::S {
        self.stores
            .entry(pid)
            .or_insert_with(|| {
                let store = MemoryStorage::default().with_writes_at_once(self.at_once);
                Shared(Rc::new(RefCell::new(store)))
            })
            .clone()
    }
    fn fresh(&mut self, pid: NodeId) -> Self::S {
        self.stores.remove(&pid);
        self.open(pid)
    }
}

/// How to set up a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of nodes of the first configuration; their pids are `1..=nodes`.
    pub nodes: usize,
    /// Pids up to this can join later (reconfiguration); at least `nodes`.
    pub capacity: usize,
    /// The seed of every random choice.
    pub seed: u64,
    /// Settings every node gets (its pid is set per node).
    pub server: ServerConfig,
    /// Quorum sizes (majorities if `None`).
    pub flexible_quorum: Option<FlexibleQuorum>,
    /// Per-message faults.
    pub faults: Faults,
    /// Leader priority per node (pid `i` gets entry `i - 1`); missing entries mean 0.
    pub priorities: Vec<u32>,
    /// The election's fast failover (`OmniPaxos::set_fast_failover`), set on every node built
    /// or restarted.
    pub fast_failover: bool,
    /// Whether the in-memory stores of [`Sim::new`] ask to be written after every input
    /// (`Storage::writes_at_once`) rather than once per take of the outgoing messages.
    pub writes_at_once: bool,
}

impl SimConfig {
    /// `nodes` nodes on a perfect network (messages arrive in the tick they are sent), election
    /// timeout 10 ticks, resend 20.
    pub fn new(nodes: usize, seed: u64) -> Self {
        SimConfig {
            nodes,
            capacity: nodes + 4,
            seed,
            server: ServerConfig {
                election_tick_timeout: 10,
                resend_message_tick_timeout: 20,
                flush_batch_tick_timeout: 5,
                ..Default::default()
            },
            flexible_quorum: None,
            faults: Faults::NONE,
            priorities: Vec::new(),
            fast_failover: true,
            writes_at_once: false,
        }
    }

    /// The cluster configuration of the simulated nodes.
    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig {
            configuration_id: 1,
            nodes: (1..=self.nodes as NodeId).collect(),
            flexible_quorum: self.flexible_quorum,
        }
    }
}

/// Counters that show a run exercised what it should (non-vacuity).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Ticks simulated.
    pub ticks: u64,
    /// Appends made.
    pub appends: u64,
    /// Entries decided (the length of the decided log).
    pub decided: u64,
    /// Distinct ballots that served as leader, minus the first.
    pub leader_changes: u64,
    /// Crashes.
    pub crashes: u64,
    /// Crashes of a leader in its accept phase.
    pub leader_crashes_in_accept: u64,
    /// Times a node was brought up to date with a snapshot.
    pub snapshot_installs: u64,
    /// Reconfigurations decided.
    pub reconfigurations: u64,
    /// Entries decided in a configuration after the first (after a reconfiguration).
    pub decided_after_reconfiguration: u64,
    /// Old logs pulled in full by joining servers.
    pub migrations: u64,
    /// Appends handed back to the application (`NodeStats::returned_appends`).
    pub returned_appends: u64,
    /// Appends the simulator took back with [`Sim::take_uncertain_appends`].
    pub handed_back: u64,
    /// Crashes of a node while it pulled an old log (`get_migration_status().is_some()`).
    pub crashes_mid_pull: u64,
    /// Successful `trim` calls made through [`Sim::trim`].
    pub trims: u64,
    /// Successful `snapshot` calls made through [`Sim::snapshot`] (local only or not).
    pub snapshots: u64,
    /// Of those, local only.
    pub local_snapshots: u64,
    /// Snapshots the simulated applications installed (`Snapshotted` elements they read).
    pub app_snapshot_installs: u64,
    /// Entries the simulated applications applied one by one.
    pub app_entries_applied: u64,
    /// Crashes of a leader after its accepts left and before its own write (see
    /// [`Sim::set_ahead_of_write`]).
    pub crashes_before_write: u64,
    /// Linearizable reads asked ([`Sim::request_read`]).
    pub reads_requested: u64,
    /// Of those, answered (every one checked against what was decided when it was asked).
    pub reads_answered: u64,
    /// The network's counts.
    pub net: NetStats,
}

struct SimNode<T: Entry, S: Storage<T>> {
    op: Option<OmniPaxos<T, S>>,
    /// The configuration the node runs (`None`: never started).
    cluster: Option<ClusterConfig>,
    /// Ticks per step (1.0: the nominal rate).
    skew: f64,
    clock: f64,
    paused_until: u64,
    restarted: bool,
    /// The application reading from the node (`None` while the node is down).
    app: Option<App>,
    /// The prefix this server's application let trim after applying it (see [`crate::app`]);
    /// kept across crashes, like the application's own storage.
    restorable: usize,
    /// Crashes of this server so far.
    incarnation: u64,
    /// The server joined a later configuration on empty storage.
    joined: bool,
    /// The end of the old log this server (a joiner) pulled, as its migration status told it
    /// (0: none); kept across crashes.
    old_log_end: usize,
    /// Reads asked at the node and not answered: read id -> the decided index the read must
    /// see (the highest any node had decided when it was asked). Dropped with the node's
    /// `OmniPaxos` (a crash, the next configuration): the application asks again.
    reads: BTreeMap<u64, usize>,
}

/// An append the simulator made that the node accepted.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AppendRecord {
    /// Its tag.
    pub tag: u64,
    /// The node it was made at.
    pub pid: NodeId,
    /// That node's crash count when it was made.
    pub incarnation: u64,
}

/// What became of the appends the nodes accepted (see [`Sim::append_report`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppendReport {
    /// Appends the nodes accepted (`append` returned `Ok`).
    pub accepted: u64,
    /// Of those, decided.
    pub decided: u64,
    /// Not decided, handed back by `take_uncertain_appends`.
    pub handed_back: u64,
    /// Neither, at a node that crashed since (a crash may lose what the node held).
    pub lost_at_crashed: u64,
    /// Neither, at a node that never crashed since: lost silently. `(tag, pid)`.
    pub lost: Vec<(u64, NodeId)>,
}

/// A deterministic simulated cluster. All randomness comes from the seed.
pub struct Sim<T: Entry + Tagged + PartialEq, B: Backend<T>> {
    cfg: SimConfig,
    rng: Rng,
    now: u64,
    nodes: Vec<SimNode<T, B::S>>,
    net: Network<T>,
    backend: B,
    checker: Checker<T>,
    buf: Vec<Message<T>>,
    trace: u64,
    stats: SimStats,
    /// Print every delivery and decision (`OMNIPAXOS_SIM_VERBOSE=1`).
    verbose: bool,
    /// Every append a node accepted.
    appends: Vec<AppendRecord>,
    /// Tags handed back by `take_uncertain_appends` (through [`Sim::take_uncertain_appends`]).
    handed_back: HashSet<u64>,
    /// The command that replays the run, if not the randomized tier's default.
    replay: Option<String>,
    /// Whether the simulated applications are checked (see [`Sim::set_check_applications`]).
    check_apps: bool,
    /// The trims the application made (with `trim`, or `snapshot` without snapshots): the
    /// members of the configuration that trimmed, and the index. The trim waited for those
    /// members; any other server (one that joins later, one removed before) may find the
    /// entries gone.
    app_trims: Vec<(Vec<NodeId>, usize)>,
    /// Whether nodes hand out messages ahead of their write, and the chance that a node
    /// crashes right after sending them (see [`Sim::set_ahead_of_write`]).
    ahead: Option<f64>,
}

/// More deliveries than this in one tick means the nodes answer each other without end.
const MAX_DELIVERIES_PER_TICK: u64 = 200_000;

fn fnv(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01B3)
}

impl<T: Entry + Tagged + PartialEq> Sim<T, MemoryBackend<T>> {
    /// A cluster on in-memory storage.
    pub fn new(cfg: SimConfig) -> Self {
        let backend = MemoryBackend::with_writes_at_once(cfg.writes_at_once);
        Sim::with_backend(cfg, backend)
    }
}

impl<T: Entry + Tagged + PartialEq, B: Backend<T>> Sim<T, B> {
    /// A cluster whose nodes run on storage from `backend`.
    pub fn with_backend(cfg: SimConfig, backend: B) -> Self {
        let rng = Rng::new(cfg.seed);
        let capacity = cfg.capacity.max(cfg.nodes);
        let net = Network::new(capacity, cfg.faults);
        let mut sim = Sim {
            nodes: Vec::with_capacity(capacity),
            cfg,
            rng,
            now: 0,
            net,
            backend,
            checker: Checker::default(),
            buf: Vec::new(),
            trace: 0xcbf2_9ce4_8422_2325,
            stats: SimStats::default(),
            verbose: std::env::var_os("OMNIPAXOS_SIM_VERBOSE").is_some(),
            app_trims: Vec::new(),
            ahead: None,
            appends: Vec::new(),
            handed_back: HashSet::new(),
            replay: None,
            check_apps: true,
        };
        let first = sim.cfg.cluster_config();
        for pid in 1..=capacity as NodeId {
            let started = pid as usize <= sim.cfg.nodes;
            let cluster = started.then(|| first.clone());
            let op = cluster.clone().map(|c| sim.build(pid, c));
            let app = cluster
                .as_ref()
                .map(|c| App::new(c.configuration_id, Origin::Initial));
            sim.nodes.push(SimNode {
                op,
                cluster,
                skew: 1.0,
                clock: 0.0,
                paused_until: 0,
                restarted: false,
                app,
                restorable: 0,
                incarnation: 0,
                joined: false,
                old_log_end: 0,
                reads: BTreeMap::new(),
            });
        }
        sim
    }

    fn server_config(&self, pid: NodeId) -> ServerConfig {
        ServerConfig {
            pid,
            leader_priority: self
                .cfg
                .priorities
                .get(pid as usize - 1)
                .copied()
                .unwrap_or(0),
            ..self.cfg.server.clone()
        }
    }

    fn build(&mut self, pid: NodeId, cluster: ClusterConfig) -> OmniPaxos<T, B::S> {
        let storage = self.backend.open(pid);
        let mut op = OmniPaxosConfig {
            cluster_config: cluster,
            server_config: self.server_config(pid),
        }
        .build(storage)
        .expect("simulator configuration is valid");
        op.set_fast_failover(self.cfg.fast_failover);
        op
    }

    /// Fails the run: panics with the tick, the seed and the command that replays it.
    pub fn fail(&self, what: &str) -> ! {
        let replay = self.replay.clone().unwrap_or_else(|| {
            "run the same test again (the same seed gives the same run); \
             OMNIPAXOS_SIM_VERBOSE=1 prints every delivery"
                .to_string()
        });
        panic!(
            "simulation failed at tick {} (seed {}, {} nodes): {what}\n  replay: {replay}",
            self.now, self.cfg.seed, self.cfg.nodes
        )
    }

    /// Sets the command a failure prints to replay the run.
    pub fn set_replay(&mut self, command: String) {
        self.replay = Some(command);
    }

    // ----- inspection -----

    /// The current tick.
    pub fn now(&self) -> u64 {
        self.now
    }
    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }
    /// The pids of all nodes that were ever started (removed ones included).
    pub fn pids(&self) -> impl Iterator<Item = NodeId> + '_ {
        (1..=self.nodes.len() as NodeId).filter(|p| self.nodes[*p as usize - 1].cluster.is_some())
    }

    /// The newest configuration any node runs.
    pub fn newest_config(&self) -> ClusterConfig {
        self.nodes
            .iter()
            .filter_map(|n| n.cluster.as_ref())
            .max_by_key(|c| c.configuration_id)
            .cloned()
            .unwrap_or_else(|| self.cfg.cluster_config())
    }

    /// The pids of the newest configuration.
    pub fn members(&self) -> Vec<NodeId> {
        self.newest_config().nodes
    }
    /// Node `pid`, unless it is crashed.
    pub fn node(&self, pid: NodeId) -> Option<&OmniPaxos<T, B::S>> {
        self.nodes.get((pid as usize).checked_sub(1)?)?.op.as_ref()
    }
    /// Node `pid` for direct calls (its outgoing messages are collected at the next step).
    pub fn node_mut(&mut self, pid: NodeId) -> Option<&mut OmniPaxos<T, B::S>> {
        self.nodes
            .get_mut((pid as usize).checked_sub(1)?)?
            .op
            .as_mut()
    }
    /// Whether `pid` is running.
    pub fn is_up(&self, pid: NodeId) -> bool {
        self.node(pid).is_some()
    }
    /// The network (to cut links, set faults, install filters).
    pub fn net(&mut self) -> &mut Network<T> {
        &mut self.net
    }
    /// The invariant checker (the decided log so far).
    pub fn checker(&self) -> &Checker<T> {
        &self.checker
    }
    /// A generator for test decisions, derived from the seed.
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }
    /// A hash of everything that happened: equal for equal seeds.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }
    /// Non-vacuity counters.
    pub fn stats(&self) -> SimStats {
        // A counter summed over the running nodes (those that crashed were counted then).
        let live = |f: fn(&omnipaxos::util::NodeStats) -> u64| -> u64 {
            self.nodes
                .iter()
                .filter_map(|n| n.op.as_ref())
                .map(|o| f(&o.get_stats()))
                .sum()
        };
        SimStats {
            ticks: self.now,
            decided: self.checker.decided_log().len() as u64,
            leader_changes: self.checker.leader_ballots().saturating_sub(1) as u64,
            snapshot_installs: self.stats.snapshot_installs + live(|s| s.snapshot_installs),
            migrations: self.stats.migrations + live(|s| s.migrations_completed),
            returned_appends: self.stats.returned_appends + live(|s| s.returned_appends),
            reconfigurations: self.checker.configurations().saturating_sub(1) as u64,
            app_snapshot_installs: self.stats.app_snapshot_installs
                + self
                    .nodes
                    .iter()
                    .filter_map(|n| n.app.as_ref())
                    .map(|a| a.snapshot_installs())
                    .sum::<u64>(),
            app_entries_applied: self.stats.app_entries_applied
                + self
                    .nodes
                    .iter()
                    .filter_map(|n| n.app.as_ref())
                    .map(|a| a.entries_applied())
                    .sum::<u64>(),
            decided_after_reconfiguration: self.checker.decided_after_first_config() as u64,
            net: self.net.stats(),
            ..self.stats
        }
    }

    /// The node serving as leader (in its accept phase) with the highest ballot, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.pids()
            .filter_map(|p| {
                let op = self.node(p)?;
                let serving =
                    op.get_current_leader() == Some((p, true)) && op.is_reconfigured().is_none();
                serving.then(|| (op.get_configuration_id(), op.get_promise(), p))
            })
            .max()
            .map(|(_, _, p)| p)
    }

    /// The decided index of `pid` (0 if crashed).
    pub fn decided(&self, pid: NodeId) -> usize {
        self.node(pid).map_or(0, |o| o.get_decided_idx())
    }

    // ----- control -----

    /// Sets how many ticks node `pid` makes per step (1.0 nominal).
    pub fn set_skew(&mut self, pid: NodeId, skew: f64) {
        self.nodes[pid as usize - 1].skew = skew;
    }

    /// Pauses node `pid` (no ticks, messages wait) for `ticks` steps.
    pub fn pause(&mut self, pid: NodeId, ticks: u64) {
        self.nodes[pid as usize - 1].paused_until = self.now + ticks;
    }

    /// Installs a filter on every message sent.
    pub fn set_filter(&mut self, f: Option<Filter<T>>) {
        self.net.set_filter(f);
    }

    /// Appends `entry` at node `pid` (recorded as appended for the validity check). Errors if
    /// the node is down or refuses.
    pub fn append(&mut self, pid: NodeId, entry: T) -> Result<(), String> {
        self.checker.appended(entry.tag());
        let tag = entry.tag();
        let Some(op) = self.node_mut(pid) else {
            return Err(format!("node {pid} is down"));
        };
        op.append(entry).map_err(|e| e.to_string())?;
        self.stats.appends += 1;
        self.record_append(pid, tag);
        self.collect(pid);
        Ok(())
    }

    /// Records an append a test makes directly on a node (through [`Sim::node_mut`], to drive
    /// the node by hand): deciding `tag` is then valid, and the append is accounted for.
    pub fn note_direct_append(&mut self, pid: NodeId, tag: u64) {
        self.checker.appended(tag);
        self.stats.appends += 1;
        self.record_append(pid, tag);
    }

    /// Appends all `entries` at node `pid` before its outgoing messages are taken (so they
    /// travel together).
    pub fn append_batch(&mut self, pid: NodeId, entries: Vec<T>) -> Result<(), String> {
        for e in &entries {
            self.checker.appended(e.tag());
        }
        let Some(op) = self.node_mut(pid) else {
            return Err(format!("node {pid} is down"));
        };
        let mut accepted = Vec::new();
        let mut result = Ok(());
        for e in entries {
            let tag = e.tag();
            match op.append(e) {
                Ok(()) => accepted.push(tag),
                Err(e) => {
                    result = Err(e.to_string());
                    break;
                }
            }
        }
        for tag in accepted {
            self.stats.appends += 1;
            self.record_append(pid, tag);
        }
        self.collect(pid);
        result
    }

    /// Proposes at node `pid` to reconfigure to `next`.
    pub fn reconfigure(&mut self, pid: NodeId, next: ClusterConfig) -> Result<(), String> {
        self.reconfigure_with(pid, next, None)
    }

    /// Proposes at node `pid` to reconfigure to `next`, with `metadata` decided alongside.
    pub fn reconfigure_with(
        &mut self,
        pid: NodeId,
        next: ClusterConfig,
        metadata: Option<Vec<u8>>,
    ) -> Result<(), String> {
        let op = self
            .node_mut(pid)
            .ok_or_else(|| format!("node {pid} is down"))?;
        op.reconfigure(next, metadata).map_err(|e| e.to_string())?;
        self.collect(pid);
        Ok(())
    }

    /// Trims at node `pid` (`OmniPaxos::trim`), counting successes.
    pub fn trim(&mut self, pid: NodeId, idx: Option<usize>) -> Result<(), String> {
        let op = self
            .node_mut(pid)
            .ok_or_else(|| format!("node {pid} is down"))?;
        op.trim(idx).map_err(|e| e.to_string())?;
        let compacted = op.get_compacted_idx();
        let members = self.nodes[pid as usize - 1]
            .cluster
            .as_ref()
            .map(|c| c.nodes.clone())
            .unwrap_or_default();
        self.app_trims.push((members, compacted));
        self.stats.trims += 1;
        self.collect(pid);
        Ok(())
    }

    /// Snapshots at node `pid` (`OmniPaxos::snapshot`), counting successes.
    pub fn snapshot(
        &mut self,
        pid: NodeId,
        idx: Option<usize>,
        local_only: bool,
    ) -> Result<(), String> {
        let op = self
            .node_mut(pid)
            .ok_or_else(|| format!("node {pid} is down"))?;
        op.snapshot(idx, local_only).map_err(|e| e.to_string())?;
        // Without snapshots (or on a log trimmed before), a snapshot is a trim.
        if let Some(omnipaxos::util::LogEntry::Trimmed(k)) = op.read(0) {
            let members = self.nodes[pid as usize - 1]
                .cluster
                .as_ref()
                .map(|c| c.nodes.clone())
                .unwrap_or_default();
            self.app_trims.push((members, k));
        }
        self.stats.snapshots += 1;
        if local_only {
            self.stats.local_snapshots += 1;
        }
        self.collect(pid);
        Ok(())
    }

    fn record_append(&mut self, pid: NodeId, tag: u64) {
        let incarnation = self.nodes[pid as usize - 1].incarnation;
        self.appends.push(AppendRecord {
            tag,
            pid,
            incarnation,
        });
    }

    /// Takes the appends every running node hands back as uncertain
    /// (`OmniPaxos::take_uncertain_appends`), as an application does; returns them with the
    /// node they came from, so that the caller may append them again (as new appends).
    pub fn take_uncertain_appends(&mut self) -> Vec<(NodeId, T)> {
        let mut out = Vec::new();
        for idx in 0..self.nodes.len() {
            let pid = idx as NodeId + 1;
            let Some(op) = self.nodes[idx].op.as_mut() else {
                continue;
            };
            for e in op.take_uncertain_appends() {
                self.handed_back.insert(e.tag());
                self.stats.handed_back += 1;
                out.push((pid, e));
            }
        }
        out
    }

    /// Every append a node accepted so far.
    pub fn appends(&self) -> &[AppendRecord] {
        &self.appends
    }

    /// What became of every append a node accepted: decided, handed back, or neither (lost). An
    /// append is lost silently if it is neither and its node never crashed since.
    pub fn append_report(&self) -> AppendReport {
        let mut r = AppendReport::default();
        for a in &self.appends {
            r.accepted += 1;
            if self.checker.is_decided(a.tag) {
                r.decided += 1;
            } else if self.handed_back.contains(&a.tag) {
                r.handed_back += 1;
            } else if self.nodes[a.pid as usize - 1].incarnation != a.incarnation {
                r.lost_at_crashed += 1;
            } else {
                r.lost.push((a.tag, a.pid));
            }
        }
        r
    }

    /// The application of node `pid` (`None` while the node is down).
    pub fn app(&self, pid: NodeId) -> Option<&App> {
        self.nodes.get((pid as usize).checked_sub(1)?)?.app.as_ref()
    }

    /// Turns the checks of the simulated applications off (or on again). On by default; a
    /// scenario that targets what happens after an application would already have failed (to
    /// show a later, different failure) turns them off; meanwhile the applications do not read.
    pub fn set_check_applications(&mut self, on: bool) {
        self.check_apps = on;
    }

    /// Whether the simulated applications are checked.
    pub fn checks_applications(&self) -> bool {
        self.check_apps
    }

    /// Reads what node `pid` decided into its application (see [`crate::app`]).
    fn app_read(&mut self, pid: NodeId) {
        if !self.check_apps {
            return;
        }
        let idx = pid as usize - 1;
        // What the application trimmed in a configuration this server was not a member of
        // did not wait for it: it may find those entries gone.
        let trimmed_without_us = self
            .app_trims
            .iter()
            .filter(|(members, _)| !members.contains(&pid))
            .map(|(_, k)| *k)
            .max()
            .unwrap_or(0);
        let node = &mut self.nodes[idx];
        node.restorable = node.restorable.max(trimmed_without_us);
        if let Some(m) = node.op.as_ref().and_then(|op| op.get_migration_status()) {
            node.old_log_end = node.old_log_end.max(m.prefix_end);
        }
        // A joiner pulls the old log folded into one snapshot. If the application trimmed part
        // of that old log before the joiner came (a trim keeps no snapshot) and no server still
        // holds what it removed, the joiner gives up the whole old log it was pulling: its
        // storage already starts after it, and a snapshot of the part still held would pass
        // for the whole log. Its application restores that state from outside, as it must for
        // the trimmed part anyway (see the reconfiguration chapter of the guide).
        let old_log_end = node.old_log_end;
        let old_log_trimmed = self
            .app_trims
            .iter()
            .any(|(members, k)| !members.contains(&pid) && *k > 0 && *k <= old_log_end);
        let node = &mut self.nodes[idx];
        if old_log_trimmed {
            node.restorable = node.restorable.max(old_log_end);
        }
        let (Some(op), Some(app)) = (node.op.as_ref(), node.app.as_mut()) else {
            return;
        };
        if let Err(e) = app.read(pid, op, &mut self.checker, &mut node.restorable) {
            self.fail(&e);
        }
    }

    /// Makes every node hand out its messages the way a latency-minded application does:
    /// first those that may leave before its write
    /// ([`OmniPaxos::take_messages_ahead_of_write`]), then the rest. Each time some left
    /// ahead, the node crashes before its write with probability `p_crash` (`None`: off, the
    /// default).
    pub fn set_ahead_of_write(&mut self, p_crash: Option<f64>) {
        self.ahead = p_crash;
    }

    /// Asks node `pid` for a linearizable read ([`OmniPaxos::request_read`]). When the node
    /// answers it, the simulator checks that its index covers every entry any node had decided
    /// when the read was asked, and that the application applied that far.
    pub fn request_read(&mut self, pid: NodeId) -> Result<(), String> {
        let floor = self
            .nodes
            .iter()
            .filter_map(|n| n.op.as_ref())
            .map(Checker::entries_decided)
            .fold(self.checker.highest_decided(), usize::max);
        if self.verbose {
            eprintln!(
                "t={} read at node {pid}: must see {floor} entries",
                self.now
            );
        }
        let idx = pid as usize - 1;
        let node = self
            .nodes
            .get_mut(idx)
            .ok_or_else(|| format!("no node {pid}"))?;
        let op = node
            .op
            .as_mut()
            .ok_or_else(|| format!("node {pid} is down"))?;
        let id = op.request_read();
        if node.reads.insert(id.0, floor).is_some() {
            self.fail(&format!("node {pid} gave read id {} twice", id.0));
        }
        self.stats.reads_requested += 1;
        self.collect(pid);
        Ok(())
    }

    /// Reads asked at `pid` and not answered yet.
    pub fn pending_reads(&self, pid: NodeId) -> usize {
        self.nodes
            .get((pid as usize).wrapping_sub(1))
            .map_or(0, |n| n.reads.len())
    }

    /// Answers the reads node `pid` has ready, checking each.
    fn serve_reads(&mut self, pid: NodeId) {
        let idx = pid as usize - 1;
        let node = &mut self.nodes[idx];
        let Some(op) = node.op.as_mut() else {
            return;
        };
        let ready = op.take_ready_reads();
        if ready.is_empty() {
            return;
        }
        let decided = op.get_decided_idx();
        // What the application applied, in the node's index space (a decided stop sign it
        // applied has an index there).
        let applied = node
            .app
            .as_ref()
            .map(|a| a.applied() + usize::from(a.stopped().is_some()));
        let mut errors = Vec::new();
        for r in ready {
            let Some(floor) = node.reads.remove(&r.id.0) else {
                errors.push(format!(
                    "node {pid} answered read {} it was not asked (or twice)",
                    r.id.0
                ));
                continue;
            };
            if r.index < floor {
                errors.push(format!(
                    "stale read at node {pid}: read {} got index {} but {floor} entries were decided \
                     when it was asked",
                    r.id.0, r.index
                ));
            }
            if r.index > decided {
                errors.push(format!(
                    "node {pid} answered read {} at index {} before deciding it (decided {decided})",
                    r.id.0, r.index
                ));
            }
            if let Some(applied) = applied.filter(|_| self.check_apps) {
                if applied < r.index {
                    errors.push(format!(
                        "node {pid}'s application applied {applied} entries, read {} needs {}",
                        r.id.0, r.index
                    ));
                }
            }
            self.stats.reads_answered += 1;
        }
        if let Some(e) = errors.first() {
            self.fail(e);
        }
    }

    /// Checks every running node's application state against the decided log.
    pub fn check_applications(&self) -> Result<(), String> {
        for pid in self.pids() {
            if let Some(app) = self.app(pid) {
                app.check_against(pid, &self.checker)?;
            }
        }
        Ok(())
    }

    /// Turns node `pid`, whose configuration is stopped, into the node of the next one on the same
    /// storage.
    pub fn start_next_config(&mut self, pid: NodeId) -> Result<(), String> {
        let idx = pid as usize - 1;
        let server = self.server_config(pid);
        let op = self.nodes[idx]
            .op
            .take()
            .ok_or_else(|| format!("node {pid} is down"))?;
        let next_cluster = op.is_reconfigured().map(|ss| ss.next_config);
        if let Some(ss) = op.is_reconfigured() {
            let (c, idx) = (op.get_configuration_id(), op.get_decided_idx() - 1);
            if let Err(e) = self.checker.node_moved_on(c, idx, &ss, pid) {
                self.nodes[idx].op = Some(op);
                self.fail(&e);
            }
        }
        match op.start_next_config(server) {
            Ok(next) => {
                self.nodes[idx].reads.clear();
                let c = next.get_configuration_id();
                self.nodes[idx].cluster = next_cluster;
                self.nodes[idx].op = Some(next);
                self.nodes[idx].restarted = true;
                if let Some(app) = self.nodes[idx].app.as_mut() {
                    app.continue_in(c);
                }
                if self.verbose {
                    eprintln!(
                        "t={} node {pid} continues in the next configuration",
                        self.now
                    );
                }
                self.collect(pid);
                Ok(())
            }
            Err((e, op)) => {
                self.nodes[idx].op = Some(op);
                Err(e.to_string())
            }
        }
    }

    /// Moves every running server whose configuration is stopped on to the next one, as an
    /// application does: servers in both continue on their storage
    /// ([`OmniPaxos::start_next_config`]), new ones join on fresh storage; removed ones stay as
    /// they are.
    pub fn advance_configurations(&mut self) {
        let stopped: Vec<(NodeId, ClusterConfig)> = self
            .pids()
            .filter_map(|p| {
                let ss = self.node(p)?.is_reconfigured()?;
                Some((p, ss.next_config))
            })
            .collect();
        for (pid, next) in stopped {
            if next.nodes.contains(&pid) {
                let _ = self.start_next_config(pid);
            }
            for &joiner in &next.nodes {
                let started = self
                    .nodes
                    .get(joiner as usize - 1)
                    .is_some_and(|n| n.cluster.is_some());
                if !started && (joiner as usize) <= self.cfg.capacity {
                    self.join(joiner, next.clone());
                }
            }
        }
    }

    /// Starts node `pid` as a server joining `cluster`, on fresh storage.
    pub fn join(&mut self, pid: NodeId, cluster: ClusterConfig) {
        let idx = pid as usize - 1;
        self.nodes[idx].op = None;
        self.nodes[idx].reads.clear();
        self.backend.fresh(pid);
        let op = self.build(pid, cluster.clone());
        self.retire_app(idx);
        self.nodes[idx].app = Some(App::new(cluster.configuration_id, Origin::Joined));
        self.nodes[idx].restorable = 0;
        self.nodes[idx].old_log_end = 0;
        self.nodes[idx].joined = true;
        self.nodes[idx].cluster = Some(cluster);
        self.nodes[idx].op = Some(op);
        self.nodes[idx].restarted = true;
        self.nodes[idx].clock = 0.0;
        if self.verbose {
            eprintln!("t={} node {pid} joins", self.now);
        }
        self.collect(pid);
    }

    /// Crashes node `pid`: it stops, messages to it are lost, its storage stays.
    pub fn crash(&mut self, pid: NodeId) {
        let idx = pid as usize - 1;
        if let Some(op) = self.nodes[idx].op.take() {
            self.stats.crashes += 1;
            if op.get_migration_status().is_some() {
                self.stats.crashes_mid_pull += 1;
            }
            self.nodes[idx].incarnation += 1;
            self.nodes[idx].reads.clear();
            // A compaction made (by a direct call) since the application last looked, below
            // what it applied, is one it let happen.
            let compacted = op.get_compacted_idx();
            let node = &mut self.nodes[idx];
            if node.app.as_ref().is_some_and(|a| a.applied() >= compacted) {
                node.restorable = node.restorable.max(compacted);
            }
            self.retire_app(idx);
            self.stats.snapshot_installs += op.get_stats().snapshot_installs;
            self.stats.migrations += op.get_stats().migrations_completed;
            self.stats.returned_appends += op.get_stats().returned_appends;
            if op.get_current_leader() == Some((pid, true)) {
                self.stats.leader_crashes_in_accept += 1;
            }
            self.trace = fnv(self.trace, 0xC0 ^ pid);
            if self.verbose {
                eprintln!("t={} crash node {pid}", self.now);
            }
        }
    }

    /// Restarts a crashed node on its storage (calling `fail_recovery`, as the seeds do).
    pub fn restart(&mut self, pid: NodeId) {
        let idx = pid as usize - 1;
        if self.nodes[idx].op.is_some() {
            return;
        }
        let Some(cluster) = self.nodes[idx].cluster.clone() else {
            return;
        };
        let c = cluster.configuration_id;
        let mut op = self.build(pid, cluster);
        op.fail_recovery();
        // The application's state is volatile: it starts again from nothing.
        let origin = if self.nodes[idx].joined {
            Origin::RestartedJoiner
        } else {
            Origin::Restarted
        };
        self.nodes[idx].app = Some(App::new(c, origin));
        if self.verbose {
            eprintln!("t={} restart node {pid}", self.now);
        }
        self.nodes[idx].op = Some(op);
        self.nodes[idx].restarted = true;
        self.nodes[idx].clock = 0.0;
        self.trace = fnv(self.trace, 0x5E ^ pid);
        self.collect(pid);
    }

    /// Counts what a retiring application did.
    fn retire_app(&mut self, idx: usize) {
        if let Some(app) = self.nodes[idx].app.take() {
            self.stats.app_snapshot_installs += app.snapshot_installs();
            self.stats.app_entries_applied += app.entries_applied();
        }
    }

    /// Collects `pid`'s outgoing messages into the network, after its application read what
    /// the node decided.
    fn collect(&mut self, pid: NodeId) {
        self.app_read(pid);
        self.serve_reads(pid);
        let idx = pid as usize - 1;
        let Some(op) = self.nodes[idx].op.as_mut() else {
            return;
        };
        if let Some(p_crash) = self.ahead {
            // The leader's accepts leave before its own write; sometimes it crashes right
            // then, losing what it had staged.
            op.take_messages_ahead_of_write(&mut self.buf);
            if !self.buf.is_empty() {
                let now = self.now;
                for m in self.buf.drain(..) {
                    self.net.send(now, m, &mut self.rng);
                }
                if self.rng.chance(p_crash) {
                    // It restarts at once, on what it had written.
                    self.stats.crashes_before_write += 1;
                    self.crash(pid);
                    self.restart(pid);
                    return;
                }
            }
        }
        let Some(op) = self.nodes[idx].op.as_mut() else {
            return;
        };
        op.take_outgoing_messages(&mut self.buf);
        let now = self.now;
        for m in self.buf.drain(..) {
            self.net.send(now, m, &mut self.rng);
        }
    }

    /// One tick of simulated time: nodes tick (at their skew), due messages are delivered, and
    /// the invariants are checked.
    pub fn step(&mut self) {
        self.now += 1;
        let now = self.now;
        for idx in 0..self.nodes.len() {
            let pid = idx as NodeId + 1;
            let node = &mut self.nodes[idx];
            if node.paused_until > now {
                continue;
            }
            let Some(op) = node.op.as_mut() else { continue };
            node.clock += node.skew;
            while node.clock >= 1.0 {
                node.clock -= 1.0;
                op.tick();
            }
            self.collect(pid);
        }
        let mut delivered_this_tick = 0u64;
        while let Some(m) = self.net.next_due(now) {
            delivered_this_tick += 1;
            if delivered_this_tick > MAX_DELIVERIES_PER_TICK {
                self.liveness_failure(
                    "message storm: the nodes keep answering each other within one tick",
                );
            }
            let to = m.get_receiver();
            let Some(node) = (to as usize)
                .checked_sub(1)
                .and_then(|i| self.nodes.get_mut(i))
            else {
                continue;
            };
            if node.paused_until > now && node.op.is_some() {
                self.net.defer(node.paused_until, m);
                continue;
            }
            let Some(op) = node.op.as_mut() else { continue };
            self.trace = fnv(fnv(self.trace, now), m.get_sender() << 8 | to);
            if self.verbose {
                eprintln!("t={now} deliver {m:?}");
            }
            op.handle_incoming(m);
            if self.verbose {
                eprintln!(
                    "t={now}   node {to}: promise {:?} leader {:?} decided {} accepted {} compacted {} \
                     config {}",
                    op.get_promise(),
                    op.get_current_leader(),
                    op.get_decided_idx(),
                    op.get_accepted_idx(),
                    op.get_compacted_idx(),
                    op.get_configuration_id(),
                );
            }
            self.net.note_delivered();
            self.collect(to);
        }
        self.check();
    }

    /// Runs the safety checks on every running node.
    pub fn check(&mut self) {
        for idx in 0..self.nodes.len() {
            let pid = idx as NodeId + 1;
            let restarted = std::mem::take(&mut self.nodes[idx].restarted);
            let Some(op) = self.nodes[idx].op.as_ref() else {
                continue;
            };
            if let Err(e) = self.checker.observe(pid, op, restarted) {
                self.fail(&e);
            }
            self.trace = fnv(self.trace, op.get_decided_idx() as u64);
            self.app_read(pid);
        }
    }

    /// Runs `ticks` steps.
    pub fn run(&mut self, ticks: u64) {
        for _ in 0..ticks {
            self.step();
        }
    }

    /// Steps until `cond` holds (checked before each step), at most `max_ticks` steps. Returns
    /// the number of steps taken, or `None` if `cond` never held.
    pub fn run_until(
        &mut self,
        max_ticks: u64,
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Option<u64> {
        for i in 0..=max_ticks {
            if cond(self) {
                return Some(i);
            }
            if i < max_ticks {
                self.step();
            }
        }
        None
    }

    /// Like [`Self::run_until`], running `before_step` (e.g. moving servers on to the next
    /// configuration, as an application does) before each step.
    pub fn run_until_with(
        &mut self,
        max_ticks: u64,
        mut before_step: impl FnMut(&mut Self),
        mut cond: impl FnMut(&Self) -> bool,
    ) -> Option<u64> {
        for i in 0..=max_ticks {
            if cond(self) {
                return Some(i);
            }
            if i < max_ticks {
                before_step(self);
                self.step();
            }
        }
        None
    }

    /// Restores all links, restarts crashed nodes, ends pauses and skews.
    pub fn heal(&mut self) {
        self.net.heal();
        for pid in self.pids().collect::<Vec<_>>() {
            self.restart(pid);
            let n = &mut self.nodes[pid as usize - 1];
            n.paused_until = 0;
            n.skew = 1.0;
        }
    }

    /// Reports a liveness failure with the replay command.
    pub fn liveness_failure(&self, what: &str) -> ! {
        self.fail(&format!("liveness: {what}"))
    }
}
