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

/// A slice of a run's time, by the time answers arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Start, in seconds since the workload's start.
    pub start: f64,
    /// Length in seconds: the bucket width, or less for the last bucket of the run.
    pub len: f64,
    /// Answers in the bucket.
    pub ops: usize,
    /// Median latency of those answers.
    pub p50: Duration,
    /// 99th percentile latency of those answers.
    pub p99: Duration,
}

impl Bucket {
    /// Answers per second over the bucket's true length.
    pub fn rate(&self) -> f64 {
        if self.len > 0.0 {
            self.ops as f64 / self.len
        } else {
            0.0
        }
    }
}

/// Buckets of `width` over `[0, end)`, by the time answers arrived (answers at or after `end`
/// are left out). The last bucket is cut at `end`; if that leaves it shorter than a fifth of
/// `width`, it is dropped, since a rate over so short a time says little.
pub fn buckets(records: &[Record], width: Duration, end: Duration) -> Vec<Bucket> {
    let w = width.as_secs_f64().max(1e-3);
    let end_s = end.as_secs_f64();
    let n = (end_s / w).ceil() as usize;
    let mut lats: Vec<Vec<Duration>> = vec![Vec::new(); n];
    for r in records {
        if let (Some(e), Some(l)) = (r.end, r.latency()) {
            let i = (e.as_secs_f64() / w) as usize;
            if e < end && i < n {
                lats[i].push(l);
            }
        }
    }
    lats.into_iter()
        .enumerate()
        .filter_map(|(i, mut l)| {
            let start = i as f64 * w;
            let len = (end_s - start).min(w);
            if len < w / 5.0 {
                return None;
            }
            l.sort_unstable();
            Some(Bucket {
                start,
                len,
                ops: l.len(),
                p50: percentile(&l, 50.0),
                p99: percentile(&l, 99.0),
            })
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
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        pts.join(" ")
    )
}

/// A round step for an axis from 0 to `max` with about `target` ticks: 1, 2 or 5 times a power
/// of ten.
pub fn nice_step(max: f64, target: usize) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let raw = max / target.max(1) as f64;
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let nice = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * pow
}

/// Formats an axis value without needless decimals.
fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10().floor()) as usize;
        format!("{v:.decimals$}")
    }
}

/// An SVG with throughput (top, ops/s per bucket as steps) and p50/p99 latency (bottom) over
/// time, and the markers. Buckets without answers show as zero throughput and as a break in
/// the latency lines.
pub fn svg_plot(title: &str, buckets: &[Bucket], markers: &[Marker]) -> String {
    let (w, h, left, right, panel_h, gap, top) = (900.0, 560.0, 70.0, 20.0, 200.0, 70.0, 50.0);
    let plot_w = w - left - right;
    let t_end = buckets.last().map_or(1.0, |b| b.start + b.len).max(1e-3);
    let x = |t: f64| left + plot_w * (t / t_end).clamp(0.0, 1.0);
    let max_rate = buckets.iter().map(|b| b.rate()).fold(0.0f64, f64::max);
    let max_lat = buckets
        .iter()
        .filter(|b| b.ops > 0)
        .map(|b| ms(b.p99))
        .fold(0.0f64, f64::max);
    let ops_step = nice_step(max_rate.max(1.0), 4);
    let lat_step = nice_step(max_lat.max(0.1), 4);
    let ops_top = (max_rate.max(1.0) / ops_step).ceil() * ops_step;
    let lat_top = (max_lat.max(0.1) / lat_step).ceil() * lat_step;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"25\" font-size=\"14\">{}</text>",
        escape(title)
    );
    let width_ms = buckets.first().map_or(0.0, |b| b.len * 1000.0);
    let panels = [
        (
            top,
            format!("throughput (ops/s, per {width_ms:.0} ms)"),
            ops_top,
            ops_step,
        ),
        (
            top + panel_h + gap,
            format!("latency (ms, per {width_ms:.0} ms): p50 blue, p99 red"),
            lat_top,
            lat_step,
        ),
    ];
    let t_step = nice_step(t_end, 10);
    for (y0, label, max, step) in &panels {
        let (y0, max, step) = (*y0, *max, *step);
        let _ = writeln!(
            s,
            "<rect x=\"{left}\" y=\"{y0}\" width=\"{plot_w}\" height=\"{panel_h}\" fill=\"none\" stroke=\"#888\"/>"
        );
        let _ = writeln!(s, "<text x=\"{left}\" y=\"{}\">{label}</text>", y0 - 6.0);
        let ticks = (max / step).round() as usize;
        for i in 0..=ticks {
            let v = step * i as f64;
            let y = y0 + panel_h - panel_h * v / max;
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" x2=\"{}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#eee\"/>",
                left - 6.0,
                y + 4.0,
                tick_label(v, step),
                left + plot_w
            );
        }
        let mut t = 0.0;
        while t <= t_end + 1e-9 {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}s</text>",
                x(t),
                y0 + panel_h + 16.0,
                tick_label(t, t_step)
            );
            t += t_step;
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
    let mut steps = Vec::with_capacity(buckets.len() * 2);
    for b in buckets {
        let y = scale(top, ops_top, b.rate());
        steps.push((x(b.start), y));
        steps.push((x(b.start + b.len), y));
    }
    s.push_str(&polyline(&steps, "#2a7"));
    let y1 = top + panel_h + gap;
    for (pick, color) in [
        (
            &(|b: &Bucket| b.p50) as &dyn Fn(&Bucket) -> Duration,
            "#36c",
        ),
        (&|b: &Bucket| b.p99, "#c33"),
    ] {
        // One line per run of buckets with answers: an empty bucket breaks the line.
        let mut run: Vec<(f64, f64)> = Vec::new();
        for b in buckets {
            if b.ops == 0 {
                if !run.is_empty() {
                    s.push_str(&polyline(&run, color));
                    run.clear();
                }
                continue;
            }
            run.push((x(b.start + b.len / 2.0), scale(y1, lat_top, ms(pick(b)))));
        }
        if !run.is_empty() {
            s.push_str(&polyline(&run, color));
        }
    }
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
        let b = buckets(
            &records,
            Duration::from_millis(100),
            Duration::from_millis(1005),
        );
        // 10 full buckets; the last 5 ms are too short to draw.
        assert_eq!(b.len(), 10);
        assert_eq!(b.iter().map(|b| b.ops).sum::<usize>(), 100);
        assert!((b[0].rate() - 100.0).abs() < 1e-9, "{:?}", b[0]);
        let cut = buckets(
            &records,
            Duration::from_millis(100),
            Duration::from_millis(950),
        );
        assert_eq!(cut.len(), 10);
        assert!((cut[9].len - 0.05).abs() < 1e-9, "{:?}", cut[9]);
        assert_eq!(nice_step(1234.0, 4), 500.0);
        assert_eq!(nice_step(20.0, 10), 2.0);
        assert_eq!(nice_step(0.7, 4), 0.2);
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
