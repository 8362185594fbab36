//! Activity segments: the stretches of a motion-energy series where something moves, found
//! with a threshold that adapts to each video's own noise level, and the segment that leads
//! to each signal event. Pure functions; `docs/report-format.md` describes the algorithm.

use serde::{Deserialize, Serialize};

/// The threshold is `median + K_MAD × 1.4826 × MAD` of the series (1.4826 × MAD estimates the
/// standard deviation of the noise)...
pub const K_MAD: f32 = 3.0;
/// ... but never less than this many grey levels above the median, so that a perfectly still
/// video (MAD 0) does not turn JPEG noise into activity.
pub const MIN_RISE: f32 = 0.3;
/// Runs above the threshold separated by less than this are one segment.
pub const MERGE_GAP_S: f64 = 0.2;
/// Segments shorter than this are dropped (a flicker, not an action).
pub const MIN_SEGMENT_S: f64 = 0.1;
/// When the median threshold finds no segment (a busy background, or motion most of the
/// time), the threshold is taken again from the recording's quiet parts: the lowest
/// `QUIET_FRACTION` of its frames.
pub const QUIET_FRACTION: f64 = 0.25;
/// An event is led by the last segment that ended at most this long before it (or the one it
/// falls in).
pub const LOOKBACK_S: f64 = 1.0;

/// The adaptive threshold of a series and the statistics it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Median motion energy (frame 0, which has no predecessor, left out).
    pub median: f32,
    /// Median absolute deviation from the median.
    pub mad: f32,
    /// Frames whose energy is above this are active.
    pub value: f32,
    /// What the statistics were taken over.
    pub basis: Basis,
}

/// The frames a threshold's statistics were taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Every frame but frame 0.
    #[default]
    AllFrames,
    /// The quietest [`QUIET_FRACTION`] of them.
    QuietParts,
}

/// A run of active frames, `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub start: usize,
    pub end: usize,
    /// The frame of highest energy in the segment.
    pub peak: usize,
}

/// Frame counts for the time constants at `fps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub merge_gap: usize,
    pub min_len: usize,
    pub lookback: usize,
}

impl Windows {
    pub fn at(fps: f64) -> Self {
        let frames = |s: f64, min: usize| ((s * fps).round() as usize).max(min);
        Self {
            merge_gap: frames(MERGE_GAP_S, 1),
            min_len: frames(MIN_SEGMENT_S, 2),
            lookback: frames(LOOKBACK_S, 1),
        }
    }
}

fn median(values: &mut [f32]) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    let mid = values.len() / 2;
    let (_, m, _) = values.select_nth_unstable_by(mid, f32::total_cmp);
    let upper = *m;
    if values.len() % 2 == 1 {
        return upper;
    }
    // The lower middle is the largest value of the lower half.
    let lower = values[..mid]
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    (lower + upper) / 2.0
}

/// The adaptive threshold of `energy` (frame 0 left out: it has nothing to differ from).
pub fn threshold(energy: &[f32]) -> Threshold {
    let values: Vec<f32> = energy.iter().skip(1).copied().collect();
    threshold_of(values, Basis::AllFrames)
}

/// The threshold from the quietest [`QUIET_FRACTION`] of the frames (frame 0 left out): the
/// recording's own resting level, however busy the rest is.
pub fn quiet_threshold(energy: &[f32]) -> Threshold {
    let mut values: Vec<f32> = energy.iter().skip(1).copied().collect();
    values.sort_unstable_by(f32::total_cmp);
    let keep = ((values.len() as f64 * QUIET_FRACTION).ceil() as usize).min(values.len());
    values.truncate(keep);
    threshold_of(values, Basis::QuietParts)
}

/// The threshold and the segments of `energy`: from all frames, or, when that finds none,
/// from its quiet parts.
pub fn find(energy: &[f32], windows: Windows) -> (Threshold, Vec<Segment>) {
    let first = threshold(energy);
    let found = segments(energy, first.value, windows);
    if !found.is_empty() {
        return (first, found);
    }
    let quiet = quiet_threshold(energy);
    let again = segments(energy, quiet.value, windows);
    if again.is_empty() {
        (first, found)
    } else {
        (quiet, again)
    }
}

