//! The payloads of entry records, and the entries of one write encoded before they become
//! records.
//!
//! * `KIND_ENTRY_VARINT ++ bincode(entry)`: one entry (a write of one entry writes this).
//! * `KIND_ENTRIES_VARINT ++ bincode(entry) × count ++ end × count ++ count`: `count` (at
//!   least 2) entries of one write in one record; `count` and each `end` are `u32` little
//!   endian, and entry `i` is the bytes `end[i - 1]..end[i]` (`0..end[0]` for the first) of
//!   what follows the kind byte, which is exactly `end[count - 1]` bytes long before the table.
//!
//! Both encode their entries with variable-length integers ([`entry_codec`], format version
//! 4). `KIND_ENTRY` and `KIND_ENTRIES`, of format versions 2 and 3, have the same layouts with
//! fixed-size integers ([`codec`]); they are read, never written. The kind byte alone tells a
//! reader how to decode a record's entries ([`EntryCodec`]).
//!
//! A write of many entries thus costs one commitlog record (one header, one checksum, one
//! index slot) instead of one per entry, and a reader finds any entry of a record without
//! decoding the ones before it. The table comes last so that a write's entries are encoded
//! straight into the record that stores them.

use super::{
    error::StorageError,
    meta::{codec, entry_codec, KIND_ENTRIES, KIND_ENTRIES_VARINT, KIND_ENTRY, KIND_ENTRY_VARINT},
};
use bincode::Options as _;
use serde::{de::DeserializeOwned, Serialize};

/// How the entries of a record are encoded; its kind tells.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum EntryCodec {
    /// Fixed-size integers ([`codec`]): the entry records of format versions 2 and 3.
    Fixint,
    /// Variable-length integers ([`entry_codec`]): the entry records this version writes.
    Varint,
}

impl EntryCodec {
    /// Decodes an entry that must use all of `bytes` (and cannot allocate beyond them).
    pub(crate) fn decode<V: DeserializeOwned>(self, bytes: &[u8]) -> Result<V, String> {
        let limit = bytes.len() as u64;
        match self {
            EntryCodec::Fixint => codec().with_limit(limit).deserialize(bytes),
            EntryCodec::Varint => entry_codec().with_limit(limit).deserialize(bytes),
        }
        .map_err(|e| e.to_string())
    }
}

/// What a record of kind `kind` holds, if entries: whether several, and their encoding.
fn entry_kind(kind: u8) -> Option<(bool, EntryCodec)> {
    match kind {
        KIND_ENTRY => Some((false, EntryCodec::Fixint)),
        KIND_ENTRIES => Some((true, EntryCodec::Fixint)),
        KIND_ENTRY_VARINT => Some((false, EntryCodec::Varint)),
        KIND_ENTRIES_VARINT => Some((true, EntryCodec::Varint)),
        _ => None,
    }
}

/// Whether records of kind `kind` hold entries (of any format version).
pub(crate) fn is_entry_kind(kind: u8) -> bool {
    entry_kind(kind).is_some()
}

/// Bytes a record of several entries adds to its entries: the kind and the count.
const BATCH_HEAD: usize = 1 + 4;
/// Bytes a record of several entries adds per entry: its end.
const PER_ENTRY: usize = 4;
/// The payload size a record of several entries is filled up to (a single larger entry gets a
/// record of its own). Bounds what a read of one entry has to read.
pub(crate) const PACK_BYTES: usize = 64 << 10;

/// The number of entries a record holds, judged by its payload alone: `Some(n)` for a
/// well-formed entry record, `Some(0)` for a record of another kind, `None` for a
/// record of several entries whose layout does not hold together.
pub(crate) fn entry_count(payload: &[u8]) -> Option<u32> {
    match payload.first().and_then(|&k| entry_kind(k)) {
        Some((false, _)) => Some(1),
        Some((true, _)) => batch(payload).map(|(ends, _)| ends.len() as u32),
        None => Some(0),
    }
}

/// The number of entries of a record this version wrote: [`entry_count`] without checking
/// the layout (the write path's own records; the scan checks every record when the log is
/// opened).
pub(crate) fn written_entry_count(payload: &[u8]) -> u64 {
    match payload.first().and_then(|&k| entry_kind(k)) {
        Some((false, _)) => 1,
        Some((true, _)) => payload
            .get(payload.len().saturating_sub(4)..)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u64::from(u32::from_le_bytes(b))),
        None => 0,
    }
}

