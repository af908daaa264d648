//! A storage backend that survives crashes: entries in a [`commitlog`] log, the small state in a
//! [`sled`] database.
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
//! let storage: PersistentStorage<KeyValue> = PersistentStorage::open(config)?;
//! # Ok::<(), omnipaxos_storage::persistent_storage::PersistentStorageError>(())
//! ```
//!
//! Build the node with it (`OmniPaxosConfig::build(storage)`); after a crash, open the same
//! directory again and build the node with that: it recovers from what the storage holds.
//!
//! # On-disk layout
//!
//! ```text
//! <path>/anchor                    identity, entry type names, last promise/accepted round (CRC)
//! <path>/db/                       sled: key "meta" (the state, CRC), key "snapshot" (bytes)
//! <path>/log-<gen>/                commitlog generation <gen> (20 digits):
//!        <base>.log, <base>.index    segments and their indexes, as commitlog writes them
//! ```
//!
//! * **meta** (one sled value, `crc32c ++ bincode`): the storage id, the log generation, the
//!   number of committed log records and a CRC-32C chain over their headers, the *log map*,
//!   promise, accepted round, decided and compacted index, stop sign, and the length and CRC
//!   of the snapshot.
//! * **log**: record 0 of each generation is a header (magic, storage id, generation); every
//!   other record is one bincode-encoded entry. The *log map* says where the stored entries
//!   are: the absolute index of the first one (the trimmed index) and a list of extents of
//!   commitlog offsets. Records outside every extent are dead: trimmed, or overwritten by
//!   `AppendOnPrefix`. The log is only ever appended to while the storage runs.
//! * **anchor**: written once at creation and again, atomically (temporary file, `fsync`,
//!   rename, `fsync` of the directory), *before* the commit of any write that changes the
//!   promise or the accepted round. It holds the (promise, accepted round) before and after
//!   that change; the database must hold one of the two.
//!
//! # Atomicity
//!
//! [`write_atomically`](Storage::write_atomically) computes the new meta in memory (checking
//! every operation first: a batch that does not fit the log is refused with nothing written),
//! then
//!
//! 1. if the promise or accepted round changes, replaces the anchor (allowing old and new);
//! 2. appends the new entries to the log, after everything already there;
//! 3. syncs the log's segment files;
//! 4. writes the new meta (and snapshot) to sled in **one batch**, and flushes sled.
//!
//! Step 4 is the commit point: sled applies a batch atomically, also across a crash. A crash
//! before it leaves the old meta, which does not reference the records of step 2 (they are
//! past its committed record count, and `open` cuts them off); a crash after it leaves the
//! new meta, whose records were synced in step 3. Nothing a committed meta references is
//! ever changed in place: truncation (`AppendOnPrefix`) and `Trim` only change the log map,
//! and so take effect exactly at the commit. So after any crash the storage equals its state
//! before or after each write, never a mix.
//!
//! Dead records are reclaimed by a **rewrite**, done at the start of a write when they are at
//! least [`PersistentStorageConfig::set_log_rewrite_threshold`] and at least the live
//! entries (amortised O(1) per entry): the live entries are copied into a new generation
//! `log-<gen + 1>`, synced; the meta pointing at it is committed and flushed; then the old
//! generation is deleted. A crash at any point leaves a meta and the complete generation it
//! names; `open` deletes any other generation. The user's `LogOptions` are kept.
//!
//! # Durability and its cost
//!
//! With [`Durability::Immediate`] (the default) a write that returned `Ok` is on disk: the
//! segment files are `fdatasync`ed (commitlog's own `flush()` does not sync), sled is flushed,
//! and sled's data file is `fdatasync`ed as well: on Linux, sled 0.34's `flush()` only calls
//! `sync_file_range`, which neither flushes the disk's write cache nor the file's size, and it
//! never syncs the blob files it keeps large values in (so after a write with a snapshot of
//! 16 KiB or more, the blob files and directories are synced too). That is three syncs per
//! write (more when a segment or the anchor is created), whatever the number of entries, so
//! batch entries into as few writes as you can. The benchmark `cargo bench -p
//! omnipaxos_storage` and `cargo run --release -p omnipaxos_storage --example storage_bench`
//! measure it against a plain file with one `fsync` per batch and against `MemoryStorage`.
//! [`Durability::Deferred`] skips the syncs (except for promise changes) for speed, losing
//! the last writes on a crash; see there.
//!
//! # Errors
//!
//! * Opening: [`PersistentStorageError`], one variant per cause (see the next section for
//!   damage). `new` on a non-empty directory is `AlreadyExists`; a non-empty directory without
//!   an anchor is `NotAStorage`; a directory in use by another live instance is `Database`
//!   (after waiting up to a second for sled's lock, which a storage dropped a moment ago in the
//!   same process may still hold).
//! * Reads and writes: [`StorageError`]. A batch that does not fit the log (`InvalidOp`) or an
//!   entry over the commitlog's message size (`TooLarge`) is refused before anything is
//!   written, and the storage stays usable. An I/O or sled failure while the log or the
//!   database is being changed leaves the storage `Poisoned`: the disk holds the state before
//!   or after that write, and only reopening tells which, so further writes are refused.
//!
//! # Damage
//!
//! `open` checks everything before it changes anything, and returns a
//! [`PersistentStorageError`] instead of panicking or opening a store that forgot what it
//! acknowledged:
//!
//! * every committed record of the log is read once: segment magic, consecutive offsets,
//!   lengths, the CRC-32C of each record, and the chain checksum over all headers, which the
//!   meta must match (so truncated, deleted, swapped or bit-flipped segments are found);
//! * the index files are not trusted at all: commitlog panics on a missing, empty or full
//!   one, so `open` writes them anew from the scan (and, as a last resort, catches a panic
//!   of commitlog during open with `std::panic::catch_unwind`);
//! * meta and snapshot carry CRCs; meta, anchor and log header carry the storage id (files
//!   of another storage are refused), and the anchor the entry type names;
//! * sled 0.34 can reopen a damaged database as an empty one, or roll a truncated one back to
//!   an older state, without error: the anchor tells `open` that the database must hold a
//!   state, and which promise; the write tags in the log's uncommitted tail show writes the
//!   database lost (`WritesLost`); damage that sled itself notices is reported as `Corrupt`.
//!
//! Only then does `open` cut the log back to the committed records and delete stale files.
//! A storage directory copied as a whole from another node is consistent and opens: give
//! each node its own path.
//!
//! # Known problems
//!
//! Storages in one process are not independent: sled runs its background work on threads
//! that all its databases share. A [`Durability::Deferred`] storage that has taken many writes
//! (measured: 60,000 single-entry writes) slows the syncs of an `Immediate` storage in the
//! same process while it is open, from 0.6 ms to about 20 ms per write. Give each node its
//! own process (as `omnipaxos_kv` does), or do not mix the two durabilities in one process.
//!
//! sled 0.34.7 can deadlock under a sustained stream of small writes: seen once in the
//! benchmark (single-entry writes, thousands per second for several seconds, on a busy
//! disk), the writing thread waited in sled's `SegmentAccountant::bump_tip` for a file
//! truncation queued on sled's I/O threads, which waited for the lock that thread held.
//! `write_atomically` then never returns. sled is pinned to 0.34.7, so this is not fixed
//! here; the way out would be to keep the state record in a file of our own instead.

