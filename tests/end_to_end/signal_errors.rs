//! Each kind of mistake in a signal file (an unreadable time, a negative time, events out of
//! order, an event past the end of the video) is caught by the client before it connects,
//! and by the server with an `invalid_signal` ERROR, each naming the line and its text.

use referee_protocol::frame::encode_frame;
use referee_protocol::{ControlMessage, ErrorCode};
use referee_tests::{client_frames, make_video, run_client, session_end, RawClient, TestServer};

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
            raw.send_binary(encode_frame(i as u64, i as i64 * 33_333, 0, jpeg).unwrap())
                .await;
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
        // The session's frames are kept; nothing was processed.
        let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
        assert_eq!(meta["frames_stored"], 3, "{what}: {meta}");
        assert!(meta["links"].get("report_json").is_none(), "{what}: {meta}");
    }
}
