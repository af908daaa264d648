//! Loading an `OmniPaxosConfig` from TOML (feature `toml_config`): the layout, the defaults, an
//! error that names the key for every unknown key of the OmniPaxos tables and every bad value,
//! the lenient loaders, and `Deserialize` for embedding the configuration in an application's.
//!
//! Run with `cargo test -p omnipaxos --all-features`.
#![cfg(feature = "toml_config")]

use omnipaxos::{
    errors::{ReadFileError, TomlError},
    util::FlexibleQuorum,
    ClusterConfig, ConfigError,
};
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
            #[cfg(feature = "logging")]
            logger_file_path: Some("/var/log/omnipaxos/2.log".to_string()),
            #[cfg(feature = "logging")]
            custom_logger: None,
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
    let cases = [
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
        // Read with the feature `logging`; accepted and without effect without it, as in 0.2.4.
        (
            "logger_file_path = \"x.log\"",
            ServerConfig {
                #[cfg(feature = "logging")]
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
fn other_top_level_keys_and_tables_are_the_applications_and_ignored() {
    let shared = format!(
        "title = \"my service\"\nlisten = \"0.0.0.0:8000\"\n{MINIMAL}\n[serverconfig]\npid = 7\n\n[app.db]\npath = \"/data\"\n"
    );
    let expected = OmniPaxosConfig::from_toml_str(MINIMAL).expect("valid");
    assert_eq!(
        OmniPaxosConfig::from_toml_str(&shared),
        Ok(expected.clone())
    );
    assert_eq!(load_file(&shared), Ok(expected));
}

#[test]
fn an_omnipaxos_table_that_is_not_a_table_is_named() {
    assert_bad_key(
        "server_config = 3\n",
        "server_config",
        &["expected a table", "the integer 3"],
    );
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
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str("\ncluster_config = 1\n"));
    assert_eq!(err.key(), Some("cluster_config"));
    assert_eq!(err.line(), Some(2), "{err}");
}

#[test]
fn errors_give_the_span_of_their_key_as_toml_errors_do() {
    let text = server_with("pidd = 1");
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(&text));
    let span = err.span().expect("a key error has a span");
    assert_eq!(&text[span], "pidd");
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2\n";
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(text));
    let span = err.span().expect("a syntax error has a span");
    assert!(span.start >= text.find("[1, 2").unwrap(), "{span:?}");
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
    assert!(
        !io.to_string().contains("missing.toml"),
        "the source is the read's own error, not the wrapper: {io}"
    );
    assert_eq!(err.file_path(), Some(path.as_path()));
}

#[test]
fn missing_file_is_a_read_error_of_the_io_kind_as_in_0_2_4() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    match OmniPaxosConfig::with_toml(path.to_str().expect("utf-8")) {
        // The 0.2.4 pattern: one unnamed `io::Error`.
        Err(ConfigError::ReadFile(e)) => {
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
            assert!(e.to_string().contains("missing.toml"), "{e}");
            let inner = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<ReadFileError>())
                .expect("the inner error is a ReadFileError");
            assert_eq!(inner.path(), path.as_path());
            assert_eq!(inner.io_error().kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ConfigError::ReadFile, got {other:?}"),
    }
}

#[test]
fn missing_file_error_names_the_path_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing.toml");
    let path = path.to_str().expect("utf-8");
    let err = OmniPaxosConfig::with_toml(path).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("cannot read configuration file {path}: ")),
        "{shown}"
    );
    assert_eq!(shown.matches(path).count(), 1, "{shown}");
}

#[test]
fn a_directory_is_a_read_error_too() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = OmniPaxosConfig::with_toml(dir.path().to_str().expect("utf-8")).unwrap_err();
    assert!(matches!(err, ConfigError::ReadFile(_)), "{err:?}");
    assert_eq!(err.file_path(), Some(dir.path()));
}

