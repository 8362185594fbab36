//! Hostile HTTP peers: requests sent halfway and held, more connections than a client may
//! have, more watchers than the server takes, pages from other origins; and the API's errors,
//! every one `{code, message}` JSON. Each time `/health` still answers, and a normal session
//! beside the attack completes byte-identical.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use referee_server::store::SessionStore;
use referee_tests::{
    client_frames, http_get, http_request, http_send, make_video, run_client, TestServer,
};

/// A TCP connection to `server` from the loopback address `from` (127.0.0.2...), so that a
/// test can be several clients at once.
fn connect_from(from: &str, server: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse::<IpAddr>().unwrap(), 0))
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let stream = runtime.block_on(socket.connect(server)).unwrap();
    let stream = stream.into_std().unwrap();
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Reads until the server closes the connection (or `limit` passes): what it sent, and
/// whether it closed.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        match stream.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset is a close too.
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

/// Streams a short video with the real client and checks every frame arrived as sent.
fn normal_session_completes_byte_identical(server: &TestServer) {
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "beside.avi", 8, 30.0, 160, 120);
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--quality",
        "85",
    ]);
    run.assert_success();
    let id = run.session_id();
    let sent = client_frames(&video, 85);
    let mut stored = server.store().frame_source(&id).unwrap();
    assert_eq!(stored.len(), sent.len() as u64);
    for (index, jpeg) in sent.iter().enumerate() {
        assert!(
            stored.read(index as u64).unwrap().payload == jpeg[..],
            "frame {index} differs from what the client sent"
        );
    }
}

fn health_answers(server: &TestServer) {
    let (status, body) = http_get(server.addr, "/health");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_request_sent_halfway_is_closed_within_the_header_timeout() {
    let server = TestServer::start_with(|c| c.header_read_timeout_secs = 1);
    let mut held = TcpStream::connect(server.addr).unwrap();
    held.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Not a timing assertion: the deadline only keeps a server that never closes from
    // hanging the test.
    let (_, closed) = read_until_closed(&mut held, Duration::from_secs(60));
    assert!(closed, "the server still holds a request sent halfway");
    health_answers(&server);
    let (_, metrics) = http_get(server.addr, "/metrics");
    assert!(
        metrics.contains("referee_http_header_timeouts_total 1"),
        "{metrics}"
    );
}

#[test]
fn a_tls_handshake_left_halfway_is_closed_within_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let server = TestServer::start_with(|c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.tls_handshake_timeout_secs = 1;
    });
    // The first bytes of a ClientHello record, and nothing more.
    let mut held = TcpStream::connect(server.addr).unwrap();
    held.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    let (_, closed) = read_until_closed(&mut held, Duration::from_secs(60));
    assert!(
        closed,
        "the server still holds a TLS handshake left halfway"
    );
}

#[test]
fn an_idle_kept_alive_connection_is_closed() {
    let server = TestServer::start_with(|c| c.keep_alive_timeout_secs = 1);
    let mut idle = TcpStream::connect(server.addr).unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (got, closed) = read_until_closed(&mut idle, Duration::from_secs(60));
    assert!(closed, "an idle kept-alive connection stays open");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn connections_over_the_per_client_cap_are_refused_while_others_are_served() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_client = 4;
        c.header_read_timeout_secs = 600;
    });
    // An attacker at 127.0.0.2 holds as many half-sent requests as it may...
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut tcp = connect_from("127.0.0.2", server.addr);
            tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            tcp
        })
        .collect();
    // ...and the next one is refused, told why.
    let mut over = connect_from("127.0.0.2", server.addr);
    let _ = over.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let (got, closed) = read_until_closed(&mut over, Duration::from_secs(60));
    assert!(closed, "a connection over the cap was kept");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.is_empty()
            || (text.starts_with("HTTP/1.1 503") && text.contains("too_many_connections")),
        "{text}"
    );

    // Everyone else is served: /health, and a whole session byte-identical.
    health_answers(&server);
    normal_session_completes_byte_identical(&server);
    let (_, metrics) = http_get(server.addr, "/metrics");
    assert!(
        metrics.contains("referee_connections_refused_total{limit=\"per_client\"} 1"),
        "{metrics}"
    );

    // The attacker's connections were held all along; once they close, it may connect again.
    for tcp in &mut held {
        tcp.set_read_timeout(Some(Duration::from_millis(10)))
            .unwrap();
        let mut buf = [0u8; 1];
        assert!(tcp.read(&mut buf).is_err(), "a held connection was closed");
    }
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut again = connect_from("127.0.0.2", server.addr);
        again
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (got, _) = read_until_closed(&mut again, Duration::from_secs(10));
        if got.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&got)
        );
    }
}

