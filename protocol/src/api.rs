//! The HTTP and SSE contract: what the server's JSON API answers and its event streams carry.
//! The server serialises these types, the client deserialises them; the server's own disk
//! record of a session is private to it and never crosses the wire as such.
//!
//! Times are RFC 3339 (UTC) on the wire and [`OffsetDateTime`] here. Fields a newer server may
//! add are ignored by older clients (no `deny_unknown_fields`), and fields an older server
//! leaves out take their defaults.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::message::{FrameEncoding, Stage, UploadIdentity};

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
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

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The bout a session's camera is part of, for a bout recorded by several cameras: each
/// camera is a session of its own, and these fields are the same in each but `camera` and
/// `offset_s`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BoutMembership {
    /// The bout's id (the other cameras' sessions carry the same).
    pub bout_id: String,
    /// This session's camera.
    pub camera: String,
    /// Every camera of the bout, in the order the bout was started with.
    pub cameras: Vec<String>,
    /// Seconds this camera's recording started after the bout clock's zero (the signal
    /// file's), when known: the signal's events are lined up with this camera's frames
    /// that much earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_s: Option<f64>,
    /// When the server found `offset_s` from the cameras' motion (the user gave none): how
    /// sure it is, 0 to 1 (below 0.3, check it by eye).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_confidence: Option<f64>,
    /// Why no offset could be found from the motion, when it could not (the events are then
    /// lined up as if the camera started with the signal's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset_note: Option<String>,
}

/// A session as `GET /api/sessions/{id}` and `GET /api/sessions` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub name: String,
    /// The source video's file name, as the client announced it.
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub fps: f64,
    #[serde(default)]
    pub width: u32,
    #[serde(default)]
    pub height: u32,
    #[serde(default = "jpeg")]
    pub encoding: FrameEncoding,
    #[serde(default)]
    pub quality: Option<u8>,
    /// Frames the client expected to send, if it knew.
    #[serde(default)]
    pub frames_expected: Option<u64>,
    pub status: SessionStatus,
    /// The running or last processing stage.
    #[serde(default)]
    pub stage: Option<Stage>,
    /// Percent done of `stage`.
    #[serde(default)]
    pub percent: Option<f32>,
    /// Frames durably stored.
    #[serde(default)]
    pub frames_stored: u64,
    /// Bytes of frame payload stored.
    #[serde(default)]
    pub bytes_stored: u64,
    /// The signal file's name, once received.
    #[serde(default)]
    pub signal_file: Option<String>,
    /// Result files (paths under the session's results), once processing is complete.
    #[serde(default)]
    pub results: Vec<String>,
    /// Why the session failed or was detached.
    #[serde(default)]
    pub error: Option<String>,
    /// Signal events lined up with frames, once processed.
    #[serde(default)]
    pub signal_events: Option<u64>,
    /// Created ahead of its upload (`POST /api/sessions`).
    #[serde(default)]
    pub created_ahead: bool,
    /// Whether the frames came at a variable rate, once processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variable_frame_rate: Option<bool>,
    /// The clips made so far (the `clips` stage, first in processing), in the order they
    /// were stored: during processing too, so the first touches can be reviewed early.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clips: Vec<Clip>,
    /// What the client said it uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadIdentity>,
    /// The bout this session is a camera of, when it was recorded by several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bout: Option<BoutMembership>,
    /// How many times the session was resumed.
    #[serde(default)]
    pub resumes: u64,
    /// How many times processing was started.
    #[serde(default)]
    pub processing_attempts: u32,
    /// Until when a detached session may be resumed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub resumable_until: Option<OffsetDateTime>,
    /// When an abandoned session's data, or a session created ahead that nobody streamed
    /// into, will be deleted.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Where the session's data is (`GET /api/sessions/{id}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<SessionLinks>,
}

/// One clip of a session: an H.264 MP4 of the action that led to a signal event, from where
/// the action began (less a pre-roll) to just after the event (`docs/report-format.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Clip {
    /// Its result name, e.g. `clips/clip-003-touch_left.mp4`.
    pub name: String,
    /// Position of its event in the signal file's events (and in `report.json`'s `events`).
    pub event: usize,
    /// The event's name, e.g. `touch_left`.
    pub event_name: String,
    /// What the event means for the bout (`touch`, `double`, `off_target`, `halt`).
    pub kind: crate::scoring::EventKind,
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

fn jpeg() -> FrameEncoding {
    FrameEncoding::Jpeg
}

/// The paths of a session's data, each present once it exists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionLinks {
    /// The session itself.
    #[serde(rename = "self")]
    pub this: String,
    /// A stored frame, as a template: `{index}` is the frame's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<String>,
    /// The stored frames' times ([`FrameTimes`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame_times: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_html: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thumbnails: Vec<String>,
    /// Each clip's path (`GET /api/sessions/{id}/clips/{name}`, byte ranges).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clips: Vec<String>,
}

/// `GET /api/sessions`: every session, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The body of `POST /api/sessions` (or no body: the default name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSession {
    /// The session's name, any text up to 200 characters, e.g. `Final, pool A`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `POST /api/sessions`: the session created ahead of its upload, and where to follow it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreatedSession {
    #[serde(flatten)]
    pub session: SessionView,
    pub links: CreatedLinks,
}

/// Where to follow a session created ahead of its upload. It holds `self`, as a session's
/// [`SessionLinks`] do, since it takes their place in the session's JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatedLinks {
    /// The session itself (as `session`).
    #[serde(rename = "self")]
    pub this: String,
    pub session: String,
    pub events: String,
    pub live: String,
    pub dashboard: String,
}

