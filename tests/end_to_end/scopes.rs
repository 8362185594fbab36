//! Scoped tokens: watch reads, ingest streams, admin deletes; /health and /metrics open or
//! protected by configuration.

use referee_tests::{http_request, make_video, run_client, TestServer};

/// The status of `method path` with an optional bearer token.
fn status(server: &TestServer, method: &str, path: &str, token: Option<&str>) -> u16 {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    http_request(server.addr, method, path, &headers).status
}

#[test]
fn each_token_may_do_what_its_scope_allows() {
    let server = TestServer::start_with(|c| {
        c.token = Some("ingest-t".into());
        c.watch_token = Some("watch-t".into());
        c.admin_token = Some("admin-t".into());
        c.protect_metrics = true;
    });
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let video = video.to_str().unwrap();

    // A watch token cannot stream.
    let run = run_client(&[&server.http_url(), "--video", video, "--token", "watch-t"]);
    run.assert_failure();
    assert!(run.stderr.contains("403"), "{}", run.transcript());
    // An ingest token can.
    let run = run_client(&[&server.http_url(), "--video", video, "--token", "ingest-t"]);
    run.assert_success();
    let id = run.session_id();
    let session = format!("/api/sessions/{id}");

    assert_eq!(status(&server, "GET", "/api/sessions", None), 401);
    assert_eq!(status(&server, "GET", "/api/sessions", Some("nope")), 401);
    assert_eq!(
        status(&server, "GET", "/api/sessions", Some("watch-t")),
        200
    );
    assert_eq!(
        status(&server, "GET", &format!("{session}?token=watch-t"), None),
        200
    );
    assert_eq!(
        status(&server, "POST", "/api/sessions", Some("watch-t")),
        403
    );
    assert_eq!(status(&server, "DELETE", &session, Some("ingest-t")), 403);
    assert_eq!(status(&server, "GET", "/health", None), 200);
    assert_eq!(status(&server, "GET", "/metrics", None), 401);
    assert_eq!(status(&server, "GET", "/metrics", Some("watch-t")), 200);
    let deleted = status(&server, "DELETE", &session, Some("admin-t"));
    assert!(deleted == 200 || deleted == 204, "{deleted}");
    assert_eq!(status(&server, "GET", &session, Some("admin-t")), 404);
}

#[test]
fn a_token_in_the_query_is_url_decoded() {
    let server = TestServer::start_with(|c| {
        c.watch_token = Some("a+b/c=d%e".into());
    });
    // As the dashboard's `URLSearchParams` writes it.
    assert_eq!(
        status(
            &server,
            "GET",
            "/api/sessions?token=a%2Bb%2Fc%3Dd%25e",
            None
        ),
        200
    );
    assert_eq!(
        status(&server, "GET", "/api/sessions", Some("a+b/c=d%e")),
        200
    );
    assert_eq!(
        status(&server, "GET", "/api/sessions?token=a+b/c=d%e", None),
        401,
        "`+` is a space and `%e` no escape: not the token"
    );
}
