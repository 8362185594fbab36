//! The start offset between two cameras of one bout, found from their motion: how much later
//! camera B started than camera A, so that B's time `t` shows what A shows at `t + seconds`.
//!
//! Each camera's motion is its series of per-frame motion energies ([`super::motion`]), with
//! each frame's time in seconds on its own clock. Cameras at different frame rates see the
//! same motion as different per-frame energies (a frame at 60 fps covers half the motion of a
//! frame at 30 fps), so each frame's energy is first turned into an energy rate (energy per
//! second) over the interval since the frame before it, and the rates are integrated onto a
//! common grid of fixed cells: the rate a camera would show over each cell. What is compared
//! is how the rate changes: at each cell, the mean rate over the next [`CHANGE_WINDOW_S`] less
//! the mean over the one before, which rises where motion starts and falls where it stops,
//! whatever energy a camera sees all along (a busy background, a burnt-in clock, noise).
//! Matching the starts and stops rather than the whole rate tells apart two phrases of the
//! same length that begin a little apart. Both cameras' changes are compared by normalised
//! cross-correlation (Pearson's correlation over the cells both cameras cover, which ignores
//! each camera's own scale of energy) at every lag within `±max_s` that leaves them
//! overlapping by at least `min_overlap` of the shorter one, first on a coarse grid
//! ([`COARSE_STEP_S`]) over the whole range, then on a fine grid ([`FINE_STEP_S`]) around the
//! coarse peak, and the fine peak is refined by a parabola through it and its two neighbours.
//!
//! The confidence says how much the peak stands out: the peak's correlation, times how far it
//! rises above the best correlation of a separate peak (the runner-up), as a fraction of the
//! way from the runner-up to a perfect match. One motion filmed twice gives a correlation near
//! 1 and a runner-up well below it: a confidence near 1. Unrelated motions give a low peak, or
//! several of about the same height: a confidence near 0.
//!
//! Cost: the coarse search is O(cells × lags): a 10-minute bout at ±10 s is 60,000 cells ×
//! 2,001 lags, about 1.2e8 multiply-adds; the fine search adds 61 lags of the fine grid. Both
//! are bounded: a series may last at most [`MAX_SERIES_S`] and `max_s` be at most
//! [`MAX_LAG_S`], about 2.2e9 multiply-adds at worst. Measured in a release build (2 shared
//! cores): a 10-minute bout at 30 fps against 60 fps, ±10 s, 0.13 s; an hour at ±30 s,
//! 1.3 s. The fine grid holds 1,000 cells a second of each camera, about 16 bytes each at
//! most: the hour took 115 MB at its peak (measured), 10 minutes about 20 MB (counted).

use std::fmt;

use thiserror::Error;

/// The coarse grid's cell, in seconds: the whole lag range is searched at this step.
pub const COARSE_STEP_S: f64 = 0.01;
/// The fine grid's cell, in seconds: searched ±[`FINE_SPAN_CELLS`] coarse cells around the
/// coarse peak.
pub const FINE_STEP_S: f64 = 0.001;
/// The motion compared is the change of the energy rate over this long, in seconds (see
/// `Grid::changes`).
pub const CHANGE_WINDOW_S: f64 = 0.1;
/// How many coarse cells either side of the coarse peak the fine search covers.
pub const FINE_SPAN_CELLS: i64 = 3;
/// The longest series aligned, in seconds (an hour).
pub const MAX_SERIES_S: f64 = 3600.0;
/// The widest lag range searched, in seconds either way.
pub const MAX_LAG_S: f64 = 30.0;
/// The largest frame time, in seconds either way (about 32 years).
pub const MAX_TIME_S: f64 = 1e9;
/// The shortest series aligned, in seconds, and its fewest frames.
pub const MIN_SERIES_S: f64 = 1.0;
pub const MIN_FRAMES: usize = 3;

/// What to search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetOptions {
    /// The offsets searched: `-max_s` to `max_s` seconds (at most [`MAX_LAG_S`]).
    pub max_s: f64,
    /// The least overlap of the two cameras at an offset searched, as a fraction (0 to 1) of
    /// the shorter camera's duration: a short overlap matches one phrase against another by
    /// chance.
    pub min_overlap: f64,
}

