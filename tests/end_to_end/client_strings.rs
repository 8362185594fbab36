//! What a client says about itself (names, file names, messages, digests, session ids) is
//! bounded and checked: any name a person types works, nothing a client sends reaches a log
//! line unescaped or takes a session that is not its own, and one rule decides each refusal.

use std::time::{Duration, Instant};

use referee_protocol::digest::FrameDigest;
use referee_protocol::{ControlMessage, ErrorCode};
use referee_tests::{
    client_frames, frame_message, http_post_json, make_video, run_client, session_end,
    start_message, test_state_dir, RawClient, TestServer,
};

const W: u32 = 160;
const H: u32 = 120;

fn jpegs(n: u32) -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    client_frames(
        &make_video(work.path(), "v.avi", n, 30.0, W as i32, H as i32),
        90,
    )
}

/// Streams `frames` into a new raw session to the end: the session's COMPLETE.
async fn complete_session(server: &TestServer, raw: &mut RawClient, frames: &[Vec<u8>]) {
    for (i, jpeg) in frames.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    raw.send(&session_end(frames.len() as u64, false, frames))
        .await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete {
                frames_stored,
                directory,
                session_id,
                ..
            } => {
                assert_eq!(frames_stored, frames.len() as u64);
                // Where the results are, never where the server keeps its data.
                assert_eq!(directory, format!("sessions/{session_id}"));
                let data_dir = server.data_dir.path().display().to_string();
                assert!(!directory.contains(&data_dir), "{directory}");
                return;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_name_or_any_text_a_person_types_is_a_session_name() {
    let server = TestServer::start();
    for name in [
        "a".repeat(43),
        "Final, pool A — piste 3 (Épée)".into(),
        "x".repeat(200),
    ] {
        let (status, body) = http_post_json(
            server.addr,
            "/api/sessions",
            &serde_json::json!({ "name": name }).to_string(),
        );
        assert_eq!(status, 201, "{name}: {body}");
        assert_eq!(body["name"], name.as_str());
        let id = body["id"].as_str().unwrap();
        assert!(referee_protocol::text::valid_id(id), "{id}");
        assert_eq!(body["created_ahead"], true);
        let (status, shown) = server.get_json(&format!("/api/sessions/{id}"));
        assert_eq!(status, 200);
        assert_eq!(shown["name"], name.as_str());
    }
    // Over 200 characters, or with a control character: a clear 400.
    for (name, why) in [
        ("y".repeat(201), "201 characters"),
        ("a\nb".into(), "control character"),
    ] {
        let (status, body) = http_post_json(
            server.addr,
            "/api/sessions",
            &serde_json::json!({ "name": name }).to_string(),
        );
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], "invalid_name");
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }

    // The same with a SESSION_START: the full name is kept, the id is short.
    let mut raw = RawClient::connect(&server).await;
    let long = "Quart de finale, piste bleue — Dupont contre Martin".to_string();
    let (id, _) = raw.start_with_token(&long, W, H).await;
    assert!(
        referee_protocol::text::valid_id(&id) && id.len() <= 64,
        "{id}"
    );
    complete_session(&server, &mut raw, &jpegs(2)).await;
    let (_, shown) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(shown["name"], long.as_str());
}

