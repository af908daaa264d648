//! The conformance suite against both backends of this crate.

mod common;

mod memory {
    use omnipaxos_storage::{conformance::Backend, memory_storage::MemoryStorage};

    omnipaxos_storage::storage_conformance_tests!(Backend::new(MemoryStorage::default));
}

mod persistent {
    use crate::common::TempStorage;
    use omnipaxos_storage::conformance::Backend;

    omnipaxos_storage::storage_conformance_tests!(
        Backend::new(TempStorage::fresh).with_reopen(TempStorage::reopen)
    );
}

/// `run_all` is what users call for a one-test setup; it must run on both backends too.
#[test]
fn run_all_on_memory_storage() {
    use omnipaxos_storage::{conformance, memory_storage::MemoryStorage};
    conformance::run_all(&mut conformance::Backend::new(MemoryStorage::default));
}
