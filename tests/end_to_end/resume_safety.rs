//! A resume that cannot ruin a session: Ctrl-C says how to resume, a resume with another
//! video or signal file is refused before a frame is sent (and the session stays resumable
//! with the right ones), a resume without --signal sends the recorded one, and the checks
//! that can be made before an upload are made before it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use referee_protocol::{ControlMessage, ErrorCode, UploadIdentity};
use referee_tests::{
    default_frames, make_video, run_client, test_state_dir, workspace_binary, RawClient, TestServer,
};

/// Starts the client on `args` in the background, lets the server store more than 10
/// frames, then presses Ctrl-C (SIGINT); returns the session id, the exit code and stderr.
fn interrupt(server: &TestServer, args: &[&str]) -> (String, Option<i32>, String) {
    let child = Command::new(workspace_binary("referee-client"))
        .args(args)
        .env("REFEREE_STATE_DIR", test_state_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = loop {
        let stored = server.session_ids().into_iter().find(|id| {
            let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
            meta["frames_stored"].as_u64().unwrap_or(0) > 10
        });
        if let Some(id) = stored {
            break id;
        }
        assert!(Instant::now() < deadline, "no frame stored within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let output = child.wait_with_output().unwrap();
    (
        id,
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_resume_is_refused_before_a_frame_and_the_right_one_completes() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 150, 30.0, 160, 120);
    let other = make_video(work.path(), "other.avi", 120, 30.0, 160, 120);
    let signal = work.path().join("bout.txt");
    std::fs::write(&signal, "0.5 start\n2.0 touch_left score=1-0\n").unwrap();
    let (video_s, other_s, signal_s) = (
        video.to_str().unwrap(),
        other.to_str().unwrap(),
        signal.to_str().unwrap(),
    );
    let url = server.http_url();

    // Ctrl-C mid-upload: exit 130 with one line naming the session, its deadline and the
    // exact command.
    let (id, code, stderr) = tokio::task::block_in_place(|| {
        interrupt(
            &server,
            &[
                &url,
                "--video",
                video_s,
                "--signal",
                signal_s,
                "--max-fps",
                "30",
            ],
        )
    });
    assert_eq!(code, Some(130), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(line.starts_with("error: interrupted: "), "{stderr}");
    assert!(
        line.contains(&format!("session {id} stays resumable until 20")),
        "{line}"
    );
    let command = format!(
        "`referee-client {url} --video {video_s} --signal {signal_s} --resume {id} --max-fps 30`"
    );
    assert!(line.ends_with(&command), "{line}\nexpected {command}");
    let meta = server.wait_for_status(&id, "detached");

    // `status` says until when, and how.
    let run = run_client(&["status", &url, &id]);
    run.assert_success();
    let until = meta["resumable_until"].as_str().unwrap();
    assert!(
        run.stdout
            .contains(&format!("  resumable: until {until}\n")),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout
            .contains(&format!("  resume:    {}\n", command.trim_matches('`'))),
        "{}",
        run.transcript()
    );

    // Another video: refused by the client, naming both files, before connecting.
    let run = run_client(&[
        &url, "--video", other_s, "--signal", signal_s, "--resume", &id,
    ]);
    run.assert_failure();
    assert!(
        run.stderr.contains("bout.avi") && run.stderr.contains("other.avi"),
        "{}",
        run.transcript()
    );

    // A client without the record is refused by the server, naming both files, before a
    // frame; the session stays resumable.
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(test_state_dir().join(format!("{id}.json"))).unwrap(),
    )
    .unwrap();
    let started: UploadIdentity = serde_json::from_value(state["upload"].clone()).unwrap();
    assert_eq!(started.video, "bout.avi");
    let mut raw = RawClient::connect(&server).await;
    raw.send(&ControlMessage::SessionResume {
        protocol_version: referee_protocol::PROTOCOL_VERSION,
        session_id: id.clone(),
        resume_token: state["resume_token"].as_str().unwrap().into(),
        upload: Some(UploadIdentity {
            video: "other.avi".into(),
            video_bytes: started.video_bytes + 1,
            ..started.clone()
        }),
    })
    .await;
    let closed = raw.until_closed().await;
    let (code, message, _) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::ResumeRefused);
    assert!(
        message.contains("bout.avi") && message.contains("other.avi"),
        "{message}"
    );
    let meta = server.wait_for_status(&id, "detached");
    let stored = meta["frames_stored"].as_u64().unwrap();
    assert!(stored > 10);

    // The right video, without --signal: the recorded signal file goes with it.
    let run =
        tokio::task::block_in_place(|| run_client(&[&url, "--video", video_s, "--resume", &id]));
    run.assert_success();
    assert!(
        run.stdout
            .contains(&format!("the file session {id} was started with")),
        "{}",
        run.transcript()
    );
    let meta = server.wait_for_status(&id, "complete");
    assert_eq!(meta["signal_events"], 2);
    assert_eq!(meta["frames_stored"], default_frames(&video).len());
}

#[test]
fn inputs_that_cannot_work_are_refused_before_the_upload() {
    let server = TestServer::start_with(|c| c.max_signal_bytes = 64);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 10, 30.0, 160, 120);
    let video_s = video.to_str().unwrap();
    let url = server.http_url();

    // --output on a file: refused before connecting.
    let file = work.path().join("out.txt");
    std::fs::write(&file, "not a folder").unwrap();
    let run = run_client(&[&url, "--video", video_s, "--output", file.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    assert!(
        run.stderr.contains("cannot use --output") && run.stderr.contains("it is a file"),
        "{}",
        run.transcript()
    );

    // An empty video says so.
    let empty = work.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let run = run_client(&[&url, "--video", empty.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    assert!(
        run.stderr.contains("is empty (0 bytes)"),
        "{}",
        run.transcript()
    );
    assert!(server.session_ids().is_empty());

    // A signal file over the server's limit: no frame is sent.
    let big = work.path().join("big.txt");
    std::fs::write(&big, "0.0 start\n".repeat(20)).unwrap();
    let run = run_client(&[&url, "--video", video_s, "--signal", big.to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    assert!(
        run.stderr
            .contains("is 200 bytes, more than the 64 bytes the server accepts: no frame was sent"),
        "{}",
        run.transcript()
    );
    let id = run.session_id();
    let (_, meta) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(meta["frames_stored"], 0);

    // A byte-order mark at the start of the signal file is fine.
    let bom = work.path().join("bom.txt");
    std::fs::write(&bom, "\u{feff}0.0 start\n0.1 halt\n").unwrap();
    let run = run_client(&[&url, "--video", video_s, "--signal", bom.to_str().unwrap()]);
    run.assert_success();
    let meta = server.wait_for_status(&run.session_id(), "complete");
    assert_eq!(meta["signal_events"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn giving_up_after_the_retries_says_how_to_resume_and_until_when() {
    let server = TestServer::start();
    let proxy = referee_tests::proxy::FaultProxy::start(
        server.addr,
        vec![referee_tests::proxy::Cut::Upstream(200_000)],
    )
    .await;
    proxy.refuse_after_each_cut(100);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "gone.avi", 120, 30.0, 320, 240);
    let video_s = video.to_str().unwrap();
    let url = proxy.http_url();
    let run =
        tokio::task::block_in_place(|| run_client(&[&url, "--video", video_s, "--retries", "2"]));
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    let id = run.session_id();
    let line = run.stderr.lines().last().unwrap_or_default();
    assert!(line.contains("resuming failed 2 times"), "{line}");
    assert!(
        line.contains(&format!("session {id} stays resumable until 20")),
        "{line}"
    );
    assert!(
        line.ends_with(&format!(
            "`referee-client {url} --video {video_s} --resume {id}`"
        )),
        "{line}"
    );
}
