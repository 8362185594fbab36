//! Motion-JPEG passthrough: the video's own JPEG frames go to the server byte for byte, with
//! the PASSTHROUGH flag; `--reencode`, `--quality`, `--resize` and other codecs re-encode.

use std::path::Path;
use std::time::{Duration, Instant};

use referee_protocol::frame::flags;
use referee_server::store::SessionStore;
use referee_tests::{client_frames, make_video, run_client, TestServer};

/// The JPEG images stored in an AVI file's `movi` list (chunks `##dc` / `##db`), read with a
/// RIFF parser of its own, independent of OpenCV and of the client.
fn avi_jpegs(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..4], b"RIFF");
    let u32_at = |at: usize| u32::from_le_bytes(data[at..at + 4].try_into().unwrap()) as usize;
    let mut jpegs = Vec::new();
    // Walks a list of chunks from `at` to `end`, entering LIST chunks.
    fn walk(
        data: &[u8],
        u32_at: &dyn Fn(usize) -> usize,
        mut at: usize,
        end: usize,
        in_movi: bool,
        out: &mut Vec<Vec<u8>>,
    ) {
        while at + 8 <= end {
            let id = &data[at..at + 4];
            let size = u32_at(at + 4);
            let body = at + 8;
            if id == b"LIST" || id == b"RIFF" {
                let movi = &data[body..body + 4] == b"movi";
                walk(data, u32_at, body + 4, body + size, in_movi || movi, out);
            } else if in_movi && (id.ends_with(b"dc") || id.ends_with(b"db")) && size > 0 {
                out.push(data[body..body + size].to_vec());
            }
            at = body + size + (size & 1);
        }
    }
    walk(&data, &u32_at, 12, data.len(), false, &mut jpegs);
    jpegs
}

/// The stored frames of session `id`: payload and flags, read from the frame log as written.
fn stored_frames(server: &TestServer, id: &str) -> Vec<(Vec<u8>, u16)> {
    let log = std::fs::read(server.session_dir(id).join("frames.log")).unwrap();
    let mut frames = Vec::new();
    let mut at = 0;
    while at < log.len() {
        let flags = u16::from_le_bytes([log[at + 6], log[at + 7]]);
        let len = u32::from_le_bytes(log[at + 28..at + 32].try_into().unwrap()) as usize;
        frames.push((log[at + 32..at + 32 + len].to_vec(), flags));
        at += 32 + len;
    }
    // The log agrees with the store's own reading of it.
    let mut source = server.store().frame_source(id).unwrap();
    assert_eq!(source.len(), frames.len() as u64);
    for (index, (payload, _)) in frames.iter().enumerate() {
        assert!(source.read(index as u64).unwrap().payload == payload[..]);
    }
    frames
}

fn stream(server: &TestServer, video: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        server.http_url(),
        "--video".into(),
        video.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_client(&args);
    run.assert_success();
    let id = run.session_id();
    server.wait_for_status(&id, "complete");
    if extra.is_empty() && video.extension().is_some_and(|e| e == "avi") {
        assert!(run.stdout.contains("passthrough"), "{}", run.transcript());
    } else {
        assert!(run.stdout.contains("re-encoding"), "{}", run.transcript());
    }
    id
}

#[test]
fn a_motion_jpeg_video_is_sent_as_stored() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "mjpeg.avi", 24, 30.0, 320, 240);
    let own = avi_jpegs(&video);
    assert_eq!(own.len(), 24, "the AVI holds one JPEG per frame");

    let id = stream(&server, &video, &[]);
    let stored = stored_frames(&server, &id);
    assert_eq!(stored.len(), own.len());
    for (index, ((payload, frame_flags), jpeg)) in stored.iter().zip(&own).enumerate() {
        assert!(payload == jpeg, "frame {index} is not the AVI's own JPEG");
        assert_eq!(*frame_flags, flags::PASSTHROUGH, "frame {index}");
    }
    let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert!(meta["quality"].is_null(), "{meta}");

    // --reencode: the frames are decoded and encoded again, as VideoSource does.
    let id = stream(&server, &video, &["--reencode"]);
    let stored = stored_frames(&server, &id);
    let encoded = client_frames(&video, 90);
    assert_eq!(stored.len(), encoded.len());
    for (index, ((payload, frame_flags), jpeg)) in stored.iter().zip(&encoded).enumerate() {
        assert!(
            payload == jpeg,
            "frame {index} differs from the re-encoded one"
        );
        assert_eq!(*frame_flags, 0, "frame {index}");
        assert!(payload != &own[index], "frame {index} was not re-encoded");
    }
}

#[test]
fn other_codecs_quality_and_resize_re_encode() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let mp4 = make_video(work.path(), "mpeg4.mp4", 15, 30.0, 320, 240);
    let id = stream(&server, &mp4, &[]);
    let stored = stored_frames(&server, &id);
    let encoded = client_frames(&mp4, 90);
    assert_eq!(stored.len(), 15);
    for (index, ((payload, frame_flags), jpeg)) in stored.iter().zip(&encoded).enumerate() {
        assert!(payload == jpeg, "frame {index}");
        assert_eq!(*frame_flags, 0);
    }

    let avi = make_video(work.path(), "mjpeg.avi", 10, 30.0, 320, 240);
    let id = stream(&server, &avi, &["--quality", "60"]);
    let stored = stored_frames(&server, &id);
    assert!(stored
        .iter()
        .zip(client_frames(&avi, 60))
        .all(|((payload, _), jpeg)| *payload == jpeg));

    let id = stream(&server, &avi, &["--resize", "160x120"]);
    let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(
        (meta["width"].as_u64(), meta["height"].as_u64()),
        (Some(160), Some(120))
    );
    let stored = stored_frames(&server, &id);
    assert_eq!(stored.len(), 10);
    for (payload, _) in &stored {
        assert_eq!(
            referee_client::source::jpeg_size(payload),
            Some(referee_client::source::FrameSize {
                width: 160,
                height: 120
            })
        );
    }
}

#[test]
fn max_fps_spaces_the_frames_out() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "slow.avi", 13, 30.0, 160, 120);
    let started = Instant::now();
    let id = stream(&server, &video, &["--max-fps", "20", "--reencode"]);
    // 13 frames at 20 fps: the last one goes 12 / 20 = 0.6 s after the first.
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert_eq!(stored_frames(&server, &id).len(), 13);
}
