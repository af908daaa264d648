//! Loading an [`OmniPaxosConfig`] from TOML (feature `toml_config`).
//!
//! ```toml
//! [cluster_config]
//! configuration_id = 1
//! nodes = [1, 2, 3]
//! flexible_quorum = { read_quorum_size = 2, write_quorum_size = 2 }
//!
//! [server_config]
//! pid = 2
//! election_tick_timeout = 5
//! ```
//!
//! Every key is optional and takes its default. A value of the wrong type or out of range is an
//! error that names the key as `table.key` and gives its line.
//!
//! Unknown keys: the file may be shared with your application, so other top-level keys and tables
//! are yours and ignored. Inside `[cluster_config]` and `[server_config]` an unknown key is an
//! error (a misspelt timeout would otherwise silently keep its default), except with the
//! `_lenient` loaders, which ignore unknown keys everywhere as omnipaxos 0.2.4 did.

use crate::{
    errors::{ConfigError, ReadFileError, TomlError},
    util::FlexibleQuorum,
    ClusterConfig, OmniPaxosConfig, ServerConfig,
};
use toml::{Table, Value};

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Parse(TomlError::new(Some(key.to_string()), message.into()))
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Float(f) => format!("the float {f}"),
        Value::Boolean(b) => format!("the boolean {b}"),
        Value::Datetime(d) => format!("the date {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// Reads a non-negative integer that fits in `T`.
fn int<T: TryFrom<i64>>(key: &str, v: &Value) -> Result<T, ConfigError> {
    match v {
        Value::Integer(i) => T::try_from(*i).map_err(|_| {
            let ty = std::any::type_name::<T>();
            err(
                key,
                format!("{i} is out of range (expected a non-negative integer that fits in {ty})"),
            )
        }),
        other => Err(err(
            key,
            format!("expected a non-negative integer, found {}", describe(other)),
        )),
    }
}

fn table<'a>(key: &str, v: &'a Value) -> Result<&'a Table, ConfigError> {
    v.as_table()
        .ok_or_else(|| err(key, format!("expected a table, found {}", describe(v))))
}

fn unknown(key: &str, expected: &[&str]) -> ConfigError {
    err(
        key,
        format!("unknown key (expected one of: {})", expected.join(", ")),
    )
}

const CLUSTER_KEYS: &[&str] = &["configuration_id", "nodes", "flexible_quorum"];
const SERVER_KEYS: &[&str] = &[
    "pid",
    "election_tick_timeout",
    "resend_message_tick_timeout",
    "buffer_size",
    "batch_size",
    "flush_batch_tick_timeout",
    "leader_priority",
    "logger_file_path",
];

/// What to do with an unknown key inside the OmniPaxos tables.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unknown {
    /// It is an error that names it.
    Reject,
    /// It is skipped (reported as a `tracing` warning with the feature `tracing`).
    Ignore,
}

impl Unknown {
    fn handle(self, key: &str, expected: &[&str]) -> Result<(), ConfigError> {
        match self {
            Unknown::Reject => Err(unknown(key, expected)),
            Unknown::Ignore => {
                #[cfg(feature = "tracing")]
                tracing::warn!(key, "omnipaxos configuration: unknown key ignored");
                Ok(())
            }
        }
    }
}

fn cluster_config(t: &Table, on_unknown: Unknown) -> Result<ClusterConfig, ConfigError> {
    let mut c = ClusterConfig::default();
    for (k, v) in t {
        let key = format!("cluster_config.{k}");
        match k.as_str() {
            "configuration_id" => c.configuration_id = int(&key, v)?,
            "nodes" => {
                let arr = v.as_array().ok_or_else(|| {
                    err(
                        &key,
                        format!("expected an array of pids, found {}", describe(v)),
                    )
                })?;
                c.nodes = arr
                    .iter()
                    .enumerate()
                    .map(|(i, p)| int(&format!("{key}[{i}]"), p))
                    .collect::<Result<_, _>>()?;
            }
            "flexible_quorum" => {
                let q = table(&key, v)?;
                let (mut read, mut write) = (None, None);
                for (qk, qv) in q {
                    let qkey = format!("{key}.{qk}");
                    match qk.as_str() {
                        "read_quorum_size" => read = Some(int(&qkey, qv)?),
                        "write_quorum_size" => write = Some(int(&qkey, qv)?),
                        _ => {
                            on_unknown.handle(&qkey, &["read_quorum_size", "write_quorum_size"])?
                        }
                    }
                }
                match (read, write) {
                    (Some(read_quorum_size), Some(write_quorum_size)) => {
                        c.flexible_quorum = Some(FlexibleQuorum {
                            read_quorum_size,
                            write_quorum_size,
                        })
                    }
                    (None, _) => {
                        return Err(err(&format!("{key}.read_quorum_size"), "missing key"))
                    }
                    (_, None) => {
                        return Err(err(&format!("{key}.write_quorum_size"), "missing key"))
                    }
                }
            }
            _ => on_unknown.handle(&key, CLUSTER_KEYS)?,
        }
    }
    Ok(c)
}

