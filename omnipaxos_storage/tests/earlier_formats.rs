//! Storages of earlier on-disk format versions, kept in `tests/fixtures`, open with this
//! version, hold what was written, and go on in format version 4 (entries encoded with
//! variable-length integers):
//!
//! * `format2`: one log record per entry, written by omnipaxos_storage at commit d071b34;
//! * `format3`: the entries of a write in one record, written at commit b465d6c.
//!
//! Each has two storages of the same writes:
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
fn earlier_formats_open_and_go_on_in_format4() {
    let mut model = MemoryStorage::default();
    for w in fixture_writes() {
        model.write_atomically(w).expect("model");
    }
    for (format, version) in [("format2", "02"), ("format3", "03")] {
        for which in ["closed", "crashed"] {
            let what = format!("{format}/{which}");
            let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(format)
                .join(which);
            assert_eq!(anchor_version(&fixture), version, "{what}");
            let dir = tempfile::tempdir().expect("tempdir");
            let store = dir.path().join("store");
            copy_dir(&fixture, &store);
            let mut cfg = PersistentStorageConfig::with_path(&store);
            // A rewrite at the first chance: it re-encodes the old entries.
            cfg.set_log_rewrite_threshold(1);
            let mut m = model.clone();

            let mut s = PersistentStorage::<TestEntry>::try_open(cfg.clone())
                .unwrap_or_else(|e| panic!("{what}: open: {e}"));
            assert!(same_state(&s, &m), "{what}: {:?}", observe(&s, 0));
            assert_eq!(anchor_version(&store), "04", "{what}: upgraded when opened");
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
            assert!(same_state(&s, &m), "{what}: {:?}", observe(&s, 0));
            drop(s);
            // Old and new records side by side, read after a reopen.
            let mut s = PersistentStorage::<TestEntry>::try_open(cfg.clone())
                .unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            assert!(same_state(&s, &m), "{what} reopened: {:?}", observe(&s, 0));
            let generations = || {
                fs::read_dir(&store)
                    .expect("read_dir")
                    .filter(|e| {
                        e.as_ref()
                            .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("log-"))
                    })
                    .count()
            };
            let first_log = store.join("log-00000000000000000001");
            assert!(first_log.exists() && generations() == 1, "{what}");
            apply(
                &mut s,
                &mut m,
                vec![StorageOp::Trim(10), StorageOp::SetCompactedIdx(10)],
            );
            apply(
                &mut s,
                &mut m,
                vec![StorageOp::AppendEntries(entries(500..510))],
            );
            // The trim made the old log mostly dead: it was rewritten, old entries included.
            assert!(!first_log.exists(), "{what}: the log was not rewritten");
            assert!(same_state(&s, &m), "{what} rewritten: {:?}", observe(&s, 0));
            drop(s);
            let s = PersistentStorage::<TestEntry>::try_open(cfg)
                .unwrap_or_else(|e| panic!("{what}: open after the rewrite: {e}"));
            assert!(
                same_state(&s, &m),
                "{what} after the rewrite and a reopen: {:?}",
                observe(&s, 0)
            );
            assert_eq!(anchor_version(&store), "04");
        }
    }
}
