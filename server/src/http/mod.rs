//! HTTP: the router (every route with its scope), the API, results, the dashboard, the
//! metrics endpoint, and accepting connections.
//!
//! - [`api`] sessions (`/api/sessions`, `/health`); [`results_api`] a session's results
//!   (video with byte ranges through [`byte_range`], reports, thumbnails, frames) and DELETE;
//!   [`dashboard`] the web dashboard at `/` (`server/web/`); [`ops`] `/metrics`.
//! - [`auth`] scoped bearer tokens and allowed origins; [`api_error`] the `{code, message}`
//!   JSON of every error; [`openapi`] the OpenAPI document of the routes (`/api/openapi.json`).
//! - [`connections`] accepting connections (plain or TLS, deadlines, caps through [`slots`]);
//!   [`open_files`] raises the open-file limit at start.

pub mod api;
pub mod api_error;
pub mod auth;
pub mod byte_range;
pub mod connections;
pub mod dashboard;
pub mod open_files;
pub mod openapi;
pub mod ops;
pub mod results_api;
pub mod slots;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::{Extensions, HeaderMap, StatusCode, Version};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::notify::watch;
use crate::session::reserve;
use crate::{ingest, AppState};
use auth::Scope;

/// The HTTP and WebSocket routes: the dashboard's files, and [`routes`] with the OpenAPI
/// document made from them (`GET /api/openapi.json`).
pub fn app(state: AppState) -> Router {
    let (routes, document) = routes(&state).split_for_parts();
    Router::new()
        // The dashboard's files hold no data: always open.
        .merge(dashboard::routes())
        .merge(routes)
        .layer(Extension(openapi::Document::new(document)))
        .fallback(api_error::not_found)
        .layer(axum::middleware::from_fn(api_error::json_errors))
        .layer(CompressionLayer::new().compress_when(compressible()))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Every route but the dashboard's files, grouped by the scope a token needs for them (on a
/// server with tokens): a new route goes in the group of its scope. Each is registered with
/// its `#[utoipa::path]` operation (`routes!`), so that the OpenAPI document lists exactly
/// the routes served, each with the scope of its group ([`scoped`]); only the WebSocket of
/// the ingest protocol, which OpenAPI cannot describe, is routed without one.
pub(crate) fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let auth = &state.settings.auth;
    // The document describes routes, not sessions: open, like the dashboard's files.
    let open = OpenApiRouter::new().routes(routes!(openapi::document));
    // Open unless --protect-health / --protect-metrics.
    let health = OpenApiRouter::new().routes(routes!(api::health));
    let metrics = OpenApiRouter::new().routes(routes!(ops::metrics));
    let watch = OpenApiRouter::new()
        .routes(routes!(api::list_sessions))
        .routes(routes!(api::get_session))
        .routes(routes!(results_api::video))
        .routes(routes!(results_api::video_mp4))
        .routes(routes!(results_api::video_avi))
        .routes(routes!(results_api::report_json))
        .routes(routes!(results_api::report_html))
        .routes(routes!(results_api::thumbnail))
        .routes(routes!(results_api::clip))
        .routes(routes!(results_api::frame_times))
        .routes(routes!(results_api::frame))
        .routes(routes!(watch::session_events))
        .routes(routes!(watch::live_mjpeg))
        .routes(routes!(watch::all_events));
    let ingest = OpenApiRouter::new()
        .route(referee_protocol::STREAM_PATH, get(stream))
        .routes(routes!(reserve::create));
    let admin = OpenApiRouter::new().routes(routes!(results_api::delete_session));
    OpenApiRouter::with_openapi(openapi::base())
        .merge(open)
        .merge(scoped(
            state,
            health,
            auth.protect_health.then_some(Scope::Watch),
        ))
        .merge(scoped(
            state,
            metrics,
            auth.protect_metrics.then_some(Scope::Watch),
        ))
        .merge(scoped(state, watch, Some(Scope::Watch)))
        .merge(scoped(state, ingest, Some(Scope::Ingest)))
        .merge(scoped(state, admin, Some(Scope::Admin)))
}

