//! `cargo run --release -p etcd_compare`: omnipaxos-kv next to etcd on this machine.
//!
//! Starts a 3-member etcd cluster on loopback (installing Debian's `etcd-server` with apt-get
//! when `etcd` is missing and this runs as root) and a 3-server omnipaxos-kv cluster (fsync on;
//! its servers are copies of this program run with `--serve`), then runs the same closed-loop
//! workload against both: 16 clients at read ratios 0, 0.5 and 0.95, and 1 client at read
//! ratios 0 and 0.95, on 100 keys, with linearizable reads on both sides (etcd: `Range` with
//! `serializable = false`, its read index; omnipaxos-kv: `Get` by read index, with its default
//! settings), clients spread over the servers (client *i* talks to server *i mod 3*). The order
//! alternates: one workload runs omnipaxos-kv first, the next etcd first. It prints a table:
//! ops/s, p50 and p99 per system and the ratios omnipaxos-kv / etcd.
//!
//! Options: `--duration SECS` per measured run (default 10), `--warmup SECS` before each
//! (default 2), `--etcd PATH` (default: `etcd` on the `PATH`), `--out FILE` (the table as
//! Markdown, default `target/etcd-compare.md`), `--mix CLIENTS:READ_RATIO` (repeatable: run
//! these workloads instead of the five above), `--only kv|etcd` (run one system, e.g. to
//! profile it).

#![warn(missing_docs)]

mod etcd;

use omnipaxos_kv::client::KvClient;
use omnipaxos_kv::cluster::{ClusterOptions, ProcessCluster, SERVE_ARG};
use omnipaxos_kv::kv::KVCommand;
use omnipaxos_kv::stats::{ms, percentile};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One workload: clients and read ratio.
#[derive(Debug, Clone, Copy)]
struct Mix {
    clients: usize,
    read_ratio: f64,
}

const MIXES: [Mix; 5] = [
    Mix {
        clients: 16,
        read_ratio: 0.0,
    },
    Mix {
        clients: 16,
        read_ratio: 0.5,
    },
    Mix {
        clients: 16,
        read_ratio: 0.95,
    },
    Mix {
        clients: 1,
        read_ratio: 0.0,
    },
    Mix {
        clients: 1,
        read_ratio: 0.95,
    },
];

const NUM_KEYS: u64 = 100;

