//! One generation of the commitlog: creating it, validating and repairing its files before
//! commitlog sees them, appending in batches that commitlog accepts and syncing what was
//! appended, reading any range.
//!
//! commitlog 0.2.0 trusts its files: a missing, empty or full index file makes it panic, a
//! damaged segment is only noticed when read, and `flush()` does not `fsync`. So on open we
//! scan every segment ourselves (magic, offsets, lengths, CRC-32C of each record, and a chain
//! checksum over all record headers that the state in sled must match), cut the log back to
//! the committed number of records, and write every index file anew from the scan. The index
//! files are thus derived data: nothing depends on them surviving a crash.

use super::{
    config::LogLimits,
    crc::crc32c_append,
    error::{io_err, open_io, PersistentStorageError, StorageError},
    meta::sync_dir,
};
use commitlog::{
    message::{MessageBuf, MessageSet},
    CommitLog, ReadError, ReadLimit,
};
use std::{
    fs::{self, File},
    io::{self, BufReader, Read},
    path::{Path, PathBuf},
};

/// Bytes of a commitlog record header: offset u64, size u32, CRC-32C u32, reserved u16,
/// metadata size u16 (all little endian).
pub(crate) const HEADER: usize = 20;
/// The two bytes every segment file starts with.
const SEGMENT_MAGIC: [u8; 2] = [0xff, 0xff];

/// The commitlog metadata on the first record of each write: the write's sequence number and
/// whether the write before it was synced. `open` reads the tags of the uncommitted tail: a
/// write can only start after the previous one returned, so a tail write `s` whose
/// predecessor was synced proves that write `s - 1` was committed; if the database does not
/// have it, the database lost committed writes (sled silently rolls back a damaged file).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct WriteTag {
    pub(crate) seq: u64,
    pub(crate) prev_synced: bool,
}

impl WriteTag {
    const LEN: usize = 9;