fn server_config(t: &Table, on_unknown: Unknown) -> Result<ServerConfig, ConfigError> {
    let mut s = ServerConfig::default();
    for (k, v) in t {
        let key = format!("server_config.{k}");
        match k.as_str() {
            "pid" => s.pid = int(&key, v)?,
            "election_tick_timeout" => s.election_tick_timeout = int(&key, v)?,
            "resend_message_tick_timeout" => s.resend_message_tick_timeout = int(&key, v)?,
            "buffer_size" => s.buffer_size = int(&key, v)?,
            "batch_size" => s.batch_size = int(&key, v)?,
            "flush_batch_tick_timeout" => s.flush_batch_tick_timeout = int(&key, v)?,
            "leader_priority" => s.leader_priority = int(&key, v)?,
            "logger_file_path" => {
                let path = v.as_str().ok_or_else(|| {
                    err(&key, format!("expected a string, found {}", describe(v)))
                })?;
                // Without the feature `logging` the key is read (so a 0.2.4 file still loads)
                // and has no effect, as in 0.2.4.
                #[cfg(feature = "logging")]
                {
                    s.logger_file_path = Some(path.to_string());
                }
                #[cfg(not(feature = "logging"))]
                let _ = path;
            }
            _ => on_unknown.handle(&key, SERVER_KEYS)?,
        }
    }
    Ok(s)
}

/// The 1-based line of byte offset `pos` in `text`. The end of a text that ends with a newline
/// counts as its last line, as the parser's own messages count it.
fn line_of(text: &str, pos: usize) -> usize {
    let mut pos = pos.min(text.len());
    if pos == text.len() && text.ends_with('\n') {
        pos -= 1;
    }
    text.as_bytes()[..pos]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// Where `key` (as the errors name it: `table.key`, `table.key[i]`) is in `text`, or the deepest
/// part of it that exists (e.g. the table of a missing key).
fn position_of_key(text: &str, key: &str) -> Option<std::ops::Range<usize>> {
    let doc = toml_edit::ImDocument::parse(text).ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut found: Option<std::ops::Range<usize>> = None;
    for part in key.split('.') {
        // `nodes[1]`: the key `nodes`, then element 1 of its array.
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, next)) = item.as_table_like().and_then(|t| t.get_key_value(name)) else {
            break;
        };
        found = k.span().or_else(|| next.span()).or(found);
        item = next;
        if let Some(i) = index {
            if let Some(v) = item.as_array().and_then(|a| a.get(i)) {
                found = v.span().or(found);
            }
            break;
        }
    }
    found
}

impl OmniPaxosConfig {
    /// Reads, parses and validates a TOML configuration file (see the module docs for its
    /// layout). The signature and the file format are omnipaxos 0.2.4's.
    ///
    /// Other top-level keys and tables than `[cluster_config]` and `[server_config]` are ignored:
    /// the file may hold your application's settings too. An unknown key inside those two tables
    /// is an error (use [`with_toml_lenient`](Self::with_toml_lenient) to ignore it).
    ///
    /// A file that cannot be read is a [`ConfigError::ReadFile`] whose message names it
    /// ([`ConfigError::file_path`]); a parse error ([`ConfigError::Parse`]) names the key and its
    /// line.
    pub fn with_toml(file_path: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str(&read(file_path)?)
    }

    /// As [`with_toml`](Self::with_toml), but unknown keys inside `[cluster_config]` and
    /// `[server_config]` are ignored too, as omnipaxos 0.2.4 ignored them (for a file whose
    /// OmniPaxos tables also hold your application's keys). Values of the wrong type are still
    /// errors.
    pub fn with_toml_lenient(file_path: &str) -> Result<Self, ConfigError> {
        Self::from_toml_str_lenient(&read(file_path)?)
    }

    /// Parses and validates a TOML configuration held in a string, as
    /// [`with_toml`](Self::with_toml) does a file.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Unknown::Reject)
    }

    /// Parses and validates a TOML configuration held in a string, as
    /// [`with_toml_lenient`](Self::with_toml_lenient) does a file.
    pub fn from_toml_str_lenient(text: &str) -> Result<Self, ConfigError> {
        Self::parse(text, Unknown::Ignore)
    }

    fn parse(text: &str, on_unknown: Unknown) -> Result<Self, ConfigError> {
        let root: Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigError::Parse(TomlError::from_toml(&e, line))
        })?;
        let cfg = Self::from_table(&root, on_unknown).map_err(|e| match e {
            ConfigError::Parse(t) => {
                let pos = t.key().and_then(|k| position_of_key(text, k));
                ConfigError::Parse(match pos {
                    Some(span) => t.at(line_of(text, span.start), span),
                    None => t,
                })
            }
            other => other,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn from_table(root: &Table, on_unknown: Unknown) -> Result<Self, ConfigError> {
        let mut cfg = OmniPaxosConfig::default();
        for (k, v) in root {
            match k.as_str() {
                "cluster_config" => cfg.cluster_config = cluster_config(table(k, v)?, on_unknown)?,
                "server_config" => cfg.server_config = server_config(table(k, v)?, on_unknown)?,
                // The application's own settings.
                _ => {}
            }
        }
        Ok(cfg)
    }
}

fn read(file_path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(file_path).map_err(|source| {
        ConfigError::ReadFile(ReadFileError::wrap(std::path::Path::new(file_path), source))
    })
}
