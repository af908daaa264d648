//! The simulated application on each node: it reads what is decided, the way the call loop on
//! `OmniPaxos` tells applications to, and applies it in order. The checker then sees what an
//! application sees, not only the replicas' bookkeeping.
//!
//! After every action on its node (a tick, a delivered message, a call), the application reads
//! `read_decided_suffix(applied)` and applies the elements in order:
//!
//! * a decided entry: applied, and checked against the one log all configurations share
//!   ([`Checker::app_applied`]);
//! * a `Snapshotted` element: its snapshot replaces the state (checked against the decided
//!   entries it covers once they are known);
//! * a decided `StopSign`: the end of the configuration; the application waits for
//!   `start_next_config` (the same process goes on with its state) and reads on from the stop
//!   sign's index;
//! * a `Trimmed(k)` element over entries it never applied is a failure ("application skipped
//!   a..k"): the entries are gone and the application cannot rebuild its state. The one
//!   exception is a prefix the application itself let trim: a trim that reached the node when
//!   its application had applied that far (an application that trims keeps the state of what it
//!   trimmed, so after a restart it restores it from its own storage). A server that joined
//!   after the application trimmed part of the old log may find that part gone, and, when no
//!   server still holds it, the whole old log it was pulling (its storage starts after it):
//!   its application restores that state from outside, as the simulator counts it
//!   ([`crate::Sim`] grants these prefixes).
//!
//! `read_decided_suffix` may return `None` while the node reports a migration in progress (the
//! old log is being pulled); without one, an application behind the decided index must be able
//! to read.
//!
//! The application's state is volatile: after a crash it starts from nothing and reads again
//! from index 0. A server that joins a configuration starts with an empty application.

use crate::{checker::Checker, entry::Tagged};
use omnipaxos::{
    storage::{Entry, StopSign, Storage},
    util::{ConfigurationId, LogEntry, NodeId},
    OmniPaxos,
};

/// What one index of an application's state came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The entry with this tag, applied on its own.
    Entry(u64),
    /// Part of a snapshot the application installed.
    Snapshot,
    /// Part of a prefix the application let trim, restored from its own storage.
    Restored,
}

/// How an application came to be.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// With its server, in the first configuration.
    Initial,
    /// With a server that joined a later configuration on empty storage.
    Joined,
    /// Again after its server crashed (its state is volatile).
    Restarted,
    /// Again after its server, one that joined a later configuration, crashed.
    RestartedJoiner,
}

/// One node's application.
#[derive(Clone, Debug)]
pub struct App {
    origin: Origin,
    /// It went on into a next configuration with `start_next_config` (same process).
    continued: bool,
    /// The configuration of the node it reads from.
    config: ConfigurationId,
    /// What it applied, by absolute index (its length is the index it reads from next).
    state: Vec<Applied>,
    /// It applied its configuration's decided stop sign (at index `state.len()`).
    stopped: Option<StopSign>,
    /// Snapshots it installed.
    snapshot_installs: u64,
    /// Entries applied one by one.
    entries_applied: u64,
}

impl App {
    /// An application with no state, reading from a node of configuration `config`.
    pub fn new(config: ConfigurationId, origin: Origin) -> Self {
        App {
            origin,
            continued: false,
            config,
            state: Vec::new(),
            stopped: None,
            snapshot_installs: 0,
            entries_applied: 0,
        }
    }

    /// The index it reads from next.
    pub fn applied(&self) -> usize {
        self.state.len()
    }

    /// What it applied, by index.
    pub fn state(&self) -> &[Applied] {
        &self.state
    }

    /// The decided stop sign it applied, while it waits for the next configuration.
    pub fn stopped(&self) -> Option<&StopSign> {
        self.stopped.as_ref()
    }

    /// How it came to be.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Who the application is, for failure messages.
    fn who<T: Entry>(&self) -> String {
        let who = match (self.origin, self.continued) {
            (Origin::Joined, _) => "a joiner's application",
            (Origin::RestartedJoiner, _) => "a joiner's application restarted with its server",
            (Origin::Restarted, false) => "an application restarted with its server",
            (Origin::Restarted, true) => {
                "an application restarted with its server, then continued into a next configuration"
            }
            (Origin::Initial, false) => "an application running since the start",
            (Origin::Initial, true) => {
                "an application running since the start, continued into a next configuration"
            }
        };
        let entries = if <T::Snapshot as omnipaxos::storage::Snapshot<T>>::use_snapshots() {
            "entries with snapshots"
        } else {
            "entries without snapshots"
        };
        format!("{who}; {entries}")
    }

    /// Snapshots it installed.
    pub fn snapshot_installs(&self) -> u64 {
        self.snapshot_installs
    }

    /// Entries it applied one by one.
    pub fn entries_applied(&self) -> u64 {
        self.entries_applied
    }

