//! Storage backends for OmniPaxos.
//!
//! * [`MemoryStorage`]: everything in memory. For tests, simulations, and nodes that rejoin
//!   with an empty log after a restart.
//! * `PersistentStorage` (feature `persistent_storage`, on by default): entries and state
//!   changes in a `commitlog` log with one sync per write, checkpoints and snapshots in
//!   `sled`; atomic and durable writes that survive a crash at any instant (see
//!   `persistent_storage`).
//! * `conformance` (feature `conformance`): the test suite every backend should pass,
//!   including your own.
//!
//! Both backends follow the contract of [`omnipaxos::storage::Storage`]: absolute indices,
//! `None` promise and accepted round when fresh, and `write_atomically` that applies all
//! operations or none. An operation that does not fit the log (an `AppendOnPrefix` outside the
//! stored entries) is refused with an [`InvalidOpError`] before anything of its batch is
//! applied.
//!
//! ## Example
//!
//! A single-server cluster on persistent storage, stopped and started again on the same
//! directory: the node recovers what it decided.
//!
//! ```
//! use omnipaxos::storage::{Entry, NoSnapshot};
//! use omnipaxos::{ClusterConfig, OmniPaxosConfig, ServerConfig};
//! use omnipaxos_storage::{PersistentStorage, PersistentStorageConfig};
//! use serde::{Deserialize, Serialize};
//!
//! // `PersistentStorage` encodes entries with serde.
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Put {
//!     key: String,
//!     value: u64,
//! }
//!
//! // What `#[derive(Entry)]` (feature `macros` of `omnipaxos`) writes for you.
//! impl Entry for Put {
//!     type Snapshot = NoSnapshot;
//! }
//!
//! let dir = tempfile::tempdir()?;
//! let storage_config = PersistentStorageConfig::with_path(dir.path().join("server-1"));
//! let config = OmniPaxosConfig {
//!     cluster_config: ClusterConfig { configuration_id: 1, nodes: vec![1], ..Default::default() },
//!     server_config: ServerConfig { pid: 1, ..Default::default() },
//! };
//!
//! let storage: PersistentStorage<Put> = PersistentStorage::try_open(storage_config.clone())?;
//! let mut node = config.clone().build(storage)?;
//! node.append(Put { key: "a".into(), value: 1 }).expect("not reconfiguring");
//! while node.get_decided_idx() < 1 {
//!     node.tick(); // a single server is its own quorum: no messages to move
//!     let _ = node.outgoing_messages();
//! }
//! drop(node); // the process stops
//!
//! let storage: PersistentStorage<Put> = PersistentStorage::try_open(storage_config)?;
//! let node = config.build(storage)?;
//! assert_eq!(node.get_decided_idx(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Features
//!
//! * `persistent_storage` (default): [`PersistentStorage`] and its dependencies (commitlog,
//!   sled). Named as in omnipaxos_storage 0.2.4; without it the crate has `MemoryStorage`
//!   only.
//! * `conformance`: the module `conformance` and the macro `storage_conformance_tests!`, the
//!   test suite for storage backends. Enable it in the `[dev-dependencies]` of a crate that
//!   writes its own backend.
// docs.rs builds with nightly and `--cfg docsrs`: mark feature-gated items with their feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

mod chunked_log;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod memory_storage;
#[cfg(feature = "persistent_storage")]
#[cfg_attr(docsrs, doc(cfg(feature = "persistent_storage")))]
pub mod persistent_storage;

pub use memory_storage::MemoryStorage;
#[cfg(feature = "persistent_storage")]
pub use persistent_storage::{PersistentStorage, PersistentStorageConfig};

use omnipaxos::storage::{Entry, StorageOp};
use std::fmt;

/// A storage operation that does not fit the log. Returned (boxed) by `write_atomically` of
/// the backends in this crate; nothing of the batch was applied. It points at a bug in the
/// caller.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidOpError {
    /// `AppendOnPrefix(from, ..)` with `from` outside `first..=end`: the entries below `first`
    /// were trimmed, and appending past `end` would leave a gap.
    PrefixOutOfRange {
        /// The requested absolute index.
        from: usize,
        /// Absolute index of the first stored entry (the trimmed index).
        first: usize,
        /// Absolute index after the last stored entry.
        end: usize,
    },
}

impl fmt::Display for InvalidOpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidOpError::PrefixOutOfRange { from, first, end } => write!(
                f,
                "AppendOnPrefix({from}) outside the stored entries {first}..{end}"
            ),
        }
    }
}

impl std::error::Error for InvalidOpError {}

/// Checks `ops` against a log that stores the absolute entries `first..end`, as they would be
/// applied in order.
pub(crate) fn check_ops<T: Entry>(
    mut first: usize,
    mut end: usize,
    ops: &[StorageOp<T>],
) -> Result<(), InvalidOpError> {
    for op in ops {
        match op {
            StorageOp::AppendEntry(_) => end += 1,
            StorageOp::AppendEntries(v) => end += v.len(),
            StorageOp::AppendOnPrefix(from, v) => {
                if *from < first || *from > end {
                    return Err(InvalidOpError::PrefixOutOfRange {
                        from: *from,
                        first,
                        end,
                    });
                }
                end = from + v.len();
            }
            StorageOp::Trim(idx) if *idx > first => {
                first = *idx;
                end = end.max(*idx);
            }
            _ => {}
        }
    }
    Ok(())
}
