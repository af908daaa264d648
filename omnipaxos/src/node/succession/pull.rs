//! The pull scheduler: which part of the shared log to ask from which server, a few requests
//! outstanding per server, timed-out requests given to another. Pure: it decides what to send,
//! the succession room sends it. Tested on its exact output.
//!
//! A pull fetches the decided log `from..end` in [`SEGMENTS`] segments. What arrives is kept
//! per segment; the pull is complete when the parts cover `from..end` without a gap.

use crate::util::NodeId;
use std::collections::BTreeMap;

/// Segments per pull, so that several sources share the work evenly.
pub(crate) const SEGMENTS: usize = 16;
/// Requests outstanding per source.
pub(crate) const PER_SOURCE: usize = 2;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SegState {
    Pending,
    Asked { source: NodeId, at: u64 },
    Done,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Segment {
    from: usize,
    to: usize,
    state: SegState,
}

/// What the scheduler knows of a server it may pull from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Source {
    /// It holds the decided entries `held_from..held_to`.
    pub(crate) held_from: usize,
    pub(crate) held_to: usize,
    /// It may hold a snapshot of `0..held_from`.
    pub(crate) snapshot: bool,
    busy: usize,
    /// Refused or timed out lately: asked only if no other source can serve.
    strikes: u32,
}

/// A request the scheduler wants sent.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    /// Entries `from..to`.
    Entries { from: usize, to: usize },
    /// Its snapshot.
    Snapshot,
}

/// A pull of the decided log `from..end`; `P` is what a received part is kept as.
pub(crate) struct Pull<P> {
    pub(crate) from: usize,
    pub(crate) end: usize,
    segments: Vec<Segment>,
    sources: BTreeMap<NodeId, Source>,
    /// Parts received, by first index: `start -> (end, part)`.
    parts: BTreeMap<usize, (usize, P)>,
    /// A snapshot requested from this source at this time, if any.
    snapshot_asked: Option<(NodeId, u64)>,
    /// Ticks a request may take before it is asked from another source.
    timeout: u64,
    /// Rounds in a row in which nobody could be asked for anything.
    pub(crate) stalled: u32,
    /// Times everybody was asked again because nobody could serve what is left.
    reprobes: u32,
}

impl<P> Pull<P> {
    pub(crate) fn new(from: usize, end: usize, timeout: u64) -> Self {
        let len = end.saturating_sub(from);
        let size = len.div_ceil(SEGMENTS).max(1);
        let mut segments = Vec::new();
        let mut a = from;
        while a < end {
            let b = a.saturating_add(size).min(end);
            segments.push(Segment {
                from: a,
                to: b,
                state: SegState::Pending,
            });
            a = b;
        }
        Pull {
            from,
            end,
            segments,
            sources: BTreeMap::new(),
            parts: BTreeMap::new(),
            snapshot_asked: None,
            timeout,
            stalled: 0,
            reprobes: 0,
        }
    }

    /// Entries received so far.
    pub(crate) fn received(&self) -> usize {
        self.parts.iter().map(|(a, (b, _))| b - a).sum()
    }

    pub(crate) fn sources(&self) -> usize {
        self.sources.len()
    }

    /// Whether the parts cover `from..end`.
    pub(crate) fn complete(&self) -> bool {
        let mut at = self.from;
        for (start, (end, _)) in &self.parts {
            if *start > at {
                return false;
            }
            at = at.max(*end);
        }
        at >= self.end
    }

    /// The parts in order, once complete.
    pub(crate) fn into_parts(self) -> Vec<(usize, usize, P)> {
        self.parts
            .into_iter()
            .map(|(a, (b, p))| (a, b, p))
            .collect()
    }

