//! An etcd cluster on loopback and a minimal client of its v3 KV API (`Put`, `Range`).
//!
//! The messages are written by hand with prost's derive, with the field numbers of etcd's
//! `etcdserverpb/rpc.proto` for the fields used (unknown fields of a reply are skipped), so no
//! `protoc` is needed to build.

use omnipaxos_kv::cluster::free_port;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;

/// `etcdserverpb.PutRequest` (fields used: key, value).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.PutResponse` (no field used).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

/// `etcdserverpb.RangeRequest` (fields used: key, serializable).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    /// The key (a single key: no range end).
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// `false`: a linearizable read (etcd's default).
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `mvccpb.KeyValue` (fields used: key, value).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// The key.
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    /// The value.
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeResponse` (fields used: kvs).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    /// The pairs found.
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// A connection to one etcd member.
pub struct Kv {
    grpc: tonic::client::Grpc<Channel>,
}

impl Kv {
    /// Connects to `endpoint` (`http://host:port`).
    pub async fn connect(endpoint: &str) -> Result<Kv, String> {
        let channel = Channel::from_shared(endpoint.to_string())
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Kv {
            grpc: tonic::client::Grpc::new(channel),
        })
    }

    async fn call<Req, Resp>(&mut self, path: &'static str, req: Req) -> Result<Resp, String>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        self.grpc.ready().await.map_err(|e| e.to_string())?;
        let codec: tonic::codec::ProstCodec<Req, Resp> = tonic::codec::ProstCodec::default();
        self.grpc
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(path),
                codec,
            )
            .await
            .map(|r| r.into_inner())
            .map_err(|s| s.to_string())
    }

    /// `Put(key, value)`.
    pub async fn put(&mut self, key: &str, value: &str) -> Result<(), String> {
        let req = PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        };
        self.call::<_, PutResponse>("/etcdserverpb.KV/Put", req)
            .await
            .map(|_| ())
    }

    /// A linearizable `Get(key)`.
    pub async fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let req = RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable: false,
        };
        let r: RangeResponse = self.call("/etcdserverpb.KV/Range", req).await?;
        Ok(r.kvs.into_iter().next().map(|kv| kv.value))
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// The etcd binary: `given`, or `etcd` on the `PATH`, or installed from Debian's
/// `etcd-server` package with apt-get (as root).
pub fn find_or_install(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{} does not exist", p.display()))
        };
    }
    if let Some(p) = which("etcd") {
        return Ok(p);
    }
    println!("etcd is not installed: installing Debian's etcd-server with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !apt(&["install", "-y", "-q", "etcd-server"]) {
        let _ = apt(&["update", "-q"]);
        if !apt(&["install", "-y", "-q", "etcd-server"]) {
            return Err(
                "cannot install etcd-server with apt-get (run as root, or pass --etcd PATH)".into(),
            );
        }
    }
    which("etcd").ok_or_else(|| "etcd-server installed, but no etcd on the PATH".into())
}

/// The first line of `etcd --version`.
pub fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim_start_matches("etcd Version: ").to_string())
        })
        .unwrap_or_else(|| "(unknown version)".into())
}

/// etcd member processes on loopback; killed when dropped.
pub struct EtcdCluster {
    children: Vec<Child>,
    client_urls: Vec<String>,
}

impl EtcdCluster {
    /// Starts `n` members with their data and logs under `dir`.
    pub fn start(bin: &Path, dir: &Path, n: usize) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = || free_port().map_err(|e| format!("no free port: {e}"));
        let mut client_urls = Vec::new();
        let mut peer_urls = Vec::new();
        for _ in 0..n {
            client_urls.push(format!("http://127.0.0.1:{}", port()?));
            peer_urls.push(format!("http://127.0.0.1:{}", port()?));
        }
        let initial: Vec<String> = (0..n)
            .map(|i| format!("m{}={}", i + 1, peer_urls[i]))
            .collect();
        let mut c = EtcdCluster {
            children: Vec::new(),
            client_urls: client_urls.clone(),
        };
        for i in 0..n {
            let log = std::fs::File::create(dir.join(format!("m{}.log", i + 1)))
                .map_err(|e| format!("cannot create the etcd log: {e}"))?;
            let child = Command::new(bin)
                .args([
                    "--name",
                    &format!("m{}", i + 1),
                    "--data-dir",
                    &dir.join(format!("m{}", i + 1)).display().to_string(),
                    "--listen-client-urls",
                    &client_urls[i],
                    "--advertise-client-urls",
                    &client_urls[i],
                    "--listen-peer-urls",
                    &peer_urls[i],
                    "--initial-advertise-peer-urls",
                    &peer_urls[i],
                    "--initial-cluster",
                    &initial.join(","),
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "etcd-compare",
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
            c.children.push(child);
        }
        Ok(c)
    }

    /// The members' client URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.client_urls.clone()
    }

    /// Waits until every member takes a write.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        for url in &self.client_urls {
            loop {
                let r = async {
                    let mut kv = Kv::connect(url).await?;
                    kv.put("etcd-compare-ready", "1").await
                }
                .await;
                match r {
                    Ok(()) => break,
                    Err(e) if start.elapsed() > timeout => {
                        return Err(format!("etcd at {url} not ready within {timeout:?}: {e}"))
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
        Ok(())
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
