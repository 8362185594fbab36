//! Checks of a frame beyond its header: its payload is an image of the announced encoding
//! and size (read from its header only; the image is not decoded), and its timestamp comes
//! after the previous frame's.

use std::io::Cursor;

use image::{ImageFormat, ImageReader};
use referee_protocol::FrameEncoding;

/// Returns why `payload` is not a `width`×`height` image in `encoding`, if it is not.
pub fn check_payload(
    payload: &[u8],
    encoding: FrameEncoding,
    width: u32,
    height: u32,
) -> Result<(), String> {
    match encoding {
        FrameEncoding::Jpeg => {
            if !payload.starts_with(&[0xFF, 0xD8, 0xFF]) {
                return Err(
                    "the payload is not a JPEG image (it does not start with FF D8 FF)".into(),
                );
            }
            let (w, h) = ImageReader::with_format(Cursor::new(payload), ImageFormat::Jpeg)
                .into_dimensions()
                .map_err(|e| format!("the JPEG header cannot be read: {e}"))?;
            if (w, h) != (width, height) {
                return Err(format!(
                    "the JPEG is {w}x{h}, but SESSION_START announced {width}x{height}"
                ));
            }
            Ok(())
        }
    }
}

/// Returns why frame `index` with timestamp `pts_us` cannot follow `previous` (the index and
/// timestamp of the frame stored before it, `None` for the first frame), if it cannot:
/// timestamps start at 0 or more and increase from frame to frame, so that signal events
/// can be lined up with frames.
pub fn check_timestamp(
    previous: Option<(u64, i64)>,
    index: u64,
    pts_us: i64,
) -> Result<(), String> {
    match previous {
        Some((before, before_pts)) if pts_us <= before_pts => Err(format!(
            "frame {index} has pts_us {pts_us}, not after the {before_pts} of frame {before} before it: timestamps must increase from frame to frame (e.g. round(index * 1000000 / fps))"
        )),
        None if pts_us < 0 => Err(format!(
            "frame {index} has pts_us {pts_us}: the first frame's timestamp must be 0 or more, and each next one larger"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_must_increase_from_zero_or_more() {
        assert!(check_timestamp(None, 0, 0).is_ok());
        assert!(check_timestamp(Some((0, 0)), 1, 33_333).is_ok());
        let err = check_timestamp(None, 0, -1).unwrap_err();
        assert!(err.contains("frame 0 has pts_us -1"), "{err}");
        let err = check_timestamp(Some((4, 133_333)), 5, 133_333).unwrap_err();
        assert!(
            err.contains("frame 5 has pts_us 133333, not after the 133333 of frame 4"),
            "{err}"
        );
        assert!(check_timestamp(Some((4, 133_333)), 5, 100).is_err());
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn accepts_the_announced_size_only() {
        let j = jpeg(32, 16);
        assert!(check_payload(&j, FrameEncoding::Jpeg, 32, 16).is_ok());
        let err = check_payload(&j, FrameEncoding::Jpeg, 640, 480).unwrap_err();
        assert!(err.contains("32x16"), "{err}");
        let err = check_payload(b"GIF89a....", FrameEncoding::Jpeg, 32, 16).unwrap_err();
        assert!(err.contains("not a JPEG"), "{err}");
        let err = check_payload(&j[..6], FrameEncoding::Jpeg, 32, 16).unwrap_err();
        assert!(err.contains("cannot be read"), "{err}");
    }
}
