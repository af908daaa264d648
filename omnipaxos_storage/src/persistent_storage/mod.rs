//! A storage backend that survives crashes: entries and state changes in a [`commitlog`] log,
//! snapshots and checkpoints of the state in a [`sled`] database.
//!
//! ```no_run
//! use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
//! # use omnipaxos::storage::NoSnapshot;
//! # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
//! # struct KeyValue { key: String, value: u64 }
//! # impl omnipaxos::storage::Entry for KeyValue { type Snapshot = NoSnapshot; }
//!
//! let mut config = PersistentStorageConfig::default();
//! config.set_path("/var/lib/my_service/omnipaxos");
//! // Creates the directory, or reopens it after a restart or crash.
//! let storage: PersistentStorage<KeyValue> = PersistentStorage::try_open(config)?;
//! # Ok::<(), omnipaxos_storage::persistent_storage::PersistentStorageError>(())
//! ```
//!
//! [`PersistentStorage::open`] does the same and panics (naming the path and the cause) when
//! the storage cannot be opened, as in omnipaxos_storage 0.2.4.
//!
//! Build the node with it (`OmniPaxosConfig::build(storage)`); after a crash, open the same
//! directory again and build the node with that: it recovers from what the storage holds.
//!
//! # On-disk layout (format version 4)
//!
//! ```text
//! <path>/anchor                    format version, identity, entry type names,
//!                                  last promise/accepted round (CRC)
//! <path>/db/                       sled: key "checkpoint" (the state at a point of the log,
//!                                  CRC), keys "snp/<write>" (snapshot bytes)
//! <path>/log-<gen>/                commitlog generation <gen> (20 digits):
//!        <base>.log, <base>.index    segments and their indexes, as commitlog writes them
//! ```
//!
//! * **log**: every record starts with a kind byte. A generation starts with its *base group*:
//!   a header record (magic, storage id, generation), the live entries copied from the
//!   previous generation, and a state record holding the whole state. After it, each
//!   [`write_atomically`](Storage::write_atomically) appends one **group**: its entries
//!   (bincode with variable-length integers: 9 bytes for an entry of 8 bytes in a `Vec<u8>`;
//!   format versions 2 and 3, which are read too, used fixed-size ones), all in one record
//!   (the entries, a table of where each ends, and their count; filled up to 64 KiB, so a
//!   large write takes several), a lone entry in a record of its own. The last record of a group carries a **commit mark** (commitlog metadata): the
//!   write's sequence number, the number of records in the group and a CRC-32C over their
//!   sizes and checksums, followed by the write's *state changes* in order
//!   (promise, accepted round, decided index, compacted index, trim, truncation by
//!   `AppendOnPrefix`, stop sign, snapshot reference, node record; where the entries go among
//!   them), unless the write only appends. A write without entries (or with more changes than
//!   the 64 KiB of metadata hold) puts its changes into a *state record* of its own, which
//!   ends its group. Which entries are live (the *log map*: the absolute index of the first
//!   entry and extents of entry *slots*, where every record takes one slot and a record of n
//!   entries takes n) follows from the groups. Keeping the changes in the metadata keeps
//!   the entries of consecutive writes next to each other, so the map stays one extent; each
//!   write without entries between writes with entries, and each `AppendOnPrefix`, starts a
//!   new one.
//! * **checkpoint** (one sled value, `crc32c ++ bincode`): the state after some write, the
//!   generation, the number of log records it includes and a CRC-32C chain over their headers.
//!   It is written every [`PersistentStorageConfig::set_checkpoint_interval`] records (or
//!   64 MiB) of log, after a rewrite, when the storage is opened and when it is dropped.
//! * **anchor**: written at creation, and again (temporary file, `fsync`, rename, `fsync` of
//!   the directory) *before* the group of any write that changes the promise or the accepted
//!   round, after the log up to that write is synced. It holds the number of that write and
//!   the (promise, accepted round) before and after it: the state `open` recovers must be the
//!   one after that write or later (with the new pair), or the one just before it (with the
//!   old pair: the write did not commit). A log that lost more is refused.
//!
//! # Atomicity
//!
//! `write_atomically` checks every operation and builds the group in memory first (a batch
//! that does not fit the log is refused with nothing written), then
//!
//! 1. if it sets a snapshot, stores the snapshot bytes in sled under a new key, flushes sled
//!    and syncs its files (the old snapshot stays until a later checkpoint removes it);
//! 2. if it changes the promise or accepted round, replaces the anchor (allowing old and new);
//! 3. appends the group's records to the log, the commit mark on the last one;
//! 4. with [`Durability::Immediate`], `fdatasync`s the segment (and the directory if a segment
//!    was created).
//!
//! The commit point is the commit mark reaching the disk: `open` applies a group only when its
//! last record is intact (commitlog's CRC-32C covers the mark) and the mark's count and CRC
//! match the records before it; a trailing group without a valid mark (a crash in step 3 or
//! 4) is cut off. Steps 1 and 2 only add what the old state does not use (a new snapshot
//! key) or allow both states (the anchor). Nothing is ever changed in place: a truncation or a
//! trim is a state record, dead entries stay until a rewrite. So after a crash at any instant
//! the storage equals its state before or after each write, never a mix. A write can start
//! only after the previous one returned, so with `Immediate` a group is on disk before the
//! next one is written: only the last group can be torn by a crash.
//!
//! Dead records (trimmed entries, entries overwritten by `AppendOnPrefix`, state records) are
//! reclaimed by a **rewrite**, done at the start of a write when they are at least
//! [`PersistentStorageConfig::set_log_rewrite_threshold`] and at least twice the live entries,
//! or when the log map has more than 4,096 extents and more than a quarter of the live entries
//! (both amortised O(1) per write; the write that does it takes as long as copying the live
//! entries): a new generation `log-<gen + 1>` gets the live entries
//! and the base state record; its base group's commit mark, synced, is the commit point of
//! the rewrite; then a checkpoint naming it is written and the old generation is deleted.
//! `open` uses the newest generation whose base group is committed and deletes the others.
//! The user's `LogOptions` are kept.
//!
//! # Durability and its cost
//!
//! With [`Durability::Immediate`] (the default) a write that returned `Ok` is on disk: one
//! append and one `fdatasync` of the segment file per write (commitlog's own `flush()` does
//! not sync), plus a directory sync when the write created a segment. A write that only raises
//! the decided index is synced with the next write instead (see [`Durability::Immediate`]:
//! the cluster holds that knowledge; a power loss may only take the node's copy of it). sled is not on this
//! path: it is written when a snapshot changes (flush and `fdatasync` of its files: sled 0.34's
//! `flush()` only calls `sync_file_range` and never syncs its blob files) and for a checkpoint
//! (the same, once per checkpoint interval). A write that changes the promise or the accepted
//! round also replaces the anchor (two more syncs). Batch entries into as few writes as you
//! can: the sync is paid per write. `cargo run --release -p omnipaxos_storage --example
//! storage_bench` measures it against a plain file with one `fsync` per batch.
//!
//! Snapshots stay in sled: a write that sets a snapshot stores the whole encoded snapshot and
//! syncs sled (about two syncs, plus one per blob file for snapshots of 16 KiB or more, on top
//! of the log's), and the snapshot is read from sled by `get_snapshot`. Snapshots change
//! rarely (on compaction), so this is paid rarely; a node that sets large snapshots often pays
//! for writing each one whole.
//!
//! [`Durability::Deferred`] skips the log sync (except for writes that change the promise or
//! the accepted round, which are synced together with the anchor); see there for what it can
//! lose.
//!
//! # Errors
//!
//! * Opening: [`PersistentStorageError`], one variant per cause (see the next section for
//!   damage). `try_new` on a non-empty directory is `AlreadyExists`; a non-empty directory
//!   without an anchor is `NotAStorage`; a directory written in another format (format
//!   version 1 of the 0.3 development versions, or a RocksDB directory of omnipaxos_storage
//!   0.2) is `UnsupportedFormat`, which names the version; a directory in use by another live
//!   instance is `Database` (after waiting up to a second for sled's lock, which a storage
//!   dropped a moment ago in the same process may still hold).
//! * Reads and writes: [`StorageError`]. A batch that does not fit the log (`InvalidOp`) or an
//!   entry or state record over the commitlog's message size (`TooLarge`) is refused before
//!   anything is written, and the storage stays usable. An I/O failure while the log is being
//!   appended to or synced leaves the storage `Poisoned`: the disk holds the state before or
//!   after that write, and only reopening tells which, so further writes are refused.
//!
//! # Damage
//!
//! `open` checks everything before it changes anything, and returns a
//! [`PersistentStorageError`] instead of panicking or opening a store that forgot what it
//! acknowledged:
//!
//! * every record of the log is read once: segment magic, consecutive offsets, lengths, the
//!   CRC-32C of each record, and the layout of each record of several entries (its count and
//!   table of ends must describe exactly its bytes); the records up to the checkpoint must
//!   match its chain checksum (so truncated, deleted, swapped or bit-flipped segments are
//!   found), and the groups after it must carry valid commit marks with consecutive sequence
//!   numbers;
//! * a damaged or torn record after the checkpoint ends the log only if no commit mark of a
//!   later write follows it (searched byte by byte): a crash tears at most the last group,
//!   anything else is damage and refused (`Corrupt`);
//! * the index files are not trusted at all: commitlog panics on a missing, empty or full
//!   one, so `open` writes them anew from the scan (and, as a last resort, catches a panic
//!   of commitlog during open with `std::panic::catch_unwind`);
//! * checkpoint, state records and snapshot carry CRCs; checkpoint, anchor and log header
//!   carry the storage id (files of another storage are refused), and the anchor the entry
//!   type names and the format version;
//! * sled 0.34 can reopen a damaged database as an empty one, or roll a truncated one back
//!   to an older state, without error: an empty database (no checkpoint) is refused
//!   (`StateLost`); an older checkpoint is harmless (the log is rolled forward from it),
//!   unless it names a generation that was since deleted (`LogTruncated`) or a snapshot it no
//!   longer has (`Corrupt`);
//! * sled 0.34 refuses to open (corruption) after a crash while it wrote the snapshot of its
//!   page table, which it does when it opens: it takes the torn, never published
//!   `db/snap.<lsn>.generating` file for its newest snapshot. When sled reports corruption and
//!   such files exist, `open` removes them (leaving sled's files as they were before that
//!   write) and opens sled once more.
//!
//! One kind of damage cannot be told from a crash: the log cut back to a group boundary after
//! the last checkpoint (a crash before those writes committed looks the same). A storage that
//! was dropped normally has a checkpoint at its end, so any cut of its log is found; after a
//! crash, the writes since the last checkpoint are protected by their CRCs but not against
//! such a cut, except that the anchor still refuses a state that lost the node's promise or
//! accepted round (`StateRolledBack`).
//!
//! Only then does `open` cut the log back to the last committed write, delete stale files and
//! write a checkpoint. A storage directory copied as a whole from another node is consistent
//! and opens: give each node its own path.
//!
//! # Known problems
//!
//! sled 0.34.7 can deadlock under a sustained stream of small writes (seen once with format
//! version 1, which wrote sled on every write: the writing thread waited in sled's
//! `SegmentAccountant::bump_tip` for a file truncation queued on sled's I/O threads, which
//! waited for the lock that thread held). Writes no longer touch sled, only checkpoints and
//! snapshots do, so this is now as rare as those; the soak benchmark (`examples/soak.rs`)
//! checks the write path for stalls.

