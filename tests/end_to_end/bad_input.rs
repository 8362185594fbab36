//! Every kind of bad input gets a clear ERROR with its code and a close code that fits, and
//! the server goes on serving others.

use referee_protocol::frame::encode_frame;
use referee_protocol::{ControlMessage, ErrorCode};
use referee_server::store::SessionStore;
use referee_tests::{
    pts_us, resume_message, session_end, start_message, Closed, RawClient, TestServer,
};

const W: u32 = 160;
const H: u32 = 120;

fn jpegs(n: u32) -> Vec<Vec<u8>> {
    referee_tests::small_jpegs(n, W, H)
}

fn frame(index: u64, jpeg: &[u8]) -> bytes::Bytes {
    encode_frame(index, pts_us(index), 0, jpeg).unwrap()
}

/// Checks the connection ended with one fatal ERROR of `code` and the matching close code,
/// and that the server then serves a complete new session.
async fn assert_refused(server: &TestServer, closed: Closed, code: ErrorCode, text: &str) {
    closed.assert_refused(code, text);

    let mut raw = RawClient::connect(server).await;
    raw.start(W, H).await;
    let jpeg = &jpegs(1)[0];
    raw.send_binary(frame(0, jpeg)).await;
    raw.send(&session_end(1, false, std::slice::from_ref(jpeg)))
        .await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete { frames_stored, .. } => {
                assert_eq!(frames_stored, 1);
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

async fn started(server: &TestServer) -> RawClient {
    let mut raw = RawClient::connect(server).await;
    raw.start(W, H).await;
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_where_a_frame_is_expected() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send(&ControlMessage::Signal {
        file_name: "s.txt".into(),
        text: "1.0 a\n".into(),
    })
    .await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::UnexpectedText,
        "SIGNAL (a text message) arrived in state receiving",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_where_text_is_expected() {
    let server = TestServer::start();
    let jpeg = &jpegs(1)[0];
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, jpeg)).await;
    raw.send(&session_end(1, true, std::slice::from_ref(jpeg)))
        .await;
    raw.send_binary(frame(1, jpeg)).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::UnexpectedBinary,
        "where SIGNAL is expected",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_type() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    raw.send_text(r#"{"type":"HELLO"}"#).await;
    let closed = raw.until_closed().await;
    assert_refused(&server, closed, ErrorCode::UnknownMessageType, "\"HELLO\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    raw.send_text("{\"type\": \"SESSION_START\", ").await;
    let closed = raw.until_closed().await;
    assert_refused(&server, closed, ErrorCode::MalformedMessage, "malformed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_before_session_start() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    raw.send_binary(frame(0, &jpegs(1)[0])).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameBeforeStart,
        "send SESSION_START first",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_index_out_of_order() {
    let server = TestServer::start();
    let js = jpegs(3);
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, &js[0])).await;
    raw.send_binary(frame(2, &js[2])).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameOutOfOrder,
        "frame 2 arrived in state receiving, but the next frame must be 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_the_limit() {
    let server = TestServer::start_with(|c| c.max_frame_bytes = 20_000);
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, &[0xFFu8; 30_000])).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameTooLarge,
        "limit of 20000 bytes",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crc_mismatch() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    let mut bad = frame(0, &jpegs(1)[0]).to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    raw.send_binary(bad).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::ChecksumMismatch,
        "frame 0: CRC32C",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payload_that_is_not_a_jpeg() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, b"GIF89a definitely not a jpeg"))
        .await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::InvalidFramePayload,
        "frame 0: the payload is not a JPEG",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jpeg_of_another_size_than_announced() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("wrongsize", 640, 480)).await;
    raw.recv().await;
    raw.send_binary(frame(0, &jpegs(1)[0])).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::InvalidFramePayload,
        "the JPEG is 160x120, but SESSION_START announced 640x480",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_session_start() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send(&start_message("again", W, H)).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::AlreadyStarted,
        "already has a session",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_message_too_large() {
    let server = TestServer::start_with(|c| c.max_signal_bytes = 1_000);
    let mut raw = started(&server).await;
    raw.send_text(&"x".repeat(200_000)).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::MessageTooLarge,
        "larger than the server's limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_larger_than_the_websocket_limit() {
    let server = TestServer::start_with(|c| {
        c.max_frame_bytes = 10_000;
        c.max_signal_bytes = 1_000;
    });
    let mut raw = started(&server).await;
    raw.send_binary(vec![0u8; 1_000_000]).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::MessageTooLarge,
        "larger than the server's limit",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_end_with_the_wrong_frame_count() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, &jpegs(1)[0])).await;
    raw.send(&session_end(5, false, &jpegs(1))).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameCountMismatch,
        "says 5 frames were sent, but the server received 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_signal_file() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, &jpegs(1)[0])).await;
    raw.send(&session_end(1, true, &jpegs(1))).await;
    raw.send(&ControlMessage::Signal {
        file_name: "bad.txt".into(),
        text: "0.0 start\nsoon touch\n".into(),
    })
    .await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::InvalidSignal,
        "line 2 (\"soon touch\")",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_that_does_not_match_the_stored_frames() {
    let server = TestServer::start();
    let js = jpegs(2);
    let mut raw = started(&server).await;
    raw.send_binary(frame(0, &js[0])).await;
    raw.send_binary(frame(1, &js[1])).await;
    // The client claims other frames than it sent.
    let claimed = vec![js[1].clone(), js[0].clone()];
    raw.send(&session_end(2, false, &claimed)).await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::DigestMismatch,
        "frames 0-1 differ from what the client sent",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_timestamp_that_does_not_increase() {
    let server = TestServer::start();
    let js = jpegs(3);
    let mut raw = started(&server).await;
    raw.send_binary(encode_frame(0, 0, 0, &js[0]).unwrap())
        .await;
    raw.send_binary(encode_frame(1, 40_000, 0, &js[1]).unwrap())
        .await;
    // A client that sends the same timestamp twice (e.g. 0 for every frame).
    raw.send_binary(encode_frame(2, 40_000, 0, &js[2]).unwrap())
        .await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameOutOfOrder,
        "frame 2 has pts_us 40000, not after the 40000 of frame 1 before it",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_frame_timestamp_that_is_negative() {
    let server = TestServer::start();
    let mut raw = started(&server).await;
    raw.send_binary(encode_frame(0, -1, 0, &jpegs(1)[0]).unwrap())
        .await;
    let closed = raw.until_closed().await;
    assert_refused(
        &server,
        closed,
        ErrorCode::FrameOutOfOrder,
        "frame 0 has pts_us -1: the first frame's timestamp must be 0 or more",
    )
    .await;
}

/// Resumes session `id` in `receiving`; the frames the server has.
async fn resume_receiving(server: &TestServer, id: &str, token: &str) -> (RawClient, u64) {
    let mut raw = RawClient::connect(server).await;
    raw.send(&resume_message(id, token)).await;
    match raw.recv().await {
        ControlMessage::SessionResumed { frames_stored, .. } => (raw, frames_stored),
        other => panic!("expected SESSION_RESUMED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_timestamps_are_checked_against_the_stored_frames_after_a_resume_and_a_restart() {
    let server = TestServer::start();
    let js = jpegs(4);
    let mut raw = RawClient::connect(&server).await;
    let (id, token) = raw.start_with_token("pts", W, H).await;
    for i in 0..2u64 {
        raw.send_binary(frame(i, &js[i as usize])).await;
    }
    loop {
        if let ControlMessage::Ack { frames_stored: 2 } = raw.recv().await {
            break;
        }
    }
    raw.drop_connection();
    tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    let server = tokio::task::block_in_place(|| server.restart());

    // After the restart, frame 2 must still come after frame 1's timestamp.
    let (mut raw, stored) = resume_receiving(&server, &id, &token).await;
    assert_eq!(stored, 2);
    raw.send_binary(encode_frame(2, pts_us(1), 0, &js[2]).unwrap())
        .await;
    let closed = raw.until_closed().await;
    let (code, message, _) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::FrameOutOfOrder, "{message}");
    assert!(
        message.contains(&format!(
            "frame 2 has pts_us {}, not after the {} of frame 1",
            pts_us(1),
            pts_us(1)
        )),
        "{message}"
    );
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 2, "{meta}");

    // Resumed again with the right timestamps: the session completes.
    let (mut raw, stored) = resume_receiving(&server, &id, &token).await;
    assert_eq!(stored, 2);
    for i in 2..4u64 {
        raw.send_binary(frame(i, &js[i as usize])).await;
    }
    raw.send(&session_end(4, false, &js)).await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete { frames_stored, .. } => {
                assert_eq!(frames_stored, 4);
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    let timestamps = server.store().frame_source(&id).unwrap().timestamps();
    assert_eq!(timestamps, (0..4).map(pts_us).collect::<Vec<_>>());
}
