//! [`IndexedStore`]: every session's metadata kept in memory, so that `GET /api/sessions`,
//! `/metrics` and the sweeper do not read and parse every `session.json` on each call. It wraps
//! the [`SessionStore`]: the metadata is read once at start, and every create, save and delete
//! goes through it (to disk first, then the index), so the index is what the disk holds.
//! Everything else is passed through.
//!
//! The server must be the only writer of its data directory's metadata (as it is of the rest).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::store::{
    FrameSink, FrameSource, Recovered, ResultFile, SessionMeta, SessionStore, StoreError,
};

/// A [`SessionStore`] with its metadata indexed in memory.
pub struct IndexedStore {
    inner: Arc<dyn SessionStore>,
    // std RwLock: copies in and out under it, never held across an `.await` or a disk write.
    index: RwLock<HashMap<String, SessionMeta>>,
}

impl IndexedStore {
    /// Reads every session's metadata from `inner` once.
    pub fn load(inner: Arc<dyn SessionStore>) -> Result<Self, StoreError> {
        let all = inner.list()?;
        tracing::debug!("{} sessions in the metadata index", all.len());
        Ok(Self {
            inner,
            index: RwLock::new(all.into_iter().map(|m| (m.id.clone(), m)).collect()),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, SessionMeta>> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, SessionMeta>> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionStore for IndexedStore {
    fn create(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        self.inner.create(meta)?;
        self.write().insert(meta.id.clone(), meta.clone());
        Ok(())
    }

    fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        self.inner.save_meta(meta)?;
        self.write().insert(meta.id.clone(), meta.clone());
        Ok(())
    }

    fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
        if let Some(meta) = self.read().get(id) {
            return Ok(meta.clone());
        }
        // Not indexed: the store says why (not found, or a corrupt file).
        self.inner.load_meta(id)
    }

    fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
        let mut all: Vec<SessionMeta> = self.read().values().cloned().collect();
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError> {
        self.inner.frame_sink(id, frames)
    }

    fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError> {
        self.inner.recover_frames(id)
    }

    fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError> {
        self.inner.frame_source(id)
    }

    fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError> {
        self.inner.put_signal(id, text)
    }

    fn signal(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.signal(id)
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        let deleted = self.inner.delete(id);
        // Gone from the listing once its metadata is, even if the rest could not be removed.
        if self.inner.load_meta(id).is_err() {
            self.write().remove(id);
        }
        deleted
    }

    fn put_result_file(&self, id: &str, name: &str, from: &Path) -> Result<(), StoreError> {
        self.inner.put_result_file(id, name, from)
    }

    fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_result(id, name, bytes)
    }

    fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        self.inner.scratch_dir(id)
    }

    fn remove_scratch(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_scratch(id)
    }

    fn location(&self, id: &str) -> String {
        self.inner.location(id)
    }

    fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
        self.inner.open_result(id, name)
    }

    fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_results(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocalStore, SessionStatus};

    #[test]
    fn the_index_follows_saves_and_deletes_without_reading_the_disk_again() {
        let data = tempfile::tempdir().unwrap();
        let local = Arc::new(LocalStore::open(data.path()).unwrap());
        let old = SessionMeta::new("old".into(), "old".into(), SessionStatus::Complete);
        local.create(&old).unwrap();
        let store = IndexedStore::load(local).unwrap();
        assert_eq!(store.list().unwrap(), vec![old.clone()]);

        let mut new = SessionMeta::new("new".into(), "new".into(), SessionStatus::Receiving);
        store.create(&new).unwrap();
        new.frames_stored = 7;
        store.save_meta(&new).unwrap();
        assert_eq!(store.load_meta("new").unwrap().frames_stored, 7);

        // The index answers, not the file: a file changed behind the server's back is not
        // read again.
        let file = data.path().join("sessions/old/session.json");
        std::fs::write(&file, b"not json").unwrap();
        assert_eq!(store.load_meta("old").unwrap(), old);

        store.delete("new").unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(matches!(
            store.load_meta("new"),
            Err(StoreError::NotFound(_))
        ));
    }
}
