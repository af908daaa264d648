//! Loading an `OmniPaxosConfig` from TOML (feature `toml_config`): the layout, the defaults, and
//! an error that names the key for every unknown key and bad value.
//!
//! Run with `cargo test -p omnipaxos --all-features`.
#![cfg(feature = "toml_config")]

use omnipaxos::{errors::TomlError, util::FlexibleQuorum, ClusterConfig, ConfigError};
use omnipaxos::{OmniPaxosConfig, ServerConfig};
use std::{error::Error, io::Write};

const FULL: &str = r#"
[cluster_config]
configuration_id = 3
nodes = [1, 2, 3, 4, 5]
flexible_quorum = { read_quorum_size = 4, write_quorum_size = 2 }

[server_config]
pid = 2
election_tick_timeout = 5
resend_message_tick_timeout = 50
flush_batch_tick_timeout = 7
batch_size = 10
buffer_size = 1000
leader_priority = 9
logger_file_path = "/var/log/omnipaxos/2.log"
"#;

fn full_expected() -> OmniPaxosConfig {
    OmniPaxosConfig {
        cluster_config: ClusterConfig {
            configuration_id: 3,
            nodes: vec![1, 2, 3, 4, 5],
            flexible_quorum: Some(FlexibleQuorum {
                read_quorum_size: 4,
                write_quorum_size: 2,
            }),
        },
        server_config: ServerConfig {
            pid: 2,
            election_tick_timeout: 5,
            resend_message_tick_timeout: 50,
            flush_batch_tick_timeout: 7,
            batch_size: 10,
            buffer_size: 1000,
            leader_priority: 9,
            logger_file_path: Some("/var/log/omnipaxos/2.log".to_string()),
        },
    }
}

/// The smallest valid file: the three keys whose defaults (0) are invalid.
const MINIMAL: &str = "
[cluster_config]
configuration_id = 1
nodes = [1, 2, 3]

[server_config]
pid = 1
";

/// `MINIMAL` with `line` added at the end of the `[cluster_config]` table.
fn cluster_with(line: &str) -> String {
    format!("[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2, 3]\n{line}\n\n[server_config]\npid = 1\n")
}

/// `MINIMAL` with `line` added at the end of the `[server_config]` table.
fn server_with(line: &str) -> String {
    format!("{MINIMAL}{line}\n")
}

fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file.flush().expect("flush temp file");
    file
}

fn load_file(text: &str) -> Result<OmniPaxosConfig, ConfigError> {
    let file = write_temp(text);
    OmniPaxosConfig::with_toml(file.path().to_str().expect("utf-8 temp path"))
}

/// The `TomlError` of a `Parse` error and the error's `Display`; panics on success or on any
/// other variant.
#[track_caller]
fn parse_error(result: Result<OmniPaxosConfig, ConfigError>) -> (TomlError, String) {
    let err = match result {
        Err(err) => err,
        Ok(cfg) => panic!("expected ConfigError::Parse, got Ok({cfg:?})"),
    };
    let display = err.to_string();
    match err {
        ConfigError::Parse(inner) => (inner, display),
        other => panic!("expected ConfigError::Parse, got {other:?}"),
    }
}

/// Asserts that `text` is a `Parse` error about `key`, shown in the message, whose own message
/// contains every one of `parts`.
#[track_caller]
fn assert_bad_key(text: &str, key: &str, parts: &[&str]) {
    let (err, display) = parse_error(OmniPaxosConfig::from_toml_str(text));
    assert_eq!(err.key(), Some(key), "{display}");
    assert!(
        display.contains(&format!("`{key}`")),
        "{display:?} should name `{key}`"
    );
    for part in parts {
        assert!(
            err.message().contains(part),
            "message {:?} should contain {part:?}",
            err.message()
        );
    }
}

