//! omnipaxos 0.2.4's `utils` module: the dashboard's states ([`ui`]) and the `slog` logger
//! helpers (`logger`, feature `logging`). The crate's own small types are in [`crate::util`].

#[cfg(feature = "logging")]
pub mod logger;
pub mod ui;
