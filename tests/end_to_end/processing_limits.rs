//! Sessions that would take the server down when processed are refused or stopped, and the
//! server keeps serving: frames of more pixels than `--max-frame-pixels` (announced, or
//! claimed by a tiny JPEG's header), a frame rate below 1 fps, a session whose processing
//! stopped the server twice, a signal file of 100 000 events.

use referee_protocol::{ControlMessage, ErrorCode};
use referee_tests::{
    frame_message, http_request, make_video, resume_message, run_client, session_end,
    start_message, start_message_at, Closed, RawClient, TestServer,
};

const W: u32 = 160;
const H: u32 = 120;

fn jpegs(n: u32) -> Vec<Vec<u8>> {
    referee_tests::small_jpegs(n, W, H)
}

/// The connection ended with one fatal ERROR of `code` whose message contains every one of
/// `texts`, and the close code of `code`.
fn assert_refused(closed: &Closed, code: ErrorCode, texts: &[&str]) {
    assert_eq!(closed.errors.len(), 1, "{closed:?}");
    let (got, message, fatal) = &closed.errors[0];
    assert_eq!(*got, code, "{message}");
    assert!(fatal);
    for text in texts {
        assert!(
            message.contains(text),
            "{message:?} should contain {text:?}"
        );
    }
    assert_eq!(closed.close_code, Some(code.close_code()), "{closed:?}");
}

