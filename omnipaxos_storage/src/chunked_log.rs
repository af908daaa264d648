//! The entries of `MemoryStorage`, in chunks of a fixed capacity.
//!
//! A flat vector that grows copies everything it holds each time it grows (with 25% growth,
//! about four copies of every entry over a long run), and trimming its front moves everything
//! after the cut. Here appending never moves a stored entry, and trimming drops whole chunks
//! (and moves at most one chunk's worth). A new chunk holds a quarter of what the log holds,
//! between 16 entries and 64 KiB, so the spare capacity stays within a quarter of the log (and
//! one chunk) as a small log grows, as with the flat vector.
//!
//! Invariants: every chunk holds at least one entry; only the last chunk is appended to, and
//! every other one is full but the first, whose front may have been trimmed; `len` is the sum
//! of the chunks' lengths.

use std::collections::VecDeque;

/// Bytes a chunk aims at (its entry count is at least `MIN_CHUNK_ENTRIES`).
const CHUNK_BYTES: usize = 64 * 1024;
const MIN_CHUNK_ENTRIES: usize = 16;

#[derive(Clone, Debug)]
pub(crate) struct ChunkedLog<T> {
    chunks: VecDeque<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedLog<T> {
    fn default() -> Self {
        ChunkedLog {
            chunks: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T: Clone> ChunkedLog<T> {
    /// Most entries per chunk.
    const CHUNK_CAP: usize = {
        let n = match CHUNK_BYTES.checked_div(std::mem::size_of::<T>()) {
            Some(n) => n,
            None => CHUNK_BYTES,
        };
        if n < MIN_CHUNK_ENTRIES {
            MIN_CHUNK_ENTRIES
        } else {
            n
        }
    };

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Checks the invariants (debug builds; after every change).
    fn check(&self) {
        if cfg!(debug_assertions) {
            let n = self.chunks.len();
            let mut total = 0;
            for (i, c) in self.chunks.iter().enumerate() {
                debug_assert!(!c.is_empty(), "an empty chunk is kept");
                debug_assert!(
                    i == 0 || i + 1 == n || c.len() == c.capacity(),
                    "a middle chunk has room"
                );
                total += c.len();
            }
            debug_assert_eq!(total, self.len, "the chunks do not add up to the length");
        }
    }

    /// The last chunk, if it has room; else a new one.
    fn tail_with_room(&mut self) -> &mut Vec<T> {
        let full = self.chunks.back().map_or(true, |c| c.len() >= c.capacity());
        if full {
            let cap = (self.len / 4).clamp(MIN_CHUNK_ENTRIES, Self::CHUNK_CAP);
            self.chunks.push_back(Vec::with_capacity(cap));
        }
        self.chunks.back_mut().expect("a chunk with room exists")
    }

    pub(crate) fn push(&mut self, entry: T) {
        self.tail_with_room().push(entry);
        self.len += 1;
        self.check();
    }

    /// Moves every entry of `entries` to the end.
    pub(crate) fn append(&mut self, mut entries: Vec<T>) {
        self.len += entries.len();
        if let Some(tail) = self.chunks.back_mut() {
            if tail.capacity() - tail.len() >= entries.len() {
                // The common case: they fit in the last chunk (moved in one copy).
                tail.append(&mut entries);
                self.check();
                return;
            }
        }
        let mut it = entries.into_iter();
        while it.len() > 0 {
            let tail = self.tail_with_room();
            let room = (tail.capacity() - tail.len()).max(1);
            tail.extend(it.by_ref().take(room));
        }
        self.check();
    }

    /// Keeps the first `n` entries.
    pub(crate) fn truncate(&mut self, n: usize) {
        while self.len > n {
            let Some(last) = self.chunks.back_mut() else {
                break;
            };
            let excess = self.len - n;
            if excess >= last.len() {
                self.len -= last.len();
                self.chunks.pop_back();
            } else {
                let keep = last.len() - excess;
                last.truncate(keep);
                self.len = n;
            }
        }
        self.check();
    }

    /// Removes the first `n` entries (all of them if there are fewer).
    pub(crate) fn drop_front(&mut self, n: usize) {
        let mut left = n.min(self.len);
        self.len -= left;
        while left > 0 {
            let Some(first) = self.chunks.front_mut() else {
                break;
            };
            if left >= first.len() {
                left -= first.len();
                self.chunks.pop_front();
            } else {
                first.drain(..left);
                left = 0;
            }
        }
        self.check();
    }

    /// Hands clones of the entries at `from..to` (positions in this log; `to <= len`) to `f`,
    /// in order.
    pub(crate) fn for_each_cloned(&self, from: usize, to: usize, mut f: impl FnMut(T)) {
        debug_assert!(from <= to && to <= self.len, "range beyond the log");
        if from >= to {
            return;
        }
        let (mut i, mut pos) = self.chunk_of(from);
        while pos < to {
            let c = &self.chunks[i];
            let end = pos + c.len();
            c[from.max(pos) - pos..to.min(end) - pos]
                .iter()
                .for_each(|e| f(e.clone()));
            pos = end;
            i += 1;
        }
    }

    /// The chunk that holds position `at` (`< len`), and the position of its first entry.
    /// Reads are mostly of the newest entries: the search starts from the back.
    fn chunk_of(&self, at: usize) -> (usize, usize) {
        let mut i = self.chunks.len();
        let mut pos = self.len;
        while pos > at {
            i -= 1;
            pos -= self.chunks[i].len();
        }
        (i, pos)
    }

    /// Clones of the entries at `from..to` (positions in this log); `to <= len`.
    pub(crate) fn range_to_vec(&self, from: usize, to: usize) -> Vec<T> {
        debug_assert!(from <= to && to <= self.len, "range beyond the log");
        if from >= to {
            return Vec::new();
        }
        let (i, mut pos) = self.chunk_of(from);
        if to <= pos + self.chunks[i].len() {
            // All in one chunk.
            return self.chunks[i][from - pos..to - pos].to_vec();
        }
        let mut out = Vec::with_capacity(to - from);
        for c in self.chunks.range(i..) {
            let end = pos + c.len();
            let a = from.max(pos) - pos;
            let b = to.min(end) - pos;
            out.extend_from_slice(&c[a..b]);
            pos = end;
            if pos >= to {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_shape<T>(chunks: &VecDeque<Vec<T>>, len: usize) {
        let mut total = 0;
        for (i, c) in chunks.iter().enumerate() {
            assert!(!c.is_empty(), "an empty chunk is kept");
            if i > 0 && i + 1 < chunks.len() {
                assert_eq!(c.len(), c.capacity(), "a middle chunk has room");
            }
            total += c.len();
        }
        assert_eq!(total, len);
    }

    /// Small entries: chunks grow with the log, up to 64 KiB, and reads of any range match.
    #[test]
    fn small_entries_grow_their_chunks() {
        let mut log = ChunkedLog::default();
        let mut model = Vec::new();
        for i in 0..100_000u64 {
            log.push(i);
            model.push(i);
        }
        log.append((100_000..130_000).collect());
        model.extend(100_000..130_000u64);
        check_shape(&log.chunks, log.len());
        assert!(log.chunks.iter().all(|c| c.capacity() <= 8192));
        let spare: usize = log.chunks.iter().map(|c| c.capacity() - c.len()).sum();
        assert!(spare <= 8192, "spare {spare}");
        for (a, b) in [
            (0, 1),
            (0, 130_000),
            (12_345, 98_765),
            (129_999, 130_000),
            (70, 70),
        ] {
            assert_eq!(log.range_to_vec(a, b), model[a..b].to_vec());
        }
        log.drop_front(54_321);
        model.drain(..54_321);
        log.truncate(60_000);
        model.truncate(60_000);
        check_shape(&log.chunks, log.len());
        assert_eq!(log.range_to_vec(0, log.len()), model);
        assert_eq!(log.range_to_vec(59_000, 60_000), model[59_000..].to_vec());
    }

    /// Checks the log against a plain vector after every operation of a fixed sequence that
    /// crosses chunk boundaries in every direction.
    #[test]
    fn matches_a_vector() {
        // 4 KiB entries: chunks of 16.
        #[derive(Clone, Debug, PartialEq)]
        struct Big(u64, [u8; 4088]);
        let big = |i: u64| Big(i, [0; 4088]);
        assert_eq!(ChunkedLog::<Big>::CHUNK_CAP, 16);
        let mut log = ChunkedLog::default();
        let mut model: Vec<Big> = Vec::new();
        let check = |log: &ChunkedLog<Big>, model: &Vec<Big>| {
            assert_eq!(log.len(), model.len());
            assert_eq!(&log.range_to_vec(0, log.len()), model);
            for (a, b) in [(0, 0), (3, 20), (15, 17), (16, 33)] {
                if b <= model.len() {
                    assert_eq!(log.range_to_vec(a, b), model[a..b].to_vec());
                }
            }
            check_shape(&log.chunks, log.len());
        };
        let mut next = 0u64;
        let mut fresh = |k: usize| -> Vec<Big> {
            (0..k)
                .map(|_| {
                    next += 1;
                    big(next)
                })
                .collect()
        };
        for e in fresh(5) {
            log.push(e.clone());
            model.push(e);
            check(&log, &model);
        }
        for k in [11, 1, 40, 0, 16] {
            let v = fresh(k);
            log.append(v.clone());
            model.extend(v);
            check(&log, &model);
        }
        for n in [3, 13, 16, 1] {
            log.drop_front(n);
            model.drain(..n);
            check(&log, &model);
        }
        for e in fresh(20) {
            log.push(e.clone());
            model.push(e);
        }
        check(&log, &model);
        for n in [50, 49, 20, 2] {
            let n = n.min(model.len());
            log.truncate(n);
            model.truncate(n);
            check(&log, &model);
        }
        let v = fresh(37);
        log.append(v.clone());
        model.extend(v);
        check(&log, &model);
        log.drop_front(1_000);
        model.clear();
        check(&log, &model);
        log.truncate(0);
        check(&log, &model);
        let v = fresh(3);
        log.append(v.clone());
        model.extend(v);
        check(&log, &model);
    }
}