/// The message of an `InvalidConfig` error; panics on success or on any other variant.
#[track_caller]
fn invalid(result: Result<OmniPaxosConfig, ConfigError>) -> String {
    match result {
        Err(ConfigError::InvalidConfig(msg)) => msg,
        other => panic!("expected ConfigError::InvalidConfig, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Valid files.

#[test]
fn full_file_round_trips_into_the_expected_config() {
    let cfg = load_file(FULL).expect("valid file");
    assert_eq!(cfg, full_expected());
    assert_eq!(cfg.validate().ok(), Some(()));
}

#[test]
fn string_and_file_loaders_agree() {
    assert_eq!(
        OmniPaxosConfig::from_toml_str(FULL).expect("valid"),
        load_file(FULL).expect("valid")
    );
}

#[test]
fn missing_keys_take_their_defaults() {
    let cfg = OmniPaxosConfig::from_toml_str(MINIMAL).expect("valid");
    assert_eq!(
        cfg,
        OmniPaxosConfig {
            cluster_config: ClusterConfig {
                configuration_id: 1,
                nodes: vec![1, 2, 3],
                flexible_quorum: None,
            },
            server_config: ServerConfig {
                pid: 1,
                ..ServerConfig::default()
            },
        }
    );
}

#[test]
fn each_server_key_is_read_on_its_own() {
    let defaults = ServerConfig {
        pid: 1,
        ..ServerConfig::default()
    };
    let cases: [(&str, ServerConfig); 7] = [
        (
            "election_tick_timeout = 11",
            ServerConfig {
                election_tick_timeout: 11,
                ..defaults.clone()
            },
        ),
        (
            "resend_message_tick_timeout = 12",
            ServerConfig {
                resend_message_tick_timeout: 12,
                ..defaults.clone()
            },
        ),
        (
            "flush_batch_tick_timeout = 13",
            ServerConfig {
                flush_batch_tick_timeout: 13,
                ..defaults.clone()
            },
        ),
        (
            "batch_size = 14",
            ServerConfig {
                batch_size: 14,
                ..defaults.clone()
            },
        ),
        (
            "buffer_size = 15",
            ServerConfig {
                buffer_size: 15,
                ..defaults.clone()
            },
        ),
        (
            "leader_priority = 16",
            ServerConfig {
                leader_priority: 16,
                ..defaults.clone()
            },
        ),
        (
            "logger_file_path = \"x.log\"",
            ServerConfig {
                logger_file_path: Some("x.log".to_string()),
                ..defaults.clone()
            },
        ),
    ];
    for (line, expected) in cases {
        let cfg = OmniPaxosConfig::from_toml_str(&server_with(line)).expect(line);
        assert_eq!(cfg.server_config, expected, "{line}");
    }
}

#[test]
fn dotted_keys_and_inline_tables_are_the_same_config() {
    let dotted = "
cluster_config.configuration_id = 1
cluster_config.nodes = [1, 2, 3]
cluster_config.flexible_quorum.read_quorum_size = 2
cluster_config.flexible_quorum.write_quorum_size = 2
server_config = { pid = 1 }
";
    let tables = cluster_with("flexible_quorum = { read_quorum_size = 2, write_quorum_size = 2 }");
    assert_eq!(
        OmniPaxosConfig::from_toml_str(dotted).expect("valid"),
        OmniPaxosConfig::from_toml_str(&tables).expect("valid")
    );
}

#[test]
fn a_single_node_file_is_valid() {
    let cfg = OmniPaxosConfig::from_toml_str(
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1]\n[server_config]\npid = 1\n",
    )
    .expect("a single node is a valid cluster");
    assert_eq!(cfg.cluster_config.nodes, vec![1]);
}

// ---------------------------------------------------------------------------------------------
// Unknown keys.

#[test]
fn unknown_top_level_key_is_named() {
    assert_bad_key(
        &format!("{MINIMAL}\n[serverconfig]\npid = 1\n"),
        "serverconfig",
        &["unknown key", "cluster_config", "server_config"],
    );
    assert_bad_key(&format!("extra = 1\n{MINIMAL}"), "extra", &["unknown key"]);
}

#[test]
fn unknown_cluster_key_is_named() {
    assert_bad_key(
        &cluster_with("node = [1, 2, 3]"),
        "cluster_config.node",
        &[
            "unknown key",
            "nodes",
            "configuration_id",
            "flexible_quorum",
        ],
    );
}

#[test]
fn unknown_server_key_is_named() {
    assert_bad_key(
        &server_with("pidd = 1"),
        "server_config.pidd",
        &["unknown key", "pid", "election_tick_timeout"],
    );
    // omnipaxos 0.2's hocon name is not a key here.
    assert_bad_key(
        &server_with("election_timeout = 5"),
        "server_config.election_timeout",
        &["unknown key"],
    );
}

#[test]
fn unknown_quorum_key_is_named() {
    assert_bad_key(
        &cluster_with(
            "flexible_quorum = { read_quorum_size = 2, write_quorum_size = 2, size = 3 }",
        ),
        "cluster_config.flexible_quorum.size",
        &["unknown key", "read_quorum_size", "write_quorum_size"],
    );
}

#[test]
fn a_quorum_needs_both_sizes() {
    assert_bad_key(
        &cluster_with("flexible_quorum = { read_quorum_size = 2 }"),
        "cluster_config.flexible_quorum.write_quorum_size",
        &["missing"],
    );
    assert_bad_key(
        &cluster_with("flexible_quorum = { write_quorum_size = 2 }"),
        "cluster_config.flexible_quorum.read_quorum_size",
        &["missing"],
    );
}

// ---------------------------------------------------------------------------------------------
// Values of the wrong type.

#[test]
fn string_pid_is_named() {
    assert_bad_key(
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1]\n[server_config]\npid = \"1\"\n",
        "server_config.pid",
        &["non-negative integer", "string"],
    );
}

#[test]
fn negative_number_is_named() {
    assert_bad_key(
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1]\n[server_config]\npid = -1\n",
        "server_config.pid",
        &["-1", "out of range"],
    );
    assert_bad_key(
        &server_with("batch_size = -5"),
        "server_config.batch_size",
        &["-5", "out of range"],
    );
}

