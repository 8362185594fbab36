//! A bout's cameras lined up by their recordings' start times (the container's
//! `creation_time`), when every file carries one precise to less than a second. Most
//! containers (MP4's `mvhd`) keep whole seconds only, far coarser than a frame: those are not
//! used, and the server lines the cameras up by their motion instead.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Each camera's start, in seconds after the first camera's, from `times` (each file's
/// `creation_time`, RFC 3339); `None` unless every one is there and precise to less than a
/// second.
pub fn offsets(times: &[Option<String>]) -> Option<Vec<f64>> {
    let parsed: Vec<OffsetDateTime> = times
        .iter()
        .map(|t| {
            let t = t.as_deref()?;
            let at = OffsetDateTime::parse(t, &Rfc3339).ok()?;
            (at.nanosecond() != 0).then_some(at)
        })
        .collect::<Option<_>>()?;
    let first = *parsed.first()?;
    Some(
        parsed
            .iter()
            .map(|at| ((*at - first).as_seconds_f64() * 1e6).round() / 1e6)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_recordings_with_precise_start_times_are_lined_up_and_mp4_seconds_are_not() {
        use referee_sample_data::{write_timed_video, TimedCodec, TimedVideo};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, at: &str| {
            let path = dir.path().join(name);
            let mut spec = TimedVideo::ntsc(64, 48, 10, TimedCodec::Mjpeg);
            spec.recorded_at = Some(at.to_string());
            write_timed_video(&path, &spec).unwrap();
            crate::frame_times::recorded_at(&path)
        };
        // Matroska keeps the time to the microsecond.
        let times = [
            write("a.mkv", "2026-12-03T10:00:00.120000Z"),
            write("b.mkv", "2026-12-03T10:00:00.520000Z"),
        ];
        assert_eq!(offsets(&times), Some(vec![0.0, 0.4]), "{times:?}");
        // MP4 keeps whole seconds: too coarse.
        let times = [
            write("a.mp4", "2026-12-03T10:00:00.120000Z"),
            write("b.mp4", "2026-12-03T10:00:00.520000Z"),
        ];
        assert!(times.iter().all(Option::is_some), "{times:?}");
        assert_eq!(offsets(&times), None, "{times:?}");
    }

    #[test]
    fn start_times_precise_to_less_than_a_second_give_offsets_and_whole_seconds_none() {
        let at = |t: &str| Some(t.to_string());
        assert_eq!(
            offsets(&[
                at("2026-12-03T10:00:00.120Z"),
                at("2026-12-03T10:00:00.520Z")
            ]),
            Some(vec![0.0, 0.4])
        );
        assert_eq!(
            offsets(&[
                at("2026-12-03T10:00:01.5Z"),
                at("2026-12-03T10:00:00.75+00:00")
            ]),
            Some(vec![0.0, -0.75])
        );
        // Whole seconds (as MP4 keeps them), one missing, one unreadable: none.
        assert_eq!(
            offsets(&[
                at("2026-12-03T10:00:00.000000Z"),
                at("2026-12-03T10:00:01.000000Z")
            ]),
            None
        );
        assert_eq!(offsets(&[at("2026-12-03T10:00:00.1Z"), None]), None);
        assert_eq!(
            offsets(&[at("2026-12-03T10:00:00.1Z"), at("yesterday")]),
            None
        );
    }
}
