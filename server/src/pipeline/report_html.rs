//! `report.html`: one self-contained page for a referee: the video, the motion timeline as an
//! inline SVG plot with the signal events marked on it, and a table of the events with their
//! thumbnails, and under the plot the bout's score track. One fixed script, the replay player
//! (`server/web/player.js`: it steps the page's video frame by frame, and clicking a time
//! seeks it; the server's CSP allows it by its hash, [`SCRIPT`]), no external resource: thumbnails and the video are referenced
//! relative to the page (`thumbnails/...`, `video.mp4`), which works both when the server
//! serves it (`/api/sessions/{id}/report.html`) and in a folder downloaded with
//! `referee-client --output`. Every text that comes from the client is escaped.

use std::fmt::Write as _;

use referee_protocol::scoring::{CardColor, EventKind, Side};
use sha2::{Digest, Sha256};

use super::activity;
use super::analysis::{Report, ReportEvent};
use super::timeline_layout::LAYOUT;

/// Seconds before where an action began that a click on an event opens the player at.
pub const PRE_ROLL_S: f64 = LAYOUT.pre_roll_s;

/// The page's only script: the replay player (`server/web/player.js`, the dashboard's own), which
/// on this page replaces the plain `<video>` with a frame-accurate player on `video.mp4`, the
/// frame times and events taken from the page's `#player-data`; a click on a time
/// (`<a data-seek="SECONDS">`) or a `#t=FRAME` link seeks it instead of leaving the page for
/// the bare video (the links still work without it).
pub const SCRIPT: &str = crate::http::dashboard::PLAYER_JS;

/// Frame times embedded in the page at most (for a variable frame rate; at a constant one
/// the player computes them from the rate): about 12 bytes each, so that the page stays
/// under [`MAX_PAGE_BYTES`]. Past them the player places frames by the average rate.
const MAX_EMBEDDED_TIMES: usize = 60_000;

/// The CSP source that allows [`SCRIPT`] and nothing else: `'sha256-BASE64'`, computed from
/// the script's text whenever it changes.
pub fn script_csp_source() -> String {
    csp_hash(SCRIPT)
}

/// The CSP hash source of an inline script's `text`: `'sha256-BASE64'`.
fn csp_hash(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::from("'sha256-");
    for chunk in digest.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out.push('\'');
    out
}

/// Whether an event of `kind` ends an action (halts and period ends do not: the motion
/// before them is not what they are about).
fn has_action(kind: EventKind) -> bool {
    !matches!(kind, EventKind::Halt | EventKind::Period)
}

/// Where a click on `event` opens the player: where its action began, minus the pre-roll,
/// or the pre-roll before the event itself; a halt or period at its own time.
fn seek_time(event: &ReportEvent) -> f64 {
    match (&event.action, has_action(event.kind)) {
        (Some(a), true) => (a.start_time_s - PRE_ROLL_S).max(0.0),
        (None, true) => (event.frame_time_s - PRE_ROLL_S).max(0.0),
        (_, false) => event.frame_time_s,
    }
}

/// The CSS class of an event's kind and side, e.g. `k-touch s-left`, `k-card c-yellow`.
fn kind_class(kind: EventKind, side: Option<Side>, color: Option<CardColor>) -> String {
    let kind = match kind {
        EventKind::Touch => "touch",
        EventKind::Double => "double",
        EventKind::OffTarget => "off_target",
        EventKind::Card => "card",
        EventKind::Halt => "halt",
        EventKind::Period => "period",
        EventKind::Priority => "priority",
        EventKind::Other => "other",
    };
    let side = match side {
        Some(Side::Left) => " s-left",
        Some(Side::Right) => " s-right",
        Some(Side::Both) => " s-both",
        None => "",
    };
    let color = match color {
        Some(CardColor::Yellow) => " c-yellow",
        Some(CardColor::Red) => " c-red",
        Some(CardColor::Black) => " c-black",
        None => "",
    };
    format!("k-{kind}{side}{color}")
}

/// A card's colour, read from its `color=` field as the score timeline does.
fn event_color(report: &Report, index: usize) -> Option<CardColor> {
    report
        .bout
        .timeline
        .iter()
        .find(|e| e.event == index)
        .and_then(|e| e.color)
}

/// The plot's coordinate system (the SVG scales to the page width), the dashboard's too
/// (`timeline_layout.rs`).
const PLOT_W: f64 = LAYOUT.width;
const PLOT_H: f64 = LAYOUT.height;
const LEFT: f64 = LAYOUT.left;
const RIGHT: f64 = LAYOUT.right;
const TOP: f64 = LAYOUT.top;
const BOTTOM: f64 = LAYOUT.bottom;
/// At most this many points are drawn; longer series keep each bucket's maximum.
const MAX_POINTS: usize = LAYOUT.max_points;
/// Events and activity segments shown in the tables and on the plot: longer lists show
/// their first ones and say how many more `report.json` has, so that the page stays small
/// whatever the signal file holds.
const MAX_EVENTS_SHOWN: usize = 500;
const MAX_SEGMENTS_SHOWN: usize = 500;
/// Characters shown of one text from the client (a name, the source, a field's key or
/// value); longer ones end with `…`.
const MAX_TEXT_CHARS: usize = 100;
/// Bytes of an event's fields shown (as HTML); the fields past them are counted, not shown.
const MAX_FIELDS_BYTES: usize = 1024;
/// Time ticks on the plot at most.
const MAX_TICKS: usize = LAYOUT.max_ticks;
/// The page is smaller than this whatever the report holds (a test checks the worst case):
/// the server serves it whole.
pub const MAX_PAGE_BYTES: usize = 4 * 1024 * 1024;

