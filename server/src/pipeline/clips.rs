//! Stage `clips`, the first of processing: an H.264 MP4 per signal event that ends an action
//! (a touch, a double, an off-target, a halt: [`ends_action`]), from where its action began
//! less a pre-roll to the event plus a post-roll, each frame at its stored time (relative to
//! the clip's first frame), through the same encoder as the video ([`super::h264`]).
//!
//! Where the action began comes from the motion analysis ([`super::motion`],
//! [`super::activity`]) run over a short window before each event only
//! ([`SEARCH_WINDOW_S`]), not the whole bout: the first clip never waits for the rest. Each
//! clip is stored as soon as it is written and announced (`PipelineEvent::ClipReady`).

use std::path::Path;

use referee_protocol::scoring::{self, EventKind};
use referee_protocol::signal::SignalTrack;
use tokio::sync::mpsc;

use super::activity::{self, Windows};
use super::analysis::frame_for_time;
use super::h264::{H264Error, H264Writer};
use super::motion::MotionMeter;
use super::reconstruct::{decode_each, frame_time};
use super::{PipelineEvent, StageError};
use crate::session::live::LiveSession;
use crate::store::{Clip, FrameSource, SessionMeta, SessionStore};

/// The folder of the clips among a session's results.
pub const CLIPS_DIR: &str = "clips";
/// Seconds of frames before an event searched for the start of its action.
pub const SEARCH_WINDOW_S: f64 = 10.0;
/// x264's preset and tune for clips: a few seconds of video, wanted at once.
const CLIP_PRESET: &str = "ultrafast";
const CLIP_TUNE: &str = "zerolatency";
/// The longest event name kept in a clip's file name.
const MAX_NAME_IN_FILE: usize = 64;

/// How the operator wants clips cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipOptions {
    /// `--clip-pre-roll-secs`: seconds before the action's start.
    pub pre_roll_s: f64,
    /// `--clip-post-roll-secs`: seconds after the event.
    pub post_roll_s: f64,
    /// `--max-clips`: clips per session at most (the first events in the file).
    pub max_clips: usize,
}

/// What the stage made, for the report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clips {
    pub clips: Vec<Clip>,
    /// Events that end an action beyond `--max-clips`, not clipped.
    pub skipped: usize,
    /// Why there are no clips although events called for them (no H.264 encoder...).
    pub note: Option<String>,
}

/// Whether an event of `kind` ends an action: any touch (a touch, a double, an off-target)
/// or a halt. Cards, periods, priority and other names do not.
pub fn ends_action(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Touch | EventKind::Double | EventKind::OffTarget | EventKind::Halt
    )
}

/// An event to clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// Position of the event in the track's events.
    pub event: usize,
    pub name: String,
    pub kind: EventKind,
    /// The frame on screen at the event's time.
    pub frame: u64,
    pub time_us: u64,
}

/// The events of `track` to clip, in file order, at most `max` of them, and how many more
/// there were.
pub fn plan(track: &SignalTrack, timestamps: &[i64], max: usize) -> (Vec<Planned>, usize) {
    let all: Vec<Planned> = track
        .events
        .iter()
        .enumerate()
        .filter_map(|(event, e)| {
            let kind = scoring::meaning(e).kind;
            if !ends_action(kind) {
                return None;
            }
            Some(Planned {
                event,
                name: e.name.clone(),
                kind,
                frame: frame_for_time(timestamps, e.time_us)?,
                time_us: e.time_us,
            })
        })
        .collect();
    let skipped = all.len().saturating_sub(max);
    (all.into_iter().take(max).collect(), skipped)
}

/// The first frame searched for the start of the action leading to an event on `frame`, at
/// `fps`: [`SEARCH_WINDOW_S`] before it, or frame 0.
pub fn search_start(frame: u64, fps: f64) -> u64 {
    let window = (SEARCH_WINDOW_S * fps.max(0.0)).round() as u64;
    frame.saturating_sub(window)
}