    /// The same process goes on in configuration `config` (`start_next_config`): the state
    /// stays, reading goes on from where it stopped.
    pub fn continue_in(&mut self, config: ConfigurationId) {
        self.config = config;
        self.continued = true;
        self.stopped = None;
    }

    /// Reads and applies what node `pid` decided beyond what it applied. `restorable` is the
    /// prefix this server's application let trim after applying it (see the module docs); it
    /// grows here when a compaction reaches the node below what the application applied.
    pub fn read<T: Entry + Tagged + PartialEq, S: Storage<T>>(
        &mut self,
        pid: NodeId,
        op: &OmniPaxos<T, S>,
        checker: &mut Checker<T>,
        restorable: &mut usize,
    ) -> Result<(), String> {
        let c = op.get_configuration_id();
        if c != self.config {
            return Err(format!(
                "application: node {pid} runs configuration {c}, its application was told {}",
                self.config
            ));
        }
        let compacted = op.get_compacted_idx();
        if compacted <= self.applied() {
            *restorable = (*restorable).max(compacted);
        }
        if self.stopped.is_some() {
            return Ok(());
        }
        let from = self.applied();
        let decided = op.get_decided_idx();
        if from >= decided {
            return Ok(());
        }
        let Some(elements) = op.read_decided_suffix(from) else {
            if op.get_migration_status().is_some() {
                // The log of the configuration this one continues is being pulled.
                return Ok(());
            }
            return Err(format!(
                "application: node {pid} decided up to {decided} but read_decided_suffix({from}) \
                 is None, and it reports no migration in progress"
            ));
        };
        let n = elements.len();
        let mut idx = from;
        for (i, el) in elements.into_iter().enumerate() {
            match el {
                LogEntry::Decided(e) => {
                    checker.app_applied(c, idx, &e, pid)?;
                    self.state.push(Applied::Entry(e.tag()));
                    self.entries_applied += 1;
                    idx += 1;
                }
                LogEntry::StopSign(ss, true) => {
                    if i + 1 != n {
                        return Err(format!(
                            "application: node {pid}'s read_decided_suffix({from}) goes on after \
                             the decided stop sign at {idx}"
                        ));
                    }
                    checker.app_stopped(c, idx, &ss, pid)?;
                    if op.is_reconfigured().as_ref() != Some(&ss) {
                        return Err(format!(
                            "application: node {pid} decided the stop sign {ss:?} at {idx}, but \
                             is_reconfigured() is {:?}",
                            op.is_reconfigured()
                        ));
                    }
                    self.stopped = Some(ss);
                    // The next configuration's log goes on at this index.
                    return Ok(());
                }
                LogEntry::Trimmed(k) => {
                    if k <= idx || i != 0 {
                        return Err(format!(
                            "application: node {pid}'s read_decided_suffix({from}) shows \
                             Trimmed({k}) at {idx}"
                        ));
                    }
                    if *restorable < k {
                        return Err(format!(
                            "application skipped {idx}..{k} ({}): node {pid}'s \
                             read_decided_suffix({from}) starts with Trimmed({k}), entries its \
                             application never applied (configuration {c}, decided {decided}, \
                             migration {:?})",
                            self.who::<T>(),
                            op.get_migration_status()
                        ));
                    }
                    checker.app_compacted(c, k);
                    self.state.resize(k, Applied::Restored);
                    idx = k;
                }
                LogEntry::Snapshotted(s) => {
                    let k = s.trimmed_idx;
                    if k <= idx || i != 0 {
                        return Err(format!(
                            "application: node {pid}'s read_decided_suffix({from}) shows a \
                             snapshot of 0..{k} at {idx}"
                        ));
                    }
                    checker.app_snapshot(c, pid, k, &s.snapshot)?;
                    self.state.clear();
                    self.state.resize(k, Applied::Snapshot);
                    self.snapshot_installs += 1;
                    idx = k;
                }
                other => {
                    return Err(format!(
                        "application: node {pid}'s read_decided_suffix({from}) shows {other:?} at \
                         {idx}, below its decided index {decided}"
                    ));
                }
            }
        }
        if idx != decided {
            return Err(format!(
                "application: node {pid}'s read_decided_suffix({from}) ended at {idx}, its decided \
                 index is {decided}"
            ));
        }
        Ok(())
    }

    /// Checks the application's state against the decided log: every entry it applied is the
    /// decided one of its index.
    pub fn check_against<T: Entry + Tagged + PartialEq>(
        &self,
        pid: NodeId,
        checker: &Checker<T>,
    ) -> Result<(), String> {
        for (i, a) in self.state.iter().enumerate() {
            if let Applied::Entry(tag) = a {
                match checker.global_entry_at(i) {
                    Some(e) if e.tag() == *tag => {}
                    other => {
                        return Err(format!(
                            "application: node {pid}'s application applied append {tag} at {i}, \
                             the decided log holds {other:?}"
                        ))
                    }
                }
            }
        }
        Ok(())
    }
}
