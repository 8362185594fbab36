//! Never lose a frame: connections cut at chosen and random points, a server killed and
//! restarted mid-stream, expired and wrong resume tokens, bearer-token auth.

use std::time::Duration;

use referee_protocol::frame::encode_frame;
use referee_protocol::{ControlMessage, ErrorCode};
use referee_server::store::SessionStore;
use referee_tests::proxy::{Cut, FaultProxy};
use referee_tests::server_process::ServerProcess;
use referee_tests::{
    client_frames, completed_id, default_frames, frame_message, make_video, resume_message,
    run_client, RawClient, TestServer,
};

/// Checks that session `id` holds exactly the frames the client sends from `video` (its own
/// JPEG frames: the test videos are Motion-JPEG).
pub(crate) fn assert_stored_exactly(server: &TestServer, id: &str, video: &std::path::Path) {
    let sent = default_frames(video);
    let mut stored = server.store().frame_source(id).unwrap();
    assert_eq!(
        stored.len(),
        sent.len() as u64,
        "frames stored (none twice, none missing)"
    );
    for (index, jpeg) in sent.iter().enumerate() {
        let frame = stored.read(index as u64).unwrap();
        assert!(
            frame.payload == jpeg[..],
            "frame {index} differs from what the client sent"
        );
    }
    let idx = std::fs::metadata(server.session_dir(id).join("frames.idx"))
        .unwrap()
        .len();
    assert_eq!(
        idx,
        24 * sent.len() as u64,
        "the index holds each frame once"
    );
}

