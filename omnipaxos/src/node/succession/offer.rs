//! Offers: what a server that holds a stop tells the servers of the stopped configuration and
//! of the next one (the stops it knows, where its log of each configuration ends, what it holds),
//! and what a node learns from an offer: where its configuration's log starts, and that its
//! configuration stopped. Only servers of our own configuration are trusted with either.

use super::{pull::Pull, Pulling, Succession};
use crate::{
    node::{
        core::Core,
        record::{Start, Stop},
        wire::succession::{Offer, SuccessionMsg},
    },
    storage::{Entry, Snapshot, Storage, StorageOp},
    util::{ConfigurationId, NodeId},
};

impl<T: Entry> Succession<T> {
    /// Our stop, as a server that holds it offers it.
    pub(super) fn own_stop<B: Storage<T>>(&self, core: &Core<T, B>) -> Option<Stop> {
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

    pub(super) fn offer<B: Storage<T>>(&self, core: &Core<T, B>, about: ConfigurationId) -> Offer {
        let held_to = core.decided_entries();
        let mut chain = core.log.record().chain.clone();
        // An offer names no stop beyond what it holds as decided (the receiver drops such an
        // offer whole): the stop of our configuration that we learned but whose tail we are
        // still pulling waits until we hold it. Without this, a straggler of the next
        // configuration silenced the stragglers of the one before, whose stop it does hold.
        chain.extend(self.own_stop(core).filter(|s| s.end <= held_to));
        let pending = core.log.record().pending_below;
        let compacted = core.log.compacted_idx();
        let snapshot = core.log.has_snapshot() && pending == 0;
        Offer {
            about,
            chain,
            held_from: compacted.max(pending),
            held_to,
            snapshot,
            trimmed: compacted > 0 && !snapshot && pending == 0,
        }
    }

    /// Offers what we hold to `to`, at most once per resend timeout.
    pub(super) fn offer_to<B: Storage<T>>(
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

    pub(super) fn handle_offer<B: Storage<T>>(
        &mut self,
        core: &mut Core<T, B>,
        from: NodeId,
        o: Offer,
    ) {
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
    pub(super) fn learn_stop<B: Storage<T>>(&mut self, core: &mut Core<T, B>, stop: Stop) {
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
    pub(super) fn learn_start<B: Storage<T>>(
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
}
