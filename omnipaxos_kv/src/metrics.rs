//! A server's metrics, in the Prometheus text exposition format (version 0.0.4), served over
//! HTTP/1.1 on a loopback port when `metrics_port` is set (see [`crate::config::ServerFile`]).
//!
//! The event loop publishes gauges (role, ballot, log indices, connections) at the end of each
//! pass; counters and histograms are bumped where things happen. Everything is an atomic, so
//! the HTTP task reads without stopping the event loop. The responder answers `GET /metrics`
//! and nothing else; anything it cannot parse gets a `400` and the connection is closed: a
//! garbage request costs at most [`MAX_REQUEST_HEAD`] bytes and [`REQUEST_TIMEOUT`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest request head (request line and headers) the responder reads.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long a scraper may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served at once; further connections wait in the accept queue.
const MAX_CONCURRENT_SCRAPES: usize = 16;

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048,
    4.096, 8.192, 16.384,
];

/// A histogram of durations with the [`LATENCY_BUCKETS`] bounds.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {cumulative}");
    }
}

/// The kinds of client request, as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `Put`.
    Put = 0,
    /// `Delete`.
    Delete = 1,
    /// `Get`.
    Get = 2,
    /// A status request.
    Status = 3,
}

const KIND_NAMES: [&str; 4] = ["put", "delete", "get", "status"];

/// How a client request ended, as labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestResult {
    /// Answered with its result.
    Ok = 0,
    /// Refused (e.g. the cluster is being reconfigured).
    Refused = 1,
    /// Its client disconnected before the answer.
    Abandoned = 2,
}

const RESULT_NAMES: [&str; 3] = ["ok", "refused", "abandoned"];

/// The role a server sees itself in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// No leader known.
    None = 0,
    /// Following another server.
    Follower = 1,
    /// Leading, not yet ready to replicate (preparing).
    Candidate = 2,
    /// Leading and replicating.
    Leader = 3,
}

const ROLE_NAMES: [&str; 4] = ["none", "follower", "candidate", "leader"];

/// Storage counters, shared between the metered storage (which the node owns) and the
/// responder.
#[derive(Debug, Default)]
pub struct StorageMetrics {
    /// Atomic writes issued to the storage.
    pub writes: AtomicU64,
    /// Writes that were synced to disk before returning.
    pub synced_writes: AtomicU64,
    /// Log entries written (appended, or written over a suffix).
    pub entries_written: AtomicU64,
    /// Writes that returned an error.
    pub errors: AtomicU64,
    /// Time per write.
    pub write_seconds: Histogram,
}

/// The links a connection can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// Another server.
    Peer = 0,
    /// A client.
    Client = 1,
}

const LINK_NAMES: [&str; 2] = ["peer", "client"];

/// Everything a server reports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// This server's id.
    pub server_id: AtomicU64,
    role: AtomicU64,
    /// The leader this server follows (0: none).
    pub leader_id: AtomicU64,
    /// Round number of the promised ballot.
    pub ballot_n: AtomicU64,
    /// Owner of the promised ballot.
    pub ballot_pid: AtomicU64,
    /// Decided index (absolute).
    pub decided_idx: AtomicU64,
    /// Accepted index (end of the local log, absolute).
    pub accepted_idx: AtomicU64,
    /// Entries applied to the map.
    pub applied_idx: AtomicU64,
    /// Compacted index.
    pub compacted_idx: AtomicU64,
    /// Entries waiting in the leader's batch.
    pub batched_len: AtomicU64,
    /// 1 while pulling a previous configuration's log.
    pub migration_active: AtomicU64,
    /// End of the log being pulled.
    pub migration_prefix_end: AtomicU64,
    /// Entries of it received.
    pub migration_received: AtomicU64,
    /// Servers it is pulled from.
    pub migration_sources: AtomicU64,
    /// Changes of the leader this server follows.
    pub leader_changes: AtomicU64,
    /// Servers connected.
    pub peers_connected: AtomicU64,
    /// Clients connected.
    pub clients_connected: AtomicU64,
    /// Requests by kind and result.
    requests: [[AtomicU64; 3]; 4],
    /// Latency from receiving a command to answering it, by kind (put, delete, get).
    latency: [Histogram; 3],
    /// Protocol messages received from peers and handed to the node.
    pub peer_messages_in: AtomicU64,
    /// Protocol messages sent to peers.
    pub peer_messages_out: AtomicU64,
    /// Connections accepted after their handshake, by link kind.
    accepted: [AtomicU64; 2],
    /// Connections refused at the handshake (bad hello, wrong certificate name), by kind.
    refused: [AtomicU64; 2],
    /// TLS handshakes that failed (no or untrusted certificate, garbage), by link kind.
    tls_failures: [AtomicU64; 2],
    /// Time of one pass of the event loop (events handled, messages sent, log applied).
    pub pass_seconds: Histogram,
    /// Events handled per pass (peer messages and client requests).
    pub pass_events: AtomicU64,
    /// Storage counters.
    pub storage: Arc<StorageMetrics>,
}