async fn stream_through_cuts(cuts: Vec<Cut>, frames: u32) {
    let server = TestServer::start();
    let proxy = FaultProxy::start(server.addr, cuts.clone()).await;
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "cut.avi", frames, 30.0, 320, 240);
    let signal = work.path().join("cut.txt");
    std::fs::write(&signal, "0.5 touch_left\n1.0 halt\n").unwrap();
    let url = proxy.http_url();
    let run = tokio::task::block_in_place(|| {
        run_client(&[
            &url,
            "--video",
            video.to_str().unwrap(),
            "--signal",
            signal.to_str().unwrap(),
            "--verbose",
        ])
    });
    run.assert_success();
    assert_eq!(proxy.cuts_made(), cuts.len() as u64, "{}", run.transcript());
    let id = completed_id(&run.stdout);
    tokio::task::block_in_place(|| {
        let meta = server.wait_for_status(&id, "complete");
        assert_eq!(meta["frames_stored"], frames);
        assert_stored_exactly(&server, &id, &video);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_before_start_mid_frames_after_end_and_during_processing_lose_nothing() {
    stream_through_cuts(
        vec![
            Cut::DownstreamText("SESSION_STARTED"),
            Cut::Upstream(300_000),
            Cut::Upstream(900_000),
            Cut::DownstreamText("SESSION_ENDED"),
            Cut::DownstreamText("PROGRESS"),
        ],
        120,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_at_random_points_lose_nothing() {
    // A fixed list of pseudo-random seeds, so that a failure can be replayed.
    for seed in [7u64, 1234, 99_991] {
        let mut x = seed;
        let mut next = || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 33) % 1_400_000 + 1_000
        };
        let mut points: Vec<u64> = (0..3).map(|_| next()).collect();
        points.sort_unstable();
        stream_through_cuts(points.into_iter().map(Cut::Upstream).collect(), 90).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_created_ahead_survives_a_cut_before_session_started() {
    // The first SESSION_STARTED never reaches the client, so it has no resume token: it
    // starts the same session again, which stored nothing yet.
    let server = TestServer::start();
    let id = tokio::task::block_in_place(|| server.create_session_ahead());
    let proxy = FaultProxy::start(
        server.addr,
        vec![
            Cut::DownstreamText("SESSION_STARTED"),
            Cut::Upstream(200_000),
        ],
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "ahead.avi", 60, 30.0, 320, 240);
    let url = proxy.http_url();
    let run = tokio::task::block_in_place(|| {
        run_client(&[&url, "--video", video.to_str().unwrap(), "--session", &id])
    });
    run.assert_success();
    assert_eq!(proxy.cuts_made(), 2, "{}", run.transcript());
    assert_eq!(completed_id(&run.stdout), id);
    tokio::task::block_in_place(|| {
        let meta = server.wait_for_status(&id, "complete");
        assert_eq!(meta["frames_stored"], 60);
        assert_stored_exactly(&server, &id, &video);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_is_per_outage() {
    // Four outages, each lasting one failed attempt before the server answers again: two
    // attempts per outage are enough, though the whole upload needs eight.
    let server = TestServer::start();
    let cuts = vec![
        Cut::Upstream(200_000),
        Cut::Upstream(400_000),
        Cut::Upstream(600_000),
        Cut::Upstream(800_000),
    ];
    let proxy = FaultProxy::start(server.addr, cuts).await;
    proxy.refuse_after_each_cut(1);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "outages.avi", 120, 30.0, 320, 240);
    let url = proxy.http_url();
    let run = tokio::task::block_in_place(|| {
        run_client(&[
            &url,
            "--video",
            video.to_str().unwrap(),
            "--retries",
            "2",
            "--verbose",
        ])
    });
    run.assert_success();
    assert_eq!(proxy.cuts_made(), 4, "{}", run.transcript());
    assert_eq!(proxy.refused(), 4, "{}", run.transcript());
    assert_eq!(
        run.stdout.matches("(attempt 2)").count(),
        4,
        "each outage resumed at its second attempt:\n{}",
        run.transcript()
    );
    let id = completed_id(&run.stdout);
    tokio::task::block_in_place(|| {
        server.wait_for_status(&id, "complete");
        assert_stored_exactly(&server, &id, &video);
    });
}

#[test]
fn a_server_killed_mid_stream_comes_back_and_the_client_resumes() {
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data.path(), &[]);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 400, 30.0, 640, 480);
    let id = server.stream_across_a_kill(&video);

    // Every frame is there once, byte for byte.
    let store = referee_server::store::LocalStore::open(data.path()).unwrap();
    let sent = default_frames(&video);
    let mut stored = store.frame_source(&id).unwrap();
    assert_eq!(stored.len(), sent.len() as u64);
    for (index, jpeg) in sent.iter().enumerate() {
        assert!(
            stored.read(index as u64).unwrap().payload == jpeg[..],
            "frame {index}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_expired_resume_token_is_refused() {
    let server = TestServer::start_with(|c| {
        c.resume_grace_secs = 1;
        c.cleanup_interval_secs = 1;
    });
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 2, 30.0, 160, 120), 90);
    let mut raw = RawClient::connect(&server).await;
    let (id, token) = raw.start_with_token("r", 160, 120).await;
    raw.send_binary(encode_frame(0, 0, 0, &jpegs[0]).unwrap())
        .await;
    loop {
        if let ControlMessage::Ack { .. } = raw.recv().await {
            break;
        }
    }
    raw.drop_connection();
    tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));

    let resume = |token: &str| resume_message(&id, token);
    // A wrong token.
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume("not-the-token")).await;
    let closed = raw.until_closed().await;
    assert_eq!(closed.errors[0].0, ErrorCode::ResumeRefused, "{closed:?}");

    // An unknown session.
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume_message("20250101_000000_nope_abcde", &token))
        .await;
    let closed = raw.until_closed().await;
    assert_eq!(closed.errors[0].0, ErrorCode::SessionNotFound, "{closed:?}");

    // The right token, in time: resumed at frame 1.
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume(&token)).await;
    match raw.recv().await {
        ControlMessage::SessionResumed { frames_stored, .. } => assert_eq!(frames_stored, 1),
        other => panic!("{other:?}"),
    }
    raw.drop_connection();

    // After the grace period: abandoned, and the token no longer works.
    tokio::task::block_in_place(|| server.wait_for_status(&id, "abandoned"));
    let mut raw = RawClient::connect(&server).await;
    raw.send(&resume(&token)).await;
    let closed = raw.until_closed().await;
    assert_eq!(closed.errors[0].0, ErrorCode::ResumeExpired, "{closed:?}");
    assert!(closed.errors[0].1.contains("abandoned"), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_takes_over_from_a_stale_connection() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 3, 30.0, 160, 120), 90);
    let mut stale = RawClient::connect(&server).await;
    let (id, token) = stale.start_with_token("t", 160, 120).await;
    stale
        .send_binary(encode_frame(0, 0, 0, &jpegs[0]).unwrap())
        .await;
    loop {
        if let ControlMessage::Ack { .. } = stale.recv().await {
            break;
        }
    }
    // The status query works while the stale connection is held.
    let (status, meta) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!((status, meta["status"].as_str()), (200, Some("receiving")));
    assert!(
        meta.get("resume_token").is_none(),
        "the API must not show the token"
    );

    // A new connection resumes: the stale one is told and closed.
    let mut fresh = RawClient::connect(&server).await;
    fresh.send(&resume_message(&id, &token)).await;
    match fresh.recv().await {
        ControlMessage::SessionResumed { frames_stored, .. } => assert_eq!(frames_stored, 1),
        other => panic!("{other:?}"),
    }
    let closed = stale.until_closed().await;
    assert_eq!(
        closed.errors[0].0,
        ErrorCode::SessionTakenOver,
        "{closed:?}"
    );

    // The fresh connection finishes the session.
    for (i, jpeg) in jpegs.iter().enumerate().skip(1) {
        fresh
            .send_binary(referee_tests::frame_message(i as u64, jpeg))
            .await;
    }
    fresh
        .send(&referee_tests::session_end(3, false, &jpegs))
        .await;
    loop {
        match fresh.recv().await {
            ControlMessage::Complete { frames_stored, .. } => {
                assert_eq!(frames_stored, 3);
                break;
            }
            ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
            _ => {}
        }
    }
}

