//! The bugs of issue 16, one small scenario each, black-box: through the public `OmniPaxos` API
//! and the simulator, as a user would drive them. Messages are told apart only by
//! `omnipaxos_sim::inspect::kind`, and forged through their serde form.
//!
//! Each test states what a correct library does; each failed on the core before the redesign
//! of issue 16 and passes since.

use omnipaxos::{messages::Message, storage::Entry, util::LogEntry, ClusterConfig};
use omnipaxos_sim::{
    inspect::kind, FromTag, MemoryBackend, PlainEntry, Sim, SimConfig, SimEntry, Tagged, Verdict,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::{cell::RefCell, collections::BTreeMap, rc::Rc};

type S<T> = Sim<T, MemoryBackend<T>>;

/// What a server that holds a stop answers a server of the stopped configuration with: where
/// the log ended and what it holds (`Offer`), and the entries it asks for.
const SUCCESSION: &[&str] = &["Offer", "Entries", "Snapshot", "Unavailable", "Done"];

/// Election timeout of the scenarios (ticks).
const E: u64 = 10;

fn config(id: u32, nodes: &[u64]) -> ClusterConfig {
    ClusterConfig {
        configuration_id: id,
        nodes: nodes.to_vec(),
        flexible_quorum: None,
    }
}

/// A cluster of `n` nodes (room for `capacity`) on a perfect network.
fn cluster<T>(n: usize, capacity: usize) -> S<T>
where
    T: Entry + Tagged + PartialEq,
{
    let mut cfg = SimConfig::new(n, 1);
    cfg.capacity = capacity;
    Sim::new(cfg)
}

/// A rule: whether to drop a message.
type Rule<T> = Box<dyn Fn(&Message<T>) -> bool>;

/// Named rules that drop messages, all in one network filter; rules come and go as a scenario
/// goes on.
#[derive(Clone)]
struct Rules<T: Entry> {
    rules: Rc<RefCell<BTreeMap<&'static str, Rule<T>>>>,
}

impl<T> Rules<T>
where
    T: Entry + Tagged + PartialEq + Serialize + for<'a> Deserialize<'a> + 'static,
{
    fn install(s: &mut S<T>) -> Self {
        let rules: Self = Rules {
            rules: Rc::default(),
        };
        let r = rules.rules.clone();
        s.set_filter(Some(Box::new(move |m| {
            if r.borrow().values().any(|drop| drop(m)) {
                Verdict::Drop
            } else {
                Verdict::Pass
            }
        })));
        rules
    }

    /// Drops the messages `pred` picks, until [`Rules::lift`].
    fn drop(&self, name: &'static str, pred: impl Fn(&Message<T>) -> bool + 'static) {
        self.rules.borrow_mut().insert(name, Box::new(pred));
    }

    fn lift(&self, name: &'static str) {
        self.rules.borrow_mut().remove(name);
    }

    /// Cuts every message to and from `pid`, except the kinds in `but`.
    fn isolate(&self, name: &'static str, pid: u64, but: &'static [&'static str]) {
        self.drop(name, move |m| {
            (m.get_sender() == pid || m.get_receiver() == pid) && !but.contains(&kind(m))
        });
    }

    /// Cuts every message to `pid`, except the kinds in `but`; what `pid` sends goes through.
    fn deafen(&self, name: &'static str, pid: u64, but: &'static [&'static str]) {
        self.drop(name, move |m| {
            m.get_receiver() == pid && !but.contains(&kind(m))
        });
    }
}

/// Runs until one node of `members` serves as leader and the others follow it; returns it.
fn elect<T: Entry + Tagged + PartialEq>(s: &mut S<T>, members: &[u64], max: u64) -> u64 {
    let members = members.to_vec();
    s.run_until(max, |s| {
        let l = members.iter().find(|p| {
            s.node(**p)
                .is_some_and(|o| o.get_current_leader() == Some((**p, true)))
        });
        l.is_some_and(|l| {
            members.iter().all(|p| {
                s.node(*p)
                    .is_some_and(|o| o.get_current_leader().map(|x| x.0) == Some(*l))
            })
        })
    })
    .unwrap_or_else(|| panic!("no leader among {members:?} within {max} ticks"));
    *members
        .iter()
        .find(|p| s.node(**p).unwrap().get_current_leader() == Some((**p, true)))
        .unwrap()
}

/// Appends `tags` at `at` and runs until nodes `on` decided them all.
fn decide<T: Entry + FromTag + PartialEq>(
    s: &mut S<T>,
    at: u64,
    tags: std::ops::RangeInclusive<u64>,
    on: &[u64],
) {
    for t in tags.clone() {
        s.append(at, T::from_tag(t)).unwrap();
    }
    let last = *tags.end();
    let on = on.to_vec();
    s.run_until(20 * E, |s| {
        s.checker().is_decided(last)
            && on
                .iter()
                .all(|p| s.decided(*p) >= s.checker().decided_log().len())
    })
    .unwrap_or_else(|| panic!("{tags:?} not decided on {on:?}"));
}

/// The JSON form of `m`, edited by `edit`, decoded back: how a forger (or a corrupted link)
/// makes a message without the library's help.
fn forge<T>(m: &Message<T>, edit: impl FnOnce(&mut Value)) -> Message<T>
where
    T: Entry + Serialize + for<'a> Deserialize<'a>,
{
    let mut v = serde_json::to_value(m).expect("messages serialize");
    edit(&mut v);
    serde_json::from_value(v).expect("the forged message decodes")
}

/// The first object in `v` that has the key `key` (depth first).
fn find_key<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    if v.get(key).is_some() {
        return v.get_mut(key);
    }
    match v {
        Value::Object(o) => o.values_mut().find_map(|c| find_key(c, key)),
        Value::Array(a) => a.iter_mut().find_map(|c| find_key(c, key)),
        _ => None,
    }
}

/// Replaces the sender of a message in its JSON form (the envelope's first number that is the
/// sender), whatever the envelope's field is called.
fn set_sender<T>(m: &Message<T>, pid: u64) -> Message<T>
where
    T: Entry + Serialize + for<'a> Deserialize<'a>,
{
    let v = serde_json::to_value(m).unwrap();
    let sender = m.get_sender();
    // The envelope: the payload of the top-level variant.
    let (variant, envelope) = v.as_object().unwrap().iter().next().unwrap();
    for (field, value) in envelope.as_object().unwrap() {
        if value.as_u64() == Some(sender) {
            let mut w = v.clone();
            w[variant][field] = Value::from(pid);
            if let Ok(f) = serde_json::from_value::<Message<T>>(w) {
                if f.get_sender() == pid && f.get_receiver() == m.get_receiver() {
                    return f;
                }
            }
        }
    }
    panic!("no sender field found in {v}");
}

/// Records the messages of `kind_name` that the network carries (delivered or not).
fn capture<T>(s: &mut S<T>, kind_name: &'static str) -> Rc<RefCell<Vec<Message<T>>>>
where
    T: Entry + Tagged + PartialEq + Serialize + for<'a> Deserialize<'a> + 'static,
{
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    s.set_filter(Some(Box::new(move |m| {
        if kind(m) == kind_name {
            sink.borrow_mut().push(m.clone());
        }
        Verdict::Pass
    })));
    seen
}

// ---------------------------------------------------------------------------------------------
// A deposed leader's own appends.

/// A leader takes an append, is cut off before any follower has it, and is deposed; when it
/// comes back, the new leader's sync replaces its log. The append must not vanish: it is decided
/// or handed back by `take_uncertain_appends` at the node that took it.
#[test]
fn an_append_at_a_leader_deposed_before_replicating_it_is_decided_or_handed_back() {
    let mut s: S<SimEntry> = cluster(3, 3);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    let others: Vec<u64> = (1..=3).filter(|p| *p != l).collect();
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    rules.isolate("leader cut off", l, &[]);
    s.append(l, SimEntry { id: 100 })
        .expect("the leader takes the append");
    // The others elect a new leader and decide on.
    let l2 = elect(&mut s, &others, 20 * E);
    decide(&mut s, l2, 4..=6, &others);
    rules.lift("leader cut off");
    let mut handed_back = Vec::new();
    s.run_until(20 * E, |s| {
        s.node(l).unwrap().get_decided_idx() >= s.checker().decided_log().len()
    })
    .expect("the old leader catches up");
    for _ in 0..10 * E {
        s.step();
        handed_back.extend(s.node_mut(l).unwrap().take_uncertain_appends());
    }
    assert!(
        s.checker().is_decided(100) || handed_back.contains(&SimEntry { id: 100 }),
        "append 100, taken by leader {l} before it was deposed, was neither decided nor handed \
         back: decided log {:?}, handed back {handed_back:?}",
        s.checker()
            .decided_log()
            .iter()
            .filter_map(|x| match x {
                omnipaxos_sim::checker::Slot::Entry(e) => Some(e.id),
                _ => None,
            })
            .collect::<Vec<_>>()
    );
}

/// Runs until `pid` reports its configuration stopped.
fn until_stopped<T: Entry + Tagged + PartialEq>(s: &mut S<T>, pid: u64, max: u64) {
    s.run_until(max, |s| {
        s.node(pid).is_some_and(|o| o.is_reconfigured().is_some())
    })
    .unwrap_or_else(|| panic!("node {pid} did not learn that its configuration stopped"));
}

/// Moves the servers in `pids` on to the next configuration (`start_next_config`), and starts
/// the joiners in `joiners` on fresh storage.
fn move_on<T: Entry + Tagged + PartialEq>(
    s: &mut S<T>,
    pids: &[u64],
    next: &ClusterConfig,
    joiners: &[u64],
) {
    for p in pids {
        s.start_next_config(*p)
            .unwrap_or_else(|e| panic!("node {p} cannot start the next configuration: {e}"));
    }
    for j in joiners {
        s.join(*j, next.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// Bug 6: appends accepted after the stop, then lost.

/// A leader of the old configuration, cut off while the others stopped it, learns of the stop
/// from an offer. It still reports itself the serving leader; an append it takes then must be
/// refused, or decided, or handed back, never silently lost across `start_next_config`.
#[test]
fn bug6_an_append_at_a_stale_leader_after_the_stop_is_refused_or_handed_back() {
    let mut s: S<SimEntry> = cluster(3, 4);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    let others: Vec<u64> = (1..=3).filter(|p| *p != l).collect();
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    rules.isolate("stale leader", l, &[]);
    let l2 = elect(&mut s, &others, 20 * E);
    let next = config(2, &[1, 2, 3, 4]);
    s.reconfigure(l2, next.clone()).unwrap();
    until_stopped(&mut s, l2, 20 * E);
    move_on(&mut s, &others, &next, &[4]);
    // It hears nothing but what servers holding the stop answer its messages with: it learns
    // of the stop from an offer.
    rules.lift("stale leader");
    rules.deafen("stale leader", l, SUCCESSION);
    until_stopped(&mut s, l, 20 * E);
    let op = s.node(l).unwrap();
    println!(
        "stale leader {l}: is_reconfigured {:?}, get_current_leader {:?}",
        op.is_reconfigured().map(|ss| ss.next_config.nodes),
        op.get_current_leader()
    );
    let taken = s.append(l, SimEntry { id: 100 }).is_ok();
    move_on(&mut s, &[l], &next, &[]);
    rules.lift("stale leader");
    let mut handed_back = Vec::new();
    for _ in 0..30 * E {
        s.step();
        handed_back.extend(s.node_mut(l).unwrap().take_uncertain_appends());
    }
    assert!(
        !taken || s.checker().is_decided(100) || handed_back.contains(&SimEntry { id: 100 }),
        "append 100 returned Ok at node {l} after it learned its configuration stopped, and was \
         neither decided nor handed back after start_next_config (handed back: {handed_back:?})"
    );
}

// ---------------------------------------------------------------------------------------------
// Bug 5: a stop sign learned from another server loses its metadata.

/// A straggler cut off across the stop learns of it from a server that moved on (an `Offer`
/// answering its own messages; it hears nothing else). What it reports with `is_reconfigured`
/// is the decided stop sign, metadata included. (The checker compares every node's
/// `is_reconfigured` with the decided stop sign after every step.)
#[test]
fn bug5_a_straggler_told_by_an_offer_reports_the_decided_stop_sign() {
    let mut s: S<SimEntry> = cluster(3, 3);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    let straggler = (1..=3).find(|p| *p != l).unwrap();
    let others: Vec<u64> = (1..=3).filter(|p| *p != straggler).collect();
    rules.isolate("straggler", straggler, &[]);
    let next = config(2, &[1, 2, 3]);
    s.reconfigure_with(l, next.clone(), Some(b"epoch 2".to_vec()))
        .unwrap();
    until_stopped(&mut s, l, 20 * E);
    let decided = s.node(l).unwrap().is_reconfigured().unwrap();
    assert_eq!(decided.metadata.as_deref(), Some(&b"epoch 2"[..]));
    move_on(&mut s, &others, &next, &[]);
    // Back, but it hears only what servers holding the stop answer its messages with.
    rules.lift("straggler");
    rules.deafen("straggler", straggler, SUCCESSION);
    until_stopped(&mut s, straggler, 30 * E);
    assert_eq!(
        s.node(straggler).unwrap().is_reconfigured(),
        Some(decided),
        "the straggler reports another stop sign than the decided one"
    );
}

// ---------------------------------------------------------------------------------------------
// Bug 4: migration messages bypass the membership check.

/// A real `Offer`, from a run of three nodes reconfiguring to four.
fn a_real_offer() -> Message<SimEntry> {
    let mut s: S<SimEntry> = cluster(3, 4);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    let offers = capture(&mut s, "Offer");
    let next = config(2, &[1, 2, 3, 4]);
    s.reconfigure(l, next).unwrap();
    s.run_until(30 * E, |_| !offers.borrow().is_empty())
        .expect("an offer is sent");
    let m = offers.borrow()[0].clone();
    m
}

/// `m` addressed to `to` (the envelope's receiver, found in the serde form like the sender).
fn set_receiver(m: &Message<SimEntry>, to: u64) -> Message<SimEntry> {
    let v = serde_json::to_value(m).unwrap();
    let (variant, envelope) = v.as_object().unwrap().iter().next().unwrap();
    for (field, value) in envelope.as_object().unwrap() {
        if value.as_u64() == Some(m.get_receiver()) {
            let mut w = v.clone();
            w[variant][field] = Value::from(to);
            if let Ok(f) = serde_json::from_value::<Message<SimEntry>>(w) {
                if f.get_receiver() == to && f.get_sender() == m.get_sender() {
                    return f;
                }
            }
        }
    }
    panic!("no receiver field found in {v}");
}

/// Delivers `m`, sent by pid 99 (outside the configuration), to each of `to`.
fn deliver_from_99(s: &mut S<SimEntry>, m: &Message<SimEntry>, to: &[u64]) {
    let m = set_sender(m, 99);
    for p in to {
        let forged = set_receiver(&m, *p);
        s.node_mut(*p).unwrap().handle_incoming(forged);
    }
}

/// A cluster that ignores forged messages still has a leader and decides.
fn still_works(s: &mut S<SimEntry>, tag: u64) {
    for p in 1..=3 {
        assert_eq!(
            s.node(p).unwrap().is_reconfigured(),
            None,
            "node {p} believes a forged message: its configuration is stopped"
        );
    }
    let l = elect(s, &[1, 2, 3], 30 * E);
    decide(s, l, tag..=tag, &[1, 2, 3]);
}

/// A stop in an offer's serde form.
fn stop_json(config: (u32, &[u64]), end: u64, next: (u32, &[u64])) -> Value {
    serde_json::json!({
        "config": { "configuration_id": config.0, "nodes": config.1, "flexible_quorum": null },
        "end": end,
        "ss": {
            "next_config": { "configuration_id": next.0, "nodes": next.1, "flexible_quorum": null },
            "metadata": null,
        },
    })
}

/// One `Offer` from pid 99, describing our own configuration as stopped (for a configuration
/// that includes pid 99), reaches every node: they ignore it (a stop of our configuration is
/// believed only from a server of it).
#[test]
fn bug4_an_offer_from_an_unknown_pid_seals_nothing() {
    let offer = forge(&a_real_offer(), |v| {
        let o = find_key(v, "Offer").expect("an offer");
        o["about"] = Value::from(1);
        o["chain"] = serde_json::json!([stop_json((1, &[1, 2, 3]), 3, (2, &[1, 2, 3, 99]))]);
    });
    let mut s: S<SimEntry> = cluster(3, 3);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    deliver_from_99(&mut s, &offer, &[1, 2, 3]);
    s.run(E);
    still_works(&mut s, 10);
}

/// Decided entries, a snapshot and a `Done` nobody asked for, from pid 99 (built from an
/// offer's envelope, in serde form): they change no log.
#[test]
fn bug4_unasked_entries_from_an_unknown_pid_change_nothing() {
    let real = a_real_offer();
    let unasked = [
        serde_json::json!({ "Entries": { "from": 0, "entries": [{ "id": 777 }, { "id": 778 }] } }),
        serde_json::json!({ "Entries": { "from": 3, "entries": [{ "id": 779 }] } }),
        serde_json::json!({ "Snapshot": { "upto": 5, "snapshot": { "tags": [777, 778, 779, 780, 781] } } }),
        serde_json::json!("Done"),
    ];
    let mut s: S<SimEntry> = cluster(3, 3);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    let mut delivered = 0;
    for msg in unasked {
        let forged = serde_json::to_value(&real).ok().and_then(|mut v| {
            *find_key(&mut v, "Succession")? = msg.clone();
            serde_json::from_value::<Message<SimEntry>>(v).ok()
        });
        if let Some(m) = forged {
            deliver_from_99(&mut s, &m, &[1, 2, 3]);
            delivered += 1;
        }
    }
    assert!(delivered >= 3, "the forged messages must decode");
    s.run(E);
    still_works(&mut s, 10);
    for id in 777..=781 {
        assert!(!s.checker().is_decided(id), "forged entry {id} is in a log");
    }
}

/// An `Offer` from pid 99 of a log that ends near `usize::MAX`, as the stop of a configuration
/// before ours whose members include 99 (the receivers' log starts at 0: they know it): no
/// overflow, no panic, nothing believed.
#[test]
fn bug4_an_offer_with_an_end_near_usize_max_is_harmless() {
    let offer = forge(&a_real_offer(), |v| {
        let o = find_key(v, "Offer").expect("an offer");
        o["about"] = Value::from(1);
        o["chain"] = serde_json::json!([stop_json((0, &[99]), u64::MAX - 1, (1, &[1, 2, 3]))]);
        o["held_from"] = Value::from(0);
        o["held_to"] = Value::from(u64::MAX);
        o["snapshot"] = Value::from(true);
    });
    let mut s: S<SimEntry> = cluster(3, 3);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    deliver_from_99(&mut s, &offer, &[1, 2, 3]);
    s.run(E);
    for p in 1..=3 {
        assert!(
            s.decided(p) < 1_000,
            "node {p} took the forged log: decided index {}",
            s.decided(p)
        );
        assert_eq!(s.node(p).unwrap().get_migration_status(), None);
    }
    still_works(&mut s, 10);
}

// ---------------------------------------------------------------------------------------------
// Bug 2: a joiner's old prefix reads as `Trimmed` and can be lost.

/// Three nodes decide `1..=n`, then reconfigure to `[1, 2, 3, 4]`; the three move on and 4
/// joins. Returns the rules (installed before anything happens).
fn joiner_scenario(
    n: u64,
    before_join: impl FnOnce(&Rules<SimEntry>),
) -> (S<SimEntry>, Rules<SimEntry>) {
    let mut s: S<SimEntry> = cluster(3, 4);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=n, &[1, 2, 3]);
    before_join(&rules);
    let next = config(2, &[1, 2, 3, 4]);
    s.reconfigure(l, next.clone()).unwrap();
    for p in 1..=3 {
        until_stopped(&mut s, p, 20 * E);
    }
    move_on(&mut s, &[1, 2, 3], &next, &[4]);
    (s, rules)
}

/// The joiner holds the old log `0..end`: as decided entries, or a snapshot of exactly them.
fn holds_old_log(s: &S<SimEntry>, pid: u64, end: usize) -> Result<(), String> {
    let node = s.node(pid).unwrap();
    match node.read(0) {
        Some(LogEntry::Decided(_)) => Ok(()),
        Some(LogEntry::Snapshotted(snap)) if snap.trimmed_idx >= end => {
            let tags: Vec<u64> = (0..snap.trimmed_idx)
                .map(|i| s.checker().global_entry_at(i).map_or(0, |e| e.id))
                .collect();
            if snap.snapshot == omnipaxos_sim::SimSnapshot::of(tags) {
                Ok(())
            } else {
                Err(format!(
                    "node {pid}'s snapshot is not of the decided entries"
                ))
            }
        }
        other => Err(format!(
            "node {pid} does not hold the old log 0..{end}: read(0) = {other:?}, migration {:?}",
            node.get_migration_status()
        )),
    }
}

/// (a) The new leader's `AcceptSync` reaches the joiner before any offer. Until the joiner
/// holds the old log, it says it is pulling it (reads of it are `None`); it never shows it as
/// `Trimmed` (the simulated application on the joiner would skip it).
#[test]
fn bug2a_a_joiner_synced_before_any_offer_does_not_show_the_old_log_trimmed() {
    let (mut s, rules) = joiner_scenario(30, |rules| {
        rules.drop("offers to the joiner held", |m| {
            kind(m) == "Offer" && m.get_receiver() == 4
        });
    });
    s.run_until(30 * E, |s| s.decided(4) >= 30)
        .expect("the joiner is synced by the leader");
    let joiner = s.node(4).unwrap();
    assert!(
        joiner.get_migration_status().is_some()
            || !matches!(joiner.read(0), Some(LogEntry::Trimmed(_))),
        "the joiner shows the old log as {:?} and pulls nothing",
        joiner.read(0)
    );
    rules.lift("offers to the joiner held");
    s.run_until(50 * E, |s| holds_old_log(s, 4, 30).is_ok())
        .unwrap_or_else(|| panic!("{}", holds_old_log(&s, 4, 30).unwrap_err()));
}

/// (b) The joiner restarts in the middle of its pull: it goes on pulling (or holds the log);
/// it never shows the old log as `Trimmed`.
#[test]
fn bug2b_a_joiner_restarted_in_the_middle_of_its_pull_does_not_show_the_old_log_trimmed() {
    let (mut s, rules) = joiner_scenario(50, |rules| {
        rules.drop("entries to the joiner held", |m| {
            matches!(kind(m), "Entries" | "Snapshot") && m.get_receiver() == 4
        });
    });
    s.run_until(30 * E, |s| {
        s.node(4)
            .is_some_and(|o| o.get_migration_status().is_some())
    })
    .expect("the joiner pulls the old log");
    s.crash(4);
    s.restart(4);
    let joiner = s.node(4).unwrap();
    assert!(
        joiner.get_migration_status().is_some()
            || !matches!(joiner.read(0), Some(LogEntry::Trimmed(_))),
        "after its restart the joiner shows the old log as {:?} and pulls nothing",
        joiner.read(0)
    );
    rules.lift("entries to the joiner held");
    s.run_until(50 * E, |s| holds_old_log(s, 4, 50).is_ok())
        .unwrap_or_else(|| panic!("{}", holds_old_log(&s, 4, 50).unwrap_err()));
}

/// (c) After that restart (the new configuration decided entries after the old log meanwhile),
/// the application snapshots locally (`snapshot(None, true)`). The joiner must still end up
/// with the old log (the snapshot waits for it, or is refused), not
/// with a prefix trimmed for good. (The application checks are off here: they would stop the
/// run at (b) already.)
#[test]
fn bug2c_a_local_snapshot_after_that_restart_does_not_lose_the_old_log() {
    let (mut s, rules) = joiner_scenario(50, |rules| {
        rules.drop("entries to the joiner held", |m| {
            matches!(kind(m), "Entries" | "Snapshot") && m.get_receiver() == 4
        });
    });
    s.set_check_applications(false);
    s.run_until(30 * E, |s| {
        s.node(4)
            .is_some_and(|o| o.get_migration_status().is_some())
    })
    .expect("the joiner pulls the old log");
    // The new configuration decides on meanwhile, the joiner too.
    let l = elect(&mut s, &[1, 2, 3, 4], 30 * E);
    decide(&mut s, l, 51..=60, &[1, 2, 3, 4]);
    s.crash(4);
    s.restart(4);
    let snapshot = s.node_mut(4).unwrap().snapshot(None, true);
    println!("snapshot(None, true) after the restart: {snapshot:?}");
    rules.lift("entries to the joiner held");
    s.run_until(50 * E, |s| holds_old_log(s, 4, 50).is_ok())
        .unwrap_or_else(|| panic!("{}", holds_old_log(&s, 4, 50).unwrap_err()));
}

// ---------------------------------------------------------------------------------------------
// Bug 3: a trim lets a follower skip entries it never saw decided.

/// A follower accepts 20..40 but learns only that 0..20 are decided, and is cut off. The leader
/// trims at 40 and leadership changes twice. When the follower is back, its application (which
/// applied 0..20) must get entries 20..40 as entries, or the trim must have been refused: a
/// trim covers only what every server decided. (The checker's application on the follower
/// fails the run if it reads `Trimmed(40)` from 20.)
#[test]
fn bug3_a_trim_never_covers_what_a_follower_has_not_decided() {
    let mut s: S<PlainEntry> = cluster(3, 3);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    let f = (1..=3).find(|p| *p != l).unwrap();
    let o = (1..=3).find(|p| *p != l && *p != f).unwrap();
    decide(&mut s, l, 1..=20, &[1, 2, 3]);
    // The follower accepts 20..40 but never hears that they are decided.
    rules.drop("no decisions to the follower", move |m| {
        kind(m) == "Decide" && m.get_receiver() == f
    });
    s.append_batch(l, (21..=40).map(|id| PlainEntry { id }).collect())
        .unwrap();
    s.run_until(10 * E, |s| {
        s.decided(l) >= 40 && s.node(f).unwrap().get_accepted_idx() >= 40
    })
    .expect("decided at the leader, accepted at the follower");
    rules.isolate("follower cut off", f, &[]);
    assert_eq!(s.decided(f), 20, "the follower decided only 0..20");
    let trim = s.node_mut(l).unwrap().trim(Some(40));
    println!("trim(Some(40)) at the leader: {trim:?}");
    s.run(2 * E);
    // Two leader changes while the follower is away.
    s.node_mut(o).unwrap().try_become_leader();
    elect(&mut s, &[l, o], 20 * E);
    s.node_mut(l).unwrap().try_become_leader();
    elect(&mut s, &[l, o], 20 * E);
    rules.lift("follower cut off");
    rules.lift("no decisions to the follower");
    s.run_until(30 * E, |s| s.decided(f) >= 40)
        .expect("the follower catches up");
    let app = s.app(f).unwrap();
    assert!(app.applied() >= 40);
    assert!(
        app.state()[20..40]
            .iter()
            .all(|a| matches!(a, omnipaxos_sim::app::Applied::Entry(_))),
        "the follower's application did not apply 20..40 one by one: {:?}",
        &app.state()[20..40]
    );
}

// ---------------------------------------------------------------------------------------------
// Bug 7: a server that lags when the stop is decided never gets the old log's last entries.

/// A continuing server misses entries 4..5 and the stop (cut off), then learns of the stop from
/// an offer. It must get 4..5 as entries (synced in the old configuration up to and including
/// the decided stop sign, as the upstream suite checks, or after `start_next_config`): its
/// application applies entries one by one (an entry type without snapshots), so a `Trimmed`
/// old log would skip them.
#[test]
fn bug7_a_server_lagging_at_the_stop_gets_the_old_logs_last_entries() {
    let mut s: S<PlainEntry> = cluster(3, 3);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    let lagging = (1..=3).find(|p| *p != l).unwrap();
    let others: Vec<u64> = (1..=3).filter(|p| *p != lagging).collect();
    decide(&mut s, l, 1..=3, &[1, 2, 3]);
    rules.isolate("lagging", lagging, &[]);
    decide(&mut s, l, 4..=5, &others);
    let next = config(2, &[1, 2, 3]);
    s.reconfigure(l, next.clone()).unwrap();
    until_stopped(&mut s, l, 20 * E);
    move_on(&mut s, &others, &next, &[]);
    // It hears of the stop from an offer (an answer to its own messages), and pulls what it
    // lacks.
    rules.lift("lagging");
    rules.deafen("lagging", lagging, SUCCESSION);
    until_stopped(&mut s, lagging, 30 * E);
    let op = s.node(lagging).unwrap();
    println!(
        "lagging server {lagging} when it learned of the stop: decided index {}, log {:?}",
        op.get_decided_idx(),
        op.read_entries(0..op.get_accepted_idx())
    );
    rules.lift("lagging");
    move_on(&mut s, &[lagging], &next, &[]);
    s.run_until(30 * E, |s| s.app(lagging).is_some_and(|a| a.applied() >= 5))
        .expect("the lagging server's application catches up");
    let app = s.app(lagging).unwrap();
    assert_eq!(
        &app.state()[..5],
        &(1..=5)
            .map(omnipaxos_sim::app::Applied::Entry)
            .collect::<Vec<_>>()[..],
        "the lagging server's application did not apply 1..=5 one by one"
    );
}

// ---------------------------------------------------------------------------------------------
// Bug 1: two entries decided at one index across configurations.

/// Configurations c1 = [1, 2, 3] → c2 = [1, 2, 4] → c3 = [2, 4, 5]. Server 4 joins c2, but its
/// pull of c1's log does not finish; it is cut off while c2 decides entries 10..20 and stops.
/// It learns of c2's stop from 2 (restarted in c3: what it knows of the stops before comes
/// from its durable record) answering its heartbeats, and receives offers of c1's log from 3
/// (removed in c2, still offering). With 5 (a joiner of c3 that heard no offer) it forms a read quorum of c3.
/// It must not continue in c3 before it holds c2's log (it waits for its pulls), and must not
/// lead c3 from c1's end: index 10 holds c2's entry 11, decided. (The checker
/// compares every decided entry with the one log all configurations share. The application
/// checks are off: they would stop the run earlier, at bug 2.)
#[test]
fn bug1_a_server_without_the_predecessors_log_never_leads_from_an_older_end() {
    let mut s: S<SimEntry> = cluster(3, 5);
    s.set_check_applications(false);
    let rules = Rules::install(&mut s);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    decide(&mut s, l, 1..=10, &[1, 2, 3]);
    // c1 → c2: 3 leaves, 4 joins; 4's pull of c1's log never gets any entries.
    rules.drop("the joiner's pull never finishes", |m| {
        matches!(kind(m), "Entries" | "Snapshot") && m.get_receiver() == 4
    });
    let c2 = config(2, &[1, 2, 4]);
    s.reconfigure(l, c2.clone()).unwrap();
    for p in 1..=3 {
        until_stopped(&mut s, p, 20 * E);
    }
    move_on(&mut s, &[1, 2], &c2, &[4]);
    s.run_until(20 * E, |s| {
        s.node(4)
            .is_some_and(|o| o.get_migration_status().is_some())
    })
    .expect("4 pulls c1's log");
    // 4 is cut off while c2 decides 10..20 and stops: c2 → c3 = [2, 4, 5].
    rules.isolate("4 cut off", 4, &[]);
    let l2 = elect(&mut s, &[1, 2], 20 * E);
    decide(&mut s, l2, 11..=20, &[1, 2]);
    let c3 = config(3, &[2, 4, 5]);
    s.reconfigure(l2, c3.clone()).unwrap();
    until_stopped(&mut s, 1, 20 * E);
    until_stopped(&mut s, 2, 20 * E);
    let (c2_end, _) = s.checker().stop_of(2).expect("c2's stop sign is decided");
    assert_eq!(c2_end, 20);
    move_on(&mut s, &[2], &c3, &[5]);
    // 2 restarts in c3: it forgets which log it continues.
    s.crash(2);
    s.restart(2);
    // 5 hears no offer; 2 and 5 do not meet; 4 meets 5, sends its heartbeats to 2 (which
    // answers with an offer), and hears 3's offers of c1's log.
    rules.drop("5 hears no offer", |m| {
        kind(m) == "Offer" && m.get_receiver() == 5
    });
    rules.drop("2 and 5 apart", |m| {
        let (a, b) = (m.get_sender(), m.get_receiver());
        (a == 2 && b == 5) || (a == 5 && b == 2)
    });
    rules.lift("4 cut off");
    rules.drop("4's links", |m| {
        let (from, to, k) = (m.get_sender(), m.get_receiver(), kind(m));
        let involves_4 = from == 4 || to == 4;
        let allowed = (from == 4 && to == 2)
            || (from == 2 && to == 4 && SUCCESSION.contains(&k))
            || from == 5
            || to == 5
            || (from == 3 && to == 4 && k == "Offer")
            || (from == 4 && to == 3);
        involves_4 && !allowed
    });
    // 4 hears of c2's stop, but gets none of the entries it lacks: it does not report c2
    // stopped, so it cannot continue in c3 with a log it does not hold.
    s.run(30 * E);
    assert_eq!(
        s.node(4).unwrap().is_reconfigured(),
        None,
        "4 reports c2 stopped while it lacks c2's entries"
    );
    rules.lift("the joiner's pull never finishes");
    until_stopped(&mut s, 4, 30 * E);
    assert_eq!(
        s.node(4)
            .unwrap()
            .is_reconfigured()
            .map(|ss| ss.next_config),
        Some(c3.clone())
    );
    move_on(&mut s, &[4], &c3, &[]);
    // Whoever leads c3 now, what it decides goes after c2's log.
    let led = s.run_until(30 * E, |s| {
        [4, 5]
            .iter()
            .any(|p| s.node(*p).unwrap().get_current_leader() == Some((*p, true)))
    });
    println!(
        "c3 leader among 4 and 5 after {led:?} ticks; 4 decided {}, compacted {}",
        s.decided(4),
        s.node(4).unwrap().get_compacted_idx()
    );
    if led.is_some() {
        let leader = if s.node(4).unwrap().get_current_leader() == Some((4, true)) {
            4
        } else {
            5
        };
        s.append(leader, SimEntry { id: 100 }).unwrap();
        s.run(10 * E);
    }
    assert_eq!(
        s.checker().global_entry_at(10),
        Some(&SimEntry { id: 11 }),
        "index 10 holds c2's entry"
    );
}

// ---------------------------------------------------------------------------------------------
// Found by the sweep of the new tier: a reconfiguration of an empty log.

/// A cluster reconfigures before anything is decided (its stop sign at index 0), and the
/// servers that continue restart once they moved on: the next configuration elects a leader
/// and decides. (Seeds 9617 and 10653 of 3 nodes, 1001705 and 1001742 of 5, in the sweep.)
#[test]
fn a_configuration_that_continues_an_empty_log_elects_a_leader() {
    let mut s: S<SimEntry> = cluster(3, 4);
    let l = elect(&mut s, &[1, 2, 3], 20 * E);
    let next = config(2, &[1, 2, 3, 4]);
    s.reconfigure(l, next.clone()).unwrap();
    for p in 1..=3 {
        until_stopped(&mut s, p, 20 * E);
    }
    assert_eq!(s.checker().stop_of(1).map(|(i, _)| i), Some(0));
    move_on(&mut s, &[1, 2, 3], &next, &[4]);
    s.run(2);
    for p in 1..=3 {
        s.crash(p);
        s.restart(p);
    }
    let l2 = elect(&mut s, &[1, 2, 3, 4], 50 * E);
    decide(&mut s, l2, 1..=3, &[1, 2, 3, 4]);
}