impl Metrics {
    /// Sets the role.
    pub fn set_role(&self, r: Role) {
        self.role.store(r as u64, Relaxed);
    }

    /// The role last set.
    pub fn role(&self) -> Role {
        match self.role.load(Relaxed) {
            1 => Role::Follower,
            2 => Role::Candidate,
            3 => Role::Leader,
            _ => Role::None,
        }
    }

    /// Counts a finished request.
    pub fn request(&self, kind: RequestKind, result: RequestResult) {
        self.requests[kind as usize][result as usize].fetch_add(1, Relaxed);
    }

    /// Requests of `kind` that ended with `result`.
    pub fn requests(&self, kind: RequestKind, result: RequestResult) -> u64 {
        self.requests[kind as usize][result as usize].load(Relaxed)
    }

    /// Records the latency of an answered command (`kind` is not [`RequestKind::Status`]).
    pub fn latency(&self, kind: RequestKind, d: Duration) {
        if let Some(h) = self.latency.get(kind as usize) {
            h.observe(d);
        }
    }

    /// Counts a connection accepted after its handshake.
    pub fn accepted(&self, link: LinkKind) {
        self.accepted[link as usize].fetch_add(1, Relaxed);
    }

    /// Counts a connection refused at its handshake.
    pub fn refused(&self, link: LinkKind) {
        self.refused[link as usize].fetch_add(1, Relaxed);
    }

