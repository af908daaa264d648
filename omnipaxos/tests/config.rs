//! Validation of `OmniPaxosConfig`, `ClusterConfig` and `ServerConfig`: every invalid value is
//! `ConfigError::InvalidConfig` with a message that names the field, and `build()` refuses it.
//! A single-node cluster is valid and decides on its own.

use omnipaxos::{
    storage::{Entry, NoSnapshot},
    util::{FlexibleQuorum, LogEntry, NodeId},
    ClusterConfig, ConfigError, OmniPaxos, OmniPaxosConfig, ServerConfig,
};
use omnipaxos_storage::memory_storage::MemoryStorage;
use std::error::Error;

#[derive(Clone, Debug, PartialEq)]
struct Value(u64);

// Written out rather than derived so that this file builds without the `macros` feature.
impl Entry for Value {
    type Snapshot = NoSnapshot;
}

type Node = OmniPaxos<Value, MemoryStorage<Value>>;

fn cluster(nodes: &[NodeId]) -> ClusterConfig {
    ClusterConfig {
        configuration_id: 1,
        nodes: nodes.to_vec(),
        flexible_quorum: None,
    }
}

fn server(pid: NodeId) -> ServerConfig {
    ServerConfig {
        pid,
        ..Default::default()
    }
}

fn config(nodes: &[NodeId], pid: NodeId) -> OmniPaxosConfig {
    OmniPaxosConfig {
        cluster_config: cluster(nodes),
        server_config: server(pid),
    }
}

fn with_quorum(n: usize, read: usize, write: usize) -> ClusterConfig {
    ClusterConfig {
        flexible_quorum: Some(FlexibleQuorum {
            read_quorum_size: read,
            write_quorum_size: write,
        }),
        ..cluster(&(1..=n as NodeId).collect::<Vec<_>>())
    }
}

/// The message of an `InvalidConfig` error; panics on success or on any other variant.
fn invalid<T>(result: Result<T, ConfigError>) -> String {
    match result.err() {
        Some(ConfigError::InvalidConfig(msg)) => msg,
        other => panic!("expected ConfigError::InvalidConfig, got {other:?}"),
    }
}

/// Asserts that `msg` starts with the field's full name and contains every one of `parts`.
#[track_caller]
fn assert_names(msg: &str, field: &str, parts: &[&str]) {
    assert!(
        msg.starts_with(field),
        "message {msg:?} should start with the field name {field:?}"
    );
    for part in parts {
        assert!(
            msg.contains(part),
            "message {msg:?} should contain {part:?}"
        );
    }
}

fn build(cfg: OmniPaxosConfig) -> Result<Node, ConfigError> {
    cfg.build(MemoryStorage::default())
}

// ---------------------------------------------------------------------------------------------
// Valid configurations.

#[test]
fn three_node_config_is_valid_and_builds() {
    let cfg = config(&[1, 2, 3], 2);
    assert_eq!(cfg.cluster_config.validate().ok(), Some(()));
    assert_eq!(cfg.server_config.validate().ok(), Some(()));
    assert_eq!(cfg.validate().ok(), Some(()));
    let node = build(cfg).expect("a valid configuration builds");
    assert_eq!(node.get_pid(), 2);
    assert_eq!(node.get_decided_idx(), 0);
}

#[test]
fn server_defaults_are_valid_once_pid_is_set() {
    let defaults = ServerConfig::default();
    assert_eq!(defaults.pid, 0, "there is no sensible default pid");
    assert!(defaults.election_tick_timeout > 0);
    assert!(defaults.resend_message_tick_timeout > 0);
    assert!(defaults.flush_batch_tick_timeout > 0);
    assert!(defaults.batch_size > 0);
    assert!(defaults.buffer_size > 0);
    assert_eq!(server(7).validate().ok(), Some(()));
}

#[test]
fn default_config_is_invalid_and_says_why() {
    let msg = invalid(OmniPaxosConfig::default().validate());
    assert_names(&msg, "cluster_config.configuration_id", &["0"]);
}

// ---------------------------------------------------------------------------------------------
// ServerConfig.

#[test]
fn pid_zero_is_invalid() {
    let msg = invalid(server(0).validate());
    assert_names(&msg, "server_config.pid", &["0"]);
    // Through the whole config too, even when 0 is (wrongly) not in nodes.
    let msg = invalid(config(&[1, 2, 3], 0).validate());
    assert_names(&msg, "server_config.pid", &["0"]);
}

#[test]
fn each_zero_timeout_or_size_is_invalid_and_named() {
    type Setter = fn(&mut ServerConfig);
    let cases: [(&str, Setter); 5] = [
        ("election_tick_timeout", |s| s.election_tick_timeout = 0),
        ("resend_message_tick_timeout", |s| {
            s.resend_message_tick_timeout = 0
        }),
        ("flush_batch_tick_timeout", |s| {
            s.flush_batch_tick_timeout = 0
        }),
        ("batch_size", |s| s.batch_size = 0),
        ("buffer_size", |s| s.buffer_size = 0),
    ];
    for (field, set_zero) in cases {
        let mut s = server(1);
        set_zero(&mut s);
        let msg = invalid(s.validate());
        assert_eq!(
            msg,
            format!("server_config.{field} must be greater than 0"),
            "zero {field}"
        );
        let cfg = OmniPaxosConfig {
            cluster_config: cluster(&[1, 2, 3]),
            server_config: s,
        };
        assert_eq!(
            invalid(cfg.validate()),
            msg,
            "zero {field} via OmniPaxosConfig"
        );
    }
}

