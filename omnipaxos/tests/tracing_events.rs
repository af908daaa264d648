//! The library's `tracing` events (feature `tracing`), read from small in-process clusters
//! (messages moved by hand over `MemoryStorage`): each test captures every event with a tiny
//! subscriber of its own and checks their names, levels and fields.
//!
//! With `logging`, a node built with a `custom_logger` sends its events to that logger.
#![cfg(feature = "tracing")]

use omnipaxos::{
    messages::Message,
    storage::{Entry, Snapshot, StopSign, Storage, StorageOp, StorageResult},
    util::NodeId,
    ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};
use tracing::{
    field::{Field, Visit},
    span, Event, Level, Metadata, Subscriber,
};

// ----- a subscriber that keeps every event -----

/// One event as captured: its name, target, level and fields (as text; `message` included).
#[derive(Clone, Debug)]
struct Captured {
    name: &'static str,
    target: &'static str,
    level: Level,
    fields: BTreeMap<&'static str, String>,
}

impl Captured {
    fn get(&self, field: &str) -> &str {
        self.fields
            .get(field)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("event {} has no field {field}: {self:?}", self.name))
    }

    fn num(&self, field: &str) -> u64 {
        let v = self.get(field);
        v.parse()
            .unwrap_or_else(|_| panic!("{field} = {v} is not a number in {self:?}"))
    }

    fn pid(&self) -> NodeId {
        self.num("pid")
    }
}

impl Visit for Captured {
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name(), value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name(), value.to_string());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name(), value.to_string());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.fields.insert(field.name(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.fields.insert(field.name(), format!("{value:?}"));
    }
}

/// Keeps every event, at every level.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Captured>>>);

impl Subscriber for Capture {
    fn enabled(&self, _metadata: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _span: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _span: &span::Id, _values: &span::Record<'_>) {}
    fn record_follows_from(&self, _span: &span::Id, _follows: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut c = Captured {
            name: meta.name(),
            target: meta.target(),
            level: *meta.level(),
            fields: BTreeMap::new(),
        };
        event.record(&mut c);
        self.0.lock().unwrap().push(c);
    }
    fn enter(&self, _span: &span::Id) {}
    fn exit(&self, _span: &span::Id) {}
}

/// The events captured so far.
struct Events(Capture);

impl Events {
    fn all(&self) -> Vec<Captured> {
        self.0 .0.lock().unwrap().clone()
    }

    /// The events named `name`, checking that each has `target` and `level`.
    fn named(&self, name: &str, target: &str, level: Level) -> Vec<Captured> {
        let v: Vec<Captured> = self.all().into_iter().filter(|e| e.name == name).collect();
        for e in &v {
            assert_eq!((e.target, e.level), (target, level), "{e:?}");
        }
        v
    }

    /// How many events there are so far (to look at the later ones only).
    fn mark(&self) -> usize {
        self.0 .0.lock().unwrap().len()
    }

    fn since(&self, mark: usize) -> Vec<Captured> {
        self.all().split_off(mark)
    }
}

/// Runs `f` with a capturing subscriber as this thread's default.
fn capture<R>(f: impl FnOnce(&Events) -> R) -> R {
    let c = Capture::default();
    let events = Events(c.clone());
    tracing::subscriber::with_default(c, || f(&events))
}

// ----- the cluster -----

/// A log entry: a number. Its snapshot: their sum and count.
#[derive(Clone, Debug, PartialEq)]
struct Add(u64);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Sum {
    total: u64,
    count: u64,
}

impl Snapshot<Add> for Sum {
    fn create(entries: &[Add]) -> Self {
        Sum {
            total: entries.iter().map(|e| e.0).sum(),
            count: entries.len() as u64,
        }
    }
    fn merge(&mut self, delta: Self) {
        self.total += delta.total;
        self.count += delta.count;
    }
    fn use_snapshots() -> bool {
        true
    }
}

impl Entry for Add {
    type Snapshot = Sum;
}

type Node<S> = OmniPaxos<Add, S>;

fn server(pid: NodeId) -> ServerConfig {
    ServerConfig {
        pid,
        election_tick_timeout: 5,
        resend_message_tick_timeout: 10,
        ..Default::default()
    }
}

fn cluster_config(id: u32, nodes: &[NodeId]) -> ClusterConfig {
    ClusterConfig {
        configuration_id: id,
        nodes: nodes.to_vec(),
        ..Default::default()
    }
}

/// Servers that exchange every message at once, except those of cut-off servers.
struct Cluster<S: Storage<Add>> {
    nodes: BTreeMap<NodeId, Node<S>>,
    cut: BTreeSet<NodeId>,
}

impl Cluster<MemoryStorage<Add>> {
    /// The first configuration, on empty memory storage.
    fn new(pids: &[NodeId]) -> Self {
        let config = cluster_config(1, pids);
        let nodes = pids
            .iter()
            .map(|&pid| {
                let cfg = OmniPaxosConfig {
                    cluster_config: config.clone(),
                    server_config: server(pid),
                };
                (pid, cfg.build(MemoryStorage::default()).unwrap())
            })
            .collect();
        Cluster {
            nodes,
            cut: BTreeSet::new(),
        }
    }
}

impl<S: Storage<Add>> Cluster<S> {
    fn node(&mut self, pid: NodeId) -> &mut Node<S> {
        self.nodes.get_mut(&pid).expect("a server of the cluster")
    }

