//! Chapter "Creating a node": configurations in code and in TOML, and their errors.

use omnipaxos::{errors::ConfigError, util::FlexibleQuorum, ClusterConfig, OmniPaxosConfig};
use omnipaxos::{OmniPaxos, ServerConfig};
use omnipaxos_guide::KeyValue;
use omnipaxos_storage::MemoryStorage;

#[test]
fn build_in_code() {
    // ANCHOR: in_code
    let cluster_config = ClusterConfig {
        configuration_id: 1,
        nodes: vec![1, 2, 3],
        flexible_quorum: None, // majorities: 2 of 3 for both phases
    };
    let server_config = ServerConfig {
        pid: 2,
        election_tick_timeout: 5,
        resend_message_tick_timeout: 20,
        ..Default::default()
    };
    let config = OmniPaxosConfig {
        cluster_config,
        server_config,
    };
    let node: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> = config
        .build(MemoryStorage::default())
        .expect("a valid configuration");
    assert_eq!(node.get_pid(), 2);
    assert_eq!(node.get_configuration_id(), 1);
    // ANCHOR_END: in_code
}

#[test]
fn build_from_toml() {
    // ANCHOR: from_toml
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/node2.toml");
    let config = OmniPaxosConfig::with_toml(path).expect("a valid file");
    assert_eq!(config.server_config.pid, 2);
    assert_eq!(config.cluster_config.nodes, vec![1, 2, 3]);
    // Keys that are not in the file take their defaults.
    assert_eq!(
        config.server_config.buffer_size,
        ServerConfig::default().buffer_size
    );
    let node: OmniPaxos<KeyValue, MemoryStorage<KeyValue>> =
        config.build(MemoryStorage::default()).expect("valid");
    // ANCHOR_END: from_toml
    assert_eq!(node.get_pid(), 2);
}

#[test]
fn toml_from_a_string() {
    // ANCHOR: from_str
    let text = r#"
        [cluster_config]
        configuration_id = 1
        nodes = [1, 2, 3, 4, 5]
        flexible_quorum = { read_quorum_size = 4, write_quorum_size = 2 }

        [server_config]
        pid = 5
    "#;
    let config = OmniPaxosConfig::from_toml_str(text).expect("valid");
    assert_eq!(
        config.cluster_config.flexible_quorum,
        Some(FlexibleQuorum {
            read_quorum_size: 4,
            write_quorum_size: 2
        })
    );
    // ANCHOR_END: from_str
}

#[test]
fn validation_errors() {
    // ANCHOR: errors
    // A value that cannot work: the message names the field.
    let config = OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 1,
            nodes: vec![1, 2, 3],
            ..Default::default()
        },
        server_config: ServerConfig {
            pid: 4, // not one of the nodes
            ..Default::default()
        },
    };
    match config.validate() {
        Err(ConfigError::InvalidConfig(msg)) => {
            assert!(
                msg.starts_with("server_config.pid: 4 is not one of"),
                "{msg}"
            )
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }

    // A misspelt key in a file: the error names the key and its line.
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2, 3]\n\n[server_config]\npid = 1\nelection_timeout = 5\n";
    match OmniPaxosConfig::from_toml_str(text) {
        Err(ConfigError::Parse(e)) => {
            assert_eq!(e.key(), Some("server_config.election_timeout"));
            assert_eq!(e.line(), Some(7));
            println!("{e}"); // key `server_config.election_timeout`: unknown key (expected one of: ...) (line 7)
        }
        other => panic!("expected Parse, got {other:?}"),
    }

    // A file that is not there: the error names it.
    let err = OmniPaxosConfig::with_toml("/no/such/omnipaxos.toml").unwrap_err();
    assert_eq!(
        err.file_path(),
        Some(std::path::Path::new("/no/such/omnipaxos.toml"))
    );
    match err {
        ConfigError::ReadFile(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            println!("{e}"); // cannot read configuration file /no/such/omnipaxos.toml: No such file ...
        }
        other => panic!("expected ReadFile, got {other:?}"),
    }
    // ANCHOR_END: errors
}
