//! Reads the recorded video with OpenCV and JPEG-encodes its frames. The only module that
//! links OpenCV.
//!
//! Encoding is deterministic: the same file and quality always give the same JPEG bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};

use crate::error::ClientError;

/// What the video says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frames per second, as the container announces it.
    pub fps: f64,
    /// Width of the first frame, in pixels.
    pub width: u32,
    /// Height of the first frame, in pixels.
    pub height: u32,
    /// How many frames the container announces, when it does.
    pub frame_count: Option<u64>,
}

/// One frame, JPEG-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// 0 for the first frame, then +1 each frame.
    pub index: u64,
    /// Presentation time from the start of the video: `index / fps`, in microseconds.
    pub pts_us: i64,
    /// The JPEG file.
    pub jpeg: Vec<u8>,
}

/// An open video, yielding its frames as JPEG in order.
pub struct VideoSource {
    path: PathBuf,
    capture: videoio::VideoCapture,
    info: VideoInfo,
    /// `imencode` parameters: the JPEG quality.
    params: Vector<i32>,
    /// The last decoded frame; reused for each frame to save allocations.
    frame: Mat,
    /// True while `frame` holds the first frame, decoded by `open` and not yet encoded.
    first_pending: bool,
    next_index: u64,
}

impl VideoSource {
    /// Opens `path` and decodes its first frame, so that a video that cannot be read is
    /// caught before anything is sent. `quality` is the JPEG quality, 1 to 100.
    pub fn open(path: &Path, quality: u8) -> Result<Self, ClientError> {
        // OpenCV only says "cannot open"; the file system says why (missing, permissions).
        File::open(path).map_err(|source| ClientError::VideoUnreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let format_error = |reason: String| ClientError::VideoFormat {
            path: path.to_path_buf(),
            reason,
        };
        let mut capture = videoio::VideoCapture::from_file(path, videoio::CAP_ANY)
            .map_err(|err| format_error(err.to_string()))?;
        if !capture
            .is_opened()
            .map_err(|err| format_error(err.to_string()))?
        {
            return Err(format_error("OpenCV cannot open it".into()));
        }
        let mut frame = Mat::default();
        let decoded = capture
            .read(&mut frame)
            .map_err(|err| format_error(err.to_string()))?;
        if !decoded || frame.empty() {
            return Err(ClientError::NoFrames {
                path: path.to_path_buf(),
            });
        }
        let fps = capture
            .get(videoio::CAP_PROP_FPS)
            .map_err(|err| format_error(err.to_string()))?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(format_error(format!(
                "it announces no usable frame rate ({fps})"
            )));
        }
        let frame_count = capture
            .get(videoio::CAP_PROP_FRAME_COUNT)
            .map_err(|err| format_error(err.to_string()))?;
        let info = VideoInfo {
            fps,
            width: frame.cols().unsigned_abs(),
            height: frame.rows().unsigned_abs(),
            frame_count: (frame_count >= 1.0).then(|| frame_count.round() as u64),
        };
        Ok(Self {
            path: path.to_path_buf(),
            capture,
            info,
            params: Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, i32::from(quality)]),
            frame,
            first_pending: true,
            next_index: 0,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decodes and JPEG-encodes the next frame; `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>, ClientError> {
        let index = self.next_index;
        if !std::mem::take(&mut self.first_pending) {
            let decoded = self
                .capture
                .read(&mut self.frame)
                .map_err(|err| self.frame_error(index, format!("cannot decode: {err}")))?;
            if !decoded || self.frame.empty() {
                return Ok(None);
            }
        }
        let mut jpeg = Vector::<u8>::new();
        let encoded = imgcodecs::imencode(".jpg", &self.frame, &mut jpeg, &self.params)
            .map_err(|err| self.frame_error(index, format!("cannot encode as JPEG: {err}")))?;
        if !encoded {
            return Err(self.frame_error(index, "OpenCV cannot encode it as JPEG".into()));
        }
        self.next_index += 1;
        Ok(Some(EncodedFrame {
            index,
            pts_us: pts_us(index, self.info.fps),
            jpeg: jpeg.to_vec(),
        }))
    }

    fn frame_error(&self, index: u64, reason: String) -> ClientError {
        ClientError::FrameFailed {
            path: self.path.clone(),
            index,
            reason,
        }
    }
}

/// Silences OpenCV's own console messages (e.g. one warning per backend it tried on an
/// unreadable file) unless `verbose`: the client reports errors itself. `OPENCV_LOG_LEVEL`,
/// when set, still wins.
pub fn quiet_opencv(verbose: bool) {
    if !verbose && std::env::var_os("OPENCV_LOG_LEVEL").is_none() {
        // Only fails if OpenCV was built without logging, which leaves nothing to silence.
        let _ = opencv::core::set_log_level(opencv::core::LogLevel::LOG_LEVEL_SILENT);
    }
}

/// The presentation time of frame `index`, computed from the frame rate rather than read from
/// the container, which not every format fills in reliably.
fn pts_us(index: u64, fps: f64) -> i64 {
    (index as f64 * 1e6 / fps).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, Size, CV_8UC3};

    /// Writes a 64x48, 5-frame MJPG AVI at 25 fps, each frame a different grey.
    fn tiny_video(dir: &Path) -> PathBuf {
        let path = dir.join("tiny.avi");
        let fourcc = videoio::VideoWriter::fourcc('M', 'J', 'P', 'G').unwrap();
        let mut writer =
            videoio::VideoWriter::new(&path, fourcc, 25.0, Size::new(64, 48), true).unwrap();
        assert!(writer.is_opened().unwrap());
        for i in 0..5 {
            let frame =
                Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(f64::from(i) * 50.0))
                    .unwrap();
            writer.write(&frame).unwrap();
        }
        writer.release().unwrap();
        path
    }

    fn all_frames(path: &Path, quality: u8) -> Vec<EncodedFrame> {
        let mut source = VideoSource::open(path, quality).unwrap();
        std::iter::from_fn(|| source.next_frame().unwrap()).collect()
    }

    #[test]
    fn reads_info_and_every_frame_as_jpeg() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_video(dir.path());
        let source = VideoSource::open(&path, 90).unwrap();
        assert_eq!(
            source.info(),
            &VideoInfo {
                fps: 25.0,
                width: 64,
                height: 48,
                frame_count: Some(5),
            }
        );
        let frames = all_frames(&path, 90);
        assert_eq!(frames.len(), 5);
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame.index, i as u64);
            assert_eq!(frame.pts_us, i as i64 * 40_000);
            assert!(
                frame.jpeg.starts_with(&[0xFF, 0xD8]),
                "frame {i} is no JPEG"
            );
        }
    }

    #[test]
    fn encoding_is_deterministic_and_follows_quality() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_video(dir.path());
        assert_eq!(all_frames(&path, 90), all_frames(&path, 90));
        assert_ne!(all_frames(&path, 90), all_frames(&path, 10));
    }

    #[test]
    fn missing_or_undecodable_files_name_the_path() {
        quiet_opencv(false);
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.avi");
        let err = VideoSource::open(&missing, 90).err().unwrap();
        assert!(
            matches!(err, ClientError::VideoUnreadable { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(&missing.display().to_string()));

        let garbage = dir.path().join("garbage.avi");
        std::fs::write(&garbage, b"not a video at all").unwrap();
        let err = VideoSource::open(&garbage, 90).err().unwrap();
        assert!(err.to_string().contains(&garbage.display().to_string()));
    }

    #[test]
    fn pts_rounds_to_the_microsecond() {
        assert_eq!(pts_us(0, 29.97), 0);
        assert_eq!(pts_us(1, 29.97), 33_367);
        assert_eq!(pts_us(30, 30.0), 1_000_000);
    }
}
