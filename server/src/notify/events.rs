//! The server's event bus: what happens to sessions (created, frames stored, ended, each
//! processing stage's progress, complete, failed, detached, resumed...), for live watchers,
//! webhooks and metrics. Publishing never waits: a subscriber that falls behind skips events
//! (it is told how many), the publisher is never slowed.

pub use referee_protocol::api::{EventKind, SessionEvent};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::store::{Clip, SessionMeta};

/// Events kept for slow subscribers.
const BACKLOG: usize = 1024;

/// The event `kind` of the session `meta`, now.
pub fn event_of(kind: EventKind, meta: &SessionMeta) -> SessionEvent {
    SessionEvent {
        event: kind,
        session_id: meta.id.clone(),
        at: OffsetDateTime::now_utc(),
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
        let _ = self.tx.send(event_of(event, meta));
    }

    /// Publishes that `clip` of session `meta` is stored.
    pub fn publish_clip(&self, meta: &SessionMeta, clip: Clip) {
        let mut event = event_of(EventKind::ClipReady, meta);
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
