//! A clip per touch: the sample bout streamed, each event that ends an action (a touch, a
//! double, an off-target, a halt) gets an H.264 MP4 clip with the source's frame timing,
//! announced (PROGRESS and SSE `clip_ready`) before the whole video is rebuilt, listed in
//! `report.json` and the session's API, served with byte ranges, downloaded by `--output`
//! and shown in `report.html`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use referee_protocol::{ControlMessage, Stage};
use referee_sample_data::frame_times_us;
use referee_server::store::SessionStore;
use referee_tests::{
    client_frames, frame_message, http_request, run_client, session_end, start_message_at,
    RawClient, SseStream, TestServer,
};
use serde_json::Value;

/// The sample bout and its signal file.
fn sample(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sample-data")
        .join(name)
}

/// The events of the sample's signal file that end an action, by position in its events.
fn clipped_events(signal: &str) -> Vec<(usize, String)> {
    signal
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .enumerate()
        .filter_map(|(i, l)| {
            let name = l.split_whitespace().nth(1)?.to_string();
            let ends = name.starts_with("touch_")
                || name.starts_with("off_target_")
                || name == "double"
                || name == "halt";
            ends.then_some((i, name))
        })
        .collect()
}

/// Checks the clip `clip` (as `report.json` or an event lists it) of session `id` against
/// the MP4 at `file`: its frames are the stored frames `first_frame..=last_frame`, at their
/// stored times (less the first one's).
fn check_clip_file(server: &TestServer, id: &str, clip: &Value, file: &Path) {
    let first = clip["first_frame"].as_u64().unwrap();
    let last = clip["last_frame"].as_u64().unwrap();
    assert!(first <= last, "{clip}");
    assert_eq!(clip["frames"].as_u64().unwrap(), last - first + 1, "{clip}");
    assert_eq!(
        clip["bytes"].as_u64().unwrap(),
        std::fs::metadata(file).unwrap().len(),
        "{clip}"
    );
    let stored = server.store().frame_source(id).unwrap().timestamps();
    let source: Vec<i64> = stored[first as usize..=last as usize]
        .iter()
        .map(|t| t - stored[first as usize])
        .collect();
    let shown = frame_times_us(file).unwrap();
    assert_eq!(shown.len() as u64, last - first + 1, "{clip}: frame count");
    // Each frame at its source time (the MP4 counts 90 kHz ticks: within 11 µs).
    assert_eq!(shown.len(), source.len());
    for (i, (s, t)) in shown.iter().zip(&source).enumerate() {
        assert!(
            (s - t).abs() <= 11,
            "{clip}: frame {i} at {s} µs, stored at {t} µs"
        );
    }
    let start = clip["start_s"].as_f64().unwrap();
    let end = clip["end_s"].as_f64().unwrap();
    assert!(
        (start - stored[first as usize] as f64 / 1e6).abs() < 1e-6,
        "{clip}"
    );
    assert!(
        (end - stored[last as usize] as f64 / 1e6).abs() < 1e-6,
        "{clip}"
    );
    // The MP4 is H.264.
    let bytes = std::fs::read(file).unwrap();
    assert_eq!(&bytes[4..8], b"ftyp");
    assert!(bytes.windows(4).any(|w| w == b"avc1"));
}

