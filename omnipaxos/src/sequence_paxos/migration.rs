//! Reconfiguration: the next configuration continues the log of the stopped one, and servers
//! that join pull the old log from several servers at once.
//!
//! # How it works
//!
//! When configuration `c1` decides its stop sign at index `k`, its log `0..k` becomes the first
//! part of the log of the next configuration `c2`: indices go on from `k`. Decided entries are
//! the same on every server of every configuration, which is what lets any server serve them.
//!
//! * A server in both configurations converts its storage in place when it builds the `c2` node
//!   (see [`crate::OmniPaxos::start_next_config`]): it keeps its entries `0..k`, decided, and
//!   drops the stop sign and the ballots of `c1`.
//! * A server that joins starts on empty storage. Servers that hold the old log **offer** it
//!   (every resend timeout, until the joiner answers `Done`): the `c1` servers once their stop
//!   sign is decided, and the `c2` servers that hold it. On the first offer the joiner takes
//!   `0..k` as a compacted prefix (compacted and decided index `k`), so it takes part in deciding
//!   `c2`'s new entries right away, and fills that prefix in the background: it cuts `0..k` into
//!   segments and **pulls them from all the servers that offered, in parallel**, a few
//!   outstanding per server. The other servers of `c2` are asked too, after those (they may have
//!   restarted and forgotten what they continue); each refuses what it lacks. Each segment that
//!   arrives is folded into a snapshot (`Snapshot::create`); a segment whose server does not
//!   answer within the segment timeout is pulled from another. Servers that compacted serve their
//!   snapshot for their compacted part (a snapshot beyond `k` replaces the whole pull). When all
//!   segments are in, they are merged in order into the snapshot of `0..k` and written to
//!   storage. Until then, reads of `0..k` on the joiner return `None`.
//! * The leader of `c2` does not stream `0..k` to a joiner itself: its sync sends only what
//!   follows `k`, marked as following a compacted prefix. That keeps the leader's link free and
//!   is what makes the catch-up scale with the number of sources.
//! * **Safety of joining.** A joiner on empty storage does not know where its log starts until
//!   an offer tells it, so it never leads before (it follows a leader that knows). Otherwise a
//!   majority of joiners could elect one of them and decide new entries at index 0, over the old
//!   log. The first configuration of a cluster (number 1) starts empty and leads at once.
//! * After a crash in the middle, a joiner finds a compacted prefix without a snapshot and pulls
//!   it again when offered. If nobody can give it any more (every server compacted it without a
//!   snapshot), the pull is given up after a while and the prefix stays compacted
//!   ([`crate::util::NodeStats::abandoned_migrations`]).
//! * `c1` servers that are not in `c2` stay up as sources. Once their stop sign is decided they
//!   act on nothing but migration messages and elect nobody; they learn they were removed from
//!   [`crate::OmniPaxos::is_reconfigured`]. A `c1` server that missed the decision learns it from
//!   an offer, or, when it talks to a server that already moved on, from a `Moved` answer naming
//!   the next configuration (it then continues from its decided log and the new leader brings it
//!   up to date).
//! * A reconfiguration while a pull is still running is fine: the pull of an older
//!   configuration's log goes on in the newer one, from whoever holds it.
//!
//! Entry types without snapshots cannot hold a prefix they did not receive entry by entry, so
//! their joining servers keep the old log as a compacted prefix (reads show it trimmed); they
//! take part in the new configuration at once.

use super::SequencePaxos;
use crate::{
    messages::sequence_paxos::{MigrationMsg, PaxosMsg, PrefixId},
    storage::{Entry, Snapshot, StopSign, Storage, StorageOp},
    util::NodeId,
};
use std::collections::{BTreeMap, BTreeSet};

/// Segments per migration, so that several sources share the work evenly.
const SEGMENTS: usize = 16;
/// Requests outstanding per source.
const PER_SOURCE: usize = 2;
/// Offers of our own stopped log, while we hold its stop sign undecided, before we stop
/// waiting for the decision.
const EARLY_OFFERS: u32 = 3;
/// Resend timeouts without any source to ask before a migration is given up.
const STALLED_LIMIT: u32 = 8;

/// The configuration this node's log continues, and how it ended.
#[derive(Clone, Debug)]
pub(crate) struct Predecessor {
    pub(crate) prefix: PrefixId,
}

