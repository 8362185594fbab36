//! Reads the recorded video with OpenCV and JPEG-encodes its frames, or reads a Motion-JPEG
//! video's own JPEG frames as stored. The only module that links OpenCV.
//!
//! Three pieces, so that [`crate::pipeline`] can run them on different threads:
//! - [`Decoder`] decodes the video's frames in order;
//! - [`Encoder`] JPEG-encodes decoded frames (libjpeg-turbo, through OpenCV's `imencode`),
//!   resizing them first when asked; every encoder with the same options gives the same
//!   bytes for the same frame, so encoding on several threads changes nothing;
//! - [`PacketReader`] reads the stored packets of a Motion-JPEG video without decoding them
//!   (passthrough).
//!
//! [`VideoSource`] is the decoder and an encoder on one thread.
//!
//! Encoding is deterministic: the same file and options always give the same JPEG bytes.

use std::fs::File;
use std::path::{Path, PathBuf};

use opencv::core::{Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc, videoio};

use crate::error::ClientError;
use crate::frame_times::FrameTimes;

/// The JPEG quality frames are encoded with when none is chosen.
pub const DEFAULT_QUALITY: u8 = 90;

/// What the video says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Frames per second, as the container announces it (on average, for a video whose
    /// frame rate varies; each frame's own time is its `pts_us`).
    pub fps: f64,
    /// Width of the frames as sent, in pixels: the first frame's, or the `--resize` width.
    pub width: u32,
    /// Height of the frames as sent, in pixels.
    pub height: u32,
    /// How many frames the container announces, when it does.
    pub frame_count: Option<u64>,
}

/// A frame size in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

impl std::fmt::Display for FrameSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// How decoded frames are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// JPEG quality, 1 to 100.
    pub quality: u8,
    /// Scale every frame to this size before encoding.
    pub resize: Option<FrameSize>,
}

impl EncodeOptions {
    pub fn quality(quality: u8) -> Self {
        Self {
            quality,
            resize: None,
        }
    }
}

/// One frame, JPEG-encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// 0 for the first frame, then +1 each frame.
    pub index: u64,
    /// Presentation time in microseconds: the container's timestamp of the frame (in display
    /// order, after any edit list), from the first frame's, so the first frame is at 0.
    pub pts_us: i64,
    /// The JPEG file.
    pub jpeg: Vec<u8>,
    /// True when `jpeg` is the video's own stored image, not re-encoded.
    pub passthrough: bool,
}

/// Opens `path` with OpenCV, after checking that the file itself can be read (OpenCV only
/// says "cannot open"; the file system says why).
fn open_capture(path: &Path, backend: i32) -> Result<videoio::VideoCapture, ClientError> {
    let unreadable = |source| ClientError::VideoUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    if file.metadata().map_err(unreadable)?.len() == 0 {
        return Err(ClientError::VideoEmpty {
            path: path.to_path_buf(),
        });
    }
    let capture = videoio::VideoCapture::from_file(path, backend)
        .map_err(|err| format_error(path, err.to_string()))?;
    if !capture
        .is_opened()
        .map_err(|err| format_error(path, err.to_string()))?
    {
        return Err(format_error(path, "OpenCV cannot open it".into()));
    }
    Ok(capture)
}

fn format_error(path: &Path, reason: String) -> ClientError {
    ClientError::VideoFormat {
        path: path.to_path_buf(),
        reason,
    }
}

fn frame_error(path: &Path, index: u64, reason: String) -> ClientError {
    ClientError::FrameFailed {
        path: path.to_path_buf(),
        index,
        reason,
    }
}

/// Turns the container's presentation times ([`FrameTimes`], in display order) into frame
/// timestamps: microseconds from the first frame's time (so the first frame is at 0), always
/// increasing.
struct Clock {
    times: Option<FrameTimes>,
    /// The first frame's container time, in microseconds.
    origin: Option<i64>,
    last: Option<i64>,
    /// One frame at the announced rate: what a frame without a usable time is given.
    nominal_us: i64,
}

