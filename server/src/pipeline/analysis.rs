//! Stage `analysis`: measures the motion of every frame, finds the activity segments, lines
//! each signal event up with the frame shown at its time and the action leading to it, makes
//! thumbnails, and writes `report.json` and `report.html`.
//!
//! The report's schema is documented in `docs/report-format.md`.

use std::collections::BTreeSet;

use referee_protocol::scoring::{self, CardColor, EventKind, Score, Side, Timeline};
use referee_protocol::signal::SignalTrack;
use serde::{Deserialize, Serialize};

use super::activity::{self, Basis, Windows};
use super::clips::Clips;
use super::motion::{MotionMeter, ANALYSIS_WIDTH};
use super::thumbnails::{thumbnail, thumbnail_name};
use super::{report_html, Reporter, StageError};
use crate::store::{Clip, FrameSource, SessionMeta, SessionStore};

pub const REPORT_FILE: &str = "report.json";
pub const REPORT_HTML_FILE: &str = "report.html";
/// Version of the `report.json` schema. 2 added `video_codec`, `motion`, `segments` and each
/// event's `thumbnail` and `action`; 3 added `variable_frame_rate`, `duration_s` from the
/// frames' own times, each event's `fields` in the signal file's order, its `kind` and
/// `side`, and `bout` (the score timeline); 4 added `clips`, `clips_skipped` and
/// `clips_note`.
pub const REPORT_SCHEMA_VERSION: u32 = 4;

/// The contents of `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    pub session_id: String,
    pub name: String,
    pub source: String,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub frames: u64,
    /// From the first frame to the end of the last one, by the frames' own timestamps.
    pub duration_s: f64,
    /// Whether the frames come at a variable rate (see [`variable_frame_rate`]); `fps` is
    /// then the average the video announced, and each frame's time its own timestamp.
    #[serde(default)]
    pub variable_frame_rate: bool,
    /// Each frame's timestamp in seconds, for a variable frame rate only (otherwise frame
    /// `i` is at `i / fps`, to the microsecond): what a timeline places times by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_times_s: Option<Vec<f64>>,
    /// The reconstructed video's file name, in the session's directory.
    pub video: String,
    /// Its codec, e.g. `H.264`.
    pub video_codec: String,
    pub signal_file: Option<String>,
    pub events: Vec<ReportEvent>,
    /// Stretches of the video where something moves, in time order.
    pub segments: Vec<ActivitySegment>,
    pub motion: Motion,
    /// The bout's score timeline, read from the signal events.
    #[serde(default)]
    pub bout: Bout,
    /// A clip per event that ends an action, in the order of the events.
    #[serde(default)]
    pub clips: Vec<Clip>,
    /// Events that end an action beyond `--max-clips`, which got no clip.
    #[serde(default)]
    pub clips_skipped: u64,
    /// Why there are no clips although events called for them; null otherwise.
    #[serde(default)]
    pub clips_note: Option<String>,
    /// The camera of a bout recorded by several that this session is, with its offset: its
    /// events' `time_s` are on this camera's clock, `offset_s` earlier than the signal file's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<referee_protocol::api::BoutMembership>,
}

/// The bout as the signal file tells it: the score after each scoring event, the scores that
/// do not follow (flags) and the touches where a review is usual (marks).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bout {
    /// Touches that win the bout (`--bout-target`).
    pub target: u32,
    /// The score after the last event.
    pub final_score: Score,
    /// Every event of a known kind, in file order.
    pub timeline: Vec<BoutEntry>,
    pub flags: Vec<BoutNote>,
    pub marks: Vec<BoutNote>,
}

/// One event of the score timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoutEntry {
    /// Position of the event in `events`.
    pub event: usize,
    pub kind: EventKind,
    pub side: Option<Side>,
    /// A card's colour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<CardColor>,
    /// The score after the event.
    pub score: Score,
    /// True when the score is the event's own `score=`, false when computed from the touches.
    pub score_given: bool,
    pub frame_index: u64,
    pub time_s: f64,
}

