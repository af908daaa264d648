//! Prints a table of `write_atomically` throughput: `PersistentStorage` against the floor (the
//! same bytes appended to a plain file with one `fsync` per batch) and against `MemoryStorage`.
//!
//! ```text
//! cargo run --release -p omnipaxos_storage --example storage_bench [-- --dir PATH --secs S]
//! ```
//!
//! * `--dir PATH`: where the files go (default: a temporary directory). Put it on the disk you
//!   mean to run on: the numbers are mostly the disk's `fsync` latency.
//! * `--secs S`: measuring time per cell (default 2).
//! * `--case E:B` (repeatable): only the cases of `E` entries of `B` bytes per write (for
//!   example `--case 1000:8`), to measure one case more often in the same time.
//! * `--writes N [--batch E] [--payload B] [--deferred] [--serde-bytes]`: instead of the
//!   table, do `N` writes of `E` entries (default 1) of `B` bytes (default 8) on one fresh
//!   storage (`Immediate`, or `Deferred`) and exit: for counting the syncs per write with
//!   `strace -f -c -e trace=fsync,fdatasync,sync_file_range <binary> --writes 10000`, or for
//!   a profiler. `--serde-bytes` gives the entry's payload `#[serde(with = "serde_bytes")]`,
//!   so that bincode writes it as one byte string instead of byte by byte.
//!
//! Each case is a batch of 1, 100 or 1,000 entries with a payload of 8 or 256 bytes, written
//! with one `write_atomically` call (one `AppendEntries` plus a `SetDecidedIndex`, as a node
//! does). Columns:
//!
//! * `entries/s`: entries written per second (batches/s × batch size);
//! * `syncs/s`: durable batches per second (`write_atomically` calls that returned; for the
//!   floor, `write` + `fsync` pairs);
//! * `x floor`: time per batch of `PersistentStorage` divided by that of the floor (1.0 would
//!   be as fast as a plain file; `Immediate` appends the batch's records to the log and syncs
//!   the segment once, so close to 1 is expected);
//! * `x memory`: time per batch of `PersistentStorage` divided by that of `MemoryStorage`.
//!
//! A `Deferred` row shows what the durability setting buys (it does not sync). The row
//! `plain file + encoding` is a second reference: the same file, but each batch is encoded with
//! bincode (and its entries dropped) inside the clock, as an application writing its own file would
//! have to; the floor leaves that work out (its bytes are encoded once, before the clock), so
//! what it does not count is what encoding the entries costs.
//!
//! Batches are built before the clock starts; only the writes are timed. The backends of a
//! case take turns in 10 rounds, so that changes in the disk's load affect them alike, and
//! after each turn the machine's dirty pages are written back (`sync`, outside the clock), so
//! that no backend's syncs wait for what another left behind (`Deferred` leaves a lot).

use omnipaxos::storage::{Entry, NoSnapshot, Storage, StorageOp};
use omnipaxos_storage::{
    memory_storage::MemoryStorage,
    persistent_storage::{Durability, PersistentStorage, PersistentStorageConfig},
};
use serde::{Deserialize, Serialize};
use std::{
    fs::{File, OpenOptions},
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// The benchmark's entry: a payload of a fixed size.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BenchEntry {
    payload: Vec<u8>,
}

impl Entry for BenchEntry {
    type Snapshot = NoSnapshot;
}

/// The same payload, encoded as one byte string (`serde_bytes`).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct BytesEntry {
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

impl Entry for BytesEntry {
    type Snapshot = NoSnapshot;
}

/// An entry type of the benchmark, built from its payload.
trait Payload: Entry + Serialize + serde::de::DeserializeOwned + 'static {
    fn with(payload: Vec<u8>) -> Self;
}

impl Payload for BenchEntry {
    fn with(payload: Vec<u8>) -> Self {
        BenchEntry { payload }
    }
}

impl Payload for BytesEntry {
    fn with(payload: Vec<u8>) -> Self {
        BytesEntry { payload }
    }
}

/// Batches built ahead of one timed chunk.
const CHUNK: usize = 64;
/// Measuring rounds per cell (the backends take turns).
const ROUNDS: usize = 10;
/// `MemoryStorage` is replaced by a fresh one (outside the clock) past this many entries.
const MEMORY_RESET: usize = 2_000_000;

