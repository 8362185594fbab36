//! Each kind of mistake in a signal file (an unreadable time, a negative time, events out of
//! order, an event past the end of the video) is caught by the client before it connects,
//! and by the server with an `invalid_signal` ERROR, each naming the line and its text.

use referee_protocol::{ControlMessage, ErrorCode, ResumedState};
use referee_tests::{
    client_frames, frame_message, make_video, resume_message, run_client, session_end, RawClient,
    TestServer,
};

/// (what is wrong, file text, what the message must contain). The video lasts 0.1 s.
const MISTAKES: [(&str, &str, &[&str]); 4] = [
    (
        "unreadable time",
        "0.000 start\n0.05 touch\nsoon halt\n",
        &["line 3", "(\"soon halt\")", "cannot read the time \"soon\""],
    ),
    (
        "negative time",
        "# box\n-0.5 start\n",
        &["line 2", "(\"-0.5 start\")", "is negative"],
    ),
    (
        "out of order",
        "0.080 touch_left\n0.020 touch_right\n",
        &[
            "line 2",
            "(\"0.020 touch_right\")",
            "comes before the previous event at 0.080s",
        ],
    ),
    (
        "past the end",
        "0.000 start\n\n7.250 halt\n",
        &["line 3", "7.250s", "past the end of the video (0.100s)"],
    ),
];

#[test]
fn the_client_refuses_each_mistake_before_connecting() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    for (what, text, expected) in MISTAKES {
        let signal = work.path().join("box.txt");
        std::fs::write(&signal, text).unwrap();
        let run = run_client(&[
            &server.http_url(),
            "--video",
            video.to_str().unwrap(),
            "--signal",
            signal.to_str().unwrap(),
        ]);
        run.assert_failure();
        assert!(
            run.stderr.contains("box.txt"),
            "{what}: {}",
            run.transcript()
        );
        for part in expected {
            assert!(
                run.stderr.contains(part),
                "{what}: {part:?} in\n{}",
                run.transcript()
            );
        }
    }
    assert!(server.session_ids().is_empty(), "a session was opened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_each_mistake_with_invalid_signal() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 3, 30.0, 160, 120), 90);
    for (what, text, expected) in MISTAKES {
        let mut raw = RawClient::connect(&server).await;
        let id = raw.start(160, 120).await;
        for (i, jpeg) in jpegs.iter().enumerate() {
            raw.send_binary(frame_message(i as u64, jpeg)).await;
        }
        raw.send(&session_end(3, true, &jpegs)).await;
        raw.send(&ControlMessage::Signal {
            file_name: "box.txt".into(),
            text: text.into(),
        })
        .await;
        let closed = raw.until_closed().await;
        assert_eq!(closed.errors.len(), 1, "{what}: {closed:?}");
        let (code, message, fatal) = &closed.errors[0];
        assert_eq!(*code, ErrorCode::InvalidSignal, "{what}: {message}");
        assert!(fatal);
        assert!(
            message.contains("signal file \"box.txt\""),
            "{what}: {message}"
        );
        for part in expected {
            assert!(message.contains(part), "{what}: {part:?} in {message:?}");
        }
        assert_eq!(
            closed.close_code,
            Some(ErrorCode::InvalidSignal.close_code())
        );
        // The session's frames are kept; nothing was processed; the session is detached,
        // for the client to resume and send a corrected signal file.
        let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
        assert_eq!(meta["frames_stored"], 3, "{what}: {meta}");
        assert!(meta["links"].get("report_json").is_none(), "{what}: {meta}");
        assert!(meta["resumable_until"].is_string(), "{what}: {meta}");
        let error = meta["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("invalid_signal") && error.contains("awaiting_signal"),
            "{what}: {meta}"
        );
    }
}

/// Streams 3 frames and a SESSION_END announcing a signal; returns the id and resume token.
async fn upload_awaiting_signal(raw: &mut RawClient, jpegs: &[Vec<u8>]) -> (String, String) {
    let (id, token) = raw.start_with_token("refused", 160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    raw.send(&session_end(jpegs.len() as u64, true, jpegs))
        .await;
    loop {
        match raw.recv().await {
            ControlMessage::SessionEnded { .. } => return (id, token),
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

/// Resumes `id` and checks that the server waits for the signal file again.
async fn resume_awaiting_signal(server: &TestServer, id: &str, token: &str) -> RawClient {
    let mut raw = RawClient::connect(server).await;
    raw.send(&resume_message(id, token)).await;
    match raw.recv().await {
        ControlMessage::SessionResumed {
            state,
            frames_stored,
            ..
        } => {
            assert_eq!(state, ResumedState::AwaitingSignal);
            assert_eq!(frames_stored, 3);
        }
        other => panic!("expected SESSION_RESUMED, got {other:?}"),
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_refused_signal_the_client_resumes_and_sends_a_corrected_one() {
    let server = TestServer::start_with(|c| c.max_signal_bytes = 1_000);
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 3, 30.0, 160, 120), 90);
    let mut raw = RawClient::connect(&server).await;
    let (id, token) = upload_awaiting_signal(&mut raw, &jpegs).await;

    // A signal file larger than the server takes: refused, the session detached.
    let big = "0.000 start\n".repeat(200);
    raw.send(&ControlMessage::Signal {
        file_name: "box.txt".into(),
        text: big,
    })
    .await;
    let closed = raw.until_closed().await;
    assert_eq!(closed.errors[0].0, ErrorCode::MessageTooLarge, "{closed:?}");
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert!(meta["resumable_until"].is_string(), "{meta}");

    // Resumed: an invalid one is refused the same way.
    let mut raw = resume_awaiting_signal(&server, &id, &token).await;
    raw.send(&ControlMessage::Signal {
        file_name: "box.txt".into(),
        text: "0.000 start\n9.000 halt\n".into(),
    })
    .await;
    let closed = raw.until_closed().await;
    assert_eq!(closed.errors[0].0, ErrorCode::InvalidSignal, "{closed:?}");
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert!(meta["resumable_until"].is_string(), "{meta}");

    // Resumed again: the corrected file is processed to the end.
    let mut raw = resume_awaiting_signal(&server, &id, &token).await;
    raw.send(&ControlMessage::Signal {
        file_name: "box.txt".into(),
        text: "0.000 start\n0.050 touch_left\n".into(),
    })
    .await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete {
                frames_stored,
                events,
                ..
            } => {
                assert_eq!((frames_stored, events), (3, 2));
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "complete"));
    assert_eq!(meta["signal_file"], "box.txt", "{meta}");
    assert_eq!(meta["resumes"], 2, "{meta}");
}
