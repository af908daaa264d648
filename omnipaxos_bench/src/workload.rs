//! The workload every system runs, and the entry types.

use std::fmt::Debug;

/// A log entry of a fixed size that carries its sequence number in its first 8 bytes.
pub trait Payload: Clone + Debug + 'static {
    /// Size of the entry in bytes.
    const SIZE: usize;
    /// The entry with sequence number `seq`.
    fn make(seq: u64) -> Self;
    /// Its sequence number.
    fn seq(&self) -> u64;
    /// The entry as bytes (for raft, whose entries are byte strings).
    fn to_bytes(&self) -> Vec<u8>;
    /// The sequence number of an entry given as bytes.
    fn seq_of_bytes(b: &[u8]) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[..8]);
        u64::from_le_bytes(a)
    }
}

/// An 8-byte entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E8(pub u64);

/// A 256-byte entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E256(pub [u8; 256]);

impl Payload for E8 {
    const SIZE: usize = 8;
    fn make(seq: u64) -> Self {
        E8(seq)
    }
    fn seq(&self) -> u64 {
        self.0
    }
    fn to_bytes(&self) -> Vec<u8> {
        self.0.to_le_bytes().to_vec()
    }
}

impl Payload for E256 {
    const SIZE: usize = 256;
    fn make(seq: u64) -> Self {
        let mut a = [seq as u8; 256];
        a[..8].copy_from_slice(&seq.to_le_bytes());
        E256(a)
    }
    fn seq(&self) -> u64 {
        Self::seq_of_bytes(&self.0)
    }
    fn to_bytes(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl omnipaxos::storage::Entry for E8 {
    type Snapshot = omnipaxos::storage::NoSnapshot;
}
impl omnipaxos::storage::Entry for E256 {
    type Snapshot = omnipaxos::storage::NoSnapshot;
}
impl omnipaxos_up::storage::Entry for E8 {
    type Snapshot = omnipaxos_up::storage::NoSnapshot;
}
impl omnipaxos_up::storage::Entry for E256 {
    type Snapshot = omnipaxos_up::storage::NoSnapshot;
}

/// The sequence number of the entry proposed after a leader crash.
pub const MARKER: u64 = u64::MAX - 1;

/// Three replicas of one system in this thread, with in-memory storage, their messages moved
/// from sender to receiver without serialization. Nodes are numbered 0, 1, 2.
pub trait Cluster<P: Payload>: Sized {
    /// The system's name in the report.
    const NAME: &'static str;
    /// Builds the cluster with the given election timeout (ticks), and elects a leader.
    fn new(election_ticks: u64) -> Self;
    /// The node that leads (and takes appends), among the live ones.
    fn leader(&self) -> Option<usize>;
    /// Appends (proposes) the entry with sequence number `seq` at `node`.
    fn propose(&mut self, node: usize, seq: u64);
    /// One network round: takes the outgoing messages of every live node, then hands each to
    /// its receiver if that one is live. Afterwards `apply_at` applies what it decided.
    /// Returns whether any message moved.
    fn deliver(&mut self, apply_at: Applying) -> bool;
    /// Advances the clock of every live node by one tick.
    fn tick(&mut self);
    /// Stops `node`: it gets no ticks and no messages any more, and its messages are dropped.
    fn crash(&mut self, node: usize);
    /// Number of entries `node` applied so far.
    fn applied(&self, node: usize) -> u64;
    /// The sequence number of the last entry `node` applied.
    fn last_applied_seq(&self, node: usize) -> Option<u64>;
}

/// Which nodes apply their decided entries after a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applying {
    /// Only this node (the leader, in the throughput runs).
    Only(usize),
    /// Every live node.
    All,
}

impl Applying {
    /// Whether `node` applies.
    pub fn includes(self, node: usize) -> bool {
        match self {
            Applying::Only(n) => n == node,
            Applying::All => true,
        }
    }
}

/// Ticks and delivers until a leader is known (panics after `limit` ticks).
pub fn elect<P: Payload, C: Cluster<P>>(c: &mut C, limit: u64) -> usize {
    for _ in 0..limit {
        c.tick();
        settle(c, Applying::All);
        if let Some(l) = c.leader() {
            return l;
        }
    }
    panic!("{}: no leader after {limit} ticks", C::NAME);
}

/// Delivers until no message moves (at most 10,000 rounds).
pub fn settle<P: Payload, C: Cluster<P>>(c: &mut C, apply: Applying) {
    for _ in 0..10_000 {
        if !c.deliver(apply) {
            return;
        }
    }
}

/// The throughput run: keep `window` appends outstanding at the leader until `total` entries
/// are applied there. Returns the number applied (`>= total`).
pub fn throughput<P: Payload, C: Cluster<P>>(c: &mut C, window: u64, total: u64) -> u64 {
    let leader = c.leader().expect("the cluster has a leader");
    let base = c.applied(leader);
    let mut proposed = 0u64;
    let mut stalls = 0u32;
    loop {
        let applied = c.applied(leader) - base;
        if applied >= total {
            return applied;
        }
        while proposed - applied < window && proposed < total {
            c.propose(leader, proposed);
            proposed += 1;
        }
        if !c.deliver(Applying::Only(leader)) {
            // Nothing in flight: only a timeout would move it on (e.g. a partial batch).
            c.tick();
            stalls += 1;
            assert!(stalls < 100_000, "{}: the run makes no progress", C::NAME);
        }
    }
}

/// The failover run: after `warmup_ticks` of idle ticking (varied between runs so that the crash
/// hits every phase of the heartbeat rounds), crash the leader; then tick (delivering all
/// messages after every tick) until a survivor applied an entry proposed after the crash at the
/// new leader. Returns the ticks from the crash to that decision.
pub fn failover<P: Payload, C: Cluster<P>>(c: &mut C, warmup_ticks: u64, limit: u64) -> u64 {
    let old = elect(c, 1_000);
    for s in 0..10 {
        c.propose(old, s);
        settle(c, Applying::All);
    }
    for _ in 0..warmup_ticks {
        c.tick();
        settle(c, Applying::All);
    }
    c.crash(old);
    let mut proposed = false;
    for t in 1..=limit {
        c.tick();
        settle(c, Applying::All);
        if !proposed {
            if let Some(l) = c.leader().filter(|l| *l != old) {
                c.propose(l, MARKER);
                proposed = true;
                settle(c, Applying::All);
            }
        }
        if (0..3).any(|n| n != old && c.last_applied_seq(n) == Some(MARKER)) {
            return t;
        }
    }
    panic!("{}: no decision {limit} ticks after the crash", C::NAME);
}
