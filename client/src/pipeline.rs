//! Makes the frames of a session on threads of their own, overlapping with the sending:
//!
//! - **re-encode**: one thread decodes the video; a pool of encoders, one per core, JPEG
//!   encodes the frames (frame `i` goes to encoder `i % n`); the frames are collected back
//!   in index order. Every encoder gives the bytes [`VideoSource::next_frame`] gives.
//! - **passthrough**: when the video is Motion-JPEG and neither `--quality`, `--resize` nor
//!   `--reencode` is asked for, its stored JPEG frames are sent as they are, read on one
//!   thread without decoding.
//!
//! Memory is bounded: each encoder holds at most [`WORK_QUEUE`] frames waiting and as many
//! done, and at most [`FRAME_QUEUE`] frames wait for the sender. When the sender waits for
//! ACKs, the threads block.
//!
//! No OpenCV here: [`crate::source`] does the decoding and encoding.

use std::path::Path;
use std::sync::mpsc as std_mpsc;

use tokio::sync::mpsc;

use crate::error::ClientError;
use crate::source::{
    DecodedFrame, EncodeOptions, EncodedFrame, FrameSize, PacketReader, VideoInfo, VideoSource,
    DEFAULT_QUALITY,
};

/// Frames that may wait between the frame threads and the sender.
pub const FRAME_QUEUE: usize = 16;
/// Frames that may wait for each encoder, and done frames that may wait in each encoder.
pub const WORK_QUEUE: usize = 2;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameOptions {
    /// `--quality`: re-encode at this quality. Without it, re-encoded frames get
    /// [`DEFAULT_QUALITY`] and Motion-JPEG videos pass through.
    pub quality: Option<u8>,
    /// `--resize`: re-encode at this size.
    pub resize: Option<FrameSize>,
    /// `--reencode`: re-encode even a Motion-JPEG video.
    pub reencode: bool,
}

/// The frames of a video, ready to be made.
pub enum Frames {
    /// The video's own JPEG frames, as stored.
    Passthrough {
        reader: PacketReader,
        info: VideoInfo,
    },
    /// Decoded and JPEG-encoded at `quality`.
    Reencode { source: VideoSource, quality: u8 },
}

impl Frames {
    /// Opens `path` and decodes its first frame (a video that cannot be read is caught
    /// before anything is sent), then picks passthrough when the options allow it and the
    /// video stores its frames as JPEG images.
    pub fn open(path: &Path, options: FrameOptions) -> Result<Self, ClientError> {
        let quality = options.quality.unwrap_or(DEFAULT_QUALITY);
        let source = VideoSource::open_with(
            path,
            EncodeOptions {
                quality,
                resize: options.resize,
            },
        )?;
        let may_pass = !options.reencode && options.quality.is_none() && options.resize.is_none();
        if may_pass {
            if let Some(reader) = PacketReader::open(path, source.info()) {
                let info = source.info().clone();
                return Ok(Self::Passthrough { reader, info });
            }
        }
        Ok(Self::Reencode { source, quality })
    }

    pub fn info(&self) -> &VideoInfo {
        match self {
            Self::Passthrough { info, .. } => info,
            Self::Reencode { source, .. } => source.info(),
        }
    }

    /// The JPEG quality of re-encoded frames; `None` for passthrough.
    pub fn quality(&self) -> Option<u8> {
        match self {
            Self::Passthrough { .. } => None,
            Self::Reencode { quality, .. } => Some(*quality),
        }
    }

    pub fn is_passthrough(&self) -> bool {
        matches!(self, Self::Passthrough { .. })
    }

    /// One line for the user: how the frames are made.
    pub fn describe(&self) -> String {
        let info = self.info();
        match self {
            Self::Passthrough { .. } => format!(
                "Frames: sending the video's own {}x{} JPEG frames as stored (Motion-JPEG passthrough; --reencode re-encodes them)",
                info.width, info.height
            ),
            Self::Reencode { quality, .. } => format!(
                "Frames: decoding and re-encoding as {}x{} JPEG, quality {quality}, on {} encoder threads",
                info.width,
                info.height,
                encoder_threads()
            ),
        }
    }