    /// Counts a failed TLS handshake.
    pub fn tls_failure(&self, link: LinkKind) {
        self.tls_failures[link as usize].fetch_add(1, Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8 * 1024);
        let g = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let c = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        let ld = |a: &AtomicU64| a.load(Relaxed);
        g(
            &mut o,
            "omnipaxos_kv_server_id",
            "This server's id.",
            ld(&self.server_id),
        );
        let _ = writeln!(
            o,
            "# HELP omnipaxos_kv_role 1 for the role this server sees itself in (leader: leading and replicating; candidate: leading, still preparing).\n# TYPE omnipaxos_kv_role gauge"
        );
        let role = self.role.load(Relaxed) as usize;
        for (i, name) in ROLE_NAMES.iter().enumerate() {
            let _ = writeln!(
                o,
                "omnipaxos_kv_role{{role=\"{name}\"}} {}",
                u64::from(i == role)
            );
        }
        g(
            &mut o,
            "omnipaxos_kv_leader_id",
            "The leader this server follows (0: none known).",
            ld(&self.leader_id),
        );
        g(
            &mut o,
            "omnipaxos_kv_ballot_round",
            "Round number of the ballot this server promised.",
            ld(&self.ballot_n),
        );
        g(
            &mut o,
            "omnipaxos_kv_ballot_leader",
            "Owner of the ballot this server promised.",
            ld(&self.ballot_pid),
        );
        g(
            &mut o,
            "omnipaxos_kv_decided_index",
            "Entries decided (absolute log index, exclusive).",
            ld(&self.decided_idx),
        );
        g(
            &mut o,
            "omnipaxos_kv_accepted_index",
            "End of the local log (absolute, exclusive).",
            ld(&self.accepted_idx),
        );
        g(
            &mut o,
            "omnipaxos_kv_applied_index",
            "Entries applied to the key-value map.",
            ld(&self.applied_idx),
        );
        g(
            &mut o,
            "omnipaxos_kv_compacted_index",
            "Entries folded into a snapshot (absolute, exclusive).",
            ld(&self.compacted_idx),
        );
        g(
            &mut o,
            "omnipaxos_kv_batched_entries",
            "Entries appended here waiting for their batch to be replicated.",
            ld(&self.batched_len),
        );
        g(
            &mut o,
            "omnipaxos_kv_migration_active",
            "1 while this server pulls the log of the configuration it continues.",
            ld(&self.migration_active),
        );
        g(
            &mut o,
            "omnipaxos_kv_migration_prefix_end",
            "End of the previous configuration's log being pulled (0: none).",
            ld(&self.migration_prefix_end),
        );
        g(
            &mut o,
            "omnipaxos_kv_migration_received_entries",
            "Entries of the previous configuration's log received so far.",
            ld(&self.migration_received),
        );
        g(
            &mut o,
            "omnipaxos_kv_migration_sources",
            "Servers the previous configuration's log is pulled from.",
            ld(&self.migration_sources),
        );
        c(
            &mut o,
            "omnipaxos_kv_leader_changes_total",
            "Times the leader this server follows changed.",
            ld(&self.leader_changes),
        );
        g(
            &mut o,
            "omnipaxos_kv_peers_connected",
            "Servers with an open connection to this one.",
            ld(&self.peers_connected),
        );
        g(
            &mut o,
            "omnipaxos_kv_clients_connected",
            "Client connections open.",
            ld(&self.clients_connected),
        );
        let _ = writeln!(
            o,
            "# HELP omnipaxos_kv_requests_total Client requests finished, by kind and result.\n# TYPE omnipaxos_kv_requests_total counter"
        );
        for (k, kind) in KIND_NAMES.iter().enumerate() {
            for (r, result) in RESULT_NAMES.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "omnipaxos_kv_requests_total{{kind=\"{kind}\",result=\"{result}\"}} {}",
                    self.requests[k][r].load(Relaxed)
                );
            }
        }
        let _ = writeln!(
            o,
            "# HELP omnipaxos_kv_request_duration_seconds Time from receiving a command to answering it, by kind.\n# TYPE omnipaxos_kv_request_duration_seconds histogram"
        );
        for (k, h) in self.latency.iter().enumerate() {
            h.render(
                &mut o,
                "omnipaxos_kv_request_duration_seconds",
                &format!("kind=\"{}\"", KIND_NAMES[k]),
            );
        }
        let s = &self.storage;
        c(
            &mut o,
            "omnipaxos_kv_storage_writes_total",
            "Atomic writes to the log storage.",
            ld(&s.writes),
        );
        c(
            &mut o,
            "omnipaxos_kv_storage_synced_writes_total",
            "Storage writes synced to disk before returning (PersistentStorage fsyncs up to three files per synced write).",
            ld(&s.synced_writes),
        );
        c(
            &mut o,
            "omnipaxos_kv_storage_entries_written_total",
            "Log entries written to storage.",
            ld(&s.entries_written),
        );
        c(
            &mut o,
            "omnipaxos_kv_storage_errors_total",
            "Storage writes that failed.",
            ld(&s.errors),
        );
        let _ = writeln!(
            o,
            "# HELP omnipaxos_kv_storage_write_seconds Time per storage write.\n# TYPE omnipaxos_kv_storage_write_seconds histogram"
        );
        s.write_seconds
            .render(&mut o, "omnipaxos_kv_storage_write_seconds", "");
        c(
            &mut o,
            "omnipaxos_kv_peer_messages_received_total",
            "Protocol messages received from other servers.",
            ld(&self.peer_messages_in),
        );
        c(
            &mut o,
            "omnipaxos_kv_peer_messages_sent_total",
            "Protocol messages sent to other servers.",
            ld(&self.peer_messages_out),
        );
        for (name, help, arr) in [
            (
                "omnipaxos_kv_connections_accepted_total",
                "Connections accepted after their handshake, by link kind.",
                &self.accepted,
            ),
            (
                "omnipaxos_kv_connections_refused_total",
                "Connections refused at their handshake (bad hello, certificate not naming the claimed server), by link kind.",
                &self.refused,
            ),
            (
                "omnipaxos_kv_tls_handshake_failures_total",
                "TLS handshakes that failed (no or untrusted certificate, not TLS), by link kind.",
                &self.tls_failures,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (i, link) in LINK_NAMES.iter().enumerate() {
                let _ = writeln!(o, "{name}{{link=\"{link}\"}} {}", arr[i].load(Relaxed));
            }
        }
        let _ = writeln!(
            o,
            "# HELP omnipaxos_kv_event_loop_pass_seconds Time of one pass of the event loop.\n# TYPE omnipaxos_kv_event_loop_pass_seconds histogram"
        );
        self.pass_seconds
            .render(&mut o, "omnipaxos_kv_event_loop_pass_seconds", "");
        c(
            &mut o,
            "omnipaxos_kv_event_loop_events_total",
            "Peer messages and client requests handled by the event loop.",
            ld(&self.pass_events),
        );
        o
    }
}

