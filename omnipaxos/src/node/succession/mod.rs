//! The succession room: how one configuration's log reaches the servers of the next one.
//!
//! When configuration `c1` decides its stop sign at index `k`, its log `0..k` becomes the first
//! part of the log of the next configuration `c2`: indices go on from `k`. Decided entries are
//! the same on every server of every configuration, which is what lets any server serve them.
//! What a node knows about this is in its durable record (see `record`): where its
//! configuration's log starts, what of the log before is still *pending*, and the stops before.
//!
//! * **A server in both configurations** turns its stopped node into the next one on the same
//!   storage (`start_next_config`): it keeps its entries, decided, and records the stop.
//! * **A server that joins** starts on empty storage and does not know where its log starts
//!   ([`Start::Unknown`]): it never leads meanwhile (a leader that does not know could decide
//!   new entries over the old log), and asks its peers (`Ask`). A peer that knows answers with
//!   an `Offer` (the stops it knows and what it holds), and so does the new leader's sync.
//!   With snapshots, the joiner takes `0..k` as its *pending* prefix at once, takes part in
//!   deciding new entries, and **pulls** the old log in segments **from several servers in
//!   parallel**, folded into a snapshot; until that is done, reads of the prefix return `None`
//!   and compacting over it is refused. Without snapshots, the new leader's sync brings the
//!   whole log as entries.
//! * **A server that missed the stop** of its configuration (a *straggler*) learns it from a
//!   server that holds the stop: every server that holds a stop answers messages of that
//!   stopped configuration's servers with an `Offer`. The straggler stops taking part, pulls the
//!   entries it lacks **as entries** (a snapshot only stands in for what the application itself
//!   compacted), and then decides the stop sign in its own log: the application sees every
//!   entry, then `is_reconfigured`.
//! * **Trust.** Where our own configuration's log starts, and that it stopped, is learned only
//!   from servers of our configuration; entries and snapshots only from servers of a
//!   configuration we know (ours, the ones before it, the next one).

pub(crate) mod pull;

use super::{
    core::{Core, Note},
    record::{Start, Stop},
    role::sync,
    wire::succession::{Offer, SuccessionMsg},
};
use crate::{
    ballot_leader_election::Ballot,
    storage::{Entry, Snapshot, StopSign, Storage, StorageOp},
    util::{ConfigurationId, NodeId},
};
use pull::{Pull, Request};

/// What the user can see of a pull of the old log.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MigrationStatus {
    /// The end of the old log being pulled (its stop sign's index).
    pub prefix_end: usize,
    /// Entries of it received so far.
    pub received: usize,
    /// Servers it is pulled from.
    pub sources: usize,
}

/// A pull in progress.
enum Pulling<T: Entry> {
    /// Our pending prefix `0..end`, folded into a snapshot. `base`: a snapshot of `0..upto`
    /// received, which the parts after it are merged into.
    Prefix {
        pull: Pull<T::Snapshot>,
        base: Option<(usize, T::Snapshot)>,
        /// A source said the application trimmed the old log below this.
        trimmed_below: usize,
    },
    /// The entries of our stopped configuration we lack, as entries, then its stop sign.
    /// `trimmed_below`: a source said the application trimmed the log below this.
    Tail {
        pull: Pull<Vec<T>>,
        stop: Stop,
        trimmed_below: usize,
    },
    /// The log before ours, as entries, for entry types without snapshots: our log cannot
    /// start later than 0 without one.
    Catchup { pull: Pull<Vec<T>> },
}

pub(crate) struct Succession<T: Entry> {
    /// Our configuration's stop, told by a server of ours that holds it, and not decided in our
    /// log yet.
    learned: Option<Stop>,
    pulling: Option<Pulling<T>>,
    /// When we last offered to each server.
    offered: Vec<(NodeId, u64)>,
    /// Servers of the next configuration we offer our stopped log to until they say `Done`
    /// (once our stop sign is decided here).
    offering: Option<Vec<NodeId>>,
    /// A pull was set up that `settle` must start.
    kick: bool,
}

