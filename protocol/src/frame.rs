//! The binary video-frame message: a fixed 32-byte little-endian header followed by the encoded
//! image.
//!
//! ```text
//! offset size field
//!      0    4 magic        b"RFRM"
//!      4    2 version      u16, = PROTOCOL_VERSION
//!      6    2 flags        u16, bit 0 = PASSTHROUGH; other bits must be 0
//!      8    8 index        u64, 0 for the first frame of a session, then +1 each frame
//!     16    8 pts_us       i64, presentation timestamp in microseconds from the video's start
//!     24    4 crc32c       u32, CRC32C (Castagnoli) of the payload
//!     28    4 payload_len  u32, length of the payload that follows
//!     32    n payload      the encoded image (e.g. a JPEG file)
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::PROTOCOL_VERSION;

/// The four bytes every frame message starts with.
pub const FRAME_MAGIC: [u8; 4] = *b"RFRM";
/// The length of the fixed header in bytes.
pub const FRAME_HEADER_LEN: usize = 32;

/// Frame flags (the `flags` field of [`FrameHeader`]).
pub mod flags {
    /// The payload is the source file's own encoded image, sent as it was stored (no
    /// re-encoding). Informational.
    pub const PASSTHROUGH: u16 = 1 << 0;
    /// Every flag bit this version defines.
    pub const KNOWN: u16 = PASSTHROUGH;
}

/// The decoded fixed header of a frame message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub version: u16,
    pub flags: u16,
    pub index: u64,
    pub pts_us: i64,
    pub crc32c: u32,
    pub payload_len: u32,
}

/// Why a frame message could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameHeaderError {
    #[error("frame message is {len} bytes, shorter than the {FRAME_HEADER_LEN}-byte frame header")]
    TooShort { len: usize },
    #[error("frame message does not start with the magic bytes \"RFRM\" (got {got:02x?})")]
    BadMagic { got: [u8; 4] },
    #[error("frame header has version {got}, this peer speaks version {PROTOCOL_VERSION}")]
    UnsupportedVersion { got: u16 },
    #[error("frame {index}: unknown flag bits {bits:#06x} are set")]
    UnknownFlags { index: u64, bits: u16 },
    #[error(
        "frame {index}: header announces a {announced}-byte payload but {actual} bytes follow it"
    )]
    LengthMismatch {
        index: u64,
        announced: u32,
        actual: usize,
    },
    #[error(
        "frame {index}: CRC32C of the payload is {actual:#010x}, the header says {announced:#010x}"
    )]
    ChecksumMismatch {
        index: u64,
        announced: u32,
        actual: u32,
    },
    #[error("frame payload of {len} bytes is larger than the 4 GiB a frame header can describe")]
    PayloadTooLarge { len: usize },
}

impl FrameHeader {
    /// A header for `payload`, with its length and CRC32C computed.
    pub fn for_payload(
        index: u64,
        pts_us: i64,
        flags: u16,
        payload: &[u8],
    ) -> Result<Self, FrameHeaderError> {
        let payload_len = u32::try_from(payload.len())
            .map_err(|_| FrameHeaderError::PayloadTooLarge { len: payload.len() })?;
        Ok(Self {
            version: PROTOCOL_VERSION,
            flags,
            index,
            pts_us,
            crc32c: crc32c::crc32c(payload),
            payload_len,
        })
    }

    /// Writes the 32 header bytes.
    pub fn write_to(&self, out: &mut impl BufMut) {
        out.put_slice(&FRAME_MAGIC);
        out.put_u16_le(self.version);
        out.put_u16_le(self.flags);
        out.put_u64_le(self.index);
        out.put_i64_le(self.pts_us);
        out.put_u32_le(self.crc32c);
        out.put_u32_le(self.payload_len);
    }

    /// Reads the 32 header bytes at the start of `buf`, checking magic, version and flags.
    /// The payload length and checksum are checked by [`decode_frame`].
    pub fn parse(buf: &[u8]) -> Result<Self, FrameHeaderError> {
        let Some(header) = buf.get(..FRAME_HEADER_LEN) else {
            return Err(FrameHeaderError::TooShort { len: buf.len() });
        };
        let field = |at: usize, n: usize| &header[at..at + n];
        let magic: [u8; 4] = [header[0], header[1], header[2], header[3]];
        if magic != FRAME_MAGIC {
            return Err(FrameHeaderError::BadMagic { got: magic });
        }
        let le_u16 = |at| u16::from_le_bytes([header[at], header[at + 1]]);
        let le_u32 = |at| {
            let mut b = [0u8; 4];
            b.copy_from_slice(field(at, 4));
            u32::from_le_bytes(b)
        };
        let le_u64 = |at| {
            let mut b = [0u8; 8];
            b.copy_from_slice(field(at, 8));
            u64::from_le_bytes(b)
        };
        let version = le_u16(4);
        if version != PROTOCOL_VERSION {
            return Err(FrameHeaderError::UnsupportedVersion { got: version });
        }
        let flags = le_u16(6);
        let index = le_u64(8);
        if flags & !flags::KNOWN != 0 {
            return Err(FrameHeaderError::UnknownFlags {
                index,
                bits: flags & !flags::KNOWN,
            });
        }
        Ok(Self {
            version,
            flags,
            index,
            pts_us: le_u64(16) as i64,
            crc32c: le_u32(24),
            payload_len: le_u32(28),
        })
    }
}