    fn to_bytes(self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..8].copy_from_slice(&self.seq.to_le_bytes());
        b[8] = u8::from(self.prev_synced);
        b
    }

    fn from_bytes(b: &[u8]) -> Option<WriteTag> {
        if b.len() != Self::LEN || b[8] > 1 {
            return None;
        }
        Some(WriteTag {
            seq: u64::from_le_bytes(b[..8].try_into().ok()?),
            prev_synced: b[8] == 1,
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
    /// Number of records (= commitlog's next offset).
    records: u64,
    /// Chain checksum over all record headers.
    chain: u32,
    /// Base offset and a handle of the segment appends go to, for syncing.
    active: (u64, File),
    /// Segments that were appended to and rolled over since the last sync.
    unsynced: Vec<File>,
    /// Whether appends happened since the last sync, and whether files were created.
    dirty: bool,
    dir_dirty: bool,
    /// Largest record (header + payload) and total record bytes, to size reads.
    max_record: usize,
    total_bytes: u64,
}

/// What the scan of a generation found.
struct Scan {
    /// Per kept segment: base offset, bytes to keep, file position of each kept record.
    kept: Vec<(u64, u64, Vec<u32>)>,
    /// Segment files past the committed records.
    beyond: Vec<u64>,
    /// Other files to delete (stale indexes, temporary files).
    stray: Vec<PathBuf>,
    header_payload: Vec<u8>,
    max_record: usize,
    total_bytes: u64,
    /// Write tags found in the intact records after the committed ones.
    tail_tags: Vec<WriteTag>,
}

impl Log {
    /// Creates generation `dir` (which must not exist) holding only `header`, synced.
    pub(crate) fn create(dir: &Path, limits: LogLimits, header: &[u8]) -> io::Result<Log> {
        fs::create_dir(dir)?;
        let log = CommitLog::new(limits.options_for(dir))?;
        let active = File::open(segment_path(dir, 0))?;
        let mut l = Log {
            dir: dir.to_path_buf(),
            limits,
            log,
            records: 0,
            chain: 0,
            active: (0, active),
            unsynced: Vec::new(),
            dirty: false,
            dir_dirty: true,
            max_record: 0,
            total_bytes: 0,
        };
        l.append(&[header], None)
            .map_err(|e| io::Error::other(e.to_string()))?;
        l.sync().map_err(|e| io::Error::other(e.to_string()))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(l)
    }

    /// Opens generation `dir`, whose first `records` records must chain to `chain`; cuts
    /// everything after them. Returns the log, the payload of its header record, and the write
    /// tags of the records it cut. `check_tail` may refuse those before anything is changed.
    pub(crate) fn open(
        dir: &Path,
        limits: LogLimits,
        records: u64,
        chain: u32,
        check_tail: impl FnOnce(&[WriteTag]) -> Result<(), PersistentStorageError>,
    ) -> Result<(Log, Vec<u8>), PersistentStorageError> {
        let scan = scan(dir, records, chain)?;
        check_tail(&scan.tail_tags)?;
        // Validated: now cut the uncommitted tail and rebuild the indexes.
        let ctx = |what: &str| format!("{what} in {}", dir.display());
        for &base in &scan.beyond {
            fs::remove_file(segment_path(dir, base)).map_err(open_io(ctx("removing segment")))?;
        }
        for p in &scan.stray {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(open_io(ctx("removing stale file"))(e))
                }
                _ => {}
            }
        }
        let last = scan.kept.len() - 1;
        for (i, (base, keep, positions)) in scan.kept.iter().enumerate() {
            let seg = segment_path(dir, *base);
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&seg)
                .map_err(open_io(ctx("opening segment")))?;
            if f.metadata().map_err(open_io(ctx("reading segment")))?.len() > *keep {
                f.set_len(*keep).map_err(open_io(ctx("cutting segment")))?;
                f.sync_data().map_err(open_io(ctx("syncing segment")))?;
            }
            write_index(dir, *base, positions, i == last, limits.index_max_bytes)
                .map_err(open_io(ctx("writing index")))?;
        }
        sync_dir(dir).map_err(open_io(ctx("syncing directory")))?;

        let options = limits.options_for(dir);
        // Last resort: the files are checked and the indexes fresh, so commitlog should not
        // panic; if it still does, report it as damage instead of unwinding into the caller.
        let log =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| CommitLog::new(options)))
                .map_err(|_| PersistentStorageError::Corrupt {
                    path: dir.to_path_buf(),
                    reason: "commitlog panicked while opening the log".into(),
                })?
                .map_err(open_io(ctx("opening commitlog")))?;
        if log.next_offset() != records {
            return Err(PersistentStorageError::Corrupt {
                path: dir.to_path_buf(),
                reason: format!(
                    "commitlog sees {} records after repair, {records} expected",
                    log.next_offset()
                ),
            });
        }
        let active_base = scan.kept[last].0;
        let active =
            File::open(segment_path(dir, active_base)).map_err(open_io(ctx("opening segment")))?;
        Ok((
            Log {
                dir: dir.to_path_buf(),
                limits,
                log,
                records,
                chain,
                active: (active_base, active),
                unsynced: Vec::new(),
                dirty: false,
                dir_dirty: false,
                max_record: scan.max_record,
                total_bytes: scan.total_bytes,
            },
            scan.header_payload,
        ))
    }

    /// Number of records.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Chain checksum over all record headers.
    pub(crate) fn chain(&self) -> u32 {
        self.chain
    }

    /// The generation's directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The largest payload one record may carry (room left for a tag).
    pub(crate) fn max_payload(&self) -> usize {
        self.limits
            .max_batch_bytes()
            .saturating_sub(HEADER + WriteTag::LEN)
    }

    /// Appends `payloads` as records (in batches commitlog accepts); the first record carries
    /// `tag` as commitlog metadata. Not synced: call [`sync`](Self::sync). On error the log
    /// may hold part of them; the caller must stop using it (the next open cuts them off).
    pub(crate) fn append<P: AsRef<[u8]>>(
        &mut self,
        payloads: &[P],
        tag: Option<WriteTag>,
    ) -> Result<(), StorageError> {
        let max = self.limits.max_batch_bytes();
        let mut buf = MessageBuf::default();
        let mut bytes = 0usize;
        let mut tag = tag.map(WriteTag::to_bytes);
        for p in payloads {
            let p = p.as_ref();
            let meta = tag.take();
            let rec = HEADER + p.len() + meta.map_or(0, |m| m.len());
            if rec > max {
                return Err(StorageError::TooLarge { bytes: rec, max });
            }
            if bytes + rec > max {
                self.append_batch(&mut buf)?;
                buf.clear();
                bytes = 0;
            }
            match meta {
                Some(m) => buf.push_with_metadata(m, p),
                None => buf.push(p),
            }
            .map_err(|e| StorageError::Codec(format!("commitlog message: {e:?}")))?;
            bytes += rec;
        }
        if bytes > 0 {
            self.append_batch(&mut buf)?;
        }
        Ok(())
    }

    fn append_batch(&mut self, buf: &mut MessageBuf) -> Result<(), StorageError> {
        let first = self.records;
        let range = self.log.append(buf).map_err(|e| StorageError::Io {
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
            let rec = HEADER + m.size() as usize;
            self.max_record = self.max_record.max(rec);
            self.total_bytes += rec as u64;
        }
        self.records = self.log.next_offset();
        self.dirty = true;
        Ok(())
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
        if end > self.records {
            return Err(StorageError::Corrupt(format!(
                "read of records {off}..{end} past the log end {}",
                self.records
            )));
        }
        let avg = self
            .total_bytes
            .checked_div(self.records)
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

/// The intact records after the committed ones, and the write tags among them.
struct Tail {
    next: u64,
    stopped: bool,
    tags: Vec<WriteTag>,
}

impl Tail {
    /// Takes in one record; `false` once the tail is no longer intact.
    fn see(&mut self, r: &RawRecord<'_>) -> bool {
        if self.stopped || r.offset != self.next || !r.crc_ok || !r.header_ok {
            self.stopped = true;
            return false;
        }
        if r.meta_len > 0 {
            match WriteTag::from_bytes(&r.body[..r.meta_len]) {
                Some(t) => self.tags.push(t),
                None => {
                    self.stopped = true;
                    return false;
                }
            }
        }
        self.next += 1;
        true
    }
}

/// Reads and checks the first `records` records of generation `dir`, and the write tags of
/// the intact records after them.
fn scan(dir: &Path, records: u64, expected_chain: u32) -> Result<Scan, PersistentStorageError> {
    let corrupt = |path: &Path, reason: String| PersistentStorageError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let truncated = |found: u64| PersistentStorageError::LogTruncated {
        path: dir.to_path_buf(),
        expected: records,
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

    let mut kept = Vec::new();
    let mut beyond = Vec::new();
    let mut count = 0u64;
    let mut chain_acc = 0u32;
    let mut header_payload = Vec::new();
    let mut max_record = 0usize;
    let mut total_bytes = 0u64;
    let mut tail = Tail {
        next: records,
        stopped: false,
        tags: Vec::new(),
    };
    for &base in &segments {
        let path = segment_path(dir, base);
        if count == records && !kept.is_empty() {
            // Wholly after the committed records: removed, but read for write tags.
            beyond.push(base);
            if !tail.stopped && (base != tail.next || !for_each_record(&path, |r| Ok(tail.see(r)))?)
            {
                tail.stopped = true;
            }
            continue;
        }
        if base != count {
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
        let mut positions = Vec::new();
        let mut keep = 2u64;
        let magic = for_each_record(&path, |r| {
            if count == records {
                return Ok(tail.see(r));
            }
            if r.offset != count
                || !r.header_ok
                || !(r.meta_len == 0 || r.meta_len == WriteTag::LEN)
            {
                return Err(corrupt(
                    &path,
                    format!(
                        "bad record header at byte {} (offset {}, expected {count})",
                        r.pos, r.offset
                    ),
                ));
            }
            if !r.crc_ok {
                return Err(corrupt(
                    &path,
                    format!("checksum mismatch in record {count} at byte {}", r.pos),
                ));
            }
            let Ok(p32) = u32::try_from(r.pos) else {
                return Err(corrupt(&path, "segment larger than 4 GiB".into()));
            };
            if count == 0 {
                header_payload = r.payload().to_vec();
            }
            positions.push(p32);
            chain_acc = chain(chain_acc, r.offset, r.size, r.hash);
            let rec = HEADER + r.body.len();
            max_record = max_record.max(rec);
            total_bytes += rec as u64;
            keep = r.end();
            count += 1;
            Ok(true)
        })?;
        if !magic {
            return Err(corrupt(&path, "no segment magic".into()));
        }
        if positions.is_empty() && base != 0 {
            // Only a segment holding committed records is kept (the first one always).
            beyond.push(base);
            continue;
        }
        kept.push((base, keep, positions));
    }
    if kept.is_empty() || count < records {
        return Err(truncated(count));
    }
    if chain_acc != expected_chain {
        return Err(PersistentStorageError::Foreign {
            path: dir.to_path_buf(),
            what: "the log's records are not the ones the database committed",
        });
    }
    Ok(Scan {
        kept,
        beyond,
        stray,
        header_payload,
        max_record,
        total_bytes,
        tail_tags: tail.tags,
    })
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
