//! The WebSocket ingest endpoint (`/stream`): one task per connection drives one session
//! through the protocol's state machine, hands frames to the session's writer, acknowledges
//! them once durable, starts processing and relays its progress.
//!
//! Disconnects are ordinary events here: the session and its frames stay on disk, marked
//! `detached`, and the client may resume it on a new connection (`SESSION_RESUME`), which
//! takes over from a stale one. Nothing is ever sent on a connection once it is closed (see
//! [`Peer`]).
//!
//! - this file: the connection loop, what it waits on, and the dispatch of each message;
//!   a connection ends with a [`Refusal`] (an ERROR and a close) or when the client goes,
//!   and its session is then detached ([`Connection::close_session`]).
//! - [`peer`]: sending, with a deadline, never after the close.
//! - [`start`] `SESSION_START` (new sessions and sessions created ahead); [`resume`]
//!   `SESSION_RESUME`; [`receive`] frames in and ACKs out; [`finish`] `SESSION_END`,
//!   `SIGNAL` and processing.
//! - [`frames`]: the frame checks and limits (pure); [`frame_check`] a payload's JPEG header;
//!   [`writer`] the session's frame writer thread.

mod finish;
mod frame_check;
mod frames;
mod peer;
mod receive;
mod resume;
mod start;
pub mod writer;

use std::future::pending;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, Stream, StreamExt};
use referee_protocol::state::Incoming;
use referee_protocol::text::{check_len, escape_controls, MAX_MESSAGE_BYTES};
use referee_protocol::{ControlMessage, ErrorCode, SessionState};
use tokio::sync::{broadcast, OwnedMutexGuard};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::limits::{ClientSlot, DiskCheck};
use crate::notify::events::EventKind;
use crate::pipeline::PipelineEvent;
use crate::session::lifecycle;
use crate::session::live::LiveSession;
use crate::settings::Limits;
use crate::store::{FrameSink, SessionStore, StoreError};
use crate::AppState;
use frames::{FrameIntake, IntakeLimits};
use peer::Peer;
use writer::{FrameWriter, Stored};

/// How long to wait for the client's answer to our close before dropping the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a start or resume waits for a stale connection of the same session to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// Heartbeats a client may miss before it is taken for gone.
const MISSED_HEARTBEATS: u32 = 3;

/// Why the server ends a connection: the ERROR it sends (with the close code of `code`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: ErrorCode,
    /// What happened and what to do, for a person.
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A stale connection of session `id` did not let go in time; the client may try again
    /// (`server_busy` is worth retrying).
    fn takeover_timed_out(id: &str) -> Self {
        Self::new(
            ErrorCode::ServerBusy,
            format!(
                "the previous connection of session {id} did not let go within {} s: try again",
                TAKEOVER_WAIT.as_secs()
            ),
        )
    }
}

impl From<referee_protocol::state::Violation> for Refusal {
    fn from(violation: referee_protocol::state::Violation) -> Self {
        Self::new(violation.code(), violation.to_string())
    }
}

/// What a message handler leads to: go on or end the connection, or a refusal (which ends
/// it with an ERROR).
type Step = Result<ControlFlow<()>, Refusal>;

/// Go on with the connection.
const GO_ON: Step = Ok(ControlFlow::Continue(()));

/// Serves one WebSocket connection until it ends.
/// Its log lines carry a `connection` span with the client's address and, once the
/// connection is attached to one, the session's id.
pub async fn handle_socket(socket: WebSocket, app: AppState, remote: SocketAddr) {
    let (sink, stream) = socket.split();
    let span = tracing::info_span!("connection", %remote, session = tracing::field::Empty);
    serve_connection(sink, stream, app, remote)
        .instrument(span)
        .await;
}