#[test]
fn io_and_toml_errors_convert_as_in_0_2_4() {
    // `?` on your own read and parse in a function returning `ConfigError`.
    fn load(text: Option<&str>) -> Result<OmniPaxosConfig, ConfigError> {
        let text = match text {
            Some(t) => t.to_string(),
            None => Err(std::io::Error::other("disk on fire"))?,
        };
        let cfg: OmniPaxosConfig = toml::from_str(&text)?;
        Ok(cfg)
    }
    let err = load(None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read configuration file: disk on fire"
    );
    assert_eq!(err.file_path(), None);
    assert_eq!(
        err.source().map(|s| s.to_string()),
        Some("disk on fire".into())
    );
    match load(Some("[server_config]\npid = \"x\"\n")).unwrap_err() {
        ConfigError::Parse(e) => {
            assert!(e.message().contains("invalid type"), "{e}");
            assert_eq!(e.span(), Some(22..25));
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn config_errors_compare_by_variant_and_contents() {
    let a = OmniPaxosConfig::with_toml("/no/such/dir/a.toml").unwrap_err();
    assert_eq!(
        a,
        OmniPaxosConfig::with_toml("/no/such/dir/a.toml").unwrap_err()
    );
    assert_ne!(
        a,
        OmniPaxosConfig::with_toml("/no/such/dir/b.toml").unwrap_err()
    );
    let p = OmniPaxosConfig::from_toml_str("[x").unwrap_err();
    assert_eq!(p, OmniPaxosConfig::from_toml_str("[x").unwrap_err());
    assert_ne!(p, a);
    let i = ConfigError::InvalidConfig("x".into());
    assert_eq!(i, ConfigError::InvalidConfig("x".into()));
    assert_ne!(i, p);
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

// ---------------------------------------------------------------------------------------------
// The lenient loaders: unknown keys ignored everywhere, as omnipaxos 0.2.4 ignored them.

#[test]
fn lenient_loaders_ignore_unknown_keys_inside_the_omnipaxos_tables() {
    let text = "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2, 3]\nregion = \"eu\"\n\
         flexible_quorum = { read_quorum_size = 2, write_quorum_size = 2, note = 1 }\n\
         [server_config]\npid = 1\nlisten = \"0.0.0.0:8000\"\n[app]\nx = 1\n"
        .to_string();
    // The default loaders refuse `region` and `note` (the first in key order is named)...
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str(&text));
    assert_eq!(err.key(), Some("cluster_config.flexible_quorum.note"));
    // ...the lenient ones read the rest.
    let cfg = OmniPaxosConfig::from_toml_str_lenient(&text).expect("valid");
    assert_eq!(cfg.cluster_config.nodes, vec![1, 2, 3]);
    assert_eq!(
        cfg.cluster_config.flexible_quorum,
        Some(FlexibleQuorum {
            read_quorum_size: 2,
            write_quorum_size: 2
        })
    );
    assert_eq!(cfg.server_config.pid, 1);
    let file = write_temp(&text);
    assert_eq!(
        OmniPaxosConfig::with_toml_lenient(file.path().to_str().unwrap()),
        Ok(cfg)
    );
}

#[test]
fn lenient_loaders_still_name_bad_values_and_validate() {
    let (err, _) = parse_error(OmniPaxosConfig::from_toml_str_lenient(&server_with(
        "batch_size = \"ten\"",
    )));
    assert_eq!(err.key(), Some("server_config.batch_size"));
    assert_eq!(err.line(), Some(8));
    let msg = invalid(OmniPaxosConfig::from_toml_str_lenient(
        "[cluster_config]\nconfiguration_id = 1\nnodes = [1, 2]\n[server_config]\npid = 3\n",
    ));
    assert!(msg.starts_with("server_config.pid"), "{msg}");
    assert!(matches!(
        OmniPaxosConfig::with_toml_lenient("/no/such/file.toml"),
        Err(ConfigError::ReadFile(_))
    ));
}

#[test]
fn the_0_2_4_test_file_loads_with_and_without_logging() {
    // omnipaxos 0.2.4's tests/config/node1.toml, which has `logger_file_path` also when its
    // tests ran without the feature `logging`.
    let text = r#"
# This file is used for testing that fields are deserialized to set values
[cluster_config]
configuration_id = 1
nodes = [1, 2, 3, 4, 5]
flexible_quorum = { read_quorum_size = 4, write_quorum_size = 2 }

[server_config]
pid = 1
election_tick_timeout = 10
resend_message_tick_timeout = 100
flush_batch_tick_timeout = 200
buffer_size = 10000
batch_size = 2
logger_file_path = "logs/paxos_1.log"
leader_priority = 2
"#;
    let cfg = load_file(text).expect("0.2.4's file loads");
    assert_eq!(cfg.server_config.batch_size, 2);
    assert_eq!(cfg.server_config.leader_priority, 2);
    #[cfg(feature = "logging")]
    assert_eq!(
        cfg.server_config.logger_file_path.as_deref(),
        Some("logs/paxos_1.log")
    );
}

// ---------------------------------------------------------------------------------------------
// `Deserialize`: the configuration embedded in an application's own configuration, as with
// omnipaxos 0.2.4 (every key optional, unknown keys ignored, no validation until `build`).

#[derive(serde::Deserialize, Debug)]
struct AppConfig {
    listen: String,
    omnipaxos: OmniPaxosConfig,
}

#[derive(serde::Deserialize, Debug)]
struct FlatAppConfig {
    listen: String,
    #[serde(flatten)]
    omnipaxos: OmniPaxosConfig,
}

#[test]
fn deserialize_embeds_the_config_with_defaults_and_ignores_unknown_keys() {
    let text = r#"
listen = "0.0.0.0:8000"
[omnipaxos.cluster_config]
configuration_id = 2
nodes = [1, 2, 3]
region = "eu"
[omnipaxos.server_config]
pid = 3
election_tick_timeout = 4
listen_port = 9000
"#;
    let app: AppConfig = toml::from_str(text).expect("deserializes");
    assert_eq!(app.listen, "0.0.0.0:8000");
    let mut expected = OmniPaxosConfig::default();
    expected.cluster_config.configuration_id = 2;
    expected.cluster_config.nodes = vec![1, 2, 3];
    expected.server_config.pid = 3;
    expected.server_config.election_tick_timeout = 4;
    assert_eq!(app.omnipaxos, expected);
    assert_eq!(app.omnipaxos.validate(), Ok(()));
}

#[test]
fn deserialize_flattened_reads_the_tables_at_the_top() {
    let text = format!("listen = \"x\"\n{FULL}");
    let app: FlatAppConfig = toml::from_str(&text).expect("deserializes");
    assert_eq!(app.listen, "x");
    assert_eq!(app.omnipaxos, full_expected());
}

#[test]
fn deserialize_of_an_empty_table_is_the_default_and_validation_is_left_to_build() {
    let app: AppConfig = toml::from_str("listen = \"x\"\n[omnipaxos]\n").expect("deserializes");
    assert_eq!(app.omnipaxos, OmniPaxosConfig::default());
    assert!(matches!(
        app.omnipaxos.validate(),
        Err(ConfigError::InvalidConfig(_))
    ));
    let server: ServerConfig = toml::from_str("").expect("every key is optional");
    assert_eq!(server, ServerConfig::default());
    let cluster: ClusterConfig = toml::from_str("").expect("every key is optional");
    assert_eq!(cluster, ClusterConfig::default());
}

#[test]
fn deserialize_refuses_a_value_of_the_wrong_type_naming_the_field() {
    let err = toml::from_str::<AppConfig>(
        "listen = \"x\"\n[omnipaxos.server_config]\nbatch_size = \"ten\"\n",
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("batch_size") && msg.contains("invalid type"),
        "{msg}"
    );
    // And it converts into a `ConfigError::Parse`, as in 0.2.4.
    assert!(matches!(ConfigError::from(err), ConfigError::Parse(_)));
}

#[cfg(feature = "logging")]
#[test]
fn deserialize_never_reads_a_custom_logger() {
    let server: ServerConfig =
        toml::from_str("pid = 1\nlogger_file_path = \"a.log\"\ncustom_logger = \"x\"\n")
            .expect("deserializes");
    assert!(server.custom_logger.is_none());
    assert_eq!(server.logger_file_path.as_deref(), Some("a.log"));
}

#[test]
fn configurations_serialize_and_read_back() {
    let text = toml::to_string(&full_expected()).expect("serializes");
    assert_eq!(OmniPaxosConfig::from_toml_str(&text), Ok(full_expected()));
}
