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
//! # On-disk layout (format version 2)
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
//!   [`write_atomically`](Storage::write_atomically) appends one **group**: its entries, one
//!   record each (bincode). The last record of a group carries a **commit mark** (commitlog
//!   metadata): the write's sequence number, the number of records in the group and a CRC-32C
//!   over their sizes and checksums, followed by the write's *state changes* in order
//!   (promise, accepted round, decided index, compacted index, trim, truncation by
//!   `AppendOnPrefix`, stop sign, snapshot reference, node record; where the entries go among
//!   them), unless the write only appends. A write without entries (or with more changes than
//!   the 64 KiB of metadata hold) puts its changes into a *state record* of its own, which
//!   ends its group. Which entries are live (the *log map*: the absolute index of the first
//!   entry and extents of commitlog offsets) follows from the groups. Keeping the changes in
//!   the metadata keeps the entries of consecutive writes next to each other, so the map stays
//!   one extent; each write without entries between writes with entries, and each
//!   `AppendOnPrefix`, starts a new one.
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
//! not sync), plus a directory sync when the write created a segment. sled is not on this
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
//! * every record of the log is read once: segment magic, consecutive offsets, lengths and
//!   the CRC-32C of each record; the records up to the checkpoint must match its chain
//!   checksum (so truncated, deleted, swapped or bit-flipped segments are found), and the
//!   groups after it must carry valid commit marks with consecutive sequence numbers;
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
//!   longer has (`Corrupt`).
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
mod error;
mod log;
mod meta;

pub use config::{
    Durability, PersistentStorageConfig, DEFAULT_CHECKPOINT_INTERVAL,
    DEFAULT_LOG_REWRITE_THRESHOLD, DEFAULT_PATH,
};
pub use error::{PersistentStorageError, StorageError};

use crate::InvalidOpError;
use bincode::Options as _;
use config::{sled_config_for, LogLimits};
use crc::crc32c;
use error::{io_err, open_io};
use log::{group_chain, Log, Scan, TailRecord};
use meta::{
    codec, decode, encode, seal, snapshot_key, sync_dir, unseal, Anchor, AnchorRead, ApplyError,
    Checkpoint, Extent, LogHeader, LogMap, LogOp, SnapshotRef, State, ANCHOR_FILE, ANCHOR_MAGIC,
    FORMAT_VERSION, KIND_ENTRY, KIND_HEADER, KIND_STATE, LOG_MAGIC, SNAPSHOT_PREFIX,
};
use omnipaxos::storage::{Entry, StopSign, Storage, StorageOp, StorageResult};
use serde::{de::DeserializeOwned, Serialize};
use std::{
    fmt, fs, io,
    marker::PhantomData,
    path::{Path, PathBuf},
};

const CHECKPOINT_KEY: &[u8] = b"checkpoint";
const DB_DIR: &str = "db";
/// A rewrite also happens when the log map has more extents than this and than a quarter of
/// the live entries (writes without entries between writes with entries, and
/// `AppendOnPrefix`, start new extents).
const MAX_EXTENTS: u64 = 4096;
/// Records copied per step of a rewrite.
const REWRITE_CHUNK: u64 = 1024;
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

/// Where sled keeps its data, for the syncs that sled's own `flush` does not do.
struct SledFiles {
    dir: PathBuf,
    /// `<db>/db`, sled's log file.
    data: fs::File,
}

/// Snapshots at least this large may be stored by sled as a blob file of their own (sled 0.34
/// moves values over a quarter of its segment size there, and never syncs them).
const SLED_BLOB_MIN: usize = 16 * 1024;

impl SledFiles {
    fn open(dir: &Path) -> io::Result<SledFiles> {
        Ok(SledFiles {
            dir: dir.to_path_buf(),
            data: fs::File::open(dir.join("db"))?,
        })
    }

