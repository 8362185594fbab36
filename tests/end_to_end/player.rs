//! The replay player, driven in headless Chromium: on the dashboard it plays the stored JPEG
//! frames while the upload is still running, steps exactly one frame each way (the picture
//! on its canvas is compared pixel by pixel with the stored frame the player names, and
//! with that frame's neighbours), opens `#/sessions/ID?t=FRAME` links, changes speed, jumps
//! to the next touch and loops a touch's action; in the standalone report.html it steps the
//! H.264 video frame by frame, each picture nearest the stored frame it names.

use std::time::Duration;

use referee_protocol::ControlMessage;
use referee_sample_data::SyntheticVideo;
use referee_tests::webdriver::Browser;
use referee_tests::{
    client_frames, frame_message, pts_us, session_end, RawClient, TestServer, INGEST_TOKEN,
    WATCH_TOKEN,
};
use serde_json::{json, Value};

const SHORT: Duration = Duration::from_secs(30);
const LONG: Duration = Duration::from_secs(120);
/// 5 s at 30 fps.
const FRAMES: usize = 150;
/// Frames stored before the browser opens the player (the upload goes on after).
const FIRST: usize = 60;
const SIGNAL: &str = "2.1 touch_left score=1-0\n3.8 touch_right score=1-1\n4.6 halt\n";
/// The phrases of the bout: the fencers move on these frames, each ending on a touch's frame
/// (63 at 2.1 s, 114 at 3.8 s); the frame counter changes on every frame.
const PHRASES: [(u32, u32); 2] = [(45, 63), (96, 114)];

/// A 320×240 30 fps bout of `frames` frames in `dir` whose fencers move on `phrases`.
fn bout_video(dir: &std::path::Path, frames: u32, phrases: &[(u32, u32)]) -> std::path::PathBuf {
    let video = dir.join("bout.avi");
    let spec = SyntheticVideo {
        frames,
        fps: 30.0,
        width: 320,
        height: 240,
    };
    referee_sample_data::write_bout_video(&video, &spec, phrases).unwrap();
    video
}

/// The bout's frames, as the client sends them.
fn bout_frames() -> Vec<Vec<u8>> {
    let work = tempfile::tempdir().unwrap();
    client_frames(&bout_video(work.path(), FRAMES as u32, &PHRASES), 90)
}

/// Sends frames `range` and waits for the ACK that says they are all stored.
async fn send_frames(raw: &mut RawClient, jpegs: &[Vec<u8>], range: std::ops::Range<usize>) {
    let end = range.end as u64;
    for i in range {
        raw.send_binary(frame_message(i as u64, &jpegs[i])).await;
    }
    loop {
        if let ControlMessage::Ack { frames_stored } = raw.recv().await {
            if frames_stored >= end {
                return;
            }
        }
    }
}

/// Presses `key` in the page, as a keyboard would (a keydown on the focused element).
fn press(browser: &Browser, key: &str) {
    browser.eval_with(
        "const t = document.activeElement || document.body;
         t.dispatchEvent(new KeyboardEvent('keydown', { key: arguments[0], bubbles: true, cancelable: true }));
         return true;",
        json!([key]),
    );
}

/// Presses `key` and checks that the player then shows `frame` (see [`assert_shows`]).
fn press_and_see(browser: &Browser, key: &str, source: &str, frame: u64, exact: bool) {
    press(browser, key);
    assert_shows(browser, source, frame, exact);
}

/// Opens `url`, waits for `ready` (a script) and checks that the player shows `frame` of
/// `source` (see [`assert_shows`]).
fn open_at(browser: &Browser, url: &str, ready: &str, (source, frame, exact): (&str, u64, bool)) {
    browser.goto(url);
    browser.wait_for(&format!("the player at {url}"), SHORT, ready);
    assert_shows(browser, source, frame, exact);
}

