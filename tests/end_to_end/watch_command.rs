//! `referee-client watch URL SESSION_ID`: follows a session from before its upload until it is
//! complete (exit 0), and fails with one clear line for a session that fails or never appears.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use referee_protocol::ControlMessage;
use referee_tests::{
    client_frames, frame_message, make_video, run_client, session_end, workspace_binary, ClientRun,
    RawClient, TestServer,
};

/// A running `referee-client watch`, its output read as it comes.
struct Watch {
    child: Child,
    /// Its stdout, line by line.
    lines: mpsc::Receiver<String>,
    /// The lines already taken from `lines`.
    seen: Vec<String>,
    stderr: std::thread::JoinHandle<String>,
}

/// Starts `referee-client watch` with `args`, its output piped (no terminal: plain lines).
fn spawn_watch(args: &[&str]) -> Watch {
    let mut child = Command::new(workspace_binary("referee-client"))
        .arg("watch")
        .args(args)
        .env("REFEREE_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    Watch {
        child,
        lines,
        seen: Vec::new(),
        stderr,
    }
}

impl Watch {
    /// Waits for its first line: it is then subscribed to the session's events and has shown
    /// the state it found, so nothing that happens next can be missed.
    fn wait_until_following(&mut self) {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => self.seen.push(line),
            Err(err) => {
                let _ = self.child.kill();
                panic!("watch printed nothing within 30 s ({err})");
            }
        }
    }
}

/// Waits for a `watch` to end by itself (killing it after `limit`), with what it printed.
fn finish(mut watch: Watch, limit: Duration) -> ClientRun {
    let deadline = Instant::now() + limit;
    let status = loop {
        match watch.lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => watch.seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break watch.child.wait().unwrap();
            }
        }
        if Instant::now() > deadline {
            let _ = watch.child.kill();
            let _ = watch.child.wait();
            panic!(
                "watch did not end within {} s:\n{}",
                limit.as_secs(),
                watch.seen.join("\n")
            );
        }
    };
    let mut stdout = watch.seen.join("\n");
    if !stdout.is_empty() {
        stdout.push('\n');
    }
    ClientRun {
        code: status.code(),
        stdout,
        stderr: watch.stderr.join().unwrap(),
    }
}

#[test]
fn watch_follows_a_session_from_before_its_upload_to_complete() {
    let server = TestServer::start();
    // Created ahead: its id is known before anything is streamed.
    let id = server.create_session_ahead();

    let mut watch = spawn_watch(&[&server.http_url(), &id, "--timeout", "60"]);
    watch.wait_until_following();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 90, 30.0, 320, 240);
    let signal = work.path().join("v.txt");
    std::fs::write(&signal, "0.5 start\n2.0 touch_left score=1-0\n").unwrap();
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--signal",
        signal.to_str().unwrap(),
        "--session",
        &id,
        "--max-fps",
        "60",
    ]);
    run.assert_success();

    let watched = finish(watch, Duration::from_secs(60));
    watched.assert_success();
    let lines: Vec<&str> = watched.stdout.lines().collect();
    let event = |line: &str| {
        line.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    let events: Vec<String> = lines.iter().map(|l| event(l)).collect();
    // The state it found, then every step of the session, in order.
    assert_eq!(events[0], "state", "{}", watched.transcript());
    assert!(lines[0].contains(" created "), "{}", watched.transcript());
    let order: Vec<usize> = [
        "started",
        "frames",
        "ended",
        "progress",
        "clip_ready",
        "complete",
    ]
    .iter()
    .map(|name| {
        events
            .iter()
            .position(|e| e == name)
            .unwrap_or_else(|| panic!("no {name} line:\n{}", watched.transcript()))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "{}",
        watched.transcript()
    );
    // One line each: time, event, status, frames, stage and percent.
    let frames = lines.iter().find(|l| event(l) == "frames").unwrap();
    assert!(frames.contains(" receiving "), "{frames}");
    assert!(frames.contains("/90 frames"), "{frames}");
    let progress = lines.iter().find(|l| event(l) == "progress").unwrap();
    assert!(progress.contains(" processing "), "{progress}");
    assert!(progress.contains("90/90 frames"), "{progress}");
    // Processing starts with the clips, before the video.
    assert!(
        progress.contains("clips ") && progress.ends_with('%'),
        "{progress}"
    );
    let clip = lines.iter().find(|l| event(l) == "clip_ready").unwrap();
    assert!(clip.contains("clips/clip-001-touch_left.mp4"), "{clip}");
    let video = lines
        .iter()
        .position(|l| l.contains(" video_reconstruction "))
        .unwrap_or_else(|| panic!("no video_reconstruction line:\n{}", watched.stdout));
    assert!(
        lines.iter().position(|l| event(l) == "clip_ready").unwrap() < video,
        "{}",
        watched.stdout
    );
    let time = lines[0].split_whitespace().next().unwrap();
    assert!(
        time.len() == 8 && time.as_bytes()[2] == b':',
        "{}",
        lines[0]
    );
    // Progress lines come at stage changes and 10 % steps, not one per percent: at most 11
    // for each of the three stages.
    let progress_lines = events.iter().filter(|e| *e == "progress").count();
    assert!(
        progress_lines <= 3 * 11 + 2,
        "{progress_lines} progress lines:\n{}",
        watched.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(" complete ") && l.contains("90/90 frames")),
        "{}",
        watched.transcript()
    );
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "Session {id} complete: 90 frames; report: {}/api/sessions/{id}/report.html",
            server.http_url()
        )
    );
}