    /// Makes what sled flushed durable: its data file, and with `blobs` every blob file and
    /// the directories.
    fn sync(&self, blobs: bool) -> io::Result<()> {
        self.data.sync_data()?;
        if blobs {
            let dir = self.dir.join("blobs");
            match fs::read_dir(&dir) {
                Ok(listing) => {
                    for e in listing {
                        let e = e?;
                        if e.file_type()?.is_file() {
                            fs::File::open(e.path())?.sync_data()?;
                        }
                    }
                    sync_dir(&dir)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// How long `open` waits for sled's lock on the database (see [`open_sled`]).
const SLED_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Opens sled, waiting up to [`SLED_LOCK_WAIT`] for its lock: a storage just dropped in this
/// process may still have sled's background threads finishing with the file for a moment. A
/// lock held longer (another live instance or process) is an error.
fn open_sled(config: &sled::Config) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + SLED_LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => return r,
        }
    }
}

/// Syncs every file and directory under `dir` (a freshly built storage).
fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            fs::File::open(e.path())?.sync_all()?;
        }
    }
    sync_dir(dir)
}
/// What a write will do, computed before anything is written.
struct Plan {
    /// The state after the write.
    next: State,
    /// The entry records (`KIND_ENTRY ++ bincode`).
    entries: Encoded,
    /// The write's state changes (`bincode(ops)`), unless it only appends entries; carried in
    /// the commit mark's metadata of its last entry, or in a state record of their own.
    state: Option<Vec<u8>>,
    /// The new snapshot bytes, if the write sets a snapshot.
    snapshot: Option<Vec<u8>>,
}

/// Encoded records in one buffer (one allocation for a whole batch, not one per entry).
#[derive(Default)]
struct Encoded {
    bytes: Vec<u8>,
    /// The end of each record in `bytes`.
    ends: Vec<usize>,
}

impl Encoded {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Appends `KIND_ENTRY ++ bincode(e)`; returns its length.
    fn push_entry<E: Serialize>(&mut self, e: &E) -> Result<usize, StorageError> {
        let start = self.bytes.len();
        self.bytes.push(KIND_ENTRY);
        if let Err(err) = codec().serialize_into(&mut self.bytes, e) {
            self.bytes.truncate(start);
            return Err(StorageError::Codec(err.to_string()));
        }
        self.ends.push(self.bytes.len());
        Ok(self.bytes.len() - start)
    }
}

/// What rolling a generation's log forward found.
struct Replayed {
    state: State,
    /// Sequence number of the last committed write.
    seq: u64,
    /// Records up to and including the last committed group.
    keep: u64,
    /// Whether the generation's base group (or the checkpoint) was found.
    based: bool,
}

/// What is at the storage path.
enum PathState {
    /// Nothing, or an empty directory: a fresh storage can be created there.
    Vacant,
    Occupied,
}

