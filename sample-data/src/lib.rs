//! Makes the synthetic sample session of referee: a small video with moving content and a
//! visible frame counter, and a signal file of timestamped events.
//!
//! Everything is deterministic: the same [`SyntheticVideo`] always draws the same frames, so
//! the sample files can be regenerated at will (`cargo run -p referee-sample-data --bin
//! make-sample`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use opencv::core::{self, Mat, Point, Rect, Scalar, Size};
use opencv::prelude::*;
use opencv::{imgproc, videoio};
use thiserror::Error;

mod timed;
pub use timed::{frame_times_us, write_timed_video, Stretch, TimedCodec, TimedVideo};

/// A synthetic video to draw: `frames` frames of `width` x `height` pixels at `fps`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticVideo {
    pub frames: u32,
    pub fps: f64,
    pub width: i32,
    pub height: i32,
}

impl SyntheticVideo {
    /// The sample bout: 640x480, 30 fps, 150 frames (5 s).
    pub const BOUT: SyntheticVideo = SyntheticVideo {
        frames: 150,
        fps: 30.0,
        width: 640,
        height: 480,
    };

    /// The video's duration in seconds.
    pub fn duration_s(&self) -> f64 {
        f64::from(self.frames) / self.fps
    }
}

/// The events of the sample bout's signal file: seconds from the start of the video, then the
/// event name and its `key=value` fields. It has every kind of scoring event (an off-target, a
/// card, a halt, a double) and a score slip: the last touch says 4-2 where 2-2 and a touch for
/// the left make 3-2, which the report flags.
pub const BOUT_EVENTS: [(f64, &str); 9] = [
    (0.0, "start period=1"),
    (0.8, "off_target_right"),
    (1.2, "touch_left score=1-0"),
    (1.9, "card_right color=yellow"),
    (2.533, "touch_right score=1-1"),
    (3.1, "halt"),
    (3.6, "double score=2-2"),
    (4.0, "touch_left score=4-2"),
    (4.8, "end period=1"),
];

/// The phrases of the sample bout: the frames (inclusive ranges) on which the fencers move,
/// each ending on a touch's frame, 0.6 s (18 frames) after it began. Between phrases only the
/// frame counter changes.
pub const BOUT_PHRASES: [(u32, u32); 3] = [(18, 36), (58, 76), (102, 120)];

/// Why a sample file could not be made.
#[derive(Debug, Error)]
pub enum SampleError {
    #[error("invalid synthetic video: {0}")]
    InvalidSpec(String),
    #[error("{path}: unsupported video extension (use .avi for MJPG or .mp4 for mp4v)")]
    UnsupportedExtension { path: PathBuf },
    #[error("{path}: OpenCV could not open a video writer for fourcc {fourcc} (is the codec available?)")]
    WriterNotOpened { path: PathBuf, fourcc: String },
    #[error("{path}: OpenCV could not open the written video for reading")]
    ReaderNotOpened { path: PathBuf },
    #[error("{path}: wrote {expected} frames but {actual} could be read back")]
    FrameCountMismatch {
        path: PathBuf,
        expected: u32,
        actual: u32,
    },
    #[error("{path}: frame {index} reads back as {actual_width}x{actual_height}, expected {expected_width}x{expected_height}")]
    FrameSizeMismatch {
        path: PathBuf,
        index: u32,
        expected_width: i32,
        expected_height: i32,
        actual_width: i32,
        actual_height: i32,
    },
    #[error("{path}: {what}: {source}")]
    OpenCv {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: opencv::Error,
    },
    #[error("{path}: FFmpeg, {what}: {source}")]
    Ffmpeg {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: ffmpeg_next::Error,
    },
    #[error("{path}: invalid signal event at {time} s ({event:?}): {why}")]
    InvalidEvent {
        path: PathBuf,
        time: f64,
        event: String,
        why: &'static str,
    },
    #[error("{path}: cannot write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Writes `spec` as a video file at `path`. The container and codec follow the extension:
/// `.avi` is Motion-JPEG (`MJPG`), `.mp4` is MPEG-4 Part 2 (`mp4v`). After writing, the file
/// is read back and every frame is checked to be there, with the right size.
pub fn write_video(path: &Path, spec: &SyntheticVideo) -> Result<(), SampleError> {
    write_frames(path, spec, |spec, background, index| {
        draw_frame(spec, background, index, index, spec.frames)
    })
}

/// Writes a video like [`write_video`] whose bar and disc move only on the frames of
/// `phrases` (inclusive ranges of frame indices), as fencers do in the phrases that lead to
/// the touches, and stand still between them; the frame counter changes on every frame. The
/// sample bout is this with [`BOUT_PHRASES`]. It is the bout's own camera: [`write_camera_video`]
/// with [`Camera::of_bout`].
pub fn write_bout_video(
    path: &Path,
    spec: &SyntheticVideo,
    phrases: &[(u32, u32)],
) -> Result<(), SampleError> {
    write_camera_video(path, spec, phrases, &Camera::of_bout(spec))
}

/// A camera filming a bout drawn by [`write_bout_video`]: its own video `spec` (frames, rate
/// and size), started `offset_s` seconds after the bout's clock, so that its frame `k` shows
/// the scene at bout time `offset_s + k / spec.fps` (its frame counter and time are its own:
/// `k` and `k / spec.fps`). The scene is the same whatever the camera: the bar and the disc
/// move as a function of the bout's time, at the same place relative to the picture's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Camera {
    pub spec: SyntheticVideo,
    pub offset_s: f64,
}

