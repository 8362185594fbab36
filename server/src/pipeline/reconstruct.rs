//! Stage `video_reconstruction`: writes the stored JPEG frames to a playable video file at the
//! session's fps, with OpenCV. The stored frames stay the source of truth.

use std::path::{Path, PathBuf};

use opencv::core::{Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, videoio};

use super::{Reporter, StageError};
use crate::store::{FrameSource, SessionMeta};

/// Containers and codecs to try, best first: H.264 MP4 plays in browsers; MPEG-4 Part 2 MP4
/// and MJPEG AVI play in desktop players.
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

fn open_writer(
    meta: &SessionMeta,
    scratch: &Path,
) -> Result<(videoio::VideoWriter, Video), StageError> {
    let size = Size::new(meta.width as i32, meta.height as i32);
    for (i, (file_name, [a, b, c, d], codec)) in CODECS.iter().enumerate() {
        let path = scratch.join(file_name);
        let fourcc = videoio::VideoWriter::fourcc(*a, *b, *c, *d)?;
        let writer = videoio::VideoWriter::new(&path, fourcc, meta.fps, size, true);
        match writer {
            Ok(writer) if writer.is_opened()? => {
                if i > 0 {
                    tracing::warn!(
                        "Session {}: no {} encoder in this OpenCV build, writing {codec} ({file_name}) instead",
                        meta.id,
                        CODECS[0].2
                    );
                }
                let video = Video {
                    file_name: file_name.to_string(),
                    path,
                    codec,
                };
                return Ok((writer, video));
            }
            _ => tracing::debug!("Session {}: OpenCV cannot write {codec}", meta.id),
        }
    }
    Err(StageError::Other(
        "OpenCV can write none of H.264, MPEG-4 or MJPEG: install an OpenCV built with FFmpeg"
            .into(),
    ))
}

/// Writes every stored frame, in order, to a video in `scratch`.
pub(super) fn reconstruct(
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    scratch: &Path,
    reporter: &mut Reporter<'_>,
) -> Result<Video, StageError> {
    let (mut writer, video) = open_writer(meta, scratch)?;
    let total = frames.len();
    for index in 0..total {
        let frame = frames.read(index)?;
        let image = imgcodecs::imdecode(
            &Vector::<u8>::from_slice(&frame.payload),
            imgcodecs::IMREAD_COLOR,
        )?;
        let size = image.size()?;
        if image.empty() || size.width != meta.width as i32 || size.height != meta.height as i32 {
            return Err(StageError::Other(format!(
                "frame {index} decodes to a {}x{} image, expected {}x{}",
                size.width, size.height, meta.width, meta.height
            )));
        }
        writer.write(&image)?;
        reporter.update(index + 1);
    }
    writer.release()?;
    Ok(video)
}