mod config;
mod crc;
mod entries;
mod error;
mod log;
mod meta;
mod recovery;
mod sled_files;
mod slots;

pub use config::{
    Durability, PersistentStorageConfig, DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_LOG_REWRITE_THRESHOLD, DEFAULT_PATH,
};
pub use error::{PersistentStorageError, StorageError};

use crate::InvalidOpError;
use bincode::Options as _;
use config::LogLimits;
use crc::crc32c;
use entries::{EncodedEntries, EntryCodec};
use error::io_err;
use log::Log;
use meta::{
    codec, decode, encode, seal, snapshot_key, Anchor, ApplyError, Checkpoint, Extent, LogHeader,
    LogMap, LogOp, SnapshotRef, State, KIND_HEADER, KIND_STATE, LOG_MAGIC,
};
use omnipaxos::storage::{Entry, StopSign, Storage, StorageOp, StorageResult};
use recovery::{path_state, PathState};
use serde::{de::DeserializeOwned, Serialize};
use sled_files::{SledFiles, SLED_BLOB_MIN};
use std::{
    fmt, fs,
    marker::PhantomData,
    path::{Path, PathBuf},
};

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const DB_DIR: &str = "db";
/// A rewrite also happens when the log map has more extents than this and than a quarter of
/// the live entries (writes without entries between writes with entries, and
/// `AppendOnPrefix`, start new extents).
const MAX_EXTENTS: u64 = 4096;
/// Entries copied per step of a rewrite.
const REWRITE_CHUNK: u64 = 4096;
/// A checkpoint is also written after this many bytes of log.
const CHECKPOINT_BYTES: u64 = 64 << 20;

