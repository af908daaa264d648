//! The small records: the state ([`State`]) and its changes ([`LogOp`]), the checkpoint kept
//! in sled ([`Checkpoint`]), the anchor file ([`Anchor`]), the header record of each log
//! generation ([`LogHeader`]), and the map from absolute entry indices to commitlog offsets
//! ([`LogMap`]).

use super::crc::crc32c;
use bincode::Options;
use omnipaxos::{ballot_leader_election::Ballot, storage::StopSign};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::{
    fs::{self, File},
    io::{self, Write},
    path::Path,
};

/// The bincode settings of every record: fixed-size integers, little endian, no trailing bytes,
/// and (when decoding) no more bytes than given, so damaged lengths cannot allocate without
/// bound.
pub(crate) fn codec() -> impl Options {
    bincode::DefaultOptions::new().with_fixint_encoding()
}

/// The bincode settings of the entries of format version 4: [`codec`] with variable-length
/// integers (a length or an integer below 251 takes one byte).
pub(crate) fn entry_codec() -> impl Options {
    bincode::DefaultOptions::new()
}

/// Encodes `v` with [`codec`].
pub(crate) fn encode<V: Serialize + ?Sized>(v: &V) -> Result<Vec<u8>, String> {
    codec().serialize(v).map_err(|e| e.to_string())
}

/// Decodes a `V` that must use all of `bytes`.
pub(crate) fn decode<V: DeserializeOwned>(bytes: &[u8]) -> Result<V, String> {
    codec()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
        .map_err(|e| e.to_string())
}

/// `crc32c(body) ++ body`: how every record of ours is stored.
pub(crate) fn seal(body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 4);
    v.extend_from_slice(&crc32c(body).to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// The body of a [`seal`]ed record, if its checksum holds.
pub(crate) fn unseal(sealed: &[u8]) -> Option<&[u8]> {
    if sealed.len() < 4 {
        return None;
    }
    let (crc, body) = sealed.split_at(4);
    (crc32c(body).to_le_bytes() == crc).then_some(body)
}

/// A contiguous run of entries in the commitlog: `len` entries at offsets `off..off + len`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extent {
    pub(crate) off: u64,
    pub(crate) len: u64,
}

/// Where the stored entries are: entry `start + i` is the `i`-th offset of the concatenated
/// extents. Extents are in increasing offset order (the log is only appended to); offsets
/// outside every extent are dead (trimmed or overwritten) and wait for the next rewrite.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogMap {
    /// Absolute index of the first stored entry (the trimmed index).
    pub(crate) start: u64,
    pub(crate) extents: Vec<Extent>,
}

impl LogMap {
    /// Number of stored entries.
    pub(crate) fn len(&self) -> u64 {
        self.extents.iter().map(|e| e.len).sum()
    }

    /// Absolute index after the last stored entry.
    pub(crate) fn end(&self) -> u64 {
        self.start + self.len()
    }

    /// Keeps the entries below absolute `idx` (`start <= idx <= end`).
    pub(crate) fn truncate(&mut self, idx: u64) {
        let mut keep = idx - self.start;
        let mut n = 0;
        for e in &mut self.extents {
            if keep == 0 {
                break;
            }
            e.len = e.len.min(keep);
            keep -= e.len;
            n += 1;
        }
        self.extents.truncate(n);
    }

    /// Removes the entries below absolute `idx`; past the end, the log becomes empty and
    /// continues at `idx`.
    pub(crate) fn trim(&mut self, idx: u64) {
        if idx <= self.start {
            return;
        }
        let mut drop = idx - self.start;
        self.start = idx;
        while drop > 0 {
            let Some(first) = self.extents.first_mut() else {
                break;
            };
            if first.len <= drop {
                drop -= first.len;
                self.extents.remove(0);
            } else {
                first.off += drop;
                first.len -= drop;
                drop = 0;
            }
        }
    }