/// `group` behind the token scope it needs (none: open), the guard ([`auth::require`]) in
/// front of its routes and the same scope in its operations' security
/// ([`openapi::require`]), so that the two cannot differ.
fn scoped(
    state: &AppState,
    group: OpenApiRouter<AppState>,
    needs: Option<Scope>,
) -> OpenApiRouter<AppState> {
    let Some(needs) = needs else {
        return group;
    };
    let guard = from_fn_with_state(auth::Guard::new(state, needs), auth::require);
    let mut group = group.route_layer(guard);
    openapi::require(group.get_openapi_mut(), needs);
    group
}

/// Which answers are compressed (gzip or Brotli, as the client accepts): JSON, HTML, scripts
/// and styles above a few bytes; never a video or an image (already compressed), an event
/// stream or the live view (compression would hold them back), nor a byte range (its bytes
/// are counted in the file as stored).
fn compressible() -> impl Predicate {
    DefaultPredicate::new()
        .and(NotForContentType::const_new("video/"))
        .and(NotForContentType::const_new("multipart/"))
        .and(
            |status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions| {
                status != StatusCode::PARTIAL_CONTENT
            },
        )
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
    let limit = app.settings.limits.max_message_bytes();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;
    use crate::Config;

    /// What `method path` answers with `token` on a server with a token of each scope.
    async fn status(app: &Router, method: &Method, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let request = request.body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn every_route_needs_the_scope_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        config.token = Some("ingest".into());
        config.watch_token = Some("watch".into());
        config.admin_token = Some("admin".into());
        config.protect_metrics = true;
        let app = app(AppState::new(config.settings().unwrap()).unwrap());
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let open: &[(&Method, &str)] = &[(&get, "/"), (&get, "/app.js"), (&get, "/health")];
        for (method, path) in open {
            assert_eq!(
                status(&app, method, path, None).await,
                StatusCode::OK,
                "{path}"
            );
        }
        // (method, path, the scope below the one it needs, the one it needs)
        let scoped: &[(&Method, &str, Option<&str>, &str)] = &[
            (&get, "/metrics", None, "watch"),
            (&get, "/api/sessions", None, "watch"),
            (&get, "/api/sessions/x/report.json", None, "watch"),
            (&get, "/api/sessions/x/frames/0.jpg", None, "watch"),
            (
                &get,
                "/api/sessions/x/clips/clip-001-touch_left.mp4",
                None,
                "watch",
            ),
            (&get, "/api/sessions/x/frames?from=0&count=1", None, "watch"),
            (&post, "/api/sessions", Some("watch"), "ingest"),
            (&get, "/stream", Some("watch"), "ingest"),
            (&delete, "/api/sessions/x", Some("ingest"), "admin"),
        ];
        for (method, path, below, needed) in scoped {
            assert_eq!(
                status(&app, method, path, None).await,
                StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
            if let Some(below) = below {
                assert_eq!(
                    status(&app, method, path, Some(below)).await,
                    StatusCode::FORBIDDEN,
                    "{method} {path} with {below}"
                );
            }
            let answered = status(&app, method, path, Some(needed)).await;
            assert!(
                answered != StatusCode::UNAUTHORIZED && answered != StatusCode::FORBIDDEN,
                "{method} {path} with {needed}: {answered}"
            );
        }
    }

    /// The `Content-Encoding` of `GET path` from a browser that takes gzip.
    async fn encoding(app: &Router, path: &str) -> Option<String> {
        let mut request = Request::builder()
            .uri(path)
            .header("Accept-Encoding", "gzip")
            .body(Body::empty())
            .unwrap();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(from));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        response
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn scripts_are_compressed_and_event_streams_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        let app = app(AppState::new(config.settings().unwrap()).unwrap());
        assert_eq!(encoding(&app, "/app.js").await.as_deref(), Some("gzip"));
        assert_eq!(encoding(&app, "/api/events").await, None);
    }
}