/// A [`Storage`] on disk: see the [module documentation](self).
///
/// `T` must be `Serialize` and `DeserializeOwned` (entries and snapshots are stored with
/// bincode). One directory holds one storage; opening it twice at the same time fails.
pub struct PersistentStorage<T: Entry> {
    root: PathBuf,
    durability: Durability,
    rewrite_threshold: u64,
    checkpoint_interval: u64,
    limits: LogLimits,
    db: sled::Db,
    sled_files: SledFiles,
    log: Log,
    id: u128,
    /// The current log generation.
    gen: u64,
    /// Sequence number of the last committed write.
    seq: u64,
    state: State,
    anchor: Anchor,
    /// Log records and bytes at the last checkpoint.
    ckpt_records: u64,
    ckpt_bytes: u64,
    /// A checkpoint is due before the next write (interval reached, rewrite, or an earlier
    /// checkpoint failed).
    ckpt_due: bool,
    /// Snapshot keys no committed state refers to any more; removed with the next checkpoint.
    stale_snapshots: Vec<u64>,
    /// Set while the log is being changed; stays set if that fails (see
    /// [`StorageError::Poisoned`]).
    poisoned: bool,
    _entries: PhantomData<fn() -> T>,
}

impl<T: Entry> fmt::Debug for PersistentStorage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentStorage")
            .field("path", &self.root)
            .field("generation", &self.gen)
            .field("writes", &self.seq)
            .field("entries", &(self.state.map.start..self.state.map.end()))
            .field("promise", &self.state.promise)
            .field("decided_idx", &self.state.decided_idx)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// What a write will do, computed before anything is written.