#[test]
fn float_is_named() {
    assert_bad_key(
        &server_with("election_tick_timeout = 1.5"),
        "server_config.election_tick_timeout",
        &["non-negative integer", "float 1.5"],
    );
}

#[test]
fn boolean_and_table_are_named() {
    assert_bad_key(
        &server_with("buffer_size = true"),
        "server_config.buffer_size",
        &["boolean"],
    );
    assert_bad_key(
        &server_with("logger_file_path = 3"),
        "server_config.logger_file_path",
        &["string", "integer 3"],
    );
    assert_bad_key(
        &cluster_with("flexible_quorum = 3"),
        "cluster_config.flexible_quorum",
        &["table", "integer 3"],
    );
    assert_bad_key(
        "cluster_config = [1, 2]\n",
        "cluster_config",
        &["table", "array"],
    );
    assert_bad_key(
        "server_config = 5\n[cluster_config]\nconfiguration_id = 1\nnodes = [1]\n",
        "server_config",
        &["table", "integer 5"],
    );
}

#[test]
fn nodes_of_the_wrong_type_are_named() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = 3\n[server_config]\npid = 1\n";
    assert_bad_key(text, "cluster_config.nodes", &["array", "integer 3"]);
}

#[test]
fn a_node_of_the_wrong_type_is_named_with_its_index() {
    let text =
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1, \"2\", 3]\n[server_config]\npid = 1\n";
    assert_bad_key(text, "cluster_config.nodes[1]", &["string \"2\""]);
    let text =
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2, -3]\n[server_config]\npid = 1\n";
    assert_bad_key(text, "cluster_config.nodes[2]", &["-3", "out of range"]);
}

