//! Recordings whose frames are not evenly spaced (phones lower the frame rate in low light) or
//! come at a fractional rate: each frame keeps the container's own time, events land on the
//! frame whose real time matches, and the rebuilt MP4 shows each frame at that time.

use referee_sample_data::{frame_times_us, write_timed_video, TimedCodec, TimedVideo};
use referee_tests::{run_client, TestServer};

/// Streams `spec` (written at test time as `name`) with `signal`, and returns the session's
/// metadata, its report and the times each frame of the written video has.
fn stream(
    server: &TestServer,
    name: &str,
    spec: &TimedVideo,
    signal: &str,
    extra: &[&str],
) -> (serde_json::Value, serde_json::Value, Vec<i64>, String) {
    let work = tempfile::tempdir().unwrap();
    let video = work.path().join(name);
    let times = write_timed_video(&video, spec).unwrap();
    let signal_path = work.path().join("signal.txt");
    std::fs::write(&signal_path, signal).unwrap();
    let mut args = vec![
        server.http_url(),
        "--video".into(),
        video.to_str().unwrap().into(),
        "--signal".into(),
        signal_path.to_str().unwrap().into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_client(&args);
    run.assert_success();
    let id = run.session_id();
    let meta = server.wait_for_status(&id, "complete");
    let dir = server.session_dir(&id);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report.json")).unwrap()).unwrap();
    (meta, report, times, id)
}

/// `(frame_index, frame_time_s)` of each event of `report`.
fn event_frames(report: &serde_json::Value) -> Vec<(u64, f64)> {
    report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["frame_index"].as_u64().unwrap(),
                e["frame_time_s"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_variable_frame_rate_puts_events_on_the_frames_really_shown() {
    let server = TestServer::start();
    // 30 fps for 3 s (frames 0-89), then 15 fps (frames 90-134): at 2.0 s frame 60 is on
    // screen, at 5.0 s frame 120 (the average rate, 22.5 fps, would say 45 and 112).
    let signal = "0.0 start\n2.0 touch_left score=1-0\n5.0 touch_right score=1-1\n";
    for (name, codec, extra) in [
        ("phone.mp4", TimedCodec::H264, &[][..]),
        ("phone.mov", TimedCodec::Mjpeg, &[][..]),
        ("phone.mov", TimedCodec::Mjpeg, &["--reencode"][..]),
    ] {
        let spec = TimedVideo::thirty_then_fifteen(160, 120, codec);
        let (meta, report, times, id) = stream(&server, name, &spec, signal, extra);
        let what = format!("{name} {extra:?}");
        assert_eq!(times[60], 2_000_000);
        assert_eq!(times[120], 5_000_000);
        assert_eq!(
            event_frames(&report),
            [(0, 0.0), (60, 2.0), (120, 5.0)],
            "{what}"
        );
        assert_eq!(report["frames"], 135, "{what}");
        assert_eq!(report["variable_frame_rate"], true, "{what}");
        assert_eq!(report["frame_times_s"][120], 5.0, "{what}");
        assert_eq!(meta["variable_frame_rate"], true, "{what}");
        let page = std::fs::read_to_string(server.session_dir(&id).join("report.html")).unwrap();
        assert!(
            page.contains("fps on average (variable frame rate)"),
            "{what}"
        );
        let duration = report["duration_s"].as_f64().unwrap();
        assert!((duration - 6.0).abs() < 1e-3, "{what}: {duration}");

        // The rebuilt MP4 shows every frame at its own time (to its 90 kHz ticks).
        let mp4 = server.session_dir(&id).join("video.mp4");
        let shown = frame_times_us(&mp4).unwrap();
        assert_eq!(shown.len(), times.len(), "{what}");
        for (index, (shown, real)) in shown.iter().zip(&times).enumerate() {
            assert!(
                (shown - real).abs() <= 11,
                "{what}: frame {index} is shown at {shown} us in the MP4, recorded at {real} us"
            );
        }
    }
}

#[test]
fn a_constant_29_97_fps_recording_keeps_its_exact_times() {
    let server = TestServer::start();
    let spec = TimedVideo::ntsc(160, 120, 320, TimedCodec::H264);
    // At 29.97 fps frame 300 is shown at 10.010 s: at 10.0 s frame 299 (9.976633 s) is.
    let (meta, report, times, id) = stream(
        &server,
        "ntsc.mp4",
        &spec,
        "1.0 start\n10.0 touch_left\n10.01 touch_right\n",
        &[],
    );
    assert_eq!(
        event_frames(&report),
        [(29, 0.967633), (299, 9.976633), (300, 10.01)]
    );
    assert_eq!(report["variable_frame_rate"], false);
    assert!(report.get("frame_times_s").is_none());
    assert_eq!(meta["variable_frame_rate"], false);
    let shown = frame_times_us(&server.session_dir(&id).join("video.mp4")).unwrap();
    assert_eq!(shown.len(), 320);
    assert!(shown.iter().zip(&times).all(|(s, t)| (s - t).abs() <= 11));
}