#[test]
fn the_client_restarted_with_resume_continues_its_session() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "long.avi", 300, 30.0, 640, 480);
    let state = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(referee_tests::workspace_binary("referee-client"))
        // Paced, so that it is still uploading when it is killed, however busy the machine.
        .args([
            &server.http_url(),
            "--video",
            video.to_str().unwrap(),
            "--max-fps",
            "60",
        ])
        .env("REFEREE_STATE_DIR", state.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let id = loop {
        let (_, list) = server.get_json("/api/sessions");
        if let Some(s) = list["sessions"].as_array().and_then(|a| a.first()) {
            if s["frames_stored"].as_u64().unwrap_or(0) > 20 {
                break s["id"].as_str().unwrap().to_string();
            }
        }
        assert!(std::time::Instant::now() < deadline, "no frame stored");
        std::thread::sleep(Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    server.wait_for_status(&id, "detached");

    // The restarted client finds the server away for two attempts (e.g. restarting) and
    // waits for it.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let proxy = runtime.block_on(FaultProxy::start(server.addr, Vec::new()));
    proxy.refuse_next(2);
    let output = std::process::Command::new(referee_tests::workspace_binary("referee-client"))
        .args([
            &proxy.http_url(),
            "--video",
            video.to_str().unwrap(),
            "--resume",
            &id,
        ])
        .env("REFEREE_STATE_DIR", state.path())
        .output()
        .unwrap();
    assert_eq!(proxy.refused(), 2);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("Resumed session {id} at frame")),
        "{stdout}"
    );
    server.wait_for_status(&id, "complete");
    assert_stored_exactly(&server, &id, &video);
}

#[test]
fn bearer_token_auth_refuses_missing_and_wrong_tokens() {
    let server = TestServer::start_with(|c| c.token = Some("s3cret-token".into()));
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let video = video.to_str().unwrap();

    let run = run_client(&[&server.http_url(), "--video", video]);
    run.assert_failure();
    assert!(run.stderr.contains("401"), "{}", run.transcript());
    let run = run_client(&[&server.http_url(), "--video", video, "--token", "wrong"]);
    run.assert_failure();
    assert!(run.stderr.contains("401"), "{}", run.transcript());
    assert!(server.session_ids().is_empty(), "no token, no session");
    // /health stays open.
    assert_eq!(server.get_json("/health").0, 200);

    let run = run_client(&[
        &server.http_url(),
        "--video",
        video,
        "--token",
        "s3cret-token",
    ]);
    run.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_frames_missing_after_a_crash_are_counted_as_lost() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 41, 30.0, 160, 120), 90);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate().take(40) {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    acked_up_to(&mut raw, 40).await;
    // The count on disk follows the acknowledgements during the upload (at most a second
    // behind them), not only when the upload ends.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    raw.send_binary(frame_message(40, &jpegs[40])).await;
    acked_up_to(&mut raw, 41).await;
    let dir = server.session_dir(&id);
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap()).unwrap();
    assert_eq!(saved["frames_stored"], 41, "{saved}");

    // A crash image of the data directory whose disk lost the last 31 acknowledged frames:
    // the server that starts on it says so.
    let image = tempfile::tempdir().unwrap();
    let copy = image.path().join("sessions").join(&id);
    std::fs::create_dir_all(&copy).unwrap();
    for name in ["session.json", "frames.log", "frames.idx"] {
        std::fs::copy(dir.join(name), copy.join(name)).unwrap();
    }
    let idx = std::fs::OpenOptions::new()
        .write(true)
        .open(copy.join("frames.idx"))
        .unwrap();
    idx.set_len(10 * 24).unwrap();
    let path = image.path().to_path_buf();
    let restarted = TestServer::start_with(move |c| c.data_dir = path);
    // Recovery runs in the background: once the session is detached, it is done.
    let meta = tokio::task::block_in_place(|| restarted.wait_for_status(&id, "detached"));
    let (_, metrics) =
        tokio::task::block_in_place(|| referee_tests::http_get(restarted.addr, "/metrics"));
    assert!(
        metrics.contains("referee_frames_lost_total 31"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("lost"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(meta["frames_stored"], 10);
    raw.drop_connection();
}

/// Reads the server's messages until an ACK of at least `n` frames.
async fn acked_up_to(raw: &mut RawClient, n: u64) {
    loop {
        if let ControlMessage::Ack { frames_stored } = raw.recv().await {
            if frames_stored >= n {
                return;
            }
        }
    }
}
