//! The messages servers exchange. Route each one to [`Message::get_receiver`]; the contents are
//! the library's business.
//!
//! Every message carries the configuration it belongs to (in its ballot or explicitly); a node
//! ignores messages of other configurations, messages addressed to another pid, and messages from
//! pids outside its configuration. Messages decoded from untrusted bytes are checked before use:
//! a malformed one is dropped, it never panics a node.

use crate::util::NodeId;
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// Messages of Sequence Paxos, the log replication protocol.
pub mod sequence_paxos {
    use crate::{
        ballot_leader_election::Ballot,
        storage::{Entry, SnapshotType, StopSign},
        util::NodeId,
    };
    #[cfg(feature = "serde")]
    use serde::{Deserialize, Serialize};

    /// A node that lost track of the leader (recovery after a crash, a missed `Prepare`) asks
    /// the leader of ballot `n` to prepare it again.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct PrepareReq {
        /// The ballot of the leader asked.
        pub n: Ballot,
        /// The sender's promise, so that a leader with a lower ballot knows to take a higher one.
        pub n_prom: Ballot,
    }

    /// The leader of ballot `n` asks for a promise, telling how far its own log goes.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct Prepare {
        /// The new leader's ballot.
        pub n: Ballot,
        /// The leader's decided index.
        pub decided_idx: usize,
        /// The ballot in which the leader last accepted.
        pub n_accepted: Ballot,
        /// The end of the leader's log (absolute, including a stop sign).
        pub accepted_idx: usize,
        /// From where the leader knows the runs of forwarded proposals in its log (it may have
        /// restarted): a follower sends those of its log below it.
        pub runs_known_from: usize,
    }

    /// A run of forwarded proposals in the log: entries `idx..idx + len` are the proposals
    /// numbered `seq..seq + len` that node `origin` forwarded in session `session` to the leader
    /// of ballot `n`. Nodes keep these with their logs so that a new leader can tell whether a
    /// proposal whose forward was never acknowledged is already in the log.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct ForwardRun {
        /// Absolute index of the first entry of the run.
        pub idx: usize,
        /// Number of entries.
        pub len: u64,
        /// The node that forwarded them.
        pub origin: NodeId,
        /// The ballot of the leader they were forwarded to.
        pub n: Ballot,
        /// The forwarding session.
        pub session: u64,
        /// Number of the first proposal in the session.
        pub seq: u64,
    }

    /// The runs of forwarded proposals in a stretch of the sender's log, as far as it knows them:
    /// `runs` holds every run from `known_from` on (to the end of the stretch); before that,
    /// entries of the stretch may be forwarded proposals it does not know of.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct ForwardedRuns {
        /// Absolute index from which `runs` is complete.
        pub known_from: usize,
        /// The runs, by index, clipped to the stretch.
        pub runs: Vec<ForwardRun>,
    }

    /// Proposals forwarded earlier to another leader that never acknowledged them: the leader
    /// appends each only if its log does not hold it already.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct PreviousForward {
        /// The ballot of the leader they were forwarded to.
        pub n: Ballot,
        /// The forwarding session there.
        pub session: u64,
        /// Number of the first proposal in that session.
        pub first_seq: u64,
        /// The lowest index at which that leader could have appended them.
        pub min_idx: usize,
    }

    /// Part of a log: the receiver replaces everything from `sync_idx` on with `suffix`
    /// (then the stop sign).
    ///
    /// With a snapshot, the decided prefix up to `sync_idx` is given as a snapshot instead of
    /// entries: a `Complete` one covers `0..sync_idx`; a `Delta` covers `snapshot_from..sync_idx`
    /// and is merged into the receiver's own snapshot of `0..snapshot_from` (its snapshot, plus
    /// its own decided entries after it).
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct LogSync<T: Entry> {
        /// A snapshot of the decided prefix up to `sync_idx`, when the receiver is behind the
        /// sender's compacted prefix.
        pub decided_snapshot: Option<SnapshotType<T>>,
        /// Entries from `sync_idx` on.
        pub suffix: Vec<T>,
        /// Absolute index where `suffix` starts.
        pub sync_idx: usize,
        /// Where a `Delta` snapshot starts: the receiver's decided index it was made for.
        pub snapshot_from: usize,
        /// The stop sign that ends the log, if any.
        pub stopsign: Option<StopSign>,
        /// The forwarded runs in `suffix`; when the sync replaces the receiver's prefix (a
        /// snapshot, a compacted prefix) also those of the decided entries just before
        /// `sync_idx` that the sender still knows.
        pub forwarded: ForwardedRuns,
        /// The sender's log below `sync_idx` is compacted without a snapshot (a trim, or a
        /// predecessor's log it still pulls) and the receiver is behind it: the receiver takes
        /// that prefix as compacted too (decided, without entries).
        pub compacted_prefix: bool,
    }

    /// A follower promises ballot `n` and reports its log beyond what the leader has.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct Promise<T: Entry> {
        /// The promised ballot.
        pub n: Ballot,
        /// The ballot in which the follower last accepted.
        pub n_accepted: Ballot,
        /// The follower's decided index.
        pub decided_idx: usize,
        /// The end of the follower's log (absolute, including a stop sign).
        pub accepted_idx: usize,
        /// The follower's log beyond what the leader reported, if it may be more up to date.
        pub log_sync: Option<Box<LogSync<T>>>,
        /// The forwarding session the follower holds for this ballot (`None` after a restart).
        pub forward_session: Option<u64>,
        /// The runs of the follower's log below `runs_end` (at most the leader's
        /// `Prepare::runs_known_from`), as far as it knows them. The leader takes those of
        /// entries its log shares: decided ones, and those of logs accepted in the same round.
        pub runs: ForwardedRuns,
        /// Where `runs` ends.
        pub runs_end: usize,
    }

    /// The leader sets the follower's log to its own, from `log_sync.sync_idx` on.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct AcceptSync<T: Entry> {
        /// The leader's ballot.
        pub n: Ballot,
        /// The leader's decided index.
        pub decided_idx: usize,
        /// The leader's log from the sync point on (boxed: syncs are rare, and every message
        /// is as large as the largest kind).
        pub log_sync: Box<LogSync<T>>,
        /// The forwarding session the follower uses for proposals to this leader (numbered from
        /// 0: only one incarnation of a follower ever forwards in a ballot, see [`NewBallotReq`]).
        pub forward_session: u64,
    }

    /// The leader streams `entries`, which start at absolute index `start_idx`, and tells its
    /// decided index.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct AcceptDecide<T: Entry> {
        /// The leader's ballot.
        pub n: Ballot,
        /// The leader's decided index.
        pub decided_idx: usize,
        /// Absolute index of the first entry.
        pub start_idx: usize,
        /// The entries.
        pub entries: Vec<T>,
        /// The forwarded runs among the entries.
        pub forwarded: ForwardedRuns,
    }

    /// The leader appends a stop sign at absolute index `idx`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct AcceptStopSign {
        /// The leader's ballot.
        pub n: Ballot,
        /// Absolute index of the stop sign (the end of the log before it).
        pub idx: usize,
        /// The stop sign.
        pub ss: StopSign,
    }

    /// A follower reports how far it has accepted and decided in ballot `n`.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct Accepted {
        /// The leader's ballot.
        pub n: Ballot,
        /// The end of the follower's log (absolute, including a stop sign).
        pub accepted_idx: usize,
        /// The follower's decided index.
        pub decided_idx: usize,
    }

    /// The leader tells its decided index.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct Decide {
        /// The leader's ballot.
        pub n: Ballot,
        /// The leader's decided index.
        pub decided_idx: usize,
    }

    /// The sender has promised a ballot higher than the one it was addressed in.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct NotAccepted {
        /// The ballot the message was addressed in.
        pub n: Ballot,
        /// The sender's promise.
        pub n_prom: Ballot,
    }

    /// A follower of ballot `n` missed part of the stream and asks to be synchronised again.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct ResyncReq {
        /// The leader's ballot.
        pub n: Ballot,
        /// The ballot in which the follower last accepted.
        pub n_accepted: Ballot,
        /// The end of the follower's log.
        pub accepted_idx: usize,
        /// The follower's decided index.
        pub decided_idx: usize,
    }

    /// Proposals appended at a follower, forwarded to the leader of ballot `n`.
    ///
    /// Numbered per forwarding session so that the leader appends each one once, however often
    /// the message is resent or duplicated.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct ProposalForward<T: Entry> {
        /// The ballot of the leader addressed.
        pub n: Ballot,
        /// The forwarding session the leader gave the follower.
        pub session: u64,
        /// Number of the first entry in the session.
        pub first_seq: u64,
        /// The proposals.
        pub entries: Vec<T>,
        /// Set when these proposals were forwarded before to a leader that never acknowledged
        /// them.
        pub previous: Option<PreviousForward>,
        /// The follower has taken in the acknowledgements of all proposals numbered below this
        /// (the leader may forget which of those it gave up).
        pub acked: u64,
    }

    /// The leader is done with the forwarded proposals numbered below `next_seq`: they are in
    /// its log, except those in `given_up`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct ForwardAck {
        /// The leader's ballot.
        pub n: Ballot,
        /// The forwarding session.
        pub session: u64,
        /// All proposals of the session numbered below this are in the leader's log, or given up.
        pub next_seq: u64,
        /// Numbers `start..end` of proposals the leader did not append: forwarded before to a
        /// leader that never acknowledged them, they may be in the log already and the leader
        /// could not tell (it lacks the history, after restarts), or the configuration was
        /// stopped. The follower hands them back to the application as uncertain.
        pub given_up: Vec<(u64, u64)>,
    }

    /// A follower asks the leader of ballot `n` to lead on in a higher ballot, so that it can
    /// forward its proposals.
    ///
    /// A node forwards only in ballots above the one it had promised when it was built (before
    /// a crash, it may have forwarded in that one, and its new proposals could be mistaken for
    /// old ones still in flight). A follower that restarts under the same leader therefore asks
    /// for a new ballot once it has proposals to forward; the leader takes one at once.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct NewBallotReq {
        /// The ballot of the leader asked (the follower's promise).
        pub n: Ballot,
    }

    /// A reconfiguration requested at a follower, forwarded to the leader of ballot `n`.
    #[derive(Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct ForwardStopSign {
        /// The ballot of the leader addressed.
        pub n: Ballot,
        /// The requested stop sign.
        pub ss: StopSign,
    }

    /// A compaction requested by the leader (trim) or any node (snapshot).
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub enum Compaction {
        /// Trim the log below this absolute index.
        Trim(usize),
        /// Snapshot the log below this absolute index (or the decided index).
        Snapshot(Option<usize>),
    }

    /// A compaction request in the configuration of ballot `n`.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct CompactionReq {
        /// The sender's promise (identifies the configuration and the leader).
        pub n: Ballot,
        /// What to compact.
        pub compaction: Compaction,
    }

    /// Identifies the log a migration is about: the log of configuration `config_id`, up to (not
    /// including) its stop sign at index `end`.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct PrefixId {
        /// The configuration that was stopped.
        pub config_id: crate::util::ConfigurationId,
        /// Where its log ends: the index of its stop sign.
        pub end: usize,
    }

    /// Moving the log of a stopped configuration to the servers of the next one. Unlike the
    /// other messages these cross configurations: a server of the old configuration serves the
    /// servers that join.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub enum MigrationMsg<T: Entry> {
        /// "I hold the log `prefix` (compacted below `compacted`, into a snapshot if
        /// `snapshot`); it ended with `stopsign`." Sent until the receiver answers `Done`.
        Offer {
            /// The log offered.
            prefix: PrefixId,
            /// The sender's compacted index.
            compacted: usize,
            /// Whether the sender's compacted part is a snapshot.
            snapshot: bool,
            /// The decided stop sign that ended the log.
            stopsign: StopSign,
        },
        /// Asks for the entries `from..to` of `prefix`.
        Pull {
            /// The log.
            prefix: PrefixId,
            /// First index.
            from: usize,
            /// End index (exclusive).
            to: usize,
        },
        /// Asks for the sender's snapshot of `prefix`.
        PullSnapshot {
            /// The log.
            prefix: PrefixId,
        },
        /// Entries of `prefix` starting at `from`.
        Entries {
            /// The log.
            prefix: PrefixId,
            /// Index of the first entry.
            from: usize,
            /// The entries.
            entries: Vec<T>,
        },
        /// A snapshot of `prefix` covering `0..upto`.
        Snapshot {
            /// The log.
            prefix: PrefixId,
            /// Where the snapshot ends.
            upto: usize,
            /// The snapshot.
            snapshot: T::Snapshot,
        },
        /// The sender cannot serve the request for `prefix` starting at `from` (`None`: its
        /// snapshot).
        Unavailable {
            /// The log.
            prefix: PrefixId,
            /// The start of the refused request.
            from: Option<usize>,
        },
        /// The sender holds `prefix`: stop offering it.
        Done {
            /// The log.
            prefix: PrefixId,
        },
        /// Sent to a server still in configuration `stopped`, which the sender already left:
        /// that configuration is over, and the receiver is a server of `next_config`. `end` is
        /// where the stopped log ended, when the sender knows it (its configuration directly
        /// continues `stopped`); otherwise the receiver waits for `next_config`'s leader to bring
        /// it up to date before it may lead.
        Moved {
            /// The configuration the receiver is still in.
            stopped: crate::util::ConfigurationId,
            /// Where its log ended, if the sender knows.
            end: Option<usize>,
            /// The sender's configuration.
            next_config: crate::ClusterConfig,
        },
    }

    impl<T: Entry> MigrationMsg<T> {
        /// The log the message is about.
        pub fn prefix(&self) -> PrefixId {
            match self {
                MigrationMsg::Offer { prefix, .. }
                | MigrationMsg::Pull { prefix, .. }
                | MigrationMsg::PullSnapshot { prefix }
                | MigrationMsg::Entries { prefix, .. }
                | MigrationMsg::Snapshot { prefix, .. }
                | MigrationMsg::Unavailable { prefix, .. }
                | MigrationMsg::Done { prefix } => *prefix,
                MigrationMsg::Moved { stopped, end, .. } => PrefixId {
                    config_id: *stopped,
                    end: end.unwrap_or(0),
                },
            }
        }
    }

    /// The messages of Sequence Paxos.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    #[allow(missing_docs)]
    pub enum PaxosMsg<T: Entry> {
        PrepareReq(PrepareReq),
        Prepare(Prepare),
        Promise(Promise<T>),
        AcceptSync(AcceptSync<T>),
        AcceptDecide(AcceptDecide<T>),
        AcceptStopSign(AcceptStopSign),
        Accepted(Accepted),
        Decide(Decide),
        NotAccepted(NotAccepted),
        ResyncReq(ResyncReq),
        ProposalForward(ProposalForward<T>),
        ForwardAck(ForwardAck),
        ForwardStopSign(ForwardStopSign),
        NewBallotReq(NewBallotReq),
        Compaction(CompactionReq),
        Migration(MigrationMsg<T>),
    }

    impl<T: Entry> PaxosMsg<T> {
        /// The ballot that identifies the message's configuration and round (for a migration
        /// message: only the configuration of the log it is about).
        pub fn ballot(&self) -> Ballot {
            match self {
                PaxosMsg::PrepareReq(m) => m.n,
                PaxosMsg::Prepare(m) => m.n,
                PaxosMsg::Promise(m) => m.n,
                PaxosMsg::AcceptSync(m) => m.n,
                PaxosMsg::AcceptDecide(m) => m.n,
                PaxosMsg::AcceptStopSign(m) => m.n,
                PaxosMsg::Accepted(m) => m.n,
                PaxosMsg::Decide(m) => m.n,
                PaxosMsg::NotAccepted(m) => m.n,
                PaxosMsg::ResyncReq(m) => m.n,
                PaxosMsg::ProposalForward(m) => m.n,
                PaxosMsg::ForwardAck(m) => m.n,
                PaxosMsg::ForwardStopSign(m) => m.n,
                PaxosMsg::NewBallotReq(m) => m.n,
                PaxosMsg::Compaction(m) => m.n,
                PaxosMsg::Migration(m) => Ballot {
                    config_id: m.prefix().config_id,
                    ..Ballot::default()
                },
            }
        }
    }

    /// A Sequence Paxos message with its sender and receiver.
    #[derive(Clone, Debug)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[cfg_attr(
        feature = "serde",
        serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
    )]
    pub struct PaxosMessage<T: Entry> {
        /// Sender.
        pub from: NodeId,
        /// Receiver.
        pub to: NodeId,
        /// Content.
        pub msg: PaxosMsg<T>,
    }
}

