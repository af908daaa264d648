//! The simulated network: directed links that can be cut, and per-message loss, duplication
//! and delay (which reorders).

use crate::rng::Rng;
use omnipaxos::{messages::Message, storage::Entry, util::NodeId};
use std::collections::BTreeMap;

/// Per-message faults of the network.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// A message is delivered `0..=max_delay` ticks after it is sent (0: in the same tick, once
    /// the sender's step is done).
    pub max_delay: u64,
}

impl Faults {
    /// A perfect network: everything delivered once, in the tick it was sent.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        max_delay: 0,
    };
}

/// What a test filter does with a message.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it as the network would.
    Pass,
    /// Lose it.
    Drop,
    /// Send it twice.
    Duplicate,
}

/// A filter that tests install to target specific messages.
pub type Filter<T> = Box<dyn FnMut(&Message<T>) -> Verdict>;

/// Counts of what the network did.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to the network.
    pub sent: u64,
    /// Lost: on a cut link, or by chance, or by a filter.
    pub dropped: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// Delivered to a running node.
    pub delivered: u64,
}

/// Messages in flight between `n` nodes with pids `1..=n`.
pub struct Network<T: Entry> {
    n: usize,
    /// `links[from - 1][to - 1]`: whether messages from `from` reach `to`.
    links: Vec<Vec<bool>>,
    faults: Faults,
    /// In flight, keyed by (delivery tick, send order): delivered in key order.
    in_flight: BTreeMap<(u64, u64), Message<T>>,
    seq: u64,
    filter: Option<Filter<T>>,
    stats: NetStats,
}

impl<T: Entry> Network<T> {
    /// A fully connected network of `n` nodes.
    pub fn new(n: usize, faults: Faults) -> Self {
        Network {
            n,
            links: vec![vec![true; n]; n],
            faults,
            in_flight: BTreeMap::new(),
            seq: 0,
            filter: None,
            stats: NetStats::default(),
        }
    }

    /// The current per-message faults.
    pub fn faults(&self) -> Faults {
        self.faults
    }

    /// Sets the per-message faults.
    pub fn set_faults(&mut self, f: Faults) {
        self.faults = f;
    }

    /// Installs (or removes) a filter applied to every message sent.
    pub fn set_filter(&mut self, f: Option<Filter<T>>) {
        self.filter = f;
    }

    /// What the network did so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    fn valid(&self, p: NodeId) -> bool {
        p >= 1 && p as usize <= self.n
    }

    /// Whether messages from `from` reach `to`.
    pub fn link(&self, from: NodeId, to: NodeId) -> bool {
        self.valid(from) && self.valid(to) && self.links[from as usize - 1][to as usize - 1]
    }

    /// Sets the link from `from` to `to` (one direction).
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        if self.valid(from) && self.valid(to) && from != to {
            self.links[from as usize - 1][to as usize - 1] = up;
        }
    }

    /// Cuts or restores both directions between `a` and `b`.
    pub fn set_both(&mut self, a: NodeId, b: NodeId, up: bool) {
        self.set_link(a, b, up);
        self.set_link(b, a, up);
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        for row in &mut self.links {
            row.iter_mut().for_each(|l| *l = true);
        }
    }

    /// Hands `m`, sent at tick `now`, to the network.
    pub fn send(&mut self, now: u64, m: Message<T>, rng: &mut Rng) {
        self.stats.sent += 1;
        let verdict = match &mut self.filter {
            Some(f) => f(&m),
            None => Verdict::Pass,
        };
        if verdict == Verdict::Drop
            || !self.link(m.get_sender(), m.get_receiver())
            || rng.chance(self.faults.drop)
        {
            self.stats.dropped += 1;
            return;
        }
        let copies = if verdict == Verdict::Duplicate || rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for i in 0..copies {
            let at = now + rng.range(0, self.faults.max_delay);
            self.seq += 1;
            if i + 1 < copies {
                self.in_flight.insert((at, self.seq), m.clone());
            } else {
                self.in_flight.insert((at, self.seq), m);
                break;
            }
        }
    }

    /// Takes the next message due at or before `now`, if any. A message whose link was cut
    /// while it was in flight is lost.
    pub fn next_due(&mut self, now: u64) -> Option<Message<T>> {
        loop {
            let (&key, _) = self.in_flight.first_key_value()?;
            if key.0 > now {
                return None;
            }
            let m = self.in_flight.remove(&key)?;
            if self.link(m.get_sender(), m.get_receiver()) {
                return Some(m);
            }
            self.stats.dropped += 1;
        }
    }

    /// Puts a message back to be delivered at `at` (its receiver is paused).
    pub fn defer(&mut self, at: u64, m: Message<T>) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), m);
    }

    pub(crate) fn note_delivered(&mut self) {
        self.stats.delivered += 1;
    }

    /// Messages in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
