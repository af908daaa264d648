//! Running a cluster of server processes on loopback: start, SIGKILL, restart, pause, and ask
//! who leads. Used by the `local_cluster` and `bench` binaries and by the integration tests.

use crate::client::{status_with, ClientTls};
use crate::kv::NodeId;
use crate::net::StatusInfo;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Options of the servers.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of servers (ids 1..=n).
    pub servers: usize,
    /// Sync the log to disk on every write.
    pub fsync: bool,
    /// Milliseconds per tick.
    pub tick_ms: u64,
    /// Ticks per election round.
    pub election_ticks: u64,
    /// Extra environment variables for every server (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Command-line arguments for every server process (e.g. [`SERVE_ARG`] when the program
    /// is not the `server` binary but one that serves when given it).
    pub server_args: Vec<String>,
    /// Give every server a metrics endpoint on a free loopback port (see
    /// [`ProcessCluster::metrics_addr`]).
    pub metrics: bool,
    /// Extra lines for every server file; `{id}` is replaced by the server's id (e.g.
    /// `tls_cert_file = "certs/server-{id}.pem"`).
    pub server_toml_extra: Vec<String>,
    /// How this program talks to the servers (status requests) when they require TLS.
    pub client_tls: Option<ClientTls>,
    /// Servers reach each other through relays that [`ProcessCluster::isolate`] can cut (see
    /// [`crate::partition`]); each server then gets a cluster file of its own, naming the
    /// relays as its peers' addresses.
    pub partitionable: bool,
}

/// The argument with which `local_cluster` and `bench` run as a server: they start copies of
/// themselves, so that `cargo run --bin local_cluster` needs no other binary built first.
pub const SERVE_ARG: &str = "--serve";

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            servers: 3,
            fsync: true,
            tick_ms: 10,
            election_ticks: 10,
            env: Vec::new(),
            server_args: Vec::new(),
            metrics: false,
            server_toml_extra: Vec::new(),
            client_tls: None,
            partitionable: false,
        }
    }
}

/// A port on loopback that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Server processes on loopback, each with its data directory under `dir`.
pub struct ProcessCluster {
    server_bin: PathBuf,
    dir: PathBuf,
    opts: ClusterOptions,
    ids: Vec<NodeId>,
    addrs: Vec<String>,
    metrics_addrs: Vec<Option<String>>,
    children: HashMap<NodeId, Child>,
    /// With [`ClusterOptions::partitionable`]: the relay through which server `a` connects to
    /// server `b`, keyed `(a, b)` with `b < a` (servers connect to lower ids only).
    links: HashMap<(NodeId, NodeId), crate::partition::Link>,
}

