//! `referee-client watch URL SESSION_ID`: follows a session's events as they happen
//! (`GET /api/sessions/{id}/events`, Server-Sent Events) and prints one line per event, with a
//! progress bar on a terminal: the frames stored while receiving, the stage's percent while
//! processing. Ends with success when the session is complete, with an error when it failed,
//! was abandoned or deleted, or never appeared. Blocking (ureq): call it from a blocking
//! thread.

use std::io::{self, BufRead, BufReader, Read};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use referee_protocol::api::{SessionEvent, SessionStatus};
use time::OffsetDateTime;

use crate::error::ClientError;
use crate::results::Api;

/// The longest line of the event stream read (an event is a few hundred bytes).
const MAX_LINE: u64 = 1024 * 1024;
/// Reconnections in a row after the stream broke before the session finished.
const RECONNECTS: u32 = 5;

/// One Server-Sent Event: its name (`message` when unnamed) and its data lines, joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub name: String,
    pub data: String,
}

/// Reads Server-Sent Events from a byte stream: `event:` and `data:` fields, a blank line
/// ending each event, comments (`:` lines, the server's keep-alives) skipped.
pub struct SseReader<R> {
    reader: BufReader<R>,
}

impl<R: Read> SseReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            reader: BufReader::new(inner),
        }
    }

    /// The next event, or `None` at the end of the stream.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut name = String::new();
        let mut data: Option<String> = None;
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut self.reader)
                .take(MAX_LINE + 1)
                .read_until(b'\n', &mut line)?;
            if read == 0 {
                return Ok(None);
            }
            if line.len() as u64 > MAX_LINE {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("an event stream line is longer than {MAX_LINE} bytes"),
                ));
            }
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']);
            if text.is_empty() {
                if let Some(data) = data.take() {
                    let name = if name.is_empty() {
                        "message".to_string()
                    } else {
                        name
                    };
                    return Ok(Some(SseEvent { name, data }));
                }
                name.clear();
                continue;
            }
            if text.starts_with(':') {
                continue;
            }
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => name = value.to_string(),
                "data" => match &mut data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }
}

/// What an event means for the watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep watching.
    Continue,
    /// The session is complete.
    Complete,
    /// The session will never complete; why.
    Stop(String),
    /// No such session appeared within the wait.
    NotFound,
}

/// An event's data: a session's state ([`SessionEvent`]), or a sentence (`lagged`,
/// `not_found`, and any event this client does not know).
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Session(Box<SessionEvent>),
    Note(String),
}

impl WatchEvent {
    /// The data of an event, read as the API's [`SessionEvent`] when it is one.
    pub fn parse(data: &str) -> Self {
        match serde_json::from_str::<SessionEvent>(data) {
            Ok(event) => WatchEvent::Session(Box::new(event)),
            Err(_) => WatchEvent::Note(
                serde_json::from_str::<String>(data).unwrap_or_else(|_| data.to_string()),
            ),
        }
    }

    fn session(&self) -> Option<&SessionEvent> {
        match self {
            WatchEvent::Session(event) => Some(event),
            WatchEvent::Note(_) => None,
        }
    }
}

/// Judges the event `name` with `data`.
pub fn verdict(name: &str, data: &WatchEvent) -> Verdict {
    if name == "not_found" {
        return Verdict::NotFound;
    }
    if name == "deleted" {
        return Verdict::Stop("was deleted".to_string());
    }
    let Some(event) = data.session() else {
        return Verdict::Continue;
    };
    match event.status {
        SessionStatus::Complete => Verdict::Complete,
        SessionStatus::Failed => Verdict::Stop(format!(
            "failed: {}",
            event.error.as_deref().unwrap_or("no reason given")
        )),
        SessionStatus::Abandoned => Verdict::Stop(format!(
            "was abandoned{}: it can no longer be resumed",
            event
                .error
                .as_deref()
                .map_or_else(String::new, |e| format!(" ({e})"))
        )),
        _ => Verdict::Continue,
    }
}

