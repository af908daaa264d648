//! One generation of the commitlog: creating it, validating its files before commitlog sees
//! them, appending writes as groups of records that end in a commit marker, syncing what was
//! appended, reading any range.
//!
//! commitlog 0.2.0 trusts its files: a missing, empty or full index file makes it panic, a
//! damaged segment is only noticed when read, and `flush()` does not `fsync`. So on open we
//! scan every segment ourselves (magic, offsets, lengths, CRC-32C of each record, and a chain
//! checksum over the record headers up to the checkpoint, which must match the one the
//! checkpoint recorded), cut the log back to the last committed write, and write every index
//! file anew from the scan. The index files are thus derived data: nothing depends on them
//! surviving a crash.

use super::{
    config::LogLimits,
    crc::crc32c_append,
    entries::{entry_count, for_each_entry, is_entry_kind, written_entry_count, EntryCodec},
    error::{io_err, open_io, PersistentStorageError, StorageError},
    meta::sync_dir,
    slots::Slots,
};
use commitlog::{
    message::{MessageBuf, MessageSet},
    CommitLog, ReadError, ReadLimit,
};
use std::{
    fs::{self, File},
    io::{self, BufReader, Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

/// Bytes of a commitlog record header: offset u64, size u32, CRC-32C u32, reserved u16,
/// metadata size u16 (all little endian).
pub(crate) const HEADER: usize = 20;
/// The two bytes every segment file starts with.
const SEGMENT_MAGIC: [u8; 2] = [0xff, 0xff];
/// The largest commitlog metadata (its length is a `u16`).
pub(crate) const MAX_META: usize = u16::MAX as usize;
/// At most this many bytes after a damaged record are searched for later commits.
const PROBE_MAX: u64 = 256 << 20;

/// The commit marker: commitlog metadata on the last record of each write's group of records
/// (followed, in the same metadata, by the write's state changes when that record is an entry).
/// The group is committed exactly when this record is in the log, intact. `n` is the number of
/// records of the group (this one included) and `crc` the [`group_chain`] over the `n - 1`
/// records before it, so a group whose records were replaced or lost does not pass as
/// committed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct CommitMark {
    /// Sequence number of the write (1 for the first write of a storage; a generation's base
    /// group carries the number of the last write its state includes).
    pub(crate) seq: u64,
    pub(crate) n: u32,
    pub(crate) crc: u32,
}

impl CommitMark {
    pub(crate) const LEN: usize = 16;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8..12].copy_from_slice(&self.n.to_le_bytes());
        b[12..].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Reads the mark from the first [`LEN`](Self::LEN) bytes of a record's metadata.
    fn from_bytes(b: &[u8]) -> Option<CommitMark> {
        if b.len() < Self::LEN {
            return None;
        }
        let w = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(CommitMark {
            seq: u64::from(w(0)) | (u64::from(w(4)) << 32),
            n: w(8),
            crc: w(12),
        })
    }
}

/// Folds one record header into the chain checksum of a log.
pub(crate) fn chain(prev: u32, offset: u64, size: u32, hash: u32) -> u32 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&offset.to_le_bytes());
    b[8..12].copy_from_slice(&size.to_le_bytes());
    b[12..].copy_from_slice(&hash.to_le_bytes());
    crc32c_append(prev, &b)
}

/// Folds one record into the checksum of its group (size and CRC; offsets are checked apart).
pub(crate) fn group_chain(prev: u32, size: u32, hash: u32) -> u32 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&size.to_le_bytes());
    b[4..].copy_from_slice(&hash.to_le_bytes());
    crc32c_append(prev, &b)
}

fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

fn index_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// Parses `<20 digits>.<ext>`.
fn parse_name(name: &str, ext: &str) -> Option<u64> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
        stem.parse().ok()
    } else {
        None
    }
}