/// Servers we offer a log to, until each answers `Done`.
#[derive(Clone, Debug)]
pub(crate) struct Offering {
    prefix: PrefixId,
    stopsign: StopSign,
    pending: BTreeSet<NodeId>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum SegState {
    Pending,
    Asked { source: NodeId, at: u64 },
    Done,
}

#[derive(Clone, Debug)]
struct Segment {
    from: usize,
    to: usize,
    state: SegState,
}

#[derive(Clone, Debug)]
struct Source {
    compacted: usize,
    snapshot: bool,
    busy: usize,
    /// Refused or timed out lately: tried again only if no other source can serve.
    strikes: u32,
}

/// A joiner's pull of a log it does not hold.
pub(crate) struct Migration<T: Entry> {
    prefix: PrefixId,
    stopsign: StopSign,
    sources: BTreeMap<NodeId, Source>,
    segments: Vec<Segment>,
    /// Snapshots of the parts received, by first index: `start -> (end, snapshot)`.
    parts: BTreeMap<usize, (usize, T::Snapshot)>,
    /// A snapshot requested from this source, if any.
    snapshot_asked: Option<(NodeId, u64)>,
    /// Ticks a segment may take before it is asked from another source.
    timeout: u64,
    /// A compaction requested while migrating, applied after.
    deferred_compaction: Option<usize>,
    /// Resend timeouts in a row in which no source could be asked for anything.
    stalled: u32,
}

/// What the user can see of a migration.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The end of the old log being pulled (its stop sign's index).
    pub prefix_end: usize,
    /// Entries of it received so far.
    pub received: usize,
    /// Servers it is pulled from (those that offered it, and the other servers of the
    /// configuration, which are asked when those do not answer).
    pub sources: usize,
}

impl<T: Entry> Migration<T> {
    fn new(
        prefix: PrefixId,
        stopsign: StopSign,
        own: Option<(usize, T::Snapshot)>,
        timeout: u64,
    ) -> Self {
        let from = own.as_ref().map_or(0, |(end, _)| *end);
        let mut parts = BTreeMap::new();
        if let Some((end, s)) = own {
            if end > 0 {
                parts.insert(0, (end, s));
            }
        }
        let len = prefix.end - from;
        let size = len.div_ceil(SEGMENTS).max(1);
        let segments = (from..prefix.end)
            .step_by(size)
            .map(|a| Segment {
                from: a,
                to: (a + size).min(prefix.end),
                state: SegState::Pending,
            })
            .collect();
        Migration {
            prefix,
            stopsign,
            sources: BTreeMap::new(),
            segments,
            parts,
            snapshot_asked: None,
            timeout,
            deferred_compaction: None,
            stalled: 0,
        }
    }

    pub(crate) fn status(&self) -> MigrationStatus {
        MigrationStatus {
            prefix_end: self.prefix.end,
            received: self.parts.values().map(|(end, _)| *end).sum::<usize>()
                - self.parts.keys().sum::<usize>(),
            sources: self.sources.len(),
        }
    }

    fn complete(&self) -> bool {
        let mut at = 0;
        for (start, (end, _)) in &self.parts {
            if *start > at {
                return false;
            }
            at = at.max(*end);
        }
        at >= self.prefix.end
    }

    /// The snapshot of the whole log, once complete.
    fn assemble(&mut self) -> Option<T::Snapshot> {
        let mut parts = std::mem::take(&mut self.parts).into_iter();
        let (_, (mut at, mut full)) = parts.next()?;
        for (start, (end, s)) in parts {
            debug_assert_eq!(start, at, "parts of the migrated log must be contiguous");
            full.merge(s);
            at = end;
        }
        (at == self.prefix.end).then_some(full)
    }

    fn add_source(&mut self, pid: NodeId, compacted: usize, snapshot: bool) {
        let s = self.sources.entry(pid).or_insert(Source {
            compacted,
            snapshot,
            busy: 0,
            strikes: 0,
        });
        s.compacted = compacted;
        s.snapshot = snapshot;
    }

    /// A server that may hold the log but did not offer it: asked after those that offered.
    fn add_candidate(&mut self, pid: NodeId) {
        self.sources.entry(pid).or_insert(Source {
            compacted: 0,
            // It may have a snapshot: asked for it when nobody has the entries.
            snapshot: true,
            busy: 0,
            strikes: 1,
        });
    }

