//! Webhooks: signed, retried, one idempotency key per event, never lost or repeated across a
//! restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use referee_tests::{make_video, run_client, TestServer};

#[derive(Debug, Clone)]
pub(crate) struct Received {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    answered: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A webhook receiver that answers 500 to its first request, then 200.
fn receiver() -> (String, Arc<Mutex<Vec<Received>>>) {
    receiver_with(|log| log.is_empty())
}

/// A webhook receiver that answers 500 when `failing` says so (given the requests so far),
/// else 200.
pub(crate) fn receiver_with(
    failing: impl Fn(&[Received]) -> bool + Send + 'static,
) -> (String, Arc<Mutex<Vec<Received>>>) {
    receiver_answering(move |log| (if failing(log) { 500 } else { 200 }, String::new()))
}

/// A webhook receiver whose answer (status and extra header lines) `answer` chooses, given
/// the requests so far.
fn receiver_answering(
    answer: impl Fn(&[Received]) -> (u16, String) + Send + 'static,
) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut headers = Vec::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let trimmed = line.trim_end();
                if trimmed.is_empty() {
                    break;
                }
                if let Some((k, v)) = trimmed.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            reader.read_exact(&mut body).unwrap();
            let mut log = log.lock().unwrap();
            let (answered, extra) = answer(&log);
            log.push(Received {
                headers,
                body,
                answered,
            });
            let _ = write!(
                stream,
                "HTTP/1.1 {answered} X\r\n{extra}Content-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

pub(crate) fn wait_for(seen: &Arc<Mutex<Vec<Received>>>, ok: usize) -> Vec<Received> {
    wait_until(seen, |got| {
        got.iter().filter(|r| r.answered == 200).count() >= ok
    })
}

fn wait_until(
    seen: &Arc<Mutex<Vec<Received>>>,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = seen.lock().unwrap().clone();
        if done(&got) {
            return got;
        }
        assert!(Instant::now() < deadline, "webhooks received: {got:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the server has sent everything it will: it answers HTTP (so its start-up
/// catch-up of the outbox is done and dispatched) and its outbox is empty (every event
/// delivered to every URL, or set aside). A repeat would have reached the receiver by then.
pub(crate) fn settled(server: &TestServer) {
    let (status, _) = server.get_json("/health");
    assert_eq!(status, 200);
    let outbox = server.data_dir.path().join("webhooks/outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pending: Vec<_> = std::fs::read_dir(&outbox)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .map(|e| e.file_name())
            .collect();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still in the outbox: {pending:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The idempotency keys of the requests `got` that were answered `status`.
pub(crate) fn keys(got: &[Received], status: u16) -> Vec<String> {
    got.iter()
        .filter(|r| r.answered == status)
        .filter_map(|r| r.header("Idempotency-Key").map(String::from))
        .collect()
}

#[test]
fn events_are_signed_retried_and_sent_once() {
    let (url, seen) = receiver();
    let configure = |c: &mut referee_server::Config| {
        c.webhook = vec![url.clone()];
        c.webhook_secret = Some("hook-secret".into());
    };
    let server = TestServer::start_with(configure);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 4, 30.0, 160, 120);
    let run = run_client(&[&server.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();

    let got = wait_for(&seen, 2);
    // The first attempt failed (500) and was retried with the same key.
    assert_eq!(got[0].answered, 500);
    assert_eq!(
        got[0].header("Idempotency-Key"),
        got[1].header("Idempotency-Key")
    );
    let delivered: Vec<&Received> = got.iter().filter(|r| r.answered == 200).collect();
    let keys: Vec<&str> = delivered
        .iter()
        .filter_map(|r| r.header("Idempotency-Key"))
        .collect();
    assert_eq!(
        keys,
        vec![format!("{id}.created"), format!("{id}.completed")]
    );
    for r in &delivered {
        let expected = referee_server::notify::webhooks::signature("hook-secret", &r.body);
        assert_eq!(r.header("X-Referee-Signature"), Some(expected.as_str()));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["session_id"], id.as_str());
        assert!(body["session"].get("resume_token").is_none());
    }
    let completed: serde_json::Value = serde_json::from_slice(&delivered[1].body).unwrap();
    assert_eq!(completed["event"], "session.completed");
    assert_eq!(completed["session"]["frames_stored"], 4);

    // A restart sends nothing again.
    let count = seen.lock().unwrap().len();
    let server = server.restart_with(configure);
    settled(&server);
    assert_eq!(
        seen.lock().unwrap().len(),
        count,
        "a restart repeated an event"
    );
    drop(server);
}

#[test]
fn a_failing_receiver_neither_holds_up_nor_repeats_to_the_others() {
    let (good_url, good) = receiver_with(|_| false);
    let down = Arc::new(AtomicBool::new(true));
    let (bad_url, bad) = {
        let down = Arc::clone(&down);
        receiver_with(move |_| down.load(Ordering::SeqCst))
    };
    let configure = |c: &mut referee_server::Config| {
        c.webhook = vec![good_url.clone(), bad_url.clone()];
    };
    let server = TestServer::start_with(configure);
    let work = tempfile::tempdir().unwrap();
    let video = make_video(work.path(), "v.avi", 4, 30.0, 160, 120);
    let run = run_client(&[&server.http_url(), "--video", video.to_str().unwrap()]);
    run.assert_success();
    let id = run.session_id();
    let both = vec![format!("{id}.created"), format!("{id}.completed")];

    // The healthy receiver gets each event once while the other one keeps failing...
    let got = wait_for(&good, 2);
    assert_eq!(keys(&got, 200), both);
    assert_eq!(got.len(), 2, "the healthy receiver got an event twice");
    // ...which is retried its first event, its next one waiting behind it.
    let got_bad = wait_until(&bad, |got| got.len() >= 2);
    assert!(keys(&got_bad, 200).is_empty());
    assert!(
        keys(&got_bad, 500).iter().all(|k| *k == both[0]),
        "{got_bad:?}"
    );

    // A restart while it is down sends the healthy one nothing again; once the failing
    // receiver is back, it gets each event once.
    let server = server.restart_with(configure);
    down.store(false, Ordering::SeqCst);
    let got_bad = wait_for(&bad, 2);
    assert_eq!(keys(&got_bad, 200), both);
    settled(&server);
    assert_eq!(
        good.lock().unwrap().len(),
        2,
        "the healthy receiver got a repeat"
    );
    assert_eq!(
        keys(&bad.lock().unwrap(), 200),
        both,
        "a repeat once delivered"
    );

    // Nor does another restart repeat anything to either.
    let (good_count, bad_count) = (good.lock().unwrap().len(), bad.lock().unwrap().len());
    let server = server.restart_with(configure);
    settled(&server);
    assert_eq!(good.lock().unwrap().len(), good_count);
    assert_eq!(bad.lock().unwrap().len(), bad_count);
    drop(server);
}

#[test]
fn a_redirect_is_not_followed() {
    let (elsewhere_url, elsewhere) = receiver_with(|_| false);
    let (url, seen) = receiver_answering(move |_| (307, format!("Location: {elsewhere_url}\r\n")));
    let server = TestServer::start_with(|c| {
        c.webhook = vec![url.clone()];
        c.webhook_attempts = 2;
    });
    let id = server.create_session_ahead();
    // Both attempts are redirected, and the event is set aside...
    let got = wait_until(&seen, |got| got.len() >= 2);
    assert!(got.iter().all(|r| r.answered == 307));
    let failed = server
        .data_dir
        .path()
        .join(format!("webhooks/failed/{id}.created.json"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !failed.is_file() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            failed.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...never sent where the redirect pointed.
    assert!(
        elsewhere.lock().unwrap().is_empty(),
        "the redirect was followed"
    );
}
