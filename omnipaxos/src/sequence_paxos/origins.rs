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
//! Knowledge can be partial (after a restart, or pruned far below the decided index):
//! `known_from` is the index from which every forwarded entry of the log is in `runs`. A check
//! that needs more gives up on the proposal rather than risk deciding it twice. Messages say
//! from where their runs are complete ([`ForwardedRuns::known_from`]), so a gap in one node's
//! knowledge does not spread further than it reaches; runs outlive compaction (syncs that
//! install a snapshot carry those of the entries just below it), and are forgotten only
//! [`RUNS_HORIZON`] entries below the decided index.

use crate::{
    ballot_leader_election::Ballot,
    messages::sequence_paxos::{ForwardRun, ForwardedRuns},
    util::NodeId,
};
use std::collections::BTreeMap;

/// At least this many entries below the decided index keep their runs (more when the
/// configured `buffer_size` is larger): a forward older than that is given up if unacknowledged.
pub(crate) const RUNS_HORIZON: usize = 10_000;

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
        self.cut_out(idx, usize::MAX);
    }

    /// Forgets the runs within `from..to`, keeping the parts of runs across its ends.
    fn cut_out(&mut self, from: usize, to: usize) {
        let first = self
            .runs
            .range(..from)
            .next_back()
            .map_or(from, |(k, _)| *k);
        let hit: Vec<usize> = self.runs.range(first..to).map(|(k, _)| *k).collect();
        for k in hit {
            if let Some(r) = self.runs.remove(&k) {
                for part in [clip(&r, 0, from), clip(&r, to, usize::MAX)]
                    .into_iter()
                    .flatten()
                {
                    self.record(part);
                }
            }
        }
    }

    /// The runs within `from..to` (clipped to it), complete from `known_from` on.
    pub(crate) fn runs_in(&self, from: usize, to: usize) -> ForwardedRuns {
        let known_from = self.known_from.clamp(from, to.max(from));
        if self.runs.is_empty() || known_from >= to {
            return ForwardedRuns {
                known_from,
                runs: Vec::new(),
            };
        }
        let start = self
            .runs
            .range(..known_from)
            .next_back()
            .map_or(known_from, |(k, _)| *k);
        ForwardedRuns {
            known_from,
            runs: self
                .runs
                .range(start..to)
                .filter_map(|(_, r)| clip(r, known_from, to))
                .collect(),
        }
    }

    /// Records the runs of `runs` within `from..to`, and returns from where they are complete
    /// there (a sender may claim anything: it is clamped to the stretch).
    fn record_all(&mut self, runs: &ForwardedRuns, from: usize, to: usize) -> usize {
        for r in &runs.runs {
            if let Some(r) = clip(r, from, to) {
                self.record(r);
            }
        }
        runs.known_from.clamp(from, to.max(from))
    }

    /// Our log below `end` was replaced by a decided prefix from another node (a snapshot, or a
    /// compacted prefix), whose runs (below `end`) are `runs`.
    pub(crate) fn replace_prefix(&mut self, end: usize, runs: &ForwardedRuns) {
        // Our own knowledge from `end` on stays; everything below is the sender's now.
        let ours_above = self.known_from.max(end);
        self.cut_out(0, end);
        let theirs = self.record_all(runs, 0, end);
        self.known_from = if ours_above == end {
            theirs
        } else {
            ours_above
        };
    }

    /// From where we know every run of our log.
    pub(crate) fn known_from(&self) -> usize {
        self.known_from
    }

    /// Runs of another node's decided entries below `end` (decided entries are the same on
    /// every node, and our log holds them all): they fill the gap below what we know, if they
    /// reach up to it.
    pub(crate) fn fill_below(&mut self, runs: &ForwardedRuns, end: usize) {
        let to = self.known_from;
        let from = runs.known_from.min(end);
        if end < to || from >= to {
            return;
        }
        // What we still hold of `from..to` is replaced (it may be cut differently).
        self.cut_out(from, to);
        for r in &runs.runs {
            if let Some(r) = clip(r, from, to) {
                self.record(r);
            }
        }
        self.known_from = from;
    }

    /// Our log became `log[..sync_idx] ++ suffix` (ending at `new_end`) whose runs are `runs`.
    pub(crate) fn apply_sync(&mut self, sync_idx: usize, runs: &ForwardedRuns, new_end: usize) {
        self.truncate(sync_idx);
        let theirs = self.record_all(runs, sync_idx, new_end);
        self.known_from = if theirs == sync_idx {
            // Complete from where ours is replaced: ours below it stays as it was.
            self.known_from.min(sync_idx)
        } else {
            theirs
        };
    }

    /// Entries `from..to` were appended to our log, with the runs `runs`.
    pub(crate) fn appended(&mut self, from: usize, to: usize, runs: &ForwardedRuns) {
        let theirs = self.record_all(runs, from, to);
        if theirs > from {
            self.known_from = self.known_from.max(theirs);
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

    fn known(known_from: usize, runs: Vec<ForwardRun>) -> ForwardedRuns {
        ForwardedRuns { known_from, runs }
    }

    #[test]
    fn runs_are_clipped_truncated_and_found() {
        let mut o = Origins::new(0);
        o.record(run(10, 5, 0));
        o.record(run(20, 2, 5));
        assert_eq!(
            o.runs_in(12, 21),
            known(12, vec![run(12, 3, 2), run(20, 1, 5)])
        );
        let b = Ballot::with(1, 1, 0, 1);
        assert_eq!(o.holds(2, b, 7, 6, 0), Some(true));
        assert_eq!(o.holds(2, b, 7, 9, 0), Some(false));
        o.truncate(12);
        assert_eq!(o.runs_in(0, 100), known(0, vec![run(10, 2, 0)]));
        assert_eq!(o.holds(2, b, 7, 3, 0), Some(false));
        o.prune(12);
        assert_eq!(o.runs_in(0, 100), known(12, vec![]));
        assert_eq!(o.holds(2, b, 7, 3, 0), None);
        assert_eq!(o.holds(2, b, 7, 3, 12), Some(false));
    }

    #[test]
    fn partial_knowledge_spreads_no_further_than_it_reaches() {
        let mut o = Origins::new(5);
        assert_eq!(o.runs_in(4, 10), known(5, vec![]));
        assert_eq!(o.runs_in(5, 10), known(5, vec![]));
        // A sync complete from where it starts: we know from there on.
        o.apply_sync(3, &known(3, vec![run(3, 2, 0)]), 8);
        assert_eq!(o.runs_in(3, 8), known(3, vec![run(3, 2, 0)]));
        // Appended entries whose sender knows only their second half.
        o.appended(8, 12, &known(10, vec![run(10, 1, 2)]));
        assert_eq!(o.runs_in(3, 12), known(10, vec![run(10, 1, 2)]));
        // A sender claiming more than its stretch is clamped to it.
        o.appended(12, 14, &known(0, vec![]));
        assert_eq!(o.runs_in(10, 14), known(10, vec![run(10, 1, 2)]));
        // A sync that is partial below 20: we know from 20 on, not from its end.
        o.apply_sync(14, &known(20, vec![run(21, 1, 3)]), 30);
        assert_eq!(o.runs_in(0, 30), known(20, vec![run(21, 1, 3)]));
    }

    #[test]
    fn a_replaced_prefix_takes_the_senders_runs() {
        let mut o = Origins::new(50);
        o.appended(50, 60, &known(50, vec![run(55, 2, 0)]));
        // A snapshot up to 52 whose sender knows the runs from 40 on.
        o.replace_prefix(52, &known(40, vec![run(45, 3, 10), run(51, 1, 13)]));
        assert_eq!(
            o.runs_in(0, 60),
            known(40, vec![run(45, 3, 10), run(51, 1, 13), run(55, 2, 0)])
        );
        // A run across the cut keeps its part above it.
        let mut p = Origins::new(0);
        p.appended(0, 10, &known(0, vec![run(4, 4, 0)]));
        p.replace_prefix(6, &known(6, vec![]));
        assert_eq!(p.runs_in(0, 10), known(6, vec![run(6, 2, 2)]));
        // Our knowledge above the cut was partial: it stays so.
        let mut q = Origins::new(20);
        q.replace_prefix(10, &known(0, vec![]));
        assert_eq!(q.runs_in(0, 30), known(20, vec![]));
    }

    #[test]
    fn a_restarted_node_learns_the_runs_of_decided_entries_from_others() {
        let mut o = Origins::new(30);
        o.appended(30, 40, &known(30, vec![run(35, 1, 9)]));
        // Runs that do not reach up to what we know leave a gap: not taken.
        o.fill_below(&known(0, vec![run(5, 2, 0)]), 20);
        assert_eq!(o.runs_in(0, 40), known(30, vec![run(35, 1, 9)]));
        // Runs up to it (or beyond: clipped) are.
        o.fill_below(&known(10, vec![run(12, 2, 0), run(28, 4, 2)]), 35);
        assert_eq!(
            o.runs_in(0, 40),
            known(10, vec![run(12, 2, 0), run(28, 2, 2), run(35, 1, 9)])
        );
        // A run across both ends of the gap keeps its outer parts.
        let mut p = Origins::new(0);
        p.appended(0, 20, &known(0, vec![run(2, 16, 0)]));
        p.prune(0);
        p.known_from = 15;
        p.fill_below(&known(5, vec![]), 15);
        assert_eq!(p.runs_in(0, 20), known(5, vec![run(15, 3, 13)]));
        assert_eq!(p.runs.get(&2), Some(&run(2, 3, 0)));
    }
}