/// The ends table and the entries' bytes of a well-formed payload of several entries.
fn batch(payload: &[u8]) -> Option<(Ends<'_>, &[u8])> {
    let body = payload.get(1..)?;
    let count_at = body.len().checked_sub(4)?;
    let count = u32::from_le_bytes(body[count_at..].try_into().ok()?) as usize;
    if count < 2 {
        return None;
    }
    let table_at = count_at.checked_sub(count.checked_mul(PER_ENTRY)?)?;
    let ends = Ends(&body[table_at..count_at]);
    let data = &body[..table_at];
    let mut prev = 0;
    for i in 0..count {
        let e = ends.get(i);
        if e < prev {
            return None;
        }
        prev = e;
    }
    (prev == data.len()).then_some((ends, data))
}

/// The table of entry ends of a record of several entries.
#[derive(Copy, Clone)]
struct Ends<'a>(&'a [u8]);

impl Ends<'_> {
    fn len(&self) -> usize {
        self.0.len() / PER_ENTRY
    }
    fn get(&self, i: usize) -> usize {
        let b = &self.0[i * PER_ENTRY..(i + 1) * PER_ENTRY];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
    }
}

/// Calls `f` with the encoding and the bytes of the entries `skip..skip + take` of an entry
/// record (fewer if the record ends first), in order; returns how many it passed. An error if
/// `payload` is not a well-formed entry record.
pub(crate) fn for_each_entry(
    payload: &[u8],
    skip: usize,
    take: usize,
    mut f: impl FnMut(EntryCodec, &[u8]) -> Result<(), StorageError>,
) -> Result<usize, StorageError> {
    match payload.first().and_then(|&k| entry_kind(k)) {
        Some((false, codec)) => {
            if skip == 0 && take > 0 {
                f(codec, &payload[1..])?;
                Ok(1)
            } else {
                Ok(0)
            }
        }
        Some((true, codec)) => {
            let (ends, data) = batch(payload).ok_or_else(|| {
                StorageError::Corrupt("a record of several entries is malformed".into())
            })?;
            let end = ends.len().min(skip.saturating_add(take));
            let mut start = if skip == 0 { 0 } else { ends.get(skip - 1) };
            for i in skip..end {
                let e = ends.get(i);
                f(codec, &data[start..e])?;
                start = e;
            }
            Ok(end.saturating_sub(skip))
        }
        None => Err(StorageError::Corrupt(
            "a record the log map names is not an entry".into(),
        )),
    }
}

/// The entries of one write, encoded with [`entry_codec`] into one buffer that becomes their
/// record when they fit one.
pub(crate) struct EncodedEntries {
    /// A kind byte (set when the records are made), then the entries.
    bytes: Vec<u8>,
    /// The end of each entry, counted from `bytes[1]`.
    ends: Vec<usize>,
}

impl Default for EncodedEntries {
    fn default() -> Self {
        EncodedEntries {
            bytes: vec![KIND_ENTRIES_VARINT],
            ends: Vec::new(),
        }
    }
}

impl EncodedEntries {
    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The bytes of the entries (without the kind byte).
    fn data(&self) -> &[u8] {
        &self.bytes[1..]
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data()[start..self.ends[i]]
    }

    /// Makes room for `entries` more entries of about `bytes_each` bytes.
    pub(crate) fn reserve(&mut self, entries: usize, bytes_each: usize) {
        self.ends.reserve(entries);
        self.bytes
            .reserve(entries.saturating_mul(bytes_each + PER_ENTRY) + BATCH_HEAD);
    }

    /// Encodes `e` after the others; returns the size of the record it would take alone
    /// (`KIND_ENTRY_VARINT ++ bincode(e)`).
    pub(crate) fn push<E: Serialize>(&mut self, e: &E) -> Result<usize, StorageError> {
        let start = self.bytes.len();
        if let Err(err) = entry_codec().serialize_into(&mut self.bytes, e) {
            self.bytes.truncate(start);
            return Err(StorageError::Codec(err.to_string()));
        }
        self.ends.push(self.bytes.len() - 1);
        Ok(1 + self.bytes.len() - start)
    }

