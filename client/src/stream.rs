//! The WebSocket session with the server: handshake, frames sent within the server's window,
//! ACKs, session end, signal, processing progress and the final COMPLETE.
//!
//! ```text
//! client                          server
//! SESSION_START           ->
//!                         <-      SESSION_STARTED {session_id, window, max_frame_bytes}
//! frame 0..N (binary)     ->
//!                         <-      ACK {frames_stored}            (any time, repeatedly)
//! SESSION_END             ->
//!                         <-      SESSION_ENDED {frames_stored}
//! SIGNAL (if any)         ->
//!                         <-      PROGRESS ... COMPLETE
//! ```

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use referee_protocol::frame::encode_frame;
use referee_protocol::{ControlMessage, ErrorCode};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};
use tracing::{debug, trace, warn};
use url::Url;

use crate::error::ClientError;
use crate::progress::Progress;
use crate::signal::SignalFile;
use crate::source::EncodedFrame;
use crate::window::Window;
use crate::Summary;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for a pending server ERROR after a send failed, and for the server's
/// reply to our close frame.
const GRACE: Duration = Duration::from_secs(2);

/// The hints of a handshake timeout, by the step that did not finish.
const NO_HANDSHAKE: &str =
    "the WebSocket handshake did not finish: is the server running and reachable?";
const NO_SESSION_STARTED: &str = "the server did not answer SESSION_START: is it a referee server?";

/// One connection to the server, carrying one session.
pub struct Session {
    socket: Socket,
    url: Url,
    /// The server's session id, once SESSION_STARTED arrived.
    id: Option<String>,
    window: Window,
    max_frame_bytes: u32,
}

impl Session {
    /// Connects to `url`, sends `start` (a SESSION_START) and waits for SESSION_STARTED, all
    /// within `limit`.
    pub async fn start(
        url: &Url,
        start: &ControlMessage,
        limit: Duration,
    ) -> Result<Self, ClientError> {
        let deadline = Instant::now() + limit;
        let timed_out = |hint| ClientError::HandshakeTimeout {
            url: url.clone(),
            secs: limit.as_secs(),
            hint,
        };
        let socket = match timeout_at(deadline, connect_async(url.as_str())).await {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(err)) => {
                return Err(ClientError::Connect {
                    url: url.clone(),
                    reason: describe_connect_error(err),
                })
            }
            Err(_) => return Err(timed_out(NO_HANDSHAKE)),
        };
        println!("Connected to {url}");

