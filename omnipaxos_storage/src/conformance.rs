//! The test suite every [`Storage`] backend should pass (feature `conformance`).
//!
//! Each check is a function that takes a [`Backend`]: a factory for fresh, empty storages of
//! [`TestEntry`], and optionally a way to close and reopen one (for a persistent backend; the
//! checks then also verify that everything survives a reopen). [`model_test`] runs random
//! operation sequences against the backend and [`MemoryStorage`] side by side.
//!
//! # Testing your own backend
//!
//! ```toml
//! [dev-dependencies]
//! omnipaxos_storage = { version = "0.3", features = ["conformance"] }
//! ```
//!
//! ```no_run
//! # use omnipaxos_storage::memory_storage::MemoryStorage as MyStorage;
//! use omnipaxos_storage::conformance::Backend;
//!
//! // One `#[test]` per check, named after it, in the module where you invoke the macro.
//! omnipaxos_storage::storage_conformance_tests!(Backend::new(MyStorage::default));
//!
//! // Or everything in one test, with a reopen step for a persistent backend:
//! #[test]
//! fn my_storage_conforms() {
//!     let mut backend = Backend::new(MyStorage::default).with_reopen(|s| s);
//!     omnipaxos_storage::conformance::run_all(&mut backend);
//!     omnipaxos_storage::conformance::model_test(&mut backend, 1, 2_000);
//! }
//! ```
//!
//! The node-record checks (`node_record_*`) test `write_atomically_with_record` and
//! `get_node_record`. A backend written for omnipaxos 0.2.4 keeps the trait's defaults for
//! them (a *legacy* backend: the node then keeps its record in memory only); such a backend
//! fails only [`node_record_supported`], with a message that says so, and passes it once
//! declared with [`Backend::legacy`].
//!
//! A failing check panics with a message that names it. The checks expect the contract of
//! [`omnipaxos::storage`], and one convention of this crate's backends:
//! `write_atomically` refuses a batch with an `AppendOnPrefix` outside the stored entries
//! (returns `Err`, applies nothing). That is how [`write_atomically_all_or_nothing`] makes a
//! batch fail midway.

use crate::memory_storage::MemoryStorage;
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{
        Entry, NodeRecordUnsupported, Snapshot, StopSign, Storage, StorageOp, StorageResult,
    },
    ClusterConfig,
};
use serde::{Deserialize, Serialize};

/// The entry type of the suite: an id and a payload (its length varies to exercise sizes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestEntry {
    /// Unique per entry in a test.
    pub id: u64,
    /// Bytes derived from `id`.
    pub payload: Vec<u8>,
}

impl Entry for TestEntry {
    type Snapshot = TestSnapshot;
}

/// The snapshot of [`TestEntry`]s: how many, and the sum of their ids.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestSnapshot {
    /// Number of entries folded in.
    pub count: u64,
    /// Sum of their ids (wrapping).
    pub id_sum: u64,
}

impl Snapshot<TestEntry> for TestSnapshot {
    fn create(entries: &[TestEntry]) -> Self {
        TestSnapshot {
            count: entries.len() as u64,
            id_sum: entries.iter().fold(0u64, |a, e| a.wrapping_add(e.id)),
        }
    }
    fn merge(&mut self, delta: Self) {
        self.count += delta.count;
        self.id_sum = self.id_sum.wrapping_add(delta.id_sum);
    }
    fn use_snapshots() -> bool {
        true
    }
}

/// An entry with id `id` and `len` payload bytes.
pub fn entry_with_len(id: u64, len: usize) -> TestEntry {
    TestEntry {
        id,
        payload: (0..len)
            .map(|i| (id as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect(),
    }
}

/// An entry with id `id` and 8 payload bytes.
pub fn entry(id: u64) -> TestEntry {
    entry_with_len(id, 8)
}

/// Entries with the ids in `ids`.
pub fn entries(ids: std::ops::Range<u64>) -> Vec<TestEntry> {
    ids.map(entry).collect()
}

/// A ballot with round `n`.
pub fn ballot(n: u32) -> Ballot {
    Ballot::with(1, n, 0, u64::from(n % 3) + 1)
}

/// A stop sign naming configuration `id`.
pub fn stop_sign(id: u32) -> StopSign {
    let c = ClusterConfig {
        configuration_id: id,
        nodes: vec![1, 2, 3],
        ..Default::default()
    };
    StopSign::with(c, Some(vec![id as u8]))
}

/// Copies a batch (`StorageOp` is not `Clone`).
pub fn clone_ops(ops: &[StorageOp<TestEntry>]) -> Vec<StorageOp<TestEntry>> {
    ops.iter()
        .map(|op| match op {
            StorageOp::AppendEntry(e) => StorageOp::AppendEntry(e.clone()),
            StorageOp::AppendEntries(v) => StorageOp::AppendEntries(v.clone()),
            StorageOp::AppendOnPrefix(i, v) => StorageOp::AppendOnPrefix(*i, v.clone()),
            StorageOp::SetPromise(b) => StorageOp::SetPromise(*b),
            StorageOp::SetDecidedIndex(i) => StorageOp::SetDecidedIndex(*i),
            StorageOp::SetAcceptedRound(b) => StorageOp::SetAcceptedRound(*b),
            StorageOp::SetCompactedIdx(i) => StorageOp::SetCompactedIdx(*i),
            StorageOp::Trim(i) => StorageOp::Trim(*i),
            StorageOp::SetStopsign(s) => StorageOp::SetStopsign(s.clone()),
            StorageOp::SetSnapshot(s) => StorageOp::SetSnapshot(s.clone()),
        })
        .collect()
}

/// How the suite gets storages: `fresh()` makes a new, empty one; `reopen(s)` closes `s`
/// and opens the same data again (the identity for volatile backends).
pub struct Backend<'a, S> {
    fresh: Box<dyn FnMut() -> S + 'a>,
    reopen: Box<dyn FnMut(S) -> S + 'a>,
    legacy: bool,
}

impl<'a, S> Backend<'a, S> {
    /// A backend whose storages come from `fresh`; reopening keeps the same instance.
    pub fn new(fresh: impl FnMut() -> S + 'a) -> Self {
        Backend {
            fresh: Box::new(fresh),
            reopen: Box::new(|s| s),
            legacy: false,
        }
    }

    /// Declares a *legacy* backend: one that keeps the `Storage` trait's defaults of
    /// `write_atomically_with_record` and `get_node_record` (a backend written for omnipaxos
    /// 0.2.4). [`node_record_supported`] then checks that it behaves as such, and the other
    /// node-record checks are skipped. Without this, a legacy backend fails
    /// [`node_record_supported`] (and only that check).
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Whether the backend was declared [`legacy`](Self::legacy).
    pub fn is_declared_legacy(&self) -> bool {
        self.legacy
    }

    /// Sets how a storage is closed and opened again.
    pub fn with_reopen(mut self, reopen: impl FnMut(S) -> S + 'a) -> Self {
        self.reopen = Box::new(reopen);
        self
    }

    /// A fresh, empty storage.
    pub fn fresh(&mut self) -> S {
        (self.fresh)()
    }

    /// `s` closed and opened again.
    pub fn reopen(&mut self, s: S) -> S {
        (self.reopen)(s)
    }
}

/// Everything a backend shows through the `Storage` getters, with the entries from absolute
/// index `first` on.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// `get_promise`.
    pub promise: Option<Ballot>,
    /// `get_accepted_round`.
    pub accepted_round: Option<Ballot>,
    /// `get_decided_idx`.
    pub decided_idx: usize,
    /// `get_compacted_idx`.
    pub compacted_idx: usize,
    /// `get_log_len`.
    pub log_len: usize,
    /// `get_stopsign`.
    pub stopsign: Option<StopSign>,
    /// `get_snapshot`.
    pub snapshot: Option<TestSnapshot>,
    /// `get_suffix(first)`.
    pub suffix: Vec<TestEntry>,
    /// `get_node_record`.
    pub node_record: Option<Vec<u8>>,
}

