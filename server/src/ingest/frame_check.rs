//! Checks of a frame beyond its header: its payload is an image of the announced encoding
//! and size (read from its header only; the image is not decoded), and its timestamp comes
//! after the previous frame's.

use referee_protocol::jpeg::jpeg_size;
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
            let (w, h) = jpeg_size(payload).map_err(|e| e.to_string())?;
            if (w, h) != (width, height) {
                return Err(format!(
                    "the JPEG is {w}x{h}, but SESSION_START announced {width}x{height}"
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::ImageFormat;

    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn the_largest_jpeg_an_encoder_makes_is_well_within_the_size_rule() {
        // Pure noise at quality 100 (no chroma subsampling): the worst case for JPEG.
        let (w, h) = (256u32, 256u32);
        let mut seed = 0x2545_f491_u32;
        let img = image::RgbImage::from_fn(w, h, |_, _| {
            let mut byte = || {
                seed ^= seed << 13;
                seed ^= seed >> 17;
                seed ^= seed << 5;
                seed as u8
            };
            image::Rgb([byte(), byte(), byte()])
        });
        let mut out = Cursor::new(Vec::new());
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100)
            .encode_image(&img)
            .unwrap();
        let len = out.into_inner().len() as u64;
        // About 4 bytes a pixel: half the rule's 8, at most.
        let per_pixel = len as f64 / f64::from(w * h);
        assert!(
            len < referee_protocol::frame::max_payload_bytes(w, h) / 2,
            "{per_pixel} bytes a pixel"
        );
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
