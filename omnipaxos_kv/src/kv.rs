//! The replicated state machine: log entries ([`Command`]) and the key-value map with per-client
//! deduplication ([`Database`]).

use omnipaxos::macros::Entry;
use omnipaxos::storage::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A server's id (an OmniPaxos node id).
pub type NodeId = omnipaxos::util::NodeId;
/// A client's id, chosen by the client (random by default) and unique per client session.
pub type ClientId = u64;
/// A command's id within one client: increasing from 1.
pub type CommandId = u64;

/// An operation on the key-value map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KVCommand {
    /// Sets `key` to `value`.
    Put(String, String),
    /// Removes `key`.
    Delete(String),
    /// Reads `key`, linearizably. Servers answer it by read index, without a log entry (see
    /// [`crate::server`]); a `Get` found in a log (written by an older server) is applied as a
    /// read of the map at its place.
    Get(String),
}

impl KVCommand {
    /// The key the command touches.
    pub fn key(&self) -> &str {
        match self {
            KVCommand::Put(k, _) | KVCommand::Delete(k) | KVCommand::Get(k) => k,
        }
    }
}

/// One entry of the replicated log. Its snapshot is the map and the deduplication state
/// ([`KVSnapshot`]), so servers can compact their logs.
#[derive(Debug, Clone, PartialEq, Eq, Entry, Serialize, Deserialize)]
#[snapshot(KVSnapshot)]
pub struct Command {
    /// The client that issued the command.
    pub client_id: ClientId,
    /// The server that appended it and answers the client once it is decided.
    pub coordinator_id: NodeId,
    /// The client's id of the command; `(client_id, id)` identifies a request across retries.
    pub id: CommandId,
    /// Every command of this client with an id below this one has been answered: replicas may
    /// forget their results (and ignore late duplicates of them).
    pub acked_below: CommandId,
    /// The operation.
    pub kv_cmd: KVCommand,
}

/// The result of applying a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KVResult {
    /// A `Put` or `Delete` took effect.
    Write,
    /// A `Get` read this value.
    Read(Option<String>),
}

/// The state that a prefix of the log leaves: what [`Database`] holds after applying it (the
/// map, and per client which writes were applied), so that a server can compact its log and a
/// server behind the compacted part can start from it.
///
/// Whether a command takes effect depends on what came before it (a retried `Put` is applied
/// once), so a snapshot of a later part of the log cannot be folded on its own. A snapshot
/// therefore keeps, besides the state its commands leave when applied from an empty map, the
/// commands themselves until it is merged into a snapshot of the log before it: `merge` replays
/// them on that state. OmniPaxos merges only into snapshots of a whole prefix (from index 0),
/// whose own state is exact, so after a merge a snapshot holds state alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KVSnapshot {
    /// The keys and values of the map.
    map: BTreeMap<String, String>,
    /// Per client: commands below this id are acknowledged, and the ids at or above it of the
    /// writes that were applied.
    writes: BTreeMap<ClientId, (CommandId, BTreeSet<CommandId>)>,
    /// The commands folded into this snapshot since it was last merged into one of the log
    /// before it (empty once it was: see the type's documentation).
    replay: Vec<Command>,
}

impl KVSnapshot {
    /// Applies `cmd` exactly as [`Database::apply`] does (without keeping `Get` results).
    fn fold(&mut self, cmd: &Command) {
        let (acked_below, applied) = self.writes.entry(cmd.client_id).or_default();
        let fresh = cmd.id >= *acked_below && !applied.contains(&cmd.id);
        if fresh {
            match &cmd.kv_cmd {
                KVCommand::Put(k, v) => {
                    self.map.insert(k.clone(), v.clone());
                    applied.insert(cmd.id);
                }
                KVCommand::Delete(k) => {
                    self.map.remove(k);
                    applied.insert(cmd.id);
                }
                KVCommand::Get(_) => {}
            }
        }
        if cmd.acked_below > *acked_below {
            *acked_below = cmd.acked_below;
            *applied = applied.split_off(&cmd.acked_below);
        }
    }

    /// Number of keys in the map.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl Snapshot<Command> for KVSnapshot {
    fn create(entries: &[Command]) -> Self {
        let mut s = KVSnapshot::default();
        for cmd in entries {
            s.fold(cmd);
        }
        s.replay = entries.to_vec();
        s
    }

    fn merge(&mut self, delta: Self) {
        // `self` covers the log from its start: its state is exact, its commands not needed.
        self.replay.clear();
        for cmd in &delta.replay {
            self.fold(cmd);
        }
    }

    fn use_snapshots() -> bool {
        true
    }
}

/// Per-client deduplication state.
#[derive(Debug, Default, Clone)]
struct Session {
    /// Commands below this id were acknowledged to the client; their results are forgotten.
    acked_below: CommandId,
    /// Results of applied commands with ids at or above `acked_below`.
    results: BTreeMap<CommandId, KVResult>,
}

