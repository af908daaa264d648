//! An application written for crates.io `omnipaxos` 0.2.4 with its features `toml_config` and
//! `logging`: its own configuration struct embeds `OmniPaxosConfig` (serde + toml), it reads a
//! configuration file shared with its own settings, handles `ConfigError`s as 0.2.4 code does
//! (`ConfigError::ReadFile(e)`), gives every server an `slog` logger, reads the dashboard's
//! states, and matches the error enums.
//!
//! The same file is compiled and run against 0.2.4 (`compat/upstream/features`) and against this
//! workspace (`compat/ours/features`); the two crates differ only in their `Cargo.toml`.

use omnipaxos::{
    errors::ConfigError, macros::Entry, messages::Message, util::NodeId, ClusterConfig,
    CompactionErr, OmniPaxos, OmniPaxosConfig, ProposeErr, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use serde::{Deserialize, Serialize};
use slog::Drain;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

/// A replicated key-value write.
#[derive(Clone, Debug, PartialEq, Entry, Serialize, Deserialize)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value.
    pub value: u64,
}

/// The application's configuration: its own settings and the node's.
#[derive(Debug, Deserialize)]
pub struct AppConfig {
    /// Where the application listens.
    pub listen_address: String,
    /// The OmniPaxos node's configuration.
    pub omnipaxos: OmniPaxosConfig,
}

/// Reads the application's configuration from TOML text.
pub fn load_app_config(text: &str) -> Result<AppConfig, toml::de::Error> {
    toml::from_str(text)
}

/// What the application tells its operator about a configuration error.
pub fn describe_config_error(e: &ConfigError) -> String {
    match e {
        ConfigError::ReadFile(io) => format!("cannot read the file ({:?}): {io}", io.kind()),
        ConfigError::Parse(p) => format!("the file is not valid: {p}"),
        ConfigError::InvalidConfig(why) => format!("the configuration is invalid: {why}"),
    }
}

/// What the application does with a refused proposal.
pub fn describe_propose_err(e: ProposeErr<KeyValue>) -> String {
    match e {
        ProposeErr::PendingReconfigEntry(kv) => {
            format!("retry {} in the next configuration", kv.key)
        }
        ProposeErr::PendingReconfigConfig(c, _) => {
            format!("already reconfiguring; not to {}", c.configuration_id)
        }
        ProposeErr::ConfigError(e, c, _) => {
            format!("configuration {} is invalid: {e}", c.configuration_id)
        }
    }
}

/// What the application does with a refused compaction.
pub fn describe_compaction_err(e: CompactionErr) -> &'static str {
    // The last arm is unreachable with 0.2.4 and needed with 0.3, whose `CompactionErr` is
    // `#[non_exhaustive]` (the migration the CHANGELOG gives).
    #[allow(unreachable_patterns)]
    match e {
        CompactionErr::UndecidedIndex(_) => "compact less",
        CompactionErr::TrimmedIndex(_) => "already compacted",
        CompactionErr::NotAllDecided(_) => "trim less",
        CompactionErr::NotCurrentLeader(_) => "ask the leader",
        _ => "try again later",
    }
}

/// An `slog` drain that counts the records it gets.
pub struct CountingDrain(pub Arc<AtomicUsize>);

impl Drain for CountingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        _record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

type Server = OmniPaxos<KeyValue, MemoryStorage<KeyValue>>;

/// Builds the servers of a three-server cluster, each logging to its own counting logger.
pub fn cluster(records: &Arc<AtomicUsize>) -> HashMap<NodeId, Server> {
    let nodes: Vec<NodeId> = vec![1, 2, 3];
    let cluster_config = ClusterConfig {
        configuration_id: 1,
        nodes: nodes.clone(),
        flexible_quorum: None,
    };
    nodes
        .iter()
        .map(|pid| {
            let logger = slog::Logger::root(CountingDrain(records.clone()), slog::o!());
            let server_config = ServerConfig {
                pid: *pid,
                election_tick_timeout: 5,
                custom_logger: Some(logger),
                logger_file_path: None,
                ..Default::default()
            };
            let server = cluster_config
                .clone()
                .build_for_server(server_config, MemoryStorage::default())
                .expect("valid configuration");
            (*pid, server)
        })
        .collect()
}

/// One round: every server ticks, then every message is delivered.
pub fn round(servers: &mut HashMap<NodeId, Server>) {
    let mut buffer: Vec<Message<KeyValue>> = Vec::new();
    for server in servers.values_mut() {
        server.tick();
        server.take_outgoing_messages(&mut buffer);
    }
    while !buffer.is_empty() {
        let mut next = Vec::new();
        for msg in buffer.drain(..) {
            if let Some(server) = servers.get_mut(&msg.get_receiver()) {
                server.handle_incoming(msg);
                server.take_outgoing_messages(&mut next);
            }
        }
        buffer = next;
    }
}