    /// A snapshot covering `0..upto` arrived: it replaces the parts below `upto`.
    /// Returns whether it was of use.
    fn take_snapshot(&mut self, upto: usize, snapshot: T::Snapshot) -> bool {
        let upto = upto.min(self.prefix.end);
        if self.parts.get(&0).is_some_and(|(end, _)| *end >= upto) {
            // What we hold from the start already covers it.
            return false;
        }
        // Parts below `upto` are covered. One that straddles it cannot be cut: it is dropped
        // and the rest of its segment pulled again.
        let straddling: Vec<(usize, usize)> = self
            .parts
            .iter()
            .filter(|(start, (end, _))| **start < upto && *end > upto)
            .map(|(start, (end, _))| (*start, *end))
            .collect();
        self.parts.retain(|start, _| *start >= upto);
        for seg in &mut self.segments {
            if seg.from >= upto {
                continue;
            }
            // A request in flight for it is not wanted any more (its answer will not match):
            // its source is free again. (Left busy, a source would never be asked again.)
            if let SegState::Asked { source, .. } = seg.state {
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = s.busy.saturating_sub(1);
                }
                seg.state = SegState::Pending;
            }
            if seg.to <= upto {
                seg.state = SegState::Done;
            } else {
                if straddling.contains(&(seg.from, seg.to)) {
                    seg.state = SegState::Pending;
                }
                seg.from = upto;
            }
        }
        self.parts.insert(0, (upto, snapshot));
        true
    }

    /// Asks idle sources for pending segments; returns the requests to send.
    fn assign(&mut self, now: u64) -> Vec<(NodeId, MigrationMsg<T>)> {
        let mut out = Vec::new();
        let prefix = self.prefix;
        for i in 0..self.segments.len() {
            if self.segments[i].state != SegState::Pending {
                continue;
            }
            let from = self.segments[i].from;
            // The least busy source that has the entries, preferring ones without strikes.
            let pick = self
                .sources
                .iter()
                .filter(|(_, s)| s.compacted <= from && s.busy < PER_SOURCE)
                .min_by_key(|(pid, s)| (s.strikes, s.busy, **pid))
                .map(|(pid, _)| *pid);
            match pick {
                Some(pid) => {
                    let seg = &mut self.segments[i];
                    seg.state = SegState::Asked {
                        source: pid,
                        at: now,
                    };
                    if let Some(s) = self.sources.get_mut(&pid) {
                        s.busy += 1;
                    }
                    out.push((
                        pid,
                        MigrationMsg::Pull {
                            prefix,
                            from: seg.from,
                            to: seg.to,
                        },
                    ));
                }
                None => {
                    // Nobody has these entries any more: ask a compacted source for its snapshot.
                    let snap_src = self
                        .sources
                        .iter()
                        .filter(|(_, s)| s.snapshot && s.compacted > from)
                        .min_by_key(|(pid, s)| (s.strikes, std::cmp::Reverse(s.compacted), **pid))
                        .map(|(pid, _)| *pid);
                    if let (Some(pid), None) = (snap_src, self.snapshot_asked) {
                        self.snapshot_asked = Some((pid, now));
                        out.push((pid, MigrationMsg::PullSnapshot { prefix }));
                    }
                }
            }
        }
        out
    }

    /// Requests that took too long are given back, to be asked from another source.
    fn expire(&mut self, now: u64) {
        for seg in &mut self.segments {
            if let SegState::Asked { source, at } = seg.state {
                if now >= at + self.timeout {
                    seg.state = SegState::Pending;
                    if let Some(s) = self.sources.get_mut(&source) {
                        s.busy = s.busy.saturating_sub(1);
                        s.strikes += 1;
                    }
                }
            }
        }
        if let Some((pid, at)) = self.snapshot_asked {
            if now >= at + self.timeout {
                self.snapshot_asked = None;
                if let Some(s) = self.sources.get_mut(&pid) {
                    s.strikes += 1;
                }
            }
        }
    }

    fn release(&mut self, source: NodeId, from: usize, done: bool) {
        for seg in &mut self.segments {
            let asked_there = matches!(seg.state, SegState::Asked { source: s, .. } if s == source);
            if seg.from == from && asked_there {
                seg.state = if done {
                    SegState::Done
                } else {
                    SegState::Pending
                };
                if let Some(s) = self.sources.get_mut(&source) {
                    s.busy = s.busy.saturating_sub(1);
                    if !done {
                        s.strikes += 1;
                    }
                }
            }
        }
    }
}

impl Offering {
    pub(crate) fn new(
        prefix: PrefixId,
        stopsign: StopSign,
        to: impl IntoIterator<Item = NodeId>,
    ) -> Self {
        Offering {
            prefix,
            stopsign,
            pending: to.into_iter().collect(),
        }
    }
}