/// Serves one connection given as a message sink and stream (so tests can drive it with
/// channels).
pub async fn serve_connection<S, R>(sink: S, mut stream: R, app: AppState, remote: SocketAddr)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    tracing::debug!("Connection from {remote}");
    let now = Instant::now();
    let start_deadline = now + app.settings.timeouts.start;
    let heartbeat_every = app.settings.timeouts.heartbeat;
    let mut heartbeat = interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = app.shutdown.clone();
    let send_timeout = app.settings.timeouts.send;
    let mut conn = Connection {
        app,
        remote,
        peer: Peer::new(sink, send_timeout),
        link: Link::AwaitingStart,
        end: String::from("the client disconnected"),
        last_heard: now,
        last_activity: now,
    };
    loop {
        let (awaiting_start, writer, events, taken_over) = match &mut conn.link {
            Link::AwaitingStart => (true, None, None, None),
            Link::Attached(s) => (
                false,
                s.writer.as_mut(),
                s.events.as_mut(),
                Some(s.taken_over.clone()),
            ),
        };
        let event = tokio::select! {
            incoming = stream.next() => Event::Incoming(incoming),
            stored = next_stored(writer) => Event::Stored(stored),
            progress = next_pipeline_event(events) => Event::Pipeline(progress),
            () = tokio::time::sleep_until(start_deadline), if awaiting_start => Event::StartTimeout,
            _ = heartbeat.tick() => Event::Heartbeat,
            () = cancelled(taken_over) => Event::TakenOver,
            () = shutdown.cancelled() => Event::Shutdown,
        };
        if conn.handle(event).await.is_break() {
            break;
        }
        if conn.peer.stalled {
            conn.end = format!(
                "the client stopped reading (a message could not be sent within {} s)",
                conn.app.settings.timeouts.send.as_secs()
            );
            break;
        }
    }
    let close_sent = conn.peer.close_sent;
    conn.close_session().await;
    if close_sent {
        // The closing handshake: read (and drop) what the client still sends until its close
        // arrives, so that our ERROR and close are not lost to a TCP reset. If the stream can
        // no longer be read (e.g. after an oversized message), keep the connection open for
        // the linger time all the same, for the client to read what we sent.
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            loop {
                match stream.next().await {
                    Some(Ok(Message::Close(_))) => break,
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => pending::<()>().await,
                }
            }
        })
        .await;
    }
}

async fn next_stored(writer: Option<&mut FrameWriter>) -> Option<Stored> {
    match writer {
        Some(writer) => writer.changed().await,
        None => pending().await,
    }
}

