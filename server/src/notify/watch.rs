//! Live watchers: a session's events (`GET /api/sessions/{id}/events`), every session's
//! events (`GET /api/events`), both as Server-Sent Events, and the latest frames as an MJPEG
//! stream a browser's `<img>` shows (`GET /api/sessions/{id}/live.mjpeg`).
//!
//! The order of arrival never matters: a watcher that comes before its session exists waits
//! for it (up to `?timeout=SECS`), one that comes late gets the current state first, then the
//! live events. A watcher never slows ingest: one that falls behind skips events.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::http::api_error::ApiError;
use crate::http::slots::{Full, Slot};
use crate::metrics::Metrics;
use crate::notify::events::{event_of, EventKind, SessionEvent};
use crate::store::{SessionMeta, SessionStatus};
use crate::AppState;
use referee_protocol::api::ApiErrorBody;

/// How long a watcher waits for a session that does not exist yet, unless it says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest wait a watcher may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Frames a live MJPEG watcher gets per second at most.
const MJPEG_FPS: u64 = 5;

/// One Server-Sent Event of a watch stream as an SSE reader gives it (how OpenAPI 3.2
/// describes each item of `text/event-stream`), for the OpenAPI document.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct WatchEvent {
    /// What happened: a session event's name (`created`, `started`, `frames`, `ended`,
    /// `progress`, `clip_ready`, `complete`, `failed`, `detached`, `resumed`, `abandoned`,
    /// `deleted`, `state` first to a late watcher), `not_found` (no such session appeared
    /// within `timeout`) or `lagged` (this watcher fell behind and skipped events).
    event: String,
    /// A session event's `SessionEvent` JSON; a sentence for `not_found` and `lagged`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    /// Seconds to wait for a session that does not exist yet (or, for the live view, for
    /// the upload of a session created ahead).
    timeout: Option<u64>,
}

/// Counts a watcher while it is connected, against `--max-watchers` and
/// `--max-watchers-per-client`.
struct WatcherGuard {
    metrics: Arc<Metrics>,
    _slot: Slot,
}

impl WatcherGuard {
    /// Counts one more watcher from `remote`, or says why not: 429 when this client address
    /// has too many, 503 when the server has.
    fn new(app: &AppState, remote: SocketAddr) -> Result<Self, ApiError> {
        let metrics = &app.metrics;
        let slot = app.watchers.take(remote.ip()).map_err(|full| {
            let (status, message) = match full {
                Full::PerClient { max } => {
                    Metrics::add(&metrics.watchers_refused_per_client, 1);
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        format!(
                            "{} already has {max} watchers open (event streams and live views), \
                             the limit per client address (--max-watchers-per-client): close one",
                            remote.ip()
                        ),
                    )
                }
                Full::Total { max } => {
                    Metrics::add(&metrics.watchers_refused_total, 1);
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!(
                            "the server already has {max} watchers open, its limit \
                             (--max-watchers): try again later"
                        ),
                    )
                }
            };
            tracing::debug!("Refused a watcher from {remote}: {message}");
            ApiError::new(status, "too_many_watchers", message)
        })?;
        metrics.watchers.inc();
        Ok(Self {
            metrics: Arc::clone(metrics),
            _slot: slot,
        })
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.metrics.watchers.dec();
    }
}

/// The session's metadata, live or stored.
pub async fn current(app: &AppState, id: &str) -> Option<SessionMeta> {
    if let Some(meta) = app.live.get(id) {
        return Some(meta);
    }
    app.store.load_meta(id).await.ok()
}

fn sse_event(event: &SessionEvent) -> Event {
    Event::default()
        .event(
            serde_json::to_value(event.event)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        )
        .json_data(event)
        .unwrap_or_else(|_| Event::default().comment("unencodable event"))
}

struct Watch {
    rx: broadcast::Receiver<SessionEvent>,
    /// Only this session's events, or every session's.
    only: Option<String>,
    /// Sent first: the current state.
    first: Option<SessionEvent>,
    /// Until when to wait for a session that does not exist yet.
    wait_until: Option<Instant>,
    done: bool,
    _guard: WatcherGuard,
}