    /// Appends `len` entries stored at offsets `off..off + len`, after every extent.
    #[inline]
    pub(crate) fn push(&mut self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        match self.extents.last_mut() {
            Some(last) if last.off + last.len == off => last.len += len,
            _ => self.extents.push(Extent { off, len }),
        }
    }

    /// The offset runs holding absolute `from..to` (within `start..end`), in order.
    pub(crate) fn runs(&self, from: u64, to: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut pos = self.start;
        for e in &self.extents {
            let (lo, hi) = (pos.max(from), (pos + e.len).min(to));
            if lo < hi {
                out.push((e.off + (lo - pos), hi - lo));
            }
            pos += e.len;
            if pos >= to {
                break;
            }
        }
        out
    }
}

/// The snapshot's place in sled: the key it is stored under (the sequence number of the write
/// that set it), its length and checksum.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRef {
    pub(crate) key: u64,
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

/// The sled key of the snapshot stored by write `seq`.
pub(crate) fn snapshot_key(seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(SNAPSHOT_PREFIX);
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every snapshot key in sled.
pub(crate) const SNAPSHOT_PREFIX: &[u8; 4] = b"snp/";

/// Everything a storage shows except the entries and the snapshot bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct State {
    /// Where the stored entries are in the current log generation.
    pub(crate) map: LogMap,
    pub(crate) promise: Option<Ballot>,
    pub(crate) accepted_round: Option<Ballot>,
    pub(crate) decided_idx: u64,
    pub(crate) compacted_idx: u64,
    pub(crate) stopsign: Option<StopSign>,
    pub(crate) snapshot: Option<SnapshotRef>,
    pub(crate) node_record: Option<Vec<u8>>,
}

impl State {
    /// The values the anchor guards.
    pub(crate) fn guard(&self) -> Guard {
        (self.promise, self.accepted_round)
    }

    /// Whether this state differs from `before` only in a higher decided index.
    pub(crate) fn only_decided_above(&self, before: &State) -> bool {
        self.decided_idx > before.decided_idx
            && self.map == before.map
            && self.promise == before.promise
            && self.accepted_round == before.accepted_round
            && self.compacted_idx == before.compacted_idx
            && self.stopsign == before.stopsign
            && self.snapshot == before.snapshot
            && self.node_record == before.node_record
    }

    /// Applies `op`. `entries` yields the log offsets of the entry records of the op's group,
    /// in order; `Append(n)` takes the next `n` of them.
    pub(crate) fn apply(
        &mut self,
        op: &LogOp,
        entries: &mut impl Iterator<Item = u64>,
    ) -> Result<(), ApplyError> {
        match op {
            LogOp::Append(n) => {
                for _ in 0..*n {
                    let off = entries.next().ok_or(ApplyError::MissingEntries)?;
                    self.map.push(off, 1);
                }
            }
            LogOp::Truncate(from) => {
                let (first, end) = (self.map.start, self.map.end());
                if *from < first || *from > end {
                    return Err(ApplyError::OutOfRange {
                        from: *from,
                        first,
                        end,
                    });
                }
                self.map.truncate(*from);
            }
            LogOp::Trim(idx) => self.map.trim(*idx),
            LogOp::Promise(b) => self.promise = Some(*b),
            LogOp::Accepted(b) => self.accepted_round = Some(*b),
            LogOp::Decided(i) => self.decided_idx = *i,
            LogOp::Compacted(i) => self.compacted_idx = *i,
            LogOp::Stopsign(s) => self.stopsign = s.clone(),
            LogOp::Snapshot(s) => self.snapshot = *s,
            LogOp::NodeRecord(r) => self.node_record = Some(r.clone()),
            LogOp::Reset(s) => *self = (**s).clone(),
        }
        Ok(())
    }
}

/// Why a [`LogOp`] does not apply.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum ApplyError {
    /// `Truncate(from)` outside the stored entries `first..=end`.
    OutOfRange { from: u64, first: u64, end: u64 },
    /// `Append(n)` with fewer than `n` entry records left in the group.
    MissingEntries,
}