/// Presses `A` and checks that the player loops frames `from..=to`: it plays them, and
/// comes back to `from` after `to`, never showing a frame outside them.
fn assert_loops(browser: &Browser, (from, to): (u64, u64)) {
    browser.eval(
        "window.__seen = [];
         const p = document.querySelector('.player');
         new MutationObserver(() => { if (p.dataset.playing === 'forward') window.__seen.push(Number(p.dataset.frame)); })
           .observe(p, { attributes: true, attributeFilter: ['data-frame'] });
         return true;",
    );
    press(browser, "a");
    assert_eq!(player_state(browser)["loop"], json!(format!("{from}-{to}")));
    let seen = browser.wait_for(
        "the loop going round: back to the action's start after its end",
        LONG,
        &format!(
            "const s = window.__seen;
             const wrapped = s.some((f, i) => i > 0 && f < s[i - 1]) && s.some((f) => f >= {to} - 2);
             return wrapped && s;"
        ),
    );
    for frame in seen.as_array().unwrap() {
        let frame = frame.as_u64().unwrap();
        assert!(
            (from..=to).contains(&frame),
            "frame {frame} outside the loop {from}-{to}: {seen}"
        );
    }
}

/// Pauses (K) and checks that the player stops on a whole frame, the one it shows: which.
fn pause_and_see(browser: &Browser, source: &str, exact: bool) -> u64 {
    press(browser, "k");
    let paused = browser.wait_for(
        "the player paused on a frame",
        SHORT,
        "const p = document.querySelector('.player');
         return p.dataset.playing === 'no' && p.dataset.settled === 'yes' && p.dataset.frame;",
    );
    let frame = paused.as_str().unwrap().parse().unwrap();
    assert_shows(browser, source, frame, exact);
    frame
}

/// Drags the player's position bar to `frame`.
fn scrub_to(browser: &Browser, frame: u64) {
    browser.eval_with(
        "const s = document.querySelector('.player-scrub');
         s.value = arguments[0];
         s.dispatchEvent(new Event('input'));
         return true;",
        json!([frame]),
    );
}

/// Compares the picture the player shows with stored frames `frame - 1`, `frame` and
/// `frame + 1`, fetched and decoded here: for each, how many pixels differ clearly. `source`
/// is the expression of the element to read (the dashboard's canvas, or the report's video).
const COMPARE: &str = r#"
const [source, frame] = arguments;
const shown = source === 'video' ? document.querySelector('.player video') : document.querySelector('.player canvas');
const w = shown.videoWidth || shown.width, h = shown.videoHeight || shown.height;
const pixels = (image) => {
  const c = document.createElement('canvas');
  c.width = w; c.height = h;
  const g = c.getContext('2d', { willReadFrequently: true });
  g.drawImage(image, 0, 0, w, h);
  return g.getImageData(0, 0, w, h).data;
};
const base = location.pathname.includes('/api/sessions/')
  ? location.pathname.replace(/report\.html$/, '')
  : 'api/sessions/' + encodeURIComponent(location.hash.split('/')[2].split('?')[0]) + '/';
// On a server with tokens: the report page's own, or the dashboard's.
const token = new URLSearchParams(location.search).get('token') || localStorage.getItem('referee.token');
const query = token ? '?token=' + encodeURIComponent(token) : '';
return (async () => {
  const screen = pixels(shown);
  const out = {};
  for (const n of [frame - 1, frame, frame + 1]) {
    // As an image (report.html's CSP allows images from the server, not fetch).
    const image = await new Promise((done) => {
      const i = new Image();
      i.onload = () => done(i);
      i.onerror = () => done(null);
      i.src = base + 'frames/' + n + '.jpg' + query;
    });
    if (!image) { out[n] = null; continue; }
    const stored = pixels(image);
    let differ = 0;
    for (let i = 0; i < screen.length; i += 4) {
      const d = Math.abs(screen[i] - stored[i]) + Math.abs(screen[i + 1] - stored[i + 1]) + Math.abs(screen[i + 2] - stored[i + 2]);
      if (d > 60) differ++;
    }
    out[n] = differ;
  }
  return out;
})();
"#;

