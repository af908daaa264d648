//! Soak benchmark of `PersistentStorage`: single-entry durable writes for a long time, to show
//! that the write path does not stall (sled 0.34 was seen to deadlock under such a stream when
//! every write went through it). Not run in CI.
//!
//! ```text
//! cargo run --release -p omnipaxos_storage --example soak [-- --minutes M --dir PATH
//!     --payload BYTES --trim-every N --keep K --interval SECS]
//! ```
//!
//! * `--minutes M`: how long to write (default 10; fractions allowed, e.g. `0.5`).
//! * `--dir PATH`: where the storage goes (default: a temporary directory).
//! * `--payload BYTES`: payload per entry (default 8).
//! * `--trim-every N`, `--keep K`: every `N` writes, the write also trims the log to its last
//!   `K` entries (as a node that compacts does), so that log rewrites happen during the run
//!   (defaults 200,000 and 20,000; `--trim-every 0` never trims).
//! * `--interval SECS`: length of one report line (default 60).
//! * `--plain`: the same loop on a plain file instead (the encoded entry appended, one `fsync`
//!   per write): the floor, to tell the disk's own latency spikes from the storage's.
//!
//! Each write is one `write_atomically` with `Durability::Immediate`: `AppendEntry` and
//! `SetDecidedIndex`, as a follower writes an accepted entry. Per interval it prints the
//! writes per second and the median, 99th percentile and largest write latency; at the end
//! the worst latency of the run, and how many writes took over 100 ms and over 1 s. A watchdog
//! ends the run with exit code 3 if one write takes more than 30 s (a stall).

use omnipaxos::storage::{Entry, NoSnapshot, Storage, StorageOp};
use omnipaxos_storage::persistent_storage::{PersistentStorage, PersistentStorageConfig};
use serde::{Deserialize, Serialize};
use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// The soak's entry: a payload of a fixed size.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SoakEntry {
    payload: Vec<u8>,
}

impl Entry for SoakEntry {
    type Snapshot = NoSnapshot;
}

/// Where the soak writes.
enum Target {
    Storage(Box<PersistentStorage<SoakEntry>>),
    Plain(std::fs::File),
}

impl Target {
    fn write(&mut self, ops: Vec<StorageOp<SoakEntry>>) -> Result<(), Box<dyn std::error::Error>> {
        match self {
            Target::Storage(s) => s.write_atomically(ops),
            Target::Plain(f) => {
                use std::io::Write;
                for op in &ops {
                    if let StorageOp::AppendEntry(e) = op {
                        f.write_all(&bincode::serialize(e)?)?;
                    }
                }
                f.sync_all()?;
                Ok(())
            }
        }
    }
}

/// A write slower than this is reported as a stall and ends the run.
const STALL: Duration = Duration::from_secs(30);

struct Args {
    minutes: f64,
    dir: Option<PathBuf>,
    payload: usize,
    trim_every: u64,
    keep: u64,
    interval: f64,
    plain: bool,
}

fn positive(name: &str, v: Option<String>) -> Result<f64, String> {
    let v = v.ok_or(format!("{name} needs a number"))?;
    v.parse::<f64>()
        .ok()
        .filter(|x| *x > 0.0 && x.is_finite())
        .ok_or(format!("{name}: not a positive number: {v}"))
}