impl<T: Entry> Succession<T> {
    pub(crate) fn new<B: Storage<T>>(core: &mut Core<T, B>) -> Self {
        let mut s = Succession {
            learned: None,
            pulling: None,
            offered: Vec::new(),
            offering: None,
            kick: false,
        };
        // After a restart in the middle of a pull, the record says what is still pending.
        s.start_prefix_pull(core);
        s
    }

    /// Whether our configuration is over: its stop sign is decided here, or a server of ours
    /// that holds it told us.
    pub(crate) fn is_over<B: Storage<T>>(&self, core: &Core<T, B>) -> bool {
        self.learned.is_some() || core.log.stopsign_decided()
    }

    /// Whether this node may lead: it knows where its log starts and holds its log up to there
    /// (as entries, a snapshot, or a pending prefix being pulled).
    pub(crate) fn can_lead<B: Storage<T>>(&self, core: &Core<T, B>) -> bool {
        match core.log.record().start.index() {
            Some(s) => !self.is_over(core) && core.log.log_end() >= s,
            None => false,
        }
    }

    /// How far the pull of our pending prefix got, while there is one (it may wait while we
    /// pull the end of our stopped configuration first).
    pub(crate) fn status<B: Storage<T>>(&self, core: &Core<T, B>) -> Option<MigrationStatus> {
        // What the application sees: reads of the prefix are refused exactly while the written
        // record says it is pending.
        let pending = core.log.durable_record().pending_below;
        if pending == 0 {
            return None;
        }
        let (received, sources) = match &self.pulling {
            Some(Pulling::Prefix { pull, base, .. }) => (
                pull.received() + base.as_ref().map_or(0, |(u, _)| *u),
                pull.sources(),
            ),
            _ => (0, 0),
        };
        Some(MigrationStatus {
            prefix_end: pending,
            received,
            sources,
        })
    }

    /// The servers a pull may ask: ours, and those of the configurations we know.
    fn candidates<B: Storage<T>>(core: &Core<T, B>, learned: Option<&Stop>) -> Vec<NodeId> {
        let mut c: Vec<NodeId> = core.peers.clone();
        let stops = core.log.record().chain.iter().chain(learned);
        for s in stops {
            c.extend(s.config.nodes.iter().chain(&s.ss.next_config.nodes));
        }
        c.sort_unstable();
        c.dedup();
        c.retain(|p| *p != core.pid);
        c
    }

    /// Whether `pid` is a server of a configuration we know.
    pub(crate) fn knows<B: Storage<T>>(&self, core: &Core<T, B>, pid: NodeId) -> bool {
        core.config.nodes.contains(&pid)
            || core.log.record().chain.iter().any(|s| s.knows(pid))
            || self.learned.as_ref().is_some_and(|s| s.knows(pid))
            || core
                .log
                .stopsign()
                .is_some_and(|ss| ss.next_config.nodes.contains(&pid))
    }

