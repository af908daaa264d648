//! Damaged or foreign data: `open` returns a clear error (or, for damage to data it can rebuild,
//! the right state); it never panics and never opens a store that forgot what it stored.

mod common;

use common::{copy_dir, small_config};
use omnipaxos::storage::{Entry, NoSnapshot, Storage, StorageOp};
use omnipaxos_storage::{
    conformance::{
        ballot, clone_ops, entries, entry, entry_with_len, observe, same_state, stop_sign,
        SplitMix64, TestEntry, TestSnapshot,
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

/// CRC-32C (Castagnoli), bit by bit: to forge an anchor of another format version.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
        }
    }
    !c
}

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
    // sled silently rolls back a truncated file: to an older checkpoint (harmless: the log is
    // rolled forward from it, to the same state) or to none (refused, `StateLost`).
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

/// A record of a segment file: byte position, offset, size (metadata and payload), and
/// whether it carries a commit mark (ends a write).
#[derive(Debug, Clone, Copy)]
struct Rec {
    pos: u64,
    offset: u64,
    size: u64,
    commit: bool,
}

fn records_of(segment: &Path) -> Vec<Rec> {
    let b = fs::read(segment).expect("read segment");
    let mut out = Vec::new();
    let mut p = 2usize;
    while p + 20 <= b.len() {
        let offset = u64::from_le_bytes(b[p..p + 8].try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(b[p + 8..p + 12].try_into().expect("4 bytes")) as u64;
        let meta = u16::from_le_bytes([b[p + 18], b[p + 19]]);
        out.push(Rec {
            pos: p as u64,
            offset,
            size,
            commit: meta >= 16,
        });
        p += 20 + size as usize;
    }
    out
}

/// What a crash leaves: the writes applied (`Immediate`) to a fresh storage whose directory is
/// then copied while it is still open (so no checkpoint covers them), in one segment.
struct CrashImage {
    _dir: TempDir,
    cfg: PersistentStorageConfig,
    models: Vec<MemoryStorage<TestEntry>>,
    segment: PathBuf,
    /// The records of the writes (after the checkpoint the storage wrote when it was opened).
    records: Vec<Rec>,
}

impl CrashImage {
    fn open(&self) -> Result<PersistentStorage<TestEntry>, PersistentStorageError> {
        PersistentStorage::try_open(self.cfg.clone())
    }
    /// Opening fails with `Corrupt` (`what` names the damage in the failure message).
    fn assert_refused(&self, what: &str) {
        match self.open() {
            Ok(s) => panic!("{what}: opened {:?}", observe(&s, 0)),
            Err(e) => assert!(
                matches!(e, PersistentStorageError::Corrupt { .. }),
                "{what}: {e}"
            ),
        }
    }
    /// The records of write `w` (1-based).
    fn write(&self, w: usize) -> Vec<Rec> {
        let mut groups = vec![Vec::new()];
        for r in &self.records {
            groups.last_mut().expect("group").push(*r);
            if r.commit {
                groups.push(Vec::new());
            }
        }
        groups[w - 1].clone()
    }
    fn cut_at(&self, pos: u64) {
        fs::OpenOptions::new()
            .write(true)
            .open(&self.segment)
            .expect("open")
            .set_len(pos)
            .expect("truncate");
    }
}

fn crash_image(writes: Vec<Vec<StorageOp<TestEntry>>>) -> CrashImage {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = small_config(&dir.path().join("store"));
    cfg.set_checkpoint_interval(1_000_000);
    let mut s = PersistentStorage::<TestEntry>::try_new(cfg.clone()).expect("new");
    let base = {
        let segs: Vec<PathBuf> = files_under(cfg.get_path())
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "log"))
            .collect();
        assert_eq!(segs.len(), 1);
        records_of(&segs[0]).len()
    };
    let mut m = MemoryStorage::default();
    let mut models = vec![m.clone()];
    for ops in writes {
        m.write_atomically(clone_ops(&ops)).expect("model");
        s.write_atomically(ops).expect("write");
        models.push(m.clone());
    }
    let image = dir.path().join("image");
    copy_dir(cfg.get_path(), &image);
    drop(s);
    cfg.set_path(&image);
    let segs: Vec<PathBuf> = files_under(&image)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "log"))
        .collect();
    assert_eq!(segs.len(), 1, "one segment");
    let records = records_of(&segs[0]).split_off(base);
    assert!(
        records
            .windows(2)
            .all(|w| w[1].offset == w[0].offset + 1 && w[1].pos == w[0].pos + 20 + w[0].size),
        "records parsed: {records:?}"
    );
    CrashImage {
        _dir: dir,
        cfg,
        models,
        segment: segs[0].clone(),
        records,
    }
}

