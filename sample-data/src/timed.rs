//! Videos whose frames carry their own timestamps, written through FFmpeg's libraries
//! (OpenCV's `VideoWriter` only writes one constant rate): a variable frame rate as phones
//! record it (e.g. 30 fps, then 15 fps when the light drops), or an exact fractional rate
//! such as 29.97 fps. And [`frame_times_us`], which decodes a video with FFmpeg and returns
//! each frame's presentation time, to check what a player shows and when.

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::{codec, encoder, format, frame, media, Dictionary, Packet, Rational};
use ffmpeg_next as ffmpeg;
use opencv::core::Mat;
use opencv::imgproc;
use opencv::prelude::*;

use crate::{draw_background, draw_frame_at, SampleError, SyntheticVideo};

/// The time base of the written streams: 90 kHz, as in MPEG, so that 30, 25, 15 and
/// 30000/1001 fps frames all last a whole number of ticks.
const TICKS_PER_S: i32 = 90_000;

/// How the frames are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimedCodec {
    /// H.264 (libx264, with B-frames: the MP4 gets an edit list), e.g. in `.mp4`.
    H264,
    /// Motion-JPEG, e.g. in `.mov` or `.mkv`: each frame is a JPEG file, as the client can
    /// send without re-encoding.
    Mjpeg,
}

/// `frames` frames at `fps_num / fps_den` frames per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stretch {
    pub frames: u32,
    pub fps_num: i32,
    pub fps_den: i32,
}

/// A video of one or more stretches at their own frame rates, one after the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedVideo {
    pub width: i32,
    pub height: i32,
    pub codec: TimedCodec,
    pub stretches: Vec<Stretch>,
    /// The recording's start time written in the container (`creation_time`, RFC 3339).
    pub recorded_at: Option<String>,
}

impl TimedVideo {
    /// 30 fps for 3 s, then 15 fps for 3 s: 135 frames, a variable frame rate.
    pub fn thirty_then_fifteen(width: i32, height: i32, codec: TimedCodec) -> Self {
        Self {
            width,
            height,
            codec,
            stretches: vec![
                Stretch {
                    frames: 90,
                    fps_num: 30,
                    fps_den: 1,
                },
                Stretch {
                    frames: 45,
                    fps_num: 15,
                    fps_den: 1,
                },
            ],
            recorded_at: None,
        }
    }

    /// `frames` frames at a constant 30000/1001 (29.97) fps.
    pub fn ntsc(width: i32, height: i32, frames: u32, codec: TimedCodec) -> Self {
        Self {
            width,
            height,
            codec,
            stretches: vec![Stretch {
                frames,
                fps_num: 30_000,
                fps_den: 1001,
            }],
            recorded_at: None,
        }
    }

    pub fn frame_count(&self) -> u32 {
        self.stretches.iter().map(|s| s.frames).sum()
    }

    /// Each frame's presentation time in 90 kHz ticks, the first at 0.
    fn ticks(&self) -> Vec<i64> {
        let mut ticks = Vec::new();
        let mut start = 0i64;
        for s in &self.stretches {
            let per_frame = f64::from(TICKS_PER_S) * f64::from(s.fps_den) / f64::from(s.fps_num);
            ticks.extend((0..s.frames).map(|k| start + (f64::from(k) * per_frame).round() as i64));
            start += (f64::from(s.frames) * per_frame).round() as i64;
        }
        ticks
    }

    /// Each frame's presentation time in microseconds, the first at 0.
    pub fn times_us(&self) -> Vec<i64> {
        self.ticks().iter().map(|&t| ticks_to_us(t)).collect()
    }

    fn check(&self) -> Result<(), SampleError> {
        let bad = |why: String| Err(SampleError::InvalidSpec(why));
        if self.frame_count() == 0 {
            return bad("a timed video needs at least 1 frame".into());
        }
        if self
            .stretches
            .iter()
            .any(|s| s.fps_num <= 0 || s.fps_den <= 0)
        {
            return bad("every stretch needs a frame rate above 0".into());
        }
        if self.width % 2 == 1 || self.height % 2 == 1 || self.width < 16 || self.height < 16 {
            return bad(format!(
                "size {}x{} must be even, 16 pixels or more each way",
                self.width, self.height
            ));
        }
        Ok(())
    }
}

