//! Caps on the sending rate (`--max-fps`, `--max-mbps`), for links that must not be filled.
//! Without a cap, frames go as fast as the server's window lets them.

use std::time::Duration;

use tokio::time::Instant;

/// Spaces frames out so that, counted from the first frame sent, no more than `max_fps`
/// frames and `max_mbps` megabits go each second.
#[derive(Debug, Clone)]
pub struct Pacer {
    max_fps: Option<f64>,
    /// Bytes per second.
    max_bytes_per_s: Option<f64>,
    /// When the first frame went.
    start: Option<Instant>,
    frames: u64,
    bytes: u64,
}

impl Pacer {
    /// A pacer with the given caps; `None` means no cap. Caps must be more than 0.
    pub fn new(max_fps: Option<f64>, max_mbps: Option<f64>) -> Self {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        Self {
            max_fps: max_fps.filter(|v| positive(*v)),
            max_bytes_per_s: max_mbps.filter(|v| positive(*v)).map(|v| v * 1e6 / 8.0),
            start: None,
            frames: 0,
            bytes: 0,
        }
    }

    /// No cap: every frame may go at once.
    pub fn unlimited() -> Self {
        Self::new(None, None)
    }

    /// When the next frame may go; `None` when it may go now.
    pub fn next_at(&self) -> Option<Instant> {
        let start = self.start?;
        let at = start + self.delay();
        (at > Instant::now()).then_some(at)
    }

    /// A frame of `bytes` bytes went.
    pub fn sent(&mut self, bytes: u64) {
        if self.max_fps.is_none() && self.max_bytes_per_s.is_none() {
            return;
        }
        self.start.get_or_insert_with(Instant::now);
        self.frames += 1;
        self.bytes += bytes;
    }

    /// Counts again from the next frame, as if none had gone: after a reconnection, so
    /// that the time it took is not made up for with a burst.
    pub fn restart(&mut self) {
        self.start = None;
        self.frames = 0;
        self.bytes = 0;
    }

    /// How long after the first frame the next one may go.
    fn delay(&self) -> Duration {
        let by_frames = self.max_fps.map_or(0.0, |fps| self.frames as f64 / fps);
        let by_bytes = self
            .max_bytes_per_s
            .map_or(0.0, |rate| self.bytes as f64 / rate);
        Duration::try_from_secs_f64(by_frames.max(by_bytes)).unwrap_or(Duration::MAX / 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_caps_frames_go_at_once() {
        let mut pacer = Pacer::unlimited();
        for _ in 0..1000 {
            assert!(pacer.next_at().is_none());
            pacer.sent(1_000_000);
        }
        assert!(Pacer::new(Some(0.0), Some(-1.0)).next_at().is_none());
    }

    #[test]
    fn frames_and_bytes_are_spaced_by_the_tighter_cap() {
        let mut pacer = Pacer::new(Some(10.0), None);
        assert!(pacer.next_at().is_none(), "the first frame goes at once");
        pacer.sent(100);
        pacer.sent(100);
        assert_eq!(pacer.delay(), Duration::from_millis(200));

        // 8 Mbps = 1 MB/s: 500 kB took half a second; 10 fps would allow 0.1 s.
        let mut pacer = Pacer::new(Some(10.0), Some(8.0));
        pacer.sent(500_000);
        assert_eq!(pacer.delay(), Duration::from_millis(500));
        let at = pacer.next_at().unwrap();
        assert!(at > Instant::now() + Duration::from_millis(400));
    }

    #[test]
    fn a_restart_counts_afresh_so_a_long_outage_brings_no_burst() {
        let mut pacer = Pacer::new(Some(60.0), None);
        for _ in 0..60 {
            pacer.sent(1000);
        }
        // As if a reconnection had taken a while: the cap counts from the next frame.
        pacer.restart();
        assert!(
            pacer.next_at().is_none(),
            "the first frame after it goes at once"
        );
        pacer.sent(1000);
        let at = pacer.next_at().expect("the second waits for 1/60 s");
        assert!(at > Instant::now() + Duration::from_millis(10));
        assert_eq!(pacer.delay(), Duration::from_secs_f64(1.0 / 60.0));
    }
}
