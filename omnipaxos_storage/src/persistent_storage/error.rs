//! The errors of [`PersistentStorage`](super::PersistentStorage): one enum for opening, one for
//! reads and writes.

use crate::InvalidOpError;
use omnipaxos::ballot_leader_election::Ballot;
use std::{fmt, io, path::PathBuf};

/// Why [`PersistentStorage::try_open`](super::PersistentStorage::try_open) or
/// [`try_new`](super::PersistentStorage::try_new) failed (`open` and `new` panic with it). Opening never panics and never returns a store
/// that lost data it had acknowledged: damaged or foreign data gives one of these.
#[derive(Debug)]
#[non_exhaustive]
pub enum PersistentStorageError {
    /// `try_new`: the directory exists and is not empty. Use `open` to reopen it, or pick another
    /// path.
    AlreadyExists {
        /// The storage directory.
        path: PathBuf,
    },
    /// The directory is not empty but holds no anchor file: it is not a storage, or its anchor
    /// was deleted. Nothing was changed; restore the file from a backup or move the
    /// directory away to start the node fresh (it then rejoins with an empty log).
    NotAStorage {
        /// The storage directory.
        path: PathBuf,
    },
    /// A file of the storage fails its checks (bad magic, checksum, length, order of records),
    /// or sled reports its database file as corrupted. The data is damaged; restore from a
    /// backup or rebuild the node from its peers.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The log holds fewer records than the checkpoint says were written: a segment file or a
    /// whole log generation was truncated or deleted. Restore from a backup or rebuild the node from its peers.
    LogTruncated {
        /// The storage directory.
        path: PathBuf,
        /// Number of log records the state refers to.
        expected: u64,
        /// Number of intact records found.
        found: u64,
    },
    /// The files of the directory do not belong together (a database, log or anchor from
    /// another storage, e.g. another node's). Nothing was changed; put the right files back.
    Foreign {
        /// The storage directory.
        path: PathBuf,
        /// Which part does not match.
        what: &'static str,
    },
    /// The storage was written with another entry or snapshot type (compared by
    /// `std::any::type_name`). Open it with the type it was created with.
    EntryTypeMismatch {
        /// The types the storage holds, `Entry / Snapshot`.
        stored: String,
        /// The types it was opened with.
        expected: String,
    },
    /// The sled database holds no checkpoint although the anchor says the storage was
    /// created: the database was deleted or overwritten (sled 0.34 reopens an overwritten file
    /// as an empty database), and with it the snapshot. Restore from a backup or rebuild the
    /// node from its peers.
    StateLost {
        /// The storage directory.
        path: PathBuf,
    },
    /// The promise or accepted round the log holds is not one the anchor file recorded: the
    /// log lost the write that changed them (its end was cut off). Opening it could break
    /// Paxos safety. Restore from a backup or rebuild the node from its peers.
    StateRolledBack {
        /// The (promise, accepted round) the anchor allows (before and after its last change).
        allowed: Box<[(Option<Ballot>, Option<Ballot>); 2]>,
        /// The (promise, accepted round) found in the log.
        found: Box<(Option<Ballot>, Option<Ballot>)>,
    },
    /// The directory holds a storage in another on-disk format than this version reads
    /// (`found`: e.g. format version 1 of the omnipaxos_storage 0.3 development versions, or
    /// a RocksDB directory of omnipaxos_storage 0.2). Nothing was read or changed. Open it with
    /// the version that wrote it, or move it away and start the node fresh (it then rejoins
    /// with an empty log).
    UnsupportedFormat {
        /// The storage directory.
        path: PathBuf,
        /// What the directory holds.
        found: String,
        /// The format version this version writes (it also reads versions 2 and up, which it
        /// upgrades to this one when it opens them).
        supported: u32,
    },
    /// The configuration cannot be used; the message says which setting.
    InvalidConfig(String),
    /// An I/O operation failed (permissions, disk full, ...). Fix the cause and retry.
    Io {
        /// What the storage was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// sled failed to open or read its database (also: the database is in use by another
    /// storage instance or process). Fix the cause and retry.
    Database(sled::Error),
}

impl fmt::Display for PersistentStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use PersistentStorageError::*;
        match self {
            AlreadyExists { path } => write!(f, "storage directory {path:?} already has data"),
            NotAStorage { path } => write!(
                f,
                "{path:?} is not empty but has no storage anchor file (not a storage, or its anchor was deleted)"
            ),
            Corrupt { path, reason } => write!(f, "damaged storage file {path:?}: {reason}"),
            LogTruncated {
                path,
                expected,
                found,
            } => write!(
                f,
                "log of storage {path:?} is truncated: {found} intact records, {expected} expected"
            ),
            Foreign { path, what } => {
                write!(f, "storage {path:?} mixes files of different storages: {what}")
            }
            EntryTypeMismatch { stored, expected } => write!(
                f,
                "storage holds entries of type {stored}, opened as {expected}"
            ),
            StateLost { path } => write!(
                f,
                "the database of storage {path:?} lost its state (deleted or overwritten)"
            ),
            StateRolledBack { allowed, found } => write!(
                f,
                "the database went back to an older state: (promise, accepted round) is {found:?}, the anchor allows {allowed:?}"
            ),
            UnsupportedFormat {
                path,
                found,
                supported,
            } => write!(
                f,
                "storage {path:?} holds {found}; this version of omnipaxos_storage reads format versions 2 to {supported}"
            ),
            InvalidConfig(m) => write!(f, "invalid storage configuration: {m}"),
            Io { context, source } => write!(f, "{context}: {source}"),
            Database(e) => write!(f, "sled: {e}"),
        }
    }
}