/// A flag or a mark on one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoutNote {
    /// Position of the event in `events`.
    pub event: usize,
    /// Line of the signal file.
    pub line: usize,
    pub reason: String,
}

/// One signal event, lined up with its frame and the action leading to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportEvent {
    /// Line of the signal file.
    pub line: usize,
    pub name: String,
    /// What the event means for the bout (`other` for a name outside the vocabulary).
    #[serde(default = "other_kind")]
    pub kind: EventKind,
    /// The side it concerns, if any.
    #[serde(default)]
    pub side: Option<Side>,
    /// The event's time in the signal file, in seconds.
    pub time_s: f64,
    /// The event's `key=value` fields, in the order of the signal file (a key given twice
    /// keeps its place and its last value).
    #[serde(with = "ordered_fields")]
    pub fields: Vec<(String, String)>,
    /// The frame on screen at the event's time.
    pub frame_index: u64,
    /// That frame's timestamp, in seconds.
    pub frame_time_s: f64,
    /// Thumbnail of that frame, a result name (`thumbnails/frame-000036.jpg`).
    pub thumbnail: String,
    /// The activity segment leading to the event, if there is one.
    pub action: Option<Action>,
}

fn other_kind() -> EventKind {
    EventKind::Other
}

/// Where the action that led to an event began.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Position of the segment in `segments`.
    pub segment: usize,
    /// The segment's first frame and its timestamp.
    pub start_frame: u64,
    pub start_time_s: f64,
    /// Seconds from the start of the action to the event (`time_s - start_time_s`).
    pub lead_s: f64,
    /// Thumbnail of the start frame.
    pub thumbnail: String,
}

/// A stretch of frames whose motion energy is above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivitySegment {
    pub start_frame: u64,
    /// The last frame, inclusive.
    pub end_frame: u64,
    pub start_s: f64,
    pub end_s: f64,
    pub peak_frame: u64,
    pub peak_energy: f32,
}

/// The motion-energy series and how the segments were found in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Motion {
    /// The size frames were compared at.
    pub analysis_width: u32,
    pub analysis_height: u32,
    pub median: f32,
    pub mad: f32,
    pub threshold: f32,
    /// What `median`, `mad` and `threshold` were taken over: `all_frames`, or `quiet_parts`
    /// when all frames found no phrase (a busy background).
    #[serde(default)]
    pub threshold_basis: Basis,
    /// Why there are no segments, when there are none; null otherwise.
    #[serde(default)]
    pub note: Option<String>,
    pub merge_gap_frames: usize,
    pub min_segment_frames: usize,
    pub lookback_frames: usize,
    /// Per frame: mean absolute grey-level difference from the previous frame (0 to 255).
    pub energy: Vec<f32>,
}

/// The reconstructed video, as the report names it.
#[derive(Debug, Clone, Copy)]
pub struct VideoFile<'a> {
    pub file_name: &'a str,
    pub codec: &'a str,
}

/// What the stages before the analysis made, for the report.
#[derive(Debug, Clone, Copy)]
pub struct Made<'a> {
    pub video: VideoFile<'a>,
    pub clips: &'a Clips,
}

/// The index of the frame on screen at `time_us`: the last frame whose timestamp is not after
/// it (frame 0 for times before the first frame). `timestamps` must be ascending.
pub fn frame_for_time(timestamps: &[i64], time_us: u64) -> Option<u64> {
    if timestamps.is_empty() {
        return None;
    }
    let t = i64::try_from(time_us).unwrap_or(i64::MAX);
    let after = timestamps.partition_point(|&pts| pts <= t);
    Some(after.saturating_sub(1) as u64)
}

