//! Live watchers: a session's events (`GET /api/sessions/{id}/events`), every session's
//! events (`GET /api/events`), both as Server-Sent Events, and the latest frames as an MJPEG
//! stream a browser's `<img>` shows (`GET /api/sessions/{id}/live.mjpeg`).
//!
//! The order of arrival never matters: a watcher that comes before its session exists waits
//! for it (up to `?timeout=SECS`), one that comes late gets the current state first, then the
//! live events. A watcher never slows ingest: one that falls behind skips events.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{EventKind, SessionEvent};
use crate::metrics::Metrics;
use crate::store::{SessionMeta, SessionStatus};
use crate::AppState;

/// How long a watcher waits for a session that does not exist yet, unless it says otherwise.
const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// The longest wait a watcher may ask for.
const MAX_WAIT: Duration = Duration::from_secs(3600);
/// Frames a live MJPEG watcher gets per second at most.
const MJPEG_FPS: u64 = 5;

#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    /// Seconds to wait for a session that does not exist yet.
    timeout: Option<u64>,
}

/// Counts a watcher while it is connected.
struct WatcherGuard(Arc<Metrics>);

impl WatcherGuard {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.watchers.fetch_add(1, Ordering::Relaxed);
        Self(Arc::clone(metrics))
    }
}

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The session's metadata, live or stored.
pub async fn current(app: &AppState, id: &str) -> Option<SessionMeta> {
    if let Some(meta) = app.live.get(id) {
        return Some(meta);
    }
    let store = Arc::clone(&app.store);
    let id = id.to_string();
    tokio::task::spawn_blocking(move || store.load_meta(&id).ok())
        .await
        .ok()
        .flatten()
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
pub async fn session_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WatchQuery>,
) -> impl IntoResponse {
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
            first: meta.map(|m| SessionEvent::new(EventKind::State, &m)),
            wait_until: waiting.then(|| Instant::now() + wait),
            only: Some(id),
            done: false,
            _guard: WatcherGuard::new(&app.metrics),
        },
    )
}

/// `GET /api/events`: every session's events, new sessions included.
pub async fn all_events(State(app): State<AppState>) -> impl IntoResponse {
    sse(
        &app,
        Watch {
            rx: app.events.subscribe(),
            first: None,
            wait_until: None,
            only: None,
            done: false,
            _guard: WatcherGuard::new(&app.metrics),
        },
    )
}

/// `GET /api/sessions/{id}/live.mjpeg`: the latest stored frame, again whenever a newer one is
/// stored, at most a few times a second, as `multipart/x-mixed-replace`.
pub async fn live_mjpeg(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WatchQuery>,
) -> Response {
    let wait = query
        .timeout
        .map_or(DEFAULT_WAIT, Duration::from_secs)
        .min(MAX_WAIT);
    let guard = WatcherGuard::new(&app.metrics);
    let shutdown = app.shutdown.clone();
    let state = (app, id, None::<u64>, Instant::now() + wait, guard);
    let parts = stream::unfold(state, |(app, id, mut shown, deadline, guard)| async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1000 / MJPEG_FPS));
        loop {
            tick.tick().await;
            let meta = current(&app, &id).await;
            let Some(meta) = meta else {
                if Instant::now() > deadline {
                    return None;
                }
                continue;
            };
            let finished = !matches!(
                meta.status,
                SessionStatus::Created | SessionStatus::Receiving | SessionStatus::AwaitingSignal
            );
            if meta.frames_stored == 0 || shown == Some(meta.frames_stored) {
                if finished && shown.is_some() {
                    return None;
                }
                if finished && meta.frames_stored == 0 {
                    return None;
                }
                continue;
            }
            let index = meta.frames_stored - 1;
            let store = Arc::clone(&app.store);
            let lookup = id.clone();
            let frame = tokio::task::spawn_blocking(move || {
                store.frame_source(&lookup).and_then(|mut f| f.read(index))
            })
            .await;
            let Ok(Ok(frame)) = frame else {
                continue;
            };
            shown = Some(meta.frames_stored);
            let mut part = format!(
                "--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                frame.payload.len()
            )
            .into_bytes();
            part.extend_from_slice(&frame.payload);
            part.extend_from_slice(b"\r\n");
            return Some((
                Ok::<_, Infallible>(Bytes::from(part)),
                (app, id, shown, deadline, guard),
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
