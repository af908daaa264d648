//! One run of a local cluster under load: start the servers, run the workload, optionally
//! SIGKILL the leader half way (and restart it later), print progress once a second, and
//! write a summary, the per-request CSV and an SVG plot.

use crate::checker::{check_history, CheckError};
use crate::client::status;
use crate::cluster::{ClusterOptions, ProcessCluster, Signal};
use crate::config::RequestInterval;
use crate::kv::NodeId;
use crate::stats::{buckets, ms, svg_plot, Marker, Summary};
use crate::workload::{run_workload, Record, Workload, CSV_HEADER};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What to run.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    /// Length of the workload.
    pub duration: Duration,
    /// Requests per second (0: closed loop).
    pub rate: u64,
    /// Fraction of `Get`s.
    pub read_ratio: f64,
    /// Concurrent clients.
    pub workers: usize,
    /// Number of keys.
    pub num_keys: usize,
    /// SIGKILL the leader half way through.
    pub kill_leader: bool,
    /// Restart the killed server at three quarters of the run.
    pub restart: bool,
    /// SIGSTOP a follower half way through for this long, then SIGCONT it (a pause, not a
    /// crash: its connections stay open and its clients wait). Use without `kill_leader`.
    pub pause_follower: Option<Duration>,
    /// Servers sync their log on every write.
    pub fsync: bool,
    /// Check the recorded history for linearizability at the end.
    pub check: bool,
    /// Where the servers' configs, logs and data go (default: a temporary directory, removed
    /// at the end).
    pub data_dir: Option<PathBuf>,
    /// Where the summary, CSV and plot go (default [`default_out_dir`]).
    pub out_dir: PathBuf,
    /// Print one progress line per second.
    pub progress: bool,
    /// Command-line arguments for the server program (see [`crate::cluster::SERVE_ARG`]).
    pub server_args: Vec<String>,
}

impl Default for ExperimentOptions {
    fn default() -> Self {
        ExperimentOptions {
            duration: Duration::from_secs(20),
            rate: 0,
            read_ratio: 0.5,
            workers: 16,
            num_keys: 100,
            kill_leader: true,
            restart: true,
            pause_follower: None,
            data_dir: None,
            fsync: true,
            check: true,
            out_dir: default_out_dir("omnipaxos-kv-results"),
            progress: true,
            server_args: Vec::new(),
        }
    }
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Report {
    /// Totals.
    pub summary: Summary,
    /// The killed leader and when it was killed (since the workload's start).
    pub killed: Option<(NodeId, Duration)>,
    /// Time from the kill until a surviving server named a new leader.
    pub new_leader_after: Option<Duration>,
    /// Longest time without any answered request in the 10 s after the kill (counting from
    /// the kill itself): how long clients saw the service stalled.
    pub stall_after_kill: Option<Duration>,
    /// The paused follower, when it was paused and for how long (since the workload's start).
    pub paused: Option<(NodeId, Duration, Duration)>,
    /// Time from the paused follower's SIGCONT until it answered a status request.
    pub status_after_resume: Option<Duration>,
    /// Whether the restarted server caught up with the others' decided log by the end.
    pub restarted_caught_up: Option<bool>,
    /// The linearizability check of the history (if run).
    pub linearizable: Option<Result<(), CheckError>>,
    /// Path of the SVG plot.
    pub plot_path: PathBuf,
    /// Path of the JSON summary.
    pub summary_path: PathBuf,
    /// Path of the per-request CSV.
    pub csv_path: PathBuf,
}

impl Report {
    /// A human-readable summary.
    pub fn text(&self) -> String {
        let s = &self.summary;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "requests answered: {} ({} reads, {} writes), failed: {}",
            s.ok, s.reads, s.writes, s.failed
        );
        let _ = writeln!(t, "throughput:        {:.0} ops/s", s.throughput);
        let _ = writeln!(
            t,
            "latency:           p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
            ms(s.p50),
            ms(s.p99),
            ms(s.max)
        );
        if let Some((id, at)) = self.killed {
            let _ = writeln!(
                t,
                "leader killed:     server {id} (SIGKILL) at {:.1} s",
                at.as_secs_f64()
            );
            match self.new_leader_after {
                Some(d) => {
                    let _ = writeln!(
                        t,
                        "time without a leader: {:.0} ms (until a survivor named a new leader)",
                        ms(d)
                    );
                }
                None => {
                    let _ = writeln!(t, "time without a leader: no new leader was seen!");
                }
            }
            if let Some(d) = self.stall_after_kill {
                let _ = writeln!(
                    t,
                    "longest time without an answer after the kill: {:.0} ms",
                    ms(d)
                );
            }
        }
        if let Some((id, at, len)) = self.paused {
            let _ = writeln!(
                t,
                "follower paused:   server {id} (SIGSTOP) at {:.1} s for {:.1} s",
                at.as_secs_f64(),
                len.as_secs_f64()
            );
            match self.status_after_resume {
                Some(d) => {
                    let _ = writeln!(t, "status answered:  {:.0} ms after SIGCONT", ms(d));
                }
                None => {
                    let _ = writeln!(t, "status answered:  not within 10 s of SIGCONT!");
                }
            }
        }
        let _ = writeln!(
            t,
            "longest time without any answer: {:.0} ms",
            ms(s.longest_gap)
        );
        if let Some(c) = self.restarted_caught_up {
            let _ = writeln!(
                t,
                "restarted server caught up: {}",
                if c { "yes" } else { "NO" }
            );
        }
        match &self.linearizable {
            Some(Ok(())) => {
                let _ = writeln!(t, "history linearizable (per key, WGL checker): yes");
            }
            Some(Err(e)) => {
                let _ = writeln!(t, "history linearizable: NO: {e}");
            }
            None => {}
        }
        let _ = writeln!(t, "plot:     {}", self.plot_path.display());
        let _ = writeln!(t, "summary:  {}", self.summary_path.display());
        let _ = write!(t, "requests: {}", self.csv_path.display());
        t
    }
}

