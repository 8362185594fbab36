//! Thumbnails: small JPEGs of the frames the report points at (each event's frame and the
//! start of the action leading to it), stored as `thumbnails/frame-NNNNNN.jpg` results.

use opencv::core::{Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::StageError;

/// The folder of thumbnails among a session's results.
pub const THUMBNAILS_DIR: &str = "thumbnails";
/// Width of a thumbnail in pixels (narrower videos keep their width).
pub const THUMBNAIL_WIDTH: u32 = 240;
const JPEG_QUALITY: i32 = 80;

/// The result name of the thumbnail of frame `index`, e.g. `thumbnails/frame-000036.jpg`.
pub fn thumbnail_name(index: u64) -> String {
    format!("{THUMBNAILS_DIR}/frame-{index:06}.jpg")
}

/// The `imdecode` flag that decodes a frame `width` pixels wide at the smallest scale
/// libjpeg offers that is still at least [`THUMBNAIL_WIDTH`] wide: a 4K frame is never
/// decoded whole for a thumbnail.
fn decode_flag(width: u32) -> i32 {
    [
        (8, imgcodecs::IMREAD_REDUCED_COLOR_8),
        (4, imgcodecs::IMREAD_REDUCED_COLOR_4),
        (2, imgcodecs::IMREAD_REDUCED_COLOR_2),
    ]
    .iter()
    .find(|(factor, _)| width >= THUMBNAIL_WIDTH * factor)
    .map_or(imgcodecs::IMREAD_COLOR, |&(_, flag)| flag)
}

/// A thumbnail of the JPEG frame `index` (`width` pixels wide), [`THUMBNAIL_WIDTH`] pixels
/// wide, as a JPEG.
pub fn thumbnail(index: u64, jpeg: &[u8], width: u32) -> Result<Vec<u8>, StageError> {
    let image = imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), decode_flag(width))?;
    let (width, height) = (image.cols(), image.rows());
    if image.empty() || width <= 0 || height <= 0 {
        return Err(StageError::Other(format!(
            "frame {index} cannot be decoded as a JPEG"
        )));
    }
    let w = (THUMBNAIL_WIDTH as i32).min(width);
    let h = ((f64::from(height) * f64::from(w) / f64::from(width)).round() as i32).max(1);
    let mut small = image;
    if w != width {
        let mut resized = opencv::core::Mat::default();
        imgproc::resize(
            &small,
            &mut resized,
            Size::new(w, h),
            0.0,
            0.0,
            imgproc::INTER_AREA,
        )?;
        small = resized;
    }
    let mut out = Vector::<u8>::new();
    let params = Vector::<i32>::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, JPEG_QUALITY]);
    if !imgcodecs::imencode(".jpg", &small, &mut out, &params)? {
        return Err(StageError::Other(format!(
            "cannot encode the thumbnail of frame {index}"
        )));
    }
    Ok(out.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Mat, Scalar, CV_8UC3};

    #[test]
    fn thumbnails_are_small_jpegs_with_the_aspect_ratio() {
        let img = Mat::new_rows_cols_with_default(480, 640, CV_8UC3, Scalar::all(128.0)).unwrap();
        let mut jpeg = Vector::<u8>::new();
        imgcodecs::imencode(".jpg", &img, &mut jpeg, &Vector::new()).unwrap();
        let thumb = thumbnail(7, jpeg.as_slice(), 640).unwrap();
        let back = imgcodecs::imdecode(&Vector::<u8>::from_slice(&thumb), imgcodecs::IMREAD_COLOR)
            .unwrap();
        assert_eq!((back.cols(), back.rows()), (240, 180));
        assert_eq!(thumbnail_name(7), "thumbnails/frame-000007.jpg");
        let err = thumbnail(9, b"nope", 640).unwrap_err().to_string();
        assert!(err.contains("frame 9"), "{err}");
    }

    #[test]
    fn large_frames_are_decoded_scaled_down() {
        assert_eq!(decode_flag(3840), imgcodecs::IMREAD_REDUCED_COLOR_8);
        assert_eq!(decode_flag(1280), imgcodecs::IMREAD_REDUCED_COLOR_4);
        assert_eq!(decode_flag(640), imgcodecs::IMREAD_REDUCED_COLOR_2);
        assert_eq!(decode_flag(320), imgcodecs::IMREAD_COLOR);
    }
}