#[test]
fn one_is_enough_for_every_timeout_and_size() {
    let s = ServerConfig {
        pid: 1,
        election_tick_timeout: 1,
        resend_message_tick_timeout: 1,
        flush_batch_tick_timeout: 1,
        batch_size: 1,
        buffer_size: 1,
        leader_priority: 0,
        #[cfg(feature = "logging")]
        logger_file_path: None,
        #[cfg(feature = "logging")]
        custom_logger: None,
    };
    assert_eq!(s.validate().ok(), Some(()));
}

// ---------------------------------------------------------------------------------------------
// ClusterConfig.

#[test]
fn configuration_id_zero_is_invalid() {
    let c = ClusterConfig {
        configuration_id: 0,
        ..cluster(&[1, 2, 3])
    };
    let msg = invalid(c.validate());
    assert_names(&msg, "cluster_config.configuration_id", &["0"]);
}

#[test]
fn empty_nodes_is_invalid() {
    let msg = invalid(cluster(&[]).validate());
    assert_names(&msg, "cluster_config.nodes", &["empty"]);
}

#[test]
fn pid_zero_in_nodes_is_invalid() {
    let msg = invalid(cluster(&[1, 0, 2]).validate());
    assert_names(&msg, "cluster_config.nodes", &["0"]);
}

#[test]
fn duplicate_nodes_are_invalid_and_the_pid_is_named() {
    let msg = invalid(cluster(&[1, 2, 3, 2]).validate());
    assert_names(&msg, "cluster_config.nodes", &["2", "more than once"]);
    let msg = invalid(cluster(&[5, 5]).validate());
    assert_names(&msg, "cluster_config.nodes", &["5"]);
}

#[test]
fn pid_not_in_nodes_is_invalid() {
    let cfg = config(&[1, 2, 3], 4);
    // Each half is valid on its own; only together do they disagree.
    assert_eq!(cfg.cluster_config.validate().ok(), Some(()));
    assert_eq!(cfg.server_config.validate().ok(), Some(()));
    let msg = invalid(cfg.validate());
    assert_names(
        &msg,
        "server_config.pid",
        &["4", "cluster_config.nodes", "[1, 2, 3]"],
    );
}

#[test]
fn cluster_errors_are_reported_through_omnipaxos_config() {
    let cfg = OmniPaxosConfig {
        cluster_config: cluster(&[1, 1]),
        server_config: server(1),
    };
    assert_eq!(
        invalid(cfg.validate()),
        invalid(cfg.cluster_config.validate())
    );
}

// ---------------------------------------------------------------------------------------------
// Flexible quorums.

#[test]
fn overlapping_flexible_quorums_are_valid() {
    for (read, write) in [(3, 3), (4, 2), (2, 4), (5, 1), (1, 5), (5, 5)] {
        assert_eq!(
            with_quorum(5, read, write).validate().ok(),
            Some(()),
            "read {read}, write {write} of 5"
        );
    }
}

#[test]
fn non_overlapping_flexible_quorums_are_invalid() {
    let msg = invalid(with_quorum(5, 2, 3).validate());
    assert_names(
        &msg,
        "cluster_config.flexible_quorum",
        &["read_quorum_size", "write_quorum_size", "2 + 3", "5"],
    );
    let msg = invalid(with_quorum(4, 1, 3).validate());
    assert_names(&msg, "cluster_config.flexible_quorum", &["1 + 3", "4"]);
}

#[test]
fn flexible_quorum_sizes_out_of_range_are_invalid_and_named() {
    let cases = [
        (0, 5, "read_quorum_size", "0"),
        (6, 5, "read_quorum_size", "6"),
        (5, 0, "write_quorum_size", "0"),
        (1, 6, "write_quorum_size", "6"),
    ];
    for (read, write, field, value) in cases {
        let msg = invalid(with_quorum(5, read, write).validate());
        assert_names(
            &msg,
            &format!("cluster_config.flexible_quorum.{field}"),
            &["between 1 and 5", value],
        );
    }
}

