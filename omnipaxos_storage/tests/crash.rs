//! Kill-and-reopen crash test on a real disk.
//!
//! The test re-executes its own binary as a child process (selected by the environment
//! variable `CHILD_ENV`) that opens a `PersistentStorage` and writes random batches (some with
//! a node record, `write_atomically_with_record`), printing
//! `ACK <i>` on stdout after each `write_atomically` returned. The parent kills the child with
//! SIGKILL at a random instant (also while it opens the storage, which repairs files), opens
//! the directory itself and checks that the state equals the state after the acknowledged
//! batches, or after one more (the one under way). The next child continues from there, so one
//! directory goes through many crashes, segment rolls and log rewrites.
//!
//! Telling those two states apart needs more than the getters when the batch under way only
//! moved the start of an empty log (a `Trim` past its end): see `recovered_batches`.

mod common;

use common::small_config;
use omnipaxos::storage::Storage;
use omnipaxos_storage::{
    conformance::{
        clone_ops, observe, same_state, same_state_probed, write_step, OpGenerator, SplitMix64,
        TestEntry,
    },
    memory_storage::MemoryStorage,
    persistent_storage::{Durability, PersistentStorage, PersistentStorageConfig},
};
use std::{
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

const CHILD_ENV: &str = "OMNIPAXOS_STORAGE_CRASH_CHILD";

fn config(path: &Path, durability: Durability) -> PersistentStorageConfig {
    let mut cfg = small_config(path);
    cfg.set_durability(durability);
    cfg
}

fn generator(seed: u64) -> OpGenerator {
    let mut g = OpGenerator::new(seed);
    g.invalid_percent = 2;
    g
}

/// The model after the first `n` batches of `seed`.
fn model_after(seed: u64, n: usize) -> MemoryStorage<TestEntry> {
    let mut gen = generator(seed);
    let mut m = MemoryStorage::default();
    for _ in 0..n {
        let (ops, record) = gen.step(&m);
        let _ = write_step(&mut m, ops, record);
    }
    m
}

/// The child role: `<path>;<seed>;<start>;<durability>[;<halt>]` in `CHILD_ENV`. With `halt`,
/// the child prints `HALT` after acknowledging batch `halt - 1` and waits to be killed, so the
/// kill falls between two writes at a chosen point.
fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(';').collect();
    let path = Path::new(parts[0]);
    let seed: u64 = parts[1].parse().expect("seed");
    let start: usize = parts[2].parse().expect("start");
    let durability = if parts[3] == "deferred" {
        Durability::Deferred
    } else {
        Durability::Immediate
    };
    let halt: Option<usize> = parts.get(4).map(|h| h.parse().expect("halt"));
    let mut gen = generator(seed);
    let mut model = MemoryStorage::default();
    for _ in 0..start {
        let (ops, record) = gen.step(&model);
        let _ = write_step(&mut model, ops, record);
    }
    let mut s = match PersistentStorage::<TestEntry>::try_open(config(path, durability)) {
        Ok(s) => s,
        Err(e) => {
            println!("OPENFAIL {e}");
            std::process::exit(3);
        }
    };
    // libtest printed "test <name> ... " without a newline: start a line of our own.
    println!("\nREADY");
    for i in start.. {
        if Some(i) == halt {
            println!("HALT");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        let (ops, record) = gen.step(&model);
        let got = write_step(&mut s, clone_ops(&ops), record.clone());
        let want = write_step(&mut model, ops, record);
        if got.is_ok() != want.is_ok() {
            println!("MISMATCH {i}: {got:?} vs {want:?}");
            std::process::exit(4);
        }
        println!("ACK {i}");
    }
}

struct Outcome {
    /// Number of batches acknowledged (the next one may have been under way).
    acked: usize,
    lines: Vec<String>,
}

/// When the parent kills a child.
#[derive(Copy, Clone, Debug)]
enum Kill {
    /// After a delay, counted from READY if `after_ready`, else from the spawn.
    After { delay: Duration, after_ready: bool },
    /// When the child says HALT: after it acknowledged batch `halt - 1`, before batch `halt`.
    AtHalt(usize),
}

/// Runs one child from `start` and kills it as `kill` says.
fn run_child(path: &Path, seed: u64, start: usize, durability: &str, kill: Kill) -> Outcome {
    let exe = std::env::current_exe().expect("current_exe");
    let mut spec = format!("{};{seed};{start};{durability}", path.display());
    if let Kill::AtHalt(halt) = kill {
        spec.push_str(&format!(";{halt}"));
    }
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash_kill_and_reopen",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let spawned = Instant::now();
    let mut lines = Vec::new();
    let (wait_for, delay, timeout) = match kill {
        Kill::After { delay, after_ready } => (after_ready.then_some("READY"), delay, 20),
        Kill::AtHalt(_) => (Some("HALT"), Duration::ZERO, 120),
    };
    if let Some(wanted) = wait_for {
        let deadline = spawned + Duration::from_secs(timeout);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) => {
                    let seen = l == wanted;
                    lines.push(l);
                    if seen {
                        break;
                    }
                }
                Err(_) => break, // exited or timed out: the checks below report it
            }
        }
    }
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL on Unix
    let status = child.wait().expect("wait child");
    reader.join().expect("reader thread");
    lines.extend(rx.try_iter());
    let mut err = String::new();
    let _ = stderr.read_to_string(&mut err);
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.signal() == Some(9),
        "child was not killed but exited with {status:?}\nstdout: {lines:?}\nstderr: {err}"
    );
    for l in &lines {
        assert!(
            !l.starts_with("OPENFAIL") && !l.starts_with("MISMATCH"),
            "child failed: {l}\nstderr: {err}"
        );
    }
    let acked = lines
        .iter()
        .filter_map(|l| l.strip_prefix("ACK ")?.parse::<usize>().ok())
        .max()
        .map_or(start, |i| i + 1);
    if let Kill::AtHalt(halt) = kill {
        assert!(
            lines.iter().any(|l| l == "HALT") && acked == halt,
            "child did not halt after batch {halt}: {lines:?}\nstderr: {err}"
        );
    }
    Outcome { acked, lines }
}

