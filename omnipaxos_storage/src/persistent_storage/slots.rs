//! Entry slots: how the log map addresses entries inside the records of a log generation.
//!
//! Every record takes one slot, except a record of several entries (`KIND_ENTRIES` or
//! `KIND_ENTRIES_VARINT`), which takes one per entry. Slots are numbered from 0 in record
//! order, so in a log of records of one entry each (all of format version 2) slot and record
//! offset are the same number, and a log map written by format version 2 is valid as it is.
//!
//! Only the records of several entries are stored here ([`Span`]s, 24 bytes each, in record
//! order); between them, one slot is one record.

/// A record of `n` (at least 2) entries: record `rec` holds slots `slot..slot + n`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct Span {
    slot: u64,
    rec: u64,
    n: u64,
}

/// Where the slots of a log generation are.
///
/// Invariant: `spans` are in increasing record (and slot) order, all below `records`, and
/// `slots == records + Σ (n - 1)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Slots {
    spans: Vec<Span>,
    records: u64,
    slots: u64,
}

impl Slots {
    /// Number of slots of all records.
    pub(crate) fn len(&self) -> u64 {
        self.slots
    }

    /// Number of records.
    pub(crate) fn records(&self) -> u64 {
        self.records
    }

    /// Adds the next record, holding `entries` entries (0 for a record of another kind: it
    /// takes one slot all the same).
    pub(crate) fn push(&mut self, entries: u64) {
        if entries >= 2 {
            self.spans.push(Span {
                slot: self.slots,
                rec: self.records,
                n: entries,
            });
            self.slots += entries;
        } else {
            self.slots += 1;
        }
        self.records += 1;
    }

    /// Keeps the first `records` records (at most all of them).
    pub(crate) fn truncate(&mut self, records: u64) {
        if records >= self.records {
            return;
        }
        let keep = self.spans.partition_point(|s| s.rec < records);
        self.spans.truncate(keep);
        let extra: u64 = self.spans.iter().map(|s| s.n - 1).sum();
        self.records = records;
        self.slots = records + extra;
    }

    /// The slot of the first entry of record `rec` (`len()` for `rec == records()`).
    pub(crate) fn slot_of(&self, rec: u64) -> u64 {
        let i = self.spans.partition_point(|s| s.rec < rec);
        match i.checked_sub(1).map(|i| self.spans[i]) {
            None => rec,
            Some(s) => s.slot + s.n + (rec - s.rec - 1),
        }
    }

    /// The record holding `slot` (`< len()`) and the slot's position in it.
    pub(crate) fn locate(&self, slot: u64) -> (u64, u64) {
        let i = self.spans.partition_point(|s| s.slot <= slot);
        match i.checked_sub(1).map(|i| self.spans[i]) {
            None => (slot, 0),
            Some(s) if slot < s.slot + s.n => (s.rec, slot - s.slot),
            Some(s) => (s.rec + 1 + (slot - s.slot - s.n), 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot table and the (record, position) of each slot, built the slow way.
    fn build(counts: &[u64]) -> (Slots, Vec<(u64, u64)>) {
        let mut s = Slots::default();
        let mut naive = Vec::new();
        for (rec, &c) in counts.iter().enumerate() {
            s.push(c);
            for k in 0..c.max(1) {
                naive.push((rec as u64, k));
            }
        }
        (s, naive)
    }

    #[test]
    fn locate_and_slot_of_match_a_naive_table() {
        let counts = [0, 1, 1, 5, 0, 2, 1, 1, 3, 3, 0];
        let (s, naive) = build(&counts);
        assert_eq!(s.len(), naive.len() as u64);
        assert_eq!(s.records(), counts.len() as u64);
        for (slot, &want) in naive.iter().enumerate() {
            assert_eq!(s.locate(slot as u64), want, "slot {slot}");
        }
        for rec in 0..=counts.len() as u64 {
            let first = naive
                .iter()
                .position(|&(r, _)| r == rec)
                .unwrap_or(naive.len());
            assert_eq!(s.slot_of(rec), first as u64, "record {rec}");
        }
    }

    #[test]
    fn one_entry_records_are_slot_for_record() {
        let (s, _) = build(&[0, 1, 1, 1, 0]);
        for i in 0..5 {
            assert_eq!(s.locate(i), (i, 0));
            assert_eq!(s.slot_of(i), i);
        }
    }

    #[test]
    fn truncate_matches_building_fewer() {
        let counts = [0, 4, 1, 0, 7, 2, 1];
        for keep in 0..=counts.len() + 1 {
            let (mut s, _) = build(&counts);
            s.truncate(keep as u64);
            let (want, _) = build(&counts[..keep.min(counts.len())]);
            assert_eq!(s, want, "keep {keep}");
        }
    }
}
