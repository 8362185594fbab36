//! Control messages: JSON objects sent as text WebSocket messages, told apart by their `type`
//! field. Unknown types and unknown fields are rejected.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::digest::FrameDigest;
use crate::ErrorCode;

/// How the frames of a session are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FrameEncoding {
    /// Each frame is a baseline or progressive JPEG file (JFIF or EXIF).
    Jpeg,
}

impl FrameEncoding {
    pub fn as_str(self) -> &'static str {
        match self {
            FrameEncoding::Jpeg => "jpeg",
        }
    }
}

/// What a client uploads, announced in `SESSION_START` and `SESSION_RESUME`, so that a resume
/// with another video or another signal file is refused before a frame is sent. Each hash is
/// the client's own (compared as given, never interpreted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UploadIdentity {
    /// The video's file name.
    pub video: String,
    /// The video file's size in bytes.
    pub video_bytes: u64,
    /// A hash of the video file's first and last bytes, e.g. `crc32c:1a2b3c4d-5e6f7a8b`.
    pub video_hash: String,
    /// The signal file's name, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// A hash of the whole signal file, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_hash: Option<String>,
}

impl UploadIdentity {
    /// Why an upload of `self` cannot continue a session that was started with `started`:
    /// another video, or another signal file. A resume that names no signal file is not
    /// refused for it (the client reuses the one it recorded).
    pub fn mismatch(&self, started: &UploadIdentity) -> Option<String> {
        let video = |u: &UploadIdentity| format!("{} ({} bytes)", u.video, u.video_bytes);
        if (self.video_bytes, &self.video_hash) != (started.video_bytes, &started.video_hash) {
            return Some(format!(
                "it was started with the video {}, not {}",
                video(started),
                video(self)
            ));
        }
        match (&self.signal_hash, &started.signal_hash) {
            (Some(hash), Some(first)) if hash != first => Some(format!(
                "it was started with the signal file {}, not {} (same name or not, its contents differ)",
                started.signal.as_deref().unwrap_or("?"),
                self.signal.as_deref().unwrap_or("?")
            )),
            (Some(_), None) => Some(format!(
                "it was started without a signal file, not with {}",
                self.signal.as_deref().unwrap_or("?")
            )),
            _ => None,
        }
    }
}

/// The camera a session records, of a bout recorded by several (`SESSION_START`'s `bout`,
/// protocol version 2). Each camera of a bout is a session of its own (its frames, its resume
/// token, its processing), joined to the bout by the bout's id and the camera's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoutCamera {
    /// The bout this camera joins: the `bout_id` of the `SESSION_STARTED` of the camera that
    /// started it. Absent for the camera that starts a new bout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bout_id: Option<String>,
    /// This camera's name within the bout, e.g. `left`: 1 to
    /// [`MAX_CAMERA_LEN`](crate::text::MAX_CAMERA_LEN) letters, digits, `-` or `_`.
    pub camera: String,
    /// Starting a new bout: the names of all its cameras, this one among them, each once.
    /// Absent when joining a bout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cameras: Option<Vec<String>>,
    /// Seconds this camera's recording started after the start of the bout's clock (the
    /// signal file's), when the user knows it (`--offset right=0.40`); negative when it
    /// started before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_s: Option<f64>,
}

/// Where a resumed session stands (the `state` of `SESSION_RESUMED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResumedState {
    Receiving,
    AwaitingSignal,
    Processing,
    Complete,
}

/// A processing stage the server reports progress for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Cutting a clip around each event that ends an action (a touch, a halt), first, so
    /// the first clips are ready long before the whole video.
    Clips,
    /// Rebuilding a playable video file from the stored frames.
    VideoReconstruction,
    /// Lining the signal events up with the frames and writing the report.
    Analysis,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Clips => "clips",
            Stage::VideoReconstruction => "video_reconstruction",
            Stage::Analysis => "analysis",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every control message of the protocol, in both directions. The JSON form is an object whose
