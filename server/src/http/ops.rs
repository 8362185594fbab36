//! `GET /metrics`: the server's metrics in the OpenMetrics text format (which Prometheus reads).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::AppState;

pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    let store = Arc::clone(&app.store);
    let live = Arc::clone(&app.live);
    // Sessions by state: stored states, overlaid with the live ones.
    let states = tokio::task::spawn_blocking(move || {
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        for meta in store.list().unwrap_or_default() {
            let status = live.get(&meta.id).map_or(meta.status, |m| m.status);
            *states.entry(status.as_str()).or_insert(0) += 1;
        }
        states
    })
    .await
    .unwrap_or_default();
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        app.metrics.render(&states),
    )
}