/// The first and last frame (inclusive) of the clip of an event at `event_time_us` whose
/// action began on frame `action_start`: the frame on screen `pre_roll_s` before the
/// action's start, to the one on screen `post_roll_s` after the event, within the stored
/// frames. `None` without frames.
pub fn window(
    timestamps: &[i64],
    action_start: u64,
    event_time_us: u64,
    pre_roll_s: f64,
    post_roll_s: f64,
) -> Option<(u64, u64)> {
    let last_stored = timestamps.len().checked_sub(1)? as u64;
    let start = usize::try_from(action_start.min(last_stored))
        .ok()
        .and_then(|i| timestamps.get(i))
        .copied()?;
    let from_us = u64::try_from(start.saturating_sub(micros(pre_roll_s))).unwrap_or(0);
    let until_us = event_time_us.saturating_add(u64::try_from(micros(post_roll_s)).unwrap_or(0));
    let first = frame_for_time(timestamps, from_us)?;
    let last = frame_for_time(timestamps, until_us)?.max(first);
    Some((first, last))
}

fn micros(s: f64) -> i64 {
    (s.max(0.0) * 1e6).round() as i64
}

/// The result name of the clip of event `event` named `name`:
/// `clips/clip-003-touch_left.mp4` (characters a result name cannot have become `_`).
pub fn clip_name(event: usize, name: &str) -> String {
    let safe: String = name
        .chars()
        .take(MAX_NAME_IN_FILE)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{CLIPS_DIR}/clip-{event:03}-{safe}.mp4")
}

/// The motion energy of the frames searched so far, `first..first + energy.len()`, each
/// against the frame before it (frame 0 has none: 0). Events close together search windows
/// that overlap: each frame is measured once, and what lies before the next window is
/// dropped (events come in time order; one that does not starts the cache again), so it
/// holds one window's frames, 4 bytes each.
#[derive(Debug, Default)]
struct MotionCache {
    first: u64,
    energy: Vec<f32>,
}

impl MotionCache {
    /// The energy of frames `from..=to`, measuring only those not measured yet (each half of
    /// them on its own thread, `frames` and `second` reading the same frames).
    fn window(
        &mut self,
        meta: &SessionMeta,
        frames: &mut dyn FrameSource,
        second: &mut dyn FrameSource,
        (from, to): (u64, u64),
    ) -> Result<&[f32], StageError> {
        let cached_end = self.first + self.energy.len() as u64;
        if from < self.first || from > cached_end {
            self.first = from;
            self.energy.clear();
        } else {
            self.energy
                .drain(..usize::try_from(from - self.first).unwrap_or(usize::MAX));
            self.first = from;
        }
        let next = self.first + self.energy.len() as u64;
        if next <= to {
            let mid = next + (to - next) / 2;
            let (earlier, later) = std::thread::scope(|scope| {
                let later = (mid < to).then(|| scope.spawn(|| energy(meta, second, mid + 1, to)));
                let earlier = energy(meta, frames, next, mid);
                let later = later.map(|thread| {
                    thread.join().map_err(|_| {
                        StageError::Other("the motion thread of a clip stopped".into())
                    })
                });
                (earlier, later)
            });
            self.energy.extend(earlier?);
            if let Some(later) = later {
                self.energy.extend(later??);
            }
        }
        let len = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
        Ok(&self.energy[..len.min(self.energy.len())])
    }
}

/// Where the action leading to an event on `frame` began: the start of the activity segment
/// leading to it, found in the motion of the [`SEARCH_WINDOW_S`] before it; the event's own
/// frame when no action leads to it.
fn action_start(
    meta: &SessionMeta,
    motion: &mut MotionCache,
    frames: &mut dyn FrameSource,
    second: &mut dyn FrameSource,
    frame: u64,
) -> Result<u64, StageError> {
    let from = search_start(frame, meta.fps);
    let energy = motion.window(meta, frames, second, (from, frame))?;
    let windows = Windows::at(meta.fps);
    let (_, segments) = activity::find(energy, windows);
    let local = usize::try_from(frame - from).unwrap_or(usize::MAX);
    Ok(
        activity::leading_segment(&segments, local, windows.lookback)
            .map_or(frame, |s| from + segments[s].start as u64),
    )
}

/// The motion energy of frames `from..=to`, each against the frame before it (frame 0 has
/// none: 0).
fn energy(
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    from: u64,
    to: u64,
) -> Result<Vec<f32>, StageError> {
    let mut meter = MotionMeter::new(meta.width, meta.height);
    if let Some(before) = from.checked_sub(1) {
        meter.push(before, &frames.read(before)?.payload)?;
    }
    let mut energy = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0));
    for index in from..=to {
        let stored = frames.read(index)?;
        energy.push(meter.push(index, &stored.payload)?);
    }
    Ok(energy)
}