impl std::error::Error for PersistentStorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PersistentStorageError::Io { source, .. } => Some(source),
            PersistentStorageError::Database(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a read or a write of a [`PersistentStorage`](super::PersistentStorage) failed. A failed
/// `write_atomically` applied nothing, except after [`Poisoned`](Self::Poisoned)-causing
/// failures (see there).
#[derive(Debug)]
#[non_exhaustive]
pub enum StorageError {
    /// The batch does not fit the log; nothing was written. A bug in the caller.
    InvalidOp(InvalidOpError),
    /// An entry or snapshot is too large: its encoding plus 20 bytes of header exceeds the
    /// commitlog's `message_max_bytes` (or the segment size). Nothing was written; raise the
    /// limits in the `LogOptions`.
    TooLarge {
        /// Encoded size with header, in bytes.
        bytes: usize,
        /// The largest size allowed, in bytes.
        max: usize,
    },
    /// An entry, snapshot or stop sign could not be encoded or decoded with bincode.
    Codec(String),
    /// Stored data fails its checksum or does not decode: the files were damaged after opening.
    Corrupt(String),
    /// An I/O operation failed.
    Io {
        /// What the storage was doing.
        context: String,
        /// The underlying error.
        source: io::Error,
    },
    /// sled failed.
    Database(sled::Error),
    /// An earlier write failed while the log was being changed, so the state on
    /// disk is either the one before or the one after that write. The storage refuses further
    /// writes: drop it and [`open`](super::PersistentStorage::open) the directory again, which
    /// finds out which one it is.
    Poisoned,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::InvalidOp(e) => write!(f, "{e}"),
            StorageError::TooLarge { bytes, max } => write!(
                f,
                "a record of {bytes} bytes exceeds the commitlog limit of {max} bytes"
            ),
            StorageError::Codec(m) => write!(f, "bincode: {m}"),
            StorageError::Corrupt(m) => write!(f, "damaged data: {m}"),
            StorageError::Io { context, source } => write!(f, "{context}: {source}"),
            StorageError::Database(e) => write!(f, "sled: {e}"),
            StorageError::Poisoned => write!(
                f,
                "an earlier write failed midway; reopen the storage to continue"
            ),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::InvalidOp(e) => Some(e),
            StorageError::Io { source, .. } => Some(source),
            StorageError::Database(e) => Some(e),
            _ => None,
        }
    }
}

impl From<InvalidOpError> for StorageError {
    fn from(e: InvalidOpError) -> Self {
        StorageError::InvalidOp(e)
    }
}

impl From<sled::Error> for StorageError {
    fn from(e: sled::Error) -> Self {
        StorageError::Database(e)
    }
}

/// Builds an `Io` error with its context.
pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Io { context, source }
}

/// Builds an `Io` open error with its context.
pub(crate) fn open_io(
    context: impl Into<String>,
) -> impl FnOnce(io::Error) -> PersistentStorageError {
    let context = context.into();
    move |source| PersistentStorageError::Io { context, source }
}
