//! The safety invariants of `protocol.md`, checked after every simulated step.
//!
//! * **Agreement**: every node's decided entries match one decided log per configuration, and
//!   a configuration's log starts with its predecessor's log up to the predecessor's stop sign.
//! * **Validity**: a decided entry was appended, and each append (tag) is decided at most once
//!   (at one index, whichever configurations show it).
//! * **Stability**: a node's decided index never decreases within a configuration, also across
//!   a restart, and its decided prefix read again after a restart is unchanged.
//! * **Sealing**: nothing is decided after a decided stop sign in its configuration.
//! * **Promises**: a node's promised ballot never decreases within a configuration, also
//!   across a restart.
//! * **One leader per ballot**: no two nodes serve as leader with the same ballot.
//! * **Snapshots**: a snapshot a node shows is the snapshot of the decided entries it covers.
//! * **One log across configurations**: every configuration continues the log of the one
//!   before, so an index holds at most one decided entry whichever configuration decided it or
//!   shows it; a configuration decides nothing at or after the index of its stop sign; each
//!   configuration has at most one decided stop sign, and what `is_reconfigured` reports is
//!   that stop sign (metadata included).
//!
//! What applications see is checked on top of this by [`crate::app`]: the entries an
//! application applies feed the same log (`app_applied`, `app_stopped`, `app_snapshot`).

use crate::entry::Tagged;
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage},
    util::{ConfigurationId, LogEntry, NodeId},
    OmniPaxos,
};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One decided slot of the log.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot<T> {
    /// A decided entry.
    Entry(T),
    /// A decided stop sign.
    StopSign(StopSign),
    /// Decided, but so far only seen inside a snapshot or below a trim.
    Hidden,
}

/// What the checker tracks per node.
#[derive(Clone, Debug, Default)]
struct NodeView {
    config: ConfigurationId,
    decided: usize,
    promise: Ballot,
    /// The highest count of decided entries of the shared log it showed (its decided stop sign
    /// not counted), even while unreadable.
    entries_decided: usize,
}

/// The decided log of one configuration.
#[derive(Clone, Debug)]
struct ConfigLog<T> {
    slots: Vec<Slot<T>>,
    /// Where its predecessor's log ended (0 for the first configuration).
    base: usize,
}

/// The invariant checker. Feed it every node after every step with [`Checker::observe`].
pub struct Checker<T: Entry> {
    logs: BTreeMap<ConfigurationId, ConfigLog<T>>,
    /// The one log all configurations share, by absolute index: the decided entry there, once
    /// any node showed it (as an entry, not hidden in a compacted prefix).
    global: Vec<Option<(T, ConfigurationId)>>,
    /// Length of the prefix of `global` known entirely.
    known_prefix: usize,
    /// Each configuration's decided stop sign and its index.
    stops: BTreeMap<ConfigurationId, (usize, StopSign)>,
    /// Per configuration: one past the highest index a node of it showed as a decided entry.
    entries_end: BTreeMap<ConfigurationId, usize>,
    /// Stop signs nodes reported through `is_reconfigured` before the decided one was seen.
    claimed_stops: BTreeMap<ConfigurationId, (NodeId, StopSign)>,
    /// Snapshots seen before the entries they cover were known: `(pid, upto, snapshot)`.
    pending_snapshots: Vec<(NodeId, usize, T::Snapshot)>,
    /// Tag -> index where it was decided.
    decided_tags: HashMap<u64, usize>,
    /// Tags seen inside snapshots (decided, at an index not seen).
    snapshot_tags: HashSet<u64>,
    appended: HashSet<u64>,
    nodes: BTreeMap<NodeId, NodeView>,
    leaders: BTreeMap<Ballot, NodeId>,
}

impl<T: Entry> Default for Checker<T> {
    fn default() -> Self {
        Checker {
            logs: BTreeMap::new(),
            global: Vec::new(),
            known_prefix: 0,
            stops: BTreeMap::new(),
            entries_end: BTreeMap::new(),
            claimed_stops: BTreeMap::new(),
            pending_snapshots: Vec::new(),
            decided_tags: HashMap::new(),
            snapshot_tags: HashSet::new(),
            appended: HashSet::new(),
            nodes: BTreeMap::new(),
            leaders: BTreeMap::new(),
        }
    }
}

impl<T: Entry + Tagged + PartialEq> Checker<T> {
    /// Records that an append of `tag` was made (so deciding it is valid).
    pub fn appended(&mut self, tag: u64) {
        self.appended.insert(tag);
    }