/// What [`Database::apply`] did with a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// First time this `(client_id, id)` was decided: it was applied and gave this result.
    New(KVResult),
    /// A duplicate (a client retry) of an applied command: not applied again; the first result.
    Duplicate(KVResult),
    /// A late duplicate of a command the client already has the answer to: nothing to do.
    Stale,
}

/// The key-value map every server builds by applying the decided log in order.
#[derive(Debug, Default, Clone)]
pub struct Database {
    map: HashMap<String, String>,
    sessions: HashMap<ClientId, Session>,
    applied: usize,
}

impl Database {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of log entries applied so far.
    pub fn applied_len(&self) -> usize {
        self.applied
    }

    /// The state of a snapshot of the first `len` log entries (applied: `len`). Results of
    /// `Get`s are not in snapshots: a retried `Get` of that part reads again, which is as
    /// linearizable as the first read.
    pub fn from_snapshot(snapshot: &KVSnapshot, len: usize) -> Self {
        let sessions = snapshot
            .writes
            .iter()
            .map(|(client, (acked_below, applied))| {
                let results = applied.iter().map(|id| (*id, KVResult::Write)).collect();
                let session = Session {
                    acked_below: *acked_below,
                    results,
                };
                (*client, session)
            })
            .collect();
        Database {
            map: snapshot
                .map
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            sessions,
            applied: len,
        }
    }

    /// Counts a log slot that carries no command (e.g. a stop sign) as applied.
    pub fn skip_entry(&mut self) {
        self.applied += 1;
    }

