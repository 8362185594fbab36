//! The server's event bus: what happens to sessions (created, frames stored, ended, each
//! processing stage's progress, complete, failed, detached, resumed...), for live watchers,
//! webhooks and metrics. Publishing never waits: a subscriber that falls behind skips events
//! (it is told how many), the publisher is never slowed.

use referee_protocol::Stage;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::store::{now_rfc3339, Clip, SessionMeta, SessionStatus};

/// Events kept for slow subscribers.
const BACKLOG: usize = 1024;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// One event, with the session's state at that moment.
#[derive(Debug, Clone, Serialize)]
pub struct SessionEvent {
    pub event: EventKind,
    pub session_id: String,
    pub at: String,
    pub status: SessionStatus,
    pub frames_stored: u64,
    pub bytes_stored: u64,
    pub frames_expected: Option<u64>,
    pub stage: Option<Stage>,
    pub percent: Option<f32>,
    pub error: Option<String>,
    /// The clip of a `clip_ready` event.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clip: Option<Clip>,
}

impl SessionEvent {
    pub fn new(event: EventKind, meta: &SessionMeta) -> Self {
        Self {
            event,
            session_id: meta.id.clone(),
            at: now_rfc3339(),
            status: meta.status,
            frames_stored: meta.frames_stored,
            bytes_stored: meta.bytes_stored,
            frames_expected: meta.frames_expected,
            stage: meta.stage,
            percent: meta.percent,
            error: meta.error.clone(),
            clip: None,
        }
    }

    /// Whether this event ends the session's story for a watcher.
    pub fn is_final(&self) -> bool {
        matches!(
            self.event,
            EventKind::Complete | EventKind::Failed | EventKind::Deleted
        )
    }
}

/// Publishes session events to any number of subscribers.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<SessionEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: EventKind, meta: &SessionMeta) {
        // No subscriber is fine.
        let _ = self.tx.send(SessionEvent::new(event, meta));
    }

    /// Publishes that `clip` of session `meta` is stored.
    pub fn publish_clip(&self, meta: &SessionMeta, clip: Clip) {
        let mut event = SessionEvent::new(EventKind::ClipReady, meta);
        event.clip = Some(clip);
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.tx.subscribe()
    }

    /// How many subscribers (watchers, webhooks) are listening.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}
