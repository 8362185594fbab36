//! Bouts recorded by several cameras (protocol version 2): each camera a session of its own,
//! joined to its bout by the bout's id and its camera's name; the joining rules, each a clear
//! error; single-camera clients of version 1 unchanged.

use referee_protocol::{ControlMessage, ErrorCode};
use referee_tests::{
    camera_start_message, client_frames, frame_message, make_video, session_end, start_message,
    RawClient, TestServer,
};

const W: u32 = 160;
const H: u32 = 120;

/// Sends `start` on a new connection: the session id and bout id of its SESSION_STARTED.
async fn started(server: &TestServer, start: &ControlMessage) -> (RawClient, String, String) {
    let mut raw = RawClient::connect(server).await;
    raw.send(start).await;
    match raw.recv().await {
        ControlMessage::SessionStarted {
            session_id,
            bout_id: Some(bout_id),
            ..
        } => (raw, session_id, bout_id),
        other => panic!("expected SESSION_STARTED with a bout_id, got {other:?}"),
    }
}

/// Sends `start` on a new connection and checks that it is refused with `code`, saying `text`.
async fn refused(server: &TestServer, start: &ControlMessage, code: ErrorCode, text: &str) {
    let mut raw = RawClient::connect(server).await;
    raw.send(start).await;
    raw.until_closed().await.assert_refused(code, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cameras_of_a_bout_join_it_once_each_and_every_bad_join_is_a_clear_error() {
    let server = TestServer::start_with(|c| c.max_cameras = 3);
    let cameras = ["left", "right"];
    let start = |bout: Option<&str>, camera: &str| {
        camera_start_message("final", (W, H), bout, camera, &cameras)
    };
    let (mut left, left_id, bout) = started(&server, &start(None, "left")).await;

    // The same camera twice, one the bout was not started with, a bout that does not exist.
    refused(
        &server,
        &start(Some(&bout), "left"),
        ErrorCode::CameraTaken,
        &format!("is session {left_id} already"),
    )
    .await;
    refused(
        &server,
        &start(Some(&bout), "blades"),
        ErrorCode::UnknownCamera,
        "left, right, not blades",
    )
    .await;
    refused(
        &server,
        &start(Some("no_such_bout"), "right"),
        ErrorCode::BoutNotFound,
        "no bout",
    )
    .await;
    // A bout needs version 2; more cameras than the server takes.
    let mut old = start(None, "left");
    if let ControlMessage::SessionStart {
        protocol_version, ..
    } = &mut old
    {
        *protocol_version = 1;
    }
    refused(
        &server,
        &old,
        ErrorCode::InvalidSessionStart,
        "needs protocol_version 2",
    )
    .await;
    let four = camera_start_message("final", (W, H), None, "a", &["a", "b", "c", "d"]);
    refused(
        &server,
        &four,
        ErrorCode::TooManyCameras,
        "at most 3 (--max-cameras)",
    )
    .await;

    let (mut right, right_id, right_bout) = started(&server, &start(Some(&bout), "right")).await;
    assert_eq!(right_bout, bout);
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(
        &make_video(work.path(), "v.avi", 3, 30.0, W as i32, H as i32),
        90,
    );
    for raw in [&mut left, &mut right] {
        for (i, jpeg) in jpegs.iter().enumerate() {
            raw.send_binary(frame_message(i as u64, jpeg)).await;
        }
        raw.send(&session_end(3, false, &jpegs)).await;
    }
    for id in [&left_id, &right_id] {
        let done = server.wait_for_status(id, "complete");
        assert_eq!(done["bout"]["bout_id"], bout.as_str(), "{done}");
        assert_eq!(
            done["bout"]["cameras"],
            serde_json::json!(cameras),
            "{done}"
        );
    }
    let (_, report) = server.get_json(&format!("/api/sessions/{right_id}/report.json"));
    assert_eq!(report["camera"]["camera"], "right", "{report}");
    let metrics = referee_tests::http_request(server.addr, "GET", "/metrics", &[]);
    assert!(
        String::from_utf8_lossy(&metrics.body).contains("referee_bout_cameras_total 2"),
        "the metrics count the cameras"
    );

    // Every camera has finished: none may join any more.
    let late = camera_start_message("final", (W, H), None, "a", &["a", "b"]);
    let (mut a, _, other_bout) = started(&server, &late).await;
    for (i, jpeg) in jpegs.iter().enumerate() {
        a.send_binary(frame_message(i as u64, jpeg)).await;
    }
    a.send(&session_end(3, false, &jpegs)).await;
    while !matches!(a.recv().await, ControlMessage::Complete { .. }) {}
    let join = camera_start_message("final", (W, H), Some(&other_bout), "b", &[]);
    refused(
        &server,
        &join,
        ErrorCode::BoutFinished,
        "has finished, without b",
    )
    .await;

    // A client of version 1, as before: no bout.
    let mut single = RawClient::connect(&server).await;
    single.send(&start_message("single", W, H)).await;
    match single.recv().await {
        ControlMessage::SessionStarted { bout_id: None, .. } => {}
        other => panic!("expected SESSION_STARTED without a bout, got {other:?}"),
    }
}

/// Checks that the session list `list` holds the two cameras of [`two_cameras`], complete
/// with every frame (`context`: the client's output, for a failure).
fn assert_both_complete(list: &serde_json::Value, context: &str) {
    let mut cameras: Vec<(String, u64, String)> = list["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["bout"]["camera"].as_str().unwrap_or("-").to_string(),
                s["frames_stored"].as_u64().unwrap_or(0),
                s["status"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    cameras.sort();
    let expected = [("left", 150, "complete"), ("right", 115, "complete")]
        .map(|(c, f, s)| (c.to_string(), f, s.to_string()));
    assert_eq!(cameras, expected, "{context}");
}

/// The sample bout's two cameras (`make-sample --cameras`) in `dir`: `left.mp4` (the bout's
/// own, 30 fps) and `right.mp4` (started 0.4 s later, 25 fps, 480x360), and the signal file.
fn two_cameras(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    use referee_sample_data::{write_camera_video, write_signal, Camera, SyntheticVideo};
    let bout = SyntheticVideo::BOUT;
    let phrases = referee_sample_data::BOUT_PHRASES;
    let (left, right, signal) = (
        dir.join("left.mp4"),
        dir.join("right.mp4"),
        dir.join("bout.txt"),
    );
    write_camera_video(&left, &bout, &phrases, &Camera::of_bout(&bout)).unwrap();
    write_camera_video(&right, &bout, &phrases, &Camera::RIGHT).unwrap();
    write_signal(&signal, &referee_sample_data::BOUT_EVENTS).unwrap();
    [left, right, signal]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cameras_upload_in_parallel_through_a_cut_and_are_lined_up_by_their_motion() {
    use referee_tests::proxy::{Cut, FaultProxy};
    let server = TestServer::start();
    // One cut, on whichever camera's connection it falls: that camera resumes, the other
    // goes on.
    let proxy = FaultProxy::start(server.addr, vec![Cut::Upstream(600_000)]).await;
    let work = tempfile::tempdir().unwrap();
    let [left, right, signal] = two_cameras(work.path());
    let url = proxy.http_url();
    let run = tokio::task::block_in_place(|| {
        referee_tests::run_client(&[
            &url,
            "--video",
            &format!("left={}", left.display()),
            "--video",
            &format!("right={}", right.display()),
            "--signal",
            signal.to_str().unwrap(),
        ])
    });
    run.assert_success();
    assert_eq!(proxy.cuts_made(), 1, "{}", run.transcript());
    assert!(
        run.stdout.contains("[left] Processing complete"),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains("[right] Processing complete"),
        "{}",
        run.transcript()
    );

    let sessions: Vec<serde_json::Value> = server
        .session_ids()
        .iter()
        .map(|id| server.get_json(&format!("/api/sessions/{id}")).1)
        .collect();
    let camera = |name: &str| {
        sessions
            .iter()
            .find(|s| s["bout"]["camera"] == name)
            .unwrap_or_else(|| panic!("no camera {name}: {sessions:?}"))
            .clone()
    };
    let (l, r) = (camera("left"), camera("right"));
    assert_eq!(l["bout"]["bout_id"], r["bout"]["bout_id"]);
    tokio::task::block_in_place(|| {
        for (session, video) in [(&l, &left), (&r, &right)] {
            let id = session["id"].as_str().unwrap();
            server.wait_for_status(id, "complete");
            crate::resume::assert_stored_exactly(&server, id, video);
        }
    });
    // The right camera's offset, found from the motion: within one of its frames (1/25 s).
    let (_, right_view) = server.get_json(&format!("/api/sessions/{}", r["id"].as_str().unwrap()));
    let offset = right_view["bout"]["offset_s"].as_f64().unwrap();
    assert!((offset - 0.4).abs() < 1.0 / 25.0, "{right_view}");
    assert!(
        right_view["bout"]["offset_confidence"].as_f64().unwrap() > 0.3,
        "{right_view}"
    );
    // Each event on the frame on screen in each camera: the touch at 1.2 s is the left
    // camera's frame 36 (30 fps) and the right camera's frame 20 (25 fps, 0.4 s later).
    for (session, frame) in [(&l, 36), (&r, 20)] {
        let id = session["id"].as_str().unwrap();
        let (_, report) = server.get_json(&format!("/api/sessions/{id}/report.json"));
        let touch = report["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "touch_left")
            .unwrap()
            .clone();
        assert_eq!(
            touch["frame_index"], frame,
            "{}: {touch}",
            session["bout"]["camera"]
        );
        // A clip per touch, for each camera.
        assert!(!report["clips"].as_array().unwrap().is_empty(), "{report}");
    }
}

/// Where the dashboard's players stand: the main one's frame, and each other camera's.
const PLAYERS: &str = "
const players = [...document.querySelectorAll('.player')];
const main = players.find((p) => !p.classList.contains('player-follower'));
const followers = players.filter((p) => p.classList.contains('player-follower'));
return main && followers.length && main.dataset.settled === 'yes'
  && followers.every((f) => f.dataset.settled === 'yes')
  && [Number(main.dataset.frame), ...followers.map((f) => Number(f.dataset.frame))].join(',');";

/// How many pixels of the other camera's picture differ clearly from that camera's stored
/// frame `frame` (session `id`).
const FOLLOWER_DIFFERS: &str = "
const [id, frame] = arguments;
const shown = document.querySelector('.player-follower canvas');
const w = shown.width, h = shown.height;
const pixels = (image) => {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(image, 0, 0, w, h);
  return g.getImageData(0, 0, w, h).data;
};
return (async () => {
  const image = await new Promise((done) => {
    const i = new Image();
    i.onload = () => done(i);
    i.onerror = () => done(null);
    i.src = 'api/sessions/' + encodeURIComponent(id) + '/frames/' + frame + '.jpg';
  });
  if (!image) return -1;
  const a = pixels(shown), b = pixels(image);
  let differ = 0;
  for (let i = 0; i < a.length; i += 4) {
    if (Math.abs(a[i] - b[i]) + Math.abs(a[i + 1] - b[i + 1]) + Math.abs(a[i + 2] - b[i + 2]) > 60) differ++;
  }
  return differ;
})();";

#[test]
fn the_dashboard_steps_every_camera_of_a_bout_to_the_same_bout_time_and_switches_angle() {
    use referee_tests::webdriver::Browser;
    use std::time::Duration;
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let [left, right, signal] = two_cameras(work.path());
    let run = referee_tests::run_client(&[
        &server.http_url(),
        "--video",
        &format!("left={}", left.display()),
        "--video",
        &format!("right={}", right.display()),
        "--signal",
        signal.to_str().unwrap(),
        "--offset",
        "right=0.4",
    ]);
    run.assert_success();
    let ids = server.session_ids();
    let of = |camera: &str| {
        ids.iter()
            .find(|id| {
                server.get_json(&format!("/api/sessions/{id}")).1["bout"]["camera"] == camera
            })
            .unwrap()
            .clone()
    };
    let (left_id, right_id) = (of("left"), of("right"));

    let browser = Browser::start(1280, 900);
    let wait = |frames: &str| {
        browser.wait_for(
            &format!("the players on frames {frames}"),
            Duration::from_secs(30),
            &PLAYERS.replace("].join(',');", &format!("].join(',') === '{frames}';")),
        );
    };
    browser.goto(&format!("{}/#/sessions/{left_id}?t=36", server.http_url()));
    // The touch at 1.2 s: the left camera's frame 36 (30 fps); the right one started 0.4 s
    // later at 25 fps: its frame 20.
    wait("36,20");
    let press = |key: &str| {
        browser.eval_with(
            "document.dispatchEvent(new KeyboardEvent('keydown', { key: arguments[0], bubbles: true }));
             return true;",
            serde_json::json!([key]),
        );
    };
    press("ArrowRight");
    wait("37,20");
    press("ArrowRight");
    wait("38,21");
    let differ = browser.eval_with(FOLLOWER_DIFFERS, serde_json::json!([right_id, 21]));
    assert_eq!(differ, 0, "the right camera's picture is not its frame 21");
    press("ArrowLeft");
    wait("37,20");
    // V: the right camera large, at the same moment; the left one small beside it.
    press("v");
    browser.wait_for(
        "the right camera's page",
        Duration::from_secs(30),
        &format!("return location.hash.startsWith('#/sessions/{right_id}');"),
    );
    // Right frame 20 is 0.8 s on its clock, 1.2 s of the bout: left frame 36.
    wait("20,36");
    // The session list says which camera each session is.
    browser.goto(&format!("{}/#/", server.http_url()));
    let tags = browser.wait_for(
        "the cameras in the session list",
        Duration::from_secs(30),
        "const t = [...document.querySelectorAll('tr.session .camera-tag:not([hidden])')].map((e) => e.textContent).sort();
         return t.length === 2 && t;",
    );
    assert_eq!(
        tags,
        serde_json::json!(["camera left of 2", "camera right of 2"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_on_one_camera_then_a_killed_server_lose_nothing_of_either_camera() {
    use referee_tests::proxy::{Cut, FaultProxy};
    use referee_tests::server_process::ServerProcess;
    use std::process::{Command, Stdio};
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data.path(), &[]);
    let addr: std::net::SocketAddr = server.http_url()[7..].parse().unwrap();
    let proxy = FaultProxy::start(addr, vec![Cut::Upstream(300_000)]).await;
    let work = tempfile::tempdir().unwrap();
    let [left, right, signal] = two_cameras(work.path());
    let client = Command::new(referee_tests::workspace_binary("referee-client"))
        .arg(proxy.http_url())
        .arg("--video")
        .arg(format!("left={}", left.display()))
        .arg("--video")
        .arg(format!("right={}", right.display()))
        .arg("--signal")
        .arg(&signal)
        // Paced, so that both are still uploading when the server is killed.
        .args(["--retries", "30", "--max-fps", "40"])
        .env("REFEREE_STATE_DIR", referee_tests::test_state_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::task::block_in_place(|| {
        server.wait_for_frames(50);
        server.kill_and_restart();
        let output = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success(),
            "client failed:\n{stdout}\n{stderr}"
        );
        assert_eq!(proxy.cuts_made(), 1, "{stdout}");
        assert!(stdout.contains("Resumed session"), "{stdout}");
        // Each camera complete with every frame: the server checked each one's digest of all
        // its frames (SESSION_END), so what it stored is what the client sent.
        let (_, list) = server.get("/api/sessions").unwrap();
        let list: serde_json::Value = serde_json::from_str(&list).unwrap();
        assert_both_complete(&list, &stdout);
    });
}

#[test]
fn a_bout_whose_client_was_killed_is_resumed_whole_with_its_bout_id() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let [left, right, signal] = two_cameras(work.path());
    let state = tempfile::tempdir().unwrap();
    let args = |extra: &[&str]| {
        let mut command = Command::new(referee_tests::workspace_binary("referee-client"));
        command
            .arg(server.http_url())
            .arg("--video")
            .arg(format!("left={}", left.display()))
            .arg("--video")
            .arg(format!("right={}", right.display()))
            .arg("--signal")
            .arg(&signal)
            .args(extra)
            .env("REFEREE_STATE_DIR", state.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    // Slow, so that both cameras are half way when the client is killed.
    let mut client = args(&["--max-fps", "20"]).spawn().unwrap();
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let bout = loop {
        let line = lines
            .next()
            .expect("the client ended before the bout started")
            .unwrap();
        if let Some(rest) = line.strip_prefix("Bout ") {
            break rest.split(':').next().unwrap().to_string();
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = server.get_json("/api/sessions");
        let sessions = list["sessions"].as_array().unwrap().clone();
        if sessions.len() == 2
            && sessions
                .iter()
                .all(|s| s["frames_stored"].as_u64() >= Some(10))
        {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.kill().unwrap();
    client.wait().unwrap();

    // The same command with --resume BOUT_ID: both cameras go on from where they stopped.
    let output = args(&["--resume", &bout]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.matches("Resumed session").count(), 2, "{stdout}");
    let (_, list) = server.get_json("/api/sessions");
    assert_both_complete(&list, &stdout);
    assert!(
        !state.path().join(format!("bout-{bout}.json")).exists(),
        "the bout's state file is removed once every camera is complete"
    );
}