    /// Delivers `msgs` and everything they cause, until nothing is left to send.
    fn deliver(&mut self, mut msgs: Vec<Message<Add>>) {
        while !msgs.is_empty() {
            let mut next = Vec::new();
            for m in msgs {
                let (from, to) = (m.get_sender(), m.get_receiver());
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    continue;
                }
                if let Some(n) = self.nodes.get_mut(&to) {
                    n.handle_incoming(m);
                    n.take_outgoing_messages(&mut next);
                }
            }
            msgs = next;
        }
    }

    /// Every server ticks once; then every message is delivered.
    fn round(&mut self) {
        let mut msgs = Vec::new();
        for n in self.nodes.values_mut() {
            n.tick();
            n.take_outgoing_messages(&mut msgs);
        }
        self.deliver(msgs);
    }

    fn run(&mut self, rounds: usize) {
        for _ in 0..rounds {
            self.round();
        }
    }

    /// Runs rounds until `done`, at most 500.
    fn run_until(&mut self, mut done: impl FnMut(&Self) -> bool) {
        for _ in 0..500 {
            if done(self) {
                return;
            }
            self.round();
        }
        panic!("not reached in 500 rounds");
    }

    /// A server that leads and serves, among those not cut off.
    fn serving_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(pid, _)| !self.cut.contains(pid))
            .find(|(pid, n)| n.get_current_leader() == Some((**pid, true)))
            .map(|(pid, _)| *pid)
    }

    /// Runs until a server leads and serves, and returns it.
    fn elect(&mut self) -> NodeId {
        self.run_until(|c| c.serving_leader().is_some());
        self.serving_leader().unwrap()
    }

    /// Appends `values` at `at` and runs until every server not cut off decided them all.
    fn append_and_decide(&mut self, at: NodeId, values: impl IntoIterator<Item = u64>) {
        for v in values {
            self.node(at).append(Add(v)).expect("append");
        }
        let mut msgs = Vec::new();
        self.node(at).take_outgoing_messages(&mut msgs);
        self.deliver(msgs);
        let target = self.nodes[&at].get_accepted_idx();
        self.run_until(|c| {
            c.nodes
                .iter()
                .filter(|(pid, _)| !c.cut.contains(pid))
                .all(|(_, n)| n.get_decided_idx() >= target)
        });
    }
}

fn pids(events: &[Captured]) -> BTreeSet<NodeId> {
    events.iter().map(Captured::pid).collect()
}

// ----- the tests -----