/// Opens a watcher at `path` from `from`; its status and, if it is refused, its body.
fn open_watcher(from: &str, server: &TestServer, path: &str) -> (u16, String, TcpStream) {
    let mut tcp = connect_from(from, server.addr);
    write!(tcp, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = String::new();
    if status != 200 {
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().to_string())
            })
            .unwrap()
            .parse()
            .unwrap();
        let mut bytes = vec![0u8; length];
        tcp.read_exact(&mut bytes).unwrap();
        body = String::from_utf8_lossy(&bytes).into_owned();
    }
    (status, body, tcp)
}

#[test]
fn watchers_over_the_caps_are_refused_with_a_clear_error() {
    let server = TestServer::start_with(|c| {
        c.max_watchers_per_client = 2;
        c.max_watchers = 3;
    });
    let mut open = Vec::new();
    for path in ["/api/events", "/api/sessions/nobody/live.mjpeg?timeout=600"] {
        let (status, body, tcp) = open_watcher("127.0.0.1", &server, path);
        assert_eq!(status, 200, "{path}: {body}");
        open.push(tcp);
    }
    // A third from the same address: 429.
    let (status, body, _) = open_watcher("127.0.0.1", &server, "/api/sessions/nobody/events");
    assert_eq!(status, 429, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["code"], "too_many_watchers", "{body}");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("--max-watchers-per-client"),
        "{body}"
    );
    // Another address may, up to the server's total; then 503.
    let (status, body, tcp) = open_watcher("127.0.0.2", &server, "/api/events");
    assert_eq!(status, 200, "{body}");
    open.push(tcp);
    let (status, body, _) = open_watcher("127.0.0.3", &server, "/api/events");
    assert_eq!(status, 503, "{body}");
    let refused: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refused["code"], "too_many_watchers", "{body}");

    health_answers(&server);
    let (_, metrics) = http_get(server.addr, "/metrics");
    assert!(metrics.contains("referee_watchers 3"), "{metrics}");
    assert!(
        metrics.contains("referee_watchers_refused_total{limit=\"per_client\"} 1")
            && metrics.contains("referee_watchers_refused_total{limit=\"total\"} 1"),
        "{metrics}"
    );
}

