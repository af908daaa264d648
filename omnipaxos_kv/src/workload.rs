//! The benchmark workload: phases of `{ duration_sec, requests_per_sec, read_ratio }` run by a
//! pool of [`KvClient`]s, recording every request.
//!
//! Open loop (`requests_per_sec > 0`): request *k* of a phase is due at `start + k / rate`;
//! a free worker waits until then and sends it; its latency counts from the due time, so a
//! slow cluster shows as latency, not as a lower sending rate. Closed loop
//! (`requests_per_sec = 0`): each worker sends its next request when the previous one is
//! answered.

use crate::client::{splitmix, KvClient};
use crate::config::RequestInterval;
use crate::kv::{KVCommand, KVResult};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// One request as the client saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The client (worker) that sent it.
    pub client_id: u64,
    /// The operation.
    pub cmd: KVCommand,
    /// When it was due or sent, since the workload's start.
    pub start: Duration,
    /// When the answer arrived, since the workload's start; `None` if the request failed
    /// (its effect is then unknown).
    pub end: Option<Duration>,
    /// The answer.
    pub result: Option<KVResult>,
}

impl Record {
    /// Latency, for answered requests.
    pub fn latency(&self) -> Option<Duration> {
        self.end.map(|e| e.saturating_sub(self.start))
    }

    /// One CSV line: `client_id,op,key,value,start_us,end_us,result`.
    pub fn csv_line(&self) -> String {
        let (op, key, value) = match &self.cmd {
            KVCommand::Put(k, v) => ("put", k.as_str(), v.as_str()),
            KVCommand::Delete(k) => ("delete", k.as_str(), ""),
            KVCommand::Get(k) => ("get", k.as_str(), ""),
        };
        let result = match &self.result {
            None => "failed".to_string(),
            Some(KVResult::Write) => "ok".to_string(),
            Some(KVResult::Read(None)) => "none".to_string(),
            Some(KVResult::Read(Some(v))) => format!("value:{v}"),
        };
        format!(
            "{},{op},{key},{value},{},{},{result}",
            self.client_id,
            self.start.as_micros(),
            self.end
                .map_or(String::new(), |e| e.as_micros().to_string())
        )
    }
}

/// The header of [`Record::csv_line`].
pub const CSV_HEADER: &str = "client_id,op,key,value,start_us,end_us,result";

/// What to run.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Server addresses; worker *i* starts with server `i % len` and fails over to the others.
    pub servers: Vec<String>,
    /// The phases.
    pub intervals: Vec<RequestInterval>,
    /// Number of workers (requests in flight at most).
    pub workers: usize,
    /// Keys are `key0 .. key{num_keys-1}`.
    pub num_keys: usize,
    /// Per-attempt timeout of a request (see [`KvClient::new`]).
    pub attempt_timeout: Duration,
    /// Total time one request may take before it is recorded as failed.
    pub request_deadline: Duration,
    /// Seed of the random choice of keys and operations.
    pub seed: u64,
    /// TLS towards the servers (`None`: plaintext).
    pub tls: Option<crate::client::ClientTls>,
}

struct Scheduler {
    intervals: Vec<RequestInterval>,
    t0: Instant,
    phase: usize,
    phase_start: Duration,
    issued: u64,
}

impl Scheduler {
    /// The due time and read ratio of the next request, or `None` when the workload is over.
    fn next(&mut self) -> Option<(Duration, f64)> {
        loop {
            let iv = *self.intervals.get(self.phase)?;
            let phase_end = self.phase_start + Duration::from_secs(iv.duration_sec);
            let now = self.t0.elapsed();
            let due = if iv.requests_per_sec == 0 {
                now.max(self.phase_start)
            } else {
                self.phase_start
                    + Duration::from_secs_f64(self.issued as f64 / iv.requests_per_sec as f64)
            };
            if due >= phase_end || (iv.requests_per_sec == 0 && now >= phase_end) {
                self.phase += 1;
                self.phase_start = phase_end;
                self.issued = 0;
                continue;
            }
            self.issued += 1;
            return Some((due, iv.read_ratio));
        }
    }
}

/// Runs the workload from `t0`, sending every record to `records` as it completes.
pub async fn run_workload(w: Workload, t0: Instant, records: mpsc::UnboundedSender<Record>) {
    let sched = Arc::new(Mutex::new(Scheduler {
        intervals: w.intervals.clone(),
        t0,
        phase: 0,
        phase_start: Duration::ZERO,
        issued: 0,
    }));
    let mut handles = Vec::new();
    for worker in 0..w.workers {
        let mut servers = w.servers.clone();
        if !servers.is_empty() {
            let shift = worker % servers.len();
            servers.rotate_left(shift);
        }
        let mut client = KvClient::new(servers, w.attempt_timeout, w.request_deadline);
        if let Some(t) = &w.tls {
            client = client.with_tls(t.clone());
        }
        let sched = sched.clone();
        let records = records.clone();
        let num_keys = w.num_keys.max(1) as u64;
        let mut rng = splitmix(w.seed ^ (worker as u64).wrapping_mul(0x1234_5678_9abc_def1));
        handles.push(tokio::spawn(async move {
            let mut n = 0u64;
            loop {
                let next = sched.lock().map(|mut s| s.next()).unwrap_or(None);
                let Some((due, read_ratio)) = next else { break };
                let now = t0.elapsed();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
                rng = splitmix(rng);
                let key = format!("key{}", rng % num_keys);
                rng = splitmix(rng);
                let is_read = ((rng >> 11) as f64 / (1u64 << 53) as f64) < read_ratio;
                n += 1;
                let cmd = if is_read {
                    KVCommand::Get(key)
                } else {
                    KVCommand::Put(key, format!("{:x}-{n}", client.client_id()))
                };
                let start = due.min(t0.elapsed());
                let res = client.execute(cmd.clone()).await;
                let end = t0.elapsed();
                let (end, result) = match res {
                    Ok(r) => (Some(end), Some(r)),
                    Err(e) => {
                        tracing::warn!(error = %e, "request failed");
                        (None, None)
                    }
                };
                let rec = Record {
                    client_id: client.client_id(),
                    cmd,
                    start,
                    end,
                    result,
                };
                if records.send(rec).is_err() {
                    break;
                }
            }
        }));
    }
    drop(records);
    for h in handles {
        let _ = h.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_spaces_open_loop_requests() {
        let mut s = Scheduler {
            intervals: vec![
                RequestInterval {
                    duration_sec: 1,
                    requests_per_sec: 4,
                    read_ratio: 0.0,
                },
                RequestInterval {
                    duration_sec: 1,
                    requests_per_sec: 2,
                    read_ratio: 1.0,
                },
            ],
            t0: Instant::now(),
            phase: 0,
            phase_start: Duration::ZERO,
            issued: 0,
        };
        let all: Vec<_> = std::iter::from_fn(|| s.next()).collect();
        let ms: Vec<u128> = all.iter().map(|(d, _)| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 250, 500, 750, 1000, 1500]);
        assert_eq!(all[4].1, 1.0);
    }
}