    /// The decided log of the newest configuration seen.
    pub fn decided_log(&self) -> &[Slot<T>] {
        self.logs.values().next_back().map_or(&[], |l| &l.slots)
    }

    /// The decided log of configuration `config_id`, from index 0 (its predecessors' part
    /// included, as far as seen).
    pub fn decided_log_of(&self, config_id: ConfigurationId) -> &[Slot<T>] {
        self.logs.get(&config_id).map_or(&[], |l| &l.slots)
    }

    /// The highest decided index any node showed so far (the length of its decided prefix of
    /// the shared log).
    pub fn highest_decided(&self) -> usize {
        self.nodes
            .values()
            .map(|v| v.entries_decided)
            .max()
            .unwrap_or(0)
    }

    /// Of what `op` decided, the decided entries of the shared log: its configuration's decided
    /// stop sign has an index in its log, but the next configuration's log continues at that
    /// index (a decided stop sign is the last slot of its configuration's log).
    pub fn entries_decided<B: Storage<T>>(op: &OmniPaxos<T, B>) -> usize {
        let decided = op.get_decided_idx();
        if op.is_reconfigured().is_some() {
            decided.saturating_sub(1)
        } else {
            decided
        }
    }

    /// Whether `tag` was decided (somewhere).
    pub fn is_decided(&self, tag: u64) -> bool {
        self.decided_tags.contains_key(&tag) || self.snapshot_tags.contains(&tag)
    }

    /// The decided index the checker last saw at `pid`.
    pub fn decided_at(&self, pid: NodeId) -> usize {
        self.nodes.get(&pid).map_or(0, |v| v.decided)
    }

    /// Distinct ballots seen serving as leader.
    pub fn leader_ballots(&self) -> usize {
        self.leaders.len()
    }

    /// Configurations seen.
    pub fn configurations(&self) -> usize {
        self.logs.len()
    }

    /// Entries decided in configurations after the first, beyond what they inherited.
    pub fn decided_after_first_config(&self) -> usize {
        self.logs
            .values()
            .skip(1)
            .map(|l| l.slots.len().saturating_sub(l.base))
            .sum()
    }

    /// The log of configuration `c`, started from its predecessor's if it is known.
    fn log_mut(&mut self, c: ConfigurationId) -> &mut ConfigLog<T> {
        if !self.logs.contains_key(&c) {
            let inherited =
                self.logs.values().find_map(|l| {
                    l.slots.iter().position(|s| {
                    matches!(s, Slot::StopSign(ss) if ss.next_config.configuration_id == c)
                })
                .map(|k| l.slots[..k].to_vec())
                });
            let log = match inherited {
                Some(slots) => ConfigLog {
                    base: slots.len(),
                    slots,
                },
                None => ConfigLog {
                    slots: Vec::new(),
                    base: 0,
                },
            };
            self.logs.insert(c, log);
        }
        self.logs.get_mut(&c).expect("just inserted")
    }

    fn add_slot(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        slot: Slot<T>,
        pid: NodeId,
    ) -> Result<(), String> {
        if let Slot::Entry(e) = &slot {
            let tag = e.tag();
            if !self.appended.contains(&tag) {
                return Err(format!(
                    "validity: node {pid} decided {e:?} at {idx}, which was never appended"
                ));
            }
            if let Some(prev) = self.decided_tags.insert(tag, idx) {
                if prev != idx {
                    return Err(format!(
                        "validity: append {tag} decided twice, at {prev} and at {idx} (seen at node {pid})"
                    ));
                }
            }
        }
        match &slot {
            Slot::Entry(e) => self.global_entry(c, idx, e, pid)?,
            Slot::StopSign(ss) => self.global_stop(c, idx, ss, pid)?,
            Slot::Hidden => {}
        }
        let log = self.log_mut(c);
        if let Some(existing) = log.slots.get(idx) {
            if matches!(existing, Slot::Hidden) {
                log.slots[idx] = slot;
                return Ok(());
            }
            if *existing != slot {
                return Err(format!(
                    "agreement: node {pid} decided {slot:?} at index {idx} in configuration {c}, another node decided {existing:?}"
                ));
            }
            return Ok(());
        }
        if idx != log.slots.len() {
            return Err(format!(
                "internal: node {pid} decided index {idx} before index {} (configuration {c})",
                log.slots.len()
            ));
        }
        if let Some(Slot::StopSign(_)) = log.slots.last() {
            return Err(format!(
                "sealing: node {pid} decided {slot:?} at index {idx}, after a decided stop sign (configuration {c})"
            ));
        }
        log.slots.push(slot);
        Ok(())
    }

