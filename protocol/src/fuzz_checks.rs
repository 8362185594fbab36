//! The properties the fuzz targets (`protocol/fuzz`) check, shared with the test that replays
//! their corpus, so that CI exercises every saved input without a fuzzing run. Each function
//! panics when a property does not hold; on any input, decoding must never panic.

use bytes::Bytes;

use crate::frame::{decode_frame, encode_frame};
use crate::signal::SignalTrack;
use crate::ControlMessage;

/// A binary frame message: decoding never panics, and what decodes encodes back to the
/// same bytes.
pub fn frame_message(data: &[u8]) {
    if let Ok(frame) = decode_frame(Bytes::copy_from_slice(data)) {
        let h = frame.header;
        let again = encode_frame(h.index, h.pts_us, h.flags, &frame.payload)
            .unwrap_or_else(|e| panic!("a decoded frame cannot be encoded again: {e}"));
        assert_eq!(&again[..], data, "frame does not round-trip");
    }
}

/// A text control message: parsing never panics, and what parses survives a JSON round trip.
pub fn control_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = ControlMessage::from_json(text) {
        let again = ControlMessage::from_json(&msg.to_json())
            .unwrap_or_else(|e| panic!("{} does not parse again: {e}", msg.to_json()));
        assert_eq!(again, msg, "control message does not round-trip");
    }
}

/// A signal file: parsing never panics, and parsed events are in time order.
pub fn signal_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(track) = SignalTrack::parse(&text) {
        assert!(track
            .events
            .windows(2)
            .all(|w| w[0].time_us <= w[1].time_us));
        let _ = track.check_duration(u64::MAX / 2);
    }
}