#[test]
fn flexible_quorum_validity_matches_the_rule_for_every_small_cluster() {
    for n in 1..=7 {
        for read in 0..=n + 1 {
            for write in 0..=n + 1 {
                let in_range = |q: usize| (1..=n).contains(&q);
                let expected = in_range(read) && in_range(write) && read + write > n;
                let result = with_quorum(n, read, write).validate();
                assert_eq!(
                    result.is_ok(),
                    expected,
                    "n {n}, read {read}, write {write}: {result:?}"
                );
                if let Err(e) = result {
                    assert!(matches!(e, ConfigError::InvalidConfig(_)), "{e:?}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// build() and the error type.

#[test]
fn build_refuses_an_invalid_config() {
    let cases = [
        (config(&[1, 2, 3], 0), "server_config.pid"),
        (config(&[1, 2, 3], 4), "server_config.pid"),
        (config(&[1, 2, 2], 1), "cluster_config.nodes"),
        (config(&[], 1), "cluster_config.nodes"),
        (
            OmniPaxosConfig {
                cluster_config: with_quorum(3, 1, 2),
                server_config: server(1),
            },
            "cluster_config.flexible_quorum",
        ),
        (
            OmniPaxosConfig {
                server_config: ServerConfig {
                    batch_size: 0,
                    ..server(1)
                },
                ..config(&[1, 2, 3], 1)
            },
            "server_config.batch_size",
        ),
    ];
    for (cfg, field) in cases {
        let expected = invalid(cfg.validate());
        let msg = invalid(build(cfg));
        assert_eq!(msg, expected);
        assert_names(&msg, field, &[]);
    }
}

#[test]
fn build_for_server_refuses_an_invalid_config() {
    let result: Result<Node, _> =
        cluster(&[1, 2, 3]).build_for_server(server(9), MemoryStorage::default());
    assert_names(&invalid(result), "server_config.pid", &["9"]);
    let node: Node = cluster(&[1, 2, 3])
        .build_for_server(server(3), MemoryStorage::default())
        .expect("valid");
    assert_eq!(node.get_pid(), 3);
}

#[test]
fn invalid_config_error_displays_its_message_and_has_no_source() {
    let cfg = config(&[1, 2, 3], 0);
    let msg = invalid(cfg.validate());
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.to_string(), format!("invalid configuration: {msg}"));
    assert!(err.source().is_none());
}

// ---------------------------------------------------------------------------------------------
// A single-node cluster.

#[test]
fn single_node_cluster_is_valid() {
    let cfg = config(&[1], 1);
    assert_eq!(cfg.validate().ok(), Some(()));
    assert_eq!(with_quorum(1, 1, 1).validate().ok(), Some(()));
    let msg = invalid(with_quorum(1, 1, 2).validate());
    assert_names(
        &msg,
        "cluster_config.flexible_quorum.write_quorum_size",
        &["1"],
    );
}

/// Ticks `node` at most `max` times until `done(node)`; returns the ticks it took.
fn tick_until(node: &mut Node, max: usize, done: impl Fn(&Node) -> bool) -> Option<usize> {
    for ticks in 0..=max {
        if done(node) {
            return Some(ticks);
        }
        node.tick();
        let out = node.outgoing_messages();
        assert!(out.is_empty(), "a lone node has nobody to send to: {out:?}");
    }
    None
}

#[test]
fn single_node_becomes_leader_and_decides_on_its_own() {
    let mut node = build(config(&[1], 1)).expect("a single-node cluster builds");
    let ticks = tick_until(&mut node, 100, |n| {
        n.get_current_leader() == Some((1, true))
    });
    assert!(
        ticks.is_some(),
        "no leader after 100 ticks: {:?}",
        node.get_current_leader()
    );

    node.append(Value(42)).expect("append");
    tick_until(&mut node, 100, |n| n.get_decided_idx() >= 1).expect("decided within 100 ticks");
    assert_eq!(node.get_decided_idx(), 1);
    assert_eq!(node.read(0), Some(LogEntry::Decided(Value(42))));
    assert_eq!(node.read(1), None);

    node.append(Value(43)).expect("append");
    tick_until(&mut node, 100, |n| n.get_decided_idx() >= 2).expect("decided within 100 ticks");
    assert_eq!(
        node.read_entries(..),
        Some(vec![
            LogEntry::Decided(Value(42)),
            LogEntry::Decided(Value(43))
        ])
    );
}

#[test]
fn single_node_decides_an_entry_appended_before_its_first_tick() {
    let mut node = build(config(&[1], 1)).expect("a single-node cluster builds");
    node.append(Value(7))
        .expect("append is buffered while no leader is known");
    tick_until(&mut node, 100, |n| n.get_decided_idx() == 1).expect("decided within 100 ticks");
    assert_eq!(node.read(0), Some(LogEntry::Decided(Value(7))));
}

#[test]
fn single_node_with_batching_flushes_on_the_batch_timeout() {
    let cfg = OmniPaxosConfig {
        cluster_config: cluster(&[1]),
        server_config: ServerConfig {
            batch_size: 10,
            flush_batch_tick_timeout: 3,
            ..server(1)
        },
    };
    let mut node = build(cfg).expect("valid");
    tick_until(&mut node, 100, |n| {
        n.get_current_leader() == Some((1, true))
    })
    .expect("leader");
    node.append(Value(1)).expect("append");
    node.append(Value(2)).expect("append");
    assert_eq!(
        node.get_decided_idx(),
        0,
        "2 of batch_size 10: still batched"
    );
    let ticks = tick_until(&mut node, 100, |n| n.get_decided_idx() == 2).expect("flushed");
    assert!(
        ticks <= 3,
        "a partial batch is flushed within flush_batch_tick_timeout, took {ticks}"
    );
    assert_eq!(node.read(1), Some(LogEntry::Decided(Value(2))));
}
