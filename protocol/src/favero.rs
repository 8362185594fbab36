//! The serial output of a Favero FA-01 scoring box (FA-05 and FA-07 send the same frames),
//! decoded without I/O: [`Decoder`] turns bytes into [`Frame`]s, [`Tracker`] turns frames into
//! signal-file events of the shared vocabulary (`docs/signal-format.md`).
//!
//! # The frame (10 bytes, 2400 baud 8N1, sent continuously)
//! | byte | meaning |
//! |---|---|
//! | 0 | `0xFF`, the start of a frame (no data byte is ever `0xFF`) |
//! | 1 | right score, BCD |
//! | 2 | left score, BCD |
//! | 3 | clock seconds, BCD |
//! | 4 | clock minutes, BCD |
//! | 5 | lights: bit 0 left white, bit 1 right white, bit 2 red (left touch), bit 3 green (right touch), bit 4 right yellow, bit 5 left yellow (grounding) |
//! | 6, 7, 8 | not used here (priority, period and cards on some models) |
//! | 9 | checksum: the sum of bytes 0 to 8, modulo 256 (it may be `0xFF`) |
//!
//! Sources: the light bits, the start byte and the checksum are described in the same way by
//! the open-source video-remise replay project (`FaveroFA01Trigger.cs`) and the Favero_Repeater
//! project (`Wemos_Favero_Serial_Parser.ino`, tested on an FA-07, 2400 baud 8N1). The order of
//! the scores and of the clock bytes is the one Favero_Repeater reads and displays (right
//! score first, seconds before minutes); video-remise's comment names them left/right and
//! minutes/seconds but its code never reads them. The order lives only in [`Frame::decode`].

/// The byte that starts every frame.
pub const START: u8 = 0xFF;
/// The length of a frame in bytes, start and checksum included.
pub const FRAME_LEN: usize = 10;
/// The box's serial speed: 2400 baud, 8 data bits, no parity, 1 stop bit.
pub const BAUD: u32 = 2400;
/// Bytes a second at 2400 baud 8N1 (10 bits a byte: start, 8 data, stop).
pub const BYTES_PER_SEC: u64 = BAUD as u64 / 10;
/// How long after the first light of a touch other lights still belong to it (the box's
/// lock-out: 300 ms in foil, 170 ms in sabre, 45 ms in épée, with margin).
pub const LOCKOUT_US: u64 = 500_000;

/// The lights of one frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lights {
    pub white_left: bool,
    pub white_right: bool,
    /// Red: a touch for the left fencer.
    pub red: bool,
    /// Green: a touch for the right fencer.
    pub green: bool,
    pub yellow_left: bool,
    pub yellow_right: bool,
}

impl Lights {
    /// Reads the light byte (byte 5).
    pub fn from_byte(b: u8) -> Self {
        let bit = |n: u8| b & (1 << n) != 0;
        Self {
            white_left: bit(0),
            white_right: bit(1),
            red: bit(2),
            green: bit(3),
            yellow_right: bit(4),
            yellow_left: bit(5),
        }
    }

    /// The lights a touch is read from (white and coloured; the yellow grounding lights are
    /// not touches).
    fn scoring(self) -> u8 {
        u8::from(self.white_left)
            | u8::from(self.white_right) << 1
            | u8::from(self.red) << 2
            | u8::from(self.green) << 3
    }
}

/// One decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub score_left: u8,
    pub score_right: u8,
    pub clock_minutes: u8,
    pub clock_seconds: u8,
    pub lights: Lights,
    /// Bytes 6 to 8, kept as sent.
    pub other: [u8; 3],
}

/// Why ten bytes that start with `0xFF` are not a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bad checksum: the bytes add up to {computed:#04x}, the frame says {sent:#04x}")]
    BadChecksum { computed: u8, sent: u8 },
    #[error("byte {index} is {byte:#04x}, not a two-digit BCD number")]
    NotBcd { index: usize, byte: u8 },
}

fn bcd(bytes: &[u8; FRAME_LEN], index: usize) -> Result<u8, FrameError> {
    let byte = bytes[index];
    let (hi, lo) = (byte >> 4, byte & 0x0F);
    if hi > 9 || lo > 9 {
        return Err(FrameError::NotBcd { index, byte });
    }
    Ok(hi * 10 + lo)
}