impl<T: Entry, B: Storage<T>> SequencePaxos<T, B> {
    /// Whether our log holds `prefix` in full (as entries or snapshot), ready to serve it.
    fn holds(&self, prefix: PrefixId) -> bool {
        if self.migration.is_some() {
            return false;
        }
        // (A server that trimmed all of it still offers it: the offer tells a joiner where the
        // old log ends, which it must know before it may lead.)
        let stopped_here = prefix.config_id == self.config_id
            && self.storage.stopsign_decided()
            && self.storage.log_end() == prefix.end;
        // Every configuration continues the log of the one before it, so a later configuration's
        // decided log starts with the stopped one's (also after a restart, which forgets which
        // configuration we continued).
        let descends =
            prefix.config_id < self.config_id && self.storage.decided_idx() >= prefix.end;
        stopped_here || descends
    }

    /// The stopped configuration's log we hold and offer, if any.
    fn offer_msg(&self, prefix: PrefixId, stopsign: StopSign) -> MigrationMsg<T> {
        MigrationMsg::Offer {
            prefix,
            compacted: self.storage.compacted_idx().min(prefix.end),
            snapshot: self.storage.has_snapshot(),
            stopsign,
        }
    }

    /// Starts offering our stopped log once the stop sign is decided (called after each input).
    pub(super) fn check_stopped(&mut self) {
        if self.is_sealed() {
            // Proposals still waiting to be forwarded will never reach this log.
            self.forwarder.give_back_all();
        }
        let offering_ours = self
            .offering
            .as_ref()
            .is_some_and(|o| o.prefix.config_id == self.config_id);
        if offering_ours || !self.storage.stopsign_decided() {
            return;
        }
        let Some(ss) = self.storage.stopsign().cloned() else {
            return;
        };
        let prefix = PrefixId {
            config_id: self.config_id,
            end: self.storage.log_end(),
        };
        let to: Vec<NodeId> = ss
            .next_config
            .nodes
            .iter()
            .chain(self.nodes.iter())
            .copied()
            .filter(|p| *p != self.pid)
            .collect();
        self.offering = Some(Offering::new(prefix, ss, to));
        self.send_offers();
    }

    fn send_offers(&mut self) {
        let Some(o) = self.offering.clone() else {
            return;
        };
        if !self.holds(o.prefix) {
            return;
        }
        for to in o.pending {
            let m = self.offer_msg(o.prefix, o.stopsign.clone());
            self.send(to, PaxosMsg::Migration(m));
        }
    }

    /// Every resend timeout: repeat offers, give timed-out segments to other sources.
    pub(super) fn migration_tick(&mut self) {
        self.send_offers();
        let now = self.now;
        if let Some(m) = self.migration.as_mut() {
            m.expire(now);
        }
        self.drive_migration();
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        let waiting = m.snapshot_asked.is_some()
            || m.segments
                .iter()
                .any(|s| matches!(s.state, SegState::Asked { .. }));
        m.stalled = if waiting { 0 } else { m.stalled + 1 };
        if m.stalled >= STALLED_LIMIT {
            // Every server we know refused: they compacted the old log without a snapshot.
            // Keep it as a compacted prefix (reads show it trimmed); an offer from a server that
            // has it starts the pull again.
            self.migration = None;
            self.stats.abandoned_migrations += 1;
        }
    }

    fn drive_migration(&mut self) {
        let now = self.now;
        let Some(m) = self.migration.as_mut() else {
            return;
        };
        let requests = m.assign(now);
        for (to, msg) in requests {
            self.send(to, PaxosMsg::Migration(msg));
        }
        if self.migration.as_ref().is_some_and(|m| m.complete()) {
            self.finish_migration();
        }
    }

    fn finish_migration(&mut self) {
        let Some(mut m) = self.migration.take() else {
            return;
        };
        let Some(full) = m.assemble() else {
            return;
        };
        if self.storage.compacted_idx() != m.prefix.end {
            // Compacted past it meanwhile (a trim): the old log is not wanted any more.
            return;
        }
        self.storage.write(
            vec![StorageOp::SetSnapshot(Some(full))],
            "migration_complete",
        );
        self.stats.migrations_completed += 1;
        let prefix = m.prefix;
        // Thank the sources, and offer the log to the others in turn.
        for pid in m.sources.keys().copied().collect::<Vec<_>>() {
            self.send(pid, PaxosMsg::Migration(MigrationMsg::Done { prefix }));
        }
        if self.offering.is_none() {
            self.become_source(prefix, m.stopsign);
        }
        if let Some(idx) = m.deferred_compaction {
            let _ = self.snapshot(Some(idx), true);
        }
    }

