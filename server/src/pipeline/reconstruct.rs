//! Stage `video_reconstruction`: writes the stored JPEG frames to a playable video file, each
//! at its own timestamp (a variable frame rate stays variable): H.264 through FFmpeg's libx264 at the operator's preset ([`super::h264`]),
//! or, where that cannot be opened, whatever OpenCV's `VideoWriter` can write. The stored
//! frames stay the source of truth.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Size};
use opencv::prelude::*;
use opencv::videoio;

use super::h264::H264Writer;
use super::i420::{decode_bgr, I420Decoder};
use super::{Reporter, StageError};
use crate::store::{FrameSource, SessionMeta};

/// What OpenCV is asked for when FFmpeg's libx264 cannot be used, best first: H.264 MP4
/// plays in browsers; MPEG-4 Part 2 MP4 and MJPEG AVI play in desktop players.
const CODECS: [(&str, [char; 4], &str); 3] = [
    ("video.mp4", ['a', 'v', 'c', '1'], "H.264"),
    ("video.mp4", ['m', 'p', '4', 'v'], "MPEG-4 Part 2"),
    ("video.avi", ['M', 'J', 'P', 'G'], "Motion JPEG"),
];

/// The video file written to scratch space.
pub struct Video {
    pub file_name: String,
    pub path: PathBuf,
    pub codec: &'static str,
}

/// Where the decoded frames go.
enum Sink {
    /// FFmpeg's libx264, fed I420 images.
    H264(H264Writer),
    /// OpenCV's `VideoWriter`, fed BGR images.
    OpenCv(videoio::VideoWriter),
}

impl Sink {
    fn write(&mut self, image: &Mat, pts_us: i64) -> Result<(), StageError> {
        match self {
            Sink::H264(writer) => writer.write(image, pts_us),
            Sink::OpenCv(writer) => Ok(writer.write(image)?),
        }
    }

    fn finish(self) -> Result<(), StageError> {
        match self {
            Sink::H264(writer) => writer.finish(),
            Sink::OpenCv(mut writer) => Ok(writer.release()?),
        }
    }
}

fn open_sink(
    meta: &SessionMeta,
    scratch: &Path,
    preset: &str,
) -> Result<(Sink, Video), StageError> {
    let path = scratch.join("video.mp4");
    match H264Writer::create(&path, meta.width, meta.height, meta.fps, preset) {
        Ok(writer) => {
            let video = Video {
                file_name: "video.mp4".into(),
                path,
                codec: "H.264",
            };
            return Ok((Sink::H264(writer), video));
        }
        Err(err) => tracing::warn!(
            "Session {}: cannot write H.264 through FFmpeg ({err}): trying OpenCV's encoders",
            meta.id
        ),
    }
    let size = Size::new(meta.width as i32, meta.height as i32);
    for (file_name, [a, b, c, d], codec) in CODECS {
        let path = scratch.join(file_name);
        let fourcc = videoio::VideoWriter::fourcc(a, b, c, d)?;
        match videoio::VideoWriter::new(&path, fourcc, meta.fps, size, true) {
            Ok(writer) if writer.is_opened()? => {
                tracing::warn!(
                    "Session {}: writing {codec} ({file_name}) with OpenCV",
                    meta.id
                );
                let video = Video {
                    file_name: file_name.to_string(),
                    path,
                    codec,
                };
                return Ok((Sink::OpenCv(writer), video));
            }
            _ => tracing::debug!("Session {}: OpenCV cannot write {codec}", meta.id),
        }
    }
    Err(StageError::Other(
        "neither FFmpeg's libx264 nor OpenCV can write H.264, MPEG-4 or MJPEG: install an \
         OpenCV and FFmpeg built with them"
            .into(),
    ))
}

/// Decoded frames waiting for the encoder: decoding runs one frame or a few ahead of it, on
/// its own thread, so that JPEG decoding and video encoding use both cores. At most this many
/// frames, and at most [`DECODED_AHEAD_BYTES`] of them (but always one): with the frame being
/// decoded and the one being encoded, a few frames are decoded at any time, whatever the
/// session's length.
const DECODED_AHEAD: usize = 4;
/// The bytes of decoded frames that may wait for the encoder (a 4K frame is 24 MiB in BGR).
const DECODED_AHEAD_BYTES: u64 = 32 * 1024 * 1024;

