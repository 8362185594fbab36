//! Stage `video_reconstruction`: writes the stored JPEG frames to a playable video file at the
//! session's fps, with OpenCV. The stored frames stay the source of truth.

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Size, Vector};
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

/// Decoded frames waiting for the encoder: decoding runs one frame or a few ahead of it, on
/// its own thread, so that JPEG decoding and video encoding use both cores.
const DECODED_AHEAD: usize = 4;

/// Writes every stored frame, in order, to a video in `scratch`.
pub(super) fn reconstruct(
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
    scratch: &Path,
    reporter: &mut Reporter<'_>,
) -> Result<Video, StageError> {
    let (mut writer, video) = open_writer(meta, scratch)?;
    let total = frames.len();
    let (width, height) = (meta.width as i32, meta.height as i32);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Mat, StageError>>(DECODED_AHEAD);
        scope.spawn(move || {
            for index in 0..total {
                let decoded = decode(frames, index, width, height);
                let failed = decoded.is_err();
                if tx.send(decoded).is_err() || failed {
                    return;
                }
            }
        });
        for index in 0..total {
            let image = rx.recv().map_err(|_| {
                StageError::Other(format!("the decoding thread stopped before frame {index}"))
            })??;
            writer.write(&image)?;
            reporter.update(index + 1);
        }
        Ok::<_, StageError>(())
    })?;
    writer.release()?;
    Ok(video)
}

/// Reads and decodes stored frame `index`, checking its size.
fn decode(
    frames: &mut dyn FrameSource,
    index: u64,
    width: i32,
    height: i32,
) -> Result<Mat, StageError> {
    let frame = frames.read(index)?;
    let image = imgcodecs::imdecode(
        &Vector::<u8>::from_slice(&frame.payload),
        imgcodecs::IMREAD_COLOR,
    )?;
    let size = image.size()?;
    if image.empty() || size.width != width || size.height != height {
        return Err(StageError::Other(format!(
            "frame {index} decodes to a {}x{} image, expected {width}x{height}",
            size.width, size.height
        )));
    }
    Ok(image)
}