async fn next_pipeline_event(
    rx: Option<&mut broadcast::Receiver<PipelineEvent>>,
) -> Option<PipelineEvent> {
    let Some(rx) = rx else {
        return pending().await;
    };
    loop {
        match rx.recv().await {
            Ok(event) => return Some(event),
            // A slow client skips some progress; the final event is the last one sent.
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

async fn cancelled(token: Option<CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => pending().await,
    }
}

enum Event {
    Incoming(Option<Result<Message, axum::Error>>),
    Stored(Option<Stored>),
    Pipeline(Option<PipelineEvent>),
    StartTimeout,
    Heartbeat,
    TakenOver,
    Shutdown,
}

/// What a connection feeds: nothing until its `SESSION_START` or `SESSION_RESUME` is
/// accepted, then one session.
enum Link {
    AwaitingStart,
    Attached(Box<Session>),
}

/// The session a connection feeds.
struct Session {
    live: Arc<LiveSession>,
    /// Where the session is in the protocol (never `awaiting_start`).
    state: SessionState,
    /// This connection's hold on the session; released when the connection ends.
    _attachment: OwnedMutexGuard<()>,
    /// Cancelled when a resume on another connection takes the session over.
    taken_over: CancellationToken,
    /// Counts the session against its client's limit while attached.
    _client_slot: ClientSlot,
    /// Present while frames may arrive.
    writer: Option<FrameWriter>,
    /// Processing events, once processing has started.
    events: Option<broadcast::Receiver<PipelineEvent>>,
    /// The frame checks, with the session's window and size limits.
    intake: FrameIntake,
    /// Frames acknowledged to the client.
    acked: u64,
    disk: DiskCheck,
    /// Arrival time of each frame not yet acknowledged (at most the window), for the ACK
    /// latency metric.
    arrivals: std::collections::VecDeque<Instant>,
    last_frames_event: Instant,
    /// When the acknowledged count was last saved to the session's metadata.
    last_count_saved: Instant,
}

impl Session {
    fn window(&self) -> u32 {
        self.intake.limits().window
    }

    fn id(&self) -> &str {
        self.live.id()
    }
}

struct Connection<S> {
    app: AppState,
    remote: SocketAddr,
    peer: Peer<S>,
    link: Link,
    /// Why the connection ended, for the log.
    end: String,
    /// When the client was last heard from (any message, pongs included).
    last_heard: Instant,
    /// When the client last sent a frame or a control message.
    last_activity: Instant,
}

impl<S> Connection<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    fn id(&self) -> String {
        match &self.link {
            Link::AwaitingStart => format!("(none yet, client {})", self.remote),
            Link::Attached(s) => s.id().to_string(),
        }
    }

    /// The protocol state the connection is in.
    fn state(&self) -> SessionState {
        match &self.link {
            Link::AwaitingStart => SessionState::AwaitingStart,
            Link::Attached(s) => s.state,
        }
    }

    async fn handle(&mut self, event: Event) -> ControlFlow<()> {
        match self.dispatch(event).await {
            Ok(flow) => flow,
            Err(refusal) => self.fail(refusal).await,
        }
    }

    async fn dispatch(&mut self, event: Event) -> Step {
        if let Event::Incoming(Some(Ok(msg))) = &event {
            self.last_heard = Instant::now();
            if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                self.last_activity = self.last_heard;
            }
        }
        match event {
            Event::Incoming(Some(Ok(Message::Text(text)))) => self.on_text(text.as_str()).await,
            Event::Incoming(Some(Ok(Message::Binary(bytes)))) => self.on_binary(bytes).await,
            Event::Incoming(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => GO_ON,
            Event::Incoming(Some(Ok(Message::Close(frame)))) => {
                self.peer.open = false;
                self.end = match frame {
                    Some(f) if f.code != 1000 && f.code != 1001 => format!(
                        "the client closed the connection (code {}: {})",
                        f.code, f.reason
                    ),
                    _ => String::from("the client closed the connection"),
                };
                Ok(ControlFlow::Break(()))
            }
            Event::Incoming(Some(Err(err))) => {
                if is_too_large(err) {
                    let limit = self.app.settings.limits.max_message_bytes();
                    return Err(Refusal::new(
                        ErrorCode::MessageTooLarge,
                        format!("a message is larger than the server's limit of {limit} bytes"),
                    ));
                }
                self.peer.open = false;
                self.end = String::from("the connection was lost");
                Ok(ControlFlow::Break(()))
            }
            Event::Incoming(None) => {
                self.peer.open = false;
                Ok(ControlFlow::Break(()))
            }
            Event::Stored(Some(stored)) => self.on_stored(stored).await,
            Event::Stored(None) => Err(self.on_writer_stopped().await),
            Event::Pipeline(Some(event)) => self.on_pipeline(event).await,
            Event::Pipeline(None) => {
                if let Link::Attached(session) = &mut self.link {
                    session.events = None;
                }
                GO_ON
            }
            Event::StartTimeout => {
                let secs = self.app.settings.timeouts.start.as_secs();
                Err(Refusal::new(
                    ErrorCode::Timeout,
                    format!(
                        "no SESSION_START within {secs} s of connecting: send SESSION_START first"
                    ),
                ))
            }
            Event::Heartbeat => self.on_heartbeat().await,
            Event::TakenOver => Err(Refusal::new(
                ErrorCode::SessionTakenOver,
                "another connection resumed this session; this one is closed",
            )),
            Event::Shutdown => {
                self.peer
                    .send(&ControlMessage::error(
                        ErrorCode::ServerShuttingDown,
                        "the server is shutting down; resume the session when it is back",
                        true,
                    ))
                    .await;
                self.peer.close(1001, "server shutting down").await;
                self.end = String::from("the server shut down");
                Ok(ControlFlow::Break(()))
            }
        }
    }

    async fn on_heartbeat(&mut self) -> Step {
        let every = self.app.settings.timeouts.heartbeat;
        if self.last_heard.elapsed() > every * MISSED_HEARTBEATS {
            self.peer.open = false;
            self.end = format!(
                "the client was silent for {} s (no answer to pings)",
                self.last_heard.elapsed().as_secs()
            );
            return Ok(ControlFlow::Break(()));
        }
        let idle = self.app.settings.timeouts.idle;
        let state = self.state();
        let waiting_for_client = matches!(
            state,
            SessionState::Receiving { .. } | SessionState::AwaitingSignal { .. }
        );
        if waiting_for_client && self.last_activity.elapsed() > idle {
            return Err(Refusal::new(
                ErrorCode::Timeout,
                format!(
                    "no frame or message for {} s in state {}: the session is detached; resume it when ready",
                    idle.as_secs(),
                    state.name()
                ),
            ));
        }
        self.peer
            .send_raw(Message::Ping(Bytes::from_static(b"referee")), "ping")
            .await;
        GO_ON
    }

    /// Sends a fatal ERROR and closes the connection with the code's close code.
    async fn fail(&mut self, refusal: Refusal) -> ControlFlow<()> {
        let Refusal { code, message } = refusal;
        self.app.metrics.error(code);
        let id = self.id();
        // The message may quote what the client sent: never a control character on a log line.
        let logged = escape_controls(&message);
        match code {
            ErrorCode::StorageFailed | ErrorCode::Internal => {
                tracing::error!("Session {id}: {code}: {logged}")
            }
            ErrorCode::SessionTakenOver => tracing::info!("Session {id}: {logged}"),
            _ => tracing::warn!("Session {id}: refused: {code}: {logged}"),
        }
        let message = crate::store::without_data_dir(&message, &self.app.settings.storage.data_dir);
        self.peer
            .send(&ControlMessage::error(code, message, true))
            .await;
        self.peer.close(code.close_code(), code.as_str()).await;
        self.end = format!("closed after error {code}");
        ControlFlow::Break(())
    }

    async fn on_text(&mut self, text: &str) -> Step {
        let limit = self.app.settings.limits.max_text_bytes();
        if text.len() > limit {
            return Err(Refusal::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "a {}-byte text message is larger than the server's limit of {limit} bytes (signal files may be up to {} bytes)",
                    text.len(),
                    self.app.settings.limits.max_signal_bytes
                ),
            ));
        }
        let msg = ControlMessage::from_json(text)
            .map_err(|err| Refusal::new(err.code(), err.to_string()))?;
        if let ControlMessage::Error {
            code,
            message,
            fatal,
        } = &msg
        {
            check_len("ERROR's message", message, MAX_MESSAGE_BYTES)
                .map_err(|why| Refusal::new(ErrorCode::MalformedMessage, why))?;
            tracing::info!(
                "Session {}: the client reports {code}: {}",
                self.id(),
                escape_controls(message)
            );
            if *fatal {
                // The client ends the session: the closing handshake, not a dropped socket.
                self.peer.close(1000, "client gave up").await;
                self.end = format!("the client gave up ({code})");
                return Ok(ControlFlow::Break(()));
            }
            return GO_ON;
        }
        // The state the message leads to. `SESSION_END` and `SIGNAL` are checked further
        // (digest, signal file) and may still be refused: they move the state only once
        // accepted, so that a refused one leaves the session where it was (and detached).
        let mut next = self.state();
        next.accept(Incoming::Control(&msg))?;
        match msg {
            ControlMessage::SessionStart { .. } => self.on_start(msg).await,
            ControlMessage::SessionResume {
                session_id,
                resume_token,
                upload,
                ..
            } => self.on_resume(session_id, resume_token, upload).await,
            ControlMessage::SessionEnd {
                frames_sent,
                signal_follows,
                digest,
            } => self.on_end(frames_sent, signal_follows, digest, next).await,
            ControlMessage::Signal { file_name, text } => {
                self.on_signal(file_name, text, next).await
            }
            // The state machine accepts no other message.
            _ => GO_ON,
        }
    }

    /// Runs `op` on the store on a blocking thread ([`crate::store::Store::run`]). A storage
    /// error is refused with `storage_failed` and a message that starts with `what`.
    async fn with_store<T: Send + 'static>(
        &self,
        what: &'static str,
        op: impl FnOnce(&dyn SessionStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, Refusal> {
        match self.app.store.run(what, op).await {
            Ok(value) => Ok(value),
            Err(err @ StoreError::TaskFailed { .. }) => {
                Err(Refusal::new(ErrorCode::Internal, format!("{what}: {err}")))
            }
            // Another server of the cluster receives it: the client tries again.
            Err(err @ StoreError::Leased { .. }) => {
                Err(Refusal::new(ErrorCode::ServerBusy, err.to_string()))
            }
            Err(err @ StoreError::Remote { .. }) => Err(Refusal::new(
                ErrorCode::StorageFailed,
                format!(
                    "{what}: {err}; try again once the server's object storage and registry answer"
                ),
            )),
            Err(err) => Err(Refusal::new(
                ErrorCode::StorageFailed,
                format!(
                    "{what}: {err}; check the server's data directory (free space, permissions)"
                ),
            )),
        }
    }

    /// Counts a session against this client's limit, or refuses it.
    fn client_slot(&self) -> Result<ClientSlot, Refusal> {
        let limit = self.app.settings.limits.max_sessions_per_client;
        ClientSlot::take(&self.app.clients, self.remote.ip(), limit).ok_or_else(|| {
            Refusal::new(
                ErrorCode::ServerBusy,
                format!(
                    "{} already streams {limit} sessions, the limit per client: finish one first",
                    self.remote.ip()
                ),
            )
        })
    }

    /// Makes this connection the one feeding `live` (in `state`), once a stale connection
    /// has let go; with `sink`, frames may arrive after `stored`.
    async fn attach(
        &self,
        live: Arc<LiveSession>,
        state: SessionState,
        client_slot: ClientSlot,
        sink: Option<Box<dyn FrameSink>>,
        stored: Stored,
    ) -> Box<Session> {
        let (attachment, taken_over) = live.attach(self.remote.ip()).await;
        tracing::Span::current().record("session", tracing::field::display(live.id()));
        let meta = live.snapshot();
        let settings = &self.app.settings;
        let limits = IntakeLimits::new(&settings.limits, meta.encoding, meta.width, meta.height);
        let writer = sink.map(|sink| start_writer(&settings.limits, &limits, sink, stored.clone()));
        Box::new(Session {
            state,
            _attachment: attachment,
            taken_over,
            _client_slot: client_slot,
            writer,
            events: None,
            intake: FrameIntake::new(limits, stored.bytes),
            acked: stored.frames,
            disk: DiskCheck::of(settings),
            arrivals: Default::default(),
            last_frames_event: Instant::now(),
            last_count_saved: Instant::now(),
            live,
        })
    }

    /// Called once the connection has ended, however it ended: the session, if any, is
    /// detached with every frame received flushed to disk.
    async fn close_session(&mut self) {
        let Link::Attached(mut session) = std::mem::replace(&mut self.link, Link::AwaitingStart)
        else {
            tracing::info!(
                "Connection from {} ended before SESSION_START: {}",
                self.remote,
                self.end
            );
            return;
        };
        let id = session.id().to_string();
        let mut stored = None;
        if let Some(writer) = session.writer.take() {
            match writer.finish().await {
                Ok(s) => stored = Some(s),
                Err(failed) => {
                    tracing::error!(
                        "Session {id}: the frames received after the {} stored could not be stored: {failed}",
                        failed.stored.frames
                    );
                    stored = Some(failed.stored);
                }
            }
        }
        match session.state {
            SessionState::Receiving { .. } | SessionState::AwaitingSignal { .. } => {
                let reason = format!("{} in state {}", self.end, session.state.name());
                let grace = self.app.settings.sweeper.resume_grace;
                let meta = session.live.update(|m| {
                    if let Some(s) = &stored {
                        m.frames_stored = s.frames;
                        m.bytes_stored = s.bytes;
                    }
                    lifecycle::detach(m, reason.clone(), grace);
                });
                tracing::info!(
                    "Session {id}: {reason}; {} frames stored and kept, session detached (resumable for {} s)",
                    meta.frames_stored,
                    grace.as_secs()
                );
                self.app.events.publish(EventKind::Detached, &meta);
                crate::session::resave::save_or_retry(&self.app, Arc::clone(&session.live)).await;
            }
            SessionState::Processing { frames } => tracing::info!(
                "Session {id}: {} in state processing; {frames} frames stored, processing continues",
                self.end
            ),
            SessionState::AwaitingStart | SessionState::Complete { .. } => {
                tracing::debug!("Session {id}: connection ended: {}", self.end)
            }
        }
        // Dropping `session` releases the attachment: a waiting resume may take over now.
    }
}

/// Starts the frame writer of a session with its window and byte budget.
fn start_writer(
    server: &Limits,
    limits: &IntakeLimits,
    sink: Box<dyn FrameSink>,
    stored: Stored,
) -> FrameWriter {
    let budget = server.session_queue_bytes(limits.width, limits.height);
    FrameWriter::start(sink, limits.window, budget, stored)
}

/// Whether a receive error is the WebSocket layer refusing an oversized message.
fn is_too_large(err: axum::Error) -> bool {
    matches!(
        err.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

#[cfg(test)]
mod tests;
