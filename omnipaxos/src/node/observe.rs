//! The node's observer (feature `tracing`): after every input it compares what an operator
//! cares about (who leads, the stop sign, where the log starts, compaction, migration, appends
//! handed back) with what it was after the input before, and reports each change as one event
//! (see `crate::trace`). The rooms need no reporting code for these: one place sees every path
//! to a change, and reports it once, in the call that made it.
//!
//! It only reads: the protocol is the same with and without it. Without the feature it is an
//! empty type and [`Node::observe`] does nothing. With it and no subscriber anywhere, it costs
//! one load (`LevelFilter::current()`); with a subscriber, a few loads and one comparison, and
//! it allocates nothing unless it reports.

use super::Node;
use crate::storage::{Entry, Storage};
#[cfg(feature = "tracing")]
use crate::{ballot_leader_election::Ballot, util::NodeStats};

/// What the observer saw last (nothing before the first observation, which reports the start).
#[derive(Default)]
pub(super) struct Seen {
    #[cfg(feature = "tracing")]
    last: Option<Facts>,
    /// Observations were skipped while nobody listened: the next one only records (what
    /// changed meanwhile was not heard by anyone, and is not reported late).
    #[cfg(feature = "tracing")]
    stale: bool,
}

/// The state the events are about.
#[cfg(feature = "tracing")]
#[derive(Clone, Copy, PartialEq, Eq)]
struct Facts {
    promise: Ballot,
    /// The ballot this node leads, while it leads.
    leading: Option<Ballot>,
    stopsign: bool,
    stopsign_decided: bool,
    sealed: bool,
    /// Where our log starts, once known.
    start: Option<usize>,
    pending_below: usize,
    compacted: usize,
    decided: usize,
    stats: NodeStats,
    /// Tenths of the pending prefix pulled (progress of a joiner's migration).
    pulled_tenths: usize,
}

impl<T: Entry, B: Storage<T>> Node<T, B> {
    /// Reports what changed since the last observation (the first one reports the start).
    #[inline]
    pub(super) fn observe(&mut self) {
        #[cfg(feature = "tracing")]
        {
            use tracing::level_filters::{LevelFilter, STATIC_MAX_LEVEL};
            if LevelFilter::current() == LevelFilter::OFF || STATIC_MAX_LEVEL == LevelFilter::OFF {
                // No subscriber anywhere (no events can be enabled).
                self.seen.stale = true;
                return;
            }
            let now = self.facts();
            let before = self.seen.last.replace(now);
            if std::mem::take(&mut self.seen.stale) {
                return;
            }
            match before {
                None => self.report_start(&now),
                Some(before) if before != now => self.report_changes(&before, &now),
                Some(_) => {}
            }
        }
        #[cfg(not(feature = "tracing"))]
        let _ = &self.seen;
    }

    #[cfg(feature = "tracing")]
    fn facts(&self) -> Facts {
        let log = &self.core.log;
        let pending_below = log.record().pending_below;
        let pulled_tenths = match self.succ.status(&self.core) {
            Some(s) if pending_below > 0 && s.prefix_end > 0 => {
                s.received.min(s.prefix_end).saturating_mul(10) / s.prefix_end
            }
            _ => 0,
        };
        Facts {
            promise: log.promise(),
            leading: self.role.leader().map(|l| l.ballot()),
            stopsign: log.stopsign().is_some(),
            stopsign_decided: log.stopsign_decided(),
            sealed: self.is_sealed(),
            start: log.record().start.index(),
            pending_below,
            compacted: log.compacted_idx(),
            decided: log.decided_idx(),
            stats: self.stats(),
            pulled_tenths,
        }
    }

    #[cfg(feature = "tracing")]
    fn report_start(&self, now: &Facts) {
        let core = &self.core;
        report!(INFO, node::started; core = core, nodes = ?core.config.nodes,
            promise = now.promise.n, promised_to = now.promise.pid,
            accepted_idx = core.log.accepted_idx(), decided_idx = now.decided,
            compacted_idx = now.compacted, log_start = ?now.start,
            "node started (recovered from its storage if it holds a promise)");
    }