/// One change of the [`State`], as a state record of the log stores it (a write's state
/// record holds its changes in order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum LogOp {
    /// The next `n` entry records of the group are appended to the log.
    Append(u64),
    /// The entries from this absolute index on are removed (`AppendOnPrefix`).
    Truncate(u64),
    /// The entries below this absolute index are removed.
    Trim(u64),
    Promise(Ballot),
    Accepted(Ballot),
    Decided(u64),
    Compacted(u64),
    Stopsign(Option<StopSign>),
    Snapshot(Option<SnapshotRef>),
    NodeRecord(Vec<u8>),
    /// The whole state: the base record of a log generation.
    Reset(Box<State>),
}

/// The state at a point of the log, stored in sled (key `checkpoint`), replaced from time to
/// time; `open` starts from it and rolls the log forward.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// Identity of the storage (also in the anchor and in each log generation's header).
    pub(crate) id: u128,
    /// The log generation: directory `log-<gen>`.
    pub(crate) gen: u64,
    /// Sequence number of the last write the state includes.
    pub(crate) seq: u64,
    /// Records of the generation the state includes (all of them committed).
    pub(crate) log_records: u64,
    /// CRC-32C chain over the headers of those records (see `log::chain`).
    pub(crate) log_chain: u32,
    pub(crate) state: State,
}

/// (promise, accepted round): what a node must never forget.
pub(crate) type Guard = (Option<Ballot>, Option<Ballot>);

/// The first record of each log generation: binds the generation to its storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogHeader {
    pub(crate) magic: [u8; 8],
    pub(crate) id: u128,
    pub(crate) gen: u64,
}

/// The on-disk format this version writes.
///
/// * Version 2: one log record per entry (`KIND_ENTRY`), entries in [`codec`].
/// * Version 3: the entries of one write share records (`KIND_ENTRIES`).
/// * Version 4: new entries are encoded with variable-length integers ([`entry_codec`]) in
///   records of their own kinds (`KIND_ENTRY_VARINT`, `KIND_ENTRIES_VARINT`): an entry of 8
///   bytes in a `Vec<u8>` takes 9 bytes instead of 16.
///
/// Versions 2 and 3 are read too: their records keep their kinds (and so their encoding),
/// and their anchor is rewritten as version 4 when they are opened, before anything of
/// version 4 is written. A rewrite of the log re-encodes their entries. Version 1 (the
/// state in sled, written and synced by every write) was used by the 0.3 development
/// versions before them and is not read.
pub(crate) const FORMAT_VERSION: u32 = 4;
/// The oldest format version this version reads.
pub(crate) const OLDEST_FORMAT_READ: u32 = 2;
/// The log header's magic (the same in versions 2 to 4: the anchor tells them apart).
pub(crate) const LOG_MAGIC: [u8; 8] = *b"OPXLOG02";
/// The anchor's magic of the version this version writes.
pub(crate) const ANCHOR_MAGIC: [u8; 8] = anchor_magic(FORMAT_VERSION);
/// Every format version starts its anchor body with this and the version in two digits.
const ANCHOR_MAGIC_PREFIX: &[u8; 6] = b"OPXANC";

/// The anchor's magic of format version `v` (below 100): `OPXANC` and two digits.
const fn anchor_magic(v: u32) -> [u8; 8] {
    let mut m = *b"OPXANC00";
    m[6] = b'0' + (v / 10 % 10) as u8;
    m[7] = b'0' + (v % 10) as u8;
    m
}

/// Whether this version reads format version `v`.
fn reads_format(v: u32) -> bool {
    (OLDEST_FORMAT_READ..=FORMAT_VERSION).contains(&v)
}

