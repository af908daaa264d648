//! A deterministic simulator for OmniPaxos clusters.
//!
//! One seeded, single-threaded harness drives `n` nodes on virtual ticks over a network that
//! loses, duplicates, delays and reorders messages, cuts links (also one way, and in the paper's
//! partial-connectivity shapes), pauses nodes, skews their clocks, and crashes and restarts them
//! on what their storage durably holds. After every step it checks the safety invariants
//! (see [`checker`]), and a simulated application on every node applies what it decided the way
//! a real one does (see [`app`]). A failing run panics with the command that replays its seed; the same seed
//! always gives the same run.
//!
//! ```
//! use omnipaxos_sim::{Sim, SimConfig, SimEntry};
//!
//! let mut sim: Sim<SimEntry, _> = Sim::new(SimConfig::new(3, 7));
//! sim.run_until(200, |s| s.leader().is_some()).expect("a leader is elected");
//! let leader = sim.leader().unwrap();
//! sim.append(leader, SimEntry { id: 1 }).unwrap();
//! sim.run_until(100, |s| s.pids().all(|p| s.decided(p) == 1)).expect("decided everywhere");
//! ```

#![warn(missing_docs)]

pub mod app;
pub mod checker;
pub mod cluster;
pub mod disk;
pub mod entry;
pub mod inspect;
pub mod network;
pub mod randomized;
pub mod rng;

pub use cluster::{
    AppendRecord, AppendReport, Backend, MemoryBackend, Shared, Sim, SimConfig, SimStats,
};
pub use disk::DiskBackend;
pub use entry::{FromTag, PlainEntry, SimEntry, SimSnapshot, Tagged};
pub use network::{Faults, Verdict};
pub use rng::Rng;
