//! Configuration of a node: what the whole cluster shares ([`ClusterConfig`]) and what is
//! particular to one server ([`ServerConfig`]).

use crate::{
    errors::ConfigError,
    storage::{Entry, Storage},
    util::{defaults, ConfigurationId, FlexibleQuorum, NodeId},
    OmniPaxos,
};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

fn invalid<S: Into<String>>(msg: S) -> Result<(), ConfigError> {
    Err(ConfigError::InvalidConfig(msg.into()))
}

/// The configuration of one node: its cluster and itself.
///
/// With the feature `serde` (which `toml_config` turns on) it implements `Deserialize` as in
/// omnipaxos 0.2.4, to embed in your own configuration struct: every key is optional and takes
/// its default, and unknown keys are ignored (they may be your application's). Validation
/// happens in [`build`](Self::build) (or call [`validate`](Self::validate)).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(default))]
pub struct OmniPaxosConfig {
    /// Settings every server of the configuration shares.
    pub cluster_config: ClusterConfig,
    /// Settings of this server.
    pub server_config: ServerConfig,
}

impl OmniPaxosConfig {
    /// Checks both parts and that this server is one of the cluster's nodes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.cluster_config.validate()?;
        self.server_config.validate()?;
        if !self.cluster_config.nodes.contains(&self.server_config.pid) {
            return invalid(format!(
                "server_config.pid: {} is not one of cluster_config.nodes {:?}",
                self.server_config.pid, self.cluster_config.nodes
            ));
        }
        Ok(())
    }

    /// Validates the configuration and builds the node on `storage`.
    ///
    /// If `storage` holds the state of an earlier run (a promise), the node recovers from it:
    /// it starts in the recover phase and asks its peers to bring it up to date.
    pub fn build<T: Entry, B: Storage<T>>(
        self,
        storage: B,
    ) -> Result<OmniPaxos<T, B>, ConfigError> {
        self.validate()?;
        OmniPaxos::new(self, storage)
    }
}

/// Settings every server of a configuration shares.
///
/// With the feature `serde` it is `Serialize` and `Deserialize` (it travels in stop signs);
/// missing keys take their defaults and unknown keys are ignored, as in omnipaxos 0.2.4 with
/// `toml_config`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(default))]
pub struct ClusterConfig {
    /// Identifies this configuration; not 0, and larger than the one it replaces.
    pub configuration_id: ConfigurationId,
    /// The pids of all servers of the configuration, this one included. No duplicates, no 0.
    pub nodes: Vec<NodeId>,
    /// Quorum sizes; a majority for both phases when `None`.
    pub flexible_quorum: Option<FlexibleQuorum>,
}

impl ClusterConfig {
    /// Checks the id, the node list and the quorum sizes. A single node is a valid cluster.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.configuration_id == 0 {
            return invalid("cluster_config.configuration_id must not be 0");
        }
        let n = self.nodes.len();
        if n == 0 {
            return invalid("cluster_config.nodes must not be empty");
        }
        if self.nodes.contains(&0) {
            return invalid("cluster_config.nodes must not contain pid 0");
        }
        let mut seen = HashSet::with_capacity(n);
        if let Some(dup) = self.nodes.iter().find(|p| !seen.insert(**p)) {
            return invalid(format!(
                "cluster_config.nodes contains pid {dup} more than once"
            ));
        }
        if let Some(FlexibleQuorum {
            read_quorum_size,
            write_quorum_size,
        }) = self.flexible_quorum
        {
            if !(1..=n).contains(&read_quorum_size) {
                return invalid(format!(
                    "cluster_config.flexible_quorum.read_quorum_size must be between 1 and {n} (the number of nodes), got {read_quorum_size}"
                ));
            }
            if !(1..=n).contains(&write_quorum_size) {
                return invalid(format!(
                    "cluster_config.flexible_quorum.write_quorum_size must be between 1 and {n} (the number of nodes), got {write_quorum_size}"
                ));
            }
            if read_quorum_size + write_quorum_size <= n {
                return invalid(format!(
                    "cluster_config.flexible_quorum: read_quorum_size + write_quorum_size ({read_quorum_size} + {write_quorum_size}) must exceed the number of nodes ({n}) so that the quorums overlap"
                ));
            }
        }
        Ok(())
    }

    /// Validates and builds the node of this configuration that runs as `server_config.pid`.
    ///
    /// This is how a server starts in a new configuration after a reconfiguration.
    pub fn build_for_server<T: Entry, B: Storage<T>>(
        self,
        server_config: ServerConfig,
        storage: B,
    ) -> Result<OmniPaxos<T, B>, ConfigError> {
        OmniPaxosConfig {
            cluster_config: self,
            server_config,
        }
        .build(storage)
    }
}