#[test]
fn configuration_id_overflowing_u32_is_named() {
    let text =
        "[cluster_config]\nconfiguration_id = 4294967296\nnodes = [1]\n[server_config]\npid = 1\n";
    assert_bad_key(
        text,
        "cluster_config.configuration_id",
        &["4294967296", "out of range", "u32"],
    );
    // u32::MAX itself fits.
    let text =
        "[cluster_config]\nconfiguration_id = 4294967295\nnodes = [1]\n[server_config]\npid = 1\n";
    let cfg = OmniPaxosConfig::from_toml_str(text).expect("u32::MAX is a valid id");
    assert_eq!(cfg.cluster_config.configuration_id, u32::MAX);
}

#[test]
fn leader_priority_overflowing_u32_is_named() {
    assert_bad_key(
        &server_with("leader_priority = 4294967296"),
        "server_config.leader_priority",
        &["out of range", "u32"],
    );
}

#[test]
fn quorum_size_of_the_wrong_type_is_named() {
    assert_bad_key(
        &cluster_with("flexible_quorum = { read_quorum_size = \"two\", write_quorum_size = 2 }"),
        "cluster_config.flexible_quorum.read_quorum_size",
        &["string \"two\""],
    );
}

// ---------------------------------------------------------------------------------------------
// Syntax errors and files.

#[test]
fn syntax_error_is_a_parse_error_with_the_line() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2\n";
    let (err, display) = parse_error(OmniPaxosConfig::from_toml_str(text));
    assert_eq!(err.key(), None, "a syntax error is about no single key");
    assert!(
        display.starts_with("invalid TOML configuration: "),
        "{display}"
    );
    assert!(
        display.contains("line 3"),
        "{display:?} should give the line"
    );
}

#[test]
fn duplicate_key_is_a_parse_error() {
    let (err, display) = parse_error(OmniPaxosConfig::from_toml_str(&server_with("pid = 2")));
    assert_eq!(err.key(), None);
    assert!(
        display.contains("pid"),
        "{display:?} should name the duplicate key"
    );
}

#[test]
fn parse_error_has_the_toml_error_as_source() {
    let err = OmniPaxosConfig::from_toml_str(&server_with("pidd = 1")).unwrap_err();
    let source = err.source().expect("a Parse error has a source");
    let toml = source
        .downcast_ref::<TomlError>()
        .expect("the source is the TomlError");
    assert_eq!(toml.key(), Some("server_config.pidd"));
    assert_eq!(
        err.to_string(),
        format!("invalid TOML configuration: {toml}")
    );
    assert_eq!(
        toml.to_string(),
        format!("key `server_config.pidd`: {}", toml.message())
    );
}

#[test]
fn unknown_key_error_gives_the_line() {
    let (err, display) = parse_error(OmniPaxosConfig::from_toml_str(&server_with("pidd = 1")));
    assert_eq!(err.key(), Some("server_config.pidd"));
    // `pidd` is on line 8 of `server_with(..)`.
    assert!(
        display.contains("line 8"),
        "{display:?} should give the line"
    );
}

#[test]
fn value_errors_give_the_line_of_their_key() {
    // `cluster_with(..)` puts the line on line 4; `server_with(..)` on line 8.
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(&server_with(
        "batch_size = \"ten\"",
    )));
    assert_eq!(err.line(), Some(8), "{err}");
    assert!(err.message().ends_with("(line 8)"), "{err}");
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(&cluster_with(
        "flexible_quorum = { read_quorum_size = 2, write = 2 }",
    )));
    assert_eq!(err.key(), Some("cluster_config.flexible_quorum.write"));
    assert_eq!(err.line(), Some(4), "{err}");
    // A missing key is reported at its table.
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(&cluster_with(
        "flexible_quorum = { read_quorum_size = 2 }",
    )));
    assert_eq!(err.line(), Some(4), "{err}");
}

#[test]
fn a_bad_node_gives_the_line_of_the_element() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [\n  1,\n  \"two\",\n]\n";
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(text));
    assert_eq!(err.key(), Some("cluster_config.nodes[1]"));
    assert_eq!(err.line(), Some(5), "{err}");
}