    /// Installs a snapshot of the decided log `0..upto` that covers the prefix we pull.
    fn install_migrated_snapshot(&mut self, upto: usize, snapshot: T::Snapshot) {
        let compacted = self.storage.compacted_idx();
        if compacted > upto {
            // Compacted past it meanwhile (a trim): the old log is not wanted any more.
            self.migration = None;
            return;
        }
        let mut ops = vec![StorageOp::SetSnapshot(Some(snapshot))];
        if compacted < upto {
            ops.extend([StorageOp::Trim(upto), StorageOp::SetCompactedIdx(upto)]);
        }
        if self.storage.decided_idx() < upto {
            ops.push(StorageOp::SetDecidedIndex(upto));
        }
        self.storage.write(ops, "migration_snapshot");
        self.origins.hidden_below(upto);
        self.origins.prune(upto);
        self.stats.snapshot_installs += 1;
        if let Some(m) = self.migration.take() {
            self.stats.migrations_completed += 1;
            let prefix = m.prefix;
            for pid in m.sources.keys().copied().collect::<Vec<_>>() {
                self.send(pid, PaxosMsg::Migration(MigrationMsg::Done { prefix }));
            }
            if self.offering.is_none() {
                self.become_source(prefix, m.stopsign);
            }
        }
    }

    /// Starts pulling `prefix` (we are in the configuration that continues it).
    pub(super) fn start_migration(&mut self, prefix: PrefixId, stopsign: StopSign) {
        let decided = self.storage.decided_idx().min(self.storage.log_end());
        let compacted = self.storage.compacted_idx();
        // What we hold of it already (a straggler of the old configuration holds a prefix of it)
        // is folded into the first part, unless it is compacted without a snapshot.
        let own = if decided > 0
            && decided < prefix.end
            && (compacted == 0 || self.storage.has_snapshot())
        {
            Some((decided, self.decided_snapshot(decided)))
        } else {
            None
        };
        self.adopt_prefix(prefix);
        let timeout = self.resend_timeout.max(1) * 4;
        let mut migration = Migration::new(prefix, stopsign, own, timeout);
        // The servers of our configuration that hold the old log may not offer it (they forgot
        // what they continue when they restarted): ask them too, they refuse what they lack.
        for pid in self.peers.iter().copied() {
            migration.add_candidate(pid);
        }
        self.migration = Some(migration);
    }

    /// Takes the old log `prefix` as our compacted prefix (decided, no entries, no snapshot yet).
    pub(super) fn adopt_prefix(&mut self, prefix: PrefixId) {
        if self.storage.awaiting_sync() {
            // We know where our log starts now: no need to wait for a leader to tell us.
            self.storage.write(
                vec![StorageOp::SetAcceptedRound(
                    crate::ballot_leader_election::Ballot::default(),
                )],
                "knows_start",
            );
        }
        let compacted = self.storage.compacted_idx();
        if self.storage.log_end() < prefix.end || compacted < prefix.end {
            let mut ops = vec![
                StorageOp::Trim(prefix.end),
                StorageOp::SetCompactedIdx(prefix.end),
                StorageOp::SetSnapshot(None),
            ];
            if self.storage.decided_idx() < prefix.end {
                ops.push(StorageOp::SetDecidedIndex(prefix.end));
            }
            self.storage.write(ops, "adopt_prefix");
            self.origins.hidden_below(prefix.end);
        }
        self.knows_start = true;
    }

    /// Whether the compacted prefix is a log of an earlier configuration still to be pulled
    /// (after a restart in the middle of a migration).
    fn missing_prefix(&self, prefix: PrefixId) -> bool {
        // Exactly where a joiner's prefix ends: a trim beyond it discarded it for good.
        T::Snapshot::use_snapshots()
            && self.storage.compacted_idx() == prefix.end
            && !self.storage.has_snapshot()
    }

