//! Damaged or foreign data: `open` returns a clear error (or, for damage to data it can rebuild,
//! the right state); it never panics and never opens a store that forgot what it stored.

mod common;

use common::small_config;
use omnipaxos::storage::{Entry, NoSnapshot, Storage, StorageOp};
use omnipaxos_storage::{
    conformance::{
        ballot, clone_ops, entry_with_len, observe, same_state, stop_sign, SplitMix64, TestEntry,
        TestSnapshot,
    },
    memory_storage::MemoryStorage,
    persistent_storage::{
        Durability, PersistentStorage, PersistentStorageConfig, PersistentStorageError,
    },
};
use std::{
    fs,
    io::{Read, Seek, SeekFrom, Write},
    panic::{catch_unwind, AssertUnwindSafe},
    path::{Path, PathBuf},
};
use tempfile::TempDir;

/// The writes of [`populate`]: several segments, a trim, promise, snapshot and stop sign, and
/// entries in each of the last writes.
fn writes() -> Vec<Vec<StorageOp<TestEntry>>> {
    let mut w = Vec::new();
    let mut id = 0;
    let mut batch = |n: u64, len: usize| -> Vec<TestEntry> {
        (0..n)
            .map(|_| {
                id += 1;
                entry_with_len(id, len)
            })
            .collect()
    };
    w.push(vec![StorageOp::SetPromise(ballot(2))]);
    for i in 0..12 {
        w.push(vec![
            StorageOp::AppendEntries(batch(100, 700)),
            StorageOp::SetDecidedIndex(i * 100),
        ]);
    }
    w.push(vec![
        StorageOp::SetSnapshot(Some(TestSnapshot {
            count: 150,
            id_sum: 7,
        })),
        StorageOp::Trim(150),
        StorageOp::SetCompactedIdx(150),
    ]);
    w.push(vec![
        StorageOp::SetAcceptedRound(ballot(2)),
        StorageOp::AppendOnPrefix(1000, batch(5, 40)),
    ]);
    w.push(vec![StorageOp::SetStopsign(Some(stop_sign(4)))]);
    for _ in 0..4 {
        w.push(vec![StorageOp::AppendEntries(batch(3, 20))]);
    }
    w
}

struct Populated {
    dir: TempDir,
    cfg: PersistentStorageConfig,
    /// Model after each number of writes.
    models: Vec<MemoryStorage<TestEntry>>,
}

impl Populated {
    fn path(&self) -> PathBuf {
        self.cfg.get_path().to_path_buf()
    }
    fn last(&self) -> &MemoryStorage<TestEntry> {
        self.models.last().expect("models")
    }
    fn open(&self) -> Result<PersistentStorage<TestEntry>, PersistentStorageError> {
        PersistentStorage::try_open(self.cfg.clone())
    }
}

fn populate() -> Populated {
    populate_with(Durability::Immediate)
}

/// `Deferred` skips the syncs (dropping the storage syncs it): for the many rounds of the
/// random damage test. The write tags then do not prove earlier writes committed, so the tests
/// of a database that lost writes use `Immediate`.
fn populate_with(durability: Durability) -> Populated {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = small_config(&dir.path().join("store"));
    cfg.set_durability(durability);
    let mut s = PersistentStorage::<TestEntry>::try_new(cfg.clone()).expect("new");
    let mut m = MemoryStorage::default();
    let mut models = vec![m.clone()];
    for ops in writes() {
        m.write_atomically(clone_ops(&ops)).expect("model");
        s.write_atomically(ops).expect("write");
        models.push(m.clone());
    }
    assert!(same_state(&s, &m));
    Populated { dir, cfg, models }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn log_files(p: &Populated, ext: &str) -> Vec<PathBuf> {
    files_under(&p.path())
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == ext))
        .collect()
}

fn flip(path: &Path, pos: u64) {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(pos)).expect("seek");
    f.read_exact(&mut b).expect("read");
    b[0] ^= 0x10;
    f.seek(SeekFrom::Start(pos)).expect("seek");
    f.write_all(&b).expect("write");
}

fn open_err(p: &Populated) -> PersistentStorageError {
    match p.open() {
        Ok(s) => panic!("damaged storage opened: {:?}", observe(&s, 0)),
        Err(e) => e,
    }
}

#[test]
fn intact_storage_reopens_with_its_state() {
    let p = populate();
    assert!(log_files(&p, "log").len() >= 3, "several segments");
    let s = p.open().expect("open");
    assert!(same_state(&s, p.last()));
}

#[test]
fn truncated_segment_is_refused() {
    let p = populate();
    let segs = log_files(&p, "log");
    let mid = &segs[1];
    let len = fs::metadata(mid).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(mid)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let e = open_err(&p);
    assert!(
        matches!(e, PersistentStorageError::LogTruncated { .. }),
        "{e}"
    );
}

