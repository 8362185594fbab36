//! Many sessions at once, and a server shutting down under them.

use std::io::{Read, Write};
use std::time::Duration;

use referee_protocol::{ControlMessage, ErrorCode};
use referee_server::store::SessionStore;
use referee_tests::{
    client_frames, frame_message, make_video, session_end, start_message, RawClient, TestServer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_sessions_at_once_all_complete_intact() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 12, 30.0, 160, 120), 90);
    let server_ref = &server;
    let sessions = (0..32).map(|n| {
        let jpegs = jpegs.clone();
        async move {
            let mut raw = RawClient::connect(server_ref).await;
            raw.send(&start_message(&format!("load{n}"), 160, 120))
                .await;
            let id = match raw.recv().await {
                ControlMessage::SessionStarted { session_id, .. } => session_id,
                other => panic!("{other:?}"),
            };
            for (i, jpeg) in jpegs.iter().enumerate() {
                raw.send_binary(frame_message(i as u64, jpeg)).await;
            }
            raw.send(&session_end(jpegs.len() as u64, false, &jpegs))
                .await;
            loop {
                match raw.recv().await {
                    ControlMessage::Complete { frames_stored, .. } => {
                        assert_eq!(frames_stored, jpegs.len() as u64);
                        return id;
                    }
                    ControlMessage::Error { code, message, .. } => panic!("{code}: {message}"),
                    _ => {}
                }
            }
        }
    });
    let ids = futures_util::future::join_all(sessions).await;
    assert_eq!(ids.len(), 32);
    let store = server.store();
    for id in ids {
        let mut frames = store.frame_source(&id).unwrap();
        assert_eq!(frames.len(), jpegs.len() as u64);
        for (i, jpeg) in jpegs.iter().enumerate() {
            assert!(
                frames.read(i as u64).unwrap().payload == jpeg[..],
                "{id} frame {i}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_clients_and_keeps_their_sessions_resumable() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 3, 30.0, 160, 120), 90);
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("bye", 160, 120)).await;
    let id = match raw.recv().await {
        ControlMessage::SessionStarted { session_id, .. } => session_id,
        other => panic!("{other:?}"),
    };
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(referee_tests::frame_message(i as u64, jpeg))
            .await;
    }
    loop {
        if let ControlMessage::Ack { frames_stored: 3 } = raw.recv().await {
            break;
        }
    }
    // SIGTERM: the server says goodbye, flushes and stops.
    let closing = tokio::spawn(raw.until_closed());
    let server = tokio::task::spawn_blocking(move || server.restart())
        .await
        .unwrap();
    let closed = closing.await.unwrap();
    assert_eq!(
        closed.errors[0].0,
        ErrorCode::ServerShuttingDown,
        "{closed:?}"
    );
    assert_eq!(closed.close_code, Some(1001));

    // After the restart the session is there, detached and resumable, with its frames.
    let meta = tokio::task::block_in_place(|| server.wait_for_status(&id, "detached"));
    assert_eq!(meta["frames_stored"], 3);
    assert!(meta["resumable_until"].is_string(), "{meta}");
}

#[test]
fn open_watchers_do_not_hold_the_shutdown_up() {
    // A dashboard left open (the event streams and the live view) must not keep a stopping
    // server alive: their responses end when the shutdown starts.
    let mut server = TestServer::start_with(|c| c.shutdown_timeout_secs = 600);
    let mut watchers = Vec::new();
    for path in [
        "/api/events",
        "/api/sessions/nobody/events?timeout=600",
        "/api/sessions/nobody/live.mjpeg?timeout=600",
    ] {
        let mut tcp = std::net::TcpStream::connect(server.addr).unwrap();
        write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "{path}");
        watchers.push(tcp);
    }
    // Not a timing assertion: a stop that waits for the watchers would wait 600 s (the
    // shutdown timeout) or forever; the test only fails instead of hanging.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_secs(120)).is_ok(),
        "the server did not stop while watchers were connected"
    );
    for mut tcp in watchers {
        let mut rest = Vec::new();
        // The responses ended: the server closed the connections.
        let _ = tcp.read_to_end(&mut rest);
    }
}
