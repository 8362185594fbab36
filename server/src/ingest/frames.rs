//! The checks a frame passes before it is handed to the writer, with the limits they take
//! (computed once per session, from its announced size): its size, its header, a frame sent
//! again after a resume, its timestamp, its payload, the session's total bytes. Pure: no I/O,
//! no clock, tested in-process.

use std::collections::VecDeque;

use bytes::Bytes;
use referee_protocol::frame::{check_timestamp, decode_frame, Frame, FrameHeaderError};
use referee_protocol::{ErrorCode, FrameEncoding, FrameHeader, FRAME_HEADER_LEN};

use super::frame_check;
use super::Refusal;
use crate::settings::Limits;

/// What a session's frames may be, from its announced size and the server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeLimits {
    pub encoding: FrameEncoding,
    pub width: u32,
    pub height: u32,
    /// The frames the client may have in flight (`Limits::session_window`).
    pub window: u32,
    /// The server's `--max-frame-bytes`.
    pub max_frame_bytes: u32,
    /// The largest payload of a frame of this size (`Limits::session_max_frame_bytes`).
    pub session_max_frame_bytes: u32,
    /// `--max-session-bytes`.
    pub max_session_bytes: u64,
}

impl IntakeLimits {
    pub fn new(limits: &Limits, encoding: FrameEncoding, width: u32, height: u32) -> Self {
        Self {
            encoding,
            width,
            height,
            window: limits.session_window(width, height),
            max_frame_bytes: limits.max_frame_bytes,
            session_max_frame_bytes: limits.session_max_frame_bytes(width, height),
            max_session_bytes: limits.max_session_bytes,
        }
    }
}

/// A binary message that passed the header checks.
#[derive(Debug)]
pub enum Intake {
    /// A frame not seen before, to check against the state and [`FrameIntake::admit`].
    New(Frame),
    /// A frame already stored, sent again with the same checksum: dropped.
    Duplicate { index: u64 },
}

/// The frame checks of one session, and what they remember between frames.
#[derive(Debug)]
pub struct FrameIntake {
    limits: IntakeLimits,
    /// Payload bytes stored before this connection, plus those admitted on it.
    bytes_total: u64,
    /// Index and timestamp of the last frame stored or admitted, which the next must follow.
    last_pts: Option<(u64, i64)>,
    /// Index and CRC32C of the last frames stored (at most the window), to recognise a frame
    /// sent again after a resume.
    recent: VecDeque<(u64, u32)>,
}

impl FrameIntake {
    /// The intake of a session that has `bytes_stored` payload bytes stored.
    pub fn new(limits: IntakeLimits, bytes_stored: u64) -> Self {
        Self {
            limits,
            bytes_total: bytes_stored,
            last_pts: None,
            recent: VecDeque::new(),
        }
    }

    /// Continues after frames already stored: `checksums` are the stored frames' CRC32Cs in
    /// order (the last window of them are remembered) and `last_pts` the last one's index and
    /// timestamp.
    pub fn resume_after(&mut self, checksums: &[u32], last_pts: Option<(u64, i64)>) {
        let first = checksums.len().saturating_sub(self.limits.window as usize);
        self.recent = checksums[first..]
            .iter()
            .enumerate()
            .map(|(i, &crc)| ((first + i) as u64, crc))
            .collect();
        self.last_pts = last_pts;
    }

    pub fn limits(&self) -> &IntakeLimits {
        &self.limits
    }

    pub fn bytes_total(&self) -> u64 {
        self.bytes_total
    }