struct Plan {
    /// The state after the write.
    next: State,
    /// The write's entries, encoded.
    entries: EncodedEntries,
    /// The write's state changes (`bincode(ops)`), unless it only appends entries; carried in
    /// the commit mark's metadata of its last entry, or in a state record of their own.
    state: Option<Vec<u8>>,
    /// The new snapshot bytes, if the write sets a snapshot.
    snapshot: Option<Vec<u8>>,
}

fn log_dir(root: &Path, gen: u64) -> PathBuf {
    root.join(format!("log-{gen:020}"))
}

/// The payload of generation `gen`'s header record.
fn header_record(id: u128, gen: u64) -> Result<Vec<u8>, String> {
    let mut v = vec![KIND_HEADER];
    v.extend(encode(&LogHeader {
        magic: LOG_MAGIC,
        id,
        gen,
    })?);
    Ok(v)
}

/// The payload of a state record holding `ops`.
fn state_record(ops: &[LogOp]) -> Result<Vec<u8>, String> {
    let mut v = vec![KIND_STATE];
    codec()
        .serialize_into(&mut v, ops)
        .map_err(|e| e.to_string())?;
    Ok(v)
}

impl<T> PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
{
    /// Opens the storage in `config.get_path()`, creating it if the path does not exist or is
    /// an empty directory. After a crash this recovers the state after the last write that
    /// returned `Ok` (or a later one that was under way).
    ///
    /// # Panics
    ///
    /// If the storage cannot be opened, with a message naming the path and the cause (this is
    /// the signature of omnipaxos_storage 0.2.4). Use [`try_open`](Self::try_open) to handle the
    /// error instead.
    pub fn open(config: PersistentStorageConfig) -> Self {
        let path = config.get_path().to_path_buf();
        Self::try_open(config).unwrap_or_else(|e| {
            panic!(
                "cannot open the PersistentStorage at {}: {e}",
                path.display()
            )
        })
    }

