//! Storages of on-disk format version 2 (one log record per entry), written by
//! omnipaxos_storage at commit d071b34 and kept in `tests/fixtures/format2`, open with this
//! version, hold what was written, and go on in format version 3 (records of several
//! entries).
//!
//! * `closed`: the storage was dropped normally after its writes (a checkpoint covers them).
//! * `crashed`: the directory was copied while the storage was open, as a crash leaves it (the
//!   writes are rolled forward from the log).
//!
//! The commitlog index files are left out of the fixtures: `open` writes them anew anyway.

mod common;

use common::copy_dir;
use omnipaxos::storage::{Snapshot, Storage, StorageOp};
use omnipaxos_storage::{
    conformance::{ballot, clone_ops, entries, observe, same_state, TestEntry, TestSnapshot},
    memory_storage::MemoryStorage,
    persistent_storage::{PersistentStorage, PersistentStorageConfig},
};
use std::{fs, path::Path};

/// The writes the fixtures hold, in order (the program that wrote them did exactly these).
fn fixture_writes() -> Vec<Vec<StorageOp<TestEntry>>> {
    vec![
        vec![StorageOp::SetPromise(ballot(2))],
        vec![
            StorageOp::AppendEntries(entries(0..10)),
            StorageOp::SetAcceptedRound(ballot(2)),
        ],
        vec![
            StorageOp::AppendEntries(entries(10..13)),
            StorageOp::SetDecidedIndex(8),
        ],
        vec![StorageOp::SetPromise(ballot(5))],
        vec![
            StorageOp::AppendOnPrefix(11, entries(100..104)),
            StorageOp::SetAcceptedRound(ballot(5)),
        ],
        vec![
            StorageOp::SetSnapshot(Some(TestSnapshot::create(&entries(0..4)))),
            StorageOp::Trim(4),
            StorageOp::SetCompactedIdx(4),
        ],
        vec![
            StorageOp::AppendEntry(entries(104..105).remove(0)),
            StorageOp::SetDecidedIndex(13),
        ],
    ]
}

/// The format version in the anchor's magic (`OPXANC` and two digits, after the 4-byte CRC).
fn anchor_version(store: &Path) -> String {
    let bytes = fs::read(store.join("anchor")).expect("anchor");
    String::from_utf8_lossy(&bytes[10..12]).into_owned()
}

fn apply(
    s: &mut PersistentStorage<TestEntry>,
    m: &mut MemoryStorage<TestEntry>,
    ops: Vec<StorageOp<TestEntry>>,
) {
    m.write_atomically(clone_ops(&ops)).expect("model");
    s.write_atomically(ops).expect("write");
}

#[test]
fn format2_storages_open_and_go_on_in_format3() {
    let mut model = MemoryStorage::default();
    for w in fixture_writes() {
        model.write_atomically(w).expect("model");
    }
    for which in ["closed", "crashed"] {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format2");
        assert_eq!(anchor_version(&fixture.join(which)), "02", "{which}");
        let dir = tempfile::tempdir().expect("tempdir");
        let store = dir.path().join("store");
        copy_dir(&fixture.join(which), &store);
        let cfg = PersistentStorageConfig::with_path(&store);
        let mut m = model.clone();

        let mut s = PersistentStorage::<TestEntry>::try_open(cfg.clone()).expect("open format 2");
        assert!(same_state(&s, &m), "{which}: {:?}", observe(&s, 0));
        assert_eq!(
            anchor_version(&store),
            "03",
            "{which}: upgraded when opened"
        );
        // New writes: a batch (one record of several entries), a truncation into the old
        // records, a trim across old and new ones.
        apply(
            &mut s,
            &mut m,
            vec![
                StorageOp::AppendEntries(entries(200..300)),
                StorageOp::SetDecidedIndex(20),
            ],
        );
        apply(
            &mut s,
            &mut m,
            vec![StorageOp::AppendOnPrefix(12, entries(400..450))],
        );
        apply(
            &mut s,
            &mut m,
            vec![StorageOp::Trim(10), StorageOp::SetCompactedIdx(10)],
        );
        assert!(same_state(&s, &m), "{which}: {:?}", observe(&s, 0));
        drop(s);
        let s = PersistentStorage::<TestEntry>::try_open(cfg).expect("reopen");
        assert!(
            same_state(&s, &m),
            "{which} after reopening: {:?}",
            observe(&s, 0)
        );
        assert_eq!(anchor_version(&store), "03");
    }
}