    /// A server that says what it holds.
    pub(crate) fn add_source(
        &mut self,
        pid: NodeId,
        held_from: usize,
        held_to: usize,
        snapshot: bool,
    ) {
        let s = self.sources.entry(pid).or_insert(Source {
            held_from,
            held_to,
            snapshot,
            busy: 0,
            strikes: 0,
        });
        s.held_from = held_from;
        s.held_to = held_to;
        s.snapshot = snapshot;
        s.strikes = 0;
    }

    /// A server that may hold the log but did not say: asked after those that did.
    pub(crate) fn add_candidate(&mut self, pid: NodeId) {
        self.sources.entry(pid).or_insert(Source {
            held_from: 0,
            held_to: usize::MAX,
            snapshot: true,
            busy: 0,
            strikes: 1,
        });
    }

    /// Asks idle sources for pending segments; returns the requests to send.
    pub(crate) fn assign(&mut self, now: u64) -> Vec<(NodeId, Request)> {
        let mut out = Vec::new();
        let mut unserved = false;
        for i in 0..self.segments.len() {
            if self.segments[i].state != SegState::Pending {
                continue;
            }
            let (a, b) = (self.segments[i].from, self.segments[i].to);
            // The least busy source that has the entries, preferring ones without strikes.
            let pick = self
                .sources
                .iter()
                .filter(|(_, s)| s.held_from <= a && b <= s.held_to && s.busy < PER_SOURCE)
                .min_by_key(|(pid, s)| (s.strikes, s.busy, **pid))
                .map(|(pid, _)| *pid);
            match pick {
                Some(pid) => {
                    self.segments[i].state = SegState::Asked {
                        source: pid,
                        at: now,
                    };
                    if let Some(s) = self.sources.get_mut(&pid) {
                        s.busy += 1;
                    }
                    out.push((pid, Request::Entries { from: a, to: b }));
                }
                None => {
                    unserved |= !self
                        .sources
                        .values()
                        .any(|s| s.held_from <= a && b <= s.held_to)
                }
            }
        }
        if unserved && self.snapshot_asked.is_none() {
            // Nobody has some of the entries any more: ask a source for its snapshot.
            let first = self.first_missing();
            let pick = self
                .sources
                .iter()
                .filter(|(_, s)| s.snapshot && s.held_from > first)
                .min_by_key(|(pid, s)| (s.strikes, std::cmp::Reverse(s.held_from), **pid))
                .map(|(pid, _)| *pid);
            if let Some(pid) = pick {
                self.snapshot_asked = Some((pid, now));
                out.push((pid, Request::Snapshot));
            }
        }
        self.stalled = if out.is_empty() && !self.waiting() {
            self.stalled + 1
        } else {
            0
        };
        if self.stalled >= 2 {
            self.stalled = 0;
            self.reprobes += 1;
            self.reprobe();
        }
        out
    }

    fn waiting(&self) -> bool {
        self.snapshot_asked.is_some()
            || self
                .segments
                .iter()
                .any(|s| matches!(s.state, SegState::Asked { .. }))
    }

    /// The first index not covered yet.
    pub(crate) fn first_missing(&self) -> usize {
        let mut at = self.from;
        for (start, (end, _)) in &self.parts {
            if *start > at {
                break;
            }
            at = at.max(*end);
        }
        at
    }

    /// Requests that took too long are given back, to be asked from another source.
    pub(crate) fn expire(&mut self, now: u64) {
        for seg in &mut self.segments {
            if let SegState::Asked { source, at } = seg.state {
                if now >= at.saturating_add(self.timeout) {
                    seg.state = SegState::Pending;
                    if let Some(s) = self.sources.get_mut(&source) {
                        s.busy = s.busy.saturating_sub(1);
                        s.strikes += 1;
                    }
                }
            }
        }
        if let Some((pid, at)) = self.snapshot_asked {
            if now >= at.saturating_add(self.timeout) {
                self.snapshot_asked = None;
                if let Some(s) = self.sources.get_mut(&pid) {
                    s.strikes += 1;
                }
            }
        }
    }