    /// Opens the storage in `config.get_path()`, creating it if the path does not exist or is
    /// an empty directory; like [`open`](Self::open), but returns the error.
    pub fn try_open(config: PersistentStorageConfig) -> Result<Self, PersistentStorageError> {
        let limits = Self::limits(&config)?;
        if let PathState::Vacant = path_state(config.get_path())? {
            Self::create(&config, limits)?;
        }
        Self::open_existing(&config, limits)
    }

    /// Creates a fresh storage in `config.get_path()`.
    ///
    /// # Panics
    ///
    /// If the directory holds anything, or the storage cannot be created, with a message
    /// naming the path and the cause (as omnipaxos_storage 0.2.4 did). Use
    /// [`try_new`](Self::try_new) to handle the error instead.
    pub fn new(config: PersistentStorageConfig) -> Self {
        let path = config.get_path().to_path_buf();
        Self::try_new(config).unwrap_or_else(|e| {
            panic!(
                "cannot create a PersistentStorage at {}: {e}",
                path.display()
            )
        })
    }

    /// Creates a fresh storage in `config.get_path()`; fails with
    /// [`PersistentStorageError::AlreadyExists`] if the directory holds anything.
    pub fn try_new(config: PersistentStorageConfig) -> Result<Self, PersistentStorageError> {
        let limits = Self::limits(&config)?;
        match path_state(config.get_path())? {
            PathState::Vacant => Self::create(&config, limits)?,
            PathState::Occupied => {
                return Err(PersistentStorageError::AlreadyExists {
                    path: config.get_path().to_path_buf(),
                })
            }
        }
        Self::open_existing(&config, limits)
    }

    /// The directory of the storage.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// How many times the storage synced its log (one `fdatasync` of the segment appended to)
    /// since it was opened: the cost [`Durability`] names, for tests and metrics.
    pub fn log_syncs(&self) -> u64 {
        self.log.syncs()
    }

    /// Computes the state after `ops` (and the node record) and the records to append;
    /// writes nothing. `None` if the write changes nothing.
    fn plan(
        &self,
        ops: Vec<StorageOp<T>>,
        record: Option<Vec<u8>>,
    ) -> Result<Option<Plan>, StorageError> {
        let mut next = self.state.clone();
        let mut entries = EncodedEntries::default();
        let mut prog: Vec<LogOp> = Vec::new();
        let mut snapshot = None;
        // The write's entries take the slots from here on (its records come after the log's
        // records, entries first).
        let base = self.log.slots();
        let max = self.log.max_payload();
        let seq = self.seq + 1;
        let too_large = |len: usize| StorageError::TooLarge {
            bytes: len + log::HEADER,
            max: max + log::HEADER,
        };
        let apply = |next: &mut State,
                     prog: &mut Vec<LogOp>,
                     entries: &mut EncodedEntries,
                     op: LogOp,
                     new: Vec<T>|
         -> Result<(), StorageError> {
            let first = base + entries.len() as u64;
            for (k, e) in new.iter().enumerate() {
                let len = entries.push(e)?;
                if len > max {
                    return Err(too_large(len));
                }
                if k == 0 && new.len() > 1 {
                    // Room for the others, judged by the first (fewer reallocations).
                    entries.reserve(new.len() - 1, len);
                }
            }
            let mut offsets = first..first + new.len() as u64;
            next.apply(&op, &mut offsets).map_err(|e| match e {
                ApplyError::OutOfRange { from, first, end } => {
                    StorageError::InvalidOp(InvalidOpError::PrefixOutOfRange {
                        from: from as usize,
                        first: first as usize,
                        end: end as usize,
                    })
                }
                ApplyError::MissingEntries => {
                    StorageError::Corrupt("an append without its entries".into())
                }
            })?;
            match (prog.last_mut(), &op) {
                (_, LogOp::Append(0)) => {}
                (Some(LogOp::Append(a)), LogOp::Append(b)) => *a += b,
                _ => prog.push(op),
            }
            Ok(())
        };
        for op in ops {
            let (e, p, n) = (&mut entries, &mut prog, &mut next);
            match op {
                StorageOp::AppendEntry(x) => apply(n, p, e, LogOp::Append(1), vec![x])?,
                StorageOp::AppendEntries(v) => apply(n, p, e, LogOp::Append(v.len() as u64), v)?,
                StorageOp::AppendOnPrefix(from, v) => {
                    apply(n, p, e, LogOp::Truncate(from as u64), Vec::new())?;
                    apply(n, p, e, LogOp::Append(v.len() as u64), v)?;
                }
                StorageOp::SetPromise(b) => apply(n, p, e, LogOp::Promise(b), Vec::new())?,
                StorageOp::SetDecidedIndex(i) => {
                    apply(n, p, e, LogOp::Decided(i as u64), Vec::new())?
                }
                StorageOp::SetAcceptedRound(b) => apply(n, p, e, LogOp::Accepted(b), Vec::new())?,
                StorageOp::SetCompactedIdx(i) => {
                    apply(n, p, e, LogOp::Compacted(i as u64), Vec::new())?
                }
                StorageOp::Trim(i) => apply(n, p, e, LogOp::Trim(i as u64), Vec::new())?,
                StorageOp::SetStopsign(s) => apply(n, p, e, LogOp::Stopsign(s), Vec::new())?,
                StorageOp::SetSnapshot(s) => {
                    let bytes = s
                        .map(|s| encode(&s).map_err(StorageError::Codec))
                        .transpose()?;
                    let r = bytes.as_ref().map(|b| SnapshotRef {
                        key: seq,
                        len: b.len() as u64,
                        crc: crc32c(b),
                    });
                    snapshot = bytes;
                    apply(n, p, e, LogOp::Snapshot(r), Vec::new())?;
                }
            }
        }
        if let Some(r) = record {
            apply(
                &mut next,
                &mut prog,
                &mut entries,
                LogOp::NodeRecord(r),
                Vec::new(),
            )?;
        }
        if prog.is_empty() {
            return Ok(None);
        }
        let pure_append = matches!(prog.as_slice(), [LogOp::Append(_)]);
        let state = if pure_append {
            None
        } else {
            let mut r = Vec::new();
            codec()
                .serialize_into(&mut r, &prog)
                .map_err(|e| StorageError::Codec(e.to_string()))?;
            if r.len() + 1 > max {
                return Err(too_large(r.len() + 1));
            }
            Some(r)
        };
        // A snapshot that a later op of the batch cleared again is not stored.
        if next.snapshot.map(|r| r.key) != Some(seq) {
            snapshot = None;
        }
        Ok(Some(Plan {
            next,
            entries,
            state,
            snapshot,
        }))
    }