#[test]
fn an_election_reports_the_leader_and_its_ballot_on_every_server() {
    capture(|events| {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect();
        let ballot = c.nodes[&leader].get_promise();

        let started = events.named("started", "omnipaxos::node", Level::INFO);
        assert_eq!(pids(&started), BTreeSet::from([1, 2, 3]));
        for e in &started {
            assert_eq!(e.get("nodes"), "[1, 2, 3]");
            assert_eq!((e.num("config_id"), e.num("promise")), (1, 0));
        }

        // Exactly one server takes over, with the ballot everybody promised.
        let elected = events.named("became_leader", "omnipaxos::election", Level::INFO);
        assert_eq!(elected.len(), 1, "{elected:?}");
        let e = &elected[0];
        assert_eq!(e.pid(), leader);
        assert_eq!(e.num("ballot"), u64::from(ballot.n));
        assert_eq!(e.num("config_id"), 1);
        assert_eq!(
            e.get("message"),
            "elected: this node leads; its prepare phase starts"
        );

        let prepared = events.named("prepare_done", "omnipaxos::election", Level::INFO);
        assert_eq!(prepared.len(), 1, "{prepared:?}");
        let p = &prepared[0];
        assert_eq!((p.pid(), p.num("ballot")), (leader, u64::from(ballot.n)));
        assert_eq!((p.num("adopted_end"), p.num("decided_idx")), (0, 0));
        // Nobody had accepted anything: the leader's own (empty) log is adopted.
        assert_eq!(p.num("adopted_from"), leader);

        let following = events.named("following", "omnipaxos::election", Level::INFO);
        let seen: BTreeSet<(NodeId, u64, u64)> = following
            .iter()
            .map(|e| (e.pid(), e.num("leader"), e.num("ballot")))
            .collect();
        let expected: BTreeSet<(NodeId, u64, u64)> = [1, 2, 3]
            .into_iter()
            .filter(|p| *p != leader)
            .map(|p| (p, leader, u64::from(ballot.n)))
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(following.len(), 2, "{following:?}");

        // A clean start warns about nothing.
        let loud: Vec<Captured> = events
            .all()
            .into_iter()
            .filter(|e| e.level <= Level::WARN)
            .collect();
        assert!(loud.is_empty(), "{loud:?}");
    });
}

#[test]
fn replication_reports_per_message_events_only_at_trace_level() {
    capture(|events| {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect();
        let follower = if leader == 1 { 2 } else { 1 };
        let mark = events.mark();
        c.append_and_decide(leader, 0..20);
        c.append_and_decide(follower, 20..40);
        c.run(20);
        let later = events.since(mark);
        let loud: Vec<&Captured> = later.iter().filter(|e| e.level < Level::TRACE).collect();
        assert!(
            loud.is_empty(),
            "steady replication logs above TRACE: {loud:?}"
        );
        // At TRACE: every message handled, and the decided index as it moves.
        let accepts = later
            .iter()
            .filter(|e| e.name == "received" && e.get("kind") == "AcceptDecide")
            .count();
        assert!(accepts >= 2, "AcceptDecide handled {accepts} times");
        for pid in [1, 2, 3] {
            let last_decided = later
                .iter()
                .filter(|e| e.name == "decided" && e.pid() == pid)
                .map(|e| e.num("decided_idx"))
                .next_back();
            assert_eq!(last_decided, Some(40), "server {pid}");
        }
    });
}

