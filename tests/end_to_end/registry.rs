//! Several servers on one registry (`--registry postgres://...`, a real PostgreSQL) and one
//! bucket (a real S3 server): each sees and serves the sessions of the others, a server that
//! died while receiving or processing is taken over once its lease has ended, with nothing
//! lost, every server's event stream shows every session, and each webhook event is
//! delivered once per URL, by another server when the one delivering it was killed.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use referee_tests::load_balancer::LoadBalancer;
use referee_tests::postgres::Postgres;
use referee_tests::s3::SeaweedFs;
use referee_tests::server_process::ServerProcess;
use referee_tests::{http_request, make_video, run_client, SseStream, TestServer};

use crate::object_store::{assert_stored_exactly, open_store};
use crate::webhooks::{keys, receiver_with, settled, wait_for};

/// The answer of `sql` in the registry at `url`, as psql prints it unaligned.
fn registry_query(postgres: &Postgres, url: &str, sql: &str) -> String {
    let database = url.rsplit('/').next().unwrap();
    let out = postgres.psql(database, sql);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Settings of a server on `registry` and `store`, with a lease of `lease` seconds.
fn on_cluster(
    registry: &str,
    store: &str,
    lease: u64,
) -> impl Fn(&mut referee_server::config::Config) {
    let (registry, store) = (registry.to_string(), store.to_string());
    move |c| {
        c.store = Some(store.clone());
        c.registry = Some(registry.clone());
        c.store_timeout_secs = 2;
        c.lease_secs = lease;
    }
}

/// A server process on `registry` and `store` with a lease of 5 s, to be killed.
fn cluster_process(data: &std::path::Path, registry: &str, store: &str) -> ServerProcess {
    let args = ["--store", store, "--registry", registry];
    let short = ["--store-timeout-secs", "2", "--lease-secs", "5"];
    ServerProcess::start(data, &[&args[..], &short[..]].concat())
}

/// The acknowledged count and the lease holder of session `id`, as the registry has them.
fn registry_row(postgres: &Postgres, url: &str, id: &str) -> String {
    registry_query(
        postgres,
        url,
        &format!(
            "SELECT acked_frames, coalesce(lease_node, '-'), record->>'status' FROM sessions WHERE id = '{id}'"
        ),
    )
}

#[test]
fn a_session_streamed_into_one_server_is_seen_and_served_by_another() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("seen");
    let store = s3.store_url("registry-seen");
    let setup = on_cluster(&registry, &store, 15);
    let a = TestServer::start_with(&setup);
    let b = TestServer::start_with(&setup);
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
    let mut server = cluster_process(data.path(), &registry, &store);
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

#[test]
fn a_watcher_on_one_server_sees_a_session_streamed_into_another_complete() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("relay");
    let store = s3.store_url("registry-relay");
    let setup = on_cluster(&registry, &store, 15);
    let a = TestServer::start_with(&setup);
    let b = TestServer::start_with(&setup);
    // B listens to the registry's notifications before it answers HTTP.
    let watching = SseStream::open(b.addr, "/api/events", Duration::from_secs(60));
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 30, 30.0, 160, 120);
    let run = run_client(&[&a.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();

    let seen = watching.until(&["complete"]);
    let (name, complete) = seen.last().unwrap();
    assert_eq!(name, "complete", "{seen:?}");
    assert_eq!(complete["session_id"], id.as_str());
    assert_eq!(complete["frames_stored"], 30);
    // Its upload was seen too, not only its end.
    assert!(seen.iter().any(|(name, _)| name == "created"), "{seen:?}");
}

#[test]
fn a_server_killed_while_processing_is_finished_by_another() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("processing");
    let store = s3.store_url("registry-processing");
    let data = tempfile::tempdir().unwrap();
    let mut a = cluster_process(data.path(), &registry, &store);
    let b = TestServer::start_with(on_cluster(&registry, &store, 5));
    let work = tempfile::tempdir().unwrap();
    // Long enough to process (a clip for each of 19 touches) that it is still processing
    // when A is killed.
    let video = make_video(work.path(), "bout.avi", 300, 30.0, 640, 480);
    let signal = work.path().join("bout.txt");
    let touches: String = (1..20)
        .map(|i| format!("{:.1} touch_left\n", f64::from(i) / 2.0))
        .collect();
    std::fs::write(&signal, touches).unwrap();
    let mut client = Command::new(referee_tests::workspace_binary("referee-client"))
        .arg(a.http_url())
        .arg("--video")
        .arg(&video)
        .arg("--signal")
        .arg(&signal)
        .env("REFEREE_STATE_DIR", referee_tests::test_state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let id = loop {
        let newest = a
            .get("/api/sessions")
            .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
            .map(|list| list["sessions"][0].clone())
            .unwrap_or_default();
        if newest["status"] == "processing" {
            break newest["id"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "never processing: {newest}");
        std::thread::sleep(Duration::from_millis(2));
    };
    a.kill();
    let _ = client.kill();
    let _ = client.wait();
    let left = registry_row(postgres, &registry, &id);
    assert!(
        left.ends_with("|processing"),
        "A finished before it was killed: {left}"
    );

    // B takes the job over once A's lease has run out, and finishes it.
    let done = b.wait_for_status(&id, "complete");
    assert_eq!(done["frames_stored"], 300, "{done}");
    let video_served = http_request(b.addr, "GET", &format!("/api/sessions/{id}/video.mp4"), &[]);
    assert_eq!(video_served.status, 200);
    let (objects, _runtime, _local) = open_store(&store);
    assert_stored_exactly(&objects, &id, &video);
    assert_eq!(
        registry_query(postgres, &registry, "SELECT count(*) FROM jobs"),
        "0"
    );
}

#[test]
fn each_webhook_event_is_delivered_once_by_the_servers_together() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("webhooks");
    let store = s3.store_url("registry-webhooks");
    let (url, seen) = receiver_with(|_| false);
    let cluster = on_cluster(&registry, &store, 15);
    let setup = |c: &mut referee_server::config::Config| {
        cluster(c);
        c.webhook = vec![url.clone()];
    };
    let a = TestServer::start_with(setup);
    let b = TestServer::start_with(setup);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 10, 30.0, 160, 120);
    let run = run_client(&[&a.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();
    wait_for(&seen, 2);
    // A server that joins later catches up on the sessions it does not know: these events
    // are A's, already delivered.
    let c = TestServer::start_with(setup);
    for server in [&a, &b, &c] {
        settled(server);
    }
    assert_eq!(
        keys(&seen.lock().unwrap(), 200),
        vec![format!("{id}.created"), format!("{id}.completed")]
    );
}

#[test]
fn a_webhook_event_of_a_server_killed_before_every_url_had_it_is_sent_by_another() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("webhook_takeover");
    let store = s3.store_url("registry-webhook-takeover");
    // One URL takes every event; the other fails until the server delivering them is gone.
    let (taking, took) = receiver_with(|_| false);
    let a_gone = Arc::new(AtomicBool::new(false));
    let gone = Arc::clone(&a_gone);
    let (failing, failed) = receiver_with(move |_| !gone.load(Ordering::SeqCst));
    let data = tempfile::tempdir().unwrap();
    let hooks = ["--webhook", &taking, "--webhook", &failing];
    let mut a = ServerProcess::start(
        data.path(),
        &[
            &["--store", &store, "--registry", &registry][..],
            &["--store-timeout-secs", "2", "--lease-secs", "5"],
            &hooks,
        ]
        .concat(),
    );
    let cluster = on_cluster(&registry, &store, 5);
    let b = TestServer::start_with(|c| {
        cluster(c);
        c.webhook = vec![taking.clone(), failing.clone()];
    });
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 10, 30.0, 160, 120);
    let run = run_client(&[&a.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();
    let events = vec![format!("{id}.created"), format!("{id}.completed")];
    // A delivered both to the first URL, and keeps trying the second.
    wait_for(&took, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while failed.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "A never tried the failing URL");
        std::thread::sleep(Duration::from_millis(20));
    }
    a.kill();
    a_gone.store(true, Ordering::SeqCst);

    // B takes both events over once A's lease has run out, and sends them to the URL that
    // has not had them, only.
    assert_eq!(keys(&wait_for(&failed, 2), 200), events);
    settled(&b);
    assert_eq!(keys(&took.lock().unwrap(), 200), events);
    assert_eq!(keys(&failed.lock().unwrap(), 200), events);
    assert_eq!(
        registry_query(
            postgres,
            &registry,
            "SELECT count(*) FROM webhook_claims WHERE done_at IS NULL"
        ),
        "0"
    );
}

#[test]
fn three_servers_behind_a_load_balancer_lose_nothing_when_the_one_receiving_is_killed() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("balanced");
    let store = s3.store_url("registry-balanced");
    let data: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes: Vec<ServerProcess> = data
        .iter()
        .map(|dir| cluster_process(dir.path(), &registry, &store))
        .collect();
    let addrs: Vec<_> = nodes.iter().map(|node| node.addr).collect();
    let Some(balancer) = LoadBalancer::start(&addrs) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 300, 30.0, 320, 240);
    let client = Command::new(referee_tests::workspace_binary("referee-client"))
        .arg(balancer.http_url())
        .arg("--video")
        .arg(&video)
        // Paced, so that it is still uploading when its server is killed.
        .args(["--verbose", "--retries", "30", "--max-fps", "150"])
        .env("REFEREE_STATE_DIR", referee_tests::test_state_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The server receiving it, as the registry names it, once 40 frames are in.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (id, holder) = loop {
        let rows = registry_query(
            postgres,
            &registry,
            "SELECT id, acked_frames, coalesce(lease_node, '-') FROM sessions",
        );
        let row: Vec<&str> = rows.split('|').collect();
        if let [id, acked, node] = row[..] {
            if acked.parse::<u64>().unwrap_or(0) >= 40 && node != "-" {
                break (id.to_string(), node.to_string());
            }
        }
        assert!(Instant::now() < deadline, "no upload under way: {rows}");
        std::thread::sleep(Duration::from_millis(5));
    };
    let receiving = nodes
        .iter()
        .position(|node| holder.ends_with(&format!("/{}", node.pid())))
        .unwrap_or_else(|| panic!("{holder} is none of the three servers"));
    nodes[receiving].kill();

    // The client's reconnect goes through the balancer to another server, which takes the
    // upload over once the lease of the one killed has run out.
    let output = client.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Resumed session"), "{stdout}");
    assert_eq!(referee_tests::completed_id(&stdout), id);
    let (objects, _runtime, _local) = open_store(&store);
    assert_stored_exactly(&objects, &id, &video);
    // Every server left answers for it, through the balancer and directly.
    let (status, body) = referee_tests::http_get(balancer.addr, &format!("/api/sessions/{id}"));
    assert_eq!(status, 200, "{body}");
    for (i, node) in nodes.iter().enumerate().filter(|(i, _)| *i != receiving) {
        let (status, body) = node.get(&format!("/api/sessions/{id}")).unwrap();
        assert!(
            status == 200 && body.contains("\"complete\""),
            "server {i}: {status} {body}"
        );
    }
}