const STYLE: &str = "
:root { color-scheme: light; --ink: #1d2330; --muted: #5d6678; --line: #d9dde5;
  --motion: #2a62c9; --seg: #ffd86b; --event: #d62f2f; --action: #e28a00; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif;
  color: var(--ink); background: #f5f6f8; }
main { max-width: 1100px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.5em; margin: 0.2em 0; word-break: break-word; }
h2 { font-size: 1.15em; margin: 1.4em 0 0.5em; }
.summary { color: var(--muted); margin: 0 0 1em; word-break: break-word; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px; }
video { width: 100%; max-height: 70vh; background: #000; border-radius: 6px; display: block; }
svg.timeline { width: 100%; height: auto; display: block; }
svg text { font: 12px system-ui, sans-serif; fill: var(--muted); }
svg .motion { fill: none; stroke: var(--motion); stroke-width: 1.5; }
svg .area { fill: var(--motion); fill-opacity: 0.12; stroke: none; }
svg .segment { fill: var(--seg); fill-opacity: 0.45; }
svg .threshold { stroke: var(--muted); stroke-dasharray: 6 4; stroke-width: 1; }
svg .axis { stroke: var(--ink); stroke-width: 1; }
svg .tick { stroke: var(--line); stroke-width: 1; }
svg .event line { stroke: var(--event); stroke-width: 2; }
svg .event circle { fill: var(--event); }
svg .event .k-touch.s-left, svg .score .k-touch.s-left { stroke: #d62f2f; fill: #d62f2f; }
svg .event .k-touch.s-right, svg .score .k-touch.s-right { stroke: #1f9d45; fill: #1f9d45; }
svg .event .k-double, svg .score .k-double { stroke: #7a3fc0; fill: #7a3fc0; }
svg .event .k-off_target, svg .score .k-off_target { stroke: #8a93a3; fill: #fff; }
svg .event .k-card.c-yellow, svg .score .k-card.c-yellow { stroke: #c9a000; fill: #f5c800; }
svg .event .k-card.c-red, svg .score .k-card.c-red { stroke: #a00000; fill: #c00000; }
svg .event .k-card.c-black, svg .score .k-card.c-black, svg .event .k-halt,
  svg .score .k-halt { stroke: #1d2330; fill: #1d2330; }
svg .event .k-period, svg .event .k-priority, svg .event .k-other { stroke: #5d6678;
  fill: #5d6678; }
svg .event .k-off_target + text, svg .event .k-card.c-yellow + text { fill: #1d2330; }
svg .score text.score-text { fill: var(--ink); font-weight: 600; text-anchor: middle; }
svg .score .flag { fill: #d62f2f; font-weight: 700; }
svg .score .mark { fill: none; stroke: #e28a00; stroke-width: 2; }
.badge.k-touch.s-right { background: #1f9d45; }
.badge.k-double { background: #7a3fc0; }
.badge.k-off_target { background: #8a93a3; }
.badge.k-card.c-yellow { background: #f5c800; color: #1d2330; }
.badge.k-card.c-red { background: #c00000; }
.badge.k-card.c-black, .badge.k-halt { background: #1d2330; }
.badge.k-period, .badge.k-priority, .badge.k-other { background: #5d6678; }
.flagged { color: #d62f2f; font-weight: 600; }
.marked { color: #e28a00; font-weight: 600; }
svg .event text { fill: #fff; font-weight: 600; text-anchor: middle; }
svg .action line { stroke: var(--action); stroke-width: 2; stroke-dasharray: 4 3; }
svg .lead { stroke: var(--action); stroke-width: 3; }
.legend { color: var(--muted); font-size: 0.9em; margin-top: 6px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 14px; height: 10px; margin-right: 4px;
  vertical-align: baseline; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { border-bottom: 1px solid var(--line); padding: 8px; text-align: left;
  vertical-align: top; }
th { font-size: 0.85em; color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
.badge { display: inline-block; min-width: 1.6em; padding: 0 0.4em; border-radius: 1em;
  background: var(--event); color: #fff; text-align: center; font-weight: 600; }
.field { display: inline-block; background: #eef1f6; border-radius: 4px; padding: 0 5px;
  margin: 2px 4px 0 0; font-size: 0.9em; word-break: break-all; }
.lead-text { color: var(--action); font-weight: 600; }
figure { margin: 0; }
figure img { width: 240px; max-width: 100%; height: auto; display: block; border-radius: 4px; }
figcaption { color: var(--muted); font-size: 0.8em; }
.none { color: var(--muted); }
footer { color: var(--muted); font-size: 0.85em; margin: 2em 0 1em; }
.plot-wrap { overflow-x: auto; }
@media (max-width: 640px) {
  main { padding: 8px; }
  th, td { padding: 6px 4px; }
  figure img { width: 100%; }
  /* The plot keeps a readable size and scrolls sideways. */
  svg.timeline { min-width: 640px; }
  /* Each event becomes a card: one labelled line per column, the thumbnails side by side. */
  table.events thead { display: none; }
  table.events, table.events tbody, table.events tr { display: block; }
  table.events tr { border-bottom: 1px solid var(--line); padding: 6px 0; }
  table.events td { display: block; border: none; padding: 2px 6px; }
  table.events td.num, table.events td.thumb { display: inline-block; vertical-align: top;
    width: 49%; }
  table.events td[data-label]::before { content: attr(data-label); display: block;
    font-size: 0.8em; color: var(--muted); }
}
";

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `text` escaped, cut to [`MAX_TEXT_CHARS`] characters.
fn clipped(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((end, _)) => format!("{}…", escape(&text[..end])),
        None => escape(text),
    }
}

/// The whole page.
/// What the page says of a camera of a bout: which, of which cameras, and its offset.
fn camera_line(camera: &referee_protocol::api::BoutMembership) -> String {
    let offset = match (camera.offset_s, camera.offset_confidence, &camera.offset_note) {
        (Some(s), Some(c), _) => format!(
            "; it started {s:.3} s after the signal's clock (found from the motion, confidence {c:.2}), and its event times are on its own clock"
        ),
        (Some(s), None, _) => format!(
            "; it started {s:.3} s after the signal's clock, and its event times are on its own clock"
        ),
        (None, _, Some(note)) => format!("; no offset: {note}"),
        (None, _, None) => String::new(),
    };
    format!(
        "Camera {} of bout {} (cameras {}){offset}.",
        camera.camera,
        camera.bout_id,
        camera.cameras.join(", ")
    )
}

pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(16 * 1024);
    let title = format!("{} – referee report", report.name);
    let _ = writeln!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}{player_css}</style>\n</head>\n<body>\n<main>",
        clipped(&title),
        player_css = crate::http::dashboard::PLAYER_CSS,
    );
    let signal = report
        .signal_file
        .as_deref()
        .map_or_else(|| "no signal file".to_string(), clipped);
    let _ = writeln!(
        page,
        "<h1>{name}</h1>\n<p class=\"summary\">Session <code>{id}</code> · source {source} · \
         {w}×{h} at {fps} fps{variable} · {frames} frames ({duration:.2} s) · {signal} · {events} events · \
         {segments} activity segments</p>",
        name = clipped(&report.name),
        id = clipped(&report.session_id),
        source = clipped(&report.source),
        w = report.width,
        h = report.height,
        fps = trim_float(report.fps),
        variable = if report.variable_frame_rate {
            " on average (variable frame rate)"
        } else {
            ""
        },
        frames = report.frames,
        duration = report.duration_s,
        events = report.events.len(),
        segments = report.segments.len(),
    );
    if let Some(camera) = &report.camera {
        let _ = writeln!(
            page,
            "<p class=\"summary camera\">{}</p>",
            escape(&camera_line(camera))
        );
    }

    page.push_str("<section class=\"card\">\n");
    let _ = writeln!(
        page,
        "<video id=\"video\" src=\"{src}\" controls preload=\"metadata\" playsinline></video>",
        src = escape(&report.video)
    );
    if !report.video.ends_with(".mp4") {
        let _ = writeln!(
            page,
            "<p class=\"none\">The video is {codec} in {file}, which browsers may not play: \
             <a href=\"{file}\">download it</a>.</p>",
            codec = escape(&report.video_codec),
            file = escape(&report.video)
        );
    }
    let _ = writeln!(
        page,
        "<div id=\"player-data\" hidden data-player=\"{}\"></div>",
        escape(&player_data(report).to_string())
    );
    page.push_str("</section>\n");

    page.push_str(
        "<h2>Motion timeline</h2>\n<section class=\"card\">\n<div class=\"plot-wrap\">\n",
    );
    timeline(&mut page, report);
    score_track(&mut page, report);
    page.push_str("</div>\n");
    if let Some(note) = &report.motion.note {
        let _ = writeln!(page, "<p class=\"none note\">{}</p>", escape(note));
    }
    page.push_str(
        "<div class=\"legend\"><span><i style=\"background:#2a62c9\"></i>motion energy</span>\
         <span><i style=\"background:#ffd86b\"></i>activity segment</span>\
         <span><i style=\"background:#d62f2f\"></i>signal event</span>\
         <span><i style=\"background:#e28a00\"></i>action start</span>\
         <span>- - threshold</span></div>\n</section>\n",
    );

    page.push_str("<h2>Signal events</h2>\n");
    events_table(&mut page, report);

    page.push_str("<h2>Activity segments</h2>\n");
    segments_table(&mut page, report);

    let _ = writeln!(
        page,
        "<footer>Data: <a href=\"report.json\">report.json</a> (schema version {version}). \
         Motion energy: mean absolute grey-level difference between consecutive frames at \
         {aw}×{ah} px; threshold {thr:.2} (median {median:.2} + {k} × 1.4826 × MAD {mad:.2}, at \
         least median + {rise}).</footer>\n</main>\n<script type=\"module\">{SCRIPT}</script>\n</body>\n</html>",
        version = report.schema_version,
        aw = report.motion.analysis_width,
        ah = report.motion.analysis_height,
        thr = report.motion.threshold,
        median = report.motion.median,
        mad = report.motion.mad,
        k = activity::K_MAD,
        rise = activity::MIN_RISE,
    );
    page
}

/// What the page's player needs of the report: the frame rate and count, each frame's time
/// at a variable rate (at most [`MAX_EMBEDDED_TIMES`]), and the events shown with the
/// score after each (in `report.json`'s shape, which `RefereePlayer.eventsOf` reads).
fn player_data(report: &Report) -> serde_json::Value {
    let events: Vec<serde_json::Value> = report
        .events
        .iter()
        .take(MAX_EVENTS_SHOWN)
        .map(|e| {
            serde_json::json!({
                "name": e.name.chars().take(MAX_TEXT_CHARS).collect::<String>(),
                "kind": e.kind,
                "side": e.side,
                "frame_index": e.frame_index,
                "action": e.action.as_ref().map(|a| serde_json::json!({"start_frame": a.start_frame})),
            })
        })
        .collect();
    let timeline: Vec<serde_json::Value> = report
        .bout
        .timeline
        .iter()
        .filter(|e| e.event < MAX_EVENTS_SHOWN)
        .map(|e| serde_json::json!({"event": e.event, "score": e.score}))
        .collect();
    let times = report
        .frame_times_s
        .as_ref()
        .filter(|t| t.len() <= MAX_EMBEDDED_TIMES);
    serde_json::json!({
        "fps": report.fps,
        "frames": report.frames,
        "frame_times_s": times,
        "events": events,
        "bout": {"timeline": timeline},
    })
}

/// `30` for 30.0, `29.97` for 29.97.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A "nice" tick step in seconds for `duration`: about 5 to 10 ticks (whole hours past 10
/// hours).
fn tick_step(duration: f64) -> f64 {
    LAYOUT
        .tick_steps
        .iter()
        .copied()
        .find(|step| duration / step <= 10.0)
        .unwrap_or_else(|| (duration / 10.0 / 3600.0).ceil() * 3600.0)
}

fn timeline(page: &mut String, report: &Report) {
    let energy = &report.motion.energy;
    let n = energy.len();
    let plot_w = PLOT_W - LEFT - RIGHT;
    let plot_h = PLOT_H - TOP - BOTTOM;
    let x = |frame: f64| {
        if n > 1 {
            LEFT + frame / (n - 1) as f64 * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let peak = energy.iter().copied().fold(0.0_f32, f32::max);
    let y_max = (f64::from(peak)
        .max(f64::from(report.motion.threshold) * LAYOUT.threshold_headroom)
        .max(1.0))
        * LAYOUT.peak_headroom;
    let y = |e: f64| TOP + plot_h - (e / y_max).clamp(0.0, 1.0) * plot_h;

    let _ = writeln!(
        page,
        "<svg class=\"timeline\" viewBox=\"0 0 {PLOT_W} {PLOT_H}\" role=\"img\" \
         aria-label=\"Motion energy over time with {} signal events\">",
        report.events.len()
    );

    // Time ticks: at most MAX_TICKS, whatever the duration.
    let step = tick_step(report.duration_s);
    for i in 0..MAX_TICKS {
        let t = i as f64 * step;
        if !(t.is_finite() && t <= report.duration_s + 1e-9 && report.fps > 0.0) {
            break;
        }
        let tx = x(report.frame_position(t));
        let _ = writeln!(
            page,
            "<line class=\"tick\" x1=\"{tx:.1}\" y1=\"{TOP}\" x2=\"{tx:.1}\" y2=\"{:.1}\"/>\
             <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}s</text>",
            TOP + plot_h,
            PLOT_H - 10.0,
            trim_float(t)
        );
    }

    // Activity segments: those that touch on the plot are drawn as one, so that there are
    // never more rectangles than the plot has pixels.
    let mut drawn: Vec<(f64, f64, usize, usize)> = Vec::new();
    for (i, s) in report.segments.iter().enumerate() {
        let (x1, x2) = (
            x(s.start_frame as f64),
            x(s.end_frame as f64).max(x(s.start_frame as f64) + 1.5),
        );
        match drawn.last_mut() {
            Some(last) if x1 <= last.1 + 1.0 => {
                last.1 = last.1.max(x2);
                last.3 = i;
            }
            _ => drawn.push((x1, x2, i, i)),
        }
    }
    for (x1, x2, first, last) in drawn {
        let (a, b) = (&report.segments[first], &report.segments[last]);
        let count = if first == last {
            String::new()
        } else {
            format!(", {} segments", last - first + 1)
        };
        let _ = writeln!(
            page,
            "<rect class=\"segment\" x=\"{x1:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\">\
             <title>activity {:.3} s – {:.3} s (frames {}–{}{count})</title></rect>",
            x2 - x1,
            a.start_s,
            b.end_s,
            a.start_frame,
            b.end_frame
        );
    }

    // The motion series, downsampled to at most MAX_POINTS (each bucket's maximum).
    let bucket = n.div_ceil(MAX_POINTS).max(1);
    let points: Vec<(f64, f64)> = energy
        .chunks(bucket)
        .enumerate()
        .map(|(i, chunk)| {
            let top = chunk.iter().copied().fold(0.0_f32, f32::max);
            let frame = (i * bucket + chunk.len() / 2) as f64;
            (x(frame), y(f64::from(top)))
        })
        .collect();
    if !points.is_empty() {
        let line: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let base = TOP + plot_h;
        let _ = writeln!(
            page,
            "<polygon class=\"area\" points=\"{:.1},{base:.1} {} {:.1},{base:.1}\"/>\n\
             <polyline class=\"motion\" points=\"{}\"/>",
            points[0].0,
            line.join(" "),
            points[points.len() - 1].0,
            line.join(" ")
        );
    }

    // Threshold and axes.
    let ty = y(f64::from(report.motion.threshold));
    let _ = writeln!(
        page,
        "<line class=\"threshold\" x1=\"{LEFT}\" y1=\"{ty:.1}\" x2=\"{:.1}\" y2=\"{ty:.1}\">\
         <title>threshold {:.2}</title></line>\n\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>\n\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\"/>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.1}</text>\n\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">0</text>",
        LEFT + plot_w,
        report.motion.threshold,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h,
        TOP + plot_h,
        LEFT - 6.0,
        TOP + 4.0,
        y_max,
        LEFT - 6.0,
        TOP + plot_h,
    );

    // Signal events (those the table shows) and the actions leading to them.
    for (i, event) in report.events.iter().take(MAX_EVENTS_SHOWN).enumerate() {
        let ex = x(event.frame_index as f64);
        let class = kind_class(event.kind, event.side, event_color(report, i));
        if let Some(action) = event.action.as_ref().filter(|_| has_action(event.kind)) {
            let ax = x(action.start_frame as f64);
            let _ = writeln!(
                page,
                "<g class=\"action\"><line x1=\"{ax:.1}\" y1=\"{:.1}\" x2=\"{ax:.1}\" y2=\"{:.1}\"/>\
                 <title>action before event {}: began at {:.3} s, {:.2} s before</title></g>\n\
                 <line class=\"lead\" x1=\"{ax:.1}\" y1=\"{:.1}\" x2=\"{ex:.1}\" y2=\"{:.1}\"/>",
                TOP,
                TOP + plot_h,
                i + 1,
                action.start_time_s,
                action.lead_s,
                TOP - 12.0,
                TOP - 12.0,
            );
        }
        let _ = writeln!(
            page,
            "<g class=\"event\"><a href=\"{video}#t={seek:.3}\" data-seek=\"{seek:.3}\">\
             <line class=\"{class}\" x1=\"{ex:.1}\" y1=\"{:.1}\" x2=\"{ex:.1}\" y2=\"{:.1}\"/>\
             <circle class=\"{class}\" cx=\"{ex:.1}\" cy=\"{:.1}\" r=\"10\"/>\
             <text x=\"{ex:.1}\" y=\"{:.1}\">{}</text>\
             <title>{}. {} at {:.3} s (frame {})</title></a></g>",
            TOP - 2.0,
            TOP + plot_h,
            TOP - 12.0,
            TOP - 8.0,
            i + 1,
            i + 1,
            clipped(&event.name),
            event.time_s,
            event.frame_index,
            video = escape(&report.video),
            seek = seek_time(event),
        );
    }
    page.push_str("</svg>\n");
}

/// The score track under the motion plot, on the same time axis: the score after each
/// touch, cards in their colour, halts; flagged scores with a `!`, touches to review ringed.
/// Each item opens the player where the event's action began.
fn score_track(page: &mut String, report: &Report) {
    let bout = &report.bout;
    if bout.timeline.is_empty() {
        return;
    }
    const TRACK_H: f64 = LAYOUT.score_track_height;
    let n = report.motion.energy.len();
    let plot_w = PLOT_W - LEFT - RIGHT;
    let x = |frame: f64| {
        if n > 1 {
            LEFT + frame / (n - 1) as f64 * plot_w
        } else {
            LEFT + plot_w / 2.0
        }
    };
    let _ = writeln!(
        page,
        "<svg class=\"timeline score\" viewBox=\"0 0 {PLOT_W} {TRACK_H}\" role=\"img\" \
         aria-label=\"Score after each touch, cards and halts; final score {} ({} flags)\">\n\
         <text x=\"{:.1}\" y=\"32\" text-anchor=\"end\">score</text>\n\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"44\" x2=\"{:.1}\" y2=\"44\"/>",
        bout.final_score,
        bout.flags.len(),
        LEFT - 6.0,
        LEFT + plot_w,
    );
    for entry in bout.timeline.iter().take(MAX_EVENTS_SHOWN) {
        let Some(event) = report.events.get(entry.event) else {
            continue;
        };
        let ex = x(entry.frame_index as f64);
        let class = kind_class(entry.kind, entry.side, entry.color);
        let shape = match entry.kind {
            EventKind::Touch | EventKind::Double => format!(
                "<circle class=\"{class}\" cx=\"{ex:.1}\" cy=\"44\" r=\"5\"/>\
                 <text class=\"score-text\" x=\"{ex:.1}\" y=\"32\">{}</text>",
                entry.score
            ),
            EventKind::Card => format!(
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"36\" width=\"9\" height=\"14\" rx=\"1\"/>",
                ex - 4.5
            ),
            EventKind::Halt => format!(
                "<rect class=\"{class}\" x=\"{:.1}\" y=\"38\" width=\"4\" height=\"12\"/>",
                ex - 2.0
            ),
            EventKind::OffTarget => {
                format!("<circle class=\"{class}\" cx=\"{ex:.1}\" cy=\"44\" r=\"4\"/>")
            }
            _ => continue,
        };
        let flag = bout.flags.iter().find(|f| f.event == entry.event);
        let mark = bout.marks.iter().find(|m| m.event == entry.event);
        let mut title = format!(
            "{}. {} at {:.3} s: {}",
            entry.event + 1,
            clipped(&event.name),
            entry.time_s,
            entry.score
        );
        let mut extra = String::new();
        if let Some(f) = flag {
            let _ = write!(title, " – FLAG: {}", escape(&f.reason));
            let _ = write!(
                extra,
                "<text class=\"flag\" x=\"{:.1}\" y=\"14\" text-anchor=\"middle\">!</text>",
                ex
            );
        }
        if let Some(m) = mark {
            let _ = write!(title, " – REVIEW: {}", escape(&m.reason));
            let _ = write!(
                extra,
                "<circle class=\"mark\" cx=\"{ex:.1}\" cy=\"44\" r=\"9\"/>"
            );
        }
        let _ = writeln!(
            page,
            "<g class=\"bout-item\"><a href=\"{video}#t={seek:.3}\" data-seek=\"{seek:.3}\">\
             {shape}{extra}<title>{title}</title></a></g>",
            video = escape(&report.video),
            seek = seek_time(event),
        );
    }
    page.push_str("</svg>\n");
}

/// The line under a table that shows the first `shown` of `total` things.
fn more_line(page: &mut String, shown: usize, total: usize, what: &str) {
    if total > shown {
        let _ = writeln!(
            page,
            "<p class=\"none more\">The first {shown} of {total} {what} are shown: \
             <a href=\"report.json\">report.json</a> has them all.</p>"
        );
    }
}

fn events_table(page: &mut String, report: &Report) {
    page.push_str(
        "<div class=\"table-wrap card\">\n<table class=\"events\">\n<thead><tr><th>#</th>\
         <th>Event</th><th>Time</th><th>Frame</th><th>Action start</th><th>Event frame</th>\
         <th>Action start frame</th><th>Clip</th></tr></thead>\n<tbody>\n",
    );
    if report.events.is_empty() {
        page.push_str("<tr><td colspan=\"7\" class=\"none\">No signal events.</td></tr>\n");
    }
    for (i, event) in report.events.iter().take(MAX_EVENTS_SHOWN).enumerate() {
        event_row(page, report, i + 1, event);
    }
    page.push_str("</tbody>\n</table>\n</div>\n");
    more_line(page, MAX_EVENTS_SHOWN, report.events.len(), "events");
    if report.clips_skipped > 0 {
        let _ = writeln!(
            page,
            "<p class=\"none\">{} more touches and halts have no clip: this server makes \
             {} clips per session at most (--max-clips).</p>",
            report.clips_skipped,
            report.clips.len()
        );
    }
    if let Some(note) = &report.clips_note {
        let _ = writeln!(page, "<p class=\"none\">{}</p>", escape(note));
    }
}

fn event_row(page: &mut String, report: &Report, number: usize, event: &ReportEvent) {
    let mut fields = String::new();
    let mut shown = 0;
    for (k, v) in &event.fields {
        if fields.len() >= MAX_FIELDS_BYTES {
            break;
        }
        let _ = write!(
            fields,
            "<span class=\"field\">{}={}</span>",
            clipped(k),
            clipped(v)
        );
        shown += 1;
    }
    if shown < event.fields.len() {
        let _ = write!(
            fields,
            "<span class=\"none\">and {} more fields</span>",
            event.fields.len() - shown
        );
    }
    if !event.fields.is_empty() {
        fields.push_str("<br>");
    }
    let (action, action_figure) = match event.action.as_ref().filter(|_| has_action(event.kind)) {
        Some(a) => (
            format!(
                "<span class=\"lead-text\">began {:.2} s before</span><br>\
                 frame {} · {:.3} s",
                a.lead_s, a.start_frame, a.start_time_s
            ),
            figure("action start", &a.thumbnail, a.start_frame, a.start_time_s),
        ),
        None if has_action(event.kind) => (
            "<span class=\"none\">no activity just before</span>".to_string(),
            String::new(),
        ),
        None => ("<span class=\"none\">–</span>".to_string(), String::new()),
    };
    let index = number - 1;
    let mut notes = String::new();
    for f in report.bout.flags.iter().filter(|f| f.event == index) {
        let _ = write!(
            notes,
            "<br><span class=\"flagged\">⚑ {}</span>",
            escape(&f.reason)
        );
    }
    for m in report.bout.marks.iter().filter(|m| m.event == index) {
        let _ = write!(
            notes,
            "<br><span class=\"marked\">◎ {}</span>",
            escape(&m.reason)
        );
    }
    let score = report
        .bout
        .timeline
        .iter()
        .find(|e| {
            e.event == index
                && matches!(
                    e.kind,
                    EventKind::Touch | EventKind::Double | EventKind::Card
                )
        })
        .map(|e| format!(" <span class=\"field\">{}</span>", e.score))
        .unwrap_or_default();
    let class = kind_class(event.kind, event.side, event_color(report, index));
    let _ =
        writeln!(
        page,
        "<tr class=\"event\" id=\"event-{number}\" data-kind=\"{class}\"><td><span class=\"badge {class}\">{number}</span></td>\
         <td><strong>{name}</strong>{score}<br>{fields}<span class=\"none\">line {line}</span>{notes}</td>\
         <td class=\"num\" data-label=\"Time\"><a href=\"{video}#t={t:.3}\" data-seek=\"{t:.3}\">{time:.3} s</a></td>\
         <td class=\"num\" data-label=\"Frame\"><a href=\"#t={frame}\">frame {frame}</a><br>{frame_time:.3} s</td>\
         <td data-label=\"Action start\">{action}</td>\
         <td class=\"thumb\">{event_figure}</td><td class=\"thumb\">{action_figure}</td>\
         <td class=\"thumb\" data-label=\"Clip\">{clip}</td></tr>",
        name = clipped(&event.name),
        line = event.line,
        video = escape(&report.video),
        t = seek_time(event),
        time = event.time_s,
        frame = event.frame_index,
        frame_time = event.frame_time_s,
        event_figure = figure("event", &event.thumbnail, event.frame_index, event.frame_time_s),
        clip = clip_cell(report.clip_of(index)),
    );
}

/// The clip of an event: an inline video (relative to the page, so a downloaded report with
/// its `clips/` folder beside it plays it too) and a link to the file.
fn clip_cell(clip: Option<&crate::store::Clip>) -> String {
    let Some(clip) = clip else {
        return "<span class=\"none\">–</span>".to_string();
    };
    format!(
        "<figure><video class=\"clip\" src=\"{src}\" controls preload=\"none\" playsinline \
         muted></video><figcaption><a href=\"{src}\" download>clip</a> · frames {first}–{last} \
         · {start:.3}–{end:.3} s</figcaption></figure>",
        src = escape(&clip.name),
        first = clip.first_frame,
        last = clip.last_frame,
        start = clip.start_s,
        end = clip.end_s,
    )
}

fn figure(label: &str, src: &str, frame: u64, time_s: f64) -> String {
    format!(
        "<figure><img src=\"{src}\" alt=\"{label}, frame {frame}\" loading=\"lazy\">\
         <figcaption>{label} · frame {frame} · {time_s:.3} s</figcaption></figure>",
        src = escape(src)
    )
}

fn segments_table(page: &mut String, report: &Report) {
    if report.segments.is_empty() {
        page.push_str("<p class=\"none\">No activity above the threshold.</p>\n");
        return;
    }
    page.push_str(
        "<div class=\"table-wrap card\">\n<table class=\"segments\">\n<thead><tr><th>#</th>\
         <th>Start</th><th>End</th><th>Duration</th><th>Frames</th><th>Peak energy</th>\
         </tr></thead>\n<tbody>\n",
    );
    for (i, s) in report.segments.iter().take(MAX_SEGMENTS_SHOWN).enumerate() {
        let _ = writeln!(
            page,
            "<tr class=\"segment\"><td>{}</td><td class=\"num\">{:.3} s</td>\
             <td class=\"num\">{:.3} s</td><td class=\"num\">{:.2} s</td>\
             <td class=\"num\">{}–{}</td><td class=\"num\">{:.2} (frame {})</td></tr>",
            i + 1,
            s.start_s,
            s.end_s,
            s.end_s - s.start_s,
            s.start_frame,
            s.end_frame,
            s.peak_energy,
            s.peak_frame
        );
    }
    page.push_str("</tbody>\n</table>\n</div>\n");
    more_line(
        page,
        MAX_SEGMENTS_SHOWN,
        report.segments.len(),
        "activity segments",
    );
}

#[cfg(test)]
mod tests {
    use super::super::analysis::tests::{energy, meta};
    use super::super::analysis::VideoFile;
    use super::*;
    use referee_protocol::signal::SignalTrack;

    fn report(signal: &str) -> Report {
        let track = SignalTrack::parse(signal).unwrap();
        let pts: Vec<i64> = (0..120).map(|i| i * 1_000_000 / 30).collect();
        Report::build(
            &meta(30.0, 120),
            &pts,
            Some(&track),
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            energy(),
            (160, 120),
        )
    }

    #[test]
    fn a_camera_of_a_bout_says_which_and_its_offset() {
        let mut report = report("1.0 touch_left score=1-0\n");
        assert!(!render(&report).contains("Camera "));
        report.camera = Some(referee_protocol::api::BoutMembership {
            bout_id: "b1".into(),
            camera: "right".into(),
            cameras: vec!["left".into(), "right".into()],
            offset_s: Some(0.395893),
            offset_confidence: Some(0.72),
            offset_note: None,
        });
        let page = render(&report);
        assert!(
            page.contains("Camera right of bout b1 (cameras left, right); it started 0.396 s after the signal&#39;s clock (found from the motion, confidence 0.72)"),
            "{page}"
        );
    }

    #[test]
    fn each_clipped_event_shows_its_clip_and_skipped_clips_are_told() {
        let clip = crate::store::Clip {
            name: "clips/clip-001-touch_left.mp4".into(),
            event: 1,
            event_name: "touch_left".into(),
            kind: EventKind::Touch,
            first_frame: 9,
            last_frame: 69,
            start_s: 0.3,
            end_s: 2.3,
            frames: 61,
            bytes: 1000,
        };
        let clips = super::super::clips::Clips {
            clips: vec![clip],
            skipped: 4,
            note: None,
        };
        let page =
            render(&report("0.2 start\n1.3 touch_left score=1-0\n3.0 halt\n").with_clips(&clips));
        assert_eq!(
            page.matches("<video class=\"clip\" src=\"clips/clip-001-touch_left.mp4\"")
                .count(),
            1
        );
        assert!(page.contains("<a href=\"clips/clip-001-touch_left.mp4\" download>clip</a>"));
        assert!(page.contains("frames 9–69"));
        assert!(page.contains("4 more touches and halts have no clip"));
    }

    #[test]
    fn the_page_has_the_plot_one_row_per_event_and_the_video() {
        let page = render(&report("0.2 start\n1.3 touch_left score=1-0\n3.0 halt\n"));
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<tr class=\"event\"").count(), 3);
        assert_eq!(page.matches("<g class=\"event\">").count(), 3);
        assert_eq!(page.matches("<rect class=\"segment\"").count(), 2);
        assert!(page.contains("<polyline class=\"motion\""));
        assert!(page.contains("<video id=\"video\" src=\"video.mp4\""));
        assert!(page.contains("src=\"thumbnails/frame-000039.jpg\""));
        assert!(page.contains("src=\"thumbnails/frame-000020.jpg\""));
        assert!(page.contains("began 0.63 s before"));
        assert!(page.contains("name=\"viewport\""));
        // Self-contained: no script but the page's own fixed one, nothing fetched from
        // elsewhere.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(page.contains(&format!("<script type=\"module\">{SCRIPT}</script>")));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }

    #[test]
    fn events_are_styled_by_kind_and_open_where_their_action_began() {
        let track = SignalTrack::parse(
            "0.2 start\n1.3 touch_left score=1-0\n1.35 touch_right score=1-2\n2.0 \
             card_right color=yellow\n2.5 off_target_left\n3.0 halt\n",
        )
        .unwrap();
        let pts: Vec<i64> = (0..120).map(|i| i * 1_000_000 / 30).collect();
        let report = Report::build(
            &meta(30.0, 120),
            &pts,
            Some(&track),
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            energy(),
            (160, 120),
        )
        .with_bout(Some(&track), 15);
        let page = render(&report);
        // Left and right touches, the card in its colour and the halt each have their class.
        for class in [
            "k-touch s-left",
            "k-touch s-right",
            "k-card s-right c-yellow",
            "k-off_target s-left",
            "k-halt",
            "k-period",
        ] {
            assert!(
                page.contains(&format!("<circle class=\"{class}\"")),
                "{class}: {page}"
            );
        }
        // The touch opens 1 s before where its action began (0.667 s), at 0.
        let row = |n: usize| {
            let start = page.find(&format!("id=\"event-{n}\"")).unwrap();
            let end = page[start..].find("</tr>").unwrap();
            page[start..start + end].to_string()
        };
        assert!(row(2).contains("data-seek=\"0.000\""), "{}", row(2));
        assert!(row(2).contains("began 0.63 s before"));
        // The halt is led by segment 70-90 but has no action start, and opens at itself.
        let halt = row(6);
        assert!(!halt.contains("began"), "{halt}");
        assert!(halt.contains("data-seek=\"3.000\""), "{halt}");
        assert!(!row(1).contains("began"), "{}", row(1));
        // The score track: the score after each touch, the flag on the slip.
        assert!(page.contains("<svg class=\"timeline score\""), "{page}");
        assert!(page.contains(">1-0</text>") && page.contains(">1-2</text>"));
        assert!(page.contains("FLAG: touch_right gives score=1-2"), "{page}");
        assert!(row(3).contains("class=\"flagged\""));
        // Touches, the card, the off-target and the halt are on the track; `start` is not.
        assert_eq!(page.matches("<g class=\"bout-item\">").count(), 5);
    }

    #[test]
    fn the_script_hash_is_the_sha256_of_the_script() {
        // Known values, as `printf %s TEXT | openssl dgst -sha256 -binary | base64` gives.
        assert_eq!(
            csp_hash(""),
            "'sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU='"
        );
        assert_eq!(
            csp_hash("abc"),
            "'sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0='"
        );
        assert_eq!(script_csp_source(), csp_hash(SCRIPT));
        // The script is the player, inlined whole: nothing in it ends the <script> early.
        assert!(SCRIPT.contains("RefereePlayer"));
        assert!(!SCRIPT.to_ascii_lowercase().contains("</script"));
    }

    #[test]
    fn text_from_the_signal_file_is_escaped() {
        let page = render(&report(
            "1.0 <script>alert(1)</script> note=\"><img/src=x>\n2.0 a&b x='y'\n",
        ));
        assert_eq!(page.matches("<script").count(), 1, "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(!page.contains("<img/src"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("note=&quot;&gt;&lt;img/src=x&gt;"));
        assert!(page.contains("a&amp;b"));
        assert!(page.contains("x=&#39;y&#39;"));
    }

    #[test]
    fn the_page_stays_small_whatever_the_signal_file_holds() {
        // Many events, each with a long name of characters that escaping lengthens and many
        // long fields.
        let name = "\"<&".repeat(200);
        let fields: Vec<String> = (0..100)
            .map(|i| format!("k{i}={}", "\"".repeat(300)))
            .collect();
        let fields = fields.join(" ");
        let signal: String = (0..1500)
            .map(|i| format!("0.{i:06} {name}{i} {fields}\n"))
            .collect();
        let mut report = report(&signal);
        assert_eq!(report.events.len(), 1500);
        report.source = "\"".repeat(100_000);
        let page = render(&report);
        assert!(page.len() < MAX_PAGE_BYTES, "{} bytes", page.len());
        assert_eq!(
            page.matches("<tr class=\"event\"").count(),
            MAX_EVENTS_SHOWN
        );
        assert_eq!(
            page.matches("<g class=\"event\">").count(),
            MAX_EVENTS_SHOWN
        );
        assert!(
            page.contains("The first 500 of 1500 events are shown: <a href=\"report.json\">"),
            "{}",
            &page[page.len() - 2000..]
        );
        assert!(page.contains("more fields"));
        assert!(page.ends_with("</html>\n"));
        // Still escaped where cut.
        assert!(!page.contains("\"<&"));
    }

    #[test]
    fn the_timeline_has_a_bounded_number_of_ticks_whatever_the_duration() {
        for duration in [0.0, 4.0, 3600.0, 40_000.0, 1e9, f64::INFINITY, f64::NAN] {
            let mut report = report("0.2 start\n");
            report.duration_s = duration;
            let page = render(&report);
            let ticks = page.matches("<line class=\"tick\"").count();
            assert!(ticks <= MAX_TICKS, "{duration}: {ticks} ticks");
            if duration.is_finite() {
                assert!(ticks >= 1, "{duration}");
            }
        }
        assert_eq!(tick_step(36_000.0), 3600.0);
        assert_eq!(tick_step(72_000.0), 7200.0);
        assert_eq!(tick_step(1e9), 27_778.0 * 3600.0);
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(tick_step(4.0), 0.5);
        assert_eq!(tick_step(5.0), 0.5);
        assert_eq!(tick_step(60.0), 10.0);
        assert_eq!(tick_step(3600.0), 600.0);
        assert_eq!(trim_float(30.0), "30");
        assert_eq!(trim_float(29.97), "29.97");
    }
}