mod config;
mod crc;
mod error;
mod log;
mod meta;

pub use config::{
    Durability, PersistentStorageConfig, DEFAULT_LOG_REWRITE_THRESHOLD, DEFAULT_PATH,
};
pub use error::{PersistentStorageError, StorageError};

use crate::InvalidOpError;
use config::{sled_config_for, LogLimits};
use crc::crc32c;
use error::{io_err, open_io};
use log::{Log, WriteTag};
use meta::{
    decode, encode, seal, sync_dir, unseal, Anchor, Extent, LogHeader, LogMap, Meta, SnapshotRef,
    ANCHOR_FILE, ANCHOR_MAGIC, LOG_MAGIC,
};
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage, StorageOp, StorageResult},
};
use serde::{de::DeserializeOwned, Serialize};
use std::{
    fmt, fs, io,
    marker::PhantomData,
    path::{Path, PathBuf},
};

const META_KEY: &[u8] = b"meta";
const SNAPSHOT_KEY: &[u8] = b"snapshot";
const DB_DIR: &str = "db";
/// A rewrite also happens when the log map has more extents than this.
const MAX_EXTENTS: usize = 64;
/// Records copied per step of a rewrite.
const REWRITE_CHUNK: u64 = 1024;

fn log_dir(root: &Path, gen: u64) -> PathBuf {
    root.join(format!("log-{gen:020}"))
}