#[test]
fn a_lost_quorum_a_silent_leader_and_the_next_leader_are_reported() {
    capture(|events| {
        let mut c = Cluster::new(&[1, 2, 3]);
        let old = c.elect();
        let old_ballot = u64::from(c.nodes[&old].get_promise().n);
        c.append_and_decide(old, [1, 2]);
        let mark = events.mark();
        c.cut.insert(old);
        // An append at the leader that is cut off: never decided in its ballot.
        c.node(old).append(Add(99)).expect("append");
        let new = c.elect();
        assert_ne!(new, old);
        let new_ballot = u64::from(c.nodes[&new].get_promise().n);
        assert!(new_ballot > old_ballot);
        let cut_off = events.since(mark);
        let named = |name: &str| -> Vec<Captured> {
            cut_off.iter().filter(|e| e.name == name).cloned().collect()
        };

        let lost = named("quorum_lost");
        assert_eq!(lost.len(), 1, "{lost:?}");
        assert_eq!(
            (lost[0].target, lost[0].level),
            ("omnipaxos::election", Level::WARN)
        );
        assert_eq!((lost[0].pid(), lost[0].num("ballot")), (old, old_ballot));
        assert_eq!(lost[0].num("heard"), 1);

        let silent = named("leader_unreachable");
        let followers: BTreeSet<NodeId> = [1, 2, 3].into_iter().filter(|p| *p != old).collect();
        assert_eq!(pids(&silent), followers, "{silent:?}");
        for e in &silent {
            assert_eq!(e.level, Level::WARN);
            assert_eq!((e.num("leader"), e.num("ballot")), (old, old_ballot));
        }

        let elected = named("became_leader");
        assert_eq!(elected.len(), 1, "{elected:?}");
        assert_eq!(
            (elected[0].pid(), elected[0].num("ballot")),
            (new, new_ballot)
        );
        let prepared = named("prepare_done");
        assert_eq!(prepared.len(), 1, "{prepared:?}");
        assert_eq!(prepared[0].num("adopted_end"), 2);
        assert_eq!(prepared[0].num("decided_idx"), 2);
        let other = followers.iter().copied().find(|p| *p != new).unwrap();
        let follows: Vec<(NodeId, u64)> = named("following")
            .iter()
            .map(|e| (e.pid(), e.num("leader")))
            .collect();
        assert_eq!(follows, vec![(other, new)]);

        // Healed: the old leader steps down, follows the new one, and hands back its append.
        let mark = events.mark();
        c.cut.clear();
        c.run_until(|c| c.nodes[&old].get_promise().n == new_ballot as u32);
        c.run(10);
        let healed = events.since(mark);
        let at_old = |name: &str| -> Vec<Captured> {
            healed
                .iter()
                .filter(|e| e.name == name && e.pid() == old)
                .cloned()
                .collect()
        };
        let down = at_old("stepped_down");
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(down[0].num("ballot"), old_ballot);
        // It steps down on the new leader's prepare: the new leader hears it again after the
        // heal (a heartbeat reply after silent rounds) and prepares it at once, before the old
        // leader's own election ends a round. Its promise is the new ballot then.
        assert_eq!(
            (down[0].num("promise"), down[0].num("promised_to")),
            (new_ballot, new)
        );
        assert_eq!(down[0].get("stopped"), "false");
        let follows = at_old("following");
        assert_eq!(follows.len(), 1, "{follows:?}");
        assert_eq!(follows[0].num("leader"), new);
        let returned = at_old("returned");
        assert_eq!(returned.len(), 1, "{returned:?}");
        assert_eq!(
            (returned[0].target, returned[0].level),
            ("omnipaxos::append", Level::INFO)
        );
        assert_eq!((returned[0].num("count"), returned[0].num("total")), (1, 1));
        let back = c.node(old).take_returned_appends();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].entry, Add(99));
    });
}

#[test]
fn snapshots_and_trims_are_reported_on_every_server() {
    capture(|events| {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect();
        c.append_and_decide(leader, 1..=10);
        c.run(10);

        c.node(leader).snapshot(Some(6), false).expect("snapshot");
        c.run(10);
        let taken = events.named("snapshot_taken", "omnipaxos::compaction", Level::INFO);
        let at: BTreeSet<(NodeId, u64)> = taken
            .iter()
            .map(|e| (e.pid(), e.num("compacted_idx")))
            .collect();
        assert_eq!(at, BTreeSet::from([(1, 6), (2, 6), (3, 6)]));
        assert_eq!(taken.len(), 3, "{taken:?}");

        c.node(leader).trim(Some(8)).expect("trim");
        c.run(10);
        let trimmed = events.named("trimmed", "omnipaxos::compaction", Level::INFO);
        let at: BTreeSet<(NodeId, u64)> = trimmed
            .iter()
            .map(|e| (e.pid(), e.num("compacted_idx")))
            .collect();
        assert_eq!(at, BTreeSet::from([(1, 8), (2, 8), (3, 8)]));
        assert_eq!(trimmed.len(), 3, "{trimmed:?}");
    });
}