impl Camera {
    /// The bout's own camera (`left.mp4` of `make-sample --cameras`, the same as `bout.mp4`):
    /// it started with the bout's clock and records at the bout's rate and size.
    pub fn of_bout(bout: &SyntheticVideo) -> Camera {
        Camera {
            spec: *bout,
            offset_s: 0.0,
        }
    }

    /// The second camera of the sample bout (`right.mp4` of `make-sample --cameras`): started
    /// 0.4 s after the bout's clock, 25 fps, 480x360, 115 frames (4.6 s: it stops with the
    /// bout, at 5.0 s of the bout's clock, and sees its three phrases).
    pub const RIGHT: Camera = Camera {
        spec: SyntheticVideo {
            frames: 115,
            fps: 25.0,
            width: 480,
            height: 360,
        },
        offset_s: 0.4,
    };

    /// The bout time, in seconds, that the camera's frame `k` shows.
    pub fn bout_time_s(&self, k: u32) -> f64 {
        self.offset_s + f64::from(k) / self.spec.fps
    }
}

/// Writes what `camera` recorded of the bout drawn by [`write_bout_video`]`(_, bout, phrases)`
/// (see [`Camera`]). With [`Camera::of_bout`] it is that very video, byte for byte.
pub fn write_camera_video(
    path: &Path,
    bout: &SyntheticVideo,
    phrases: &[(u32, u32)],
    camera: &Camera,
) -> Result<(), SampleError> {
    check_spec(bout)?;
    if !camera.offset_s.is_finite() {
        return Err(SampleError::InvalidSpec(format!(
            "camera offset {} s must be a finite number",
            camera.offset_s
        )));
    }
    let scene = Scene::new(bout, phrases);
    write_frames(path, &camera.spec, |spec, background, index| {
        let step = scene.step_at(camera.offset_s, camera.spec.fps, index);
        draw_frame_at(
            spec,
            background,
            index,
            step,
            scene.steps,
            f64::from(index) / spec.fps,
        )
    })
}

/// Draws frame `k` of `camera` filming the bout of [`write_camera_video`], as it writes it
/// (before compression).
pub fn draw_camera_frame(
    bout: &SyntheticVideo,
    phrases: &[(u32, u32)],
    camera: &Camera,
    k: u32,
) -> Result<Mat, SampleError> {
    check_spec(bout)?;
    check_spec(&camera.spec)?;
    let cv = |source| SampleError::OpenCv {
        path: PathBuf::new(),
        what: "drawing a camera frame",
        source,
    };
    let scene = Scene::new(bout, phrases);
    let background = draw_background(&camera.spec).map_err(cv)?;
    let step = scene.step_at(camera.offset_s, camera.spec.fps, k);
    draw_frame_at(
        &camera.spec,
        &background,
        k,
        step,
        scene.steps,
        f64::from(k) / camera.spec.fps,
    )
    .map_err(cv)
}

/// The motion of a bout as a function of its time: how far along their way the bar and the
/// disc are.
struct Scene<'a> {
    phrases: &'a [(u32, u32)],
    /// The bout's frame rate: its phrases are ranges of its frames.
    fps: f64,
    /// The steps of the whole way: the bout's last frame is at step `steps - 1`.
    steps: u32,
}