/// How many decoded frames of `width` x `height` may wait for the encoder.
fn decoded_ahead(width: u32, height: u32) -> usize {
    // An I420 or BGR image: 1.5 or 3 bytes per pixel; count the larger.
    let frame_bytes = (u64::from(width) * u64::from(height) * 3).max(1);
    let fits = usize::try_from(DECODED_AHEAD_BYTES / frame_bytes).unwrap_or(DECODED_AHEAD);
    fits.clamp(1, DECODED_AHEAD)
}

/// Writes every stored frame, in order, to a video in `scratch`.
pub(super) fn reconstruct(
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    scratch: &Path,
    preset: &str,
    reporter: &mut Reporter<'_>,
) -> Result<Video, StageError> {
    let (mut sink, video) = open_sink(meta, scratch, preset)?;
    let i420 = matches!(sink, Sink::H264(_));
    let timestamps = frames.timestamps();
    if !i420 && super::analysis::variable_frame_rate(&timestamps) {
        tracing::warn!(
            "Session {}: OpenCV writes {} at a constant {} fps: the frames of this variable frame rate recording are evenly spaced in it (report.json has their real times)",
            meta.id,
            video.file_name,
            meta.fps
        );
    }
    let total = frames.len();
    decode_each(meta, &mut [frames], 0..total, i420, |index, image| {
        let pts_us = frame_time(&timestamps, index)?;
        sink.write(&image, pts_us)?;
        reporter.update(index + 1);
        Ok(())
    })?;
    sink.finish()?;
    Ok(video)
}

/// The timestamp of frame `index`, in microseconds.
pub(super) fn frame_time(timestamps: &[i64], index: u64) -> Result<i64, StageError> {
    usize::try_from(index)
        .ok()
        .and_then(|i| timestamps.get(i))
        .copied()
        .ok_or_else(|| StageError::Other(format!("frame {index} has no timestamp")))
}

/// Decodes stored frames `range` in order (to I420 for the H.264 writer, or BGR) on threads
/// of their own, a few frames ahead of `each`, which gets every frame's index and image in
/// order: decoding and encoding use two cores. With more than one source (readers of the
/// same frames), one thread per source decodes every n-th frame.
pub(super) fn decode_each(
    meta: &SessionMeta,
    sources: &mut [&mut dyn FrameSource],
    range: std::ops::Range<u64>,
    i420: bool,
    mut each: impl FnMut(u64, Mat) -> Result<(), StageError>,
) -> Result<(), StageError> {
    let (width, height) = (meta.width, meta.height);
    let threads = sources.len().max(1);
    std::thread::scope(|scope| {
        let ahead = (decoded_ahead(meta.width, meta.height) / threads).max(1);
        let mut queues = Vec::with_capacity(threads);
        for (k, frames) in sources.iter_mut().enumerate() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Mat, StageError>>(ahead);
            queues.push(rx);
            let indices = range.clone().skip(k).step_by(threads);
            scope.spawn(move || {
                let mut decoder = i420.then(|| I420Decoder::new(width, height));
                for index in indices {
                    let decoded = decode(&mut **frames, decoder.as_mut(), index, (width, height));
                    let failed = decoded.is_err();
                    if tx.send(decoded).is_err() || failed {
                        return;
                    }
                }
            });
        }
        for (n, index) in range.enumerate() {
            let image = queues
                .get(n % threads)
                .ok_or_else(|| StageError::Other("no frame source to decode from".into()))?
                .recv()
                .map_err(|_| {
                    StageError::Other(format!("the decoding thread stopped before frame {index}"))
                })??;
            each(index, image)?;
        }
        Ok::<_, StageError>(())
    })
}

/// Reads and decodes stored frame `index`, checking its size: to I420 through `i420`'s
/// decoder, or else to BGR.
fn decode(
    frames: &mut dyn FrameSource,
    i420: Option<&mut I420Decoder>,
    index: u64,
    (width, height): (u32, u32),
) -> Result<Mat, StageError> {
    let frame = frames.read(index)?;
    match i420 {
        Some(decoder) => decoder.decode(index, &frame.payload),
        None => decode_bgr(index, &frame.payload, width, height),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_large_frames_wait_for_the_encoder() {
        assert_eq!(decoded_ahead(1280, 720), DECODED_AHEAD);
        assert_eq!(decoded_ahead(3840, 2160), 1);
        assert_eq!(decoded_ahead(16384, 16384), 1);
        assert_eq!(decoded_ahead(1, 1), DECODED_AHEAD);
    }
}
