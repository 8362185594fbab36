//! Stable error codes carried by `ERROR` messages, and the WebSocket close code each one ends
//! the connection with.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A stable, machine-readable error code. New codes may be added; existing ones never change
/// meaning. Serialized in `snake_case`, e.g. `"frame_out_of_order"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The JSON of a control message could not be parsed, or a field is missing or unknown.
    MalformedMessage,
    /// The `type` of a control message is not one this protocol knows.
    UnknownMessageType,
    /// A text (JSON) message arrived where a binary frame was expected.
    UnexpectedText,
    /// A binary message arrived where a text (JSON) message was expected.
    UnexpectedBinary,
    /// A frame arrived before `SESSION_START`.
    FrameBeforeStart,
    /// A frame's index is not the next one the server expects, or its timestamp is not after
    /// the previous frame's.
    FrameOutOfOrder,
    /// A frame's payload is larger than the server's `max_frame_bytes`, or than any JPEG of the
    /// announced size can be ([`crate::frame::max_payload_bytes`]).
    FrameTooLarge,
    /// A frame's CRC32C does not match its payload.
    ChecksumMismatch,
    /// A frame's header is malformed (bad magic, version, flags or length).
    BadFrameHeader,
    /// A frame's payload is not an image of the announced encoding and size.
    InvalidFramePayload,
    /// A second `SESSION_START` on a connection that already has a session.
    AlreadyStarted,
    /// A message is not legal in the session's current state.
    UnexpectedMessage,
    /// A WebSocket message is larger than the server accepts.
    MessageTooLarge,
    /// The peer speaks another protocol version.
    UnsupportedVersion,
    /// `SESSION_START` carries an invalid value (fps, size, name...).
    InvalidSessionStart,
    /// `SESSION_END` announces a frame count different from the frames the server stored.
    FrameCountMismatch,
    /// The signal file could not be parsed or does not fit the video.
    InvalidSignal,
    /// The server could not store data (disk full, permissions...).
    StorageFailed,
    /// A processing stage failed.
    ProcessingFailed,
    /// The client could not read its source video any further.
    SourceFailed,
    /// The server is shutting down; the client may resume the session later.
    ServerShuttingDown,
    /// The digest in `SESSION_END` does not match the frames the server stored.
    DigestMismatch,
    /// `SESSION_RESUME` names a session this server does not have.
    SessionNotFound,
    /// `SESSION_RESUME` carries a wrong resume token.
    ResumeRefused,
    /// The session can no longer be resumed (its grace period is over).
    ResumeExpired,
    /// Another connection resumed this session; this one is closed.
    SessionTakenOver,
    /// The server has too many sessions (in all, or from this client), or a stale connection
    /// of the session did not let go in time; try again later.
    ServerBusy,
    /// The session exceeds the disk space allowed per session.
    SessionTooLarge,
    /// The server's disk is nearly full; it refuses new sessions and frames.
    DiskFull,
    /// `SESSION_START` (or `SESSION_RESUME` of an unfinished session) announces frames of
    /// more pixels (width × height) than the server's `max_frame_pixels` processes.
    FrameTooLargePixels,
    /// `SESSION_START` joins a bout this server does not have.
    BoutNotFound,
    /// `SESSION_START` joins a bout with a camera the bout was not started with.
    UnknownCamera,
    /// `SESSION_START` joins a bout with a camera that already has its session (resume that
    /// one instead).
    CameraTaken,
    /// `SESSION_START` joins a bout whose cameras have all finished.
    BoutFinished,
    /// `SESSION_START` starts a bout of more cameras than the server takes (`max_cameras`).
    TooManyCameras,
    /// A peer did not answer in time.
    Timeout,
    /// Anything else: a bug. The message says what happened.
    Internal,
}

impl ErrorCode {
    /// The WebSocket close code a connection ends with after an `ERROR` carrying this code
    /// (RFC 6455 section 7.4.1).
    pub fn close_code(self) -> u16 {
        use ErrorCode::*;
        match self {
            // 1003: the endpoint received a type of data it cannot accept.
            UnexpectedText | UnexpectedBinary => 1003,
            // 1007: data inconsistent with the type of the message.
            ChecksumMismatch | InvalidFramePayload | BadFrameHeader | MalformedMessage
            | InvalidSignal => 1007,
            // 1009: message too big to process.
            FrameTooLarge | MessageTooLarge => 1009,
            // 1001: going away.
            ServerShuttingDown | SourceFailed => 1001,
            // 1013: try again later.
            ServerBusy | DiskFull => 1013,
            // 1011: the server met an unexpected condition.
            StorageFailed | ProcessingFailed | Internal => 1011,
            // 1008: policy violation (a message breaking the protocol's rules).
            UnknownMessageType | FrameBeforeStart | FrameOutOfOrder | AlreadyStarted
            | UnexpectedMessage | UnsupportedVersion | InvalidSessionStart | FrameCountMismatch
            | Timeout | DigestMismatch | SessionNotFound | ResumeRefused | ResumeExpired
            | SessionTakenOver | SessionTooLarge | FrameTooLargePixels | BoutNotFound
            | UnknownCamera | CameraTaken | BoutFinished | TooManyCameras => 1008,
        }
    }

    /// The code as it appears on the wire, e.g. `frame_out_of_order`.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedMessage => "malformed_message",
            UnknownMessageType => "unknown_message_type",
            UnexpectedText => "unexpected_text",
            UnexpectedBinary => "unexpected_binary",
            FrameBeforeStart => "frame_before_start",
            FrameOutOfOrder => "frame_out_of_order",
            FrameTooLarge => "frame_too_large",
            ChecksumMismatch => "checksum_mismatch",
            BadFrameHeader => "bad_frame_header",
            InvalidFramePayload => "invalid_frame_payload",
            AlreadyStarted => "already_started",
            UnexpectedMessage => "unexpected_message",
            MessageTooLarge => "message_too_large",
            UnsupportedVersion => "unsupported_version",
            InvalidSessionStart => "invalid_session_start",
            FrameCountMismatch => "frame_count_mismatch",
            InvalidSignal => "invalid_signal",
            StorageFailed => "storage_failed",
            ProcessingFailed => "processing_failed",
            SourceFailed => "source_failed",
            ServerShuttingDown => "server_shutting_down",
            DigestMismatch => "digest_mismatch",
            SessionNotFound => "session_not_found",
            ResumeRefused => "resume_refused",
            ResumeExpired => "resume_expired",
            SessionTakenOver => "session_taken_over",
            ServerBusy => "server_busy",
            SessionTooLarge => "session_too_large",
            DiskFull => "disk_full",
            FrameTooLargePixels => "frame_too_large_pixels",
            BoutNotFound => "bout_not_found",
            UnknownCamera => "unknown_camera",
            CameraTaken => "camera_taken",
            BoutFinished => "bout_finished",
            TooManyCameras => "too_many_cameras",
            Timeout => "timeout",
            Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_name_matches_serde() {
        for code in [
            ErrorCode::FrameOutOfOrder,
            ErrorCode::MalformedMessage,
            ErrorCode::ServerShuttingDown,
            ErrorCode::Internal,
            ErrorCode::DigestMismatch,
            ErrorCode::SessionTakenOver,
            ErrorCode::DiskFull,
            ErrorCode::FrameTooLargePixels,
            ErrorCode::BoutNotFound,
            ErrorCode::UnknownCamera,
            ErrorCode::CameraTaken,
            ErrorCode::BoutFinished,
            ErrorCode::TooManyCameras,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