impl Default for OffsetOptions {
    /// ±10 s, overlapping by at least half the shorter camera.
    fn default() -> Self {
        Self {
            max_s: 10.0,
            min_overlap: 0.5,
        }
    }
}

/// The offset found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Offset {
    /// How much later camera B started than camera A: B's time `t` is A's `t + seconds`.
    pub seconds: f64,
    /// How sure the estimate is, 0 to 1 (see the module's documentation).
    pub confidence: f64,
    /// The correlation of the two motions at `seconds` (-1 to 1).
    pub correlation: f64,
    /// The best correlation of a separate peak (on the coarse grid), and its offset; `None`
    /// when the main peak fills the whole range.
    pub runner_up: Option<(f64, f64)>,
    /// How long the two cameras overlap at `seconds`.
    pub overlap_s: f64,
    /// Whether the peak lies at the end of the range (`±max_s`): the offset may lie beyond.
    pub at_limit: bool,
}

/// Which camera a problem is with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Camera {
    A,
    B,
}

impl fmt::Display for Camera {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Camera::A => "camera A",
            Camera::B => "camera B",
        })
    }
}

/// Why no offset could be estimated.
#[derive(Debug, Error, PartialEq)]
pub enum OffsetError {
    #[error("{camera}: frame {index} is at {time_s} s, not after the frame before it or beyond ±{MAX_TIME_S} s (times must be finite and increasing)")]
    BadTime {
        camera: Camera,
        index: usize,
        time_s: f64,
    },
    #[error("{camera}: frame {index} has motion energy {energy}, not a finite number at least 0")]
    BadEnergy {
        camera: Camera,
        index: usize,
        energy: f32,
    },
    #[error("{camera}: {frames} frames over {seconds:.3} s are too few to align (at least {MIN_FRAMES} frames over {MIN_SERIES_S} s)")]
    TooShort {
        camera: Camera,
        frames: usize,
        seconds: f64,
    },
    #[error("{camera}: {seconds:.0} s is longer than the {MAX_SERIES_S} s that can be aligned")]
    TooLong { camera: Camera, seconds: f64 },
    #[error("{camera}: no motion to align by (its motion energy does not change)")]
    NoMotion { camera: Camera },
    #[error("the offset range ±{0} s must be more than 0 and at most {MAX_LAG_S} s")]
    BadRange(f64),
    #[error("the least overlap {0} must be a fraction from 0 to 1")]
    BadOverlap(f64),
    #[error("no offset within ±{max_s} s leaves the cameras overlapping by {min_overlap_s:.3} s, or the overlaps have no motion")]
    NoOverlap { max_s: f64, min_overlap_s: f64 },
}