    /// Starts making the frames on their own threads; they arrive in index order, each
    /// `Ok`, then possibly one `Err` that ends them. The threads stop at the end of the
    /// video, after an error, or when the receiver is dropped.
    pub fn spawn(self) -> Result<mpsc::Receiver<Result<EncodedFrame, ClientError>>, ClientError> {
        match self {
            Self::Passthrough { reader, .. } => spawn_passthrough(reader),
            Self::Reencode { source, .. } => spawn_reencode(source, encoder_threads()),
        }
    }
}

/// Encoder threads: `REFEREE_ENCODE_THREADS` when set (1 to 64), else one per core this
/// process may use.
pub fn encoder_threads() -> usize {
    std::env::var("REFEREE_ENCODE_THREADS")
        .ok()
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), ClientError> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(body)
        .map(|_| ())
        .map_err(|source| ClientError::Thread {
            what: name.to_string(),
            source,
        })
}

fn spawn_passthrough(
    mut reader: PacketReader,
) -> Result<mpsc::Receiver<Result<EncodedFrame, ClientError>>, ClientError> {
    let (sender, receiver) = mpsc::channel(FRAME_QUEUE);
    spawn_thread("read-packets", move || {
        while let Some(next) = reader.next_frame().transpose() {
            let failed = next.is_err();
            if sender.blocking_send(next).is_err() || failed {
                break;
            }
        }
    })?;
    Ok(receiver)
}

