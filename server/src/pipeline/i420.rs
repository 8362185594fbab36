//! Stored JPEG frames decoded to the H.264 encoder's pictures: I420 (the Y plane, then U,
//! then V, 4:2:0, BT.601 limited range), as one contiguous image of `width` x `height * 3 / 2`
//! bytes.
//!
//! A 4:2:0 JPEG (what OpenCV and most encoders write) is already Y, Cb and Cr planes: FFmpeg's
//! MJPEG decoder hands them over as they are, and only the full range of JPEG is mapped to
//! the limited range of video, byte by byte, while the planes are copied. That skips the
//! conversion to BGR and back that OpenCV's `imdecode` + `COLOR_BGR2YUV_I420` does, half of a
//! frame's decoding time. Any other JPEG (4:2:2 or 4:4:4 chroma, grayscale), or a machine
//! whose FFmpeg has no MJPEG decoder, goes through OpenCV as before.

use ffmpeg::format::Pixel;
use ffmpeg::{codec, color, decoder, frame, Packet};
use ffmpeg_next as ffmpeg;
use opencv::core::{self, Mat, Scalar, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::StageError;

/// Decodes stored frames of one size to I420 images; one per decoding thread.
pub struct I420Decoder {
    width: u32,
    height: u32,
    /// FFmpeg's MJPEG decoder, where this FFmpeg has one.
    mjpeg: Option<decoder::Video>,
    decoded: frame::Video,
}

/// Full-range (JPEG) luma to limited-range (video) luma: 0..=255 to 16..=235.
const LUMA: [u8; 256] = range_table(219);
/// Full-range chroma to limited-range chroma: 0..=255 to 16..=240, 128 staying 128.
const CHROMA: [u8; 256] = range_table(224);

/// The table mapping a full-range sample to `128 + (v - 128) * span / 255` for chroma
/// (`span` 224) or `16 + v * span / 255` for luma (`span` 219), rounded.
const fn range_table(span: i32) -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut v = 0;
    while v < 256 {
        let scaled = if span == 219 {
            16 * 255 + v * span
        } else {
            128 * 255 + (v - 128) * span
        };
        // Rounded to the nearest (scaled is never negative: at least 16 * 255).
        table[v as usize] = ((scaled + 127) / 255) as u8;
        v += 1;
    }
    table
}

impl I420Decoder {
    /// A decoder for frames of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            mjpeg: open_mjpeg(),
            decoded: frame::Video::empty(),
        }
    }

    /// Frame `index`'s JPEG `jpeg` as an I420 image, checked to be of this decoder's size.
    pub fn decode(&mut self, index: u64, jpeg: &[u8]) -> Result<Mat, StageError> {
        if let Some(image) = self.decode_planes(jpeg) {
            return image;
        }
        let bgr = decode_bgr(index, jpeg, self.width, self.height)?;
        let mut planes = Mat::default();
        imgproc::cvt_color_def(&bgr, &mut planes, imgproc::COLOR_BGR2YUV_I420)?;
        Ok(planes)
    }

    /// The I420 image of a 4:2:0 JPEG through FFmpeg; `None` when FFmpeg cannot decode it
    /// or it is not 4:2:0 (OpenCV then decodes it, and says why if it cannot either).
    fn decode_planes(&mut self, jpeg: &[u8]) -> Option<Result<Mat, StageError>> {
        if self.width % 2 == 1 || self.height % 2 == 1 {
            return None;
        }
        let mjpeg = self.mjpeg.as_mut()?;
        // A copy, so that FFmpeg's reader has the zeroed padding it may read into. One
        // packet is one picture: after a failure, nothing may stay queued for the next.
        let decoded = mjpeg
            .send_packet(&Packet::copy(jpeg))
            .and_then(|()| mjpeg.receive_frame(&mut self.decoded));
        if decoded.is_err() {
            mjpeg.flush();
            return None;
        }
        let full_range = match self.decoded.format() {
            Pixel::YUVJ420P => true,
            Pixel::YUV420P => self.decoded.color_range() != color::Range::MPEG,
            _ => return None,
        };
        if self.decoded.width() != self.width || self.decoded.height() != self.height {
            return None;
        }
        Some(self.copy_planes(full_range))
    }

    /// The decoded planes (of an even width and height) as one I420 image, mapped to
    /// limited range if `full_range`.
    fn copy_planes(&self, full_range: bool) -> Result<Mat, StageError> {
        let (width, height) = (self.width as usize, self.height as usize);
        let (chroma_width, chroma_height) = (width / 2, height / 2);
        let mut image = Mat::new_rows_cols_with_default(
            (height + chroma_height) as i32,
            width as i32,
            core::CV_8UC1,
            Scalar::all(0.0),
        )?;
        let out = image.data_bytes_mut()?;
        let (y_out, chroma_out) = out.split_at_mut(width * height);
        let (u_out, v_out) = chroma_out.split_at_mut(chroma_width * chroma_height);
        let planes: [(&mut [u8], usize, usize, &[u8; 256]); 3] = [
            (y_out, width, height, &LUMA),
            (u_out, chroma_width, chroma_height, &CHROMA),
            (v_out, chroma_width, chroma_height, &CHROMA),
        ];
        for (plane, (out, plane_width, plane_height, table)) in planes.into_iter().enumerate() {
            let stride = self.decoded.stride(plane);
            let source = self.decoded.data(plane);
            for (row, line) in out
                .chunks_exact_mut(plane_width)
                .take(plane_height)
                .enumerate()
            {
                let from = &source[row * stride..row * stride + plane_width];
                if full_range {
                    for (o, s) in line.iter_mut().zip(from) {
                        *o = table[usize::from(*s)];
                    }
                } else {
                    line.copy_from_slice(from);
                }
            }
        }
        Ok(image)
    }
}