/// `<dir>` next to the build's target directory (`target/<dir>` when run by `cargo run`), or in
/// the system's temporary directory if the executable's location is unknown. Keeps results out
/// of the source tree.
pub fn default_out_dir(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent().map(|p| p.join(name)))
        .unwrap_or_else(|| std::env::temp_dir().join(name))
}

async fn leader_among(addrs: &[String]) -> Option<NodeId> {
    for a in addrs {
        if let Ok(s) = status(a, Duration::from_millis(200)).await {
            if let Some(l) = s.leader {
                return Some(l);
            }
        }
    }
    None
}

/// Runs the experiment with the server binary at `server_bin`.
pub async fn run_experiment(server_bin: &Path, opts: ExperimentOptions) -> Result<Report, String> {
    if !server_bin.exists() {
        return Err(format!(
            "server binary not found at {} (build it with `cargo build --release -p omnipaxos_kv`)",
            server_bin.display()
        ));
    }
    let tmp = tempfile::Builder::new()
        .prefix("omnipaxos-kv-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let data_dir = opts
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&opts.out_dir)
        .map_err(|e| format!("cannot create {}: {e}", opts.out_dir.display()))?;
    let copts = ClusterOptions {
        fsync: opts.fsync,
        server_args: opts.server_args.clone(),
        ..Default::default()
    };
    let mut cluster = ProcessCluster::start(server_bin, &data_dir, copts)
        .map_err(|e| format!("cannot start the cluster: {e}"))?;
    if opts.progress {
        println!(
            "started {} servers on {} (data in {})",
            cluster.ids().len(),
            cluster.addrs().join(", "),
            data_dir.display()
        );
    }
    let first_leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .ok_or("no leader was elected within 20 s (see the server logs)")?;
    if opts.progress {
        println!(
            "server {first_leader} leads; running {} s of {} at read ratio {}{}",
            opts.duration.as_secs(),
            if opts.rate == 0 {
                format!("closed-loop load from {} clients", opts.workers)
            } else {
                format!("{} requests/s", opts.rate)
            },
            opts.read_ratio,
            if opts.kill_leader {
                "; the leader will be killed half way"
            } else {
                ""
            }
        );
    }

    let workload = Workload {
        servers: cluster.addrs(),
        intervals: vec![RequestInterval {
            duration_sec: opts.duration.as_secs().max(1),
            requests_per_sec: opts.rate,
            read_ratio: opts.read_ratio,
        }],
        workers: opts.workers,
        num_keys: opts.num_keys,
        attempt_timeout: Duration::from_millis(500),
        request_deadline: Duration::from_secs(10),
        seed: crate::client::random_client_id(),
        tls: None,
    };
    let t0 = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let load = tokio::spawn(run_workload(workload, t0, tx));
    let mut records: Vec<Record> = Vec::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let kill_at = opts.duration / 2;
    let restart_at = opts.duration * 3 / 4;
    let mut killed: Option<(NodeId, Duration)> = None;
    let mut restarted = false;
    let mut new_leader: Option<tokio::task::JoinHandle<Option<Duration>>> = None;
    type PauseOutcome = Option<((NodeId, Duration, Duration), Option<Duration>)>;
    let mut pause_task: Option<tokio::task::JoinHandle<PauseOutcome>> = None;
    if let Some(len) = opts.pause_follower {
        // A task of its own, so that the pause starts and ends on time (the loop below wakes
        // once a second).
        let addrs = cluster.addrs();
        let pids: Vec<(NodeId, Option<u32>)> =
            cluster.ids().iter().map(|&i| (i, cluster.pid(i))).collect();
        let progress = opts.progress;
        let pause_at = opts.duration / 2;
        pause_task = Some(tokio::spawn(async move {
            tokio::time::sleep(pause_at.saturating_sub(t0.elapsed())).await;
            let leader = leader_among(&addrs).await?;
            let (id, pid) = pids.iter().find(|(i, p)| *i != leader && p.is_some())?;
            let (id, pid) = (*id, (*pid)?);
            crate::cluster::send_signal(pid, Signal::Stop).ok()?;
            let at = t0.elapsed();
            if progress {
                println!(
                    "  >>> {:5.1}s SIGSTOP server {id} (a follower) for {:.1} s",
                    at.as_secs_f64(),
                    len.as_secs_f64()
                );
            }
            tokio::time::sleep(len).await;
            crate::cluster::send_signal(pid, Signal::Cont).ok()?;
            let resumed = Instant::now();
            let addr = addrs[(id - 1) as usize].clone();
            let mut answered = None;
            while resumed.elapsed() < Duration::from_secs(10) {
                if status(&addr, Duration::from_millis(50)).await.is_ok() {
                    answered = Some(resumed.elapsed());
                    break;
                }
            }
            if progress {
                println!(
                    "  >>> {:5.1}s SIGCONT server {id}; it answered a status request after {}",
                    t0.elapsed().as_secs_f64(),
                    answered.map_or("more than 10 s".to_string(), |d| format!("{:.0} ms", ms(d)))
                );
            }
            Some(((id, at, len), answered))
        }));
    }
    let mut last_count = 0;
    let mut finished = false;
    while !finished {
        tokio::select! {
            r = rx.recv() => match r {
                Some(r) => records.push(r),
                None => finished = true,
            },
            _ = ticker.tick() => {
                let now = t0.elapsed();
                if opts.kill_leader && killed.is_none() && now >= kill_at {
                    let addrs = cluster.addrs();
                    if let Some(l) = leader_among(&addrs).await {
                        cluster.kill(l);
                        let at = t0.elapsed();
                        killed = Some((l, at));
                        if opts.progress {
                            println!("  >>> {:5.1}s SIGKILL server {l} (the leader)", at.as_secs_f64());
                        }
                        let survivors: Vec<String> = cluster
                            .ids()
                            .iter()
                            .filter(|&&i| i != l)
                            .map(|&i| cluster.addr(i))
                            .collect();
                        let kill_instant = Instant::now();
                        new_leader = Some(tokio::spawn(async move {
                            while kill_instant.elapsed() < Duration::from_secs(30) {
                                for a in &survivors {
                                    if let Ok(s) = status(a, Duration::from_millis(100)).await {
                                        if matches!(s.leader, Some(x) if x != l) {
                                            return Some(kill_instant.elapsed());
                                        }
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            None
                        }));
                    }
                }
                if opts.restart && !restarted && now >= restart_at {
                    if let Some((id, _)) = killed {
                        restarted = true;
                        match cluster.spawn(id, &[]) {
                            Ok(()) => {
                                if opts.progress {
                                    println!("  >>> {:5.1}s restarted server {id} on its data directory", t0.elapsed().as_secs_f64());
                                }
                            }
                            Err(e) => eprintln!("cannot restart server {id}: {e}"),
                        }
                    }
                }
                if opts.progress {
                    let recent = &records[last_count..];
                    last_count = records.len();
                    let mut lat: Vec<Duration> = recent.iter().filter_map(|r| r.latency()).collect();
                    lat.sort_unstable();
                    let failed = recent.iter().filter(|r| r.end.is_none()).count();
                    let leader = leader_among(&cluster.addrs()).await;
                    println!(
                        "{:5.1}s  {:6} ops/s  p50 {:7.2} ms  p99 {:7.2} ms  failed {:3}  leader {}",
                        now.as_secs_f64(),
                        lat.len(),
                        ms(crate::stats::percentile(&lat, 50.0)),
                        ms(crate::stats::percentile(&lat, 99.0)),
                        failed,
                        leader.map_or("none".to_string(), |l| l.to_string())
                    );
                }
            }
        }
    }
    let _ = load.await;
    let (paused, status_after_resume) = match pause_task {
        Some(h) => match h.await.unwrap_or(None) {
            Some((p, a)) => (Some(p), a),
            None => (None, None),
        },
        None => (None, None),
    };
    let new_leader_after = match new_leader {
        Some(h) => h.await.unwrap_or(None),
        None => None,
    };
    let stall_after_kill = killed.map(|(_, at)| {
        let window = at + Duration::from_secs(10);
        let mut points: Vec<Duration> = records
            .iter()
            .filter_map(|r| r.end)
            .filter(|&e| e > at && e <= window)
            .collect();
        points.push(at);
        points.sort_unstable();
        points
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default()
    });
    let restarted_caught_up = if restarted {
        let mut ok = false;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let st = cluster.statuses().await;
            if st.len() == cluster.ids().len()
                && st
                    .iter()
                    .all(|s| s.applied == st[0].applied && s.applied > 0)
            {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(ok)
    } else {
        None
    };
    cluster.stop_all();

    let summary = Summary::new(&records);
    let linearizable = if opts.check {
        Some(check_history(&records))
    } else {
        None
    };
    // 100 ms buckets, so that a failover gap of a few hundred ms shows; the last one ends
    // with the workload.
    let buckets = buckets(&records, Duration::from_millis(100), opts.duration);
    let mut markers = Vec::new();
    if let Some((id, at)) = killed {
        markers.push(Marker {
            at: at.as_secs_f64(),
            label: format!("kill {id}"),
        });
        if restarted {
            markers.push(Marker {
                at: restart_at.as_secs_f64(),
                label: format!("restart {id}"),
            });
        }
    }
    if let Some((id, at, len)) = paused {
        markers.push(Marker {
            at: at.as_secs_f64(),
            label: format!("pause {id}"),
        });
        markers.push(Marker {
            at: (at + len).as_secs_f64(),
            label: format!("resume {id}"),
        });
    }
    let title = format!(
        "omnipaxos-kv: 3 servers, fsync {}, read ratio {}, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms",
        if opts.fsync { "on" } else { "off" },
        opts.read_ratio,
        summary.throughput,
        ms(summary.p50),
        ms(summary.p99)
    );
    let plot_path = opts.out_dir.join("plot.svg");
    let summary_path = opts.out_dir.join("summary.json");
    let csv_path = opts.out_dir.join("requests.csv");
    let write = |p: &Path, text: String| {
        std::fs::write(p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))
    };
    write(&plot_path, svg_plot(&title, &buckets, &markers))?;
    write(&summary_path, summary.to_json() + "\n")?;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in &records {
        csv.push_str(&r.csv_line());
        csv.push('\n');
    }
    write(&csv_path, csv)?;
    let abs = |p: PathBuf| std::fs::canonicalize(&p).unwrap_or(p);
    Ok(Report {
        summary,
        killed,
        new_leader_after,
        stall_after_kill,
        paused,
        status_after_resume,
        restarted_caught_up,
        linearizable,
        plot_path: abs(plot_path),
        summary_path: abs(summary_path),
        csv_path: abs(csv_path),
    })
}