    /// Checks a binary message's size and header; `next_frame` is the index the session
    /// expects, to recognise a frame already stored.
    pub fn read(&self, message: Bytes, next_frame: u64) -> Result<Intake, Refusal> {
        let IntakeLimits {
            width,
            height,
            max_frame_bytes: max,
            session_max_frame_bytes: session_max,
            ..
        } = self.limits;
        let payload_len = message.len().saturating_sub(FRAME_HEADER_LEN);
        if payload_len > max.min(session_max) as usize {
            let index = index_of(&message);
            let why = if session_max < max {
                format!("larger than any {width}x{height} JPEG can be ({session_max} bytes: 8 bytes a pixel and 64 KiB of headers): send JPEGs of the size SESSION_START announced")
            } else {
                format!("larger than the server's limit of {max} bytes: lower the JPEG quality or the resolution")
            };
            return Err(Refusal::new(
                ErrorCode::FrameTooLarge,
                format!("frame {index} has a {payload_len}-byte payload, {why}"),
            ));
        }
        let frame = decode_frame(message).map_err(|err| {
            let code = match err {
                FrameHeaderError::ChecksumMismatch { .. } => ErrorCode::ChecksumMismatch,
                FrameHeaderError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
                _ => ErrorCode::BadFrameHeader,
            };
            Refusal::new(code, err.to_string())
        })?;
        let FrameHeader { index, crc32c, .. } = frame.header;
        let duplicate = index < next_frame
            && self
                .recent
                .iter()
                .any(|&(i, crc)| i == index && crc == crc32c);
        Ok(if duplicate {
            Intake::Duplicate { index }
        } else {
            Intake::New(frame)
        })
    }

    /// Checks a new frame's timestamp and payload and the session's total bytes, and
    /// remembers it once it passes.
    pub fn admit(&mut self, frame: &Frame) -> Result<(), Refusal> {
        let FrameHeader {
            index,
            pts_us,
            crc32c,
            ..
        } = frame.header;
        check_timestamp(self.last_pts, index, pts_us)
            .map_err(|why| Refusal::new(ErrorCode::FrameOutOfOrder, why.to_string()))?;
        let IntakeLimits {
            encoding,
            width,
            height,
            window,
            max_session_bytes: limit,
            ..
        } = self.limits;
        frame_check::check_payload(&frame.payload, encoding, width, height).map_err(|why| {
            Refusal::new(
                ErrorCode::InvalidFramePayload,
                format!("frame {index}: {why}"),
            )
        })?;
        let bytes_total = self.bytes_total + frame.payload.len() as u64;
        if bytes_total > limit {
            return Err(Refusal::new(
                ErrorCode::SessionTooLarge,
                format!("frame {index} takes the session past the server's limit of {limit} bytes per session; the frames before it are kept"),
            ));
        }
        self.bytes_total = bytes_total;
        self.last_pts = Some((index, pts_us));
        self.recent.push_back((index, crc32c));
        if self.recent.len() > window as usize {
            self.recent.pop_front();
        }
        Ok(())
    }
}