/// Checks that the player names `frame` and shows it: no pixel of the named frame differs
/// clearly on the dashboard's canvas (`exact`), or (from the H.264 video) it is clearly
/// nearer the picture than either neighbour is.
fn assert_shows(browser: &Browser, source: &str, frame: u64, exact: bool) {
    browser.wait_for(
        &format!("the player showing frame {frame}"),
        SHORT,
        &format!(
            "const p = document.querySelector('.player');
             return p && p.dataset.frame === '{frame}' && p.dataset.settled === 'yes';"
        ),
    );
    let diff = browser.eval_with(COMPARE, json!([source, frame]));
    let at = |n: i64| diff[n.to_string()].as_u64();
    let own = at(frame as i64).unwrap_or_else(|| panic!("frame {frame} not served: {diff}"));
    let neighbours: Vec<u64> = [frame as i64 - 1, frame as i64 + 1]
        .iter()
        .filter_map(|&n| at(n))
        .collect();
    if exact {
        assert_eq!(own, 0, "frame {frame} is not the one on screen: {diff}");
    }
    for other in neighbours {
        assert!(
            other > own + 20,
            "the picture for frame {frame} is not nearer it than a neighbour: {diff}"
        );
    }
    let time = browser.eval("return document.querySelector('.player').dataset.time;");
    let expected = pts_us(frame) as f64 / 1e6;
    let named: f64 = time.as_str().unwrap().parse().unwrap();
    assert!((named - expected).abs() < 1e-5, "{named} for frame {frame}");
    let text = browser.eval("return document.querySelector('.player-pos').textContent;");
    assert!(
        text.as_str()
            .unwrap()
            .starts_with(&format!("frame {frame} of ")),
        "{text}"
    );
}

/// The frame on screen at `seconds` at 30 fps: the last whose timestamp is not after it.
fn frame_at(seconds: f64) -> u64 {
    (0..FRAMES as u64)
        .take_while(|&i| pts_us(i) as f64 / 1e6 <= seconds + 1e-9)
        .last()
        .unwrap_or(0)
}