    pub(super) fn handle_migration(&mut self, from: NodeId, m: MigrationMsg<T>) {
        let prefix = m.prefix();
        match m {
            MigrationMsg::Offer {
                compacted,
                snapshot,
                stopsign,
                ..
            } => self.handle_offer(from, prefix, compacted, snapshot, stopsign),
            MigrationMsg::Pull { from: a, to: b, .. } => {
                let reply = self.serve_entries(prefix, a, b);
                self.send(from, PaxosMsg::Migration(reply));
            }
            MigrationMsg::PullSnapshot { .. } => {
                // Our snapshot covers `0..compacted` of the one log all configurations share.
                let compacted = self.storage.compacted_idx();
                let reply = match self.storage.snapshot() {
                    Some(snapshot) if compacted > 0 => MigrationMsg::Snapshot {
                        prefix,
                        upto: self.storage.compacted_idx(),
                        snapshot,
                    },
                    _ => MigrationMsg::Unavailable { prefix, from: None },
                };
                self.send(from, PaxosMsg::Migration(reply));
            }
            MigrationMsg::Entries {
                from: a, entries, ..
            } => {
                let Some(mig) = self.migration.as_mut().filter(|m| m.prefix == prefix) else {
                    return;
                };
                let b = a.saturating_add(entries.len());
                let expected = mig
                    .segments
                    .iter()
                    .any(|s| s.from == a && s.to == b && s.state != SegState::Done);
                if expected && !entries.is_empty() {
                    mig.parts.insert(a, (b, T::Snapshot::create(&entries)));
                    mig.release(from, a, true);
                    self.stats.migrated_entries += entries.len() as u64;
                }
                self.drive_migration();
            }
            MigrationMsg::Snapshot { upto, snapshot, .. } => {
                let Some(mig) = self.migration.as_mut().filter(|m| m.prefix == prefix) else {
                    return;
                };
                if mig.snapshot_asked.is_some_and(|(p, _)| p == from) && upto > 0 {
                    mig.snapshot_asked = None;
                    if upto < mig.prefix.end {
                        if !mig.take_snapshot(upto, snapshot) {
                            // Of no use: not asked again before its next offer.
                            if let Some(s) = mig.sources.get_mut(&from) {
                                s.snapshot = false;
                            }
                        }
                    } else if upto <= self.storage.log_end() {
                        // It covers all we pull and more of the decided log (the source compacted
                        // past the prefix): it replaces our log up to its end.
                        self.install_migrated_snapshot(upto, snapshot);
                        return;
                    } else if let Some(s) = mig.sources.get_mut(&from) {
                        // It goes beyond our log: ask again after its next offer, when our log
                        // has grown (not at once, which would repeat without end).
                        s.snapshot = false;
                    }
                }
                self.drive_migration();
            }
            MigrationMsg::Unavailable { from: a, .. } => {
                let Some(mig) = self.migration.as_mut().filter(|m| m.prefix == prefix) else {
                    return;
                };
                match a {
                    Some(a) => {
                        mig.release(from, a, false);
                        // It cannot serve from `a`: ask it for later segments only, until its
                        // next offer says what it has.
                        if let Some(s) = mig.sources.get_mut(&from) {
                            s.compacted = s.compacted.max(a.saturating_add(1));
                        }
                    }
                    None => {
                        if mig.snapshot_asked.is_some_and(|(p, _)| p == from) {
                            mig.snapshot_asked = None;
                        }
                        if let Some(s) = mig.sources.get_mut(&from) {
                            s.snapshot = false;
                        }
                    }
                }
                self.drive_migration();
            }
            MigrationMsg::Moved {
                end, next_config, ..
            } => {
                let ours = prefix.config_id == self.config_id
                    && next_config.configuration_id > self.config_id
                    && next_config.nodes.contains(&self.pid)
                    && next_config.nodes.contains(&from);
                if ours && !self.is_sealed() {
                    let ss = StopSign::with(next_config, None);
                    self.stop_notice = Some((ss, end));
                }
            }
            MigrationMsg::Done { .. } => {
                if let Some(o) = self.offering.as_mut().filter(|o| o.prefix == prefix) {
                    o.pending.remove(&from);
                }
            }
        }
    }