#[test]
fn flipped_bytes_in_a_segment_are_refused() {
    for pos in [2 + 3, 2 + 10, 5000] {
        let p = populate();
        let first = &log_files(&p, "log")[0];
        flip(first, pos);
        let e = open_err(&p);
        assert!(
            matches!(
                e,
                PersistentStorageError::Corrupt { .. }
                    | PersistentStorageError::LogTruncated { .. }
            ),
            "flip at {pos}: {e}"
        );
    }
}

#[test]
fn deleted_segment_is_refused() {
    for which in [0, 1] {
        let p = populate();
        fs::remove_file(&log_files(&p, "log")[which]).expect("remove");
        let e = open_err(&p);
        assert!(
            matches!(e, PersistentStorageError::LogTruncated { .. }),
            "segment {which}: {e}"
        );
    }
}

#[test]
fn damaged_index_files_are_rebuilt() {
    // commitlog panics on a missing, empty or full index; the storage writes them anew.
    let p = populate();
    let idx = log_files(&p, "index");
    assert!(idx.len() >= 3);
    fs::remove_file(&idx[0]).expect("remove");
    fs::write(&idx[1], b"").expect("empty");
    fs::write(&idx[2], vec![0xffu8; 4096]).expect("garbage");
    let s = p.open().expect("open with damaged indexes");
    assert!(same_state(&s, p.last()));
}

#[test]
fn overwritten_database_is_refused() {
    let p = populate();
    let db = p.path().join("db").join("db");
    let len = fs::metadata(&db).expect("meta").len();
    fs::write(&db, vec![0u8; len as usize]).expect("overwrite");
    let e = open_err(&p);
    // sled either notices (Corrupt) or opens an empty database (StateLost, via the anchor).
    assert!(
        matches!(
            e,
            PersistentStorageError::StateLost { .. } | PersistentStorageError::Corrupt { .. }
        ),
        "{e}"
    );
    // The same with a file that sled cannot tell from a fresh one: a zero-length file.
    fs::write(&db, b"").expect("empty");
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            PersistentStorageError::StateLost { .. } | PersistentStorageError::Corrupt { .. }
        ),
        "{e}"
    );
}

#[test]
fn truncated_database_never_opens_older() {
    // sled silently rolls back a truncated file; the anchor and the write tags in the log
    // must catch it, except for the loss of the very last write (indistinguishable from a
    // crash before its commit).
    let p = populate();
    let db = p.path().join("db").join("db");
    let bytes = fs::read(&db).expect("read");
    // sled preallocates its file; the data sits at the start. Cut inside it.
    let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let n = p.models.len() - 1;
    let mut refused = 0;
    for frac in 1..10 {
        fs::write(&db, &bytes[..used * frac / 10]).expect("truncate");
        match p.open() {
            Ok(s) => assert!(
                same_state(&s, &p.models[n]) || same_state(&s, &p.models[n - 1]),
                "truncated to {frac}/10: opened an older state {:?}",
                observe(&s, 0)
            ),
            Err(_) => refused += 1,
        }
        fs::write(&db, &bytes).expect("restore");
        // An open may have cut the log; rebuild the directory for the next round.
        if p.open().is_err() {
            break;
        }
    }
    assert!(refused > 0, "no truncation was refused");
}

#[test]
fn deleted_database_is_refused() {
    let p = populate();
    fs::remove_dir_all(p.path().join("db")).expect("remove");
    let e = open_err(&p);
    assert!(matches!(e, PersistentStorageError::StateLost { .. }), "{e}");
}

#[test]
fn deleted_or_damaged_anchor_is_refused() {
    let p = populate();
    let anchor = p.path().join("anchor");
    let bytes = fs::read(&anchor).expect("read");
    fs::remove_file(&anchor).expect("remove");
    let e = open_err(&p);
    assert!(
        matches!(e, PersistentStorageError::NotAStorage { .. }),
        "{e}"
    );
    fs::write(&anchor, &bytes[..bytes.len() - 1]).expect("write");
    let e = open_err(&p);
    assert!(matches!(e, PersistentStorageError::Corrupt { .. }), "{e}");
    fs::write(&anchor, &bytes).expect("restore");
    p.open().expect("open after restoring the anchor");
}

