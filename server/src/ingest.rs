//! The WebSocket ingest endpoint (`/stream`): one task per connection drives one session
//! through the protocol's state machine, hands frames to the session's writer, acknowledges
//! them once durable, starts processing and relays its progress.
//!
//! Disconnects are ordinary events here: the session and its frames stay on disk, marked
//! `interrupted`, and nothing is ever sent on a connection once it is closed (see [`Peer`]).

use std::future::pending;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use referee_protocol::frame::{decode_frame, FrameHeaderError};
use referee_protocol::signal::SignalTrack;
use referee_protocol::state::Incoming;
use referee_protocol::{ControlMessage, ErrorCode, FrameEncoding, FrameHeader, SessionState};
use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::live::LiveSession;
use crate::pipeline::{self, PipelineEvent};
use crate::store::{now_rfc3339, SessionMeta, SessionStatus, SessionStore, StoreError};
use crate::writer::{FrameWriter, Stored};
use crate::{frame_check, session_id, AppState};

/// How long to wait for the client's answer to our close before dropping the connection.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Progress messages queued for a client; when full, intermediate progress is dropped.
const PROGRESS_QUEUE: usize = 32;
/// Log a line every this many frames received.
const LOG_EVERY_FRAMES: u64 = 100;

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
    let deadline = Instant::now() + Duration::from_secs(app.config.start_timeout_secs);
    let mut conn = Connection {
        app,
        remote,
        peer: Peer {
            sink,
            open: true,
            close_sent: false,
        },
        state: SessionState::AwaitingStart,
        session: None,
        pipeline: None,
        end: String::from("the client disconnected"),
    };
    loop {
        let awaiting_start = conn.state == SessionState::AwaitingStart;
        let writer = conn.session.as_mut().and_then(|s| s.writer.as_mut());
        let event = tokio::select! {
            incoming = stream.next() => Event::Incoming(incoming),
            stored = next_stored(writer) => Event::Stored(stored),
            progress = next_pipeline_event(conn.pipeline.as_mut()) => Event::Pipeline(progress),
            () = tokio::time::sleep_until(deadline), if awaiting_start => Event::StartTimeout,
        };
        if conn.handle(event).await.is_break() {
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
    rx: Option<&mut mpsc::Receiver<PipelineEvent>>,
) -> Option<PipelineEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => pending().await,
    }
}

enum Event {
    Incoming(Option<Result<Message, axum::Error>>),
    Stored(Option<Stored>),
    Pipeline(Option<PipelineEvent>),
    StartTimeout,
}

/// The sending half of a connection. Once a close has been sent or a send has failed, it
/// sends nothing more: sending on a closed connection is not an error case to handle, it
/// simply cannot happen.
struct Peer<S> {
    sink: S,
    open: bool,
    close_sent: bool,
}

impl<S> Peer<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    async fn send(&mut self, msg: &ControlMessage) {
        if !self.open {
            return;
        }
        if let Err(err) = self.sink.send(Message::Text(msg.to_json().into())).await {
            tracing::debug!(
                "cannot send {}: the client is gone ({err})",
                msg.type_name()
            );
            self.open = false;
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
        match self.sink.send(Message::Close(Some(frame))).await {
            Ok(()) => self.close_sent = true,
            Err(err) => tracing::debug!("cannot send close: the client is gone ({err})"),
        }
    }
}

/// The session a connection feeds.
struct Session {
    live: Arc<LiveSession>,
    /// Present while frames may arrive.
    writer: Option<FrameWriter>,
    encoding: FrameEncoding,
    width: u32,
    height: u32,
    received: u64,
    received_bytes: u64,
    acked: u64,
}