impl Clock {
    fn new(path: &Path, fps: f64) -> Self {
        Self {
            times: FrameTimes::open(path),
            origin: None,
            last: None,
            nominal_us: ((1e6 / fps).round() as i64).max(1),
        }
    }

    /// The timestamp of the next frame. A frame the container gives no time for, or one
    /// that does not come after the previous frame's, is put one frame at the announced
    /// rate after it.
    fn stamp(&mut self) -> i64 {
        let container = self.times.as_mut().and_then(FrameTimes::next_us);
        let pts = match (container, self.origin) {
            (Some(us), Some(origin)) => us - origin,
            (Some(us), None) => {
                self.origin = Some(us);
                0
            }
            (None, _) => self.last.map_or(0, |last| last + self.nominal_us),
        };
        let pts = match self.last {
            Some(last) if pts <= last => {
                tracing::debug!("a frame's container time {pts} us is not after {last} us");
                last + self.nominal_us
            }
            _ => pts,
        };
        self.last = Some(pts);
        pts
    }
}

/// A decoded frame, waiting to be encoded. It may be sent to another thread.
pub struct DecodedFrame {
    index: u64,
    pts_us: i64,
    image: Mat,
}

impl DecodedFrame {
    pub fn index(&self) -> u64 {
        self.index
    }
}

/// Decodes a video's frames, in order.
pub struct Decoder {
    path: PathBuf,
    capture: videoio::VideoCapture,
    /// The first frame, decoded by `open` and not yet handed out, with its timestamp.
    first: Option<(Mat, i64)>,
    next_index: u64,
    clock: Clock,
}

impl Decoder {
    /// Opens `path` and decodes its first frame, so that a video that cannot be read is
    /// caught before anything is sent. Returns the decoder and what the video says about
    /// itself (with the size of its frames).
    pub fn open(path: &Path) -> Result<(Self, VideoInfo), ClientError> {
        let mut capture = open_capture(path, videoio::CAP_ANY)?;
        let mut frame = Mat::default();
        let decoded = capture
            .read(&mut frame)
            .map_err(|err| format_error(path, err.to_string()))?;
        if !decoded || frame.empty() {
            return Err(ClientError::NoFrames {
                path: path.to_path_buf(),
            });
        }
        let fps = capture
            .get(videoio::CAP_PROP_FPS)
            .map_err(|err| format_error(path, err.to_string()))?;
        if !(fps.is_finite() && fps > 0.0) {
            return Err(format_error(
                path,
                format!("it announces no usable frame rate ({fps})"),
            ));
        }
        let frame_count = capture
            .get(videoio::CAP_PROP_FRAME_COUNT)
            .map_err(|err| format_error(path, err.to_string()))?;
        let mut clock = Clock::new(path, fps);
        let first_pts = clock.stamp();
        let info = VideoInfo {
            fps,
            width: frame.cols().unsigned_abs(),
            height: frame.rows().unsigned_abs(),
            frame_count: (frame_count >= 1.0).then(|| frame_count.round() as u64),
        };
        let decoder = Self {
            path: path.to_path_buf(),
            capture,
            first: Some((frame, first_pts)),
            next_index: 0,
            clock,
        };
        Ok((decoder, info))
    }

    /// The next frame, decoded; `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<DecodedFrame>, ClientError> {
        self.next_frame_into(None)
    }

    /// The next frame, decoded into `spare`'s image buffer when given (a frame already
    /// encoded: reusing its memory saves allocating and faulting in a new image each frame).
    pub fn next_frame_into(
        &mut self,
        spare: Option<DecodedFrame>,
    ) -> Result<Option<DecodedFrame>, ClientError> {
        let index = self.next_index;
        let (image, pts_us) = match self.first.take() {
            Some(first) => first,
            None => {
                let mut image = spare.map(|frame| frame.image).unwrap_or_default();
                let decoded = self.capture.read(&mut image).map_err(|err| {
                    frame_error(&self.path, index, format!("cannot decode: {err}"))
                })?;
                if !decoded || image.empty() {
                    return Ok(None);
                }
                (image, self.clock.stamp())
            }
        };
        self.next_index += 1;
        Ok(Some(DecodedFrame {
            index,
            pts_us,
            image,
        }))
    }
}

