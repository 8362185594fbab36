//! A whole session, streamed by the real client: every frame arrives byte-identical, the video
//! is rebuilt and the signal events are lined up with their frames.

use referee_protocol::frame::decode_frame;
use referee_server::store::SessionStore;
use referee_tests::proxy::FaultProxy;
use referee_tests::{client_frames, make_video, run_client, TestServer};

#[test]
fn ten_frames_arrive_byte_identical_and_events_map_to_their_frames() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "phrase04.avi", 10, 30.0, 320, 240);
    let signal = work.path().join("phrase04.txt");
    std::fs::write(
        &signal,
        "# test\n0.000 start\n0.100 touch_left score=1-0\n00:00.250 touch_right\n0.333 halt\n",
    )
    .unwrap();

    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--signal",
        signal.to_str().unwrap(),
        "--quality",
        "85",
    ]);
    run.assert_success();
    let id = run.session_id();
    assert!(id.contains("_phrase04_"), "{id}");
    assert!(
        run.stdout.contains("Processing complete"),
        "{}",
        run.transcript()
    );

    // Byte-identical: what the client encodes is what the server stored.
    let sent = client_frames(&video, 85);
    assert_eq!(sent.len(), 10);
    let mut stored = server.store().frame_source(&id).unwrap();
    assert_eq!(stored.len(), 10);
    for (index, jpeg) in sent.iter().enumerate() {
        let frame = stored.read(index as u64).unwrap();
        assert!(
            frame.payload == jpeg[..],
            "frame {index} differs from what the client sent"
        );
    }

    // The session is complete, with its results.
    let meta = server.wait_for_status(&id, "complete");
    assert_eq!(meta["frames_stored"], 10);
    assert_eq!(meta["signal_file"], "phrase04.txt");
    let dir = server.session_dir(&id);
    let video_file = meta["results"][0].as_str().unwrap().to_string();
    let spec = referee_sample_data::SyntheticVideo {
        frames: 10,
        fps: 30.0,
        width: 320,
        height: 240,
    };
    referee_sample_data::verify_video(&dir.join(&video_file), &spec).unwrap();

    // Each event is lined up with the frame on screen at its time (30 fps: frame n at n/30 s).
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["schema_version"], 4);
    assert_eq!(report["frames"], 10);
    let mapped: Vec<(String, u64)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["frame_index"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mapped,
        vec![
            ("start".to_string(), 0),
            ("touch_left".to_string(), 3),
            ("touch_right".to_string(), 7),
            ("halt".to_string(), 9),
        ]
    );
    assert_eq!(report["events"][1]["fields"]["score"], "1-0");
}

#[test]
fn a_session_without_signal_file_is_processed_after_session_end() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "solo.avi", 5, 25.0, 160, 120);
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--name",
        "drill",
    ]);
    run.assert_success();
    let id = run.session_id();
    assert!(id.contains("_drill_"), "{id}");
    let meta = server.wait_for_status(&id, "complete");
    assert_eq!(meta["frames_stored"], 5);
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.session_dir(&id).join("report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(report["events"].as_array().unwrap().len(), 0);
}

#[test]
fn health_and_session_api_answer_json() {
    let server = TestServer::start();
    let (status, health) = server.get_json("/health");
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    assert_eq!(health["active_sessions"], 0);
    assert!(health["version"].is_string());

    let (status, list) = server.get_json("/api/sessions");
    assert_eq!(status, 200);
    assert_eq!(list["sessions"].as_array().unwrap().len(), 0);

    let (status, missing) = server.get_json("/api/sessions/nope");
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "session_not_found");
    let (status, _) = server.get_json("/api/sessions/..%2F..%2Fetc");
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_frames_on_the_wire_are_the_frames_stored() {
    // The client's own bytes, recorded on their way to the server: re-encoded on several
    // threads (an MPEG-4 video) and passed through (a Motion-JPEG one).
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    for (name, frames) in [("wire.mp4", 24), ("wire.avi", 12)] {
        let proxy = FaultProxy::start(server.addr, Vec::new()).await;
        proxy.record();
        let video = make_video(work.path(), name, frames, 30.0, 320, 240);
        let url = proxy.http_url();
        let run =
            tokio::task::block_in_place(|| run_client(&[&url, "--video", video.to_str().unwrap()]));
        run.assert_success();
        let id = run.session_id();
        let sent = proxy.recorded();
        assert_eq!(sent.len(), frames as usize, "{name}: one message a frame");
        let mut stored = server.store().frame_source(&id).unwrap();
        assert_eq!(stored.len(), u64::from(frames), "{name}");
        for (i, message) in sent.into_iter().enumerate() {
            let frame = decode_frame(message.into()).unwrap();
            assert_eq!(frame.header.index, i as u64, "{name}: frames in order");
            let kept = stored.read(frame.header.index).unwrap();
            assert!(
                kept.payload == frame.payload,
                "{name}: frame {i} stored differs from the bytes the client sent"
            );
        }
    }
}