/// `type` field names the variant, e.g. `{"type":"ACK","frames_stored":64}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE", deny_unknown_fields)]
pub enum ControlMessage {
    /// Client → server: opens a session. The first message on a connection.
    SessionStart {
        /// The protocol version the client speaks: 1, or 2 for a camera of a bout.
        protocol_version: u16,
        /// A short human name for the session, e.g. `phrase04`. Letters, digits, `-` and `_`.
        name: String,
        /// The file name of the source video, for the record.
        source: String,
        /// Frames per second of the source video (may be fractional, e.g. 29.97).
        fps: f64,
        /// Frame width in pixels; every frame must have it.
        width: u32,
        /// Frame height in pixels; every frame must have it.
        height: u32,
        /// How many frames the client expects to send, when the source knows it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        frame_count: Option<u64>,
        /// How each frame is encoded.
        encoding: FrameEncoding,
        /// The encoder quality (1-100) used, when the client re-encodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quality: Option<u8>,
        /// Stream into this session, created ahead of the upload (`POST /api/sessions`),
        /// instead of a new one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        /// What is uploaded, so that a resume with other files is refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<UploadIdentity>,
        /// The camera of a bout this session records (protocol version 2).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bout: Option<BoutCamera>,
    },
    /// Server → client: the session exists on disk; frames may be sent.
    SessionStarted {
        /// The server-generated session id.
        session_id: String,
        /// How many frames the client may have sent but not yet seen acknowledged.
        window: u32,
        /// The largest frame payload the server accepts, in bytes.
        max_frame_bytes: u32,
        /// The secret that `SESSION_RESUME` must present to continue this session on
        /// another connection. Keep it private.
        resume_token: String,
        /// Seconds a dropped session stays resumable.
        resume_grace_s: u64,
        /// The largest signal file the server accepts, in bytes (servers before it was
        /// announced leave it out).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_signal_bytes: Option<u64>,
        /// The most pixels a frame may have, when the server limits them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_frame_pixels: Option<u64>,
        /// The bout the session's camera is part of, when `SESSION_START` had a `bout`: the
        /// id the other cameras join it with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bout_id: Option<String>,
    },
    /// Client → server: continues a session after a dropped connection. The first message on
    /// a connection, instead of `SESSION_START`.
    SessionResume {
        protocol_version: u16,
        session_id: String,
        resume_token: String,
        /// What this connection uploads: refused when the session was started with other
        /// files.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        upload: Option<UploadIdentity>,
    },
    /// Server → client: the session is attached to this connection again.
    SessionResumed {
        session_id: String,
        /// Where the session is: `receiving` (send frames from `frames_stored` on),
        /// `awaiting_signal` (send SIGNAL), `processing` (wait for COMPLETE) or `complete`
        /// (COMPLETE follows).
        state: ResumedState,
        /// Frames durably stored: the index of the next frame to send.
        frames_stored: u64,
        window: u32,
        max_frame_bytes: u32,
        /// As in `SESSION_STARTED`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_signal_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_frame_pixels: Option<u64>,
    },
    /// Server → client: the first `frames_stored` frames are written to disk.
    Ack { frames_stored: u64 },
    /// Client → server: every frame has been sent.
    SessionEnd {
        /// How many frames the client sent in all.
        frames_sent: u64,
        /// Whether a `SIGNAL` message follows. When false, processing starts right away.
        signal_follows: bool,
        /// The digest of every frame sent, in order (see [`crate::digest`]).
        digest: FrameDigest,
    },
    /// Server → client: every frame is stored; the answer to `SESSION_END`.
    SessionEnded { frames_stored: u64 },
    /// Client → server: the text of the signal file.
    Signal {
        /// The signal file's name, for the record.
        file_name: String,
        /// The whole file, UTF-8.
        text: String,
    },
    /// Server → client: how far a processing stage is.
    Progress {
        stage: Stage,
        /// 0 to 100.
        percent: f32,
        /// Units of work done in this stage (clips for `clips`, frames for the others).
        done: u64,
        /// Units of work in this stage.
        total: u64,
    },
    /// Server → client: processing is done; the last message of a successful session.
    Complete {
        session_id: String,
        frames_stored: u64,
        /// Seconds of video stored.
        duration_s: f64,
        /// Signal events lined up with frames.
        events: u64,
        /// The session's directory on the server.
        directory: String,
        /// Result files in that directory, e.g. `["video.mp4", "report.json"]`.
        files: Vec<String>,
    },
    /// Either direction: something went wrong.
    Error {
        code: ErrorCode,
        /// What happened and what to do, for a person.
        message: String,
        /// True when the sender ends the session (and closes the connection) after this.
        fatal: bool,
    },
}

/// Why a text message is not a valid control message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message type {0:?} is not part of protocol version {v}", v = crate::PROTOCOL_VERSION)]
    UnknownType(String),
    #[error("malformed control message: {0}")]
    Malformed(String),
    /// A `SESSION_START` whose fields do not fit their types (a missing or unknown field, a
    /// negative count, a quality over 255): refused like one whose values are out of range.
    #[error("SESSION_START is invalid: {0}")]
    InvalidStart(String),
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownType(_) => ErrorCode::UnknownMessageType,
            DecodeError::Malformed(_) => ErrorCode::MalformedMessage,
            DecodeError::InvalidStart(_) => ErrorCode::InvalidSessionStart,
        }
    }
}