#[test]
fn a_reconfiguration_reports_the_stop_sign_and_the_joiners_migration() {
    capture(|events| {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect();
        c.append_and_decide(leader, [5, 6, 7]);
        let follower = if leader == 1 { 2 } else { 1 };
        let next = cluster_config(2, &[1, 2, 3, 4]);
        c.node(follower)
            .reconfigure(next.clone(), None)
            .expect("reconfigure");
        c.run_until(|c| c.nodes.values().all(|n| n.is_reconfigured().is_some()));

        let proposed = events.named("stopsign_proposed", "omnipaxos::reconfig", Level::INFO);
        assert_eq!(proposed.len(), 1, "{proposed:?}");
        assert_eq!(proposed[0].pid(), follower);
        assert_eq!(proposed[0].num("next_config_id"), 2);
        assert_eq!(proposed[0].get("next_nodes"), "[1, 2, 3, 4]");

        let decided = events.named("stopsign_decided", "omnipaxos::reconfig", Level::INFO);
        assert_eq!(pids(&decided), BTreeSet::from([1, 2, 3]));
        assert_eq!(decided.len(), 3, "{decided:?}");
        for e in &decided {
            assert_eq!((e.num("idx"), e.num("next_config_id")), (3, 2));
            assert_eq!(e.get("next_nodes"), "[1, 2, 3, 4]");
        }
        let stopped = events.named("configuration_stopped", "omnipaxos::reconfig", Level::INFO);
        assert_eq!(pids(&stopped), BTreeSet::from([1, 2, 3]));
        assert!(stopped.iter().all(|e| e.get("decided_here") == "true"));

        // The next configuration: the three go on, server 4 joins on empty storage and pulls
        // the old log (as a snapshot: `Add` uses snapshots).
        let old = std::mem::take(&mut c.nodes);
        for (pid, n) in old {
            let n = n.start_next_config(server(pid)).ok().expect("next");
            c.nodes.insert(pid, n);
        }
        let joiner = next
            .clone()
            .build_for_server(server(4), MemoryStorage::default())
            .expect("joiner");
        c.nodes.insert(4, joiner);
        c.run_until(|c| {
            c.nodes[&4].get_migration_status().is_none() && c.nodes[&4].get_compacted_idx() == 3
        });
        c.run(10);

        let started: Vec<Captured> = events
            .named("started", "omnipaxos::node", Level::INFO)
            .into_iter()
            .filter(|e| e.num("config_id") == 2)
            .collect();
        assert_eq!(pids(&started), BTreeSet::from([1, 2, 3, 4]));
        for e in &started {
            let expected = if e.pid() == 4 { "None" } else { "Some(3)" };
            assert_eq!(e.get("log_start"), expected, "{e:?}");
        }
        let learned = events.named("log_start_learned", "omnipaxos::migration", Level::INFO);
        assert_eq!(learned.len(), 1, "{learned:?}");
        assert_eq!(learned[0].pid(), 4);
        assert_eq!(
            (learned[0].num("start"), learned[0].num("pending_below")),
            (3, 3)
        );
        let completed = events.named("completed", "omnipaxos::migration", Level::INFO);
        assert_eq!(completed.len(), 1, "{completed:?}");
        assert_eq!(completed[0].pid(), 4);
        assert_eq!(completed[0].num("compacted_idx"), 3);
        assert_eq!(completed[0].num("config_id"), 2);
        assert_eq!(completed[0].num("migrated_entries"), 3);
        // Progress while pulling (each new tenth; the end is the `completed` event).
        let progress = events.named("pull_progress", "omnipaxos::migration", Level::DEBUG);
        assert!(!progress.is_empty());
        let received: Vec<u64> = progress.iter().map(|e| e.num("received")).collect();
        assert!(received.windows(2).all(|w| w[0] < w[1]), "{progress:?}");
        for e in &progress {
            assert_eq!((e.pid(), e.num("prefix_end")), (4, 3));
            assert!(e.num("received") < 3 && e.num("sources") >= 1, "{e:?}");
        }
        // The joiner reads the old log as a snapshot of its three entries.
        match c.nodes[&4].read(0) {
            Some(omnipaxos::util::LogEntry::Snapshotted(s)) => {
                assert_eq!(
                    s.snapshot,
                    Sum {
                        total: 18,
                        count: 3
                    }
                )
            }
            other => panic!("{other:?}"),
        }
    });
}

// ----- a `tracing-subscriber` formatter, as an application installs it (the guide's code) -----

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_fmt_subscriber_prints_one_line_per_event() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    // ANCHOR: subscriber
    use tracing_subscriber::EnvFilter;

    // The library's events at INFO and above. `EnvFilter::from_default_env()` takes the filter
    // from `RUST_LOG` instead: `omnipaxos=info`, `omnipaxos=info,omnipaxos::migration=debug`,
    // `omnipaxos=trace` (every message handled), ...
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("omnipaxos=info"))
        .with_writer(move || writer.clone()) // By default, standard output.
        .with_ansi(false)
        .without_time() // (Here: the test compares the lines.)
        .finish();
    // ANCHOR_END: subscriber
    // An application installs it once, with `tracing::subscriber::set_global_default`; here
    // it is this thread's only.
    tracing::subscriber::with_default(subscriber, || {
        let mut c = Cluster::new(&[1, 2, 3]);
        let leader = c.elect();
        let ballot = c.nodes[&leader].get_promise().n;
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let expected = format!(
            " INFO omnipaxos::election: elected: this node leads; its prepare phase starts \
             pid={leader} config_id=1 ballot={ballot} priority=0 accepted_idx=0 decided_idx=0"
        );
        assert!(lines.contains(&expected.as_str()), "{text}");
        // One line per event, none below INFO: 3 starts, 1 takeover, 1 prepare, 2 followers.
        assert_eq!(lines.len(), 7, "{text}");
        assert!(
            lines.iter().all(|l| l.starts_with(" INFO omnipaxos::")),
            "{text}"
        );
    });
}

