//! The small core every room borrows: who we are, our configuration, the log, the outbox and
//! the clock. Rooms get `&mut Core` for one call (quinn's `Streams<'_>` style); none of them
//! owns any of it.

use super::{
    log::Log,
    wire::{forward::PlacedRun, PaxosMsg},
};
use crate::{
    ballot_leader_election::Ballot,
    quorum::Quorum,
    storage::{Entry, StopSign, Storage},
    util::{ConfigurationId, NodeId, NodeStats},
    ClusterConfig, OmniPaxosConfig,
};

/// The settings the rooms read.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Timing {
    /// Ticks per election round: also how often a follower may ask for a resync.
    pub(crate) election_timeout: u64,
    /// Ticks before what may have been lost is sent again.
    pub(crate) resend_timeout: u64,
    /// Entries per batch.
    pub(crate) batch_size: usize,
    /// Entries at most in one message, and in flight to one follower.
    pub(crate) buffer_size: usize,
}

/// Who made an append: a node and its incarnation (see `record`).
pub(crate) type Origin = (NodeId, u64);

/// What one room tells the others (the node routes these after each call; see `node`).
#[derive(Debug)]
pub(crate) enum Note<T> {
    /// As leader of `n`, we placed proposals of `origin` in our log.
    Placed {
        n: Ballot,
        origin: Origin,
        run: PlacedRun,
    },
    /// Our log, accepted in round `prev_round`, was replaced from index `from` on by a sync
    /// accepted in round `round` (below `from` it stays, now part of `round`'s log).
    Replaced {
        round: Ballot,
        prev_round: Ballot,
        from: usize,
    },
    /// Proposals of `origin` that were in our batch and never reached the log (we stopped
    /// leading).
    Unplaced { origin: Origin, entries: Vec<T> },
    /// A stop sign proposed here that never reached the log.
    StopSignBack(StopSign),
    /// We stopped leading ballot `n`; our log held `entries` from `from` on, undecided (read
    /// out before anything can replace them).
    SteppedDown {
        n: Ballot,
        from: usize,
        entries: Vec<T>,
    },
}

impl<T> Note<T> {
    pub(crate) fn is_placed(&self) -> bool {
        matches!(self, Note::Placed { .. })
    }
}

/// Notes `Placed` of one leader for consecutive proposals of one origin placed consecutively
/// are merged into one (a leader taking many appends of one node between two routings).
pub(crate) fn push_placed_note<T>(
    notes: &mut Vec<Note<T>>,
    n: Ballot,
    origin: Origin,
    run: PlacedRun,
) {
    if let Some(Note::Placed {
        n: last_n,
        origin: last_origin,
        run: last,
    }) = notes.last_mut()
    {
        if *last_n == n
            && *last_origin == origin
            && last.first_seq.wrapping_add(last.len) == run.first_seq
            && last.idx + last.len as usize == run.idx
        {
            last.len += run.len;
            return;
        }
    }
    notes.push(Note::Placed { n, origin, run });
}

pub(crate) struct Core<T: Entry, B: Storage<T>> {
    pub(crate) pid: NodeId,
    pub(crate) config: ClusterConfig,
    /// The other servers of the configuration.
    pub(crate) peers: Vec<NodeId>,
    pub(crate) quorum: Quorum,
    pub(crate) log: Log<T, B>,
    /// Messages to send, with their receivers.
    pub(crate) out: Vec<(NodeId, PaxosMsg<T>)>,
    /// Notes from one room to the others, drained by the node after each call.
    pub(crate) notes: Vec<Note<T>>,
    /// Ticks since the node was built.
    pub(crate) now: u64,
    pub(crate) timing: Timing,
    pub(crate) stats: NodeStats,
}

impl<T: Entry, B: Storage<T>> Core<T, B> {
    pub(crate) fn new(cfg: &OmniPaxosConfig, log: Log<T, B>) -> Self {
        let pid = cfg.server_config.pid;
        let config = cfg.cluster_config.clone();
        let peers = config.nodes.iter().copied().filter(|p| *p != pid).collect();
        let quorum = Quorum::new(config.nodes.len(), config.flexible_quorum);
        let s = &cfg.server_config;
        Core {
            pid,
            config,
            peers,
            quorum,
            log,
            out: Vec::new(),
            notes: Vec::new(),
            now: 0,
            timing: Timing {
                election_timeout: s.election_tick_timeout,
                resend_timeout: s.resend_message_tick_timeout,
                batch_size: s.batch_size,
                buffer_size: s.buffer_size,
            },
            stats: NodeStats::default(),
        }
    }

    pub(crate) fn config_id(&self) -> ConfigurationId {
        self.config.configuration_id
    }

    pub(crate) fn is_peer(&self, pid: NodeId) -> bool {
        self.peers.contains(&pid)
    }

    /// Whether `b` is a ballot of our configuration that one of its servers could own.
    pub(crate) fn valid_ballot(&self, b: Ballot) -> bool {
        b.config_id == self.config_id() && self.config.nodes.contains(&b.pid)
    }

    pub(crate) fn send(&mut self, to: NodeId, msg: impl Into<PaxosMsg<T>>) {
        self.out.push((to, msg.into()));
    }

    /// Sends `msg` to every peer.
    pub(crate) fn broadcast(&mut self, msg: impl Into<PaxosMsg<T>> + Clone) {
        for i in 0..self.peers.len() {
            let to = self.peers[i];
            self.out.push((to, msg.clone().into()));
        }
    }

    /// The decided index that the log can show: the decided index, but not beyond the entries
    /// (a decided stop sign is counted apart).
    pub(crate) fn decided_entries(&self) -> usize {
        self.log.decided_idx().min(self.log.log_end())
    }
}
