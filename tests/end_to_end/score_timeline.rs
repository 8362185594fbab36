//! The bout's score timeline in `report.json`: a session streamed by the real client with a
//! signal file that has every kind of scoring event, a score slip and a deciding touch, on a
//! server whose `--bout-target` is 3.

use std::path::Path;

use referee_sample_data::SyntheticVideo;
use referee_tests::TestServer;

/// Streams `video` with `signal` (and `extra` client arguments) to `server` with the real
/// client, waits for processing, and returns `report.json`.
fn processed_report(
    server: &TestServer,
    video: &Path,
    signal: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let id = server.stream_files(video, signal, extra).session_id();
    server.wait_for_status(&id, "complete");
    let (status, report) = server.get_json(&format!("/api/sessions/{id}/report.json"));
    assert_eq!(status, 200, "{report}");
    report
}

/// 4 s at 30 fps: frame = time × 30.
const EVENTS: [(f64, &str); 10] = [
    (0.0, "start period=1"),
    (0.5, "touch_left score=1-0"),
    (1.0, "off_target_right"),
    (1.5, "double score=2-1"),
    (2.0, "card_right color=yellow"),
    (2.2, "halt clock=2:41"),
    (2.5, "touch_right score=2-3"),
    (3.0, "touch_right"),
    (3.4, "buzz"),
    (3.8, "end period=1"),
];

#[test]
fn report_json_carries_the_score_timeline_its_flags_and_marks() {
    let server = TestServer::start_with(|c| c.bout_target = 3);
    let work = tempfile::tempdir().unwrap();
    let video = work.path().join("bout.avi");
    let spec = SyntheticVideo {
        frames: 120,
        fps: 30.0,
        width: 320,
        height: 240,
    };
    referee_sample_data::write_motion_video(&video, &spec, &[(5, 14), (35, 44)]).unwrap();
    let signal = work.path().join("bout.txt");
    referee_sample_data::write_signal(&signal, &EVENTS).unwrap();
    let report = processed_report(&server, &video, &signal, &[]);

    // Every event has a kind and a side; the plain event stays, as `other`.
    let kinds: Vec<(String, String, serde_json::Value)> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["kind"].as_str().unwrap().to_string(),
                e["side"].clone(),
            )
        })
        .collect();
    let expect = [
        ("start", "period", None),
        ("touch_left", "touch", Some("left")),
        ("off_target_right", "off_target", Some("right")),
        ("double", "double", Some("both")),
        ("card_right", "card", Some("right")),
        ("halt", "halt", None),
        ("touch_right", "touch", Some("right")),
        ("touch_right", "touch", Some("right")),
        ("buzz", "other", None),
        ("end", "period", None),
    ];
    let expect: Vec<(String, String, serde_json::Value)> = expect
        .iter()
        .map(|(n, k, s)| (n.to_string(), k.to_string(), serde_json::json!(s)))
        .collect();
    assert_eq!(kinds, expect);

    let bout = &report["bout"];
    assert_eq!(bout["target"], 3);
    // The score after each scoring event, with its frame; `buzz` (event 8) is not in it.
    let timeline: Vec<(u64, String, u64, bool)> = bout["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_u64().unwrap(),
                format!("{}-{}", e["score"]["left"], e["score"]["right"]),
                e["frame_index"].as_u64().unwrap(),
                e["score_given"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(u64, String, u64, bool)> = [
        (0, "0-0", 0, false),
        (1, "1-0", 15, true),
        (2, "1-0", 30, false),
        (3, "2-1", 45, true),
        (4, "2-1", 60, false),
        (5, "2-1", 66, false),
        (6, "2-3", 75, true),
        (7, "2-4", 90, false),
        (9, "2-4", 114, false),
    ]
    .iter()
    .map(|&(e, s, f, g)| (e, s.to_string(), f, g))
    .collect();
    assert_eq!(timeline, expected);
    assert_eq!(bout["timeline"][4]["color"], "yellow");
    assert_eq!(bout["timeline"][0]["time_s"], 0.0);
    assert_eq!(
        bout["final_score"],
        serde_json::json!({"left": 2, "right": 4})
    );

    // 2-1 and a touch for the right make 2-2, not 2-3: flagged on its line.
    let flags = bout["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0]["event"], 6);
    assert_eq!(flags[0]["line"], 8);
    assert_eq!(
        flags[0]["reason"],
        "touch_right gives score=2-3 but 2-1 and a touch for the right make 2-2"
    );
    // The touch at 2-2 in a bout to 3 is deciding: the box's 2-3 skipped it, so no mark;
    // the next touch starts from 2-3.
    assert_eq!(bout["marks"], serde_json::json!([]));
}

#[test]
fn the_deciding_touch_is_marked_with_the_default_target_of_15() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = referee_tests::make_video(work.path(), "v.avi", 30, 30.0, 160, 120);
    let signal = work.path().join("bout.txt");
    referee_sample_data::write_signal(
        &signal,
        &[
            (0.2, "touch_left score=14-14"),
            (0.5, "touch_right score=14-15"),
        ],
    )
    .unwrap();
    let report = processed_report(&server, &video, &signal, &[]);
    let bout = &report["bout"];
    assert_eq!(bout["target"], 15);
    assert_eq!(bout["flags"].as_array().unwrap().len(), 1, "{bout}");
    let marks = bout["marks"].as_array().unwrap();
    assert_eq!(marks.len(), 1, "{bout}");
    assert_eq!(marks[0]["event"], 1);
    assert_eq!(marks[0]["line"], 3);
    assert_eq!(
        marks[0]["reason"],
        "deciding touch at 14-14 in a bout to 15: a review is usual"
    );
}

/// In the report page, downloaded with `--output` and served by the server (under its CSP),
/// clicking a time seeks the page's own player to where the action began minus 1 s, without
/// leaving the page; events are drawn by kind, with the score track under the plot.
#[test]
fn clicking_an_event_in_the_report_page_seeks_its_player_to_the_action() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = work.path().join("bout.avi");
    let spec = SyntheticVideo {
        frames: 120,
        fps: 30.0,
        width: 320,
        height: 240,
    };
    referee_sample_data::write_motion_video(&video, &spec, &[(5, 14), (35, 44)]).unwrap();
    let signal = work.path().join("bout.txt");
    referee_sample_data::write_signal(&signal, &EVENTS).unwrap();
    let out = work.path().join("results");
    let report = processed_report(
        &server,
        &video,
        &signal,
        &["--output", out.to_str().unwrap()],
    );
    let id = report["session_id"].as_str().unwrap();
    let served = format!("{}/api/sessions/{id}/report.html", server.http_url());
    let downloaded = format!("file://{}", out.join("report.html").display());

    let browser = referee_tests::webdriver::Browser::start(1280, 900);
    for url in [downloaded, served] {
        browser.goto(&url);
        browser.wait_for(
            "the report's video has its metadata",
            std::time::Duration::from_secs(60),
            "const v = document.getElementById('video'); return v && v.readyState >= 1 ? true : null;",
        );
        // The double (event 4, 1.5 s) follows the phrase that began at frame 35 (1.167 s):
        // its time opens the player 1 s before that, on frame 5 (0.167 s), which the player
        // shows from the middle of its display interval.
        browser.click("#event-4 a[data-seek]");
        let at = browser.wait_for(
            "the player seeks to the action's pre-roll",
            std::time::Duration::from_secs(30),
            "const v = document.getElementById('video'); \
             return document.querySelector('.player').dataset.frame === '5' \
               && Math.abs(v.currentTime - 5.5 / 30) < 0.001 ? v.currentTime : null;",
        );
        assert!(at.as_f64().is_some(), "{url}: {at}");
        let here = browser.eval("return location.href");
        assert_eq!(here.as_str(), Some(url.as_str()), "the page was left");
        // The halt opens at itself, with no "action start" line.
        let halt = browser.eval("return document.getElementById('event-6').textContent");
        assert!(!halt.as_str().unwrap().contains("began"), "{halt}");
        browser.click("#event-6 a[data-seek]");
        browser.wait_for(
            "the player seeks to the halt",
            std::time::Duration::from_secs(30),
            "const v = document.getElementById('video'); \
             return document.querySelector('.player').dataset.frame === '66' \
               && Math.abs(v.currentTime - 66.5 / 30) < 0.001 ? true : null;",
        );
        // The score track: one item per touch, card, off-target and halt; the slip flagged;
        // a click on an item of it seeks too.
        let items = browser.eval("return document.querySelectorAll('g.bout-item').length");
        assert_eq!(items, 7, "{url}");
        let flagged = browser.eval(
            "return [...document.querySelectorAll('g.bout-item title')].filter(t => \
             t.textContent.includes('FLAG')).length",
        );
        assert_eq!(flagged, 1, "{url}");
        // Touches left and right are drawn in different colours, the card in yellow.
        let colours = browser.eval(
            "const fill = s => getComputedStyle(document.querySelector(s)).fill; \
             return [fill('g.event circle.k-touch.s-left'), fill('g.event circle.k-touch.s-right'), \
             fill('g.event circle.k-card.c-yellow')];",
        );
        let colours: Vec<&str> = colours
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            colours,
            ["rgb(214, 47, 47)", "rgb(31, 157, 69)", "rgb(245, 200, 0)"],
            "{url}"
        );
    }
}

