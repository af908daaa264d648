//! Messages of the succession room: how a configuration's log reaches the servers of the next
//! one. They cross configurations: a server of one configuration serves the servers of another.
//!
//! Decided entries are the same at the same index on every server of every configuration (each
//! configuration's log continues the one before), so pulls name indices of that one shared log.

use super::fmt_entries;
use crate::{node::record::Stop, storage::Entry, util::ConfigurationId};
#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a server holds of the shared log, and the stops it knows.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
pub(crate) struct Offer {
    /// The configuration the offer answers (the asker's).
    pub(crate) about: ConfigurationId,
    /// Stops the sender knows, oldest first; the one of `about`, when it knows it, among them.
    pub(crate) chain: Vec<Stop>,
    /// The sender holds the decided log from `held_from` to `held_to` (as entries, and below
    /// `held_from` as a snapshot when `snapshot`).
    pub(crate) held_from: usize,
    pub(crate) held_to: usize,
    pub(crate) snapshot: bool,
    /// The sender's log below `held_from` was trimmed by the application (not pending).
    pub(crate) trimmed: bool,
}

#[derive(Clone, Debug)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(bound = "T: Serialize + for<'a> Deserialize<'a>")
)]
pub(crate) enum SuccessionMsg<T: Entry> {
    /// "Where does the log of configuration `config_id` start, and who holds what?" Sent by a
    /// server that joined and does not know yet.
    Ask {
        config_id: ConfigurationId,
    },
    Offer(Offer),
    /// Asks for the decided entries `from..to` of the shared log.
    Pull {
        from: usize,
        to: usize,
    },
    /// Asks for the sender's snapshot.
    PullSnapshot,
    /// Decided entries of the shared log, starting at `from`.
    Entries {
        from: usize,
        entries: Vec<T>,
    },
    /// A snapshot of the decided log `0..upto`.
    Snapshot {
        upto: usize,
        snapshot: T::Snapshot,
    },
    /// The sender cannot serve the pull starting at `from` (`None`: its snapshot); it holds
    /// the decided entries `held_from..held_to`.
    Unavailable {
        from: Option<usize>,
        held_from: usize,
        held_to: usize,
    },
    /// The sender knows where its log starts: stop offering.
    Done,
}

impl<T: Entry> SuccessionMsg<T> {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            SuccessionMsg::Ask { .. } => "Ask",
            SuccessionMsg::Offer(_) => "Offer",
            SuccessionMsg::Pull { .. } => "Pull",
            SuccessionMsg::PullSnapshot => "PullSnapshot",
            SuccessionMsg::Entries { .. } => "Entries",
            SuccessionMsg::Snapshot { .. } => "Snapshot",
            SuccessionMsg::Unavailable { .. } => "Unavailable",
            SuccessionMsg::Done => "Done",
        }
    }
}

impl<T: Entry> fmt::Display for SuccessionMsg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SuccessionMsg::Ask { config_id } => write!(f, "Ask config={config_id}"),
            SuccessionMsg::Offer(o) => {
                write!(
                    f,
                    "Offer about={} held={}..{}",
                    o.about, o.held_from, o.held_to
                )?;
                if o.snapshot {
                    f.write_str(" snapshot")?;
                }
                if o.trimmed {
                    f.write_str(" trimmed")?;
                }
                for s in &o.chain {
                    write!(f, " stop(c{}@{})", s.config_id(), s.end)?;
                }
                Ok(())
            }
            SuccessionMsg::Pull { from, to } => write!(f, "Pull {from}..{to}"),
            SuccessionMsg::PullSnapshot => f.write_str("PullSnapshot"),
            SuccessionMsg::Entries { from, entries } => {
                write!(f, "Entries @{from} {}", fmt_entries(entries))
            }
            SuccessionMsg::Snapshot { upto, .. } => write!(f, "Snapshot upto={upto}"),
            SuccessionMsg::Unavailable {
                from,
                held_from,
                held_to,
            } => match from {
                Some(a) => write!(f, "Unavailable @{a} held={held_from}..{held_to}"),
                None => write!(f, "Unavailable snapshot held={held_from}..{held_to}"),
            },
            SuccessionMsg::Done => f.write_str("Done"),
        }
    }
}