    /// The entry `e` is decided at `idx`, shown by node `pid` of configuration `c`: it must be
    /// the one entry of that index in the log all configurations share, and lie before the stop
    /// sign of `c` and of every later configuration.
    fn global_entry(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        e: &T,
        pid: NodeId,
    ) -> Result<(), String> {
        if self.global.len() <= idx {
            self.global.resize(idx + 1, None);
        }
        match &self.global[idx] {
            Some((other, oc)) if other != e => {
                return Err(format!(
                    "agreement: node {pid} (configuration {c}) decided {e:?} at index {idx}, where \
                     configuration {oc} decided {other:?}"
                ));
            }
            Some(_) => {}
            None => self.global[idx] = Some((e.clone(), c)),
        }
        if let Some((&sc, (s, _))) = self.stops.range(c..).find(|(_, (s, _))| idx >= *s) {
            return Err(format!(
                "sealing: node {pid} (configuration {c}) decided {e:?} at index {idx}, at or after \
                 the stop sign of configuration {sc} at {s}"
            ));
        }
        let end = self.entries_end.entry(c).or_default();
        *end = (*end).max(idx + 1);
        while self
            .global
            .get(self.known_prefix)
            .is_some_and(|g| g.is_some())
        {
            self.known_prefix += 1;
        }
        Ok(())
    }

    /// Configuration `c` decided the stop sign `ss` at `idx` (node `pid` shows it).
    fn global_stop(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        ss: &StopSign,
        pid: NodeId,
    ) -> Result<(), String> {
        if let Some((s, other)) = self.stops.get(&c) {
            if *s != idx || other != ss {
                return Err(format!(
                    "agreement: node {pid} shows configuration {c} stopped by {ss:?} at {idx}, \
                     another node by {other:?} at {s}"
                ));
            }
            return Ok(());
        }
        if ss.next_config.configuration_id <= c {
            return Err(format!(
                "stop sign: configuration {c} decided a stop sign for configuration {} at {idx}",
                ss.next_config.configuration_id
            ));
        }
        if let Some((&ec, &end)) = self.entries_end.range(..=c).find(|(_, e)| **e > idx) {
            return Err(format!(
                "sealing: configuration {c} decided its stop sign at {idx} (seen at node {pid}), \
                 but configuration {ec} decided an entry at {}",
                end - 1
            ));
        }
        for (&oc, (s, _)) in &self.stops {
            if (oc < c && *s > idx) || (oc > c && *s < idx) {
                return Err(format!(
                    "stop sign: configuration {c} stopped at {idx} (seen at node {pid}) but \
                     configuration {oc} stopped at {s}: a configuration's log must continue its \
                     predecessor's"
                ));
            }
        }
        if let Some((claimer, claimed)) = self.claimed_stops.get(&c) {
            if claimed != ss {
                return Err(format!(
                    "stop sign: node {claimer} reported is_reconfigured() = {claimed:?} for \
                     configuration {c}, which decided {ss:?}"
                ));
            }
        }
        self.stops.insert(c, (idx, ss.clone()));
        Ok(())
    }

    /// What node `pid` of configuration `c` reports with `is_reconfigured()`: the decided stop
    /// sign of `c`, metadata included.
    fn check_reconfigured(
        &mut self,
        c: ConfigurationId,
        pid: NodeId,
        ss: &StopSign,
    ) -> Result<(), String> {
        if let Some((_, decided)) = self.stops.get(&c) {
            if decided != ss {
                return Err(format!(
                    "stop sign: node {pid} reports is_reconfigured() = {ss:?}, but configuration \
                     {c} decided {decided:?}"
                ));
            }
            return Ok(());
        }
        match self.claimed_stops.get(&c) {
            Some((other, claimed)) if claimed != ss => Err(format!(
                "stop sign: nodes {other} and {pid} report different stop signs for configuration \
                 {c} with is_reconfigured(): {claimed:?} and {ss:?}"
            )),
            Some(_) => Ok(()),
            None => {
                self.claimed_stops.insert(c, (pid, ss.clone()));
                Ok(())
            }
        }
    }