/// Copies session `id` of the data directory `data` into the bucket of `s3` under `prefix`,
/// as `docs/operations.md` tells operators to ("Moving a single server into a cluster").
fn copy_into_bucket(s3: &SeaweedFs, data: &std::path::Path, prefix: &str, id: &str) {
    let dir = data.join("sessions").join(id);
    let endpoint: std::net::SocketAddr = s3.endpoint.trim_start_matches("http://").parse().unwrap();
    let put = |from: &std::path::Path, to: &str| {
        let bytes = std::fs::read(from).unwrap();
        let path = format!("/{}/{prefix}/sessions/{id}/{to}", referee_tests::s3::BUCKET);
        let length = bytes.len().to_string();
        let sent = referee_tests::http_send(
            endpoint,
            "PUT",
            &path,
            &[("Content-Length", length.as_str())],
            &bytes,
        );
        assert_eq!(sent.status, 200, "PUT {path}");
    };
    let first = "frames/00000000000000000000";
    for entry in walk(&dir) {
        let name = entry
            .strip_prefix(&dir)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        match name.as_str() {
            "session.json" | "signal.txt" => put(&entry, &name),
            "frames.log" => put(&entry, &format!("{first}.dat")),
            "frames.idx" => put(&entry, &format!("{first}.idx")),
            _ if name.starts_with("tmp/") => {}
            _ => put(&entry, &format!("results/{name}")),
        }
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn a_single_servers_sessions_copied_into_the_bucket_are_served_by_the_cluster() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let single = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 40, 30.0, 320, 240);
    let signal = work.path().join("bout.txt");
    std::fs::write(&signal, "0.5 touch_left\n").unwrap();
    let id = single.stream_files(&video, &signal, &[]).session_id();
    single.wait_for_status(&id, "complete");
    let frame_path = format!("/api/sessions/{id}/frames/20.jpg");
    let frame = http_request(single.addr, "GET", &frame_path, &[]);
    let clips = single.get_json(&format!("/api/sessions/{id}")).1["clips"].clone();
    let mut single = single;
    single.stop();

    copy_into_bucket(s3, single.data_dir.path(), "registry-moved", &id);
    let registry = postgres.new_database("moved");
    let store = s3.store_url("registry-moved");
    let cluster = TestServer::start_with(on_cluster(&registry, &store, 15));
    let (status, seen) = cluster.get_json(&format!("/api/sessions/{id}"));
    assert_eq!(
        (status, &seen["status"]),
        (200, &"complete".into()),
        "{seen}"
    );
    assert_eq!(seen["clips"], clips);
    let (objects, _runtime, _local) = open_store(&store);
    assert_stored_exactly(&objects, &id, &video);
    let moved = http_request(cluster.addr, "GET", &frame_path, &[]);
    assert_eq!((moved.status, &moved.body), (200, &frame.body));
    let served = http_request(
        cluster.addr,
        "GET",
        &format!("/api/sessions/{id}/video.mp4"),
        &[],
    );
    assert_eq!(served.status, 200);
}

