//! # OmniPaxos
//!
//! A replicated log for Rust services: Sequence Paxos with Ballot Leader Election (Ng, Haridi,
//! Carbone, *Omni-Paxos: Breaking the Barriers of Partial Connectivity*, EuroSys 2023).
//!
//! * **Resilient to partial connectivity.** A leader is replaced only by a server connected to a
//!   quorum, and only when nobody it hears from is happy with the current leader, so the
//!   quorum-loss, constrained-election and chained scenarios all recover without livelock.
//! * **Sans-IO and deterministic.** The crate does no I/O, reads no clock and starts no thread:
//!   you move messages and call [`OmniPaxos::tick`]. All time is ticks, which makes a node
//!   testable by simulation and fast.
//! * **Your storage.** Any [`storage::Storage`] backend; `omnipaxos_storage` has an in-memory
//!   one and a persistent one on commitlog + sled.
//!
//! ## A three-node cluster in one program
//!
//! ```
//! use omnipaxos::{macros::Entry, ClusterConfig, OmniPaxos, OmniPaxosConfig, ServerConfig};
//! use omnipaxos_storage::memory_storage::MemoryStorage;
//!
//! #[derive(Clone, Debug, Entry)]
//! struct KeyValue {
//!     key: String,
//!     value: u64,
//! }
//!
//! let cluster = ClusterConfig { configuration_id: 1, nodes: vec![1, 2, 3], ..Default::default() };
//! let mut nodes: Vec<OmniPaxos<KeyValue, MemoryStorage<KeyValue>>> = [1, 2, 3]
//!     .into_iter()
//!     .map(|pid| {
//!         let server = ServerConfig { pid, election_tick_timeout: 5, ..Default::default() };
//!         OmniPaxosConfig { cluster_config: cluster.clone(), server_config: server }
//!             .build(MemoryStorage::default())
//!             .expect("valid configuration")
//!     })
//!     .collect();
//!
//! nodes[0].append(KeyValue { key: "a".into(), value: 1 }).unwrap();
//! let mut msgs = Vec::new();
//! for _ in 0..100 {
//!     for node in nodes.iter_mut() {
//!         node.tick();
//!         node.take_outgoing_messages(&mut msgs);
//!     }
//!     // Deliver everything (a real program sends it over the network).
//!     while let Some(m) = msgs.pop() {
//!         let to = m.get_receiver() as usize - 1;
//!         nodes[to].handle_incoming(m);
//!         nodes[to].take_outgoing_messages(&mut msgs);
//!     }
//! }
//! assert!(nodes.iter().all(|n| n.get_decided_idx() == 1));
//! ```
//!
//! ## Feature flags
//!
//! * `macros` (default): `#[derive(Entry)]` as [`macros::Entry`].
//! * `serde`: `Serialize`/`Deserialize` for messages, ballots, stop signs and configurations,
//!   to send messages over a network or persist entries.
//! * `toml_config`: `OmniPaxosConfig::with_toml` to load a configuration from a TOML file;
//!   turns on `serde`, as in omnipaxos 0.2.4.
//! * `tracing` (default): what the library does (leader changes, stop signs, migration,
//!   compaction, storage failures, ...), reported as [`tracing`](https://docs.rs/tracing)
//!   events under the targets `omnipaxos::*`; the guide's "Feature flags" chapter lists them.
//! * `logging`: omnipaxos 0.2.4's `slog` interface (`ServerConfig::custom_logger`,
//!   `logger_file_path`, `utils::logger`) on top of `tracing`, which it turns on.
//! * `unicache`, `async_runtime`: accepted for 0.2.4 manifests; they add nothing (see
//!   `Cargo.toml`).
//!
//! [`utils`] holds 0.2.4's dashboard states ([`OmniPaxos::get_ui_states`]) and logger helpers.

// docs.rs builds with nightly and `--cfg docsrs`: mark feature-gated items with their feature
// (`doc_cfg` includes what was `doc_auto_cfg` before that feature was merged into it).
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

// First: its macros are used by the modules below.
#[macro_use]
mod trace;

pub mod ballot_leader_election;
mod ble;
mod clock;
mod config;
#[cfg(feature = "toml_config")]
mod config_toml;
pub mod errors;
pub mod messages;
mod node;
pub mod omni_paxos;
mod quorum;
pub mod storage;
pub mod util;
pub mod utils;

pub use config::{ClusterConfig, OmniPaxosConfig, ServerConfig};
pub use errors::{CompactionErr, ConfigError, ProposeErr};
pub use omni_paxos::OmniPaxos;

/// `#[derive(Entry)]` (feature `macros`).
#[cfg(feature = "macros")]
pub mod macros {
    pub use omnipaxos_macros::Entry;
}