/// An open log generation.
pub(crate) struct Log {
    dir: PathBuf,
    limits: LogLimits,
    log: CommitLog,
    /// The entry slots of the records (see [`Slots`]); it counts the records too, and
    /// `slots.records()` is commitlog's next offset.
    slots: Slots,
    /// Chain checksum over all record headers.
    chain: u32,
    /// Base offset and a handle of the segment appends go to, for syncing.
    active: (u64, File),
    /// Segments that were appended to and rolled over since the last sync.
    unsynced: Vec<File>,
    /// Whether appends happened since the last sync, and whether files were created.
    dirty: bool,
    dir_dirty: bool,
    /// Syncs of the segment files since the log was opened (each `fdatasync` counts).
    syncs: u64,
    /// Largest record (header + payload) and total record bytes, to size reads.
    max_record: usize,
    total_bytes: u64,
    /// The group being written: its records not yet handed to commitlog, how many records it
    /// has so far and their group checksum.
    buf: MessageBuf,
    buf_bytes: usize,
    buf_records: usize,
    /// The entries each record of `buf` holds (0 for other kinds), for the slot table.
    buf_entries: Vec<u64>,
    group_len: u32,
    group_crc: u32,
}

/// A record after the checkpoint, as the scan found it (intact: offset, CRC and header hold).
#[derive(Clone, Debug)]
pub(crate) struct TailRecord {
    pub(crate) offset: u64,
    pub(crate) size: u32,
    pub(crate) hash: u32,
    /// The first payload byte (`meta::KIND_*`), 0 for an empty payload.
    pub(crate) kind: u8,
    /// The record's first entry slot, and how many entries it holds (0 for other kinds).
    pub(crate) slot: u64,
    pub(crate) entries: u64,
    pub(crate) commit: Option<CommitMark>,
    /// The state changes the commit mark carries (the metadata after the mark), if any.
    pub(crate) state: Option<Vec<u8>>,
    /// The payload after the kind byte, for records other than entries.
    pub(crate) body: Option<Vec<u8>>,
}

/// Where the intact records of the log end, if not at a clean end of the last segment.
#[derive(Clone, Debug, Default)]
pub(crate) struct Damage {
    /// Offset of the first record that is missing, torn or damaged.
    pub(crate) at: u64,
    /// Commit marks found (by searching byte by byte) in the bytes after it.
    pub(crate) later_commits: Vec<CommitMark>,
}

/// One segment as scanned: its base offset, the file position and kind of each intact
/// record, and the end of the last intact record.
struct SegScan {
    base: u64,
    positions: Vec<u32>,
    kinds: Vec<u8>,
    end: u64,
}

/// What the scan of a generation found.
pub(crate) struct Scan {
    dir: PathBuf,
    segs: Vec<SegScan>,
    /// Segment files after the intact records (removed when the log is opened).
    beyond: Vec<u64>,
    /// Other files to delete (stale indexes, temporary files).
    stray: Vec<PathBuf>,
    /// Intact records from `verified` on.
    pub(crate) tail: Vec<TailRecord>,
    /// Number of records that were verified against the checkpoint's chain.
    pub(crate) verified: u64,
    chain_verified: u32,
    /// Set when the intact records end at a damaged or torn record or at a gap.
    pub(crate) damage: Option<Damage>,
    /// The payload of record 0 (the generation's header), if intact.
    pub(crate) header: Option<Vec<u8>>,
    /// The entry slots of the intact records.
    slots: Slots,
}

impl Scan {
    /// Total number of intact records.
    pub(crate) fn intact(&self) -> u64 {
        self.verified + self.tail.len() as u64
    }

    /// The kind byte of intact record `off`.
    fn kind(&self, off: u64) -> Option<u8> {
        let i = self
            .segs
            .partition_point(|s| s.base <= off)
            .checked_sub(1)?;
        let s = &self.segs[i];
        s.kinds.get((off - s.base) as usize).copied()
    }

    /// The first entry slot of intact record `rec` (the number of slots of the records
    /// before it).
    pub(crate) fn slot_of(&self, rec: u64) -> u64 {
        self.slots.slot_of(rec.min(self.slots.records()))
    }

    /// Whether slots `slot..slot + n` (`n > 0`) lie in intact entry records.
    pub(crate) fn entry_slots(&self, slot: u64, n: u64) -> bool {
        let Some(last) = slot.checked_add(n - 1) else {
            return false;
        };
        if last >= self.slots.len() {
            return false;
        }
        let (first, _) = self.slots.locate(slot);
        let (last, _) = self.slots.locate(last);
        (first..=last).all(|r| self.kind(r).is_some_and(is_entry_kind))
    }
}

