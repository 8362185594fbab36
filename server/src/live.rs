//! The sessions this server is working on right now (receiving or processing), shared between
//! the connection that feeds a session and the pipeline that processes it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use crate::store::SessionMeta;

/// The registry of live sessions. A session leaves it when the last [`LiveSession`] handle
/// (its connection's or its pipeline's) is dropped.
#[derive(Debug, Default)]
pub struct LiveSessions {
    // std Mutex: held only to insert, remove or copy, never across an `.await`.
    map: Mutex<HashMap<String, Weak<LiveSession>>>,
}

/// A session being received or processed: its metadata as it changes.
#[derive(Debug)]
pub struct LiveSession {
    registry: Arc<LiveSessions>,
    id: String,
    // std Mutex: short critical sections only, never across an `.await`.
    meta: Mutex<SessionMeta>,
}

impl LiveSessions {
    /// Adds a session; returns its handle and how many sessions are live now.
    pub fn insert(self: &Arc<Self>, meta: SessionMeta) -> (Arc<LiveSession>, usize) {
        let id = meta.id.clone();
        let live = Arc::new(LiveSession {
            registry: Arc::clone(self),
            id: id.clone(),
            meta: Mutex::new(meta),
        });
        let mut map = self.lock();
        map.insert(id, Arc::downgrade(&live));
        (live, map.len())
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
        meta.updated_at = crate::store::now_rfc3339();
        meta.clone()
    }

    fn lock(&self) -> MutexGuard<'_, SessionMeta> {
        self.meta
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        let remaining = {
            let mut map = self.registry.lock();
            map.remove(&self.id);
            map.len()
        };
        tracing::info!("Removed session {} ({remaining} active sessions)", self.id);
    }
}
