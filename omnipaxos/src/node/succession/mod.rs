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
//!
//! Files: this one holds the room's state and its entry points (`settle`, `resend`, `handle`);
//! `offer` what is offered and learned from offers; `pull` the pure scheduler of a pull
//! (which segment from which source); `transfer` what a pull receives and how it completes.

mod offer;
pub(crate) mod pull;
mod transfer;

use super::{
    core::Core,
    record::{Start, Stop},
    wire::succession::SuccessionMsg,
};
use crate::{
    storage::{Entry, Snapshot, StopSign, Storage},
    util::NodeId,
};
use pull::Pull;

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
    #[inline]
    pub(crate) fn settle<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
        // The steady state, at every input: nothing to drive, pull or offer, nothing pending,
        // and a log that reaches where the configuration starts (so no catch-up to start).
        let log = &core.log;
        let quiet = !self.kick
            && self.pulling.is_none()
            && self.learned.is_none()
            && log.record().pending_below == 0
            && !log.stopsign_decided()
            && log
                .record()
                .start
                .index()
                .is_some_and(|s| log.log_end() >= s);
        if !quiet {
            self.settle_now(core);
        }
    }

    fn settle_now<B: Storage<T>>(&mut self, core: &mut Core<T, B>) {
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
                // prefix can be made. It stays compacted, as on the servers that trimmed it:
                // all of it, the part others still hold included (our storage starts at its
                // end, and a snapshot of that part would pass for the whole log).
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

    /// The stop sign we know our configuration ended with, decided here or told.
    pub(crate) fn known_stop(&self) -> Option<&StopSign> {
        self.learned.as_ref().map(|s| &s.ss)
    }
}
