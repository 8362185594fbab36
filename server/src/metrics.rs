//! Counters, gauges and histograms for `GET /metrics`, kept and written (the OpenMetrics text
//! format, which Prometheus reads) by the official Prometheus client, `prometheus-client`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use referee_protocol::ErrorCode;

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const ACK_BOUNDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
const STAGE_BOUNDS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Code {
    code: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct State {
    state: &'static str,
}

type StageHistograms = Family<StageLabel, Histogram, fn() -> Histogram>;

fn stage_histogram() -> Histogram {
    Histogram::new(STAGE_BOUNDS.iter().copied())
}

/// An open connection, counted in `referee_connections_open` until dropped.
#[derive(Debug)]
pub struct Gauged(Arc<Metrics>);

impl Drop for Gauged {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// Every metric of the server. The counters are cheap handles on the registry's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sessions_created: Counter,
    /// Sessions that are cameras of a bout (started one, or joined one).
    pub bout_cameras: Counter,
    pub frames_received: Counter,
    pub bytes_received: Counter,
    pub frames_stored: Counter,
    pub bytes_stored: Counter,
    pub resumes: Counter,
    pub duplicates_dropped: Counter,
    /// Acknowledged frames found missing after a restart. Must stay 0.
    pub frames_lost: Counter,
    /// Live watchers connected now.
    pub watchers: Gauge,
    /// Watchers refused, over `--max-watchers` / `--max-watchers-per-client`.
    pub watchers_refused_total: Counter,
    pub watchers_refused_per_client: Counter,
    /// Connections open now.
    connections_open: Gauge,
    /// Connections closed at once, over `--max-connections` / `--max-connections-per-client`.
    pub connections_refused_total: Counter,
    pub connections_refused_per_client: Counter,
    /// Connections closed for not sending a request's headers in time.
    pub header_timeouts: Counter,
    /// TLS connections closed for not finishing the handshake in time.
    pub tls_handshake_timeouts: Counter,
    /// Webhook events set aside because an outbox was full.
    pub webhooks_dropped: Counter,
    errors: Family<Code, Counter>,
    /// Time from a frame's arrival to its ACK (written and synced), in seconds.
    ack_latency: Histogram,
    stages: StageHistograms,
    sessions: Family<State, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let mut counter = |name: &str, help: &str| {
            let counter = Counter::default();
            registry.register(name, help, counter.clone());
            counter
        };
        let sessions_created = counter("referee_sessions_created", "Sessions created");
        let bout_cameras = counter(
            "referee_bout_cameras",
            "Sessions created as a camera of a bout recorded by several",
        );
        let frames_received = counter("referee_frames_received", "Frames received and checked");
        let bytes_received = counter("referee_bytes_received", "Frame payload bytes received");
        let frames_stored = counter(
            "referee_frames_stored",
            "Frames durably stored and acknowledged",
        );
        let bytes_stored = counter("referee_bytes_stored", "Frame payload bytes durably stored");
        let resumes = counter("referee_resumes", "Sessions resumed on a new connection");
        let duplicates_dropped = counter(
            "referee_duplicates_dropped",
            "Frames sent again after a resume that were already stored, dropped",
        );
        let frames_lost = counter(
            "referee_frames_lost",
            "Acknowledged frames missing after a restart. Must stay 0",
        );
        let header_timeouts = counter(
            "referee_http_header_timeouts",
            "Connections closed for not sending a request's headers in time",
        );
        let tls_handshake_timeouts = counter(
            "referee_tls_handshake_timeouts",
            "TLS connections closed for not finishing the handshake in time",
        );
        let webhooks_dropped = counter(
            "referee_webhooks_dropped",
            "Webhook events set aside in webhooks/dropped/ because a URL's queue was full",
        );
        let mut gauge = |name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let watchers = gauge("referee_watchers", "Live watchers connected");
        let connections_open = gauge("referee_connections_open", "Connections open");
        let mut by_limit = |name: &str, help: &str| {
            let family = Family::<Limit, Counter>::default();
            registry.register(name, help, family.clone());
            let of = |limit| family.get_or_create_owned(&Limit { limit });
            (of("total"), of("per_client"))
        };
        let (watchers_refused_total, watchers_refused_per_client) = by_limit(
            "referee_watchers_refused",
            "Watchers refused over a limit, by limit",
        );
        let (connections_refused_total, connections_refused_per_client) = by_limit(
            "referee_connections_refused",
            "Connections closed at once over a limit, by limit",
        );
        let errors = Family::<Code, Counter>::default();
        registry.register(
            "referee_errors",
            "ERROR messages sent, by code",
            errors.clone(),
        );
        let ack_latency = Histogram::new(ACK_BOUNDS.iter().copied());
        registry.register(
            "referee_ack_latency_seconds",
            "From a frame's arrival to its acknowledgement (written and synced)",
            ack_latency.clone(),
        );
        let stages = StageHistograms::new_with_constructor(stage_histogram);
        registry.register(
            "referee_processing_stage_seconds",
            "Duration of each processing stage",
            stages.clone(),
        );
        let sessions = Family::<State, Gauge>::default();
        registry.register(
            "referee_sessions",
            "Sessions on this server, by state",
            sessions.clone(),
        );
        Self {
            registry,
            sessions_created,
            bout_cameras,
            frames_received,
            bytes_received,
            frames_stored,
            bytes_stored,
            resumes,
            duplicates_dropped,
            frames_lost,
            watchers,
            watchers_refused_total,
            watchers_refused_per_client,
            connections_open,
            connections_refused_total,
            connections_refused_per_client,
            header_timeouts,
            tls_handshake_timeouts,
            webhooks_dropped,
            errors,
            ack_latency,
            stages,
            sessions,
        }
    }
}

impl Metrics {
    pub fn add(counter: &Counter, n: u64) {
        counter.inc_by(n);
    }

    /// Counts a connection as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> Gauged {
        self.connections_open.inc();
        Gauged(Arc::clone(self))
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors
            .get_or_create(&Code {
                code: code.as_str(),
            })
            .inc();
    }

    pub fn ack_latency(&self, took: Duration) {
        self.ack_latency.observe(took.as_secs_f64());
    }

    pub fn stage_duration(&self, stage: referee_protocol::Stage, took: Duration) {
        self.stages
            .get_or_create(&StageLabel {
                stage: stage.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// The text exposition, with the number of sessions in each state.
    pub fn render(&self, sessions_by_state: &BTreeMap<&'static str, u64>) -> String {
        self.sessions.clear();
        for (&state, &n) in sessions_by_state {
            self.sessions
                .get_or_create(&State { state })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
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
        m.ack_latency(Duration::from_millis(3));
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
            .contains("referee_processing_stage_seconds_bucket{le=\"2.5\",stage=\"analysis\"} 1"));
        assert_eq!(
            text.matches("# TYPE referee_processing_stage_seconds")
                .count(),
            1
        );
    }
}
