//! What the leader knows about one follower in its ballot.
//!
//! ```text
//!                 Promise                      Accepted
//!  Unpromised ───────────────> Promised ───(accept phase: AcceptSync sent)──> Streaming
//!   │  ^ Prepare resent          (prepare phase only;     │   ^   next_idx: next entry to send
//!   │  └─ every resend timeout    kept for the adoption)  │   │   accepted: confirmed end of log
//!   └──── late Promise (accept phase) ───────────────────>┘   │
//!                                      ResyncReq / no progress for a resend timeout:
//!                                      AcceptSync again from `accepted` ─────┘
//! ```
//!
//! A follower leaves these states only when the leader steps down (the whole leader state is
//! dropped with them).

use crate::ballot_leader_election::Ballot;

/// What a follower reported in its promise.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct PromiseInfo {
    pub(crate) n_accepted: Ballot,
    pub(crate) decided_idx: usize,
    pub(crate) accepted_idx: usize,
    /// Below this index its log is still being pulled (0: it holds it all).
    pub(crate) pending_below: usize,
}

/// Replication to a follower that was synchronised (`AcceptSync` sent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stream {
    /// Index of the next entry to send. Invariant: `next_idx <= leader's log end`.
    pub(crate) next_idx: usize,
    /// Whether the stop sign at the end of the leader's log was sent.
    pub(crate) stopsign_sent: bool,
    /// End of the follower's log confirmed in this ballot (`None` until its first `Accepted`).
    /// Invariant: `accepted <= leader's accepted index`.
    pub(crate) accepted: Option<usize>,
    /// Decided index the follower last reported.
    pub(crate) decided_known: usize,
    /// Decided index last sent to it.
    pub(crate) decided_sent: usize,
    /// `accepted` at the previous resend timeout, to tell a stalled follower from a slow one.
    pub(crate) accepted_at_last_check: Option<usize>,
    /// Where its log surely agrees with ours (what the last `AcceptSync` was made for); the
    /// sync is made again from there while unconfirmed.
    pub(crate) sync_idx: usize,
    /// Below this index its log is still being pulled (0: it holds it all): a trim must not
    /// take away what it still pulls.
    pub(crate) pending_below: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    Unpromised,
    Promised(PromiseInfo),
    Streaming(Stream),
}

impl Progress {
    pub(crate) fn stream_mut(&mut self) -> Option<&mut Stream> {
        match self {
            Progress::Streaming(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_promised(&self) -> bool {
        !matches!(self, Progress::Unpromised)
    }
}
