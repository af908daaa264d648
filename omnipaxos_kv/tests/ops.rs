//! Operating a cluster of real server processes: the metrics endpoint, TLS on peer and client
//! links, and a follower that keeps answering while it catches up after a pause.

use omnipaxos_kv::client::{status_with, ClientTls, KvClient};
use omnipaxos_kv::cluster::{ClusterOptions, ProcessCluster, Signal};
use omnipaxos_kv::config::RequestInterval;
use omnipaxos_kv::kv::NodeId;
use omnipaxos_kv::net::{read_frame, write_frame, Hello, Welcome, PROTOCOL_VERSION};
use omnipaxos_kv::tls::{server_name_of, Identity, PEER_ALPN};
use omnipaxos_kv::workload::{run_workload, Workload};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn server_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

/// Prints the end of every server's log when the test fails.
struct LogsOnFailure(std::path::PathBuf);

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for id in 1..=3 {
            let path = self.0.join(format!("server-{id}.log"));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- {} (last 40 lines)", path.display());
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }
}

/// GETs `path` from `addr`; returns the status code and the body.
async fn http_get(addr: &str, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to metrics");
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8(buf).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

/// Scrapes `/metrics` and parses every sample (`name{labels}` → value); panics on a line that
/// is neither a comment nor a sample with a number.
async fn scrape(addr: &str) -> HashMap<String, f64> {
    let (code, body) = http_get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(code, 200, "{body}");
    let mut m = HashMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("name value");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(v.is_finite() && v >= 0.0, "{line}");
        m.insert(name.to_string(), v);
    }
    m
}

