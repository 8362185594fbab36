//! The send window: at most `window` frames may be sent and not yet acknowledged.

use std::collections::VecDeque;

use crate::error::ClientError;

/// Counts frames sent and acknowledged, and the bytes of each.
#[derive(Debug)]
pub struct Window {
    size: u64,
    sent: u64,
    acked: u64,
    acked_bytes: u64,
    /// The message size of each sent frame not yet acknowledged, oldest first.
    in_flight: VecDeque<u64>,
}

impl Window {
    /// A window of `size` frames, as SESSION_STARTED announces it.
    pub fn new(size: u32) -> Self {
        Self {
            size: u64::from(size),
            sent: 0,
            acked: 0,
            acked_bytes: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Whether one more frame may be sent now.
    pub fn has_room(&self) -> bool {
        self.sent - self.acked < self.size
    }

    /// A frame of `bytes` bytes was sent.
    pub fn sent_one(&mut self, bytes: u64) {
        self.sent += 1;
        self.in_flight.push_back(bytes);
    }

    /// An ACK: the first `frames_stored` frames are stored. ACKs never move backwards; one for
    /// more frames than were sent is a protocol error.
    pub fn ack(&mut self, frames_stored: u64) -> Result<(), ClientError> {
        if frames_stored > self.sent {
            return Err(ClientError::Protocol(format!(
                "the server acknowledged {frames_stored} frames, but only {} were sent",
                self.sent
            )));
        }
        while self.acked < frames_stored {
            self.acked += 1;
            self.acked_bytes += self.in_flight.pop_front().unwrap_or(0);
        }
        Ok(())
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    pub fn acked(&self) -> u64 {
        self.acked
    }

    pub fn acked_bytes(&self) -> u64 {
        self.acked_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_window_frames_are_unacknowledged() {
        let mut window = Window::new(3);
        for _ in 0..3 {
            assert!(window.has_room());
            window.sent_one(10);
        }
        assert!(!window.has_room());
        window.ack(1).unwrap();
        assert!(window.has_room());
        window.sent_one(20);
        assert!(!window.has_room());
        assert_eq!((window.sent(), window.acked()), (4, 1));
    }

    #[test]
    fn acks_count_bytes_and_never_go_back() {
        let mut window = Window::new(8);
        for bytes in [10, 20, 30] {
            window.sent_one(bytes);
        }
        window.ack(2).unwrap();
        assert_eq!(window.acked_bytes(), 30);
        window.ack(1).unwrap();
        assert_eq!((window.acked(), window.acked_bytes()), (2, 30));
        window.ack(3).unwrap();
        assert_eq!((window.acked(), window.acked_bytes()), (3, 60));
    }

    #[test]
    fn an_ack_beyond_the_frames_sent_is_refused() {
        let mut window = Window::new(8);
        window.sent_one(10);
        let err = window.ack(2).unwrap_err().to_string();
        assert!(err.contains("acknowledged 2 frames, but only 1"), "{err}");
    }
}
