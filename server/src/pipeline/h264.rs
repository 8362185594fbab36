//! H.264 in MP4 written through FFmpeg's libx264 directly, with a chosen preset.
//!
//! OpenCV's `VideoWriter` (4.6) opens x264 with its slowest-but-one defaults and passes it no
//! options (`OPENCV_FFMPEG_WRITER_OPTIONS` only picks hardware encoders there): that encode
//! alone took half of the processing time of a 720p session. Here the operator's preset
//! (`--video-preset`) and a constant quality are set, and the MP4 is written with its index
//! first (`faststart`), so a browser starts playing it before it has the whole file.
//!
//! Each frame keeps its own timestamp (a video whose frame rate varies stays as it was
//! recorded): the stream counts time in 90 kHz ticks, in which frames at 30, 25, 15 or
//! 29.97 fps last a whole number of ticks.
//!
//! Frames come in as OpenCV I420 images (`COLOR_BGR2YUV_I420`: the Y plane, then U, then V,
//! BT.601 limited range, as the stream is tagged).

use std::path::Path;
use std::sync::Once;

use ffmpeg::format::Pixel;
use ffmpeg::{codec, color, encoder, format, frame, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use opencv::core::Mat;
use opencv::prelude::*;

use super::StageError;

/// x264's presets, fastest first: what `--video-preset` accepts.
pub const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// x264's constant rate factor: its default, visually close to the JPEG frames at quality 90.
const CRF: &str = "23";

/// x264 keeps a picture (and its scaled-down copies) per frame thread and per frame of
/// lookahead: at 4K, 20 to 30 MB each. Left to itself it runs 1.5 threads per core and looks
/// up to 60 frames ahead (at the slower presets), gigabytes on a large machine; these bound
/// it. 3 threads is what x264 chooses on 2 cores.
const MAX_THREADS: usize = 3;
/// Frames of lookahead at most (x264's default is 10 at `veryfast`, 40 at `medium`, 60 at
/// `slower` and beyond).
const MAX_LOOKAHEAD: u32 = 20;

/// x264's default lookahead at each of [`PRESETS`].
const PRESET_LOOKAHEAD: [u32; 10] = [0, 0, 10, 20, 30, 40, 50, 60, 60, 60];

/// The x264 threads for this machine: as x264 would choose, at most [`MAX_THREADS`].
fn threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores * 3 / 2).clamp(1, MAX_THREADS)
}

/// The lookahead of `preset`, at most [`MAX_LOOKAHEAD`] frames.
fn lookahead(preset: &str) -> u32 {
    PRESETS
        .iter()
        .position(|p| *p == preset)
        .map_or(MAX_LOOKAHEAD, |i| PRESET_LOOKAHEAD[i])
        .min(MAX_LOOKAHEAD)
}

/// Keeps FFmpeg's log for errors: x264 prints its settings and statistics at the info
/// level, the MJPEG decoder its warnings about each damaged frame.
pub(super) fn quiet_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Error));
}

/// An open H.264 MP4 file being written.
pub struct H264Writer {
    output: format::context::Output,
    encoder: encoder::Video,
    frame: frame::Video,
    packet: Packet,
    time_base: Rational,
    stream_time_base: Rational,
    /// The last frame's timestamp, in ticks of `time_base`.
    last_pts: Option<i64>,
}

/// The time base frames are encoded in: 90 kHz.
const TICKS_PER_S: i32 = 90_000;

/// A frame timestamp in microseconds as ticks of 1/[`TICKS_PER_S`] s.
fn ticks(pts_us: i64) -> i64 {
    (pts_us as f64 * f64::from(TICKS_PER_S) / 1e6).round() as i64
}

/// Why the H.264 writer could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum H264Error {
    #[error("this FFmpeg has no libx264 encoder")]
    NoEncoder,
    #[error("H.264 needs an even width and height, the frames are {0}x{1}")]
    OddSize(u32, u32),
    #[error("FFmpeg: {0}")]
    Ffmpeg(#[from] ffmpeg::Error),
}

impl From<H264Error> for StageError {
    fn from(err: H264Error) -> Self {
        StageError::Other(format!("writing H.264: {err}"))
    }
}

/// The frame rate as an exact fraction where it is a usual one (30, 29.97 as 30000/1001).
fn frame_rate(fps: f64) -> Rational {
    for den in [1, 1001] {
        let num = (fps * f64::from(den)).round();
        if num >= 1.0 && num < f64::from(i32::MAX) && (num / f64::from(den) - fps).abs() < 1e-6 {
            return Rational::new(num as i32, den);
        }
    }
    Rational::from(fps)
}