/// The first byte of every log record's payload: what the record holds.
pub(crate) const KIND_HEADER: u8 = 1;
/// An entry: `KIND_ENTRY ++ bincode(entry)` (format versions 2 and 3; read, not written).
pub(crate) const KIND_ENTRY: u8 = 2;
/// The state changes of one write: `KIND_STATE ++ bincode(Vec<LogOp>)`.
pub(crate) const KIND_STATE: u8 = 3;
/// Several entries of one write (format version 3; layout in `entries.rs`). Not written
/// since version 4, whose entry records are [`KIND_ENTRY_VARINT`] and [`KIND_ENTRIES_VARINT`].
pub(crate) const KIND_ENTRIES: u8 = 4;
/// [`KIND_ENTRY`] with the entry in [`entry_codec`] (format version 4).
pub(crate) const KIND_ENTRY_VARINT: u8 = 5;
/// [`KIND_ENTRIES`] with the entries in [`entry_codec`] (format version 4).
pub(crate) const KIND_ENTRIES_VARINT: u8 = 6;

/// The anchor file: written once at creation and again (atomically, before the write is
/// committed) whenever a write changes the promise or the accepted round. It lets `open` refuse
/// a log that lost the write holding the node's promise (a tail cut off by damage), and it
/// carries the format version and the entry types.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Anchor {
    pub(crate) magic: [u8; 8],
    pub(crate) format: u32,
    pub(crate) id: u128,
    /// `type_name` of the entry type and of its snapshot type.
    pub(crate) entry_type: String,
    pub(crate) snapshot_type: String,
    /// The number of the write that last changed the guard (0: none yet). Writes before it
    /// were committed when the anchor was written.
    pub(crate) guard_seq: u64,
    /// The guard before and after that write: a state after write `guard_seq` or later has
    /// `guards[1]`; the state after write `guard_seq - 1` (the guarded write did not commit)
    /// has `guards[0]`; an older state lost committed writes.
    pub(crate) guards: [Guard; 2],
}

impl Anchor {
    /// Whether the state after write `seq`, with guard `guard`, is one the anchor allows.
    pub(crate) fn allows(&self, seq: u64, guard: Guard) -> bool {
        if seq >= self.guard_seq {
            guard == self.guards[1]
        } else {
            seq + 1 == self.guard_seq && guard == self.guards[0]
        }
    }
}

/// What reading the anchor found.
pub(crate) enum AnchorRead {
    /// No anchor file.
    Missing,
    /// The file fails its checks.
    Damaged(String),
    /// An anchor of another format version.
    OtherFormat(u32),
    Ok(Anchor),
}

impl Anchor {
    /// Reads and checks the anchor at `path`.
    pub(crate) fn read(path: &Path) -> io::Result<AnchorRead> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(AnchorRead::Missing),
            Err(e) => return Err(e),
        };
        let Some(body) = unseal(&bytes) else {
            return Ok(AnchorRead::Damaged("checksum mismatch".into()));
        };
        // Every format version starts its anchor body with `OPXANC` and two digits.
        if body.len() < 8 || &body[..6] != ANCHOR_MAGIC_PREFIX {
            return Ok(AnchorRead::Damaged("bad magic".into()));
        }
        let digits = std::str::from_utf8(&body[6..8]).ok();
        match digits.and_then(|d| d.parse::<u32>().ok()) {
            Some(v) if reads_format(v) => {}
            Some(v) => return Ok(AnchorRead::OtherFormat(v)),
            None => return Ok(AnchorRead::Damaged("bad magic".into())),
        }
        Ok(match decode::<Anchor>(body) {
            Ok(a) if reads_format(a.format) && a.magic == anchor_magic(a.format) => {
                AnchorRead::Ok(a)
            }
            Ok(a) => AnchorRead::OtherFormat(a.format),
            Err(e) => AnchorRead::Damaged(e),
        })
    }

    /// Replaces the anchor in `dir` atomically: write a temporary file, sync it, rename it over
    /// the anchor, sync the directory.
    pub(crate) fn write(&self, dir: &Path) -> io::Result<()> {
        let body = encode(self).map_err(io::Error::other)?;
        write_file_atomically(dir, ANCHOR_FILE, &seal(&body))
    }
}