/// Reads everything from `s` (panics naming the getter that fails).
pub fn observe<S: Storage<TestEntry>>(s: &S, first: usize) -> Observed {
    Observed {
        promise: s.get_promise().expect("get_promise"),
        accepted_round: s.get_accepted_round().expect("get_accepted_round"),
        decided_idx: s.get_decided_idx().expect("get_decided_idx"),
        compacted_idx: s.get_compacted_idx().expect("get_compacted_idx"),
        log_len: s.get_log_len().expect("get_log_len"),
        stopsign: s.get_stopsign().expect("get_stopsign"),
        snapshot: s.get_snapshot().expect("get_snapshot"),
        suffix: s.get_suffix(first).expect("get_suffix"),
        node_record: s.get_node_record().expect("get_node_record"),
    }
}

/// Whether `s` shows the same state as `model` (all getters, and the stored entries).
///
/// The getters show everything but one thing: where an *empty* log starts. After a `Trim`
/// past the end, a log that is empty from absolute index 3 on and one that is empty from 5
/// on read the same, yet only the second takes `AppendOnPrefix(5, ..)`. With entries stored,
/// the first index is seen (by `get_suffix` and `get_entries`). To tell "before" from "after"
/// a write that only moved the start of an empty log (a crash test deciding which writes a
/// recovered storage holds), use [`same_state_probed`].
pub fn same_state<S: Storage<TestEntry>>(s: &S, model: &MemoryStorage<TestEntry>) -> bool {
    let first = model.first_idx();
    observe(s, first) == observe(model, first)
        && (first == 0
            || s.get_entries(first - 1, first)
                .expect("get_entries")
                .is_empty())
}

/// [`same_state`], and, when the model's log is empty, whether the log of `s` starts where
/// the model's does, which the getters cannot show (see [`same_state`]). It finds out with a
/// write: `AppendOnPrefix(first, [])`, where `first` is the model's first index, fits an
/// empty log exactly when the log starts at `first`, and then changes nothing (it truncates
/// nothing and appends nothing); when it does not fit, it is refused and nothing is written.
/// So `s` ends in the state it had, with at most one more write on record.
pub fn same_state_probed<S: Storage<TestEntry>>(
    s: &mut S,
    model: &MemoryStorage<TestEntry>,
) -> bool {
    if !same_state(s, model) {
        return false;
    }
    if model.get_log_len().expect("get_log_len") > 0 {
        return true;
    }
    let first = model.first_idx();
    s.write_atomically(vec![StorageOp::AppendOnPrefix(first, Vec::new())])
        .is_ok()
        && same_state(s, model)
}

fn write<S: Storage<TestEntry>>(s: &mut S, ops: Vec<StorageOp<TestEntry>>) {
    s.write_atomically(ops).expect("write_atomically");
}

fn ids(v: &[TestEntry]) -> Vec<u64> {
    v.iter().map(|e| e.id).collect()
}

/// Runs every check of the suite (not [`model_test`]).
pub fn run_all<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    fresh_storage_is_empty(b);
    append(b);
    append_on_prefix_truncates(b);
    entries_by_absolute_index_after_trim(b);
    trim_past_the_end(b);
    entries_after_snapshot(b);
    promise_and_accepted_round(b);
    decided_and_compacted_idx(b);
    stopsign(b);
    snapshot(b);
    write_atomically_applies_in_order(b);
    write_atomically_all_or_nothing(b);
    write_atomically_draining(b);
    get_entries_empty_for_partially_missing_ranges(b);
    get_entries_with_matches_get_entries(b);
    large_reads(b);
    node_record_fresh_is_none(b);
    node_record_written_with_ops(b);
    node_record_refused_batch_keeps_old(b);
    node_record_supported(b);
}