fn count(name: &str, v: Option<String>) -> Result<u64, String> {
    let v = v.ok_or(format!("{name} needs a number"))?;
    v.parse().map_err(|_| format!("{name}: not a count: {v}"))
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        minutes: 10.0,
        dir: None,
        payload: 8,
        trim_every: 200_000,
        keep: 20_000,
        interval: 60.0,
        plain: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--minutes" => a.minutes = positive("--minutes", it.next())?,
            "--dir" => a.dir = Some(it.next().ok_or("--dir needs a path")?.into()),
            "--payload" => a.payload = count("--payload", it.next())? as usize,
            "--trim-every" => a.trim_every = count("--trim-every", it.next())?,
            "--keep" => a.keep = count("--keep", it.next())?,
            "--interval" => a.interval = positive("--interval", it.next())?,
            "--plain" => a.plain = true,
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --minutes, --dir, --payload, --trim-every, --keep, --interval, --plain)"
                ))
            }
        }
    }
    Ok(a)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args = args().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2);
    });
    let root = match &args.dir {
        Some(d) => std::fs::create_dir_all(d).and_then(|()| tempfile::tempdir_in(d)),
        None => tempfile::tempdir(),
    };
    let tmp = root.unwrap_or_else(|e| {
        eprintln!("cannot create a temporary directory: {e}");
        std::process::exit(1);
    });
    let mut target = if args.plain {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(tmp.path().join("plain-file"))
            .unwrap_or_else(|e| {
                eprintln!("cannot create the plain file: {e}");
                std::process::exit(1);
            });
        Target::Plain(f)
    } else {
        let cfg = PersistentStorageConfig::with_path(tmp.path().join("store"));
        Target::Storage(Box::new(PersistentStorage::try_new(cfg).unwrap_or_else(
            |e| {
                eprintln!("cannot create the storage: {e}");
                std::process::exit(1);
            },
        )))
    };

    // The watchdog: a write that does not return within STALL is a stall (or a deadlock).
    let started = Instant::now();
    let last_done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    {
        let (last_done, finished) = (last_done.clone(), finished.clone());
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if finished.load(Ordering::Relaxed) {
                return;
            }
            let last = Duration::from_millis(last_done.load(Ordering::Relaxed));
            if started.elapsed().saturating_sub(last) > STALL {
                eprintln!(
                    "STALL: no write returned for {:?} (at {:.1} s into the run)",
                    STALL,
                    last.as_secs_f64()
                );
                std::process::exit(3);
            }
        });
    }

    let total = Duration::from_secs_f64(args.minutes * 60.0);
    let interval = Duration::from_secs_f64(args.interval);
    println!(
        "soak: single-entry durable writes ({} B payload) on {} for {:.1} min, in {}",
        args.payload,
        if args.plain {
            "a plain file with fsync"
        } else {
            "PersistentStorage"
        },
        args.minutes,
        tmp.path().display()
    );
    println!(
        "{:>8} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "t (s)", "writes", "writes/s", "p50 ms", "p99 ms", "max ms"
    );
    let payload = vec![7u8; args.payload];
    let mut written = 0u64;
    let mut trimmed = 0u64;
    let mut lat: Vec<Duration> = Vec::new();
    let mut worst = Duration::ZERO;
    let (mut over_100ms, mut over_1s) = (0u64, 0u64);
    let mut window_start = Instant::now();
    while started.elapsed() < total {
        let mut ops = vec![
            StorageOp::AppendEntry(SoakEntry {
                payload: payload.clone(),
            }),
            StorageOp::SetDecidedIndex(written as usize + 1),
        ];
        if args.trim_every > 0 && (written + 1) % args.trim_every == 0 {
            let to = (written + 1).saturating_sub(args.keep);
            ops.push(StorageOp::Trim(to as usize));
            ops.push(StorageOp::SetCompactedIdx(to as usize));
            trimmed += 1;
        }
        let t = Instant::now();
        if let Err(e) = target.write(ops) {
            eprintln!("write {written} failed: {e}");
            std::process::exit(1);
        }
        let d = t.elapsed();
        last_done.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
        written += 1;
        worst = worst.max(d);
        over_100ms += u64::from(d > Duration::from_millis(100));
        over_1s += u64::from(d > Duration::from_secs(1));
        lat.push(d);
        if window_start.elapsed() >= interval {
            let secs = window_start.elapsed().as_secs_f64();
            lat.sort_unstable();
            println!(
                "{:>8.0} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
                started.elapsed().as_secs_f64(),
                written,
                lat.len() as f64 / secs,
                ms(percentile(&lat, 0.5)),
                ms(percentile(&lat, 0.99)),
                ms(*lat.last().unwrap_or(&Duration::ZERO)),
            );
            lat.clear();
            window_start = Instant::now();
        }
    }
    finished.store(true, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    println!(
        "total: {written} writes in {secs:.0} s ({:.0} writes/s), {trimmed} trims; worst write {:.2} ms; {over_100ms} writes over 100 ms, {over_1s} over 1 s; no stall",
        written as f64 / secs,
        ms(worst)
    );
}
