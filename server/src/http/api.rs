//! The HTTP API: health and session state, as JSON.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::http::api_error::{error, ApiError};
use crate::store::StoreError;
use crate::AppState;

/// `GET /health`: the server is up.
pub async fn health(State(app): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "status": "ok",
        "active_sessions": app.live.len(),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// `GET /api/sessions`: every session, newest first.
pub async fn list_sessions(State(app): State<AppState>) -> Response {
    let store = Arc::clone(&app.store);
    match tokio::task::spawn_blocking(move || store.list()).await {
        Ok(Ok(stored)) => {
            let sessions: Vec<serde_json::Value> = stored
                .into_iter()
                .map(|meta| app.live.get(&meta.id).unwrap_or(meta).public_json())
                .collect();
            Json(json!({ "sessions": sessions })).into_response()
        }
        Ok(Err(err)) => ApiError::storage(err, &app.config.data_dir).into_response(),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        ),
    }
}

/// `GET /api/sessions/{id}`: one session's state, counters and times.
pub async fn get_session(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if let Some(meta) = app.live.get(&id) {
        let links = crate::http::results_api::links(&app, &id, meta.frames_stored).await;
        return Json(with_links(meta.public_json(), links)).into_response();
    }
    let store = Arc::clone(&app.store);
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || store.load_meta(&lookup)).await {
        Ok(Ok(meta)) => {
            let links = crate::http::results_api::links(&app, &id, meta.frames_stored).await;
            Json(with_links(meta.public_json(), links)).into_response()
        }
        Ok(Err(StoreError::NotFound(_))) => error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            format!("no session {id:?}: list sessions with GET /api/sessions"),
        ),
        Ok(Err(err)) => ApiError::storage(err, &app.config.data_dir).into_response(),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        ),
    }
}

/// A session's JSON with its `links` (see [`crate::http::results_api::links`]).
fn with_links(mut value: serde_json::Value, links: serde_json::Value) -> serde_json::Value {
    if let Some(object) = value.as_object_mut() {
        object.insert("links".into(), links);
    }
    value
}