/// A fresh storage: no promise, no accepted round, indices 0, no entries, no stop sign, no
/// snapshot; also after a reopen.
pub fn fresh_storage_is_empty<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    for round in 0..2 {
        let o = observe(&s, 0);
        assert_eq!(
            o,
            observe(&MemoryStorage::default(), 0),
            "fresh_storage_is_empty (after {round} reopens)"
        );
        assert!(s.get_entries(0, 1).expect("get_entries").is_empty());
        s = b.reopen(s);
    }
}

/// `append_entry`, `append_entries` and the append ops of `write_atomically` add at the end.
pub fn append<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entry(entry(0)).expect("append_entry");
    s.append_entries(entries(1..4)).expect("append_entries");
    write(&mut s, vec![StorageOp::AppendEntry(entry(4))]);
    write(&mut s, vec![StorageOp::AppendEntries(entries(5..10))]);
    s.append_entries(Vec::new()).expect("append_entries(empty)");
    s = b.reopen(s);
    assert_eq!(s.get_log_len().expect("get_log_len"), 10, "append: log_len");
    assert_eq!(s.get_entries(0, 10).expect("get_entries"), entries(0..10));
    assert_eq!(s.get_entries(3, 5).expect("get_entries"), entries(3..5));
    assert_eq!(s.get_suffix(7).expect("get_suffix"), entries(7..10));
    assert!(s.get_suffix(10).expect("get_suffix").is_empty());
    s.append_entry(entry(10)).expect("append_entry");
    assert_eq!(s.get_entries(9, 11).expect("get_entries"), entries(9..11));
}

/// `append_on_prefix(from, v)` removes the entries from `from` on, then appends `v`.
pub fn append_on_prefix_truncates<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entries(entries(0..10)).expect("append_entries");
    s.append_on_prefix(5, entries(100..102))
        .expect("append_on_prefix");
    let want: Vec<u64> = (0..5).chain(100..102).collect();
    assert_eq!(
        ids(&s.get_suffix(0).expect("get_suffix")),
        want,
        "append_on_prefix"
    );
    s.append_on_prefix(7, Vec::new())
        .expect("append_on_prefix at end");
    s.append_on_prefix(6, Vec::new())
        .expect("append_on_prefix(6, [])");
    assert_eq!(s.get_log_len().expect("get_log_len"), 6);
    write(
        &mut s,
        vec![StorageOp::AppendOnPrefix(2, entries(200..203))],
    );
    s = b.reopen(s);
    let want: Vec<u64> = (0..2).chain(200..203).collect();
    assert_eq!(
        ids(&s.get_suffix(0).expect("get_suffix")),
        want,
        "after reopen"
    );
    s.append_on_prefix(0, entries(300..301))
        .expect("append_on_prefix(0)");
    assert_eq!(s.get_entries(0, 1).expect("get_entries"), entries(300..301));
    assert_eq!(s.get_log_len().expect("get_log_len"), 1);
}

/// After `trim(t)` (and `set_compacted_idx(t)`) entries keep their absolute indices; entries
/// below `t` are gone; appends continue at the old end.
pub fn entries_by_absolute_index_after_trim<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entries(entries(0..20)).expect("append_entries");
    write(
        &mut s,
        vec![StorageOp::Trim(5), StorageOp::SetCompactedIdx(5)],
    );
    assert_eq!(s.get_log_len().expect("get_log_len"), 15, "trim: log_len");
    assert_eq!(s.get_compacted_idx().expect("get_compacted_idx"), 5);
    assert_eq!(s.get_entries(5, 8).expect("get_entries"), entries(5..8));
    assert!(s.get_entries(4, 8).expect("get_entries").is_empty());
    assert!(s.get_suffix(4).expect("get_suffix").is_empty());
    s.append_entries(entries(20..25)).expect("append_entries");
    s = b.reopen(s);
    assert_eq!(s.get_suffix(5).expect("get_suffix"), entries(5..25));
    s.trim(12).expect("trim");
    s.set_compacted_idx(12).expect("set_compacted_idx");
    s.trim(3).expect("trim below the trimmed index is a no-op");
    s = b.reopen(s);
    assert_eq!(s.get_log_len().expect("get_log_len"), 13);
    assert_eq!(s.get_entries(12, 25).expect("get_entries"), entries(12..25));
    s.append_on_prefix(20, entries(50..52))
        .expect("append_on_prefix");
    assert_eq!(
        ids(&s.get_suffix(18).expect("get_suffix")),
        vec![18, 19, 50, 51]
    );
}

/// Trimming past the end empties the log, which then continues at the trim index.
pub fn trim_past_the_end<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entries(entries(0..5)).expect("append_entries");
    write(
        &mut s,
        vec![StorageOp::Trim(40), StorageOp::SetCompactedIdx(40)],
    );
    assert_eq!(s.get_log_len().expect("get_log_len"), 0, "trim past end");
    assert!(s.get_entries(0, 5).expect("get_entries").is_empty());
    s.append_entries(entries(40..43)).expect("append_entries");
    s = b.reopen(s);
    assert_eq!(s.get_entries(40, 43).expect("get_entries"), entries(40..43));
    assert_eq!(s.get_log_len().expect("get_log_len"), 3);
}