fn ticks_to_us(ticks: i64) -> i64 {
    (ticks as f64 * 1e6 / f64::from(TICKS_PER_S)).round() as i64
}

/// Writes `spec` at `path` (the container follows the extension), each frame with its own
/// presentation time; returns those times in microseconds. The frames are the sample's
/// (frame counter and time in the corner, a moving bar and disc).
pub fn write_timed_video(path: &Path, spec: &TimedVideo) -> Result<Vec<i64>, SampleError> {
    spec.check()?;
    let ff = |what: &'static str| {
        move |source: ffmpeg::Error| SampleError::Ffmpeg {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    let cv = |what: &'static str| {
        move |source: opencv::Error| SampleError::OpenCv {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    ffmpeg::init().map_err(ff("initialising FFmpeg"))?;
    let ticks = spec.ticks();
    let (name, pixel) = match spec.codec {
        TimedCodec::H264 => ("libx264", Pixel::YUV420P),
        TimedCodec::Mjpeg => ("mjpeg", Pixel::YUVJ420P),
    };
    let codec = encoder::find_by_name(name).ok_or_else(|| SampleError::WriterNotOpened {
        path: path.to_path_buf(),
        fourcc: format!("{name} (this FFmpeg has no such encoder)"),
    })?;
    let mut output = format::output(path).map_err(ff("creating the file"))?;
    let global_header = output
        .format()
        .flags()
        .contains(format::Flags::GLOBAL_HEADER);
    let time_base = Rational::new(1, TICKS_PER_S);
    let first = spec.stretches[0];
    let mut context = codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()
        .map_err(ff("making the encoder"))?;
    context.set_width(spec.width.unsigned_abs());
    context.set_height(spec.height.unsigned_abs());
    context.set_format(pixel);
    context.set_time_base(time_base);
    context.set_frame_rate(Some(Rational::new(first.fps_num, first.fps_den)));
    context.set_bit_rate(8_000_000);
    if global_header {
        context.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut options = Dictionary::new();
    if spec.codec == TimedCodec::H264 {
        // "veryfast" keeps B-frames (and so reordered timestamps and an MP4 edit list).
        options.set("preset", "veryfast");
        options.set("crf", "20");
    }
    let mut encoder = context
        .open_with(options)
        .map_err(ff("opening the encoder"))?;
    let mut stream = output.add_stream(codec).map_err(ff("adding the stream"))?;
    stream.set_parameters(&encoder);
    stream.set_time_base(time_base);
    if let Some(at) = &spec.recorded_at {
        let mut metadata = Dictionary::new();
        metadata.set("creation_time", at);
        output.set_metadata(metadata);
    }
    output.write_header().map_err(ff("writing the header"))?;
    let stream_time_base = output.stream(0).map_or(time_base, |s| s.time_base());

    let total = spec.frame_count();
    let drawing = SyntheticVideo {
        frames: total,
        fps: f64::from(first.fps_num) / f64::from(first.fps_den),
        width: spec.width,
        height: spec.height,
    };
    let background = draw_background(&drawing).map_err(cv("drawing the background"))?;
    let mut picture =
        frame::Video::new(pixel, spec.width.unsigned_abs(), spec.height.unsigned_abs());
    let mut packet = Packet::empty();
    let mut planes = Mat::default();
    let mut drain = |encoder: &mut encoder::Video,
                     output: &mut format::context::Output|
     -> Result<(), SampleError> {
        while encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(0);
            packet.rescale_ts(time_base, stream_time_base);
            packet
                .write_interleaved(output)
                .map_err(ff("writing a frame"))?;
        }
        Ok(())
    };
    for (index, &pts) in (0..total).zip(&ticks) {
        let bgr = draw_frame_at(
            &drawing,
            &background,
            index,
            f64::from(index),
            total,
            ticks_to_us(pts) as f64 / 1e6,
        )
        .map_err(cv("drawing a frame"))?;
        imgproc::cvt_color_def(&bgr, &mut planes, imgproc::COLOR_BGR2YUV_I420)
            .map_err(cv("converting a frame"))?;
        copy_i420(&planes, &mut picture).map_err(cv("copying a frame"))?;
        picture.set_pts(Some(pts));
        encoder
            .send_frame(&picture)
            .map_err(ff("encoding a frame"))?;
        drain(&mut encoder, &mut output)?;
    }
    encoder.send_eof().map_err(ff("flushing the encoder"))?;
    drain(&mut encoder, &mut output)?;
    output.write_trailer().map_err(ff("finishing the file"))?;
    Ok(spec.times_us())
}

/// Copies an OpenCV I420 image (Y, then U, then V) into `picture`'s planes.
fn copy_i420(i420: &Mat, picture: &mut frame::Video) -> opencv::Result<()> {
    let (width, height) = (picture.width() as usize, picture.height() as usize);
    let bytes = i420.data_bytes()?;
    let (luma, chroma) = bytes.split_at((width * height).min(bytes.len()));
    let (u, v) = chroma.split_at(chroma.len() / 2);
    for (plane, (source, plane_width)) in [(luma, width), (u, width / 2), (v, width / 2)]
        .into_iter()
        .enumerate()
    {
        let stride = picture.stride(plane);
        let data = picture.data_mut(plane);
        for (row, line) in source.chunks_exact(plane_width).enumerate() {
            if let Some(target) = data.get_mut(row * stride..row * stride + plane_width) {
                target.copy_from_slice(line);
            }
        }
    }
    Ok(())
}

/// Decodes the video at `path` with FFmpeg and returns the presentation time of each frame
/// a player shows, in microseconds from the container's zero, in display order (B-frames
/// reordered, frames an edit list cuts left out).
pub fn frame_times_us(path: &Path) -> Result<Vec<i64>, SampleError> {
    let ff = |what: &'static str| {
        move |source: ffmpeg::Error| SampleError::Ffmpeg {
            path: path.to_path_buf(),
            what,
            source,
        }
    };
    ffmpeg::init().map_err(ff("initialising FFmpeg"))?;
    let mut input = format::input(path).map_err(ff("opening the file"))?;
    let stream =
        input
            .streams()
            .best(media::Type::Video)
            .ok_or_else(|| SampleError::ReaderNotOpened {
                path: path.to_path_buf(),
            })?;
    let index = stream.index();
    let time_base = stream.time_base();
    let mut decoder = codec::context::Context::from_parameters(stream.parameters())
        .map_err(ff("reading the stream's parameters"))?
        .decoder()
        .video()
        .map_err(ff("opening the decoder"))?;
    let mut picture = frame::Video::empty();
    let mut times = Vec::new();
    let to_us = |t: i64| {
        (t as f64 * f64::from(time_base.numerator()) * 1e6 / f64::from(time_base.denominator()))
            .round() as i64
    };
    let mut take = |decoder: &mut ffmpeg::decoder::Video, times: &mut Vec<i64>| {
        while decoder.receive_frame(&mut picture).is_ok() {
            if let Some(t) = picture.timestamp().or(picture.pts()) {
                times.push(to_us(t));
            }
        }
    };
    for (stream, packet) in input.packets() {
        if stream.index() == index {
            decoder
                .send_packet(&packet)
                .map_err(ff("decoding a frame"))?;
            take(&mut decoder, &mut times);
        }
    }
    decoder.send_eof().map_err(ff("flushing the decoder"))?;
    take(&mut decoder, &mut times);
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stretches_give_exact_times() {
        let vfr = TimedVideo::thirty_then_fifteen(64, 48, TimedCodec::H264);
        let t = vfr.times_us();
        assert_eq!(t.len(), 135);
        assert_eq!(
            (t[0], t[1], t[89], t[90], t[91]),
            (0, 33_333, 2_966_667, 3_000_000, 3_066_667)
        );
        let ntsc = TimedVideo::ntsc(64, 48, 301, TimedCodec::H264);
        assert_eq!(ntsc.times_us()[300], 10_010_000);
    }

    #[test]
    fn written_videos_read_back_with_their_own_times() {
        let dir = tempfile::tempdir().unwrap();
        for (name, codec) in [
            ("vfr.mp4", TimedCodec::H264),
            ("vfr.mov", TimedCodec::Mjpeg),
        ] {
            let path = dir.path().join(name);
            let spec = TimedVideo::thirty_then_fifteen(96, 64, codec);
            let written = write_timed_video(&path, &spec).unwrap();
            assert_eq!(frame_times_us(&path).unwrap(), written, "{name}");
        }
    }
}
