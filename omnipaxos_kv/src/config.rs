//! Configuration files (TOML) with `OMNIPAXOS_<KEY>` environment overrides.
//!
//! A server reads a cluster file (`CLUSTER_CONFIG_FILE`) and a server file
//! (`SERVER_CONFIG_FILE`); the benchmark client reads `CONFIG_FILE`. Every key of these files can
//! be overridden by the environment variable `OMNIPAXOS_` + the key in upper case, whose value is
//! read as a TOML value (`OMNIPAXOS_LISTEN_PORT=8002`, `OMNIPAXOS_NODES=[1,2,3]`) or, if that
//! fails, as a string (`OMNIPAXOS_LISTEN_ADDRESS=0.0.0.0`). An unknown key or a bad value is an
//! error naming the file and the key.

use crate::kv::NodeId;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{collections::HashMap, path::Path};

/// A configuration error: the message says which file or variable and which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A configuration struct read from a TOML table.
pub trait ConfigFile: DeserializeOwned {
    /// The keys of the table (the ones the environment may override).
    const KEYS: &'static [&'static str];
}

fn env_value(var: &str, raw: &str) -> Result<toml::Value, ConfigError> {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .ok_or_else(|| ConfigError(format!("{var}: cannot parse {raw:?}"))),
        Err(_) => Ok(toml::Value::String(raw.to_string())),
    }
}

/// Parses `text` (the contents of `origin`) with overrides from `env` (variable name to value).
pub fn parse_with_env<T: ConfigFile>(
    text: &str,
    origin: &str,
    env: &HashMap<String, String>,
) -> Result<T, ConfigError> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("{origin}: {e}")))?;
    for key in T::KEYS {
        let var = format!("OMNIPAXOS_{}", key.to_uppercase());
        if let Some(raw) = env.get(&var) {
            table.insert(key.to_string(), env_value(&var, raw)?);
        }
    }
    T::deserialize(toml::Value::Table(table)).map_err(|e| {
        ConfigError(format!(
            "{origin} (or its OMNIPAXOS_* overrides): {}",
            e.to_string().trim()
        ))
    })
}

/// Reads the TOML file `path` with overrides from the process environment.
pub fn load<T: ConfigFile>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    let env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("OMNIPAXOS_"))
        .collect();
    parse_with_env(&text, &path.display().to_string(), &env)
}

/// Reads the file named by the environment variable `var`.
pub fn load_from_env_var<T: ConfigFile>(var: &str) -> Result<T, ConfigError> {
    let path = std::env::var(var).map_err(|_| {
        ConfigError(format!(
            "the environment variable {var} must name a TOML file"
        ))
    })?;
    load(Path::new(&path))
}

/// Quorum sizes of a flexible quorum (read + write must exceed the number of nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlexibleQuorumConfig {
    /// Size of a read (phase 1) quorum.
    pub read_quorum_size: usize,
    /// Size of a write (phase 2) quorum.
    pub write_quorum_size: usize,
}

/// The cluster file: the same on every server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// Ids of the servers.
    pub nodes: Vec<NodeId>,
    /// `host:port` of each server, in the order of `nodes`.
    pub node_addrs: Vec<String>,
    /// A server that tries to become leader at start-up (optional; otherwise an election
    /// picks one).
    #[serde(default)]
    pub initial_leader: Option<NodeId>,
    /// Optional flexible quorum.
    #[serde(default)]
    pub initial_flexible_quorum: Option<FlexibleQuorumConfig>,
}

impl ConfigFile for ClusterFile {
    const KEYS: &'static [&'static str] = &[
        "nodes",
        "node_addrs",
        "initial_leader",
        "initial_flexible_quorum",
    ];
}

fn default_listen_address() -> String {
    "127.0.0.1".to_string()
}
fn default_true() -> bool {
    true
}
fn default_tick_ms() -> u64 {
    10
}
fn default_election_ticks() -> u64 {
    10
}
fn default_batch_size() -> usize {
    1024
}
fn default_snapshot_interval() -> usize {
    10_000
}