/// Entries in a commitlog, state in sled; atomic and durable writes. See the
/// [module documentation](self).
///
/// Entries and snapshots are stored with bincode, so `T` and `T::Snapshot` must be serde types.
/// One instance per directory: sled locks its database, so a second `open` of the same path
/// fails while the first instance lives.
pub struct PersistentStorage<T: Entry> {
    root: PathBuf,
    durability: Durability,
    rewrite_threshold: u64,
    limits: LogLimits,
    db: sled::Db,
    /// sled's data file and directory, synced after each flush: sled 0.34 on Linux only
    /// `sync_file_range`s what it writes, which neither flushes the disk's cache nor the
    /// file's metadata.
    sled_files: SledFiles,
    log: Log,
    /// The committed state. Invariant: equals the meta in sled.
    meta: Meta,
    anchor: Anchor,
    /// Set when a write failed while changing the log or the database (see
    /// [`StorageError::Poisoned`]).
    poisoned: bool,
    /// Whether the last committed write was synced (goes into the next write's tag).
    prev_synced: bool,
    _entries: PhantomData<fn() -> T>,
}

impl<T: Entry> fmt::Debug for PersistentStorage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersistentStorage")
            .field("path", &self.root)
            .field("generation", &self.meta.gen)
            .field("entries", &(self.meta.map.start..self.meta.map.end()))
            .field("promise", &self.meta.promise)
            .field("decided_idx", &self.meta.decided_idx)
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
    /// The meta after the write (its log fields still to be filled in).
    next: Meta,
    /// The encoded entries to append to the log.
    records: Vec<Vec<u8>>,
    /// The new snapshot bytes (`Some(None)`: remove it), if the write changes the snapshot.
    snapshot: Option<Option<Vec<u8>>>,
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

impl<T> PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
{
    /// Opens the storage in `config.get_path()`, creating it if the path does not exist or is
    /// an empty directory. After a crash this recovers the state after the last write that
    /// returned `Ok` (or a later one that was under way).
    pub fn open(config: PersistentStorageConfig) -> Result<Self, PersistentStorageError> {
        let limits = Self::limits(&config)?;
        if let PathState::Vacant = path_state(config.get_path())? {
            Self::create(&config, limits)?;
        }
        Self::open_existing(&config, limits)
    }

