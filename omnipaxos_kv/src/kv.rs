//! The replicated state machine: log entries ([`Command`]) and the key-value map with per-client
//! deduplication ([`Database`]).

use omnipaxos::macros::Entry;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

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
    /// Reads `key`. Goes through the log like a write, so it is linearizable.
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

/// One entry of the replicated log.
#[derive(Debug, Clone, Entry, Serialize, Deserialize)]
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