/// Writes frames `first..=last` of `frames` to an H.264 MP4 at `path`, each at its stored
/// time less the first one's; `second` reads the same frames, so that two threads decode.
fn encode(
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    second: &mut dyn FrameSource,
    timestamps: &[i64],
    (first, last): (u64, u64),
    path: &Path,
) -> Result<(), ClipError> {
    let mut writer = H264Writer::create_tuned(
        path,
        meta.width,
        meta.height,
        meta.fps,
        CLIP_PRESET,
        Some(CLIP_TUNE),
    )
    .map_err(ClipError::Encoder)?;
    let origin = frame_time(timestamps, first)?;
    decode_each(
        meta,
        &mut [frames, second],
        first..last + 1,
        true,
        |index, image| writer.write(&image, frame_time(timestamps, index)? - origin),
    )?;
    writer.finish()?;
    Ok(())
}

/// Why a clip could not be made.
enum ClipError {
    /// The H.264 writer cannot be opened: no clip can be made.
    Encoder(H264Error),
    Stage(StageError),
}

impl From<StageError> for ClipError {
    fn from(err: StageError) -> Self {
        ClipError::Stage(err)
    }
}

/// Where the clips stage reports to.
pub(super) struct Announcer<'a> {
    pub events: &'a mpsc::Sender<PipelineEvent>,
    pub live: &'a LiveSession,
}

impl Announcer<'_> {
    fn progress(&self, done: usize, total: usize, clip: Option<Clip>) {
        let percent = if total == 0 {
            100.0
        } else {
            (done as f32 * 100.0 / total as f32).min(100.0)
        };
        let (done, total) = (done as u64, total as u64);
        let clip_added = clip.clone();
        self.live.update(|m| {
            m.stage = Some(referee_protocol::Stage::Clips);
            m.percent = Some(percent);
            m.clips.extend(clip_added);
        });
        let event = match clip {
            Some(clip) => PipelineEvent::ClipReady {
                clip: Box::new(clip),
                percent,
                done,
                total,
            },
            None => PipelineEvent::Progress {
                stage: referee_protocol::Stage::Clips,
                percent,
                done,
                total,
            },
        };
        // A clip's announcement waits for room (the relay drains the queue at once):
        // unlike per-frame progress, it is never dropped.
        let _ = self.events.blocking_send(event);
    }
}