/// Settings of one server. All durations are in ticks: calls to [`OmniPaxos::tick`].
///
/// The fields are omnipaxos 0.2.4's, the two logging fields with the feature `logging` only (as
/// there), so struct literals written for 0.2.4 compile. With the feature `serde` (which
/// `toml_config` turns on) it implements `Deserialize` as in 0.2.4: every key optional, unknown
/// keys ignored, `custom_logger` never read.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize), serde(default))]
pub struct ServerConfig {
    /// This server's pid; not 0, one of the cluster's nodes.
    pub pid: NodeId,
    /// Ticks per heartbeat round. A leader that stops answering is replaced within a few
    /// rounds (see the guide for the arithmetic). Not 0.
    pub election_tick_timeout: u64,
    /// Ticks before a message that may have been lost is sent again. Not 0.
    pub resend_message_tick_timeout: u64,
    /// Maximum log entries in one message, and in flight to one follower before it answers.
    /// Not 0.
    pub buffer_size: usize,
    /// Entries collected before they are replicated together. With 1 nothing waits: what was
    /// appended since the last take of the outgoing messages goes at that take. Not 0.
    pub batch_size: usize,
    /// Ticks after which a partial batch is replicated anyway. Not 0.
    pub flush_batch_tick_timeout: u64,
    /// Among servers competing for leadership in the same round, the higher priority wins.
    pub leader_priority: u32,
    /// When set and `custom_logger` is not, this node's events are written to this file (and
    /// to standard error) by [`crate::utils::logger::create_logger`]. When neither is set they
    /// go to your `tracing` subscriber only (omnipaxos 0.2.4 wrote `logs/paxos_<pid>.log`).
    #[cfg(feature = "logging")]
    pub logger_file_path: Option<String>,
    /// The `slog` logger that receives this node's events (see [`crate::utils::logger`]).
    #[cfg(feature = "logging")]
    #[cfg_attr(feature = "serde", serde(skip))]
    pub custom_logger: Option<slog::Logger>,
}

/// All fields compared, except `custom_logger` (loggers have no equality): two configurations
/// that differ only in their logger are equal.
impl PartialEq for ServerConfig {
    fn eq(&self, other: &Self) -> bool {
        let same = self.pid == other.pid
            && self.election_tick_timeout == other.election_tick_timeout
            && self.resend_message_tick_timeout == other.resend_message_tick_timeout
            && self.buffer_size == other.buffer_size
            && self.batch_size == other.batch_size
            && self.flush_batch_tick_timeout == other.flush_batch_tick_timeout
            && self.leader_priority == other.leader_priority;
        #[cfg(feature = "logging")]
        let same = same && self.logger_file_path == other.logger_file_path;
        same
    }
}

impl Eq for ServerConfig {}

impl ServerConfig {
    /// Checks the pid and that no timeout or size is 0.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.pid == 0 {
            return invalid("server_config.pid must not be 0");
        }
        let zero_checks = [
            ("election_tick_timeout", self.election_tick_timeout == 0),
            (
                "resend_message_tick_timeout",
                self.resend_message_tick_timeout == 0,
            ),
            (
                "flush_batch_tick_timeout",
                self.flush_batch_tick_timeout == 0,
            ),
            ("buffer_size", self.buffer_size == 0),
            ("batch_size", self.batch_size == 0),
        ];
        for (field, is_zero) in zero_checks {
            if is_zero {
                return invalid(format!("server_config.{field} must be greater than 0"));
            }
        }
        Ok(())
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            pid: 0,
            election_tick_timeout: defaults::ELECTION_TIMEOUT,
            resend_message_tick_timeout: defaults::RESEND_MESSAGE_TIMEOUT,
            buffer_size: defaults::BUFFER_SIZE,
            batch_size: defaults::BATCH_SIZE,
            flush_batch_tick_timeout: defaults::FLUSH_BATCH_TIMEOUT,
            leader_priority: 0,
            #[cfg(feature = "logging")]
            logger_file_path: None,
            #[cfg(feature = "logging")]
            custom_logger: None,
        }
    }
}
