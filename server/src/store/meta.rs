//! The metadata record of a session, stored as `session.json`: private to the server (it holds
//! the resume token); the HTTP API shows its [`SessionView`].

use referee_protocol::api::{BoutMembership, SessionLinks, SessionView};
pub use referee_protocol::api::{Clip, SessionStatus};
use referee_protocol::{FrameEncoding, Stage, UploadIdentity};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// The bout this session is a camera of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bout: Option<BoutMembership>,
    /// How many times the session was resumed.
    #[serde(default)]
    pub resumes: u64,
    /// How many times processing was started (counted on disk before each start), so that a
    /// session whose processing stops the server is not run again at every start.
    #[serde(default)]
    pub processing_attempts: u32,
    /// Until when a detached session may be resumed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resumable_until: Option<OffsetDateTime>,
    /// When an abandoned session's data will be deleted, or a session created ahead that
    /// nobody streamed into.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Stored as RFC 3339 times.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
}

impl SessionMeta {
    /// A session with nothing stored yet; the caller fills in what it knows.
    pub fn new(id: String, name: String, status: SessionStatus) -> Self {
        let now = OffsetDateTime::now_utc();
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
            bout: None,
            resume_token: String::new(),
            created_ahead: false,
            resumes: 0,
            processing_attempts: 0,
            resumable_until: None,
            expires_at: None,
            created_at: now,
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
    /// The session as the HTTP API shows it (without the resume token), with `links`.
    pub fn view(&self, links: Option<SessionLinks>) -> SessionView {
        SessionView {
            id: self.id.clone(),
            name: self.name.clone(),
            source: self.source.clone(),
            fps: self.fps,
            width: self.width,
            height: self.height,
            encoding: self.encoding,
            quality: self.quality,
            frames_expected: self.frames_expected,
            status: self.status,
            stage: self.stage,
            percent: self.percent,
            frames_stored: self.frames_stored,
            bytes_stored: self.bytes_stored,
            signal_file: self.signal_file.clone(),
            results: self.results.clone(),
            error: self.error.clone(),
            signal_events: self.signal_events,
            created_ahead: self.created_ahead,
            variable_frame_rate: self.variable_frame_rate,
            clips: self.clips.clone(),
            upload: self.upload.clone(),
            bout: self.bout.clone(),
            resumes: self.resumes,
            processing_attempts: self.processing_attempts,
            resumable_until: self.resumable_until,
            expires_at: self.expires_at,
            created_at: self.created_at,
            updated_at: self.updated_at,
            ended_at: self.ended_at,
            completed_at: self.completed_at,
            links,
        }
    }

    /// Whether the upload had ended (SESSION_END accepted) when the session was detached.
    pub fn upload_ended(&self) -> bool {
        self.ended_at.is_some()
    }
}

/// `t` as RFC 3339, for messages.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("unknown"))
}

/// Whether `t` has passed.
pub fn has_passed(t: &OffsetDateTime) -> bool {
    *t <= OffsetDateTime::now_utc()
}
