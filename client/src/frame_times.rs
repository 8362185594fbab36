//! The container's presentation time of each frame, read with FFmpeg's demuxer (no
//! decoding): OpenCV has none for the frames a B-frame decoder gives out at the end of a
//! video, nor for any packet it reads as stored (passthrough). The only module of the client
//! that links FFmpeg.
//!
//! Packets come in decoding order; their presentation times, sorted, are the frames' in
//! display order. A frame's time is settled once [`REORDER`] more packets have been read
//! (no codec reorders frames further: H.264 holds at most 16), so the video is read once,
//! alongside the decoder, keeping a few times at once. Packets before the stream's start
//! (what an MP4 edit list cuts) are not shown, and left out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Once;

use ffmpeg::{format, media, Packet, Rational};
use ffmpeg_next as ffmpeg;

/// Packets read ahead before the earliest time among them is a frame's.
const REORDER: usize = 16;

/// The presentation times of a video's frames, in display order.
pub struct FrameTimes {
    /// `None` once the end of the file (or an error) is reached.
    input: Option<format::context::Input>,
    stream: usize,
    time_base: Rational,
    /// The stream's first shown time, in `time_base` units, when the container says.
    start: Option<i64>,
    pending: BinaryHeap<Reverse<i64>>,
    packet: Packet,
}

/// The codec of `path`'s audio track, when it has one FFmpeg can see (e.g. `aac`).
pub fn audio_codec(path: &Path) -> Option<String> {
    let input = ffmpeg::init().and_then(|()| format::input(path)).ok()?;
    let stream = input.streams().best(media::Type::Audio)?;
    Some(stream.parameters().id().name().to_string())
}

/// The recording's start time as `path`'s container gives it (`creation_time`, RFC 3339), of
/// the file or else of its video stream.
pub fn recorded_at(path: &Path) -> Option<String> {
    let input = ffmpeg::init().and_then(|()| format::input(path)).ok()?;
    if let Some(at) = input.metadata().get("creation_time") {
        return Some(at.to_string());
    }
    let stream = input.streams().best(media::Type::Video)?;
    let at = stream.metadata().get("creation_time").map(str::to_string);
    at
}

impl FrameTimes {
    /// Opens `path`'s best video stream; `None` when FFmpeg cannot read it (the reason is
    /// logged at debug level: the frames then get times from the announced rate).
    pub fn open(path: &Path) -> Option<Self> {
        static QUIET: Once = Once::new();
        QUIET.call_once(|| ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal));
        let opened = ffmpeg::init().and_then(|()| format::input(path));
        let input = match opened {
            Ok(input) => input,
            Err(err) => {
                tracing::debug!("{}: no container timestamps: {err}", path.display());
                return None;
            }
        };
        let stream = input.streams().best(media::Type::Video)?;
        let (index, time_base, start) = (stream.index(), stream.time_base(), stream.start_time());
        let start = (start != ffmpeg::ffi::AV_NOPTS_VALUE).then_some(start);
        Some(Self {
            input: Some(input),
            stream: index,
            time_base,
            start,
            pending: BinaryHeap::new(),
            packet: Packet::empty(),
        })
    }

    /// The container time of the next frame in display order, in microseconds; `None` when
    /// the container has no more.
    pub fn next_us(&mut self) -> Option<i64> {
        while self.pending.len() <= REORDER && self.read_one() {}
        let Reverse(t) = self.pending.pop()?;
        let (num, den) = (self.time_base.numerator(), self.time_base.denominator());
        if den == 0 {
            return None;
        }
        Some((t as f64 * f64::from(num) * 1e6 / f64::from(den)).round() as i64)
    }

    /// Reads the next packet of the video stream that has a time; false at the end.
    fn read_one(&mut self) -> bool {
        let Some(input) = self.input.as_mut() else {
            return false;
        };
        loop {
            match self.packet.read(input) {
                Ok(()) if self.packet.stream() == self.stream => {
                    let Some(t) = self.packet.pts().or(self.packet.dts()) else {
                        continue;
                    };
                    if self.start.is_some_and(|start| t < start) {
                        continue;
                    }
                    self.pending.push(Reverse(t));
                    return true;
                }
                Ok(()) => {}
                Err(err) => {
                    if err != ffmpeg::Error::Eof {
                        tracing::debug!("reading the container's timestamps stopped: {err}");
                    }
                    self.input = None;
                    return false;
                }
            }
        }
    }
}
