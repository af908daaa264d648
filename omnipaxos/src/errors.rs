//! Error types. Each variant says what the caller should do next.

use crate::{storage::Entry, util::NodeId, ClusterConfig};
use std::{error::Error, fmt};

/// A configuration could not be read, parsed or validated.
///
/// The variants are those of omnipaxos 0.2.4, so a `match` written for 0.2.4 (also an exhaustive
/// one) still compiles. `ReadFile` and `Parse` exist with the feature `toml_config` only.
#[derive(Debug)]
pub enum ConfigError {
    /// The configuration file could not be read. Check the path and permissions.
    ///
    /// The error's [`kind`](std::io::Error::kind) is that of the failed read, its message names
    /// the file, and [`ConfigError::file_path`] returns the path. Its inner error is a
    /// [`ReadFileError`] (`io_error.get_ref()`), and [`Error::source`] of the `ConfigError`
    /// returns the I/O error of the failed read itself.
    #[cfg(feature = "toml_config")]
    ReadFile(std::io::Error),
    /// The TOML text is malformed, or a key of `[cluster_config]` or `[server_config]` is unknown
    /// or has a value of the wrong type. The error names the key (as `table.key`) and the line.
    /// Fix the file.
    #[cfg(feature = "toml_config")]
    Parse(TomlError),
    /// A field has an invalid value; the message names the field. Fix the configuration.
    InvalidConfig(String),
}

impl ConfigError {
    /// The file a [`ConfigError::ReadFile`] could not read, when the error came from
    /// [`crate::OmniPaxosConfig::with_toml`] (`None` for other errors, and for a `ReadFile` made
    /// from a bare [`std::io::Error`]).
    #[cfg(feature = "toml_config")]
    pub fn file_path(&self) -> Option<&std::path::Path> {
        match self {
            ConfigError::ReadFile(e) => e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<ReadFileError>())
                .map(ReadFileError::path),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // The error made by `with_toml` already says which file could not be read.
            #[cfg(feature = "toml_config")]
            ConfigError::ReadFile(e) => match e.get_ref().map(|i| i.is::<ReadFileError>()) {
                Some(true) => write!(f, "{e}"),
                _ => write!(f, "cannot read configuration file: {e}"),
            },
            #[cfg(feature = "toml_config")]
            ConfigError::Parse(e) => write!(f, "invalid TOML configuration: {e}"),
            ConfigError::InvalidConfig(s) => write!(f, "invalid configuration: {s}"),
        }
    }
}

impl Error for ConfigError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // `io::Error::source` skips its inner error (our `ReadFileError`, whose message is
            // already in ours) and returns the I/O error of the failed read.
            #[cfg(feature = "toml_config")]
            ConfigError::ReadFile(e) => match e.get_ref() {
                Some(inner) if inner.is::<ReadFileError>() => e.source(),
                _ => Some(e),
            },
            #[cfg(feature = "toml_config")]
            ConfigError::Parse(e) => Some(e),
            ConfigError::InvalidConfig(_) => None,
        }
    }
}

/// Two errors are equal when they are the same variant with equal contents; two I/O errors
/// (which have no equality of their own) when they have the same kind and message.
impl PartialEq for ConfigError {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            #[cfg(feature = "toml_config")]
            (ConfigError::ReadFile(a), ConfigError::ReadFile(b)) => {
                a.kind() == b.kind() && a.to_string() == b.to_string()
            }
            #[cfg(feature = "toml_config")]
            (ConfigError::Parse(a), ConfigError::Parse(b)) => a == b,
            (ConfigError::InvalidConfig(a), ConfigError::InvalidConfig(b)) => a == b,
            #[cfg(feature = "toml_config")]
            _ => false,
        }
    }
}

/// A bare I/O error, as in omnipaxos 0.2.4 (so `?` on a read in your own loader works). It names
/// no file; [`crate::OmniPaxosConfig::with_toml`] makes errors that do.
#[cfg(feature = "toml_config")]
impl From<std::io::Error> for ConfigError {
    fn from(e: std::io::Error) -> Self {
        ConfigError::ReadFile(e)
    }
}

/// A parse error of the `toml` crate (for `?` on `toml::from_str` in your own loader, as with
/// omnipaxos 0.2.4), with its message and position.
#[cfg(feature = "toml_config")]
impl From<toml::de::Error> for ConfigError {
    fn from(e: toml::de::Error) -> Self {
        ConfigError::Parse(TomlError::from_toml(&e, None))
    }
}

/// The inner error of a [`ConfigError::ReadFile`] made by
/// [`crate::OmniPaxosConfig::with_toml`]: the file, and why it could not be read.
#[cfg(feature = "toml_config")]
#[derive(Debug)]
pub struct ReadFileError {
    path: std::path::PathBuf,
    source: std::io::Error,
}

