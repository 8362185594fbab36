//! Several servers on one registry (`--registry postgres://...`, a real PostgreSQL) and one
//! bucket (a real S3 server): each sees and serves the sessions of the others, and a server
//! that died while receiving is taken over once its lease has ended, with nothing lost.

use referee_tests::postgres::Postgres;
use referee_tests::s3::SeaweedFs;
use referee_tests::server_process::ServerProcess;
use referee_tests::{http_request, make_video, TestServer};

use crate::object_store::{assert_stored_exactly, open_store};

/// The acknowledged count and the lease holder of session `id`, as the registry has them.
fn registry_row(postgres: &Postgres, url: &str, id: &str) -> String {
    let database = url.rsplit('/').next().unwrap();
    let out = postgres.psql(
        database,
        &format!(
            "SELECT acked_frames, coalesce(lease_node, '-'), record->>'status' FROM sessions WHERE id = '{id}'"
        ),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_session_streamed_into_one_server_is_seen_and_served_by_another() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("seen");
    let store = s3.store_url("registry-seen");
    let setup = |c: &mut referee_server::config::Config| {
        c.store = Some(store.clone());
        c.registry = Some(registry.clone());
        c.store_timeout_secs = 5;
        c.lease_secs = 15;
    };
    let a = TestServer::start_with(setup);
    let b = TestServer::start_with(setup);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 60, 30.0, 320, 240);
    let signal = work.path().join("bout.txt");
    std::fs::write(&signal, "1.0 touch_left\n").unwrap();
    let id = a.stream_files(&video, &signal, &[]).session_id();
    a.wait_for_status(&id, "complete");

    // The other server knows it without a restart, and serves its results and frames.
    let (status, seen) = b.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(
        (status, &seen["status"]),
        (200, &"complete".into()),
        "{seen}"
    );
    let (_, list) = b.get_json("/api/sessions");
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["id"] == id.as_str()),
        "{list}"
    );
    let video_served = http_request(b.addr, "GET", &format!("/api/sessions/{id}/video.mp4"), &[]);
    assert_eq!(video_served.status, 200);
    let frame = http_request(
        b.addr,
        "GET",
        &format!("/api/sessions/{id}/frames/30.jpg"),
        &[],
    );
    assert_eq!(frame.status, 200);
    // Every frame acknowledged is counted in the registry, and the lease was let go.
    assert_eq!(registry_row(postgres, &registry, &id), "60|-|complete");
}

#[test]
fn a_server_killed_while_receiving_is_taken_over_after_its_lease_and_nothing_is_lost() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("takeover");
    let store = s3.store_url("registry-takeover");
    let data = tempfile::tempdir().unwrap();
    // The server started again is another process: another node, which must wait for the
    // lease of the one killed to end before it may take the upload over.
    let mut server = ServerProcess::start(
        data.path(),
        &[
            "--store",
            &store,
            "--registry",
            &registry,
            "--store-timeout-secs",
            "2",
            "--lease-secs",
            "5",
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 300, 30.0, 320, 240);
    let id = server.stream_across_a_kill(&video);
    let (objects, _runtime, _local) = open_store(&store);
    assert_stored_exactly(&objects, &id, &video);
    assert!(
        registry_row(postgres, &registry, &id).starts_with("300|-|"),
        "{}",
        registry_row(postgres, &registry, &id)
    );
}