/// The anchor's file name in the storage directory.
pub(crate) const ANCHOR_FILE: &str = "anchor";

/// Writes `dir/name` so that a crash leaves either the old or the new content.
pub(crate) fn write_file_atomically(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    sync_dir(dir)
}

/// Syncs a directory, so that files created, renamed or removed in it stay so.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(start: u64, ext: &[(u64, u64)]) -> LogMap {
        LogMap {
            start,
            extents: ext.iter().map(|&(off, len)| Extent { off, len }).collect(),
        }
    }

    #[test]
    fn log_map_truncate_trim_push_runs() {
        let mut m = map(10, &[(1, 5), (9, 3)]);
        assert_eq!(m.end(), 18);
        assert_eq!(m.runs(12, 17), vec![(3, 3), (9, 2)]);
        m.truncate(16);
        assert_eq!(m, map(10, &[(1, 5), (9, 1)]));
        m.push(10, 2);
        assert_eq!(m, map(10, &[(1, 5), (9, 3)]));
        m.truncate(15);
        assert_eq!(m, map(10, &[(1, 5)]));
        m.push(12, 1);
        assert_eq!(m, map(10, &[(1, 5), (12, 1)]));
        m.trim(13);
        assert_eq!(m, map(13, &[(4, 2), (12, 1)]));
        m.trim(15);
        assert_eq!(m, map(15, &[(12, 1)]));
        m.trim(20);
        assert_eq!(m, map(20, &[]));
        assert_eq!(m.end(), 20);
        m.truncate(20);
        assert_eq!(m, map(20, &[]));
    }

    #[test]
    fn anchor_allows_the_guarded_write_or_the_one_before() {
        let b = |n| Some(Ballot::with(1, n, 0, 1));
        let a = Anchor {
            magic: ANCHOR_MAGIC,
            format: FORMAT_VERSION,
            id: 1,
            entry_type: String::new(),
            snapshot_type: String::new(),
            guard_seq: 10,
            guards: [(b(1), None), (b(2), None)],
        };
        assert!(a.allows(10, (b(2), None)));
        assert!(a.allows(15, (b(2), None)));
        assert!(!a.allows(15, (b(1), None)));
        assert!(a.allows(9, (b(1), None)));
        assert!(!a.allows(9, (b(2), None)));
        assert!(
            !a.allows(8, (b(1), None)),
            "a write before the guarded one was lost"
        );
    }

    #[test]
    fn state_apply_places_entries_and_refuses_bad_truncation() {
        let mut s = State::default();
        let mut offs = 5..8u64;
        s.apply(&LogOp::Append(3), &mut offs).expect("append");
        assert_eq!(s.map, map(0, &[(5, 3)]));
        assert_eq!(
            s.apply(&LogOp::Append(1), &mut offs),
            Err(ApplyError::MissingEntries)
        );
        assert_eq!(
            s.apply(&LogOp::Truncate(4), &mut std::iter::empty()),
            Err(ApplyError::OutOfRange {
                from: 4,
                first: 0,
                end: 3
            })
        );
        s.apply(&LogOp::Truncate(1), &mut std::iter::empty())
            .expect("truncate");
        s.apply(&LogOp::NodeRecord(vec![1]), &mut std::iter::empty())
            .expect("record");
        assert_eq!(s.map.end(), 1);
        assert_eq!(s.node_record, Some(vec![1]));
    }

    #[test]
    fn seal_detects_damage() {
        let s = seal(b"hello");
        assert_eq!(unseal(&s), Some(&b"hello"[..]));
        let mut d = s.clone();
        d[6] ^= 1;
        assert_eq!(unseal(&d), None);
        assert_eq!(unseal(&s[..3]), None);
    }
}