/// The presentation time of frame `index` of a video at `fps`, in microseconds: what a client
/// that has no better timestamps sends (`round(index * 1_000_000 / fps)`).
pub fn pts_us(index: u64, fps: f64) -> i64 {
    (index as f64 * 1e6 / fps).round() as i64
}

/// Bytes a JPEG may take per pixel of its announced size: twice what an encoder makes at
/// worst (quality 100 on pure noise takes about 4), so that only a payload that cannot be the
/// image it claims to be is refused.
pub const MAX_JPEG_BYTES_PER_PIXEL: u64 = 8;
/// Bytes a JPEG may take beyond its pixels: headers, tables, EXIF and other metadata.
pub const MAX_JPEG_HEADER_BYTES: u64 = 64 * 1024;

/// The largest payload a frame of a `width`x`height` session may have, whatever the server's
/// own limit (`max_frame_bytes`, which applies too): [`MAX_JPEG_BYTES_PER_PIXEL`] bytes per
/// pixel plus [`MAX_JPEG_HEADER_BYTES`]. A larger payload cannot be a JPEG of that size, and
/// is refused with `frame_too_large` before it is stored.
pub fn max_payload_bytes(width: u32, height: u32) -> u64 {
    (u64::from(width) * u64::from(height))
        .saturating_mul(MAX_JPEG_BYTES_PER_PIXEL)
        .saturating_add(MAX_JPEG_HEADER_BYTES)
}

/// Why a frame's timestamp cannot follow the frame before it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("frame {index} has pts_us {pts_us}: the first frame's timestamp must be 0 or more, and each next one larger")]
    Negative { index: u64, pts_us: i64 },
    #[error("frame {index} has pts_us {pts_us}, not after the {previous_pts} of frame {previous} before it: timestamps must increase from frame to frame (e.g. round(index * 1000000 / fps))")]
    NotIncreasing {
        index: u64,
        pts_us: i64,
        previous: u64,
        previous_pts: i64,
    },
}

/// Checks that frame `index` with timestamp `pts_us` may follow `previous` (the index and
/// timestamp of the frame before it, `None` for the first frame): timestamps start at 0 or
/// more and increase from frame to frame, so that signal events can be lined up with frames.
pub fn check_timestamp(
    previous: Option<(u64, i64)>,
    index: u64,
    pts_us: i64,
) -> Result<(), TimestampError> {
    match previous {
        Some((previous, previous_pts)) if pts_us <= previous_pts => {
            Err(TimestampError::NotIncreasing {
                index,
                pts_us,
                previous,
                previous_pts,
            })
        }
        None if pts_us < 0 => Err(TimestampError::Negative { index, pts_us }),
        _ => Ok(()),
    }
}

/// A decoded frame message. `payload` shares the message's buffer (no copy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub header: FrameHeader,
    pub payload: Bytes,
}

