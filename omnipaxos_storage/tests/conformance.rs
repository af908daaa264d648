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

#[test]
fn run_all_on_persistent_storage() {
    use omnipaxos_storage::conformance;
    conformance::run_all(
        &mut conformance::Backend::new(common::TempStorage::fresh)
            .with_reopen(common::TempStorage::reopen),
    );
}

/// A backend written for omnipaxos 0.2.4: it keeps the trait's defaults for the node record.
mod legacy {
    use omnipaxos::{
        ballot_leader_election::Ballot,
        storage::{StopSign, Storage, StorageOp, StorageResult},
    };
    use omnipaxos_storage::{
        conformance::{self, Backend, TestEntry, TestSnapshot},
        memory_storage::MemoryStorage,
    };

    #[derive(Default)]
    pub struct Legacy(MemoryStorage<TestEntry>);

    impl Storage<TestEntry> for Legacy {
        fn write_atomically(&mut self, ops: Vec<StorageOp<TestEntry>>) -> StorageResult<()> {
            self.0.write_atomically(ops)
        }
        fn get_decided_idx(&self) -> StorageResult<usize> {
            self.0.get_decided_idx()
        }
        fn get_accepted_round(&self) -> StorageResult<Option<Ballot>> {
            self.0.get_accepted_round()
        }
        fn get_entries(&self, from: usize, to: usize) -> StorageResult<Vec<TestEntry>> {
            self.0.get_entries(from, to)
        }
        fn get_log_len(&self) -> StorageResult<usize> {
            self.0.get_log_len()
        }
        fn get_suffix(&self, from: usize) -> StorageResult<Vec<TestEntry>> {
            self.0.get_suffix(from)
        }
        fn get_promise(&self) -> StorageResult<Option<Ballot>> {
            self.0.get_promise()
        }
        fn get_stopsign(&self) -> StorageResult<Option<StopSign>> {
            self.0.get_stopsign()
        }
        fn get_compacted_idx(&self) -> StorageResult<usize> {
            self.0.get_compacted_idx()
        }
        fn get_snapshot(&self) -> StorageResult<Option<TestSnapshot>> {
            self.0.get_snapshot()
        }
    }

    // Declared legacy: the whole suite passes.
    omnipaxos_storage::storage_conformance_tests!(Backend::new(Legacy::default).legacy());

    #[test]
    fn undeclared_legacy_backend_fails_only_the_dedicated_check() {
        let mut b = Backend::new(Legacy::default);
        assert!(conformance::is_legacy_backend(&mut b));
        // The other node-record checks skip it, and the model test runs without records.
        conformance::node_record_fresh_is_none(&mut b);
        conformance::node_record_written_with_ops(&mut b);
        conformance::node_record_refused_batch_keeps_old(&mut b);
        conformance::model_test(&mut b, 3, 200);
        let err = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            conformance::node_record_supported(&mut b)
        }))
        .expect_err("an undeclared legacy backend fails node_record_supported");
        let msg = err
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        assert!(msg.contains("legacy backend"), "{msg}");
    }

    #[test]
    fn memory_storage_is_not_a_legacy_backend() {
        assert!(!conformance::is_legacy_backend(&mut Backend::new(
            MemoryStorage::<TestEntry>::default
        )));
        assert!(!conformance::is_legacy_backend(&mut Backend::new(
            crate::common::TempStorage::fresh
        )));
    }
}
