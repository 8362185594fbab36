//! The web dashboard at `/`, driven in headless Chromium (through chromedriver) while real
//! clients stream: the sessions list updates live, a session's page follows it from "waiting
//! for the upload" through the live view to its report, and clicking an event seeks the
//! video. Screenshots (desktop and 390 px phone width) go to `target/test-artifacts/`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use referee_sample_data::SyntheticVideo;
use referee_tests::webdriver::Browser;
use referee_tests::{
    artifacts_dir, http_request, run_client, test_state_dir, workspace_binary, TestServer,
};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(90);
const SHORT: Duration = Duration::from_secs(20);

/// The signal events of the test bout (10 s at 30 fps): time, line.
const EVENTS: [(f64, &str); 3] = [
    (1.9, "touch_left score=1-0"),
    (4.95, "touch_right score=1-1"),
    (8.2, "halt note=<b>not-bold</b>"),
];

/// A 300-frame 640x480 bout with three bursts of motion, and its signal file.
fn bout(dir: &Path) -> (String, String) {
    let video = dir.join("bout.avi");
    let spec = SyntheticVideo {
        frames: 300,
        fps: 30.0,
        width: 640,
        height: 480,
    };
    referee_sample_data::write_motion_video(&video, &spec, &[(30, 58), (120, 149), (225, 246)])
        .unwrap();
    let signal = dir.join("bout.txt");
    referee_sample_data::write_signal(&signal, &EVENTS).unwrap();
    (
        video.to_str().unwrap().to_string(),
        signal.to_str().unwrap().to_string(),
    )
}

/// Takes a full-page screenshot at desktop width and at a 390 px phone width.
fn screenshots(browser: &Browser, name: &str) {
    let dir = artifacts_dir();
    browser.viewport(1280, 900, false);
    // From the top, so that the sticky header is where it belongs.
    browser.eval("window.scrollTo(0, 0); return true;");
    browser.screenshot(&dir.join(format!("dashboard-{name}-desktop.png")));
    browser.viewport(390, 844, true);
    // The layout has settled at the new width once two frames have been drawn at it.
    browser.wait_for(
        "the phone width",
        Duration::from_secs(10),
        "return new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(window.innerWidth === 390))))",
    );
    browser.eval("window.scrollTo(0, 0); return true;");
    let wide = browser.eval("return document.documentElement.scrollWidth");
    browser.screenshot(&dir.join(format!("dashboard-{name}-phone.png")));
    // Nothing but the plot (which scrolls in its own box) may be wider than the phone.
    assert!(
        wide.as_u64().unwrap_or(0) <= 390,
        "the {name} page is {wide} px wide at a 390 px phone width"
    );
    browser.viewport(1280, 900, false);
}

/// Records, in the page, every state a session row shows, to check it changed live.
const RECORD_ROWS: &str = r#"
window.__noReload = 'still the same page';
window.__rows = {};
const record = () => {
  for (const tr of document.querySelectorAll('tr.session')) {
    const seen = window.__rows[tr.dataset.id] = window.__rows[tr.dataset.id] || [];
    const state = tr.dataset.status + ' ' + tr.querySelector('td.num').textContent;
    if (seen[seen.length - 1] !== state) seen.push(state);
  }
};
new MutationObserver(record).observe(document.getElementById('view'),
  { subtree: true, childList: true, characterData: true, attributes: true });
return true;
"#;