fn batch<E: Payload>(n: usize, payload: usize, decided: usize) -> Vec<StorageOp<E>> {
    let entries = (0..n).map(|i| E::with(vec![i as u8; payload])).collect();
    vec![
        StorageOp::AppendEntries(entries),
        StorageOp::SetDecidedIndex(decided),
    ]
}

/// Writes the batches `ops` (built before) one `write_atomically` each; the time they took.
fn write_timed<E: Payload, S: Storage<E>>(s: &mut S, ops: Vec<Vec<StorageOp<E>>>) -> Duration {
    let t = Instant::now();
    for b in ops {
        if let Err(e) = s.write_atomically(b) {
            eprintln!("write_atomically failed: {e}");
            std::process::exit(1);
        }
    }
    t.elapsed()
}

/// One measurement: batches done and the time they took.
#[derive(Copy, Clone, Debug)]
struct Measured {
    batches: u64,
    time: Duration,
}

impl Measured {
    fn per_batch(&self) -> f64 {
        self.time.as_secs_f64() / self.batches as f64
    }
    fn batches_per_s(&self) -> f64 {
        self.batches as f64 / self.time.as_secs_f64()
    }
}

/// Something measured in rounds: each call runs for about the given time and says how many
/// batches it did in how long. Keeps its state (storage, file) between calls.
type Runner = Box<dyn FnMut(f64) -> Measured>;

/// `write_atomically` of batches of `n` entries on storages from `make` (a fresh one when the
/// current one holds `reset_after` entries).
fn storage_runner<S: Storage<BenchEntry> + 'static>(
    mut make: impl FnMut() -> S + 'static,
    n: usize,
    payload: usize,
    reset_after: Option<usize>,
) -> Runner {
    let mut s = make();
    let mut written = 0usize;
    Box::new(move |secs| {
        let mut time = Duration::ZERO;
        let mut batches = 0u64;
        while time.as_secs_f64() < secs {
            if reset_after.is_some_and(|max| written >= max) {
                s = make();
                written = 0;
            }
            let ops: Vec<_> = (0..CHUNK)
                .map(|i| batch::<BenchEntry>(n, payload, written + (i + 1) * n))
                .collect();
            time += write_timed(&mut s, ops);
            written += CHUNK * n;
            batches += CHUNK as u64;
        }
        Measured { batches, time }
    })
}

/// A plain file that encodes its entries: each batch (built before the clock, handed over
/// like a storage's batch and dropped after) is encoded with bincode inside the clock,
/// appended, and `fsync`ed: what an application writing its own file pays.
fn encoding_file_runner(path: &Path, n: usize, payload: usize) -> std::io::Result<Runner> {
    let mut f: File = OpenOptions::new().create(true).append(true).open(path)?;
    let mut bytes = Vec::new();
    Ok(Box::new(move |secs| {
        let mut time = Duration::ZERO;
        let mut batches = 0u64;
        while time.as_secs_f64() < secs {
            let ops: Vec<Vec<BenchEntry>> = (0..CHUNK)
                .map(|_| {
                    (0..n)
                        .map(|i| BenchEntry {
                            payload: vec![i as u8; payload],
                        })
                        .collect()
                })
                .collect();
            let t = Instant::now();
            for b in ops {
                bytes.clear();
                for e in &b {
                    if let Err(e) = bincode::serialize_into(&mut bytes, e) {
                        eprintln!("bincode: {e}");
                        std::process::exit(1);
                    }
                }
                drop(b);
                append_synced(&mut f, &bytes);
            }
            time += t.elapsed();
            batches += CHUNK as u64;
        }
        Measured { batches, time }
    }))
}

/// Appends `bytes` to the plain file and `fsync`s it (exits on failure).
fn append_synced(f: &mut File, bytes: &[u8]) {
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_all()) {
        eprintln!("plain file: {e}");
        std::process::exit(1);
    }
}