    /// Creates a fresh storage in `config.get_path()`; fails with
    /// [`PersistentStorageError::AlreadyExists`] if the directory holds anything.
    pub fn new(config: PersistentStorageConfig) -> Result<Self, PersistentStorageError> {
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
        let header = encode(&LogHeader {
            magic: LOG_MAGIC,
            id,
            gen: 1,
        })
        .map_err(PersistentStorageError::InvalidConfig)?;
        let log = Log::create(&log_dir(dir, 1), limits, &header)
            .map_err(open_io(ctx("creating the log")))?;
        let meta = Meta {
            id,
            seq: 0,
            gen: 1,
            log_records: log.records(),
            log_chain: log.chain(),
            map: LogMap::default(),
            promise: None,
            accepted_round: None,
            decided_idx: 0,
            compacted_idx: 0,
            stopsign: None,
            snapshot: None,
        };
        drop(log);
        let body = encode(&meta).map_err(PersistentStorageError::InvalidConfig)?;
        {
            let db = sled_config_for(&config.get_database_options(), &dir.join(DB_DIR))
                .open()
                .map_err(PersistentStorageError::Database)?;
            db.insert(META_KEY, seal(&body))
                .map_err(PersistentStorageError::Database)?;
            db.flush().map_err(PersistentStorageError::Database)?;
        }
        let (entry_type, snapshot_type) = type_names::<T>();
        Anchor {
            magic: ANCHOR_MAGIC,
            id,
            entry_type,
            snapshot_type,
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
            None => return Err(PersistentStorageError::NotAStorage { path: root }),
            Some(Err(reason)) => return Err(corrupt(&anchor_path, reason)),
            Some(Ok(a)) => a,
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
        let Some(sealed) = db.get(META_KEY).map_err(db_err)? else {
            return Err(PersistentStorageError::StateLost { path: root });
        };
        let body =
            unseal(&sealed).ok_or_else(|| corrupt(&db_path, "state checksum mismatch".into()))?;
        let meta: Meta = decode(body).map_err(|e| corrupt(&db_path, format!("state: {e}")))?;
        if meta.id != anchor.id {
            return Err(PersistentStorageError::Foreign {
                path: root,
                what: "the database belongs to another storage than the anchor",
            });
        }
        if !anchor.guards.contains(&meta.guard()) {
            return Err(PersistentStorageError::StateRolledBack {
                allowed: Box::new(anchor.guards),
                found: Box::new(meta.guard()),
            });
        }
        if let Some(r) = meta.snapshot {
            let ok = db
                .get(SNAPSHOT_KEY)
                .map_err(db_err)?
                .is_some_and(|b| b.len() as u64 == r.len && crc32c(&b) == r.crc);
            if !ok {
                return Err(corrupt(&db_path, "snapshot missing or damaged".into()));
            }
        }
        let map_ok = meta.map.extents.iter().all(|e| {
            e.len > 0
                && e.off >= 1
                && e.off
                    .checked_add(e.len)
                    .is_some_and(|x| x <= meta.log_records)
        }) && meta
            .map
            .extents
            .windows(2)
            .all(|w| w[0].off + w[0].len <= w[1].off)
            && meta.map.start.checked_add(meta.map.len()).is_some();
        if !map_ok || meta.log_records == 0 {
            return Err(corrupt(
                &db_path,
                "state refers to records the log cannot hold".into(),
            ));
        }

        let dir = log_dir(&root, meta.gen);
        let check_tail = |tags: &[WriteTag]| {
            for t in tags {
                if t.seq <= meta.seq {
                    return Err(corrupt(
                        &dir,
                        format!("uncommitted records carry the committed write {}", t.seq),
                    ));
                }
                if t.prev_synced && t.seq >= meta.seq + 2 {
                    return Err(PersistentStorageError::WritesLost {
                        committed: meta.seq,
                        logged: t.seq,
                    });
                }
            }
            Ok(())
        };
        let (log, header) = Log::open(&dir, limits, meta.log_records, meta.log_chain, check_tail)?;
        match decode::<LogHeader>(&header) {
            Ok(h) if h.magic == LOG_MAGIC && h.id == meta.id && h.gen == meta.gen => {}
            Ok(h) if h.magic == LOG_MAGIC => {
                return Err(PersistentStorageError::Foreign {
                    path: root,
                    what: "the log belongs to another storage or generation",
                })
            }
            _ => return Err(corrupt(&dir, "log header record".into())),
        }

        // Everything checks out: remove what an interrupted rewrite or anchor update left.
        let listing =
            fs::read_dir(&root).map_err(open_io(format!("reading {}", root.display())))?;
        for entry in listing.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale_log = name.starts_with("log-") && entry.path() != dir;
            if stale_log {
                fs::remove_dir_all(entry.path())
                    .map_err(open_io(format!("removing {}", entry.path().display())))?;
            } else if name == format!("{ANCHOR_FILE}.tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }

        // What we read may still be only in sled's memory (after a process crash): make it
        // durable, so the next write can tell it follows a synced one.
        db.flush().map_err(db_err)?;
        let sled_files = SledFiles::open(&db_path)
            .and_then(|f| f.sync(true).map(|()| f))
            .map_err(open_io(format!("syncing {}", db_path.display())))?;
        Ok(PersistentStorage {
            sled_files,
            root,
            durability: config.get_durability(),
            rewrite_threshold: config.get_log_rewrite_threshold() as u64,
            limits,
            db,
            log,
            meta,
            anchor,
            poisoned: false,
            prev_synced: true,
            _entries: PhantomData,
        })
    }

    /// Computes the meta after `ops` and the records to append; writes nothing.
    fn plan(&self, ops: Vec<StorageOp<T>>) -> Result<Plan, StorageError> {
        let mut next = self.meta.clone();
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut snapshot = None;
        let base = self.log.records();
        let max = self.log.max_payload();
        let mut push = |next: &mut Meta, entries: Vec<T>| -> Result<(), StorageError> {
            for e in entries {
                let bytes = encode(&e).map_err(StorageError::Codec)?;
                if bytes.len() > max {
                    return Err(StorageError::TooLarge {
                        bytes: bytes.len() + log::HEADER,
                        max: max + log::HEADER,
                    });
                }
                next.map.push(base + records.len() as u64, 1);
                records.push(bytes);
            }
            Ok(())
        };
        for op in ops {
            match op {
                StorageOp::AppendEntry(e) => push(&mut next, vec![e])?,
                StorageOp::AppendEntries(v) => push(&mut next, v)?,
                StorageOp::AppendOnPrefix(from, v) => {
                    let (start, end) = (next.map.start, next.map.end());
                    let from64 = from as u64;
                    if from64 < start || from64 > end {
                        return Err(InvalidOpError::PrefixOutOfRange {
                            from,
                            first: start as usize,
                            end: end as usize,
                        }
                        .into());
                    }
                    next.map.truncate(from64);
                    push(&mut next, v)?;
                }
                StorageOp::SetPromise(b) => next.promise = Some(b),
                StorageOp::SetDecidedIndex(i) => next.decided_idx = i as u64,
                StorageOp::SetAcceptedRound(b) => next.accepted_round = Some(b),
                StorageOp::SetCompactedIdx(i) => next.compacted_idx = i as u64,
                StorageOp::Trim(i) => next.map.trim(i as u64),
                StorageOp::SetStopsign(s) => next.stopsign = s,
                StorageOp::SetSnapshot(s) => {
                    let bytes = s
                        .map(|s| encode(&s).map_err(StorageError::Codec))
                        .transpose()?;
                    next.snapshot = bytes.as_ref().map(|b| SnapshotRef {
                        len: b.len() as u64,
                        crc: crc32c(b),
                    });
                    snapshot = Some(bytes);
                }
            }
        }
        Ok(Plan {
            next,
            records,
            snapshot,
        })
    }

    /// Commits `next` (with `snapshot` bytes if changed) in one sled batch; flushes if `sync`.
    fn commit(
        &mut self,
        next: Meta,
        snapshot: Option<Option<Vec<u8>>>,
        sync: bool,
    ) -> Result<(), StorageError> {
        let body = encode(&next).map_err(StorageError::Codec)?;
        let mut batch = sled::Batch::default();
        batch.insert(META_KEY, seal(&body));
        let big_snapshot = matches!(&snapshot, Some(Some(b)) if b.len() >= SLED_BLOB_MIN);
        match snapshot {
            Some(Some(bytes)) => batch.insert(SNAPSHOT_KEY, bytes),
            Some(None) => batch.remove(SNAPSHOT_KEY),
            None => {}
        }
        // From here on the outcome on disk may be the old or the new state.
        self.poisoned = true;
        self.db.apply_batch(batch)?;
        if sync {
            self.db.flush()?;
            self.sled_files
                .sync(big_snapshot)
                .map_err(io_err("syncing the database files"))?;
        }
        self.poisoned = false;
        self.meta = next;
        Ok(())
    }

    fn write(&mut self, ops: Vec<StorageOp<T>>) -> Result<(), StorageError> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        self.maybe_rewrite()?;
        let Plan {
            mut next,
            records,
            snapshot,
        } = self.plan(ops)?;
        let guard_changed = next.guard() != self.meta.guard();
        let sync = self.durability == Durability::Immediate || guard_changed;
        next.seq = self.meta.seq + 1;
        let tag = WriteTag {
            seq: next.seq,
            prev_synced: self.prev_synced,
        };
        if guard_changed {
            // Before the commit, allowing both: a crash in between leaves a valid pair.
            let mut anchor = self.anchor.clone();
            anchor.guards = [self.meta.guard(), next.guard()];
            anchor
                .write(&self.root)
                .map_err(io_err("writing the anchor"))?;
            self.anchor = anchor;
        }
        if !records.is_empty() || sync {
            self.poisoned = true;
            if !records.is_empty() {
                self.log.append(&records, Some(tag))?;
            }
            if sync {
                self.log.sync()?;
            }
            self.poisoned = false;
        }
        next.log_records = self.log.records();
        next.log_chain = self.log.chain();
        self.commit(next, snapshot, sync)?;
        self.prev_synced = sync;
        Ok(())
    }

    /// Copies the live entries into a new log generation when enough records are dead (see
    /// the module documentation). Crash-safe; on error before its commit nothing changed.
    fn maybe_rewrite(&mut self) -> Result<(), StorageError> {
        let live = self.meta.map.len();
        let dead = self.meta.log_records - 1 - live;
        let due = (dead >= self.rewrite_threshold && dead >= live)
            || self.meta.map.extents.len() > MAX_EXTENTS;
        if !due {
            return Ok(());
        }
        let gen = self.meta.gen + 1;
        let dir = log_dir(&self.root, gen);
        let result = self.build_generation(gen, &dir);
        let new_log = match result {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut next = self.meta.clone();
        next.seq += 1;
        next.gen = gen;
        next.log_records = new_log.records();
        next.log_chain = new_log.chain();
        next.map = LogMap {
            start: self.meta.map.start,
            extents: if live > 0 {
                vec![Extent { off: 1, len: live }]
            } else {
                Vec::new()
            },
        };
        // Always flushed: the old generation is deleted next.
        self.commit(next, None, true)?;
        self.prev_synced = true;
        let old = std::mem::replace(&mut self.log, new_log);
        let old_dir = old.dir().to_path_buf();
        drop(old);
        // A failure here only leaves garbage that the next open removes.
        let _ = fs::remove_dir_all(&old_dir);
        Ok(())
    }

    fn build_generation(&self, gen: u64, dir: &Path) -> Result<Log, StorageError> {
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io_err("removing a stale log generation"))?;
        }
        let header = encode(&LogHeader {
            magic: LOG_MAGIC,
            id: self.meta.id,
            gen,
        })
        .map_err(StorageError::Codec)?;
        let mut log =
            Log::create(dir, self.limits, &header).map_err(io_err("creating a log generation"))?;
        let (start, end) = (self.meta.map.start, self.meta.map.end());
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        for (off, n) in self.meta.map.runs(start, end) {
            let mut done = 0;
            while done < n {
                let k = (n - done).min(REWRITE_CHUNK);
                chunk.clear();
                self.log.read(off + done, k, |p| {
                    chunk.push(p.to_vec());
                    Ok(())
                })?;
                log.append(&chunk, None)?;
                done += k;
            }
        }
        log.sync()?;
        Ok(log)
    }