/// Serves `GET /metrics` on `listener` until the process ends.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_SCRAPES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(stream, &metrics)).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the responder makes of a request head.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// Parses the request line of a complete head (`\r\n\r\n` seen, or the head limit hit).
fn route(head: &[u8]) -> Route {
    let Ok(text) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let Some(line) = text.split("\r\n").next() else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::BadRequest;
    }
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" || path == "/" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

async fn answer(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let complete = loop {
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            break true;
        }
        if head.len() >= MAX_REQUEST_HEAD {
            break false;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break false;
        }
        head.extend_from_slice(&buf[..n]);
    };
    let route = if complete {
        route(&head)
    } else {
        Route::BadRequest
    };
    let is_head = head.starts_with(b"HEAD ");
    let (status, ctype, body) = match route {
        Route::Metrics => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: try /metrics\n".into(),
        ),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        Route::BadRequest => ("400 Bad Request", "text/plain", "bad request\n".into()),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if route == Route::MethodNotAllowed {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    if !is_head {
        out.push_str(&body);
    }
    stream.write_all(out.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"\xff\xfe\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SPDY\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(100));
        let mut o = String::new();
        h.render(&mut o, "x", "");
        assert!(o.contains("x_bucket{le=\"0.0005\"} 1\n"), "{o}");
        assert!(o.contains("x_bucket{le=\"0.004\"} 2\n"), "{o}");
        assert!(o.contains("x_bucket{le=\"16.384\"} 2\n"), "{o}");
        assert!(o.contains("x_bucket{le=\"+Inf\"} 3\n"), "{o}");
        assert!(o.contains("x_count 3\n"), "{o}");
        let m = Metrics::default();
        m.set_role(Role::Leader);
        m.request(RequestKind::Get, RequestResult::Ok);
        let text = m.render();
        assert!(text.contains("omnipaxos_kv_role{role=\"leader\"} 1\n"));
        assert!(text.contains("omnipaxos_kv_role{role=\"follower\"} 0\n"));
        assert!(text.contains("omnipaxos_kv_requests_total{kind=\"get\",result=\"ok\"} 1\n"));
    }
}