/// The checksum of a frame: the sum of its first nine bytes, modulo 256.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |sum, b| sum.wrapping_add(*b))
}

impl Frame {
    /// Decodes a whole frame (start byte included), checking its checksum first.
    pub fn decode(bytes: &[u8; FRAME_LEN]) -> Result<Self, FrameError> {
        let computed = checksum(&bytes[..FRAME_LEN - 1]);
        let sent = bytes[FRAME_LEN - 1];
        if computed != sent {
            return Err(FrameError::BadChecksum { computed, sent });
        }
        Ok(Self {
            score_right: bcd(bytes, 1)?,
            score_left: bcd(bytes, 2)?,
            clock_seconds: bcd(bytes, 3)?,
            clock_minutes: bcd(bytes, 4)?,
            lights: Lights::from_byte(bytes[5]),
            other: [bytes[6], bytes[7], bytes[8]],
        })
    }

    /// Encodes the frame as the box sends it (for tests and simulators).
    pub fn encode(&self) -> [u8; FRAME_LEN] {
        let to_bcd = |v: u8| ((v / 10 % 10) << 4) | (v % 10);
        let l = self.lights;
        let lights = u8::from(l.white_left)
            | u8::from(l.white_right) << 1
            | u8::from(l.red) << 2
            | u8::from(l.green) << 3
            | u8::from(l.yellow_right) << 4
            | u8::from(l.yellow_left) << 5;
        let mut b = [
            START,
            to_bcd(self.score_right),
            to_bcd(self.score_left),
            to_bcd(self.clock_seconds),
            to_bcd(self.clock_minutes),
            lights,
            self.other[0],
            self.other[1],
            self.other[2],
            0,
        ];
        b[FRAME_LEN - 1] = checksum(&b[..FRAME_LEN - 1]);
        b
    }
}

/// What the decoder found when a byte completed ten bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// Skipped: the checksum or a BCD digit is wrong. Never guessed.
    Skipped(FrameError),
}

/// Counts of what the decoder saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub frames: u64,
    pub bad_checksum: u64,
    pub not_bcd: u64,
    /// Bytes that belonged to no frame (garbage, or a frame cut short).
    pub stray_bytes: u64,
}

/// Finds frames in a byte stream, re-synchronising on `0xFF`. Holds at most one frame.
#[derive(Debug, Clone, Default)]
pub struct Decoder {
    buf: [u8; FRAME_LEN],
    len: usize,
    stats: DecoderStats,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Feeds one byte; returns a frame (or a skipped one) when the byte ends ten bytes.
    pub fn push(&mut self, byte: u8) -> Option<Decoded> {
        if self.len == 0 {
            if byte == START {
                self.buf[0] = byte;
                self.len = 1;
            } else {
                self.stats.stray_bytes += 1;
            }
            return None;
        }
        if byte == START && self.len < FRAME_LEN - 1 {
            // No data byte is 0xFF: what came before was not a whole frame (or was the
            // previous frame's checksum); a frame starts here.
            self.stats.stray_bytes += self.len as u64;
            self.len = 1;
            return None;
        }
        self.buf[self.len] = byte;
        self.len += 1;
        if self.len < FRAME_LEN {
            return None;
        }
        self.len = 0;
        match Frame::decode(&self.buf) {
            Ok(frame) => {
                self.stats.frames += 1;
                Some(Decoded::Frame(frame))
            }
            Err(err) => {
                match err {
                    FrameError::BadChecksum { .. } => self.stats.bad_checksum += 1,
                    FrameError::NotBcd { .. } => self.stats.not_bcd += 1,
                }
                if byte == START {
                    // A frame cut short: its last byte may be the next frame's start.
                    self.buf[0] = START;
                    self.len = 1;
                }
                Some(Decoded::Skipped(err))
            }
        }
    }
}

/// One event for the signal file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxEvent {
    /// Microseconds from the start of the recording.
    pub time_us: u64,
    /// A vocabulary name: `touch_left`, `touch_right`, `double`, `off_target_left`,
    /// `off_target_right`.
    pub name: &'static str,
    /// Left and right scores the box shows after the touch (touches only).
    pub score: Option<(u8, u8)>,
    /// The box's clock (minutes, seconds) when the first light came on.
    pub clock: (u8, u8),
}

