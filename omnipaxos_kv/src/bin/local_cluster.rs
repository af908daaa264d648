//! `cargo run --release -p omnipaxos_kv --bin local_cluster`: starts 3 servers on loopback
//! (child processes of the `server` binary next to this one) with a temporary data directory,
//! runs a workload, SIGKILLs the leader half way and restarts it later, prints progress every
//! second, and ends with a summary and an SVG plot. `--help` lists the options.

use omnipaxos_kv::cluster::SERVE_ARG;
use omnipaxos_kv::experiment::{run_experiment, ExperimentOptions};
use std::path::PathBuf;
use std::time::Duration;

const HELP: &str = "usage: local_cluster [options]
  --duration SECS     workload length (default 20)
  --rate N            requests per second, 0 = closed loop (default 0)
  --read-ratio F      fraction of Gets, 0..1 (default 0.5)
  --workers N         concurrent clients (default 16)
  --keys N            number of keys (default 100)
  --no-kill           do not kill the leader
  --no-restart        do not restart the killed server
  --pause-follower S  instead of killing the leader, SIGSTOP a follower half way for S seconds
  --no-fsync          servers do not sync their log (faster, not crash-safe)
  --no-check          skip the linearizability check of the history
  --data DIR          keep the servers' configs, logs and data in DIR (default: a temporary directory)
  --out DIR           where plot.svg, summary.json, requests.csv go (default target/omnipaxos-kv-results)";

fn parse(args: &[String]) -> Result<ExperimentOptions, String> {
    let mut o = ExperimentOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match a.as_str() {
            "--duration" => {
                let v = value(a)?;
                let secs: u64 = v
                    .parse()
                    .map_err(|_| format!("--duration: bad number {v:?}"))?;
                if secs < 2 {
                    return Err("--duration must be at least 2 seconds".into());
                }
                o.duration = Duration::from_secs(secs);
            }
            "--rate" => {
                let v = value(a)?;
                o.rate = v.parse().map_err(|_| format!("--rate: bad number {v:?}"))?;
            }
            "--read-ratio" => {
                let v = value(a)?;
                o.read_ratio = v
                    .parse()
                    .ok()
                    .filter(|r: &f64| (0.0..=1.0).contains(r))
                    .ok_or_else(|| {
                        format!("--read-ratio: {v:?} is not a number between 0 and 1")
                    })?;
            }
            "--workers" => {
                let v = value(a)?;
                o.workers = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--workers: {v:?} is not a positive number"))?;
            }
            "--keys" => {
                let v = value(a)?;
                o.num_keys = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n > 0)
                    .ok_or_else(|| format!("--keys: {v:?} is not a positive number"))?;
            }
            "--pause-follower" => {
                let v = value(a)?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| *s > 0.0 && *s < 3600.0)
                    .ok_or_else(|| format!("--pause-follower: {v:?} is not a number of seconds"))?;
                o.pause_follower = Some(Duration::from_secs_f64(secs));
                o.kill_leader = false;
            }
            "--no-kill" => o.kill_leader = false,
            "--no-restart" => o.restart = false,
            "--no-fsync" => o.fsync = false,
            "--no-check" => o.check = false,
            "--out" => o.out_dir = PathBuf::from(value(a)?),
            "--data" => o.data_dir = Some(PathBuf::from(value(a)?)),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(o)
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some(SERVE_ARG) {
        // A server of the cluster this program started (a copy of itself).
        std::process::exit(omnipaxos_kv::server::serve_from_env());
    }
    omnipaxos_kv::logging::init_logging(omnipaxos_kv::logging::TOOL_DEFAULT_FILTER);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{HELP}");
        return;
    }
    let mut opts = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("local_cluster: {e}\n{HELP}");
            std::process::exit(2);
        }
    };
    opts.server_args = vec![SERVE_ARG.to_string()];
    let server_bin = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("local_cluster: cannot locate this executable: {e}");
            std::process::exit(1);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("local_cluster: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run_experiment(&server_bin, opts)) {
        Ok(report) => {
            println!("\n== summary ==\n{}", report.text());
            let bad = matches!(report.linearizable, Some(Err(_)))
                || report.restarted_caught_up == Some(false);
            if bad {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("local_cluster: {e}");
            std::process::exit(1);
        }
    }
}
