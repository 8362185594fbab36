//! The sessions this server is working on right now (receiving or processing), shared between
//! the connection that feeds a session and the pipeline that processes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;
use tokio::sync::{broadcast, OwnedMutexGuard};
use tokio_util::sync::CancellationToken;

use crate::pipeline::PipelineEvent;
use crate::store::SessionMeta;

/// Pipeline events kept for a slow listener; one that falls further behind skips some
/// progress (never the final event, which is the last one sent).
const EVENT_BACKLOG: usize = 64;

/// The registry of live sessions. A session leaves it when the last [`LiveSession`] handle
/// (its connection's or its pipeline's) is dropped.
#[derive(Debug, Default)]
pub struct LiveSessions {
    // std Mutex: held only to insert, remove or copy, never across an `.await`.
    map: Mutex<HashMap<String, Weak<LiveSession>>>,
}

/// A session being received or processed: its metadata as it changes, who feeds it, and its
/// processing events.
#[derive(Debug)]
pub struct LiveSession {
    registry: Arc<LiveSessions>,
    id: String,
    // std Mutex: short critical sections only, never across an `.await`.
    meta: Mutex<SessionMeta>,
    /// Held by the one connection feeding the session.
    attachment: Arc<tokio::sync::Mutex<()>>,
    /// Cancelled to ask the connection holding `attachment` to let go (a resume takes over).
    // std Mutex: short critical sections only.
    holder: Mutex<CancellationToken>,
    /// The address of the client that attached last.
    client: Mutex<Option<IpAddr>>,
    /// Processing progress and outcome, for every connection that listens.
    events: broadcast::Sender<PipelineEvent>,
    /// The latest frame received (its index and JPEG), for the live view.
    // std Mutex: a swap under it, never held across an `.await`.
    latest_frame: Mutex<Option<(u64, Bytes)>>,
}

impl LiveSessions {
    /// Adds a session unless it is live already; returns its handle and how many sessions
    /// are live now.
    pub fn insert(self: &Arc<Self>, meta: SessionMeta) -> (Arc<LiveSession>, usize) {
        let mut map = self.lock();
        if let Some(live) = map.get(&meta.id).and_then(Weak::upgrade) {
            return (live, map.len());
        }
        let id = meta.id.clone();
        let live = Arc::new(LiveSession {
            registry: Arc::clone(self),
            id: id.clone(),
            meta: Mutex::new(meta),
            attachment: Arc::new(tokio::sync::Mutex::new(())),
            holder: Mutex::new(CancellationToken::new()),
            client: Mutex::new(None),
            events: broadcast::channel(EVENT_BACKLOG).0,
            latest_frame: Mutex::new(None),
        });
        map.insert(id, Arc::downgrade(&live));
        (live, map.len())
    }

    /// The handle of a live session.
    pub fn handle(&self, id: &str) -> Option<Arc<LiveSession>> {
        self.lock().get(id).and_then(Weak::upgrade)
    }

    /// The current metadata of a live session.
    pub fn get(&self, id: &str) -> Option<SessionMeta> {
        let live = self.lock().get(id).and_then(Weak::upgrade)?;
        let meta = live.snapshot();
        Some(meta)
    }

    /// How many sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Weak<LiveSession>>> {
        // A panic while holding this lock cannot leave the map inconsistent: recover it.
        self.map
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LiveSession {
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A copy of the metadata.
    pub fn snapshot(&self) -> SessionMeta {
        self.lock().clone()
    }

    /// Changes the metadata and returns a copy of the result (to persist it).
    pub fn update(&self, change: impl FnOnce(&mut SessionMeta)) -> SessionMeta {
        let mut meta = self.lock();
        change(&mut meta);
        meta.updated_at = time::OffsetDateTime::now_utc();
        meta.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SessionMeta> {
        self.meta
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Attaches a connection: asks the connection holding the session, if any, to let go,
    /// waits until it has (its frames flushed and its state saved), and returns the
    /// attachment with the token that will ask this connection to let go in turn.
    pub async fn attach(&self, client: IpAddr) -> (OwnedMutexGuard<()>, CancellationToken) {
        self.holder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .cancel();
        let guard = Arc::clone(&self.attachment).lock_owned().await;
        let token = CancellationToken::new();
        *self
            .holder
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = token.clone();
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(client);
        (guard, token)
    }

    /// The address of the client attached last, if one has attached.
    pub fn client(&self) -> Option<IpAddr> {
        *self
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Publishes a processing event to every listening connection.
    pub fn publish(&self, event: PipelineEvent) {
        // No listener is fine: processing goes on without one.
        let _ = self.events.send(event);
    }

    /// Keeps `jpeg`, frame `index`, as the latest for the live view (one frame per session,
    /// shared with the writer's copy: nothing is copied).
    pub fn set_latest_frame(&self, index: u64, jpeg: Bytes) {
        *self
            .latest_frame
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((index, jpeg));
    }

    /// The latest frame received, if one was since the session became live.
    pub fn latest_frame(&self) -> Option<(u64, Bytes)> {
        self.latest_frame
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Listens to processing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PipelineEvent> {
        self.events.subscribe()
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let remaining = {
            let mut map = self.registry.lock();
            map.remove(&self.id);
            map.len()
        };
        tracing::info!(
            "Session {} left memory, its data stays on disk ({remaining} active sessions)",
            self.id
        );
    }
}
