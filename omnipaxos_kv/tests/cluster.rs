//! Real server processes on loopback: load with leader and follower SIGKILLs and restarts,
//! deduplicated retries, linearizability of the recorded history (and a deliberately broken
//! server variant the checker must catch), reads by read index after a restart and at a deposed
//! leader cut off by a partition, and bad input.

use omnipaxos_kv::checker::check_history;
use omnipaxos_kv::client::KvClient;
use omnipaxos_kv::cluster::{ClusterOptions, ProcessCluster, Signal};
use omnipaxos_kv::config::RequestInterval;
use omnipaxos_kv::kv::{KVCommand, KVResult, NodeId};
use omnipaxos_kv::net::{
    read_frame, write_frame, ClientRequest, Hello, ServerReply, Welcome, PROTOCOL_VERSION,
};
use omnipaxos_kv::workload::{run_workload, Record, Workload};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Prints the end of every server's log when the test fails (dropped while panicking), so a
/// failure in CI can be understood from its output alone.
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
            eprintln!("---- {} (last 60 lines)", path.display());
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
    }
}

fn server_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_server"))
}

fn start(dir: &Path, env: Vec<(String, String)>) -> ProcessCluster {
    let opts = ClusterOptions {
        env,
        ..Default::default()
    };
    ProcessCluster::start(server_bin(), dir, opts).expect("start the cluster")
}

async fn leader(c: &ProcessCluster) -> NodeId {
    c.wait_for_leader(Duration::from_secs(20))
        .await
        .expect("a leader within 20 s")
}

fn client(addrs: Vec<String>) -> KvClient {
    KvClient::new(addrs, Duration::from_millis(500), Duration::from_secs(20))
}

