//! The client checks its inputs before connecting and fails with one clear line and a
//! non-zero exit code; no session is created for input it cannot use.

use referee_tests::{make_video, run_client, TestServer};

#[test]
fn missing_video_names_the_path_and_creates_no_session() {
    let server = TestServer::start();
    let run = run_client(&[&server.http_url(), "--video", "/nonexistent/bout.avi"]);
    run.assert_failure();
    assert!(
        run.stderr.contains("/nonexistent/bout.avi"),
        "{}",
        run.transcript()
    );
    assert!(server.session_ids().is_empty());
}

#[test]
fn unreadable_video_names_the_path_and_creates_no_session() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let fake = work.path().join("fake.avi");
    std::fs::write(&fake, b"this is not a video").unwrap();
    let run = run_client(&[&server.http_url(), "--video", fake.to_str().unwrap()]);
    run.assert_failure();
    assert!(run.stderr.contains("fake.avi"), "{}", run.transcript());
    assert!(server.session_ids().is_empty());
}

#[test]
fn missing_or_invalid_signal_file_is_reported_before_connecting() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let video = video.to_str().unwrap();

    let run = run_client(&[
        &server.http_url(),
        "--video",
        video,
        "--signal",
        "/nonexistent/s.txt",
    ]);
    run.assert_failure();
    assert!(
        run.stderr.contains("/nonexistent/s.txt"),
        "{}",
        run.transcript()
    );

    let bad = work.path().join("bad.txt");
    std::fs::write(&bad, "0.0 start\nsoon touch_left\n").unwrap();
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video,
        "--signal",
        bad.to_str().unwrap(),
    ]);
    run.assert_failure();
    assert!(run.stderr.contains("line 2"), "{}", run.transcript());
    assert!(run.stderr.contains("bad.txt"), "{}", run.transcript());

    // An event past the end of a 0.1 s video.
    let late = work.path().join("late.txt");
    std::fs::write(&late, "0.0 start\n9.5 touch_left\n").unwrap();
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video,
        "--signal",
        late.to_str().unwrap(),
    ]);
    run.assert_failure();
    assert!(
        run.stderr.contains("past the end of the video"),
        "{}",
        run.transcript()
    );

    assert!(server.session_ids().is_empty());
}

#[test]
fn unreachable_server_names_the_url() {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 2, 30.0, 160, 120);
    // Port 9 on loopback: nothing listens there.
    let run = run_client(&["http://127.0.0.1:9", "--video", video.to_str().unwrap()]);
    run.assert_failure();
    assert!(
        run.stderr.contains("ws://127.0.0.1:9/stream"),
        "{}",
        run.transcript()
    );
}

#[test]
fn a_server_error_is_shown_with_its_code() {
    // A server that keeps sessions small refuses the upload part way through: the client
    // says what the server said, with its code, and fails.
    let server = TestServer::start_with(|c| c.max_session_bytes = 20_000);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 30, 30.0, 320, 240);
    let run = run_client(&[&server.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_failure();
    let last = run.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("server error session_too_large") && last.contains("20000"),
        "{}",
        run.transcript()
    );
}

#[test]
fn a_frame_over_the_servers_limit_is_caught_by_the_client() {
    // A server that accepts only tiny frames: the client sees the limit in SESSION_STARTED
    // and says which frame is too large and what to do.
    let server = TestServer::start_with(|c| c.max_frame_bytes = 1_000);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 320, 240);
    let run = run_client(&[&server.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_failure();
    assert!(
        run.stderr.contains("frame 0 is") && run.stderr.contains("limit of 1000 bytes"),
        "{}",
        run.transcript()
    );
}