#[test]
fn the_client_names_a_session_after_a_long_video_file_name() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let stem = "finale épée hommes — tableau de 8, piste rouge, 2026-12-01 (caméra 1)";
    let video = make_video(work.path(), &format!("{stem}.avi"), 6, 30.0, 160, 120);
    let run = run_client(&[&server.ws_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();
    let (_, shown) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(shown["name"], stem, "{}", run.transcript());
    assert_eq!(shown["status"], "complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_string_is_bounded_and_control_characters_are_refused_in_names() {
    let server = TestServer::start();

    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("red\u{1b}[31m", W, H)).await;
    raw.until_closed()
        .await
        .assert_refused(ErrorCode::InvalidSessionStart, "control character");

    let mut start = start_message("s", W, H);
    if let ControlMessage::SessionStart { source, .. } = &mut start {
        *source = "v".repeat(5000);
    }
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start).await;
    raw.until_closed()
        .await
        .assert_refused(ErrorCode::InvalidSessionStart, "source is 5000 bytes long");

    // A signal file's name, once the frames are in.
    let frames = jpegs(1);
    let mut raw = RawClient::connect(&server).await;
    raw.start(W, H).await;
    raw.send_binary(frame_message(0, &frames[0])).await;
    raw.send(&session_end(1, true, &frames)).await;
    raw.send(&ControlMessage::Signal {
        file_name: "n".repeat(3000),
        text: "0.0 start\n".into(),
    })
    .await;
    raw.until_closed()
        .await
        .assert_refused(ErrorCode::MalformedMessage, "file_name is 3000 bytes long");

    // A client's ERROR message.
    let mut raw = RawClient::connect(&server).await;
    raw.start(W, H).await;
    raw.send(&ControlMessage::error(
        ErrorCode::SourceFailed,
        "m".repeat(10_000),
        false,
    ))
    .await;
    raw.until_closed()
        .await
        .assert_refused(ErrorCode::MalformedMessage, "message is 10000 bytes long");

    // The server goes on serving.
    let mut raw = RawClient::connect(&server).await;
    raw.start(W, H).await;
    complete_session(&server, &mut raw, &frames).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_start_out_of_its_types_is_refused_like_one_out_of_range() {
    let server = TestServer::start();
    let start = |extra: &str| {
        format!(
            r#"{{"type":"SESSION_START","protocol_version":1,"name":"n","source":"s.mp4","fps":30,"width":{W},"height":{H},"encoding":"jpeg"{extra}}}"#
        )
    };
    for (extra, field) in [
        (r#","quality":300"#, "300"),
        (r#","quality":101"#, "quality 101"),
        (r#","frame_count":-1"#, "-1"),
    ] {
        let mut raw = RawClient::connect(&server).await;
        raw.send_text(&start(extra)).await;
        raw.until_closed()
            .await
            .assert_refused(ErrorCode::InvalidSessionStart, field);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_gets_a_close_frame() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(W, H).await;
    raw.send(&ControlMessage::error(
        ErrorCode::SourceFailed,
        "cannot read frame 7 of cam.mp4\u{1b}[2J",
        true,
    ))
    .await;
    let closed = raw.until_closed().await;
    // A closing handshake (1000), not a dropped socket (no close frame: 1006 for the peer).
    assert_eq!(closed.close_code, Some(1000), "{closed:?}");
    assert!(closed.errors.is_empty(), "{closed:?}");
    server.wait_for_status(&id, "detached");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upper_case_digest_is_the_same_digest_and_a_malformed_one_is_named() {
    let server = TestServer::start();
    let frames = jpegs(3);
    let mut raw = RawClient::connect(&server).await;
    raw.start(W, H).await;
    for (i, jpeg) in frames.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    let mut digest = FrameDigest::of(frames.iter().map(|j| crc32c::crc32c(j)));
    digest.blocks = digest.blocks.iter().map(|b| b.to_uppercase()).collect();
    raw.send(&ControlMessage::SessionEnd {
        frames_sent: 3,
        signal_follows: false,
        digest,
    })
    .await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete { frames_stored, .. } => {
                assert_eq!(frames_stored, 3);
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }

    let mut raw = RawClient::connect(&server).await;
    raw.start(W, H).await;
    raw.send_binary(frame_message(0, &frames[0])).await;
    raw.send(&ControlMessage::SessionEnd {
        frames_sent: 1,
        signal_follows: false,
        digest: FrameDigest {
            block_frames: 1024,
            blocks: vec!["not-hex!".into()],
        },
    })
    .await;
    raw.until_closed().await.assert_refused(
        ErrorCode::MalformedMessage,
        "digest block 0 is \"not-hex!\"",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_start_never_takes_over_an_upload_that_was_not_created_ahead() {
    let server = TestServer::start();
    // A client's upload that has stored no frame yet.
    let mut owner = RawClient::connect(&server).await;
    let id = owner.start(W, H).await;
    // Another connection names it in a SESSION_START.
    let mut other = RawClient::connect(&server).await;
    let mut start = start_message("thief", W, H);
    if let ControlMessage::SessionStart { session_id, .. } = &mut start {
        *session_id = Some(id.clone());
    }
    other.send(&start).await;
    other
        .until_closed()
        .await
        .assert_refused(ErrorCode::AlreadyStarted, "already has an upload");
    // The owner's upload goes on, untouched.
    complete_session(&server, &mut owner, &jpegs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_created_ahead_count_against_the_limit_and_expire_unused() {
    let server = TestServer::start_with(|c| {
        c.max_sessions = 2;
        c.created_expiry_secs = 3600;
    });
    let first = server.create_session_ahead();
    let _second = server.create_session_ahead();
    let (status, body) = http_post_json(server.addr, "/api/sessions", "{}");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "server_busy");
    assert!(
        body["message"].as_str().unwrap().contains("created ahead"),
        "{body}"
    );
    // A new upload is refused too; one into a session created ahead is not.
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("new", W, H)).await;
    raw.until_closed()
        .await
        .assert_refused(ErrorCode::ServerBusy, "created ahead");
    let mut raw = RawClient::connect(&server).await;
    let mut start = start_message("into_first", W, H);
    if let ControlMessage::SessionStart { session_id, .. } = &mut start {
        *session_id = Some(first.clone());
    }
    raw.send(&start).await;
    match raw.recv().await {
        ControlMessage::SessionStarted { session_id, .. } => assert_eq!(session_id, first),
        other => panic!("expected SESSION_STARTED, got {other:?}"),
    }
    complete_session(&server, &mut raw, &jpegs(1)).await;

    // Created ahead and never streamed into: deleted once it expires.
    drop(server);
    let server = TestServer::start_with(|c| {
        c.created_expiry_secs = 0;
        c.cleanup_interval_secs = 1;
    });
    let unused = server.create_session_ahead();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, _) = server.get_json(&format!("/api/sessions/{unused}"));
        if status == 404 {
            break;
        }
        assert!(Instant::now() < deadline, "{unused} was never deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_client_builds_no_path_from_a_session_id_that_is_not_one() {
    let server = TestServer::start();
    let state = test_state_dir();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 2, 30.0, 160, 120);
    let run = run_client(&[
        &server.ws_url(),
        "--video",
        video.to_str().unwrap(),
        "--resume",
        "../../etc/passwd",
    ]);
    run.assert_failure();
    let text = run.transcript();
    assert!(text.contains("is not a session id"), "{text}");
    assert!(!state.join("../../etc/passwd.json").exists());
}