/// Builds a frame message: header and payload in one buffer, ready to send as a binary
/// WebSocket message.
pub fn encode_frame(
    index: u64,
    pts_us: i64,
    flags: u16,
    payload: &[u8],
) -> Result<Bytes, FrameHeaderError> {
    let header = FrameHeader::for_payload(index, pts_us, flags, payload)?;
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
    header.write_to(&mut out);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Decodes a frame message, checking the header, the payload length and the CRC32C. The
/// returned payload is a slice of `message` (no copy).
pub fn decode_frame(message: Bytes) -> Result<Frame, FrameHeaderError> {
    let header = FrameHeader::parse(&message)?;
    let actual = message.len() - FRAME_HEADER_LEN;
    if actual != header.payload_len as usize {
        return Err(FrameHeaderError::LengthMismatch {
            index: header.index,
            announced: header.payload_len,
            actual,
        });
    }
    let payload = message.slice(FRAME_HEADER_LEN..);
    let crc = crc32c::crc32c(&payload);
    if crc != header.crc32c {
        return Err(FrameHeaderError::ChecksumMismatch {
            index: header.index,
            announced: header.crc32c,
            actual: crc,
        });
    }
    Ok(Frame { header, payload })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_bounded_by_the_announced_size() {
        assert_eq!(max_payload_bytes(1, 1), 8 + 64 * 1024);
        assert_eq!(max_payload_bytes(1280, 720), 1280 * 720 * 8 + 64 * 1024);
        // Any dimensions, even past the protocol's limit, give a bound without overflow.
        assert_eq!(max_payload_bytes(u32::MAX, u32::MAX), u64::MAX);
    }

    #[test]
    fn timestamps_must_increase_from_zero_or_more() {
        assert!(check_timestamp(None, 0, 0).is_ok());
        assert!(check_timestamp(Some((0, 0)), 1, 33_333).is_ok());
        let err = check_timestamp(None, 0, -1).unwrap_err().to_string();
        assert!(err.contains("frame 0 has pts_us -1"), "{err}");
        let err = check_timestamp(Some((4, 133_333)), 5, 133_333)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("frame 5 has pts_us 133333, not after the 133333 of frame 4"),
            "{err}"
        );
        assert!(check_timestamp(Some((4, 133_333)), 5, 100).is_err());
    }

    #[test]
    fn pts_rounds_to_the_microsecond() {
        assert_eq!(pts_us(0, 29.97), 0);
        assert_eq!(pts_us(1, 29.97), 33_367);
        assert_eq!(pts_us(30, 30.0), 1_000_000);
    }

    #[test]
    fn round_trip_keeps_every_field_and_the_payload() {
        let payload = b"\xff\xd8 not really a jpeg \xff\xd9";
        let msg = encode_frame(41, 1_366_666, flags::PASSTHROUGH, payload).unwrap();
        assert_eq!(msg.len(), FRAME_HEADER_LEN + payload.len());
        let frame = decode_frame(msg.clone()).unwrap();
        assert_eq!(frame.header.index, 41);
        assert_eq!(frame.header.pts_us, 1_366_666);
        assert_eq!(frame.header.flags, flags::PASSTHROUGH);
        assert_eq!(frame.header.version, PROTOCOL_VERSION);
        assert_eq!(&frame.payload[..], payload);
        // Zero-copy: the payload points into the message buffer.
        assert_eq!(frame.payload.as_ptr(), msg[FRAME_HEADER_LEN..].as_ptr());
    }

    #[test]
    fn header_layout_is_little_endian_and_fixed() {
        let msg = encode_frame(0x0102, -5, 0, b"abc").unwrap();
        assert_eq!(&msg[0..4], b"RFRM");
        assert_eq!(&msg[4..6], &[1, 0]);
        assert_eq!(&msg[8..16], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&msg[16..24], &(-5i64).to_le_bytes());
        assert_eq!(&msg[24..28], &crc32c::crc32c(b"abc").to_le_bytes());
        assert_eq!(&msg[28..32], &[3, 0, 0, 0]);
    }

    #[test]
    fn crc32c_is_castagnoli() {
        // The standard check value of CRC-32C.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn rejects_short_bad_magic_version_flags_length_and_crc() {
        let good = encode_frame(7, 0, 0, b"payload").unwrap();
        assert!(matches!(
            decode_frame(good.slice(..10)),
            Err(FrameHeaderError::TooShort { len: 10 })
        ));

        let mut bad = good.to_vec();
        bad[0] = b'X';
        assert!(matches!(
            decode_frame(bad.into()),
            Err(FrameHeaderError::BadMagic { .. })
        ));

        let mut bad = good.to_vec();
        bad[4] = 9;
        assert!(matches!(
            decode_frame(bad.into()),
            Err(FrameHeaderError::UnsupportedVersion { got: 9 })
        ));

        let mut bad = good.to_vec();
        bad[7] = 0x80;
        assert!(matches!(
            decode_frame(bad.into()),
            Err(FrameHeaderError::UnknownFlags { index: 7, .. })
        ));

        let mut bad = good.to_vec();
        bad.push(0);
        assert!(matches!(
            decode_frame(bad.into()),
            Err(FrameHeaderError::LengthMismatch {
                index: 7,
                announced: 7,
                actual: 8
            })
        ));

        let mut bad = good.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let err = decode_frame(bad.into()).unwrap_err();
        assert!(matches!(
            err,
            FrameHeaderError::ChecksumMismatch { index: 7, .. }
        ));
        assert!(err.to_string().starts_with("frame 7: CRC32C"));
    }
}