/// The floor: the encoded bytes of a batch appended to a plain file, one `fsync` per batch.
fn floor_runner(path: &Path, n: usize, payload: usize) -> std::io::Result<Runner> {
    let mut bytes = Vec::new();
    for i in 0..n {
        let e = BenchEntry {
            payload: vec![i as u8; payload],
        };
        bytes.extend(bincode::serialize(&e).map_err(std::io::Error::other)?);
    }
    let mut f: File = OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(move |secs| {
        let mut time = Duration::ZERO;
        let mut batches = 0u64;
        while time.as_secs_f64() < secs {
            let t = Instant::now();
            for _ in 0..CHUNK {
                append_synced(&mut f, &bytes);
            }
            time += t.elapsed();
            batches += CHUNK as u64;
        }
        Measured { batches, time }
    }))
}

fn persistent_maker<E: Payload>(
    root: PathBuf,
    durability: Durability,
) -> impl FnMut() -> PersistentStorage<E> {
    let mut k = 0;
    move || {
        k += 1;
        let mut cfg = PersistentStorageConfig::with_path(root.join(format!("store-{k}")));
        cfg.set_durability(durability);
        PersistentStorage::try_new(cfg).unwrap_or_else(|e| {
            eprintln!("cannot create the storage: {e}");
            std::process::exit(1);
        })
    }
}

/// A `PersistentStorage` backend: a new storage below `root` for each round.
fn persistent_backend(
    root: PathBuf,
    durability: Durability,
    n: usize,
    payload: usize,
) -> Box<dyn Fn(usize) -> Runner> {
    Box::new(move |round| {
        let make = persistent_maker(root.join(format!("round-{round}")), durability);
        storage_runner(make, n, payload, None)
    })
}

/// `--writes`: `n` writes on one fresh storage, timed (the batches are built outside the
/// clock, a chunk at a time, like the table's).
fn writes<E: Payload>(args: &Args, n: usize, dir: &Path) {
    let durability = if args.deferred {
        Durability::Deferred
    } else {
        Durability::Immediate
    };
    let mut make = persistent_maker::<E>(dir.to_path_buf(), durability);
    let mut s = make();
    let mut time = Duration::ZERO;
    let mut done = 0;
    while done < n {
        let k = CHUNK.min(n - done);
        let ops: Vec<Vec<StorageOp<E>>> = (0..k)
            .map(|i| batch(args.batch, args.payload, (done + i + 1) * args.batch))
            .collect();
        time += write_timed(&mut s, ops);
        done += k;
    }
    println!(
        "{n} writes of {} entries of {} B ({durability:?}{}) in {time:?}: {:.1} us per write",
        args.batch,
        args.payload,
        if args.serde_bytes {
            ", serde_bytes"
        } else {
            ""
        },
        time.as_secs_f64() * 1e6 / n as f64
    );
}

/// Writes back every dirty page of the machine (the `sync` command), best effort.
fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

