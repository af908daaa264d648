//! The small records: the state kept in sled ([`Meta`]), the anchor file ([`Anchor`]), the
//! header record of each log generation ([`LogHeader`]), and the map from absolute entry
//! indices to commitlog offsets ([`LogMap`]).

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

/// The snapshot's place in sled: its length and checksum (the bytes are under their own key).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRef {
    pub(crate) len: u64,
    pub(crate) crc: u32,
}

/// Everything but the entries and the snapshot bytes: one sled value, replaced by each
/// committed write.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Meta {
    /// Identity of the storage (also in the anchor and in each log generation's header).
    pub(crate) id: u128,
    /// Sequence number of the last committed write (see `log::WriteTag`).
    pub(crate) seq: u64,
    /// The current log generation: directory `log-<gen>`.
    pub(crate) gen: u64,
    /// Records of the generation that are committed; later ones are cut on open.
    pub(crate) log_records: u64,
    /// CRC-32C chain over the headers of those records (see `log::chain`).
    pub(crate) log_chain: u32,
    pub(crate) map: LogMap,
    pub(crate) promise: Option<Ballot>,
    pub(crate) accepted_round: Option<Ballot>,
    pub(crate) decided_idx: u64,
    pub(crate) compacted_idx: u64,
    pub(crate) stopsign: Option<StopSign>,
    pub(crate) snapshot: Option<SnapshotRef>,
}

impl Meta {
    /// The values the anchor guards.
    pub(crate) fn guard(&self) -> Guard {
        (self.promise, self.accepted_round)
    }
}

/// (promise, accepted round): what a node must never forget.
pub(crate) type Guard = (Option<Ballot>, Option<Ballot>);

/// The first record (offset 0) of each log generation: binds the generation to its storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LogHeader {
    pub(crate) magic: [u8; 8],
    pub(crate) id: u128,
    pub(crate) gen: u64,
}

pub(crate) const LOG_MAGIC: [u8; 8] = *b"OPXLOG01";
pub(crate) const ANCHOR_MAGIC: [u8; 8] = *b"OPXANC01";

/// The anchor file: written once at creation and again (atomically, before the database
/// commit) whenever a write changes the promise or the accepted round. It lets `open` refuse a
/// database that lost or rolled back its state, which sled cannot tell by itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Anchor {
    pub(crate) magic: [u8; 8],
    pub(crate) id: u128,
    /// `type_name` of the entry type and of its snapshot type.
    pub(crate) entry_type: String,
    pub(crate) snapshot_type: String,
    /// The guard before and after the last guard change: the database holds one of them.
    pub(crate) guards: [Guard; 2],
}

impl Anchor {
    /// Reads and checks the anchor at `path`; `Ok(None)` if there is none.
    pub(crate) fn read(path: &Path) -> io::Result<Option<Result<Anchor, String>>> {
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(body) = unseal(&bytes) else {
            return Ok(Some(Err("checksum mismatch".into())));
        };
        Ok(Some(decode::<Anchor>(body).and_then(|a| {
            if a.magic == ANCHOR_MAGIC {
                Ok(a)
            } else {
                Err("bad magic".into())
            }
        })))
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
    fn seal_detects_damage() {
        let s = seal(b"hello");
        assert_eq!(unseal(&s), Some(&b"hello"[..]));
        let mut d = s.clone();
        d[6] ^= 1;
        assert_eq!(unseal(&d), None);
        assert_eq!(unseal(&s[..3]), None);
    }
}
