//! The behaviours of commitlog 0.2.0 and sled 0.34.7 that `PersistentStorage` works around
//! (see its module documentation). If one of these starts failing after a dependency update,
//! the workaround may no longer be needed, or may no longer work.

use commitlog::{
    message::{MessageBuf, MessageSet},
    AppendError, CommitLog, LogOptions, ReadLimit,
};
use std::{fs, panic};

fn log_with(dir: &std::path::Path, n: u64, len: usize) -> CommitLog {
    let mut log = CommitLog::new(LogOptions::new(dir)).expect("log");
    for i in 0..n {
        log.append_msg(vec![i as u8; len]).expect("append");
    }
    log.flush().expect("flush");
    log
}

#[test]
fn commitlog_truncate_keeps_the_given_offset_and_cannot_empty_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = log_with(dir.path(), 5, 10);
    log.truncate(2).expect("truncate");
    assert_eq!(log.next_offset(), 3, "truncate(2) keeps entry 2");
    log.truncate(0).expect("truncate");
    assert_eq!(log.next_offset(), 1, "truncate(0) still keeps entry 0");
}

#[test]
fn commitlog_panics_on_an_empty_index_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(log_with(dir.path(), 5, 10));
    fs::write(dir.path().join(format!("{:020}.index", 0)), b"").expect("empty index");
    let opts = LogOptions::new(dir.path());
    let r = panic::catch_unwind(move || CommitLog::new(opts).map(|l| l.next_offset()));
    assert!(
        !matches!(r, Ok(Ok(5))),
        "commitlog opened a log with an empty index correctly: {r:?}"
    );
}

#[test]
fn commitlog_panics_on_a_missing_index_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(log_with(dir.path(), 5, 10));
    fs::remove_file(dir.path().join(format!("{:020}.index", 0))).expect("remove index");
    let opts = LogOptions::new(dir.path());
    let r = panic::catch_unwind(move || CommitLog::new(opts).map(|l| l.next_offset()));
    assert!(r.is_err(), "expected a panic, got {r:?}");
}

#[test]
fn commitlog_refuses_an_append_batch_over_message_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = CommitLog::new(LogOptions::new(dir.path())).expect("log");
    let mut buf = MessageBuf::default();
    for _ in 0..11 {
        buf.push(vec![7u8; 100_000]).expect("push");
    }
    assert!(matches!(
        log.append(&mut buf),
        Err(AppendError::MessageSizeExceeded)
    ));
}

#[test]
fn commitlog_panics_when_one_append_outgrows_half_its_index() {
    // The index grows by half its size, once, when an append does not fit: an append of more
    // index entries than that writes past the end of the index's memory map.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = LogOptions::new(dir.path());
    opts.index_max_items(100);
    let mut log = CommitLog::new(opts).expect("log");
    let mut buf = MessageBuf::default();
    for _ in 0..200 {
        buf.push(b"x").expect("push");
    }
    let r = panic::catch_unwind(panic::AssertUnwindSafe(|| log.append(&mut buf).is_ok()));
    assert!(r.is_err(), "expected a panic, got {r:?}");
}

#[test]
fn commitlog_read_returns_at_most_the_read_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = log_with(dir.path(), 100, 1000);
    let got = log.read(0, ReadLimit::default()).expect("read");
    let n = got.iter().count();
    assert!(n > 0 && n < 100, "one read returned {n} of 100 messages");
}

#[test]
fn sled_reopens_an_overwritten_file_as_an_empty_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let db = sled::Config::new().path(&path).open().expect("open");
        for i in 0..100u32 {
            db.insert(b"k", &i.to_le_bytes()).expect("insert");
            db.flush().expect("flush");
        }
    }
    let file = path.join("db");
    let len = fs::metadata(&file).expect("meta").len();
    fs::write(&file, vec![0u8; len as usize]).expect("overwrite");
    let db = sled::Config::new()
        .path(&path)
        .open()
        .expect("sled opens it without error");
    assert_eq!(db.get(b"k").expect("get"), None, "and the data is gone");
}

#[test]
fn sled_rolls_back_a_truncated_file_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    {
        let db = sled::Config::new().path(&path).open().expect("open");
        for i in 0..200u32 {
            db.insert(b"k", &i.to_le_bytes()).expect("insert");
            db.flush().expect("flush");
        }
    }
    let file = path.join("db");
    let len = fs::metadata(&file).expect("meta").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .expect("open")
        .set_len(len / 2)
        .expect("truncate");
    let db = sled::Config::new()
        .path(&path)
        .open()
        .expect("sled opens it without error");
    let v = db
        .get(b"k")
        .expect("get")
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    assert!(
        matches!(v, Some(x) if x < 199) || v.is_none(),
        "expected an older value, got {v:?}"
    );
}

const ABORT_CHILD_ENV: &str = "OMNIPAXOS_STORAGE_SLED_ABORT_CHILD";

/// The child of `sled_loses_an_unflushed_insert_on_abort`: inserts without `flush` and aborts.
fn sled_abort_child(path: &str) -> ! {
    let db = sled::Config::new().path(path).open().expect("open");
    db.insert(b"flushed", b"yes").expect("insert");
    db.flush().expect("flush");
    db.insert(b"unflushed", b"yes").expect("insert");
    std::process::abort();
}

#[test]
fn sled_loses_an_unflushed_insert_on_abort() {
    if let Ok(path) = std::env::var(ABORT_CHILD_ENV) {
        sled_abort_child(&path);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let status = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", "sled_loses_an_unflushed_insert_on_abort"])
        .env(ABORT_CHILD_ENV, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("spawn child");
    assert!(!status.success(), "the child aborts");
    let db = sled::Config::new().path(&path).open().expect("reopen");
    assert_eq!(
        db.get(b"flushed").expect("get").as_deref(),
        Some(&b"yes"[..])
    );
    assert_eq!(
        db.get(b"unflushed").expect("get"),
        None,
        "the insert without flush is lost"
    );
}
