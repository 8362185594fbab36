//! The HTTP API: health and session state, as the typed JSON of [`referee_protocol::api`].

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use referee_protocol::api::{ApiErrorBody, Health, SessionList, SessionView};

use crate::http::api_error::ApiError;
use crate::store::StoreError;
use crate::AppState;

/// `GET /health`: the server is up.
#[utoipa::path(
    get,
    path = "/health",
    tag = "server",
    summary = "The server is up",
    description = "Open unless the server runs with `--protect-health` (then watch scope).",
    responses((status = 200, description = "Up, with the uploads streaming now and the version", body = Health)),
)]
pub async fn health(State(app): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        active_sessions: app.live.len(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// `GET /api/sessions`: every session, newest first.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "sessions",
    summary = "Every session, newest first",
    responses(
        (status = 200, description = "Every stored session", body = SessionList),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
    ),
)]
pub async fn list_sessions(State(app): State<AppState>) -> Result<Json<SessionList>, ApiError> {
    let stored = app
        .store
        .list()
        .await
        .map_err(|err| ApiError::storage(err, &app.settings.storage.data_dir))?;
    let sessions = stored
        .into_iter()
        .map(|meta| app.live.get(&meta.id).unwrap_or(meta).view(None))
        .collect();
    Ok(Json(SessionList { sessions }))
}

/// `GET /api/sessions/{id}`: one session's state, counters, times and links.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "One session: state, counters, times and links",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 200, description = "The session, with `links` to what exists of it now", body = SessionView),
        (status = 404, description = "No such session (`session_not_found`)", body = ApiErrorBody),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
    ),
)]
pub async fn get_session(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<SessionView>, ApiError> {
    let meta = match app.live.get(&id) {
        Some(meta) => meta,
        None => match app.store.load_meta(&id).await {
            Ok(meta) => meta,
            Err(StoreError::NotFound(_)) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "session_not_found",
                    format!("no session {id:?}: list sessions with GET /api/sessions"),
                ))
            }
            Err(err) => return Err(ApiError::storage(err, &app.settings.storage.data_dir)),
        },
    };
    let links = crate::http::results_api::links(&app, &id, meta.frames_stored).await;
    Ok(Json(meta.view(Some(links))))
}
