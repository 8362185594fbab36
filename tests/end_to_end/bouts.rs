//! Bouts recorded by several cameras (protocol version 2): each camera a session of its own,
//! joined to its bout by the bout's id and its camera's name; the joining rules, each a clear
//! error; single-camera clients of version 1 unchanged.

use referee_protocol::{ControlMessage, ErrorCode};
use referee_tests::{
    camera_start_message, client_frames, frame_message, make_video, session_end, start_message,
    RawClient, TestServer,
};

const W: u32 = 160;
const H: u32 = 120;

/// Sends `start` on a new connection: the session id and bout id of its SESSION_STARTED.
async fn started(server: &TestServer, start: &ControlMessage) -> (RawClient, String, String) {
    let mut raw = RawClient::connect(server).await;
    raw.send(start).await;
    match raw.recv().await {
        ControlMessage::SessionStarted {
            session_id,
            bout_id: Some(bout_id),
            ..
        } => (raw, session_id, bout_id),
        other => panic!("expected SESSION_STARTED with a bout_id, got {other:?}"),
    }
}

/// Sends `start` on a new connection and checks that it is refused with `code`, saying `text`.
async fn refused(server: &TestServer, start: &ControlMessage, code: ErrorCode, text: &str) {
    let mut raw = RawClient::connect(server).await;
    raw.send(start).await;
    raw.until_closed().await.assert_refused(code, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cameras_of_a_bout_join_it_once_each_and_every_bad_join_is_a_clear_error() {
    let server = TestServer::start_with(|c| c.max_cameras = 3);
    let cameras = ["left", "right"];
    let start = |bout: Option<&str>, camera: &str| {
        camera_start_message("final", (W, H), bout, camera, &cameras)
    };
    let (mut left, left_id, bout) = started(&server, &start(None, "left")).await;

    // The same camera twice, one the bout was not started with, a bout that does not exist.
    refused(
        &server,
        &start(Some(&bout), "left"),
        ErrorCode::CameraTaken,
        &format!("is session {left_id} already"),
    )
    .await;
    refused(
        &server,
        &start(Some(&bout), "blades"),
        ErrorCode::UnknownCamera,
        "left, right, not blades",
    )
    .await;
    refused(
        &server,
        &start(Some("no_such_bout"), "right"),
        ErrorCode::BoutNotFound,
        "no bout",
    )
    .await;
    // A bout needs version 2; more cameras than the server takes.
    let mut old = start(None, "left");
    if let ControlMessage::SessionStart {
        protocol_version, ..
    } = &mut old
    {
        *protocol_version = 1;
    }
    refused(
        &server,
        &old,
        ErrorCode::InvalidSessionStart,
        "needs protocol_version 2",
    )
    .await;
    let four = camera_start_message("final", (W, H), None, "a", &["a", "b", "c", "d"]);
    refused(
        &server,
        &four,
        ErrorCode::TooManyCameras,
        "at most 3 (--max-cameras)",
    )
    .await;

    let (mut right, right_id, right_bout) = started(&server, &start(Some(&bout), "right")).await;
    assert_eq!(right_bout, bout);
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(
        &make_video(work.path(), "v.avi", 3, 30.0, W as i32, H as i32),
        90,
    );
    for raw in [&mut left, &mut right] {
        for (i, jpeg) in jpegs.iter().enumerate() {
            raw.send_binary(frame_message(i as u64, jpeg)).await;
        }
        raw.send(&session_end(3, false, &jpegs)).await;
    }
    for id in [&left_id, &right_id] {
        let done = server.wait_for_status(id, "complete");
        assert_eq!(done["bout"]["bout_id"], bout.as_str(), "{done}");
        assert_eq!(
            done["bout"]["cameras"],
            serde_json::json!(cameras),
            "{done}"
        );
    }
    let (_, report) = server.get_json(&format!("/api/sessions/{right_id}/report.json"));
    assert_eq!(report["camera"]["camera"], "right", "{report}");

    // Every camera has finished: none may join any more.
    let late = camera_start_message("final", (W, H), None, "a", &["a", "b"]);
    let (mut a, _, other_bout) = started(&server, &late).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        a.send_binary(frame_message(i as u64, jpeg)).await;
    }
    a.send(&session_end(3, false, &jpegs)).await;
    while !matches!(a.recv().await, ControlMessage::Complete { .. }) {}
    let join = camera_start_message("final", (W, H), Some(&other_bout), "b", &[]);
    refused(
        &server,
        &join,
        ErrorCode::BoutFinished,
        "has finished, without b",
    )
    .await;

    // A client of version 1, as before: no bout.
    let mut single = RawClient::connect(&server).await;
    single.send(&start_message("single", W, H)).await;
    match single.recv().await {
        ControlMessage::SessionStarted { bout_id: None, .. } => {}
        other => panic!("expected SESSION_STARTED without a bout, got {other:?}"),
    }
}
