//! The safety invariants of `protocol.md`, checked after every simulated step.
//!
//! * **Agreement**: every node's decided entries match one global decided log.
//! * **Validity**: a decided entry was appended, and each append (tag) is decided at most once.
//! * **Stability**: a node's decided index never decreases, also across a restart, and its
//!   decided prefix read again after a restart is unchanged.
//! * **Sealing**: nothing is decided after a decided stop sign.
//! * **Promises**: a node's promised ballot never decreases, also across a restart.
//! * **One leader per ballot**: no two nodes serve as leader with the same ballot.

use crate::entry::Tagged;
use omnipaxos::{
    ballot_leader_election::Ballot,
    storage::{Entry, StopSign, Storage},
    util::{LogEntry, NodeId},
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
    decided: usize,
    promise: Ballot,
}

/// The invariant checker. Feed it every node after every step with [`Checker::observe`].
pub struct Checker<T> {
    /// The decided log, as far as any node decided it.
    global: Vec<Slot<T>>,
    /// Tag -> index where it was decided.
    decided_tags: HashMap<u64, usize>,
    appended: HashSet<u64>,
    nodes: BTreeMap<NodeId, NodeView>,
    leaders: BTreeMap<Ballot, NodeId>,
}

impl<T> Default for Checker<T> {
    fn default() -> Self {
        Checker {
            global: Vec::new(),
            decided_tags: HashMap::new(),
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

    /// The decided log known so far.
    pub fn decided_log(&self) -> &[Slot<T>] {
        &self.global
    }

    /// Whether `tag` was decided (somewhere).
    pub fn is_decided(&self, tag: u64) -> bool {
        self.decided_tags.contains_key(&tag)
    }

    /// The decided index the checker last saw at `pid`.
    pub fn decided_at(&self, pid: NodeId) -> usize {
        self.nodes.get(&pid).map_or(0, |v| v.decided)
    }

    /// Distinct ballots seen serving as leader.
    pub fn leader_ballots(&self) -> usize {
        self.leaders.len()
    }

    fn add_slot(&mut self, idx: usize, slot: Slot<T>, pid: NodeId) -> Result<(), String> {
        if let Some(Slot::Hidden) = self.global.get(idx) {
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
            self.global[idx] = slot;
            return Ok(());
        }
        if let Some(existing) = self.global.get(idx) {
            if *existing != slot {
                return Err(format!(
                    "agreement: node {pid} decided {slot:?} at index {idx}, another node decided {existing:?}"
                ));
            }
            return Ok(());
        }
        if idx != self.global.len() {
            return Err(format!(
                "internal: node {pid} decided index {idx} before index {}",
                self.global.len()
            ));
        }
        if let Some(Slot::StopSign(_)) = self.global.last() {
            return Err(format!(
                "sealing: node {pid} decided {slot:?} at index {idx}, after a decided stop sign"
            ));
        }
        if let Slot::Entry(e) = &slot {
            let tag = e.tag();
            if !self.appended.contains(&tag) {
                return Err(format!(
                    "validity: node {pid} decided {e:?} at {idx}, which was never appended"
                ));
            }
            if let Some(prev) = self.decided_tags.insert(tag, idx) {
                return Err(format!(
                    "validity: append {tag} decided twice, at {prev} and at {idx} (seen at node {pid})"
                ));
            }
        }
        self.global.push(slot);
        Ok(())
    }

    /// A compacted prefix up to `c` is decided: slots not seen yet are hidden in it.
    fn hide_up_to(&mut self, c: usize) {
        while self.global.len() < c {
            self.global.push(Slot::Hidden);
        }
    }

    /// Checks a snapshot of `0..upto` against the decided log, when it is known that far.
    fn check_snapshot(&self, pid: NodeId, upto: usize, s: &T::Snapshot) -> Result<(), String> {
        if upto > self.global.len() {
            return Ok(());
        }
        if self.global[..upto]
            .iter()
            .any(|s| matches!(s, Slot::Hidden))
        {
            return Ok(());
        }
        let prefix: Vec<&T> = self.global[..upto]
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
        let Some(entries) = op.read_entries(from..to) else {
            return Err(format!(
                "read: node {pid} cannot read its decided entries {from}..{to}"
            ));
        };
        let mut idx = from;
        for e in entries {
            match e {
                LogEntry::Decided(e) => {
                    self.add_slot(idx, Slot::Entry(e), pid)?;
                    idx += 1;
                }
                LogEntry::StopSign(ss, true) => {
                    self.add_slot(idx, Slot::StopSign(ss), pid)?;
                    idx += 1;
                }
                LogEntry::Trimmed(c) => {
                    self.hide_up_to(c);
                    idx = c.max(idx)
                }
                LogEntry::Snapshotted(s) => {
                    self.check_snapshot(pid, s.trimmed_idx, &s.snapshot)?;
                    self.hide_up_to(s.trimmed_idx);
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
        let view = self.nodes.entry(pid).or_default().clone();
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
        if op.get_current_leader() == Some((pid, true)) {
            if let Some(other) = self.leaders.insert(promise, pid) {
                if other != pid {
                    return Err(format!(
                        "leader: nodes {other} and {pid} both lead with ballot {promise:?}"
                    ));
                }
            }
        }
        let v = self.nodes.entry(pid).or_default();
        v.decided = decided;
        v.promise = promise;
        Ok(())
    }
}