    /// Reads `key` from the local map (not linearizable on its own: see [`KVCommand::Get`]).
    pub fn local_get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }

    /// Number of keys in the map.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Applies the next decided command, at most once per `(client_id, id)`.
    pub fn apply(&mut self, cmd: &Command) -> Applied {
        self.applied += 1;
        let session = self.sessions.entry(cmd.client_id).or_default();
        let outcome = if cmd.id < session.acked_below {
            Applied::Stale
        } else if let Some(r) = session.results.get(&cmd.id) {
            Applied::Duplicate(r.clone())
        } else {
            let result = match &cmd.kv_cmd {
                KVCommand::Put(k, v) => {
                    self.map.insert(k.clone(), v.clone());
                    KVResult::Write
                }
                KVCommand::Delete(k) => {
                    self.map.remove(k);
                    KVResult::Write
                }
                KVCommand::Get(k) => KVResult::Read(self.map.get(k).cloned()),
            };
            session.results.insert(cmd.id, result.clone());
            Applied::New(result)
        };
        if cmd.acked_below > session.acked_below {
            session.acked_below = cmd.acked_below;
            session.results = session.results.split_off(&cmd.acked_below);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(client: ClientId, id: CommandId, acked_below: CommandId, kv: KVCommand) -> Command {
        Command {
            client_id: client,
            coordinator_id: 1,
            id,
            acked_below,
            kv_cmd: kv,
        }
    }

    #[test]
    fn retried_put_applies_once() {
        let mut db = Database::new();
        let put = |v: &str| KVCommand::Put("k".into(), v.into());
        assert_eq!(
            db.apply(&cmd(7, 1, 1, put("a"))),
            Applied::New(KVResult::Write)
        );
        // Another client overwrites; then client 7's retry of command 1 is decided again.
        assert_eq!(
            db.apply(&cmd(8, 1, 1, put("b"))),
            Applied::New(KVResult::Write)
        );
        assert_eq!(
            db.apply(&cmd(7, 1, 1, put("a"))),
            Applied::Duplicate(KVResult::Write)
        );
        assert_eq!(db.local_get("k"), Some("b".into()));
        // Once the client acknowledged command 1, a late copy is ignored and its result is gone.
        assert_eq!(
            db.apply(&cmd(7, 2, 2, KVCommand::Get("k".into()))),
            Applied::New(KVResult::Read(Some("b".into())))
        );
        assert_eq!(db.apply(&cmd(7, 1, 1, put("a"))), Applied::Stale);
        assert_eq!(db.local_get("k"), Some("b".into()));
        assert_eq!(db.applied_len(), 5);
        assert!(db.sessions[&7].results.keys().all(|&id| id >= 2));
    }

    /// A log with retries (duplicates), late duplicates (stale) and acknowledgements, from a
    /// small deterministic generator.
    fn messy_log(seed: u64, len: usize) -> Vec<Command> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        let mut sent: [Vec<Command>; 3] = Default::default();
        let mut log = Vec::new();
        for _ in 0..len {
            let client = next(3) as usize;
            // Mostly new commands; sometimes a retry (the same command again) of one of the
            // client's last three, which may be acknowledged by now (stale).
            if next(4) == 0 && !sent[client].is_empty() {
                let back = (next(3) as usize).min(sent[client].len() - 1);
                let retry = sent[client][sent[client].len() - 1 - back].clone();
                log.push(retry);
                continue;
            }
            let key = format!("k{}", next(4));
            let kv = match next(3) {
                0 => KVCommand::Put(key, format!("v{}", next(100))),
                1 => KVCommand::Delete(key),
                _ => KVCommand::Get(key),
            };
            let id = sent[client].len() as u64 + 1;
            let acked_below = id.saturating_sub(next(3)).max(1);
            let c = cmd(client as u64, id, acked_below, kv);
            sent[client].push(c.clone());
            log.push(c);
        }
        log
    }

    /// A client's acknowledged bound and applied write ids.
    type WriteState = (ClientId, CommandId, Vec<CommandId>);

    /// What of a database a snapshot must reproduce: the map and which writes were applied.
    fn observable(db: &Database) -> (Vec<(String, String)>, Vec<WriteState>) {
        let mut map: Vec<_> = db.map.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        map.sort();
        let mut sessions: Vec<_> = db
            .sessions
            .iter()
            .map(|(c, s)| {
                let writes = s
                    .results
                    .iter()
                    .filter(|(_, r)| **r == KVResult::Write)
                    .map(|(id, _)| *id)
                    .collect();
                (*c, s.acked_below, writes)
            })
            .collect();
        sessions.sort();
        (map, sessions)
    }

    #[test]
    fn a_snapshot_holds_what_applying_the_log_builds() {
        for seed in 0..50 {
            let log = messy_log(seed, 200);
            let mut db = Database::new();
            for c in &log {
                db.apply(c);
            }
            let snap = KVSnapshot::create(&log);
            let restored = Database::from_snapshot(&snap, log.len());
            assert_eq!(observable(&restored), observable(&db), "seed {seed}");
            assert_eq!(restored.applied_len(), db.applied_len());
        }
    }

    #[test]
    fn merging_the_snapshot_of_a_later_part_equals_one_snapshot_of_all() {
        for seed in 0..30 {
            let log = messy_log(seed, 120);
            let whole = KVSnapshot::create(&log);
            for cut in [0, 1, 17, 60, 119, 120] {
                let mut merged = KVSnapshot::create(&log[..cut]);
                merged.merge(KVSnapshot::create(&log[cut..]));
                assert_eq!(merged.map, whole.map, "seed {seed} cut {cut}");
                assert_eq!(merged.writes, whole.writes, "seed {seed} cut {cut}");
                assert!(
                    merged.replay.is_empty(),
                    "a merged snapshot keeps no commands"
                );
                // Three parts, merged in order, as the log is compacted over time.
                let (a, b) = (cut / 2, cut);
                let mut thrice = KVSnapshot::create(&log[..a]);
                thrice.merge(KVSnapshot::create(&log[a..b]));
                thrice.merge(KVSnapshot::create(&log[b..]));
                assert_eq!(thrice.map, whole.map, "seed {seed} cut {cut}");
                assert_eq!(thrice.writes, whole.writes, "seed {seed} cut {cut}");
            }
        }
    }

    #[test]
    fn a_database_restored_from_a_snapshot_goes_on_like_the_original() {
        for seed in 0..30 {
            let log = messy_log(seed, 300);
            let (prefix, rest) = log.split_at(150);
            let mut db = Database::new();
            for c in prefix {
                db.apply(c);
            }
            let mut restored = Database::from_snapshot(&KVSnapshot::create(prefix), 150);
            for c in rest {
                let (a, b) = (db.apply(c), restored.apply(c));
                // Writes take effect (or not) alike; a retried Get of the compacted part reads
                // again instead of repeating its first answer (a later read, as linearizable).
                let read = |x: &Applied| {
                    matches!(
                        x,
                        Applied::New(KVResult::Read(_)) | Applied::Duplicate(KVResult::Read(_))
                    )
                };
                if matches!(c.kv_cmd, KVCommand::Get(_)) && read(&a) && read(&b) {
                    continue;
                }
                assert_eq!(a, b, "seed {seed}: {c:?}");
            }
            assert_eq!(db.map, restored.map, "seed {seed}");
        }
    }

    #[test]
    fn delete_removes_key() {
        let mut db = Database::new();
        db.apply(&cmd(1, 1, 1, KVCommand::Put("x".into(), "1".into())));
        db.apply(&cmd(1, 2, 2, KVCommand::Delete("x".into())));
        assert!(db.is_empty());
        assert_eq!(
            db.apply(&cmd(1, 3, 3, KVCommand::Get("x".into()))),
            Applied::New(KVResult::Read(None))
        );
    }
}
