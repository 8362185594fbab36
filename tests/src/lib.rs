//! The end-to-end test harness: a real server on port 0 with a temporary data directory, the
//! real client binary, a raw WebSocket peer for misbehaving clients, and a minimal HTTP GET.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod load_balancer;
pub mod postgres;
pub mod proxy;
pub mod s3;
pub mod server_process;
pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use referee_protocol::{ControlMessage, ErrorCode};
use referee_server::store::{LocalStore, SessionStore};
use referee_server::{AppState, Config};
use tokio::net::TcpStream as AsyncTcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A real server on 127.0.0.1 and a free port, with its own runtime and temporary data
/// directory. Stops when dropped.
/// The ingest token of [`TestServer::start_with_tokens`].
pub const INGEST_TOKEN: &str = "ingest-token";
/// Its watch token.
pub const WATCH_TOKEN: &str = "watch-token";

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: std::sync::Arc<tempfile::TempDir>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// Starts a server whose configuration `adjust` may change (limits, window...).
    pub fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_in(std::sync::Arc::new(tempfile::tempdir().unwrap()), adjust)
    }

    /// Starts a server with an ingest token ([`INGEST_TOKEN`]) and a watch token
    /// ([`WATCH_TOKEN`]).
    pub fn start_with_tokens() -> Self {
        Self::start_with(|c| {
            c.token = Some(INGEST_TOKEN.into());
            c.watch_token = Some(WATCH_TOKEN.into());
        })
    }

    /// Streams `video` and `signal` with the real client (and `extra` arguments) and waits
    /// for it to finish: the run, checked to have succeeded.
    pub fn stream_files(&self, video: &Path, signal: &Path, extra: &[&str]) -> ClientRun {
        let url = self.http_url();
        let mut args = vec![
            url.as_str(),
            "--video",
            video.to_str().unwrap(),
            "--signal",
            signal.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let run = run_client(&args);
        run.assert_success();
        run
    }

    /// Stops this server and starts a new one on the same data directory, as after a
    /// restart.
    pub fn restart(self) -> Self {
        self.restart_with(|_| {})
    }

    /// Like [`TestServer::restart`], with a configuration `adjust` may change (e.g. to keep
    /// the webhooks of the first run).
    pub fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        self.stop();
        Self::start_in(std::sync::Arc::clone(&self.data_dir), adjust)
    }

    /// Shuts the server down (as on SIGTERM) and waits until it has.
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }

    fn start_in(
        data_dir: std::sync::Arc<tempfile::TempDir>,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::new(
            "127.0.0.1:0".parse().unwrap(),
            data_dir.path().to_path_buf(),
        );
        // Tests may run on a nearly full disk; the floor has its own test.
        config.min_free_disk_bytes = 0;
        adjust(&mut config);
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let settings = config.settings().unwrap();
                let listener = tokio::net::TcpListener::bind(settings.listen)
                    .await
                    .unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let state = AppState::new(settings).unwrap();
                referee_server::serve(listener, state, async {
                    let _ = shutdown_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        Self {
            addr,
            data_dir,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/stream", self.addr)
    }

    /// The server's store, to read what it stored.
    pub fn store(&self) -> LocalStore {
        LocalStore::open(self.data_dir.path()).unwrap()
    }

    /// The directory of a session.
    pub fn session_dir(&self, id: &str) -> PathBuf {
        self.data_dir.path().join("sessions").join(id)
    }

    /// `GET path` as JSON, with the status code.
    pub fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let (status, body) = http_get(self.addr, path);
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Waits until session `id` has `status` (as the HTTP API shows it), returning its JSON.
    pub fn wait_for_status(&self, id: &str, status: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (_, json) = self.get_json(&format!("/api/sessions/{id}"));
            if json["status"] == status {
                return json;
            }
            assert!(
                Instant::now() < deadline,
                "session {id} never reached status {status}; last seen: {json}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until `n` sessions are live (receiving or processing), as `/health` counts them.
    pub fn wait_for_active(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, json) = self.get_json("/health");
            if json["active_sessions"] == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server never had {n} active sessions; last seen: {json}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The ids of every session, newest first.
    /// Creates a session ahead of its upload (`POST /api/sessions`, on a server without
    /// tokens): its id.
    pub fn create_session_ahead(&self) -> String {
        let created = http_request(
            self.addr,
            "POST",
            "/api/sessions",
            &[("Content-Length", "0")],
        );
        assert_eq!(created.status, 201, "{}", created.text());
        created.json()["id"].as_str().unwrap().to_string()
    }

    pub fn session_ids(&self) -> Vec<String> {
        self.store()
            .list()
            .unwrap()
            .into_iter()
            .map(|m| m.id)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.1 GET: the status code and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// A minimal HTTP/1.1 GET: the status code and the body, or what failed (for the bench,
/// which waits for a server to answer and measures it under load).
pub fn try_http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `POST path` with a JSON `body`: the status code and the body as JSON.
pub fn http_post_json(addr: SocketAddr, path: &str, body: &str) -> (u16, serde_json::Value) {
    let length = body.len().to_string();
    let headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", length.as_str()),
    ];
    let response = http_send(addr, "POST", path, &headers, body.as_bytes());
    (response.status, response.json())
}

/// A Server-Sent Events stream whose response has begun: the server subscribed it to the
/// events before it answered, so no event that happens from now on is missed.
pub struct SseStream {
    reader: std::io::BufReader<TcpStream>,
    deadline: Instant,
}

impl SseStream {
    /// Asks for the stream at `path` and waits for the response's headers; the stream ends
    /// after `timeout` at the latest.
    pub fn open(addr: SocketAddr, path: &str, timeout: Duration) -> Self {
        use std::io::BufRead;
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            let read = reader.read_line(&mut line).unwrap();
            if read == 0 || line == "\r\n" {
                break;
            }
        }
        Self {
            reader,
            deadline: Instant::now() + timeout,
        }
    }

    /// Reads events until one named in `until` (or the end of the stream, or the timeout):
    /// the `(event, data)` pairs seen, in order.
    pub fn until(self, until: &[&str]) -> Vec<(String, serde_json::Value)> {
        use std::io::BufRead;
        let mut events = Vec::new();
        let mut name = String::new();
        for line in self.reader.lines() {
            let Ok(line) = line else { break };
            if let Some(event) = line
                .strip_prefix("event: ")
                .or_else(|| line.strip_prefix("event:"))
            {
                name = event.trim().to_string();
            } else if let Some(data) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                let value = serde_json::from_str(data.trim())
                    .unwrap_or(serde_json::Value::String(data.trim().to_string()));
                events.push((name.clone(), value));
                if until.contains(&name.as_str()) {
                    break;
                }
            }
            if Instant::now() > self.deadline {
                break;
            }
        }
        events
    }
}

/// Reads a Server-Sent Events stream at `path` until an event named in `until` (or the end of
/// the stream, or `timeout`): the `(event, data)` pairs seen, in order.
pub fn sse_events(
    addr: SocketAddr,
    path: &str,
    until: &[&str],
    timeout: Duration,
) -> Vec<(String, serde_json::Value)> {
    SseStream::open(addr, path, timeout).until(until)
}

/// The path of a binary of this workspace, built next to the test executable.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the binaries first with `cargo build --workspace --bins`",
        path.display()
    );
    path
}

/// Runs the real `referee-client` with `args`, without a terminal.
pub fn run_client(args: &[&str]) -> ClientRun {
    let output = Command::new(workspace_binary("referee-client"))
        .args(args)
        .env("REFEREE_LOG_LEVEL", "info")
        .env("REFEREE_STATE_DIR", test_state_dir())
        .output()
        .unwrap();
    ClientRun::from(output)
}

/// Where test clients keep their resume state (not in the user's home).
pub fn test_state_dir() -> PathBuf {
    std::env::temp_dir().join("referee-test-client-state")
}

/// What a client run did.
pub struct ClientRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for ClientRun {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl ClientRun {
    pub fn assert_success(&self) {
        assert_eq!(self.code, Some(0), "client failed:\n{}", self.transcript());
    }

    pub fn assert_failure(&self) {
        assert_ne!(
            self.code,
            Some(0),
            "client should fail:\n{}",
            self.transcript()
        );
    }

    pub fn transcript(&self) -> String {
        format!("--- stdout\n{}--- stderr\n{}", self.stdout, self.stderr)
    }

    /// The session id from the `Session started: ID` line.
    pub fn session_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("Session started: "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no session id in the output:\n{}", self.transcript()))
            .to_string()
    }
}

/// The session id from the client's `Processing complete: session ID, ...` line in `stdout`.
pub fn completed_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("Processing complete: session "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no completed session in:\n{stdout}"))
        .to_string()
}

/// A raw WebSocket peer, to play a client that misbehaves.
pub struct RawClient {
    ws: WebSocketStream<MaybeTlsStream<AsyncTcpStream>>,
}

/// What a raw client saw when the server closed the connection.
#[derive(Debug)]
pub struct Closed {
    pub errors: Vec<(ErrorCode, String, bool)>,
    pub close_code: Option<u16>,
}

impl Closed {
    /// Checks that the server sent one fatal ERROR of `code` whose message contains `text`,
    /// then closed with the code's close code.
    pub fn assert_refused(&self, code: ErrorCode, text: &str) {
        assert_eq!(self.errors.len(), 1, "{self:?}");
        let (got, message, fatal) = &self.errors[0];
        assert_eq!(*got, code, "{message}");
        assert!(fatal);
        assert!(
            message.contains(text),
            "{message:?} should contain {text:?}"
        );
        assert_eq!(self.close_code, Some(code.close_code()), "{self:?}");
    }
}

impl RawClient {
    pub async fn connect(server: &TestServer) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(server.ws_url())
            .await
            .unwrap();
        Self { ws }
    }

    pub async fn send(&mut self, msg: &ControlMessage) {
        self.ws.send(Message::text(msg.to_json())).await.unwrap();
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    pub async fn send_binary(&mut self, bytes: impl Into<bytes::Bytes>) {
        self.ws.send(Message::Binary(bytes.into())).await.unwrap();
    }

    /// The next control message from the server.
    pub async fn recv(&mut self) -> ControlMessage {
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("no message from the server within 30 s")
                .expect("the connection ended")
                .unwrap();
            match msg {
                Message::Text(text) => return ControlMessage::from_json(text.as_str()).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a control message, got {other:?}"),
            }
        }
    }

    /// Sends a SESSION_START and returns the session id from SESSION_STARTED.
    pub async fn start(&mut self, width: u32, height: u32) -> String {
        self.start_with_token("raw", width, height).await.0
    }

    /// Starts a session named `name`: its id and resume token.
    pub async fn start_with_token(
        &mut self,
        name: &str,
        width: u32,
        height: u32,
    ) -> (String, String) {
        self.send(&start_message(name, width, height)).await;
        match self.recv().await {
            ControlMessage::SessionStarted {
                session_id,
                resume_token,
                ..
            } => (session_id, resume_token),
            other => panic!("expected SESSION_STARTED, got {other:?}"),
        }
    }

    /// Reads until the server closes: every ERROR it sent and the close code.
    pub async fn until_closed(mut self) -> Closed {
        let mut errors = Vec::new();
        loop {
            let next = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("the server did not close the connection within 30 s");
            match next {
                Some(Ok(Message::Text(text))) => {
                    if let Ok(ControlMessage::Error {
                        code,
                        message,
                        fatal,
                    }) = ControlMessage::from_json(text.as_str())
                    {
                        errors.push((code, message, fatal));
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    return Closed {
                        errors,
                        close_code: frame.map(|f| u16::from(f.code)),
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    return Closed {
                        errors,
                        close_code: None,
                    }
                }
            }
        }
    }

    /// Drops the TCP connection without a close handshake.
    pub fn drop_connection(self) {
        drop(self.ws);
    }
}

/// The timestamp of frame `index` of a 30 fps session, as the reference client computes it:
/// timestamps must increase from frame to frame.
pub fn pts_us(index: u64) -> i64 {
    referee_protocol::frame::pts_us(index, 30.0)
}

/// The frame message of frame `index` of a 30 fps session, with its timestamp.
pub fn frame_message(index: u64, jpeg: &[u8]) -> bytes::Bytes {
    referee_protocol::frame::encode_frame(index, pts_us(index), 0, jpeg).unwrap()
}

/// A SESSION_END for frames with these JPEG payloads, with their digest.
pub fn session_end(frames_sent: u64, signal_follows: bool, jpegs: &[Vec<u8>]) -> ControlMessage {
    ControlMessage::SessionEnd {
        frames_sent,
        signal_follows,
        digest: referee_protocol::digest::FrameDigest::of(jpegs.iter().map(|j| crc32c::crc32c(j))),
    }
}

/// A SESSION_START for a `width`×`height` JPEG session at 30 fps.
/// A SESSION_RESUME of session `id` with its resume `token`.
pub fn resume_message(id: &str, token: &str) -> ControlMessage {
    ControlMessage::SessionResume {
        protocol_version: referee_protocol::PROTOCOL_VERSION,
        session_id: id.into(),
        resume_token: token.into(),
        upload: None,
    }
}

pub fn start_message(name: &str, width: u32, height: u32) -> ControlMessage {
    ControlMessage::SessionStart {
        protocol_version: referee_protocol::PROTOCOL_VERSION,
        name: name.into(),
        source: format!("{name}.avi"),
        fps: 30.0,
        width,
        height,
        frame_count: None,
        encoding: referee_protocol::FrameEncoding::Jpeg,
        quality: Some(90),
        session_id: None,
        upload: None,
        bout: None,
    }
}

/// The `SESSION_START` of camera `camera` of a bout (protocol version 2): starting a bout of
/// `cameras` when `bout_id` is `None`, else joining bout `bout_id`.
pub fn camera_start_message(
    name: &str,
    (width, height): (u32, u32),
    bout_id: Option<&str>,
    camera: &str,
    cameras: &[&str],
) -> ControlMessage {
    let mut message = start_message(name, width, height);
    if let ControlMessage::SessionStart {
        protocol_version,
        bout,
        ..
    } = &mut message
    {
        *protocol_version = referee_protocol::BOUT_PROTOCOL_VERSION;
        *bout = Some(referee_protocol::BoutCamera {
            bout_id: bout_id.map(str::to_string),
            camera: camera.into(),
            cameras: bout_id
                .is_none()
                .then(|| cameras.iter().map(|c| c.to_string()).collect()),
            offset_s: None,
        });
    }
    message
}

/// Makes a synthetic video (`.avi`, MJPEG) in `dir` and returns its path.
pub fn make_video(
    dir: &Path,
    name: &str,
    frames: u32,
    fps: f64,
    width: i32,
    height: i32,
) -> PathBuf {
    let path = dir.join(name);
    let spec = referee_sample_data::SyntheticVideo {
        frames,
        fps,
        width,
        height,
    };
    referee_sample_data::write_video(&path, &spec).unwrap();
    path
}

/// The JPEG frames the client sends for `video` without options that change them (no
/// `--quality`, `--resize` or `--reencode`): a Motion-JPEG video's own frames as stored
/// (passthrough), any other video's frames re-encoded at the default quality. Made with the
/// client's own library.
pub fn default_frames(video: &Path) -> Vec<Vec<u8>> {
    use referee_client::pipeline::{FrameOptions, Frames};
    let mut next: Box<dyn FnMut() -> Option<referee_client::source::EncodedFrame>> =
        match Frames::open(video, FrameOptions::default()).unwrap() {
            Frames::Passthrough { mut reader, .. } => {
                Box::new(move || reader.next_frame().unwrap())
            }
            Frames::Reencode { mut source, .. } => Box::new(move || source.next_frame().unwrap()),
        };
    let mut frames = Vec::new();
    while let Some(frame) = next() {
        assert_eq!(frame.index, frames.len() as u64);
        frames.push(frame.jpeg);
    }
    frames
}

/// The JPEG frames the client sends for `video` at `quality`, made with the client's own
/// library.
pub fn client_frames(video: &Path, quality: u8) -> Vec<Vec<u8>> {
    let mut source = referee_client::source::VideoSource::open(video, quality).unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = source.next_frame().unwrap() {
        assert_eq!(frame.index, frames.len() as u64);
        frames.push(frame.jpeg);
    }
    frames
}

/// `n` JPEG frames of `width`×`height` from a synthetic 30 fps video, as the client sends
/// them at quality 90.
pub fn small_jpegs(n: u32, width: u32, height: u32) -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", n, 30.0, width as i32, height as i32);
    client_frames(&video, 90)
}

/// A SESSION_START for a `width`×`height` JPEG session at `fps`.
pub fn start_message_at(name: &str, width: u32, height: u32, fps: f64) -> ControlMessage {
    let mut message = start_message(name, width, height);
    if let ControlMessage::SessionStart { fps: rate, .. } = &mut message {
        *rate = fps;
    }
    message
}

/// An HTTP response: status, headers (names in lower case) and body.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A minimal HTTP/1.1 request (`GET`, `HEAD`, `DELETE`...) with extra `headers`; the body is
/// kept as bytes, and a chunked body is decoded.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    http_send(addr, method, path, headers, &[])
}

/// [`http_request`] with a request `body` (give its `Content-Length` in `headers`).
pub fn http_send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers in the response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Decodes a chunked HTTP/1.1 body.
pub(crate) fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&rest[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Where tests leave files for people to look at: `target/test-artifacts/`.
pub fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/end_to_end-... -> target/
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The headless Chromium of the test machine (`scripts/install-deps.sh` installs it).
pub fn chromium() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "chromium is not installed, and the report page tests need it: run scripts/install-deps.sh \
         (or `apt-get install chromium`)"
    );
}

/// Chromium's flags for the tests: headless, and nothing reaching the network but the pages
/// opened (no updates, no sync, no QUIC).
pub const HEADLESS_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// Runs headless Chromium on `url` with `extra` flags (e.g. `--dump-dom`), with a fresh
/// profile and nothing reaching the network but `url`; returns its stdout.
pub fn run_chromium(url: &str, extra: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(chromium())
        .args(HEADLESS_FLAGS)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Read stdout on a thread, so that a large DOM never blocks Chromium on a full pipe.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`: `(cert, key)`.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// A port of 127.0.0.1 free a moment ago, for a server the tests start that cannot take port 0.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
