//! `GET /metrics`: the server's metrics in the OpenMetrics text format (which Prometheus reads).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "server",
    summary = "The server's metrics, in the OpenMetrics text format (which Prometheus scrapes)",
    description = "Open unless the server runs with `--protect-metrics` (then watch scope). The metrics are listed in docs/operations.md.",
    responses((status = 200, description = "The metrics", body = String, content_type = "application/openmetrics-text")),
)]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    // Sessions by state: stored states, overlaid with the live ones.
    let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
    for meta in app.store.list().await.unwrap_or_default() {
        let status = app.live.get(&meta.id).map_or(meta.status, |m| m.status);
        *states.entry(status.as_str()).or_insert(0) += 1;
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(&states),
    )
}
