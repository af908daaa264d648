//! Hostile input: bytes that do not decode, and well-formed messages that lie. None may panic a
//! node or break the safety checks (run after every step by the simulator, the simulated
//! applications included).
//!
//! The mutator knows nothing of the messages' fields: it serializes a real message with serde
//! into a JSON value, changes random leaves (numbers to 0, 1, huge values, other pids, pids
//! outside the configuration; flipped booleans; truncated, emptied or duplicated arrays; an enum
//! variant swapped for a sibling the decoder accepts), decodes it back and delivers it. Message
//! kinds come from the serde schema (the variant names the decoder lists), and every kind must
//! have been mutated and delivered.

mod common;
use bincode::Options;
use common::*;
use omnipaxos::messages::Message;
use omnipaxos_sim::{
    inspect::{kind_of_variants, variant_path},
    randomized::{run_with, Profile},
    Faults, Rng, Sim, SimConfig, SimEntry, Verdict,
};
use serde_json::Value;
use std::{
    cell::RefCell,
    collections::{BTreeMap, BTreeSet},
    rc::Rc,
};

fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_limit(1 << 20)
}

type Msg = Message<SimEntry>;

/// Up to this many real messages of each kind are kept.
const PER_KIND: usize = 40;

/// Real messages of busy clusters of the randomized tier's full profile (reconfigurations,
/// compaction, crashes), up to `PER_KIND` of each kind. Seeds that fail a check (the current
/// core fails some) still give the messages sent before the failure.
fn captured_messages() -> Vec<Msg> {
    thread_local! {
        static CORPUS: RefCell<Option<Vec<Msg>>> = const { RefCell::new(None) };
    }
    if let Some(c) = CORPUS.with(|c| c.borrow().clone()) {
        return c;
    }
    let seen: Rc<RefCell<BTreeMap<&'static str, Vec<Msg>>>> = Rc::default();
    let wanted = schema_kinds();
    for seed in 0..200u64 {
        let sink = seen.clone();
        let filter = Box::new(move |m: &Msg| {
            let mut s = sink.borrow_mut();
            let v = s.entry(kind(m)).or_default();
            if v.len() < PER_KIND {
                v.push(m.clone());
            }
            Verdict::Pass
        });
        let nodes = if seed % 2 == 0 { 3 } else { 5 };
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_with::<SimEntry>(seed, nodes, 1_500, Profile::Full, Some(filter))
        }));
        let s = seen.borrow();
        if wanted
            .iter()
            .all(|k| s.get(k).is_some_and(|v| v.len() >= 3))
        {
            break;
        }
    }
    let all: Vec<Msg> = seen.borrow().values().flatten().cloned().collect();
    CORPUS.with(|c| *c.borrow_mut() = Some(all.clone()));
    all
}

/// Real messages of a busy 3-node cluster (leader priority 0), with a leader crash.
fn small_corpus() -> Vec<Msg> {
    let mut s = sim(3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    s.set_filter(Some(Box::new(move |m| {
        sink.borrow_mut().push(m.clone());
        Verdict::Pass
    })));
    let l = elect(&mut s, 50);
    for t in 1..40 {
        let at = 1 + t % 3;
        let _ = s.append(at, SimEntry { id: t });
        s.step();
        if t == 20 {
            s.crash(l);
        }
    }
    s.run(100);
    let v = seen.borrow().clone();
    v
}

/// The variant names the decoder expected, from its error for an unknown variant.
fn expected_variants(err: &str) -> Vec<&'static str> {
    let Some((_, list)) = err.split_once("expected") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(|v| &*Box::leak(v.to_string().into_boxed_str()))
        .collect()
}