struct Connection<S> {
    app: AppState,
    remote: SocketAddr,
    peer: Peer<S>,
    state: SessionState,
    session: Option<Session>,
    pipeline: Option<mpsc::Receiver<PipelineEvent>>,
    /// Why the connection ended, for the log.
    end: String,
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
        match event {
            Event::Incoming(Some(Ok(Message::Text(text)))) => self.on_text(text.as_str()).await,
            Event::Incoming(Some(Ok(Message::Binary(bytes)))) => self.on_binary(bytes).await,
            Event::Incoming(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {
                ControlFlow::Continue(())
            }
            Event::Incoming(Some(Ok(Message::Close(frame)))) => {
                self.peer.open = false;
                self.end = match frame {
                    Some(f) if f.code != 1000 && f.code != 1001 => {
                        format!(
                            "the client closed the connection (code {}: {})",
                            f.code, f.reason
                        )
                    }
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
                self.pipeline = None;
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
        }
    }

    /// Sends a fatal ERROR and closes the connection with the code's close code.
    async fn fail(&mut self, code: ErrorCode, message: String) -> ControlFlow<()> {
        let id = self.id();
        match code {
            ErrorCode::StorageFailed | ErrorCode::Internal => {
                tracing::error!("Session {id}: {code}: {message}")
            }
            _ => tracing::warn!("Session {id}: refused: {code}: {message}"),
        }
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
            tracing::info!(
                "Session {}: the client reports {code}: {message}",
                self.id()
            );
            if *fatal {
                self.end = format!("the client gave up ({code})");
                return ControlFlow::Break(());
            }
            return ControlFlow::Continue(());
        }
        if let Err(violation) = self.state.accept(Incoming::Control(&msg)) {
            return self.fail(violation.code(), violation.to_string()).await;
        }
        match msg {
            ControlMessage::SessionStart { .. } => self.on_start(msg).await,
            ControlMessage::SessionEnd {
                frames_sent,
                signal_follows,
            } => self.on_end(frames_sent, signal_follows).await,
            ControlMessage::Signal { file_name, text } => self.on_signal(file_name, text).await,
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
            ..
        } = msg
        else {
            return ControlFlow::Continue(());
        };
        let now = now_rfc3339();
        let meta = SessionMeta {
            id: session_id::generate(&name, OffsetDateTime::now_utc()),
            name,
            source,
            fps,
            width,
            height,
            encoding,
            quality,
            frames_expected: frame_count,
            status: SessionStatus::Receiving,
            stage: None,
            percent: None,
            frames_stored: 0,
            bytes_stored: 0,
            signal_file: None,
            results: Vec::new(),
            error: None,
            created_at: now.clone(),
            updated_at: now,
            ended_at: None,
            completed_at: None,
        };
        let store = Arc::clone(&self.app.store);
        let created = tokio::task::spawn_blocking(move || {
            let mut meta = meta;
            // A collision of ids needs the same name in the same second and the same
            // random suffix; try again with a new suffix.
            for _ in 0..3 {
                match store.create(&meta) {
                    Err(StoreError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        meta.id = session_id::generate(&meta.name, OffsetDateTime::now_utc());
                    }
                    other => return other.and_then(|()| Ok((store.frame_sink(&meta.id)?, meta))),
                }
            }
            Err(StoreError::WriterStopped(String::from(
                "no free session id",
            )))
        })
        .await;
        let (sink, meta) = match created {
            Ok(Ok(created)) => created,
            Ok(Err(err)) => {
                return self
                    .fail(
                        ErrorCode::StorageFailed,
                        format!("cannot create the session on disk: {err}; check the server's data directory (free space, permissions)"),
                    )
                    .await
            }
            Err(err) => return self.fail(ErrorCode::Internal, format!("cannot create the session: {err}")).await,
        };
        let (encoding, width, height) = (meta.encoding, meta.width, meta.height);
        let (live, active) = self.app.live.insert(meta);
        tracing::info!("Created session {} ({active} active sessions)", live.id());
        let writer = FrameWriter::start(sink, self.app.config.window, Stored::default());
        let session_id = live.id().to_string();
        self.session = Some(Session {
            live,
            writer: Some(writer),
            encoding,
            width,
            height,
            received: 0,
            received_bytes: 0,
            acked: 0,
        });
        self.peer
            .send(&ControlMessage::SessionStarted {
                session_id,
                window: self.app.config.window,
                max_frame_bytes: self.app.config.max_frame_bytes,
            })
            .await;
        ControlFlow::Continue(())
    }

    async fn on_binary(&mut self, message: Bytes) -> ControlFlow<()> {
        // A frame outside `receiving` is refused by the state machine, whatever it holds.
        if !matches!(self.state, SessionState::Receiving { .. }) {
            let index = FrameHeader::parse(&message).map_or(0, |h| h.index);
            if let Err(violation) = self.state.accept(Incoming::Frame { index }) {
                return self.fail(violation.code(), violation.to_string()).await;
            }
        }
        let max = self.app.config.max_frame_bytes;
        let payload_len = message
            .len()
            .saturating_sub(referee_protocol::FRAME_HEADER_LEN);
        if payload_len > max as usize {
            let index = FrameHeader::parse(&message).map_or(0, |h| h.index);
            return self
                .fail(
                    ErrorCode::FrameTooLarge,
                    format!("frame {index} has a {payload_len}-byte payload, larger than the server's limit of {max} bytes: lower the JPEG quality or the resolution"),
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
        if let Err(violation) = self.state.accept(Incoming::Frame { index }) {
            return self.fail(violation.code(), violation.to_string()).await;
        }
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
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
        session.received += 1;
        session.received_bytes += frame.payload.len() as u64;
        if session.received % LOG_EVERY_FRAMES == 0 {
            tracing::info!(
                "Session {}: received frame {index}, total {}, {:.1} MB",
                session.live.id(),
                session.received,
                session.received_bytes as f64 / 1e6
            );
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

    /// The writer stopped on its own: a storage error.
    async fn on_writer_stopped(&mut self) -> ControlFlow<()> {
        let err = match self.session.as_mut().and_then(|s| s.writer.take()) {
            Some(writer) => writer.finish().await.err(),
            None => None,
        };
        let detail = err.map_or_else(|| String::from("unknown error"), |e| e.to_string());
        self.fail(
            ErrorCode::StorageFailed,
            format!("the server cannot store frames: {detail}"),
        )
        .await
    }

    async fn on_stored(&mut self, stored: Stored) -> ControlFlow<()> {
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
        session.live.update(|m| {
            m.frames_stored = stored.frames;
            m.bytes_stored = stored.bytes;
        });
        if stored.frames > session.acked {
            session.acked = stored.frames;
            self.peer
                .send(&ControlMessage::Ack {
                    frames_stored: stored.frames,
                })
                .await;
        }
        ControlFlow::Continue(())
    }

    async fn on_end(&mut self, frames_sent: u64, signal_follows: bool) -> ControlFlow<()> {
        let Some(writer) = self.session.as_mut().and_then(|s| s.writer.take()) else {
            return ControlFlow::Continue(());
        };
        let stored = match writer.finish().await {
            Ok(stored) => stored,
            Err(err) => {
                return self
                    .fail(
                        ErrorCode::StorageFailed,
                        format!("the server cannot store frames: {err}"),
                    )
                    .await
            }
        };
        let Some(session) = self.session.as_mut() else {
            return ControlFlow::Continue(());
        };
        let status = if signal_follows {
            SessionStatus::AwaitingSignal
        } else {
            SessionStatus::Processing
        };
        let meta = session.live.update(|m| {
            m.frames_stored = stored.frames;
            m.bytes_stored = stored.bytes;
            m.ended_at = Some(now_rfc3339());
            m.status = status;
        });
        tracing::info!("Session {} ended: {} frames", meta.id, stored.frames);
        persist(Arc::clone(&self.app.store), meta).await;
        if stored.frames > session.acked {
            session.acked = stored.frames;
            self.peer
                .send(&ControlMessage::Ack {
                    frames_stored: stored.frames,
                })
                .await;
        }
        debug_assert_eq!(stored.frames, frames_sent);
        self.peer
            .send(&ControlMessage::SessionEnded {
                frames_stored: stored.frames,
            })
            .await;
        if !signal_follows {
            tracing::info!("Session {}: no signal file, starting processing", self.id());
            self.start_processing(None).await;
        }
        ControlFlow::Continue(())
    }

    async fn on_signal(&mut self, file_name: String, text: String) -> ControlFlow<()> {
        let limit = self.app.config.max_signal_bytes;
        if text.len() > limit {
            return self
                .fail(
                    ErrorCode::MessageTooLarge,
                    format!("the signal file {file_name:?} is {} bytes, larger than the server's limit of {limit} bytes", text.len()),
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
        let store = Arc::clone(&self.app.store);
        let id = meta.id.clone();
        let bytes = text.len();
        let saved = tokio::task::spawn_blocking(move || store.put_signal(&id, &text)).await;
        if let Err(err) = saved
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        {
            return self
                .fail(
                    ErrorCode::StorageFailed,
                    format!("cannot store the signal file: {err}"),
                )
                .await;
        }
        session.live.update(|m| m.signal_file = Some(file_name));
        tracing::info!(
            "Session {}: signal received ({bytes} bytes, {} events), starting processing",
            meta.id,
            track.events.len()
        );
        self.start_processing(Some(track)).await;
        ControlFlow::Continue(())
    }

    async fn start_processing(&mut self, signal: Option<SignalTrack>) {
        let Some(session) = self.session.as_ref() else {
            return;
        };
        let live = Arc::clone(&session.live);
        let meta = live.update(|m| m.status = SessionStatus::Processing);
        self.persist(meta).await;
        let (tx, rx) = mpsc::channel(PROGRESS_QUEUE);
        self.pipeline = Some(rx);
        let store = Arc::clone(&self.app.store);
        let workers = Arc::clone(&self.app.processing);
        tokio::spawn(async move {
            // Bounded concurrency: sessions beyond the worker count wait here, in order.
            let _permit = workers.acquire_owned().await;
            let failed = tx.clone();
            let id = live.id().to_string();
            let run = tokio::task::spawn_blocking(move || pipeline::run(store, live, signal, tx));
            if let Err(err) = run.await {
                tracing::error!("Session {id}: the processing thread failed: {err}");
                let _ = failed
                    .send(PipelineEvent::Failed {
                        stage: referee_protocol::Stage::VideoReconstruction,
                        message: format!("the processing thread failed: {err}"),
                    })
                    .await;
            }
        });
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
                    .send(&ControlMessage::Complete {
                        session_id: meta.id.clone(),
                        frames_stored: meta.frames_stored,
                        duration_s: meta.duration_s(),
                        events,
                        directory,
                        files: meta.results.clone(),
                    })
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

    async fn persist(&self, meta: SessionMeta) {
        persist(Arc::clone(&self.app.store), meta).await;
    }

    /// Called once the connection has ended, however it ended.
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
                Err(err) => {
                    tracing::error!("Session {id}: frames received last may be lost: {err}")
                }
            }
        }
        match self.state {
            SessionState::Receiving { .. } | SessionState::AwaitingSignal { .. } => {
                let reason = format!("{} in state {}", self.end, self.state.name());
                let meta = session.live.update(|m| {
                    if let Some(s) = &stored {
                        m.frames_stored = s.frames;
                        m.bytes_stored = s.bytes;
                    }
                    m.status = SessionStatus::Interrupted;
                    m.error = Some(reason.clone());
                });
                tracing::info!(
                    "Session {id}: {reason}; {} frames stored and kept, session marked interrupted",
                    meta.frames_stored
                );
                self.persist(meta).await;
            }
            SessionState::Processing { .. } => {
                tracing::info!(
                    "Session {id}: {} during processing; processing continues",
                    self.end
                )
            }
            SessionState::AwaitingStart | SessionState::Complete { .. } => {
                tracing::debug!("Session {id}: connection ended: {}", self.end)
            }
        }
    }
}

/// Whether a receive error is the WebSocket layer refusing an oversized message.
fn is_too_large(err: axum::Error) -> bool {
    matches!(
        err.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(_))
    )
}

/// Saves a session's metadata; a failure is logged (the live state stays right).
async fn persist(store: Arc<dyn SessionStore>, meta: SessionMeta) {
    let id = meta.id.clone();
    let saved = tokio::task::spawn_blocking(move || store.save_meta(&meta)).await;
    match saved {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!("Session {id}: cannot save its state: {err}"),
        Err(err) => tracing::error!("Session {id}: cannot save its state: {err}"),
    }
}
