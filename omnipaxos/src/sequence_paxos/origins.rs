//! Where the forwarded entries of the log came from.
//!
//! Every node keeps, next to its log, the runs of entries that were forwarded proposals
//! ([`ForwardRun`]: which node forwarded them, to which leader, in which session, numbered how).
//! The runs travel with the entries (in `AcceptDecide`, and in the log syncs of `Promise` and
//! `AcceptSync`), so a new leader knows the runs of the log it adopted.
//!
//! That lets a follower retry a forward that its leader never acknowledged (the leader may have
//! crashed before or after appending it): the new leader appends such a proposal only if no run
//! of its log holds it. This is safe: an entry of the old leader's that is not in the new leader's
//! adopted log can never be decided any more, and one that is, is found.
//!
//! Knowledge can be partial (after a restart, or pruned below the decided index): `known_from` is
//! the index from which every forwarded entry of the log is in `runs`. A check that needs more
//! gives up on the proposal rather than risk deciding it twice.

use crate::{ballot_leader_election::Ballot, messages::sequence_paxos::ForwardRun, util::NodeId};
use std::collections::BTreeMap;

pub(crate) struct Origins {
    /// Runs by their first index. Invariant: runs do not overlap.
    runs: BTreeMap<usize, ForwardRun>,
    /// Every forwarded entry at or after this index is in `runs`.
    known_from: usize,
}

impl Origins {
    /// No knowledge of the entries below `log_end` (a node rebuilt from storage).
    pub(crate) fn new(log_end: usize) -> Self {
        Origins {
            runs: BTreeMap::new(),
            known_from: log_end,
        }
    }

    pub(crate) fn record(&mut self, run: ForwardRun) {
        if run.len > 0 {
            self.runs.insert(run.idx, run);
        }
    }

    /// The log is cut at `idx`: runs from there on go (a run across it is shortened).
    pub(crate) fn truncate(&mut self, idx: usize) {
        let cut: Vec<usize> = self.runs.range(idx..).map(|(k, _)| *k).collect();
        for k in cut {
            self.runs.remove(&k);
        }
        if let Some((_, last)) = self.runs.range_mut(..idx).next_back() {
            let end = (last.idx as u64).saturating_add(last.len);
            if end > idx as u64 {
                last.len = (idx - last.idx) as u64;
            }
        }
    }

    /// The runs within `from..to` (clipped to it), or `None` if not all are known.
    pub(crate) fn runs_in(&self, from: usize, to: usize) -> Option<Vec<ForwardRun>> {
        if self.known_from > from {
            return None;
        }
        if self.runs.is_empty() {
            return Some(Vec::new());
        }
        let start = self
            .runs
            .range(..from)
            .next_back()
            .map_or(from, |(k, _)| *k);
        Some(
            self.runs
                .range(start..to)
                .filter_map(|(_, r)| clip(r, from, to))
                .collect(),
        )
    }

    /// Our log became `log[..sync_idx] ++ suffix` (ending at `new_end`) whose runs are `runs`
    /// (`None`: unknown).
    pub(crate) fn apply_sync(
        &mut self,
        sync_idx: usize,
        runs: Option<Vec<ForwardRun>>,
        new_end: usize,
    ) {
        self.truncate(sync_idx);
        match runs {
            Some(runs) => {
                for r in runs {
                    if let Some(r) = clip(&r, sync_idx, new_end) {
                        self.record(r);
                    }
                }
                self.known_from = self.known_from.min(sync_idx);
            }
            None => self.known_from = self.known_from.max(new_end),
        }
    }

    /// Entries `from..to` were appended with the runs `runs` (`None`: unknown).
    pub(crate) fn appended(&mut self, from: usize, to: usize, runs: Option<Vec<ForwardRun>>) {
        match runs {
            Some(runs) => {
                for r in runs {
                    if let Some(r) = clip(&r, from, to) {
                        self.record(r);
                    }
                }
            }
            None => self.known_from = self.known_from.max(to),
        }
    }

    /// Entries below `idx` reached us inside a snapshot: their runs are unknown.
    pub(crate) fn hidden_below(&mut self, idx: usize) {
        self.known_from = self.known_from.max(idx);
    }

    /// Forgets the runs below `idx` (they are decided and old).
    pub(crate) fn prune(&mut self, idx: usize) {
        if self.runs.is_empty() {
            // Nothing to forget: "no forwarded entries from `known_from` on" stays true.
            return;
        }
        let gone: Vec<usize> = self
            .runs
            .range(..idx)
            .filter(|(_, r)| (r.idx as u64).saturating_add(r.len) <= idx as u64)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.runs.remove(&k);
        }
        self.known_from = self.known_from.max(idx);
    }

    /// Whether proposal `seq` of session `session` that `origin` forwarded to the leader of `n`
    /// is in the log at or after `min_idx`: `Some(true/false)`, or `None` if unknown.
    pub(crate) fn holds(
        &self,
        origin: NodeId,
        n: Ballot,
        session: u64,
        seq: u64,
        min_idx: usize,
    ) -> Option<bool> {
        let found = self.runs.values().any(|r| {
            r.origin == origin
                && r.n == n
                && r.session == session
                && (r.seq..r.seq.saturating_add(r.len)).contains(&seq)
        });
        if found {
            Some(true)
        } else if self.known_from <= min_idx {
            Some(false)
        } else {
            None
        }
    }
}

/// `r` restricted to `from..to`, if anything is left.
fn clip(r: &ForwardRun, from: usize, to: usize) -> Option<ForwardRun> {
    let start = r.idx.max(from);
    let end = (r.idx as u64).saturating_add(r.len).min(to as u64);
    if (start as u64) >= end {
        return None;
    }
    let skip = (start - r.idx) as u64;
    Some(ForwardRun {
        idx: start,
        len: end - start as u64,
        seq: r.seq.saturating_add(skip),
        ..*r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(idx: usize, len: u64, seq: u64) -> ForwardRun {
        ForwardRun {
            idx,
            len,
            origin: 2,
            n: Ballot::with(1, 1, 0, 1),
            session: 7,
            seq,
        }
    }

    #[test]
    fn runs_are_clipped_truncated_and_found() {
        let mut o = Origins::new(0);
        o.record(run(10, 5, 0));
        o.record(run(20, 2, 5));
        assert_eq!(o.runs_in(12, 21), Some(vec![run(12, 3, 2), run(20, 1, 5)]));
        let b = Ballot::with(1, 1, 0, 1);
        assert_eq!(o.holds(2, b, 7, 6, 0), Some(true));
        assert_eq!(o.holds(2, b, 7, 9, 0), Some(false));
        o.truncate(12);
        assert_eq!(o.runs_in(0, 100), Some(vec![run(10, 2, 0)]));
        assert_eq!(o.holds(2, b, 7, 3, 0), Some(false));
        o.prune(12);
        assert_eq!(o.runs_in(0, 100), None);
        assert_eq!(o.holds(2, b, 7, 3, 0), None);
        assert_eq!(o.holds(2, b, 7, 3, 12), Some(false));
    }

    #[test]
    fn unknown_suffix_makes_knowledge_partial() {
        let mut o = Origins::new(5);
        assert_eq!(o.runs_in(4, 10), None);
        assert_eq!(o.runs_in(5, 10), Some(vec![]));
        o.apply_sync(3, Some(vec![run(3, 2, 0)]), 8);
        assert_eq!(o.runs_in(3, 8), Some(vec![run(3, 2, 0)]));
        o.appended(8, 10, None);
        assert_eq!(o.runs_in(3, 10), None);
        assert_eq!(o.runs_in(10, 12), Some(vec![]));
    }
}