impl<'a> Scene<'a> {
    fn new(bout: &SyntheticVideo, phrases: &'a [(u32, u32)]) -> Self {
        Scene {
            phrases,
            fps: bout.fps,
            steps: moving_frames(phrases, bout.frames.saturating_sub(1)) + 1,
        }
    }

    /// The step at bout frame `u` (a real number: the bout's time times its rate): the
    /// continuous [`moving_frames`], which the bar and disc advance by one on each frame of
    /// a phrase `(a, b)`, moving steadily from frame `a - 1` to frame `b`. At a whole `u` it
    /// is `moving_frames(phrases, u)`.
    fn step(&self, u: f64) -> f64 {
        self.phrases
            .iter()
            .map(|&(a, b)| {
                let (a, b) = (f64::from(a), f64::from(b));
                (u.min(b) + 1.0 - a).max(0.0)
            })
            .sum()
    }

    /// The step of frame `k` of a camera started `offset_s` after the bout at `fps`.
    fn step_at(&self, offset_s: f64, fps: f64, k: u32) -> f64 {
        // In bout frames; a camera on the bout's clock lands on whole frames exactly.
        let mut u = offset_s * self.fps + f64::from(k) * (self.fps / fps);
        if (u - u.round()).abs() < 1e-9 {
            u = u.round();
        }
        self.step(u)
    }
}

/// How many frames up to `index` lie in one of `ranges` (inclusive).
fn moving_frames(ranges: &[(u32, u32)], index: u32) -> u32 {
    ranges
        .iter()
        .map(|&(a, b)| (index.min(b) + 1).saturating_sub(a))
        .sum()
}

/// Writes a video like [`write_video`] whose only motion is a square that moves on the frames
/// of `moving` (inclusive ranges of frame indices) over a still background: frame `i` differs
/// from frame `i - 1` exactly when `i` lies in one of the ranges. For testing motion analysis.
pub fn write_motion_video(
    path: &Path,
    spec: &SyntheticVideo,
    moving: &[(u32, u32)],
) -> Result<(), SampleError> {
    write_frames(path, spec, |spec, background, index| {
        draw_square_frame(spec, background, moving_frames(moving, index))
    })
}

/// Writes a video like [`write_motion_video`] on a busy background: a second, smaller square
/// near the bottom moves on every frame (a crowd, a screen, another piste), so no frame is
/// ever still.
pub fn write_busy_motion_video(
    path: &Path,
    spec: &SyntheticVideo,
    moving: &[(u32, u32)],
) -> Result<(), SampleError> {
    write_frames(path, spec, |spec, background, index| {
        let mut mat = draw_square_frame(spec, background, moving_frames(moving, index))?;
        let (w, h) = (spec.width, spec.height);
        let size = (h / 8).max(2);
        let span = (w - size).max(1);
        let x = (i64::from(index) * i64::from((w / 60).max(1)) % i64::from(span)) as i32;
        imgproc::rectangle(
            &mut mat,
            Rect::new(x, h - size - h / 16, size, size),
            Scalar::new(40.0, 200.0, 40.0, 0.0),
            imgproc::FILLED,
            imgproc::LINE_8,
            0,
        )?;
        Ok(mat)
    })
}