#[test]
fn the_dashboard_follows_sessions_live_and_seeks_the_video_to_an_event() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let (video, signal) = bout(work.path());
    let browser = Browser::start(1280, 900);

    // The list, empty, listening.
    browser.goto(&format!("{}/#/", server.http_url()));
    browser.wait_for(
        "the empty sessions list, following live events",
        SHORT,
        "const empty = document.querySelector('.empty');
         return empty && !empty.hidden
           && document.getElementById('connection').textContent === 'live';",
    );
    browser.eval(RECORD_ROWS);

    // A session streamed while the list is open: its row appears and follows it.
    let url = server.http_url();
    let (v, s) = (video.clone(), signal.clone());
    let client = std::thread::spawn(move || {
        run_client(&[&url, "--video", &v, "--signal", &s, "--max-fps", "60"])
    });
    let id = browser.wait_for(
        "a row for the streamed session, receiving",
        SHORT,
        "const tr = document.querySelector('tr.session[data-status=receiving]');
         return tr && tr.dataset.id;",
    );
    let id = id.as_str().unwrap().to_string();
    browser.wait_for(
        "the row's progress bar part way",
        SHORT,
        "const bar = document.querySelector('tr.session .bar');
         const now = Number(bar.getAttribute('aria-valuenow'));
         return now > 0 && now < 100;",
    );
    screenshots(&browser, "list-receiving");
    let run = client.join().unwrap();
    run.assert_success();
    assert_eq!(run.session_id(), id);
    browser.wait_for(
        "the row complete",
        LONG,
        &format!("return document.querySelector('tr.session[data-id=\"{id}\"]').dataset.status === 'complete';"),
    );
    let seen = browser.eval_with("return window.__rows[arguments[0]];", json!([id]));
    let states: Vec<String> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let position = |status: &str| states.iter().position(|s| s.starts_with(status));
    let (receiving, processing, complete) = (
        position("receiving "),
        position("processing "),
        position("complete "),
    );
    assert!(
        receiving.is_some() && receiving < processing && processing < complete,
        "the row did not go receiving → processing → complete live: {states:?}"
    );
    assert!(
        states
            .iter()
            .any(|s| s.starts_with("receiving ") && !s.contains(" 300 / 300")),
        "no frame count part way: {states:?}"
    );
    assert_eq!(states.last().unwrap(), "complete 300 / 300", "{states:?}");

    // A session created ahead of its upload appears at once; its page waits for the upload.
    let ahead = server.create_session_ahead();
    browser.wait_for(
        "a row for the session created ahead",
        SHORT,
        &format!(
            "const tr = document.querySelector('tr.session[data-id=\"{ahead}\"]');
                  return tr && tr.dataset.status === 'created';"
        ),
    );
    browser.click(&format!("tr.session[data-id=\"{ahead}\"] a"));
    browser.wait_for(
        "the session page, waiting for the upload",
        SHORT,
        &format!(
            "return location.hash === '#/sessions/{ahead}'
               && document.querySelector('.panel h2')?.textContent === 'Waiting for the upload';"
        ),
    );

    // Streamed into: the live view shows the frames, the bar follows them.
    let url = server.http_url();
    let session = ahead.clone();
    let client = std::thread::spawn(move || {
        run_client(&[
            &url,
            "--video",
            &video,
            "--signal",
            &signal,
            "--session",
            &session,
            "--max-fps",
            "30",
        ])
    });
    browser.wait_for(
        "the live view showing a frame, and the progress part way",
        SHORT,
        "const img = document.querySelector('.live-view img');
         const bar = document.querySelector('.panel .bar');
         const now = bar && Number(bar.getAttribute('aria-valuenow'));
         return img && img.complete && img.naturalWidth === 640 && now > 0 && now < 100;",
    );
    let text = browser.eval("return document.querySelector('.progress-text').textContent;");
    assert!(
        text.as_str().unwrap().contains(" of 300 frames stored"),
        "{text}"
    );
    screenshots(&browser, "session-receiving");

    // Complete: the report appears on the same page.
    let run = client.join().unwrap();
    run.assert_success();
    let report = browser.wait_for(
        "the report: one row per event with both thumbnails, the timeline, the video",
        LONG,
        "const rows = document.querySelectorAll('table.events tr.event');
         const images = [...document.querySelectorAll('table.events img')];
         const video = document.querySelector('video#video');
         if (rows.length !== 3 || !video || video.readyState < 1) return null;
         if (!images.every(i => i.complete && i.naturalWidth > 0)) return null;
         return {
           images: images.length,
           markers: document.querySelectorAll('svg.timeline g.event').length,
           segments: document.querySelectorAll('svg.timeline rect.segment').length,
           points: document.querySelector('svg.timeline polyline.motion').getAttribute('points').split(' ').length,
           video: video.getAttribute('src'),
           duration: video.duration,
           badge: document.querySelector('.page-head .status').textContent,
           live: document.querySelectorAll('.live-view').length,
         };",
    );
    assert_eq!(report["markers"], 3, "{report}");
    assert!(report["images"].as_u64().unwrap() >= 3, "{report}");
    assert_eq!(report["segments"], 3, "{report}");
    assert_eq!(report["points"], 300, "{report}");
    assert!(
        report["video"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/api/sessions/{ahead}/video")),
        "{report}"
    );
    assert!(
        (report["duration"].as_f64().unwrap() - 10.0).abs() < 0.1,
        "{report}"
    );
    assert_eq!(report["badge"], "complete", "{report}");
    assert_eq!(
        report["live"], 0,
        "the live view stays after the upload: {report}"
    );
    let names = browser.eval(
        "return [...document.querySelectorAll('table.events tr.event strong')].map(e => e.textContent);",
    );
    assert_eq!(names, json!(["touch_left", "touch_right", "halt"]));
    // The score track under the plot: the score after each touch, and the halt; touches
    // left and right in their colours; the halt has no "action start".
    let track = browser.eval(
        "return [[...document.querySelectorAll('svg.timeline g.bout-item .score-text')].map(e => e.textContent),
                 document.querySelectorAll('svg.timeline g.bout-item').length,
                 [...document.querySelectorAll('svg.timeline g.event circle')].map(c => getComputedStyle(c).fill),
                 document.querySelector('table.events tr.event[data-index=\"2\"]').textContent.includes('began')];",
    );
    assert_eq!(
        track,
        json!([
            ["1-0", "1-1"],
            3,
            ["rgb(214, 47, 47)", "rgb(31, 157, 69)", "rgb(29, 35, 48)"],
            false
        ])
    );
    // Text from the signal file is shown as text, never as markup.
    let fields = browser.eval(
        "return [[...document.querySelectorAll('table.events .field')].map(e => e.textContent),
                 document.querySelectorAll('#view b').length];",
    );
    assert_eq!(
        fields,
        json!([["score=1-0", "score=1-1", "note=<b>not-bold</b>"], 0])
    );

    // Clicking an event's row, then another's marker, seeks the video: a touch to 1 s
    // before where its action began (the phrase of frames 120-149 began at 4.0 s), a halt
    // to itself.
    for (selector, index, time) in [
        ("table.events tr.event[data-index=\"1\"]", 1, 3.0),
        (
            "svg.timeline g.event[data-index=\"2\"] circle",
            2,
            EVENTS[2].0,
        ),
    ] {
        browser.click(selector);
        let at = browser.wait_for(
            "the video at the event's time",
            SHORT,
            &format!(
                "const v = document.querySelector('video#video');
                 return !v.seeking && v.readyState >= 2 && Math.abs(v.currentTime - {time}) < 0.05
                   && v.currentTime;"
            ),
        );
        assert!((at.as_f64().unwrap() - time).abs() < 0.05, "{at}");
        let active = browser
            .eval("return document.querySelector('table.events tr.event.active')?.dataset.index;");
        assert_eq!(active, json!(index.to_string()));
    }
    screenshots(&browser, "session-report");

    // Back to the list: both sessions complete, and the page was never reloaded.
    browser.eval("window.scrollTo(0, 0); return true;");
    browser.click("nav.crumbs a");
    browser.wait_for(
        "the list with both sessions complete",
        SHORT,
        "const rows = [...document.querySelectorAll('tr.session')];
         return rows.length === 2 && rows.every(r => r.dataset.status === 'complete');",
    );
    screenshots(&browser, "list");
    assert_eq!(
        browser.eval("return window.__noReload;"),
        json!("still the same page")
    );
    let errors: Vec<String> = browser
        .console()
        .into_iter()
        .filter(|m| m.starts_with("SEVERE"))
        .collect();
    assert!(errors.is_empty(), "errors in the page: {errors:?}");
}

