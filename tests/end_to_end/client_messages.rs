//! What the client says when it cannot reach the server, and the links it prints: each
//! failure gets its own hint (TLS or not, unknown host, nothing listening, a missing or a
//! wrong token) for streaming, `status` and `list` alike; the dashboard link of the session;
//! `create` and `delete`; REFEREE_TOKEN for every command.

use std::process::Command;

use referee_server::store::{SessionStatus, SessionStore};

use referee_tests::{
    make_video, run_client, test_state_dir, workspace_binary, ClientRun, TestServer,
};

/// Runs the client with REFEREE_TOKEN set to `token`.
fn run_with_token(token: &str, args: &[&str]) -> ClientRun {
    let output = Command::new(workspace_binary("referee-client"))
        .args(args)
        .env("REFEREE_TOKEN", token)
        .env("REFEREE_STATE_DIR", test_state_dir())
        .output()
        .unwrap();
    ClientRun::from(output)
}

/// The one `error:` line of a failed run.
fn error_line(run: &ClientRun) -> String {
    assert_eq!(run.code, Some(1), "{}", run.transcript());
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(lines.len(), 1, "{}", run.transcript());
    lines[0].to_string()
}

fn tls_server(dir: &std::path::Path) -> TestServer {
    let (cert, key) = referee_tests::self_signed_cert(dir);
    TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
}

#[test]
fn each_connection_failure_says_what_is_wrong() {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let video = video.to_str().unwrap();

    // https:// to a plain server.
    let plain = TestServer::start();
    let https = format!("https://{}", plain.addr);
    for args in [
        vec![https.as_str(), "--video", video],
        vec!["list", https.as_str()],
    ] {
        let line = error_line(&run_client(&args));
        assert!(
            line.contains("does not speak TLS") && line.contains("use http://"),
            "{line}"
        );
    }

    // http:// to a TLS server; untrusted certificate.
    let tls = tls_server(work.path());
    let http = format!("http://localhost:{}", tls.addr.port());
    for args in [
        vec![http.as_str(), "--video", video],
        vec!["list", http.as_str()],
    ] {
        let line = error_line(&run_client(&args));
        assert!(line.contains("use https://"), "{line}");
    }
    let https = format!("https://localhost:{}", tls.addr.port());
    for args in [
        vec![https.as_str(), "--video", video],
        vec!["list", https.as_str()],
    ] {
        let line = error_line(&run_client(&args));
        assert!(
            line.contains("TLS failed") && line.contains("--ca"),
            "{line}"
        );
    }

    // An unknown host, and nothing listening: status and list get the same hints.
    for args in [
        vec!["http://no-such-host.invalid:8080", "--video", video],
        vec!["status", "http://no-such-host.invalid:8080", "x"],
    ] {
        let line = error_line(&run_client(&args));
        assert!(line.contains("host name is not known"), "{line}");
    }
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let url = format!("http://{down}");
    for args in [
        vec![url.as_str(), "--video", video],
        vec!["list", url.as_str()],
        vec!["status", url.as_str(), "x"],
    ] {
        let line = error_line(&run_client(&args));
        assert!(
            line.ends_with("nothing listens on that port: is the server running?"),
            "{line}"
        );
    }

    // A missing token and a wrong one.
    let guarded = TestServer::start_with(|c| c.token = Some("right".into()));
    let url = guarded.http_url();
    for args in [
        vec![url.as_str(), "--video", video],
        vec!["list", url.as_str()],
    ] {
        let line = error_line(&run_client(&args));
        assert!(line.contains("the server asks for a token"), "{line}");
        let line = error_line(&run_with_token("wrong", &args));
        assert!(line.contains("the server refused this token"), "{line}");
    }
}

#[test]
fn the_token_variable_works_for_every_command_and_links_open_the_dashboard() {
    let server = TestServer::start_with(|c| c.admin_token = Some("admin-t".into()));
    let url = server.http_url();
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 5, 30.0, 160, 120);

    // Without a scheme: http://.
    let bare = server.addr.to_string();
    let run = run_with_token("admin-t", &[&bare, "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();
    let page = format!("{url}/#/sessions/{id}");
    assert!(
        run.stdout.contains(&format!("Dashboard: {page}\n")),
        "{}",
        run.transcript()
    );
    assert!(
        run.stdout.contains(&format!("Results: {page} (")),
        "{}",
        run.transcript()
    );
    // The page opens without a token (it asks for one in its form).
    let (status, _) = referee_tests::http_get(server.addr, "/");
    assert_eq!(status, 200);

    for args in [
        vec!["list", url.as_str()],
        vec!["status", url.as_str(), id.as_str()],
    ] {
        let run = run_with_token("admin-t", &args);
        run.assert_success();
        assert!(run.stdout.contains(&id), "{}", run.transcript());
    }

    // create and delete.
    let run = run_with_token("admin-t", &["create", &url, "drill"]);
    run.assert_success();
    let created = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Created session "))
        .unwrap_or_else(|| panic!("{}", run.transcript()))
        .to_string();
    assert!(created.contains("_drill_"), "{created}");
    assert!(
        run.stdout
            .contains(&format!("Dashboard: {url}/#/sessions/{created}")),
        "{}",
        run.transcript()
    );
    let meta = server.store().load_meta(&created).unwrap();
    assert_eq!(meta.status, SessionStatus::Created);
    let run = run_with_token("admin-t", &["delete", &url, &created]);
    run.assert_success();
    assert!(
        run.stdout.contains(&format!("Deleted session {created}")),
        "{}",
        run.transcript()
    );
    let line = error_line(&run_with_token("admin-t", &["delete", &url, &created]));
    assert!(line.contains(&format!("no session {created:?}")), "{line}");
}