impl BoxEvent {
    /// The event as a signal-file line (no newline), e.g.
    /// `12.533 touch_left score=1-0 clock=2:41`.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{}.{:03} {}",
            self.time_us / 1_000_000,
            self.time_us % 1_000_000 / 1000,
            self.name
        );
        if let Some((l, r)) = self.score {
            line.push_str(&format!(" score={l}-{r}"));
        }
        line.push_str(&format!(" clock={}:{:02}", self.clock.0, self.clock.1));
        line
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    time_us: u64,
    clock: (u8, u8),
    /// Every scoring light seen on since the first one.
    seen: Lights,
}

/// Turns frames into events: a touch when a red or green light comes on (both within the
/// lock-out: `double`), an off-target for a white light. An action's events are given when its
/// lights go out or [`LOCKOUT_US`] after its first light, whichever comes first, with the time
/// and clock of the first light and the score of that later frame.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    previous: Lights,
    pending: Option<Pending>,
    last_score: (u8, u8),
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame that arrived `time_us` after the start of the recording; returns the events it
    /// completes, in time order.
    pub fn frame(&mut self, frame: &Frame, time_us: u64) -> Vec<BoxEvent> {
        let lights = frame.lights;
        let rising = lights.scoring() & !self.previous.scoring();
        self.previous = lights;
        self.last_score = (frame.score_left, frame.score_right);
        match &mut self.pending {
            Some(p) => {
                p.seen.white_left |= lights.white_left;
                p.seen.white_right |= lights.white_right;
                p.seen.red |= lights.red;
                p.seen.green |= lights.green;
            }
            None if rising != 0 => {
                self.pending = Some(Pending {
                    time_us,
                    clock: (frame.clock_minutes, frame.clock_seconds),
                    seen: lights,
                });
            }
            None => {}
        }
        match self.pending {
            Some(p) if lights.scoring() == 0 || time_us >= p.time_us + LOCKOUT_US => self.finish(),
            _ => Vec::new(),
        }
    }

    /// Gives the events of an action still open (at the end of the bytes).
    pub fn finish(&mut self) -> Vec<BoxEvent> {
        let Some(p) = self.pending.take() else {
            return Vec::new();
        };
        let s = p.seen;
        let event = |name, score| BoxEvent {
            time_us: p.time_us,
            name,
            score,
            clock: p.clock,
        };
        let score = Some(self.last_score);
        let mut events = Vec::new();
        match (s.red, s.green) {
            (true, true) => events.push(event("double", score)),
            (true, false) => events.push(event("touch_left", score)),
            (false, true) => events.push(event("touch_right", score)),
            (false, false) => {}
        }
        if s.white_left && !s.red {
            events.push(event("off_target_left", None));
        }
        if s.white_right && !s.green {
            events.push(event("off_target_right", None));
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(left: u8, right: u8, lights: u8) -> Frame {
        Frame {
            score_left: left,
            score_right: right,
            clock_minutes: 2,
            clock_seconds: 41,
            lights: Lights::from_byte(lights),
            other: [0; 3],
        }
    }

    const RED: u8 = 1 << 2;
    const GREEN: u8 = 1 << 3;
    const WHITE_LEFT: u8 = 1 << 0;

    /// Decodes `bytes` arriving one a 1/240 s and tracks them into signal lines.
    fn run(bytes: &[u8]) -> (Vec<String>, DecoderStats) {
        let mut decoder = Decoder::new();
        let mut tracker = Tracker::new();
        let mut lines = Vec::new();
        for (i, b) in bytes.iter().enumerate() {
            if let Some(Decoded::Frame(f)) = decoder.push(*b) {
                let t = (i as u64 + 1) * 1_000_000 / BYTES_PER_SEC;
                lines.extend(tracker.frame(&f, t).iter().map(BoxEvent::line));
            }
        }
        lines.extend(tracker.finish().iter().map(BoxEvent::line));
        (lines, decoder.stats())
    }

    #[test]
    fn decodes_the_documented_layout() {
        // right 3, left 12, 2:41, red and right yellow, checksum 0xFF+0x03+0x12+0x41+0x02+0x14.
        let mut b = [0xFF, 0x03, 0x12, 0x41, 0x02, 0x14, 0, 0, 0, 0];
        b[9] = 0xFFu8
            .wrapping_add(0x03)
            .wrapping_add(0x12)
            .wrapping_add(0x41)
            .wrapping_add(0x02)
            .wrapping_add(0x14);
        let f = Frame::decode(&b).unwrap();
        assert_eq!((f.score_left, f.score_right), (12, 3));
        assert_eq!((f.clock_minutes, f.clock_seconds), (2, 41));
        assert!(f.lights.red && f.lights.yellow_right);
        assert!(!f.lights.green && !f.lights.white_left && !f.lights.yellow_left);
        assert_eq!(f.encode(), b);
    }

    #[test]
    fn a_scripted_bout_becomes_vocabulary_lines() {
        let mut bytes = Vec::new();
        let mut add = |f: Frame, n: usize| {
            for _ in 0..n {
                bytes.extend_from_slice(&f.encode());
            }
        };
        add(frame(0, 0, 0), 24); // 1 s of quiet
        add(frame(0, 0, RED), 12); // left touch...
        add(frame(1, 0, RED), 12); // ...scored within the lock-out
        add(frame(1, 0, 0), 24);
        add(frame(1, 0, RED | GREEN), 12); // a double...
        add(frame(2, 1, RED | GREEN), 12); // ...both scored
        add(frame(2, 1, 0), 24);
        add(frame(2, 1, WHITE_LEFT), 4); // off target, lights out soon
        add(frame(2, 1, 0), 4);
        add(frame(2, 1, GREEN), 3); // right touch at the very end
        let (lines, stats) = run(&bytes);
        assert_eq!(
            lines,
            [
                "1.041 touch_left score=1-0 clock=2:41",
                "3.041 double score=2-1 clock=2:41",
                "5.041 off_target_left clock=2:41",
                "5.375 touch_right score=2-1 clock=2:41",
            ]
        );
        assert_eq!(stats.frames, 131);
        assert_eq!(stats.bad_checksum, 0);
    }

    #[test]
    fn bad_checksums_are_skipped_and_counted_and_garbage_resynchronises() {
        let mut bytes = vec![0x00, 0x12, 0xFF, 0x34]; // garbage, with a stray start byte
        bytes.extend_from_slice(&frame(0, 0, 0).encode());
        let mut bad = frame(0, 0, RED).encode();
        bad[9] = bad[9].wrapping_add(1);
        bytes.extend_from_slice(&bad); // a red light nobody may believe
        bytes.extend_from_slice(&[0x55, 0x66]); // garbage between frames
        bytes.extend_from_slice(&frame(0, 0, 0).encode());
        bytes.extend_from_slice(&frame(0, 0, GREEN).encode());
        let (lines, stats) = run(&bytes);
        assert_eq!(stats.bad_checksum, 1);
        assert_eq!(stats.frames, 3);
        assert_eq!(stats.stray_bytes, 6);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("touch_right score=0-0"), "{lines:?}");
    }

    #[test]
    fn a_checksum_of_0xff_is_a_checksum_and_a_cut_frame_loses_only_itself() {
        // Find a frame whose checksum is 0xFF.
        let f = (0..=99)
            .flat_map(|l| (0..=99).map(move |r| frame(l, r, 0)))
            .find(|f| f.encode()[9] == 0xFF)
            .unwrap();
        let mut bytes = f.encode().to_vec();
        bytes.extend_from_slice(&f.encode());
        let cut = frame(0, 0, 0).encode();
        bytes.extend_from_slice(&cut[..8]); // a frame cut short
        bytes.extend_from_slice(&frame(0, 0, RED).encode());
        bytes.extend_from_slice(&frame(0, 0, 0).encode());
        let (lines, stats) = run(&bytes);
        assert_eq!(stats.frames, 4, "{stats:?}");
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("touch_left"));
    }

    #[test]
    fn a_frame_that_is_not_bcd_is_skipped() {
        let mut b = frame(0, 0, 0).encode();
        b[1] = 0x1A;
        b[9] = checksum(&b[..9]);
        let mut d = Decoder::new();
        let got: Vec<_> = b.iter().filter_map(|x| d.push(*x)).collect();
        assert_eq!(
            got,
            [Decoded::Skipped(FrameError::NotBcd {
                index: 1,
                byte: 0x1A
            })]
        );
        assert_eq!(d.stats().not_bcd, 1);
    }
}
