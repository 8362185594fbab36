//! The signal file: timestamped events recorded beside the video, e.g. by a fencing scoring box.
//!
//! One event a line: `TIME EVENT [key=value ...]`. `TIME` is seconds from the start of the video
//! (`12.533`) or `MM:SS.mmm` or `HH:MM:SS.mmm`. Blank lines and lines starting with `#` are
//! ignored. Events must be in time order (equal times are allowed). See
//! `docs/signal-format.md`.

use thiserror::Error;

/// One event of a signal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalEvent {
    /// 1-based line number in the file.
    pub line: usize,
    /// The line as written (trimmed), for errors that name it.
    pub text: String,
    /// Time from the start of the video, in microseconds.
    pub time_us: u64,
    /// The event's name, e.g. `touch_left`.
    pub name: String,
    /// `key=value` pairs after the name, in file order.
    pub fields: Vec<(String, String)>,
}

/// A parsed signal file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalTrack {
    pub events: Vec<SignalEvent>,
}

/// What is wrong with a line of a signal file.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum SignalErrorKind {
    #[error("cannot read the time {0:?}: write seconds (12.533), MM:SS.mmm or HH:MM:SS.mmm")]
    BadTime(String),
    #[error("the time {0:?} is negative: times count from the start of the video")]
    NegativeTime(String),
    #[error("no event name after the time: write `TIME EVENT [key=value ...]`")]
    MissingEvent,
    #[error("{0:?} is not a key=value field")]
    BadField(String),
    #[error("the event at {time} comes before the previous event at {previous}: put events in time order")]
    OutOfOrder { time: String, previous: String },
    #[error("the event at {time} is past the end of the video ({duration})")]
    PastEnd { time: String, duration: String },
}

/// An error in a signal file, naming the line and its text.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("line {line} ({text:?}): {kind}")]
pub struct SignalError {
    pub line: usize,
    pub text: String,
    pub kind: SignalErrorKind,
}

/// Formats microseconds as seconds with millisecond precision, e.g. `12.533s`.
pub fn format_us(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1000)
}

impl SignalTrack {
    /// The track on the clock of a camera that started recording `offset_s` seconds after
    /// the signal's clock (before it when negative): every event that much earlier. Events
    /// from before the camera started are left out (it did not record them).
    pub fn on_camera(&self, offset_s: f64) -> SignalTrack {
        let offset_us = (offset_s * 1e6).round() as i64;
        let events = self
            .events
            .iter()
            .filter_map(|e| {
                let time = i64::try_from(e.time_us).ok()?.checked_sub(offset_us)?;
                Some(SignalEvent {
                    time_us: u64::try_from(time).ok()?,
                    ..e.clone()
                })
            })
            .collect();
        SignalTrack { events }
    }