        let mut session = Session {
            socket,
            url: url.clone(),
            id: None,
            window: Window::new(0),
            max_frame_bytes: 0,
        };
        session.send_control(start).await?;
        let reply = timeout_at(deadline, session.recv())
            .await
            .map_err(|_| timed_out(NO_SESSION_STARTED))??;
        let ControlMessage::SessionStarted {
            session_id,
            window,
            max_frame_bytes,
        } = reply
        else {
            return Err(unexpected(&reply, "SESSION_STARTED"));
        };
        if window == 0 {
            return Err(ClientError::Protocol(
                "the server offered a window of 0 frames, so no frame could be sent".into(),
            ));
        }
        println!("Session started: {session_id} (window {window} frames)");
        session.id = Some(session_id);
        session.window = Window::new(window);
        session.max_frame_bytes = max_frame_bytes;
        Ok(session)
    }

    /// Sends every frame from `frames`, never more than the window ahead of the ACKs.
    pub async fn send_frames(
        &mut self,
        frames: &mut mpsc::Receiver<Result<EncodedFrame, ClientError>>,
        progress: &mut Progress,
    ) -> Result<(), ClientError> {
        loop {
            tokio::select! {
                message = self.recv() => match message? {
                    ControlMessage::Ack { frames_stored } => self.ack(frames_stored, progress)?,
                    other => return Err(unexpected(&other, "ACK")),
                },
                frame = frames.recv(), if self.window.has_room() => match frame {
                    Some(Ok(frame)) => self.send_frame(frame).await?,
                    Some(Err(err)) => return Err(self.abort(ErrorCode::SourceFailed, err).await),
                    None => return Ok(()),
                },
            }
        }
    }

    /// Sends SESSION_END and waits for SESSION_ENDED, taking the last ACKs on the way.
    pub async fn end(
        &mut self,
        signal_follows: bool,
        progress: &mut Progress,
    ) -> Result<(), ClientError> {
        let frames_sent = self.window.sent();
        self.send_control(&ControlMessage::SessionEnd {
            frames_sent,
            signal_follows,
        })
        .await?;
        progress.line(&format!("Sent session end ({frames_sent} frames)"));
        loop {
            match self.recv().await? {
                ControlMessage::Ack { frames_stored } => self.ack(frames_stored, progress)?,
                ControlMessage::SessionEnded { frames_stored } => {
                    self.window.ack(frames_stored)?;
                    progress.finish_frames(self.window.acked(), self.window.acked_bytes());
                    progress.line(&format!("Session ended: {frames_stored} frames stored"));
                    return Ok(());
                }
                other => return Err(unexpected(&other, "ACK or SESSION_ENDED")),
            }
        }
    }

    /// Sends the signal file.
    pub async fn send_signal(
        &mut self,
        signal: &SignalFile,
        progress: &Progress,
    ) -> Result<(), ClientError> {
        self.send_control(&ControlMessage::Signal {
            file_name: signal.file_name.clone(),
            text: signal.text.clone(),
        })
        .await?;
        progress.line(&format!("Sent signal data ({} bytes)", signal.text.len()));
        Ok(())
    }

    /// Reports the server's processing until COMPLETE arrives.
    pub async fn wait_complete(&mut self, progress: &mut Progress) -> Result<Summary, ClientError> {
        loop {
            match self.recv().await? {
                ControlMessage::Progress {
                    stage,
                    percent,
                    done,
                    total,
                } => {
                    trace!(%stage, percent, done, total, "processing");
                    progress.processing(stage, percent);
                }
                ControlMessage::Complete {
                    session_id,
                    frames_stored,
                    duration_s,
                    events,
                    directory,
                    files,
                } => {
                    progress.line(&format!(
                        "Processing complete: session {session_id}, {frames_stored} frames stored, {events} signal events"
                    ));
                    progress.line(&format!("Results: {directory} ({})", files.join(", ")));
                    return Ok(Summary {
                        session_id,
                        frames_stored,
                        duration_s,
                        events,
                        directory,
                        files,
                    });
                }
                other => return Err(unexpected(&other, "PROGRESS or COMPLETE")),
            }
        }
    }

    /// Closes the connection normally, waiting briefly for the server's close reply.
    pub async fn close(mut self) {
        if let Err(err) = self.socket.close(None).await {
            debug!(%err, "cannot send the close frame");
            return;
        }
        let drained = async { while let Some(Ok(_)) = self.socket.next().await {} };
        if timeout(GRACE, drained).await.is_err() {
            debug!("the server did not answer the close frame");
        }
    }

    async fn send_frame(&mut self, frame: EncodedFrame) -> Result<(), ClientError> {
        if frame.jpeg.len() > self.max_frame_bytes as usize {
            let err = ClientError::FrameTooLarge {
                index: frame.index,
                size: frame.jpeg.len(),
                limit: self.max_frame_bytes,
            };
            return Err(self.abort(ErrorCode::FrameTooLarge, err).await);
        }
        let message = encode_frame(frame.index, frame.pts_us, 0, &frame.jpeg)?;
        let bytes = message.len() as u64;
        self.send(Message::Binary(message)).await?;
        self.window.sent_one(bytes);
        Ok(())
    }

    fn ack(&mut self, frames_stored: u64, progress: &mut Progress) -> Result<(), ClientError> {
        self.window.ack(frames_stored)?;
        progress.frames(self.window.acked(), self.window.acked_bytes());
        Ok(())
    }

    /// Tells the server that the client gives up the session, closes, and returns `err`.
    async fn abort(&mut self, code: ErrorCode, err: ClientError) -> ClientError {
        let message = ControlMessage::error(code, err.to_string(), true);
        if let Err(send_err) = self.socket.send(Message::text(message.to_json())).await {
            debug!(%send_err, "cannot tell the server the session is abandoned");
        }
        if let Err(close_err) = self.socket.close(None).await {
            debug!(%close_err, "cannot close the connection");
        }
        err
    }

    async fn send_control(&mut self, message: &ControlMessage) -> Result<(), ClientError> {
        debug!(message = message.type_name(), "sending");
        self.send(Message::text(message.to_json())).await
    }

    /// Sends one message. When that fails, the server has often just sent a fatal ERROR and
    /// closed the connection: that ERROR is reported rather than the broken connection.
    async fn send(&mut self, message: Message) -> Result<(), ClientError> {
        let Err(err) = self.socket.send(message).await else {
            return Ok(());
        };
        let pending_error = async {
            loop {
                if let Err(err) = self.recv().await {
                    return err;
                }
            }
        };
        match timeout(GRACE, pending_error).await {
            Ok(server_error @ ClientError::Server { .. }) => Err(server_error),
            _ => Err(self.lost(err.to_string())),
        }
    }

    /// The next control message from the server. Pings and pongs are skipped (tungstenite
    /// answers pings itself); a non-fatal ERROR is logged; a fatal one ends the session.
    /// Cancel safe: a message is only taken off the socket when it is returned or handled.
    async fn recv(&mut self) -> Result<ControlMessage, ClientError> {
        loop {
            let text = match self.socket.next().await {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(ClientError::Protocol(
                        "the server sent a binary message; it only sends JSON text messages".into(),
                    ))
                }
                Some(Ok(Message::Close(frame))) => return Err(self.lost(describe_close(frame))),
                Some(Err(err)) => return Err(self.lost(err.to_string())),
                None => return Err(self.lost("the server closed the connection".into())),
            };
            let message = ControlMessage::from_json(&text).map_err(|err| {
                ClientError::Protocol(format!(
                    "the server sent a message this client cannot read: {err}"
                ))
            })?;
            trace!(message = message.type_name(), "received");
            match message {
                ControlMessage::Error {
                    code,
                    message,
                    fatal: true,
                } => return Err(ClientError::Server { code, message }),
                ControlMessage::Error { code, message, .. } => {
                    warn!("server warning {code}: {message}");
                }
                other => return Ok(other),
            }
        }
    }

    /// The error for a connection that ended, saying how far the session got.
    fn lost(&self, reason: String) -> ClientError {
        match &self.id {
            Some(id) => ClientError::ConnectionLost {
                session_id: id.clone(),
                acked: self.window.acked(),
                sent: self.window.sent(),
                reason,
            },
            None => ClientError::Disconnected {
                url: self.url.clone(),
                reason,
            },
        }
    }
}