/// JPEG-encodes decoded frames. One per thread; all encoders made with the same options
/// give the same bytes for the same frame.
pub struct Encoder {
    path: PathBuf,
    options: EncodeOptions,
    /// `imencode` parameters: the JPEG quality.
    params: Vector<i32>,
    resize: Option<Size>,
    /// The resized image; reused for each frame.
    scaled: Mat,
}

impl Encoder {
    /// An encoder for the frames of `path` (named in errors).
    pub fn new(path: &Path, options: EncodeOptions) -> Self {
        let resize = options.resize.map(|size| {
            Size::new(
                i32::try_from(size.width).unwrap_or(i32::MAX),
                i32::try_from(size.height).unwrap_or(i32::MAX),
            )
        });
        Self {
            path: path.to_path_buf(),
            options,
            params: Vector::from_slice(&[
                imgcodecs::IMWRITE_JPEG_QUALITY,
                i32::from(options.quality),
            ]),
            resize,
            scaled: Mat::default(),
        }
    }

    /// Encodes `frame` (resized first, if asked) as a JPEG file.
    pub fn encode(&mut self, frame: &DecodedFrame) -> Result<EncodedFrame, ClientError> {
        let index = frame.index;
        let image = match self.resize {
            Some(size) if size != frame.image.size().unwrap_or_default() => {
                // INTER_AREA: the sharpest for shrinking, and fine for enlarging.
                imgproc::resize(
                    &frame.image,
                    &mut self.scaled,
                    size,
                    0.0,
                    0.0,
                    imgproc::INTER_AREA,
                )
                .map_err(|err| {
                    frame_error(
                        &self.path,
                        index,
                        format!("cannot resize to {size:?}: {err}"),
                    )
                })?;
                &self.scaled
            }
            _ => &frame.image,
        };
        let mut jpeg = Vector::<u8>::new();
        let encoded =
            imgcodecs::imencode(".jpg", image, &mut jpeg, &self.params).map_err(|err| {
                frame_error(&self.path, index, format!("cannot encode as JPEG: {err}"))
            })?;
        if !encoded {
            return Err(frame_error(
                &self.path,
                index,
                "OpenCV cannot encode it as JPEG".into(),
            ));
        }
        Ok(EncodedFrame {
            index,
            pts_us: frame.pts_us,
            jpeg: jpeg.to_vec(),
            passthrough: false,
        })
    }
}

/// An open video, yielding its frames as JPEG in order: a [`Decoder`] and an [`Encoder`] on
/// the calling thread.
pub struct VideoSource {
    decoder: Decoder,
    encoder: Encoder,
    info: VideoInfo,
    /// The last frame, once encoded: its image buffer is reused for the next one.
    spare: Option<DecodedFrame>,
}

impl VideoSource {
    /// Opens `path` and decodes its first frame, so that a video that cannot be read is
    /// caught before anything is sent. `quality` is the JPEG quality, 1 to 100.
    pub fn open(path: &Path, quality: u8) -> Result<Self, ClientError> {
        Self::open_with(path, EncodeOptions::quality(quality))
    }