/// A recording whose background moves on every frame, with fencers moving most of the time:
/// the threshold comes from its quiet parts, and the phrases are found.
#[test]
fn a_busy_background_still_gives_the_phrases() {
    let server = TestServer::start();
    let work = tempfile::tempdir().unwrap();
    let video = work.path().join("busy.avi");
    let spec = SyntheticVideo {
        frames: 120,
        fps: 30.0,
        width: 320,
        height: 240,
    };
    let phrases = [(10, 49), (60, 109)];
    referee_sample_data::write_busy_motion_video(&video, &spec, &phrases).unwrap();
    let signal = work.path().join("busy.txt");
    referee_sample_data::write_signal(&signal, &[(1.6, "touch_left"), (3.6, "touch_right")])
        .unwrap();
    let report = processed_report(&server, &video, &signal, &[]);
    let motion = &report["motion"];
    // No frame is still.
    let energy = motion["energy"].as_array().unwrap();
    assert!(
        energy[1..].iter().all(|e| e.as_f64().unwrap() > 0.0),
        "{motion}"
    );
    assert_eq!(motion["threshold_basis"], "quiet_parts", "{motion}");
    assert_eq!(motion["note"], serde_json::Value::Null);
    let segments: Vec<(u64, u64)> = report["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["start_frame"].as_u64().unwrap(),
                s["end_frame"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(segments, [(10, 49), (60, 109)], "{motion}");
    let starts: Vec<u64> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"]["start_frame"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, [10, 60]);
}
