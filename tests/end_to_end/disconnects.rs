//! A client that goes away at any point leaves the server healthy, the session and its frames
//! on disk, marked detached (or, during processing, processed to the end).

use referee_protocol::frame::encode_frame;
use referee_protocol::ControlMessage;
use referee_server::store::SessionStore;
use referee_tests::{
    client_frames, frame_message, make_video, run_client, session_end, RawClient, TestServer,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn frames(width: i32, height: i32, n: u32) -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", n, 30.0, width, height);
    client_frames(&video, 90)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_right_after_session_start_keeps_the_session_and_the_server_serving() {
    let server = TestServer::start();
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    raw.drop_connection();

    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 0);
    assert!(server.session_dir(&id).join("session.json").is_file());
    let (status, health) = server.get_json("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));

    // The server goes on serving a whole new session.
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "next.avi", 3, 30.0, 160, 120);
    let run = tokio::task::block_in_place(|| {
        run_client(&[&server.http_url(), "--video", video.to_str().unwrap()])
    });
    run.assert_success();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_mid_frames_keeps_every_acknowledged_frame() {
    let server = TestServer::start();
    let jpegs = frames(160, 120, 6);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate().take(4) {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    // Wait until the server has stored all four, then vanish.
    let mut stored = 0;
    while stored < 4 {
        if let ControlMessage::Ack { frames_stored } = raw.recv().await {
            stored = frames_stored;
        }
    }
    raw.drop_connection();

    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 4);
    assert!(
        meta["error"].as_str().unwrap().contains("state receiving"),
        "{meta}"
    );
    let mut source = server.store().frame_source(&id).unwrap();
    assert_eq!(source.len(), 4);
    for (i, jpeg) in jpegs.iter().enumerate().take(4) {
        assert!(source.read(i as u64).unwrap().payload == jpeg[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_after_session_end_keeps_the_frames() {
    let server = TestServer::start();
    let jpegs = frames(160, 120, 2);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(referee_tests::frame_message(i as u64, jpeg))
            .await;
    }
    raw.send(&session_end(2, true, &jpegs)).await;
    loop {
        if let ControlMessage::SessionEnded { frames_stored } = raw.recv().await {
            assert_eq!(frames_stored, 2);
            break;
        }
    }
    raw.drop_connection();
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 2);
    assert!(
        meta["error"].as_str().unwrap().contains("awaiting_signal"),
        "{meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_during_processing_still_completes_the_session() {
    let server = TestServer::start();
    let jpegs = frames(160, 120, 30);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(encode_frame(i as u64, (i as i64 * 1_000_000) / 30, 0, jpeg).unwrap())
            .await;
    }
    raw.send(&session_end(30, true, &jpegs)).await;
    loop {
        if let ControlMessage::SessionEnded { .. } = raw.recv().await {
            break;
        }
    }
    raw.send(&ControlMessage::Signal {
        file_name: "s.txt".into(),
        text: "0.5 touch_left\n".into(),
    })
    .await;
    raw.drop_connection();

    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "complete"));
    assert_eq!(meta["frames_stored"], 30);
    let report = std::fs::read_to_string(server.session_dir(&id).join("report.json")).unwrap();
    assert!(report.contains("touch_left"), "{report}");
}

#[test]
fn a_client_killed_mid_stream_leaves_a_detached_session() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "long.avi", 600, 30.0, 640, 480);
    let mut child = std::process::Command::new(referee_tests::workspace_binary("referee-client"))
        .args([&server.http_url(), "--video", video.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill the client once the server has some of its frames.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let (_, list) = server.get_json("/api/sessions");
        if let Some(s) = list["sessions"].as_array().and_then(|a| a.first()) {
            if s["frames_stored"].as_u64().unwrap_or(0) > 0 {
                break s["id"].as_str().unwrap().to_string();
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client never stored a frame"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let meta = server.wait_for_status(&id, "detached");
    let frames = meta["frames_stored"].as_u64().unwrap();
    assert!(frames > 0);
    // Whatever was acknowledged is on disk and readable.
    let mut source = server.store().frame_source(&id).unwrap();
    assert!(source.len() >= frames);
    source.read(frames - 1).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_detected_by_heartbeats() {
    let server = TestServer::start_with(|c| c.heartbeat_secs = 1);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    // The client stops reading: it answers no ping. Within 3 heartbeats it is taken for gone.
    let started = std::time::Instant::now();
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(meta["error"].as_str().unwrap().contains("silent"), "{meta}");
    drop(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_detached_with_a_timeout_error() {
    let server = TestServer::start_with(|c| {
        c.heartbeat_secs = 1;
        c.idle_timeout_secs = 2;
    });
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    // Reading answers the pings, but no frame comes.
    let closed = raw.until_closed().await;
    assert_eq!(
        closed.errors[0].0,
        referee_protocol::ErrorCode::Timeout,
        "{closed:?}"
    );
    assert!(
        closed.errors[0].1.contains("no frame or message for 2 s"),
        "{closed:?}"
    );
    tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_drop_at_every_point_leave_a_streaming_session_unharmed() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "steady.avi", 150, 30.0, 320, 240);
    let url = server.http_url();
    let path = video.clone();
    let steady = std::thread::spawn(move || {
        run_client(&[&url, "--video", path.to_str().unwrap(), "--max-fps", "100"])
    });

    let jpegs = frames(160, 120, 2);
    for _ in 0..3 {
        // Before SESSION_START: no session is made.
        RawClient::connect(&server).await.drop_connection();
        // Right after SESSION_START, and mid-frames.
        let mut raw = RawClient::connect(&server).await;
        raw.start(160, 120).await;
        raw.drop_connection();
        let mut raw = RawClient::connect(&server).await;
        raw.start(160, 120).await;
        raw.send_binary(encode_frame(0, 0, 0, &jpegs[0]).unwrap())
            .await;
        raw.drop_connection();
        // Half an HTTP request: the connection ends before the upgrade.
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(b"GET /stream HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        drop(tcp);
        // Half a WebSocket frame: upgraded, then the connection ends 10 bytes into a binary
        // message that announces 1000.
        let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(
            b"GET /stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut answer = Vec::new();
        while !answer.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tcp.read_exact(&mut byte).await.unwrap();
            answer.push(byte[0]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        // FIN + binary, masked, 16-bit length 1000, the mask, then 10 bytes of the 1000.
        tcp.write_all(&[0x82, 0xFE, 0x03, 0xE8, 1, 2, 3, 4])
            .await
            .unwrap();
        tcp.write_all(&[0u8; 10]).await.unwrap();
        drop(tcp);
    }

    let run = tokio::task::block_in_place(|| steady.join().unwrap());
    run.assert_success();
    let id = run.session_id();
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "complete"));
    assert_eq!(meta["frames_stored"], 150);
    let sent = referee_tests::default_frames(&video);
    let mut stored = server.store().frame_source(&id).unwrap();
    for (i, jpeg) in sent.iter().enumerate() {
        assert!(
            stored.read(i as u64).unwrap().payload == jpeg[..],
            "frame {i}"
        );
    }
    // Six sessions were started and dropped, besides the one that completed.
    assert_eq!(server.session_ids().len(), 7);
    let (status, health) = server.get_json("/health");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
}