/// Whether frames with `timestamps` (microseconds, ascending) come at a variable rate: some
/// interval between two frames differs from the median interval by more than 5 % of it and
/// by more than 1 ms. (A container that keeps times in milliseconds puts 29.97 fps frames
/// 33 or 34 ms apart: that is a constant rate.)
pub fn variable_frame_rate(timestamps: &[i64]) -> bool {
    let mut intervals: Vec<i64> = timestamps.windows(2).map(|w| w[1] - w[0]).collect();
    if intervals.len() < 2 {
        return false;
    }
    intervals.sort_unstable();
    let median = intervals[intervals.len() / 2];
    let tolerance = (median / 20).max(1_000);
    let (shortest, longest) = (intervals[0], intervals[intervals.len() - 1]);
    median - shortest > tolerance || longest - median > tolerance
}

/// The duration of frames with `timestamps`: from the first frame to the end of the last,
/// which lasts as long as the one before it (or one frame at `fps`), in seconds to the
/// millisecond (timestamps rounded to the microsecond would otherwise show 4.000001 s).
fn duration_s(timestamps: &[i64], fps: f64) -> f64 {
    let (Some(first), Some(last)) = (timestamps.first(), timestamps.last()) else {
        return 0.0;
    };
    let last_frame_us = match timestamps {
        [.., before, last] => (last - before) as f64,
        _ if fps > 0.0 => 1e6 / fps,
        _ => 0.0,
    };
    (((last - first) as f64 + last_frame_us) / 1e3).round() / 1e3
}

/// An event's fields as a JSON object whose keys keep the signal file's order.
mod ordered_fields {
    use serde::de::{MapAccess, Visitor};
    use serde::ser::SerializeMap;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        fields: &[(String, String)],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(fields.len()))?;
        for (key, value) in fields {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<(String, String)>, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of string fields")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    fields.push(entry);
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

/// `fields` with each key once, where it first appears, with its last value.
fn unique_fields(fields: &[(String, String)]) -> Vec<(String, String)> {
    let mut unique: Vec<(String, String)> = Vec::with_capacity(fields.len());
    for (key, value) in fields {
        match unique.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = value.clone(),
            None => unique.push((key.clone(), value.clone())),
        }
    }
    unique
}

/// Rounds to microseconds, so that JSON shows `1.2`, not `1.2000000000000002`.
fn micro(s: f64) -> f64 {
    (s * 1e6).round() / 1e6
}

/// Rounds an energy to thousandths of a grey level (more is noise, and bytes).
fn milli(e: f32) -> f32 {
    (e * 1000.0).round() / 1000.0
}

