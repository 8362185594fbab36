//! Motion energy: how much each frame differs from the one before, as the mean absolute
//! difference of consecutive grayscale frames scaled down to [`ANALYSIS_WIDTH`] pixels, in
//! grey levels (0 to 255). Frame 0 has energy 0.
//!
//! Frames are decoded straight to reduced grayscale (libjpeg scales while decoding), so this
//! pass costs a fraction of a full decode.

use opencv::core::{self, Mat, Size, Vector};
use opencv::prelude::*;
use opencv::{imgcodecs, imgproc};

use super::StageError;

/// Width of the images compared, in pixels (narrower videos are compared at their own width).
pub const ANALYSIS_WIDTH: u32 = 160;

/// Measures the motion energy of frames fed in order.
pub struct MotionMeter {
    /// The size frames are compared at.
    size: Size,
    /// `imdecode` flag: grayscale, reduced by the largest factor that keeps `size`.
    decode_flag: i32,
    previous: Option<Mat>,
    resized: Mat,
    diff: Mat,
}

impl MotionMeter {
    /// A meter for frames of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        let w = ANALYSIS_WIDTH.min(width).max(1);
        let h =
            ((f64::from(height) * f64::from(w) / f64::from(width.max(1))).round() as u32).max(1);
        let decode_flag = [
            (8, imgcodecs::IMREAD_REDUCED_GRAYSCALE_8),
            (4, imgcodecs::IMREAD_REDUCED_GRAYSCALE_4),
            (2, imgcodecs::IMREAD_REDUCED_GRAYSCALE_2),
        ]
        .iter()
        .find(|(factor, _)| width >= w * factor && height >= h * factor)
        .map_or(imgcodecs::IMREAD_GRAYSCALE, |&(_, flag)| flag);
        Self {
            size: Size::new(w as i32, h as i32),
            decode_flag,
            previous: None,
            resized: Mat::default(),
            diff: Mat::default(),
        }
    }

    /// The size frames are compared at.
    pub fn size(&self) -> (u32, u32) {
        (self.size.width as u32, self.size.height as u32)
    }

    /// The energy of frame `index` (JPEG `jpeg`) against the frame pushed before it.
    pub fn push(&mut self, index: u64, jpeg: &[u8]) -> Result<f32, StageError> {
        let decoded = imgcodecs::imdecode(&Vector::<u8>::from_slice(jpeg), self.decode_flag)?;
        if decoded.empty() {
            return Err(StageError::Other(format!(
                "frame {index} cannot be decoded as a JPEG"
            )));
        }
        let current = if decoded.size()? == self.size {
            decoded
        } else {
            imgproc::resize(
                &decoded,
                &mut self.resized,
                self.size,
                0.0,
                0.0,
                imgproc::INTER_AREA,
            )?;
            std::mem::take(&mut self.resized)
        };
        let energy = match &self.previous {
            Some(previous) => {
                core::absdiff(&current, previous, &mut self.diff)?;
                core::mean(&self.diff, &core::no_array())?[0] as f32
            }
            None => 0.0,
        };
        // Reuse the old buffer for the next resize.
        if let Some(old) = self.previous.replace(current) {
            self.resized = old;
        }
        Ok(energy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opencv::core::{Rect, Scalar};

    fn jpeg(width: i32, height: i32, square_x: Option<i32>) -> Vec<u8> {
        let mut img =
            Mat::new_rows_cols_with_default(height, width, core::CV_8UC3, Scalar::all(90.0))
                .unwrap();
        if let Some(x) = square_x {
            imgproc::rectangle(
                &mut img,
                Rect::new(x, height / 4, width / 4, height / 2),
                Scalar::all(250.0),
                imgproc::FILLED,
                imgproc::LINE_8,
                0,
            )
            .unwrap();
        }
        let mut out = Vector::<u8>::new();
        imgcodecs::imencode(".jpg", &img, &mut out, &Vector::new()).unwrap();
        out.to_vec()
    }

    #[test]
    fn sizes_and_decode_reduction_follow_the_frame_size() {
        let m = MotionMeter::new(640, 480);
        assert_eq!(m.size(), (160, 120));
        assert_eq!(m.decode_flag, imgcodecs::IMREAD_REDUCED_GRAYSCALE_4);
        let m = MotionMeter::new(1280, 720);
        assert_eq!(m.size(), (160, 90));
        assert_eq!(m.decode_flag, imgcodecs::IMREAD_REDUCED_GRAYSCALE_8);
        let m = MotionMeter::new(100, 50);
        assert_eq!(m.size(), (100, 50));
        assert_eq!(m.decode_flag, imgcodecs::IMREAD_GRAYSCALE);
    }

    #[test]
    fn still_frames_have_no_energy_and_moving_ones_do() {
        let mut m = MotionMeter::new(320, 240);
        let still = jpeg(320, 240, Some(40));
        assert_eq!(m.push(0, &still).unwrap(), 0.0);
        assert_eq!(m.push(1, &still).unwrap(), 0.0);
        let moved = m.push(2, &jpeg(320, 240, Some(80))).unwrap();
        // An 80x120 square moved by 40 px: 2 x 40x120 pixels of 320x240 changed by 160 grey
        // levels, 20 on average.
        assert!(moved > 15.0 && moved < 25.0, "{moved}");
        assert!(m.push(3, b"not a jpeg").is_err());
    }
}
