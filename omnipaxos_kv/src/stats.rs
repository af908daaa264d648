//! Summaries of a run (throughput, latency percentiles, per-second series) and an SVG plot.

use crate::kv::KVCommand;
use crate::workload::Record;
use std::fmt::Write as _;
use std::time::Duration;

/// The `p`-th percentile (0..=100) of sorted `values` (nearest rank); zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Totals of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Answered requests.
    pub ok: usize,
    /// Failed requests (effect unknown).
    pub failed: usize,
    /// Answered reads.
    pub reads: usize,
    /// Answered writes.
    pub writes: usize,
    /// From the first request's start to the last answer.
    pub duration: Duration,
    /// Answered requests per second over `duration`.
    pub throughput: f64,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Largest latency.
    pub max: Duration,
    /// Longest time during which no request was answered (after the first answer).
    pub longest_gap: Duration,
}

impl Summary {
    /// Summarises `records`.
    pub fn new(records: &[Record]) -> Summary {
        let mut lat: Vec<Duration> = records.iter().filter_map(|r| r.latency()).collect();
        lat.sort_unstable();
        let ok = lat.len();
        let reads = records
            .iter()
            .filter(|r| r.end.is_some() && matches!(r.cmd, KVCommand::Get(_)))
            .count();
        let first = records.iter().map(|r| r.start).min().unwrap_or_default();
        let last = records.iter().filter_map(|r| r.end).max().unwrap_or(first);
        let duration = last.saturating_sub(first);
        let mut ends: Vec<Duration> = records.iter().filter_map(|r| r.end).collect();
        ends.sort_unstable();
        let longest_gap = ends
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        Summary {
            ok,
            failed: records.len() - ok,
            reads,
            writes: ok - reads,
            duration,
            throughput: if duration.is_zero() {
                0.0
            } else {
                ok as f64 / duration.as_secs_f64()
            },
            p50: percentile(&lat, 50.0),
            p99: percentile(&lat, 99.0),
            max: lat.last().copied().unwrap_or_default(),
            longest_gap,
        }
    }

    /// The summary as a JSON object.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"ok\": {}, \"failed\": {}, \"reads\": {}, \"writes\": {}, \"duration_s\": {:.3}, \"throughput_ops_per_s\": {:.1}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"longest_gap_ms\": {:.1}}}",
            self.ok,
            self.failed,
            self.reads,
            self.writes,
            self.duration.as_secs_f64(),
            self.throughput,
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            ms(self.longest_gap)
        )
    }
}

/// Milliseconds as a float.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One second of a run, by the time answers arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Second since the start.
    pub second: u64,
    /// Answers in that second.
    pub ops: usize,
    /// Median latency of those answers.
    pub p50: Duration,
    /// 99th percentile latency of those answers.
    pub p99: Duration,
}

/// Per-second buckets of `records` from second 0 to the last answer.
pub fn per_second(records: &[Record]) -> Vec<Bucket> {
    let last = records
        .iter()
        .filter_map(|r| r.end)
        .max()
        .map_or(0, |d| d.as_secs());
    let mut lats: Vec<Vec<Duration>> = vec![Vec::new(); last as usize + 1];
    for r in records {
        if let (Some(end), Some(l)) = (r.end, r.latency()) {
            lats[end.as_secs() as usize].push(l);
        }
    }
    lats.into_iter()
        .enumerate()
        .map(|(s, mut l)| {
            l.sort_unstable();
            Bucket {
                second: s as u64,
                ops: l.len(),
                p50: percentile(&l, 50.0),
                p99: percentile(&l, 99.0),
            }
        })
        .collect()
}

/// A vertical marker on the plot (e.g. "leader killed").
#[derive(Debug, Clone)]
pub struct Marker {
    /// Seconds since the start.
    pub at: f64,
    /// Label.
    pub label: String,
}

fn polyline(points: &[(f64, f64)], color: &str) -> String {
    let pts: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{x:.1},{y:.1}"))
        .collect();
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
        pts.join(" ")
    )
}