/// Installing a snapshot with trim and compacted index in one batch, as a node does.
pub fn entries_after_snapshot<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entries(entries(0..10)).expect("append_entries");
    let snap = TestSnapshot::create(&entries(0..6));
    write(
        &mut s,
        vec![
            StorageOp::SetSnapshot(Some(snap.clone())),
            StorageOp::Trim(6),
            StorageOp::SetCompactedIdx(6),
            StorageOp::SetDecidedIndex(6),
        ],
    );
    s = b.reopen(s);
    assert_eq!(s.get_snapshot().expect("get_snapshot"), Some(snap));
    assert_eq!(s.get_compacted_idx().expect("get_compacted_idx"), 6);
    assert_eq!(s.get_decided_idx().expect("get_decided_idx"), 6);
    assert_eq!(s.get_suffix(6).expect("get_suffix"), entries(6..10));
    assert!(s.get_entries(5, 7).expect("get_entries").is_empty());
}

/// Promise and accepted round: `None` until set, then the last value set.
pub fn promise_and_accepted_round<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    assert_eq!(s.get_promise().expect("get_promise"), None);
    assert_eq!(s.get_accepted_round().expect("get_accepted_round"), None);
    s.set_promise(ballot(3)).expect("set_promise");
    assert_eq!(s.get_accepted_round().expect("get_accepted_round"), None);
    s.set_accepted_round(ballot(2)).expect("set_accepted_round");
    s = b.reopen(s);
    assert_eq!(s.get_promise().expect("get_promise"), Some(ballot(3)));
    assert_eq!(
        s.get_accepted_round().expect("get_accepted_round"),
        Some(ballot(2))
    );
    write(
        &mut s,
        vec![
            StorageOp::SetPromise(ballot(7)),
            StorageOp::SetAcceptedRound(ballot(7)),
        ],
    );
    // Lowering is allowed (a node resets its ballots when it moves to a new configuration).
    s.set_promise(Ballot::default()).expect("set_promise");
    s = b.reopen(s);
    assert_eq!(
        s.get_promise().expect("get_promise"),
        Some(Ballot::default())
    );
    assert_eq!(
        s.get_accepted_round().expect("get_accepted_round"),
        Some(ballot(7))
    );
}

/// Decided and compacted index: 0 until set, then the last value set.
pub fn decided_and_compacted_idx<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.append_entries(entries(0..10)).expect("append_entries");
    s.set_decided_idx(7).expect("set_decided_idx");
    s.set_compacted_idx(3).expect("set_compacted_idx");
    s = b.reopen(s);
    assert_eq!(s.get_decided_idx().expect("get_decided_idx"), 7);
    assert_eq!(s.get_compacted_idx().expect("get_compacted_idx"), 3);
    s.set_decided_idx(9).expect("set_decided_idx");
    assert_eq!(s.get_decided_idx().expect("get_decided_idx"), 9);
}

/// The stop sign: set, replaced, cleared.
pub fn stopsign<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    s.set_stopsign(Some(stop_sign(2))).expect("set_stopsign");
    s = b.reopen(s);
    assert_eq!(s.get_stopsign().expect("get_stopsign"), Some(stop_sign(2)));
    write(&mut s, vec![StorageOp::SetStopsign(Some(stop_sign(5)))]);
    assert_eq!(s.get_stopsign().expect("get_stopsign"), Some(stop_sign(5)));
    s.set_stopsign(None).expect("set_stopsign(None)");
    s = b.reopen(s);
    assert_eq!(s.get_stopsign().expect("get_stopsign"), None);
}

/// The snapshot: set, replaced, cleared.
pub fn snapshot<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    let a = TestSnapshot::create(&entries(0..3));
    s.set_snapshot(Some(a.clone())).expect("set_snapshot");
    s = b.reopen(s);
    assert_eq!(s.get_snapshot().expect("get_snapshot"), Some(a));
    let c = TestSnapshot::create(&entries(0..9));
    write(&mut s, vec![StorageOp::SetSnapshot(Some(c.clone()))]);
    assert_eq!(s.get_snapshot().expect("get_snapshot"), Some(c));
    s.set_snapshot(None).expect("set_snapshot(None)");
    s = b.reopen(s);
    assert_eq!(s.get_snapshot().expect("get_snapshot"), None);
}

/// A batch is applied in order: later operations see the effect of earlier ones.
pub fn write_atomically_applies_in_order<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    let mut m = MemoryStorage::default();
    let ops = vec![
        StorageOp::AppendEntries(entries(0..6)),
        StorageOp::AppendOnPrefix(4, entries(10..13)),
        StorageOp::AppendEntry(entry(20)),
        StorageOp::SetDecidedIndex(3),
        StorageOp::Trim(2),
        StorageOp::SetCompactedIdx(2),
        StorageOp::SetPromise(ballot(4)),
        StorageOp::SetAcceptedRound(ballot(4)),
        StorageOp::SetStopsign(Some(stop_sign(9))),
        StorageOp::SetSnapshot(Some(TestSnapshot::create(&entries(0..2)))),
        StorageOp::AppendOnPrefix(7, entries(30..31)),
        StorageOp::SetStopsign(None),
    ];
    m.write_atomically(clone_ops(&ops)).expect("model");
    write(&mut s, ops);
    s = b.reopen(s);
    assert!(
        same_state(&s, &m),
        "write_atomically_applies_in_order: {:?} != {:?}",
        observe(&s, 2),
        observe(&m, 2)
    );
    assert_eq!(
        ids(&s.get_suffix(2).expect("get_suffix")),
        vec![2, 3, 10, 11, 12, 30]
    );
}

