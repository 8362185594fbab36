//! `POST /api/sessions`: a session created ahead of its upload, so that a watch link can be
//! shared before the recording is sent. The client streams into it with `--session ID`.
//!
//! A session created ahead counts against the server's limits of sessions (in all and per
//! client address) until its upload starts, and is deleted if nobody streams into it within
//! `--created-expiry-secs` (the sweeper, `cleanup.rs`).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use referee_protocol::api::{ApiErrorBody, CreatedLinks, CreatedSession, NewSession};
use referee_protocol::text::check_name;
use referee_protocol::ErrorCode;
use time::OffsetDateTime;

use crate::http::api_error::ApiError;
use crate::metrics::Metrics;
use crate::notify::events::EventKind;
use crate::session::session_id;
use crate::store::{SessionMeta, SessionStatus};
use crate::{limits, AppState};

/// The sessions created ahead and not streamed into yet, with the address that created each
/// (none for those found on disk at start).
#[derive(Debug, Default)]
pub struct Reservations {
    // std Mutex: held only to insert, remove or count, never across an `.await`.
    map: Mutex<HashMap<String, Option<IpAddr>>>,
}

impl Reservations {
    pub fn add(&self, id: &str, client: Option<IpAddr>) {
        self.lock().insert(id.to_string(), client);
    }

    /// The session's upload started, or the session is gone.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Sessions created ahead and waiting for their upload.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Those created from `client`.
    pub fn count_for(&self, client: IpAddr) -> usize {
        self.lock().values().filter(|c| **c == Some(client)).count()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<IpAddr>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts the sessions created ahead that a previous run left waiting.
pub async fn load(app: &AppState) {
    match app.store.list().await {
        Ok(sessions) => sessions
            .iter()
            .filter(|m| m.status == SessionStatus::Created)
            .for_each(|m| app.reservations.add(&m.id, None)),
        Err(err) => tracing::error!("cannot list the sessions created ahead: {err}"),
    }
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
#[utoipa::path(
    post,
    path = "/api/sessions",
    tag = "sessions",
    operation_id = "create_session",
    summary = "A session created ahead of its upload",
    description = "For a client to stream into with `SESSION_START`'s `session_id` (`referee-client --session ID`). It counts against the limits of sessions until its upload starts, and is deleted after `--created-expiry-secs` if nobody streams into it. No body (or an empty one) takes the default name.",
    request_body(content = Option<NewSession>, content_type = "application/json"),
    responses(
        (status = 201, description = "Created (status `created`), with where to follow it", body = CreatedSession),
        (status = 400, description = "The name breaks the rules of `SESSION_START` (`invalid_name`)", body = ApiErrorBody),
        (status = 413, description = "The body is too large (`invalid_body`)", body = ApiErrorBody),
        (status = 415, description = "The body is not JSON (`unsupported_media_type`)", body = ApiErrorBody),
        (status = 422, description = "The JSON is not such an object, or has another field (`invalid_body`)", body = ApiErrorBody),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
        (status = 503, description = "The server is at its limit of sessions, or this client address at its limit of sessions waiting for their upload (`server_busy`), or the disk is below its free-space floor (`disk_full`)", body = ApiErrorBody),
    ),
)]
pub async fn create(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
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
    if let Err(why) = check_name(&name) {
        return ApiError::new(StatusCode::BAD_REQUEST, "invalid_name", why).into_response();
    }
    let refused = limits::refuse_new_session(&app).or_else(|| {
        let limit = app.settings.limits.max_sessions_per_client;
        (app.reservations.count_for(remote.ip()) >= limit).then(|| {
            (
                ErrorCode::ServerBusy,
                format!(
                    "{} already created {limit} sessions that wait for their upload, the limit per client: stream into one first",
                    remote.ip()
                ),
            )
        })
    });
    if let Some((code, why)) = refused {
        tracing::warn!("POST /api/sessions refused: {code}: {why}");
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code.as_str(), why).into_response();
    }
    let now = OffsetDateTime::now_utc();
    let id = session_id::generate(&name, now);
    let mut meta = SessionMeta::new(id, name, SessionStatus::Created);
    meta.created_ahead = true;
    let expiry = app.settings.sweeper.created_expiry;
    meta.expires_at = Some(now + expiry);
    app.reservations.add(&meta.id, Some(remote.ip()));
    match app.store.create(meta.clone()).await {
        Ok(()) => {
            Metrics::add(&app.metrics.sessions_created, 1);
            app.events.publish(EventKind::Created, &meta);
            tracing::info!("Created session {} ahead of its upload", meta.id);
            let id = &meta.id;
            let body = CreatedSession {
                session: meta.view(None),
                links: CreatedLinks {
                    this: format!("/api/sessions/{id}"),
                    session: format!("/api/sessions/{id}"),
                    events: format!("/api/sessions/{id}/events"),
                    live: format!("/api/sessions/{id}/live.mjpeg"),
                    dashboard: format!("/#/sessions/{id}"),
                },
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Err(err) => {
            app.reservations.remove(&meta.id);
            ApiError::storage(err, &app.settings.storage.data_dir).into_response()
        }
    }
}