/// The index a binary message's header claims, 0 if it has no readable header: for the
/// message that refuses it.
pub fn index_of(message: &[u8]) -> u64 {
    FrameHeader::parse(message).map_or(0, |h| h.index)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Cursor;

    use referee_protocol::frame::encode_frame;

    use super::*;

    const W: u32 = 16;
    const H: u32 = 8;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        picture(w, h, 30)
    }

    fn picture(w: u32, h: u32, blue: u8) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, blue]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    fn limits() -> IntakeLimits {
        IntakeLimits {
            encoding: FrameEncoding::Jpeg,
            width: W,
            height: H,
            window: 4,
            max_frame_bytes: 1_000_000,
            session_max_frame_bytes: 100_000,
            max_session_bytes: 10_000,
        }
    }

    fn message(index: u64, pts_us: i64) -> Bytes {
        encode_frame(index, pts_us, 0, &jpeg(W, H)).unwrap()
    }

    /// Reads and admits frame `index`, as a connection in `receiving` does.
    fn take(intake: &mut FrameIntake, index: u64, pts_us: i64) -> Result<Intake, Refusal> {
        let read = intake.read(message(index, pts_us), index)?;
        if let Intake::New(frame) = &read {
            intake.admit(frame)?;
        }
        Ok(read)
    }

    fn code(result: Result<Intake, Refusal>) -> ErrorCode {
        result.expect_err("refused").code
    }

    #[test]
    fn frames_in_order_are_admitted_and_counted() {
        let mut intake = FrameIntake::new(limits(), 0);
        for i in 0..3 {
            assert!(matches!(
                take(&mut intake, i, i as i64 * 40_000),
                Ok(Intake::New(_))
            ));
        }
        assert_eq!(intake.bytes_total(), 3 * jpeg(W, H).len() as u64);
    }

    #[test]
    fn a_frame_larger_than_its_size_allows_is_refused_before_its_header_is_checked() {
        let intake = FrameIntake::new(limits(), 0);
        let mut big = message(7, 0).to_vec();
        big.resize(FRAME_HEADER_LEN + 100_001, 0);
        let refusal = intake.read(Bytes::from(big), 7).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::FrameTooLarge);
        assert!(
            refusal
                .message
                .starts_with("frame 7 has a 100001-byte payload, larger than any 16x8 JPEG"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn a_damaged_header_or_payload_gets_its_own_code() {
        let intake = FrameIntake::new(limits(), 0);
        let mut bad = message(0, 0).to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xFF;
        assert_eq!(
            code(intake.read(Bytes::from(bad), 0)),
            ErrorCode::ChecksumMismatch
        );
        let not_a_frame = Bytes::from_static(b"hello");
        assert_eq!(code(intake.read(not_a_frame, 0)), ErrorCode::BadFrameHeader);
    }

    #[test]
    fn a_timestamp_that_goes_back_is_refused() {
        let mut intake = FrameIntake::new(limits(), 0);
        take(&mut intake, 0, 40_000).unwrap();
        assert_eq!(
            code(take(&mut intake, 1, 40_000)),
            ErrorCode::FrameOutOfOrder
        );
    }

    #[test]
    fn a_jpeg_of_another_size_is_refused_with_its_index() {
        let mut intake = FrameIntake::new(limits(), 0);
        let other = encode_frame(0, 0, 0, &jpeg(W * 2, H)).unwrap();
        let Intake::New(frame) = intake.read(other, 0).unwrap() else {
            panic!("not new")
        };
        let refusal = intake.admit(&frame).unwrap_err();
        assert_eq!(refusal.code, ErrorCode::InvalidFramePayload);
        assert!(
            refusal.message.contains("frame 0: the JPEG is 32x8"),
            "{}",
            refusal.message
        );
    }

    #[test]
    fn the_frame_that_passes_the_session_limit_is_refused_and_not_counted() {
        let size = jpeg(W, H).len() as u64;
        let mut intake = FrameIntake::new(limits(), 10_000 - size);
        take(&mut intake, 0, 0).unwrap();
        assert_eq!(code(take(&mut intake, 1, 1)), ErrorCode::SessionTooLarge);
        assert_eq!(intake.bytes_total(), 10_000);
    }

    #[test]
    fn a_stored_frame_sent_again_is_a_duplicate_only_with_the_same_checksum() {
        let mut intake = FrameIntake::new(limits(), 0);
        let stored: Vec<u32> = (0..6)
            .map(|i| FrameHeader::parse(&message(i, i as i64)).unwrap().crc32c)
            .collect();
        intake.resume_after(&stored, Some((5, 5)));
        // The last window (4) of the stored frames are remembered.
        assert!(matches!(
            intake.read(message(5, 5), 6),
            Ok(Intake::Duplicate { index: 5 })
        ));
        assert!(matches!(
            intake.read(message(2, 2), 6),
            Ok(Intake::Duplicate { index: 2 })
        ));
        assert!(matches!(intake.read(message(1, 1), 6), Ok(Intake::New(_))));
        // Another picture under a stored index is not a duplicate.
        let other = encode_frame(5, 5, 0, &picture(W, H, 200)).unwrap();
        assert!(matches!(intake.read(other, 6), Ok(Intake::New(_))));
        // The next frame must follow the last stored one's timestamp.
        assert_eq!(code(take(&mut intake, 6, 5)), ErrorCode::FrameOutOfOrder);
        assert!(take(&mut intake, 6, 6).is_ok());
    }
}