/// `at` as `17:01:16` (UTC); the current UTC time when absent.
fn clock(at: Option<OffsetDateTime>) -> String {
    let at = at.unwrap_or_else(OffsetDateTime::now_utc);
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

/// One line for an event: time (UTC), event, status, frames, stage and percent, error.
///
/// `17:01:20  progress   processing       300/300 frames  analysis 45%`
pub fn event_line(name: &str, data: &WatchEvent) -> String {
    let event = match data {
        WatchEvent::Session(event) => event,
        WatchEvent::Note(text) => {
            return format!("{}  {name:<10} {text}", clock(None))
                .trim_end()
                .to_string()
        }
    };
    let stored = event.frames_stored;
    let frames = match event.frames_expected {
        Some(expected) => format!("{stored}/{expected} frames"),
        None => format!("{stored} frames"),
    };
    let status = event.status.as_str();
    let mut line = format!(
        "{}  {name:<10} {status:<15} {frames}",
        clock(Some(event.at))
    );
    if event.status == SessionStatus::Processing {
        if let (Some(stage), Some(percent)) = (event.stage, event.percent) {
            line.push_str(&format!("  {stage} {percent:.0}%"));
        }
    }
    if let Some(clip) = &event.clip {
        line.push_str(&format!("  {}", clip.name));
    }
    if let Some(error) = &event.error {
        line.push_str(&format!("  ({error})"));
    }
    line
}

/// What the bar shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BarMode {
    Frames(Option<u64>),
    Percent,
}

/// The lines, and the bar on a terminal. Every event is a line, except that `frames` events
/// move the bar instead (without a terminal: one line a second at most), and `progress`
/// events print a line only when the stage changes or passes a 10 % step.
struct Display {
    bar: Option<ProgressBar>,
    mode: Option<BarMode>,
    /// The stage and 10 % step of the last `progress` line.
    last_step: Option<(String, u32)>,
    /// When the last `frames` line was printed (without a bar).
    last_frames_line: Option<Instant>,
}