#[test]
fn dotted_and_top_level_keys_give_their_line() {
    let text = "cluster_config.configuration_id = 1\n\nserver_config.pidd = 1\n";
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(text));
    assert_eq!(err.key(), Some("server_config.pidd"));
    assert_eq!(err.line(), Some(3), "{err}");
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str("\nextra = 1\n"));
    assert_eq!(err.key(), Some("extra"));
    assert_eq!(err.line(), Some(2), "{err}");
}

#[test]
fn a_syntax_error_has_its_line_too() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2\n";
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(text));
    assert_eq!(err.line(), Some(3), "{err}");
}

#[test]
fn read_error_keeps_the_io_error_as_source() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let err = OmniPaxosConfig::with_toml(path.to_str().expect("utf-8")).unwrap_err();
    let source = err.source().expect("a ReadFile error has a source");
    let io = source
        .downcast_ref::<std::io::Error>()
        .expect("the source is the io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    match err {
        ConfigError::ReadFile { path: p, .. } => assert_eq!(p, path),
        other => panic!("expected ConfigError::ReadFile, got {other:?}"),
    }
}

#[test]
fn missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    match OmniPaxosConfig::with_toml(path.to_str().expect("utf-8")) {
        Err(ConfigError::ReadFile { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected ConfigError::ReadFile, got {other:?}"),
    }
}

#[test]
fn missing_file_error_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let path = path.to_str().expect("utf-8");
    let err = OmniPaxosConfig::with_toml(path).unwrap_err();
    assert!(
        err.to_string().contains(path),
        "{err} should name the file {path}"
    );
}

#[test]
fn a_file_with_a_syntax_error_is_a_parse_error_not_a_read_error() {
    let (err, _) = parse_error(load_file("[cluster_config\n"));
    assert_eq!(err.key(), None);
}

// ---------------------------------------------------------------------------------------------
// Well-formed TOML with invalid values: validation names the field.

#[test]
fn empty_file_is_invalid_because_the_defaults_are() {
    let msg = invalid(OmniPaxosConfig::from_toml_str(""));
    assert!(msg.starts_with("cluster_config.configuration_id"), "{msg}");
}

#[test]
fn pid_zero_is_invalid_config() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2]\n[server_config]\npid = 0\n";
    let msg = invalid(OmniPaxosConfig::from_toml_str(text));
    assert!(msg.starts_with("server_config.pid"), "{msg}");
    // A missing pid is the default 0: also invalid, and named.
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2]\n";
    let msg = invalid(OmniPaxosConfig::from_toml_str(text));
    assert!(msg.starts_with("server_config.pid"), "{msg}");
}

#[test]
fn duplicate_pids_are_invalid_config() {
    let text =
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2, 2]\n[server_config]\npid = 1\n";
    let msg = invalid(OmniPaxosConfig::from_toml_str(text));
    assert!(msg.starts_with("cluster_config.nodes"), "{msg}");
    assert!(msg.contains('2'), "{msg} should name the duplicate pid");
}

#[test]
fn other_invalid_values_are_invalid_config() {
    let cases = [
        (server_with("batch_size = 0"), "server_config.batch_size"),
        (
            server_with("election_tick_timeout = 0"),
            "server_config.election_tick_timeout",
        ),
        (
            cluster_with("flexible_quorum = { read_quorum_size = 1, write_quorum_size = 2 }"),
            "cluster_config.flexible_quorum",
        ),
        (
            "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2]\n[server_config]\npid = 3\n"
                .to_string(),
            "server_config.pid",
        ),
    ];
    for (text, field) in cases {
        let msg = invalid(OmniPaxosConfig::from_toml_str(&text));
        assert!(msg.starts_with(field), "{msg:?} should name {field}");
        // The file loader validates too.
        assert_eq!(invalid(load_file(&text)), msg);
    }
}