// ----- storage failures -----

/// Memory storage whose writes fail once `fail` is set.
struct Failing {
    inner: MemoryStorage<Add>,
    fail: Arc<AtomicBool>,
}

impl Failing {
    fn check(&self) -> StorageResult<()> {
        if self.fail.load(Ordering::SeqCst) {
            Err("disk on fire".into())
        } else {
            Ok(())
        }
    }
}

impl Storage<Add> for Failing {
    fn write_atomically(&mut self, ops: Vec<StorageOp<Add>>) -> StorageResult<()> {
        self.check()?;
        self.inner.write_atomically(ops)
    }
    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<Add>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        self.check()?;
        self.inner.write_atomically_with_record(ops, record)
    }
    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        self.inner.get_node_record()
    }
    fn get_decided_idx(&self) -> StorageResult<usize> {
        self.inner.get_decided_idx()
    }
    fn get_accepted_round(
        &self,
    ) -> StorageResult<Option<omnipaxos::ballot_leader_election::Ballot>> {
        self.inner.get_accepted_round()
    }
    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<Add>> {
        self.inner.get_entries(from, to)
    }
    fn get_log_len(&self) -> StorageResult<usize> {
        self.inner.get_log_len()
    }
    fn get_suffix(&self, from: usize) -> StorageResult<Vec<Add>> {
        self.inner.get_suffix(from)
    }
    fn get_promise(&self) -> StorageResult<Option<omnipaxos::ballot_leader_election::Ballot>> {
        self.inner.get_promise()
    }
    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        self.inner.get_stopsign()
    }
    fn get_compacted_idx(&self) -> StorageResult<usize> {
        self.inner.get_compacted_idx()
    }
    fn get_snapshot(&self) -> StorageResult<Option<Sum>> {
        self.inner.get_snapshot()
    }
}

#[test]
fn a_failed_storage_write_is_reported_as_an_error_before_the_node_stops() {
    capture(|events| {
        let fail = Arc::new(AtomicBool::new(false));
        let storage = Failing {
            inner: MemoryStorage::default(),
            fail: fail.clone(),
        };
        let mut node = OmniPaxosConfig {
            cluster_config: cluster_config(1, &[1]),
            server_config: server(1),
        }
        .build(storage)
        .unwrap();
        for _ in 0..20 {
            node.tick();
        }
        assert_eq!(node.get_current_leader(), Some((1, true)));
        fail.store(true, Ordering::SeqCst);
        node.append(Add(1)).expect("append");
        let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| node.tick()));
        assert!(crashed.is_err(), "a failed write stops the node");
        let failed = events.named("failed", "omnipaxos::storage", Level::ERROR);
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].get("operation"), "write_atomically");
        assert_eq!(failed[0].get("error"), "disk on fire");
    });
}

// ----- `logging`: a custom logger receives its node's events -----

#[cfg(feature = "logging")]
mod logging {
    use super::*;
    use slog::{Drain, OwnedKVList, Record, KV};

    /// A record's message and key-values (as text).
    type Logged = (String, BTreeMap<String, String>);

    /// Keeps every record.
    #[derive(Clone, Default)]
    struct Records(Arc<Mutex<Vec<Logged>>>);

