//! Opening a storage: creating a fresh one, finding the generation that holds the state,
//! rolling its log forward from the checkpoint, and checking everything before anything is
//! changed (see the module documentation of `persistent_storage`).

use super::{
    config::{sled_config_for, LogLimits},
    crc::crc32c,
    entries::is_entry_kind,
    error::open_io,
    header_record,
    log::{self, group_chain, Log, Scan, TailRecord},
    log_dir,
    meta::{
        decode, encode, seal, snapshot_key, sync_dir, unseal, Anchor, AnchorRead, Checkpoint,
        LogHeader, LogOp, State, ANCHOR_FILE, ANCHOR_MAGIC, FORMAT_VERSION, KIND_HEADER,
        KIND_STATE, LOG_MAGIC, SNAPSHOT_PREFIX,
    },
    sled_files::{open_sled, sync_tree, SledFiles},
    state_record, PersistentStorage, PersistentStorageConfig, PersistentStorageError, StorageError,
    CHECKPOINT_KEY, DB_DIR,
};
use omnipaxos::storage::Entry;
use serde::{de::DeserializeOwned, Serialize};
use std::{
    fs, io,
    marker::PhantomData,
    path::{Path, PathBuf},
};

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
pub(super) enum PathState {
    /// Nothing, or an empty directory: a fresh storage can be created there.
    Vacant,
    Occupied,
}

pub(super) fn path_state(path: &Path) -> Result<PathState, PersistentStorageError> {
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
            k if is_entry_kind(k) => (&group[..], false),
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
                k if is_entry_kind(k) => entries.extend(g.slot..g.slot + g.entries),
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
    pub(super) fn limits(
        config: &PersistentStorageConfig,
    ) -> Result<LogLimits, PersistentStorageError> {
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
    pub(super) fn create(
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

    pub(super) fn open_existing(
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
        let db = open_sled(
            &sled_config_for(&config.get_database_options(), &db_path),
            &db_path,
        )
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
        // Every live entry must be in an entry record the log keeps.
        let kept_slots = scan.slot_of(keep);
        let map_ok = state.map.start.checked_add(state.map.len()).is_some()
            && state
                .map
                .extents
                .windows(2)
                .all(|w| w[0].off + w[0].len <= w[1].off)
            && state.map.extents.iter().all(|e| {
                e.len > 0
                    && e.off >= 1
                    && e.off.checked_add(e.len).is_some_and(|x| x <= kept_slots)
                    && scan.entry_slots(e.off, e.len)
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
        let mut anchor_changed = false;
        if seq < anchor.guard_seq {
            // The guarded write did not commit: the anchor names the state we have.
            anchor.guard_seq = seq;
            anchor.guards = [state.guard(); 2];
            anchor_changed = true;
        }
        if anchor.format != FORMAT_VERSION {
            // A storage of an earlier format version: from now on it may hold records of
            // this version, which earlier versions cannot read; the anchor says so before any
            // is written.
            anchor.format = FORMAT_VERSION;
            anchor.magic = ANCHOR_MAGIC;
            anchor_changed = true;
        }
        if anchor_changed {
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
}