/// Decodes `source` on one thread and encodes on `workers` threads (at least 1).
pub fn spawn_reencode(
    source: VideoSource,
    workers: usize,
) -> Result<mpsc::Receiver<Result<EncodedFrame, ClientError>>, ClientError> {
    let workers = workers.max(1);
    let (mut decoder, encoder, _) = source.into_parts();
    let mut to_encoders = Vec::with_capacity(workers);
    let mut from_encoders = Vec::with_capacity(workers);
    let mut encoders: Vec<_> = (1..workers).map(|_| encoder.try_clone()).collect();
    encoders.push(encoder);
    // Encoded frames go back to the decoder, which decodes into their memory again.
    let (recycle_tx, recycle_rx) = std_mpsc::sync_channel::<DecodedFrame>(workers * WORK_QUEUE);
    for (n, mut encoder) in encoders.into_iter().enumerate() {
        let recycle = recycle_tx.clone();
        let (work_tx, work_rx) =
            std_mpsc::sync_channel::<Result<DecodedFrame, ClientError>>(WORK_QUEUE);
        let (done_tx, done_rx) = std_mpsc::sync_channel(WORK_QUEUE);
        spawn_thread(&format!("encode-{n}"), move || {
            for work in work_rx {
                let done = work.and_then(|frame| {
                    let encoded = encoder.encode(&frame);
                    let _ = recycle.try_send(frame);
                    encoded
                });
                let failed = done.is_err();
                if done_tx.send(done).is_err() || failed {
                    break;
                }
            }
        })?;
        to_encoders.push(work_tx);
        from_encoders.push(done_rx);
    }
    // The decoder hands frame i (or its error) to encoder i % workers...
    drop(recycle_tx);
    spawn_thread("decode", move || {
        for turn in 0.. {
            let next = decoder
                .next_frame_into(recycle_rx.try_recv().ok())
                .transpose();
            let Some(work) = next else { break };
            let failed = work.is_err();
            if to_encoders[turn % workers].send(work).is_err() || failed {
                break;
            }
        }
    })?;
    // ...and the frames are collected from the encoders in the same order.
    let (sender, receiver) = mpsc::channel(FRAME_QUEUE);
    spawn_thread("collect-frames", move || {
        for turn in 0.. {
            // A closed encoder: the video ended (or failed) before frame `turn`.
            let Ok(done) = from_encoders[turn % workers].recv() else {
                break;
            };
            let failed = done.is_err();
            if sender.blocking_send(done).is_err() || failed {
                break;
            }
        }
    })?;
    Ok(receiver)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(dir: &Path, name: &str, frames: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        let spec = referee_sample_data::SyntheticVideo {
            frames,
            fps: 25.0,
            width: 96,
            height: 64,
        };
        referee_sample_data::write_video(&path, &spec).unwrap();
        path
    }

    fn collect(mut rx: mpsc::Receiver<Result<EncodedFrame, ClientError>>) -> Vec<EncodedFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = rx.blocking_recv() {
            frames.push(frame.unwrap());
        }
        frames
    }

    fn sequential(path: &Path, quality: u8) -> Vec<EncodedFrame> {
        let mut source = VideoSource::open(path, quality).unwrap();
        std::iter::from_fn(|| source.next_frame().unwrap()).collect()
    }

    #[test]
    fn parallel_encoding_gives_the_sequential_bytes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = video(dir.path(), "v.mp4", 23);
        let expected = sequential(&path, 80);
        for workers in [1, 2, 3, 8] {
            let source = VideoSource::open(&path, 80).unwrap();
            let got = collect(spawn_reencode(source, workers).unwrap());
            assert_eq!(got, expected, "{workers} workers");
        }
    }

    #[test]
    fn motion_jpeg_passes_through_unless_a_change_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let avi = video(dir.path(), "v.avi", 7);
        let frames = Frames::open(&avi, FrameOptions::default()).unwrap();
        assert!(frames.is_passthrough());
        assert_eq!(frames.quality(), None);
        let sent = collect(frames.spawn().unwrap());
        assert_eq!(sent.len(), 7);
        assert!(sent.iter().all(|f| f.passthrough));
        assert!(sent.iter().enumerate().all(|(i, f)| f.index == i as u64));

        for options in [
            FrameOptions {
                reencode: true,
                ..FrameOptions::default()
            },
            FrameOptions {
                quality: Some(90),
                ..FrameOptions::default()
            },
            FrameOptions {
                resize: Some(FrameSize {
                    width: 48,
                    height: 32,
                }),
                ..FrameOptions::default()
            },
        ] {
            let frames = Frames::open(&avi, options).unwrap();
            assert!(!frames.is_passthrough(), "{options:?}");
            let sent = collect(frames.spawn().unwrap());
            assert_eq!(sent.len(), 7);
            assert!(sent.iter().all(|f| !f.passthrough));
        }
        let reencoded = collect(
            Frames::open(
                &avi,
                FrameOptions {
                    reencode: true,
                    ..FrameOptions::default()
                },
            )
            .unwrap()
            .spawn()
            .unwrap(),
        );
        assert_eq!(reencoded, sequential(&avi, DEFAULT_QUALITY));

        let mp4 = video(dir.path(), "v.mp4", 3);
        let frames = Frames::open(&mp4, FrameOptions::default()).unwrap();
        assert!(!frames.is_passthrough());
        assert_eq!(frames.quality(), Some(DEFAULT_QUALITY));
    }

    #[test]
    fn frames_carry_the_containers_own_times() {
        use referee_sample_data::{write_timed_video, TimedCodec, TimedVideo};
        let dir = tempfile::tempdir().unwrap();
        let reencode = FrameOptions {
            reencode: true,
            ..FrameOptions::default()
        };
        for (name, spec, options, passthrough) in [
            // H.264 with B-frames (and an MP4 edit list), 30 fps then 15 fps.
            (
                "vfr.mp4",
                TimedVideo::thirty_then_fifteen(96, 64, TimedCodec::H264),
                FrameOptions::default(),
                false,
            ),
            // Motion-JPEG, passed through and re-encoded.
            (
                "vfr.mov",
                TimedVideo::thirty_then_fifteen(96, 64, TimedCodec::Mjpeg),
                FrameOptions::default(),
                true,
            ),
            (
                "vfr.mov",
                TimedVideo::thirty_then_fifteen(96, 64, TimedCodec::Mjpeg),
                reencode,
                false,
            ),
            // A constant 29.97 fps.
            (
                "ntsc.mp4",
                TimedVideo::ntsc(96, 64, 40, TimedCodec::H264),
                FrameOptions::default(),
                false,
            ),
        ] {
            let path = dir.path().join(name);
            let expected = write_timed_video(&path, &spec).unwrap();
            let frames = Frames::open(&path, options).unwrap();
            assert_eq!(frames.is_passthrough(), passthrough, "{name}");
            let sent: Vec<i64> = collect(frames.spawn().unwrap())
                .iter()
                .map(|f| f.pts_us)
                .collect();
            assert_eq!(sent, expected, "{name} {options:?}");
        }
    }

    #[test]
    fn a_dropped_receiver_stops_the_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = video(dir.path(), "v.mp4", 40);
        let source = VideoSource::open(&path, 80).unwrap();
        let mut rx = spawn_reencode(source, 2).unwrap();
        assert!(rx.blocking_recv().is_some());
        drop(rx);
        // Nothing to assert but that this returns: the threads end on their own.
    }
}