/// The server file: one per server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// This server's id (one of the cluster's `nodes`).
    pub server_id: NodeId,
    /// Address to listen on; loopback by default.
    #[serde(default = "default_listen_address")]
    pub listen_address: String,
    /// Port to listen on.
    pub listen_port: u16,
    /// Directory of this server's persistent log (created if missing, reopened on restart).
    /// Default `omnipaxos-kv-data/server-<id>`.
    #[serde(default)]
    pub data_dir: Option<String>,
    /// Sync every log write to disk before acknowledging (default true).
    #[serde(default = "default_true")]
    pub fsync: bool,
    /// If set, the server writes its statistics there (JSON, rewritten every second).
    #[serde(default)]
    pub output_filepath: Option<String>,
    /// Milliseconds between two OmniPaxos ticks (default 10).
    #[serde(default = "default_tick_ms")]
    pub tick_ms: u64,
    /// Ticks between two leader-election rounds (default 10).
    #[serde(default = "default_election_ticks")]
    pub election_ticks: u64,
    /// Entries put into the log together at most (default 1024): a full batch goes out at
    /// once. See `flush_batch_ticks` for a batch that is not full.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// When a batch that is not full goes out. Unset (the default): at the end of each pass of
    /// the event loop, so batching follows the load: whatever arrived while the last write was
    /// on its way goes out together, and a lone request goes out at once, with no timer in its
    /// way. `N`: a partial batch waits up to `N` ticks for more entries (fewer, larger writes
    /// at low load, at the price of up to `N` ticks of latency per request).
    #[serde(default)]
    pub flush_batch_ticks: Option<u64>,
    /// Applied entries between two compactions of the log into a snapshot of the map (default
    /// 10,000; 0: never compact).
    #[serde(default = "default_snapshot_interval")]
    pub snapshot_interval: usize,
    /// Port of the Prometheus metrics endpoint (`GET /metrics` over HTTP); unset (the
    /// default): no endpoint. See [`crate::metrics`].
    #[serde(default)]
    pub metrics_port: Option<u16>,
    /// Address of the metrics endpoint; loopback by default.
    #[serde(default = "default_listen_address")]
    pub metrics_address: String,
    /// PEM file of the cluster's CA certificate (needed when a TLS switch is on).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// PEM file of this server's certificate (chain); it must name `server-<server_id>` in a
    /// DNS subject alternative name, and the host names clients connect to. See [`crate::tls`].
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    /// PEM file of this server's private key.
    #[serde(default)]
    pub tls_key_file: Option<String>,
    /// Mutual TLS on links between servers (default false: plaintext).
    #[serde(default)]
    pub tls_peers: bool,
    /// TLS on client links (default false: plaintext).
    #[serde(default)]
    pub tls_clients: bool,
    /// Clients must present a certificate of the cluster's CA (needs `tls_clients`).
    #[serde(default)]
    pub tls_client_auth: bool,
    /// FOR TESTS ONLY: answer `Get`s from the local map at once, without asking the leader for
    /// a read index. This breaks linearizability on purpose, so the test suite can check that
    /// its checker notices.
    #[doc(hidden)]
    #[serde(default)]
    pub unsafe_local_reads: bool,
}

impl ConfigFile for ServerFile {
    const KEYS: &'static [&'static str] = &[
        "server_id",
        "listen_address",
        "listen_port",
        "data_dir",
        "fsync",
        "output_filepath",
        "tick_ms",
        "election_ticks",
        "batch_size",
        "flush_batch_ticks",
        "snapshot_interval",
        "metrics_port",
        "metrics_address",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_peers",
        "tls_clients",
        "tls_client_auth",
        "unsafe_local_reads",
    ];
}

/// A server's whole configuration, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    /// The cluster file.
    pub cluster: ClusterFile,
    /// The server file.
    pub server: ServerFile,
}

impl ServerSettings {
    /// Checks the two files together.
    pub fn new(cluster: ClusterFile, server: ServerFile) -> Result<Self, ConfigError> {
        if cluster.nodes.is_empty() {
            return Err(ConfigError(
                "nodes: the cluster needs at least one node".into(),
            ));
        }
        if cluster.nodes.len() != cluster.node_addrs.len() {
            return Err(ConfigError(format!(
                "node_addrs: {} addresses for {} nodes",
                cluster.node_addrs.len(),
                cluster.nodes.len()
            )));
        }
        let mut seen = cluster.nodes.clone();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != cluster.nodes.len() || seen.contains(&0) {
            return Err(ConfigError(
                "nodes: ids must be distinct and non-zero".into(),
            ));
        }
        if !cluster.nodes.contains(&server.server_id) {
            return Err(ConfigError(format!(
                "server_id: {} is not one of the cluster's nodes {:?}",
                server.server_id, cluster.nodes
            )));
        }
        if let Some(l) = cluster.initial_leader {
            if !cluster.nodes.contains(&l) {
                return Err(ConfigError(format!(
                    "initial_leader: {l} is not one of the cluster's nodes"
                )));
            }
        }
        if server.tick_ms == 0 || server.election_ticks == 0 || server.batch_size == 0 {
            return Err(ConfigError(
                "tick_ms, election_ticks and batch_size must be positive".into(),
            ));
        }
        if server.flush_batch_ticks == Some(0) {
            return Err(ConfigError(
                "flush_batch_ticks: must be positive (leave it unset to flush at the end of each pass)"
                    .into(),
            ));
        }
        if server.tls_client_auth && !server.tls_clients {
            return Err(ConfigError(
                "tls_client_auth: needs tls_clients = true".into(),
            ));
        }
        if server.tls_peers || server.tls_clients {
            for (key, v) in [
                ("tls_ca_file", &server.tls_ca_file),
                ("tls_cert_file", &server.tls_cert_file),
                ("tls_key_file", &server.tls_key_file),
            ] {
                if v.is_none() {
                    return Err(ConfigError(format!(
                        "{key}: needed when tls_peers or tls_clients is on"
                    )));
                }
            }
        }
        Ok(ServerSettings { cluster, server })
    }