fn path_state(path: &Path) -> Result<PathState, PersistentStorageError> {
    match fs::read_dir(path) {
        Ok(mut it) => Ok(if it.next().is_none() {
            PathState::Vacant
        } else {
            PathState::Occupied
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathState::Vacant),
        // A file, or a path through a file (ENOTDIR).
        Err(_) if path.ancestors().any(Path::is_file) => Err(PersistentStorageError::NotAStorage {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(open_io(format!("reading {}", path.display()))(e)),
    }
}

/// A random identity for a new storage (no `rand` dependency: std's randomly keyed hasher).
fn random_id() -> u128 {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut id = 0u128;
    for i in 0..2u8 {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.write_u8(i);
        id = (id << 64) | u128::from(h.finish());
    }
    id
}

fn type_names<T: Entry>() -> (String, String) {
    (
        std::any::type_name::<T>().to_string(),
        std::any::type_name::<T::Snapshot>().to_string(),
    )
}

fn log_dir(root: &Path, gen: u64) -> PathBuf {
    root.join(format!("log-{gen:020}"))
}

/// The generations in `root` (directories `log-<20 digits>`), ascending.
fn generations(root: &Path) -> Result<Vec<u64>, PersistentStorageError> {
    let mut gens = Vec::new();
    let listing = fs::read_dir(root).map_err(open_io(format!("reading {}", root.display())))?;
    for e in listing.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(d) = name.strip_prefix("log-") {
            if d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(g) = d.parse() {
                    gens.push(g);
                }
            }
        }
    }
    gens.sort_unstable();
    Ok(gens)
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

/// Whether `dir` looks like a RocksDB directory (omnipaxos_storage 0.2 wrote one).
fn is_rocksdb_dir(dir: &Path) -> bool {
    dir.join("CURRENT").is_file()
        && fs::read_dir(dir).is_ok_and(|l| {
            l.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("MANIFEST-"))
        })
}

/// Rolls the records of `scan` forward from `start` (a checkpoint's state and write number),
/// or from the generation's base group if `None`. Applies every committed group; stops at the
/// first group without a valid commit mark.
fn replay(
    scan: &Scan,
    start: Option<(&State, u64)>,
    dir: &Path,
) -> Result<Replayed, PersistentStorageError> {
    let corrupt = |reason: String| PersistentStorageError::Corrupt {
        path: dir.to_path_buf(),
        reason,
    };
    let (mut state, mut seq, mut based) = match start {
        Some((s, q)) => (s.clone(), q, true),
        None => (State::default(), 0, false),
    };
    let mut keep = scan.verified;
    let mut group: Vec<&TailRecord> = Vec::new();
    for r in &scan.tail {
        group.push(r);
        let Some(mark) = r.commit else { continue };
        let n = group.len();
        let crc = group[..n - 1]
            .iter()
            .fold(0, |c, g| group_chain(c, g.size, g.hash));
        if mark.n as usize != n || mark.crc != crc {
            return Err(corrupt(format!(
                "the commit mark of write {} (record {}) does not match its {n} records",
                mark.seq, r.offset
            )));
        }
        if based && mark.seq != seq + 1 {
            return Err(corrupt(format!(
                "write {} follows write {seq} (record {})",
                mark.seq, r.offset
            )));
        }
        let (body, last_is_state) = match group[n - 1].kind {
            KIND_STATE => (&group[..n - 1], true),
            KIND_ENTRY => (&group[..], false),
            k => {
                return Err(corrupt(format!(
                    "record {} of kind {k} ends a write",
                    r.offset
                )))
            }
        };
        let mut entries = Vec::with_capacity(body.len());
        for (i, g) in body.iter().enumerate() {
            match g.kind {
                KIND_ENTRY => entries.push(g.offset),
                KIND_HEADER if !based && i == 0 && g.offset == 0 => {}
                k => {
                    return Err(corrupt(format!(
                        "record {} of kind {k} inside a write",
                        g.offset
                    )))
                }
            }
        }
        let ops: Vec<LogOp> = if last_is_state {
            let bytes = group[n - 1].body.as_deref().unwrap_or(&[]);
            decode(bytes).map_err(|e| corrupt(format!("state record {}: {e}", r.offset)))?
        } else if let Some(bytes) = &r.state {
            decode(bytes).map_err(|e| corrupt(format!("state of record {}: {e}", r.offset)))?
        } else {
            vec![LogOp::Append(entries.len() as u64)]
        };
        let reset = matches!(ops.first(), Some(LogOp::Reset(_)));
        let is_base = reset && group[0].kind == KIND_HEADER && group[0].offset == 0;
        if !based && !is_base {
            // Not the base group of the generation: it is incomplete.
            break;
        }
        let mut it = entries.into_iter();
        for op in &ops {
            state.apply(op, &mut it).map_err(|e| {
                corrupt(format!(
                    "state record {} does not fit the log: {e:?}",
                    r.offset
                ))
            })?;
        }
        if !reset && it.next().is_some() {
            return Err(corrupt(format!(
                "write {} has entries its state record does not place",
                mark.seq
            )));
        }
        based = true;
        seq = mark.seq;
        keep = r.offset + 1;
        group.clear();
    }
    if let Some(d) = &scan.damage {
        if let Some(m) = d.later_commits.iter().find(|m| m.seq > seq + 1) {
            return Err(corrupt(format!(
                "record {} is missing or damaged, but write {} follows it (write {seq} is the last before it)",
                d.at, m.seq
            )));
        }
    }
    Ok(Replayed {
        state,
        seq,
        keep,
        based,
    })
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

    fn limits(config: &PersistentStorageConfig) -> Result<LogLimits, PersistentStorageError> {
        let limits = LogLimits::of(&config.get_commitlog_options()).ok_or_else(|| {
            PersistentStorageError::InvalidConfig("cannot read the commitlog LogOptions".into())
        })?;
        if limits.max_batch_bytes() < 256 {
            return Err(PersistentStorageError::InvalidConfig(format!(
                "commitlog message_max_bytes and segment_max_bytes must be at least 258 (are {} and {})",
                limits.message_max_bytes, limits.segment_max_bytes
            )));
        }
        if limits.segment_max_bytes > u32::MAX as usize {
            return Err(PersistentStorageError::InvalidConfig(
                "commitlog segment_max_bytes must be below 4 GiB".into(),
            ));
        }
        Ok(limits)
    }

    /// Builds a fresh storage in a temporary sibling directory and renames it into place, so
    /// that a crash leaves either no storage or a complete one.
    fn create(
        config: &PersistentStorageConfig,
        limits: LogLimits,
    ) -> Result<(), PersistentStorageError> {
        let path = config.get_path();
        let name = path.file_name().ok_or_else(|| {
            PersistentStorageError::InvalidConfig(format!(
                "{} has no directory name",
                path.display()
            ))
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&parent).map_err(open_io(format!("creating {}", parent.display())))?;
        let id = random_id();
        let tmp = parent.join(format!(
            ".{}.creating-{:016x}",
            name.to_string_lossy(),
            id as u64
        ));
        let result = Self::build_fresh(config, limits, id, &tmp).and_then(|()| {
            fs::rename(&tmp, path)
                .map_err(open_io(format!("moving storage to {}", path.display())))?;
            sync_dir(&parent).map_err(open_io(format!("syncing {}", parent.display())))
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    fn build_fresh(
        config: &PersistentStorageConfig,
        limits: LogLimits,
        id: u128,
        dir: &Path,
    ) -> Result<(), PersistentStorageError> {
        let ctx = |what: &str| format!("{what} in {}", dir.display());
        fs::create_dir(dir).map_err(open_io(ctx("creating the storage")))?;
        let state = State::default();
        let to_open = |e: StorageError| PersistentStorageError::Io {
            context: ctx("writing the log"),
            source: io::Error::other(e.to_string()),
        };
        let mut log =
            Log::create(&log_dir(dir, 1), limits).map_err(open_io(ctx("creating the log")))?;
        let header = header_record(id, 1).map_err(PersistentStorageError::InvalidConfig)?;
        let base = state_record(&[LogOp::Reset(Box::new(state.clone()))])
            .map_err(PersistentStorageError::InvalidConfig)?;
        log.push(&header).map_err(to_open)?;
        log.commit(&base, 0, &[]).map_err(to_open)?;
        log.sync().map_err(to_open)?;
        let ckpt = Checkpoint {
            id,
            gen: 1,
            seq: 0,
            log_records: log.records(),
            log_chain: log.chain(),
            state,
        };
        drop(log);
        let body = encode(&ckpt).map_err(PersistentStorageError::InvalidConfig)?;
        {
            let db = sled_config_for(&config.get_database_options(), &dir.join(DB_DIR))
                .open()
                .map_err(PersistentStorageError::Database)?;
            db.insert(CHECKPOINT_KEY, seal(&body))
                .map_err(PersistentStorageError::Database)?;
            db.flush().map_err(PersistentStorageError::Database)?;
        }
        let (entry_type, snapshot_type) = type_names::<T>();
        Anchor {
            magic: ANCHOR_MAGIC,
            format: FORMAT_VERSION,
            id,
            entry_type,
            snapshot_type,
            guard_seq: 0,
            guards: [(None, None); 2],
        }
        .write(dir)
        .map_err(open_io(ctx("writing the anchor")))?;
        // sled's files were only `sync_file_range`d: make the whole new tree durable before
        // it is moved into place.
        sync_tree(dir).map_err(open_io(ctx("syncing the new storage")))?;
        Ok(())
    }

    fn open_existing(
        config: &PersistentStorageConfig,
        limits: LogLimits,
    ) -> Result<Self, PersistentStorageError> {
        let root = config.get_path().to_path_buf();
        let anchor_path = root.join(ANCHOR_FILE);
        let corrupt = |path: &Path, reason: String| PersistentStorageError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        let anchor = match Anchor::read(&anchor_path)
            .map_err(open_io(format!("reading {}", anchor_path.display())))?
        {
            AnchorRead::Missing if is_rocksdb_dir(&root) => {
                return Err(PersistentStorageError::UnsupportedFormat {
                    path: root,
                    found: "a RocksDB directory (omnipaxos_storage 0.2)".into(),
                    supported: FORMAT_VERSION,
                })
            }
            AnchorRead::Missing => return Err(PersistentStorageError::NotAStorage { path: root }),
            AnchorRead::Damaged(reason) => return Err(corrupt(&anchor_path, reason)),
            AnchorRead::OtherFormat(v) => {
                return Err(PersistentStorageError::UnsupportedFormat {
                    path: root,
                    found: format!("format version {v}"),
                    supported: FORMAT_VERSION,
                })
            }
            AnchorRead::Ok(a) => a,
        };
        let (entry_type, snapshot_type) = type_names::<T>();
        if anchor.entry_type != entry_type || anchor.snapshot_type != snapshot_type {
            return Err(PersistentStorageError::EntryTypeMismatch {
                stored: format!("{} / {}", anchor.entry_type, anchor.snapshot_type),
                expected: format!("{entry_type} / {snapshot_type}"),
            });
        }

        let db_path = root.join(DB_DIR);
        if !db_path.join("db").is_file() {
            // sled would create an empty database here.
            return Err(PersistentStorageError::StateLost { path: root });
        }
        let db_err = |e: sled::Error| match e {
            // sled found damage it could not roll back: name the file, like our own checks.
            sled::Error::Corruption { .. } => corrupt(&db_path, format!("sled: {e}")),
            e => PersistentStorageError::Database(e),
        };
        let db = open_sled(&sled_config_for(&config.get_database_options(), &db_path))
            .map_err(db_err)?;
        let Some(sealed) = db.get(CHECKPOINT_KEY).map_err(db_err)? else {
            return Err(PersistentStorageError::StateLost { path: root });
        };
        let body = unseal(&sealed)
            .ok_or_else(|| corrupt(&db_path, "checkpoint checksum mismatch".into()))?;
        let ckpt: Checkpoint =
            decode(body).map_err(|e| corrupt(&db_path, format!("checkpoint: {e}")))?;
        if ckpt.id != anchor.id {
            return Err(PersistentStorageError::Foreign {
                path: root,
                what: "the database belongs to another storage than the anchor",
            });
        }

        // The newest generation whose base group is committed holds the state. A newer one
        // without it is an interrupted rewrite; an older one waits to be deleted.
        let gens = generations(&root)?;
        let mut chosen = None;
        let mut incomplete = Vec::new();
        for &g in gens.iter().rev() {
            let dir = log_dir(&root, g);
            if g > ckpt.gen {
                let scan = match log::scan(&dir, 0, 0) {
                    // Not even a segment: a rewrite stopped right after creating the directory.
                    Err(PersistentStorageError::LogTruncated { .. }) => {
                        incomplete.push(g);
                        continue;
                    }
                    r => r?,
                };
                let r = replay(&scan, None, &dir)?;
                if r.based {
                    chosen = Some((g, scan, r));
                    break;
                }
                incomplete.push(g);
            } else if g == ckpt.gen {
                let scan = log::scan(&dir, ckpt.log_records, ckpt.log_chain)?;
                let r = replay(&scan, Some((&ckpt.state, ckpt.seq)), &dir)?;
                chosen = Some((g, scan, r));
                break;
            } else {
                break;
            }
        }
        let Some((gen, scan, replayed)) = chosen else {
            return Err(PersistentStorageError::LogTruncated {
                path: log_dir(&root, ckpt.gen),
                expected: ckpt.log_records,
                found: 0,
            });
        };
        let dir = log_dir(&root, gen);
        match scan.header.as_deref().map(|h| (h.first(), h.get(1..))) {
            Some((Some(&KIND_HEADER), Some(h))) => match decode::<LogHeader>(h) {
                Ok(h) if h.magic == LOG_MAGIC && h.id == anchor.id && h.gen == gen => {}
                Ok(h) if h.magic == LOG_MAGIC => {
                    return Err(PersistentStorageError::Foreign {
                        path: root,
                        what: "the log belongs to another storage or generation",
                    })
                }
                _ => return Err(corrupt(&dir, "log header record".into())),
            },
            _ => return Err(corrupt(&dir, "log header record".into())),
        }
        let Replayed {
            state, seq, keep, ..
        } = replayed;
        // Every live entry must be an entry record the log keeps.
        let map_ok = state.map.start.checked_add(state.map.len()).is_some()
            && state
                .map
                .extents
                .windows(2)
                .all(|w| w[0].off + w[0].len <= w[1].off)
            && state.map.extents.iter().all(|e| {
                e.len > 0
                    && e.off >= 1
                    && e.off.checked_add(e.len).is_some_and(|x| x <= keep)
                    && (e.off..e.off + e.len).all(|o| scan.kind(o) == Some(KIND_ENTRY))
            });
        if !map_ok {
            return Err(corrupt(
                &dir,
                "the state refers to records the log does not hold".into(),
            ));
        }
        if !anchor.allows(seq, state.guard()) {
            return Err(PersistentStorageError::StateRolledBack {
                allowed: Box::new(anchor.guards),
                found: Box::new(state.guard()),
            });
        }
        if let Some(r) = state.snapshot {
            let ok = db
                .get(snapshot_key(r.key))
                .map_err(db_err)?
                .is_some_and(|b| b.len() as u64 == r.len && crc32c(&b) == r.crc);
            if !ok {
                return Err(corrupt(&db_path, "snapshot missing or damaged".into()));
            }
        }

        // Everything checks out: cut the log after the last committed write, remove what an
        // interrupted rewrite or anchor update left.
        let log = Log::open(scan, keep, limits)?;
        for g in gens.iter().copied().filter(|&g| g != gen) {
            let d = log_dir(&root, g);
            fs::remove_dir_all(&d).map_err(open_io(format!("removing {}", d.display())))?;
        }
        drop(incomplete);
        let _ = fs::remove_file(root.join(format!("{ANCHOR_FILE}.tmp")));
        let mut anchor = anchor;
        if seq < anchor.guard_seq {
            // The guarded write did not commit: the anchor names the state we have.
            anchor.guard_seq = seq;
            anchor.guards = [state.guard(); 2];
            anchor
                .write(&root)
                .map_err(open_io(format!("writing the anchor in {}", root.display())))?;
        }
        let mut stale_snapshots = Vec::new();
        for kv in db.scan_prefix(SNAPSHOT_PREFIX) {
            let (k, _) = kv.map_err(db_err)?;
            let key = k
                .get(SNAPSHOT_PREFIX.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes);
            if key.is_none() || key != state.snapshot.map(|r| r.key) {
                match key {
                    Some(k) => stale_snapshots.push(k),
                    None => {
                        db.remove(k).map_err(db_err)?;
                    }
                }
            }
        }
        let sled_files =
            SledFiles::open(&db_path).map_err(open_io(format!("opening {}", db_path.display())))?;
        let mut s = PersistentStorage {
            root,
            durability: config.get_durability(),
            rewrite_threshold: config.get_log_rewrite_threshold() as u64,
            checkpoint_interval: config.get_checkpoint_interval() as u64,
            limits,
            db,
            sled_files,
            log,
            id: anchor.id,
            gen,
            seq,
            state,
            anchor,
            ckpt_records: 0,
            ckpt_bytes: 0,
            ckpt_due: false,
            stale_snapshots,
            poisoned: false,
            _entries: PhantomData,
        };
        // A checkpoint at the end of the log: the next open starts here, and a cut of what is
        // already written is found.
        s.checkpoint().map_err(|e| match e {
            StorageError::Database(e) => db_err(e),
            e => PersistentStorageError::Io {
                context: format!("writing a checkpoint in {}", s.root.display()),
                source: io::Error::other(e.to_string()),
            },
        })?;
        Ok(s)
    }

    /// Computes the state after `ops` (and the node record) and the records to append;
    /// writes nothing. `None` if the write changes nothing.
    fn plan(
        &self,
        ops: Vec<StorageOp<T>>,
        record: Option<Vec<u8>>,
    ) -> Result<Option<Plan>, StorageError> {
        let mut next = self.state.clone();
        let mut entries = Encoded::default();
        let mut prog: Vec<LogOp> = Vec::new();
        let mut snapshot = None;
        let base = self.log.records();
        let max = self.log.max_payload();
        let seq = self.seq + 1;
        let too_large = |len: usize| StorageError::TooLarge {
            bytes: len + log::HEADER,
            max: max + log::HEADER,
        };
        let apply = |next: &mut State,
                     prog: &mut Vec<LogOp>,
                     entries: &mut Encoded,
                     op: LogOp,
                     new: Vec<T>|
         -> Result<(), StorageError> {
            let first = base + entries.len() as u64;
            for e in &new {
                let len = entries.push_entry(e)?;
                if len > max {
                    return Err(too_large(len));
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
        let sync = self.durability == Durability::Immediate || guard_changed;
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
        let n = entries.len();
        let last_len = if n > 0 { entries.get(n - 1).len() } else { 0 };
        let in_meta = n > 0
            && state.len() + log::CommitMark::LEN <= log::MAX_META
            && last_len + state.len() + log::CommitMark::LEN + log::HEADER
                <= self.limits.max_batch_bytes();
        if in_meta {
            for i in 0..n - 1 {
                self.log.push(entries.get(i))?;
            }
            self.log.commit(entries.get(n - 1), seq, &state)?;
        } else {
            for i in 0..n {
                self.log.push(entries.get(i))?;
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
        let dead = self.log.records() - live;
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
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        for (off, n) in map.runs(map.start, map.end()) {
            let mut done = 0;
            while done < n {
                let k = (n - done).min(REWRITE_CHUNK);
                chunk.clear();
                self.log.read(off + done, k, |p| {
                    chunk.push(p.to_vec());
                    Ok(())
                })?;
                for p in &chunk {
                    log.push(p)?;
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

    fn decode_entry(bytes: &[u8]) -> Result<T, StorageError> {
        match bytes.split_first() {
            Some((&KIND_ENTRY, body)) => {
                decode(body).map_err(|e| StorageError::Corrupt(format!("entry: {e}")))
            }
            _ => Err(StorageError::Corrupt(
                "a record the log map names is not an entry".into(),
            )),
        }
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<T>, StorageError> {
        let map = &self.state.map;
        if from >= to || from < map.start || to > map.end() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((to - from).min(1 << 20) as usize);
        for (off, n) in map.runs(from, to) {
            self.log.read(off, n, |p| {
                out.push(Self::decode_entry(p)?);
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
