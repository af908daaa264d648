//! # omnipaxos-kv: a replicated key-value service on OmniPaxos
//!
//! Servers run one OmniPaxos node each, on [`omnipaxos_storage::PersistentStorage`], talk to
//! each other and to clients over TCP (length-delimited bincode frames, see [`net`]) and apply
//! the decided log to a key-value map ([`kv`]). Clients send `Put`, `Delete` and `Get`
//! to any server. The server appends a write to the log and answers once it is decided and
//! applied; a `Get` writes nothing: the server asks the leader for a read index and answers
//! from its map once it applied the log that far (see [`server`]). Every operation is
//! linearizable. Retries carry the same `(client_id, command_id)` and are applied once.
//!
//! Binaries: `server` (configured by `CLUSTER_CONFIG_FILE` and `SERVER_CONFIG_FILE`, see
//! [`config`]), `client` (the benchmark client, `CONFIG_FILE`; or one-shot
//! `client put|get|delete`), and `local_cluster`, which starts a 3-server cluster on loopback,
//! runs a workload, kills the leader half way and reports. See the crate's README.

pub mod checker;
pub mod client;
pub mod cluster;
pub mod config;
pub mod experiment;
pub mod kv;
pub mod links;
pub mod logging;
pub mod metered_storage;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod server;
pub mod stats;
pub mod tls;
pub mod workload;
