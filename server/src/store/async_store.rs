//! [`Store`]: the session store for async code. Every [`SessionStore`] method blocks (disk
//! I/O, or an object-store request waited for); `Store` runs each call on a blocking thread
//! (`spawn_blocking`) and answers one `Result<T, StoreError>`, so that no task on the runtime
//! blocks and no caller handles a join error: a call whose blocking task panicked or was
//! cancelled becomes [`StoreError::TaskFailed`], saying which call and what happened.
//!
//! It has a method for each store call that async code makes, and [`Store::run`] for
//! several blocking steps at once (a lookup and what depends on it). Code that already runs
//! on a blocking thread (the pipeline, the frame writer thread) uses the blocking interface
//! itself, [`Store::blocking`].
//!
//! This is also where an async store plugs in: an object store whose client is async
//! (`object_store`) can answer these methods with its own futures instead of a blocking
//! thread, without changing a caller.

use std::sync::Arc;

use tokio::task::JoinError;

use super::{ResultFile, SessionMeta, SessionStore, StoreError, StoredFrame};

/// The session store for async code: a cheap handle (clone it freely).
#[derive(Clone)]
pub struct Store {
    sessions: Arc<dyn SessionStore>,
}

impl Store {
    pub fn new(sessions: Arc<dyn SessionStore>) -> Self {
        Self { sessions }
    }

    /// The blocking interface, for code that runs on a blocking thread already.
    pub fn blocking(&self) -> &Arc<dyn SessionStore> {
        &self.sessions
    }

    /// Runs `op` on a blocking thread (in the caller's tracing span) and gives its answer;
    /// `what` names the work in the error should the thread fail (e.g. `"recovering the
    /// frames"`).
    pub async fn run<T, F>(&self, what: &'static str, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn SessionStore) -> Result<T, StoreError> + Send + 'static,
    {
        let sessions = Arc::clone(&self.sessions);
        let span = tracing::Span::current();
        match tokio::task::spawn_blocking(move || span.in_scope(|| op(sessions.as_ref()))).await {
            Ok(answer) => answer,
            Err(join) => Err(StoreError::TaskFailed {
                what,
                detail: why_unfinished(join),
            }),
        }
    }

    /// [`SessionStore::create`].
    pub async fn create(&self, meta: SessionMeta) -> Result<(), StoreError> {
        self.run("creating the session", move |s| s.create(&meta))
            .await
    }

    /// [`SessionStore::save_meta`].
    pub async fn save_meta(&self, meta: SessionMeta) -> Result<(), StoreError> {
        self.run("saving the session's state", move |s| s.save_meta(&meta))
            .await
    }

    /// [`SessionStore::load_meta`].
    pub async fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
        let id = id.to_string();
        self.run("reading the session's state", move |s| s.load_meta(&id))
            .await
    }

    /// [`SessionStore::list`]: every session's metadata, newest first.
    pub async fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
        self.run("listing the sessions", |s| s.list()).await
    }

    /// [`SessionStore::delete`].
    pub async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let id = id.to_string();
        self.run("deleting the session", move |s| s.delete(&id))
            .await
    }

    /// [`SessionStore::list_results`].
    pub async fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let id = id.to_string();
        self.run("listing the session's results", move |s| {
            s.list_results(&id)
        })
        .await
    }

    /// [`SessionStore::open_result`].
    pub async fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
        let (id, name) = (id.to_string(), name.to_string());
        self.run("opening a result of the session", move |s| {
            s.open_result(&id, &name)
        })
        .await
    }

    /// The presentation timestamps of the session's stored frames, in microseconds, in
    /// index order ([`super::FrameSource::timestamps`]).
    pub async fn frame_timestamps(&self, id: &str) -> Result<Vec<i64>, StoreError> {
        let id = id.to_string();
        self.run("reading the frame times", move |s| {
            Ok(s.frame_source(&id)?.timestamps())
        })
        .await
    }

    /// How many frames the session has stored, and frame `index` if it is one of them.
    pub async fn stored_frame(
        &self,
        id: &str,
        index: u64,
    ) -> Result<(u64, Option<StoredFrame>), StoreError> {
        let id = id.to_string();
        self.run("reading a stored frame", move |s| {
            let mut frames = s.frame_source(&id)?;
            let stored = frames.len();
            let frame = (index < stored).then(|| frames.read(index)).transpose()?;
            Ok((stored, frame))
        })
        .await
    }

    /// [`SessionStore::location`] (it does not block).
    pub fn location(&self, id: &str) -> String {
        self.sessions.location(id)
    }
}

/// What happened to a blocking task that gave no answer.
fn why_unfinished(join: JoinError) -> String {
    if join.is_cancelled() {
        return "it was cancelled: the server is shutting down".into();
    }
    match join.try_into_panic() {
        Ok(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            format!(
                "it panicked ({message}): this is a bug of the server, report it with the \
                 server's log"
            )
        }
        Err(join) => join.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{LocalStore, SessionStatus};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(dir.path()).unwrap();
        (dir, Store::new(Arc::new(local)))
    }

    #[tokio::test]
    async fn a_panicking_store_call_is_a_typed_error_that_says_what_failed() {
        let (_dir, store) = store();
        let err = store
            .run("the test's step", |_| -> Result<(), StoreError> {
                panic!("the disk caught fire")
            })
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::TaskFailed {
                    what: "the test's step",
                    ..
                }
            ),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.starts_with("the test's step did not finish: it panicked (the disk caught fire)"),
            "{text}"
        );
        assert!(text.contains("report it with the server's log"), "{text}");
    }

    #[tokio::test]
    async fn store_answers_and_errors_come_through_unchanged() {
        let (_dir, store) = store();
        let meta = SessionMeta::new("s1".into(), "bout".into(), SessionStatus::Created);
        store.create(meta.clone()).await.unwrap();
        assert_eq!(store.load_meta("s1").await.unwrap().name, "bout");
        assert_eq!(store.list().await.unwrap().len(), 1);
        store
            .run("opening the frame log", |s| s.frame_sink("s1", 0).map(drop))
            .await
            .unwrap();
        assert_eq!(store.stored_frame("s1", 0).await.unwrap().0, 0);
        assert!(store.stored_frame("s1", 0).await.unwrap().1.is_none());
        assert!(store.frame_timestamps("s1").await.unwrap().is_empty());
        store.delete("s1").await.unwrap();
        let gone = store.load_meta("s1").await.unwrap_err();
        assert!(
            matches!(gone, StoreError::NotFound(ref id) if id == "s1"),
            "{gone:?}"
        );
        assert_eq!(gone.to_string(), "session s1 does not exist");
    }
}