/// A session of `n` frames streamed beside, to its end: the server still serves everyone.
async fn a_normal_session_completes(server: &TestServer, n: u32) -> String {
    let frames = jpegs(n);
    let mut raw = RawClient::connect(server).await;
    let id = raw.start(W, H).await;
    for (i, jpeg) in frames.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    raw.send(&session_end(u64::from(n), false, &frames)).await;
    loop {
        match raw.recv().await {
            ControlMessage::Complete { frames_stored, .. } => {
                assert_eq!(frames_stored, u64::from(n));
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
    let (status, _) = tokio::task::block_in_place(|| server.get_json("/health"));
    assert_eq!(status, 200);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_of_more_pixels_than_the_limit_are_refused_at_session_start() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("huge", 8000, 8000)).await;
    assert_refused(
        &raw.until_closed().await,
        ErrorCode::FrameTooLargePixels,
        &["8000x8000", "limit of 8847360 pixels", "--max-frame-pixels"],
    );
    // Nothing was created for it.
    assert!(server.session_ids().is_empty());

    // 4K is within the default limit.
    let mut raw = RawClient::connect(&server).await;
    raw.start(4096, 2160).await;
    raw.drop_connection();
    a_normal_session_completes(&server, 1).await;

    // The limit is the operator's.
    let server = TestServer::start_with(|c| c.max_frame_pixels = 640 * 480);
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("hd", 1280, 720)).await;
    assert_refused(
        &raw.until_closed().await,
        ErrorCode::FrameTooLargePixels,
        &["1280x720", "limit of 307200 pixels"],
    );
    a_normal_session_completes(&server, 1).await;
}

/// `jpeg` with the size in its SOF header replaced by `width`×`height`.
fn claiming(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut out = jpeg.to_vec();
    let sof = out
        .windows(2)
        .position(|w| w[0] == 0xFF && (0xC0..=0xC2).contains(&w[1]))
        .expect("no SOF marker");
    out[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_jpegs_whose_headers_claim_more_pixels_than_announced_are_refused() {
    let server = TestServer::start();
    let jpeg = claiming(&jpegs(1)[0], 8000, 8000);
    assert!(jpeg.len() < 10_000);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(W, H).await;
    raw.send_binary(frame_message(0, &jpeg)).await;
    assert_refused(
        &raw.until_closed().await,
        ErrorCode::InvalidFramePayload,
        &["the JPEG is 8000x8000", "announced 160x120"],
    );
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 0);
    a_normal_session_completes(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_rate_below_one_is_refused() {
    let server = TestServer::start();
    for fps in [0.5, 1e-300] {
        let mut raw = RawClient::connect(&server).await;
        raw.send(&start_message_at("slow", W, H, fps)).await;
        assert_refused(
            &raw.until_closed().await,
            ErrorCode::InvalidSessionStart,
            &[&format!("fps {fps} must be 1 to 1000")],
        );
    }
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message_at("slowest", W, H, 1.0)).await;
    assert!(matches!(
        raw.recv().await,
        ControlMessage::SessionStarted { .. }
    ));
    raw.drop_connection();
    a_normal_session_completes(&server, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_a_lowered_limit_is_not_resumed() {
    let server = TestServer::start();
    let frames = jpegs(2);
    let mut raw = RawClient::connect(&server).await;
    let (id, token) = raw.start_with_token("lowered", W, H).await;
    for (i, jpeg) in frames.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    loop {
        if let ControlMessage::Ack { frames_stored: 2 } = raw.recv().await {
            break;
        }
    }
    raw.drop_connection();
    tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    let server = tokio::task::block_in_place(|| {
        server.restart_with(|c| c.max_frame_pixels = u64::from(W * H) - 1)
    });
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume_message(&id, &token)).await;
    assert_refused(
        &raw.until_closed().await,
        ErrorCode::FrameTooLargePixels,
        &[&id, "160x120", "limit of 19199 pixels"],
    );
    // Its frames are kept.
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_whose_processing_stopped_the_server_twice_is_failed_and_can_be_deleted() {
    let mut stopped = TestServer::start();
    let twice = a_normal_session_completes(&stopped, 3).await;
    let once = a_normal_session_completes(&stopped, 3).await;
    tokio::task::block_in_place(|| stopped.stop());
    // As if the server had stopped during processing: twice for one session, once for the
    // other.
    for (id, attempts) in [(&twice, 2), (&once, 1)] {
        let path = stopped.session_dir(id).join("session.json");
        let mut meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        meta["status"] = "processing".into();
        meta["processing_attempts"] = attempts.into();
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }
    let data_dir = stopped.data_dir.path().to_path_buf();
    let server = TestServer::start_with(move |c| c.data_dir = data_dir);

    let failed = tokio::task::block_in_place(|| server.wait_for_status(&twice, "failed"));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("processing stopped the server twice")
            && error.contains("the frames are kept")
            && error.contains(&format!("DELETE /api/sessions/{twice}")),
        "{error}"
    );
    assert_eq!(failed["frames_stored"], 3);
    // The other one runs once more, and completes.
    let complete = tokio::task::block_in_place(|| server.wait_for_status(&once, "complete"));
    assert_eq!(complete["processing_attempts"], 2, "{complete}");

    let r = tokio::task::block_in_place(|| {
        http_request(
            server.addr,
            "DELETE",
            &format!("/api/sessions/{twice}"),
            &[],
        )
    });
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(!stopped.session_dir(&twice).exists());
    assert!(stopped.session_dir(&once).is_dir());
    assert_eq!(
        tokio::task::block_in_place(|| server.get_json(&format!("/api/sessions/{twice}"))).0,
        404
    );
    a_normal_session_completes(&server, 1).await;
}

#[test]
fn a_signal_file_of_100_000_events_makes_a_bounded_report_page() {
    let server = TestServer::start_with(|c| {
        c.token = Some("ingest-token".into());
        c.watch_token = Some("watch-token".into());
    });
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "many.avi", 30, 30.0, W as i32, H as i32);
    // As many short events as the default --max-signal-bytes (1 MiB) holds.
    let events = 95_000;
    let text: String = (0..events).map(|i| format!("0.{i:06} e\n")).collect();
    assert!(text.len() <= 1024 * 1024, "{}", text.len());
    let signal = work.path().join("many.txt");
    std::fs::write(&signal, &text).unwrap();
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--signal",
        signal.to_str().unwrap(),
        "--token",
        "ingest-token",
    ]);
    run.assert_success();
    let id = run.session_id();

    let auth = [("Authorization", "Bearer watch-token")];
    let report = http_request(
        server.addr,
        "GET",
        &format!("/api/sessions/{id}/report.json"),
        &auth,
    );
    assert_eq!(report.status, 200);
    assert_eq!(
        report.json()["events"].as_array().map(Vec::len),
        Some(events)
    );
    for path in [
        format!("/api/sessions/{id}/report.html?token=watch-token"),
        format!("/api/sessions/{id}/report.html"),
    ] {
        let page = http_request(server.addr, "GET", &path, &auth);
        assert_eq!(page.status, 200, "{path}: {}", page.text());
        let html = page.text();
        assert!(
            html.len() < referee_server::pipeline::MAX_REPORT_HTML_BYTES,
            "{path}: {} bytes",
            html.len()
        );
        assert!(html.ends_with("</html>\n"), "{path}: the page is cut");
        assert!(
            html.contains(&format!(
                "The first 500 of {events} events are shown: <a href=\"report.json"
            )),
            "{path}"
        );
        assert_eq!(html.matches("<tr class=\"event\"").count(), 500, "{path}");
    }
}
