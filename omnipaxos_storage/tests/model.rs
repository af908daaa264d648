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

#[test]
fn writes_without_entries_between_appends_do_not_fragment_the_log_for_ever() {
    use omnipaxos::storage::{Storage, StorageOp};
    use omnipaxos_storage::conformance::{entry, same_state};
    // A follower's pattern: an accepted entry, then a decide-only write. Each decide-only
    // write starts a new extent of the log map; past 4,096 extents (and a quarter of the live
    // entries) a rewrite makes the map one extent again.
    let mut t = TempStorage::fresh_deferred();
    let mut m = MemoryStorage::default();
    for i in 0..5_000u64 {
        let ops = || vec![StorageOp::AppendEntry(entry(i))];
        t.write_atomically(ops()).expect("append");
        m.write_atomically(ops()).expect("model");
        let dec = || vec![StorageOp::SetDecidedIndex(i as usize + 1)];
        t.write_atomically(dec()).expect("decide");
        m.write_atomically(dec()).expect("model");
    }
    assert!(same_state(&t, &m));
    let gens: Vec<String> = std::fs::read_dir(t.cfg.get_path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("log-"))
        .collect();
    assert_eq!(gens.len(), 1, "{gens:?}");
    assert_ne!(gens[0], format!("log-{:020}", 1), "a rewrite happened");
    let t = t.reopen();
    assert!(same_state(&t, &m));
}

/// The long tier: `OMNIPAXOS_STORAGE_MODEL_SEEDS` seeds (default 200) of 1,000 operations each
/// on the persistent backend, with reopens and rewrites. Run with
/// `cargo test -p omnipaxos_storage --all-features --release --test model -- --ignored`.
#[test]
#[ignore = "long: run with --ignored"]
fn persistent_storage_matches_model_many_seeds() {
    let seeds: u64 = std::env::var("OMNIPAXOS_STORAGE_MODEL_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for seed in 1_000..1_000 + seeds {
        let mut b = Backend::new(TempStorage::fresh_deferred).with_reopen(TempStorage::reopen);
        model_test(&mut b, seed, 1_000);
    }
}
