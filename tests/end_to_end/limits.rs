//! Each configurable limit refuses with its own error code and a message naming the limit.

use referee_protocol::frame::encode_frame;
use referee_protocol::{ControlMessage, ErrorCode, ResumedState};
use referee_tests::{
    client_frames, frame_message, http_post_json, make_video, resume_message, start_message,
    RawClient, TestServer,
};

async fn refused_start(server: &TestServer, code: ErrorCode, text: &str) {
    let mut raw = RawClient::connect(server).await;
    raw.send(&start_message("limited", 160, 120)).await;
    let closed = raw.until_closed().await;
    let (got, message, _) = &closed.errors[0];
    assert_eq!(*got, code, "{message}");
    assert!(
        message.contains(text),
        "{message:?} should contain {text:?}"
    );
    assert_eq!(closed.close_code, Some(code.close_code()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_sessions_in_all_or_from_one_client() {
    let server = TestServer::start_with(|c| c.max_sessions = 1);
    let mut first = RawClient::connect(&server).await;
    first.start(160, 120).await;
    refused_start(&server, ErrorCode::ServerBusy, "its limit: try again later").await;

    let server = TestServer::start_with(|c| c.max_sessions_per_client = 1);
    let mut first = RawClient::connect(&server).await;
    first.start(160, 120).await;
    refused_start(&server, ErrorCode::ServerBusy, "the limit per client").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_below_the_floor_takes_no_new_session() {
    let server = TestServer::start_with(|c| c.min_free_disk_bytes = u64::MAX);
    refused_start(&server, ErrorCode::DiskFull, "below its floor").await;
    assert!(server.session_ids().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_larger_than_allowed_keeps_what_came_before() {
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 3, 30.0, 160, 120), 90);
    let limit = (jpegs[0].len() + jpegs[1].len()) as u64 + 10;
    let server = TestServer::start_with(|c| c.max_session_bytes = limit);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    let closed = raw.until_closed().await;
    let (code, message, _) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::SessionTooLarge, "{message}");
    assert!(message.contains("frame 2"), "{message}");
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 2);
}

/// Starts a session on a new connection: the connection, the id and the resume token.
async fn start_with_token(server: &TestServer) -> (RawClient, String, String) {
    let mut raw = RawClient::connect(server).await;
    let (id, token) = raw.start_with_token("limited", 160, 120).await;
    (raw, id, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_the_session_limit_is_told_to_retry_later_and_stays_resumable() {
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 1, 30.0, 160, 120), 90);
    let server = TestServer::start_with(|c| c.max_sessions = 1);
    // A session with one frame, then its connection drops: detached, no longer live.
    let (mut raw, id, token) = start_with_token(&server).await;
    raw.send_binary(encode_frame(0, 0, 0, &jpegs[0]).unwrap())
        .await;
    raw.drop_connection();
    let detached = tokio::task::block_in_place(|| {
        let meta = server.wait_for_status(&id, "detached");
        server.wait_for_active(0);
        meta
    });
    // Another session takes the server's only place.
    let (other, _, _) = start_with_token(&server).await;

    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume_message(&id, &token)).await;
    let closed = raw.until_closed().await;
    let (code, message, fatal) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::ServerBusy, "{message}");
    assert!(fatal);
    assert!(message.contains("its limit: try again later"), "{message}");
    assert!(
        message.contains(&format!("session {id} stays resumable until")),
        "{message}"
    );
    assert_eq!(closed.close_code, Some(ErrorCode::ServerBusy.close_code()));
    let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(meta["status"], "detached", "{meta}");
    assert_eq!(
        meta["resumable_until"], detached["resumable_until"],
        "{meta}"
    );
    assert_eq!(meta["resumes"], 0, "{meta}");

    // Once the place is free, the resume goes through.
    other.drop_connection();
    tokio::task::block_in_place(|| server.wait_for_active(0));
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume_message(&id, &token)).await;
    match raw.recv().await {
        ControlMessage::SessionResumed {
            state,
            frames_stored,
            ..
        } => assert_eq!((state, frames_stored), (ResumedState::Receiving, 1)),
        other => panic!("expected SESSION_RESUMED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_session_ahead_is_refused_when_the_server_is_full() {
    let server = TestServer::start_with(|c| c.max_sessions = 1);
    let (_first, _, _) = start_with_token(&server).await;
    let (status, body) =
        tokio::task::block_in_place(|| http_post_json(server.addr, "/api/sessions", "{}"));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "server_busy", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("its limit: try again later"), "{body}");
    assert_eq!(server.session_ids().len(), 1, "a session was created");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_session_ahead_is_refused_below_the_disk_floor() {
    let server = TestServer::start_with(|c| c.min_free_disk_bytes = u64::MAX);
    let (status, body) = http_post_json(server.addr, "/api/sessions", r#"{"name":"ahead"}"#);
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "disk_full", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("below its floor"), "{body}");
    assert!(server.session_ids().is_empty());
}