    /// Checks the snapshots whose entries became known since they were seen.
    fn check_pending_snapshots(&mut self) -> Result<(), String> {
        let known = self.known_prefix;
        if !self
            .pending_snapshots
            .iter()
            .any(|(_, upto, _)| *upto <= known)
        {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending_snapshots);
        for (pid, upto, snap) in pending {
            if upto <= known {
                self.verify_snapshot(pid, upto, &snap)?;
            } else {
                self.pending_snapshots.push((pid, upto, snap));
            }
        }
        Ok(())
    }

    /// Checks a snapshot of `0..upto` against the shared log (now, or once it is known).
    fn snapshot_seen(&mut self, pid: NodeId, upto: usize, s: &T::Snapshot) -> Result<(), String> {
        self.snapshot_tags
            .extend(T::snapshot_tags(s).iter().copied());
        if upto <= self.known_prefix {
            return self.verify_snapshot(pid, upto, s);
        }
        if self.pending_snapshots.len() < 10_000 {
            self.pending_snapshots.push((pid, upto, s.clone()));
        }
        Ok(())
    }

    fn verify_snapshot(&self, pid: NodeId, upto: usize, s: &T::Snapshot) -> Result<(), String> {
        let prefix: Vec<&T> = self.global[..upto]
            .iter()
            .filter_map(|g| g.as_ref().map(|(e, _)| e))
            .collect();
        match T::snapshot_of(&prefix, s) {
            Some(false) => Err(format!(
                "snapshot: node {pid} holds a snapshot of 0..{upto} that is not the snapshot of \
                 the decided entries: {s:?}"
            )),
            _ => Ok(()),
        }
    }

    /// The application of node `pid` (configuration `c`) applied `e` at `idx`.
    pub fn app_applied(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        e: &T,
        pid: NodeId,
    ) -> Result<(), String> {
        self.add_slot(c, idx, Slot::Entry(e.clone()), pid)
    }

    /// The application of node `pid` (configuration `c`) read the decided stop sign `ss` at
    /// `idx`: the end of its configuration.
    pub fn app_stopped(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        ss: &StopSign,
        pid: NodeId,
    ) -> Result<(), String> {
        self.add_slot(c, idx, Slot::StopSign(ss.clone()), pid)
    }

    /// Node `pid` of configuration `c` moves on to the next configuration: its configuration
    /// decided the stop sign `ss` at `idx` (the application may not have read it: the log before
    /// it can be pending there).
    pub fn node_moved_on(
        &mut self,
        c: ConfigurationId,
        idx: usize,
        ss: &StopSign,
        pid: NodeId,
    ) -> Result<(), String> {
        self.hide_up_to(c, idx);
        self.add_slot(c, idx, Slot::StopSign(ss.clone()), pid)
    }

    /// The application of node `pid` (configuration `c`) installed a snapshot of `0..upto`.
    pub fn app_snapshot(
        &mut self,
        c: ConfigurationId,
        pid: NodeId,
        upto: usize,
        s: &T::Snapshot,
    ) -> Result<(), String> {
        self.hide_up_to(c, upto);
        self.snapshot_seen(pid, upto, s)
    }

    /// The application of node `pid` (configuration `c`) read `0..upto` as compacted without a
    /// snapshot (and restored it from its own state): decided, entries not shown.
    pub fn app_compacted(&mut self, c: ConfigurationId, upto: usize) {
        self.hide_up_to(c, upto);
    }

    /// The decided entry at `idx` of the log all configurations share, if a node showed it.
    pub fn global_entry_at(&self, idx: usize) -> Option<&T> {
        self.global.get(idx)?.as_ref().map(|(e, _)| e)
    }

    /// The decided stop sign of configuration `c` and its index, once seen.
    pub fn stop_of(&self, c: ConfigurationId) -> Option<(usize, &StopSign)> {
        self.stops.get(&c).map(|(i, ss)| (*i, ss))
    }

    /// A compacted prefix up to `upto` is decided: slots not seen yet are hidden in it.
    fn hide_up_to(&mut self, c: ConfigurationId, upto: usize) {
        let log = self.log_mut(c);
        while log.slots.len() < upto {
            log.slots.push(Slot::Hidden);
        }
    }