impl Watch {
    async fn next(&mut self) -> Option<Event> {
        if self.done {
            return None;
        }
        if let Some(first) = self.first.take() {
            self.done = first.is_final() && self.only.is_some();
            return Some(sse_event(&first));
        }
        loop {
            let received = match self.wait_until {
                Some(until) => match tokio::time::timeout_at(until, self.rx.recv()).await {
                    Ok(received) => received,
                    Err(_) => {
                        self.done = true;
                        let id = self.only.clone().unwrap_or_default();
                        return Some(
                            Event::default()
                                .event("not_found")
                                .data(format!("no session {id} appeared in time")),
                        );
                    }
                },
                None => self.rx.recv().await,
            };
            match received {
                Ok(event) => {
                    if self.only.as_ref().is_some_and(|id| *id != event.session_id) {
                        continue;
                    }
                    self.wait_until = None;
                    self.done = self.only.is_some() && event.is_final();
                    return Some(sse_event(&event));
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    return Some(Event::default().event("lagged").data(format!(
                        "{skipped} events skipped: this watcher was too slow"
                    )));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

fn sse(app: &AppState, watch: Watch) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = stream::unfold(watch, |mut watch| async move {
        let event = watch.next().await?;
        Some((Ok(event), watch))
    });
    Sse::new(until_shutdown(&app.shutdown, events)).keep_alive(KeepAlive::default())
}

/// Ends `stream` when the server shuts down, so that an open watcher never holds the
/// shutdown up (a browser's `EventSource` reconnects by itself once the server is back).
fn until_shutdown<S: Stream>(
    shutdown: &CancellationToken,
    stream: S,
) -> impl Stream<Item = S::Item> {
    stream.take_until(shutdown.clone().cancelled_owned())
}

/// `GET /api/sessions/{id}/events`: the session's events as Server-Sent Events.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/events",
    tag = "events",
    summary = "A session's events, as Server-Sent Events",
    description = "A watcher may come before the session exists (it waits up to `timeout`) or late (it gets the current state first, as `state`); the stream ends after the session's last event (`complete`, `failed`, `deleted`).",
    params(("id" = String, Path, description = "The session's id"), ("timeout" = Option<u64>, Query, description = "Seconds to wait for a session that does not exist yet (300 by default, 3600 at most)")),
    responses(
        (status = 200, description = "The event stream", body = WatchEvent, content_type = "text/event-stream"),
        (status = 400, description = "`timeout` is not a whole number (`invalid_request`)", body = ApiErrorBody),
        (status = 429, description = "This client address has `--max-watchers-per-client` watchers open (`too_many_watchers`)", body = ApiErrorBody),
        (status = 503, description = "The server has `--max-watchers` watchers open (`too_many_watchers`)", body = ApiErrorBody),
    ),
)]
pub async fn session_events(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(query): Query<WatchQuery>,
) -> Response {
    let guard = match WatcherGuard::new(&app, remote) {
        Ok(guard) => guard,
        Err(refused) => return refused.into_response(),
    };
    // Subscribe before reading the state, so that nothing falls between the two.
    let rx = app.events.subscribe();
    let meta = current(&app, &id).await;
    let wait = query
        .timeout
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    let waiting = meta
        .as_ref()
        .is_none_or(|m| m.status == SessionStatus::Created);
    sse(
        &app,
        Watch {
            rx,
            first: meta.map(|m| event_of(EventKind::State, &m)),
            wait_until: waiting.then(|| Instant::now() + wait),
            only: Some(id),
            done: false,
            _guard: guard,
        },
    )
    .into_response()
}

/// `GET /api/events`: every session's events, new sessions included.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    summary = "Every session's events, new sessions included, as Server-Sent Events",
    responses(
        (status = 200, description = "The event stream, until the server shuts down", body = WatchEvent, content_type = "text/event-stream"),
        (status = 429, description = "This client address has `--max-watchers-per-client` watchers open (`too_many_watchers`)", body = ApiErrorBody),
        (status = 503, description = "The server has `--max-watchers` watchers open (`too_many_watchers`)", body = ApiErrorBody),
    ),
)]
pub async fn all_events(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
) -> Response {
    let guard = match WatcherGuard::new(&app, remote) {
        Ok(guard) => guard,
        Err(refused) => return refused.into_response(),
    };
    sse(
        &app,
        Watch {
            rx: app.events.subscribe(),
            first: None,
            wait_until: None,
            only: None,
            done: false,
            _guard: guard,
        },
    )
    .into_response()
}

