//! What every [`SessionStore`] does, checked against each one: the local data directory and
//! an object store (in memory here; the end-to-end tests run a real S3 server).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use referee_protocol::frame::encode_frame;
use referee_protocol::FrameHeader;

use super::{LocalStore, ObjectSessions, SessionMeta, SessionStatus, SessionStore, StoreError};

/// Runs `check` on each store: a fresh local data directory, and a fresh in-memory object
/// store (its requests run on a runtime of their own, as on the server's).
fn each_store(check: impl Fn(&dyn SessionStore)) {
    let data = tempfile::tempdir().unwrap();
    check(&LocalStore::open(data.path()).unwrap());

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let local = tempfile::tempdir().unwrap();
    let objects = ObjectSessions::new(
        Arc::new(object_store::memory::InMemory::new()),
        "league/pistes",
        local.path(),
        runtime.handle().clone(),
        Duration::from_secs(10),
        super::CacheLimits::default(),
    )
    .unwrap();
    check(&objects);
}

fn frame(i: u64) -> (FrameHeader, Bytes) {
    let payload = vec![i as u8; 100 + i as usize * 7];
    let msg = encode_frame(i, i as i64 * 33_333, 0, &payload).unwrap();
    (FrameHeader::parse(&msg).unwrap(), msg)
}

fn append(store: &dyn SessionStore, id: &str, from: u64, to: u64, syncs_every: u64) {
    let mut sink = store.frame_sink(id, from).unwrap();
    for i in from..to {
        let (header, msg) = frame(i);
        sink.append(&header, &msg).unwrap();
        if (i + 1 - from).is_multiple_of(syncs_every) {
            sink.sync().unwrap();
        }
    }
    sink.sync().unwrap();
}

fn new_session(store: &dyn SessionStore, id: &str) -> SessionMeta {
    let meta = SessionMeta::new(id.into(), id.into(), SessionStatus::Receiving);
    store.create(&meta).unwrap();
    meta
}

fn assert_frames(store: &dyn SessionStore, id: &str, count: u64) {
    let mut source = store.frame_source(id).unwrap();
    assert_eq!(source.len(), count);
    let expected: Vec<i64> = (0..count).map(|i| i as i64 * 33_333).collect();
    assert_eq!(source.timestamps(), expected);
    // In order (as processing reads), then out of order (as the player does).
    for i in (0..count).chain((0..count).rev().step_by(3)) {
        let read = source.read(i).unwrap();
        assert_eq!(read.index, i);
        assert_eq!(read.payload, frame(i).1.slice(32..), "frame {i}");
    }
    assert!(source.read(count).is_err());
}

#[test]
fn metadata_is_created_saved_listed_and_read_back() {
    each_store(|store| {
        let mut meta = new_session(store, "s1");
        assert!(store.create(&meta).is_err(), "the same id twice");
        meta.status = SessionStatus::AwaitingSignal;
        meta.frames_stored = 3;
        store.save_meta(&meta).unwrap();
        assert_eq!(store.load_meta("s1").unwrap(), meta);
        new_session(store, "s2");
        let ids: Vec<String> = store.list().unwrap().into_iter().map(|m| m.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(matches!(
            store.load_meta("missing"),
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.load_meta("../etc"),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.location("s1"), "sessions/s1");
    });
}

#[test]
fn frames_read_back_byte_identical_across_batches_and_a_resume() {
    each_store(|store| {
        new_session(store, "s");
        append(store, "s", 0, 10, 4);
        // A resume after 10 acknowledged frames continues the same frames.
        append(store, "s", 10, 25, 6);
        assert_frames(store, "s", 25);
        assert_eq!(store.recover_frames("s").unwrap().frames, 25);
        let sums = store.frame_source("s").unwrap().checksums();
        assert_eq!(sums[3], frame(3).0.crc32c);
    });
}

#[test]
fn a_session_nothing_was_streamed_into_has_no_frames() {
    // A session created ahead of its upload (POST /api/sessions): no frame log yet. Its
    // frames and their times are none, not a storage error (schemathesis found the 500).
    each_store(|store| {
        let meta = SessionMeta::new("ahead".into(), "ahead".into(), SessionStatus::Created);
        store.create(&meta).unwrap();
        let mut source = store.frame_source("ahead").unwrap();
        assert_eq!(source.len(), 0);
        assert!(source.timestamps().is_empty() && source.checksums().is_empty());
        assert!(source.read(0).is_err());
        assert!(matches!(
            store.frame_source("missing").err(),
            Some(StoreError::NotFound(_))
        ));
        // Its upload starts: the frame log is made then.
        append(store, "ahead", 0, 3, 2);
        assert_frames(store, "ahead", 3);
    });
}

#[test]
fn frames_after_the_acknowledged_ones_are_cut_off_when_the_upload_resumes() {
    each_store(|store| {
        new_session(store, "s");
        append(store, "s", 0, 12, 5);
        // Only 7 were acknowledged (a batch synced, its ACK lost): the resume cuts at 7,
        // inside a batch.
        append(store, "s", 7, 9, 10);
        assert_frames(store, "s", 9);
        // Fewer frames stored than acknowledged is corruption, never silently accepted.
        assert!(matches!(
            store.frame_sink("s", 20),
            Err(StoreError::Corrupt { .. })
        ));
    });
}

#[test]
fn the_signal_results_and_scratch_of_a_session_and_its_deletion() {
    each_store(|store| {
        new_session(store, "s");
        assert_eq!(store.signal("s").unwrap(), None);
        store.put_signal("s", "0.5 touch_left\n").unwrap();
        assert_eq!(
            store.signal("s").unwrap().as_deref(),
            Some("0.5 touch_left\n")
        );

        let scratch = store.scratch_dir("s").unwrap();
        let video = scratch.join("video.mp4");
        std::fs::write(&video, vec![7u8; 300_000]).unwrap();
        store.put_result_file("s", "video.mp4", &video).unwrap();
        store
            .put_result("s", "thumbnails/frame-000001.jpg", b"jpeg")
            .unwrap();
        store.put_result("s", "report.json", b"{}").unwrap();
        assert_eq!(
            store.list_results("s").unwrap(),
            vec!["report.json", "thumbnails/frame-000001.jpg", "video.mp4"]
        );
        let opened = store.open_result("s", "video.mp4").unwrap();
        assert_eq!(opened.len, 300_000);
        let mut read = Vec::new();
        std::io::Read::read_to_end(&mut &opened.file, &mut read).unwrap();
        assert_eq!(read, vec![7u8; 300_000]);
        // A result replaced is served as it is now.
        store.put_result("s", "report.json", b"{\"v\":2}").unwrap();
        assert_eq!(store.open_result("s", "report.json").unwrap().len, 7);
        for bad in ["missing.mp4", "../session.json", "session.json", ".hidden"] {
            assert!(
                matches!(
                    store.open_result("s", bad),
                    Err(StoreError::ResultNotFound { .. })
                ),
                "{bad}"
            );
        }
        store.remove_scratch("s").unwrap();
        assert!(!scratch.exists());

        store.delete("s").unwrap();
        assert!(matches!(store.load_meta("s"), Err(StoreError::NotFound(_))));
        assert!(store.list().unwrap().is_empty());
        assert!(store.open_result("s", "video.mp4").is_err());
    });
}