    /// Starts pulling our pending prefix, if there is one (entry types with snapshots).
    fn start_prefix_pull<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let p = core.log.record().pending_below;
        if p == 0 || self.pulling.is_some() || !T::Snapshot::use_snapshots() {
            return;
        }
        let mut pull = Pull::new(0, p, Self::timeout(core));
        for pid in Self::candidates(core, None) {
            pull.add_candidate(pid);
        }
        self.pulling = Some(Pulling::Prefix {
            pull,
            base: None,
            trimmed_below: 0,
        });
        self.drive(core);
    }

    fn timeout<B: Storage<T>>(core: &Core<T, B>) -> u64 {
        core.timing.resend_timeout.max(1).saturating_mul(4)
    }

    /// After every input: a pending prefix (a sync may have just told us of it) is being
    /// pulled.
    pub(crate) fn settle<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if std::mem::take(&mut self.kick) {
            self.drive(core);
        }
        if let Some(Pulling::Catchup { pull }) = &self.pulling {
            if core.log.log_end() >= pull.end {
                // A leader's sync brought it.
                self.pulling = None;
            }
        }
        let pending = core.log.record().pending_below;
        if pending > 0 && core.log.has_snapshot() && core.log.compacted_idx() >= pending {
            // A snapshot sync brought the prefix we pulled (and more).
            core.log.set_record(|r| r.pending_below = 0);
            if let Some(Pulling::Prefix { .. }) = self.pulling {
                self.pulling = None;
            }
            core.stats.migrations_completed += 1;
        }
        if self.pulling.is_none() && self.learned.is_none() {
            self.start_prefix_pull(core);
            self.start_catchup(core);
        }
        if self.offering.is_none() && core.log.stopsign_decided() {
            if let Some(ss) = core.log.stopsign() {
                let me = core.pid;
                let to = ss.next_config.nodes.iter().copied().filter(|p| *p != me);
                self.offering = Some(to.collect());
            }
        }
    }

    /// Without snapshots, a server whose log does not reach where it starts pulls the entries
    /// before as entries.
    fn start_catchup<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        let Some(s) = core.log.record().start.index() else {
            return;
        };
        let end = core.log.log_end();
        // (With snapshots only when the old log was trimmed, see `learn_start`: otherwise the
        // prefix is pending.)
        if end >= s || self.pulling.is_some() || core.log.record().pending_below > 0 {
            return;
        }
        let from = core.decided_entries().max(core.log.compacted_idx());
        let mut pull = Pull::new(from, s, Self::timeout(core));
        for pid in Self::candidates(core, None) {
            pull.add_candidate(pid);
        }
        self.pulling = Some(Pulling::Catchup { pull });
        self.drive(core);
    }

    /// Our stop, as a server that holds it offers it.
    fn own_stop<B: Storage<T>>(&self, core: &Core<T, B>) -> Option<Stop> {
        if core.log.stopsign_decided() {
            let ss = core.log.stopsign().cloned()?;
            Some(Stop {
                config: core.config.clone(),
                end: core.log.log_end(),
                ss,
            })
        } else {
            self.learned.clone()
        }
    }

    fn offer<B: Storage<T>>(&self, core: &Core<T, B>, about: ConfigurationId) -> Offer {
        let mut chain = core.log.record().chain.clone();
        chain.extend(self.own_stop(core));
        let pending = core.log.record().pending_below;
        let compacted = core.log.compacted_idx();
        let snapshot = core.log.has_snapshot() && pending == 0;
        Offer {
            about,
            chain,
            held_from: compacted.max(pending),
            held_to: core.decided_entries(),
            snapshot,
            trimmed: compacted > 0 && !snapshot && pending == 0,
        }
    }

    /// Offers what we hold to `to`, at most once per resend timeout.
    fn offer_to<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        to: NodeId,
        about: ConfigurationId,
    ) {
        let now = core.now;
        let wait = core.timing.resend_timeout;
        match self.offered.iter_mut().find(|(p, _)| *p == to) {
            Some((_, at)) if now < at.saturating_add(wait) => return,
            Some((_, at)) => *at = now,
            None => self.offered.push((to, now)),
        }
        let o = self.offer(core, about);
        core.send(to, SuccessionMsg::Offer(o));
    }

    /// A server of configuration `c`, which stopped before ours, contacted us: tell it.
    pub(crate) fn contact_from_old<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        c: ConfigurationId,
    ) {
        let stop = core.log.record().stop_of(c);
        if stop.is_some_and(|s| s.config.nodes.contains(&from)) {
            self.offer_to(core, from, c);
        }
    }

    /// A server of our configuration contacted us while it is over here: tell it.
    pub(crate) fn contact_from_own<B: Storage<T>>(&mut self, core: &mut Core<T, B>, from: NodeId) {
        if self.is_over(core) && core.is_peer(from) {
            let c = core.config_id();
            self.offer_to(core, from, c);
        }
    }

    /// Every resend timeout: ask where our log starts if we do not know; drive the pull.
    pub(crate) fn resend<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if core.log.record().start == Start::Unknown {
            let c = core.config_id();
            core.broadcast(SuccessionMsg::<T>::Ask { config_id: c });
        }
        if let Some(to) = self.offering.clone() {
            let next = core
                .log
                .stopsign()
                .map(|ss| ss.next_config.configuration_id);
            if let Some(next) = next {
                for pid in to {
                    self.offer_to(core, pid, next);
                }
            }
        }
        let now = core.now;
        if let Some(Pulling::Prefix {
            pull,
            trimmed_below,
            ..
        }) = &self.pulling
        {
            if *trimmed_below > pull.first_missing() && pull.give_ups() >= 3 {
                // The application trimmed the old log (a trim discards snapshots too) and
                // nobody, asked again and again, holds what it removed: no snapshot of the
                // prefix can be made. It stays compacted, as on the servers that trimmed it.
                self.pulling = None;
                core.log.set_record(|r| r.pending_below = 0);
            }
        }
        match &mut self.pulling {
            Some(Pulling::Prefix { pull, .. }) => pull.expire(now),
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => pull.expire(now),
            None => {}
        }
        self.drive(core);
    }

    /// Handles a succession message from `from` (a server of a configuration we know).
    pub(crate) fn handle<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        m: SuccessionMsg<T>,
    ) {
        match m {
            SuccessionMsg::Ask { config_id } => {
                if config_id == core.config_id() && core.is_peer(from) {
                    if core.log.record().start.index().is_some() {
                        self.offer_to(core, from, config_id);
                    }
                } else if config_id < core.config_id() {
                    self.contact_from_old(core, from, config_id);
                }
            }
            SuccessionMsg::Offer(o) => self.handle_offer(core, from, o),
            // Decided entries are the same for everyone: any server may pull them (a server of a
            // later configuration this node never heard of included). What is *taken* from a
            // pull is checked on the other side.
            SuccessionMsg::Pull { from: a, to: b } => {
                let held_from = core
                    .log
                    .compacted_idx()
                    .max(core.log.record().pending_below);
                let ok = a >= held_from
                    && a < b
                    && b <= core.decided_entries()
                    && b - a <= core.timing.buffer_size.max(1);
                let reply = if ok {
                    SuccessionMsg::Entries {
                        from: a,
                        entries: core.log.entries(a, b),
                    }
                } else {
                    SuccessionMsg::Unavailable {
                        from: Some(a),
                        held_from,
                        held_to: core.decided_entries(),
                    }
                };
                core.send(from, reply);
            }
            SuccessionMsg::PullSnapshot => {
                let upto = core.log.compacted_idx();
                let ok = core.log.has_snapshot() && core.log.record().pending_below == 0;
                let held_from = upto.max(core.log.record().pending_below);
                let reply = match core.log.snapshot().filter(|_| ok && upto > 0) {
                    Some(snapshot) => SuccessionMsg::Snapshot { upto, snapshot },
                    None => SuccessionMsg::Unavailable {
                        from: None,
                        held_from,
                        held_to: core.decided_entries(),
                    },
                };
                core.send(from, reply);
            }
            SuccessionMsg::Entries { from: a, entries } => {
                self.handle_entries(core, from, a, entries)
            }
            SuccessionMsg::Snapshot { upto, snapshot } => {
                self.handle_snapshot(core, from, upto, snapshot)
            }
            SuccessionMsg::Unavailable {
                from: a,
                held_from: hf,
                held_to: ht,
            } => {
                match (&mut self.pulling, a) {
                    (Some(Pulling::Prefix { pull, .. }), Some(a)) => pull.refused(from, a, hf, ht),
                    (Some(Pulling::Tail { pull, .. }), Some(a))
                    | (Some(Pulling::Catchup { pull }), Some(a)) => pull.refused(from, a, hf, ht),
                    (Some(Pulling::Prefix { pull, .. }), None) => pull.no_snapshot(from),
                    (Some(Pulling::Tail { pull, .. }), None)
                    | (Some(Pulling::Catchup { pull }), None) => pull.no_snapshot(from),
                    (None, _) => {}
                }
                self.drive(core);
            }
            SuccessionMsg::Done => {
                if let Some(o) = self.offering.as_mut() {
                    o.retain(|p| *p != from);
                }
            }
        }
    }

    fn handle_offer<B: Storage<T>>(&mut self, core: &mut Core<T, B>, from: NodeId, o: Offer) {
        let ours = core.config_id();
        let from_ours = core.is_peer(from);
        // Stops must come oldest first, each ending no earlier than the one before, and none
        // beyond what the sender holds as decided.
        let consistent = o
            .chain
            .windows(2)
            .all(|w| w[0].config_id() < w[1].config_id() && w[0].end <= w[1].end)
            && o.chain.iter().all(|s| s.end <= o.held_to)
            && o.held_from <= o.held_to;
        if !consistent {
            report!(DEBUG, messages::malformed; core = core, from, kind = "Offer",
                "an offer whose stops are out of order or beyond what it holds is dropped");
            return;
        }
        if core.log.record().start == Start::Unknown {
            // Where our log starts: from a server of ours, or of the configuration before ours
            // (when every server was replaced, only those know), whose stop names exactly our
            // configuration as the next one.
            let pred = o.chain.iter().rev().find(|s| {
                s.next_id() == ours
                    && s.ss.next_config == core.config
                    && (from_ours || s.config.nodes.contains(&from))
            });
            if let Some(pred) = pred {
                let trimmed = if o.trimmed { o.held_from } else { 0 };
                self.learn_start(core, pred.clone(), &o.chain, trimmed);
            }
        }
        if from_ours && self.learned.is_none() && !core.log.stopsign_decided() {
            if let Some(stop) = o.chain.iter().find(|s| s.config_id() == ours) {
                self.learn_stop(core, stop.clone());
            }
        }
        if o.about == ours && core.log.record().start.index().is_some() && !from_ours {
            core.send(from, SuccessionMsg::Done);
        }
        // What it holds, for our pull.
        if self.knows(core, from) {
            let trimmed_below = o.held_from.min(o.held_to);
            match &mut self.pulling {
                Some(Pulling::Prefix {
                    pull,
                    trimmed_below: t,
                    ..
                }) => {
                    pull.add_source(from, o.held_from, o.held_to, o.snapshot);
                    if o.trimmed {
                        *t = (*t).max(trimmed_below);
                    }
                }
                Some(Pulling::Catchup { pull }) => {
                    pull.add_source(from, o.held_from, o.held_to, o.snapshot);
                    let held = core.decided_entries().max(core.log.compacted_idx());
                    if o.trimmed
                        && trimmed_below > pull.from
                        && trimmed_below > held
                        && trimmed_below <= pull.end
                    {
                        // Trimmed by the application: we take it as trimmed too.
                        core.log.stage_all([
                            StorageOp::Trim(trimmed_below),
                            StorageOp::SetCompactedIdx(trimmed_below),
                            StorageOp::SetDecidedIndex(trimmed_below),
                        ]);
                        pull.covered_up_to(trimmed_below);
                    }
                }
                Some(Pulling::Tail {
                    pull,
                    trimmed_below: t,
                    ..
                }) => {
                    pull.add_source(from, o.held_from, o.held_to, o.snapshot);
                    if o.trimmed {
                        *t = (*t).max(trimmed_below);
                    }
                }
                None => {}
            }
            if !self.kick {
                self.drive(core);
            }
        }
    }

    /// A server of ours says our configuration stopped at `stop.end`: we stop taking part,
    /// and pull what we lack of it as entries, then decide its stop sign.
    fn learn_stop<B: Storage<T>>(&mut self, core: &mut Core<T, B>, stop: Stop) {
        let decided = core.decided_entries();
        let valid = stop.end >= decided
            && stop.ss.next_config.validate().is_ok()
            && stop.next_id() > core.config_id()
            && stop.config.configuration_id == core.config_id();
        if !valid {
            report!(DEBUG, messages::malformed; core = core, end = stop.end, decided = decided,
                "a stop of our configuration that cannot be (invalid, or before what we decided) \
                 is ignored");
            return;
        }
        let mut pull = Pull::new(decided, stop.end, Self::timeout(core));
        for pid in Self::candidates(core, Some(&stop)) {
            pull.add_candidate(pid);
        }
        self.learned = Some(stop.clone());
        // (A prefix pull, if any, waits: the stop gates everything else here.)
        if let Some(Pulling::Prefix { .. }) = self.pulling {
            self.pulling = None;
        }
        self.pulling = Some(Pulling::Tail {
            pull,
            stop,
            trimmed_below: 0,
        });
        // Driven at the next settle, once the node stopped its role: what the tail replaces
        // must not be replaced before the role has read out its own appends.
        self.kick = true;
    }

    /// A server of ours told us where our log starts: the stop before our configuration.
    /// `trimmed`: the application trimmed the old log below this index (an offer said so):
    /// no snapshot of it can be made any more, so the rest is pulled as entries.
    fn learn_start<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pred: Stop,
        chain: &[Stop],
        trimmed: usize,
    ) {
        let s = pred.end;
        let decided = core.decided_entries();
        // A log that already goes past `s` came from our leader's sync (from the start of the
        // old log): it holds the old log; only where ours starts is new to us.
        let holds = core.log.log_end() >= s;
        let pending = T::Snapshot::use_snapshots() && !holds && trimmed == 0;
        if !holds && trimmed > decided.max(core.log.compacted_idx()) && trimmed <= s {
            core.log.stage_all([
                StorageOp::SetSnapshot(None),
                StorageOp::Trim(trimmed),
                StorageOp::SetCompactedIdx(trimmed),
                StorageOp::SetDecidedIndex(trimmed),
            ]);
        }
        core.log.set_record(|r| {
            r.start = Start::At(s);
            if pending {
                r.pending_below = s;
            }
            for stop in chain.iter().filter(|st| st.config_id() <= pred.config_id()) {
                r.push_stop(stop.clone());
            }
        });
        if pending {
            core.log.stage_all([
                StorageOp::SetSnapshot(None),
                StorageOp::Trim(s),
                StorageOp::SetCompactedIdx(s),
                StorageOp::SetDecidedIndex(s),
            ]);
            self.start_prefix_pull(core);
        }
    }

    fn handle_entries<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        a: usize,
        entries: Vec<T>,
    ) {
        let n = entries.len();
        if n == 0 {
            return;
        }
        let taken = match &mut self.pulling {
            Some(Pulling::Prefix { pull, .. }) => {
                let part = T::Snapshot::create(&entries);
                pull.receive(from, a, n, part)
            }
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => {
                pull.receive(from, a, n, entries)
            }
            None => false,
        };
        if taken {
            core.stats.migrated_entries += n as u64;
        }
        self.drive(core);
    }

    fn handle_snapshot<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        upto: usize,
        snapshot: T::Snapshot,
    ) {
        if !T::Snapshot::use_snapshots() || upto == 0 {
            return;
        }
        match &mut self.pulling {
            Some(Pulling::Prefix { pull, base, .. }) if pull.snapshot_asked_from(from) => {
                if upto <= pull.from || base.as_ref().is_some_and(|(u, _)| *u >= upto) {
                    pull.no_snapshot(from);
                } else if upto < pull.end {
                    // It covers the start of what we pull: the parts after it merge into it.
                    pull.covered_up_to(upto);
                    *base = Some((upto, snapshot));
                } else if upto >= core.log.compacted_idx() && upto <= core.decided_entries() {
                    // It covers all we pull and more of what we decided (the source compacted
                    // past it): it replaces our log up to its end (decided entries only: our
                    // undecided ones stay as the round we accept in put them).
                    let mut ops = vec![StorageOp::SetSnapshot(Some(snapshot))];
                    if core.log.compacted_idx() < upto {
                        ops.extend([StorageOp::Trim(upto), StorageOp::SetCompactedIdx(upto)]);
                    }
                    if core.log.decided_idx() < upto {
                        ops.push(StorageOp::SetDecidedIndex(upto));
                    }
                    // (Decided entries only: nothing any room placed is replaced.)
                    core.log.stage_all(ops);
                    core.log.set_record(|r| r.pending_below = 0);
                    core.stats.snapshot_installs += 1;
                    core.stats.migrations_completed += 1;
                    self.pulling = None;
                    return;
                } else {
                    // Beyond what we decided: asked again once we decided more.
                    pull.no_snapshot(from);
                }
            }
            Some(Pulling::Tail { pull, stop, .. })
                if pull.snapshot_asked_from(from) && upto > pull.end =>
            {
                // The application compacted past the end of our configuration: the entries we
                // lack exist only inside snapshots that reach into the next configuration. We
                // decide the stop with our log up to it pending: the next configuration's
                // sync brings a snapshot that covers it.
                let stop = stop.clone();
                self.pulling = None;
                self.seal_pending(core, stop);
                return;
            }
            Some(Pulling::Tail { pull, .. }) if pull.snapshot_asked_from(from) => {
                // The application compacted the entries we lack into a snapshot: it stands in
                // for them.
                if upto > core.decided_entries() && upto <= pull.end {
                    let from_idx = core.decided_entries();
                    if let Ok(Some(ops)) = sync::snapshot_ops(
                        core,
                        crate::storage::SnapshotType::Complete(snapshot),
                        0,
                        upto,
                    ) {
                        core.log.stage_all(ops);
                        core.stats.snapshot_installs += 1;
                        core.notes.push(Note::Replaced {
                            round: Ballot::default(),
                            prev_round: core.log.accepted_round(),
                            from: from_idx,
                        });
                    }
                    if let Some(Pulling::Tail { pull, .. }) = &mut self.pulling {
                        pull.covered_up_to(upto);
                    }
                } else {
                    pull.no_snapshot(from);
                }
            }
            _ => {}
        }
        self.drive(core);
    }

    /// Sends the requests the pull wants, and completes it when it has everything.
    fn drive<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        if let Some(Pulling::Tail {
            pull,
            trimmed_below,
            ..
        }) = &mut self.pulling
        {
            // What we hold meanwhile (decided, or a pending prefix) is not pulled.
            let held = core.decided_entries().max(core.log.compacted_idx());
            if held > pull.from {
                pull.covered_up_to(held.min(pull.end));
            }
            let t = *trimmed_below;
            if t > pull.from && t <= pull.end && t > core.decided_entries() {
                // The application trimmed the entries we lack: we take them as trimmed too.
                let from_idx = core.decided_entries();
                core.log.stage_all([
                    StorageOp::SetSnapshot(None),
                    StorageOp::Trim(t),
                    StorageOp::SetCompactedIdx(t),
                    StorageOp::SetDecidedIndex(t),
                ]);
                core.notes.push(Note::Replaced {
                    round: Ballot::default(),
                    prev_round: core.log.accepted_round(),
                    from: from_idx,
                });
                pull.covered_up_to(t);
            }
        }
        let now = core.now;
        let requests = match &mut self.pulling {
            Some(Pulling::Prefix { pull, .. }) => pull.assign(now),
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => pull.assign(now),
            None => return,
        };
        for (to, r) in requests {
            let m = match r {
                Request::Entries { from, to } => SuccessionMsg::Pull { from, to },
                Request::Snapshot => SuccessionMsg::PullSnapshot,
            };
            core.send(to, m);
        }
        let complete = match &self.pulling {
            Some(Pulling::Prefix { pull, .. }) => pull.complete(),
            Some(Pulling::Tail { pull, .. }) | Some(Pulling::Catchup { pull }) => pull.complete(),
            None => false,
        };
        if complete {
            match self.pulling.take() {
                Some(Pulling::Prefix { pull, base, .. }) => self.finish_prefix(core, pull, base),
                Some(Pulling::Tail { pull, stop, .. }) => self.finish_tail(core, pull, stop),
                Some(Pulling::Catchup { pull }) => self.finish_catchup(core, pull),
                None => {}
            }
        }
    }

    fn finish_prefix<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pull: Pull<T::Snapshot>,
        base: Option<(usize, T::Snapshot)>,
    ) {
        let end = pull.end;
        let mut full = base.map(|(_, s)| s);
        for (_, _, part) in pull.into_parts() {
            match full.as_mut() {
                Some(f) => f.merge(part),
                None => full = Some(part),
            }
        }
        let pending = core.log.record().pending_below;
        if pending != end || core.log.compacted_idx() != end {
            // Something else brought the prefix meanwhile (a snapshot sync).
            core.log.set_record(|r| r.pending_below = 0);
            return;
        }
        let full = full.unwrap_or_else(|| T::Snapshot::create(&[]));
        core.log.stage(StorageOp::SetSnapshot(Some(full)));
        core.log.set_record(|r| r.pending_below = 0);
        core.stats.migrations_completed += 1;
    }

    fn finish_tail<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        pull: Pull<Vec<T>>,
        stop: Stop,
    ) {
        let from = pull.from;
        if core.decided_entries() > from || core.log.compacted_idx() > from {
            // Our log moved meanwhile; pull again from where it is.
            self.learned = None;
            self.learn_stop(core, stop);
            return;
        }
        let mut entries = Vec::with_capacity(stop.end - from);
        for (_, _, part) in pull.into_parts() {
            entries.extend(part);
        }
        core.log.stage_all([
            StorageOp::AppendOnPrefix(from, entries),
            StorageOp::SetStopsign(Some(stop.ss.clone())),
            StorageOp::SetDecidedIndex(stop.end + 1),
        ]);
        core.notes.push(Note::Replaced {
            round: Ballot::default(),
            prev_round: core.log.accepted_round(),
            from,
        });
        self.learned = None;
    }

    fn finish_catchup<B: Storage<T>>(&mut self, core: &mut Core<T, B>, pull: Pull<Vec<T>>) {
        let (from, end) = (pull.from, pull.end);
        if core.log.log_end() >= end || core.decided_entries().max(core.log.compacted_idx()) != from
        {
            // A leader's sync brought it meanwhile.
            return;
        }
        let mut entries = Vec::with_capacity(end - from);
        for (_, _, part) in pull.into_parts() {
            entries.extend(part);
        }
        core.log.stage_all([
            StorageOp::AppendOnPrefix(from, entries),
            StorageOp::SetDecidedIndex(end),
        ]);
        core.stats.migrations_completed += 1;
    }

    /// Decides the stop sign of our configuration with the log before it pending (see
    /// `handle_snapshot`).
    fn seal_pending<B: Storage<T>>(&mut self, core: &mut Core<T, B>, stop: Stop) {
        let from = core.decided_entries();
        core.log.stage_all([
            StorageOp::SetSnapshot(None),
            StorageOp::Trim(stop.end),
            StorageOp::SetCompactedIdx(stop.end),
            // (Undecided entries of ours beyond the end go.)
            StorageOp::AppendOnPrefix(stop.end, Vec::new()),
            StorageOp::SetStopsign(Some(stop.ss.clone())),
            StorageOp::SetDecidedIndex(stop.end + 1),
        ]);
        core.log.set_record(|r| r.pending_below = stop.end);
        core.notes.push(Note::Replaced {
            round: Ballot::default(),
            prev_round: core.log.accepted_round(),
            from,
        });
        self.learned = None;
    }

    /// The stop sign we know our configuration ended with, decided here or told.
    pub(crate) fn known_stop(&self) -> Option<&StopSign> {
        self.learned.as_ref().map(|s| &s.ss)
    }
}
