//! `#[derive(Entry)]` on every kind of type it supports, with and without `#[snapshot(Type)]`.
//!
//! The type of `<T as Entry>::Snapshot` is checked at compile time with [`assert_snapshot`]:
//! a wrong type makes this file fail to build.

use omnipaxos::{
    macros::Entry,
    storage::{Entry, NoSnapshot, Snapshot},
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Debug,
    hash::Hash,
};

/// Compiles only if `<T as Entry>::Snapshot` is exactly `S`; returns `use_snapshots()`.
fn assert_snapshot<T: Entry<Snapshot = S>, S: Snapshot<T>>() -> bool {
    S::use_snapshots()
}

/// `use_snapshots()` of `T`'s snapshot type, through the `Entry` bound only.
fn uses_snapshots<T: Entry>() -> bool {
    <T::Snapshot as Snapshot<T>>::use_snapshots()
}

// ---------------------------------------------------------------------------------------------
// Without `#[snapshot]`: the snapshot type is `NoSnapshot`.

#[derive(Clone, Debug, Entry)]
struct Named {
    _key: String,
    _value: u64,
}

#[allow(dead_code)] // only the type matters
#[derive(Clone, Debug, Entry)]
struct Tuple(u64, String);

#[derive(Clone, Debug, Entry)]
struct Unit;

#[derive(Clone, Debug, Entry)]
enum Command {
    _Put { key: String, value: u64 },
    _Delete(String),
    _Clear,
}

#[derive(Clone, Debug, Entry)]
enum Empty {}

#[derive(Clone, Debug, Entry)]
struct Bounded<K: Clone + Debug + Ord, V>
where
    V: Clone + Debug,
{
    _key: K,
    _value: V,
}

#[derive(Clone, Debug, Entry)]
enum GenericOp<T: Clone + Debug, U>
where
    U: Clone + Debug + Default,
{
    _Set(T),
    _Pair(T, U),
    _Nothing,
}

/// No bounds on `T` at all: the derive asks for `Self: Clone + Debug`, which
/// `#[derive(Clone, Debug)]` provides whenever `T: Clone + Debug`.
#[derive(Clone, Debug, Entry)]
struct Wrapper<T> {
    _inner: T,
}

#[derive(Clone, Debug, Entry)]
struct Borrowed<'a> {
    _text: &'a str,
}

#[derive(Clone, Debug, Entry)]
struct Fixed<const N: usize> {
    _bytes: [u8; N],
}