/// A batch with an operation that fails applies nothing, also not the operations before it.
pub fn write_atomically_all_or_nothing<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    write(
        &mut s,
        vec![
            StorageOp::AppendEntries(entries(0..5)),
            StorageOp::SetPromise(ballot(1)),
            StorageOp::SetDecidedIndex(2),
        ],
    );
    let mut m = MemoryStorage::default();
    m.write_atomically(vec![
        StorageOp::AppendEntries(entries(0..5)),
        StorageOp::SetPromise(ballot(1)),
        StorageOp::SetDecidedIndex(2),
    ])
    .expect("model");
    let bad = vec![
        StorageOp::SetPromise(ballot(9)),
        StorageOp::AppendEntries(entries(5..8)),
        StorageOp::Trim(1),
        StorageOp::SetSnapshot(Some(TestSnapshot::default())),
        StorageOp::SetStopsign(Some(stop_sign(3))),
        StorageOp::SetDecidedIndex(7),
        // Past the end (8) would leave a gap: refused.
        StorageOp::AppendOnPrefix(10, entries(100..101)),
    ];
    assert!(
        m.write_atomically(clone_ops(&bad)).is_err(),
        "model refuses"
    );
    assert!(
        s.write_atomically(bad).is_err(),
        "write_atomically_all_or_nothing: a batch with AppendOnPrefix past the end must fail"
    );
    assert!(
        same_state(&s, &m),
        "write_atomically_all_or_nothing: partly applied: {:?}",
        observe(&s, 0)
    );
    let below = vec![StorageOp::Trim(3), StorageOp::AppendOnPrefix(1, Vec::new())];
    assert!(
        s.write_atomically(below).is_err(),
        "AppendOnPrefix below the trimmed index must fail"
    );
    s = b.reopen(s);
    assert!(same_state(&s, &m), "after reopen: {:?}", observe(&s, 0));
    // Still usable.
    s.append_entry(entry(5))
        .expect("append_entry after a failed batch");
    assert_eq!(s.get_entries(4, 6).expect("get_entries"), entries(4..6));
}

/// `write_atomically_draining` writes like `write_atomically` (in order, all or nothing) and
/// always returns with the vector empty, so that the caller can reuse it.
pub fn write_atomically_draining<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    let mut m = MemoryStorage::default();
    let mut ops = vec![
        StorageOp::AppendEntries(entries(0..5)),
        StorageOp::AppendOnPrefix(3, entries(10..12)),
        StorageOp::SetPromise(ballot(2)),
        StorageOp::SetDecidedIndex(2),
    ];
    m.write_atomically(clone_ops(&ops)).expect("model");
    s.write_atomically_draining(&mut ops)
        .expect("write_atomically_draining");
    assert!(ops.is_empty(), "write_atomically_draining left operations");
    // The same vector again, for the next batch.
    ops.push(StorageOp::AppendEntry(entry(20)));
    ops.push(StorageOp::SetAcceptedRound(ballot(2)));
    m.write_atomically(clone_ops(&ops)).expect("model");
    s.write_atomically_draining(&mut ops)
        .expect("write_atomically_draining, reused vector");
    assert!(ops.is_empty(), "write_atomically_draining left operations");
    // A batch that fails applies nothing and still leaves the vector empty.
    ops.push(StorageOp::AppendEntry(entry(30)));
    ops.push(StorageOp::AppendOnPrefix(100, entries(40..41)));
    assert!(
        s.write_atomically_draining(&mut ops).is_err(),
        "write_atomically_draining: AppendOnPrefix past the end must fail"
    );
    assert!(
        ops.is_empty(),
        "a failed write_atomically_draining left operations"
    );
    assert!(
        same_state(&s, &m),
        "write_atomically_draining: {:?} != {:?}",
        observe(&s, 0),
        observe(&m, 0)
    );
    s = b.reopen(s);
    assert!(same_state(&s, &m), "after reopen: {:?}", observe(&s, 0));
}

/// `get_entries(from, to)` is empty if any of `from..to` is not stored, and for empty ranges.
pub fn get_entries_empty_for_partially_missing_ranges<S: Storage<TestEntry>>(
    b: &mut Backend<'_, S>,
) {
    let mut s = b.fresh();
    s.append_entries(entries(0..10)).expect("append_entries");
    write(
        &mut s,
        vec![StorageOp::Trim(3), StorageOp::SetCompactedIdx(3)],
    );
    for (from, to) in [
        (0, 4),
        (2, 3),
        (8, 11),
        (9, 20),
        (10, 11),
        (5, 5),
        (6, 4),
        (0, 0),
    ] {
        assert!(
            s.get_entries(from, to).expect("get_entries").is_empty(),
            "get_entries({from}, {to}) must be empty"
        );
    }
    assert_eq!(s.get_entries(3, 10).expect("get_entries"), entries(3..10));
    assert!(s.get_suffix(11).expect("get_suffix").is_empty());
    assert!(s.get_suffix(2).expect("get_suffix").is_empty());
}

/// `get_entries_with(from, to, f)` hands `f` exactly what `get_entries(from, to)` returns, in
/// order, and returns that count: over chunk and trim boundaries, for ranges partly missing
/// (none), and after a reopen.
pub fn get_entries_with_matches_get_entries<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    // Appends of different sizes, so that an in-memory backend's internal pieces vary.
    let mut next = 0u64;
    for n in [1u64, 7, 64, 300, 2, 1000] {
        s.append_entries(entries(next..next + n))
            .expect("append_entries");
        next += n;
    }
    write(
        &mut s,
        vec![StorageOp::Trim(5), StorageOp::SetCompactedIdx(5)],
    );
    let end = next as usize;
    let check = |s: &S, stage: &str| {
        let mut ranges = vec![(0, 6), (4, 5), (5, 5), (9, 3), (end - 1, end + 1), (0, 0)];
        for from in [5, 6, 8, 71, 72, 300, 373, 374, 375, end - 1] {
            for len in [1, 2, 63, 700, end] {
                ranges.push((from, (from + len).min(end)));
            }
        }
        for (from, to) in ranges {
            let want = s.get_entries(from, to).expect("get_entries");
            let mut got = Vec::new();
            let n = s
                .get_entries_with(from, to, |e| got.push(e))
                .expect("get_entries_with");
            assert_eq!(got, want, "{stage}: get_entries_with({from}, {to})");
            assert_eq!(
                n,
                want.len(),
                "{stage}: get_entries_with({from}, {to}) count"
            );
        }
        let mut all = Vec::new();
        s.get_entries_with(5, end, |e| all.push(e))
            .expect("get_entries_with");
        assert_eq!(all, entries(5..next), "{stage}: the whole stored log");
    };
    check(&s, "written");
    s = b.reopen(s);
    check(&s, "after reopen");
}