fn threshold_of(mut values: Vec<f32>, basis: Basis) -> Threshold {
    let med = median(&mut values);
    for v in &mut values {
        *v = (*v - med).abs();
    }
    let mad = median(&mut values);
    Threshold {
        median: med,
        mad,
        value: med + (K_MAD * 1.4826 * mad).max(MIN_RISE),
        basis,
    }
}

/// The active segments of `energy`: runs of frames above `threshold`, merged when less than
/// `windows.merge_gap` frames apart, then kept when at least `windows.min_len` frames long.
pub fn segments(energy: &[f32], threshold: f32, windows: Windows) -> Vec<Segment> {
    let mut runs: Vec<Segment> = Vec::new();
    let mut open: Option<usize> = None;
    for (i, &e) in energy.iter().enumerate() {
        match (e > threshold, open) {
            (true, None) => open = Some(i),
            (false, Some(start)) => {
                runs.push(run(energy, start, i - 1));
                open = None;
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        runs.push(run(energy, start, energy.len() - 1));
    }
    let mut merged: Vec<Segment> = Vec::new();
    for next in runs {
        match merged.last_mut() {
            // `gap` frames below the threshold lie between the two runs.
            Some(last) if next.start - last.end - 1 < windows.merge_gap => {
                if energy[next.peak] > energy[last.peak] {
                    last.peak = next.peak;
                }
                last.end = next.end;
            }
            _ => merged.push(next),
        }
    }
    merged.retain(|s| s.end - s.start + 1 >= windows.min_len);
    merged
}

fn run(energy: &[f32], start: usize, end: usize) -> Segment {
    let peak = (start..=end)
        .max_by(|&a, &b| energy[a].total_cmp(&energy[b]).then(b.cmp(&a)))
        .unwrap_or(start);
    Segment { start, end, peak }
}

/// The segment that leads to an event on `frame`: the one `frame` falls in, else the last one
/// that ended at most `lookback` frames before it. Returns its position in `segments`.
pub fn leading_segment(segments: &[Segment], frame: usize, lookback: usize) -> Option<usize> {
    // Segments are in order and do not overlap: the last one starting at or before `frame`.
    let candidate = segments
        .partition_point(|s| s.start <= frame)
        .checked_sub(1)?;
    let segment = segments[candidate];
    (frame <= segment.end || frame - segment.end <= lookback).then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W30: Windows = Windows {
        merge_gap: 6,
        min_len: 3,
        lookback: 30,
    };

    /// A still series with a little noise and bursts of motion on `bursts` (inclusive).
    fn series(len: usize, bursts: &[(usize, usize, f32)]) -> Vec<f32> {
        let mut e: Vec<f32> = (0..len)
            .map(|i| {
                if i == 0 {
                    0.0
                } else {
                    0.2 + 0.05 * ((i * 7) % 5) as f32
                }
            })
            .collect();
        for &(a, b, level) in bursts {
            for v in &mut e[a..=b] {
                *v = level;
            }
        }
        e
    }

    #[test]
    fn a_busy_background_takes_the_threshold_from_its_quiet_parts() {
        // Constant background movement between 2.5 and 5.5 grey levels on every frame, and
        // phrases (energy 12) on 60 % of the frames: the median lies in the phrases.
        let mut e: Vec<f32> = (0..200)
            .map(|i| 2.5 + 3.0 * ((i * 37) % 100) as f32 / 100.0)
            .collect();
        let phrases = [(10, 49), (70, 109), (130, 169)];
        for &(a, b) in &phrases {
            for v in &mut e[a..=b] {
                *v = 12.0 + 0.1 * (v.fract());
            }
        }
        let all = threshold(&e);
        assert!(segments(&e, all.value, W30).is_empty(), "{all:?}");
        let (t, found) = find(&e, W30);
        assert_eq!(t.basis, Basis::QuietParts);
        assert!(t.value > 5.5 && t.value < 12.0, "{t:?}");
        let spans: Vec<(usize, usize)> = found.iter().map(|s| (s.start, s.end)).collect();
        assert_eq!(spans, phrases);
        // A still video finds nothing either way, and keeps its first threshold.
        let (t, found) = find(&[0.0; 50], W30);
        assert_eq!((t.basis, found.len()), (Basis::AllFrames, 0));
        // Where the median finds phrases, it is kept.
        let e = series(120, &[(20, 40, 5.0)]);
        assert_eq!(find(&e, W30).0.basis, Basis::AllFrames);
    }

    #[test]
    fn windows_follow_the_frame_rate() {
        assert_eq!(Windows::at(30.0), W30);
        assert_eq!(
            Windows::at(30000.0 / 1001.0),
            Windows {
                merge_gap: 6,
                min_len: 3,
                lookback: 30
            }
        );
        // Very low frame rates keep sensible minimums.
        assert_eq!(
            Windows::at(2.0),
            Windows {
                merge_gap: 1,
                min_len: 2,
                lookback: 2
            }
        );
    }

    #[test]
    fn median_and_mad_ignore_frame_zero() {
        let t = threshold(&[100.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(t.median, 2.5);
        assert_eq!(t.mad, 1.0);
        assert!((t.value - (2.5 + 3.0 * 1.4826)).abs() < 1e-4, "{t:?}");
    }

    #[test]
    fn a_still_video_has_the_minimum_rise_and_no_segment() {
        let e = vec![0.0; 50];
        let t = threshold(&e);
        assert_eq!((t.median, t.mad, t.value), (0.0, 0.0, MIN_RISE));
        assert!(segments(&e, t.value, W30).is_empty());
        assert!(threshold(&[]).value == MIN_RISE);
    }

    #[test]
    fn bursts_become_segments_with_their_peaks() {
        let mut e = series(120, &[(20, 40, 5.0), (70, 90, 3.0)]);
        e[33] = 9.0;
        let t = threshold(&e);
        assert!(t.value > 0.4 && t.value < 3.0, "{t:?}");
        let found = segments(&e, t.value, W30);
        assert_eq!(
            found,
            [
                Segment {
                    start: 20,
                    end: 40,
                    peak: 33
                },
                Segment {
                    start: 70,
                    end: 90,
                    peak: 70
                }
            ]
        );
    }

    #[test]
    fn short_gaps_merge_and_blips_are_dropped() {
        // A 3-frame dip inside an action is merged; a 2-frame blip is dropped; a gap of 6
        // frames (the merge window) keeps two segments apart.
        let e = series(
            100,
            &[
                (10, 14, 4.0),
                (18, 25, 4.0),
                (40, 41, 4.0),
                (60, 63, 4.0),
                (70, 75, 4.0),
            ],
        );
        let found: Vec<(usize, usize)> = segments(&e, 1.0, W30)
            .iter()
            .map(|s| (s.start, s.end))
            .collect();
        assert_eq!(found, [(10, 25), (60, 63), (70, 75)]);
    }

    #[test]
    fn a_segment_running_to_the_end_is_closed() {
        let e = series(30, &[(25, 29, 4.0)]);
        let found = segments(&e, 1.0, W30);
        assert_eq!((found[0].start, found[0].end), (25, 29));
    }

    #[test]
    fn events_are_led_by_the_segment_they_fall_in_or_just_follow() {
        let segs = [
            Segment {
                start: 20,
                end: 40,
                peak: 30,
            },
            Segment {
                start: 70,
                end: 90,
                peak: 80,
            },
        ];
        assert_eq!(leading_segment(&segs, 5, 30), None);
        assert_eq!(leading_segment(&segs, 20, 30), Some(0));
        assert_eq!(leading_segment(&segs, 38, 30), Some(0));
        assert_eq!(leading_segment(&segs, 70, 30), Some(1));
        // After the first segment, within the lookback.
        assert_eq!(leading_segment(&segs, 60, 30), Some(0));
        assert_eq!(leading_segment(&segs, 60, 10), None);
        assert_eq!(leading_segment(&segs, 95, 30), Some(1));
        assert_eq!(leading_segment(&segs, 121, 30), None);
        assert_eq!(leading_segment(&[], 3, 30), None);
    }
}