impl ProcessCluster {
    /// Writes the config files into `dir` and starts every server from `server_bin`.
    pub fn start(server_bin: &Path, dir: &Path, opts: ClusterOptions) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ids: Vec<NodeId> = (1..=opts.servers as NodeId).collect();
        let mut addrs = Vec::new();
        for _ in &ids {
            addrs.push(format!("127.0.0.1:{}", free_port()?));
        }
        let cluster = format!(
            "nodes = {:?}\nnode_addrs = {:?}\ninitial_leader = 1\n",
            ids, addrs
        );
        std::fs::write(dir.join("cluster.toml"), cluster)?;
        let mut links = HashMap::new();
        if opts.partitionable {
            for &a in &ids {
                let mut peer_addrs = addrs.clone();
                for &b in ids.iter().filter(|&&b| b < a) {
                    let link = crate::partition::Link::start(addrs[(b - 1) as usize].clone())?;
                    peer_addrs[(b - 1) as usize] = link.addr().to_string();
                    links.insert((a, b), link);
                }
                let cluster = format!(
                    "nodes = {:?}\nnode_addrs = {:?}\ninitial_leader = 1\n",
                    ids, peer_addrs
                );
                std::fs::write(dir.join(format!("cluster-{a}.toml")), cluster)?;
            }
        }
        let mut metrics_addrs = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let port = addrs[i].rsplit(':').next().unwrap_or("0");
            let mut server = format!(
                "server_id = {id}\nlisten_address = \"127.0.0.1\"\nlisten_port = {port}\ndata_dir = {:?}\nfsync = {}\ntick_ms = {}\nelection_ticks = {}\n",
                dir.join(format!("data-{id}")).display().to_string(),
                opts.fsync,
                opts.tick_ms,
                opts.election_ticks
            );
            if opts.metrics {
                let port = free_port()?;
                server.push_str(&format!("metrics_port = {port}\n"));
                metrics_addrs.push(Some(format!("127.0.0.1:{port}")));
            } else {
                metrics_addrs.push(None);
            }
            for line in &opts.server_toml_extra {
                server.push_str(&line.replace("{id}", &id.to_string()));
                server.push('\n');
            }
            std::fs::write(dir.join(format!("server-{id}.toml")), server)?;
        }
        let mut c = ProcessCluster {
            server_bin: server_bin.to_path_buf(),
            dir: dir.to_path_buf(),
            opts,
            ids: ids.clone(),
            addrs,
            metrics_addrs,
            children: HashMap::new(),
            links,
        };
        for id in ids {
            c.spawn(id, &[])?;
        }
        Ok(c)
    }

    /// Starts server `id` (again), on its data directory, with extra environment variables.
    pub fn spawn(&mut self, id: NodeId, extra_env: &[(&str, &str)]) -> std::io::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("server-{id}.log")))?;
        let cluster_file = if self.opts.partitionable {
            self.dir.join(format!("cluster-{id}.toml"))
        } else {
            self.dir.join("cluster.toml")
        };
        let mut cmd = Command::new(&self.server_bin);
        cmd.args(&self.opts.server_args)
            .env("CLUSTER_CONFIG_FILE", cluster_file)
            .env(
                "SERVER_CONFIG_FILE",
                self.dir.join(format!("server-{id}.toml")),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot start {}: {e}", self.server_bin.display()),
            )
        })?;
        self.children.insert(id, child);
        Ok(())
    }

    /// The servers' ids.
    pub fn ids(&self) -> &[NodeId] {
        &self.ids
    }

    /// The address of every server, in id order.
    pub fn addrs(&self) -> Vec<String> {
        self.addrs.clone()
    }

    /// The address of server `id`.
    pub fn addr(&self, id: NodeId) -> String {
        self.addrs[(id - 1) as usize].clone()
    }

    /// The address of server `id`'s metrics endpoint (with [`ClusterOptions::metrics`]).
    pub fn metrics_addr(&self, id: NodeId) -> Option<String> {
        self.metrics_addrs
            .get((id as usize).checked_sub(1)?)?
            .clone()
    }

    /// The directory holding configs, logs and data.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Kills server `id` with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self, id: NodeId) {
        if let Some(mut c) = self.children.remove(&id) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` to server `id` (pausing or resuming it).
    pub fn signal(&self, id: NodeId, signal: Signal) {
        if let Some(c) = self.children.get(&id) {
            let _ = send_signal(c.id(), signal);
        }
    }

    /// The process id of server `id`, if it was started and not killed.
    pub fn pid(&self, id: NodeId) -> Option<u32> {
        self.children.get(&id).map(|c| c.id())
    }

    /// Whether server `id` is running (started and not exited).
    pub fn is_running(&mut self, id: NodeId) -> bool {
        match self.children.get_mut(&id) {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Cuts every link between server `id` and the others (it keeps running, and its clients
    /// can still reach it). Needs [`ClusterOptions::partitionable`]; returns whether it has it.
    pub fn isolate(&self, id: NodeId) -> bool {
        for ((a, b), link) in &self.links {
            if *a == id || *b == id {
                link.set_cut(true);
            }
        }
        self.opts.partitionable
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        for link in self.links.values() {
            link.set_cut(false);
        }
    }

    /// The status of every reachable server.
    pub async fn statuses(&self) -> Vec<StatusInfo> {
        let mut out = Vec::new();
        for id in &self.ids {
            if self.children.contains_key(id) {
                let tls = self.opts.client_tls.as_ref();
                if let Ok(s) = status_with(&self.addr(*id), tls, Duration::from_millis(300)).await {
                    out.push(s);
                }
            }
        }
        out
    }

    /// Waits until the running servers agree on a leader among them; returns it.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let start = Instant::now();
        while start.elapsed() < timeout {
            let st = self.statuses().await;
            let running = self.children.len();
            if st.len() == running {
                if let Some(l) = st[0].leader {
                    if self.children.contains_key(&l) && st.iter().all(|s| s.leader == Some(l)) {
                        return Some(l);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// Stops every server (SIGKILL).
    pub fn stop_all(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            self.signal(id, Signal::Cont);
            self.kill(id);
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Signals the tests and tools send to a server process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGSTOP: freeze the process (its sockets stay open).
    Stop,
    /// SIGCONT: resume it.
    Cont,
}

/// Sends `signal` to the process `pid`.
pub fn send_signal(pid: u32, signal: Signal) -> std::io::Result<()> {
    // The workspace forbids `unsafe` code, so no `libc::kill`: use the `kill` command.
    let name = match signal {
        Signal::Stop => "STOP",
        Signal::Cont => "CONT",
    };
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -{name} {pid} failed")))
    }
}