    /// The TLS setup of the server's links: files read and checked now, so that a missing or
    /// bad file stops the server at start-up.
    pub fn tls(&self) -> Result<crate::tls::ServerTls, ConfigError> {
        let s = &self.server;
        if !s.tls_peers && !s.tls_clients {
            return Ok(crate::tls::ServerTls::plaintext());
        }
        let (Some(ca), Some(cert), Some(key)) = (&s.tls_ca_file, &s.tls_cert_file, &s.tls_key_file)
        else {
            return Err(ConfigError(
                "tls_ca_file, tls_cert_file and tls_key_file are needed for TLS".into(),
            ));
        };
        let id = crate::tls::Identity::from_files(
            Path::new(ca),
            Some((Path::new(cert), Path::new(key))),
        )
        .map_err(|e| ConfigError(e.to_string()))?;
        if s.tls_peers {
            if let Some(leaf) = id.chain.first() {
                crate::tls::cert_names_server(leaf, s.server_id)
                    .map_err(|e| ConfigError(format!("tls_cert_file {cert}: {e}")))?;
            }
        }
        crate::tls::ServerTls::new(&id, s.tls_peers, s.tls_clients, s.tls_client_auth)
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Reads `CLUSTER_CONFIG_FILE` and `SERVER_CONFIG_FILE` (with environment overrides).
    pub fn from_env() -> Result<Self, ConfigError> {
        let cluster = load_from_env_var::<ClusterFile>("CLUSTER_CONFIG_FILE")?;
        let server = load_from_env_var::<ServerFile>("SERVER_CONFIG_FILE")?;
        Self::new(cluster, server)
    }

    /// The address of server `id`.
    pub fn addr_of(&self, id: NodeId) -> Option<&str> {
        let i = self.cluster.nodes.iter().position(|&n| n == id)?;
        Some(&self.cluster.node_addrs[i])
    }

    /// The data directory.
    pub fn data_dir(&self) -> String {
        self.server
            .data_dir
            .clone()
            .unwrap_or_else(|| format!("omnipaxos-kv-data/server-{}", self.server.server_id))
    }
}

/// One phase of the benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInterval {
    /// How long the phase lasts.
    pub duration_sec: u64,
    /// Requests started per second (0: closed loop, each worker sends its next request as soon
    /// as the previous one is answered).
    pub requests_per_sec: u64,
    /// Fraction of requests that are `Get`s (0.0 to 1.0).
    pub read_ratio: f64,
}

fn default_summary() -> String {
    "summary.json".into()
}
fn default_output() -> String {
    "output.csv".into()
}
fn default_workers() -> usize {
    16
}
fn default_num_keys() -> usize {
    100
}
fn default_timeout_ms() -> u64 {
    1000
}

/// The benchmark client's file (`CONFIG_FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Id of the server the client starts with (informational).
    #[serde(default)]
    pub server_id: Option<NodeId>,
    /// `host:port` of the server the client starts with.
    pub server_address: String,
    /// Other servers to retry on when the current one fails.
    #[serde(default)]
    pub fallback_addresses: Vec<String>,
    /// The workload phases, run one after the other.
    pub requests: Vec<RequestInterval>,
    /// Where to write the JSON summary.
    #[serde(default = "default_summary")]
    pub summary_filepath: String,
    /// Where to write one CSV line per request.
    #[serde(default = "default_output")]
    pub output_filepath: String,
    /// Concurrent requests in flight at most (one connection each).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Number of distinct keys used.
    #[serde(default = "default_num_keys")]
    pub num_keys: usize,
    /// Milliseconds to wait for an answer before retrying a request.
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// PEM file of the cluster's CA: connect to the servers over TLS (default: plaintext).
    #[serde(default)]
    pub tls_ca_file: Option<String>,
    /// PEM file of the client's certificate, for servers that require client certificates.
    #[serde(default)]
    pub tls_cert_file: Option<String>,
    /// PEM file of the client's key.
    #[serde(default)]
    pub tls_key_file: Option<String>,
    /// Name to check the servers' certificates against (default: the host of each address).
    #[serde(default)]
    pub tls_server_name: Option<String>,
}

impl ConfigFile for ClientFile {
    const KEYS: &'static [&'static str] = &[
        "server_id",
        "server_address",
        "fallback_addresses",
        "requests",
        "summary_filepath",
        "output_filepath",
        "workers",
        "num_keys",
        "request_timeout_ms",
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_server_name",
    ];
}