impl Display {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stdout());
        Self {
            bar: (!bar.is_hidden()).then_some(bar),
            mode: None,
            last_step: None,
            last_frames_line: None,
        }
    }

    fn line(&self, text: &str) {
        // Lines quote the server's events: never a control character on the terminal.
        let text = referee_protocol::text::escape_controls(text);
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{text}"),
        }
    }

    fn show(&mut self, name: &str, data: &WatchEvent) {
        let quiet = match name {
            // The bar shows them; as lines, one a second is plenty.
            "frames" => {
                self.bar.is_some()
                    || self
                        .last_frames_line
                        .is_some_and(|at| at.elapsed() < Duration::from_secs(1))
            }
            "progress" => {
                let event = data.session();
                let stage = event
                    .and_then(|e| e.stage)
                    .map_or_else(String::new, |s| s.to_string());
                let percent = event.and_then(|e| e.percent).unwrap_or(0.0);
                let step = (percent.clamp(0.0, 100.0) / 10.0).floor() as u32;
                let new = self
                    .last_step
                    .as_ref()
                    .is_none_or(|(s, n)| *s != stage || step > *n);
                if new {
                    self.last_step = Some((stage, step));
                }
                !new
            }
            _ => false,
        };
        if !quiet {
            self.line(&event_line(name, data));
            if name == "frames" {
                self.last_frames_line = Some(Instant::now());
            }
        }
        let Some(bar) = self.bar.clone() else {
            return;
        };
        let Some(event) = data.session() else {
            return;
        };
        let mode = match event.status {
            SessionStatus::Processing => Some(BarMode::Percent),
            SessionStatus::Complete | SessionStatus::Failed | SessionStatus::Abandoned => None,
            _ => Some(BarMode::Frames(event.frames_expected)),
        };
        if mode != self.mode {
            self.mode = mode;
            let template = match mode {
                Some(BarMode::Frames(Some(_))) => {
                    "{wide_bar} {pos}/{len} frames ({percent}%) {msg}"
                }
                Some(BarMode::Frames(None)) => "{spinner} {pos} frames {msg}",
                Some(BarMode::Percent) => "{wide_bar} {pos}% {msg}",
                None => "{msg}",
            };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            match mode {
                Some(BarMode::Frames(length)) => {
                    bar.unset_length();
                    if let Some(length) = length {
                        bar.set_length(length);
                    }
                }
                Some(BarMode::Percent) => bar.set_length(100),
                None => bar.finish_and_clear(),
            }
        }
        match self.mode {
            Some(BarMode::Frames(_)) => {
                bar.set_position(event.frames_stored);
                bar.set_message(event.status.as_str().replace('_', " "));
            }
            Some(BarMode::Percent) => {
                let percent = event.percent.unwrap_or(0.0).clamp(0.0, 100.0);
                bar.set_position(percent as u64);
                bar.set_message(event.stage.map_or("processing", |s| s.as_str()).to_string());
            }
            None => {}
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Whether `id` can be a session id (`[A-Za-z0-9_-]+`), so that it is safe in a URL path.
fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

/// Follows session `id` until it is complete (`Ok`) or can no longer be (`Err`). `timeout`
/// is how long the server waits for a session that does not exist yet.
pub fn watch(api: &Api, id: &str, timeout: Option<u64>) -> Result<(), ClientError> {
    let stopped = |reason: String| ClientError::Watch {
        id: id.to_string(),
        reason,
    };
    if !plausible_id(id) {
        return Err(stopped(
            "is not a session id: ids are letters, digits, '-' and '_'".to_string(),
        ));
    }
    let path = match timeout {
        Some(secs) => format!("/api/sessions/{id}/events?timeout={secs}"),
        None => format!("/api/sessions/{id}/events"),
    };
    let mut display = Display::new();
    let mut failures = 0;
    let mut connected = false;
    loop {
        let response = match api.get(&path) {
            Ok(response) => response,
            // A wrong address, token or scope: say so at once.
            Err(err) if !connected || matches!(err, ClientError::HttpStatus { .. }) => {
                return Err(err)
            }
            Err(err) => {
                failures += 1;
                if failures > RECONNECTS {
                    return Err(err);
                }
                retry_after(&display, failures, &format!("cannot reconnect ({err})"));
                continue;
            }
        };
        connected = true;
        let mut events = SseReader::new(response.into_body().into_reader());
        let ended = loop {
            match events.next_event() {
                Ok(Some(event)) => {
                    failures = 0;
                    let data = WatchEvent::parse(&event.data);
                    display.show(&event.name, &data);
                    match verdict(&event.name, &data) {
                        Verdict::Continue => {}
                        Verdict::Complete => {
                            drop(display);
                            println!(
                                "Session {id} complete: {} frames; report: {}",
                                data.session().map_or(0, |e| e.frames_stored),
                                api.url(&format!("/api/sessions/{id}/report.html"))
                            );
                            return Ok(());
                        }
                        Verdict::Stop(reason) => return Err(stopped(reason)),
                        Verdict::NotFound => {
                            let wait = timeout.map_or_else(
                                || "the server's wait (300 s unless --timeout)".to_string(),
                                |secs| format!("{secs} s"),
                            );
                            return Err(stopped(format!(
                                "did not appear on {} within {wait}: check the id with `referee-client list {}`",
                                api.url(""),
                                api.url("")
                            )));
                        }
                    }
                }
                Ok(None) => break "the server ended the event stream".to_string(),
                Err(err) => break format!("the event stream broke ({err})"),
            }
        };
        failures += 1;
        if failures > RECONNECTS {
            return Err(stopped(format!(
                "is not finished, and {ended} {RECONNECTS} times in a row: run the command again later"
            )));
        }
        retry_after(&display, failures, &ended);
    }
}

/// Says why the watch reconnects, and waits 1, 2, 4, 8 s... before the attempt `failures`.
fn retry_after(display: &Display, failures: u32, why: &str) {
    let delay = Duration::from_secs(1 << failures.saturating_sub(1).min(3));
    display.line(&format!(
        "{}  {why}; reconnecting in {} s",
        clock(None),
        delay.as_secs()
    ));
    std::thread::sleep(delay);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_are_read_across_lines_comments_and_keep_alives() {
        let stream = ": keep-alive\n\nevent: state\ndata: {\"a\":1}\n\n:\n\
                      data: first\ndata: second\n\nevent: not_found\r\ndata:no session\r\n\r\n\
                      event: partial\ndata: cut";
        let mut reader = SseReader::new(stream.as_bytes());
        let mut seen = Vec::new();
        while let Some(event) = reader.next_event().unwrap() {
            seen.push((event.name, event.data));
        }
        assert_eq!(
            seen,
            [
                ("state".to_string(), "{\"a\":1}".to_string()),
                ("message".to_string(), "first\nsecond".to_string()),
                ("not_found".to_string(), "no session".to_string()),
            ]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let long = format!("data: {}", "x".repeat(MAX_LINE as usize + 10));
        let mut reader = SseReader::new(long.as_bytes());
        assert!(reader.next_event().is_err());
    }

    fn parsed(value: serde_json::Value) -> WatchEvent {
        WatchEvent::parse(&value.to_string())
    }

    #[test]
    fn lines_show_time_event_status_frames_and_stage() {
        let progress = parsed(json!({
            "event": "progress", "session_id": "s", "at": "2025-11-06T17:01:20.123Z",
            "status": "processing", "frames_stored": 300, "bytes_stored": 1, "frames_expected": 300,
            "stage": "analysis", "percent": 45.4, "error": null,
        }));
        assert_eq!(
            event_line("progress", &progress),
            "17:01:20  progress   processing      300/300 frames  analysis 45%"
        );
        let clip = parsed(json!({
            "event": "clip_ready", "session_id": "s",
            "at": "2025-11-06T17:01:20Z", "status": "processing", "frames_stored": 300,
            "frames_expected": 300, "stage": "clips", "percent": 50.0,
            "clip": {"name": "clips/clip-002-touch_left.mp4", "event": 2,
                "event_name": "touch_left", "kind": "touch", "first_frame": 3,
                "last_frame": 40, "start_s": 0.1, "end_s": 1.333, "frames": 38, "bytes": 9000},
        }));
        assert_eq!(
            event_line("clip_ready", &clip),
            "17:01:20  clip_ready processing      300/300 frames  clips 50%  clips/clip-002-touch_left.mp4"
        );
        let detached = parsed(json!({
            "event": "detached", "session_id": "s",
            "at": "2025-11-06T17:01:21Z", "status": "detached", "frames_stored": 12,
            "frames_expected": null, "error": "connection lost",
        }));
        assert_eq!(
            event_line("detached", &detached),
            "17:01:21  detached   detached        12 frames  (connection lost)"
        );
        let lagged = event_line("lagged", &WatchEvent::parse("3 events skipped"));
        assert!(
            lagged.ends_with("  lagged     3 events skipped"),
            "{lagged}"
        );
    }

    #[test]
    fn only_complete_succeeds_and_only_final_states_stop() {
        let with = |status: &str| {
            parsed(
                json!({"event": "state", "session_id": "s", "at": "2025-11-06T17:01:21Z",
                "status": status, "error": "boom"}),
            )
        };
        assert_eq!(verdict("complete", &with("complete")), Verdict::Complete);
        assert_eq!(verdict("state", &with("complete")), Verdict::Complete);
        assert_eq!(
            verdict("failed", &with("failed")),
            Verdict::Stop("failed: boom".into())
        );
        assert!(matches!(
            verdict("abandoned", &with("abandoned")),
            Verdict::Stop(_)
        ));
        assert!(matches!(
            verdict("deleted", &with("receiving")),
            Verdict::Stop(_)
        ));
        for status in ["created", "receiving", "processing", "detached"] {
            assert_eq!(verdict("state", &with(status)), Verdict::Continue);
        }
        assert_eq!(
            verdict(
                "not_found",
                &WatchEvent::parse("no session x appeared in time")
            ),
            Verdict::NotFound
        );
        assert_eq!(
            verdict("lagged", &WatchEvent::parse("2 skipped")),
            Verdict::Continue
        );
    }

    #[test]
    fn ids_are_checked_before_they_go_in_a_url() {
        assert!(plausible_id("20251106_170116_bout_k7m2x"));
        for bad in ["", "a/b", "a?b", "../x", "a b"] {
            assert!(!plausible_id(bad), "{bad}");
        }
    }
}