/// The status of a WebSocket upgrade of `/stream` with these extra headers.
fn upgrade_status(server: &TestServer, extra: &[(&str, &str)]) -> (u16, String) {
    let mut headers = vec![
        ("Connection", "Upgrade"),
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    headers.extend_from_slice(extra);
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    let mut request = format!("GET /stream HTTP/1.1\r\nHost: {}\r\n", server.addr);
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    tcp.write_all(request.as_bytes()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut got = vec![0u8; 4096];
    let n = tcp.read(&mut got).unwrap();
    let text = String::from_utf8_lossy(&got[..n]).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, text)
}

#[test]
fn pages_from_other_origins_may_not_stream_to_a_server_without_tokens() {
    let server = TestServer::start_with(|c| {
        c.allowed_origin = vec!["https://scores.example.org".into()];
    });
    let own = format!("http://{}", server.addr);
    let (status, text) = upgrade_status(&server, &[("Origin", "https://evil.example")]);
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("\"code\":\"origin_not_allowed\""), "{text}");
    assert!(text.contains("--allowed-origin"), "{text}");
    for origin in [own.as_str(), "https://scores.example.org"] {
        let (status, text) = upgrade_status(&server, &[("Origin", origin)]);
        assert_eq!(status, 101, "{origin}: {text}");
    }
    // Not a browser: no Origin, never refused.
    let (status, text) = upgrade_status(&server, &[]);
    assert_eq!(status, 101, "{text}");
    normal_session_completes_byte_identical(&server);

    // With a token, any origin (the token protects the server).
    let guarded = TestServer::start_with(|c| c.token = Some("s3cret".into()));
    let (status, text) = upgrade_status(
        &guarded,
        &[
            ("Origin", "https://evil.example"),
            ("Authorization", "Bearer s3cret"),
        ],
    );
    assert_eq!(status, 101, "{text}");
}

#[test]
fn every_api_error_is_code_and_message_json() {
    let server = TestServer::start();
    let post = |headers: &[(&str, &str)], body: &[u8]| {
        http_send(server.addr, "POST", "/api/sessions", headers, body)
    };
    let wrong_type = post(
        &[("Content-Type", "text/plain"), ("Content-Length", "5")],
        b"hello",
    );
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.text());
    assert_eq!(wrong_type.json()["code"], "unsupported_media_type");
    assert!(wrong_type.json()["message"]
        .as_str()
        .unwrap()
        .contains("application/json"));

    let body = br#"{"name": "pool_a", "colour": "red"}"#;
    let length = body.len().to_string();
    let unknown = post(
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", length.as_str()),
        ],
        body,
    );
    assert_eq!(unknown.status, 422, "{}", unknown.text());
    assert_eq!(unknown.json()["code"], "invalid_body");
    assert!(unknown.json()["message"]
        .as_str()
        .unwrap()
        .contains("colour"));

    // No body at all: a session with the default name.
    let created = post(&[("Content-Length", "0")], b"");
    assert_eq!(created.status, 201, "{}", created.text());

    for (method, path, status, code) in [
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("PUT", "/api/sessions", 405, "method_not_allowed"),
        (
            "GET",
            "/api/sessions/x/events?timeout=soon",
            400,
            "invalid_request",
        ),
        ("GET", "/stream", 400, "invalid_request"),
    ] {
        let response = http_request(server.addr, method, path, &[]);
        assert_eq!(
            response.status,
            status,
            "{method} {path}: {}",
            response.text()
        );
        let json = response.json();
        assert_eq!(json["code"], code, "{method} {path}: {}", response.text());
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{json}"
        );
    }
}

#[test]
fn frames_are_jpeg_and_private_where_a_token_is_needed() {
    let server = TestServer::start_with(|c| c.token = Some("s3cret".into()));
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 3, 30.0, 160, 120);
    let run = run_client(&[
        &server.http_url(),
        "--video",
        video.to_str().unwrap(),
        "--token",
        "s3cret",
    ]);
    run.assert_success();
    let id = run.session_id();
    let frame = http_request(
        server.addr,
        "GET",
        &format!("/api/sessions/{id}/frames/0.jpg"),
        &[("Authorization", "Bearer s3cret")],
    );
    assert_eq!(frame.status, 200);
    assert_eq!(frame.header("content-type"), Some("image/jpeg"));
    let cache = frame.header("cache-control").unwrap();
    assert!(cache.starts_with("private"), "{cache}");
    assert_eq!(&frame.body[..2], &[0xFF, 0xD8]);
    let report = http_request(
        server.addr,
        "GET",
        &format!("/api/sessions/{id}/report.json"),
        &[("Authorization", "Bearer s3cret")],
    );
    assert!(
        report
            .header("cache-control")
            .unwrap()
            .starts_with("private"),
        "{:?}",
        report.headers
    );
}
