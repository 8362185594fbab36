//! `POST /api/sessions`: a session created ahead of its upload, so that a watch link can be
//! shared before the recording is sent. The client streams into it with `--session ID`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use referee_protocol::state::{sanitize_name, valid_name};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use crate::api_error::ApiError;
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

/// The name a `POST /api/sessions` body asks for: no body (or an empty one) is the default
/// name; a body must be a JSON object with at most `name`.
fn requested_name(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok("session".into());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.is_empty() && !content_type.starts_with("application/json") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("the body is {content_type:?}: send JSON (Content-Type: application/json), e.g. {{\"name\": \"final_pool_a\"}}, or no body"),
        ));
    }
    let parsed: NewSession = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body is not a session to create ({e}): send {{\"name\": \"final_pool_a\"}}, or no body"),
        )
    })?;
    Ok(parsed.name.unwrap_or_else(|| "session".into()))
}

/// Creates the session (on disk, in full) and returns it with its links.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return ApiError::new(rejection.status(), "invalid_body", rejection.body_text())
                .into_response()
        }
    };
    let name = match requested_name(&headers, &body) {
        Ok(name) => name,
        Err(err) => return err.into_response(),
    };
    if !valid_name(&name) {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_name",
            format!(
                "name {name:?} must be 1 to 64 letters, digits, '-' or '_' (e.g. {:?})",
                sanitize_name(&name)
            ),
        )
        .into_response();
    }
    if let Some((code, why)) = limits::refuse_new_session(&app.live, &app.config) {
        tracing::warn!("POST /api/sessions refused: {code}: {why}");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code.as_str(), why).into_response();
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
        Ok(Err(err)) => ApiError::storage(err).into_response(),
        Err(err) => ApiError::internal(err).into_response(),
    }
}