#[test]
fn default_snapshot_is_no_snapshot_and_off() {
    assert!(!assert_snapshot::<Named, NoSnapshot>());
    assert!(!assert_snapshot::<Tuple, NoSnapshot>());
    assert!(!assert_snapshot::<Unit, NoSnapshot>());
    assert!(!assert_snapshot::<Command, NoSnapshot>());
    assert!(!assert_snapshot::<Empty, NoSnapshot>());
    assert!(!assert_snapshot::<Bounded<u8, String>, NoSnapshot>());
    assert!(!assert_snapshot::<GenericOp<String, u64>, NoSnapshot>());
    assert!(!assert_snapshot::<Wrapper<Vec<u8>>, NoSnapshot>());
    assert!(!assert_snapshot::<Borrowed<'static>, NoSnapshot>());
    assert!(!assert_snapshot::<Fixed<4>, NoSnapshot>());

    assert!(!uses_snapshots::<Named>());
    assert!(!uses_snapshots::<Command>());
    assert!(!uses_snapshots::<Wrapper<Tuple>>());
}

#[test]
fn generic_entry_can_be_borrowed_non_static() {
    let text = String::from("short-lived");
    let entries = [Borrowed { _text: &text }];
    // `NoSnapshot` folds nothing, whatever the entries' lifetime.
    assert_eq!(NoSnapshot::create(&entries), NoSnapshot);
    assert!(!uses_snapshots::<Borrowed<'_>>());
}

// ---------------------------------------------------------------------------------------------
// With `#[snapshot(Type)]`.

/// A key-value store's entry; its snapshot is the resulting map.
#[derive(Clone, Debug, Entry)]
#[snapshot(KVSnapshot)]
struct KeyValue {
    key: String,
    value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KVSnapshot {
    map: HashMap<String, u64>,
}

impl Snapshot<KeyValue> for KVSnapshot {
    fn create(entries: &[KeyValue]) -> Self {
        let map = entries
            .iter()
            .map(|e| (e.key.clone(), e.value))
            .collect::<HashMap<_, _>>();
        Self { map }
    }

    fn merge(&mut self, delta: Self) {
        self.map.extend(delta.map);
    }

    fn use_snapshots() -> bool {
        true
    }
}

fn kv(key: &str, value: u64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value,
    }
}

fn map<V: Clone>(pairs: &[(&str, V)]) -> HashMap<String, V> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

#[test]
fn struct_with_snapshot_names_it() {
    assert!(assert_snapshot::<KeyValue, KVSnapshot>());
    assert!(uses_snapshots::<KeyValue>());
}

#[test]
fn kv_snapshot_create_keeps_the_last_write() {
    let entries = [kv("a", 1), kv("b", 2), kv("a", 3)];
    let snap = <KeyValue as Entry>::Snapshot::create(&entries);
    assert_eq!(snap.map, map(&[("a", 3), ("b", 2)]));
}

#[test]
fn kv_snapshot_merge_applies_the_later_delta() {
    let mut snap = KVSnapshot::create(&[kv("a", 3), kv("b", 2)]);
    snap.merge(KVSnapshot::create(&[kv("b", 5), kv("c", 1)]));
    assert_eq!(snap.map, map(&[("a", 3), ("b", 5), ("c", 1)]));
}

/// A key-value command log; deletes are kept as tombstones so that a later delta can delete a
/// key of an earlier snapshot.
#[derive(Clone, Debug, Entry)]
#[snapshot(KvState)]
enum KvCommand {
    Put { key: String, value: u64 },
    Delete(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct KvState {
    /// `None`: deleted.
    keys: HashMap<String, Option<u64>>,
}

impl KvState {
    fn live(&self) -> HashMap<String, u64> {
        self.keys
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.clone(), v)))
            .collect()
    }
}

impl Snapshot<KvCommand> for KvState {
    fn create(entries: &[KvCommand]) -> Self {
        let mut keys = HashMap::new();
        for e in entries {
            match e {
                KvCommand::Put { key, value } => keys.insert(key.clone(), Some(*value)),
                KvCommand::Delete(key) => keys.insert(key.clone(), None),
            };
        }
        Self { keys }
    }

    fn merge(&mut self, delta: Self) {
        self.keys.extend(delta.keys);
    }

    fn use_snapshots() -> bool {
        true
    }
}

fn put(key: &str, value: u64) -> KvCommand {
    KvCommand::Put {
        key: key.to_string(),
        value,
    }
}

fn del(key: &str) -> KvCommand {
    KvCommand::Delete(key.to_string())
}

#[test]
fn enum_with_snapshot_names_it() {
    assert!(assert_snapshot::<KvCommand, KvState>());
    assert!(uses_snapshots::<KvCommand>());
}

#[test]
fn enum_snapshot_merge_of_every_split_equals_create_of_all() {
    let log = [
        put("a", 1),
        put("b", 2),
        del("a"),
        put("c", 3),
        put("a", 4),
        del("b"),
        put("b", 5),
        del("c"),
    ];
    let whole = KvState::create(&log);
    assert_eq!(whole.live(), map(&[("a", 4), ("b", 5)]));
    for split in 0..=log.len() {
        let mut merged = KvState::create(&log[..split]);
        merged.merge(KvState::create(&log[split..]));
        assert_eq!(merged, whole, "split at {split}");
    }
    // A delta's delete removes a key of the base snapshot.
    let mut base = KvState::create(&[put("x", 1), put("y", 2)]);
    base.merge(KvState::create(&[del("x")]));
    assert_eq!(base.live(), map(&[("y", 2)]));
}

/// Tuple struct with a snapshot: a running sum.
#[derive(Clone, Debug, Entry)]
#[snapshot(Sum)]
struct Add(u64);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sum(u64);

impl Snapshot<Add> for Sum {
    fn create(entries: &[Add]) -> Self {
        Sum(entries.iter().map(|a| a.0).sum())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[test]
fn tuple_struct_with_snapshot() {
    assert!(assert_snapshot::<Add, Sum>());
    let mut s = <Add as Entry>::Snapshot::create(&[Add(1), Add(2)]);
    assert_eq!(s, Sum(3));
    s.merge(Sum::create(&[Add(10)]));
    assert_eq!(s, Sum(13));
}

/// Unit struct with a snapshot: how many entries there were.
#[derive(Clone, Debug, Entry)]
#[snapshot(Count)]
struct Tick;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Count(usize);

impl Snapshot<Tick> for Count {
    fn create(entries: &[Tick]) -> Self {
        Count(entries.len())
    }

    fn merge(&mut self, delta: Self) {
        self.0 += delta.0;
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[test]
fn unit_struct_with_snapshot() {
    assert!(assert_snapshot::<Tick, Count>());
    let mut c = <Tick as Entry>::Snapshot::create(&[Tick, Tick, Tick]);
    c.merge(Count::create(&[Tick]));
    assert_eq!(c, Count(4));
}

/// A snapshot type that exists but turns snapshots off: the attribute does not force them on.
#[allow(dead_code)] // only the type matters
#[derive(Clone, Debug, Entry)]
#[snapshot(Disabled)]
struct Plain(u8);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Disabled;

impl Snapshot<Plain> for Disabled {
    fn create(_entries: &[Plain]) -> Self {
        Disabled
    }

    fn merge(&mut self, _delta: Self) {}

    fn use_snapshots() -> bool {
        false
    }
}

#[test]
fn use_snapshots_comes_from_the_named_type() {
    assert!(!assert_snapshot::<Plain, Disabled>());
}

/// Generic struct with bounds, a where-clause and a generic snapshot type.
#[derive(Clone, Debug, Entry)]
#[snapshot(LastWrite<K, V>)]
struct Versioned<K: Clone + Debug + Ord, V>
where
    K: Serialize + DeserializeOwned,
    V: Clone + Debug + Serialize + DeserializeOwned,
{
    key: K,
    value: V,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct LastWrite<K: Ord, V> {
    map: BTreeMap<K, V>,
}

impl<K, V> Snapshot<Versioned<K, V>> for LastWrite<K, V>
where
    K: Clone + Debug + Ord + Serialize + DeserializeOwned,
    V: Clone + Debug + Serialize + DeserializeOwned,
{
    fn create(entries: &[Versioned<K, V>]) -> Self {
        let map = entries
            .iter()
            .map(|e| (e.key.clone(), e.value.clone()))
            .collect();
        Self { map }
    }

    fn merge(&mut self, delta: Self) {
        self.map.extend(delta.map);
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[test]
fn generic_struct_with_generic_snapshot() {
    assert!(assert_snapshot::<
        Versioned<u32, String>,
        LastWrite<u32, String>,
    >());
    let v = |key: u32, value: &str| Versioned {
        key,
        value: value.to_string(),
    };
    let mut s = <Versioned<u32, String> as Entry>::Snapshot::create(&[v(1, "a"), v(2, "b")]);
    s.merge(LastWrite::create(&[v(1, "c")]));
    let expected: BTreeMap<u32, String> = [(1, "c".to_string()), (2, "b".to_string())].into();
    assert_eq!(s.map, expected);
}

/// Generic enum with a bound, a where-clause and a generic snapshot type.
#[derive(Clone, Debug, Entry)]
#[snapshot(Latest<T>)]
enum Register<T: Clone>
where
    T: Debug + Eq + Hash + Serialize + DeserializeOwned,
{
    Write(T),
    Reset,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Latest<T> {
    /// The entries did not touch the register.
    Untouched,
    /// The register's value after the entries (`None`: reset).
    Set(Option<T>),
}

impl<T> Snapshot<Register<T>> for Latest<T>
where
    T: Clone + Debug + Eq + Hash + Serialize + DeserializeOwned,
{
    fn create(entries: &[Register<T>]) -> Self {
        match entries.last() {
            None => Latest::Untouched,
            Some(Register::Write(v)) => Latest::Set(Some(v.clone())),
            Some(Register::Reset) => Latest::Set(None),
        }
    }

    fn merge(&mut self, delta: Self) {
        if let Latest::Set(_) = delta {
            *self = delta;
        }
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[test]
fn generic_enum_with_generic_snapshot() {
    assert!(assert_snapshot::<Register<i64>, Latest<i64>>());
    let mut s = <Register<i64> as Entry>::Snapshot::create(&[Register::Write(1)]);
    assert_eq!(s, Latest::Set(Some(1)));
    s.merge(Latest::create(&[]));
    assert_eq!(s, Latest::Set(Some(1)), "an empty delta changes nothing");
    s.merge(Latest::create(&[Register::Write(2), Register::Reset]));
    assert_eq!(s, Latest::Set(None));
}

// ---------------------------------------------------------------------------------------------
// Paths and hygiene.

/// The derive is also reachable as `omnipaxos_macros::Entry`.
#[derive(Clone, Debug, omnipaxos_macros::Entry)]
struct ViaMacrosCrate;

/// The expansion names `::omnipaxos::storage::*` by absolute path, so local items called
/// `omnipaxos`, `Entry`, `NoSnapshot` or `Clone` do not change it.
mod shadowing {
    #![allow(dead_code)]

    mod omnipaxos {}
    trait Entry {}
    struct NoSnapshot;
    trait Clone {}
    trait Debug {}

    #[derive(::core::clone::Clone, ::core::fmt::Debug, ::omnipaxos::macros::Entry)]
    pub struct Shadowed<T>(pub T);
}

/// A path, and a trailing comma, are fine in the attribute.
#[rustfmt::skip] // rustfmt would drop the trailing comma under test
#[derive(Clone, Debug, Entry)]
#[snapshot(::omnipaxos::storage::NoSnapshot,)]
struct ExplicitNoSnapshot;

#[test]
fn snapshot_attribute_takes_a_path_and_a_trailing_comma() {
    assert!(!assert_snapshot::<ExplicitNoSnapshot, NoSnapshot>());
}

#[test]
fn derive_uses_absolute_paths() {
    assert!(!assert_snapshot::<ViaMacrosCrate, NoSnapshot>());
    assert!(!assert_snapshot::<shadowing::Shadowed<u8>, NoSnapshot>());
}