impl Log {
    /// Creates generation `dir` (which must not exist), empty; call
    /// [`push`](Self::push)/[`commit`](Self::commit) for its base group.
    pub(crate) fn create(dir: &Path, limits: LogLimits) -> io::Result<Log> {
        fs::create_dir(dir)?;
        let log = CommitLog::new(limits.options_for(dir))?;
        let active = File::open(segment_path(dir, 0))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(Log {
            dir: dir.to_path_buf(),
            limits,
            log,
            slots: Slots::default(),
            chain: 0,
            active: (0, active),
            unsynced: Vec::new(),
            dirty: false,
            dir_dirty: true,
            syncs: 0,
            max_record: 0,
            total_bytes: 0,
            buf: MessageBuf::default(),
            buf_bytes: 0,
            buf_records: 0,
            buf_entries: Vec::new(),
            group_len: 0,
            group_crc: 0,
        })
    }

    /// Opens the generation `scan` describes, keeping its first `keep` records (at most the
    /// intact ones): cuts everything after them and rebuilds the indexes.
    pub(crate) fn open(
        scan: Scan,
        keep: u64,
        limits: LogLimits,
    ) -> Result<Log, PersistentStorageError> {
        let dir = scan.dir.clone();
        let ctx = |what: &str| format!("{what} in {}", dir.display());
        let keep = keep.min(scan.intact());
        // The kept records: the verified prefix and the first tail records.
        let mut chain_acc = scan.chain_verified;
        for r in scan
            .tail
            .iter()
            .take((keep - scan.verified.min(keep)) as usize)
        {
            chain_acc = chain(chain_acc, r.offset, r.size, r.hash);
        }
        if keep < scan.verified {
            return Err(PersistentStorageError::Corrupt {
                path: dir,
                reason: format!("keeping {keep} records of {} verified", scan.verified),
            });
        }
        for &base in &scan.beyond {
            fs::remove_file(segment_path(&dir, base)).map_err(open_io(ctx("removing segment")))?;
        }
        for p in &scan.stray {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(open_io(ctx("removing stale file"))(e))
                }
                _ => {}
            }
        }
        // Segments holding kept records (the first one always stays).
        let last = scan.segs.iter().rposition(|s| s.base < keep).unwrap_or(0);
        let mut max_record = 0usize;
        let mut total_bytes = 0u64;
        for (i, s) in scan.segs.iter().enumerate() {
            let seg = segment_path(&dir, s.base);
            if i > last {
                fs::remove_file(&seg).map_err(open_io(ctx("removing segment")))?;
                let _ = fs::remove_file(index_path(&dir, s.base));
                continue;
            }
            let n = (keep.saturating_sub(s.base) as usize).min(s.positions.len());
            let cut = if n < s.positions.len() {
                u64::from(s.positions[n])
            } else {
                s.end
            };
            for w in s.positions[..n].windows(2) {
                let rec = (w[1] - w[0]) as usize;
                max_record = max_record.max(rec);
                total_bytes += rec as u64;
            }
            if let Some(&p) = s.positions[..n].last() {
                let rec = (cut - u64::from(p)) as usize;
                max_record = max_record.max(rec);
                total_bytes += rec as u64;
            }
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .map_err(open_io(ctx("opening segment")))?;
            if f.metadata().map_err(open_io(ctx("reading segment")))?.len() > cut {
                f.set_len(cut).map_err(open_io(ctx("cutting segment")))?;
                f.sync_data().map_err(open_io(ctx("syncing segment")))?;
            }
            write_index(
                &dir,
                s.base,
                &s.positions[..n],
                i == last,
                limits.index_max_bytes,
            )
            .map_err(open_io(ctx("writing index")))?;
        }
        sync_dir(&dir).map_err(open_io(ctx("syncing directory")))?;

        let options = limits.options_for(&dir);
        // Last resort: the files are checked and the indexes fresh, so commitlog should not
        // panic; if it still does, report it as damage instead of unwinding into the caller.
        let log =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| CommitLog::new(options)))
                .map_err(|_| PersistentStorageError::Corrupt {
                    path: dir.clone(),
                    reason: "commitlog panicked while opening the log".into(),
                })?
                .map_err(open_io(ctx("opening commitlog")))?;
        if log.next_offset() != keep {
            return Err(PersistentStorageError::Corrupt {
                path: dir.clone(),
                reason: format!(
                    "commitlog sees {} records after repair, {keep} expected",
                    log.next_offset()
                ),
            });
        }
        let active_base = scan.segs[last].base;
        let active =
            File::open(segment_path(&dir, active_base)).map_err(open_io(ctx("opening segment")))?;
        let mut slots = scan.slots;
        slots.truncate(keep);
        Ok(Log {
            dir,
            limits,
            log,
            slots,
            chain: chain_acc,
            active: (active_base, active),
            unsynced: Vec::new(),
            dirty: false,
            dir_dirty: false,
            syncs: 0,
            max_record,
            total_bytes,
            buf: MessageBuf::default(),
            buf_bytes: 0,
            buf_records: 0,
            buf_entries: Vec::new(),
            group_len: 0,
            group_crc: 0,
        })
    }

    /// Number of entry slots of all records (see [`Slots`]): the slot the next write's first
    /// entry gets.
    pub(crate) fn slots(&self) -> u64 {
        self.slots.len()
    }

    /// Number of records.
    pub(crate) fn records(&self) -> u64 {
        self.slots.records()
    }

    /// Chain checksum over all record headers.
    pub(crate) fn chain(&self) -> u32 {
        self.chain
    }

    /// Total bytes of all records, headers included.
    pub(crate) fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The generation's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest payload one record may carry (room left for a commit mark).
    pub(crate) fn max_payload(&self) -> usize {
        self.limits
            .max_batch_bytes()
            .saturating_sub(HEADER + CommitMark::LEN)
    }

    /// Adds a record to the group being written (handing full batches to commitlog). Not
    /// committed until [`commit`](Self::commit); not durable until [`sync`](Self::sync). On
    /// error the log may hold part of the group; the caller must stop using it (the next open
    /// cuts it off).
    pub(crate) fn push(&mut self, payload: &[u8]) -> Result<(), StorageError> {
        self.push_record(payload, None)
    }

    /// Adds `payload` as the last record of the group, with the commit mark for write `seq`
    /// and `state` (the write's encoded state changes, or empty) in its metadata, and hands
    /// the group to commitlog.
    pub(crate) fn commit(
        &mut self,
        payload: &[u8],
        seq: u64,
        state: &[u8],
    ) -> Result<(), StorageError> {
        // The group checksum covers the records before this one, also those still in `buf`.
        let mut crc = self.group_crc;
        for m in self.buf.iter() {
            crc = group_chain(crc, m.size(), m.hash());
        }
        let mark = CommitMark {
            seq,
            n: self.group_len + 1,
            crc,
        };
        let mut meta = Vec::with_capacity(CommitMark::LEN + state.len());
        meta.extend_from_slice(&mark.to_bytes());
        meta.extend_from_slice(state);
        self.push_record(payload, Some(&meta))?;
        self.flush_buf()?;
        self.group_len = 0;
        self.group_crc = 0;
        Ok(())
    }

    fn push_record(&mut self, payload: &[u8], meta: Option<&[u8]>) -> Result<(), StorageError> {
        let max = self.limits.max_batch_bytes();
        let rec = HEADER + payload.len() + meta.map_or(0, |m| m.len());
        if meta.is_some_and(|m| m.len() > MAX_META) {
            return Err(StorageError::TooLarge { bytes: rec, max });
        }
        if rec > max {
            return Err(StorageError::TooLarge { bytes: rec, max });
        }
        // commitlog grows a segment's index by half its size when an append does not fit,
        // once: an append that adds more index entries than that panics inside commitlog.
        let max_records = (self.limits.index_max_bytes / 16).max(1);
        if self.buf_bytes + rec > max || self.buf_records >= max_records {
            self.flush_buf()?;
        }
        match meta {
            Some(m) => self.buf.push_with_metadata(m, payload),
            None => self.buf.push(payload),
        }
        .map_err(|e| StorageError::Codec(format!("commitlog message: {e:?}")))?;
        self.buf_entries.push(written_entry_count(payload));
        self.buf_bytes += rec;
        self.buf_records += 1;
        self.group_len += 1;
        Ok(())
    }

    /// Hands the buffered records to commitlog.
    fn flush_buf(&mut self) -> Result<(), StorageError> {
        if self.buf_bytes == 0 {
            return Ok(());
        }
        let first = self.records();
        let mut buf = std::mem::take(&mut self.buf);
        self.buf_bytes = 0;
        self.buf_records = 0;
        let counts = std::mem::take(&mut self.buf_entries);
        let range = self.log.append(&mut buf).map_err(|e| StorageError::Io {
            context: format!("appending to the commitlog in {}", self.dir.display()),
            source: match e {
                commitlog::AppendError::Io(e) => e,
                other => io::Error::other(other.to_string()),
            },
        })?;
        if range.first() != first {
            return Err(StorageError::Corrupt(format!(
                "commitlog appended at offset {}, expected {first}",
                range.first()
            )));
        }
        // commitlog rolls to a new segment named after the first offset of the batch that did
        // not fit; remember to sync the old one and the directory.
        if first != self.active.0 {
            let path = segment_path(&self.dir, first);
            if path.exists() {
                let f = File::open(&path).map_err(io_err("opening new segment"))?;
                let old = std::mem::replace(&mut self.active, (first, f));
                self.unsynced.push(old.1);
                self.dir_dirty = true;
            }
        }
        for m in buf.iter() {
            self.chain = chain(self.chain, m.offset(), m.size(), m.hash());
            self.group_crc = group_chain(self.group_crc, m.size(), m.hash());
            let rec = HEADER + m.size() as usize;
            self.max_record = self.max_record.max(rec);
            self.total_bytes += rec as u64;
        }
        for &n in &counts {
            self.slots.push(n);
        }
        if self.slots.records() != self.log.next_offset() {
            return Err(StorageError::Corrupt(format!(
                "commitlog holds {} records, {} expected",
                self.log.next_offset(),
                self.slots.records()
            )));
        }
        self.dirty = true;
        buf.clear();
        self.buf = buf;
        self.buf_entries = counts;
        self.buf_entries.clear();
        Ok(())
    }

    /// Syncs of the active segment since the log was opened.
    pub(crate) fn syncs(&self) -> u64 {
        self.syncs
    }

    /// Makes everything appended so far durable: `fdatasync` of the touched segment files,
    /// and of the directory when segments were created.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        if self.dirty {
            for f in self.unsynced.drain(..) {
                f.sync_data().map_err(io_err("syncing a segment"))?;
            }
            self.active
                .1
                .sync_data()
                .map_err(io_err("syncing the active segment"))?;
            self.syncs += 1;
            self.dirty = false;
        }
        if self.dir_dirty {
            sync_dir(&self.dir).map_err(io_err("syncing the log directory"))?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    /// Calls `f` with the payloads of records `off..off + n`, in order.
    pub(crate) fn read(
        &self,
        off: u64,
        n: u64,
        mut f: impl FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let end = off + n;
        if end > self.records() {
            return Err(StorageError::Corrupt(format!(
                "read of records {off}..{end} past the log end {}",
                self.records()
            )));
        }
        let avg = self
            .total_bytes
            .checked_div(self.records())
            .map_or(64, |a| a.max(1));
        // Enough for the wanted records (estimated), at least the largest record, at most a
        // few MiB per read call.
        let mut limit = (avg.saturating_mul(n) as usize)
            .clamp(4096, 4 << 20)
            .max(self.max_record);
        let mut next = off;
        while next < end {
            let msgs = match self.log.read(next, ReadLimit::max_bytes(limit)) {
                Ok(m) => m,
                Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::InvalidInput => {
                    // A record larger than the limit: commitlog returns nothing. Grow.
                    if limit >= (u32::MAX / 4) as usize {
                        return Err(StorageError::Corrupt(format!(
                            "record {next} too large to read"
                        )));
                    }
                    limit *= 4;
                    continue;
                }
                Err(ReadError::Io(e)) => {
                    return Err(io_err(format!("reading the commitlog at {next}"))(e))
                }
                Err(e) => {
                    return Err(StorageError::Corrupt(format!(
                        "reading the commitlog at {next}: {e}"
                    )))
                }
            };
            if msgs.is_empty() {
                return Err(StorageError::Corrupt(format!(
                    "commitlog returned nothing at {next}"
                )));
            }
            for m in msgs.iter() {
                if next >= end {
                    break;
                }
                if m.offset() != next {
                    return Err(StorageError::Corrupt(format!(
                        "commitlog returned record {} for {next}",
                        m.offset()
                    )));
                }
                f(m.payload())?;
                next += 1;
            }
        }
        Ok(())
    }

    /// Calls `f` with the encoded entries in slots `slot..slot + n`, in order. An error if a
    /// slot of them is not an entry.
    pub(crate) fn read_entries(
        &self,
        slot: u64,
        n: u64,
        mut f: impl FnMut(EntryCodec, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        if n == 0 {
            return Ok(());
        }
        let end = slot.saturating_add(n);
        if end > self.slots.len() {
            return Err(StorageError::Corrupt(format!(
                "read of entry slots {slot}..{end} past the log end {}",
                self.slots.len()
            )));
        }
        let (first, mut skip) = self.slots.locate(slot);
        let (last, _) = self.slots.locate(end - 1);
        let mut left = n;
        self.read(first, last - first + 1, |p| {
            let got = for_each_entry(p, skip as usize, left as usize, &mut f)?;
            skip = 0;
            left -= got as u64;
            Ok(())
        })?;
        if left != 0 {
            return Err(StorageError::Corrupt(format!(
                "entry slots {slot}..{end}: {left} not found in their records"
            )));
        }
        Ok(())
    }
}

/// One record as found in a segment file.
struct RawRecord<'a> {
    /// Byte position of the record in the file.
    pos: u64,
    offset: u64,
    size: u32,
    hash: u32,
    /// Reserved bytes are zero and the metadata fits the record.
    header_ok: bool,
    meta_len: usize,
    /// Metadata and payload.
    body: &'a [u8],
    crc_ok: bool,
}