/// What one measured run gave.
#[derive(Debug, Clone, Copy, Default)]
struct Outcome {
    ops_per_s: f64,
    p50: Duration,
    p99: Duration,
    failed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum System {
    Kv,
    Etcd,
}

struct Options {
    duration: Duration,
    warmup: Duration,
    etcd: Option<PathBuf>,
    out: PathBuf,
    mixes: Vec<Mix>,
    only: Option<System>,
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The next operation of a worker: `(is_read, key)`.
fn next_op(rng: &mut u64, read_ratio: f64) -> (bool, String) {
    *rng = splitmix(*rng);
    let key = format!("key{}", *rng % NUM_KEYS);
    *rng = splitmix(*rng);
    let is_read = ((*rng >> 11) as f64 / (1u64 << 53) as f64) < read_ratio;
    (is_read, key)
}

fn summarize(mut lat: Vec<Duration>, failed: usize, elapsed: Duration) -> Outcome {
    lat.sort_unstable();
    Outcome {
        ops_per_s: lat.len() as f64 / elapsed.as_secs_f64().max(1e-9),
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        failed,
    }
}

/// Closed loop against omnipaxos-kv: worker *i* starts on server *i mod n*.
async fn run_kv(addrs: &[String], mix: Mix, duration: Duration, seed: u64) -> Outcome {
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..mix.clients {
        let mut servers = addrs.to_vec();
        servers.rotate_left(w % addrs.len());
        let mut rng = splitmix(seed ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
        handles.push(tokio::spawn(async move {
            let mut c = KvClient::new(servers, Duration::from_millis(500), Duration::from_secs(10));
            let (mut lat, mut failed, mut n) = (Vec::new(), 0usize, 0u64);
            while start.elapsed() < duration {
                let (read, key) = next_op(&mut rng, mix.read_ratio);
                n += 1;
                let cmd = if read {
                    KVCommand::Get(key)
                } else {
                    KVCommand::Put(key, format!("{:x}-{n}", c.client_id()))
                };
                let t = Instant::now();
                match c.execute(cmd).await {
                    Ok(_) if start.elapsed() <= duration => lat.push(t.elapsed()),
                    Ok(_) => {}
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    collect(handles, start.elapsed().max(duration)).await
}

async fn collect(
    handles: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    elapsed: Duration,
) -> Outcome {
    let (mut all, mut failed) = (Vec::new(), 0);
    for h in handles {
        if let Ok((l, f)) = h.await {
            all.extend(l);
            failed += f;
        }
    }
    summarize(all, failed, elapsed)
}

/// Closed loop against etcd: worker *i* talks to member *i mod n*.
async fn run_etcd(endpoints: &[String], mix: Mix, duration: Duration, seed: u64) -> Outcome {
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..mix.clients {
        let endpoint = endpoints[w % endpoints.len()].clone();
        let mut rng = splitmix(seed ^ (w as u64 + 1).wrapping_mul(0x1234_5678_9abc_def1));
        handles.push(tokio::spawn(async move {
            let (mut lat, mut failed, mut n) = (Vec::new(), 0usize, 0u64);
            let mut kv = match etcd::Kv::connect(&endpoint).await {
                Ok(kv) => kv,
                Err(e) => {
                    eprintln!("etcd_compare: cannot connect to {endpoint}: {e}");
                    return (lat, 1);
                }
            };
            while start.elapsed() < duration {
                let (read, key) = next_op(&mut rng, mix.read_ratio);
                n += 1;
                let t = Instant::now();
                let r = if read {
                    kv.get(&key).await.map(|_| ())
                } else {
                    kv.put(&key, &format!("{w:x}-{n}")).await
                };
                match r {
                    Ok(()) if start.elapsed() <= duration => lat.push(t.elapsed()),
                    Ok(()) => {}
                    Err(_) => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    collect(handles, start.elapsed().max(duration)).await
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(2),
        etcd: None,
        out: omnipaxos_kv::experiment::default_out_dir("etcd-compare.md"),
        mixes: Vec::new(),
        only: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--duration" | "--warmup" => {
                let v = value()?;
                let secs: u64 = v.parse().map_err(|_| format!("{a}: bad number {v:?}"))?;
                if a == "--duration" {
                    if secs == 0 {
                        return Err("--duration must be positive".into());
                    }
                    o.duration = Duration::from_secs(secs);
                } else {
                    o.warmup = Duration::from_secs(secs);
                }
            }
            "--etcd" => o.etcd = Some(PathBuf::from(value()?)),
            "--out" => o.out = PathBuf::from(value()?),
            "--mix" => o.mixes.push(parse_mix(&value()?)?),
            "--only" => {
                o.only = Some(match value()?.as_str() {
                    "kv" => System::Kv,
                    "etcd" => System::Etcd,
                    other => return Err(format!("--only: {other:?} is neither kv nor etcd")),
                })
            }
            "--help" | "-h" => return Err(
                "usage: etcd_compare [--duration SECS] [--warmup SECS] [--etcd PATH] [--out FILE] [--mix CLIENTS:READ_RATIO]... [--only kv|etcd]"
                    .into(),
            ),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if o.mixes.is_empty() {
        o.mixes = MIXES.to_vec();
    }
    Ok(o)
}

/// `CLIENTS:READ_RATIO`, e.g. `16:0.5`.
fn parse_mix(s: &str) -> Result<Mix, String> {
    let bad = || format!("--mix: {s:?} is not CLIENTS:READ_RATIO (e.g. 16:0.5)");
    let (c, r) = s.split_once(':').ok_or_else(bad)?;
    let clients: usize = c.parse().map_err(|_| bad())?;
    let read_ratio: f64 = r.parse().map_err(|_| bad())?;
    if clients == 0 || !(0.0..=1.0).contains(&read_ratio) {
        return Err(bad());
    }
    Ok(Mix {
        clients,
        read_ratio,
    })
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(SERVE_ARG) {
        // A server of the omnipaxos-kv cluster this program started (a copy of itself).
        std::process::exit(omnipaxos_kv::server::serve_from_env());
    }
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("etcd_compare: {e}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("etcd_compare: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(opts)) {
        eprintln!("etcd_compare: {e}");
        std::process::exit(1);
    }
}

async fn run(opts: Options) -> Result<(), String> {
    let with_etcd = opts.only != Some(System::Kv);
    let with_kv = opts.only != Some(System::Etcd);
    let (etcd_bin, version) = if with_etcd {
        let bin = etcd::find_or_install(opts.etcd.as_deref())?;
        let version = etcd::version(&bin);
        (Some(bin), version)
    } else {
        (None, "(not run)".to_string())
    };
    let dir = tempfile::Builder::new()
        .prefix("etcd-compare-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    println!(
        "starting {}, 3 members each, data in {}",
        match (with_etcd, with_kv) {
            (true, true) => format!("etcd ({version}) and omnipaxos-kv"),
            (true, false) => format!("etcd ({version})"),
            _ => "omnipaxos-kv".to_string(),
        },
        dir.path().display()
    );
    let etcd_cluster = match &etcd_bin {
        Some(bin) => {
            let c = etcd::EtcdCluster::start(bin, &dir.path().join("etcd"), 3)?;
            c.wait_ready(Duration::from_secs(30)).await?;
            Some(c)
        }
        None => None,
    };
    let endpoints = etcd_cluster
        .as_ref()
        .map(|c| c.endpoints())
        .unwrap_or_default();
    let kv_cluster = if with_kv {
        let me = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
        let c = ProcessCluster::start(
            &me,
            &dir.path().join("omnipaxos-kv"),
            ClusterOptions {
                fsync: true,
                server_args: vec![SERVE_ARG.to_string()],
                ..Default::default()
            },
        )
        .map_err(|e| format!("cannot start omnipaxos-kv: {e}"))?;
        c.wait_for_leader(Duration::from_secs(20))
            .await
            .ok_or("omnipaxos-kv elected no leader within 20 s")?;
        let pids: Vec<String> = c
            .ids()
            .iter()
            .filter_map(|&id| c.pid(id).map(|p| format!("{id}: pid {p}")))
            .collect();
        println!("omnipaxos-kv servers: {}", pids.join(", "));
        Some(c)
    } else {
        None
    };
    let addrs = kv_cluster.as_ref().map(|c| c.addrs()).unwrap_or_default();

    let mut rows = Vec::new();
    for (i, mix) in opts.mixes.iter().enumerate() {
        let order = if i % 2 == 0 {
            [System::Kv, System::Etcd]
        } else {
            [System::Etcd, System::Kv]
        };
        let mut kv = Outcome::default();
        let mut et = Outcome::default();
        for sys in order {
            if opts.only.is_some_and(|o| o != sys) {
                continue;
            }
            let seed = 0x5eed ^ i as u64;
            if !opts.warmup.is_zero() {
                match sys {
                    System::Kv => run_kv(&addrs, *mix, opts.warmup, seed ^ 1).await,
                    System::Etcd => run_etcd(&endpoints, *mix, opts.warmup, seed ^ 1).await,
                };
            }
            let o = match sys {
                System::Kv => run_kv(&addrs, *mix, opts.duration, seed).await,
                System::Etcd => run_etcd(&endpoints, *mix, opts.duration, seed).await,
            };
            println!(
                "{:>2} clients, read ratio {:4}: {:<12} {:>8.0} ops/s  p50 {:7.2} ms  p99 {:7.2} ms{}",
                mix.clients,
                mix.read_ratio,
                if sys == System::Kv { "omnipaxos-kv" } else { "etcd" },
                o.ops_per_s,
                ms(o.p50),
                ms(o.p99),
                if o.failed > 0 {
                    format!("  ({} failed)", o.failed)
                } else {
                    String::new()
                }
            );
            match sys {
                System::Kv => kv = o,
                System::Etcd => et = o,
            }
        }
        rows.push((*mix, order[0], kv, et));
    }
    drop(kv_cluster);
    drop(etcd_cluster);
    dir.close()
        .map_err(|e| format!("cannot remove the temporary directory: {e}"))?;

    let table = render(&rows, &version, opts.duration);
    println!("\n{table}");
    if let Some(parent) = opts.out.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(&opts.out, &table)
        .map_err(|e| format!("cannot write {}: {e}", opts.out.display()))?;
    println!("(also in {})", opts.out.display());
    Ok(())
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

fn render(rows: &[(Mix, System, Outcome, Outcome)], version: &str, duration: Duration) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "3 servers each on loopback, fsync on, {} s closed loop per cell, 100 keys, linearizable reads; etcd {version}",
        duration.as_secs()
    );
    let _ = writeln!(t);
    let _ = writeln!(
        t,
        "| clients | reads | first | kv ops/s | etcd ops/s | kv/etcd ops | kv p50 ms | etcd p50 ms | kv/etcd p50 | kv p99 ms | etcd p99 ms | kv/etcd p99 |"
    );
    let _ = writeln!(
        t,
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (mix, first, kv, et) in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {:.0} | {:.0} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} | {} |",
            mix.clients,
            mix.read_ratio,
            if *first == System::Kv { "kv" } else { "etcd" },
            kv.ops_per_s,
            et.ops_per_s,
            ratio(kv.ops_per_s, et.ops_per_s),
            ms(kv.p50),
            ms(et.p50),
            ratio(ms(kv.p50), ms(et.p50)),
            ms(kv.p99),
            ms(et.p99),
            ratio(ms(kv.p99), ms(et.p99)),
        );
    }
    t
}