    fn decode_entry(bytes: &[u8]) -> Result<T, StorageError> {
        decode(bytes).map_err(|e| StorageError::Corrupt(format!("entry: {e}")))
    }

    fn entries(&self, from: u64, to: u64) -> Result<Vec<T>, StorageError> {
        let map = &self.meta.map;
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
        let Some(r) = self.meta.snapshot else {
            return Ok(None);
        };
        let bytes = self
            .db
            .get(SNAPSHOT_KEY)?
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
        if self.durability == Durability::Deferred && !self.poisoned {
            // Best effort: with `Deferred`, this is when the last writes reach the disk.
            if self.log.sync().is_ok() && self.db.flush().is_ok() {
                let _ = self.sled_files.sync(true);
            }
        }
    }
}

impl<T> Storage<T> for PersistentStorage<T>
where
    T: Entry + Serialize + DeserializeOwned,
{
    fn write_atomically(&mut self, ops: Vec<StorageOp<T>>) -> StorageResult<()> {
        Ok(self.write(ops)?)
    }

    fn append_entry(&mut self, entry: T) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntry(entry)])
    }

    fn append_entries(&mut self, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendEntries(entries)])
    }

    fn append_on_prefix(&mut self, from_idx: usize, entries: Vec<T>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::AppendOnPrefix(from_idx, entries)])
    }

    fn set_promise(&mut self, n_prom: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetPromise(n_prom)])
    }

    fn set_decided_idx(&mut self, ld: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetDecidedIndex(ld)])
    }

    fn get_decided_idx(&self) -> StorageResult<usize> {
        Ok(self.meta.decided_idx as usize)
    }

    fn set_accepted_round(&mut self, na: Ballot) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetAcceptedRound(na)])
    }

    fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.meta.accepted_round)
    }

    fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<T>> {
        Ok(self.entries(from as u64, to as u64)?)
    }

    fn get_log_len(&self) -> StorageResult<usize> {
        Ok(self.meta.map.len() as usize)
    }

    fn get_suffix(&self, from: usize) -> StorageResult<Vec<T>> {
        Ok(self.entries(from as u64, self.meta.map.end())?)
    }

    fn get_promise(&self) -> StorageResult<Option<Ballot>> {
        Ok(self.meta.promise)
    }

    fn set_stopsign(&mut self, s: Option<StopSign>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetStopsign(s)])
    }

    fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
        Ok(self.meta.stopsign.clone())
    }

    fn trim(&mut self, idx: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::Trim(idx)])
    }

    fn set_compacted_idx(&mut self, idx: usize) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetCompactedIdx(idx)])
    }

    fn get_compacted_idx(&self) -> StorageResult<usize> {
        Ok(self.meta.compacted_idx as usize)
    }

    fn set_snapshot(&mut self, snapshot: Option<T::Snapshot>) -> StorageResult<()> {
        self.write_atomically(vec![StorageOp::SetSnapshot(snapshot)])
    }

    fn get_snapshot(&self) -> StorageResult<Option<T::Snapshot>> {
        Ok(self.snapshot()?)
    }
}