fn unexpected(message: &ControlMessage, expected: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the server sent {} where {expected} was expected",
        message.type_name()
    ))
}

/// Whether an I/O error of the connection comes from TLS (e.g. an untrusted certificate).
fn is_tls_error(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

fn describe_connect_error(err: tungstenite::Error) -> String {
    match err {
        tungstenite::Error::Http(response) => format!(
            "it answered HTTP {} instead of opening a WebSocket (check the URL's path)",
            response.status()
        ),
        tungstenite::Error::Url(UrlError::TlsFeatureNotEnabled) => {
            "this build of referee-client has no TLS support: use ws:// or http://".into()
        }
        tungstenite::Error::Io(io) if is_tls_error(&io) => format!(
            "TLS failed ({io}): check that the server's certificate is valid for this host name and that its CA is in this machine's trust store (update-ca-certificates)"
        ),
        other => format!("{other}: is the server running?"),
    }
}

fn describe_close(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => format!(
            "the server closed the connection with code {}: {}",
            frame.code, frame.reason
        ),
        Some(frame) => format!("the server closed the connection with code {}", frame.code),
        None => "the server closed the connection".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use referee_protocol::frame::decode_frame;
    use referee_protocol::{FrameEncoding, Stage, PROTOCOL_VERSION};
    use tokio::net::TcpListener;

    use super::*;

    type ServerSocket = WebSocketStream<TcpStream>;

    /// Serves one connection on a free port with `script`; returns the URL to connect to.
    async fn fake_server<F, Fut>(script: F) -> Url
    where
        F: FnOnce(ServerSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("ws://{}/stream", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            script(tokio_tungstenite::accept_async(tcp).await.unwrap()).await;
        });
        url
    }

    async fn send(ws: &mut ServerSocket, message: ControlMessage) {
        ws.send(Message::text(message.to_json())).await.unwrap();
    }

    async fn read_control(ws: &mut ServerSocket) -> ControlMessage {
        match ws.next().await.unwrap().unwrap() {
            Message::Text(text) => ControlMessage::from_json(&text).unwrap(),
            other => panic!("expected a control message, got {other:?}"),
        }
    }

    async fn read_frame_index(ws: &mut ServerSocket) -> u64 {
        match ws.next().await.unwrap().unwrap() {
            Message::Binary(bytes) => decode_frame(bytes).unwrap().header.index,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Accepts SESSION_START and answers SESSION_STARTED.
    async fn open_session(ws: &mut ServerSocket, window: u32) {
        let start = read_control(ws).await;
        assert_eq!(start.type_name(), "SESSION_START");
        send(
            ws,
            ControlMessage::SessionStarted {
                session_id: "s1".into(),
                window,
                max_frame_bytes: 1000,
            },
        )
        .await;
    }

    fn start_message() -> ControlMessage {
        ControlMessage::SessionStart {
            protocol_version: PROTOCOL_VERSION,
            name: "bout".into(),
            source: "bout.avi".into(),
            fps: 25.0,
            width: 64,
            height: 48,
            frame_count: Some(5),
            encoding: FrameEncoding::Jpeg,
            quality: Some(90),
        }
    }

    /// The client side of a whole session, sending `count` small frames.
    async fn client(
        url: Url,
        count: u64,
        signal: Option<SignalFile>,
    ) -> Result<Summary, ClientError> {
        let (sender, mut frames) = mpsc::channel(4);
        tokio::spawn(async move {
            for index in 0..count {
                let frame = EncodedFrame {
                    index,
                    pts_us: index as i64 * 40_000,
                    jpeg: vec![index as u8; 100],
                };
                if sender.send(Ok(frame)).await.is_err() {
                    break;
                }
            }
        });
        let mut session = Session::start(&url, &start_message(), Duration::from_secs(5)).await?;
        let mut progress = Progress::new(Some(count), true);
        session.send_frames(&mut frames, &mut progress).await?;
        session.end(signal.is_some(), &mut progress).await?;
        if let Some(signal) = &signal {
            session.send_signal(signal, &progress).await?;
        }
        let summary = session.wait_complete(&mut progress).await?;
        session.close().await;
        Ok(summary)
    }

    #[tokio::test]
    async fn a_whole_session_keeps_within_the_window() {
        let url = fake_server(|mut ws| async move {
            open_session(&mut ws, 2).await;
            let mut stored = 0;
            while stored < 5 {
                // The client may run at most 2 frames ahead of the ACKs.
                for _ in 0..2.min(5 - stored) {
                    assert_eq!(read_frame_index(&mut ws).await, stored);
                    stored += 1;
                }
                if stored < 5 {
                    let early = timeout(Duration::from_millis(100), ws.next()).await;
                    assert!(early.is_err(), "frame sent beyond the window: {early:?}");
                }
                send(
                    &mut ws,
                    ControlMessage::Ack {
                        frames_stored: stored,
                    },
                )
                .await;
            }
            let end = read_control(&mut ws).await;
            assert_eq!(
                end,
                ControlMessage::SessionEnd {
                    frames_sent: 5,
                    signal_follows: true
                }
            );
            send(&mut ws, ControlMessage::SessionEnded { frames_stored: 5 }).await;
            let ControlMessage::Signal { file_name, text } = read_control(&mut ws).await else {
                panic!("expected SIGNAL");
            };
            assert_eq!(
                (file_name.as_str(), text.as_str()),
                ("bout.txt", "0.1 start\n")
            );
            for (stage, percent) in [
                (Stage::VideoReconstruction, 100.0),
                (Stage::Analysis, 100.0),
            ] {
                let (done, total) = (1, 1);
                send(
                    &mut ws,
                    ControlMessage::Progress {
                        stage,
                        percent,
                        done,
                        total,
                    },
                )
                .await;
            }
            send(
                &mut ws,
                ControlMessage::Complete {
                    session_id: "s1".into(),
                    frames_stored: 5,
                    duration_s: 0.2,
                    events: 1,
                    directory: "/data/s1".into(),
                    files: vec!["video.mp4".into(), "report.json".into()],
                },
            )
            .await;
            assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
        })
        .await;
        let signal = SignalFile {
            file_name: "bout.txt".into(),
            text: "0.1 start\n".into(),
        };
        let summary = client(url, 5, Some(signal)).await.unwrap();
        assert_eq!(summary.session_id, "s1");
        assert_eq!(summary.frames_stored, 5);
        assert_eq!(summary.files, ["video.mp4", "report.json"]);
    }

    #[tokio::test]
    async fn a_fatal_server_error_is_reported_with_its_code() {
        let url = fake_server(|mut ws| async move {
            open_session(&mut ws, 8).await;
            read_frame_index(&mut ws).await;
            send(
                &mut ws,
                ControlMessage::error(ErrorCode::StorageFailed, "disk full", true),
            )
            .await;
            ws.close(None).await.unwrap();
        })
        .await;
        let err = client(url, 5, None).await.unwrap_err();
        assert_eq!(err.to_string(), "server error storage_failed: disk full");
    }

    #[tokio::test]
    async fn a_dropped_connection_says_how_far_the_session_got() {
        let url = fake_server(|mut ws| async move {
            open_session(&mut ws, 1).await;
            read_frame_index(&mut ws).await;
            send(&mut ws, ControlMessage::Ack { frames_stored: 1 }).await;
            read_frame_index(&mut ws).await;
            drop(ws);
        })
        .await;
        let err = client(url, 5, None).await.unwrap_err().to_string();
        assert!(
            err.contains("acknowledged 1 of 2 frames of session s1"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_session_started_in_time_is_a_handshake_timeout() {
        let limit = Duration::from_millis(200);
        // A WebSocket server that never answers SESSION_START.
        let silent_server = fake_server(|mut ws| async move {
            read_control(&mut ws).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        // A TCP port that never answers the WebSocket handshake.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_port =
            Url::parse(&format!("ws://{}/stream", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let _held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        });
        for url in [silent_server, silent_port] {
            let Err(err) = Session::start(&url, &start_message(), limit).await else {
                panic!("a session started on {url}");
            };
            let err = err.to_string();
            assert!(
                err.starts_with(&format!("no SESSION_STARTED from {url} within 0 s: ")),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_names_the_url() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("ws://{}/stream", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let Err(err) = Session::start(&url, &start_message(), Duration::from_secs(5)).await else {
            panic!("connected to a closed port");
        };
        let err = err.to_string();
        assert!(
            err.starts_with(&format!("cannot connect to {url}: ")),
            "{err}"
        );
        assert!(err.ends_with(": is the server running?"), "{err}");
    }
}
