//! The entry type the simulator appends: a unique tag, so that every decided entry can be traced
//! back to exactly one append call.

use omnipaxos::storage::{Entry, Snapshot};
use serde::{Deserialize, Serialize};

/// Entries whose tag identifies the append call that proposed them.
pub trait Tagged: Entry {
    /// A tag unique to one append call.
    fn tag(&self) -> u64;

    /// Whether `snapshot` is the snapshot of the decided entries `prefix` (from index 0), or
    /// `None` if the type cannot tell (then snapshots are not checked).
    fn snapshot_of(_prefix: &[&Self], _snapshot: &Self::Snapshot) -> Option<bool> {
        None
    }

    /// The tags folded into `snapshot`, if the type keeps them (so that an append decided and
    /// compacted before any node showed it as an entry still counts as decided).
    fn snapshot_tags(_snapshot: &Self::Snapshot) -> &[u64] {
        &[]
    }
}

/// Entries a generated workload can make from a fresh tag (the randomized tier's entries).
pub trait FromTag: Tagged {
    /// The entry of the append call tagged `tag`.
    fn from_tag(tag: u64) -> Self;
}

/// The simulator's log entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimEntry {
    /// Unique per append call.
    pub id: u64,
}

impl Tagged for SimEntry {
    fn tag(&self) -> u64 {
        self.id
    }

    fn snapshot_of(prefix: &[&Self], snapshot: &SimSnapshot) -> Option<bool> {
        Some(SimSnapshot::of(prefix.iter().map(|e| e.id)) == *snapshot)
    }

    fn snapshot_tags(snapshot: &SimSnapshot) -> &[u64] {
        &snapshot.tags
    }
}

impl FromTag for SimEntry {
    fn from_tag(tag: u64) -> Self {
        SimEntry { id: tag }
    }
}

impl Entry for SimEntry {
    type Snapshot = SimSnapshot;
}

/// An entry type without snapshots (`NoSnapshot`): compaction can only trim it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PlainEntry {
    /// Unique per append call.
    pub id: u64,
}

impl Tagged for PlainEntry {
    fn tag(&self) -> u64 {
        self.id
    }
}

impl FromTag for PlainEntry {
    fn from_tag(tag: u64) -> Self {
        PlainEntry { id: tag }
    }
}

impl Entry for PlainEntry {
    type Snapshot = omnipaxos::storage::NoSnapshot;
}

/// A snapshot of simulator entries: how many, a polynomial hash of their tags in log order, and
/// the tags themselves (for the simulator's accounting of what was decided).
///
/// The hash composes: `merge(of(a), of(b)) == of(a ++ b)`, so snapshots of the same decided
/// prefix are equal however they were built (created at once, or merged from deltas), and one
/// that lost, duplicated or reordered an entry is not. The checker verifies snapshots this way.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SimSnapshot {
    /// Number of entries folded in.
    pub count: u64,
    /// Polynomial hash of the tags, in log order.
    pub digest: u64,
    /// The tags, in log order.
    pub tags: Vec<u64>,
}

const P: u64 = 0x0000_0100_0000_01B3;

fn mix(tag: u64) -> u64 {
    let mut z = tag.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^ (z >> 31)
}

fn pow(mut base: u64, mut exp: u64) -> u64 {
    let mut acc: u64 = 1;
    while exp > 0 {
        if exp & 1 == 1 {
            acc = acc.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exp >>= 1;
    }
    acc
}

impl SimSnapshot {
    /// Folds one more tag in.
    pub fn push(&mut self, tag: u64) {
        self.count += 1;
        self.digest = self.digest.wrapping_mul(P).wrapping_add(mix(tag));
        self.tags.push(tag);
    }

    /// The snapshot of `tags`, in order.
    pub fn of(tags: impl IntoIterator<Item = u64>) -> Self {
        let mut s = SimSnapshot::default();
        for t in tags {
            s.push(t);
        }
        s
    }
}

impl Snapshot<SimEntry> for SimSnapshot {
    fn create(entries: &[SimEntry]) -> Self {
        SimSnapshot::of(entries.iter().map(|e| e.id))
    }

    fn merge(&mut self, mut delta: Self) {
        self.digest = self
            .digest
            .wrapping_mul(pow(P, delta.count))
            .wrapping_add(delta.digest);
        self.count += delta.count;
        self.tags.append(&mut delta.tags);
    }

    fn use_snapshots() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_composes_like_concatenation() {
        let a = [5u64, 9, 1, 77];
        let b = [3u64, 3, 8];
        let mut m = SimSnapshot::of(a);
        m.merge(SimSnapshot::of(b));
        assert_eq!(m, SimSnapshot::of(a.iter().chain(b.iter()).copied()));
        assert_ne!(SimSnapshot::of([1, 2]), SimSnapshot::of([2, 1]));
        assert_ne!(SimSnapshot::of([1, 2]), SimSnapshot::of([1, 2, 2]));
    }
}