fn appends(n: usize) -> Vec<Vec<StorageOp<TestEntry>>> {
    (0..n as u64)
        .map(|i| {
            vec![
                StorageOp::AppendEntries(entries(i * 3..i * 3 + 3)),
                StorageOp::SetDecidedIndex(i as usize * 3),
            ]
        })
        .collect()
}

#[test]
fn damage_followed_by_later_writes_is_refused_after_a_crash() {
    // A flipped payload byte, and a flipped byte in a record's size field (which loses the
    // framing: later commits are found by searching byte by byte).
    for (what, field) in [("payload", 25u64), ("size field", 9)] {
        let img = crash_image(appends(5));
        let victim = img.write(2)[0];
        flip(&img.segment, victim.pos + field);
        img.assert_refused(what);
    }
}

/// `n` writes of three entries of `len` bytes each, and a decided index.
fn appends_of(n: usize, len: usize) -> Vec<Vec<StorageOp<TestEntry>>> {
    (0..n as u64)
        .map(|i| {
            let batch = (i * 3..i * 3 + 3)
                .map(|id| entry_with_len(id, len))
                .collect();
            vec![
                StorageOp::AppendEntries(batch),
                StorageOp::SetDecidedIndex(i as usize * 3),
            ]
        })
        .collect()
}

#[test]
fn a_torn_last_write_is_cut_off() {
    // Writes of three small entries (one record each: the entries of a write share a
    // record), and of three entries too large to share one (two records per write: 20 KiB
    // entries, records filled up to 64 KiB; three writes stay in one segment).
    for (len, records, n) in [(8, 1, 5), (24 << 10, 2, 3)] {
        // The file ends inside the last write's group, or its last record is damaged.
        for damage in 0..3 {
            let img = crash_image(appends_of(n, len));
            let last = img.write(n);
            assert_eq!(last.len(), records, "records of a write of {len} B entries");
            match damage {
                0 => img.cut_at(last[0].pos + 7),
                1 => img.cut_at(last[last.len() - 1].pos + 3),
                _ => flip(&img.segment, last[last.len() - 1].pos + 30),
            }
            let s = img.open().expect("a torn last write opens");
            assert!(
                same_state(&s, &img.models[n - 1]),
                "{len} B, damage {damage}: {:?}",
                observe(&s, 0)
            );
            // And the storage goes on from there.
            let mut s = s;
            s.append_entry(entry(999)).expect("append after the cut");
        }
    }
}

#[test]
fn damage_inside_a_record_of_several_entries_is_found() {
    // Every byte of the second write's record (three entries in one record) flipped in turn:
    // commitlog's checksum of the record covers the count, the table of entry ends and the
    // entries, so each flip is found (the later writes make it damage, not a torn end).
    let base = crash_image(appends(4));
    let victim = base.write(2);
    assert_eq!(victim.len(), 1, "one record for the write's three entries");
    let rec = victim[0];
    for at in 20..20 + rec.size {
        let img = crash_image(appends(4));
        flip(&img.segment, rec.pos + at);
        img.assert_refused(&format!("byte {at}"));
    }
}

#[test]
fn a_cut_that_loses_the_promise_is_refused() {
    let writes = || {
        vec![
            vec![StorageOp::AppendEntries(entries(0..2))],
            vec![StorageOp::SetPromise(ballot(4))],
            vec![StorageOp::AppendEntries(entries(2..4))],
            vec![StorageOp::AppendEntries(entries(4..6))],
        ]
    };
    // Cut at the promise's write: the anchor knows that write was under way after write 1
    // committed, so a state without the promise is only allowed right after write 1 ... which
    // is what a crash during write 2 leaves. Cut one write earlier: refused.
    let img = crash_image(writes());
    img.cut_at(img.write(1)[0].pos);
    let e = img
        .open()
        .map(|_| ())
        .expect_err("lost the write before the promise");
    assert!(
        matches!(e, PersistentStorageError::StateRolledBack { .. }),
        "{e}"
    );
    let img = crash_image(writes());
    img.cut_at(img.write(2)[0].pos);
    let s = img.open().expect("a crash during the promise's write");
    assert!(same_state(&s, &img.models[1]), "{:?}", observe(&s, 0));
    // A cut after the promise is not found (see the module documentation), but the promise
    // stays.
    let img = crash_image(writes());
    img.cut_at(img.write(3)[0].pos);
    let s = img.open().expect("cut after the promise");
    assert!(same_state(&s, &img.models[2]), "{:?}", observe(&s, 0));
}