/// Messages of Ballot Leader Election.
pub mod ballot_leader_election {
    use crate::{
        ballot_leader_election::Ballot,
        util::{ConfigurationId, NodeId},
    };
    #[cfg(feature = "serde")]
    use serde::{Deserialize, Serialize};

    /// Asks a peer for its state in heartbeat round `round`.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct HeartbeatRequest {
        /// The configuration of the sender.
        pub config_id: ConfigurationId,
        /// The sender's heartbeat round.
        pub round: u32,
    }

    /// A peer's state, in answer to a request of round `round`.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct HeartbeatReply {
        /// The round of the request answered.
        pub round: u32,
        /// The replier's own ballot.
        pub ballot: Ballot,
        /// The leader the replier follows (`Ballot::default()` if none).
        pub leader: Ballot,
        /// Whether the replier is happy: a leader that reaches a quorum, or a follower of one.
        pub happy: bool,
        /// Whether the replier reached a quorum in its last round.
        pub quorum_connected: bool,
    }

    /// A heartbeat request or reply.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    #[allow(missing_docs)]
    pub enum HeartbeatMsg {
        Request(HeartbeatRequest),
        Reply(HeartbeatReply),
    }

    /// A heartbeat message with its sender and receiver.
    #[derive(Copy, Clone, Debug, PartialEq, Eq)]
    #[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
    pub struct BLEMessage {
        /// Sender.
        pub from: NodeId,
        /// Receiver.
        pub to: NodeId,
        /// Content.
        pub msg: HeartbeatMsg,
    }
}

use crate::storage::Entry;
use ballot_leader_election::BLEMessage;
use sequence_paxos::PaxosMessage;

/// A message between two servers of a configuration.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub enum Message<T: Entry> {
    /// Log replication.
    SequencePaxos(PaxosMessage<T>),
    /// Leader election.
    BLE(BLEMessage),
}

impl<T: Entry> Message<T> {
    /// The sender's pid.
    pub fn get_sender(&self) -> NodeId {
        match self {
            Message::SequencePaxos(m) => m.from,
            Message::BLE(m) => m.from,
        }
    }

    /// The pid to deliver the message to.
    pub fn get_receiver(&self) -> NodeId {
        match self {
            Message::SequencePaxos(m) => m.to,
            Message::BLE(m) => m.to,
        }
    }
}