fn get(m: &HashMap<String, f64>, k: &str) -> f64 {
    *m.get(k).unwrap_or_else(|| panic!("no sample {k}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_endpoint_reports_a_real_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        metrics: true,
        ..Default::default()
    };
    let cluster = ProcessCluster::start(server_bin(), dir.path(), opts).unwrap();
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    let before: Vec<_> = futures_scrape(&cluster).await;
    let mut c = KvClient::new(
        cluster.addrs(),
        Duration::from_millis(500),
        Duration::from_secs(10),
    );
    for i in 0..40 {
        c.put(&format!("k{i}"), "v").await.unwrap();
        assert_eq!(c.get(&format!("k{i}")).await.unwrap().as_deref(), Some("v"));
    }
    // Every server applies the 40 writes (the 40 reads write nothing to the log), is connected
    // to both peers, and names one and the same leader. (A leader that heard no quorum in its
    // last heartbeat round, as replies delayed by a busy machine can make it, names no leader for
    // that round: check-quorum; and on a busy machine the leadership may move, from the first
    // leader seen to another. A scrape in such a moment is taken again.)
    let start = Instant::now();
    let after = loop {
        let after = futures_scrape(&cluster).await;
        let applied = after
            .iter()
            .all(|m| get(m, "omnipaxos_kv_applied_index") >= 40.0);
        let named = get(&after[0], "omnipaxos_kv_leader_id");
        let agreed = named > 0.0
            && after
                .iter()
                .all(|m| get(m, "omnipaxos_kv_leader_id") == named);
        let connected = after
            .iter()
            .all(|m| get(m, "omnipaxos_kv_peers_connected") == 2.0);
        if applied && agreed && connected {
            break after;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{after:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The leader they agree on (the first one seen, unless the leadership moved since).
    let leader = get(&after[0], "omnipaxos_kv_leader_id") as NodeId;
    let leaders: Vec<NodeId> = after
        .iter()
        .filter(|m| get(m, "omnipaxos_kv_role{role=\"leader\"}") == 1.0)
        .map(|m| get(m, "omnipaxos_kv_server_id") as NodeId)
        .collect();
    let roles: Vec<String> = after
        .iter()
        .map(|m| {
            let mut r: Vec<_> = m
                .iter()
                .filter(|(k, _)| k.starts_with("omnipaxos_kv_role") || k.contains("leader"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            r.sort();
            r.join(" ")
        })
        .collect();
    assert_eq!(leaders, vec![leader], "exactly one leader: {roles:#?}");
    let mut puts = 0.0;
    let mut gets = 0.0;
    for (b, a) in before.iter().zip(&after) {
        let grew = get(a, "omnipaxos_kv_decided_index") - get(b, "omnipaxos_kv_decided_index");
        // 40 writes (a hedged retry may add a duplicate entry); the reads add none.
        assert!((40.0..80.0).contains(&grew), "the log grew by {grew}");
        assert_eq!(get(a, "omnipaxos_kv_leader_id"), leader as f64);
        assert_eq!(get(a, "omnipaxos_kv_ballot_leader"), leader as f64);
        assert_eq!(get(a, "omnipaxos_kv_peers_connected"), 2.0);
        assert!(get(a, "omnipaxos_kv_storage_writes_total") > 0.0);
        assert!(get(a, "omnipaxos_kv_storage_synced_writes_total") > 0.0);
        assert!(get(a, "omnipaxos_kv_storage_entries_written_total") >= 40.0);
        assert!(get(a, "omnipaxos_kv_leader_changes_total") >= 1.0);
        assert_eq!(get(a, "omnipaxos_kv_migration_active"), 0.0);
        puts += get(a, "omnipaxos_kv_requests_total{kind=\"put\",result=\"ok\"}");
        gets += get(a, "omnipaxos_kv_requests_total{kind=\"get\",result=\"ok\"}");
        let count = get(
            a,
            "omnipaxos_kv_request_duration_seconds_count{kind=\"put\"}",
        );
        let inf = get(
            a,
            "omnipaxos_kv_request_duration_seconds_bucket{kind=\"put\",le=\"+Inf\"}",
        );
        assert_eq!(count, inf, "the +Inf bucket counts everything");
    }
    assert_eq!((puts, gets), (40.0, 40.0), "every request counted once");

    // Garbage does not take the endpoint down.
    let addr = cluster.metrics_addr(1).unwrap();
    let (code, _) = http_get(&addr, b"\xff\xfe garbage\r\n\r\n").await;
    assert_eq!(code, 400);
    let (code, _) = http_get(&addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(code, 405);
    let (code, _) = http_get(&addr, b"GET /nothing HTTP/1.1\r\n\r\n").await;
    assert_eq!(code, 404);
    let (code, _) = http_get(&addr, &vec![b'a'; 20_000]).await;
    assert_eq!(code, 400);
    drop(TcpStream::connect(&addr).await.unwrap());
    let m = scrape(&addr).await;
    assert!(get(&m, "omnipaxos_kv_decided_index") >= 40.0);
}

async fn futures_scrape(c: &ProcessCluster) -> Vec<HashMap<String, f64>> {
    let mut out = Vec::new();
    for &id in c.ids() {
        out.push(scrape(&c.metrics_addr(id).unwrap()).await);
    }
    out
}

/// A CA and certificates made at run time (no key is ever committed).
struct Pki {
    ca_cert: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = p.self_signed(&ca_key).unwrap();
        Pki { ca_cert, ca_key }
    }

    /// A certificate for `names` (DNS names or IP addresses), PEM: (cert, key).
    fn issue(&self, names: &[&str]) -> (String, String) {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        for n in names {
            p.subject_alt_names
                .push(match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName((*n).try_into().unwrap()),
                });
        }
        p.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca_cert, &self.ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path, name: &str, names: &[&str]) {
        let (cert, key) = self.issue(names);
        std::fs::write(dir.join(format!("{name}.pem")), cert).unwrap();
        std::fs::write(dir.join(format!("{name}-key.pem")), key).unwrap();
    }
}

fn identity(dir: &Path, ca: &str, name: Option<&str>) -> Identity {
    let cert = name.map(|n| {
        (
            dir.join(format!("{n}.pem")),
            dir.join(format!("{n}-key.pem")),
        )
    });
    Identity::from_files(
        &dir.join(ca),
        cert.as_ref().map(|(c, k)| (c.as_path(), k.as_path())),
    )
    .unwrap()
}

/// Connects to `addr` as a peer over TLS with `identity`; the server is checked against the
/// name `server-<expect>`. Returns what the handshake and the `Hello` as `claim` led to.
async fn tls_peer(
    addr: &str,
    identity: &Identity,
    expect: NodeId,
    claim: NodeId,
) -> Result<Welcome, String> {
    let cfg = identity.client_config(PEER_ALPN).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(server_name_of(expect)).unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // With TLS 1.3 the client finishes its side before the server has checked its
    // certificate: a refused certificate shows up at the first read.
    write_frame(
        &mut s,
        &Hello::Server {
            version: PROTOCOL_VERSION,
            id: claim,
        },
    )
    .await
    .map_err(|e| format!("hello: {e}"))?;
    s.flush().await.map_err(|e| format!("flush: {e}"))?;
    tokio::time::timeout(Duration::from_secs(5), read_frame::<Welcome, _>(&mut s))
        .await
        .map_err(|_| "no answer".to_string())?
        .map_err(|e| format!("read: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_admits_the_clusters_certificates_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = Pki::new("omnipaxos-kv test CA");
    std::fs::write(pki_dir.join("ca.pem"), pki.ca_cert.pem()).unwrap();
    for id in 1..=3u64 {
        pki.write(
            &pki_dir,
            &format!("server-{id}"),
            &[&server_name_of(id), "localhost", "127.0.0.1"],
        );
    }
    pki.write(&pki_dir, "client", &["client-1"]);
    let rogue = Pki::new("not the cluster's CA");
    std::fs::write(pki_dir.join("rogue-ca.pem"), rogue.ca_cert.pem()).unwrap();
    rogue.write(&pki_dir, "rogue-server-3", &["server-3", "127.0.0.1"]);

    let client_tls = ClientTls::new(&identity(&pki_dir, "ca.pem", Some("client")), None).unwrap();
    let p = pki_dir.display().to_string();
    let opts = ClusterOptions {
        metrics: true,
        client_tls: Some(client_tls.clone()),
        server_toml_extra: vec![
            format!("tls_ca_file = \"{p}/ca.pem\""),
            format!("tls_cert_file = \"{p}/server-{{id}}.pem\""),
            format!("tls_key_file = \"{p}/server-{{id}}-key.pem\""),
            "tls_peers = true".into(),
            "tls_clients = true".into(),
            "tls_client_auth = true".into(),
        ],
        ..Default::default()
    };
    let cluster = ProcessCluster::start(server_bin(), dir.path(), opts).unwrap();
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("the servers find each other over mutual TLS");

    // A client over TLS with a certificate of the CA: end to end.
    let mut c = KvClient::new(
        cluster.addrs(),
        Duration::from_millis(500),
        Duration::from_secs(10),
    )
    .with_tls(client_tls.clone());
    c.put("secret", "42").await.unwrap();
    assert_eq!(c.get("secret").await.unwrap().as_deref(), Some("42"));

    let a1 = cluster.addr(1);
    let m1 = cluster.metrics_addr(1).unwrap();
    let before = scrape(&m1).await;
    let counter = |m: &HashMap<String, f64>, name: &str, link: &str| {
        get(m, &format!("omnipaxos_kv_{name}{{link=\"{link}\"}}"))
    };

    // A "server 3" whose certificate another CA signed: the TLS handshake fails, no frame is
    // read (the server neither accepted nor refused a Hello).
    let rogue_id = identity(&pki_dir, "ca.pem", Some("rogue-server-3"));
    let r = tls_peer(&a1, &rogue_id, 1, 3).await;
    assert!(
        r.is_err(),
        "a certificate of another CA was accepted: {r:?}"
    );
    // A peer without any certificate.
    let no_cert = identity(&pki_dir, "ca.pem", None);
    let r = tls_peer(&a1, &no_cert, 1, 3).await;
    assert!(
        r.is_err(),
        "a peer without a certificate was accepted: {r:?}"
    );
    // A peer in plaintext is refused at its Hello.
    let mut s = TcpStream::connect(&a1).await.unwrap();
    write_frame(
        &mut s,
        &Hello::Server {
            version: PROTOCOL_VERSION,
            id: 3,
        },
    )
    .await
    .unwrap();
    match read_frame::<Welcome, _>(&mut s).await {
        Ok(Welcome::Refused(r)) => assert!(r.contains("TLS"), "{r}"),
        other => panic!("a plaintext peer was not refused: {other:?}"),
    }
    // A certificate of the CA that names server 2, claiming to be server 3: refused.
    let two = identity(&pki_dir, "ca.pem", Some("server-2"));
    match tls_peer(&a1, &two, 1, 3).await {
        Ok(Welcome::Refused(r)) => assert!(r.contains("server-3"), "{r}"),
        other => panic!("server 2's certificate passed as server 3's: {other:?}"),
    }
    // A client without a certificate (required here) and a plaintext client.
    let anon = ClientTls::new(&identity(&pki_dir, "ca.pem", None), None).unwrap();
    assert!(status_with(&a1, Some(&anon), Duration::from_secs(2))
        .await
        .is_err());
    assert!(omnipaxos_kv::client::status(&a1, Duration::from_secs(2))
        .await
        .is_err());

    let after = scrape(&m1).await;
    assert_eq!(
        counter(&after, "tls_handshake_failures_total", "peer"),
        counter(&before, "tls_handshake_failures_total", "peer") + 2.0,
        "the rogue and the certificate-less peer failed their TLS handshake"
    );
    assert_eq!(
        counter(&after, "connections_accepted_total", "peer"),
        counter(&before, "connections_accepted_total", "peer"),
        "no peer was accepted"
    );
    assert_eq!(
        counter(&after, "connections_refused_total", "peer"),
        counter(&before, "connections_refused_total", "peer") + 2.0,
        "only the plaintext peer and the misnamed one got as far as a Hello"
    );
    assert_eq!(
        get(&after, "omnipaxos_kv_peers_connected"),
        2.0,
        "the real peers are still connected"
    );
    // The cluster still works.
    c.put("secret", "43").await.unwrap();
    assert_eq!(c.get("secret").await.unwrap().as_deref(), Some("43"));
}

/// A follower paused for 5 s under load answers a status request within 200 ms of SIGCONT,
/// while it works through the backlog of the leader's messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_follower_answers_status_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        ProcessCluster::start(server_bin(), dir.path(), ClusterOptions::default()).unwrap();
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    let follower = *cluster.ids().iter().find(|&&i| i != leader).unwrap();
    let others: Vec<String> = cluster
        .ids()
        .iter()
        .filter(|&&i| i != follower)
        .map(|&i| cluster.addr(i))
        .collect();
    let t0 = Instant::now();
    let workload = Workload {
        servers: others,
        intervals: vec![RequestInterval {
            duration_sec: 9,
            requests_per_sec: 0,
            read_ratio: 0.0,
        }],
        workers: 16,
        num_keys: 100,
        attempt_timeout: Duration::from_millis(500),
        request_deadline: Duration::from_secs(10),
        seed: 7,
        tls: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let load = tokio::spawn(run_workload(workload, t0, tx));
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.signal(follower, Signal::Stop);
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.signal(follower, Signal::Cont);
    let resumed = Instant::now();
    let addr = cluster.addr(follower);
    let mut answered = None;
    while resumed.elapsed() < Duration::from_secs(10) {
        if omnipaxos_kv::client::status(&addr, Duration::from_millis(50))
            .await
            .is_ok()
        {
            answered = Some(resumed.elapsed());
            break;
        }
    }
    // A write through the resumed follower: answered once it has worked through the backlog
    // (how long that takes depends on how the node writes a backlog to storage).
    let mut c = KvClient::new(
        vec![addr.clone()],
        Duration::from_secs(10),
        Duration::from_secs(20),
    );
    c.put("after-resume", "x")
        .await
        .expect("a write through the resumed follower");
    eprintln!(
        "a write through it was answered {:?} after SIGCONT",
        resumed.elapsed()
    );
    let mut ok = 0;
    while let Some(r) = rx.recv().await {
        ok += usize::from(r.end.is_some());
    }
    load.await.unwrap();
    assert!(ok > 100, "only {ok} requests answered under load");
    let answered = answered.expect("the follower answered a status request");
    eprintln!("status answered {answered:?} after SIGCONT");
    assert!(
        answered <= Duration::from_millis(200),
        "the resumed follower took {answered:?} to answer a status request"
    );
}

/// A client whose server is paused gets its answer from another server after a hedge delay,
/// not after its attempt timeout (here 2 s, so the old behaviour of waiting it out twice would
/// take 4 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_costs_a_client_a_hedge_not_a_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cluster =
        ProcessCluster::start(server_bin(), dir.path(), ClusterOptions::default()).unwrap();
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader");
    let follower = *cluster.ids().iter().find(|&&i| i != leader).unwrap();
    let mut servers = vec![cluster.addr(follower)];
    servers.extend(
        cluster
            .ids()
            .iter()
            .filter(|&&i| i != follower)
            .map(|&i| cluster.addr(i)),
    );
    let mut warm = KvClient::new(
        servers.clone(),
        Duration::from_secs(2),
        Duration::from_secs(20),
    );
    for i in 0..5 {
        warm.put(&format!("warm{i}"), "x").await.unwrap();
    }
    cluster.signal(follower, Signal::Stop);
    // A client with a connection to the paused server, and a new one that must connect first.
    let t = Instant::now();
    warm.put("during-pause", "y").await.unwrap();
    let warm_took = t.elapsed();
    let mut c = KvClient::new(servers, Duration::from_secs(2), Duration::from_secs(20));
    let t = Instant::now();
    c.put("during-pause", "z").await.unwrap();
    let new_took = t.elapsed();
    cluster.signal(follower, Signal::Cont);
    for took in [warm_took, new_took] {
        assert!(
            took < Duration::from_secs(1),
            "a put took {warm_took:?} (connected client) and {new_took:?} (new client) with its first server paused"
        );
    }
    assert_ne!(
        c.current_server(),
        cluster.addr(follower),
        "the client moved on"
    );
    assert_eq!(c.get("during-pause").await.unwrap().as_deref(), Some("z"));
}