#[test]
fn every_touch_of_the_sample_bout_gets_a_clip_announced_served_and_downloaded() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("results");
    let signal_text = std::fs::read_to_string(sample("bout.txt")).unwrap();
    let expected = clipped_events(&signal_text);
    assert!(expected.len() >= 5, "{expected:?}");

    // A watcher of every session, from before the upload.
    let watcher = SseStream::open(server.addr, "/api/events", Duration::from_secs(180));
    let watched = std::thread::spawn(move || watcher.until(&["complete", "failed"]));
    let run = run_client(&[
        &server.http_url(),
        "--video",
        sample("bout.mp4").to_str().unwrap(),
        "--signal",
        sample("bout.txt").to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    run.assert_success();
    let id = run.session_id();
    let events = watched.join().unwrap();

    // SSE: a clip_ready per clip, every one before the video is rebuilt.
    let announced: Vec<&Value> = events
        .iter()
        .filter(|(name, _)| name == "clip_ready")
        .map(|(_, data)| &data["clip"])
        .collect();
    let names: Vec<(usize, String)> = announced
        .iter()
        .map(|c| {
            (
                c["event"].as_u64().unwrap() as usize,
                c["event_name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(names, expected, "{events:?}");
    let last_clip = events.iter().rposition(|(n, _)| n == "clip_ready").unwrap();
    let first_video = events
        .iter()
        .position(|(n, d)| n == "progress" && d["stage"] == "video_reconstruction")
        .expect("a video_reconstruction progress event");
    assert!(last_clip < first_video, "{events:?}");

    // report.json lists them, with the schema that has them.
    let (status, report) = server.get_json(&format!("/api/sessions/{id}/report.json"));
    assert_eq!(status, 200);
    assert_eq!(report["schema_version"], 4);
    assert_eq!(report["clips_skipped"], 0);
    let clips = report["clips"].as_array().unwrap();
    assert_eq!(clips.len(), expected.len());
    for (clip, announced) in clips.iter().zip(&announced) {
        assert_eq!(clip, *announced);
        let event = &report["events"][clip["event"].as_u64().unwrap() as usize];
        assert_eq!(event["name"], clip["event_name"]);
        assert_eq!(event["kind"], clip["kind"]);
        // The clip holds the touch and the post-roll after it.
        let frame = event["frame_index"].as_u64().unwrap();
        assert!(
            clip["first_frame"].as_u64().unwrap() < frame
                && clip["last_frame"].as_u64().unwrap() > frame,
            "{clip} {event}"
        );
    }

    // The session's API: the clip list and links.clips.
    let (_, session) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(session["clips"].as_array().unwrap(), clips);
    let links: Vec<&str> = session["links"]["clips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let wanted: Vec<String> = clips
        .iter()
        .map(|c| format!("/api/sessions/{id}/{}", c["name"].as_str().unwrap()))
        .collect();
    assert_eq!(links, wanted);

    // Each clip, served and downloaded, is its frames at their times.
    for clip in clips {
        let name = clip["name"].as_str().unwrap();
        let served = http_request(
            server.addr,
            "GET",
            &format!("/api/sessions/{id}/{name}"),
            &[],
        );
        assert_eq!(served.status, 200, "{name}");
        assert_eq!(served.header("content-type"), Some("video/mp4"));
        assert_eq!(served.header("accept-ranges"), Some("bytes"));
        let downloaded = out.join(name);
        assert_eq!(std::fs::read(&downloaded).unwrap(), served.body, "{name}");
        check_clip_file(&server, &id, clip, &downloaded);
    }

    // The report page shows each clip, and a downloaded page finds them beside it.
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for clip in clips {
        let name = clip["name"].as_str().unwrap();
        assert!(
            page.contains(&format!("<video class=\"clip\" src=\"{name}\"")),
            "{name} is not on the page"
        );
    }
    for src in page.split("src=\"").skip(1) {
        let src = src.split('"').next().unwrap();
        assert!(out.join(src).is_file(), "{src} is missing");
    }
}

#[test]
fn clips_are_served_with_byte_ranges_and_bad_names_are_not_found() {
    let server = TestServer::start();
    let run = server.stream_files(&sample("bout.mp4"), &sample("bout.txt"), &[]);
    let id = run.session_id();
    server.wait_for_status(&id, "complete");
    let (_, session) = server.get_json(&format!("/api/sessions/{id}"));
    let link = session["links"]["clips"][0].as_str().unwrap().to_string();
    let whole = http_request(server.addr, "GET", &link, &[]);
    assert_eq!(whole.status, 200);
    let r = http_request(server.addr, "GET", &link, &[("Range", "bytes=10-109")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, whole.body[10..110]);
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-109/{}", whole.body.len()).as_str())
    );
    for bad in [
        "nope.mp4",
        "..%2Fsession.json",
        "%2E%2E%2Fframes.log",
        ".hidden.mp4",
        "clip-001-touch_left.mp4%2F..",
    ] {
        let r = http_request(
            server.addr,
            "GET",
            &format!("/api/sessions/{id}/clips/{bad}"),
            &[],
        );
        assert_eq!(r.status, 404, "{bad}");
        assert_eq!(r.json()["code"], "result_not_found", "{bad}");
    }
    let r = http_request(
        server.addr,
        "GET",
        "/api/sessions/nope/clips/clip-001-touch_left.mp4",
        &[],
    );
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (404, Some("session_not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_announces_each_clip_before_the_video_and_max_clips_is_kept() {
    let server = TestServer::start_with(|c| {
        c.max_clips = 2;
        c.clip_pre_roll_secs = 0.5;
        c.clip_post_roll_secs = 0.0;
    });
    let jpegs = client_frames(&sample("bout.mp4"), 80);
    let size = referee_protocol::jpeg::jpeg_size(&jpegs[0]).unwrap();
    let fps = referee_sample_data::video_fps(&sample("bout.mp4")).unwrap();
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message_at("clips", size.0, size.1, fps))
        .await;
    let ControlMessage::SessionStarted { session_id: id, .. } = raw.recv().await else {
        panic!("no SESSION_STARTED");
    };
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    raw.send(&session_end(jpegs.len() as u64, true, &jpegs))
        .await;
    loop {
        if let ControlMessage::SessionEnded { .. } = raw.recv().await {
            break;
        }
    }
    raw.send(&ControlMessage::Signal {
        file_name: "bout.txt".into(),
        text: std::fs::read_to_string(sample("bout.txt")).unwrap(),
    })
    .await;
    let mut progress = Vec::new();
    loop {
        match raw.recv().await {
            ControlMessage::Progress {
                stage, done, total, ..
            } => progress.push((stage, done, total)),
            ControlMessage::Complete { files, .. } => {
                assert!(
                    files.iter().any(|f| f.starts_with("clips/clip-")),
                    "{files:?}"
                );
                break;
            }
            ControlMessage::Ack { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // The clips stage comes first: its start, then one PROGRESS per clip, then the video.
    assert_eq!(
        progress[..3],
        [
            (Stage::Clips, 0, 2),
            (Stage::Clips, 1, 2),
            (Stage::Clips, 2, 2)
        ],
        "{progress:?}"
    );
    assert!(
        progress[3..].iter().all(|(s, _, _)| *s != Stage::Clips),
        "{progress:?}"
    );
    assert_eq!(progress[3].0, Stage::VideoReconstruction, "{progress:?}");

    let report = tokio::task::block_in_place(|| {
        server.wait_for_status(&id, "complete");
        server
            .get_json(&format!("/api/sessions/{id}/report.json"))
            .1
    });
    let clips = report["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 2);
    let expected = clipped_events(&std::fs::read_to_string(sample("bout.txt")).unwrap());
    assert_eq!(report["clips_skipped"], expected.len() as u64 - 2);
    // No post-roll: each clip ends on its event's frame.
    for clip in clips {
        let event = &report["events"][clip["event"].as_u64().unwrap() as usize];
        assert_eq!(clip["last_frame"], event["frame_index"], "{clip}");
        let file = server.session_dir(&id).join(clip["name"].as_str().unwrap());
        tokio::task::block_in_place(|| check_clip_file(&server, &id, clip, &file));
    }
}