#[test]
fn a_closed_storage_finds_any_cut_of_its_log() {
    let p = populate();
    let segs = log_files(&p, "log");
    let last = segs.last().expect("segment");
    let recs = records_of(last);
    // Cut at the start of the last write's group: a crash could leave this, but the storage
    // was closed (a checkpoint names the end).
    let start = recs
        .iter()
        .rev()
        .skip(1)
        .find(|r| r.commit)
        .map(|r| r.pos + 20 + r.size)
        .expect("two writes in the last segment");
    fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open")
        .set_len(start)
        .expect("truncate");
    let e = open_err(&p);
    assert!(
        matches!(e, PersistentStorageError::LogTruncated { .. }),
        "{e}"
    );
}

#[test]
fn directories_of_another_format_are_refused_with_its_version() {
    // Format version 1 (the anchor of the 0.3 development versions starts `OPXANC01`).
    let p = populate();
    let anchor = p.path().join("anchor");
    let mut body = b"OPXANC01".to_vec();
    body.extend_from_slice(&[0u8; 40]);
    let crc = crc32c(&body);
    let mut sealed = crc.to_le_bytes().to_vec();
    sealed.extend_from_slice(&body);
    fs::write(&anchor, sealed).expect("write");
    let e = open_err(&p);
    assert!(
        matches!(
            e,
            PersistentStorageError::UnsupportedFormat { supported: 4, .. }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("format version 1") && msg.contains("format versions 2 to 4"),
        "{msg}"
    );
    // A RocksDB directory of omnipaxos_storage 0.2.
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("CURRENT"), b"MANIFEST-000005\n").expect("write");
    fs::write(dir.path().join("MANIFEST-000005"), b"").expect("write");
    fs::write(dir.path().join("000004.log"), b"").expect("write");
    let e = PersistentStorage::<TestEntry>::try_open(small_config(dir.path()))
        .map(|_| ())
        .expect_err("a RocksDB directory");
    assert!(
        matches!(e, PersistentStorageError::UnsupportedFormat { .. }),
        "{e}"
    );
    assert!(e.to_string().contains("RocksDB"), "{e}");
}

#[test]
fn open_and_new_panic_with_the_path_and_the_cause() {
    let p = populate();
    let err = catch_unwind(AssertUnwindSafe(|| {
        PersistentStorage::<TestEntry>::new(p.cfg.clone())
    }))
    .map(|_| ())
    .expect_err("new on existing data panics");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains(&p.path().display().to_string()) && msg.contains("already has data"),
        "{msg}"
    );
    fs::remove_file(p.path().join("anchor")).expect("remove");
    let err = catch_unwind(AssertUnwindSafe(|| {
        PersistentStorage::<TestEntry>::open(p.cfg.clone())
    }))
    .map(|_| ())
    .expect_err("open of a damaged storage panics");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        msg.contains(&p.path().display().to_string()) && msg.contains("anchor"),
        "{msg}"
    );
    // `open` of a good directory returns the storage itself (the 0.2.4 signature).
    let dir = tempfile::tempdir().expect("tempdir");
    let s: PersistentStorage<TestEntry> =
        PersistentStorage::open(small_config(&dir.path().join("s")));
    assert_eq!(s.get_log_len().expect("len"), 0);
}