/// Makes, stores and announces the clip of every event of `signal` that ends an action.
pub(super) fn make(
    store: &dyn SessionStore,
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    signal: Option<&SignalTrack>,
    options: &ClipOptions,
    scratch: &Path,
    announcer: &Announcer<'_>,
) -> Result<Clips, StageError> {
    let timestamps = frames.timestamps();
    let (planned, skipped) = signal.map_or_else(Default::default, |track| {
        plan(track, &timestamps, options.max_clips)
    });
    if skipped > 0 {
        tracing::warn!(
            "Session {}: {skipped} events beyond --max-clips={} get no clip",
            meta.id,
            options.max_clips
        );
    }
    announcer.progress(0, planned.len(), None);
    let mut made = Clips {
        skipped,
        ..Clips::default()
    };
    let mut second = store.frame_source(&meta.id)?;
    let mut motion = MotionCache::default();
    for (done, event) in planned.iter().enumerate() {
        let began = std::time::Instant::now();
        let start = action_start(meta, &mut motion, frames, second.as_mut(), event.frame)?;
        let searched = began.elapsed();
        let Some((first, last)) = window(
            &timestamps,
            start,
            event.time_us,
            options.pre_roll_s,
            options.post_roll_s,
        ) else {
            break;
        };
        let name = clip_name(event.event, &event.name);
        let path = scratch.join(format!("clip-{:03}.mp4", event.event));
        match encode(
            meta,
            frames,
            second.as_mut(),
            &timestamps,
            (first, last),
            &path,
        ) {
            Ok(()) => {}
            Err(ClipError::Encoder(err)) => {
                let note = format!("no clips: cannot write H.264 ({err})");
                tracing::warn!("Session {}: {note}", meta.id);
                made.note = Some(note);
                break;
            }
            Err(ClipError::Stage(err)) => return Err(err),
        }
        tracing::debug!(
            "Session {}: {name}: action search {} ms, {} frames encoded in {} ms",
            meta.id,
            searched.as_millis(),
            last - first + 1,
            (began.elapsed() - searched).as_millis()
        );
        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
        store.put_result_file(&meta.id, &name, &path)?;
        let seconds = |frame: u64| frame_time(&timestamps, frame).map_or(0.0, |t| t as f64 / 1e6);
        let clip = Clip {
            name,
            event: event.event,
            event_name: event.name.clone(),
            kind: event.kind,
            first_frame: first,
            last_frame: last,
            start_s: seconds(first),
            end_s: seconds(last),
            frames: last - first + 1,
            bytes,
        };
        announcer.progress(done + 1, planned.len(), Some(clip.clone()));
        made.clips.push(clip);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{StoreError, StoredFrame};
    use opencv::core::{Mat, Rect, Scalar, Vector};
    use opencv::prelude::*;
    use opencv::{imgcodecs, imgproc};
    use std::sync::{Arc, Mutex};

    /// 320x240 JPEG frames of a square moving 4 px a frame, recording which are read.
    struct Moving {
        frames: Vec<bytes::Bytes>,
        reads: Arc<Mutex<Vec<u64>>>,
    }

    impl Moving {
        fn new(n: i32, reads: &Arc<Mutex<Vec<u64>>>) -> Self {
            let frames = (0..n)
                .map(|i| {
                    let mut img = Mat::new_rows_cols_with_default(
                        240,
                        320,
                        opencv::core::CV_8UC3,
                        Scalar::all(60.0),
                    )
                    .unwrap();
                    let square = Rect::new(4 * i % 240, 80, 60, 60);
                    imgproc::rectangle(&mut img, square, Scalar::all(230.0), -1, 8, 0).unwrap();
                    let mut out = Vector::<u8>::new();
                    imgcodecs::imencode(".jpg", &img, &mut out, &Vector::new()).unwrap();
                    bytes::Bytes::from(out.to_vec())
                })
                .collect();
            Self {
                frames,
                reads: Arc::clone(reads),
            }
        }
    }

    impl FrameSource for Moving {
        fn len(&self) -> u64 {
            self.frames.len() as u64
        }
        fn timestamps(&self) -> Vec<i64> {
            pts(self.len())
        }
        fn checksums(&self) -> Vec<u32> {
            vec![0; self.frames.len()]
        }
        fn read(&mut self, index: u64) -> Result<StoredFrame, StoreError> {
            self.reads.lock().unwrap().push(index);
            Ok(StoredFrame {
                index,
                pts_us: pts(index + 1)[index as usize],
                payload: self.frames[index as usize].clone(),
            })
        }
    }

    #[test]
    fn overlapping_search_windows_measure_each_frame_once_and_the_same() {
        let meta = crate::pipeline::analysis::tests::meta(30.0, 60);
        let reads = Arc::new(Mutex::new(Vec::new()));
        let (mut a, mut b) = (Moving::new(60, &reads), Moving::new(60, &reads));
        let mut cache = MotionCache::default();
        let first = cache
            .window(&meta, &mut a, &mut b, (0, 30))
            .unwrap()
            .to_vec();
        assert_eq!(first.len(), 31);
        assert_eq!(first[0], 0.0, "frame 0 has nothing to differ from");
        assert!(first[1..].iter().all(|e| *e > 1.0), "{first:?}");
        let mut read: Vec<u64> = std::mem::take(&mut *reads.lock().unwrap());
        read.sort_unstable();
        // Each thread also reads the frame before its half, to measure its first frame.
        assert_eq!(read.len(), 32);
        read.dedup();
        assert_eq!(read, (0..=30).collect::<Vec<_>>());

        // The next window overlaps: only its new frames are read (and the one before them).
        let second = cache
            .window(&meta, &mut a, &mut b, (10, 45))
            .unwrap()
            .to_vec();
        let mut read: Vec<u64> = std::mem::take(&mut *reads.lock().unwrap());
        read.sort_unstable();
        read.dedup();
        assert_eq!(read, (30..=45).collect::<Vec<_>>());
        assert_eq!(&second[..21], &first[10..]);
        // The same energies as a window measured on its own.
        let fresh = MotionCache::default()
            .window(&meta, &mut a, &mut b, (10, 45))
            .unwrap()
            .to_vec();
        assert_eq!(second, fresh);

        // A window before the cached one starts the cache again.
        let earlier = cache
            .window(&meta, &mut a, &mut b, (2, 8))
            .unwrap()
            .to_vec();
        assert_eq!(&earlier[..], &first[2..=8]);
    }

    /// Frames at 30 fps.
    fn pts(n: u64) -> Vec<i64> {
        (0..n)
            .map(|i| (i as f64 * 1e6 / 30.0).round() as i64)
            .collect()
    }

    #[test]
    fn the_window_runs_from_the_pre_roll_before_the_action_to_the_post_roll_after_the_event() {
        let ts = pts(300);
        // Action from frame 90 (3 s), touch at 4.5 s (frame 135): 2 s to 5.5 s.
        assert_eq!(window(&ts, 90, 4_500_000, 1.0, 1.0), Some((60, 165)));
        // Half a second each way; no pre-roll or post-roll at all.
        assert_eq!(window(&ts, 90, 4_500_000, 0.5, 0.5), Some((75, 150)));
        assert_eq!(window(&ts, 90, 4_500_000, 0.0, 0.0), Some((90, 135)));
        // No action found: the event's own frame starts it.
        assert_eq!(window(&ts, 135, 4_500_000, 1.0, 1.0), Some((105, 165)));
    }

    #[test]
    fn the_window_is_clamped_to_the_stored_frames() {
        let ts = pts(300);
        // An event at 0: from frame 0.
        assert_eq!(window(&ts, 0, 0, 1.0, 1.0), Some((0, 30)));
        // An action starting half a second in, a pre-roll of a second.
        assert_eq!(window(&ts, 15, 1_000_000, 1.0, 1.0), Some((0, 60)));
        // An event at the last frame, or after it: to the last frame.
        assert_eq!(window(&ts, 270, 9_966_667, 1.0, 1.0), Some((240, 299)));
        assert_eq!(window(&ts, 299, 60_000_000, 1.0, 1.0), Some((269, 299)));
        // An action start beyond the frames counts as the last frame.
        assert_eq!(window(&ts, 1000, 60_000_000, 0.0, 0.0), Some((299, 299)));
        // A single frame; none.
        assert_eq!(window(&[0], 0, 5_000_000, 1.0, 1.0), Some((0, 0)));
        assert_eq!(window(&[], 0, 0, 1.0, 1.0), None);
    }

    #[test]
    fn the_search_window_starts_ten_seconds_before_the_event_or_at_frame_zero() {
        assert_eq!(search_start(900, 30.0), 600);
        assert_eq!(search_start(100, 30.0), 0);
        assert_eq!(search_start(0, 30.0), 0);
        assert_eq!(search_start(1000, 29.97), 700);
    }

    #[test]
    fn touches_and_halts_are_clipped_up_to_max_clips() {
        let track = SignalTrack::parse(
            "0.0 start\n0.8 off_target_right\n1.2 touch_left score=1-0\n1.9 card_right \
             color=yellow\n2.5 touch_right\n3.1 halt\n3.6 double\n4.0 buzz\n4.8 end\n",
        )
        .unwrap();
        let ts = pts(150);
        let (all, skipped) = plan(&track, &ts, 500);
        let events: Vec<(usize, &str, u64)> = all
            .iter()
            .map(|p| (p.event, p.name.as_str(), p.frame))
            .collect();
        assert_eq!(
            events,
            [
                (1, "off_target_right", 24),
                (2, "touch_left", 36),
                (4, "touch_right", 75),
                (5, "halt", 93),
                (6, "double", 108)
            ]
        );
        assert_eq!(skipped, 0);
        let (first, skipped) = plan(&track, &ts, 2);
        assert_eq!(first.iter().map(|p| p.event).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(skipped, 3);
        let (none, skipped) = plan(&track, &ts, 0);
        assert_eq!((none.len(), skipped), (0, 5));
        // No frames: nothing to clip.
        assert_eq!(plan(&track, &[], 500).0, []);
    }

    #[test]
    fn clip_names_are_result_names() {
        assert_eq!(clip_name(3, "touch_left"), "clips/clip-003-touch_left.mp4");
        assert_eq!(clip_name(1234, "a.b/c"), "clips/clip-1234-a_b_c.mp4");
        let long = clip_name(7, &"x".repeat(500));
        assert!(crate::store::valid_result_name(&long), "{long}");
        assert!(crate::store::valid_result_name(&clip_name(9, "touché")));
    }
}
