//! What the user sees while a session runs: an indicatif bar on a terminal, plain
//! `Progress: ...` lines otherwise (or with `--verbose`), and the processing stages.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use referee_protocol::Stage;

/// Plain progress lines are printed each time this many more frames are acknowledged.
const LINE_EVERY: u64 = 100;

/// Reports the frames the server acknowledged, and the processing that follows.
pub struct Progress {
    /// The bar while it is drawn on a terminal; `None` for plain lines, and once every frame
    /// is stored.
    bar: Option<ProgressBar>,
    /// The frames the video announces, when it does.
    total: Option<u64>,
    started: Instant,
    /// The acknowledged frames shown by the last plain line.
    printed: u64,
    /// The stage and 10 % step of the last processing line.
    last_step: Option<(Stage, u32)>,
    /// Put before each line (`[left] `): the camera, when several upload at once.
    label: String,
}

impl Progress {
    /// Starts reporting. `plain` asks for lines even on a terminal.
    pub fn new(total: Option<u64>, plain: bool) -> Self {
        // `stdout()` hides the bar when stdout is not a terminal; plain lines are used then.
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stdout());
        let template = match total {
            Some(_) => "{wide_bar} {pos}/{len} frames ({percent}%) {msg} ETA {eta}",
            None => "{spinner} {pos} frames {msg}",
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        Self {
            bar: (!plain && !bar.is_hidden()).then_some(bar),
            total,
            started: Instant::now(),
            printed: 0,
            last_step: None,
            label: String::new(),
        }
    }

    /// Plain lines, each starting with `[camera]`: for one of several cameras uploading at
    /// once (their bars would draw over each other).
    pub fn of_camera(total: Option<u64>, camera: &str) -> Self {
        let mut progress = Self::new(total, true);
        progress.label = format!("[{camera}] ");
        progress
    }

    /// Prints a line of the session log to stdout, above the bar when there is one.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => println!("{}{text}", self.label),
        }
    }

    /// The server acknowledged `frames` frames, `bytes` bytes in all.
    pub fn frames(&mut self, frames: u64, bytes: u64) {
        let rates = Rates::new(frames, bytes, self.started);
        match &self.bar {
            Some(bar) => {
                bar.set_position(frames);
                bar.set_message(rates.to_string());
            }
            None if frames / LINE_EVERY > self.printed / LINE_EVERY => {
                self.print_frames(frames, rates);
            }
            None => {}
        }
    }

    /// Every frame is stored: clears the bar and prints the last `Progress:` line.
    pub fn finish_frames(&mut self, frames: u64, bytes: u64) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if frames != self.printed {
            self.print_frames(frames, Rates::new(frames, bytes, self.started));
        }
    }

    fn print_frames(&mut self, frames: u64, rates: Rates) {
        self.printed = frames;
        self.line(&frames_line(frames, self.total, rates));
    }

    /// A PROGRESS message: prints stage changes and each 10 % step, 100 % included.
    pub fn processing(&mut self, stage: Stage, percent: f32) {
        let step = (percent.clamp(0.0, 100.0) / 10.0).floor() as u32;
        let new = match self.last_step {
            Some((last_stage, last_step)) => last_stage != stage || step > last_step,
            None => true,
        };
        if new {
            self.last_step = Some((stage, step));
            self.line(&format!("Processing: {stage} ({percent:.0}%)"));
        }
    }
}

impl Drop for Progress {
    /// Clears a bar left by a failed session, so that the error starts on a line of its own.
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// Throughput of the acknowledged frames since the session started.
#[derive(Debug, Clone, Copy)]
struct Rates {
    fps: f64,
    mbps: f64,
}

impl Rates {
    fn new(frames: u64, bytes: u64, started: Instant) -> Self {
        let secs = started.elapsed().as_secs_f64().max(1e-3);
        Self {
            fps: frames as f64 / secs,
            mbps: bytes as f64 * 8.0 / 1e6 / secs,
        }
    }
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} FPS, {:.1} Mbps", self.fps, self.mbps)
    }
}

/// `Progress: 100/1800 frames (5.6%), 28.3 FPS, 45.2 Mbps`, without the total and percent
/// when the video does not announce its length.
fn frames_line(frames: u64, total: Option<u64>, rates: Rates) -> String {
    match total {
        Some(total) if total > 0 => {
            let percent = frames as f64 * 100.0 / total as f64;
            format!("Progress: {frames}/{total} frames ({percent:.1}%), {rates}")
        }
        _ => format!("Progress: {frames} frames, {rates}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lines_match_the_original_tool() {
        let rates = Rates {
            fps: 28.26,
            mbps: 45.24,
        };
        assert_eq!(
            frames_line(100, Some(1800), rates),
            "Progress: 100/1800 frames (5.6%), 28.3 FPS, 45.2 Mbps"
        );
        assert_eq!(
            frames_line(100, None, rates),
            "Progress: 100 frames, 28.3 FPS, 45.2 Mbps"
        );
    }

    #[test]
    fn processing_lines_are_one_per_stage_and_ten_percent_step() {
        let mut progress = Progress::new(None, true);
        let mut shown = Vec::new();
        for (stage, percent) in [
            (Stage::VideoReconstruction, 0.0),
            (Stage::VideoReconstruction, 3.0),
            (Stage::VideoReconstruction, 12.0),
            (Stage::VideoReconstruction, 19.0),
            (Stage::VideoReconstruction, 100.0),
            (Stage::Analysis, 100.0),
        ] {
            let before = progress.last_step;
            progress.processing(stage, percent);
            if progress.last_step != before {
                shown.push((stage, percent));
            }
        }
        assert_eq!(
            shown,
            [
                (Stage::VideoReconstruction, 0.0),
                (Stage::VideoReconstruction, 12.0),
                (Stage::VideoReconstruction, 100.0),
                (Stage::Analysis, 100.0),
            ]
        );
    }
}