/// The number of batches of `seed` whose state the reopened storage `s` holds, when `acked`
/// were acknowledged and one more may have been under way: `acked` or `acked + 1`, or `None`
/// if it holds neither.
///
/// The comparison probes (`same_state_probed`) rather than only reading the getters: when
/// batch `acked` only moves the start of an empty log (a `Trim` past its end), the states
/// before and after it read the same. Taking "after" when the storage holds "before" made the
/// next child replay a batch the storage never committed, and its first `AppendOnPrefix`
/// was refused (`PrefixOutOfRange`) although the storage had recovered correctly.
fn recovered_batches(
    s: &mut PersistentStorage<TestEntry>,
    seed: u64,
    acked: usize,
) -> Option<usize> {
    (acked..=acked + 1)
        .rev()
        .find(|&n| same_state_probed(s, &model_after(seed, n)))
}

/// Runs `histories` directories through `kills` crashes each; returns the number of kills and
/// of acknowledged batches. Every acknowledged batch must survive the kill, with either
/// durability (`Deferred` writes are in the OS's hands when they return).
fn crash_runs(histories: u64, kills: usize, durability: Durability) -> (usize, usize) {
    let name = match durability {
        Durability::Immediate => "immediate",
        Durability::Deferred => "deferred",
    };
    let mut total_kills = 0;
    let mut total_acked = 0;
    for h in 0..histories {
        let seed = 1000 + h;
        let mut rng = SplitMix64::new(seed * 7919);
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        let mut done = 0usize; // batches in the recovered state
        for k in 0..kills {
            let after_ready = !rng.chance(15);
            // Writes sync once (~0.3 to 10 ms on a shared disk): a window of up to 80 ms
            // lets a child acknowledge several writes and die in the middle of one.
            let kill_after = Duration::from_micros(if after_ready {
                rng.below(80_000)
            } else {
                rng.below(40_000)
            });
            let kill = Kill::After {
                delay: kill_after,
                after_ready,
            };
            let out = run_child(&path, seed, done, name, kill);
            total_kills += 1;
            total_acked += out.acked - done;
            if !path.exists() {
                // Killed before the storage was created (it appears atomically).
                assert_eq!(out.acked, done, "acks without a storage: {:?}", out.lines);
                continue;
            }
            let mut s = PersistentStorage::<TestEntry>::try_open(config(&path, durability))
                .unwrap_or_else(|e| {
                    panic!(
                        "history {h} kill {k}: reopen failed: {e}\nchild said {:?}",
                        out.lines
                    )
                });
            // Also with `Deferred`: a killed process loses nothing the OS was handed (only a
            // power loss or an OS crash can).
            let Some(n) = recovered_batches(&mut s, seed, out.acked) else {
                let m = model_after(seed, out.acked);
                let first = 0;
                panic!(
                    "history {h} kill {k} ({name}): state after reopen is not the state after \
                     {}..={} batches\nstorage {:?}\nmodel@acked {:?}",
                    out.acked,
                    out.acked + 1,
                    observe(&s, first),
                    observe(&m, first)
                );
            };
            done = n;
        }
    }
    (total_kills, total_acked)
}

#[test]
fn crash_kill_and_reopen() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        child(&spec);
        return;
    }
    let started = Instant::now();
    let (kills, acked) = crash_runs(10, 12, Durability::Immediate);
    assert!(kills >= 100, "only {kills} kills");
    // Non-vacuity: the children did write (and were killed mid-run, not all before READY).
    assert!(
        acked >= 200,
        "only {acked} acknowledged batches over {kills} kills"
    );
    eprintln!(
        "crash_kill_and_reopen: {kills} kills, {acked} acknowledged batches, {:?}",
        started.elapsed()
    );
}

#[test]
fn crash_kill_and_reopen_deferred_durability_stays_atomic() {
    let (kills, acked) = crash_runs(3, 10, Durability::Deferred);
    assert_eq!(kills, 30);
    assert!(acked >= 50, "only {acked} acknowledged batches");
}

