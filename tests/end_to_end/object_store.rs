//! Sessions in S3-compatible object storage (`--store s3://...`) on a real S3 server
//! (SeaweedFS): streamed, processed and served as on the local store, and a server killed
//! mid-stream resumed with nothing lost.

use std::time::Duration;

use referee_server::store::{CacheLimits, ObjectSessions, SessionStore};
use referee_tests::s3::SeaweedFs;
use referee_tests::server_process::ServerProcess;
use referee_tests::{default_frames, http_request, make_video, TestServer};

/// The sessions of `url` as the server stores them, read back with the store's own code.
pub(crate) fn open_store(
    url: &str,
) -> (ObjectSessions, tokio::runtime::Runtime, tempfile::TempDir) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let local = tempfile::tempdir().unwrap();
    let store = ObjectSessions::open_url(
        url,
        local.path(),
        runtime.handle().clone(),
        Duration::from_secs(30),
        CacheLimits::default(),
    )
    .unwrap();
    (store, runtime, local)
}

/// Checks that session `id` of `store` holds exactly the frames the client sends of `video`.
pub(crate) fn assert_stored_exactly(store: &dyn SessionStore, id: &str, video: &std::path::Path) {
    let sent = default_frames(video);
    let mut stored = store.frame_source(id).unwrap();
    assert_eq!(stored.len(), sent.len() as u64, "frames stored");
    for (index, jpeg) in sent.iter().enumerate() {
        assert!(
            stored.read(index as u64).unwrap().payload == jpeg[..],
            "frame {index} differs from what the client sent"
        );
    }
}

#[test]
fn a_bout_streamed_into_object_storage_is_stored_processed_and_served() {
    let Some(s3) = SeaweedFs::shared() else {
        return;
    };
    let url = s3.store_url("streamed");
    let server = TestServer::start_with(|c| c.store = Some(url.clone()));
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 90, 30.0, 320, 240);
    let signal = work.path().join("bout.txt");
    std::fs::write(&signal, "1.0 touch_left\n2.0 halt\n").unwrap();
    let output = work.path().join("out");
    let run = server.stream_files(&video, &signal, &["--output", output.to_str().unwrap()]);
    let id = run.session_id();
    let meta = server.wait_for_status(&id, "complete");
    assert_eq!(meta["frames_stored"], 90, "{meta}");

    // In the bucket, byte for byte; nothing of the session in the local data directory but
    // its working files.
    let (store, _runtime, _local) = open_store(&url);
    // Opened again, the frames' indexes come from memory: only the listing is requested.
    let timed = [(); 2].map(|()| {
        let started = std::time::Instant::now();
        assert_eq!(store.frame_source(&id).unwrap().len(), 90);
        started.elapsed()
    });
    println!("opening the frames of a session on SeaweedFS: {timed:?} (the second from the frame index cache)");
    assert_stored_exactly(&store, &id, &video);
    assert!(!server.session_dir(&id).exists());
    let results = store.list_results(&id).unwrap();
    for name in ["video.mp4", "report.json", "report.html"] {
        assert!(results.iter().any(|r| r == name), "{name} in {results:?}");
    }
    assert!(
        results.iter().any(|r| r.starts_with("clips/")),
        "{results:?}"
    );

    // Served with byte ranges from the object store, the same bytes the client downloaded.
    let downloaded = std::fs::read(output.join("video.mp4")).unwrap();
    let path = format!("/api/sessions/{id}/video.mp4");
    let whole = http_request(server.addr, "GET", &path, &[]);
    assert_eq!(whole.status, 200);
    assert!(whole.body == downloaded, "the video served whole");
    let part = http_request(server.addr, "GET", &path, &[("Range", "bytes=100-199")]);
    assert_eq!(part.status, 206);
    assert!(part.body == downloaded[100..200], "bytes 100-199");
    // One copy of the video in the server's result cache, however often it is served.
    let cached: Vec<_> = std::fs::read_dir(server.data_dir.path().join("cache").join(&id))
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with("video.mp4."))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let frame = http_request(
        server.addr,
        "GET",
        &format!("/api/sessions/{id}/frames/45.jpg"),
        &[],
    );
    assert_eq!(frame.status, 200);
    assert!(frame.body == default_frames(&video)[45], "frame 45 served");
    let (status, report) = server.get_json(&format!("/api/sessions/{id}/report.json"));
    assert_eq!(status, 200);
    assert_eq!(
        report["events"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );

    // A server that restarts on the same bucket knows the session.
    let server = server.restart_with(|c| c.store = Some(url.clone()));
    let (status, again) = server.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(
        (status, &again["status"]),
        (200, &"complete".into()),
        "{again}"
    );
}

#[test]
fn a_server_killed_mid_stream_on_object_storage_comes_back_and_nothing_is_lost() {
    let Some(s3) = SeaweedFs::shared() else {
        return;
    };
    let url = s3.store_url("killed");
    let data = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(data.path(), &["--store", &url]);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 300, 30.0, 320, 240);
    let id = server.stream_across_a_kill(&video);
    let (store, _runtime, _local) = open_store(&url);
    assert_stored_exactly(&store, &id, &video);
}