impl Report {
    /// The report of a session whose frames have `timestamps` and motion `energy` (one value
    /// per frame), measured at `analysis_size`.
    pub fn build(
        meta: &SessionMeta,
        timestamps: &[i64],
        signal: Option<&SignalTrack>,
        video: VideoFile<'_>,
        energy: Vec<f32>,
        analysis_size: (u32, u32),
    ) -> Self {
        let seconds = |frame: usize| timestamps.get(frame).map_or(0.0, |&t| t as f64 / 1e6);
        let windows = Windows::at(meta.fps);
        let (threshold, found) = activity::find(&energy, windows);
        let segments: Vec<ActivitySegment> = found
            .iter()
            .map(|s| ActivitySegment {
                start_frame: s.start as u64,
                end_frame: s.end as u64,
                start_s: seconds(s.start),
                end_s: seconds(s.end),
                peak_frame: s.peak as u64,
                peak_energy: milli(energy[s.peak]),
            })
            .collect();
        let events = signal
            .map(|track| {
                track
                    .events
                    .iter()
                    .filter_map(|e| {
                        let frame_index = frame_for_time(timestamps, e.time_us)?;
                        let time_s = e.time_us as f64 / 1e6;
                        let action = activity::leading_segment(
                            &found,
                            frame_index as usize,
                            windows.lookback,
                        )
                        .map(|segment| {
                            let start = found[segment].start;
                            Action {
                                segment,
                                start_frame: start as u64,
                                start_time_s: seconds(start),
                                lead_s: micro(time_s - seconds(start)),
                                thumbnail: thumbnail_name(start as u64),
                            }
                        });
                        let meaning = scoring::meaning(e);
                        Some(ReportEvent {
                            line: e.line,
                            name: e.name.clone(),
                            kind: meaning.kind,
                            side: meaning.side,
                            time_s,
                            fields: unique_fields(&e.fields),
                            frame_index,
                            frame_time_s: seconds(frame_index as usize),
                            thumbnail: thumbnail_name(frame_index),
                            action,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            schema_version: REPORT_SCHEMA_VERSION,
            session_id: meta.id.clone(),
            name: meta.name.clone(),
            source: meta.source.clone(),
            fps: meta.fps,
            width: meta.width,
            height: meta.height,
            frames: timestamps.len() as u64,
            duration_s: duration_s(timestamps, meta.fps),
            variable_frame_rate: variable_frame_rate(timestamps),
            frame_times_s: variable_frame_rate(timestamps)
                .then(|| timestamps.iter().map(|&t| micro(t as f64 / 1e6)).collect()),
            video: video.file_name.to_string(),
            video_codec: video.codec.to_string(),
            signal_file: meta.signal_file.clone(),
            events,
            segments,
            motion: Motion {
                analysis_width: analysis_size.0,
                analysis_height: analysis_size.1,
                median: milli(threshold.median),
                mad: milli(threshold.mad),
                threshold: milli(threshold.value),
                threshold_basis: threshold.basis,
                note: found.is_empty().then(|| {
                    format!(
                        "no phrases found: the motion energy never stayed above the threshold \
                         {:.3} (median {:.3}, also tried from the quietest {} % of the frames) \
                         for {} frames; events have no action start",
                        threshold.value,
                        threshold.median,
                        (activity::QUIET_FRACTION * 100.0) as u32,
                        windows.min_len
                    )
                }),
                merge_gap_frames: windows.merge_gap,
                min_segment_frames: windows.min_len,
                lookback_frames: windows.lookback,
                energy: energy.iter().copied().map(milli).collect(),
            },
            bout: Bout::default(),
            clips: Vec::new(),
            clips_skipped: 0,
            camera: meta.bout.clone(),
            clips_note: None,
        }
    }

    /// Where `seconds` falls on a timeline of frames: the index of the frame shown then
    /// (by `frame_times_s`), or `seconds * fps` at a constant rate.
    pub fn frame_position(&self, seconds: f64) -> f64 {
        match &self.frame_times_s {
            Some(times) if !times.is_empty() => {
                times.partition_point(|&t| t <= seconds).saturating_sub(1) as f64
            }
            _ => seconds * self.fps,
        }
    }

    /// This report with the score timeline of `signal` in a bout to `target` touches. Its
    /// events are this report's events, in the same order.
    pub fn with_bout(mut self, signal: Option<&SignalTrack>, target: u32) -> Self {
        let Some(track) = signal else {
            self.bout.target = target;
            return self;
        };
        let timeline = Timeline::of(track, target);
        // The report has every event of the track, or none (a session without frames).
        let in_report = |event: usize| self.events.get(event).map(|_| event);
        let note = |event: usize, line: usize, reason: &str| {
            in_report(event).map(|event| BoutNote {
                event,
                line,
                reason: reason.to_string(),
            })
        };
        let entries = timeline
            .entries
            .iter()
            .filter_map(|e| {
                let event = &self.events[in_report(e.event)?];
                Some(BoutEntry {
                    event: e.event,
                    kind: e.kind,
                    side: e.side,
                    color: e.color,
                    score: e.score,
                    score_given: e.score_given,
                    frame_index: event.frame_index,
                    time_s: event.time_s,
                })
            })
            .collect();
        let flags = timeline
            .flags
            .iter()
            .filter_map(|f| note(f.event, f.line, &f.reason))
            .collect();
        let marks = timeline
            .marks
            .iter()
            .filter_map(|m| note(m.event, m.line, &m.reason))
            .collect();
        self.bout = Bout {
            target,
            final_score: timeline.final_score,
            timeline: entries,
            flags,
            marks,
        };
        self
    }

    /// The report with the clips the `clips` stage made.
    pub fn with_clips(mut self, clips: &Clips) -> Self {
        self.clips = clips.clips.clone();
        self.clips_skipped = clips.skipped as u64;
        self.clips_note = clips.note.clone();
        self
    }

    /// The clip of event `event` (its position in `events`), if it has one.
    pub fn clip_of(&self, event: usize) -> Option<&Clip> {
        self.clips.iter().find(|c| c.event == event)
    }

    /// The frames the report has thumbnails of.
    pub fn thumbnail_frames(&self) -> BTreeSet<u64> {
        self.events
            .iter()
            .flat_map(|e| {
                std::iter::once(e.frame_index).chain(e.action.as_ref().map(|a| a.start_frame))
            })
            .collect()
    }
}

/// Runs the analysis of session `meta` over its stored `frames` and stores the results; returns
/// the report and the names of the result files written (thumbnails aside).
pub(super) fn analyse(
    store: &dyn SessionStore,
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    signal: Option<&SignalTrack>,
    made: Made<'_>,
    bout_target: u32,
    reporter: &mut Reporter<'_>,
) -> Result<(Report, Vec<String>), StageError> {
    let Made { video, clips } = made;
    let total = frames.len();
    let mut meter = MotionMeter::new(meta.width, meta.height);
    let mut energy = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    for index in 0..total {
        let frame = frames.read(index)?;
        energy.push(meter.push(index, &frame.payload)?);
        reporter.update(index + 1);
    }
    debug_assert!(ANALYSIS_WIDTH >= meter.size().0);
    let timestamps = frames.timestamps();
    let report = Report::build(meta, &timestamps, signal, video, energy, meter.size())
        .with_bout(signal, bout_target)
        .with_clips(clips);

    for index in report.thumbnail_frames() {
        let frame = frames.read(index)?;
        store.put_result(
            &meta.id,
            &thumbnail_name(index),
            &thumbnail(index, &frame.payload, meta.width)?,
        )?;
    }
    let json = serde_json::to_vec_pretty(&report)
        .map_err(|e| StageError::Other(format!("cannot encode the report: {e}")))?;
    store.put_result(&meta.id, REPORT_FILE, &json)?;
    store.put_result(
        &meta.id,
        REPORT_HTML_FILE,
        report_html::render(&report).as_bytes(),
    )?;
    Ok((
        report,
        vec![REPORT_FILE.to_string(), REPORT_HTML_FILE.to_string()],
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::SessionStatus;
    use referee_protocol::FrameEncoding;

    fn pts(fps: f64, n: u64) -> Vec<i64> {
        (0..n)
            .map(|i| (i as f64 * 1e6 / fps).round() as i64)
            .collect()
    }

    /// A session's metadata for tests.
    pub(crate) fn meta(fps: f64, frames: u64) -> SessionMeta {
        let json = serde_json::json!({
            "id": "20250101_000000_t_abcde", "name": "t", "source": "t.avi",
            "fps": fps, "width": 320, "height": 240, "encoding": FrameEncoding::Jpeg,
            "quality": 90, "frames_expected": null, "status": SessionStatus::Processing,
            "stage": null, "percent": null, "frames_stored": frames, "bytes_stored": 0,
            "signal_file": "t.txt", "results": [], "error": null,
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            "ended_at": null, "completed_at": null,
        });
        serde_json::from_value(json).unwrap()
    }

    /// Motion in frames 20-40 and 70-90 of 120.
    pub(crate) fn energy() -> Vec<f32> {
        (0..120)
            .map(|i| match i {
                20..=40 | 70..=90 => 6.0,
                0 => 0.0,
                _ => 0.1,
            })
            .collect()
    }

    /// The report of 120 frames at `fps` with the motion of [`energy`] and `track`.
    fn report_at(fps: f64, track: &SignalTrack) -> Report {
        Report::build(
            &meta(fps, 120),
            &pts(fps, 120),
            Some(track),
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            energy(),
            (160, 120),
        )
    }

    #[test]
    fn events_map_to_the_frame_on_screen() {
        let ts = pts(30.0, 90);
        assert_eq!(frame_for_time(&ts, 0), Some(0));
        assert_eq!(frame_for_time(&ts, 33_332), Some(0));
        assert_eq!(frame_for_time(&ts, 33_333), Some(1));
        assert_eq!(frame_for_time(&ts, 1_200_000), Some(36));
        assert_eq!(frame_for_time(&ts, 99_000_000), Some(89));
        assert_eq!(frame_for_time(&[], 5), None);
    }

    #[test]
    fn non_integer_fps_uses_real_timestamps() {
        // At 29.97 fps, frame 300 is shown at 10.010 s, not 10.000 s.
        let ts = pts(30000.0 / 1001.0, 400);
        assert_eq!(frame_for_time(&ts, 10_000_000), Some(299));
        assert_eq!(frame_for_time(&ts, 10_010_000), Some(300));
    }

    #[test]
    fn the_report_finds_segments_and_the_actions_leading_to_events() {
        let track = SignalTrack::parse("0.2 start\n1.3 touch_left score=1-0\n3.0 halt\n").unwrap();
        let report = report_at(30.0, &track);
        assert_eq!(report.schema_version, 4);
        assert!(!report.variable_frame_rate);
        assert_eq!(report.duration_s, 4.0);
        let spans: Vec<(u64, u64)> = report
            .segments
            .iter()
            .map(|s| (s.start_frame, s.end_frame))
            .collect();
        assert_eq!(spans, [(20, 40), (70, 90)]);
        let e = &report.events;
        assert_eq!(e[0].frame_index, 6);
        assert_eq!(e[0].action, None);
        assert_eq!(e[1].frame_index, 39);
        let action = e[1].action.as_ref().unwrap();
        assert_eq!((action.segment, action.start_frame), (0, 20));
        assert_eq!(action.start_time_s, 0.666667);
        assert_eq!(action.lead_s, 0.633333);
        assert_eq!(action.thumbnail, "thumbnails/frame-000020.jpg");
        assert_eq!(e[2].frame_index, 90);
        assert_eq!(e[2].action.as_ref().unwrap().start_frame, 70);
        assert_eq!(e[2].thumbnail, "thumbnails/frame-000090.jpg");
        assert_eq!(
            report.thumbnail_frames().into_iter().collect::<Vec<_>>(),
            [6, 20, 39, 70, 90]
        );

        // At 29.97 fps the same times fall on earlier frames.
        let report = report_at(30000.0 / 1001.0, &track);
        let frames: Vec<u64> = report.events.iter().map(|e| e.frame_index).collect();
        assert_eq!(frames, [5, 38, 89]);
        assert_eq!(report.events[2].frame_time_s, 2.969633);
    }

    #[test]
    fn variable_frame_rates_are_told_from_jitter() {
        // 30 fps for 3 s, then 15 fps.
        let mut vfr = pts(30.0, 90);
        vfr.extend((0..45).map(|i| 3_000_000 + (i as f64 * 1e6 / 15.0).round() as i64));
        assert!(variable_frame_rate(&vfr));
        assert_eq!(duration_s(&vfr, 22.5), 6.0);
        assert_eq!(duration_s(&[0], 25.0), 0.04);
        // 29.97 fps, to the microsecond or to the millisecond: constant.
        assert!(!variable_frame_rate(&pts(30000.0 / 1001.0, 300)));
        let ms: Vec<i64> = pts(30000.0 / 1001.0, 300)
            .iter()
            .map(|t| (t + 500) / 1000 * 1000)
            .collect();
        assert!(!variable_frame_rate(&ms));
        // One dropped frame is a variable rate too.
        let mut dropped = pts(30.0, 60);
        dropped.remove(30);
        assert!(variable_frame_rate(&dropped));
        // Its timeline places times by the frames' own.
        let report = Report::build(
            &meta(22.5, 135),
            &vfr,
            None,
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            vec![0.0; 135],
            (160, 120),
        );
        assert_eq!(report.frame_times_s.as_ref().map(Vec::len), Some(135));
        assert_eq!(report.frame_position(5.0), 120.0);
        assert_eq!(report.frame_position(2.0), 60.0);
        assert_eq!(
            report_at(30.0, &SignalTrack::default()).frame_position(2.0),
            60.0
        );
        assert!(!variable_frame_rate(&[0, 40_000]));
    }

    #[test]
    fn event_fields_keep_the_signal_files_order() {
        let track =
            SignalTrack::parse("1.0 touch_left score=1-0 light=red a=1 score=2-0\n").unwrap();
        let report = report_at(30.0, &track);
        let json = serde_json::to_string(&report.events[0]).unwrap();
        assert!(
            json.contains(r#""fields":{"score":"2-0","light":"red","a":"1"}"#),
            "{json}"
        );
        let back: Report = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_report_carries_the_score_timeline_with_frames_flags_and_marks() {
        let track = SignalTrack::parse(
            "0.2 start\n1.3 touch_left score=1-0\n2.0 card_right color=yellow\n2.5 \
             touch_left score=1-2\n3.0 halt\n3.5 buzz\n",
        )
        .unwrap();
        let report = Report::build(
            &meta(30.0, 120),
            &pts(30.0, 120),
            Some(&track),
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            energy(),
            (160, 120),
        )
        .with_bout(Some(&track), 2);
        let kinds: Vec<(EventKind, Option<Side>)> =
            report.events.iter().map(|e| (e.kind, e.side)).collect();
        assert_eq!(
            kinds,
            [
                (EventKind::Period, None),
                (EventKind::Touch, Some(Side::Left)),
                (EventKind::Card, Some(Side::Right)),
                (EventKind::Touch, Some(Side::Left)),
                (EventKind::Halt, None),
                (EventKind::Other, None),
            ]
        );
        let bout = &report.bout;
        assert_eq!(bout.target, 2);
        let shown: Vec<(usize, String, u64)> = bout
            .timeline
            .iter()
            .map(|e| (e.event, e.score.to_string(), e.frame_index))
            .collect();
        assert_eq!(
            shown,
            [
                (0, "0-0".to_string(), 6),
                (1, "1-0".to_string(), 39),
                (2, "1-0".to_string(), 60),
                (3, "1-2".to_string(), 75),
                (4, "1-2".to_string(), 90)
            ]
        );
        assert_eq!(bout.timeline[2].color, Some(CardColor::Yellow));
        assert_eq!(bout.flags.len(), 1);
        assert_eq!((bout.flags[0].event, bout.flags[0].line), (3, 4));
        assert!(bout.flags[0].reason.contains("score=1-2"));
        // In a bout to 2, the touch at 1-1 would be deciding: none happened here.
        assert_eq!(bout.marks, []);
        assert_eq!(bout.final_score.to_string(), "1-2");

        // No frames: no events, so no timeline either.
        let empty = Report::build(
            &meta(30.0, 0),
            &[],
            Some(&track),
            VideoFile {
                file_name: "video.mp4",
                codec: "H.264",
            },
            Vec::new(),
            (160, 120),
        )
        .with_bout(Some(&track), 15);
        assert_eq!(empty.bout.timeline, []);
        assert_eq!(empty.bout.flags, []);
    }
}
