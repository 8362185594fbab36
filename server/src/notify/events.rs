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
        bout: meta.bout.clone(),
    }
}

/// Publishes session events to any number of subscribers: this server's own, and, in a
/// cluster, those of the other servers (`crate::cluster::relay`), for the event streams.
#[derive(Debug, Clone)]
pub struct EventBus {
    /// Every event, this server's and the other servers'.
    all: broadcast::Sender<SessionEvent>,
    /// This server's events only: webhooks and the relay to the other servers follow these.
    own: broadcast::Sender<SessionEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self {
            all: broadcast::channel(BACKLOG).0,
            own: broadcast::channel(BACKLOG).0,
        }
    }
}

impl EventBus {
    pub fn publish(&self, event: EventKind, meta: &SessionMeta) {
        self.send(event_of(event, meta));
    }

    /// Publishes that `clip` of session `meta` is stored.
    pub fn publish_clip(&self, meta: &SessionMeta, clip: Clip) {
        let mut event = event_of(EventKind::ClipReady, meta);
        event.clip = Some(clip);
        self.send(event);
    }

    fn send(&self, event: SessionEvent) {
        // No subscriber is fine.
        let _ = self.own.send(event.clone());
        let _ = self.all.send(event);
    }

    /// Publishes an event of another server of the cluster, for this server's event streams.
    pub fn publish_relayed(&self, event: SessionEvent) {
        let _ = self.all.send(event);
    }

    /// Every event from now on, this server's and the other servers'.
    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.all.subscribe()
    }

    /// This server's own events from now on.
    pub fn subscribe_own(&self) -> broadcast::Receiver<SessionEvent> {
        self.own.subscribe()
    }
}