/// What the live view shows next.
enum View {
    Frame(u64, Bytes),
    Wait,
    End,
}

/// The next frame of session `id`'s live view, after frame `shown`: the latest frame received
/// while the session is live (kept in memory by the session, never read from disk), else the
/// last one stored, read once.
async fn next_view(app: &AppState, id: &str, shown: Option<u64>, deadline: Instant) -> View {
    let meta = match app.live.handle(id) {
        Some(live) => match live.latest_frame() {
            Some((index, _)) if shown == Some(index) => return View::Wait,
            Some((index, jpeg)) => return View::Frame(index, jpeg),
            // Live with no frame received yet (resumed, or processing after a restart).
            None => live.snapshot(),
        },
        None => match current(app, id).await {
            Some(meta) => meta,
            None if Instant::now() > deadline => return View::End,
            None => return View::Wait,
        },
    };
    let finished = !matches!(
        meta.status,
        SessionStatus::Created | SessionStatus::Receiving | SessionStatus::AwaitingSignal
    );
    // A session created ahead that nobody streams into is waited for as one that does not
    // exist yet, until the deadline (as its event stream is), not for as long as anyone
    // watches (schemathesis found the answer that never ended).
    let unstarted = meta.status == SessionStatus::Created && Instant::now() > deadline;
    let Some(index) = meta.frames_stored.checked_sub(1) else {
        return if finished || unstarted {
            View::End
        } else {
            View::Wait
        };
    };
    if shown == Some(index) {
        return if finished { View::End } else { View::Wait };
    }
    match app.store.stored_frame(id, index).await {
        Ok((_, Some(frame))) => View::Frame(index, frame.payload),
        _ => View::Wait,
    }
}

/// `GET /api/sessions/{id}/live.mjpeg`: the latest frame, again whenever a newer one arrives,
/// at most a few times a second, as `multipart/x-mixed-replace`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/live.mjpeg",
    tag = "events",
    summary = "The latest frame, again whenever a newer one arrives, for an `<img>`",
    description = "At most 5 frames a second, each a `--frame` part (`image/jpeg`). Ends once a finished session's last frame is shown, or when no such session appeared within `timeout` (nor an upload into a session created ahead of it).",
    params(("id" = String, Path, description = "The session's id"), ("timeout" = Option<u64>, Query, description = "Seconds to wait for a session that does not exist yet (300 by default, 3600 at most)")),
    responses(
        (status = 200, description = "The frames", body = Vec<u8>, content_type = "multipart/x-mixed-replace"),
        (status = 400, description = "`timeout` is not a whole number (`invalid_request`)", body = ApiErrorBody),
        (status = 429, description = "This client address has `--max-watchers-per-client` watchers open (`too_many_watchers`)", body = ApiErrorBody),
        (status = 503, description = "The server has `--max-watchers` watchers open (`too_many_watchers`)", body = ApiErrorBody),
    ),
)]
pub async fn live_mjpeg(
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    Query(query): Query<WatchQuery>,
) -> Response {
    let wait = query
        .timeout
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    let guard = match WatcherGuard::new(&app, remote) {
        Ok(guard) => guard,
        Err(refused) => return refused.into_response(),
    };
    let shutdown = app.shutdown.clone();
    let state = (app, id, None::<u64>, Instant::now() + wait, guard);
    let parts = stream::unfold(state, |(app, id, shown, deadline, guard)| async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / MJPEG_FPS));
        loop {
            tick.tick().await;
            let (index, jpeg) = match next_view(&app, &id, shown, deadline).await {
                View::Frame(index, jpeg) => (index, jpeg),
                View::Wait => continue,
                View::End => return None,
            };
            let mut part = format!(
                "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                jpeg.len()
            )
            .into_bytes();
            part.extend_from_slice(&jpeg);
            part.extend_from_slice(b"\r\n");
            return Some((
                Ok::<_, Infallible>(Bytes::from(part)),
                (app, id, Some(index), deadline, guard),
            ));
        }
    });
    (
        [
            (
                header::CONTENT_TYPE,
                "multipart/x-mixed-replace; boundary=frame",
            ),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(until_shutdown(&shutdown, parts)),
    )
        .into_response()
}
