//! Counters and histograms for `GET /metrics`, in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use referee_protocol::ErrorCode;

/// A histogram with fixed upper bounds, in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    // std Mutex: a few additions under it, never held across an `.await`.
    inner: Mutex<HistogramData>,
}

#[derive(Debug, Default)]
struct HistogramData {
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            inner: Mutex::new(HistogramData {
                buckets: Vec::new(),
                count: 0,
                sum: 0.0,
            }),
        }
    }

    pub fn observe(&self, value: Duration) {
        let v = value.as_secs_f64();
        let mut data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if data.buckets.is_empty() {
            data.buckets = vec![0; self.bounds.len()];
        }
        for (i, bound) in self.bounds.iter().enumerate() {
            if v <= *bound {
                data.buckets[i] += 1;
            }
        }
        data.count += 1;
        data.sum += v;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, labels: &str) {
        let data = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (i, bound) in self.bounds.iter().enumerate() {
            let n = data.buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", data.count);
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() {
            String::new()
        } else {
            format!("{{{plain}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", data.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", data.count);
    }
}

const ACK_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const STAGE_BOUNDS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

/// An open connection, counted in `referee_connections_open` until dropped.
#[derive(Debug)]
pub struct Gauged(Arc<Metrics>);

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    pub sessions_created: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub frames_stored: AtomicU64,
    pub bytes_stored: AtomicU64,
    pub resumes: AtomicU64,
    pub duplicates_dropped: AtomicU64,
    /// Acknowledged frames found missing after a restart. Must stay 0.
    pub frames_lost: AtomicU64,
    pub watchers: AtomicU64,
    /// Watchers refused, over `--max-watchers` / `--max-watchers-per-client`.
    pub watchers_refused_total: AtomicU64,
    pub watchers_refused_per_client: AtomicU64,
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections closed at once, over `--max-connections` / `--max-connections-per-client`.
    pub connections_refused_total: AtomicU64,
    pub connections_refused_per_client: AtomicU64,
    /// Connections closed for not sending a request's headers in time.
    pub header_timeouts: AtomicU64,
    /// TLS connections closed for not finishing the handshake in time.
    pub tls_handshake_timeouts: AtomicU64,
    /// Webhook events set aside because an outbox was full.
    pub webhooks_dropped: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    /// Time from a frame's arrival to its ACK (written and synced).
    pub ack_latency: Histogram,
    video_stage: Histogram,
    analysis_stage: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            sessions_created: AtomicU64::new(0),
            frames_received: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            frames_stored: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            resumes: AtomicU64::new(0),
            duplicates_dropped: AtomicU64::new(0),
            frames_lost: AtomicU64::new(0),
            watchers: AtomicU64::new(0),
            watchers_refused_total: AtomicU64::new(0),
            watchers_refused_per_client: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
            connections_refused_total: AtomicU64::new(0),
            connections_refused_per_client: AtomicU64::new(0),
            header_timeouts: AtomicU64::new(0),
            tls_handshake_timeouts: AtomicU64::new(0),
            webhooks_dropped: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            ack_latency: Histogram::new(ACK_BOUNDS),
            video_stage: Histogram::new(STAGE_BOUNDS),
            analysis_stage: Histogram::new(STAGE_BOUNDS),
        }
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> Gauged {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
        Gauged(Arc::clone(self))
    }

    pub fn error(&self, code: ErrorCode) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        *errors.entry(code.as_str()).or_insert(0) += 1;
    }

    pub fn stage_duration(&self, stage: referee_protocol::Stage, took: Duration) {
        match stage {
            referee_protocol::Stage::VideoReconstruction => self.video_stage.observe(took),
            referee_protocol::Stage::Analysis => self.analysis_stage.observe(took),
        }
    }

    /// The text exposition, with the number of sessions in each state.
    pub fn render(&self, sessions_by_state: &BTreeMap<&'static str, u64>) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        let _ = writeln!(
            out,
            "# HELP referee_sessions Sessions on this server, by state.\n# TYPE referee_sessions gauge"
        );
        for (state, n) in sessions_by_state {
            let _ = writeln!(out, "referee_sessions{{state=\"{state}\"}} {n}");
        }
        counter(
            &mut out,
            "referee_sessions_created_total",
            "Sessions created.",
            &self.sessions_created,
        );
        counter(
            &mut out,
            "referee_frames_received_total",
            "Frames received and checked.",
            &self.frames_received,
        );
        counter(
            &mut out,
            "referee_bytes_received_total",
            "Frame payload bytes received.",
            &self.bytes_received,
        );
        counter(
            &mut out,
            "referee_frames_stored_total",
            "Frames durably stored and acknowledged.",
            &self.frames_stored,
        );
        counter(
            &mut out,
            "referee_bytes_stored_total",
            "Frame payload bytes durably stored.",
            &self.bytes_stored,
        );
        counter(
            &mut out,
            "referee_resumes_total",
            "Sessions resumed on a new connection.",
            &self.resumes,
        );
        counter(
            &mut out,
            "referee_duplicates_dropped_total",
            "Frames sent again after a resume that were already stored, dropped.",
            &self.duplicates_dropped,
        );
        counter(
            &mut out,
            "referee_frames_lost_total",
            "Acknowledged frames missing after a restart. Must stay 0.",
            &self.frames_lost,
        );
        let _ = writeln!(
            out,
            "# HELP referee_watchers Live watchers connected.\n# TYPE referee_watchers gauge\nreferee_watchers {}",
            self.watchers.load(Ordering::Relaxed)
        );
        let refused = |out: &mut String,
                       name: &str,
                       help: &str,
                       total: &AtomicU64,
                       per: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{limit=\"total\"}} {}\n{name}{{limit=\"per_client\"}} {}",
                total.load(Ordering::Relaxed),
                per.load(Ordering::Relaxed)
            );
        };
        refused(
            &mut out,
            "referee_watchers_refused_total",
            "Watchers refused over a limit, by limit.",
            &self.watchers_refused_total,
            &self.watchers_refused_per_client,
        );
        let _ = writeln!(
            out,
            "# HELP referee_connections_open Connections open.\n# TYPE referee_connections_open gauge\nreferee_connections_open {}",
            self.connections_open.load(Ordering::Relaxed)
        );
        refused(
            &mut out,
            "referee_connections_refused_total",
            "Connections closed at once over a limit, by limit.",
            &self.connections_refused_total,
            &self.connections_refused_per_client,
        );
        counter(
            &mut out,
            "referee_http_header_timeouts_total",
            "Connections closed for not sending a request's headers in time.",
            &self.header_timeouts,
        );
        counter(
            &mut out,
            "referee_tls_handshake_timeouts_total",
            "TLS connections closed for not finishing the handshake in time.",
            &self.tls_handshake_timeouts,
        );
        counter(
            &mut out,
            "referee_webhooks_dropped_total",
            "Webhook events set aside in webhooks/dropped/ because a URL's queue was full.",
            &self.webhooks_dropped,
        );
        let _ = writeln!(
            out,
            "# HELP referee_errors_total ERROR messages sent, by code.\n# TYPE referee_errors_total counter"
        );
        for (code, n) in self.errors.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "referee_errors_total{{code=\"{code}\"}} {n}");
        }
        self.ack_latency.render(
            &mut out,
            "referee_ack_latency_seconds",
            "From a frame's arrival to its acknowledgement (written and synced).",
            "",
        );
        let name = "referee_processing_stage_seconds";
        let help = "Duration of each processing stage.";
        self.video_stage
            .render(&mut out, name, help, "stage=\"video_reconstruction\",");
        // One HELP/TYPE per metric name: strip the repeated header of the second series.
        let mut analysis = String::new();
        self.analysis_stage
            .render(&mut analysis, name, help, "stage=\"analysis\",");
        out.extend(analysis.lines().skip(2).map(|l| format!("{l}\n")));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_counters_histograms_and_labels() {
        let m = Metrics::default();
        Metrics::add(&m.frames_stored, 5);
        m.error(ErrorCode::FrameOutOfOrder);
        m.ack_latency.observe(Duration::from_millis(3));
        m.stage_duration(referee_protocol::Stage::Analysis, Duration::from_secs(2));
        let mut states = BTreeMap::new();
        states.insert("complete", 2);
        let text = m.render(&states);
        assert!(text.contains("referee_frames_stored_total 5"), "{text}");
        assert!(text.contains("referee_frames_lost_total 0"));
        assert!(text.contains("referee_sessions{state=\"complete\"} 2"));
        assert!(text.contains("referee_errors_total{code=\"frame_out_of_order\"} 1"));
        assert!(text.contains("referee_ack_latency_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("referee_ack_latency_seconds_count 1"));
        assert!(text
            .contains("referee_processing_stage_seconds_bucket{stage=\"analysis\",le=\"2.5\"} 1"));
        assert_eq!(
            text.matches("# TYPE referee_processing_stage_seconds")
                .count(),
            1
        );
    }
}