#[test]
fn files_of_another_storage_are_refused() {
    let a = populate();
    let b = populate();
    // Another node's database.
    let (da, db) = (a.path().join("db"), b.path().join("db"));
    let tmp = a.dir.path().join("db-a");
    fs::rename(&da, &tmp).expect("mv");
    copy_dir(&db, &da);
    let e = open_err(&a);
    assert!(matches!(e, PersistentStorageError::Foreign { .. }), "{e}");
    fs::remove_dir_all(&da).expect("rm");
    fs::rename(&tmp, &da).expect("mv back");
    // Another node's anchor.
    let anchor = a.path().join("anchor");
    let keep = fs::read(&anchor).expect("read");
    fs::copy(b.path().join("anchor"), &anchor).expect("cp");
    let e = open_err(&a);
    assert!(matches!(e, PersistentStorageError::Foreign { .. }), "{e}");
    fs::write(&anchor, keep).expect("restore");
    // Another node's log (same generation name, same entries: only the identity differs).
    let gen_a = log_dir_of(&a);
    let gen_b = log_dir_of(&b);
    fs::remove_dir_all(&gen_a).expect("rm");
    copy_dir(&gen_b, &gen_a);
    let e = open_err(&a);
    assert!(matches!(e, PersistentStorageError::Foreign { .. }), "{e}");
}

fn log_dir_of(p: &Populated) -> PathBuf {
    fs::read_dir(p.path())
        .expect("read_dir")
        .flatten()
        .map(|e| e.path())
        .find(|d| {
            d.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("log-"))
        })
        .expect("log dir")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let t = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &t);
        } else {
            fs::copy(e.path(), t).expect("cp");
        }
    }
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct OtherEntry(u64);

impl Entry for OtherEntry {
    type Snapshot = NoSnapshot;
}

#[test]
fn a_different_entry_type_is_refused() {
    let p = populate();
    let e = PersistentStorage::<OtherEntry>::try_open(p.cfg.clone())
        .map(|_| ())
        .expect_err("opened with another entry type");
    assert!(
        matches!(e, PersistentStorageError::EntryTypeMismatch { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("TestEntry"), "{e}");
}

#[test]
fn new_refuses_existing_data_and_open_refuses_foreign_directories() {
    let p = populate();
    let e = PersistentStorage::<TestEntry>::try_new(p.cfg.clone())
        .map(|_| ())
        .expect_err("new on existing data");
    assert!(
        matches!(e, PersistentStorageError::AlreadyExists { .. }),
        "{e}"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("notes.txt"), b"mine").expect("write");
    let e = PersistentStorage::<TestEntry>::try_open(small_config(dir.path()))
        .map(|_| ())
        .expect_err("open on a foreign directory");
    assert!(
        matches!(e, PersistentStorageError::NotAStorage { .. }),
        "{e}"
    );
    let e = PersistentStorage::<TestEntry>::try_open(small_config(&dir.path().join("notes.txt")))
        .map(|_| ())
        .expect_err("open on a file");
    assert!(
        matches!(e, PersistentStorageError::NotAStorage { .. }),
        "{e}"
    );
    // An empty directory is a fine place for a new storage.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    PersistentStorage::<TestEntry>::try_new(small_config(&empty)).expect("new in empty dir");
}

#[test]
fn second_instance_on_the_same_directory_is_refused() {
    let p = populate();
    let _first = p.open().expect("open");
    let e = p.open().map(|_| ()).expect_err("second open");
    assert!(matches!(e, PersistentStorageError::Database(_)), "{e}");
}

#[test]
fn random_damage_gives_an_error_or_the_right_state() {
    let mut rng = SplitMix64::new(42);
    let (mut refused, mut intact) = (0, 0);
    for round in 0..40 {
        let p = populate_with(Durability::Deferred);
        let files = files_under(&p.path());
        let f = &files[rng.below(files.len() as u64) as usize];
        let len = fs::metadata(f).expect("meta").len();
        let what = match rng.below(4) {
            0 => {
                let at = rng.below(len.max(1));
                fs::OpenOptions::new()
                    .write(true)
                    .open(f)
                    .expect("open")
                    .set_len(at)
                    .expect("truncate");
                format!("truncate {} to {at}", f.display())
            }
            1 if len > 0 => {
                let at = rng.below(len);
                flip(f, at);
                format!("flip byte {at} of {}", f.display())
            }
            2 if len > 0 => {
                let at = rng.below(len);
                let n = 4096.min(len - at);
                let mut h = fs::OpenOptions::new().write(true).open(f).expect("open");
                h.seek(SeekFrom::Start(at)).expect("seek");
                let junk: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                h.write_all(&junk).expect("write");
                format!("overwrite {n} bytes at {at} of {}", f.display())
            }
            _ => {
                fs::remove_file(f).expect("remove");
                format!("delete {}", f.display())
            }
        };
        let n = p.models.len() - 1;
        match catch_unwind(AssertUnwindSafe(|| p.open())) {
            Err(_) => panic!("round {round}: open panicked after: {what}"),
            Ok(Err(_)) => refused += 1,
            Ok(Ok(s)) => {
                assert!(
                    same_state(&s, &p.models[n]) || same_state(&s, &p.models[n - 1]),
                    "round {round}: after {what}, opened a wrong state {:?}",
                    observe(&s, 0)
                );
                intact += 1;
            }
        }
    }
    assert!(
        refused > 0 && intact > 0,
        "refused {refused}, intact {intact}"
    );
}