/// Reads of many entries and many bytes (more than any internal read or batch limit) return
/// everything: 20,000 entries of 256 B, some written in one 2.6 MB batch, and entries of
/// 100 KB.
pub fn large_reads<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    let big: Vec<TestEntry> = (0..10_000).map(|i| entry_with_len(i, 256)).collect();
    write(&mut s, vec![StorageOp::AppendEntries(big)]);
    for chunk in 0..10u64 {
        let v: Vec<TestEntry> = (10_000 + chunk * 1000..10_000 + (chunk + 1) * 1000)
            .map(|i| entry_with_len(i, 256))
            .collect();
        s.append_entries(v).expect("append_entries");
    }
    let huge: Vec<TestEntry> = (20_000..20_004)
        .map(|i| entry_with_len(i, 100_000))
        .collect();
    s.append_entries(huge.clone())
        .expect("append_entries (100 KB)");
    s = b.reopen(s);
    let all = s.get_entries(0, 20_004).expect("get_entries");
    assert_eq!(all.len(), 20_004, "large_reads: count");
    for (i, e) in all.iter().enumerate() {
        let want_len = if i < 20_000 { 256 } else { 100_000 };
        assert_eq!(
            *e,
            entry_with_len(i as u64, want_len),
            "large_reads: entry {i}"
        );
    }
    assert_eq!(s.get_suffix(20_000).expect("get_suffix"), huge);
    assert_eq!(s.get_entries(9_990, 10_010).expect("get_entries").len(), 20);
}

/// Whether the storage error is the `Storage` trait default's [`NodeRecordUnsupported`].
fn is_unsupported(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<NodeRecordUnsupported>().is_some()
}

/// Whether the backend keeps the `Storage` trait's defaults for the node record (a *legacy*
/// backend): tries `write_atomically_with_record` with no operations on a fresh storage.
pub fn is_legacy_backend<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) -> bool {
    let mut s = b.fresh();
    match s.write_atomically_with_record(Vec::new(), b"probe".to_vec()) {
        Err(e) => is_unsupported(e.as_ref()),
        Ok(()) => false,
    }
}

/// The node-record checks skip a legacy backend: [`node_record_supported`] reports it.
fn skip_legacy<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) -> bool {
    b.legacy || is_legacy_backend(b)
}

fn write_with_record<S: Storage<TestEntry>>(
    s: &mut S,
    ops: Vec<StorageOp<TestEntry>>,
    record: &[u8],
) {
    s.write_atomically_with_record(ops, record.to_vec())
        .expect("write_atomically_with_record");
}

/// The backend stores the node record (`write_atomically_with_record`, `get_node_record`),
/// or, if it was declared [`Backend::legacy`], keeps the trait's defaults exactly: the write
/// is refused with [`NodeRecordUnsupported`], writes nothing, and the record reads `None`.
pub fn node_record_supported<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    let mut s = b.fresh();
    let r = s.write_atomically_with_record(
        vec![StorageOp::AppendEntries(entries(0..2))],
        b"probe".to_vec(),
    );
    let legacy = matches!(&r, Err(e) if is_unsupported(e.as_ref()));
    if b.legacy {
        assert!(
            legacy,
            "node_record_supported: declared legacy, but write_atomically_with_record returned {r:?} \
             instead of the trait default's NodeRecordUnsupported"
        );
        assert_eq!(
            observe(&s, 0),
            observe(&MemoryStorage::default(), 0),
            "node_record_supported: a legacy backend's refused write_atomically_with_record must write nothing"
        );
    } else {
        assert!(
            !legacy,
            "node_record_supported: legacy backend: it keeps the Storage trait's default \
             write_atomically_with_record and get_node_record, so a node on it keeps its node \
             record in memory only and forgets it at a restart. Override both (as MemoryStorage \
             does), or declare the backend with Backend::legacy() if that is intended"
        );
        r.expect("write_atomically_with_record");
        assert_eq!(
            s.get_node_record().expect("get_node_record").as_deref(),
            Some(&b"probe"[..]),
            "node_record_supported: the record written is read back"
        );
    }
}

/// A fresh storage has no node record, also after a reopen.
pub fn node_record_fresh_is_none<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    if skip_legacy(b) {
        return;
    }
    let mut s = b.fresh();
    assert_eq!(s.get_node_record().expect("get_node_record"), None);
    s.append_entries(entries(0..3)).expect("append_entries");
    s = b.reopen(s);
    assert_eq!(
        s.get_node_record().expect("get_node_record"),
        None,
        "node_record_fresh_is_none: after writes without a record and a reopen"
    );
}

