//! Side-by-side benchmark of this `omnipaxos`, crates.io `omnipaxos` 0.2.4 and tikv `raft` 0.7,
//! on one workload, in one process. See the crate's README.md.
//!
//! ```text
//! cargo run --release --manifest-path omnipaxos_bench/Cargo.toml                       # throughput + failover (a few minutes)
//! cargo run --release --manifest-path omnipaxos_bench/Cargo.toml -- --quick            # fewer, shorter runs
//! cargo run --release --manifest-path omnipaxos_bench/Cargo.toml -- throughput|failover|memory [--runs N]
//! ```

mod alloc;
#[macro_use]
mod omnipaxos_cluster;
mod ours;
mod raft_rs;
mod upstream;
mod workload;

use ours::Ours;
use raft_rs::Raft;
use std::time::Instant;
use upstream::Upstream;
use workload::{Cluster, Payload, E256, E8};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// The election timeout, in ticks, of all three systems.
const ELECTION_TICKS: u64 = 10;

/// CPU time of this thread in nanoseconds (Linux), or `None`.
fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// One throughput run's results.
#[derive(Clone, Copy, Debug)]
struct Sample {
    entries_per_s: f64,
    cpu_ns_per_entry: f64,
    peak_bytes: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run_once<P: Payload, C: Cluster<P>>(window: u64, total: u64) -> Sample {
    let base = alloc::reset_peak();
    let mut c = C::new(ELECTION_TICKS);
    let cpu0 = cpu_ns();
    let t0 = Instant::now();
    let applied = workload::throughput::<P, C>(&mut c, window, total);
    let wall = t0.elapsed().as_secs_f64();
    let cpu = match (cpu0, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64,
        _ => wall * 1e9,
    };
    let peak_bytes = alloc::peak().saturating_sub(base);
    drop(c);
    Sample {
        entries_per_s: applied as f64 / wall,
        cpu_ns_per_entry: cpu / applied as f64,
        peak_bytes,
    }
}

struct Row {
    name: &'static str,
    eps: f64,
    cpu: f64,
    peak: f64,
}

fn row(name: &'static str, samples: &[Sample]) -> Row {
    Row {
        name,
        eps: median(samples.iter().map(|s| s.entries_per_s).collect()),
        cpu: median(samples.iter().map(|s| s.cpu_ns_per_entry).collect()),
        peak: median(samples.iter().map(|s| s.peak_bytes as f64).collect()),
    }
}

/// `runs` runs of each system, interleaved (ours, 0.2.4, raft, ours, ...) so that a busy phase
/// of the machine hits all three alike.
fn measure<P>(window: u64, total: u64, runs: usize) -> [Row; 3]
where
    P: Payload + omnipaxos::storage::Entry + omnipaxos_up::storage::Entry,
{
    let mut s: [Vec<Sample>; 3] = Default::default();
    for _ in 0..runs {
        s[0].push(run_once::<P, Ours<P>>(window, total));
        s[1].push(run_once::<P, Upstream<P>>(window, total));
        s[2].push(run_once::<P, Raft<P>>(window, total));
    }
    [
        row(Ours::<P>::NAME, &s[0]),
        row(Upstream::<P>::NAME, &s[1]),
        row(Raft::<P>::NAME, &s[2]),
    ]
}

/// Entries per run: enough for the fastest system to run for tens of milliseconds (the thread's
/// CPU clock advances in scheduler ticks) and the slowest for a few tenths of a second.
fn total_for(window: u64, size: usize, scale: f64) -> u64 {
    let base = match (window, size) {
        (1, 8) => 50_000.0,
        (1, _) => 20_000.0,
        (_, 8) => 1_000_000.0,
        _ => 200_000.0,
    };
    ((base * scale) as u64).max(window * 2)
}

struct Verdict {
    ok: bool,
    what: String,
}

fn throughput_for<P>(runs: usize, scale: f64, verdicts: &mut Vec<Verdict>)
where
    P: Payload + omnipaxos::storage::Entry + omnipaxos_up::storage::Entry,
{
    for window in [1u64, 100, 10_000] {
        let total = total_for(window, P::SIZE, scale);
        let rows = measure::<P>(window, total, runs);
        println!(
            "\n{} B entries, window {window}, {total} entries per run, median of {runs} runs",
            P::SIZE
        );
        println!(
            "  {:<16} {:>14} {:>14} {:>12} {:>14}",
            "system", "entries/s", "CPU ns/entry", "peak MiB", "ours / this"
        );
        for r in &rows {
            println!(
                "  {:<16} {:>14.0} {:>14.1} {:>12.1} {:>13.2}x",
                r.name,
                r.eps,
                r.cpu,
                r.peak / (1024.0 * 1024.0),
                rows[0].eps / r.eps
            );
        }
        let best_peer = rows[1].eps.max(rows[2].eps);
        let ratio = rows[0].eps / best_peer;
        // The same comparison in CPU time per entry (steadier on a shared machine).
        let cpu_ratio = rows[1].cpu.min(rows[2].cpu) / rows[0].cpu;
        match window {
            1 => verdicts.push(Verdict {
                ok: ratio >= 1.0,
                what: format!(
                    "{} B, window 1: ours / faster peer = {ratio:.2} in entries/s, \
                     {cpu_ratio:.2} in CPU time per entry (goal >= 1)",
                    P::SIZE
                ),
            }),
            10_000 => verdicts.push(Verdict {
                ok: ratio >= 2.0,
                what: format!(
                    "{} B, window 10000: ours / faster peer = {ratio:.2} in entries/s, \
                     {cpu_ratio:.2} in CPU time per entry (goal >= 2)",
                    P::SIZE
                ),
            }),
            _ => {}
        }
    }
}

/// Memory our `MemoryStorage` holds per retained entry, at several log lengths (the worst is
/// reported: a growing vector may have up to twice the capacity it uses).
fn memory_for<P: Payload + omnipaxos::storage::Entry>(verdicts: &mut Vec<Verdict>) {
    use omnipaxos::storage::{Storage, StorageOp};
    let mut worst: f64 = 0.0;
    let mut worst_n = 0;
    let lengths = [
        1_000usize, 4_097, 10_000, 16_385, 50_000, 65_537, 100_000, 131_073, 200_000, 262_145,
    ];
    for n in lengths {
        let base = alloc::current();
        let mut s = omnipaxos_storage::memory_storage::MemoryStorage::<P>::default();
        let mut seq = 0u64;
        while (seq as usize) < n {
            let k = (n - seq as usize).min(100);
            let batch: Vec<P> = (seq..seq + k as u64).map(P::make).collect();
            s.write_atomically(vec![StorageOp::AppendEntries(batch)])
                .expect("append");
            seq += k as u64;
        }
        let per = (alloc::current() - base) as f64 / n as f64;
        if per > worst {
            worst = per;
            worst_n = n;
        }
        drop(s);
    }
    let budget = 1.5 * P::SIZE as f64 + 16.0;
    println!(
        "  {:>4} B entries: worst {:.1} B per retained entry (at {} entries); budget {:.0} B",
        P::SIZE,
        worst,
        worst_n,
        budget
    );
    verdicts.push(Verdict {
        ok: worst <= budget,
        what: format!(
            "{} B entries: {worst:.1} B per retained entry in MemoryStorage (goal <= {budget:.0})",
            P::SIZE
        ),
    });
}

fn failover_for<C: Cluster<E8>>(runs: usize) -> (f64, u64) {
    let ticks: Vec<u64> = (0..runs)
        .map(|r| {
            let mut c = C::new(ELECTION_TICKS);
            // Vary where in its heartbeat round the leader crashes.
            workload::failover::<E8, C>(&mut c, 2 * ELECTION_TICKS + r as u64, 100 * ELECTION_TICKS)
        })
        .collect();
    let max = *ticks.iter().max().expect("at least one run");
    (median(ticks.iter().map(|t| *t as f64).collect()), max)
}

fn failover(runs: usize, verdicts: &mut Vec<Verdict>) {
    println!(
        "\nFailover: ticks from a leader crash to the first decision of an entry proposed after it \
         (election timeout {ELECTION_TICKS} ticks for all; {runs} runs, crash at varied phases)"
    );
    println!(
        "  {:<16} {:>14} {:>14} {:>16}",
        "system", "median ticks", "max ticks", "median (timeouts)"
    );
    let rows = [
        (Ours::<E8>::NAME, failover_for::<Ours<E8>>(runs)),
        (Upstream::<E8>::NAME, failover_for::<Upstream<E8>>(runs)),
        (Raft::<E8>::NAME, failover_for::<Raft<E8>>(runs)),
    ];
    for (name, (med, max)) in rows {
        println!(
            "  {:<16} {:>14.1} {:>14} {:>16.2}",
            name,
            med,
            max,
            med / ELECTION_TICKS as f64
        );
    }
    let (_, (_, ours_max)) = rows[0];
    let in_timeouts = ours_max as f64 / ELECTION_TICKS as f64;
    verdicts.push(Verdict {
        ok: in_timeouts <= 2.0,
        what: format!("failover: worst {in_timeouts:.2} election timeouts (goal <= 2)"),
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let runs = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 3 } else { 7 });
    let scale = if quick { 0.25 } else { 1.0 };
    let mode = args
        .first()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .unwrap_or("all");
    if mode == "one" {
        // `one SYSTEM SIZE WINDOW TOTAL`: a single run, e.g. under a profiler.
        let nums: Vec<u64> = args.iter().filter_map(|a| a.parse().ok()).collect();
        let system = args.get(1).map(String::as_str).unwrap_or("ours");
        let (size, window, total) = match nums[..] {
            [size, window, total] if window > 0 && total > 0 => (size, window, total),
            _ => {
                eprintln!(
                    "usage: omnipaxos_bench one ours|upstream|raft SIZE(8|256) WINDOW TOTAL (WINDOW and TOTAL positive)"
                );
                std::process::exit(2);
            }
        };
        let s = match (system, size) {
            ("ours", 8) => run_once::<E8, Ours<E8>>(window, total),
            ("ours", _) => run_once::<E256, Ours<E256>>(window, total),
            ("upstream", 8) => run_once::<E8, Upstream<E8>>(window, total),
            ("upstream", _) => run_once::<E256, Upstream<E256>>(window, total),
            (_, 8) => run_once::<E8, Raft<E8>>(window, total),
            (_, _) => run_once::<E256, Raft<E256>>(window, total),
        };
        println!("{system} {size} B window {window}: {s:?}");
        return;
    }
    if !matches!(mode, "all" | "throughput" | "failover" | "memory") {
        eprintln!("usage: omnipaxos_bench [all|throughput|failover|memory] [--quick] [--runs N]");
        std::process::exit(2);
    }
    println!(
        "3 replicas in one thread, in-memory storage, messages moved without serialization; \
         the leader applies what is decided."
    );
    let mut verdicts = Vec::new();
    if matches!(mode, "all" | "throughput") {
        throughput_for::<E8>(runs, scale, &mut verdicts);
        throughput_for::<E256>(runs, scale, &mut verdicts);
    }
    if matches!(mode, "all" | "memory") {
        println!("\nMemory of our MemoryStorage per retained entry:");
        memory_for::<E8>(&mut verdicts);
        memory_for::<E256>(&mut verdicts);
    }
    if matches!(mode, "all" | "failover") {
        failover(if quick { 10 } else { 4 * runs }, &mut verdicts);
    }
    println!("\nGoals:");
    for v in verdicts {
        println!("  [{}] {}", if v.ok { "met" } else { "NOT met" }, v.what);
    }
}
