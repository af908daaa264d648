//! The omnipaxos-kv client.
//!
//! * Benchmark (no arguments): reads the TOML file named by `CONFIG_FILE` (keys overridable by
//!   `OMNIPAXOS_<KEY>`), waits until its server knows a leader, runs the request intervals,
//!   writes one CSV line per request to `output_filepath` and a JSON summary to
//!   `summary_filepath`.
//! * One-shot: `client [--server HOST:PORT]... put KEY VALUE | get KEY | delete KEY | status`
//!   (servers default to `OMNIPAXOS_SERVER_ADDRESS` or `127.0.0.1:8001`).

use omnipaxos_kv::client::{status_with, ClientTls, KvClient};
use omnipaxos_kv::config::{load_from_env_var, ClientFile};
use omnipaxos_kv::stats::{ms, Summary};
use omnipaxos_kv::workload::{run_workload, Workload, CSV_HEADER};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: client                      (benchmark; CONFIG_FILE names its TOML file)
       client [--server HOST:PORT]... [TLS] put KEY VALUE | get KEY | delete KEY | status
  TLS: --tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]";

fn fail(msg: String) -> ! {
    eprintln!("client: {msg}");
    std::process::exit(2)
}

async fn one_shot(args: Vec<String>) -> Result<(), String> {
    let mut servers = Vec::new();
    let mut rest = Vec::new();
    let (mut ca, mut cert, mut key, mut name) = (None, None, None, None);
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let slot = match a.as_str() {
            "--server" => {
                servers.push(it.next().ok_or("--server needs HOST:PORT")?);
                continue;
            }
            "--tls-ca" => &mut ca,
            "--tls-cert" => &mut cert,
            "--tls-key" => &mut key,
            "--tls-server-name" => &mut name,
            _ => {
                rest.push(a);
                continue;
            }
        };
        *slot = Some(it.next().ok_or(format!("{a} needs a value"))?);
    }
    let tls = match (&ca, &cert, &key) {
        (None, None, None) => None,
        (Some(ca), c, k) if c.is_some() == k.is_some() => {
            let ck = c.as_ref().zip(k.as_ref());
            Some(
                ClientTls::from_files(
                    std::path::Path::new(ca),
                    ck.map(|(c, k)| (std::path::Path::new(c), std::path::Path::new(k))),
                    name.clone(),
                )
                .map_err(|e| e.to_string())?,
            )
        }
        _ => return Err("--tls-cert and --tls-key go together, and need --tls-ca".into()),
    };
    if servers.is_empty() {
        servers.push(
            std::env::var("OMNIPAXOS_SERVER_ADDRESS").unwrap_or_else(|_| "127.0.0.1:8001".into()),
        );
    }
    let mut c = KvClient::new(
        servers.clone(),
        Duration::from_secs(1),
        Duration::from_secs(10),
    );
    if let Some(t) = &tls {
        c = c.with_tls(t.clone());
    }
    let words: Vec<&str> = rest.iter().map(|s| s.as_str()).collect();
    match words.as_slice() {
        ["put", k, v] => c.put(k, v).await.map_err(|e| e.to_string())?,
        ["delete", k] => c.delete(k).await.map_err(|e| e.to_string())?,
        ["get", k] => match c.get(k).await.map_err(|e| e.to_string())? {
            Some(v) => println!("{v}"),
            None => println!("(absent)"),
        },
        ["status"] => {
            for s in &servers {
                match status_with(s, tls.as_ref(), Duration::from_secs(2)).await {
                    Ok(st) => println!(
                        "{s}: server {} leader {:?} decided {} applied {} compacted {}",
                        st.id, st.leader, st.decided_idx, st.applied, st.compacted_idx
                    ),
                    Err(e) => println!("{s}: {e}"),
                }
            }
        }
        _ => return Err(format!("unknown command {rest:?}\n{USAGE}")),
    }
    Ok(())
}

async fn benchmark() -> Result<(), String> {
    let cfg: ClientFile = load_from_env_var("CONFIG_FILE").map_err(|e| e.to_string())?;
    cfg.validate().map_err(|e| e.to_string())?;
    let tls = cfg.tls().map_err(|e| e.to_string())?;
    let mut servers = vec![cfg.server_address.clone()];
    servers.extend(cfg.fallback_addresses.iter().cloned());
    // Start in sync with the cluster: once the server names a leader.
    let start = Instant::now();
    loop {
        match status_with(&cfg.server_address, tls.as_ref(), Duration::from_secs(1)).await {
            Ok(s) if s.leader.is_some() => break,
            _ if start.elapsed() > Duration::from_secs(60) => {
                return Err(format!(
                    "{} did not report a leader within 60 s",
                    cfg.server_address
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let workload = Workload {
        servers,
        intervals: cfg.requests.clone(),
        workers: cfg.workers,
        num_keys: cfg.num_keys,
        attempt_timeout: Duration::from_millis(cfg.request_timeout_ms),
        request_deadline: Duration::from_millis(cfg.request_timeout_ms * 20),
        seed: omnipaxos_kv::client::random_client_id(),
        tls,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let t0 = Instant::now();
    let load = tokio::spawn(run_workload(workload, t0, tx));
    let mut records = Vec::new();
    while let Some(r) = rx.recv().await {
        records.push(r);
    }
    let _ = load.await;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in &records {
        csv.push_str(&r.csv_line());
        csv.push('\n');
    }
    std::fs::write(&cfg.output_filepath, csv)
        .map_err(|e| format!("cannot write {}: {e}", cfg.output_filepath))?;
    let s = Summary::new(&records);
    std::fs::write(&cfg.summary_filepath, s.to_json() + "\n")
        .map_err(|e| format!("cannot write {}: {e}", cfg.summary_filepath))?;
    println!(
        "{} answered, {} failed, {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms; wrote {} and {}",
        s.ok,
        s.failed,
        s.throughput,
        ms(s.p50),
        ms(s.p99),
        cfg.output_filepath,
        cfg.summary_filepath
    );
    Ok(())
}

fn main() {
    omnipaxos_kv::logging::init_logging(omnipaxos_kv::logging::TOOL_DEFAULT_FILTER);
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return;
    }
    let rt = tokio::runtime::Runtime::new()
        .unwrap_or_else(|e| fail(format!("cannot start the async runtime: {e}")));
    let r = if args.is_empty() {
        rt.block_on(benchmark())
    } else {
        rt.block_on(one_shot(args))
    };
    if let Err(e) = r {
        fail(e);
    }
}