    fn write(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Option<Vec<u8>>,
    ) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        self.maybe_rewrite()?;
        if self.ckpt_due {
            self.checkpoint()?;
        }
        let Some(Plan {
            next,
            entries,
            state,
            snapshot,
        }) = self.plan(ops, record)?
        else {
            return Ok(());
        };
        let seq = self.seq + 1;
        let guard_changed = next.guard() != self.state.guard();
        // A write that only raises the decided index is synced with the next write (as etcd's
        // raft does): a decided index is knowledge the cluster holds, not a vote; losing it
        // to a power loss only makes the node learn it again. A decided stop sign is synced.
        // (New entries or a snapshot change the state's map or snapshot reference too.)
        let only_decided = next.stopsign.is_none() && next.only_decided_above(&self.state);
        let sync = (self.durability == Durability::Immediate && !only_decided) || guard_changed;
        if let Some(bytes) = &snapshot {
            // Under a key of its own: the committed state still refers to the old one.
            self.db.insert(snapshot_key(seq), bytes.as_slice())?;
            self.db.flush()?;
            self.sled_files
                .sync(bytes.len() >= SLED_BLOB_MIN)
                .map_err(io_err("syncing the database files"))?;
        }
        if guard_changed {
            // The writes before this one are durable first (the anchor says they committed).
            self.poisoned = true;
            self.log.sync()?;
            self.poisoned = false;
            // Before the commit, allowing both: a crash in between leaves a valid pair.
            let mut anchor = self.anchor.clone();
            anchor.guard_seq = seq;
            anchor.guards = [self.state.guard(), next.guard()];
            anchor
                .write(&self.root)
                .map_err(io_err("writing the anchor"))?;
            self.anchor = anchor;
        }
        // From here on the outcome on disk may be the old or the new state.
        self.poisoned = true;
        // The state changes ride in the metadata of the last entry (so that the entries of
        // consecutive writes stay next to each other in the log), or, for a write without
        // entries or with too many changes for the metadata, in a state record of their own.
        let state = state.unwrap_or_default();
        let records = entries.into_records(self.log.max_payload());
        let n = records.len();
        let last_len = records.last().map_or(0, Vec::len);
        let in_meta = n > 0
            && state.len() + log::CommitMark::LEN <= log::MAX_META
            && last_len + state.len() + log::CommitMark::LEN + log::HEADER
                <= self.limits.max_batch_bytes();
        if in_meta {
            for r in &records[..n - 1] {
                self.log.push(r)?;
            }
            self.log.commit(&records[n - 1], seq, &state)?;
        } else {
            for r in &records {
                self.log.push(r)?;
            }
            let mut record = Vec::with_capacity(state.len() + 1);
            record.push(KIND_STATE);
            record.extend_from_slice(&state);
            self.log.commit(&record, seq, &[])?;
        }
        if sync {
            self.log.sync()?;
        }
        self.poisoned = false;
        if next.snapshot != self.state.snapshot {
            if let Some(old) = self.state.snapshot {
                self.stale_snapshots.push(old.key);
            }
        }
        self.state = next;
        self.seq = seq;
        if self.log.records() - self.ckpt_records >= self.checkpoint_interval
            || self.log.bytes() - self.ckpt_bytes >= CHECKPOINT_BYTES
        {
            self.ckpt_due = true;
        }
        Ok(())
    }

    /// Stores the state at the end of the log in sled, durably (after syncing the log, so
    /// that the checkpoint never names records a power loss could take).
    fn checkpoint(&mut self) -> Result<(), StorageError> {
        self.poisoned = true;
        self.log.sync()?;
        self.poisoned = false;
        let c = Checkpoint {
            id: self.id,
            gen: self.gen,
            seq: self.seq,
            log_records: self.log.records(),
            log_chain: self.log.chain(),
            state: self.state.clone(),
        };
        let body = encode(&c).map_err(StorageError::Codec)?;
        let mut batch = sled::Batch::default();
        batch.insert(CHECKPOINT_KEY, seal(&body));
        for k in &self.stale_snapshots {
            batch.remove(&snapshot_key(*k)[..]);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        self.sled_files
            .sync(false)
            .map_err(io_err("syncing the database files"))?;
        self.stale_snapshots.clear();
        self.ckpt_records = self.log.records();
        self.ckpt_bytes = self.log.bytes();
        self.ckpt_due = false;
        Ok(())
    }

    /// Copies the live entries into a new log generation when enough records are dead (see
    /// the module documentation). Crash-safe; on error before its commit nothing changed.
    fn maybe_rewrite(&mut self) -> Result<(), StorageError> {
        let live = self.state.map.len();
        let dead = self.log.slots() - live;
        let extents = self.state.map.extents.len() as u64;
        let due = (dead >= self.rewrite_threshold && dead >= 2 * live)
            || extents > MAX_EXTENTS.max(live / 4);
        if !due {
            return Ok(());
        }
        let gen = self.gen + 1;
        let dir = log_dir(&self.root, gen);
        let mut next = self.state.clone();
        next.map = LogMap {
            start: self.state.map.start,
            extents: if live > 0 {
                vec![Extent { off: 1, len: live }]
            } else {
                Vec::new()
            },
        };
        let new_log = match self.build_generation(gen, &dir, &next) {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        // Committed: the new generation is the storage's log from now on (`open` picks it).
        let old = std::mem::replace(&mut self.log, new_log);
        self.gen = gen;
        self.state = next;
        self.ckpt_due = true;
        let old_dir = old.dir().to_path_buf();
        drop(old);
        // The checkpoint naming the new generation comes first (`write` does it next); until
        // then `open` prefers the newest committed generation anyway, so removing the old one
        // now is safe. A failure only leaves garbage that the next open removes.
        let _ = fs::remove_dir_all(&old_dir);
        Ok(())
    }

    /// Writes generation `gen` with the live entries and `state` (whose map points at them)
    /// as its base group, synced.
    fn build_generation(&self, gen: u64, dir: &Path, state: &State) -> Result<Log, StorageError> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err("removing a stale log generation"))?;
        }
        let mut log = Log::create(dir, self.limits).map_err(io_err("creating a log generation"))?;
        log.push(&header_record(self.id, gen).map_err(StorageError::Codec)?)?;
        let map = &self.state.map;
        for (off, n) in map.runs(map.start, map.end()) {
            let mut done = 0;
            while done < n {
                let k = (n - done).min(REWRITE_CHUNK);
                let mut chunk = EncodedEntries::default();
                self.log.read_entries(off + done, k, |codec, p| {
                    match codec {
                        EntryCodec::Varint => chunk.push_encoded(p),
                        // An entry of format version 2 or 3: re-encoded for this version's
                        // records.
                        EntryCodec::Fixint => {
                            let e: T = codec
                                .decode(p)
                                .map_err(|e| StorageError::Corrupt(format!("entry: {e}")))?;
                            chunk.push(&e)?;
                        }
                    }
                    Ok(())
                })?;
                for r in chunk.into_records(log.max_payload()) {
                    log.push(&r)?;
                }
                done += k;
            }
        }
        let base =
            state_record(&[LogOp::Reset(Box::new(state.clone()))]).map_err(StorageError::Codec)?;
        log.commit(&base, self.seq, &[])?;
        log.sync()?;
        Ok(log)
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<T>, StorageError> {
        let map = &self.state.map;
        if from >= to || from < map.start || to > map.end() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((to - from).min(1 << 20) as usize);
        for (off, n) in map.runs(from, to) {
            self.log.read_entries(off, n, |codec, p| {
                out.push(
                    codec
                        .decode(p)
                        .map_err(|e| StorageError::Corrupt(format!("entry: {e}")))?,
                );
                Ok(())
            })?;
        }
        Ok(out)
    }

    fn snapshot(&self) -> Result<Option<T::Snapshot>, StorageError> {
        let Some(r) = self.state.snapshot else {
            return Ok(None);
        };
        let bytes = self
            .db
            .get(snapshot_key(r.key))?
            .ok_or_else(|| StorageError::Corrupt("snapshot missing".into()))?;
        if bytes.len() as u64 != r.len || crc32c(&bytes) != r.crc {
            return Err(StorageError::Corrupt("snapshot checksum mismatch".into()));
        }
        decode(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("snapshot: {e}")))
    }
}