/// `GET path` as JSON with a bearer token.
fn get_with(server: &TestServer, path: &str, token: &str) -> Value {
    let bearer = format!("Bearer {token}");
    http_request(server.addr, "GET", path, &[("Authorization", &bearer)]).json()
}

#[test]
fn the_dashboard_keeps_the_token_of_its_url_and_shows_an_interrupted_upload() {
    let server = TestServer::start_with(|c| {
        c.token = Some("ingest-secret".into());
        c.watch_token = Some("watch-secret".into());
    });
    let work = tempfile::tempdir().unwrap();
    let (video, signal) = bout(work.path());

    // An upload stopped half way (the client killed): detached, resumable.
    let mut client = Command::new(workspace_binary("referee-client"))
        .args([
            &server.http_url(),
            "--video",
            &video,
            "--signal",
            &signal,
            "--max-fps",
            "30",
            "--token",
            "ingest-secret",
        ])
        .env("REFEREE_STATE_DIR", test_state_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + SHORT;
    let id = loop {
        let list = get_with(&server, "/api/sessions", "watch-secret");
        let first = &list["sessions"][0];
        if first["frames_stored"].as_u64().unwrap_or(0) >= 30 {
            break first["id"].as_str().unwrap().to_string();
        }
        assert!(std::time::Instant::now() < deadline, "no frames: {list}");
        std::thread::sleep(Duration::from_millis(50));
    };
    client.kill().unwrap();
    client.wait().unwrap();
    let deadline = std::time::Instant::now() + SHORT;
    while get_with(&server, &format!("/api/sessions/{id}"), "watch-secret")["status"] != "detached"
    {
        assert!(std::time::Instant::now() < deadline, "never detached");
        std::thread::sleep(Duration::from_millis(50));
    }

    // The page is open to all; the data needs the token, which the URL gives once.
    let browser = Browser::start(1280, 900);
    browser.goto(&format!(
        "{}/?token=watch-secret#/sessions/{id}",
        server.http_url()
    ));
    let shown = browser.wait_for(
        "the interrupted upload, explained",
        SHORT,
        "const alert = document.querySelector('.alert.warn');
         return alert && alert.querySelector('.error-text').textContent
           && { title: alert.querySelector('h2').textContent,
                error: alert.querySelector('.error-text').textContent,
                text: alert.querySelectorAll('p')[1].textContent,
                badge: document.querySelector('.page-head .status').textContent };",
    );
    assert_eq!(shown["title"], "Upload interrupted", "{shown}");
    assert_eq!(shown["badge"], "detached", "{shown}");
    assert!(
        shown["text"]
            .as_str()
            .unwrap()
            .contains(&format!("--resume {id}")),
        "{shown}"
    );
    let kept = browser.eval(
        "return { stored: localStorage.getItem('referee.token'), search: location.search,
                  hash: location.hash, summary: document.getElementById('token-summary').textContent };",
    );
    assert_eq!(kept["stored"], "watch-secret", "{kept}");
    assert_eq!(
        kept["search"], "",
        "the token stays in the address bar: {kept}"
    );
    assert_eq!(kept["hash"], format!("#/sessions/{id}"), "{kept}");
    assert_eq!(kept["summary"], "Token ✓", "{kept}");
    browser.wait_for(
        "the last stored frame, shown",
        SHORT,
        "const img = document.querySelector('.last-frame img');
         return img && img.complete && img.naturalWidth === 640;",
    );
    screenshots(&browser, "session-detached");

    // Every request of the list carries the kept token: the row shows the problem.
    browser.eval("window.scrollTo(0, 0); return true;");
    browser.click("nav.crumbs a");
    let row = browser.wait_for(
        "the detached row with its error",
        SHORT,
        &format!(
            "const tr = document.querySelector('tr.session[data-id=\"{id}\"]');
             return tr && tr.dataset.status === 'detached'
               && tr.querySelector('.error-text').textContent;"
        ),
    );
    assert!(!row.as_str().unwrap().is_empty());
    browser.wait_for(
        "the list following live events",
        SHORT,
        "return document.getElementById('connection').textContent === 'live';",
    );

    // A wrong token: the list says where to give the right one.
    browser.eval(
        "document.getElementById('token').open = true;
         document.getElementById('token-input').value = 'wrong';
         document.querySelector('#token-form button[type=submit]').click();
         return true;",
    );
    let problem = browser.wait_for(
        "the list explaining the wrong token",
        SHORT,
        "const alert = document.querySelector('.alert.error');
         return alert && alert.textContent;",
    );
    assert!(
        problem
            .as_str()
            .unwrap()
            .contains("needs a valid access token"),
        "{problem}"
    );
    assert_eq!(
        browser.eval("return localStorage.getItem('referee.token');"),
        json!("wrong")
    );
    screenshots(&browser, "list-wrong-token");
}