    /// Opens `path`, to encode its frames with `options`. The info has the size of the
    /// frames as encoded.
    pub fn open_with(path: &Path, options: EncodeOptions) -> Result<Self, ClientError> {
        let (decoder, mut info) = Decoder::open(path)?;
        if let Some(size) = options.resize {
            info.width = size.width;
            info.height = size.height;
        }
        let encoder = Encoder::new(path, options);
        Ok(Self {
            decoder,
            encoder,
            info,
            spare: None,
        })
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// Decodes and JPEG-encodes the next frame; `None` at the end of the video.
    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>, ClientError> {
        match self.decoder.next_frame_into(self.spare.take())? {
            Some(frame) => {
                let encoded = self.encoder.encode(&frame)?;
                self.spare = Some(frame);
                Ok(Some(encoded))
            }
            None => Ok(None),
        }
    }

    /// The decoder and the encoder, to run on different threads ([`Encoder::try_clone`]
    /// makes more encoders giving the same bytes).
    pub fn into_parts(self) -> (Decoder, Encoder, VideoInfo) {
        (self.decoder, self.encoder, self.info)
    }
}

impl Encoder {
    /// Another encoder with the same options, for another thread.
    pub fn try_clone(&self) -> Self {
        Self::new(&self.path, self.options)
    }
}

/// Reads a Motion-JPEG video's frames as stored, without decoding them: each packet of the
/// video stream is one JPEG file (OpenCV's FFmpeg backend in raw mode, `CAP_PROP_FORMAT` -1).
pub struct PacketReader {
    path: PathBuf,
    capture: videoio::VideoCapture,
    size: FrameSize,
    /// The first packet, read by `open` and not yet handed out, with its timestamp.
    first: Option<(Vec<u8>, i64)>,
    next_index: u64,
    packet: Mat,
    clock: Clock,
}

impl PacketReader {
    /// Opens `path` for passthrough when its frames are stored as JPEG images of the size
    /// `info` announces (a Motion-JPEG video); `None` when they are not (e.g. MPEG-4 or
    /// H.264, whose frames must be decoded and re-encoded) or when this OpenCV cannot read
    /// packets (the reason is logged at debug level).
    pub fn open(path: &Path, info: &VideoInfo) -> Option<Self> {
        let no_passthrough = |why: String| {
            tracing::debug!("{}: no passthrough: {why}", path.display());
            None
        };
        let mut capture = match open_capture(path, videoio::CAP_FFMPEG) {
            Ok(capture) => capture,
            Err(err) => return no_passthrough(err.to_string()),
        };
        match capture.set(videoio::CAP_PROP_FORMAT, -1.0) {
            Ok(true) => {}
            Ok(false) => return no_passthrough("OpenCV cannot read its packets".into()),
            Err(err) => return no_passthrough(err.to_string()),
        }
        let size = FrameSize {
            width: info.width,
            height: info.height,
        };
        let mut packet = Mat::default();
        let first = match read_packet(&mut capture, &mut packet) {
            Ok(Some(first)) => first,
            Ok(None) => return no_passthrough("no packet".into()),
            Err(err) => return no_passthrough(err.to_string()),
        };
        match jpeg_size(&first) {
            Some(found) if found == size => {}
            found => {
                return no_passthrough(format!("the first packet is not a {size} JPEG ({found:?})"))
            }
        }
        let mut clock = Clock::new(path, info.fps);
        let first_pts = clock.stamp();
        Some(Self {
            path: path.to_path_buf(),
            capture,
            size,
            first: Some((first, first_pts)),
            next_index: 0,
            packet,
            clock,
        })
    }