/// The leader every server agrees on, if any.
pub fn leader(servers: &HashMap<NodeId, Server>) -> Option<NodeId> {
    let leaders: Vec<Option<NodeId>> = servers
        .values()
        .map(|s| s.get_current_leader().map(|(pid, _)| pid))
        .collect();
    let first = leaders[0];
    if first.is_some() && leaders.iter().all(|l| *l == first) {
        first
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omnipaxos::{util::LogEntry, utils::ui::OmniPaxosStates};
    use std::io::Write;

    const APP_CONFIG: &str = r#"
listen_address = "127.0.0.1:8000"

[omnipaxos.cluster_config]
configuration_id = 1
nodes = [1, 2, 3]

[omnipaxos.server_config]
pid = 2
election_tick_timeout = 5
# Not an OmniPaxos key: ignored, as 0.2.4 ignored it.
listen_port = 8000
"#;

    #[test]
    fn the_node_configuration_embeds_in_the_application_configuration() {
        let config = load_app_config(APP_CONFIG).expect("valid configuration");
        assert_eq!(config.listen_address, "127.0.0.1:8000");
        let op = &config.omnipaxos;
        assert_eq!(op.cluster_config.nodes, vec![1, 2, 3]);
        assert_eq!(op.server_config.pid, 2);
        assert_eq!(op.server_config.election_tick_timeout, 5);
        // Keys that are not in the file take their defaults.
        assert_eq!(
            op.server_config.batch_size,
            ServerConfig::default().batch_size
        );
        assert_eq!(op.cluster_config.flexible_quorum, None);
        // Without a logger of its own, omnipaxos 0.2.4 would write `logs/paxos_2.log`.
        let mut op = config.omnipaxos;
        op.server_config.custom_logger = Some(slog::Logger::root(slog::Discard, slog::o!()));
        let node: Server = op.build(MemoryStorage::default()).expect("builds");
        assert_eq!(node.get_pid(), 2);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error() {
        let text = APP_CONFIG.replace("election_tick_timeout = 5", "election_tick_timeout = \"5\"");
        let err = load_app_config(&text).unwrap_err();
        assert!(err.to_string().contains("election_tick_timeout"), "{err}");
    }

    fn temp_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        file
    }

    #[test]
    fn with_toml_reads_a_file_shared_with_the_application() {
        let file = temp_file(
            r#"
[cluster_config]
configuration_id = 1
nodes = [1, 2, 3]

[server_config]
pid = 3
leader_priority = 2

[http]
port = 8080
"#,
        );
        let config = OmniPaxosConfig::with_toml(file.path().to_str().unwrap()).expect("valid");
        assert_eq!(config.server_config.pid, 3);
        assert_eq!(config.server_config.leader_priority, 2);
    }

    #[test]
    fn a_missing_file_is_a_read_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.toml");
        let err = OmniPaxosConfig::with_toml(path.to_str().unwrap()).unwrap_err();
        match &err {
            ConfigError::ReadFile(e) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("expected ReadFile, got {other:?}"),
        }
        assert!(describe_config_error(&err).starts_with("cannot read the file (NotFound)"));
    }

    #[test]
    fn a_malformed_file_is_a_parse_error() {
        let file = temp_file("[cluster_config\nnodes = [1, 2]\n");
        let err = OmniPaxosConfig::with_toml(file.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, ConfigError::Parse(_)), "{err:?}");
        assert!(describe_config_error(&err).starts_with("the file is not valid: "));
    }

    #[test]
    fn an_invalid_configuration_is_refused() {
        let file = temp_file(
            "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2]\n[server_config]\npid = 3\n",
        );
        let err = OmniPaxosConfig::with_toml(file.path().to_str().unwrap()).unwrap_err();
        assert!(matches!(err, ConfigError::InvalidConfig(_)), "{err:?}");
    }

    #[test]
    fn servers_with_custom_loggers_agree_and_show_their_states() {
        let records = Arc::new(AtomicUsize::new(0));
        let mut servers = cluster(&records);
        let mut rounds = 0;
        let leader = loop {
            round(&mut servers);
            rounds += 1;
            assert!(rounds < 1_000, "no leader elected");
            if let Some(l) = leader(&servers) {
                break l;
            }
        };
        for i in 0..5 {
            servers
                .get_mut(&leader)
                .unwrap()
                .append(KeyValue {
                    key: format!("k{i}"),
                    value: i,
                })
                .expect("append");
        }
        for _ in 0..50 {
            round(&mut servers);
        }
        for (pid, server) in &servers {
            assert_eq!(server.get_decided_idx(), 5);
            let decided: Vec<u64> = server
                .read_decided_suffix(0)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|e| match e {
                    LogEntry::Decided(kv) => Some(kv.value),
                    _ => None,
                })
                .collect();
            assert_eq!(decided, vec![0, 1, 2, 3, 4]);
            let states: OmniPaxosStates = server.get_ui_states();
            assert_eq!(states.current_leader, Some(leader));
            assert_eq!(states.decided_idx, 5);
            assert!(states.cluster_state.accepted_indexes.len() > *pid as usize);
            assert_eq!(states.current_ballot.pid, *pid);
            println!(
                "server {pid}: {} heartbeats seen, {} log records so far",
                states.heartbeats.len(),
                records.load(Ordering::SeqCst)
            );
        }
    }

    #[test]
    fn refused_proposals_and_compactions_are_handled() {
        let kv = KeyValue {
            key: "a".to_string(),
            value: 1,
        };
        assert_eq!(
            describe_propose_err(ProposeErr::PendingReconfigEntry(kv)),
            "retry a in the next configuration"
        );
        let next = ClusterConfig {
            configuration_id: 2,
            nodes: vec![1, 2, 3],
            flexible_quorum: None,
        };
        assert_eq!(
            describe_propose_err(ProposeErr::PendingReconfigConfig(next, None)),
            "already reconfiguring; not to 2"
        );
        // Trimming is for the leader only.
        let records = Arc::new(AtomicUsize::new(0));
        let mut servers = cluster(&records);
        while leader(&servers).is_none() {
            round(&mut servers);
        }
        let l = leader(&servers).unwrap();
        let follower = *servers.keys().find(|p| **p != l).unwrap();
        let err = servers.get_mut(&follower).unwrap().trim(None).unwrap_err();
        assert!(matches!(err, CompactionErr::NotCurrentLeader(_)), "{err:?}");
        assert_eq!(describe_compaction_err(err), "ask the leader");
    }
}