/// How much later camera B started than camera A, from their motion: `a` and `b` are each
/// camera's frames in order, as (time in seconds on the camera's clock, motion energy of the
/// frame against the one before it). The first frame's energy is not used (it has no frame
/// before it).
pub fn estimate_offset(
    a: &[(f64, f32)],
    b: &[(f64, f32)],
    options: &OffsetOptions,
) -> Result<Offset, OffsetError> {
    if !(options.max_s > 0.0 && options.max_s <= MAX_LAG_S) {
        return Err(OffsetError::BadRange(options.max_s));
    }
    if !(0.0..=1.0).contains(&options.min_overlap) {
        return Err(OffsetError::BadOverlap(options.min_overlap));
    }
    let duration_a = check(Camera::A, a)?;
    let duration_b = check(Camera::B, b)?;
    let min_overlap_s = (options.min_overlap * duration_a.min(duration_b)).max(COARSE_STEP_S);
    let no_overlap = OffsetError::NoOverlap {
        max_s: options.max_s,
        min_overlap_s,
    };

    // The whole range on the coarse grid.
    let coarse_a = Grid::new(a, COARSE_STEP_S);
    let coarse_b = Grid::new(b, COARSE_STEP_S);
    if coarse_a.is_flat() {
        return Err(OffsetError::NoMotion { camera: Camera::A });
    }
    if coarse_b.is_flat() {
        return Err(OffsetError::NoMotion { camera: Camera::B });
    }
    let reach = (options.max_s / COARSE_STEP_S).floor() as i64;
    let window = (CHANGE_WINDOW_S / COARSE_STEP_S).round() as usize;
    let (coarse_a, coarse_b) = (coarse_a.changes(window), coarse_b.changes(window));
    let coarse = Correlator::new(
        &coarse_a,
        &coarse_b,
        min_cells(min_overlap_s, COARSE_STEP_S, &coarse_a, &coarse_b),
        true,
    );
    let curve: Vec<Option<f64>> = (-reach..=reach).map(|lag| coarse.at(lag)).collect();
    let (peak, peak_value) = best(&curve).ok_or(no_overlap)?;
    let runner_up = runner_up(&curve, peak, peak_value)
        .map(|(i, value)| (value, (i as i64 - reach) as f64 * COARSE_STEP_S));
    let coarse_lag = peak as i64 - reach;

    // Around the coarse peak on the fine grid.
    let ratio = (COARSE_STEP_S / FINE_STEP_S).round() as i64;
    let window = (CHANGE_WINDOW_S / FINE_STEP_S).round() as usize;
    let fine_a = Grid::new(a, FINE_STEP_S).changes(window);
    let fine_b = Grid::new(b, FINE_STEP_S).changes(window);
    let fine_reach = (options.max_s / FINE_STEP_S).floor() as i64;
    let from = ((coarse_lag - FINE_SPAN_CELLS) * ratio).max(-fine_reach);
    let to = ((coarse_lag + FINE_SPAN_CELLS) * ratio).min(fine_reach);
    let fine = Correlator::new(
        &fine_a,
        &fine_b,
        min_cells(min_overlap_s, FINE_STEP_S, &fine_a, &fine_b),
        false,
    );
    let fine_curve: Vec<Option<f64>> = (from..=to).map(|lag| fine.at(lag)).collect();
    let (seconds, correlation) = match best(&fine_curve) {
        Some((i, value)) => {
            let shift = parabola(&fine_curve, i);
            ((from as f64 + i as f64 + shift) * FINE_STEP_S, value)
        }
        // Cannot happen (the coarse peak's overlap is there on the fine grid too), but the
        // coarse peak is an answer.
        None => (coarse_lag as f64 * COARSE_STEP_S, peak_value),
    };

    let overlap_s = overlap(a, b, seconds);
    Ok(Offset {
        seconds,
        confidence: confidence(correlation, runner_up.map(|(value, _)| value)),
        correlation,
        runner_up,
        overlap_s,
        at_limit: coarse_lag.abs() >= reach,
    })
}

/// The cells of `step` seconds in `seconds`, but no more than the shorter grid has (its
/// changes leave out a window at either end).
fn min_cells(seconds: f64, step: f64, a: &Grid, b: &Grid) -> usize {
    ((seconds / step).ceil() as usize).min(a.values.len().min(b.values.len()))
}

/// Checks a camera's series and returns its duration.
fn check(camera: Camera, series: &[(f64, f32)]) -> Result<f64, OffsetError> {
    let mut previous = f64::NEG_INFINITY;
    for (index, &(time_s, energy)) in series.iter().enumerate() {
        if !time_s.is_finite() || time_s.abs() > MAX_TIME_S || time_s <= previous {
            return Err(OffsetError::BadTime {
                camera,
                index,
                time_s,
            });
        }
        if !(energy.is_finite() && energy >= 0.0) {
            return Err(OffsetError::BadEnergy {
                camera,
                index,
                energy,
            });
        }
        previous = time_s;
    }
    let seconds = match (series.first(), series.last()) {
        (Some(first), Some(last)) => last.0 - first.0,
        _ => 0.0,
    };
    if series.len() < MIN_FRAMES || seconds < MIN_SERIES_S {
        return Err(OffsetError::TooShort {
            camera,
            frames: series.len(),
            seconds,
        });
    }
    if seconds > MAX_SERIES_S {
        return Err(OffsetError::TooLong { camera, seconds });
    }
    Ok(seconds)
}

/// A camera's energy rate on a grid of cells of `step` seconds: cell `first + i` covers the
/// camera's time `[(first + i) step, (first + i + 1) step)` and holds `values[i]`, its mean
/// energy rate there (energy per second), less the mean over all cells.
struct Grid {
    first: i64,
    values: Vec<f64>,
    /// The mean rate, taken off the values.
    mean: f64,
}

