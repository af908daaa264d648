//! Random operation sequences against `MemoryStorage` as the model (with reopens for the
//! persistent backend).

mod common;

use common::TempStorage;
use omnipaxos_storage::{
    conformance::{model_test, Backend},
    memory_storage::MemoryStorage,
};

#[test]
fn memory_storage_matches_model() {
    // The model against itself: checks the generator and the comparison, and that batches
    // with an invalid op fail whole (check_ops) the same way as the single setters.
    for seed in 0..20 {
        model_test(&mut Backend::new(MemoryStorage::default), seed, 500);
    }
}

#[test]
fn persistent_storage_matches_model() {
    // With the syncs of the default durability (three per write, slow on a busy disk).
    let mut b = Backend::new(TempStorage::fresh).with_reopen(TempStorage::reopen);
    model_test(&mut b, 100, 200);
    // Longer runs without them: the same code otherwise.
    for seed in 0..4 {
        let mut b = Backend::new(TempStorage::fresh_deferred).with_reopen(TempStorage::reopen);
        model_test(&mut b, seed, 500);
    }
}