#[test]
fn watch_fails_for_a_session_that_never_appears_or_without_the_token() {
    let server = TestServer::start_with(|c| c.watch_token = Some("watch-secret".into()));

    let started = Instant::now();
    let watched = finish(
        spawn_watch(&[
            &server.http_url(),
            "nope",
            "--timeout",
            "1",
            "--token",
            "watch-secret",
        ]),
        Duration::from_secs(30),
    );
    watched.assert_failure();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        watched.stdout.contains(" not_found "),
        "{}",
        watched.transcript()
    );
    assert_eq!(
        watched.stderr.trim(),
        format!(
            "error: session nope did not appear on {url} within 1 s: check the id with \
             `referee-client list {url}`",
            url = server.http_url()
        )
    );

    let watched = finish(
        spawn_watch(&[&server.http_url(), "nope", "--timeout", "1"]),
        Duration::from_secs(30),
    );
    watched.assert_failure();
    assert!(
        watched.stderr.contains("answered 401") && watched.stderr.contains("--token"),
        "{}",
        watched.transcript()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_fails_for_a_session_whose_processing_failed() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let jpegs = client_frames(&video, 90);
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(160, 120).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    raw.send(&session_end(3, true, &jpegs)).await;
    loop {
        if let ControlMessage::SessionEnded { .. } = raw.recv().await {
            break;
        }
    }
    // The disk flips a byte of the last frame before processing reads it.
    let log = server.session_dir(&id).join("frames.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 0x55;
    std::fs::write(&log, bytes).unwrap();

    let watch = spawn_watch(&[&server.http_url(), &id]);
    raw.send(&ControlMessage::Signal {
        file_name: "s.txt".into(),
        text: "0.0 start\n".into(),
    })
    .await;
    let _ = raw.until_closed().await;
    let watched = tokio::task::spawn_blocking(move || finish(watch, Duration::from_secs(60)))
        .await
        .unwrap();
    watched.assert_failure();
    assert_eq!(
        watched.stderr.lines().count(),
        1,
        "{}",
        watched.transcript()
    );
    assert!(
        watched
            .stderr
            .starts_with(&format!("error: session {id} failed: "))
            && watched.stderr.contains("video_reconstruction"),
        "{}",
        watched.transcript()
    );
}