/// `GET /api/sessions/{id}/frames?from&count`: the presentation times of stored frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FrameTimes {
    /// Frames stored in all.
    pub frames_stored: u64,
    /// The index of the first frame in `pts_us`.
    pub from: u64,
    /// Each frame's presentation time in microseconds, from `from` on.
    pub pts_us: Vec<i64>,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `"ok"`.
    pub status: String,
    /// Uploads streaming now.
    pub active_sessions: usize,
    /// The server's version.
    pub version: String,
}

/// Every error the HTTP API answers: a stable code and a sentence saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
}

/// What happened to a session (the SSE event name, and `event` in its data and in webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The session exists (created by an upload or ahead of one).
    Created,
    /// An upload started streaming into the session.
    Started,
    /// More frames are stored (at most a few of these a second per session).
    Frames,
    /// Every frame is stored (SESSION_END).
    Ended,
    /// A processing stage moved on.
    Progress,
    /// A clip is stored (stage `clips`); the event carries it.
    ClipReady,
    Complete,
    Failed,
    /// The upload's connection ended before the upload did.
    Detached,
    Resumed,
    Abandoned,
    Deleted,
    /// The current state, sent first to a watcher that arrives late.
    State,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Created => "created",
            EventKind::Started => "started",
            EventKind::Frames => "frames",
            EventKind::Ended => "ended",
            EventKind::Progress => "progress",
            EventKind::ClipReady => "clip_ready",
            EventKind::Complete => "complete",
            EventKind::Failed => "failed",
            EventKind::Detached => "detached",
            EventKind::Resumed => "resumed",
            EventKind::Abandoned => "abandoned",
            EventKind::Deleted => "deleted",
            EventKind::State => "state",
        }
    }

    /// Whether this event ends the session's story for a watcher.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EventKind::Complete | EventKind::Failed | EventKind::Deleted
        )
    }
}

/// One event of a session, with the session's state at that moment: the data of an SSE
/// event on `/api/events` and `/api/sessions/{id}/events`, and a webhook's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionEvent {
    pub event: EventKind,
    pub session_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub status: SessionStatus,
    #[serde(default)]
    pub frames_stored: u64,
    #[serde(default)]
    pub bytes_stored: u64,
    #[serde(default)]
    pub frames_expected: Option<u64>,
    #[serde(default)]
    pub stage: Option<Stage>,
    #[serde(default)]
    pub percent: Option<f32>,
    #[serde(default)]
    pub error: Option<String>,
    /// The clip of a `clip_ready` event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<Clip>,
    /// The bout the session is a camera of, when it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bout: Option<BoutMembership>,
}

impl SessionEvent {
    /// Whether this event ends the session's story for a watcher.
    pub fn is_final(&self) -> bool {
        self.event.is_final()
    }
}

/// A webhook's body (`POST` to each `--webhook` URL), as kept in the server's outbox until
/// delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEvent {
    /// Stable for this event: the receiver can drop a second delivery with the same key.
    pub idempotency_key: String,
    /// `session.created`, `session.completed` or `session.failed`.
    pub event: String,
    pub session_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The session when the event happened.
    pub session: SessionView,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_back_as_written_and_links_keep_their_wire_names() {
        let json = r#"{"id":"s1","name":"bout","source":"b.mp4","fps":30.0,"width":64,"height":48,
            "encoding":"jpeg","quality":null,"frames_expected":null,"status":"awaiting_signal",
            "stage":null,"percent":null,"frames_stored":3,"bytes_stored":9,"signal_file":null,
            "results":[],"error":null,"signal_events":null,"created_ahead":false,"resumes":0,
            "processing_attempts":0,"resumable_until":null,"expires_at":null,
            "created_at":"2026-12-02T10:00:00.5Z","updated_at":"2026-12-02T10:00:01Z",
            "ended_at":null,"completed_at":null,
            "links":{"self":"/api/sessions/s1","thumbnails":["/t"]}}"#;
        let view: SessionView = serde_json::from_str(json).unwrap();
        assert_eq!(view.status, SessionStatus::AwaitingSignal);
        assert_eq!(view.created_at.millisecond(), 500);
        let links = view.links.clone().unwrap();
        assert_eq!(links.this, "/api/sessions/s1");
        assert_eq!(links.thumbnails, ["/t"]);
        let again: serde_json::Value = serde_json::to_value(&view).unwrap();
        assert_eq!(again["links"]["self"], "/api/sessions/s1");
        assert!(again["links"].get("video").is_none());
        assert_eq!(again["created_at"], "2026-12-02T10:00:00.5Z");
        assert_eq!(serde_json::from_value::<SessionView>(again).unwrap(), view);
    }

    #[test]
    fn an_older_servers_session_without_the_newer_fields_reads() {
        let json = r#"{"id":"s1","name":"bout","status":"complete",
            "created_at":"2026-12-02T10:00:00Z","updated_at":"2026-12-02T10:00:00Z"}"#;
        let view: SessionView = serde_json::from_str(json).unwrap();
        assert_eq!(view.status, SessionStatus::Complete);
        assert_eq!(view.encoding, FrameEncoding::Jpeg);
        assert!(view.links.is_none() && view.results.is_empty());
    }

    #[test]
    fn status_and_event_names_are_their_wire_names() {
        for status in [SessionStatus::AwaitingSignal, SessionStatus::Abandoned] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::from(status.as_str())
            );
        }
        for kind in [EventKind::Frames, EventKind::State, EventKind::Deleted] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
    }
}
