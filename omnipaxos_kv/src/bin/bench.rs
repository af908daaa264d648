//! Measures the service on this machine: 3 servers with fsync on, closed-loop load at read
//! ratios 0, 0.5 and 0.95 (no faults), then one run that SIGKILLs the leader to measure the
//! time without a leader. `bench [--duration SECS] [--workers N]`. Results go to
//! `target/omnipaxos-kv-bench/<run>/`.

use omnipaxos_kv::cluster::SERVE_ARG;
use omnipaxos_kv::experiment::{default_out_dir, run_experiment, ExperimentOptions};
use omnipaxos_kv::stats::ms;
use std::time::Duration;

fn main() {
    if std::env::args().nth(1).as_deref() == Some(SERVE_ARG) {
        // A server of the cluster this program started (a copy of itself).
        std::process::exit(omnipaxos_kv::server::serve_from_env());
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut duration = 10u64;
    let mut workers = 16usize;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next();
        match (a.as_str(), v.and_then(|v| v.parse::<u64>().ok())) {
            ("--duration", Some(d)) if d >= 2 => duration = d,
            ("--workers", Some(w)) if w > 0 => workers = w as usize,
            _ => {
                eprintln!("usage: bench [--duration SECS>=2] [--workers N>0]");
                std::process::exit(2);
            }
        }
    }
    let server_bin = std::env::current_exe().unwrap_or_else(|e| {
        eprintln!("bench: cannot locate this executable: {e}");
        std::process::exit(1)
    });
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| {
        eprintln!("bench: cannot start the async runtime: {e}");
        std::process::exit(1)
    });
    let mut lines = Vec::new();
    let runs = [(0.0, false), (0.5, false), (0.95, false), (0.5, true)];
    for (read_ratio, kill) in runs {
        let opts = ExperimentOptions {
            duration: Duration::from_secs(duration),
            read_ratio,
            workers,
            kill_leader: kill,
            restart: false,
            check: false,
            progress: false,
            server_args: vec![SERVE_ARG.to_string()],
            out_dir: default_out_dir("omnipaxos-kv-bench").join(format!(
                "read-{read_ratio}{}",
                if kill { "-kill" } else { "" }
            )),
            ..Default::default()
        };
        match rt.block_on(run_experiment(&server_bin, opts)) {
            Ok(r) => {
                let s = &r.summary;
                let line = format!(
                    "read ratio {read_ratio:4}{}: {:7.0} ops/s  p50 {:6.2} ms  p99 {:7.2} ms  failed {}{}",
                    if kill { " + leader kill" } else { "" },
                    s.throughput,
                    ms(s.p50),
                    ms(s.p99),
                    s.failed,
                    match (r.new_leader_after, r.stall_after_kill) {
                        (Some(l), Some(a)) => format!(
                            "  | new leader after {:.0} ms, no answer for {:.0} ms",
                            ms(l),
                            ms(a)
                        ),
                        _ => String::new(),
                    }
                );
                println!("{line}");
                lines.push(line);
            }
            Err(e) => {
                eprintln!("bench: {e}");
                std::process::exit(1);
            }
        }
    }
    println!("\n3 servers, fsync on, {workers} closed-loop clients, {duration} s per run:");
    for l in lines {
        println!("  {l}");
    }
}
