//! The metadata record of a session, stored as `session.json` and shown by the HTTP API.

use referee_protocol::{FrameEncoding, Stage, UploadIdentity};
use serde::{Deserialize, Serialize};

/// Where a session is, as stored and as the HTTP API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created ahead of its upload (`POST /api/sessions`); waiting for a client to stream
    /// into it.
    Created,
    /// Frames are arriving.
    Receiving,
    /// Every frame is stored; waiting for the signal file.
    AwaitingSignal,
    /// The processing pipeline is running.
    Processing,
    /// Processing finished; results are available.
    Complete,
    /// Processing failed; `error` says why.
    Failed,
    /// The connection ended before the upload finished: the stored frames are kept and the
    /// client may resume until `resumable_until`.
    Detached,
    /// Detached for longer than the grace period: no longer resumable; the data is kept
    /// until `expires_at`.
    Abandoned,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Created => "created",
            SessionStatus::Receiving => "receiving",
            SessionStatus::AwaitingSignal => "awaiting_signal",
            SessionStatus::Processing => "processing",
            SessionStatus::Complete => "complete",
            SessionStatus::Failed => "failed",
            SessionStatus::Detached => "detached",
            SessionStatus::Abandoned => "abandoned",
        }
    }
}

/// Everything known about a session, apart from its frames.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub id: String,
    pub name: String,
    /// The source video's file name, as the client announced it.
    pub source: String,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub encoding: FrameEncoding,
    pub quality: Option<u8>,
    /// Frames the client expected to send, if it knew.
    pub frames_expected: Option<u64>,
    pub status: SessionStatus,
    /// The running or last processing stage.
    pub stage: Option<Stage>,
    /// Percent done of `stage`.
    pub percent: Option<f32>,
    /// Frames durably stored.
    pub frames_stored: u64,
    /// Bytes of frame payload stored.
    pub bytes_stored: u64,
    /// The signal file's name, once received.
    pub signal_file: Option<String>,
    /// Result files, once processing is complete.
    pub results: Vec<String>,
    /// Why the session failed or was detached.
    pub error: Option<String>,
    /// Signal events lined up with frames, once processed.
    #[serde(default)]
    pub signal_events: Option<u64>,
    /// The secret a client presents to resume the session. Never shown by the HTTP API.
    #[serde(default)]
    pub resume_token: String,
    /// Created ahead of its upload (`POST /api/sessions`): only such a session may be started
    /// again by a `SESSION_START` naming it, while its upload has stored no frame.
    #[serde(default)]
    pub created_ahead: bool,
    /// Whether the frames came at a variable rate (their timestamps are not evenly spaced),
    /// once processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable_frame_rate: Option<bool>,
    /// The clips made so far (the `clips` stage), in the order they were stored: during
    /// processing too, so a watcher can play the first touches before the whole video.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clips: Vec<Clip>,
    /// What the client said it uploads (its video and signal file), to refuse a resume
    /// with other files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadIdentity>,
    /// How many times the session was resumed.
    #[serde(default)]
    pub resumes: u64,
    /// How many times processing was started (counted on disk before each start), so that a
    /// session whose processing stops the server is not run again at every start.
    #[serde(default)]
    pub processing_attempts: u32,
    /// Until when a detached session may be resumed (RFC 3339).
    #[serde(default)]
    pub resumable_until: Option<String>,
    /// When an abandoned session's data will be deleted, or a session created ahead that
    /// nobody streamed into (RFC 3339).
    #[serde(default)]
    pub expires_at: Option<String>,
    /// RFC 3339 times.
    pub created_at: String,
    pub updated_at: String,
    pub ended_at: Option<String>,
    pub completed_at: Option<String>,
}

/// One clip of a session: an H.264 MP4 of the action that led to a signal event, from where
/// the action began (less a pre-roll) to just after the event (`docs/report-format.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// Its result name, e.g. `clips/clip-003-touch_left.mp4`.
    pub name: String,
    /// Position of its event in the signal file's events (and in `report.json`'s `events`).
    pub event: usize,
    /// The event's name, e.g. `touch_left`.
    pub event_name: String,
    /// What the event means for the bout (`touch`, `double`, `off_target`, `halt`).
    pub kind: referee_protocol::scoring::EventKind,
    /// The first and the last stored frame in the clip (inclusive).
    pub first_frame: u64,
    pub last_frame: u64,
    /// The timestamps of those frames, in seconds.
    pub start_s: f64,
    pub end_s: f64,
    /// Frames in the clip: `last_frame - first_frame + 1`.
    pub frames: u64,
    /// Size of the MP4 file.
    pub bytes: u64,
}

impl SessionMeta {
    /// A session with nothing stored yet; the caller fills in what it knows.
    pub fn new(id: String, name: String, status: SessionStatus) -> Self {
        let now = now_rfc3339();
        Self {
            id,
            name,
            source: String::new(),
            fps: 0.0,
            width: 0,
            height: 0,
            encoding: FrameEncoding::Jpeg,
            quality: None,
            frames_expected: None,
            status,
            stage: None,
            percent: None,
            frames_stored: 0,
            bytes_stored: 0,
            signal_file: None,
            results: Vec::new(),
            error: None,
            signal_events: None,
            variable_frame_rate: None,
            clips: Vec::new(),
            upload: None,
            resume_token: String::new(),
            created_ahead: false,
            resumes: 0,
            processing_attempts: 0,
            resumable_until: None,
            expires_at: None,
            created_at: now.clone(),
            updated_at: now,
            ended_at: None,
            completed_at: None,
        }
    }

    /// Duration of the stored video in seconds.
    pub fn duration_s(&self) -> f64 {
        self.frames_stored as f64 / self.fps
    }
}

impl SessionMeta {
    /// The metadata as the HTTP API shows it: without the resume token.
    pub fn public_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.remove("resume_token");
        }
        value
    }

    /// Whether the upload had ended (SESSION_END accepted) when the session was detached.
    pub fn upload_ended(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// The current time as RFC 3339 (UTC).
pub fn now_rfc3339() -> String {
    rfc3339(time::OffsetDateTime::now_utc())
}

/// `t` as RFC 3339.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("unknown"))
}

/// Whether the RFC 3339 time `t` has passed (an unreadable time counts as passed).
pub fn has_passed(t: &str) -> bool {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map_or(true, |t| t <= time::OffsetDateTime::now_utc())
}