/// A payload put in place of the record of the third write of `appends(3)` (its three
/// entries in one record), by kind of forgery.
fn forged_payload(rng: &mut SplitMix64, case: u64, original: &[u8]) -> Vec<u8> {
    let random = |rng: &mut SplitMix64, n: u64| -> Vec<u8> {
        (0..n).map(|_| rng.next_u64() as u8).collect()
    };
    match case % 4 {
        // Anything, after one of the kind bytes (or none).
        0 => {
            let mut v = vec![[1u8, 2, 3, 4, 5, 6, 9][rng.below(7) as usize]];
            let n = rng.below(120);
            v.extend(random(rng, n));
            v
        }
        // A well-formed record of 1 to 5 entries of random bytes (a count other than the
        // write's three contradicts its state changes), of either encoding's kind (format
        // version 3's `KIND_ENTRIES` or this version's).
        1 => {
            let k = 1 + rng.below(5);
            let mut data = Vec::new();
            let mut ends = Vec::new();
            for _ in 0..k {
                let n = rng.below(40);
                data.extend(random(rng, n));
                ends.push(data.len() as u32);
            }
            let mut v = vec![[4u8, 6][rng.below(2) as usize]];
            v.extend(&data);
            for e in ends {
                v.extend(e.to_le_bytes());
            }
            v.extend((k as u32).to_le_bytes());
            v
        }
        // The original with one byte of its table of ends or its count changed.
        2 => {
            let mut v = original.to_vec();
            let table = v.len() - 3 * 4 - 4;
            let at = table + rng.below(16) as usize;
            v[at] = rng.next_u64() as u8;
            v
        }
        // The original layout with every entry byte random: entries that decode to anything
        // or not at all.
        _ => {
            let mut v = original.to_vec();
            let table = v.len() - 3 * 4 - 4;
            for b in &mut v[1..table] {
                *b = rng.next_u64() as u8;
            }
            v
        }
    }
}

/// A record of several entries replaced by other contents with a valid checksum (what a bug or
/// a deliberate edit could leave; random damage fails the checksum): `open` and the reads give
/// an error or a storage whose entries read back, never a panic. The record is the last one,
/// so a layout the scan refuses reads as a torn last write. `OMNIPAXOS_STORAGE_FORGED_CASES`
/// cases (default 200).
#[test]
fn forged_entry_records_with_valid_checksums_are_errors_not_panics() {
    let cases: u64 = std::env::var("OMNIPAXOS_STORAGE_FORGED_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = SplitMix64::new(0x5eed);
    let (mut opened, mut refused, mut unreadable) = (0, 0, 0);
    for case in 0..cases {
        let img = crash_image(appends(3));
        let rec = img.write(3);
        assert_eq!(rec.len(), 1, "the write's entries share one record");
        let p = rec[0].pos as usize;
        let mut bytes = fs::read(&img.segment).expect("read segment");
        let size = u32::from_le_bytes(bytes[p + 8..p + 12].try_into().expect("4 bytes")) as usize;
        let meta_len = usize::from(u16::from_le_bytes([bytes[p + 18], bytes[p + 19]]));
        let body = &bytes[p + 20..p + 20 + size];
        let mut new_body = body[..meta_len].to_vec();
        new_body.extend(forged_payload(&mut rng, case, &body[meta_len..]));
        let mut header = bytes[p..p + 20].to_vec();
        header[8..12].copy_from_slice(&(new_body.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&crc32c(&new_body).to_le_bytes());
        bytes.truncate(p);
        bytes.extend(header);
        bytes.extend(new_body);
        fs::write(&img.segment, &bytes).expect("write segment");
        match img.open() {
            Err(e) => {
                assert!(
                    matches!(e, PersistentStorageError::Corrupt { .. }),
                    "case {case}: {e}"
                );
                refused += 1;
            }
            Ok(s) => {
                opened += 1;
                let len = s.get_log_len().expect("get_log_len");
                // The state after the second write (the forged one cut off as torn), or
                // after the third (three entries, whatever their bytes).
                assert!(len == 6 || len == 9, "case {case}: {len} entries");
                match s.get_entries(0, len) {
                    Ok(v) => assert_eq!(v.len(), len, "case {case}"),
                    Err(e) => {
                        assert!(e.to_string().contains("damaged data"), "case {case}: {e}");
                        unreadable += 1;
                    }
                }
                // The entries of the first two writes read back whatever the third holds.
                assert_eq!(
                    s.get_entries(0, 6).expect("the first two writes"),
                    entries(0..6),
                    "case {case}"
                );
            }
        }
    }
    // Every outcome happened: refused at open, opened, opened with entries that do not decode.
    assert!(
        refused > 0 && opened > 0 && unreadable > 0,
        "refused {refused}, opened {opened}, unreadable {unreadable}"
    );
}
