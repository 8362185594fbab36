//! A connection driven in-process through [`serve_connection`], with the server's log lines
//! captured, for what the log tells the person running the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Cursor, Write};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message;
use futures_util::SinkExt;
use referee_protocol::digest::FrameDigest;
use referee_protocol::frame::encode_frame;

use super::receive::received_line;
use super::resume::stored_state;
use super::*;
use crate::store::{SessionMeta, SessionStatus};
use crate::Config;
use referee_protocol::{FrameEncoding, FrameHeader};

const W: u32 = 32;
const H: u32 = 16;

/// Log output, shared with the subscriber that writes it.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn jpeg() -> Vec<u8> {
    let img = image::RgbImage::from_pixel(W, H, image::Rgb([10, 200, 30]));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

fn text(msg: &ControlMessage) -> Message {
    Message::Text(msg.to_json().into())
}

/// A session start, `frames` frames and, if `end` says so, a SESSION_END without signal.
fn upload(frames: u64, end: bool) -> Vec<Message> {
    let jpeg = jpeg();
    let crc = FrameHeader::parse(&encode_frame(0, 0, 0, &jpeg).unwrap())
        .unwrap()
        .crc32c;
    let mut messages = vec![text(&ControlMessage::SessionStart {
        protocol_version: referee_protocol::PROTOCOL_VERSION,
        name: "logged".into(),
        source: "logged.avi".into(),
        fps: 30.0,
        width: W,
        height: H,
        frame_count: None,
        encoding: FrameEncoding::Jpeg,
        quality: Some(90),
        session_id: None,
        upload: None,
        bout: None,
    })];
    for i in 0..frames {
        let pts = referee_protocol::frame::pts_us(i, 30.0);
        messages.push(Message::Binary(encode_frame(i, pts, 0, &jpeg).unwrap()));
    }
    if end {
        messages.push(text(&ControlMessage::SessionEnd {
            frames_sent: frames,
            signal_follows: false,
            digest: FrameDigest::of((0..frames).map(|_| crc)),
        }));
    }
    messages
}

/// Serves one connection that sends `messages` and then drops; returns what the server
/// logged meanwhile and the server's state.
async fn serve(messages: Vec<Message>) -> (String, AppState, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.min_free_disk_bytes = 0;
    let app = AppState::new(config.settings().unwrap()).unwrap();
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut sent: Vec<Message> = Vec::new();
    let sink = (&mut sent).sink_map_err(|never| match never {});
    let stream = futures_util::stream::iter(messages.into_iter().map(Ok));
    serve_connection(sink, stream, app.clone(), "127.0.0.1:5000".parse().unwrap()).await;
    (logs.text(), app, dir)
}

#[tokio::test]
async fn the_frame_log_line_counts_frames_from_one() {
    let (logs, _app, _dir) = serve(upload(200, false)).await;
    for count in [100, 200] {
        assert!(
            logs.contains(&format!("received frame {count}, total {count}, ")),
            "{logs}"
        );
    }
    assert!(!logs.contains("received frame 99,"), "{logs}");
    assert!(!logs.contains("received frame 199,"), "{logs}");
}

#[test]
fn the_frame_log_line_comes_every_hundred_frames_of_the_session() {
    assert_eq!(received_line("s", 98, 0), None);
    assert_eq!(
        received_line("s", 99, 20_500_000).as_deref(),
        Some("Session s: received frame 100, total 100, 20.5 MB")
    );
    // After a resume at frame 150, the next line is at frame 200 still.
    assert!(received_line("s", 199, 0)
        .unwrap()
        .contains("frame 200, total 200"));
    assert_eq!(received_line("s", 200, 0), None);
}

#[tokio::test]
async fn a_disconnect_during_processing_is_logged_with_the_frames_stored() {
    let (logs, app, _dir) = serve(upload(3, true)).await;
    let line = logs
        .lines()
        .find(|l| l.contains("in state processing"))
        .unwrap_or_else(|| panic!("no line about the disconnect in processing:\n{logs}"));
    assert!(line.contains(" INFO "), "{line}");
    assert!(
        line.contains("3 frames stored, processing continues"),
        "{line}"
    );
    let id = app.store.blocking().list().unwrap()[0].id.clone();
    assert!(line.contains(&format!("Session {id}: ")), "{line}");
}

/// A client that reads its first `reads` messages, then nothing more: its socket's buffers
/// stay full, so every later send waits (for ever, without a send timeout).
struct StopsReading {
    reads: usize,
    got: Arc<Mutex<Vec<Message>>>,
}

impl futures_util::Sink<Message> for StopsReading {
    type Error = axum::Error;

    fn poll_ready(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        if self.got.lock().unwrap().len() < self.reads {
            std::task::Poll::Ready(Ok(()))
        } else {
            std::task::Poll::Pending
        }
    }

    fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.got.lock().unwrap().push(item);
        Ok(())
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_taken_for_gone_and_its_session_detached() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.min_free_disk_bytes = 0;
    config.send_timeout_secs = 1;
    // Neither a missed heartbeat nor the idle timeout may end the connection first.
    config.heartbeat_secs = 3600;
    let app = AppState::new(config.settings().unwrap()).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    // It reads SESSION_STARTED and one ACK, then nothing; it keeps the connection open.
    let sink = StopsReading {
        reads: 2,
        got: Arc::clone(&got),
    };
    let stream = futures_util::stream::iter(upload(20, false).into_iter().map(Ok))
        .chain(futures_util::stream::pending());
    let served = serve_connection(sink, stream, app.clone(), "127.0.0.1:5000".parse().unwrap());
    // Without a send timeout, the connection task waits for ever on its next send.
    tokio::time::timeout(Duration::from_secs(60), served)
        .await
        .expect("the connection task is still waiting on a client that reads nothing");
    assert_eq!(got.lock().unwrap().len(), 2);
    let meta = app.store.blocking().list().unwrap().remove(0);
    assert_eq!(meta.status, SessionStatus::Detached, "{meta:?}");
    let error = meta.error.unwrap_or_default();
    assert!(
        error.contains("the client stopped reading (a message could not be sent within 1 s)"),
        "{error}"
    );
}

#[test]
fn a_session_still_receiving_on_disk_resumes_after_the_frames_its_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::LocalStore::open(dir.path()).unwrap();
    let mut meta = SessionMeta::new("s".into(), "s".into(), SessionStatus::Receiving);
    store.create(&meta).unwrap();
    let mut sink = store.frame_sink("s", 0).unwrap();
    let jpeg = jpeg();
    for i in 0..10u64 {
        let message = encode_frame(i, i as i64, 0, &jpeg).unwrap();
        sink.append(&FrameHeader::parse(&message).unwrap(), &message)
            .unwrap();
    }
    sink.sync().unwrap();
    drop(sink);
    // The last state saved before the disk filled up counted 3 frames.
    meta.frames_stored = 3;
    let state = stored_state(&store, meta.clone()).unwrap();
    assert_eq!(state.frames_stored, 10);
    assert_eq!(state.bytes_stored, 10 * jpeg.len() as u64);
    // A detached session's saved count is the one it detached with.
    meta.status = SessionStatus::Detached;
    assert_eq!(stored_state(&store, meta).unwrap().frames_stored, 3);
}
