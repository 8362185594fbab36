//! The size a JPEG image says it has, read from its header alone (the image is not
//! decoded): the one reader both sides use, so that the client checks its frames by the rule
//! the server applies to them.

use thiserror::Error;

/// Why a JPEG's size cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum JpegHeaderError {
    #[error("the payload is not a JPEG image (it does not start with FF D8 FF)")]
    NotJpeg,
    #[error("the JPEG header cannot be read: it is cut short at byte {at}")]
    Truncated { at: usize },
    #[error("the JPEG header cannot be read: no marker at byte {at} (found 0x{byte:02X})")]
    NoMarker { at: usize, byte: u8 },
    #[error("the JPEG has no frame header (SOF) before its image data")]
    NoFrameHeader,
    #[error("the JPEG's frame header says {width}x{height}")]
    ZeroSize { width: u32, height: u32 },
}

/// The width and height of a JPEG image, from its first SOF (start of frame) marker segment.
pub fn jpeg_size(data: &[u8]) -> Result<(u32, u32), JpegHeaderError> {
    if !data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(JpegHeaderError::NotJpeg);
    }
    let truncated = |at| JpegHeaderError::Truncated { at };
    let mut at = 2;
    loop {
        let (&byte, &marker) = data.get(at).zip(data.get(at + 1)).ok_or(truncated(at))?;
        if byte != 0xFF {
            return Err(JpegHeaderError::NoMarker { at, byte });
        }
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Markers without a length.
            0x01 | 0xD0..=0xD8 => at += 2,
            // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC): length, precision, height,
            // width.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                let segment = data.get(at + 5..at + 9).ok_or(truncated(at))?;
                let height = u32::from(u16::from_be_bytes([segment[0], segment[1]]));
                let width = u32::from(u16::from_be_bytes([segment[2], segment[3]]));
                if width == 0 || height == 0 {
                    return Err(JpegHeaderError::ZeroSize { width, height });
                }
                return Ok((width, height));
            }
            // Start of scan or end of image before any SOF.
            0xDA | 0xD9 => return Err(JpegHeaderError::NoFrameHeader),
            _ => {
                let len = data.get(at + 2..at + 4).ok_or(truncated(at))?;
                at += 2 + usize::from(u16::from_be_bytes([len[0], len[1]]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_comes_from_the_sof_segment() {
        // SOI, an APP0 segment of 4 bytes, then SOF0 for 0x0140 x 0x00F0 (320x240).
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00,
            0xF0, 0x01, 0x40, 0x03,
        ];
        assert_eq!(jpeg_size(&jpeg), Ok((320, 240)));
        assert_eq!(
            jpeg_size(&jpeg[..12]),
            Err(JpegHeaderError::Truncated { at: 8 })
        );
        assert_eq!(
            jpeg_size(b"\x00\x00\x01\xb3 mpeg"),
            Err(JpegHeaderError::NotJpeg)
        );
        assert_eq!(
            jpeg_size(&[0xFF, 0xD8, 0xFF, 0xD9]),
            Err(JpegHeaderError::NoFrameHeader)
        );
        assert_eq!(jpeg_size(&[]), Err(JpegHeaderError::NotJpeg));
        let mut zero = jpeg;
        zero[15] = 0;
        zero[16] = 0;
        assert_eq!(
            jpeg_size(&zero),
            Err(JpegHeaderError::ZeroSize {
                width: 0,
                height: 240
            })
        );
    }

    #[test]
    fn a_byte_that_is_no_marker_is_refused_with_its_place() {
        let jpeg = [0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0xAA, 0xBB, 0x12, 0xC0];
        assert_eq!(
            jpeg_size(&jpeg),
            Err(JpegHeaderError::NoMarker { at: 8, byte: 0x12 })
        );
    }

    #[test]
    fn any_bytes_end_in_an_answer() {
        // Lengths of 0 and 1 still move on; nothing reads past the end.
        for len in 0..64usize {
            let mut data = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00];
            data.extend((0..len).map(|i| (i * 37) as u8));
            let _ = jpeg_size(&data);
        }
    }
}
