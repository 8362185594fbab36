//! Storage faults and the server's memory: a disk that fills up mid-upload loses no
//! acknowledged frame, frames are held within a byte budget and refused when larger than
//! their announced size allows, and ACKs come in batches of at most half the window. (A
//! client that stops reading is in `server/src/ingest/tests.rs`: over loopback, the kernel's
//! buffers take more ACKs than a test can make the server send.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use referee_protocol::{ControlMessage, ErrorCode};
use referee_server::store::{LocalStore, SessionStore};
use referee_tests::{
    client_frames, default_frames, frame_message, make_video, run_client, start_message, RawClient,
    TestServer,
};

/// A tmpfs mounted for a test, unmounted when dropped (whether the test passed or not).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on `dir`; why not, if it cannot be (not root...).
    fn mount(dir: &Path, bytes: u64) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn resize(&self, bytes: u64) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={bytes}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a file still open (a server thread not yet gone) does not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn saved_meta(data: &Path, id: &str) -> serde_json::Value {
    let path = data.join("sessions").join(id).join("session.json");
    std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null)
}

#[test]
fn a_full_disk_loses_no_acknowledged_frame_and_the_upload_resumes_once_space_is_freed() {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 240, 30.0, 640, 480);
    let frames = default_frames(&video);
    let total: u64 = frames.iter().map(|f| f.len() as u64 + 32).sum();
    let data = work.path().join("data");
    // Room for about a third of the frames.
    let tmpfs = match Tmpfs::mount(&data, (total / 3).max(64 * 1024)) {
        Ok(tmpfs) => tmpfs,
        Err(why) => {
            println!("skipping: cannot mount a tmpfs for the data directory ({why}); run as root");
            return;
        }
    };
    let dir = data.clone();
    let server = TestServer::start_with(move |c| {
        c.data_dir = dir;
        c.min_free_disk_bytes = 0;
    });
    let video_arg = video.to_str().unwrap();

    let run = run_client(&[&server.http_url(), "--video", video_arg]);
    run.assert_failure();
    let id = run.session_id();
    let detached = server.wait_for_status(&id, "detached");
    let stored = detached["frames_stored"].as_u64().unwrap();
    assert!(stored > 0 && stored < frames.len() as u64, "{detached}");
    // The files hold exactly the frames stored: nothing of the batch that failed.
    let session_dir = data.join("sessions").join(&id);
    let idx_len = std::fs::metadata(session_dir.join("frames.idx"))
        .unwrap()
        .len();
    assert_eq!(idx_len, stored * 24);
    let log_len = std::fs::metadata(session_dir.join("frames.log"))
        .unwrap()
        .len();
    let expected_log: u64 = frames[..stored as usize]
        .iter()
        .map(|f| f.len() as u64 + 32)
        .sum();
    assert_eq!(log_len, expected_log);

    let said = run.transcript();
    assert!(said.contains("storage_failed"), "{said}");
    assert!(said.contains("No space left on device"), "{said}");
    assert!(
        said.contains(&format!(
            "free space on the server's data disk (or fix it), then resume with --resume {id}"
        )),
        "{said}"
    );
    // A restart while the disk is full to the last byte: the state is recomputed from the
    // frame log, and kept in memory while it cannot be saved.
    let filler = data.join("filler");
    {
        let mut file = std::fs::File::create(&filler).unwrap();
        while std::io::Write::write_all(&mut file, &[0u8; 4096]).is_ok() {}
    }
    let dir = data.clone();
    let server = server.restart_with(move |c| c.data_dir = dir);
    let (_, metrics) = referee_tests::http_get(server.addr, "/metrics");
    assert!(metrics.contains("referee_frames_lost_total 0"), "{metrics}");
    let recovered = server.wait_for_status(&id, "detached");
    assert_eq!(recovered["frames_stored"], stored, "{recovered}");
    std::fs::remove_file(&filler).unwrap();

    // Space comes back: the session's state reaches the disk, as it is in memory.
    tmpfs.resize(total * 4 + (8 << 20));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let saved = saved_meta(&data, &id);
        if saved["status"] == "detached" && saved["frames_stored"] == stored {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session's state was never saved: {saved}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let run = run_client(&[&server.http_url(), "--video", video_arg, "--resume", &id]);
    run.assert_success();
    server.wait_for_status(&id, "complete");
    let store = LocalStore::open(&data).unwrap();
    let mut source = store.frame_source(&id).unwrap();
    assert_eq!(source.len(), frames.len() as u64);
    for (i, jpeg) in frames.iter().enumerate() {
        assert_eq!(
            &source.read(i as u64).unwrap().payload[..],
            &jpeg[..],
            "frame {i}"
        );
    }

    let dir = data.clone();
    let server = server.restart_with(move |c| c.data_dir = dir);
    let (_, metrics) = referee_tests::http_get(server.addr, "/metrics");
    assert!(metrics.contains("referee_frames_lost_total 0"), "{metrics}");
    server.wait_for_status(&id, "complete");
    drop(server);
    drop(tmpfs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_far_larger_than_its_announced_size_allows_is_refused() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let tiny = client_frames(&make_video(work.path(), "tiny.avi", 1, 30.0, 16, 16), 90);
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("tiny", 16, 16)).await;
    match raw.recv().await {
        ControlMessage::SessionStarted {
            max_frame_bytes, ..
        } => assert_eq!(max_frame_bytes, 16 * 16 * 8 + 64 * 1024),
        other => panic!("expected SESSION_STARTED, got {other:?}"),
    }
    // A 16x16 JPEG whose header is right, with 1 MiB after it.
    let mut payload = tiny[0].clone();
    payload.extend(std::iter::repeat_n(0u8, 1 << 20));
    raw.send_binary(frame_message(0, &payload)).await;
    let closed = raw.until_closed().await;
    let (code, message, _) = &closed.errors[0];
    assert_eq!(*code, ErrorCode::FrameTooLarge, "{message}");
    assert!(
        message.contains("larger than any 16x16 JPEG can be (67584 bytes"),
        "{message}"
    );
    assert_eq!(closed.close_code, Some(1009));
    assert_eq!(server.get_json("/health").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ack_covers_more_than_half_the_window() {
    let server = TestServer::start_with(|c| {
        c.window = 8;
        c.window_bytes = 0;
    });
    let work = tempfile::tempdir().unwrap();
    let jpegs = client_frames(&make_video(work.path(), "v.avi", 200, 30.0, 160, 120), 90);
    let mut raw = RawClient::connect(&server).await;
    raw.send(&start_message("acks", 160, 120)).await;
    match raw.recv().await {
        ControlMessage::SessionStarted { window, .. } => assert_eq!(window, 8),
        other => panic!("expected SESSION_STARTED, got {other:?}"),
    }
    // All at once, ignoring the window: the server stores faster than it acknowledges, so
    // that several batches are stored between two ACKs.
    for (i, jpeg) in jpegs.iter().enumerate() {
        raw.send_binary(frame_message(i as u64, jpeg)).await;
    }
    let mut acked = 0;
    while acked < 200 {
        match raw.recv().await {
            ControlMessage::Ack { frames_stored } => {
                assert!(
                    frames_stored > acked && frames_stored - acked <= 4,
                    "an ACK went from {acked} to {frames_stored} with a window of 8"
                );
                acked = frames_stored;
            }
            other => panic!("expected an ACK, got {other:?}"),
        }
    }
}