impl Grid {
    /// The grid of a checked series: only the cells it covers whole.
    fn new(series: &[(f64, f32)], step: f64) -> Grid {
        let (start, end) = match (series.first(), series.last()) {
            (Some(first), Some(last)) => (first.0, last.0),
            _ => (0.0, 0.0),
        };
        let first = (start / step).ceil() as i64;
        let last = (end / step).floor() as i64; // exclusive
        let len = usize::try_from(last - first).unwrap_or(0);
        let mut values = vec![0.0; len];
        for pair in series.windows(2) {
            let ((t0, _), (t1, energy)) = (pair[0], pair[1]);
            // The frame's motion happened over (t0, t1], at a steady rate.
            let rate = f64::from(energy) / (t1 - t0);
            let cell0 = ((t0 / step).floor() as i64).max(first);
            let cell1 = ((t1 / step).ceil() as i64).min(last);
            for cell in cell0..cell1 {
                let lo = (cell as f64 * step).max(t0);
                let hi = ((cell + 1) as f64 * step).min(t1);
                if hi > lo {
                    if let Some(v) = usize::try_from(cell - first)
                        .ok()
                        .and_then(|i| values.get_mut(i))
                    {
                        *v += rate * (hi - lo) / step;
                    }
                }
            }
        }
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        for v in &mut values {
            *v -= mean;
        }
        Grid {
            first,
            values,
            mean,
        }
    }

    /// The grid of the rate's changes: each cell's value is the mean rate over the `window`
    /// cells after it less the mean over the `window` cells before it, high where motion
    /// starts and low where it stops, whatever the camera's steady level of energy. Cells
    /// within `window` of either end are dropped.
    fn changes(&self, window: usize) -> Grid {
        let window = window.max(1);
        let v = &self.values;
        let w = window as f64;
        let mut values = Vec::with_capacity(v.len().saturating_sub(2 * window));
        // The sums of the window before cell i and of the one from it, slid along.
        let mut before: f64 = v.iter().take(window).sum();
        let mut after: f64 = v.iter().skip(window).take(window).sum();
        for i in window..v.len().saturating_sub(window) {
            values.push((after - before) / w);
            let (leaving, passing, entering) = (v[i - window], v[i], v[i + window]);
            before += passing - leaving;
            after += entering - passing;
        }
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        Grid {
            first: self.first + window as i64,
            values: values.into_iter().map(|v| v - mean).collect(),
            mean,
        }
    }

    /// Whether the rate never changes (no motion, or the same motion all along).
    fn is_flat(&self) -> bool {
        let scale = self.values.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
        scale <= 1e-9 * self.mean.abs().max(1.0)
    }
}

/// Pearson's correlation of two grids at a lag, over the cells both cover.
struct Correlator<'a> {
    a: &'a Grid,
    b: &'a Grid,
    /// Prefix sums of each grid's values and squares (none: summed at each lag, for a few
    /// lags of a long grid).
    sum_a: Vec<(f64, f64)>,
    sum_b: Vec<(f64, f64)>,
    min_cells: usize,
}

impl<'a> Correlator<'a> {
    fn new(a: &'a Grid, b: &'a Grid, min_cells: usize, prefixed: bool) -> Self {
        let prefix = |g: &Grid| {
            if !prefixed {
                return Vec::new();
            }
            let mut sums = Vec::with_capacity(g.values.len() + 1);
            let (mut s, mut s2) = (0.0, 0.0);
            sums.push((s, s2));
            for v in &g.values {
                s += v;
                s2 += v * v;
                sums.push((s, s2));
            }
            sums
        };
        Correlator {
            sum_a: prefix(a),
            sum_b: prefix(b),
            a,
            b,
            min_cells: min_cells.max(2),
        }
    }

