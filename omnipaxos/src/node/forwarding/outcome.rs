//! What became of our appends: the leader's word of where it placed them, the proposals a
//! deposed leader of ours had not placed, and logs replaced by a sync of another round (what
//! they held of ours may or may not be decided: handed back).

use super::{AppendOutcome, Forwarding, PlacedOwn};
use crate::{
    ballot_leader_election::Ballot,
    node::{
        core::{Core, Note, Origin},
        role::Role,
        wire::forward::{Placed, PlacedRun},
    },
    storage::{Entry, Storage},
};
use std::collections::VecDeque;

impl<T: Entry> Forwarding<T> {
    /// Leader: proposals of `origin` went into our log at `run`.
    pub(super) fn note_placed(&mut self, n: Ballot, origin: Origin, run: PlacedRun) {
        let Some((b, sessions)) = self.intake.as_mut() else {
            return;
        };
        if *b != n {
            return;
        }
        if let Some(s) = sessions.iter_mut().find(|s| s.origin == origin) {
            s.placed.push(run);
            s.dirty = true;
        }
    }

    /// Follower: the leader placed some of our proposals.
    pub(super) fn handle_placed(&mut self, p: Placed) {
        if p.inc != self.inc || self.sent.as_ref().map_or(true, |s| s.n != p.n) {
            return;
        }
        let Some(mut s) = self.sent.take() else {
            return;
        };
        s.received = s.received.max(p.received);
        for r in p.runs {
            let end = r.first_seq.saturating_add(r.len);
            let mut entries = Vec::new();
            while s.entries.front().is_some_and(|(seq, _)| *seq < end) {
                let (seq, e) = s.entries.pop_front().expect("just looked");
                if seq >= r.first_seq {
                    entries.push(e);
                } else {
                    // Numbered before this run and not placed: a leader places in order, so
                    // this does not happen; keep it as unknown rather than lose it.
                    self.give_back(e, AppendOutcome::Unknown);
                }
            }
            if entries.is_empty() {
                // A placement we took in already (a duplicate acknowledgement).
                continue;
            }
            self.acked = self.acked.max(end);
            if entries.len() as u64 != r.len {
                // Part of the run was taken in before: the rest starts later.
                let skipped = r.len - entries.len() as u64;
                self.placed.push_back(PlacedOwn {
                    round: p.n,
                    first_seq: r.first_seq + skipped,
                    idx: r.idx + skipped as usize,
                    len: entries.len(),
                    entries: Some(entries),
                });
            } else {
                self.placed.push_back(PlacedOwn {
                    round: p.n,
                    first_seq: r.first_seq,
                    idx: r.idx,
                    len: entries.len(),
                    entries: Some(entries),
                });
            }
        }
        self.sent = Some(s);
    }

    /// Routes a note of another room.
    pub(crate) fn note<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        role: &mut Role<T>,
        note: Note<T>,
    ) {
        match note {
            Note::Placed { n, origin, run } => {
                if origin == (core.pid, self.inc) {
                    self.push_placed(PlacedOwn {
                        round: n,
                        first_seq: run.first_seq,
                        idx: run.idx,
                        len: run.len as usize,
                        entries: None,
                    });
                } else {
                    self.note_placed(n, origin, run);
                }
            }
            Note::Replaced {
                round,
                prev_round,
                from,
            } => self.log_replaced(round, prev_round, from),
            Note::Unplaced { origin, entries } => {
                if origin == (core.pid, self.inc) {
                    // Never in any log: ours to propose again, to whoever leads now.
                    let mut again: Vec<T> = entries;
                    for e in again.drain(..) {
                        self.append(core, role, e);
                    }
                }
                // Other nodes' proposals: their forwarders hand them back when their leader
                // changes.
            }
            Note::SteppedDown { n, from, entries } => self.stepped_down(n, from, entries),
            Note::StopSignBack(ss) => {
                if self.pending_stopsign.is_none() {
                    self.pending_stopsign = Some(ss);
                }
            }
        }
    }

    pub(super) fn push_placed(&mut self, p: PlacedOwn<T>) {
        if let Some(last) = self.placed.back_mut() {
            let contiguous = last.round == p.round
                && last.entries.is_none()
                && p.entries.is_none()
                && last.idx + last.len == p.idx
                && last.first_seq + last.len as u64 == p.first_seq;
            if contiguous {
                last.len += p.len;
                return;
            }
        }
        self.placed.push_back(p);
    }

    /// We stopped leading round `n`; our log held `entries` from `from` on: our undecided
    /// appends among them are kept, in case a sync of the next round replaces them.
    pub(super) fn stepped_down(&mut self, n: Ballot, from: usize, entries: Vec<T>) {
        self.intake = None;
        let end = from + entries.len();
        let mut out = VecDeque::with_capacity(self.placed.len() + 1);
        for mut p in std::mem::take(&mut self.placed) {
            if p.round != n || p.entries.is_some() || p.idx + p.len <= from || p.idx >= end {
                out.push_back(p);
                continue;
            }
            if p.idx < from {
                // Decided up to `from`: that part stays as it is (its entries are in every log
                // from now on); the rest is read out.
                let k = from - p.idx;
                out.push_back(PlacedOwn {
                    round: p.round,
                    first_seq: p.first_seq,
                    idx: p.idx,
                    len: k,
                    entries: None,
                });
                p.idx = from;
                p.first_seq += k as u64;
                p.len -= k;
            }
            let at = p.idx - from;
            let upto = (at + p.len).min(entries.len());
            p.len = upto - at;
            p.entries = Some(entries[at..upto].to_vec());
            out.push_back(p);
        }
        self.placed = out;
    }

    /// Our log was replaced from `from` on by a sync of round `round`: appends placed in another
    /// round survive below `from` (now in `round`'s log); above, they may or may not be there.
    pub(super) fn log_replaced(&mut self, round: Ballot, prev_round: Ballot, from: usize) {
        let mut kept = VecDeque::with_capacity(self.placed.len());
        for mut p in std::mem::take(&mut self.placed) {
            if p.round == prev_round && p.idx < from && from < p.idx + p.len {
                // The sync point falls inside the run: what lies below it is kept, the rest
                // replaced.
                let below = from - p.idx;
                let rest = PlacedOwn {
                    round: p.round,
                    first_seq: p.first_seq + below as u64,
                    idx: from,
                    len: p.len - below,
                    entries: p.entries.as_mut().map(|e| e.split_off(below.min(e.len()))),
                };
                p.len = below;
                p.round = round;
                kept.push_back(p);
                p = rest;
            }
            if p.round == round {
                kept.push_back(p);
            } else if p.round == prev_round && p.idx + p.len <= from {
                // Our log held it (it was that round's log, a prefix of where it was placed),
                // and still does.
                p.round = round;
                kept.push_back(p);
            } else {
                match p.entries.take() {
                    Some(entries) => {
                        for e in entries {
                            self.give_back(e, AppendOutcome::Unknown);
                        }
                    }
                    None => {
                        // Our own appends as leader are read out when we stop leading, before
                        // any sync can replace them.
                        debug_assert!(
                            false,
                            "appends placed in {:?} at {} were not read out",
                            p.round, p.idx
                        );
                        self.returned_total += p.len as u64;
                    }
                }
            }
        }
        self.placed = kept;
    }
}
