//! Each configurable limit refuses with its own error code and a message naming the limit.

use referee_protocol::frame::encode_frame;
use referee_protocol::ErrorCode;
use referee_tests::{client_frames, make_video, start_message, RawClient, TestServer};

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
        raw.send_binary(encode_frame(i as u64, 0, 0, jpeg).unwrap())
            .await;
    }
    let closed = raw.until_closed().await;
    let (code, message, _) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::SessionTooLarge, "{message}");
    assert!(message.contains("frame 2"), "{message}");
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 2);
}