    /// Checks a snapshot of `0..upto` against the decided log, when it is known that far.
    fn check_snapshot(
        &self,
        c: ConfigurationId,
        pid: NodeId,
        upto: usize,
        s: &T::Snapshot,
    ) -> Result<(), String> {
        let Some(log) = self.logs.get(&c) else {
            return Ok(());
        };
        if upto > log.slots.len() || log.slots[..upto].iter().any(|s| matches!(s, Slot::Hidden)) {
            return Ok(());
        }
        let prefix: Vec<&T> = log.slots[..upto]
            .iter()
            .filter_map(|slot| match slot {
                Slot::Entry(e) => Some(e),
                _ => None,
            })
            .collect();
        match T::snapshot_of(&prefix, s) {
            Some(false) => Err(format!(
                "snapshot: node {pid} holds a snapshot of 0..{upto} that does not match the decided entries: {s:?}"
            )),
            _ => Ok(()),
        }
    }

    /// Checks the decided log of `op` from `from` to its decided index against the global log.
    fn check_decided<B: Storage<T>>(
        &mut self,
        pid: NodeId,
        op: &OmniPaxos<T, B>,
        from: usize,
        to: usize,
    ) -> Result<(), String> {
        if from >= to {
            return Ok(());
        }
        let c = op.get_configuration_id();
        let Some(entries) = op.read_entries(from..to) else {
            if op.get_migration_status().is_some() {
                // The log of the previous configuration is still being pulled: unreadable.
                return Ok(());
            }
            return Err(format!(
                "read: node {pid} cannot read its decided entries {from}..{to}"
            ));
        };
        let mut idx = from;
        for e in entries {
            match e {
                LogEntry::Decided(e) => {
                    self.add_slot(c, idx, Slot::Entry(e), pid)?;
                    idx += 1;
                }
                LogEntry::StopSign(ss, true) => {
                    self.add_slot(c, idx, Slot::StopSign(ss), pid)?;
                    idx += 1;
                }
                LogEntry::Trimmed(t) => {
                    self.hide_up_to(c, t);
                    idx = t.max(idx)
                }
                LogEntry::Snapshotted(s) => {
                    self.check_snapshot(c, pid, s.trimmed_idx, &s.snapshot)?;
                    self.snapshot_seen(pid, s.trimmed_idx, &s.snapshot)?;
                    self.hide_up_to(c, s.trimmed_idx);
                    idx = s.trimmed_idx.max(idx)
                }
                other => {
                    return Err(format!(
                        "read: node {pid} shows {other:?} at {idx}, below its decided index {to}"
                    ))
                }
            }
        }
        if idx != to {
            return Err(format!(
                "read: node {pid} returned entries up to {idx} for the range {from}..{to}"
            ));
        }
        Ok(())
    }

    /// Checks node `pid` after a step. `restarted` re-reads its whole decided log.
    pub fn observe<B: Storage<T>>(
        &mut self,
        pid: NodeId,
        op: &OmniPaxos<T, B>,
        restarted: bool,
    ) -> Result<(), String> {
        let c = op.get_configuration_id();
        let mut view = self.nodes.get(&pid).cloned().unwrap_or_default();
        let mut restarted = restarted;
        if view.config != c {
            // A new node of this server (a later configuration): a fresh view.
            view = NodeView {
                config: c,
                ..Default::default()
            };
            restarted = true;
        }
        let decided = op.get_decided_idx();
        if decided < view.decided {
            return Err(format!(
                "stability: node {pid} decided index went from {} to {decided}{}",
                view.decided,
                if restarted { " across a restart" } else { "" }
            ));
        }
        let promise = op.get_promise();
        if promise < view.promise {
            return Err(format!(
                "promise: node {pid} promise went from {:?} to {promise:?}{}",
                view.promise,
                if restarted { " across a restart" } else { "" }
            ));
        }
        let from = if restarted { 0 } else { view.decided };
        self.check_decided(pid, op, from, decided)?;
        if let Some(ss) = op.is_reconfigured() {
            self.check_reconfigured(c, pid, &ss)?;
        }
        self.check_pending_snapshots()?;
        if op.get_current_leader() == Some((pid, true)) {
            if let Some(other) = self.leaders.insert(promise, pid) {
                if other != pid {
                    return Err(format!(
                        "leader: nodes {other} and {pid} both lead with ballot {promise:?}"
                    ));
                }
            }
        }
        let unreadable = op.get_migration_status().is_some();
        let v = self.nodes.entry(pid).or_default();
        v.config = c;
        // While the old log is pulled, re-read from the start once it is readable.
        v.decided = if unreadable { 0 } else { decided };
        v.promise = promise;
        v.entries_decided = v.entries_decided.max(Self::entries_decided(op));
        Ok(())
    }
}