impl<T: Entry> Drop for PersistentStorage<T> {
    fn drop(&mut self) {
        if self.poisoned {
            return;
        }
        // Best effort: syncs what `Deferred` left, and records where the log ends, so that
        // the next open starts there and finds any cut of the log.
        if self.log.sync().is_err() {
            return;
        }
        let c = Checkpoint {
            id: self.id,
            gen: self.gen,
            seq: self.seq,
            log_records: self.log.records(),
            log_chain: self.log.chain(),
            state: self.state.clone(),
        };
        if let Ok(body) = encode(&c) {
            let mut batch = sled::Batch::default();
            batch.insert(CHECKPOINT_KEY, seal(&body));
            for k in &self.stale_snapshots {
                batch.remove(&snapshot_key(*k)[..]);
            }
            if self.db.apply_batch(batch).is_ok() && self.db.flush().is_ok() {
                let _ = self.sled_files.sync(false);
            }
        }
    }
}

impl<T> Storage<T> for PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
{
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        Ok(self.write(ops, None)?)
    }

    fn write_atomically_with_record(
        &mut self,
        ops: Vec<StorageOp<T>>,
        record: Vec<u8>,
    ) -> StorageResult<()> {
        Ok(self.write(ops, Some(record))?)
    }

    fn get_node_record(&self) -> StorageResult<Option<Vec<u8>>> {
        Ok(self.state.node_record.clone())
    }

    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.state.decided_idx as usize)
    }

    fn get_accepted_round(
        &self,
    ) -> StorageResult<Option<omnipaxos::ballot_leader_election::Ballot>> {
        Ok(self.state.accepted_round)
    }

    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        Ok(self.entries(from as u64, to as u64)?)
    }

    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.state.map.len() as usize)
    }

    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        Ok(self.entries(from as u64, self.state.map.end())?)
    }

    fn get_promise(&self) -> StorageResult<Option<omnipaxos::ballot_leader_election::Ballot>> {
        Ok(self.state.promise)
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.state.stopsign.clone())
    }

    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.state.compacted_idx as usize)
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.snapshot()?)
    }
}
