//! The send window: at most `window` frames may be sent and not yet acknowledged. The
//! unacknowledged frames are kept (never more than the window), so that after a dropped
//! connection they can be sent again from where the server's storage ends.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::error::ClientError;

/// Frames sent and acknowledged, and the unacknowledged frame messages.
#[derive(Debug)]
pub struct Window {
    size: u64,
    /// Frames handed to the connection (or skipped as already stored), in all.
    sent: u64,
    acked: u64,
    acked_bytes: u64,
    /// Messages of frames `acked..sent`, oldest first.
    in_flight: VecDeque<Bytes>,
    /// How many of `in_flight`, from the back, still have to be sent again after a resume.
    to_resend: usize,
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
            to_resend: 0,
        }
    }

    /// A new window size (a resumed connection may announce another one).
    pub fn resize(&mut self, size: u32) {
        self.size = u64::from(size);
    }

    /// Whether one more frame may be sent now.
    pub fn has_room(&self) -> bool {
        self.sent - self.acked < self.size
    }

    /// A frame message was sent.
    pub fn sent_one(&mut self, message: Bytes) {
        self.sent += 1;
        self.in_flight.push_back(message);
    }

    /// A frame the server already stored (after a client restart): counted, not kept.
    pub fn skipped_one(&mut self, bytes: u64) {
        self.sent += 1;
        self.acked += 1;
        self.acked_bytes += bytes;
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
            if let Some(message) = self.in_flight.pop_front() {
                self.acked_bytes += message.len() as u64;
            }
        }
        self.to_resend = self.to_resend.min(self.in_flight.len());
        Ok(())
    }

    /// A new connection resumed the session with `frames_stored` frames on the server: the
    /// frames after those are sent again. Fails if the server has fewer frames than were
    /// acknowledged (they would be lost) or more than were sent.
    pub fn resume_at(&mut self, frames_stored: u64) -> Result<(), ClientError> {
        if frames_stored < self.acked {
            return Err(ClientError::Protocol(format!(
                "the resumed session has {frames_stored} frames, but {} were acknowledged before: the server lost frames",
                self.acked
            )));
        }
        self.ack(frames_stored)?;
        self.to_resend = self.in_flight.len();
        Ok(())
    }

    /// The next frame message to send again, if any.
    pub fn next_resend(&mut self) -> Option<Bytes> {
        if self.to_resend == 0 {
            return None;
        }
        let message = self.in_flight[self.in_flight.len() - self.to_resend].clone();
        self.to_resend -= 1;
        Some(message)
    }

    /// Whether frames are waiting to be sent again.
    pub fn resending(&self) -> bool {
        self.to_resend > 0
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

    fn msg(n: usize) -> Bytes {
        Bytes::from(vec![0u8; n])
    }

    #[test]
    fn at_most_window_frames_are_unacknowledged() {
        let mut window = Window::new(3);
        for _ in 0..3 {
            assert!(window.has_room());
            window.sent_one(msg(10));
        }
        assert!(!window.has_room());
        window.ack(1).unwrap();
        assert!(window.has_room());
        window.sent_one(msg(20));
        assert!(!window.has_room());
        assert_eq!((window.sent(), window.acked()), (4, 1));
    }

    #[test]
    fn acks_count_bytes_and_never_go_back() {
        let mut window = Window::new(8);
        for bytes in [10, 20, 30] {
            window.sent_one(msg(bytes));
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
        window.sent_one(msg(10));
        let err = window.ack(2).unwrap_err().to_string();
        assert!(err.contains("acknowledged 2 frames, but only 1"), "{err}");
    }

    #[test]
    fn a_resume_sends_again_what_the_server_does_not_have() {
        let mut window = Window::new(8);
        for i in 0..5u8 {
            window.sent_one(Bytes::from(vec![i]));
        }
        window.ack(1).unwrap();
        // The server had stored 3 when the connection dropped.
        window.resume_at(3).unwrap();
        assert_eq!(window.acked(), 3);
        assert_eq!(window.next_resend().unwrap()[..], [3]);
        assert_eq!(window.next_resend().unwrap()[..], [4]);
        assert!(window.next_resend().is_none());
        assert_eq!(window.sent(), 5);
        // Fewer frames than were acknowledged: frames were lost.
        assert!(window.resume_at(2).is_err());
    }

    #[test]
    fn skipped_frames_count_as_stored() {
        let mut window = Window::new(2);
        window.skipped_one(100);
        window.skipped_one(100);
        assert!(window.has_room());
        assert_eq!(
            (window.sent(), window.acked(), window.acked_bytes()),
            (2, 2, 200)
        );
    }
}