    /// Parses a whole signal file. A UTF-8 byte-order mark at its start (as some Windows
    /// editors write) is skipped.
    pub fn parse(text: &str) -> Result<Self, SignalError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut events: Vec<SignalEvent> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let error = |kind| SignalError {
                line,
                text: trimmed.to_string(),
                kind,
            };
            let mut words = trimmed.split_whitespace();
            let time_text = words.next().unwrap_or_default();
            let time_us = parse_time(time_text).map_err(error)?;
            let name = words
                .next()
                .ok_or_else(|| error(SignalErrorKind::MissingEvent))?
                .to_string();
            let fields = words
                .map(|w| match w.split_once('=') {
                    Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                    _ => Err(error(SignalErrorKind::BadField(w.to_string()))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if let Some(prev) = events.last() {
                if time_us < prev.time_us {
                    return Err(error(SignalErrorKind::OutOfOrder {
                        time: format_us(time_us),
                        previous: format_us(prev.time_us),
                    }));
                }
            }
            events.push(SignalEvent {
                line,
                text: trimmed.to_string(),
                time_us,
                name,
                fields,
            });
        }
        Ok(Self { events })
    }

    /// Checks that no event lies past the end of a video of `duration_us` microseconds.
    pub fn check_duration(&self, duration_us: u64) -> Result<(), SignalError> {
        match self.events.iter().find(|e| e.time_us > duration_us) {
            Some(e) => Err(SignalError {
                line: e.line,
                text: e.text.clone(),
                kind: SignalErrorKind::PastEnd {
                    time: format_us(e.time_us),
                    duration: format_us(duration_us),
                },
            }),
            None => Ok(()),
        }
    }
}

/// Parses `12.533`, `MM:SS.mmm` or `HH:MM:SS.mmm` into microseconds. Digits past the sixth
/// decimal are cut off.
fn parse_time(text: &str) -> Result<u64, SignalErrorKind> {
    let bad = || SignalErrorKind::BadTime(text.to_string());
    if let Some(magnitude) = text.strip_prefix('-') {
        // Negative only if the rest is a valid time; otherwise it is simply unreadable.
        return match parse_time(magnitude) {
            Ok(_) => Err(SignalErrorKind::NegativeTime(text.to_string())),
            Err(_) => Err(bad()),
        };
    }
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() > 3 {
        return Err(bad());
    }
    let (whole_parts, last) = parts.split_at(parts.len() - 1);
    let (secs, frac) = match last[0].split_once('.') {
        Some((s, f)) => (s, f),
        None => (last[0], ""),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || !(frac.is_empty() || digits(frac)) {
        return Err(bad());
    }
    let secs: u64 = secs.parse().map_err(|_| bad())?;
    if !whole_parts.is_empty() && secs >= 60 {
        return Err(bad());
    }
    let mut micros: u64 = 0;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    let mut total_secs = secs;
    let mut scale = 60;
    for (i, part) in whole_parts.iter().rev().enumerate() {
        if !digits(part) {
            return Err(bad());
        }
        let v: u64 = part.parse().map_err(|_| bad())?;
        // Minutes are below 60 when hours are given.
        if i == 0 && whole_parts.len() == 2 && v >= 60 {
            return Err(bad());
        }
        total_secs = v
            .checked_mul(scale)
            .and_then(|x| x.checked_add(total_secs))
            .ok_or_else(bad)?;
        scale *= 60;
    }
    total_secs
        .checked_mul(1_000_000)
        .and_then(|x| x.checked_add(micros))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_started_later_sees_each_event_that_much_earlier_and_misses_those_before() {
        let track = SignalTrack::parse("0.2 start\n1.2 touch_left\n3.0 halt\n").unwrap();
        let later = track.on_camera(0.4);
        let times: Vec<u64> = later.events.iter().map(|e| e.time_us).collect();
        assert_eq!(times, [800_000, 2_600_000]);
        assert_eq!(later.events[0].name, "touch_left");
        let earlier = track.on_camera(-0.5);
        assert_eq!(earlier.events[0].time_us, 700_000);
        assert_eq!(track.on_camera(0.0), track);
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let track = SignalTrack::parse("\u{feff}0.0 start\n1.5 touch_left score=1-0\n").unwrap();
        assert_eq!(track.events.len(), 2);
        assert_eq!(track.events[0].name, "start");
        assert_eq!(track.events[0].line, 1);
        // Only at the start of the file.
        assert!(SignalTrack::parse("0.0 start\n\u{feff}1.5 touch\n").is_err());
    }

    #[test]
    fn parses_all_time_forms_comments_and_fields() {
        let text = "# scoring box export\n\n0.5 start\n12.533 touch_left score=1-0\n01:02.250 touch_right\n1:00:00.000001 halt reason=time\n";
        let track = SignalTrack::parse(text).unwrap();
        let times: Vec<u64> = track.events.iter().map(|e| e.time_us).collect();
        assert_eq!(times, vec![500_000, 12_533_000, 62_250_000, 3_600_000_001]);
        let touch = &track.events[1];
        assert_eq!(touch.line, 4);
        assert_eq!(touch.name, "touch_left");
        assert_eq!(touch.fields, vec![("score".to_string(), "1-0".to_string())]);
    }

    #[test]
    fn errors_name_the_line_and_its_text() {
        let cases = [
            ("1.0 a\nabc touch\n", 2, "cannot read the time \"abc\""),
            ("-1.5 touch\n", 1, "negative"),
            (
                "1.0 a\n0.5 b\n",
                2,
                "comes before the previous event at 1.000s",
            ),
            ("2.0\n", 1, "no event name"),
            ("2.0 touch score\n", 1, "not a key=value"),
            ("01:75.0 touch\n", 1, "cannot read the time"),
            ("1:2:3:4 touch\n", 1, "cannot read the time"),
            ("1.2.3 touch\n", 1, "cannot read the time"),
        ];
        for (text, line, expected) in cases {
            let err = SignalTrack::parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("line {line} (")), "{shown}");
            assert!(
                shown.contains(expected),
                "{shown} should contain {expected}"
            );
        }
    }

    #[test]
    fn events_past_the_end_are_caught() {
        let track = SignalTrack::parse("1.0 a\n  00:05.0 b x=1\n").unwrap();
        assert!(track.check_duration(5_000_000).is_ok());
        let err = track.check_duration(4_000_000).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(
            err.to_string(),
            "line 2 (\"00:05.0 b x=1\"): the event at 5.000s is past the end of the video (4.000s)"
        );
    }
}