    fn handle_offer(
        &mut self,
        from: NodeId,
        prefix: PrefixId,
        compacted: usize,
        snapshot: bool,
        stopsign: StopSign,
    ) {
        let done = PaxosMsg::Migration(MigrationMsg::Done { prefix });
        if prefix.config_id == self.config_id {
            // Our own configuration was stopped and we missed the decision. If we accepted that
            // stop sign where it was decided, with everything before it decided, it is decided
            // for us too; otherwise we only know the configuration is over.
            let undecided = !self.storage.stopsign_decided()
                && stopsign.next_config.configuration_id > self.config_id;
            if undecided {
                // Only with everything before it decided: the same stop sign may sit at the same
                // index of a log that was not chosen (it can be proposed again by a new leader).
                let ours_too = self.storage.stopsign() == Some(&stopsign)
                    && self.storage.log_end() == prefix.end
                    && self.storage.decided_idx() >= prefix.end;
                let same_stop = self.storage.stopsign() == Some(&stopsign)
                    && self.storage.log_end() == prefix.end;
                if ours_too {
                    self.storage.set_decided_idx(prefix.end + 1);
                } else if same_stop && self.early_offers < EARLY_OFFERS {
                    // We hold that stop sign, its decision is likely on its way: wait for it a
                    // few offers before dropping our undecided part and pulling the log.
                    self.early_offers += 1;
                    return;
                } else {
                    // Not done: it goes on offering, and serves us once we continue.
                    self.stop_notice = Some((stopsign, Some(prefix.end)));
                    return;
                }
            }
            self.send(from, done);
            return;
        }
        let next = stopsign.next_config.configuration_id;
        let ours = next == self.config_id && stopsign.next_config.nodes.contains(&self.pid);
        // A log that an earlier configuration of ours continued: we need it only if we were
        // still pulling it when that configuration stopped (a compacted prefix exactly there,
        // without its snapshot).
        let ancestor = next < self.config_id && self.missing_prefix(prefix);
        if !ours && !ancestor {
            if next <= self.config_id {
                self.send(from, done);
            }
            return;
        }
        if ours
            && self
                .migration
                .as_ref()
                .is_some_and(|m| m.prefix.end < prefix.end)
        {
            // The log our configuration continues supersedes an older one we were still
            // pulling (it continues that one): we must learn where our log starts.
            self.cancel_migration();
        }
        if self.migration.as_ref().is_some_and(|m| m.prefix == prefix) {
            if let Some(m) = self.migration.as_mut() {
                m.add_source(from, compacted, snapshot);
            }
            self.drive_migration();
            return;
        }
        // A pull ends with a snapshot of the whole log: start one only with a source that can
        // give its beginning (others help once it runs).
        let needs = T::Snapshot::use_snapshots()
            && self.migration.is_none()
            && (compacted == 0 || snapshot)
            && (self.storage.decided_idx() < prefix.end || self.missing_prefix(prefix));
        if !needs {
            if ours && self.migration.is_none() && self.storage.decided_idx() < prefix.end {
                // We cannot pull it (now): still, our log starts where it ends, as a compacted
                // prefix, so that we never lead without it.
                self.adopt_prefix(prefix);
            }
            let holds_it = self.storage.decided_idx() >= prefix.end && !self.missing_prefix(prefix);
            if self.predecessor.is_none() && holds_it {
                self.become_source(prefix, stopsign);
            }
            if holds_it || !T::Snapshot::use_snapshots() {
                self.send(from, done);
            }
            return;
        }
        self.start_migration(prefix, stopsign);
        if let Some(m) = self.migration.as_mut() {
            m.add_source(from, compacted, snapshot);
        }
        self.drive_migration();
    }

    fn serve_entries(&self, prefix: PrefixId, a: usize, b: usize) -> MigrationMsg<T> {
        let end = prefix
            .end
            .min(self.storage.decided_idx())
            .min(self.storage.log_end());
        // Decided entries are the same on every server of every configuration (each continues
        // the log of the one before), so any server serves the decided entries it has, also
        // one of an older configuration or one still pulling an older part itself.
        let ok = a >= self.storage.compacted_idx()
            && a < b
            && b <= end
            && b - a <= self.buffer_size.max(1);
        if ok {
            MigrationMsg::Entries {
                prefix,
                from: a,
                entries: self.storage.entries(a, b),
            }
        } else {
            MigrationMsg::Unavailable {
                prefix,
                from: Some(a),
            }
        }
    }

    pub(crate) fn migration_status(&self) -> Option<MigrationStatus> {
        self.migration.as_ref().map(Migration::status)
    }

    /// The index below which reads are not possible yet (the prefix being migrated).
    pub(crate) fn unreadable_below(&self) -> usize {
        self.migration.as_ref().map_or(0, |m| m.prefix.end)
    }

    /// A complete snapshot covering the whole log we pull was installed: nothing left to pull.
    /// Also: compacted past it without a snapshot (the log below is trimmed), nothing to pull.
    pub(super) fn check_migration_superseded(&mut self) {
        let compacted = self.storage.compacted_idx();
        let Some(end) = self.migration.as_ref().map(|m| m.prefix.end) else {
            return;
        };
        if self.storage.has_snapshot() && compacted >= end {
            if let Some(m) = self.migration.take() {
                self.become_source(m.prefix, m.stopsign);
            }
        } else if compacted > end {
            self.migration = None;
        }
    }