    struct Pairs<'a>(&'a mut BTreeMap<String, String>);

    impl slog::Serializer for Pairs<'_> {
        fn emit_arguments(&mut self, key: slog::Key, val: &fmt::Arguments<'_>) -> slog::Result {
            self.0.insert(key.to_string(), val.to_string());
            Ok(())
        }
    }

    impl Drain for Records {
        type Ok = ();
        type Err = slog::Never;
        fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
            let mut kv = BTreeMap::new();
            record.kv().serialize(record, &mut Pairs(&mut kv)).unwrap();
            values.serialize(record, &mut Pairs(&mut kv)).unwrap();
            self.0.lock().unwrap().push((record.msg().to_string(), kv));
            Ok(())
        }
    }

    impl Records {
        /// The key-values of the records with `message`.
        fn with_message(&self, message: &str) -> Vec<BTreeMap<String, String>> {
            let all = self.0.lock().unwrap();
            all.iter()
                .filter(|(m, _)| m == message)
                .map(|(_, kv)| kv.clone())
                .collect()
        }
    }

    #[test]
    fn each_custom_logger_receives_its_own_nodes_election_events() {
        capture(|events| {
            let config = cluster_config(1, &[1, 2, 3]);
            let mut records = BTreeMap::new();
            let mut c = Cluster {
                nodes: BTreeMap::new(),
                cut: BTreeSet::new(),
            };
            for pid in [1, 2, 3] {
                let r = Records::default();
                let logger = slog::Logger::root(r.clone(), slog::o!("server" => pid));
                let cfg = OmniPaxosConfig {
                    cluster_config: config.clone(),
                    server_config: ServerConfig {
                        custom_logger: Some(logger),
                        ..server(pid)
                    },
                };
                c.nodes
                    .insert(pid, cfg.build(MemoryStorage::default()).unwrap());
                records.insert(pid, r);
            }
            let leader = c.elect();
            let ballot = c.nodes[&leader].get_promise().n.to_string();
            let leader_s = leader.to_string();

            for pid in [1, 2, 3] {
                let r = &records[&pid];
                let pid_s = pid.to_string();
                let started = r.with_message(
                    "node started (recovered from its storage if it holds a promise)",
                );
                assert_eq!(started.len(), 1, "server {pid}");
                assert_eq!(started[0]["pid"], pid_s);
                let elected = r.with_message("elected: this node leads; its prepare phase starts");
                let following = r.with_message("following a new leader (promised its ballot)");
                if pid == leader {
                    assert_eq!(elected.len(), 1, "server {pid}");
                    assert_eq!(elected[0]["pid"], pid_s);
                    assert_eq!(elected[0]["ballot"], ballot);
                    assert_eq!(elected[0]["config_id"], "1");
                    // The logger's own key-values come along.
                    assert_eq!(elected[0]["server"], pid_s);
                    assert!(following.is_empty());
                } else {
                    assert!(elected.is_empty(), "server {pid}");
                    assert_eq!(following.len(), 1, "server {pid}");
                    assert_eq!(following[0]["pid"], pid_s);
                    assert_eq!(following[0]["leader"], leader_s);
                    assert_eq!(following[0]["ballot"], ballot);
                }
            }
            // The nodes' events went to their loggers, not to the thread's subscriber.
            assert!(events
                .named("became_leader", "omnipaxos::election", Level::INFO)
                .is_empty());
            assert!(events
                .named("started", "omnipaxos::node", Level::INFO)
                .is_empty());
        });
    }

    #[test]
    fn trace_events_are_not_built_for_a_logger_at_slogs_default_level() {
        // slog's default compile-time maximum level is below `Trace`: the per-message events
        // never reach such a logger (`SlogSubscriber` asks it before building them).
        let r = Records::default();
        let cfg = OmniPaxosConfig {
            cluster_config: cluster_config(1, &[1, 2]),
            server_config: ServerConfig {
                custom_logger: Some(slog::Logger::root(r.clone(), slog::o!())),
                ..server(1)
            },
        };
        let mut node: Node<MemoryStorage<Add>> = cfg.build(MemoryStorage::default()).unwrap();
        let mut peer: Node<MemoryStorage<Add>> = OmniPaxosConfig {
            cluster_config: cluster_config(1, &[1, 2]),
            server_config: server(2),
        }
        .build(MemoryStorage::default())
        .unwrap();
        for _ in 0..30 {
            node.tick();
            peer.tick();
            for m in peer.outgoing_messages() {
                node.handle_incoming(m);
            }
            for m in node.outgoing_messages() {
                peer.handle_incoming(m);
            }
        }
        // (Unless a crate in the build turned on slog's `max_level_trace`.)
        let trace_on = r.is_enabled(slog::Level::Trace);
        let all = r.0.lock().unwrap();
        let handled = all
            .iter()
            .filter(|(m, _)| m.starts_with("a message is handled"))
            .count();
        assert!(all.len() > handled, "{all:?}");
        assert_eq!(handled > 0, trace_on, "{all:?}");
    }
}