/// An SVG with throughput (top) and p50/p99 latency (bottom) per second, and the markers.
pub fn svg_plot(title: &str, buckets: &[Bucket], markers: &[Marker]) -> String {
    let (w, h, left, right, panel_h, gap, top) = (900.0, 560.0, 70.0, 20.0, 200.0, 70.0, 50.0);
    let plot_w = w - left - right;
    let secs = buckets.len().max(1) as f64;
    let x = |s: f64| left + plot_w * s / secs;
    let max_ops = buckets.iter().map(|b| b.ops).max().unwrap_or(0).max(1) as f64;
    let max_lat = buckets
        .iter()
        .map(|b| ms(b.p99))
        .fold(0.0f64, f64::max)
        .max(1.0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"25\" font-size=\"16\">{}</text>",
        escape(title)
    );
    let panels = [
        (top, "throughput (ops/s)", max_ops),
        (
            top + panel_h + gap,
            "latency (ms): p50 blue, p99 red",
            max_lat,
        ),
    ];
    for (y0, label, max) in panels {
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{y0}\" width=\"{plot_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#888\"/>"
        );
        let _ = writeln!(s, "<text x=\"{left}\" y=\"{}\">{label}</text>", y0 - 6.0);
        for i in 0..=4 {
            let v = max * i as f64 / 4.0;
            let y = y0 + panel_h - panel_h * i as f64 / 4.0;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.0}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#eee\"/>",
                left - 6.0,
                y + 4.0,
                left + plot_w
            );
        }
        let step = ((secs / 10.0).ceil() as usize).max(1);
        for t in (0..=buckets.len()).step_by(step) {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{t}s</text>",
                x(t as f64),
                y0 + panel_h + 16.0
            );
        }
        for m in markers {
            let _ = writeln!(
                s,
                "<line x1=\"{0}\" x2=\"{0}\" y1=\"{y0}\" y2=\"{1}\" stroke=\"#c60\" stroke-dasharray=\"4 3\"/><text x=\"{2}\" y=\"{3}\" fill=\"#c60\">{4}</text>",
                x(m.at),
                y0 + panel_h,
                x(m.at) + 4.0,
                y0 + 14.0,
                escape(&m.label)
            );
        }
    }
    let scale = |y0: f64, max: f64, v: f64| y0 + panel_h - panel_h * (v / max).min(1.0);
    let ops: Vec<(f64, f64)> = buckets
        .iter()
        .map(|b| (x(b.second as f64 + 0.5), scale(top, max_ops, b.ops as f64)))
        .collect();
    s.push_str(&polyline(&ops, "#2a7"));
    let y1 = top + panel_h + gap;
    let p50: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|b| b.ops > 0)
        .map(|b| (x(b.second as f64 + 0.5), scale(y1, max_lat, ms(b.p50))))
        .collect();
    let p99: Vec<(f64, f64)> = buckets
        .iter()
        .filter(|b| b.ops > 0)
        .map(|b| (x(b.second as f64 + 0.5), scale(y1, max_lat, ms(b.p99))))
        .collect();
    s.push_str(&polyline(&p50, "#36c"));
    s.push_str(&polyline(&p99, "#c33"));
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KVResult;

    fn rec(start_ms: u64, end_ms: Option<u64>) -> Record {
        Record {
            client_id: 1,
            cmd: KVCommand::Put("k".into(), "v".into()),
            start: Duration::from_millis(start_ms),
            end: end_ms.map(Duration::from_millis),
            result: end_ms.map(|_| KVResult::Write),
        }
    }

    #[test]
    fn summary_and_buckets() {
        let records: Vec<Record> = (0..100)
            .map(|i| rec(i * 10, Some(i * 10 + 1 + i / 50)))
            .chain([rec(5, None)])
            .collect();
        let s = Summary::new(&records);
        assert_eq!(s.ok, 100);
        assert_eq!(s.failed, 1);
        assert_eq!(s.p50, Duration::from_millis(1));
        assert_eq!(s.p99, Duration::from_millis(2));
        assert!(s.to_json().contains("\"ok\": 100"));
        let b = per_second(&records);
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].ops, 100);
        let svg = svg_plot(
            "t<1>",
            &b,
            &[Marker {
                at: 0.5,
                label: "kill".into(),
            }],
        );
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("t&lt;1&gt;"));
    }
}