    /// The next frame as stored; `None` at the end of the video. A packet that is not a JPEG
    /// of the video's size is an error (the video may be re-encoded instead).
    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>, ClientError> {
        let index = self.next_index;
        let (jpeg, pts_us) = match self.first.take() {
            Some(first) => first,
            None => match read_packet(&mut self.capture, &mut self.packet)
                .map_err(|err| frame_error(&self.path, index, format!("cannot read: {err}")))?
            {
                Some(jpeg) => (jpeg, self.clock.stamp()),
                None => return Ok(None),
            },
        };
        if jpeg_size(&jpeg) != Some(self.size) {
            return Err(frame_error(
                &self.path,
                index,
                format!(
                    "it is not stored as a {} JPEG image like the frames before it: run again with --reencode",
                    self.size
                ),
            ));
        }
        self.next_index += 1;
        Ok(Some(EncodedFrame {
            index,
            pts_us,
            jpeg,
            passthrough: true,
        }))
    }
}

/// The next packet of the video stream, copied out of OpenCV; `None` at the end.
fn read_packet(
    capture: &mut videoio::VideoCapture,
    packet: &mut Mat,
) -> opencv::Result<Option<Vec<u8>>> {
    if !capture.read(packet)? || packet.empty() {
        return Ok(None);
    }
    Ok(Some(packet.data_bytes()?.to_vec()))
}

/// The width and height of a JPEG file, from its header (the protocol's one reader, the
/// rule the server checks frames by); `None` if `data` is not a JPEG file whose header can be
/// read.
pub fn jpeg_size(data: &[u8]) -> Option<FrameSize> {
    referee_protocol::jpeg::jpeg_size(data)
        .ok()
        .map(|(width, height)| FrameSize { width, height })
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

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Scalar, CV_8UC3};

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
            assert!(!frame.passthrough);
            assert_eq!(
                jpeg_size(&frame.jpeg),
                Some(FrameSize {
                    width: 64,
                    height: 48
                }),
                "frame {i}"
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
    fn separate_decoder_and_encoders_give_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_video(dir.path());
        let expected = all_frames(&path, 75);
        let (mut decoder, encoder, _) = VideoSource::open(&path, 75).unwrap().into_parts();
        let mut encoders = [encoder.try_clone(), encoder];
        let mut got = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            let encoder = &mut encoders[frame.index() as usize % 2];
            got.push(encoder.encode(&frame).unwrap());
        }
        assert_eq!(got, expected);
    }

    #[test]
    fn resize_changes_the_size_announced_and_encoded() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_video(dir.path());
        let size = FrameSize {
            width: 32,
            height: 20,
        };
        let options = EncodeOptions {
            quality: 90,
            resize: Some(size),
        };
        let mut source = VideoSource::open_with(&path, options).unwrap();
        assert_eq!((source.info().width, source.info().height), (32, 20));
        let frame = source.next_frame().unwrap().unwrap();
        assert_eq!(jpeg_size(&frame.jpeg), Some(size));
    }

    #[test]
    fn motion_jpeg_packets_pass_through_and_other_codecs_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = tiny_video(dir.path());
        let source = VideoSource::open(&path, 90).unwrap();
        let mut reader = PacketReader::open(&path, source.info()).unwrap();
        let packets: Vec<EncodedFrame> =
            std::iter::from_fn(|| reader.next_frame().unwrap()).collect();
        assert_eq!(packets.len(), 5);
        for (i, packet) in packets.iter().enumerate() {
            assert_eq!((packet.index, packet.pts_us), (i as u64, i as i64 * 40_000));
            assert!(packet.passthrough);
            // The stored file holds these bytes.
            let stored = std::fs::read(&path).unwrap();
            assert!(stored
                .windows(packet.jpeg.len())
                .any(|w| w == packet.jpeg.as_slice()));
        }

        // An MPEG-4 video has no JPEG packets.
        let mp4 = dir.path().join("tiny.mp4");
        let fourcc = videoio::VideoWriter::fourcc('m', 'p', '4', 'v').unwrap();
        let mut writer =
            videoio::VideoWriter::new(&mp4, fourcc, 25.0, Size::new(64, 48), true).unwrap();
        assert!(writer.is_opened().unwrap());
        for _ in 0..3 {
            let frame =
                Mat::new_rows_cols_with_default(48, 64, CV_8UC3, Scalar::all(80.0)).unwrap();
            writer.write(&frame).unwrap();
        }
        writer.release().unwrap();
        let source = VideoSource::open(&mp4, 90).unwrap();
        assert!(PacketReader::open(&mp4, source.info()).is_none());
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
}