/// FFmpeg's MJPEG decoder, single-threaded (each decoding thread has its own).
fn open_mjpeg() -> Option<decoder::Video> {
    super::h264::quiet_logs();
    let codec = decoder::find(codec::Id::MJPEG)?;
    codec::context::Context::new_with_codec(codec)
        .decoder()
        .video()
        .map_err(|err| tracing::debug!("FFmpeg's MJPEG decoder cannot be opened: {err}"))
        .ok()
}

/// Frame `index`'s JPEG decoded by OpenCV to BGR, checked to be `width` x `height`.
pub fn decode_bgr(index: u64, jpeg: &[u8], width: u32, height: u32) -> Result<Mat, StageError> {
    let image = imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), imgcodecs::IMREAD_COLOR)?;
    let size = image.size()?;
    if image.empty() || size.width != width as i32 || size.height != height as i32 {
        return Err(StageError::Other(format!(
            "frame {index} decodes to a {}x{} image, expected {width}x{height}",
            size.width, size.height
        )));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::Rect;

    #[test]
    fn full_range_maps_onto_the_video_range() {
        assert_eq!((LUMA[0], LUMA[128], LUMA[255]), (16, 126, 235));
        assert_eq!((CHROMA[0], CHROMA[128], CHROMA[255]), (16, 128, 240));
        assert!(LUMA.windows(2).all(|w| w[0] <= w[1]));
        assert!(CHROMA.windows(2).all(|w| w[0] <= w[1]));
    }

    /// A 320x240 test picture with colour and edges as a JPEG (4:2:0, as OpenCV writes
    /// them), or a grayscale one.
    fn picture(colour: bool) -> Vec<u8> {
        let kind = if colour { core::CV_8UC3 } else { core::CV_8UC1 };
        let mut img =
            Mat::new_rows_cols_with_default(240, 320, kind, Scalar::new(40.0, 90.0, 200.0, 0.0))
                .unwrap();
        for (i, colour) in [(0, 250.0), (1, 20.0), (2, 140.0)] {
            imgproc::rectangle(
                &mut img,
                Rect::new(20 + i * 90, 40 + i * 30, 80, 120),
                Scalar::new(colour, 255.0 - colour, colour / 2.0, 0.0),
                imgproc::FILLED,
                imgproc::LINE_8,
                0,
            )
            .unwrap();
        }
        let params = Vector::from_slice(&[imgcodecs::IMWRITE_JPEG_QUALITY, 95]);
        let mut out = Vector::<u8>::new();
        imgcodecs::imencode(".jpg", &img, &mut out, &params).unwrap();
        out.to_vec()
    }

    /// The I420 image OpenCV makes of `jpeg`.
    fn through_opencv(jpeg: &[u8]) -> Vec<u8> {
        let bgr = decode_bgr(0, jpeg, 320, 240).unwrap();
        let mut planes = Mat::default();
        imgproc::cvt_color_def(&bgr, &mut planes, imgproc::COLOR_BGR2YUV_I420).unwrap();
        planes.data_bytes().unwrap().to_vec()
    }

    #[test]
    fn a_420_jpeg_decodes_to_the_same_picture_as_through_bgr() {
        let jpeg = picture(true);
        let mut decoder = I420Decoder::new(320, 240);
        assert!(decoder.mjpeg.is_some(), "this FFmpeg has an MJPEG decoder");
        let direct = decoder.decode(0, &jpeg).unwrap();
        assert_eq!((direct.rows(), direct.cols()), (360, 320));
        let direct = direct.data_bytes().unwrap().to_vec();
        let reference = through_opencv(&jpeg);
        assert_eq!(direct.len(), reference.len());
        // The same picture: the round trip through BGR rounds differently, by a level or two
        // (more on the edges of the chroma, which the two decoders upsample differently).
        let mean_diff = direct
            .iter()
            .zip(&reference)
            .map(|(a, b)| f64::from(a.abs_diff(*b)))
            .sum::<f64>()
            / direct.len() as f64;
        assert!(mean_diff < 1.5, "mean difference {mean_diff}");
    }

    #[test]
    fn grayscale_jpegs_and_bad_frames_go_through_opencv() {
        let mut decoder = I420Decoder::new(320, 240);
        let gray = picture(false);
        let image = decoder.decode(7, &gray).unwrap();
        assert_eq!(
            image.data_bytes().unwrap(),
            through_opencv(&gray).as_slice()
        );
        let err = decoder.decode(7, b"not a jpeg").unwrap_err().to_string();
        assert!(err.contains("frame 7"), "{err}");
        // A frame of another size than the session's is refused, whichever decoder reads it.
        let mut small = I420Decoder::new(160, 120);
        let jpeg = picture(true);
        let err = small.decode(3, &jpeg).unwrap_err().to_string();
        assert!(
            err.contains("frame 3 decodes to a 320x240 image, expected 160x120"),
            "{err}"
        );
    }
}