/// Runs `client.execute` and records it like the workload does.
async fn recorded(c: &mut KvClient, t0: Instant, cmd: KVCommand) -> Record {
    let start = t0.elapsed();
    let res = c.execute(cmd.clone()).await;
    let end = t0.elapsed();
    Record {
        client_id: c.client_id(),
        cmd,
        start,
        end: res.as_ref().ok().map(|_| end),
        result: res.ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_with_leader_and_follower_kills_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    // Compact often, so that restarted servers recover from snapshots of the map and a server
    // that was down is brought up to date past the others' compacted logs.
    let env = vec![
        ("OMNIPAXOS_SNAPSHOT_INTERVAL".to_string(), "100".to_string()),
        (
            "RUST_LOG".to_string(),
            "info,omnipaxos_kv=debug".to_string(),
        ),
    ];
    let mut cluster = start(dir.path(), env);
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    leader(&cluster).await;
    let addrs = cluster.addrs();
    let t0 = Instant::now();
    let workload = Workload {
        servers: addrs.clone(),
        intervals: vec![RequestInterval {
            duration_sec: 9,
            requests_per_sec: 0,
            read_ratio: 0.4,
        }],
        workers: 6,
        num_keys: 20,
        attempt_timeout: Duration::from_millis(500),
        request_deadline: Duration::from_secs(15),
        seed: 42,
        tls: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let load = tokio::spawn(run_workload(workload, t0, tx));

    // A second client writes keys that nobody else touches, one at a time, through the faults.
    let writer_addrs = addrs.clone();
    let unique = tokio::spawn(async move {
        let mut c = client(writer_addrs);
        let mut acked = Vec::new();
        let start = Instant::now();
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(8) {
            let (k, v) = (format!("u{i}"), format!("value-{i}"));
            if c.put(&k, &v).await.is_ok() {
                acked.push((k, v));
            }
            i += 1;
        }
        acked
    });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let l = leader(&cluster).await;
    cluster.kill(l);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.spawn(l, &[]).unwrap();
    let l2 = leader(&cluster).await;
    let follower = *cluster.ids().iter().find(|&&i| i != l2).unwrap();
    cluster.kill(follower);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.spawn(follower, &[]).unwrap();

    let mut records = Vec::new();
    while let Some(r) = rx.recv().await {
        records.push(r);
    }
    load.await.unwrap();
    let acked = unique.await.unwrap();
    assert!(
        acked.len() > 20,
        "only {} unique writes acknowledged",
        acked.len()
    );
    let answered = records.iter().filter(|r| r.end.is_some()).count();
    assert!(answered > 200, "only {answered} requests answered");

    // Every acknowledged write is still there, read linearizably through each server.
    for (n, addr) in addrs.iter().enumerate() {
        let mut c = client(vec![addr.clone()]);
        for (k, v) in acked.iter().skip(n).step_by(3) {
            match c.get(k).await {
                Ok(got) => assert_eq!(got.as_deref(), Some(v.as_str()), "{k}"),
                Err(e) => panic!(
                    "read of {k} through {addr} failed: {e}\nservers: {:?}",
                    cluster.statuses().await
                ),
            }
        }
    }
    // A final read of every workload key, then the whole history must be linearizable.
    let mut c = client(addrs.clone());
    for k in 0..20 {
        records.push(recorded(&mut c, t0, KVCommand::Get(format!("key{k}"))).await);
    }
    check_history(&records).expect("the recorded history is linearizable");

    // All servers, the restarted ones included, converge on the same log.
    let start = Instant::now();
    loop {
        let st = cluster.statuses().await;
        if st.len() == 3 && st.iter().all(|s| s.applied == st[0].applied) {
            // Every server compacted its log on the way (the test is about snapshots too).
            assert!(
                st.iter().all(|s| s.compacted_idx >= 100),
                "no compaction: {st:?}"
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no convergence: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes v1, kills follower F, writes v2, freezes the two others, restarts F and reads
/// through F alone; then unfreezes. Returns the history.
async fn stale_read_scenario(unsafe_local_reads: bool) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let env = if unsafe_local_reads {
        vec![(
            "OMNIPAXOS_UNSAFE_LOCAL_READS".to_string(),
            "true".to_string(),
        )]
    } else {
        Vec::new()
    };
    let mut cluster = start(dir.path(), env);
    let l = leader(&cluster).await;
    let f = *cluster.ids().iter().find(|&&i| i != l).unwrap();
    let g = *cluster.ids().iter().find(|&&i| i != l && i != f).unwrap();
    let t0 = Instant::now();
    let mut records = Vec::new();
    let mut writer = client(vec![cluster.addr(l)]);
    let put = |v: &str| KVCommand::Put("k".into(), v.into());
    records.push(recorded(&mut writer, t0, put("v1")).await);
    // Wait until F applied v1.
    let start = Instant::now();
    loop {
        let st = cluster.statuses().await;
        if st.len() == 3 && st.iter().all(|s| s.applied == st[0].applied) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(f);
    records.push(recorded(&mut writer, t0, put("v2")).await);
    assert!(
        records.iter().all(|r| r.end.is_some()),
        "writes acknowledged"
    );
    cluster.signal(l, Signal::Stop);
    cluster.signal(g, Signal::Stop);
    cluster.spawn(f, &[]).unwrap();
    let mut reader = KvClient::new(
        vec![cluster.addr(f)],
        Duration::from_millis(500),
        Duration::from_secs(15),
    );
    let resume = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cluster.signal(l, Signal::Cont);
        cluster.signal(g, Signal::Cont);
        cluster
    });
    records.push(recorded(&mut reader, t0, KVCommand::Get("k".into())).await);
    let _cluster = resume.await.unwrap();
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_a_server_that_reads_its_local_map() {
    let records = stale_read_scenario(true).await;
    let read = records.last().unwrap();
    assert_ne!(
        read.result,
        Some(KVResult::Read(Some("v2".into()))),
        "the broken server was expected to answer from its stale map"
    );
    let err = check_history(&records).expect_err("the checker must flag the stale read");
    assert!(err.to_string().contains("\"k\""), "{err}");
}

/// A restarted follower that missed v2 answers a `Get` only once the leader gave it a read
/// index and it applied the log that far: with the others paused it waits, then reads v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_by_read_index_are_not_stale_after_a_restart() {
    let records = stale_read_scenario(false).await;
    assert_eq!(
        records.last().unwrap().result,
        Some(KVResult::Read(Some("v2".into())))
    );
    check_history(&records).expect("linearizable");
}

/// What a `Get` sent to a deposed leader gave: the answer within `quiet` while the leader is
/// still cut off, and the answer after the partition healed (`None`: none in time).
struct DeposedRead {
    while_isolated: Option<ServerReply>,
    after_heal: Option<ServerReply>,
    records: Vec<Record>,
}

/// Writes v1 through leader L; cuts L off from the others and pauses it; the others elect a
/// new leader and v2 is written there; a `Get` is sent to L (queued while it is paused); L is
/// resumed, still cut off and still believing it leads until it notices; then the partition
/// heals.
async fn deposed_leader_read(unsafe_local_reads: bool) -> DeposedRead {
    let dir = tempfile::tempdir().unwrap();
    let mut env = vec![(
        "RUST_LOG".to_string(),
        "info,omnipaxos_kv=debug".to_string(),
    )];
    if unsafe_local_reads {
        env.push((
            "OMNIPAXOS_UNSAFE_LOCAL_READS".to_string(),
            "true".to_string(),
        ));
    }
    let opts = ClusterOptions {
        env,
        partitionable: true,
        ..Default::default()
    };
    let cluster = ProcessCluster::start(server_bin(), dir.path(), opts).expect("start");
    let _logs = LogsOnFailure(dir.path().to_path_buf());
    let l = leader(&cluster).await;
    let others: Vec<NodeId> = cluster.ids().iter().copied().filter(|&i| i != l).collect();
    let t0 = Instant::now();
    let mut records = Vec::new();
    let mut at_l = client(vec![cluster.addr(l)]);
    records.push(recorded(&mut at_l, t0, KVCommand::Put("k".into(), "v1".into())).await);
    // A client connection to L opened now, used after the partition (clients are not cut off).
    let mut raw = raw_client(&cluster.addr(l), 4242).await;

    assert!(cluster.isolate(l), "the cluster has relays");
    cluster.signal(l, Signal::Stop);
    // The others elect a new leader among themselves.
    let start = Instant::now();
    let l2 = loop {
        let mut seen = Vec::new();
        for &i in &others {
            if let Ok(s) =
                omnipaxos_kv::client::status(&cluster.addr(i), Duration::from_millis(300)).await
            {
                seen.push(s.leader);
            }
        }
        if seen.len() == 2 && seen[0].is_some() && seen[0] == seen[1] && seen[0] != Some(l) {
            break seen[0].unwrap();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no new leader among {others:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut at_l2 = client(vec![cluster.addr(l2)]);
    records.push(recorded(&mut at_l2, t0, KVCommand::Put("k".into(), "v2".into())).await);
    assert!(
        records.iter().all(|r| r.end.is_some()),
        "writes acknowledged"
    );

    // The read starts after v2 was acknowledged: only v2 is a linearizable answer. (The
    // checker counts in microseconds: operations within the same one count as concurrent.)
    tokio::time::sleep(Duration::from_millis(1)).await;
    let get = KVCommand::Get("k".into());
    let read_start = t0.elapsed();
    write_frame(
        &mut raw,
        &ClientRequest::Append {
            id: 1,
            acked_below: 1,
            cmd: get.clone(),
        },
    )
    .await
    .unwrap();
    cluster.signal(l, Signal::Cont);
    let quiet = Duration::from_millis(1500);
    let while_isolated = tokio::time::timeout(quiet, read_frame::<ServerReply, _>(&mut raw))
        .await
        .ok()
        .map(|r| r.expect("a reply frame"));
    // Check-quorum: the cut-off server no longer calls itself leader.
    if while_isolated.is_none() {
        let st = omnipaxos_kv::client::status(&cluster.addr(l), Duration::from_secs(2))
            .await
            .expect("the isolated server answers status requests");
        assert_ne!(
            st.leader,
            Some(l),
            "a leader cut off for {quiet:?} still names itself"
        );
    }
    cluster.heal();
    let after_heal = if while_isolated.is_some() {
        None
    } else {
        tokio::time::timeout(
            Duration::from_secs(15),
            read_frame::<ServerReply, _>(&mut raw),
        )
        .await
        .ok()
        .map(|r| r.expect("a reply frame"))
    };
    let answer = while_isolated.as_ref().or(after_heal.as_ref());
    let end = t0.elapsed();
    records.push(Record {
        client_id: 4242,
        cmd: get,
        start: read_start,
        end: answer.map(|_| end),
        result: match answer {
            Some(ServerReply::Done(1, r)) => Some(r.clone()),
            _ => None,
        },
    });
    DeposedRead {
        while_isolated,
        after_heal,
        records,
    }
}

/// A `Get` at a leader that was deposed behind a partition does not return the value it last
/// knew: it cannot confirm its leadership, so the read waits, and once the partition heals it
/// is answered with the new leader's read index: the value written meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_at_a_deposed_leader_is_not_stale() {
    let r = deposed_leader_read(false).await;
    assert!(
        r.while_isolated.is_none(),
        "the deposed leader answered while cut off: {:?}",
        r.while_isolated
    );
    match &r.after_heal {
        Some(ServerReply::Done(1, KVResult::Read(v))) => assert_eq!(v.as_deref(), Some("v2")),
        other => panic!("no read answer after the partition healed: {other:?}"),
    }
    check_history(&r.records).expect("linearizable");
}

/// The same scenario with a server that answers from its map at once: the deposed leader
/// returns the stale v1, and the checker flags it (so the test above can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reading_its_map_answers_stale_at_a_deposed_leader() {
    let r = deposed_leader_read(true).await;
    match &r.while_isolated {
        Some(ServerReply::Done(1, KVResult::Read(v))) => assert_eq!(v.as_deref(), Some("v1")),
        other => panic!("expected the stale v1 at once: {other:?}"),
    }
    assert!(
        check_history(&r.records).is_err(),
        "the checker must flag the stale read: {:?}",
        r.records
    );
}

async fn raw_client(addr: &str, client_id: u64) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(
        &mut s,
        &Hello::Client {
            version: PROTOCOL_VERSION,
            client_id,
        },
    )
    .await
    .unwrap();
    let w: Welcome = read_frame(&mut s).await.unwrap();
    assert!(matches!(w, Welcome::Accepted(_)));
    s
}

async fn raw_append(s: &mut TcpStream, id: u64, acked_below: u64, cmd: KVCommand) -> ServerReply {
    write_frame(
        s,
        &ClientRequest::Append {
            id,
            acked_below,
            cmd,
        },
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(10), read_frame(s))
        .await
        .expect("an answer")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_put_is_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = start(dir.path(), Vec::new());
    leader(&cluster).await;
    let put_a = KVCommand::Put("k".into(), "a".into());
    let mut x = raw_client(&cluster.addr(1), 77).await;
    let r = raw_append(&mut x, 1, 1, put_a.clone()).await;
    assert!(matches!(r, ServerReply::Done(1, KVResult::Write)), "{r:?}");
    let mut y = client(vec![cluster.addr(2)]);
    y.put("k", "b").await.unwrap();
    // Client 77 retries command 1 (its answer "got lost"), on the same and on another server.
    let r = raw_append(&mut x, 1, 1, put_a.clone()).await;
    assert!(matches!(r, ServerReply::Done(1, KVResult::Write)), "{r:?}");
    let mut x2 = raw_client(&cluster.addr(3), 77).await;
    let r = raw_append(&mut x2, 1, 1, put_a).await;
    assert!(matches!(r, ServerReply::Done(1, KVResult::Write)), "{r:?}");
    // Neither retry overwrote b.
    let r = raw_append(&mut x2, 2, 2, KVCommand::Get("k".into())).await;
    match r {
        ServerReply::Done(2, KVResult::Read(v)) => assert_eq!(v.as_deref(), Some("b")),
        other => panic!("unexpected {other:?}"),
    }
    // Delete works too.
    y.delete("k").await.unwrap();
    assert_eq!(y.get("k").await.unwrap(), None);
}

/// The server closes the connection: reading yields EOF or an error, and no panic anywhere.
async fn expect_closed(s: &mut TcpStream) {
    let r = tokio::time::timeout(Duration::from_secs(10), read_frame::<ServerReply, _>(s)).await;
    assert!(
        matches!(r, Ok(Err(_))),
        "connection should be closed, got {r:?}"
    );
}

async fn hello_as_server(addr: &str, id: NodeId) -> Welcome {
    let mut s = TcpStream::connect(addr).await.unwrap();
    write_frame(
        &mut s,
        &Hello::Server {
            version: PROTOCOL_VERSION,
            id,
        },
    )
    .await
    .unwrap();
    read_frame(&mut s).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_does_not_take_a_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = start(dir.path(), Vec::new());
    leader(&cluster).await;
    let a1 = cluster.addr(1);
    let a2 = cluster.addr(2);

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(&a1).await.unwrap();
    s.write_all(b"\x00\x00\x00\x05hello world, this is not bincode")
        .await
        .unwrap();
    expect_closed(&mut s).await;
    // An oversized frame.
    let mut s = TcpStream::connect(&a1).await.unwrap();
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    expect_closed(&mut s).await;
    // Peers with unknown ids, this server's own id, or a lower id (which must not connect).
    match hello_as_server(&a1, 99).await {
        Welcome::Refused(r) => assert!(r.contains("not a member"), "{r}"),
        w => panic!("accepted an unknown server id: {w:?}"),
    }
    match hello_as_server(&a1, 1).await {
        Welcome::Refused(r) => assert!(r.contains("own id"), "{r}"),
        w => panic!("accepted its own id: {w:?}"),
    }
    match hello_as_server(&a2, 1).await {
        Welcome::Refused(r) => assert!(r.contains("lower ids"), "{r}"),
        w => panic!("accepted server 1 connecting to server 2: {w:?}"),
    }
    // A client that sends garbage after a good handshake, then a frame claiming 2^60 bytes of
    // string inside a valid length.
    let mut s = raw_client(&a1, 5).await;
    s.write_all(&[0, 0, 0, 4, 9, 9, 9, 9]).await.unwrap();
    expect_closed(&mut s).await;
    let mut s = raw_client(&a1, 6).await;
    let mut body = vec![0u8, 1, 1, 0, 253];
    body.extend_from_slice(&(1u64 << 60).to_le_bytes());
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
    expect_closed(&mut s).await;
    // A connection that says nothing and disconnects.
    drop(TcpStream::connect(&a1).await.unwrap());
    // An impostor claiming to be server 3 (a valid id, already connected) sends garbage and
    // leaves: server 1 must keep talking to the real server 3.
    let start = Instant::now();
    loop {
        let st = omnipaxos_kv::client::status(&a1, Duration::from_secs(2))
            .await
            .unwrap();
        if st.peers_connected == vec![2, 3] {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{st:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    let w: Welcome = read_frame(&mut s).await.unwrap();
    assert!(matches!(w, Welcome::Accepted(1)), "{w:?}");
    s.write_all(&[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
    expect_closed(&mut s).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = omnipaxos_kv::client::status(&a1, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(st.peers_connected, vec![2, 3], "{st:?}");

    // Everyone is still up and serving.
    for id in [1, 2, 3] {
        assert!(cluster.is_running(id), "server {id} died");
    }
    let mut c = client(vec![a1.clone()]);
    c.put("still", "alive").await.unwrap();
    assert_eq!(c.get("still").await.unwrap().as_deref(), Some("alive"));
    // Server 3 still follows: it applies everything the others applied.
    let mut c3 = client(vec![cluster.addr(3)]);
    assert_eq!(c3.get("still").await.unwrap().as_deref(), Some("alive"));
    let start = Instant::now();
    loop {
        let st = cluster.statuses().await;
        if st.len() == 3 && st.iter().all(|s| s.applied == st[0].applied) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{st:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_wrong_config_key_is_a_clear_start_up_error() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.toml");
    let server = dir.path().join("server.toml");
    std::fs::write(&cluster, "nodes = [1]\nnode_addrs = [\"127.0.0.1:1\"]\n").unwrap();
    std::fs::write(&server, "server_id = 1\nlisten_port = 1\nlisten_prot = 5\n").unwrap();
    let out = std::process::Command::new(server_bin())
        .env("CLUSTER_CONFIG_FILE", &cluster)
        .env("SERVER_CONFIG_FILE", &server)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_prot"), "{err}");
    let out = std::process::Command::new(server_bin())
        .env_remove("CLUSTER_CONFIG_FILE")
        .env("SERVER_CONFIG_FILE", &server)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLUSTER_CONFIG_FILE"));
}

/// The README's first command, shortened: `local_cluster` starts copies of itself as the
/// servers (no other binary needed), kills the leader half way, restarts it, checks the history
/// and writes the summary and the plot.
#[test]
fn the_main_job_runs_on_its_own_binary() {
    let out_dir = tempfile::tempdir().expect("temp dir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_local_cluster"))
        .args(["--duration", "4", "--workers", "4", "--out"])
        .arg(out_dir.path())
        .output()
        .expect("run local_cluster");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "local_cluster failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("== summary =="), "no summary:\n{stdout}");
    for file in ["plot.svg", "summary.json", "requests.csv"] {
        let path = out_dir.path().join(file);
        let len = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} missing: {e}\n{stdout}", path.display()))
            .len();
        assert!(len > 0, "{} is empty", path.display());
    }
    let summary = std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap();
    assert!(summary.contains("throughput"), "summary.json: {summary}");
}