impl ClientFile {
    /// The TLS settings the file asks for (`None`: plaintext); files are read now.
    pub fn tls(&self) -> Result<Option<crate::client::ClientTls>, ConfigError> {
        let Some(ca) = &self.tls_ca_file else {
            return Ok(None);
        };
        let cert = match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(c), Some(k)) => Some((Path::new(c), Path::new(k))),
            _ => None,
        };
        crate::client::ClientTls::from_files(Path::new(ca), cert, self.tls_server_name.clone())
            .map(Some)
            .map_err(|e| ConfigError(e.to_string()))
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.requests.is_empty() {
            return Err(ConfigError(
                "requests: at least one interval is needed".into(),
            ));
        }
        for (i, r) in self.requests.iter().enumerate() {
            if !(0.0..=1.0).contains(&r.read_ratio) {
                return Err(ConfigError(format!(
                    "requests[{i}].read_ratio: {} is not between 0 and 1",
                    r.read_ratio
                )));
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError(
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        if self.tls_cert_file.is_some() && self.tls_ca_file.is_none() {
            return Err(ConfigError("tls_cert_file needs tls_ca_file".into()));
        }
        if self.workers == 0 || self.num_keys == 0 || self.request_timeout_ms == 0 {
            return Err(ConfigError(
                "workers, num_keys and request_timeout_ms must be positive".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "nodes = [1, 2, 3]\nnode_addrs = [\"127.0.0.1:8001\", \"127.0.0.1:8002\", \"127.0.0.1:8003\"]\ninitial_leader = 1\n";

    #[test]
    fn env_overrides_and_defaults() {
        let env: HashMap<String, String> = [
            ("OMNIPAXOS_LISTEN_PORT", "8002"),
            ("OMNIPAXOS_LISTEN_ADDRESS", "0.0.0.0"),
            ("OMNIPAXOS_FSYNC", "false"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let s: ServerFile =
            parse_with_env("server_id = 2\nlisten_port = 1\n", "server.toml", &env).unwrap();
        assert_eq!(s.listen_port, 8002);
        assert_eq!(s.listen_address, "0.0.0.0");
        assert!(!s.fsync);
        assert_eq!(s.tick_ms, 10);
        assert_eq!(s.batch_size, 1024);
        assert_eq!(
            s.flush_batch_ticks, None,
            "flush at the end of each pass by default"
        );
        let c: ClusterFile = parse_with_env(CLUSTER, "cluster.toml", &HashMap::new()).unwrap();
        let settings = ServerSettings::new(c, s).unwrap();
        assert_eq!(settings.addr_of(3), Some("127.0.0.1:8003"));
        assert_eq!(settings.data_dir(), "omnipaxos-kv-data/server-2");
    }

    #[test]
    fn wrong_key_and_bad_values_are_named() {
        let e = parse_with_env::<ServerFile>(
            "server_id = 1\nlisten_port = 1\nlisten_prot = 2\n",
            "server.toml",
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(e.0.contains("listen_prot"), "{e}");
        let e = parse_with_env::<ServerFile>(
            "server_id = 1\nlisten_port = \"x\"\n",
            "server.toml",
            &HashMap::new(),
        )
        .unwrap_err();
        assert!(e.0.contains("server.toml"), "{e}");
        let c: ClusterFile = parse_with_env(CLUSTER, "c", &HashMap::new()).unwrap();
        let s: ServerFile =
            parse_with_env("server_id = 9\nlisten_port = 1\n", "s", &HashMap::new()).unwrap();
        let e = ServerSettings::new(c.clone(), s).unwrap_err();
        assert!(e.0.contains("server_id"), "{e}");
        let s: ServerFile = parse_with_env(
            "server_id = 1\nlisten_port = 1\nflush_batch_ticks = 0\n",
            "s",
            &HashMap::new(),
        )
        .unwrap();
        let e = ServerSettings::new(c, s).unwrap_err();
        assert!(e.0.contains("flush_batch_ticks"), "{e}");
    }

    #[test]
    fn client_file_with_intervals() {
        let env: HashMap<String, String> = [(
            "OMNIPAXOS_REQUESTS".to_string(),
            "[{ duration_sec = 1, requests_per_sec = 5, read_ratio = 1.5 }]".to_string(),
        )]
        .into_iter()
        .collect();
        let c: ClientFile = parse_with_env(
            "server_address = \"127.0.0.1:8001\"\nrequests = []\n",
            "client.toml",
            &env,
        )
        .unwrap();
        assert_eq!(c.requests.len(), 1);
        let e = c.validate().unwrap_err();
        assert!(e.0.contains("read_ratio"), "{e}");
    }
}
