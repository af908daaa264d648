//! The `handle_message` fuzz target's body, shared with the regression test that replays the
//! inputs it once failed on (`omnipaxos/tests/fuzz_regressions.rs`, in `cargo test`).
//!
//! Arbitrary bytes as a node's input: messages decoded from the bytes (whatever they claim),
//! interleaved with ticks, appends, takes, reads, compaction and leadership requests. A node
//! must never panic on its input, and what it shows must stay consistent: its decided index
//! never falls, and the decided log it hands out has exactly the entries it claims.

use bincode::Options;
use omnipaxos::{
    messages::Message, storage::NoSnapshot, util::LogEntry, ClusterConfig, OmniPaxos,
    OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};

/// An entry: a number.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct E(pub u64);

impl omnipaxos::storage::Entry for E {
    type Snapshot = NoSnapshot;
}

/// Node `pid` of configuration 1 with servers 1, 2 and 3 (short timeouts: elections and
/// resends happen within a few ticks).
pub fn node(pid: u64) -> OmniPaxos<E, MemoryStorage<E>> {
    OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: vec![1, 2, 3],
            flexible_quorum: None,
        },
        server_config: ServerConfig {
            pid,
            election_tick_timeout: 2,
            resend_message_tick_timeout: 4,
            ..Default::default()
        },
    }
    .build(MemoryStorage::default())
    .expect("a valid configuration")
}

/// Runs one input through node 1 of a 3-server cluster; panics on what must not happen.
/// `trace` prints every step (messages, operations, the node's state after each).
pub fn run(data: &[u8], trace: bool) {
    let codec = bincode::DefaultOptions::new()
        .with_limit(1 << 16)
        .allow_trailing_bytes();
    let mut n = node(1);
    let mut out = Vec::new();
    let mut decided = 0;
    let mut next = 0u64;
    let mut i = 0;
    while i < data.len() {
        let op = data[i];
        i += 1;
        if trace && op > 159 {
            eprintln!("op {op}");
        }
        match op {
            0..=159 => {
                // A message of up to 255 bytes, decoded as the node's wire type.
                let len = usize::from(op).min(data.len() - i);
                if let Ok(m) = codec.deserialize::<Message<E>>(&data[i..i + len]) {
                    if trace {
                        eprintln!("message {m:?}");
                    }
                    n.handle_incoming(m);
                }
                i += len;
            }
            160..=191 => n.tick(),
            192..=207 => {
                let _ = n.append(E(next));
                next += 1;
            }
            208..=215 => {
                out.clear();
                n.take_outgoing_messages(&mut out);
            }
            216..=219 => n.try_become_leader(),
            220..=223 => {
                let _ = n.request_read();
                let _ = n.take_ready_reads();
            }
            224..=227 => {
                let _ = n.trim(None);
            }
            228..=231 => n.reconnected(u64::from(op % 4)),
            232..=235 => {
                let _ = n.take_returned_appends();
            }
            _ => {
                n.take_messages_ahead_of_write(&mut out);
            }
        }
        if trace {
            eprintln!(
                "  decided {} accepted {} compacted {} promise {:?} leader {:?}",
                n.get_decided_idx(),
                n.get_accepted_idx(),
                n.get_compacted_idx(),
                n.get_promise(),
                n.get_current_leader()
            );
        }
        let d = n.get_decided_idx();
        assert!(d >= decided, "the decided index fell from {decided} to {d}");
        decided = d;
    }
    // The decided log is what the node says it is.
    if let Some(entries) = n.read_decided_suffix(0) {
        let shown: usize = entries
            .iter()
            .map(|e| match e {
                LogEntry::Trimmed(i) => *i,
                LogEntry::Snapshotted(s) => s.trimmed_idx,
                _ => 1,
            })
            .sum();
        assert_eq!(
            shown, decided,
            "read_decided_suffix(0) does not cover the decided log"
        );
    }
}
