//! HTTP: the router (every route with its scope), the API, results, the dashboard, the
//! metrics endpoint, and accepting connections.
//!
//! - [`api`] sessions (`/api/sessions`, `/health`); [`results_api`] a session's results
//!   (video with byte ranges through [`byte_range`], reports, thumbnails, frames) and DELETE;
//!   [`dashboard`] the web dashboard at `/` (`server/web/`); [`ops`] `/metrics`.
//! - [`auth`] scoped bearer tokens and allowed origins; [`api_error`] the `{code, message}`
//!   JSON of every error.
//! - [`connections`] accepting connections (plain or TLS, deadlines, caps through [`slots`]);
//!   [`open_files`] raises the open-file limit at start.

pub mod api;
pub mod api_error;
pub mod auth;
pub mod byte_range;
pub mod connections;
pub mod dashboard;
pub mod open_files;
pub mod ops;
pub mod results_api;
pub mod slots;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::{delete, get};
use axum::Router;

use crate::notify::watch;
use crate::session::reserve;
use crate::{ingest, AppState};

/// The HTTP and WebSocket routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/style.css", get(dashboard::style))
        .route("/favicon.svg", get(dashboard::favicon))
        .route("/health", get(api::health))
        .route(referee_protocol::STREAM_PATH, get(stream))
        .route(
            "/api/sessions",
            get(api::list_sessions).post(reserve::create),
        )
        .route("/api/sessions/{id}", get(api::get_session))
        .route("/api/sessions/{id}", delete(results_api::delete_session))
        .route("/api/sessions/{id}/video", get(results_api::video))
        .route("/api/sessions/{id}/video.mp4", get(results_api::video_mp4))
        .route("/api/sessions/{id}/video.avi", get(results_api::video_avi))
        .route(
            "/api/sessions/{id}/report.json",
            get(results_api::report_json),
        )
        .route(
            "/api/sessions/{id}/report.html",
            get(results_api::report_html),
        )
        .route(
            "/api/sessions/{id}/thumbnails/{name}",
            get(results_api::thumbnail),
        )
        .route("/api/sessions/{id}/frames/{file}", get(results_api::frame))
        .route("/api/sessions/{id}/events", get(watch::session_events))
        .route("/api/sessions/{id}/live.mjpeg", get(watch::live_mjpeg))
        .route("/api/events", get(watch::all_events))
        .route("/metrics", get(ops::metrics))
        .fallback(api_error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(api_error::json_errors))
        .with_state(state)
}

async fn stream(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(refused) = auth::check_origin(&app, &headers) {
        tracing::warn!("Refused a WebSocket from {remote}: {}", refused.message);
        return axum::response::IntoResponse::into_response(refused);
    }
    let limit = app.config.max_message_bytes();
    let tasks = app.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tasks.track_future(ingest::handle_socket(socket, app, remote)))
}

/// The TLS configuration of `--tls-cert` and `--tls-key`.
pub(crate) async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    // One crypto provider for the process (ring); a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot use the TLS certificate {} and key {}: {e}",
                    cert.display(),
                    key.display()
                ),
            )
        })
}
