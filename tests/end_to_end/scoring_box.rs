//! `referee-client box`: the signal file recorded from a Favero FA-01, fed through a
//! pseudo-terminal standing in for its serial port, or read from a capture of its bytes; and
//! that file streamed with its video.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use referee_protocol::favero::{Frame, Lights};
use referee_protocol::signal::SignalTrack;
use referee_tests::{make_video, run_client, workspace_binary, TestServer};

const DEADLINE: Duration = Duration::from_secs(60);
const RED: u8 = 1 << 2;
const GREEN: u8 = 1 << 3;
const WHITE_RIGHT: u8 = 1 << 1;

fn frame(left: u8, right: u8, lights: u8) -> [u8; 10] {
    Frame {
        score_left: left,
        score_right: right,
        clock_minutes: 2,
        clock_seconds: 59,
        lights: Lights::from_byte(lights),
        other: [0; 3],
    }
    .encode()
}

/// A scripted bout as the box sends it (24 frames a second): a left touch, a double, a
/// frame with a bad checksum (a green light nobody may believe), garbage, an off-target
/// right, a right touch. 126 good frames.
fn bout() -> Vec<u8> {
    let mut bad = frame(2, 1, GREEN);
    bad[9] = bad[9].wrapping_add(1);
    let script: [(&[u8], usize); 15] = [
        (&frame(0, 0, 0), 24),
        (&frame(0, 0, RED), 6),
        (&frame(1, 0, RED), 6),
        (&frame(1, 0, 0), 12),
        (&frame(1, 0, RED | GREEN), 6),
        (&frame(2, 1, RED | GREEN), 6),
        (&frame(2, 1, 0), 12),
        (&bad, 1),
        (&frame(2, 1, 0), 12),
        (&[0x00, 0x42], 1), // garbage between frames
        (&frame(2, 1, WHITE_RIGHT), 6),
        (&frame(2, 1, 0), 12),
        (&frame(2, 1, GREEN), 6),
        (&frame(2, 2, GREEN), 6),
        (&frame(2, 2, 0), 12),
    ];
    script
        .iter()
        .flat_map(|(bytes, n)| bytes.repeat(*n))
        .collect()
}

const SUMMARY: &str = "# 126 frames read, 1 skipped for a bad checksum, 2 stray bytes";

/// Names and fields of the events, without their times.
fn events(track: &SignalTrack) -> Vec<String> {
    track
        .events
        .iter()
        .map(|e| {
            let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{} {}", e.name, fields.join(" "))
        })
        .collect()
}

const EXPECTED: [&str; 4] = [
    "touch_left score=1-0 clock=2:59",
    "double score=2-1 clock=2:59",
    "off_target_right clock=2:59",
    "touch_right score=2-2 clock=2:59",
];

/// A pseudo-terminal: the master the test writes to, and the slave's path for the client.
fn pseudo_terminal() -> (File, String) {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
    grantpt(&master).unwrap();
    unlockpt(&master).unwrap();
    let slave = ptsname(&master, Vec::new()).unwrap();
    (File::from(master), slave.into_string().unwrap())
}

/// Starts `referee-client box --favero SLAVE --out OUT --duration SECS` and a thread passing
/// its stdout lines on.
fn start_box(slave: &str, out: &Path, duration: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(workspace_binary("referee-client"))
        .arg("box")
        .args(["--favero", slave, "--out", out.to_str().unwrap()])
        .args(["--duration", duration])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a stdout line that starts with `prefix`; returns the lines seen until then.
fn wait_for_line(rx: &mpsc::Receiver<String>, prefix: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let found = line.starts_with(prefix);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(_) => panic!("no line starting with {prefix:?} within {DEADLINE:?}: {seen:?}"),
        }
    }
}

/// Waits for the child to close its stdout (it exits), within the deadline, then reaps it.
fn wait_exit(
    child: &mut Child,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => return child.wait().unwrap(),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("the client did not stop within {DEADLINE:?}: {seen:?}")
            }
        }
    }
}