    /// Where the log of the configuration ours continues ends, if we know it.
    pub(super) fn predecessor_end(&self) -> Option<usize> {
        self.predecessor.as_ref().map(|p| p.prefix.end)
    }

    /// The log of the configuration ours continues, if we know it.
    pub(super) fn predecessor_prefix(&self) -> Option<PrefixId> {
        self.predecessor.as_ref().map(|p| p.prefix)
    }

    /// Offers our log to these servers too (the old configuration's, which may have missed the
    /// decision of its stop sign).
    pub(crate) fn offer_also_to(&mut self, pids: &[NodeId]) {
        let me = self.pid;
        if let Some(o) = self.offering.as_mut() {
            o.pending.extend(pids.iter().copied().filter(|p| *p != me));
        }
    }

    /// We hold the log `prefix` that ours continues: offer it to our peers.
    fn become_source(&mut self, prefix: PrefixId, stopsign: StopSign) {
        self.offering = Some(Offering::new(prefix, stopsign, self.peers.clone()));
        self.predecessor = Some(Predecessor { prefix });
    }

    /// A trim discards the prefix we pull anyway: stop pulling it.
    pub(super) fn cancel_migration(&mut self) {
        self.migration = None;
    }

    /// Defers a compaction while migrating (the snapshot of the prefix is not here yet).
    pub(super) fn defer_compaction(&mut self, idx: usize) -> bool {
        match self.migration.as_mut() {
            Some(m) => {
                m.deferred_compaction = Some(m.deferred_compaction.map_or(idx, |d| d.max(idx)));
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClusterConfig;

    #[derive(Clone, Debug)]
    struct E;

    /// The number of entries folded in.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
    struct Count(usize);

    impl Entry for E {
        type Snapshot = Count;
    }

    impl Snapshot<E> for Count {
        fn create(entries: &[E]) -> Self {
            Count(entries.len())
        }
        fn merge(&mut self, delta: Self) {
            self.0 += delta.0;
        }
        fn use_snapshots() -> bool {
            true
        }
    }

    fn migration(end: usize) -> Migration<E> {
        let prefix = PrefixId { config_id: 1, end };
        let ss = StopSign::with(
            ClusterConfig {
                configuration_id: 2,
                nodes: vec![1, 2, 3],
                flexible_quorum: None,
            },
            None,
        );
        Migration::new(prefix, ss, None, 40)
    }

    fn pulls(requests: &[(NodeId, MigrationMsg<E>)]) -> Vec<(NodeId, usize, usize)> {
        requests
            .iter()
            .filter_map(|(to, m)| match m {
                MigrationMsg::Pull { from, to: b, .. } => Some((*to, *from, *b)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn segments_are_spread_over_sources_a_few_at_a_time() {
        let mut m = migration(160);
        m.add_source(1, 0, false);
        m.add_source(2, 0, false);
        let asked = pulls(&m.assign(0));
        assert_eq!(asked.len(), 2 * PER_SOURCE);
        assert_eq!(asked.iter().filter(|(p, _, _)| *p == 1).count(), PER_SOURCE);
        assert_eq!(asked[0], (1, 0, 10));
        // Nothing more while all are busy.
        assert!(m.assign(0).is_empty());
    }

    #[test]
    fn a_snapshot_that_covers_requests_in_flight_frees_their_sources() {
        let mut m = migration(160);
        m.add_source(1, 0, false);
        m.add_source(2, 100, true);
        let asked = pulls(&m.assign(0));
        // Source 1 asked for the first two segments, source 2 for the two after 100.
        assert_eq!(
            asked,
            vec![(1, 0, 10), (1, 10, 20), (2, 100, 110), (2, 110, 120)]
        );
        // Source 2's snapshot of 0..105 arrives: it covers 0..100 and cuts 100..110.
        assert!(m.take_snapshot(105, Count(105)));
        let again = pulls(&m.assign(1));
        // Source 1 is free again, and source 2 has one request left (110..120): the cut segment
        // is asked anew from 105, and the rest goes on. (Had the requests the snapshot made
        // useless kept their sources busy, nothing would ever be asked again.)
        assert_eq!(again, vec![(1, 105, 110), (1, 120, 130), (2, 130, 140)]);
    }
}