    /// Entries `from..from + len` arrived from `source`, kept as `part`. Returns whether they
    /// were expected (a segment asked and not done).
    pub(crate) fn receive(&mut self, source: NodeId, from: usize, len: usize, part: P) -> bool {
        let to = from.saturating_add(len);
        // Only the source it was asked from: an answer from anyone else is not taken.
        let Some(seg) = self.segments.iter_mut().find(|s| {
            s.from == from
                && s.to == to
                && matches!(s.state, SegState::Asked { source: asked, .. } if asked == source)
        }) else {
            return false;
        };
        if let Some(s) = self.sources.get_mut(&source) {
            s.busy = s.busy.saturating_sub(1);
        }
        seg.state = SegState::Done;
        if let Some(s) = self.sources.get_mut(&source) {
            s.strikes = 0;
        }
        self.parts.insert(from, (to, part));
        true
    }

    /// `source` cannot serve entries from `from`: it holds `held_from..held_to`. Its request is
    /// asked from another source.
    pub(crate) fn refused(
        &mut self,
        source: NodeId,
        from: usize,
        held_from: usize,
        held_to: usize,
    ) {
        for seg in &mut self.segments {
            let asked_there = matches!(seg.state, SegState::Asked { source: s, .. } if s == source);
            if seg.from == from && asked_there {
                seg.state = SegState::Pending;
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = s.busy.saturating_sub(1);
                }
            }
        }
        if let Some(s) = self.sources.get_mut(&source) {
            s.strikes += 1;
            s.held_from = held_from;
            s.held_to = held_to;
        }
    }

    /// Nobody we know can serve what is left: ask them all again (what they hold changes, as
    /// they catch up themselves).
    fn reprobe(&mut self) {
        for s in self.sources.values_mut() {
            s.held_from = 0;
            s.held_to = usize::MAX;
            s.snapshot = true;
            s.strikes += 1;
        }
    }

    /// How often everybody was asked again because nobody could serve what is left.
    pub(crate) fn give_ups(&self) -> u32 {
        self.reprobes
    }

    /// `source` has no snapshot to give.
    pub(crate) fn no_snapshot(&mut self, source: NodeId) {
        if self.snapshot_asked.is_some_and(|(p, _)| p == source) {
            self.snapshot_asked = None;
        }
        if let Some(s) = self.sources.get_mut(&source) {
            s.snapshot = false;
        }
    }

    /// Whether a snapshot was asked from `source`.
    pub(crate) fn snapshot_asked_from(&self, source: NodeId) -> bool {
        self.snapshot_asked.is_some_and(|(p, _)| p == source)
    }

    /// A snapshot covering the log up to `upto` was installed: nothing below it is needed any
    /// more. Requests in flight for those segments free their sources (left busy, a source
    /// would never be asked again); a segment across `upto` is asked again from `upto`.
    pub(crate) fn covered_up_to(&mut self, upto: usize) {
        self.snapshot_asked = None;
        if upto <= self.from {
            return;
        }
        self.from = upto.min(self.end);
        // A part across `upto` cannot be cut: it is dropped and its segment asked again.
        self.parts.retain(|start, _| *start >= upto);
        for seg in &mut self.segments {
            if seg.from >= upto {
                continue;
            }
            if let SegState::Asked { source, .. } = seg.state {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = s.busy.saturating_sub(1);
                }
            }
            if seg.to <= upto {
                seg.state = SegState::Done;
            } else {
                seg.state = SegState::Pending;
                seg.from = upto;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(r: &[(NodeId, Request)]) -> Vec<(NodeId, usize, usize)> {
        r.iter()
            .filter_map(|(to, q)| match q {
                Request::Entries { from, to: b } => Some((*to, *from, *b)),
                Request::Snapshot => None,
            })
            .collect()
    }

    #[test]
    fn segments_are_spread_over_sources_a_few_at_a_time() {
        let mut p: Pull<()> = Pull::new(0, 160, 40);
        p.add_source(1, 0, 160, false);
        p.add_source(2, 0, 160, false);
        let asked = entries(&p.assign(0));
        // The least busy source first, two at most each.
        assert_eq!(
            asked,
            vec![(1, 0, 10), (2, 10, 20), (1, 20, 30), (2, 30, 40)]
        );
        // Nothing more while all are busy.
        assert!(p.assign(0).is_empty());
        assert!(p.receive(2, 10, 10, ()));
        assert_eq!(entries(&p.assign(1)), vec![(2, 40, 50)]);
    }

    #[test]
    fn a_source_is_asked_only_for_what_it_holds() {
        let mut p: Pull<()> = Pull::new(0, 40, 40);
        p.add_source(1, 20, 40, false);
        // Segments of 3 entries: only those within 20..40; the others wait for another source.
        assert_eq!(entries(&p.assign(0)), vec![(1, 21, 24), (1, 24, 27)]);
    }

    #[test]
    fn a_snapshot_that_covers_requests_in_flight_frees_their_sources() {
        let mut p: Pull<()> = Pull::new(0, 160, 40);
        p.add_source(1, 0, 160, false);
        p.add_source(2, 100, 160, true);
        let asked = entries(&p.assign(0));
        assert_eq!(
            asked,
            vec![(1, 0, 10), (1, 10, 20), (2, 100, 110), (2, 110, 120)]
        );
        // A snapshot of 0..105 was installed: it covers 0..100 and cuts 100..110.
        p.covered_up_to(105);
        let again = entries(&p.assign(1));
        // Source 1 is free again, source 2 has one request left (110..120): the cut segment is
        // asked anew from 105, and the rest goes on.
        assert_eq!(again, vec![(1, 105, 110), (1, 120, 130), (2, 130, 140)]);
    }

    #[test]
    fn a_timed_out_request_goes_to_another_source() {
        let mut p: Pull<()> = Pull::new(0, 2, 10);
        p.add_source(1, 0, 2, false);
        assert_eq!(entries(&p.assign(0)), vec![(1, 0, 1), (1, 1, 2)]);
        p.add_source(2, 0, 2, false);
        assert!(p.assign(5).is_empty(), "both requests are still in flight");
        p.expire(10);
        // Source 1 took a strike for each: both segments go to source 2.
        assert_eq!(entries(&p.assign(10)), vec![(2, 0, 1), (2, 1, 2)]);
    }

    #[test]
    fn entries_nobody_holds_ask_for_a_snapshot_once() {
        let mut p: Pull<()> = Pull::new(0, 20, 10);
        p.add_source(1, 10, 20, true);
        let asked = p.assign(0);
        assert!(asked.contains(&(1, Request::Snapshot)));
        assert!(!p.assign(1).contains(&(1, Request::Snapshot)));
        p.no_snapshot(1);
        assert!(!p.assign(2).contains(&(1, Request::Snapshot)));
    }

    #[test]
    fn complete_when_the_parts_cover_the_range() {
        let mut p: Pull<u8> = Pull::new(5, 9, 10);
        p.add_source(1, 0, 9, false);
        let asked = entries(&p.assign(0));
        assert_eq!(asked, vec![(1, 5, 6), (1, 6, 7)]);
        assert!(p.receive(1, 5, 1, 0));
        assert!(p.receive(1, 6, 1, 1));
        assert!(!p.receive(1, 6, 1, 1), "a duplicate is not expected");
        assert!(!p.complete());
        let more = entries(&p.assign(1));
        assert_eq!(more, vec![(1, 7, 8), (1, 8, 9)]);
        assert!(p.receive(1, 7, 1, 2) && p.receive(1, 8, 1, 3));
        assert!(p.complete());
        assert_eq!(p.received(), 4);
        let parts: Vec<u8> = p.into_parts().into_iter().map(|(_, _, x)| x).collect();
        assert_eq!(parts, vec![0, 1, 2, 3]);
    }
}