impl RawRecord<'_> {
    fn payload(&self) -> &[u8] {
        &self.body[self.meta_len..]
    }
    fn end(&self) -> u64 {
        self.pos + (HEADER + self.body.len()) as u64
    }
}

/// Calls `f` on each complete record of the segment at `path`, until it returns `false` or
/// the file ends (a torn last record ends it too). `Ok(false)` if the file has no segment
/// magic.
fn for_each_record(
    path: &Path,
    mut f: impl FnMut(&RawRecord<'_>) -> Result<bool, PersistentStorageError>,
) -> Result<bool, PersistentStorageError> {
    let ctx = || format!("reading {}", path.display());
    let file = File::open(path).map_err(open_io(ctx()))?;
    let len = file.metadata().map_err(open_io(ctx()))?.len();
    let mut r = BufReader::with_capacity(1 << 18, file);
    let mut magic = [0u8; 2];
    if len < 2 || r.read_exact(&mut magic).is_err() || magic != SEGMENT_MAGIC {
        return Ok(false);
    }
    let mut pos = 2u64;
    let mut body = Vec::new();
    loop {
        if len - pos < HEADER as u64 {
            return Ok(true);
        }
        let mut h = [0u8; HEADER];
        r.read_exact(&mut h).map_err(open_io(ctx()))?;
        let word = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let offset = u64::from(word(0)) | (u64::from(word(4)) << 32);
        let (size, hash) = (word(8), word(12));
        if u64::from(size) > len - pos - HEADER as u64 {
            return Ok(true); // torn last record
        }
        let meta_len = usize::from(u16::from_le_bytes([h[18], h[19]]));
        body.resize(size as usize, 0);
        r.read_exact(&mut body).map_err(open_io(ctx()))?;
        let rec = RawRecord {
            pos,
            offset,
            size,
            hash,
            header_ok: h[16] == 0 && h[17] == 0 && meta_len <= body.len(),
            meta_len: meta_len.min(body.len()),
            body: &body,
            crc_ok: crc32c_append(0, &body) == hash,
        };
        let go_on = f(&rec)?;
        pos = rec.end();
        if !go_on {
            return Ok(true);
        }
    }
}

/// Reads generation `dir`: checks its first `verified` records (they must be intact and chain
/// to `expected_chain`: the checkpoint vouches for them) and collects the intact records after
/// them, up to the first missing, torn or damaged one. Changes nothing.
pub(crate) fn scan(
    dir: &Path,
    verified: u64,
    expected_chain: u32,
) -> Result<Scan, PersistentStorageError> {
    let corrupt = |path: &Path, reason: String| PersistentStorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |found: u64| PersistentStorageError::LogTruncated {
        path: dir.to_path_buf(),
        expected: verified,
        found,
    };
    let ctx = format!("reading log directory {}", dir.display());
    let mut segments = Vec::new();
    let mut stray = Vec::new();
    let listing = match fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(truncated(0)),
        Err(e) => return Err(open_io(ctx)(e)),
    };
    for entry in listing {
        let entry = entry.map_err(open_io(ctx.clone()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(base) = parse_name(name, "log") {
            segments.push(base);
        } else if parse_name(name, "index").is_some() || name.ends_with(".tmp") {
            stray.push(entry.path());
        }
    }
    segments.sort_unstable();

    let mut segs: Vec<SegScan> = Vec::new();
    let mut beyond = Vec::new();
    let mut count = 0u64;
    let mut chain_acc = 0u32;
    let mut tail = Vec::new();
    let mut damage: Option<Damage> = None;
    let mut header = None;
    let mut slots = Slots::default();
    // Where the damage was found: segment index and byte position, to search after it.
    let mut damage_pos: Option<(usize, u64)> = None;
    for (si, &base) in segments.iter().enumerate() {
        let path = segment_path(dir, base);
        if damage.is_some() {
            beyond.push(base);
            continue;
        }
        if base != count {
            if count < verified {
                // A gap (missing segment) or an overlap (foreign or misplaced segment).
                return Err(if base > count {
                    truncated(count)
                } else {
                    corrupt(
                        &path,
                        format!("segment starts at offset {base} but {count} records precede it"),
                    )
                });
            }
            // After the verified records: the intact records end here.
            damage = Some(Damage {
                at: count,
                later_commits: Vec::new(),
            });
            damage_pos = Some((si, 2));
            beyond.push(base);
            continue;
        }
        let mut seg = SegScan {
            base,
            positions: Vec::new(),
            kinds: Vec::new(),
            end: 2,
        };
        let mut stopped_at: Option<u64> = None;
        let magic = for_each_record(&path, |r| {
            let entries = entry_count(r.payload());
            let intact = r.offset == count
                && r.header_ok
                && r.crc_ok
                && (r.meta_len == 0 || r.meta_len >= CommitMark::LEN)
                && entries.is_some();
            if count < verified {
                if !intact {
                    return Err(corrupt(
                        &path,
                        if r.offset != count || !r.header_ok {
                            format!(
                                "bad record header at byte {} (offset {}, expected {count})",
                                r.pos, r.offset
                            )
                        } else if r.crc_ok {
                            format!("malformed record {count} at byte {}", r.pos)
                        } else {
                            format!("checksum mismatch in record {count} at byte {}", r.pos)
                        },
                    ));
                }
                chain_acc = chain(chain_acc, r.offset, r.size, r.hash);
            } else if !intact {
                stopped_at = Some(r.pos);
                return Ok(false);
            } else {
                let payload = r.payload();
                let kind = payload.first().copied().unwrap_or(0);
                tail.push(TailRecord {
                    offset: r.offset,
                    size: r.size,
                    hash: r.hash,
                    kind,
                    slot: slots.len(),
                    entries: u64::from(entries.unwrap_or(0)),
                    commit: CommitMark::from_bytes(&r.body[..r.meta_len]),
                    state: (r.meta_len > CommitMark::LEN)
                        .then(|| r.body[CommitMark::LEN..r.meta_len].to_vec()),
                    body: (!is_entry_kind(kind)).then(|| payload.get(1..).unwrap_or(&[]).to_vec()),
                });
            }
            if r.offset == 0 {
                header = Some(r.payload().to_vec());
            }
            let Ok(p32) = u32::try_from(r.pos) else {
                return Err(corrupt(&path, "segment larger than 4 GiB".into()));
            };
            seg.positions.push(p32);
            seg.kinds.push(r.payload().first().copied().unwrap_or(0));
            seg.end = r.end();
            slots.push(u64::from(entries.unwrap_or(0)));
            count += 1;
            Ok(true)
        })?;
        if !magic {
            if count < verified {
                return Err(corrupt(&path, "no segment magic".into()));
            }
            stopped_at = Some(0);
        }
        let file_len = fs::metadata(&path)
            .map_err(open_io(format!("reading {}", path.display())))?
            .len();
        if stopped_at.is_none() && seg.end < file_len {
            // A torn last record (the file ends inside it).
            stopped_at = Some(seg.end);
        }
        if let Some(pos) = stopped_at {
            if count < verified {
                return Err(truncated(count));
            }
            damage = Some(Damage {
                at: count,
                later_commits: Vec::new(),
            });
            damage_pos = Some((si, pos + 1));
        }
        if seg.positions.is_empty() && base != 0 {
            // Only a segment holding intact records is kept (the first one always).
            beyond.push(base);
        } else {
            segs.push(seg);
        }
    }
    if segs.is_empty() || count < verified {
        return Err(truncated(count));
    }
    if chain_acc != expected_chain {
        return Err(PersistentStorageError::Foreign {
            path: dir.to_path_buf(),
            what: "the log's records are not the ones the checkpoint recorded",
        });
    }
    if let (Some(d), Some((si, pos))) = (damage.as_mut(), damage_pos) {
        // Search what follows the damage for commit marks of later writes: if there are any,
        // the damage is not the torn end of the last write.
        let mut budget = PROBE_MAX;
        for (i, &base) in segments.iter().enumerate().skip(si) {
            let from = if i == si { pos } else { 2 };
            let path = segment_path(dir, base);
            probe_commits(&path, from, d.at, &mut budget, &mut d.later_commits)
                .map_err(open_io(format!("reading {}", path.display())))?;
        }
    }
    Ok(Scan {
        dir: dir.to_path_buf(),
        segs,
        beyond,
        stray,
        tail,
        verified,
        chain_verified: chain_acc,
        damage,
        header,
        slots,
    })
}

/// Searches `path` from byte `from` for intact records with a commit mark and an offset past
/// `after`, byte by byte (the framing is lost after a damaged record); reads at most `budget`
/// bytes in all.
fn probe_commits(
    path: &Path,
    from: u64,
    after: u64,
    budget: &mut u64,
    found: &mut Vec<CommitMark>,
) -> io::Result<()> {
    let mut f = File::open(path)?;
    let len = f.metadata()?.len();
    if from >= len || *budget == 0 {
        return Ok(());
    }
    let n = (len - from).min(*budget);
    *budget -= n;
    let mut bytes = vec![0u8; n as usize];
    f.seek(SeekFrom::Start(from))?;
    f.read_exact(&mut bytes)?;
    let word = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut p = 0usize;
    while p + HEADER <= bytes.len() {
        let h = &bytes[p..p + HEADER];
        let offset = u64::from(word(h, 0)) | (u64::from(word(h, 4)) << 32);
        let size = word(h, 8) as usize;
        let meta_len = usize::from(u16::from_le_bytes([h[18], h[19]]));
        if offset > after
            && offset - after < (1 << 40)
            && h[16] == 0
            && h[17] == 0
            && meta_len >= CommitMark::LEN
            && size >= meta_len
            && p + HEADER + size <= bytes.len()
        {
            let body = &bytes[p + HEADER..p + HEADER + size];
            if crc32c_append(0, body) == word(h, 12) {
                if let Some(m) = CommitMark::from_bytes(&body[..meta_len]) {
                    found.push(m);
                }
            }
        }
        p += 1;
    }
    Ok(())
}

/// Writes the index of segment `base` from the record positions (temporary file, renamed).
/// The active (last) index gets zeroed room after the entries, as commitlog expects: a full
/// index file is taken as closed and read-only.
fn write_index(
    dir: &Path,
    base: u64,
    positions: &[u32],
    active: bool,
    index_bytes: usize,
) -> io::Result<()> {
    let mut len = positions.len() * 8;
    if active {
        len = len.max(index_bytes).max(len + 8);
        len = len.div_ceil(8) * 8;
    }
    let mut bytes = vec![0u8; len];
    for (i, &p) in positions.iter().enumerate() {
        let rel = u32::try_from(i).map_err(|_| io::Error::other("too many records in segment"))?;
        bytes[i * 8..i * 8 + 4].copy_from_slice(&rel.to_le_bytes());
        bytes[i * 8 + 4..i * 8 + 8].copy_from_slice(&p.to_le_bytes());
    }
    let tmp = dir.join(format!("{base:020}.index.tmp"));
    fs::write(&tmp, &bytes)?;
    fs::rename(&tmp, index_path(dir, base))
}