/// The path (of object keys) to the first object that has exactly one key, `name`: where an
/// enum variant sits in a message's JSON.
fn find_variant(v: &Value, name: &str, path: &mut Vec<String>) -> bool {
    match v {
        Value::Object(o) => {
            if o.len() == 1 && o.contains_key(name) {
                return true;
            }
            for (k, child) in o {
                path.push(k.clone());
                if find_variant(child, name, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                path.push(i.to_string());
                if find_variant(child, name, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        other => &mut other[k.as_str()],
    })
}

fn decode(v: Value) -> Result<Msg, String> {
    serde_json::from_value::<Msg>(v).map_err(|e| e.to_string())
}

/// The variants the decoder accepts at the place of `variant` in `json`.
fn siblings(json: &Value, variant: &str) -> Vec<&'static str> {
    let mut path = Vec::new();
    if !find_variant(json, variant, &mut path) {
        return Vec::new();
    }
    let mut probe = json.clone();
    *at_path(&mut probe, &path) = serde_json::json!({ "#unknown#": null });
    decode(probe)
        .err()
        .map_or(Vec::new(), |e| expected_variants(&e))
}

/// Every message kind, from the serde schema: the variants of `Message`, of the message enums
/// below them, and of those that directly form a variant's payload. Each is found by decoding
/// an unknown variant name at that place and reading the variants the decoder lists.
fn schema_kinds() -> BTreeSet<&'static str> {
    let mut kinds = BTreeSet::new();
    let top = decode(serde_json::json!({ "#unknown#": null }))
        .err()
        .map(|e| expected_variants(&e))
        .unwrap_or_default();
    assert!(top.len() >= 2, "Message has variants: {top:?}");
    // The shape below each top variant, from one real message of it (taken without the
    // corpus, to avoid recursion: a short run of a small cluster).
    let sample = small_run_messages();
    for t in top {
        let Some(m) = sample
            .iter()
            .map(|m| serde_json::to_value(m).unwrap())
            .find(|v| v.get(t).is_some())
        else {
            panic!("no message of variant {t} in a short run");
        };
        let path = variant_path(&decode(m.clone()).unwrap());
        let second = path[1];
        for w in siblings(&m, second) {
            // Is `w`'s payload itself an enum? Ask the decoder with an unknown variant there.
            let mut p = Vec::new();
            assert!(find_variant(&m, second, &mut p));
            let mut probe = m.clone();
            *at_path(&mut probe, &p) = serde_json::json!({ w: { "#unknown#": null } });
            let err = decode(probe).err().unwrap_or_default();
            let inner = if err.contains("unknown variant") {
                expected_variants(&err)
            } else {
                Vec::new()
            };
            if inner.is_empty() {
                kinds.insert(kind_of_variants(&[t, w]));
            } else {
                for i in inner {
                    kinds.insert(kind_of_variants(&[t, w, i]));
                }
            }
        }
    }
    kinds
}

/// Messages of a short run of three nodes (to learn the shape of each top-level variant).
fn small_run_messages() -> Vec<Msg> {
    let mut s = sim(3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    s.set_filter(Some(Box::new(move |m| {
        sink.borrow_mut().push(m.clone());
        Verdict::Pass
    })));
    let l = elect(&mut s, 50);
    append_decided(&mut s, l, 1..3, 50);
    let v = seen.borrow().clone();
    v
}

/// Numbers a hostile sender puts anywhere.
fn hostile_number(rng: &mut Rng, old: u64) -> u64 {
    match rng.range(0, 9) {
        0 => 0,
        1 => 1,
        2 => old.wrapping_add(1),
        3 => old.saturating_sub(1),
        4 => u64::from(u32::MAX),
        5 => u64::MAX,
        6 => u64::MAX / 2,
        7 => 99,
        8 => rng.range(2, 12),
        _ => 1 << 40,
    }
}

/// Mutates one random leaf (or array, or variant) of `v`. Returns whether anything changed.
fn mutate(v: &mut Value, rng: &mut Rng, variants: &mut dyn FnMut(&str) -> Vec<&'static str>) {
    match v {
        Value::Number(n) => {
            let old = n.as_u64().unwrap_or(0);
            *v = Value::from(hostile_number(rng, old));
        }
        Value::Bool(b) => *b = !*b,
        Value::Null => {
            if rng.chance(0.3) {
                *v = Value::from(hostile_number(rng, 0));
            }
        }
        Value::String(_) => {}
        Value::Array(a) => {
            if a.is_empty() || rng.chance(0.5) {
                match rng.range(0, 2) {
                    0 => a.truncate(rng.index(a.len() + 1)),
                    1 if !a.is_empty() => {
                        let i = rng.index(a.len());
                        let dup = a[i].clone();
                        a.insert(i, dup);
                    }
                    _ => a.clear(),
                }
            } else {
                let i = rng.index(a.len());
                mutate(&mut a[i], rng, variants);
            }
        }
        Value::Object(o) => {
            if o.is_empty() {
                return;
            }
            let keys: Vec<String> = o.keys().cloned().collect();
            let k = keys[rng.index(keys.len())].clone();
            if o.len() == 1 && rng.chance(0.3) {
                // An enum variant: swap it for a sibling (the payload stays; the decoder decides).
                let alts = variants(&k);
                if !alts.is_empty() {
                    let alt = alts[rng.index(alts.len())];
                    let payload = o.remove(&k).unwrap_or(Value::Null);
                    o.insert(alt.to_string(), payload);
                    return;
                }
            }
            mutate(o.get_mut(&k).unwrap(), rng, variants);
        }
    }
}

/// The JSON of `m` with its sender replaced by `pid`, found without knowing the field: the one
/// numeric leaf whose change changes `get_sender()`.
fn with_sender(m: &Msg, pid: u64) -> Option<Msg> {
    let json = serde_json::to_value(m).ok()?;
    let mut leaves = Vec::new();
    numeric_leaves(&json, &mut Vec::new(), &mut leaves);
    for path in leaves {
        let mut v = json.clone();
        *at_path(&mut v, &path) = Value::from(pid);
        if let Ok(d) = decode(v) {
            if d.get_sender() == pid && d.get_receiver() == m.get_receiver() {
                return Some(d);
            }
        }
    }
    None
}

/// The message with every configuration id (leaves named after the configuration, as serde
/// names them) set to `c`.
fn with_configuration(m: &Msg, c: u64) -> Option<Msg> {
    let mut json = serde_json::to_value(m).ok()?;
    fn walk(v: &mut Value, c: u64, changed: &mut bool) {
        match v {
            Value::Object(o) => {
                for (k, child) in o.iter_mut() {
                    if k.contains("config") && child.is_number() {
                        *child = Value::from(c);
                        *changed = true;
                    } else {
                        walk(child, c, changed);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| walk(x, c, changed)),
            _ => {}
        }
    }
    let mut changed = false;
    walk(&mut json, c, &mut changed);
    changed.then(|| decode(json).ok()).flatten()
}

fn numeric_leaves(v: &Value, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Number(_) => out.push(path.clone()),
        Value::Object(o) => {
            for (k, c) in o {
                path.push(k.clone());
                numeric_leaves(c, path, out);
                path.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                path.push(i.to_string());
                numeric_leaves(c, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

#[test]
fn every_message_kind_of_the_schema_is_captured_and_named() {
    let kinds = schema_kinds();
    assert!(kinds.len() >= 20, "the schema has the kinds: {kinds:?}");
    let msgs = captured_messages();
    let seen: BTreeSet<&'static str> = msgs.iter().map(kind).collect();
    let missing: Vec<_> = kinds.difference(&seen).collect();
    assert!(
        missing.is_empty(),
        "kinds never sent in the captured runs: {missing:?}"
    );
    let unknown: Vec<_> = seen.difference(&kinds).collect();
    assert!(
        unknown.is_empty(),
        "inspect::kind names kinds the schema does not have: {unknown:?}"
    );
}

#[test]
fn random_bytes_decode_to_errors_without_panicking() {
    let mut rng = Rng::new(99);
    let mut errors = 0;
    for _ in 0..20_000 {
        let len = rng.range(0, 300) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        if codec().deserialize::<Msg>(&bytes).is_err() {
            errors += 1;
        }
    }
    assert!(
        errors > 19_000,
        "only {errors} of 20000 random byte strings were rejected"
    );
}

#[test]
fn huge_length_prefixes_are_errors_not_allocations() {
    let msgs = small_corpus();
    let mut checked = 0;
    let with_entries: Vec<&Msg> = msgs.iter().filter(|m| m.entry_count() > 0).collect();
    let kinds: BTreeSet<&str> = with_entries.iter().map(|m| kind(m)).collect();
    assert!(
        kinds.contains("AcceptDecide"),
        "the corpus has messages with entries of the kinds {kinds:?}"
    );
    for m in with_entries.into_iter().take(20) {
        let bytes = codec().serialize(m).unwrap();
        // Overwrite every 8-byte window with a huge number: one of them is the length of the
        // entries; a decoder that trusted it would try to allocate exabytes.
        for i in 0..bytes.len().saturating_sub(8) {
            let mut b = bytes.clone();
            b[i..i + 8].copy_from_slice(&u64::MAX.to_le_bytes());
            let _ = codec().deserialize::<Msg>(&b);
            // The default options (no limit) must not allocate without bound either.
            let _ = bincode::deserialize::<Msg>(&b);
            checked += 1;
        }
    }
    assert!(checked > 100);
}

#[test]
fn flipped_bytes_of_real_messages_never_panic_a_node() {
    let msgs = small_corpus();
    // The attacked cluster runs ballots above every ballot of the corpus (leader priority 1000,
    // and rounds past the corpus's): a flipped message replays, at worst, a ballot nobody of the
    // attacked cluster leads in and that is below its promises. What a member lying in a ballot
    // it leads could send is out of reach of any Paxos; what a replayed old ballot could do is
    // not, and the checks after every step would see it.
    let top = msgs.iter().filter_map(|m| m.ballot()).map(|b| b.n).max();
    let top = top.expect("the corpus has ballots");
    let mut cfg = SimConfig::new(3, 1);
    cfg.priorities = vec![1000; 3];
    let mut s: MemSim = Sim::new(cfg);
    let mut l = elect(&mut s, 50);
    while s.node(l).unwrap().get_promise().n <= top + 1 {
        let next = 1 + l % 3;
        s.node_mut(next).unwrap().try_become_leader();
        l = s
            .run_until(100, |s| s.leader() == Some(next))
            .map(|_| next)
            .expect("a takeover succeeds");
    }
    let mut rng = Rng::new(5);
    let mut delivered = 0;
    for m in msgs.iter().cycle().take(5_000) {
        let mut b = codec().serialize(m).unwrap();
        for _ in 0..rng.range(1, 4) {
            let i = rng.index(b.len());
            b[i] ^= 1 << rng.range(0, 7);
        }
        if let Ok(bad) = codec().deserialize::<Msg>(&b) {
            let to = bad.get_receiver();
            if let Some(node) = s.node_mut(to) {
                node.handle_incoming(bad);
                delivered += 1;
            }
        }
        s.step();
    }
    assert!(
        delivered > 1_000,
        "only {delivered} mutated messages decoded"
    );
    // Still a working cluster (the checker ran after every step).
    let l2 = elect(&mut s, 200);
    append_decided(&mut s, l2, 1_000_000..1_000_005, 100);
}

/// Per kind: mutated messages delivered, messages from unknown pids delivered, messages of
/// another configuration delivered.
#[derive(Default, Debug)]
struct Hits {
    mutated: BTreeMap<&'static str, u64>,
    unknown_sender: BTreeMap<&'static str, u64>,
    other_configuration: BTreeMap<&'static str, u64>,
    undecodable: u64,
}

/// What a hostile run delivers besides the cluster's own traffic.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Attack {
    /// Real messages with random leaves mutated. Migration messages (which carry no ballot: a
    /// member's offer is believed) come from pids outside the configuration; the others keep
    /// their (mutated) sender. Kinds of the migration layer only if `migration`.
    Mutated { migration: bool },
    /// Real messages, unchanged but for their sender (a pid outside every configuration) or
    /// their configuration: they must be ignored, so the cluster must also keep working.
    Outsiders,
}

/// The kinds of the succession layer (how a configuration's log reaches the next one's
/// servers): they carry no ballot, and a member's word on its log and its stops is believed.
fn is_migration(k: &str) -> bool {
    matches!(
        k,
        "Ask" | "Offer" | "Pull" | "PullSnapshot" | "Entries" | "Snapshot" | "Unavailable" | "Done"
    )
}

/// A cluster under hostile input: three nodes (room for three more) on a lossy network append,
/// compact and reconfigure (to four nodes, then to a new majority), while every step hostile
/// messages are delivered. Its nodes have leader priority 1000, which no captured or mutated
/// message carries: a message can never be a forgery of the current leader's (what a lying
/// member could send; Paxos does not claim to survive that).
fn hostile_run(seed: u64, msgs: &[Msg], hits: &mut Hits, attack: Attack) {
    let mut cfg = SimConfig::new(3, seed);
    cfg.capacity = 6;
    cfg.priorities = vec![1000; 6];
    cfg.faults = Faults {
        drop: 0.02,
        duplicate: 0.02,
        max_delay: 2,
    };
    let mut s: MemSim = Sim::new(cfg);
    let mut rng = Rng::new(seed ^ 0xBAD);
    let mut cache: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    let pool: Vec<(&Msg, Value)> = msgs
        .iter()
        .filter(|m| match attack {
            Attack::Mutated { migration } => migration || !is_migration(kind(m)),
            Attack::Outsiders => true,
        })
        .map(|m| (m, serde_json::to_value(m).unwrap()))
        .collect();
    let mut tag = 1;
    for t in 0..600u64 {
        if rng.chance(0.3) {
            let members = s.members();
            let at = members[rng.index(members.len())];
            let _ = s.append(at, SimEntry { id: tag });
            tag += 1;
        }
        if rng.chance(0.01) {
            let members = s.members();
            let at = members[rng.index(members.len())];
            let _ = s.snapshot(at, None, rng.chance(0.5));
        }
        if t == 200 || t == 400 {
            let next = if t == 200 {
                vec![1, 2, 3, 4]
            } else {
                vec![1, 5, 6]
            };
            let c = s.newest_config().configuration_id + 1;
            for p in s.members() {
                let _ = s.reconfigure_with(
                    p,
                    omnipaxos::ClusterConfig {
                        configuration_id: c,
                        nodes: next.clone(),
                        flexible_quorum: None,
                    },
                    // (Without metadata: bug 5 of issue 16 is tested on its own.)
                    None,
                );
            }
        }
        s.advance_configurations();
        match attack {
            Attack::Mutated { .. } => {
                let (m, json) = &pool[rng.index(pool.len())];
                let k = kind(m);
                let mut v = json.clone();
                let mut variants = |name: &str| {
                    cache
                        .entry(name.to_string())
                        .or_insert_with(|| siblings(json, name))
                        .clone()
                };
                for _ in 0..rng.range(1, 3) {
                    mutate(&mut v, &mut rng, &mut variants);
                }
                let decoded = decode(v).ok().and_then(|bad| {
                    if is_migration(kind(&bad)) {
                        with_sender(&bad, [7, 42, 99][rng.index(3)])
                    } else {
                        Some(bad)
                    }
                });
                match decoded {
                    Some(bad) => {
                        deliver(&mut s, bad, &mut rng);
                        *hits.mutated.entry(k).or_default() += 1;
                    }
                    None => hits.undecodable += 1,
                }
            }
            Attack::Outsiders => {
                let (m, _) = &pool[rng.index(pool.len())];
                if let Some(bad) = with_sender(m, [7, 42, 99][rng.index(3)]) {
                    deliver(&mut s, bad, &mut rng);
                    *hits.unknown_sender.entry(kind(m)).or_default() += 1;
                }
                let (m, _) = &pool[rng.index(pool.len())];
                let c = [0, 9, 77, u64::from(u32::MAX)][rng.index(4)];
                if let Some(bad) = with_configuration(m, c) {
                    deliver(&mut s, bad, &mut rng);
                    *hits.other_configuration.entry(kind(m)).or_default() += 1;
                }
            }
        }
        s.step();
    }
    // What every node reports as its configuration's stop sign is the decided one.
    let check_stops = |s: &MemSim| {
        for p in s.pids() {
            let Some(o) = s.node(p) else { continue };
            if let Some(ss) = o.is_reconfigured() {
                let c = o.get_configuration_id();
                let decided = s.checker().stop_of(c).map(|(_, d)| d.clone());
                assert_eq!(
                    Some(ss),
                    decided,
                    "seed {seed}: node {p} reports a stop sign for configuration {c} that was \
                     not decided"
                );
            }
        }
    };
    check_stops(&s);
    if attack != Attack::Outsiders {
        // A mutated message from a member may carry a maximal ballot, which stalls elections by
        // design (no ballot is higher); safety was checked after every step.
        return;
    }
    // Ignored: healed, the newest configuration has a leader and decides.
    s.heal();
    let settled = s.run_until_with(
        1_000,
        |s| s.advance_configurations(),
        |s| {
            s.leader().is_some_and(|l| {
                s.members().iter().all(|p| {
                    s.node(*p)
                        .is_some_and(|o| o.get_current_leader().map(|x| x.0) == Some(l))
                })
            })
        },
    );
    let state: Vec<_> = s
        .pids()
        .filter_map(|p| {
            s.node(p).map(|o| {
                (
                    p,
                    o.get_configuration_id(),
                    o.is_reconfigured().map(|ss| ss.next_config.nodes),
                    o.get_current_leader(),
                )
            })
        })
        .collect();
    assert!(
        settled.is_some(),
        "seed {seed}: no leader of configuration {:?} after healing (messages from outside \
         the configuration must be ignored): (pid, configuration, stopped for, leader) {state:?}",
        s.members(),
    );
    let leader = s.leader().unwrap();
    let fresh = 1_000_000 + seed;
    s.append(leader, SimEntry { id: fresh }).unwrap();
    s.run_until(100, |s| s.checker().is_decided(fresh))
        .unwrap_or_else(|| panic!("seed {seed}: a fresh append was not decided"));
    check_stops(&s);
}

/// Delivers `m` to its receiver, or to a random running node if there is none (which must
/// ignore it).
fn deliver(s: &mut MemSim, m: Msg, rng: &mut Rng) {
    if std::env::var_os("OMNIPAXOS_SIM_VERBOSE").is_some() {
        eprintln!("t={} hostile {m:?}", s.now());
    }
    let to = m.get_receiver();
    let target = if s.is_up(to) {
        to
    } else {
        let up: Vec<u64> = s.pids().filter(|p| s.is_up(*p)).collect();
        up[rng.index(up.len())]
    };
    if let Some(node) = s.node_mut(target) {
        node.handle_incoming(m);
    }
}

fn hostile_runs(attack: Attack) -> Hits {
    let msgs = captured_messages();
    let mut hits = Hits::default();
    for seed in 0..8u64 {
        hostile_run(seed, &msgs, &mut hits, attack);
    }
    println!("{hits:#?}");
    hits
}

/// Mutated messages of every kind but the migration layer's, delivered throughout busy runs:
/// nodes never panic and the safety and application checks hold after every step.
#[test]
fn mutated_messages_never_panic_nor_break_safety() {
    let hits = hostile_runs(Attack::Mutated { migration: false });
    for k in schema_kinds().iter().filter(|k| !is_migration(k)) {
        assert!(
            hits.mutated.get(k).is_some_and(|n| *n > 0),
            "no mutated {k} was delivered: {hits:?}"
        );
    }
}

/// The same with the migration layer's kinds too (sent from pids outside the configuration).
#[test]
fn mutated_messages_of_every_kind_never_panic_nor_break_safety() {
    let hits = hostile_runs(Attack::Mutated { migration: true });
    for k in &schema_kinds() {
        assert!(
            hits.mutated.get(k).is_some_and(|n| *n > 0),
            "no mutated {k} was delivered: {hits:?}"
        );
    }
}

/// Real messages of every kind from pids outside every configuration, and of other
/// configurations: ignored, so safety holds and the cluster keeps working.
#[test]
fn messages_from_outside_the_configuration_are_ignored() {
    let hits = hostile_runs(Attack::Outsiders);
    let kinds = schema_kinds();
    for k in &kinds {
        assert!(
            hits.unknown_sender.get(k).is_some_and(|n| *n > 0),
            "no {k} from an unknown sender was delivered: {hits:?}"
        );
    }
    assert!(
        hits.other_configuration.len() >= kinds.len() / 2,
        "few kinds were delivered with another configuration: {hits:?}"
    );
}
