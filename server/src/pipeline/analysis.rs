//! Stage `analysis`: lines each signal event up with the frame shown at its time, and writes
//! `report.json`.

use std::collections::BTreeMap;

use referee_protocol::signal::SignalTrack;
use serde::{Deserialize, Serialize};

use crate::store::SessionMeta;

pub const REPORT_FILE: &str = "report.json";
/// Version of the `report.json` schema; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

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
    pub duration_s: f64,
    /// The reconstructed video's file name, in the session's directory.
    pub video: String,
    pub signal_file: Option<String>,
    pub events: Vec<ReportEvent>,
}

/// One signal event, lined up with its frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportEvent {
    /// Line of the signal file.
    pub line: usize,
    pub name: String,
    /// The event's time in the signal file, in seconds.
    pub time_s: f64,
    pub fields: BTreeMap<String, String>,
    /// The frame on screen at the event's time.
    pub frame_index: u64,
    /// That frame's timestamp, in seconds.
    pub frame_time_s: f64,
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

impl Report {
    pub fn build(
        meta: &SessionMeta,
        timestamps: &[i64],
        signal: Option<&SignalTrack>,
        video: &str,
    ) -> Self {
        let events = signal
            .map(|track| {
                track
                    .events
                    .iter()
                    .filter_map(|e| {
                        let frame_index = frame_for_time(timestamps, e.time_us)?;
                        Some(ReportEvent {
                            line: e.line,
                            name: e.name.clone(),
                            time_s: e.time_us as f64 / 1e6,
                            fields: e.fields.iter().cloned().collect(),
                            frame_index,
                            frame_time_s: timestamps[frame_index as usize] as f64 / 1e6,
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
            duration_s: meta.duration_s(),
            video: video.to_string(),
            signal_file: meta.signal_file.clone(),
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(fps: f64, n: u64) -> Vec<i64> {
        (0..n)
            .map(|i| (i as f64 * 1e6 / fps).round() as i64)
            .collect()
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
}
