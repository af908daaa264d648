//! Error types. Each variant says what the caller should do next.

use crate::{storage::Entry, util::NodeId, ClusterConfig};
use std::{error::Error, fmt};

/// A configuration could not be read, parsed or validated.
#[derive(Debug)]
pub enum ConfigError {
    /// The configuration file could not be read. Check the path and permissions.
    #[cfg(feature = "toml_config")]
    ReadFile {
        /// The file that could not be read, as given to [`crate::OmniPaxosConfig::with_toml`].
        path: std::path::PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The TOML text is malformed, has an unknown key, or a value of the wrong type. The error
    /// names the key (as `table.key`) and the line. Fix the file.
    #[cfg(feature = "toml_config")]
    Parse(TomlError),
    /// A field has an invalid value; the message names the field. Fix the configuration.
    InvalidConfig(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            #[cfg(feature = "toml_config")]
            ConfigError::ReadFile { path, source } => write!(
                f,
                "cannot read configuration file {}: {source}",
                path.display()
            ),
            #[cfg(feature = "toml_config")]
            ConfigError::Parse(e) => write!(f, "invalid TOML configuration: {e}"),
            ConfigError::InvalidConfig(s) => write!(f, "invalid configuration: {s}"),
        }
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            #[cfg(feature = "toml_config")]
            ConfigError::ReadFile { source, .. } => Some(source),
            #[cfg(feature = "toml_config")]
            ConfigError::Parse(e) => Some(e),
            ConfigError::InvalidConfig(_) => None,
        }
    }
}

/// What is wrong in a TOML configuration, and where.
#[cfg(feature = "toml_config")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    key: Option<String>,
    message: String,
    line: Option<usize>,
}

#[cfg(feature = "toml_config")]
impl TomlError {
    pub(crate) fn new(key: Option<String>, message: String) -> Self {
        Self {
            key,
            message,
            line: None,
        }
    }

    /// Sets the line (1-based) the error is on and appends ` (line N)` to the message.
    pub(crate) fn at_line(mut self, line: usize) -> Self {
        self.message = format!("{} (line {line})", self.message);
        self.line = Some(line);
        self
    }

    /// Records the line of a syntax error, whose message from the parser already shows it.
    pub(crate) fn with_line(mut self, line: Option<usize>) -> Self {
        self.line = line;
        self
    }

    /// The line (1-based) of the file the error is on: the line of the offending key, or of the
    /// nearest enclosing table when the error is about a key that is missing.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The offending key as `table.key` (e.g. `server_config.pid`), when the error is about one.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// What is wrong, in words, ending with the line (e.g. `... (line 8)`) when it is known.
    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(feature = "toml_config")]
impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(k) => write!(f, "key `{k}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[cfg(feature = "toml_config")]
impl Error for TomlError {}

/// An append or a reconfiguration was refused; the proposal is handed back unchanged.
#[derive(Debug)]
pub enum ProposeErr<T: Entry> {
    /// The configuration is being stopped by a reconfiguration: nothing more can be appended to
    /// it. Append the entry to the next configuration's instance instead.
    PendingReconfigEntry(T),
    /// A reconfiguration is already pending in this configuration. Wait for
    /// [`crate::OmniPaxos::is_reconfigured`] and reconfigure from the new configuration.
    PendingReconfigConfig(ClusterConfig, Option<Vec<u8>>),
    /// The proposed configuration is invalid (see the error). Fix it and propose again.
    ConfigError(ConfigError, ClusterConfig, Option<Vec<u8>>),
}

impl<T: Entry> fmt::Display for ProposeErr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeErr::PendingReconfigEntry(_) => {
                f.write_str("the configuration is stopped by a reconfiguration; append to the next configuration")
            }
            ProposeErr::PendingReconfigConfig(c, _) => write!(
                f,
                "a reconfiguration is already pending; cannot also reconfigure to configuration {}",
                c.configuration_id
            ),
            ProposeErr::ConfigError(e, _, _) => write!(f, "invalid new configuration: {e}"),
        }
    }
}

impl<T: Entry> Error for ProposeErr<T> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            ProposeErr::ConfigError(e, _, _) => Some(e),
            _ => None,
        }
    }
}

/// A trim or snapshot was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CompactionErr {
    /// The index is not decided yet; the value is the current decided index. Compact at most
    /// up to it.
    UndecidedIndex(usize),
    /// The index is already compacted; the value is the current compacted index. Nothing to do.
    TrimmedIndex(usize),
    /// Not every server has accepted up to the index; the value is the index all have accepted.
    /// Trim at most up to it, or try again later.
    NotAllDecided(usize),
    /// Only the leader can trim; the value is the leader's pid (0 if none is known). Call trim
    /// on the leader.
    NotCurrentLeader(NodeId),
    /// The log below this index is still being pulled from other servers (this server joined
    /// the configuration): nothing can be compacted until it is here. Compact later (see
    /// `OmniPaxos::get_migration_status`).
    PendingPrefix(usize),
}

impl fmt::Display for CompactionErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompactionErr::UndecidedIndex(d) => {
                write!(f, "index is not decided yet (decided index is {d})")
            }
            CompactionErr::TrimmedIndex(c) => {
                write!(f, "index is already compacted (compacted index is {c})")
            }
            CompactionErr::NotAllDecided(a) => {
                write!(
                    f,
                    "not all servers have accepted the index yet (all have accepted up to {a})"
                )
            }
            CompactionErr::NotCurrentLeader(l) => {
                write!(f, "only the leader can trim (current leader: {l})")
            }
            CompactionErr::PendingPrefix(p) => write!(
                f,
                "the log below {p} is still being pulled from other servers; compact later"
            ),
        }
    }
}

impl Error for CompactionErr {}