/// Writes the frames that `draw` makes (from the spec, the still background and the index).
fn write_frames(
    path: &Path,
    spec: &SyntheticVideo,
    mut draw: impl FnMut(&SyntheticVideo, &Mat, u32) -> opencv::Result<Mat>,
) -> Result<(), SampleError> {
    check_spec(spec)?;
    let fourcc_chars = fourcc_for(path)?;
    let cv = |what: &'static str| {
        move |source: opencv::Error| SampleError::OpenCv {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let [a, b, c, d] = fourcc_chars;
    let fourcc = videoio::VideoWriter::fourcc(a, b, c, d).map_err(cv("fourcc"))?;
    let size = Size::new(spec.width, spec.height);
    let mut writer = videoio::VideoWriter::new(path, fourcc, spec.fps, size, true)
        .map_err(cv("opening the video writer"))?;
    if !writer.is_opened().map_err(cv("opening the video writer"))? {
        return Err(SampleError::WriterNotOpened {
            path: path.to_path_buf(),
            fourcc: fourcc_chars.iter().collect(),
        });
    }
    let background = draw_background(spec).map_err(cv("drawing the background"))?;
    for index in 0..spec.frames {
        let frame = draw(spec, &background, index).map_err(cv("drawing a frame"))?;
        writer.write(&frame).map_err(cv("writing a frame"))?;
    }
    writer.release().map_err(cv("closing the video writer"))?;
    drop(writer);
    verify_video(path, spec)
}

/// Reads the video at `path` back and checks it has `spec.frames` frames of the right size.
pub fn verify_video(path: &Path, spec: &SyntheticVideo) -> Result<(), SampleError> {
    let cv = |what: &'static str| {
        move |source: opencv::Error| SampleError::OpenCv {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let mut capture = videoio::VideoCapture::from_file(path, videoio::CAP_ANY)
        .map_err(cv("opening the video for reading"))?;
    if !capture
        .is_opened()
        .map_err(cv("opening the video for reading"))?
    {
        return Err(SampleError::ReaderNotOpened {
            path: path.to_path_buf(),
        });
    }
    let mut frame = Mat::default();
    let mut count: u32 = 0;
    while capture.read(&mut frame).map_err(cv("reading a frame"))? {
        if frame.empty() {
            break;
        }
        if frame.cols() != spec.width || frame.rows() != spec.height {
            return Err(SampleError::FrameSizeMismatch {
                path: path.to_path_buf(),
                index: count,
                expected_width: spec.width,
                expected_height: spec.height,
                actual_width: frame.cols(),
                actual_height: frame.rows(),
            });
        }
        count += 1;
    }
    if count != spec.frames {
        return Err(SampleError::FrameCountMismatch {
            path: path.to_path_buf(),
            expected: spec.frames,
            actual: count,
        });
    }
    Ok(())
}

/// The frame rate the video at `path` announces, as OpenCV reads it.
pub fn video_fps(path: &Path) -> Result<f64, SampleError> {
    let cv = |what: &'static str| {
        move |source: opencv::Error| SampleError::OpenCv {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let capture = videoio::VideoCapture::from_file(path, videoio::CAP_ANY)
        .map_err(cv("opening the video for reading"))?;
    if !capture
        .is_opened()
        .map_err(cv("opening the video for reading"))?
    {
        return Err(SampleError::ReaderNotOpened {
            path: path.to_path_buf(),
        });
    }
    capture
        .get(videoio::CAP_PROP_FPS)
        .map_err(cv("reading the frame rate"))
}

/// The text of a signal file holding `events` (seconds, then `EVENT [key=value ...]`), one a
/// line with millisecond times, after a comment line.
pub fn signal_text(events: &[(f64, &str)]) -> String {
    let mut text = String::from("# referee sample signal: TIME EVENT [key=value ...]\n");
    for (time, event) in events {
        // Writing to a String cannot fail.
        let _ = writeln!(text, "{time:.3} {event}");
    }
    text
}

/// Writes a signal file at `path` holding `events` (see [`signal_text`]). Times must be finite,
/// not negative and in order; each event must be one line starting with a name.
pub fn write_signal(path: &Path, events: &[(f64, &str)]) -> Result<(), SampleError> {
    let mut previous = 0.0_f64;
    for &(time, event) in events {
        let invalid = |why| SampleError::InvalidEvent {
            path: path.to_path_buf(),
            time,
            event: event.to_string(),
            why,
        };
        if !time.is_finite() || time < 0.0 {
            return Err(invalid(
                "the time must be a finite number of seconds, not negative",
            ));
        }
        if time < previous {
            return Err(invalid("events must be in time order"));
        }
        let first = event.split_whitespace().next().unwrap_or_default();
        if first.is_empty() || first.contains('=') || event.contains('\n') || event.contains('#') {
            return Err(invalid("the event must be one line: NAME [key=value ...]"));
        }
        previous = time;
    }
    std::fs::write(path, signal_text(events)).map_err(|source| SampleError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn check_spec(spec: &SyntheticVideo) -> Result<(), SampleError> {
    if spec.frames == 0 {
        return Err(SampleError::InvalidSpec("frames must be at least 1".into()));
    }
    if !(spec.fps.is_finite() && spec.fps > 0.0) {
        return Err(SampleError::InvalidSpec(format!(
            "fps {} must be a positive number",
            spec.fps
        )));
    }
    if spec.width < 16 || spec.height < 16 || spec.width > 8192 || spec.height > 8192 {
        return Err(SampleError::InvalidSpec(format!(
            "size {}x{} must be 16 to 8192 pixels each way",
            spec.width, spec.height
        )));
    }
    Ok(())
}

fn fourcc_for(path: &Path) -> Result<[char; 4], SampleError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("avi") => Ok(['M', 'J', 'P', 'G']),
        Some("mp4") => Ok(['m', 'p', '4', 'v']),
        _ => Err(SampleError::UnsupportedExtension {
            path: path.to_path_buf(),
        }),
    }
}

/// A small deterministic hash of a pixel position, for a fixed "grain" texture.
fn grain(x: u32, y: u32) -> u8 {
    let mut v = x.wrapping_mul(0x9E37_79B1) ^ y.wrapping_mul(0x85EB_CA77);
    v ^= v >> 15;
    v = v.wrapping_mul(0x2C1B_3C6D);
    v ^= v >> 12;
    (v & 0x1F) as u8
}

/// The still background: a colour gradient with a fixed grain and the lines of a piste.
fn draw_background(spec: &SyntheticVideo) -> opencv::Result<Mat> {
    let (w, h) = (spec.width, spec.height);
    let mut mat = Mat::new_rows_cols_with_default(h, w, core::CV_8UC3, Scalar::all(0.0))?;
    {
        let data = mat.data_bytes_mut()?;
        let (wu, hu) = (w.unsigned_abs(), h.unsigned_abs());
        for (i, px) in data.chunks_exact_mut(3).enumerate() {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let (x, y) = (i % wu, i / wu);
            let g = grain(x, y);
            // BGR: blue grows left to right, green top to bottom, red is grain around a mid tone.
            px[0] = (40 + x * 150 / wu) as u8 ^ (g & 0x07);
            px[1] = (60 + y * 120 / hu) as u8 ^ (g & 0x07);
            px[2] = 70 + g * 2;
        }
    }
    // The piste: a darker strip with the centre line and the en-garde lines.
    let strip_top = h * 3 / 5;
    let strip_h = h / 5;
    imgproc::rectangle(
        &mut mat,
        Rect::new(0, strip_top, w, strip_h),
        Scalar::new(70.0, 80.0, 90.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    let thickness = (w / 320).max(1);
    for x in [w / 2, w / 2 - w / 8, w / 2 + w / 8] {
        imgproc::line(
            &mut mat,
            Point::new(x, strip_top),
            Point::new(x, strip_top + strip_h),
            Scalar::new(230.0, 230.0, 230.0, 0.0),
            thickness,
            imgproc::LINE_8,
            0,
        )?;
    }
    Ok(mat)
}

/// The background with a square `steps` steps along a path that bounces between the sides.
fn draw_square_frame(spec: &SyntheticVideo, background: &Mat, steps: u32) -> opencv::Result<Mat> {
    let (w, h) = (spec.width, spec.height);
    let mut mat = background.try_clone()?;
    let size = (h / 4).max(4);
    let span = (w - size).max(1);
    let travelled = i64::from(steps) * i64::from((w / 40).max(2)) % (2 * i64::from(span));
    let x = if travelled < i64::from(span) {
        travelled
    } else {
        2 * i64::from(span) - travelled
    } as i32;
    // White with a black outline: it stands out from any background, as a fencer in white
    // does.
    imgproc::rectangle(
        &mut mat,
        Rect::new(x, h / 3, size, size),
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::rectangle(
        &mut mat,
        Rect::new(x, h / 3, size, size),
        Scalar::new(0.0, 0.0, 0.0, 0.0),
        (size / 10).max(1),
        imgproc::LINE_8,
        0,
    )?;
    Ok(mat)
}

/// Frame `index`: the background with a bar and a disc `step` steps of `steps` along their
/// way, and the frame counter.
fn draw_frame(
    spec: &SyntheticVideo,
    background: &Mat,
    index: u32,
    step: u32,
    steps: u32,
) -> opencv::Result<Mat> {
    draw_frame_at(
        spec,
        background,
        index,
        f64::from(step),
        steps,
        f64::from(index) / spec.fps,
    )
}

/// [`draw_frame`] for a frame shown at `time_s` (a video whose frame rate varies), at a step
/// that may lie between two whole steps (a camera that does not film on the bout's frames).
fn draw_frame_at(
    spec: &SyntheticVideo,
    background: &Mat,
    index: u32,
    step: f64,
    steps: u32,
    time_s: f64,
) -> opencv::Result<Mat> {
    let mut mat = draw_scene(spec, background, step, steps)?;
    draw_counter(spec, &mut mat, index, time_s)?;
    Ok(mat)
}

/// The scene of [`draw_frame_at`] (what the camera films): the background with a bar and a
/// disc `step` steps of `steps` along their way.
fn draw_scene(
    spec: &SyntheticVideo,
    background: &Mat,
    step: f64,
    steps: u32,
) -> opencv::Result<Mat> {
    let (w, h) = (spec.width, spec.height);
    let mut mat = background.try_clone()?;
    let progress = if steps > 1 {
        step / f64::from(steps - 1)
    } else {
        0.0
    };

    // A vertical bar sweeping left to right, wrapping around.
    let bar_w = (w / 32).max(2);
    let bar_step = (w / 90).max(1);
    // At a whole step, step * bar_step is a whole number of pixels.
    let bar_x = ((step * f64::from(bar_step)).floor() as i64 % i64::from(w)) as i32;
    imgproc::rectangle(
        &mut mat,
        Rect::new(bar_x, 0, bar_w, h),
        Scalar::new(40.0, 200.0, 240.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;

    // A disc crossing the frame from left to right on a gentle arc, with an outline.
    let radius = (h / 12).max(3);
    let cx = radius + ((f64::from(w - 2 * radius)) * progress).round() as i32;
    let arc = (progress * std::f64::consts::PI).sin();
    let cy = h / 2 - ((f64::from(h) / 4.0) * arc).round() as i32;
    imgproc::circle(
        &mut mat,
        Point::new(cx, cy),
        radius,
        Scalar::new(60.0, 60.0, 220.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_AA,
        0,
    )?;
    imgproc::circle(
        &mut mat,
        Point::new(cx, cy),
        radius,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        (radius / 8).max(1),
        imgproc::LINE_AA,
        0,
    )?;
    Ok(mat)
}

/// The overlay of [`draw_frame_at`] (what the camera adds): the frame counter `index` and the
/// time `time_s`, top left.
fn draw_counter(
    spec: &SyntheticVideo,
    mat: &mut Mat,
    index: u32,
    time_s: f64,
) -> opencv::Result<()> {
    let (w, h) = (spec.width, spec.height);
    // The frame counter, large, on a dark box in the top-left corner.
    let text = format!("{index:04}");
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    let scale = f64::from(h) / 160.0;
    let thickness = (h / 80).max(1);
    let mut baseline = 0;
    let size = imgproc::get_text_size(&text, font, scale, thickness, &mut baseline)?;
    let margin = (h / 40).max(1);
    let box_w = (size.width + 2 * margin).min(w);
    let box_h = (size.height + baseline + 2 * margin).min(h);
    imgproc::rectangle(
        mat,
        Rect::new(0, 0, box_w, box_h),
        Scalar::new(20.0, 20.0, 20.0, 0.0),
        imgproc::FILLED,
        imgproc::LINE_8,
        0,
    )?;
    imgproc::put_text(
        mat,
        &text,
        Point::new(margin, margin + size.height),
        font,
        scale,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        thickness,
        imgproc::LINE_AA,
        false,
    )?;

    // The time, smaller, under the counter.
    let time = format!("t={time_s:.3}s");
    imgproc::put_text(
        mat,
        &time,
        Point::new(margin, (box_h + margin + size.height / 2).min(h - 1)),
        font,
        scale / 3.0,
        Scalar::new(255.0, 255.0, 255.0, 0.0),
        (thickness / 2).max(1),
        imgproc::LINE_AA,
        false,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avi_round_trip_has_every_frame_at_the_right_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.avi");
        let spec = SyntheticVideo {
            frames: 10,
            fps: 25.0,
            width: 64,
            height: 48,
        };
        write_video(&path, &spec).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);

        // Read it back independently of write_video's own check.
        let mut capture = videoio::VideoCapture::from_file(&path, videoio::CAP_ANY).unwrap();
        assert!(capture.is_opened().unwrap());
        let mut frame = Mat::default();
        let mut count = 0;
        while capture.read(&mut frame).unwrap() && !frame.empty() {
            assert_eq!((frame.cols(), frame.rows()), (64, 48));
            count += 1;
        }
        assert_eq!(count, 10);

        // Asking for more frames than the file holds is reported with path and counts.
        let err = verify_video(&path, &SyntheticVideo { frames: 11, ..spec }).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.contains("tiny.avi") && shown.contains("wrote 11 frames but 10"),
            "{shown}"
        );
    }

    #[test]
    fn frames_are_deterministic_and_move() {
        let spec = SyntheticVideo {
            frames: 10,
            fps: 25.0,
            width: 64,
            height: 48,
        };
        let bg = draw_background(&spec).unwrap();
        let a = draw_frame(&spec, &bg, 3, 3, spec.frames).unwrap();
        let b = draw_frame(&spec, &bg, 3, 3, spec.frames).unwrap();
        let c = draw_frame(&spec, &bg, 4, 4, spec.frames).unwrap();
        assert_eq!(a.data_bytes().unwrap(), b.data_bytes().unwrap());
        assert_ne!(a.data_bytes().unwrap(), c.data_bytes().unwrap());
    }

    #[test]
    fn the_bout_moves_in_its_phrases_and_stands_still_between_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bout.avi");
        let spec = SyntheticVideo::BOUT;
        write_bout_video(&path, &spec, &BOUT_PHRASES).unwrap();
        let mut capture = videoio::VideoCapture::from_file(&path, videoio::CAP_ANY).unwrap();
        let mut frames = Vec::new();
        let mut frame = Mat::default();
        while capture.read(&mut frame).unwrap() && !frame.empty() {
            frames.push(frame.try_clone().unwrap());
        }
        assert_eq!(frames.len(), 150);
        // Below the frame counter: the scene, where the fencers are.
        let scene = |i: usize| {
            let rows = frames[i].rows();
            Mat::roi(
                &frames[i],
                Rect::new(0, rows / 2, frames[i].cols(), rows / 2),
            )
            .unwrap()
            .try_clone()
            .unwrap()
        };
        let changed = |a: usize, b: usize| {
            let mut diff = Mat::default();
            opencv::core::absdiff(&scene(a), &scene(b), &mut diff).unwrap();
            let sum = opencv::core::sum_elems(&diff).unwrap();
            sum[0] + sum[1] + sum[2] > 1000.0
        };
        // Still between the first and second phrases (frames 37 to 57), moving in them.
        assert!(!changed(40, 48));
        assert!(changed(20, 24));
        assert!(changed(60, 64));
        assert!(!changed(125, 140));
    }

    #[test]
    fn the_bout_camera_draws_the_bout_frames() {
        // The generalised drawing (a camera on the bout's clock) is the bout's drawing, pixel
        // for pixel, so bout.mp4 stays the same.
        let spec = SyntheticVideo::BOUT;
        let bg = draw_background(&spec).unwrap();
        let total = moving_frames(&BOUT_PHRASES, spec.frames - 1) + 1;
        let camera = Camera::of_bout(&spec);
        let scene = Scene::new(&spec, &BOUT_PHRASES);
        for i in 0..spec.frames {
            let step = scene.step_at(camera.offset_s, camera.spec.fps, i);
            assert_eq!(
                step,
                f64::from(moving_frames(&BOUT_PHRASES, i)),
                "frame {i}"
            );
            let old = draw_frame(&spec, &bg, i, moving_frames(&BOUT_PHRASES, i), total).unwrap();
            let new = draw_frame_at(&spec, &bg, i, step, scene.steps, f64::from(i) / 30.0).unwrap();
            assert_eq!(
                old.data_bytes().unwrap(),
                new.data_bytes().unwrap(),
                "frame {i}"
            );
        }
    }

    #[test]
    fn the_right_camera_films_the_bout_at_its_own_times() {
        let bout = SyntheticVideo::BOUT;
        let right = Camera::RIGHT;
        let scene = Scene::new(&bout, &BOUT_PHRASES);
        let bg = draw_background(&right.spec).unwrap();
        let scene_of = |step: f64| {
            draw_scene(&right.spec, &bg, step, scene.steps)
                .unwrap()
                .data_bytes()
                .unwrap()
                .to_vec()
        };
        // A camera of the same size on the bout's clock at 150 fps: the right camera's frame
        // k (bout time 0.4 + k / 25 s) is its frame 60 + 6k.
        let fine = Camera {
            spec: SyntheticVideo {
                frames: 750,
                fps: 150.0,
                ..right.spec
            },
            offset_s: 0.0,
        };
        for k in 0..right.spec.frames {
            assert!((right.bout_time_s(k) - fine.bout_time_s(60 + 6 * k)).abs() < 1e-12);
            let ours = scene.step_at(right.offset_s, right.spec.fps, k);
            let theirs = scene.step_at(0.0, 150.0, 60 + 6 * k);
            assert!(
                (ours - theirs).abs() < 1e-9,
                "frame {k}: {ours} vs {theirs}"
            );
            if k % 5 == 0 {
                // On a bout frame (12 + 6k/5 at 30 fps): exactly that frame's step.
                let bout_frame = 12 + 6 * k / 5;
                assert_eq!(ours, f64::from(moving_frames(&BOUT_PHRASES, bout_frame)));
                assert_eq!(scene_of(ours), scene_of(theirs), "frame {k}");
            }
        }
        // Between bout frames the bar stands between its places on them: frame 8 is at bout
        // time 0.72 s, bout frame 21.6, step 21.6 - 17 = 4.6.
        assert!((scene.step_at(right.offset_s, right.spec.fps, 8) - 4.6).abs() < 1e-9);
        // It moves in the phrases (bout frames 17 to 36 ...) and only there.
        let moving: Vec<u32> = (1..right.spec.frames)
            .filter(|&k| {
                scene.step_at(right.offset_s, right.spec.fps, k)
                    != scene.step_at(right.offset_s, right.spec.fps, k - 1)
            })
            .collect();
        let in_phrase = |k: u32| {
            let (from, to) = (right.bout_time_s(k - 1) * 30.0, right.bout_time_s(k) * 30.0);
            BOUT_PHRASES
                .iter()
                .any(|&(a, b)| from < f64::from(b) - 1e-9 && to > f64::from(a - 1) + 1e-9)
        };
        let expected: Vec<u32> = (1..right.spec.frames).filter(|&k| in_phrase(k)).collect();
        assert_eq!(moving, expected);
        assert_eq!(moving.first(), Some(&5));

        // Written and read back: every frame, at its size (write_camera_video checks).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("right.mp4");
        write_camera_video(&path, &bout, &BOUT_PHRASES, &right).unwrap();
        assert_eq!(video_fps(&path).unwrap(), 25.0);
        let first = draw_camera_frame(&bout, &BOUT_PHRASES, &right, 0).unwrap();
        assert_eq!((first.cols(), first.rows()), (480, 360));
    }

    #[test]
    fn the_motion_video_moves_only_on_the_given_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("motion.avi");
        let spec = SyntheticVideo {
            frames: 12,
            fps: 30.0,
            width: 160,
            height: 120,
        };
        write_motion_video(&path, &spec, &[(3, 5), (9, 9)]).unwrap();
        let mut capture = videoio::VideoCapture::from_file(&path, videoio::CAP_ANY).unwrap();
        let mut frames = Vec::new();
        let mut frame = Mat::default();
        while capture.read(&mut frame).unwrap() && !frame.empty() {
            frames.push(frame.data_bytes().unwrap().to_vec());
        }
        assert_eq!(frames.len(), 12);
        let changed: Vec<usize> = (1..12).filter(|&i| frames[i] != frames[i - 1]).collect();
        assert_eq!(changed, [3, 4, 5, 9]);
    }

    #[test]
    fn bad_specs_and_extensions_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SyntheticVideo {
            frames: 0,
            ..SyntheticVideo::BOUT
        };
        assert!(matches!(
            write_video(&dir.path().join("x.avi"), &spec),
            Err(SampleError::InvalidSpec(_))
        ));
        assert!(matches!(
            write_video(&dir.path().join("x.mkv"), &SyntheticVideo::BOUT),
            Err(SampleError::UnsupportedExtension { .. })
        ));
    }

    #[test]
    fn signal_file_has_one_event_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bout.txt");
        write_signal(&path, &BOUT_EVENTS).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "0.000 start period=1",
                "0.800 off_target_right",
                "1.200 touch_left score=1-0",
                "1.900 card_right color=yellow",
                "2.533 touch_right score=1-1",
                "3.100 halt",
                "3.600 double score=2-2",
                "4.000 touch_left score=4-2",
                "4.800 end period=1",
            ]
        );
        // Every event lies within the sample video.
        assert!(BOUT_EVENTS
            .iter()
            .all(|(t, _)| *t < SyntheticVideo::BOUT.duration_s()));

        assert!(write_signal(&path, &[(1.0, "a"), (0.5, "b")]).is_err());
        assert!(write_signal(&path, &[(-1.0, "a")]).is_err());
        assert!(write_signal(&path, &[(1.0, "score=1-0")]).is_err());
    }
}