/// Every value the `type` field may take.
pub const MESSAGE_TYPES: [&str; 11] = [
    "SESSION_START",
    "SESSION_STARTED",
    "SESSION_RESUME",
    "SESSION_RESUMED",
    "ACK",
    "SESSION_END",
    "SESSION_ENDED",
    "SIGNAL",
    "PROGRESS",
    "COMPLETE",
    "ERROR",
];

impl ControlMessage {
    /// Parses a text message, telling an unknown `type` apart from other mistakes.
    pub fn from_json(text: &str) -> Result<Self, DecodeError> {
        serde_json::from_str(text).map_err(|err| {
            let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
            let ty = value
                .as_ref()
                .and_then(|v| v.get("type"))
                .and_then(|t| t.as_str());
            match ty {
                Some(ty) if !MESSAGE_TYPES.contains(&ty) => DecodeError::UnknownType(ty.into()),
                Some("SESSION_START") => DecodeError::InvalidStart(err.to_string()),
                _ => DecodeError::Malformed(err.to_string()),
            }
        })
    }

    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string and every float is
        // checked finite by the constructors of the fields that hold one.
        serde_json::to_string(self).unwrap_or_else(|err| {
            format!(
                r#"{{"type":"ERROR","code":"internal","message":"cannot encode message: {}","fatal":true}}"#,
                err.to_string().replace('"', "'")
            )
        })
    }

    /// The value of the `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            ControlMessage::SessionStart { .. } => "SESSION_START",
            ControlMessage::SessionStarted { .. } => "SESSION_STARTED",
            ControlMessage::SessionResume { .. } => "SESSION_RESUME",
            ControlMessage::SessionResumed { .. } => "SESSION_RESUMED",
            ControlMessage::Ack { .. } => "ACK",
            ControlMessage::SessionEnd { .. } => "SESSION_END",
            ControlMessage::SessionEnded { .. } => "SESSION_ENDED",
            ControlMessage::Signal { .. } => "SIGNAL",
            ControlMessage::Progress { .. } => "PROGRESS",
            ControlMessage::Complete { .. } => "COMPLETE",
            ControlMessage::Error { .. } => "ERROR",
        }
    }

    /// An `ERROR` message.
    pub fn error(code: ErrorCode, message: impl Into<String>, fatal: bool) -> Self {
        ControlMessage::Error {
            code,
            message: message.into(),
            fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> ControlMessage {
        ControlMessage::SessionStart {
            protocol_version: 1,
            name: "phrase04".into(),
            source: "bout.avi".into(),
            fps: 29.97,
            width: 640,
            height: 480,
            frame_count: Some(1800),
            encoding: FrameEncoding::Jpeg,
            quality: Some(90),
            session_id: None,
            upload: Some(identity()),
            bout: None,
        }
    }

    fn identity() -> UploadIdentity {
        UploadIdentity {
            video: "bout.avi".into(),
            video_bytes: 1_234_567,
            video_hash: "crc32c:1a2b3c4d-5e6f7a8b".into(),
            signal: Some("bout.txt".into()),
            signal_hash: Some("crc32c:00ff00ff".into()),
        }
    }

    #[test]
    fn an_upload_of_other_files_is_told_apart() {
        let started = identity();
        assert_eq!(started.mismatch(&started), None);
        let without_signal = UploadIdentity {
            signal: None,
            signal_hash: None,
            ..identity()
        };
        assert_eq!(without_signal.mismatch(&started), None);
        let other_video = UploadIdentity {
            video: "other.avi".into(),
            video_bytes: 99,
            ..identity()
        };
        let why = other_video.mismatch(&started).unwrap();
        assert!(
            why.contains("bout.avi (1234567 bytes)") && why.contains("other.avi (99 bytes)"),
            "{why}"
        );
        let other_signal = UploadIdentity {
            signal: Some("late.txt".into()),
            signal_hash: Some("crc32c:12345678".into()),
            ..identity()
        };
        let why = other_signal.mismatch(&started).unwrap();
        assert!(
            why.contains("bout.txt") && why.contains("late.txt"),
            "{why}"
        );
        assert!(identity().mismatch(&without_signal).is_some());
    }

    #[test]
    fn every_message_round_trips_through_json() {
        let all = vec![
            start(),
            ControlMessage::SessionStarted {
                session_id: "20251106_170116_phrase04_k7m2".into(),
                window: 64,
                max_frame_bytes: 8 << 20,
                resume_token: "q8Wd3kTz".into(),
                resume_grace_s: 600,
                max_signal_bytes: Some(1 << 20),
                max_frame_pixels: None,
                bout_id: Some("20251106_170116_bout_k7m2x".into()),
            },
            ControlMessage::SessionResume {
                protocol_version: 1,
                session_id: "20251106_170116_phrase04_k7m2".into(),
                resume_token: "q8Wd3kTz".into(),
                upload: Some(identity()),
            },
            ControlMessage::SessionResumed {
                session_id: "20251106_170116_phrase04_k7m2".into(),
                state: ResumedState::Receiving,
                frames_stored: 128,
                window: 64,
                max_frame_bytes: 8 << 20,
                max_signal_bytes: Some(1 << 20),
                max_frame_pixels: Some(8_294_400),
            },
            ControlMessage::Ack { frames_stored: 64 },
            ControlMessage::SessionEnd {
                frames_sent: 1800,
                signal_follows: true,
                digest: FrameDigest::of([1, 2, 3]),
            },
            ControlMessage::SessionEnded {
                frames_stored: 1800,
            },
            ControlMessage::Signal {
                file_name: "bout.txt".into(),
                text: "1.5 touch_left\n".into(),
            },
            ControlMessage::Progress {
                stage: Stage::Analysis,
                percent: 50.0,
                done: 1,
                total: 2,
            },
            ControlMessage::Complete {
                session_id: "x".into(),
                frames_stored: 3,
                duration_s: 0.1,
                events: 1,
                directory: "/data/x".into(),
                files: vec!["video.mp4".into()],
            },
            ControlMessage::error(ErrorCode::FrameOutOfOrder, "frame 3, expected 2", true),
        ];
        assert_eq!(all.len(), MESSAGE_TYPES.len());
        for msg in all {
            let json = msg.to_json();
            assert!(
                json.contains(&format!("\"type\":\"{}\"", msg.type_name())),
                "{json}"
            );
            assert_eq!(ControlMessage::from_json(&json).unwrap(), msg);
        }
    }

    #[test]
    fn a_camera_of_a_bout_round_trips_and_refuses_unknown_fields() {
        let json = r#"{"type":"SESSION_START","protocol_version":2,"name":"bout","source":"cam2.mov",
            "fps":60,"width":1280,"height":720,"encoding":"jpeg",
            "bout":{"bout_id":"20251106_170116_bout_k7m2x","camera":"right","offset_s":0.4}}"#;
        let msg = ControlMessage::from_json(json).unwrap();
        let ControlMessage::SessionStart {
            bout: Some(bout), ..
        } = &msg
        else {
            panic!("{msg:?}");
        };
        assert_eq!(bout.camera, "right");
        assert_eq!(bout.offset_s, Some(0.4));
        assert_eq!(ControlMessage::from_json(&msg.to_json()).unwrap(), msg);
        let unknown = json.replace("\"offset_s\"", "\"offset\"");
        assert!(ControlMessage::from_json(&unknown).is_err());
    }

    #[test]
    fn documented_example_parses() {
        let json = r#"{"type":"SESSION_START","protocol_version":1,"name":"phrase04",
            "source":"bout.avi","fps":30.0,"width":640,"height":480,"encoding":"jpeg"}"#;
        let msg = ControlMessage::from_json(json).unwrap();
        assert!(matches!(
            msg,
            ControlMessage::SessionStart {
                frame_count: None,
                quality: None,
                ..
            }
        ));
    }

    #[test]
    fn unknown_type_is_told_apart_from_malformed() {
        let err = ControlMessage::from_json(r#"{"type":"HELLO"}"#).unwrap_err();
        assert_eq!(err, DecodeError::UnknownType("HELLO".into()));
        assert_eq!(err.code(), ErrorCode::UnknownMessageType);

        for bad in [
            "not json",
            r#"{"frames_stored":1}"#,
            r#"{"type":"ACK"}"#,
            r#"{"type":"ACK","frames_stored":"many"}"#,
            r#"{"type":"ACK","frames_stored":1,"extra":true}"#,
        ] {
            let err = ControlMessage::from_json(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::MalformedMessage, "{bad}: {err}");
        }
    }

    #[test]
    fn a_session_start_out_of_its_types_is_invalid_like_one_out_of_range() {
        let start = |fields: &str| {
            format!(
                r#"{{"type":"SESSION_START","protocol_version":1,"name":"n","source":"s.mp4","fps":30,"width":8,"height":8,"encoding":"jpeg"{fields}}}"#
            )
        };
        assert!(ControlMessage::from_json(&start("")).is_ok());
        for bad in [
            r#","quality":300"#,
            r#","frame_count":-1"#,
            r#","colour":true"#,
        ] {
            let err = ControlMessage::from_json(&start(bad)).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidSessionStart, "{bad}: {err}");
            assert!(
                err.to_string().starts_with("SESSION_START is invalid"),
                "{err}"
            );
        }
    }
}