/// `write_atomically_with_record` applies its operations and replaces the record; plain
/// writes keep it; it survives reopening.
pub fn node_record_written_with_ops<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    if skip_legacy(b) {
        return;
    }
    let mut s = b.fresh();
    let mut m = MemoryStorage::default();
    let ops = || {
        vec![
            StorageOp::AppendEntries(entries(0..4)),
            StorageOp::SetPromise(ballot(2)),
            StorageOp::SetDecidedIndex(1),
        ]
    };
    write_with_record(&mut s, ops(), b"first");
    write_with_record(&mut m, ops(), b"first");
    assert!(
        same_state(&s, &m),
        "node_record_written_with_ops: {:?}",
        observe(&s, 0)
    );
    s = b.reopen(s);
    assert!(same_state(&s, &m), "after reopen: {:?}", observe(&s, 0));
    // Plain writes keep the record.
    write(&mut s, vec![StorageOp::AppendEntry(entry(4))]);
    m.append_entry(entry(4)).expect("model");
    s.set_decided_idx(3).expect("set_decided_idx");
    m.set_decided_idx(3).expect("model");
    // A record alone, and an empty one (which is not `None`).
    write_with_record(&mut s, Vec::new(), b"second");
    write_with_record(&mut m, Vec::new(), b"second");
    s = b.reopen(s);
    assert!(same_state(&s, &m), "second record: {:?}", observe(&s, 0));
    write_with_record(&mut s, vec![StorageOp::Trim(2)], b"");
    write_with_record(&mut m, vec![StorageOp::Trim(2)], b"");
    s = b.reopen(s);
    assert_eq!(
        s.get_node_record().expect("get_node_record"),
        Some(Vec::new()),
        "node_record_written_with_ops: an empty record"
    );
    assert!(same_state(&s, &m), "empty record: {:?}", observe(&s, 2));
}

/// A batch that is refused leaves the old record (and applies none of its operations).
pub fn node_record_refused_batch_keeps_old<S: Storage<TestEntry>>(b: &mut Backend<'_, S>) {
    if skip_legacy(b) {
        return;
    }
    let mut s = b.fresh();
    let mut m = MemoryStorage::default();
    write_with_record(
        &mut s,
        vec![StorageOp::AppendEntries(entries(0..3))],
        b"old",
    );
    write_with_record(
        &mut m,
        vec![StorageOp::AppendEntries(entries(0..3))],
        b"old",
    );
    let bad = || {
        vec![
            StorageOp::SetPromise(ballot(5)),
            StorageOp::AppendEntries(entries(3..5)),
            // Past the end (5) would leave a gap: refused.
            StorageOp::AppendOnPrefix(9, entries(100..101)),
        ]
    };
    assert!(m
        .write_atomically_with_record(bad(), b"new".to_vec())
        .is_err());
    assert!(
        s.write_atomically_with_record(bad(), b"new".to_vec())
            .is_err(),
        "node_record_refused_batch_keeps_old: the batch must be refused"
    );
    assert!(
        same_state(&s, &m),
        "node_record_refused_batch_keeps_old: {:?}",
        observe(&s, 0)
    );
    s = b.reopen(s);
    assert!(same_state(&s, &m), "after reopen: {:?}", observe(&s, 0));
    assert_eq!(
        s.get_node_record().expect("get_node_record").as_deref(),
        Some(&b"old"[..])
    );
}

/// Writes a step of [`OpGenerator::step`]: with its record if it has one.
pub fn write_step<S: Storage<TestEntry>>(
    s: &mut S,
    ops: Vec<StorageOp<TestEntry>>,
    record: Option<Vec<u8>>,
) -> StorageResult<()> {
    match record {
        Some(r) => s.write_atomically_with_record(ops, r),
        None => s.write_atomically(ops),
    }
}

/// A small deterministic PRNG (SplitMix64) for the model and crash tests.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Generates random batches of operations that fit the current state of a model.
#[derive(Clone, Debug)]
pub struct OpGenerator {
    rng: SplitMix64,
    next_id: u64,
    /// Percent of batches that contain an invalid operation (and must fail whole).
    pub invalid_percent: u64,
    /// Largest payload of a generated entry, in bytes.
    pub max_payload: usize,
    /// Percent of [`step`](Self::step)s that also write a node record.
    pub record_percent: u64,
}

impl OpGenerator {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        OpGenerator {
            rng: SplitMix64::new(seed),
            next_id: 0,
            invalid_percent: 3,
            max_payload: 300,
            record_percent: 10,
        }
    }

    fn new_entries(&mut self, max: u64) -> Vec<TestEntry> {
        let n = if self.rng.chance(5) {
            50 + self.rng.below(200)
        } else {
            self.rng.below(max + 1)
        };
        (0..n)
            .map(|_| {
                self.next_id += 1;
                let len = self.rng.below(self.max_payload as u64 + 1) as usize;
                entry_with_len(self.next_id, len)
            })
            .collect()
    }

    /// A batch of 1 to 4 operations for a storage whose state is `model`; valid unless the
    /// generator decides to include an invalid one (`invalid_percent`).
    pub fn batch(&mut self, model: &MemoryStorage<TestEntry>) -> Vec<StorageOp<TestEntry>> {
        let mut first = model.first_idx();
        let mut end = first + model.get_log_len().unwrap_or_default();
        let mut ops = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let r = self.rng.below(100);
            let op = match r {
                0..=29 => {
                    let v = self.new_entries(5);
                    end += v.len();
                    StorageOp::AppendEntries(v)
                }
                30..=39 => {
                    end += 1;
                    self.next_id += 1;
                    let len = self.rng.below(self.max_payload as u64 + 1) as usize;
                    StorageOp::AppendEntry(entry_with_len(self.next_id, len))
                }
                40..=54 => {
                    let from = first + self.rng.below((end - first) as u64 + 1) as usize;
                    let v = self.new_entries(4);
                    end = from + v.len();
                    StorageOp::AppendOnPrefix(from, v)
                }
                55..=64 => {
                    let idx = first + self.rng.below((end - first) as u64 + 4) as usize;
                    if idx > first {
                        first = idx;
                        end = end.max(idx);
                    }
                    StorageOp::Trim(idx)
                }
                65..=69 => StorageOp::SetCompactedIdx(first),
                70..=76 => StorageOp::SetPromise(ballot(self.rng.below(20) as u32)),
                77..=82 => StorageOp::SetAcceptedRound(ballot(self.rng.below(20) as u32)),
                83..=90 => StorageOp::SetDecidedIndex(self.rng.below(end as u64 + 1) as usize),
                91..=95 => StorageOp::SetStopsign(
                    self.rng
                        .chance(70)
                        .then(|| stop_sign(self.rng.below(5) as u32)),
                ),
                _ => StorageOp::SetSnapshot(self.rng.chance(70).then(|| TestSnapshot {
                    count: self.rng.below(1000),
                    id_sum: self.rng.next_u64(),
                })),
            };
            ops.push(op);
        }
        if self.rng.chance(self.invalid_percent) {
            let at = self.rng.below(ops.len() as u64 + 1) as usize;
            ops.insert(at, StorageOp::AppendOnPrefix(usize::MAX / 2, Vec::new()));
        }
        ops
    }
}