fn player_state(browser: &Browser) -> Value {
    browser.eval(
        "const p = document.querySelector('.player');
         return { frame: Number(p.dataset.frame), playing: p.dataset.playing, speed: p.dataset.speed,
                  loop: p.dataset.loop, touch: p.dataset.touch, frames: Number(p.dataset.frames) };",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_player_steps_exact_frames_during_the_upload_and_reviews_touches() {
    let server = TestServer::start();
    let jpegs = bout_frames();
    let mut raw = RawClient::connect(&server).await;
    let id = raw.start(320, 240).await;
    send_frames(&mut raw, &jpegs, 0..FIRST / 2).await;
    send_frames(&mut raw, &jpegs, FIRST / 2..FIRST).await;

    // The frame index's times: a bounded range, during the upload.
    let (status, times) = server.get_json(&format!("/api/sessions/{id}/frames?from=10&count=5"));
    assert_eq!(status, 200, "{times}");
    assert_eq!(times["frames_stored"], FIRST as u64);
    assert_eq!(
        times["pts_us"],
        json!((10..15).map(pts_us).collect::<Vec<_>>())
    );
    let (status, refused) = server.get_json(&format!("/api/sessions/{id}/frames?count=1000000"));
    assert_eq!(status, 400);
    assert_eq!(refused["code"], "frame_range_too_large", "{refused}");

    // A link to frame 40 opens the player there, while the upload goes on.
    let browser = tokio::task::block_in_place(|| {
        let browser = Browser::start(1280, 900);
        open_at(
            &browser,
            &format!("{}/#/sessions/{id}?t=40", server.http_url()),
            "return document.querySelector('.player') && document.querySelector('.live-view');",
            ("canvas", 40, true),
        );
        // One frame forward, one back, at several points; never before the first frame.
        press_and_see(&browser, "ArrowRight", "canvas", 41, true);
        press(&browser, "ArrowLeft");
        press_and_see(&browser, "ArrowLeft", "canvas", 39, true);
        scrub_to(&browser, 1);
        assert_shows(&browser, "canvas", 1, true);
        press_and_see(&browser, "ArrowLeft", "canvas", 0, true);
        press_and_see(&browser, "ArrowLeft", "canvas", 0, true);
        // The on-screen buttons, for a touch screen.
        browser.click(".player-btn.step-forward");
        assert_shows(&browser, "canvas", 1, true);
        browser.click(".player-btn.step-back");
        assert_shows(&browser, "canvas", 0, true);
        // The last frame stored so far.
        scrub_to(&browser, 59);
        assert_shows(&browser, "canvas", 59, true);
        let address = browser.eval("return location.hash;");
        assert_eq!(address, json!(format!("#/sessions/{id}?t=59")));
        browser
    });

    // The rest of the upload: the player follows the frames as they are stored.
    send_frames(&mut raw, &jpegs, FIRST..FIRST + 30).await;
    tokio::task::block_in_place(|| {
        browser.wait_for(
            "the player knowing of the frames stored since",
            SHORT,
            "return Number(document.querySelector('.player').dataset.frames) >= 90;",
        );
        press_and_see(&browser, "ArrowRight", "canvas", 60, true);
    });
    send_frames(&mut raw, &jpegs, FIRST + 30..FRAMES).await;
    raw.send(&session_end(FRAMES as u64, true, &jpegs)).await;
    loop {
        if let ControlMessage::SessionEnded { .. } = raw.recv().await {
            break;
        }
    }
    raw.send(&ControlMessage::Signal {
        file_name: "bout.txt".into(),
        text: SIGNAL.into(),
    })
    .await;
    tokio::task::block_in_place(|| server.wait_for_status(&id, "complete"));
    let (_, report) = server.get_json(&format!("/api/sessions/{id}/report.json"));

    tokio::task::block_in_place(|| {
        browser.wait_for(
            "the report's events in the player, all frames known",
            LONG,
            "const p = document.querySelector('.player');
             return p.dataset.frames === '150' && document.querySelectorAll('table.events tr.event').length === 3
               && p.querySelector('.player-score') && !p.querySelector('.player-score').hidden;",
        );
        // Where each touch opens: its action's start (or the touch) minus the pre-roll; its
        // loop: from the action's start to 0.5 s after the touch.
        let events = report["events"].as_array().unwrap();
        let opening = |e: &Value| {
            let from = e["action"]["start_time_s"]
                .as_f64()
                .unwrap_or(e["frame_time_s"].as_f64().unwrap());
            frame_at(from - 1.0)
        };
        let looping = |e: &Value| {
            let from = e["action"]["start_frame"]
                .as_u64()
                .unwrap_or_else(|| opening(e));
            (from, frame_at(e["frame_time_s"].as_f64().unwrap() + 0.5))
        };
        // The touch list links to each touch's opening frame.
        let links = browser.eval(
            "return [...document.querySelectorAll('table.events a.frame-link')].map(a => a.getAttribute('href'));",
        );
        let expected: Vec<String> = events
            .iter()
            .take(2)
            .map(|e| format!("#/sessions/{id}?t={}", opening(e)))
            .collect();
        assert_eq!(links[0], json!(expected[0]), "{links}");
        assert_eq!(links[1], json!(expected[1]), "{links}");

        // The next touch, from the start; then the one after.
        browser.eval("document.querySelector('.player').focus(); return true;");
        scrub_to(&browser, 0);
        assert_shows(&browser, "canvas", 0, true);
        let first = opening(&events[0]);
        let second = opening(&events[1]);
        press_and_see(&browser, "]", "canvas", first, true);
        assert_eq!(player_state(&browser)["touch"], "1");
        press_and_see(&browser, "PageDown", "canvas", second, true);
        assert_eq!(player_state(&browser)["touch"], "2");
        press_and_see(&browser, "[", "canvas", first, true);
        let score = browser.eval("return document.querySelector('.player-score').textContent;");
        assert_eq!(score, "0-0");

        // Stepping around the touch itself: frame 63 is the touch at 2.1 s.
        scrub_to(&browser, 62);
        assert_shows(&browser, "canvas", 62, true);
        press_and_see(&browser, "ArrowRight", "canvas", 63, true);
        let over = browser.eval(
            "return [document.querySelector('.player-score').textContent, document.querySelector('.player-light').textContent];",
        );
        assert_eq!(over, json!(["1-0", "left touch · #1"]));
        press_and_see(&browser, "ArrowLeft", "canvas", 62, true);
        assert_eq!(
            browser.eval("return document.querySelector('.player-score').textContent;"),
            "0-0"
        );

        // Speed: 10 % steps and 200 %.
        let speeds = browser.eval(
            "return [...document.querySelectorAll('.player-speed option')].map(o => o.textContent);",
        );
        assert_eq!(
            speeds,
            json!([
                "10 %", "20 %", "30 %", "40 %", "50 %", "60 %", "70 %", "80 %", "90 %", "100 %",
                "200 %"
            ])
        );
        browser.eval("const s = document.querySelector('.player-speed'); s.value = '0.5'; s.dispatchEvent(new Event('change')); return true;");
        assert_eq!(player_state(&browser)["speed"], "0.5");
        // Play (space) and pause (K): the play head moves on, then stands still.
        browser.eval("document.querySelector('.player').focus(); return true;");
        press(&browser, " ");
        browser.wait_for(
            "the player playing on from frame 62",
            SHORT,
            "const p = document.querySelector('.player');
             return p.dataset.playing === 'forward' && Number(p.dataset.frame) > 64;",
        );
        let at = pause_and_see(&browser, "canvas", true);
        // J plays backwards.
        press(&browser, "j");
        browser.wait_for(
            "the player playing backwards",
            SHORT,
            &format!(
                "const p = document.querySelector('.player');
                 return p.dataset.playing === 'backward' && Number(p.dataset.frame) < {at};"
            ),
        );
        press(&browser, "k");

        // A loops the current touch's action, at the speed chosen.
        press(&browser, "]");
        press_and_see(&browser, "[", "canvas", first, true);
        browser.eval("const s = document.querySelector('.player-speed'); s.value = '2'; s.dispatchEvent(new Event('change')); return true;");
        assert_loops(&browser, looping(&events[0]));
        press(&browser, "A");
        press(&browser, "k");
        assert_eq!(player_state(&browser)["loop"], "");

        // ? shows the key list.
        press(&browser, "?");
        let help = browser.eval(
            "const h = document.querySelector('.player-help'); return !h.hidden && h.textContent;",
        );
        assert!(help.as_str().unwrap().contains("loop the action"), "{help}");
        press(&browser, "?");

        // The report page: the same player on its video.mp4, stepped frame by frame.
        open_at(
            &browser,
            &format!("{}/api/sessions/{id}/report.html#t=50", server.http_url()),
            "const v = document.querySelector('.player video'); return v && v.readyState >= 2;",
            ("video", 50, false),
        );
        press_and_see(&browser, "ArrowRight", "video", 51, false);
        press_and_see(&browser, "ArrowRight", "video", 52, false);
        press_and_see(&browser, "ArrowLeft", "video", 51, false);
        for frame in [0u64, 89, 149] {
            scrub_to(&browser, frame);
            assert_shows(&browser, "video", frame, false);
        }
        press_and_see(&browser, "ArrowLeft", "video", 148, false);
        press_and_see(&browser, "ArrowRight", "video", 149, false);
        press_and_see(&browser, "[", "video", second, false);
        // The video loops the touch's action too, and stops on a whole frame.
        assert_loops(&browser, looping(&events[1]));
        press(&browser, "A");
        pause_and_see(&browser, "video", false);
        let console = browser.console();
        assert!(
            !console
                .iter()
                .any(|l| l.contains("Content Security Policy")),
            "{console:?}"
        );
    });
}

#[test]
fn the_player_works_on_a_server_with_tokens() {
    let server = TestServer::start_with_tokens();
    let work = tempfile::tempdir().unwrap();
    let video = bout_video(work.path(), 60, &[(10, 30)]);
    let signal = work.path().join("guarded.txt");
    std::fs::write(&signal, "1.0 touch_left score=1-0\n").unwrap();
    let id = server
        .stream_files(&video, &signal, &["--token", INGEST_TOKEN])
        .session_id();
    let (status, _) = server.get_json(&format!("/api/sessions/{id}/frames"));
    assert_eq!(status, 401, "the frame times need a token");

    let browser = Browser::start(1280, 900);
    // The dashboard takes the token from its address and sends it with every frame it asks for.
    open_at(
        &browser,
        &format!(
            "{}/?token={WATCH_TOKEN}#/sessions/{id}?t=20",
            server.http_url()
        ),
        "return document.querySelector('.player');",
        ("canvas", 20, true),
    );
    press_and_see(&browser, "ArrowRight", "canvas", 21, true);
    // The report page opened with ?token= plays its video with it.
    open_at(
        &browser,
        &format!(
            "{}/api/sessions/{id}/report.html?token={WATCH_TOKEN}#t=20",
            server.http_url()
        ),
        "const v = document.querySelector('.player video'); return v && v.readyState >= 2;",
        ("video", 20, false),
    );
    press_and_see(&browser, "ArrowLeft", "video", 19, false);
}