    #[cfg(feature = "tracing")]
    fn report_changes(&self, before: &Facts, now: &Facts) {
        let core = &self.core;
        let log = &core.log;
        if before.leading != now.leading {
            if let Some(old) = before.leading {
                report!(INFO, election::stepped_down; core = core, ballot = old.n,
                    promise = now.promise.n, promised_to = now.promise.pid, stopped = now.sealed,
                    "this node no longer leads (a higher ballot took over, or the configuration \
                     is over)");
            }
            if let Some(b) = now.leading {
                report!(INFO, election::became_leader; core = core, ballot = b.n,
                    priority = b.priority, accepted_idx = log.accepted_idx(),
                    decided_idx = now.decided,
                    "elected: this node leads; its prepare phase starts");
            }
        }
        let p = now.promise;
        if before.promise != p && p.pid != core.pid && p.pid != 0 {
            report!(INFO, election::following; core = core, leader = p.pid, ballot = p.n,
                "following a new leader (promised its ballot)");
        }
        if !before.stopsign && now.stopsign {
            let next = log
                .stopsign()
                .map_or(0, |ss| ss.next_config.configuration_id);
            report!(DEBUG, reconfig::stopsign_accepted; core = core, idx = log.log_end(),
                next_config_id = next, "a stop sign is accepted in the log");
        }
        if !before.stopsign_decided && now.stopsign_decided {
            if let Some(ss) = log.stopsign() {
                report!(INFO, reconfig::stopsign_decided; core = core, idx = log.log_end(),
                    next_config_id = ss.next_config.configuration_id,
                    next_nodes = ?ss.next_config.nodes,
                    "the stop sign is decided: this configuration's log ends at `idx`");
            }
        }
        if !before.sealed && now.sealed {
            report!(INFO, reconfig::configuration_stopped; core = core,
                decided_here = now.stopsign_decided,
                "this configuration is over: appends are refused; a server of the next \
                 configuration continues with start_next_config");
        }
        if before.start.is_none() {
            if let Some(start) = now.start {
                report!(INFO, migration::log_start_learned; core = core, start,
                    pending_below = now.pending_below,
                    "this joining server learned where its log starts (the log before is pulled \
                     from the servers that hold it)");
            }
        }
        if now.pulled_tenths > before.pulled_tenths && now.pending_below > 0 {
            if let Some(s) = self.succ.status(core) {
                report!(DEBUG, migration::pull_progress; core = core, received = s.received,
                    prefix_end = s.prefix_end, sources = s.sources,
                    "pulling the log of the configurations before");
            }
        }
        let (b, n) = (&before.stats, &now.stats);
        if n.migrated_entries > b.migrated_entries {
            report!(TRACE, migration::entries_received; core = core,
                count = n.migrated_entries - b.migrated_entries, total = n.migrated_entries,
                "entries of an earlier log received");
        }
        if n.migrations_completed > b.migrations_completed {
            report!(INFO, migration::completed; core = core, compacted_idx = now.compacted,
                decided_idx = now.decided, migrated_entries = n.migrated_entries,
                "the log of the configurations before is here: migration completed");
        }
        if n.snapshots_taken > b.snapshots_taken {
            report!(INFO, compaction::snapshot_taken; core = core, compacted_idx = now.compacted,
                "the decided log below `compacted_idx` is folded into a snapshot");
        }
        if n.snapshot_installs > b.snapshot_installs {
            report!(INFO, compaction::snapshot_installed; core = core,
                compacted_idx = now.compacted, decided_idx = now.decided,
                "a snapshot from another server replaced the log below `compacted_idx`");
        }
        let compacted_otherwise = n.snapshots_taken == b.snapshots_taken
            && n.snapshot_installs == b.snapshot_installs
            && now.pending_below == 0
            && before.pending_below == 0;
        if now.compacted > before.compacted && compacted_otherwise {
            report!(INFO, compaction::trimmed; core = core, compacted_idx = now.compacted,
                "the log below `compacted_idx` is trimmed");
        }
        if n.returned_appends > b.returned_appends {
            report!(INFO, append::returned; core = core,
                count = n.returned_appends - b.returned_appends, total = n.returned_appends,
                "appends handed back to the application (take_returned_appends)");
        }
        if now.decided != before.decided {
            report!(TRACE, replication::decided; core = core, decided_idx = now.decided,
                "the decided index moved");
        }
    }
}