#[test]
fn a_bout_fed_through_a_serial_port_is_written_as_it_happens_until_ctrl_c() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bout.txt");
    let (mut master, slave) = pseudo_terminal();
    let (mut child, rx) = start_box(&slave, &out, "600");
    let mut seen = Vec::new();
    wait_for_line(&rx, "Reading the Favero FA-01", &mut seen);
    master.write_all(&bout()).unwrap();
    // Each event is printed after it is in the file: the file holds them as they happen.
    wait_for_line(&rx, "", &mut seen);
    let text = std::fs::read_to_string(&out).unwrap();
    let first = SignalTrack::parse(&text).unwrap();
    assert_eq!(
        events(&first).first().map(String::as_str),
        Some(EXPECTED[0])
    );
    wait_for_line(&rx, "", &mut seen);
    wait_for_line(&rx, "", &mut seen);
    wait_for_line(&rx, "", &mut seen);

    // Ctrl-C ends the recording with the counts.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&child),
        rustix::process::Signal::INT,
    )
    .unwrap();
    wait_for_line(&rx, "126 frames read", &mut seen);
    let status = wait_exit(&mut child, &rx, &mut seen);
    assert!(status.success(), "{status:?} {seen:?}");
    assert!(
        seen.iter()
            .any(|l| l.starts_with("126 frames read, 1 skipped for a bad checksum")),
        "{seen:?}"
    );

    let text = std::fs::read_to_string(&out).unwrap();
    let track = SignalTrack::parse(&text).unwrap();
    assert_eq!(events(&track), EXPECTED, "{text}");
    assert!(
        text.starts_with("# referee-client box: Favero FA-01 on "),
        "{text}"
    );
    assert_eq!(text.lines().last(), Some(SUMMARY), "{text}");
}

#[test]
fn the_recording_stops_after_duration_with_what_it_read() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("quiet.txt");
    let (_master, slave) = pseudo_terminal();
    let (mut child, rx) = start_box(&slave, &out, "1");
    let mut seen = Vec::new();
    wait_for_line(
        &rx,
        "0 frames read, 0 skipped for a bad checksum",
        &mut seen,
    );
    assert!(wait_exit(&mut child, &rx, &mut seen).success(), "{seen:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(SignalTrack::parse(&text).unwrap().events.is_empty());
    assert_eq!(
        text.lines().last(),
        Some("# 0 frames read, 0 skipped for a bad checksum")
    );
}

/// Records `bout()` from a capture file into `out`.
fn record_capture(dir: &Path, out: &Path) {
    let capture = dir.join("bout.bin");
    std::fs::write(&capture, bout()).unwrap();
    let run = run_client(&[
        "box",
        "--capture",
        capture.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    run.assert_success();
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.transcript());
}

#[test]
fn a_capture_file_gives_times_from_its_byte_offsets_at_2400_baud() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bout.txt");
    record_capture(work.path(), &out);
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(
        lines,
        [
            "1.041 touch_left score=1-0 clock=2:59",
            "2.041 double score=2-1 clock=2:59",
            "3.591 off_target_right clock=2:59",
            "4.341 touch_right score=2-2 clock=2:59",
            SUMMARY,
        ],
        "{text}"
    );
    SignalTrack::parse(&text).unwrap();

    // The same file again is refused, not overwritten.
    let again = run_client(&[
        "box",
        "--capture",
        work.path().join("bout.bin").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    again.assert_failure();
    assert!(
        again.stderr.contains("already exists"),
        "{}",
        again.transcript()
    );
}

#[test]
fn a_missing_port_says_what_to_do() {
    let work = tempfile::tempdir().unwrap();
    let run = run_client(&[
        "box",
        "--favero",
        "/dev/ttyUSB-not-there",
        "--out",
        work.path().join("x.txt").to_str().unwrap(),
    ]);
    run.assert_failure();
    assert!(
        run.stderr
            .contains("no serial port at /dev/ttyUSB-not-there: plug in"),
        "{}",
        run.transcript()
    );
    assert!(!work.path().join("x.txt").exists());
}

#[test]
fn a_recorded_signal_file_streams_with_its_video() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("bout.txt");
    record_capture(work.path(), &out);
    let video = make_video(work.path(), "bout.avi", 150, 30.0, 160, 120);
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--signal",
        out.to_str().unwrap(),
    ]);
    run.assert_success();
    let id = run.session_id();
    let meta = server.wait_for_status(&id, "complete");
    assert_eq!(meta["signal_file"], "bout.txt");
    let report: serde_json::Value = serde_json::from_slice(
        &std::fs::read(server.session_dir(&id).join("report.json")).unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["touch_left", "double", "off_target_right", "touch_right"]
    );
    assert_eq!(report["events"][1]["fields"]["score"], "2-1");
}