    /// Appends an entry already encoded with [`EntryCodec::Varint`] (a rewrite copies
    /// entries this way).
    pub(crate) fn push_encoded(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.ends.push(self.bytes.len() - 1);
    }

    /// The payloads of the records that hold the entries, in order: consecutive entries
    /// packed into `KIND_ENTRIES_VARINT` records of at most `max` bytes (and at most
    /// [`PACK_BYTES`] unless one entry is larger), a lone entry as a `KIND_ENTRY_VARINT`
    /// record. Each entry must fit a `KIND_ENTRY_VARINT` record of `max` bytes. When all
    /// entries fit one record, their buffer becomes that record without a copy.
    pub(crate) fn into_records(mut self, max: usize) -> Vec<Vec<u8>> {
        let max = max.clamp(1, PACK_BYTES);
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        if n == 1 {
            self.bytes[0] = KIND_ENTRY_VARINT;
            return vec![self.bytes];
        }
        if self.bytes.len() + n * PER_ENTRY + 4 <= max && n <= u32::MAX as usize {
            for &e in &self.ends {
                self.bytes.extend_from_slice(&(e as u32).to_le_bytes());
            }
            self.bytes.extend_from_slice(&(n as u32).to_le_bytes());
            return vec![self.bytes];
        }
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            // The longest run from `i` that fits one record.
            let mut j = i + 1;
            let mut size = BATCH_HEAD + PER_ENTRY + self.get(i).len();
            while j < n && j - i < u32::MAX as usize {
                let next = size + PER_ENTRY + self.get(j).len();
                if next > max {
                    break;
                }
                size = next;
                j += 1;
            }
            out.push(self.record(i, j));
            i = j;
        }
        out
    }

    /// The record payload of entries `i..j`.
    fn record(&self, i: usize, j: usize) -> Vec<u8> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        let data = &self.data()[start..self.ends[j - 1]];
        if j == i + 1 {
            let mut r = Vec::with_capacity(1 + data.len());
            r.push(KIND_ENTRY_VARINT);
            r.extend_from_slice(data);
            return r;
        }
        let n = j - i;
        let mut r = Vec::with_capacity(BATCH_HEAD + n * PER_ENTRY + data.len());
        r.push(KIND_ENTRIES_VARINT);
        r.extend_from_slice(data);
        for &e in &self.ends[i..j] {
            r.extend_from_slice(&((e - start) as u32).to_le_bytes());
        }
        r.extend_from_slice(&(n as u32).to_le_bytes());
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(sizes: &[usize]) -> EncodedEntries {
        let mut e = EncodedEntries::default();
        for (i, &n) in sizes.iter().enumerate() {
            e.push(&vec![i as u8; n]).unwrap();
        }
        e
    }

    fn read_all(records: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for r in records {
            let n = entry_count(r).unwrap() as usize;
            let got = for_each_entry(r, 0, usize::MAX, |c, b| {
                out.push(c.decode::<Vec<u8>>(b).unwrap());
                Ok(())
            })
            .unwrap();
            assert_eq!(got, n);
        }
        out
    }

    #[test]
    fn records_pack_and_read_back() {
        let sizes = [3, 0, 100, 7, 2000, 1, 1];
        for max in [50, 200, 1_000, 5_000, 1 << 20] {
            let recs = encoded(&sizes).into_records(max);
            assert!(recs.iter().all(|r| r.len() <= max.max(2009)), "max {max}");
            let back = read_all(&recs);
            let want: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| vec![i as u8; n])
                .collect();
            assert_eq!(back, want, "max {max}");
        }
        // Everything fits: one record of all seven.
        assert_eq!(encoded(&sizes).into_records(1 << 20).len(), 1);
        // One entry: a plain entry record.
        let one = encoded(&[5]).into_records(1 << 20);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0][0], KIND_ENTRY_VARINT);
        assert_eq!(
            encoded(&sizes).into_records(1 << 20)[0][0],
            KIND_ENTRIES_VARINT
        );
    }

    /// A record of format version 3 (fixed-size integers), built the way that version did.
    fn fixint_record(sizes: &[usize]) -> Vec<u8> {
        let mut r = vec![if sizes.len() == 1 {
            KIND_ENTRY
        } else {
            KIND_ENTRIES
        }];
        let mut ends = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            codec().serialize_into(&mut r, &vec![i as u8; n]).unwrap();
            ends.push(r.len() as u32 - 1);
        }
        if sizes.len() > 1 {
            for e in &ends {
                r.extend_from_slice(&e.to_le_bytes());
            }
            r.extend_from_slice(&(sizes.len() as u32).to_le_bytes());
        }
        r
    }

    #[test]
    fn records_of_earlier_versions_read_with_their_encoding() {
        for sizes in [&[5usize][..], &[3, 0, 100, 7]] {
            let r = fixint_record(sizes);
            assert_eq!(entry_count(&r), Some(sizes.len() as u32));
            assert_eq!(written_entry_count(&r), sizes.len() as u64);
            let mut codecs = Vec::new();
            let back = {
                let mut out = Vec::new();
                for_each_entry(&r, 0, usize::MAX, |c, b| {
                    codecs.push(c);
                    out.push(c.decode::<Vec<u8>>(b).unwrap());
                    Ok(())
                })
                .unwrap();
                out
            };
            assert!(codecs.iter().all(|c| *c == EntryCodec::Fixint));
            let want: Vec<Vec<u8>> = sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| vec![i as u8; n])
                .collect();
            assert_eq!(back, want);
            // The same entries take fewer bytes in this version's records.
            let ours = encoded(sizes).into_records(1 << 20).remove(0);
            assert!(ours.len() < r.len(), "{} against {}", ours.len(), r.len());
            assert_eq!(read_all(&[ours]), want);
        }
        // A fixed-size encoding read as variable-length (or the other way) does not pass as
        // the entry: the kind decides, and the codecs disagree on these bytes.
        let fix = codec().serialize(&vec![7u8; 8]).unwrap();
        assert!(EntryCodec::Varint.decode::<Vec<u8>>(&fix).is_err());
        let var = entry_codec().serialize(&vec![7u8; 8]).unwrap();
        assert_eq!(var.len(), 9);
        assert!(EntryCodec::Fixint.decode::<Vec<u8>>(&var).is_err());
    }

    #[test]
    fn skip_and_take_within_a_record() {
        let recs = encoded(&[1, 2, 3, 4, 5]).into_records(1 << 20);
        let mut seen = Vec::new();
        let n = for_each_entry(&recs[0], 2, 2, |c, b| {
            assert_eq!(c, EntryCodec::Varint);
            seen.push(c.decode::<Vec<u8>>(b).unwrap());
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(seen, vec![vec![2u8; 3], vec![3u8; 4]]);
        assert_eq!(for_each_entry(&recs[0], 5, 3, |_, _| Ok(())).unwrap(), 0);
        assert_eq!(for_each_entry(&recs[0], 4, 9, |_, _| Ok(())).unwrap(), 1);
    }

    #[test]
    fn malformed_batches_are_refused_not_panicking() {
        let good = encoded(&[1, 2, 3]).into_records(1 << 20).remove(0);
        assert_eq!(entry_count(&good), Some(3));
        assert_eq!(written_entry_count(&good), 3);
        // Every truncation is refused, without a panic.
        for cut in 1..good.len() {
            let r = &good[..cut];
            assert_eq!(entry_count(r), None, "cut at {cut}");
            assert!(for_each_entry(r, 0, 9, |_, _| Ok(())).is_err());
        }
        // Every bit of the table and the count flipped: a changed count or last end is
        // refused; a changed inner end may still describe entries within the record (the
        // record's checksum is what finds that), and reading them must not panic.
        let table = good.len() - 3 * PER_ENTRY - 4;
        for i in table..good.len() {
            for bit in 0..8 {
                let mut r = good.clone();
                r[i] ^= 1 << bit;
                if i >= table + 2 * PER_ENTRY {
                    assert_eq!(entry_count(&r), None, "byte {i} bit {bit}");
                    assert!(for_each_entry(&r, 1, 9, |_, _| Ok(())).is_err());
                } else {
                    let _ = for_each_entry(&r, 0, 9, |_, _| Ok(()));
                }
            }
        }
        let mut one = good.clone();
        let at = one.len() - 4;
        one[at..].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(entry_count(&one), None);
        assert_eq!(entry_count(&[KIND_ENTRIES]), None);
        assert_eq!(entry_count(&[KIND_ENTRIES_VARINT]), None);
        assert_eq!(entry_count(&[]), Some(0));
        assert_eq!(entry_count(&[3, 1, 2]), Some(0));
    }
}