    /// The correlation at `lag` cells (B's cell `j` against A's cell `j + lag`), or `None`
    /// when the grids overlap by fewer than `min_cells` cells.
    fn at(&self, lag: i64) -> Option<f64> {
        // B's index ib is A's index ib + shift.
        let shift = lag + self.b.first - self.a.first;
        let (na, nb) = (self.a.values.len() as i64, self.b.values.len() as i64);
        let from_b = (-shift).max(0);
        let to_b = nb.min(na - shift);
        if to_b - from_b < self.min_cells as i64 {
            return None;
        }
        let (from_b, to_b) = (usize::try_from(from_b).ok()?, usize::try_from(to_b).ok()?);
        let (from_a, to_a) = (
            usize::try_from(from_b as i64 + shift).ok()?,
            usize::try_from(to_b as i64 + shift).ok()?,
        );
        let xs = self.a.values.get(from_a..to_a)?;
        let ys = self.b.values.get(from_b..to_b)?;
        let n = xs.len() as f64;
        let range = |sums: &[(f64, f64)], values: &[f64], from: usize, to: usize| {
            if sums.is_empty() {
                return values
                    .iter()
                    .fold((0.0, 0.0), |(s, q), v| (s + v, q + v * v));
            }
            let (s0, q0) = sums.get(from).copied().unwrap_or_default();
            let (s1, q1) = sums.get(to).copied().unwrap_or_default();
            (s1 - s0, q1 - q0)
        };
        let (sa, qa) = range(&self.sum_a, xs, from_a, to_a);
        let (sb, qb) = range(&self.sum_b, ys, from_b, to_b);
        let var_a = qa - sa * sa / n;
        let var_b = qb - sb * sb / n;
        // No motion in one camera's part of the overlap: nothing to match.
        if var_a <= 1e-12 * qa.max(1e-300) || var_b <= 1e-12 * qb.max(1e-300) {
            return Some(0.0);
        }
        let cov = dot(xs, ys) - sa * sb / n;
        Some((cov / (var_a * var_b).sqrt()).clamp(-1.0, 1.0))
    }
}

/// The dot product, four sums at a time.
fn dot(xs: &[f64], ys: &[f64]) -> f64 {
    let mut acc = [0.0; 4];
    let (cx, cy) = (xs.chunks_exact(4), ys.chunks_exact(4));
    let tail: f64 = cx
        .remainder()
        .iter()
        .zip(cy.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in cx.zip(cy) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    acc.iter().sum::<f64>() + tail
}

/// The index and value of the highest point of a curve.
fn best(curve: &[Option<f64>]) -> Option<(usize, f64)> {
    curve
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| (i, v)))
        .fold(None, |best: Option<(usize, f64)>, (i, v)| match best {
            Some((_, b)) if b >= v => best,
            _ => Some((i, v)),
        })
}

/// The highest point of `curve` outside the peak at `peak`: the peak's lobe runs either way
/// while the curve stays above half the peak, then on while it keeps falling.
fn runner_up(curve: &[Option<f64>], peak: usize, value: f64) -> Option<(usize, f64)> {
    let half = value / 2.0;
    let lobe_end = |indices: &mut dyn Iterator<Item = usize>| {
        let mut last = value;
        let mut end = peak;
        for i in indices {
            let Some(v) = curve.get(i).copied().flatten() else {
                break;
            };
            if v > half && v <= value {
                // Still high: the same peak.
            } else if v > last {
                break;
            }
            last = v;
            end = i;
        }
        end
    };
    let left = lobe_end(&mut (0..peak).rev());
    let right = lobe_end(&mut (peak + 1..curve.len()));
    let outside: Vec<Option<f64>> = curve
        .iter()
        .enumerate()
        .map(|(i, v)| if i < left || i > right { *v } else { None })
        .collect();
    best(&outside)
}

/// Where the parabola through `curve[i]` and its neighbours peaks, from `i` (-0.5 to 0.5).
fn parabola(curve: &[Option<f64>], i: usize) -> f64 {
    let before = i
        .checked_sub(1)
        .and_then(|j| curve.get(j).copied().flatten());
    let after = curve.get(i + 1).copied().flatten();
    let (Some(y0), Some(y1), Some(y2)) = (before, curve.get(i).copied().flatten(), after) else {
        return 0.0;
    };
    let bend = y0 - 2.0 * y1 + y2;
    if bend >= 0.0 {
        return 0.0;
    }
    (0.5 * (y0 - y2) / bend).clamp(-0.5, 0.5)
}