impl OpGenerator {
    /// A [`batch`](Self::batch), and in `record_percent` of the steps a node record to write
    /// with it (`write_atomically_with_record`, see [`write_step`]).
    pub fn step(
        &mut self,
        model: &MemoryStorage<TestEntry>,
    ) -> (Vec<StorageOp<TestEntry>>, Option<Vec<u8>>) {
        let ops = self.batch(model);
        let record = self.rng.chance(self.record_percent).then(|| {
            let len = self.rng.below(40) as usize;
            let tag = self.rng.next_u64();
            (0..len).map(|i| (tag >> (i % 8 * 8)) as u8).collect()
        });
        (ops, record)
    }
}

/// Random operation sequences, applied to the backend and to [`MemoryStorage`] side by side:
/// after each step both must show the same state (and fail together). Includes batches that
/// must fail whole, single setter calls, and (with a reopen) reopening.
pub fn model_test<S: Storage<TestEntry>>(b: &mut Backend<'_, S>, seed: u64, steps: usize) {
    let records = !skip_legacy(b);
    let mut gen = OpGenerator::new(seed);
    let mut rng = SplitMix64::new(seed ^ 0x5555);
    let mut s = b.fresh();
    let mut m = MemoryStorage::<TestEntry>::default();
    for step in 0..steps {
        if rng.chance(3) {
            s = b.reopen(s);
        }
        let (ops, record) = gen.step(&m);
        let record = record.filter(|_| records);
        let desc = format!("{ops:?} record {record:?}");
        let (rs, rm) = if ops.len() == 1 && record.is_none() && rng.chance(30) {
            // The single-operation setters.
            let op = clone_ops(&ops).pop();
            (single(&mut s, op), single(&mut m, ops.into_iter().next()))
        } else {
            (
                write_step(&mut s, clone_ops(&ops), record.clone()).map_err(|e| e.to_string()),
                write_step(&mut m, ops, record).map_err(|e| e.to_string()),
            )
        };
        assert_eq!(
            rs.is_ok(),
            rm.is_ok(),
            "model_test seed {seed} step {step}: backend {rs:?}, model {rm:?}, ops {desc}"
        );
        let first = m.first_idx();
        let (so, mo) = (observe(&s, first), observe(&m, first));
        assert!(
            so == mo && same_state(&s, &m),
            "model_test seed {seed} step {step}: after {desc}\nbackend {so:?}\nmodel   {mo:?}"
        );
        if rng.chance(20) {
            let end = first + m.get_log_len().unwrap_or_default();
            let from = rng.below(end as u64 + 3) as usize;
            let to = rng.below(end as u64 + 3) as usize;
            assert_eq!(
                s.get_entries(from, to).expect("get_entries"),
                m.get_entries(from, to).expect("get_entries"),
                "model_test seed {seed} step {step}: get_entries({from}, {to})"
            );
        }
    }
}

fn single<S: Storage<TestEntry>>(
    s: &mut S,
    op: Option<StorageOp<TestEntry>>,
) -> Result<(), String> {
    let r = match op {
        Some(StorageOp::AppendEntry(e)) => s.append_entry(e),
        Some(StorageOp::AppendEntries(v)) => s.append_entries(v),
        Some(StorageOp::AppendOnPrefix(i, v)) => s.append_on_prefix(i, v),
        Some(StorageOp::SetPromise(b)) => s.set_promise(b),
        Some(StorageOp::SetDecidedIndex(i)) => s.set_decided_idx(i),
        Some(StorageOp::SetAcceptedRound(b)) => s.set_accepted_round(b),
        Some(StorageOp::SetCompactedIdx(i)) => s.set_compacted_idx(i),
        Some(StorageOp::Trim(i)) => s.trim(i),
        Some(StorageOp::SetStopsign(x)) => s.set_stopsign(x),
        Some(StorageOp::SetSnapshot(x)) => s.set_snapshot(x),
        None => Ok(()),
    };
    r.map_err(|e| e.to_string())
}

/// One `#[test]` per check of the suite, named after the check, for the backend built by
/// `$backend` (an expression giving a [`Backend`], evaluated once per test).
#[macro_export]
macro_rules! storage_conformance_tests {
    ($backend:expr) => {
        $crate::__storage_conformance_tests!($backend;
            fresh_storage_is_empty,
            append,
            append_on_prefix_truncates,
            entries_by_absolute_index_after_trim,
            trim_past_the_end,
            entries_after_snapshot,
            promise_and_accepted_round,
            decided_and_compacted_idx,
            stopsign,
            snapshot,
            write_atomically_applies_in_order,
            write_atomically_all_or_nothing,
            get_entries_empty_for_partially_missing_ranges,
            large_reads,
            node_record_fresh_is_none,
            node_record_written_with_ops,
            node_record_refused_batch_keeps_old,
            node_record_supported
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __storage_conformance_tests {
    ($backend:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let mut backend = $backend;
                $crate::conformance::$check(&mut backend);
            }
        )*
    };
}