#[cfg(feature = "toml_config")]
impl ReadFileError {
    /// Wraps the error of reading `path` in an [`std::io::Error`] of the same kind whose message
    /// names the file.
    pub(crate) fn wrap(path: &std::path::Path, source: std::io::Error) -> std::io::Error {
        std::io::Error::new(
            source.kind(),
            ReadFileError {
                path: path.to_path_buf(),
                source,
            },
        )
    }

    /// The file that could not be read, as given to [`crate::OmniPaxosConfig::with_toml`].
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Why it could not be read: the error of the read itself.
    pub fn io_error(&self) -> &std::io::Error {
        &self.source
    }
}

#[cfg(feature = "toml_config")]
impl fmt::Display for ReadFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot read configuration file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

#[cfg(feature = "toml_config")]
impl Error for ReadFileError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

/// What is wrong in a TOML configuration, and where.
///
/// It offers what omnipaxos 0.2.4's `toml::de::Error` offered ([`message`](Self::message),
/// [`span`](Self::span), `Display`, `Error`), and also the key and the line.
#[cfg(feature = "toml_config")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    key: Option<String>,
    message: String,
    line: Option<usize>,
    span: Option<std::ops::Range<usize>>,
}

#[cfg(feature = "toml_config")]
impl TomlError {
    pub(crate) fn new(key: Option<String>, message: String) -> Self {
        Self {
            key,
            message,
            line: None,
            span: None,
        }
    }

    /// A syntax or type error of the `toml` crate; `line` if the caller knows it (the parser's
    /// message already shows it).
    pub(crate) fn from_toml(e: &toml::de::Error, line: Option<usize>) -> Self {
        Self {
            key: None,
            message: e.to_string(),
            line,
            span: e.span(),
        }
    }

    /// Sets the position (1-based line, byte range) of the error and appends ` (line N)` to the
    /// message.
    pub(crate) fn at(mut self, line: usize, span: std::ops::Range<usize>) -> Self {
        self.message = format!("{} (line {line})", self.message);
        self.line = Some(line);
        self.span = Some(span);
        self
    }

    /// The line (1-based) of the file the error is on: the line of the offending key, or of the
    /// nearest enclosing table when the error is about a key that is missing.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The byte range of the text the error is about (the key, or what the parser stopped at),
    /// as `toml::de::Error::span` gives it.
    pub fn span(&self) -> Option<std::ops::Range<usize>> {
        self.span.clone()
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
///
/// Not `#[non_exhaustive]`: these are omnipaxos 0.2.4's variants, and an exhaustive `match`
/// written for 0.2.4 keeps compiling. A new reason to refuse a proposal would be a breaking
/// release.
#[derive(Debug, PartialEq)]
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
///
/// `#[non_exhaustive]`: match it with a `_ =>` arm. (omnipaxos 0.2.4 had the first four variants
/// only; [`PendingPrefix`](Self::PendingPrefix) is new, so an exhaustive 0.2.4 `match` needs that
/// arm anyway, and further reasons will not break it again.)
///
/// ```
/// # use omnipaxos::CompactionErr;
/// fn what_to_do(e: CompactionErr) -> &'static str {
///     match e {
///         CompactionErr::UndecidedIndex(_) => "compact less",
///         CompactionErr::TrimmedIndex(_) => "nothing to do",
///         CompactionErr::NotAllDecided(_) => "trim less",
///         CompactionErr::NotCurrentLeader(_) => "trim on the leader",
///         CompactionErr::PendingPrefix(_) => "compact later",
///         _ => "see the error's message",
///     }
/// }
/// # assert_eq!(what_to_do(CompactionErr::PendingPrefix(3)), "compact later");
/// ```
///
/// Without the last arm, outside this crate, it does not compile:
///
/// ```compile_fail
/// # use omnipaxos::CompactionErr;
/// fn what_to_do(e: CompactionErr) -> &'static str {
///     match e {
///         CompactionErr::UndecidedIndex(_) => "compact less",
///         CompactionErr::TrimmedIndex(_) => "nothing to do",
///         CompactionErr::NotAllDecided(_) => "trim less",
///         CompactionErr::NotCurrentLeader(_) => "trim on the leader",
///         CompactionErr::PendingPrefix(_) => "compact later",
///         // error[E0004]: non-exhaustive patterns: `_` not covered
///     }
/// }
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
    /// The log below this (absolute) index is still being pulled from other servers (this server
    /// joined by a reconfiguration and is migrating the previous configuration's log): compact
    /// later, once [`crate::OmniPaxos::get_migration_status`] says the pull is done.
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
            CompactionErr::PendingPrefix(i) => write!(
                f,
                "the log below index {i} is still being pulled from other servers; compact later"
            ),
        }
    }
}

impl Error for CompactionErr {}