/// The confidence of a peak of correlation `peak` over a runner-up of `runner_up`.
fn confidence(peak: f64, runner_up: Option<f64>) -> f64 {
    let peak = peak.clamp(0.0, 1.0);
    let runner = runner_up.unwrap_or(0.0).clamp(0.0, 1.0);
    if peak <= runner {
        return 0.0;
    }
    let margin = if runner >= 1.0 {
        0.0
    } else {
        (peak - runner) / (1.0 - runner)
    };
    (peak * margin).clamp(0.0, 1.0)
}

/// How long the cameras overlap when B's time `t` is A's `t + seconds`.
fn overlap(a: &[(f64, f32)], b: &[(f64, f32)], seconds: f64) -> f64 {
    match (a.first(), a.last(), b.first(), b.last()) {
        (Some(a0), Some(a1), Some(b0), Some(b1)) => {
            (a1.0.min(b1.0 + seconds) - a0.0.max(b0.0 + seconds)).max(0.0)
        }
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use opencv::core::{Mat, Vector};
    use opencv::prelude::*;
    use opencv::{imgcodecs, videoio};
    use referee_sample_data::{
        write_bout_video, write_camera_video, write_motion_video, Camera as SampleCamera,
        SyntheticVideo, BOUT_PHRASES,
    };

    use super::*;
    use crate::pipeline::motion::MotionMeter;

    /// Bursts of motion on the bout's clock: (start s, length s, energy rate per second).
    type Bursts = Vec<(f64, f64, f64)>;

    /// Deterministic bursts of different lengths and strengths over `seconds`.
    fn bursts(seed: u64, seconds: f64) -> Bursts {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut out = Vec::new();
        let mut t = next() * 2.0;
        while t < seconds {
            let len = 0.2 + next() * 1.5;
            out.push((t, len, 20.0 + next() * 200.0));
            t += len + 0.3 + next() * 3.0;
        }
        out
    }

    /// What a camera started `start_s` after the bout's clock records at `fps` for `frames`
    /// frames: each frame's time on its own clock and the motion since the frame before
    /// (plus `per_frame`, an energy every frame has: noise, a counter).
    fn film(
        bursts: &[(f64, f64, f64)],
        start_s: f64,
        fps: f64,
        frames: u32,
        per_frame: f32,
    ) -> Vec<(f64, f32)> {
        (0..frames)
            .map(|k| {
                let t = f64::from(k) / fps;
                if k == 0 {
                    return (t, 0.0);
                }
                let (from, to) = (start_s + t - 1.0 / fps, start_s + t);
                let motion: f64 = bursts
                    .iter()
                    .map(|&(s, len, rate)| rate * ((to.min(s + len) - from.max(s)).max(0.0)))
                    .sum();
                (t, motion as f32 + per_frame)
            })
            .collect()
    }

    #[test]
    fn a_known_lag_is_found_within_a_millisecond() {
        let scene = bursts(7, 40.0);
        let a = film(&scene, 0.0, 30.0, 1000, 0.0);
        // Started 1.2345 s later, at 60 fps, with a counter's energy on every frame.
        let b = film(&scene, 1.2345, 60.0, 1800, 0.4);
        let found = estimate_offset(&a, &b, &OffsetOptions::default()).unwrap();
        eprintln!("later B: {found:?}");
        assert!((found.seconds - 1.2345).abs() < 0.0015, "{found:?}");
        assert!(found.correlation > 0.95, "{found:?}");
        assert!(found.confidence > 0.5, "{found:?}");
        assert!((found.overlap_s - (1800.0 / 60.0 - 1.0 / 60.0)).abs() < 0.01);

        // Started 0.777 s earlier, at 25 fps.
        let b = film(&scene, -0.777, 25.0, 700, 0.0);
        let found = estimate_offset(&a, &b, &OffsetOptions::default()).unwrap();
        eprintln!("earlier B: {found:?}");
        assert!((found.seconds + 0.777).abs() < 0.0015, "{found:?}");
        // The other way round: the opposite offset.
        let back = estimate_offset(&b, &a, &OffsetOptions::default()).unwrap();
        assert!((back.seconds - 0.777).abs() < 0.0015, "{back:?}");
        assert!(!found.at_limit && !back.at_limit);

        // Beyond the range searched: what is found is at its end, and says so.
        let b = film(&scene, 2.05, 60.0, 1800, 0.0);
        let options = OffsetOptions {
            max_s: 2.0,
            ..OffsetOptions::default()
        };
        let found = estimate_offset(&a, &b, &options).unwrap();
        assert!(found.at_limit && found.seconds > 1.95, "{found:?}");
        // The whole of the shorter camera overlapping: its changes' window is what it has.
        let options = OffsetOptions {
            min_overlap: 1.0,
            ..OffsetOptions::default()
        };
        let found = estimate_offset(&a, &b, &options).unwrap();
        assert!((found.seconds - 2.05).abs() < 0.0015, "{found:?}");
    }

    #[test]
    fn unrelated_motions_have_a_low_confidence() {
        let a = film(&bursts(1, 60.0), 0.0, 30.0, 1800, 0.0);
        for seed in [2, 3, 4, 5] {
            let b = film(&bursts(seed, 60.0), 0.0, 60.0, 3600, 0.0);
            let found = estimate_offset(&a, &b, &OffsetOptions::default()).unwrap();
            eprintln!("unrelated {seed}: {found:?}");
            assert!(found.confidence < 0.3, "{found:?}");
        }
    }

    #[test]
    fn no_motion_too_little_and_bad_input_are_refused() {
        let scene = bursts(7, 20.0);
        let a = film(&scene, 0.0, 30.0, 600, 0.0);
        let still = film(&[], 0.0, 30.0, 600, 0.0);
        let options = OffsetOptions::default();
        assert_eq!(
            estimate_offset(&a, &still, &options),
            Err(OffsetError::NoMotion { camera: Camera::B })
        );
        // The same energy every frame is no motion to align by either.
        let steady = film(&[], 0.0, 30.0, 600, 2.0);
        assert_eq!(
            estimate_offset(&steady, &a, &options),
            Err(OffsetError::NoMotion { camera: Camera::A })
        );
        assert!(matches!(
            estimate_offset(&a, &a[..20], &options),
            Err(OffsetError::TooShort {
                camera: Camera::B,
                frames: 20,
                ..
            })
        ));
        assert!(matches!(
            estimate_offset(&[], &a, &options),
            Err(OffsetError::TooShort {
                camera: Camera::A,
                frames: 0,
                ..
            })
        ));
        let mut backwards = a.clone();
        backwards[10].0 = backwards[9].0;
        assert!(matches!(
            estimate_offset(&a, &backwards, &options),
            Err(OffsetError::BadTime {
                camera: Camera::B,
                index: 10,
                ..
            })
        ));
        let mut nan = a.clone();
        nan[3].1 = f32::NAN;
        assert!(matches!(
            estimate_offset(&nan, &a, &options),
            Err(OffsetError::BadEnergy {
                camera: Camera::A,
                index: 3,
                ..
            })
        ));
        let far: Vec<(f64, f32)> = a.iter().map(|&(t, e)| (t + 1e300, e)).collect();
        assert!(matches!(
            estimate_offset(&far, &a, &options),
            Err(OffsetError::BadTime {
                camera: Camera::A,
                index: 0,
                ..
            })
        ));
        // Late times (a clock of 3 years) are fine.
        let late: Vec<(f64, f32)> = a.iter().map(|&(t, e)| (t + 1e8, e)).collect();
        let found = estimate_offset(&late, &late, &options).unwrap();
        assert!(found.seconds.abs() < 0.0015, "{found:?}");
        for max_s in [0.0, -1.0, f64::NAN, MAX_LAG_S + 1.0] {
            let options = OffsetOptions { max_s, ..options };
            assert!(matches!(
                estimate_offset(&a, &a, &options),
                Err(OffsetError::BadRange(_))
            ));
        }
        let options = OffsetOptions {
            min_overlap: 1.5,
            ..options
        };
        assert_eq!(
            estimate_offset(&a, &a, &options),
            Err(OffsetError::BadOverlap(1.5))
        );
        // Motions that never meet at any offset in the range: no confidence.
        let late = film(&[(25.0, 1.0, 100.0)], 0.0, 30.0, 900, 0.0);
        let early = film(&[(1.0, 1.0, 100.0)], 0.0, 30.0, 900, 0.0);
        let options = OffsetOptions {
            max_s: 2.0,
            min_overlap: 0.9,
        };
        let found = estimate_offset(&late, &early, &options).unwrap();
        assert!(found.confidence < 1e-6, "{found:?}");
    }

    #[test]
    fn a_ten_minute_bout_is_aligned_within_the_range() {
        let scene = bursts(11, 620.0);
        let a = film(&scene, 0.0, 30.0, 18_000, 0.0);
        let b = film(&scene, 6.4321, 60.0, 36_000, 0.2);
        let started = std::time::Instant::now();
        let found = estimate_offset(&a, &b, &OffsetOptions::default()).unwrap();
        eprintln!(
            "10 min, 30 fps against 60 fps, ±10 s: {found:?} in {:?} (a debug build)",
            started.elapsed()
        );
        assert!((found.seconds - 6.4321).abs() < 0.0015, "{found:?}");
        assert!(found.confidence > 0.8, "{found:?}");
    }

    /// Each frame of the video at `path` as the server sees it: a JPEG through the
    /// [`MotionMeter`], at `k / fps` s.
    fn energies(path: &Path) -> Vec<(f64, f32)> {
        let mut capture =
            videoio::VideoCapture::from_file(path.to_str().unwrap(), videoio::CAP_ANY).unwrap();
        assert!(capture.is_opened().unwrap());
        let fps = capture.get(videoio::CAP_PROP_FPS).unwrap();
        let mut frame = Mat::default();
        let mut meter = None;
        let mut out = Vec::new();
        while capture.read(&mut frame).unwrap() && !frame.empty() {
            let meter = meter
                .get_or_insert_with(|| MotionMeter::new(frame.cols() as u32, frame.rows() as u32));
            let mut jpeg = Vector::<u8>::new();
            imgcodecs::imencode(".jpg", &frame, &mut jpeg, &Vector::new()).unwrap();
            let k = out.len();
            let energy = meter.push(k as u64, jpeg.as_slice()).unwrap();
            out.push((k as f64 / fps, energy));
        }
        out
    }

    #[test]
    fn two_cameras_of_the_sample_bout_are_aligned_within_a_frame() {
        let dir = tempfile::tempdir().unwrap();
        let bout = SyntheticVideo::BOUT;
        let left = dir.path().join("left.mp4");
        write_bout_video(&left, &bout, &BOUT_PHRASES).unwrap();
        let a = energies(&left);
        assert_eq!(a.len(), 150);
        let sixty = SampleCamera {
            spec: SyntheticVideo {
                frames: 276,
                fps: 60.0,
                ..SampleCamera::RIGHT.spec
            },
            offset_s: 0.4,
        };
        for camera in [SampleCamera::RIGHT, sixty] {
            let right = dir.path().join(format!("right{}.mp4", camera.spec.fps));
            write_camera_video(&right, &bout, &BOUT_PHRASES, &camera).unwrap();
            let b = energies(&right);
            assert_eq!(b.len(), camera.spec.frames as usize);
            let found = estimate_offset(&a, &b, &OffsetOptions::default()).unwrap();
            eprintln!("right camera at {} fps: {found:?}", camera.spec.fps);
            let frame = 1.0 / camera.spec.fps.min(bout.fps);
            assert!((found.seconds - 0.4).abs() < frame, "{found:?}");
            assert!(found.confidence > 0.5, "{found:?}");
            // The other way round: A started 0.4 s before B.
            let back = estimate_offset(&b, &a, &OffsetOptions::default()).unwrap();
            assert!((back.seconds + 0.4).abs() < frame, "{back:?}");
        }

        // Against a camera that films nothing moving: no motion.
        let still = dir.path().join("still.avi");
        let spec = SyntheticVideo {
            frames: 100,
            fps: 25.0,
            width: 160,
            height: 120,
        };
        write_motion_video(&still, &spec, &[]).unwrap();
        assert_eq!(
            estimate_offset(&a, &energies(&still), &OffsetOptions::default()),
            Err(OffsetError::NoMotion { camera: Camera::B })
        );
    }
}