struct Args {
    dir: Option<PathBuf>,
    secs: f64,
    writes: Option<usize>,
    batch: usize,
    payload: usize,
    deferred: bool,
    serde_bytes: bool,
    /// `(entries per write, payload bytes)` of the table's cases to run; all when empty.
    cases: Vec<(usize, usize)>,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        dir: None,
        secs: 2.0,
        writes: None,
        batch: 1,
        payload: 8,
        deferred: false,
        serde_bytes: false,
        cases: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dir" => a.dir = Some(it.next().ok_or("--dir needs a path")?.into()),
            "--secs" => {
                let v = it.next().ok_or("--secs needs a number")?;
                a.secs = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && s.is_finite())
                    .ok_or(format!("--secs: not a positive number: {v}"))?;
            }
            "--writes" => {
                let v = it.next().ok_or("--writes needs a number")?;
                a.writes = Some(v.parse().map_err(|_| format!("--writes: not a number: {v}"))?);
            }
            "--batch" => {
                let v = it.next().ok_or("--batch needs a number")?;
                a.batch = v.parse().map_err(|_| format!("--batch: not a number: {v}"))?;
            }
            "--payload" => {
                let v = it.next().ok_or("--payload needs a number")?;
                a.payload = v.parse().map_err(|_| format!("--payload: not a number: {v}"))?;
            }
            "--case" => {
                let v = it.next().ok_or("--case needs ENTRIES:BYTES")?;
                let case = v
                    .split_once(':')
                    .and_then(|(e, b)| Some((e.parse().ok()?, b.parse().ok()?)))
                    .ok_or(format!("--case: not ENTRIES:BYTES: {v}"))?;
                a.cases.push(case);
            }
            "--deferred" => a.deferred = true,
            "--serde-bytes" => a.serde_bytes = true,
            // `cargo bench` passes this to every target.
            "--bench" => {}
            other => {
                return Err(format!(
                    "unknown argument {other:?} (use --dir, --secs, --case, --writes, --batch, --payload, --deferred, --serde-bytes)"
                ))
            }
        }
    }
    Ok(a)
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
    if let Some(n) = args.writes {
        if args.serde_bytes {
            writes::<BytesEntry>(&args, n, tmp.path());
        } else {
            writes::<BenchEntry>(&args, n, tmp.path());
        }
        return;
    }
    println!(
        "write_atomically, {} s per cell, files in {}",
        args.secs,
        tmp.path().display()
    );
    println!(
        "{:>6} {:>8}  {:<22} {:>12} {:>10} {:>8} {:>9}",
        "batch", "payload", "backend", "entries/s", "syncs/s", "x floor", "x memory"
    );
    let mut case = 0;
    for &payload in &[8usize, 256] {
        for &n in &[1usize, 100, 1000] {
            if !args.cases.is_empty() && !args.cases.contains(&(n, payload)) {
                continue;
            }
            case += 1;
            let dir = tmp.path().join(format!("case-{case}"));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("cannot create {}: {e}", dir.display());
                std::process::exit(1);
            }
            let plain = dir.join("plain-file");
            let encoding = dir.join("encoding-file");
            let immediate = dir.join("immediate");
            let deferred = dir.join("deferred");
            // Each turn builds its backend afresh and drops it after: two `PersistentStorage`s
            // alive in one process share sled's background threads, and a `Deferred` one with
            // a backlog slows the other's syncs many times over (measured: 0.6 ms -> 20 ms per
            // write), which would be the benchmark's artefact, not the backend's cost.
            let backends: Vec<Box<dyn Fn(usize) -> Runner>> = vec![
                Box::new(move |_| {
                    floor_runner(&plain, n, payload).unwrap_or_else(|e| {
                        eprintln!("plain file: {e}");
                        std::process::exit(1);
                    })
                }),
                Box::new(move |_| {
                    storage_runner(MemoryStorage::default, n, payload, Some(MEMORY_RESET))
                }),
                Box::new(move |_| {
                    encoding_file_runner(&encoding, n, payload).unwrap_or_else(|e| {
                        eprintln!("plain file: {e}");
                        std::process::exit(1);
                    })
                }),
                persistent_backend(immediate, Durability::Immediate, n, payload),
                persistent_backend(deferred, Durability::Deferred, n, payload),
            ];
            // Round-robin, so that the disk's changing load (fsync latency depends on what
            // else the machine writes) falls on every backend alike.
            let mut total = vec![
                Measured {
                    batches: 0,
                    time: Duration::ZERO
                };
                backends.len()
            ];
            for round in 0..ROUNDS {
                for (b, t) in backends.iter().zip(total.iter_mut()) {
                    let mut runner = b(round);
                    let m = runner(args.secs / ROUNDS as f64);
                    t.batches += m.batches;
                    t.time += m.time;
                    drop(runner);
                    // Outside the clock: write back what the backend left dirty (Deferred
                    // leaves a lot), so that the next one's syncs do not wait for it.
                    settle_disk();
                }
            }
            let (floor, memory, encoding, immediate, deferred) =
                (total[0], total[1], total[2], total[3], total[4]);
            let row = |name: &str, m: &Measured| {
                println!(
                    "{:>6} {:>7}B  {:<22} {:>12.0} {:>10.0} {:>8.2} {:>9.1}",
                    n,
                    payload,
                    name,
                    m.batches_per_s() * n as f64,
                    m.batches_per_s(),
                    m.per_batch() / floor.per_batch(),
                    m.per_batch() / memory.per_batch(),
                );
            };
            row("plain file + fsync", &floor);
            row("MemoryStorage", &memory);
            row("plain file + encoding", &encoding);
            row("Persistent Immediate", &immediate);
            row("Persistent Deferred", &deferred);
            // Free the disk space of this case before the next.
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}
