//! Storage backends for OmniPaxos.
#![warn(missing_docs)]

pub mod memory_storage;