impl H264Writer {
    /// Creates `path` for `width` x `height` frames at `fps` (on average: each frame is
    /// written at its own time), encoded with x264's `preset`.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        preset: &str,
    ) -> Result<Self, H264Error> {
        Self::create_tuned(path, width, height, fps, preset, None)
    }

    /// [`H264Writer::create`] with x264's `tune` too (`zerolatency` for clips: no frame
    /// held back for lookahead or B-frames, so a short file is done as soon as its last
    /// frame is in).
    pub fn create_tuned(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
        preset: &str,
        tune: Option<&str>,
    ) -> Result<Self, H264Error> {
        quiet_logs();
        if width % 2 == 1 || height % 2 == 1 {
            return Err(H264Error::OddSize(width, height));
        }
        let codec = encoder::find_by_name("libx264").ok_or(H264Error::NoEncoder)?;
        let mut output = format::output(path)?;
        let global_header = output
            .format()
            .flags()
            .contains(format::Flags::GLOBAL_HEADER);
        let rate = frame_rate(fps);
        let time_base = Rational::new(1, TICKS_PER_S);

        let mut context = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()?;
        context.set_width(width);
        context.set_height(height);
        context.set_format(Pixel::YUV420P);
        context.set_frame_rate(Some(rate));
        context.set_time_base(time_base);
        context.set_colorspace(color::Space::SMPTE170M);
        context.set_color_range(color::Range::MPEG);
        if global_header {
            context.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut options = Dictionary::new();
        options.set("preset", preset);
        options.set("crf", CRF);
        options.set("threads", &threads().to_string());
        options.set("rc-lookahead", &lookahead(preset).to_string());
        if let Some(tune) = tune {
            options.set("tune", tune);
        }
        let encoder = context.open_with(options)?;

        let mut stream = output.add_stream(codec)?;
        stream.set_parameters(&encoder);
        stream.set_time_base(time_base);
        stream.set_rate(rate);
        stream.set_avg_frame_rate(rate);
        let mut muxer = Dictionary::new();
        muxer.set("movflags", "+faststart");
        output.write_header_with(muxer)?;
        // The muxer may have chosen another time base for the stream.
        let stream_time_base = output
            .stream(0)
            .map_or(time_base, |stream| stream.time_base());
        Ok(Self {
            output,
            encoder,
            frame: frame::Video::new(Pixel::YUV420P, width, height),
            packet: Packet::empty(),
            time_base,
            stream_time_base,
            last_pts: None,
        })
    }

    /// Encodes the next frame, an I420 image of `width` x `height * 3 / 2` bytes, shown at
    /// `pts_us` microseconds (after the frame before it).
    pub fn write(&mut self, i420: &Mat, pts_us: i64) -> Result<(), StageError> {
        let (width, height) = (self.frame.width() as usize, self.frame.height() as usize);
        let bytes = i420.data_bytes()?;
        if bytes.len() != width * height * 3 / 2 {
            return Err(StageError::Other(format!(
                "an I420 image of {} bytes for a {width}x{height} video",
                bytes.len()
            )));
        }
        let (luma, chroma) = bytes.split_at(width * height);
        let (u, v) = chroma.split_at(chroma.len() / 2);
        for (plane, (source, plane_width)) in [(luma, width), (u, width / 2), (v, width / 2)]
            .into_iter()
            .enumerate()
        {
            let stride = self.frame.stride(plane);
            let data = self.frame.data_mut(plane);
            for (row, line) in source.chunks_exact(plane_width).enumerate() {
                data[row * stride..row * stride + plane_width].copy_from_slice(line);
            }
        }
        // Two frames less than a tick apart stay in order, a tick apart.
        let pts = match self.last_pts {
            Some(last) => ticks(pts_us).max(last + 1),
            None => ticks(pts_us),
        };
        self.last_pts = Some(pts);
        self.frame.set_pts(Some(pts));
        // libx264 copies the picture when it is sent; every packet is taken right after, so
        // the frame's buffer is free again for the next one.
        self.encoder
            .send_frame(&self.frame)
            .map_err(H264Error::from)?;
        self.drain()
    }

    /// Flushes the encoder and finishes the file.
    pub fn finish(mut self) -> Result<(), StageError> {
        self.encoder.send_eof().map_err(H264Error::from)?;
        self.drain()?;
        self.output.write_trailer().map_err(H264Error::from)?;
        Ok(())
    }

    /// Writes the packets the encoder has ready.
    fn drain(&mut self) -> Result<(), StageError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => break,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => break,
                Err(err) => return Err(H264Error::from(err).into()),
            }
            self.packet.set_stream(0);
            self.packet
                .rescale_ts(self.time_base, self.stream_time_base);
            self.packet
                .write_interleaved(&mut self.output)
                .map_err(H264Error::from)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usual_frame_rates_are_exact() {
        assert_eq!(frame_rate(30.0), Rational::new(30, 1));
        assert_eq!(frame_rate(30000.0 / 1001.0), Rational::new(30000, 1001));
        assert_eq!(frame_rate(25.0), Rational::new(25, 1));
        let odd = frame_rate(12.345);
        assert!((f64::from(odd) - 12.345).abs() < 1e-6);
    }

    #[test]
    fn x264_threads_and_lookahead_are_bounded() {
        assert!((1..=MAX_THREADS).contains(&threads()));
        assert_eq!(lookahead("ultrafast"), 0);
        assert_eq!(lookahead("veryfast"), 10);
        assert_eq!(lookahead("faster"), 20);
        assert_eq!(lookahead("placebo"), MAX_LOOKAHEAD);
        assert_eq!(lookahead("unknown"), MAX_LOOKAHEAD);
    }

    #[test]
    fn usual_frame_times_are_whole_ticks() {
        // 29.97 fps: frame 300 at 10.01 s, as the client rounds it to the microsecond.
        let pts_us = referee_protocol::frame::pts_us(300, 30000.0 / 1001.0);
        assert_eq!(ticks(pts_us), 300 * 3003);
        assert_eq!(ticks(1_000_000 / 15), 6000);
        assert_eq!(ticks(33_333), 3000);
    }
}