/// The kill that made `crash_kill_and_reopen_deferred_durability_stays_atomic` fail about one
/// run in ten, made deterministic: seed 1000's batch 620 is `Trim(3930)` on a log that is
/// empty from 3927 on, so the states after 620 and 621 batches differ only in where the empty
/// log starts. A child killed after acknowledging batch 619 (batch 620 not written) leaves the
/// state after 620; the check must say 620, and a child continuing from there must agree with
/// the model on every write.
#[test]
fn crash_kill_before_a_trim_past_the_end_of_an_empty_log() {
    let (seed, halt) = (1000, 620);
    // The premise, so that a change of the generator cannot make this test vacuous: the two
    // states read the same through the getters, and only the probe tells them apart.
    let (before, after) = (model_after(seed, halt), model_after(seed, halt + 1));
    assert_eq!(before.get_log_len().expect("len"), 0);
    assert!(
        same_state(&before, &after),
        "the states should read the same"
    );
    assert!(!same_state_probed(&mut before.clone(), &after));
    assert!(same_state_probed(&mut before.clone(), &before));

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("store");
    let durability = Durability::Deferred;
    let out = run_child(&path, seed, 0, "deferred", Kill::AtHalt(halt));
    assert_eq!(out.acked, halt);
    let mut s =
        PersistentStorage::<TestEntry>::try_open(config(&path, durability)).expect("reopen");
    assert_eq!(recovered_batches(&mut s, seed, out.acked), Some(halt));
    drop(s);
    // The next child starts from the state after `halt` batches; with the wrong count it
    // replayed batch 620 as if written and its first write was refused (MISMATCH).
    let next = halt + 40;
    let out = run_child(&path, seed, halt, "deferred", Kill::AtHalt(next));
    let mut s =
        PersistentStorage::<TestEntry>::try_open(config(&path, durability)).expect("reopen");
    assert_eq!(recovered_batches(&mut s, seed, out.acked), Some(next));
}

/// The sled files a kill leaves in the middle of sled's own snapshot write. sled 0.34 writes
/// its snapshot (at every open whose log moved on) to `snap.<lsn>.generating`, syncs it and
/// renames it to `snap.<lsn>`; but when it opens, it counts `.generating` files among its
/// snapshots, takes the newest, and refuses a torn one as corruption. A SIGKILL there (seen
/// in `crash_kill_and_reopen`, about one run in twenty: a child killed while it opened the
/// storage, leaving an empty `snap.00000000000000CA.generating`) made every later open fail
/// with `Corrupt` ("sled: Read corrupted data"). The files are made here as such a kill leaves
/// them: an empty one, and one holding the first half of a real snapshot.
#[test]
fn crash_kill_during_a_sled_snapshot_write_leaves_an_openable_storage() {
    for torn_len in [None, Some(0.5)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("store");
        let durability = Durability::Immediate;
        let seed = 7;
        let batches = 50;
        let mut s =
            PersistentStorage::<TestEntry>::try_open(config(&path, durability)).expect("create");
        let mut gen = generator(seed);
        let mut model = MemoryStorage::default();
        for _ in 0..batches {
            let (ops, record) = gen.step(&model);
            let got = write_step(&mut s, clone_ops(&ops), record.clone());
            let want = write_step(&mut model, ops, record);
            assert_eq!(got.is_ok(), want.is_ok());
        }
        drop(s);
        let db = path.join("db");
        let snaps: Vec<std::path::PathBuf> = std::fs::read_dir(&db)
            .expect("read db")
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("snap."))
            })
            .collect();
        // A name that sorts after every snapshot sled wrote, as the next one would.
        let torn = db.join("snap.FFFFFFFFFFFFFFF0.generating");
        let bytes = match torn_len {
            None => Vec::new(),
            Some(part) => {
                let newest = snaps.iter().max().expect("sled wrote a snapshot");
                let b = std::fs::read(newest).expect("read snapshot");
                b[..(b.len() as f64 * part) as usize].to_vec()
            }
        };
        std::fs::write(&torn, bytes).expect("write torn snapshot");
        let mut s = PersistentStorage::<TestEntry>::try_open(config(&path, durability))
            .unwrap_or_else(|e| panic!("torn sled snapshot ({torn_len:?}): reopen failed: {e}"));
        assert!(same_state_probed(&mut s, &model), "{torn_len:?}");
        assert!(!torn.exists(), "the torn snapshot file is removed");
        // And it keeps working.
        for _ in 0..10 {
            let (ops, record) = gen.step(&model);
            let got = write_step(&mut s, clone_ops(&ops), record.clone());
            let want = write_step(&mut model, ops, record);
            assert_eq!(got.is_ok(), want.is_ok());
        }
        drop(s);
        let mut s =
            PersistentStorage::<TestEntry>::try_open(config(&path, durability)).expect("reopen");
        assert!(same_state_probed(&mut s, &model));
    }
}
