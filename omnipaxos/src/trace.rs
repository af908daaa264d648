//! What the library reports: its `tracing` events (feature `tracing`) and, with `logging`, the
//! dispatcher a node's calls run under.
//!
//! Every event is emitted through [`report!`], which names it (`name`), files it under a target
//! `omnipaxos::<area>` and, without the feature `tracing`, expands to nothing: the core is
//! unchanged and pays nothing. The events, their levels and fields are listed in the guide
//! (`docs/src/feature-flags.md`); the state changes are found by the node's observer
//! (`node::observe`), the rest where they happen.

/// Emits the library event `area::name` at `LEVEL` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`)
/// with the given fields and message, as `tracing::event!` does, under the target
/// `omnipaxos::area`. Without the feature `tracing` it expands to nothing, so the fields must
/// be plain reads (nothing that the code needs evaluated).
///
/// `report!(INFO, election::following; pid = 1, leader = 2, "following a new leader")`
///
/// `core = <expr>` first among the fields adds the fields `pid` and `config_id` of that
/// `node::core::Core`. (The `;` keeps rustfmt away from the call: it lays out the fields as
/// written, so a call stays a few lines.)
macro_rules! report {
    ($level:ident, $area:ident :: $name:ident; core = $core:expr, $($rest:tt)+) => {
        report!($level, $area::$name; pid = $core.pid, config_id = $core.config_id(), $($rest)+)
    };
    ($level:ident, $area:ident :: $name:ident; $($rest:tt)+) => {
        #[cfg(feature = "tracing")]
        {
            ::tracing::event!(
                name: stringify!($name),
                target: concat!("omnipaxos::", stringify!($area)),
                ::tracing::Level::$level,
                $($rest)+
            );
        }
    };
}

/// Reports the heartbeat round the election (`ble::Ble`, given as `$ble`) just evaluated, as
/// the operator sees it: a leader that lost or regained its quorum (check-quorum), a follower
/// whose leader went silent. `$was_happy`: whether the node was happy before the round;
/// `$leader_silent`: the leader sent no reply in it. A macro, to read the election's fields
/// where they are private.
macro_rules! report_election_round {
    ($ble:expr, $was_happy:expr, $leader_silent:expr) => {
        #[cfg(feature = "tracing")]
        {
            let b = &$ble;
            let (pid, config_id, leader) = (b.pid, b.config_id, b.leader);
            // Servers heard in the round, this one included.
            let heard = b.rnd.replies.len() + 1;
            if b.is_leader() && $was_happy && !b.happy {
                report!(WARN, election::quorum_lost; pid, config_id, ballot = leader.n, heard,
                    "this leader did not hear from a quorum in the last election round: it does \
                     not serve until it does, and may be replaced");
            } else if b.is_leader() && !$was_happy && b.happy {
                report!(INFO, election::quorum_regained; pid, config_id, ballot = leader.n, heard,
                    "this leader hears from a quorum again");
            } else if $was_happy && !b.happy && $leader_silent {
                report!(WARN, election::leader_unreachable; pid, config_id, leader = leader.pid,
                    ballot = leader.n, heard,
                    "the leader did not answer in the last election round");
            }
        }
    };
}

/// The dispatcher the calls into one node run under: with the feature `logging`, the one of
/// its `ServerConfig::custom_logger` or `logger_file_path` (see
/// [`crate::utils::logger::dispatch_for`]); nothing otherwise (an empty type, and entering it
/// does nothing).
#[derive(Default)]
pub(crate) struct NodeDispatch {
    #[cfg(feature = "logging")]
    dispatch: Option<tracing::Dispatch>,
}

/// A node's dispatcher, entered for the length of one call (see [`NodeDispatch::enter`]).
pub(crate) struct Entered {
    #[cfg(feature = "logging")]
    _guard: Option<tracing::dispatcher::DefaultGuard>,
}

impl NodeDispatch {
    /// The dispatcher of a node built with `config`.
    pub(crate) fn for_server(config: &crate::ServerConfig) -> Self {
        #[cfg(not(feature = "logging"))]
        let _ = config;
        NodeDispatch {
            #[cfg(feature = "logging")]
            dispatch: crate::utils::logger::dispatch_for(config),
        }
    }

    /// Makes the node's dispatcher this thread's default until the result is dropped, so that
    /// the events of the call reach the node's logger. A reference count and a thread-local
    /// swap when the node has a logger; nothing when it has none or without `logging`.
    #[inline]
    #[must_use = "the dispatcher is left when the result is dropped"]
    pub(crate) fn enter(&self) -> Entered {
        Entered {
            #[cfg(feature = "logging")]
            _guard: self.dispatch.as_ref().map(tracing::dispatcher::set_default),
        }
    }
}