#[test]
fn an_upload_whose_server_and_client_both_stopped_is_detached_by_another_server() {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        return;
    };
    let registry = postgres.new_database("orphan");
    let store = s3.store_url("registry-orphan");
    let data = tempfile::tempdir().unwrap();
    let mut a = cluster_process(data.path(), &registry, &store);
    let cluster = on_cluster(&registry, &store, 5);
    let b = TestServer::start_with(|c| {
        cluster(c);
        c.cleanup_interval_secs = 1;
    });
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "bout.avi", 300, 30.0, 320, 240);
    let mut client = Command::new(referee_tests::workspace_binary("referee-client"))
        .arg(a.http_url())
        .arg("--video")
        .arg(&video)
        .args(["--max-fps", "60"])
        .env("REFEREE_STATE_DIR", referee_tests::test_state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    a.wait_for_frames(40);
    let _ = client.kill();
    let _ = client.wait();
    a.kill();
    let (_, list) = b.get_json("/api/sessions");
    let id = list["sessions"][0]["id"].as_str().unwrap().to_string();

    // Once A's lease has ended, B's sweeper recovers the upload: resumable, its frames kept.
    let detached = b.wait_for_status(&id, "detached");
    assert!(
        detached["frames_stored"].as_u64().unwrap() >= 40,
        "{detached}"
    );
    assert!(detached["resumable_until"].is_string(), "{detached}");
}
