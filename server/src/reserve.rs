//! `POST /api/sessions`: a session created ahead of its upload, so that a watch link can be
//! shared before the recording is sent. The client streams into it with `--session ID`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use referee_protocol::state::{sanitize_name, valid_name};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::events::EventKind;
use crate::metrics::Metrics;
use crate::store::{SessionMeta, SessionStatus};
use crate::{limits, session_id, AppState};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// A short name, e.g. `final_pool_a`.
    #[serde(default)]
    name: Option<String>,
}

/// Creates the session (on disk, in full) and returns it with its links.
pub async fn create(State(app): State<AppState>, body: Option<Json<NewSession>>) -> Response {
    let name = body
        .and_then(|Json(b)| b.name)
        .unwrap_or_else(|| "session".into());
    if !valid_name(&name) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "code": "invalid_name",
                "message": format!("name {name:?} must be 1 to 64 letters, digits, '-' or '_' (e.g. {:?})", sanitize_name(&name)),
            })),
        )
            .into_response();
    }
    if let Some((code, why)) = limits::refuse_new_session(&app.live, &app.config) {
        tracing::warn!("POST /api/sessions refused: {code}: {why}");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"code": code.as_str(), "message": why})),
        )
            .into_response();
    }
    let id = session_id::generate(&name, OffsetDateTime::now_utc());
    let meta = SessionMeta::new(id, name, SessionStatus::Created);
    let store = Arc::clone(&app.store);
    let saved = meta.clone();
    match tokio::task::spawn_blocking(move || store.create(&saved)).await {
        Ok(Ok(())) => {
            Metrics::add(&app.metrics.sessions_created, 1);
            app.events.publish(EventKind::Created, &meta);
            tracing::info!("Created session {} ahead of its upload", meta.id);
            let id = &meta.id;
            let mut body = meta.public_json();
            body["links"] = json!({
                "session": format!("/api/sessions/{id}"),
                "events": format!("/api/sessions/{id}/events"),
                "live": format!("/api/sessions/{id}/live.mjpeg"),
                "dashboard": format!("/#/sessions/{id}"),
            });
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(err)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": "storage_failed", "message": err.to_string()})),
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"code": "internal", "message": err.to_string()})),
        )
            .into_response(),
    }
}
