//! The WebSocket ingest endpoint (`/stream`): one task per connection drives one session
//! through the protocol's state machine, hands frames to the session's writer, acknowledges
//! them once durable, starts processing and relays its progress.
//!
//! Disconnects are ordinary events here: the session and its frames stay on disk, marked
//! `detached`, and the client may resume it on a new connection (`SESSION_RESUME`), which
//! takes over from a stale one. Nothing is ever sent on a connection once it is closed (see
//! [`Peer`]).

use std::future::pending;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use referee_protocol::digest::{describe_ranges, FrameDigest};
use referee_protocol::frame::{check_timestamp, decode_frame, FrameHeaderError};
use referee_protocol::signal::SignalTrack;
use referee_protocol::state::Incoming;
use referee_protocol::text::{check_len, escape_controls, MAX_MESSAGE_BYTES};
use referee_protocol::{
    ControlMessage, ErrorCode, FrameEncoding, FrameHeader, ResumedState, SessionState,
    UploadIdentity,
};
use time::OffsetDateTime;
use tokio::sync::{broadcast, OwnedMutexGuard};
use tokio::time::{interval, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::events::EventKind;
use crate::limits::{self, ClientSlot, DiskCheck};
use crate::live::LiveSession;
use crate::metrics::Metrics;
use crate::pipeline::PipelineEvent;
use crate::processing::{self, complete_message, persist};
use crate::store::{now_rfc3339, rfc3339, SessionMeta, SessionStatus, SessionStore, StoreError};
use crate::writer::{FrameWriter, Stored};
use crate::{frame_check, session_id, AppState};

/// How long to wait for the client's answer to our close before dropping the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// How long a resume waits for a stale connection of the same session to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);
/// Log a line every this many frames received.
const LOG_EVERY_FRAMES: u64 = 100;
/// Heartbeats a client may miss before it is taken for gone.
const MISSED_HEARTBEATS: u32 = 3;
/// Watchers get a `frames` event at most this often per session.
const FRAMES_EVENT_EVERY: Duration = Duration::from_millis(250);
/// The acknowledged count is saved to the session's metadata at most this often during an
/// upload, so that after a crash the server can tell whether acknowledged frames went missing
/// (`referee_frames_lost_total`).
const SAVE_COUNT_EVERY: Duration = Duration::from_secs(1);

/// Serves one WebSocket connection until it ends.
pub async fn handle_socket(socket: WebSocket, app: AppState, remote: SocketAddr) {
    let (sink, stream) = socket.split();
    serve_connection(sink, stream, app, remote).await;
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
    let start_deadline = now + Duration::from_secs(app.config.start_timeout_secs);
    let heartbeat_every = Duration::from_secs(app.config.heartbeat_secs);
    let mut heartbeat = interval(heartbeat_every);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let shutdown = app.shutdown.clone();
    let send_timeout = Duration::from_secs(app.config.send_timeout_secs);
    let mut conn = Connection {
        app,
        remote,
        peer: Peer {
            sink,
            open: true,
            close_sent: false,
            send_timeout,
            stalled: false,
        },
        state: SessionState::AwaitingStart,
        session: None,
        end: String::from("the client disconnected"),
        last_heard: now,
        last_activity: now,
    };
    loop {
        let awaiting_start = conn.state == SessionState::AwaitingStart;
        let (writer, events, taken_over) = match conn.session.as_mut() {
            Some(s) => (
                s.writer.as_mut(),
                s.events.as_mut(),
                Some(s.taken_over.clone()),
            ),
            None => (None, None, None),
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
                conn.app.config.send_timeout_secs
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

/// The sending half of a connection. Once a close has been sent or a send has failed, it
/// sends nothing more: sending on a closed connection is not an error case to handle, it
/// simply cannot happen. A send that takes longer than `send_timeout` (a client that stopped
/// reading) fails too, and marks the connection `stalled`: it is then treated as gone.
struct Peer<S> {
    sink: S,
    open: bool,
    close_sent: bool,
    send_timeout: Duration,
    stalled: bool,
}

impl<S> Peer<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    async fn send(&mut self, msg: &ControlMessage) {
        self.send_raw(Message::Text(msg.to_json().into()), msg.type_name())
            .await;
    }

    async fn send_raw(&mut self, msg: Message, what: &str) {
        if !self.open {
            return;
        }
        if let Err(err) = self.timed(msg).await {
            tracing::debug!("cannot send {what}: the client is gone ({err})");
            self.open = false;
        }
    }

    /// Sends `msg`, within the send timeout.
    async fn timed(&mut self, msg: Message) -> Result<(), String> {
        match tokio::time::timeout(self.send_timeout, self.sink.send(msg)).await {
            Ok(sent) => sent.map_err(|e| e.to_string()),
            Err(_) => {
                self.stalled = true;
                Err(format!(
                    "it read nothing for {} s",
                    self.send_timeout.as_secs()
                ))
            }
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        if !self.open {
            return;
        }
        self.open = false;
        // A close reason is at most 123 bytes.
        let reason: String = reason.chars().take(100).collect();
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        match self.timed(Message::Close(Some(frame))).await {
            Ok(()) => self.close_sent = true,
            Err(err) => tracing::debug!("cannot send close: the client is gone ({err})"),
        }
    }
}

/// The session a connection feeds.
struct Session {
    live: Arc<LiveSession>,
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
    encoding: FrameEncoding,
    width: u32,
    height: u32,
    /// The window advertised for the session.
    window: u32,
    /// Payload bytes stored before this connection, plus those received on it.
    bytes_total: u64,
    acked: u64,
    disk: DiskCheck,
    /// Arrival time of each frame not yet acknowledged (at most the window), for the ACK
    /// latency metric.
    arrivals: std::collections::VecDeque<Instant>,
    /// Index and timestamp of the last frame stored or received, which the next must follow.
    last_pts: Option<(u64, i64)>,
    /// Index and CRC32C of the last frames stored (at most the window), to recognise a frame
    /// sent again after a resume.
    recent: std::collections::VecDeque<(u64, u32)>,
    last_frames_event: Instant,
    /// When the acknowledged count was last saved to the session's metadata.
    last_count_saved: Instant,
}

struct Connection<S> {
    app: AppState,
    remote: SocketAddr,
    peer: Peer<S>,
    state: SessionState,
    session: Option<Session>,
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
        self.session.as_ref().map_or_else(
            || format!("(none yet, client {})", self.remote),
            |s| s.live.id().to_string(),
        )
    }

    async fn handle(&mut self, event: Event) -> ControlFlow<()> {
        if let Event::Incoming(Some(Ok(msg))) = &event {
            self.last_heard = Instant::now();
            if matches!(msg, Message::Text(_) | Message::Binary(_)) {
                self.last_activity = self.last_heard;
            }
        }
        match event {
            Event::Incoming(Some(Ok(Message::Text(text)))) => self.on_text(text.as_str()).await,
            Event::Incoming(Some(Ok(Message::Binary(bytes)))) => self.on_binary(bytes).await,
            Event::Incoming(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
                ControlFlow::Continue(())
            }
            Event::Incoming(Some(Ok(Message::Close(frame)))) => {
                self.peer.open = false;
                self.end = match frame {
                    Some(f) if f.code != 1000 && f.code != 1001 => format!(
                        "the client closed the connection (code {}: {})",
                        f.code, f.reason
                    ),
                    _ => String::from("the client closed the connection"),
                };
                ControlFlow::Break(())
            }
            Event::Incoming(Some(Err(err))) => {
                if is_too_large(err) {
                    let limit = self.app.config.max_message_bytes();
                    return self
                        .fail(
                            ErrorCode::MessageTooLarge,
                            format!("a message is larger than the server's limit of {limit} bytes"),
                        )
                        .await;
                }
                self.peer.open = false;
                self.end = String::from("the connection was lost");
                ControlFlow::Break(())
            }
            Event::Incoming(None) => {
                self.peer.open = false;
                ControlFlow::Break(())
            }
            Event::Stored(Some(stored)) => self.on_stored(stored).await,
            Event::Stored(None) => self.on_writer_stopped().await,
            Event::Pipeline(Some(event)) => self.on_pipeline(event).await,
            Event::Pipeline(None) => {
                if let Some(session) = self.session.as_mut() {
                    session.events = None;
                }
                ControlFlow::Continue(())
            }
            Event::StartTimeout => {
                let secs = self.app.config.start_timeout_secs;
                self.fail(
                    ErrorCode::Timeout,
                    format!(
                        "no SESSION_START within {secs} s of connecting: send SESSION_START first"
                    ),
                )
                .await
            }
            Event::Heartbeat => self.on_heartbeat().await,
            Event::TakenOver => {
                self.fail(
                    ErrorCode::SessionTakenOver,
                    String::from("another connection resumed this session; this one is closed"),
                )
                .await
            }
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
                ControlFlow::Break(())
            }
        }
    }

    async fn on_heartbeat(&mut self) -> ControlFlow<()> {
        let every = Duration::from_secs(self.app.config.heartbeat_secs);
        if self.last_heard.elapsed() > every * MISSED_HEARTBEATS {
            self.peer.open = false;
            self.end = format!(
                "the client was silent for {} s (no answer to pings)",
                self.last_heard.elapsed().as_secs()
            );
            return ControlFlow::Break(());
        }
        let idle = Duration::from_secs(self.app.config.idle_timeout_secs);
        let waiting_for_client = matches!(
            self.state,
            SessionState::Receiving { .. } | SessionState::AwaitingSignal { .. }
        );
        if waiting_for_client && self.last_activity.elapsed() > idle {
            return self
                .fail(
                    ErrorCode::Timeout,
                    format!(
                        "no frame or message for {} s in state {}: the session is detached; resume it when ready",
                        idle.as_secs(),
                        self.state.name()
                    ),
                )
                .await;
        }
        self.peer
            .send_raw(Message::Ping(Bytes::from_static(b"referee")), "ping")
            .await;
        ControlFlow::Continue(())
    }

    /// Sends a fatal ERROR and closes the connection with the code's close code.
    async fn fail(&mut self, code: ErrorCode, message: String) -> ControlFlow<()> {
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
        let message = crate::store::without_data_dir(&message, &self.app.config.data_dir);
        self.peer
            .send(&ControlMessage::error(code, message, true))
            .await;
        self.peer.close(code.close_code(), code.as_str()).await;
        self.end = format!("closed after error {code}");
        ControlFlow::Break(())
    }

    async fn on_text(&mut self, text: &str) -> ControlFlow<()> {
        let limit = self.app.config.max_text_bytes();
        if text.len() > limit {
            return self
                .fail(
                    ErrorCode::MessageTooLarge,
                    format!(
                        "a {}-byte text message is larger than the server's limit of {limit} bytes (signal files may be up to {} bytes)",
                        text.len(),
                        self.app.config.max_signal_bytes
                    ),
                )
                .await;
        }
        let msg = match ControlMessage::from_json(text) {
            Ok(msg) => msg,
            Err(err) => return self.fail(err.code(), err.to_string()).await,
        };
        if let ControlMessage::Error {
            code,
            message,
            fatal,
        } = &msg
        {
            if let Err(why) = check_len("ERROR's message", message, MAX_MESSAGE_BYTES) {
                return self.fail(ErrorCode::MalformedMessage, why).await;
            }
            tracing::info!(
                "Session {}: the client reports {code}: {}",
                self.id(),
                escape_controls(message)
            );
            if *fatal {
                // The client ends the session: the closing handshake, not a dropped socket.
                self.peer.close(1000, "client gave up").await;
                self.end = format!("the client gave up ({code})");
                return ControlFlow::Break(());
            }
            return ControlFlow::Continue(());
        }
        // The state the message leads to. `SESSION_END` and `SIGNAL` are checked further
        // (digest, signal file) and may still be refused: they move the state only once
        // accepted, so that a refused one leaves the session where it was (and detached).
        let mut next = self.state;
        if let Err(violation) = next.accept(Incoming::Control(&msg)) {
            return self.fail(violation.code(), violation.to_string()).await;
        }
        match msg {
            ControlMessage::SessionStart { .. } => {
                self.state = next;
                self.on_start(msg).await
            }
            ControlMessage::SessionResume {
                session_id,
                resume_token,
                upload,
                ..
            } => {
                self.state = next;
                self.on_resume(session_id, resume_token, upload).await
            }
            ControlMessage::SessionEnd {
                frames_sent,
                signal_follows,
                digest,
            } => self.on_end(frames_sent, signal_follows, digest, next).await,
            ControlMessage::Signal { file_name, text } => {
                self.on_signal(file_name, text, next).await
            }
            // The state machine accepts no other message.
            _ => ControlFlow::Continue(()),
        }
    }

    async fn on_start(&mut self, msg: ControlMessage) -> ControlFlow<()> {
        let ControlMessage::SessionStart {
            name,
            source,
            fps,
            width,
            height,
            frame_count,
            encoding,
            quality,
            session_id: reserved_id,
            upload,
            ..
        } = msg
        else {
            return ControlFlow::Continue(());
        };
        if let Err(why) = crate::frame_size::check(width, height, self.app.config.max_frame_pixels)
        {
            return self.fail(ErrorCode::FrameTooLargePixels, why).await;
        }
        // A session still to recover after a restart is recovered first.
        if let Some(id) = &reserved_id {
            if let Err(why) = self.app.recovering.wait_for(id).await {
                return self.fail(ErrorCode::ServerBusy, why).await;
            }
        }
        // A session created ahead of its upload, to stream into.
        let reserved = match reserved_id {
            None => None,
            Some(id) => match crate::watch::current(&self.app, &id).await {
                Some(meta) if meta.status == SessionStatus::Created => Some(meta),
                // Its upload began but stored no frame before the connection dropped (maybe
                // before SESSION_STARTED, and so its resume token, reached the client): it
                // begins again, nothing lost.
                Some(meta)
                    if meta.created_ahead
                        && meta.frames_stored == 0
                        && matches!(
                            meta.status,
                            SessionStatus::Receiving | SessionStatus::Detached
                        ) =>
                {
                    if let Some(stale) = self.app.live.handle(&id) {
                        // Only the client that was streaming takes its own dropped upload
                        // over; another one waits until that upload is detached.
                        let from = stale.client();
                        if meta.status == SessionStatus::Receiving && from != Some(self.remote.ip()) {
                            return self
                                .fail(
                                    ErrorCode::ServerBusy,
                                    format!("session {id} is being streamed into from another address: try again once that upload has ended, or create another session"),
                                )
                                .await;
                        }
                        // The dropped connection may not have noticed yet: it lets go first.
                        if tokio::time::timeout(TAKEOVER_WAIT, stale.attach(self.remote.ip())).await.is_err() {
                            return self.takeover_timed_out(&id).await;
                        }
                    }
                    // Letting go flushed its frames, if any arrived meanwhile: then it is an
                    // upload to resume, not to start again.
                    match crate::watch::current(&self.app, &id).await {
                        Some(meta) if meta.frames_stored > 0 => {
                            return self
                                .fail(
                                    ErrorCode::AlreadyStarted,
                                    format!("session {id} already has an upload with {} frames stored: resume it, or create another session", meta.frames_stored),
                                )
                                .await
                        }
                        current => current,
                    }
                }
                Some(meta) => {
                    return self
                        .fail(
                            ErrorCode::AlreadyStarted,
                            format!("session {id} already has an upload (it is {}): resume it, or create another session", meta.status.as_str()),
                        )
                        .await
                }
                None => {
                    return self
                        .fail(
                            ErrorCode::SessionNotFound,
                            format!("this server has no session {id:?}: create it with POST /api/sessions first"),
                        )
                        .await
                }
            },
        };
        // A session created ahead and waiting, or one still live, already counts against the
        // limit of sessions; a detached one starting again counts anew.
        let counted = reserved.as_ref().is_some_and(|m| {
            m.status == SessionStatus::Created || self.app.live.handle(&m.id).is_some()
        });
        let refused = if counted {
            limits::refuse_below_disk_floor(&self.app.config)
        } else {
            limits::refuse_new_session(&self.app)
        };
        if let Some((code, why)) = refused {
            return self.fail(code, why).await;
        }
        let Some(client_slot) = self.client_slot() else {
            let limit = self.app.config.max_sessions_per_client;
            return self
                .fail(
                    ErrorCode::ServerBusy,
                    format!("{} already streams {limit} sessions, the limit per client: finish one first", self.remote.ip()),
                )
                .await;
        };
        let mut meta = match &reserved {
            Some(reserved) => SessionMeta {
                status: SessionStatus::Receiving,
                updated_at: now_rfc3339(),
                error: None,
                resumable_until: None,
                expires_at: None,
                ..reserved.clone()
            },
            None => SessionMeta::new(
                session_id::generate(&name, OffsetDateTime::now_utc()),
                name,
                SessionStatus::Receiving,
            ),
        };
        meta.source = source;
        meta.fps = fps;
        meta.width = width;
        meta.height = height;
        meta.encoding = encoding;
        meta.quality = quality;
        meta.frames_expected = frame_count;
        meta.upload = upload;
        meta.resume_token = session_id::resume_token();
        let is_reserved = reserved.is_some();
        let created = self
            .with_store("cannot create the session on disk", move |store| {
                if is_reserved {
                    store.save_meta(&meta)?;
                    return Ok((store.frame_sink(&meta.id, 0)?, meta));
                }
                // A collision of ids needs the same name in the same second and the same
                // random suffix; try again with a new suffix.
                loop {
                    match store.create(&meta) {
                        Err(StoreError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::AlreadyExists =>
                        {
                            meta.id = session_id::generate(&meta.name, OffsetDateTime::now_utc());
                        }
                        other => {
                            return other.and_then(|()| Ok((store.frame_sink(&meta.id, 0)?, meta)))
                        }
                    }
                }
            })
            .await;
        let (sink, meta) = match created {
            Ok(created) => created,
            Err(flow) => return flow,
        };
        let resume_token = meta.resume_token.clone();
        let window = self.app.config.session_window(meta.width, meta.height);
        let max_frame_bytes = self
            .app
            .config
            .session_max_frame_bytes(meta.width, meta.height);
        if is_reserved {
            self.app.reservations.remove(&meta.id);
        } else {
            Metrics::add(&self.app.metrics.sessions_created, 1);
            self.app.events.publish(EventKind::Created, &meta);
        }
        self.app.events.publish(EventKind::Started, &meta);
        let (live, active) = self.app.live.insert(meta.clone());
        if is_reserved {
            // A live handle left by a dropped first upload holds that upload's metadata.
            live.update(|current| *current = meta);
        }
        tracing::info!("Created session {} ({active} active sessions)", live.id());
        let session_id = live.id().to_string();
        self.attach(live, client_slot, Some(sink), Stored::default())
            .await;
        self.peer
            .send(&ControlMessage::SessionStarted {
                session_id,
                window,
                max_frame_bytes,
                resume_token,
                resume_grace_s: self.app.config.resume_grace_secs,
                max_signal_bytes: Some(self.app.config.max_signal_bytes as u64),
                max_frame_pixels: Some(self.app.config.max_frame_pixels),
            })
            .await;
        ControlFlow::Continue(())
    }

    /// Runs `op` on the store on a blocking thread. A storage error ends the connection
    /// with `storage_failed` and a message that starts with `what`.
    async fn with_store<T: Send + 'static>(
        &mut self,
        what: &str,
        op: impl FnOnce(&dyn SessionStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ControlFlow<()>> {
        let store = Arc::clone(&self.app.store);
        match tokio::task::spawn_blocking(move || op(store.as_ref())).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self
                .fail(
                    ErrorCode::StorageFailed,
                    format!("{what}: {err}; check the server's data directory (free space, permissions)"),
                )
                .await),
            Err(err) => Err(self.fail(ErrorCode::Internal, format!("{what}: {err}")).await),
        }
    }

    fn client_slot(&self) -> Option<ClientSlot> {
        ClientSlot::take(
            &self.app.clients,
            self.remote.ip(),
            self.app.config.max_sessions_per_client,
        )
    }

    /// Makes this connection the one feeding `live`, taking over from a stale connection.
    async fn attach(
        &mut self,
        live: Arc<LiveSession>,
        client_slot: ClientSlot,
        sink: Option<Box<dyn crate::store::FrameSink>>,
        stored: Stored,
    ) {
        let (attachment, taken_over) = live.attach(self.remote.ip()).await;
        let meta = live.snapshot();
        let config = &self.app.config;
        let window = config.session_window(meta.width, meta.height);
        let writer = sink.map(|sink| start_writer(config, &meta, sink, stored.clone()));
        self.session = Some(Session {
            _attachment: attachment,
            taken_over,
            _client_slot: client_slot,
            writer,
            events: None,
            encoding: meta.encoding,
            width: meta.width,
            height: meta.height,
            window,
            bytes_total: stored.bytes,
            acked: stored.frames,
            disk: DiskCheck::new(&config.data_dir, config.min_free_disk_bytes),
            arrivals: Default::default(),
            last_pts: None,
            recent: Default::default(),
            last_frames_event: Instant::now(),
            last_count_saved: Instant::now(),
            live,
        });
    }

    /// Ends the connection when a stale connection of session `id` did not let go in time;
    /// the client may try again (`server_busy` is worth retrying).
    async fn takeover_timed_out(&mut self, id: &str) -> ControlFlow<()> {
        self.fail(
            ErrorCode::ServerBusy,
            format!(
                "the previous connection of session {id} did not let go within {} s: try again",
                TAKEOVER_WAIT.as_secs()
            ),
        )
        .await
    }

    async fn on_resume(
        &mut self,
        id: String,
        token: String,
        upload: Option<UploadIdentity>,
    ) -> ControlFlow<()> {
        // A session still to recover after a restart is recovered first.
        if let Err(why) = self.app.recovering.wait_for(&id).await {
            return self.fail(ErrorCode::ServerBusy, why).await;
        }
        let existing = self.app.live.handle(&id);
        let stored = match &existing {
            Some(live) => live.snapshot(),
            None => {
                let lookup = id.clone();
                let found = self
                    .with_store("cannot read the session", move |store| {
                        match store.load_meta(&lookup) {
                            Ok(meta) => stored_state(store, meta).map(Some),
                            Err(StoreError::NotFound(_)) => Ok(None),
                            Err(err) => Err(err),
                        }
                    })
                    .await;
                match found {
                    Ok(Some(meta)) => meta,
                    Ok(None) => {
                        return self
                            .fail(
                                ErrorCode::SessionNotFound,
                                format!("this server has no session {id:?}: start a new session"),
                            )
                            .await
                    }
                    Err(flow) => return flow,
                }
            }
        };
        if !crate::auth::same_secret(&stored.resume_token, &token) {
            return self
                .fail(
                    ErrorCode::ResumeRefused,
                    format!("the resume token for session {id} is wrong: only the client that started a session can resume it"),
                )
                .await;
        }
        if let Err(why) = crate::frame_size::check_resume(&stored, self.app.config.max_frame_pixels)
        {
            return self.fail(ErrorCode::FrameTooLargePixels, why).await;
        }
        // Another video or signal file is refused before anything changes: the session
        // stays resumable with the right ones.
        if let (Some(upload), Some(started)) = (&upload, &stored.upload) {
            if let Some(why) = upload.mismatch(started) {
                return self
                    .fail(
                        ErrorCode::ResumeRefused,
                        format!("session {id} cannot be resumed with these files: {why}; resume it with the files it was started with (it stays resumable)"),
                    )
                    .await;
            }
        }
        let live = match existing {
            Some(live) => live,
            None => {
                // A session that is not live (detached) becomes live again: it counts against
                // the server's limit like a new one. One that is over for good does not.
                let finished = matches!(
                    stored.status,
                    SessionStatus::Complete | SessionStatus::Failed | SessionStatus::Abandoned
                );
                let busy = limits::session_limit_reached(&self.app);
                if let (false, Some(why)) = (finished, busy) {
                    let until = stored
                        .resumable_until
                        .as_deref()
                        .map_or_else(String::new, |t| format!(" until {t}"));
                    return self
                        .fail(
                            ErrorCode::ServerBusy,
                            format!("{why}; session {id} stays resumable{until}"),
                        )
                        .await;
                }
                self.app.live.insert(stored).0
            }
        };
        let Some(client_slot) = self.client_slot() else {
            return self
                .fail(
                    ErrorCode::ServerBusy,
                    format!("{} already streams its limit of sessions", self.remote.ip()),
                )
                .await;
        };
        // Waits for a stale connection of this session to let go, if there is one.
        let attach = self.attach(Arc::clone(&live), client_slot, None, Stored::default());
        if tokio::time::timeout(TAKEOVER_WAIT, attach).await.is_err() {
            return self.takeover_timed_out(&id).await;
        }
        let meta = live.snapshot();
        let resumable = match meta.status {
            SessionStatus::Abandoned => Err(format!(
                "session {id} was abandoned: it was detached for longer than the server's {} s grace period; its frames are kept until {}; start a new session",
                self.app.config.resume_grace_secs,
                meta.expires_at.as_deref().unwrap_or("expiry")
            )),
            SessionStatus::Detached
                if meta
                    .resumable_until
                    .as_deref()
                    .is_some_and(crate::store::has_passed) =>
            {
                Err(format!(
                    "session {id} could be resumed until {}: start a new session",
                    meta.resumable_until.as_deref().unwrap_or_default()
                ))
            }
            _ => Ok(()),
        };
        if let Err(why) = resumable {
            self.session = None;
            return self.fail(ErrorCode::ResumeExpired, why).await;
        }
        if meta.status == SessionStatus::Failed {
            let why = meta.error.clone().unwrap_or_default();
            return self
                .fail(
                    ErrorCode::ProcessingFailed,
                    format!("session {id} failed: {why}"),
                )
                .await;
        }

        let frames = meta.frames_stored;
        let (state, resumed, status) = match meta.status {
            SessionStatus::Processing => (
                SessionState::Processing { frames },
                ResumedState::Processing,
                SessionStatus::Processing,
            ),
            SessionStatus::Complete => (
                SessionState::Complete { frames },
                ResumedState::Complete,
                SessionStatus::Complete,
            ),
            _ if meta.upload_ended() => (
                SessionState::AwaitingSignal { frames },
                ResumedState::AwaitingSignal,
                SessionStatus::AwaitingSignal,
            ),
            _ => (
                SessionState::Receiving { next_frame: frames },
                ResumedState::Receiving,
                SessionStatus::Receiving,
            ),
        };
        if resumed == ResumedState::Receiving {
            let sink_id = id.clone();
            let window = self.app.config.session_window(meta.width, meta.height) as usize;
            let reopened = self
                .with_store("cannot reopen the frames of the session", move |store| {
                    let source = store.frame_source(&sink_id)?;
                    let crcs = source.checksums();
                    let first = crcs.len().saturating_sub(window);
                    let recent: std::collections::VecDeque<(u64, u32)> = crcs[first..]
                        .iter()
                        .enumerate()
                        .map(|(i, &crc)| ((first + i) as u64, crc))
                        .collect();
                    // The next frame's timestamp must follow the last stored one's.
                    let last_pts = frames.checked_sub(1).and_then(|last| {
                        let pts = usize::try_from(last)
                            .ok()
                            .and_then(|i| source.timestamps().get(i).copied())?;
                        Some((last, pts))
                    });
                    Ok((store.frame_sink(&sink_id, frames)?, recent, last_pts))
                })
                .await;
            let (sink, recent, last_pts) = match reopened {
                Ok(reopened) => reopened,
                Err(flow) => return flow,
            };
            if let Some(session) = self.session.as_mut() {
                let stored = Stored {
                    frames,
                    bytes: meta.bytes_stored,
                };
                session.writer = Some(start_writer(&self.app.config, &meta, sink, stored));
                session.recent = recent;
                session.last_pts = last_pts;
            }
        }
        if let Some(session) = self.session.as_mut() {
            session.bytes_total = meta.bytes_stored;
            session.acked = frames;
            if resumed == ResumedState::Processing {
                session.events = Some(live.subscribe());
            }
        }
        self.state = state;
        let meta = live.update(|m| {
            m.status = status;
            m.error = None;
            m.resumable_until = None;
            m.resumes += 1;
        });
        Metrics::add(&self.app.metrics.resumes, 1);
        self.app.events.publish(EventKind::Resumed, &meta);
        tracing::info!(
            "Session {id} resumed by {} in state {} at frame {frames} (resume {})",
            self.remote,
            self.state.name(),
            meta.resumes
        );
        persist(Arc::clone(&self.app.store), meta.clone()).await;
        self.peer
            .send(&ControlMessage::SessionResumed {
                session_id: id,
                state: resumed,
                frames_stored: frames,
                window: self.app.config.session_window(meta.width, meta.height),
                max_frame_bytes: self
                    .app
                    .config
                    .session_max_frame_bytes(meta.width, meta.height),
                max_signal_bytes: Some(self.app.config.max_signal_bytes as u64),
                max_frame_pixels: Some(self.app.config.max_frame_pixels),
            })
            .await;
        match resumed {
            ResumedState::Complete => {
                let directory = self.app.store.location(&meta.id);
                let events = meta.signal_events.unwrap_or(0);
                self.peer
                    .send(&complete_message(&meta, events, directory))
                    .await;
                self.peer.close(1000, "complete").await;
                self.end = String::from("the session is complete");
                ControlFlow::Break(())
            }
            // Processing may have finished between the snapshot and the subscription.
            ResumedState::Processing => match live.snapshot().status {
                SessionStatus::Complete => {
                    let meta = live.snapshot();
                    let directory = self.app.store.location(&meta.id);
                    let events = meta.signal_events.unwrap_or(0);
                    self.on_pipeline(PipelineEvent::Complete {
                        meta: Box::new(meta),
                        events,
                        directory,
                    })
                    .await
                }
                _ => ControlFlow::Continue(()),
            },
            _ => ControlFlow::Continue(()),
        }
    }

    async fn on_binary(&mut self, message: Bytes) -> ControlFlow<()> {
        // A frame outside `receiving` is refused by the state machine, whatever it holds.
        if !matches!(self.state, SessionState::Receiving { .. }) {
            let index = FrameHeader::parse(&message).map_or(0, |h| h.index);
            if let Err(violation) = self.state.accept(Incoming::Frame { index }) {
                return self.fail(violation.code(), violation.to_string()).await;
            }
        }
        let config = &self.app.config;
        let max = config.max_frame_bytes;
        let (width, height) = self
            .session
            .as_ref()
            .map_or((0, 0), |s| (s.width, s.height));
        let session_max = config.session_max_frame_bytes(width, height);
        let payload_len = message
            .len()
            .saturating_sub(referee_protocol::FRAME_HEADER_LEN);
        if payload_len > max.min(session_max) as usize {
            let index = FrameHeader::parse(&message).map_or(0, |h| h.index);
            let why = if session_max < max {
                format!("larger than any {width}x{height} JPEG can be ({session_max} bytes: 8 bytes a pixel and 64 KiB of headers): send JPEGs of the size SESSION_START announced")
            } else {
                format!("larger than the server's limit of {max} bytes: lower the JPEG quality or the resolution")
            };
            return self
                .fail(
                    ErrorCode::FrameTooLarge,
                    format!("frame {index} has a {payload_len}-byte payload, {why}"),
                )
                .await;
        }
        let frame = match decode_frame(message.clone()) {
            Ok(frame) => frame,
            Err(err) => {
                let code = match err {
                    FrameHeaderError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
                    FrameHeaderError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
                    _ => ErrorCode::BadFrameHeader,
                };
                return self.fail(code, err.to_string()).await;
            }
        };
        let index = frame.header.index;
        if self.is_duplicate(index, frame.header.crc32c) {
            Metrics::add(&self.app.metrics.duplicates_dropped, 1);
            tracing::debug!(
                "Session {}: frame {index} is already stored, dropped",
                self.id()
            );
            return ControlFlow::Continue(());
        }
        if let Err(violation) = self.state.accept(Incoming::Frame { index }) {
            return self.fail(violation.code(), violation.to_string()).await;
        }
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
        let pts_us = frame.header.pts_us;
        if let Err(why) = check_timestamp(session.last_pts, index, pts_us) {
            return self.fail(ErrorCode::FrameOutOfOrder, why.to_string()).await;
        }
        if let Err(why) = frame_check::check_payload(
            &frame.payload,
            session.encoding,
            session.width,
            session.height,
        ) {
            return self
                .fail(
                    ErrorCode::InvalidFramePayload,
                    format!("frame {index}: {why}"),
                )
                .await;
        }
        let limit = self.app.config.max_session_bytes;
        session.bytes_total += frame.payload.len() as u64;
        if session.bytes_total > limit {
            return self
                .fail(
                    ErrorCode::SessionTooLarge,
                    format!("frame {index} takes the session past the server's limit of {limit} bytes per session; the frames before it are kept"),
                )
                .await;
        }
        if let Some(why) = session.disk.refuse_frame() {
            return self
                .fail(ErrorCode::DiskFull, format!("frame {index}: {why}"))
                .await;
        }
        Metrics::add(&self.app.metrics.frames_received, 1);
        Metrics::add(&self.app.metrics.bytes_received, frame.payload.len() as u64);
        session.arrivals.push_back(Instant::now());
        session.last_pts = Some((index, pts_us));
        session.recent.push_back((index, frame.header.crc32c));
        let window = self
            .app
            .config
            .session_window(session.width, session.height);
        if session.recent.len() > window as usize {
            session.recent.pop_front();
        }
        session.live.set_latest_frame(index, frame.payload.clone());
        if let Some(line) = received_line(session.live.id(), index, session.bytes_total) {
            tracing::info!("{line}");
        }
        let pushed = match &session.writer {
            Some(writer) => writer.push(frame.header, message).await,
            None => false,
        };
        if pushed {
            ControlFlow::Continue(())
        } else {
            self.on_writer_stopped().await
        }
    }

    /// Whether frame `index` with this CRC32C is one already stored, sent again (e.g. by a
    /// client that resumed from an older point than the server told it).
    fn is_duplicate(&self, index: u64, crc32c: u32) -> bool {
        let SessionState::Receiving { next_frame } = self.state else {
            return false;
        };
        index < next_frame
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.recent.iter().any(|&(i, crc)| i == index && crc == crc32c))
    }

    /// The writer stopped on its own: a storage error.
    async fn on_writer_stopped(&mut self) -> ControlFlow<()> {
        let failed = match self.session.as_mut().and_then(|s| s.writer.take()) {
            Some(writer) => writer.finish().await.err(),
            None => None,
        };
        match failed {
            Some(failed) => self.on_storage_failed(failed).await,
            None => {
                self.fail(
                    ErrorCode::StorageFailed,
                    String::from("the server cannot store frames: its frame writer stopped"),
                )
                .await
            }
        }
    }

    /// A storage error stopped the writer: the frames stored before it are kept (the files
    /// were cut back to them) and counted, and the client is told how to go on.
    async fn on_storage_failed(&mut self, failed: crate::writer::WriterFailed) -> ControlFlow<()> {
        let id = self.id();
        if let Some(session) = self.session.as_ref() {
            let stored = &failed.stored;
            session.live.update(|m| {
                m.frames_stored = stored.frames;
                m.bytes_stored = stored.bytes;
            });
        }
        self.fail(
            ErrorCode::StorageFailed,
            format!(
                "the server cannot store frames: {}; the {} frames stored before are kept: free space on the server's data disk (or fix it), then resume with --resume {id}",
                failed.error, failed.stored.frames
            ),
        )
        .await
    }

    async fn on_stored(&mut self, stored: Stored) -> ControlFlow<()> {
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
        let meta = session.live.update(|m| {
            let metrics = &self.app.metrics;
            Metrics::add(
                &metrics.frames_stored,
                stored.frames.saturating_sub(m.frames_stored),
            );
            Metrics::add(
                &metrics.bytes_stored,
                stored.bytes.saturating_sub(m.bytes_stored),
            );
            m.frames_stored = stored.frames;
            m.bytes_stored = stored.bytes;
        });
        if session.last_frames_event.elapsed() >= FRAMES_EVENT_EVERY {
            session.last_frames_event = Instant::now();
            self.app.events.publish(EventKind::Frames, &meta);
        }
        if session.last_count_saved.elapsed() >= SAVE_COUNT_EVERY {
            session.last_count_saved = Instant::now();
            persist(Arc::clone(&self.app.store), meta).await;
        }
        if stored.frames > session.acked {
            let newly = (stored.frames - session.acked) as usize;
            for arrived in session.arrivals.drain(..newly.min(session.arrivals.len())) {
                self.app.metrics.ack_latency.observe(arrived.elapsed());
            }
            // One ACK per batch of at most half the window, even when the writer stored
            // several batches since the last one was seen.
            let batch = crate::writer::batch_limit(session.window);
            while session.acked < stored.frames {
                session.acked = (session.acked + batch).min(stored.frames);
                self.peer
                    .send(&ControlMessage::Ack {
                        frames_stored: session.acked,
                    })
                    .await;
            }
        }
        ControlFlow::Continue(())
    }

    /// `SESSION_END`: moves to `next` (`awaiting_signal` or `processing`) once every frame is
    /// durable and the digest matches; refused, the session stays in `receiving`.
    async fn on_end(
        &mut self,
        frames_sent: u64,
        signal_follows: bool,
        digest: FrameDigest,
        next: SessionState,
    ) -> ControlFlow<()> {
        let Some(writer) = self.session.as_mut().and_then(|s| s.writer.take()) else {
            return ControlFlow::Continue(());
        };
        let stored = match writer.finish().await {
            Ok(stored) => stored,
            Err(failed) => return self.on_storage_failed(failed).await,
        };
        // The last batch is durable: counted and acknowledged like every other, before any
        // check, so that a refused SESSION_END leaves the count a resume starts from right.
        if self.on_stored(stored.clone()).await.is_break() {
            return ControlFlow::Break(());
        }
        let Some(session) = self.session.as_ref() else {
            return ControlFlow::Continue(());
        };
        let id = session.live.id().to_string();
        // The digest of what is on disk, from the checksums in the frame index.
        let lookup = id.clone();
        let ours = match self
            .with_store("cannot read the stored frames back", move |store| {
                Ok(FrameDigest::of(store.frame_source(&lookup)?.checksums()))
            })
            .await
        {
            Ok(digest) => digest,
            Err(flow) => return flow,
        };
        let differing = ours.differing_frames(&digest, frames_sent);
        if !differing.is_empty() {
            // Still receiving: the client may resume and the frames stay as stored.
            return self
                .fail(
                    ErrorCode::DigestMismatch,
                    format!(
                        "the digest of the {} stored frames does not match SESSION_END's: {} differ from what the client sent",
                        stored.frames,
                        describe_ranges(&differing)
                    ),
                )
                .await;
        }
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
        self.state = next;
        let status = if signal_follows {
            SessionStatus::AwaitingSignal
        } else {
            SessionStatus::Processing
        };
        let meta = session.live.update(|m| {
            m.ended_at = Some(now_rfc3339());
            m.status = status;
            if !signal_follows {
                m.signal_events = Some(0);
            }
        });
        tracing::info!("Session {id} ended: {} frames", stored.frames);
        self.app.events.publish(EventKind::Ended, &meta);
        persist(Arc::clone(&self.app.store), meta).await;
        self.peer
            .send(&ControlMessage::SessionEnded {
                frames_stored: stored.frames,
            })
            .await;
        if !signal_follows {
            tracing::info!("Session {id}: no signal file, starting processing");
            self.start_processing(None).await;
        }
        ControlFlow::Continue(())
    }

    /// `SIGNAL`: moves to `next` (`processing`) once the signal file is valid and stored;
    /// refused, the session stays in `awaiting_signal`, to be resumed with a corrected one.
    async fn on_signal(
        &mut self,
        file_name: String,
        text: String,
        next: SessionState,
    ) -> ControlFlow<()> {
        let limit = self.app.config.max_signal_bytes;
        if text.len() > limit {
            return self
                .fail(
                    ErrorCode::MessageTooLarge,
                    format!(
                        "the signal file {file_name:?} is {} bytes, larger than the server's limit of {limit} bytes",
                        text.len()
                    ),
                )
                .await;
        }
        let Some(session) = self.session.as_ref() else {
            return ControlFlow::Continue(());
        };
        let meta = session.live.snapshot();
        let duration_us = (meta.frames_stored as f64 * 1e6 / meta.fps).round() as u64;
        let track = match SignalTrack::parse(&text)
            .and_then(|t| t.check_duration(duration_us).map(|()| t))
        {
            Ok(track) => track,
            Err(err) => {
                return self
                    .fail(
                        ErrorCode::InvalidSignal,
                        format!("signal file {file_name:?}: {err}"),
                    )
                    .await
            }
        };
        let id = meta.id.clone();
        let bytes = text.len();
        if let Err(flow) = self
            .with_store("cannot store the signal file", move |store| {
                store.put_signal(&id, &text)
            })
            .await
        {
            return flow;
        }
        let Some(session) = self.session.as_ref() else {
            return ControlFlow::Continue(());
        };
        let events = track.events.len() as u64;
        session.live.update(|m| {
            m.signal_file = Some(file_name);
            m.signal_events = Some(events);
        });
        tracing::info!(
            "Session {}: signal received ({bytes} bytes, {events} events), starting processing",
            meta.id
        );
        self.state = next;
        self.start_processing(Some(track)).await;
        ControlFlow::Continue(())
    }

    async fn start_processing(&mut self, signal: Option<SignalTrack>) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        // Listen before starting, so that no event is missed.
        session.events = Some(session.live.subscribe());
        processing::start(&self.app, Arc::clone(&session.live), signal).await;
    }

    async fn on_pipeline(&mut self, event: PipelineEvent) -> ControlFlow<()> {
        match event {
            PipelineEvent::Progress {
                stage,
                percent,
                done,
                total,
            } => {
                self.peer
                    .send(&ControlMessage::Progress {
                        stage,
                        percent,
                        done,
                        total,
                    })
                    .await;
                ControlFlow::Continue(())
            }
            PipelineEvent::Complete {
                meta,
                events,
                directory,
            } => {
                self.state.finish_processing();
                self.peer
                    .send(&complete_message(&meta, events, directory))
                    .await;
                self.peer.close(1000, "complete").await;
                self.end = String::from("the session is complete");
                ControlFlow::Break(())
            }
            PipelineEvent::Failed { stage, message } => {
                self.state.finish_processing();
                self.fail(
                    ErrorCode::ProcessingFailed,
                    format!("{message} (stage {stage})"),
                )
                .await
            }
        }
    }

    /// Called once the connection has ended, however it ended: the session, if any, is
    /// detached with every frame received flushed to disk.
    async fn close_session(&mut self) {
        let Some(mut session) = self.session.take() else {
            tracing::info!(
                "Connection from {} ended before SESSION_START: {}",
                self.remote,
                self.end
            );
            return;
        };
        let id = session.live.id().to_string();
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
        match self.state {
            SessionState::Receiving { .. } | SessionState::AwaitingSignal { .. } => {
                let reason = format!("{} in state {}", self.end, self.state.name());
                let grace = self.app.config.resume_grace_secs;
                let until = OffsetDateTime::now_utc() + Duration::from_secs(grace);
                let meta = session.live.update(|m| {
                    if let Some(s) = &stored {
                        m.frames_stored = s.frames;
                        m.bytes_stored = s.bytes;
                    }
                    m.status = SessionStatus::Detached;
                    m.error = Some(reason.clone());
                    m.resumable_until = Some(rfc3339(until));
                });
                tracing::info!(
                    "Session {id}: {reason}; {} frames stored and kept, session detached (resumable for {grace} s)",
                    meta.frames_stored
                );
                self.app.events.publish(EventKind::Detached, &meta);
                crate::resave::save_or_retry(&self.app, Arc::clone(&session.live)).await;
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

/// The state of a session that is not live, as loaded from the store. One still `receiving`
/// on disk lost its last state to a storage error (a full disk, and the server stopped
/// before the state could be saved): its frame log, repaired, says what is stored, so that
/// the resume continues after every frame acknowledged.
fn stored_state(
    store: &dyn SessionStore,
    mut meta: SessionMeta,
) -> Result<SessionMeta, StoreError> {
    if meta.status == SessionStatus::Receiving {
        let recovered = store.recover_frames(&meta.id)?;
        if recovered.frames != meta.frames_stored {
            tracing::info!(
                "Session {}: its saved state says {} frames stored, its frame log holds {}: resuming after those",
                meta.id,
                meta.frames_stored,
                recovered.frames
            );
        }
        meta.frames_stored = recovered.frames;
        meta.bytes_stored = recovered.bytes;
    }
    Ok(meta)
}

/// Starts the frame writer of a session with its window and byte budget.
fn start_writer(
    config: &crate::Config,
    meta: &SessionMeta,
    sink: Box<dyn crate::store::FrameSink>,
    stored: Stored,
) -> FrameWriter {
    let window = config.session_window(meta.width, meta.height);
    let budget = config.session_queue_bytes(meta.width, meta.height);
    FrameWriter::start(sink, window, budget, stored)
}

/// The info line logged every [`LOG_EVERY_FRAMES`] frames of a session, counted from 1 (so
/// `received frame 100, total 100` when frame index 99 arrives), whatever connection
/// they arrive on.
fn received_line(id: &str, index: u64, bytes_total: u64) -> Option<String> {
    let count = index + 1;
    count.is_multiple_of(LOG_EVERY_FRAMES).then(|| {
        format!(
            "Session {id}: received frame {count}, total {count}, {:.1} MB",
            bytes_total as f64 / 1e6
        )
    })
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
