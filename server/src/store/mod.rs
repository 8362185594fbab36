//! Where sessions live: one interface, [`SessionStore`], so that a shared object store can back
//! several servers later; [`LocalStore`] (a data directory on local disk) is the embedded
//! default.
//!
//! A session is a metadata record ([`SessionMeta`]), an append-only frame log with its index,
//! the signal file, and the result files that processing produces.
//!
//! Async code reaches the store through [`Store`] (`async_store.rs`), which runs each
//! blocking call on a blocking thread.

mod async_store;
mod bridge;
#[cfg(test)]
mod contract;
pub mod durable;
mod frame_log;
mod local;
mod meta;
pub mod object;
pub mod registry;
mod result_files;

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use referee_protocol::FrameHeader;
use thiserror::Error;

pub use async_store::Store;
pub use bridge::{Bridge, Failed};
#[cfg(test)]
pub use frame_log::Faults;
pub use frame_log::{FrameLogReader, FrameLogWriter, Recovered, StoredFrame};
pub use local::LocalStore;
pub use meta::{has_passed, rfc3339, Clip, SessionMeta, SessionStatus};
pub use object::{CacheLimits, ObjectSessions};
pub use registry::{Registry, RegistryStore};
pub use result_files::{valid_result_name, ResultFile};

/// A storage failure, naming the session and the file involved.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("session {0} does not exist")]
    NotFound(String),
    #[error("session {id}: {what} {path}: {source}")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The data directory itself cannot be used.
    #[error("{what} {path}: {source}: check that it exists and that the server may write to it")]
    DataDir {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the frame writer thread stopped unexpectedly: {0}")]
    WriterStopped(String),
    /// The session exists but has no result of that name (or the name is not a result's).
    #[error("session {id} has no result {name:?}")]
    ResultNotFound { id: String, name: String },
    /// A request to the object store or the registry failed.
    #[error("session {id}: {what} {key}: {source}")]
    Remote {
        id: String,
        what: &'static str,
        key: String,
        #[source]
        source: Box<Failed>,
    },
    #[error("session {0} exists already")]
    Exists(String),
    /// The object store's address (`--store`) cannot be used.
    #[error("--store {url}: {detail}")]
    BadUrl { url: String, detail: String },
    #[error("session {id}: {path} is corrupt: {detail}")]
    Corrupt {
        id: String,
        path: PathBuf,
        detail: String,
    },
    /// The registry (`--registry`) cannot be used at start.
    #[error("--registry: {detail}")]
    BadRegistry { detail: String },
    /// Another server holds the session's lease (see [`registry`]).
    #[error("session {id} is being received by the server {node}, whose lease on it lasts {secs} s more unless it renews it: resume again after that")]
    Leased { id: String, node: String, secs: u64 },
    /// This server's lease on the session was taken over by another server.
    #[error("session {0} was taken over by another server while this one received it: its frames stored before are kept there")]
    LeaseLost(String),
    /// The blocking thread of a store call ([`Store`]) panicked or was cancelled.
    #[error("{what} did not finish: {detail}")]
    TaskFailed { what: &'static str, detail: String },
}

/// Maps an `io::Error` on `path` of session `id` to a [`StoreError`] saying what failed.
fn io_error(id: &str, what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let (id, path) = (id.to_string(), path.to_path_buf());
    move |source| StoreError::Io {
        id,
        what,
        path,
        source,
    }
}

/// [`durable::sync_dir`], with the error naming session `id`.
pub(crate) fn sync_dir(id: &str, dir: &Path) -> Result<(), StoreError> {
    durable::sync_dir(dir).map_err(io_error(id, "cannot sync the directory", dir))
}

/// `text` (an error for a client) with the data directory's path replaced by `DATA_DIR`: a
/// client learns which file of its session failed, never where the server keeps its data.
pub fn without_data_dir(text: &str, data_dir: &Path) -> String {
    let dir = data_dir.display().to_string();
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() || dir == "." {
        return text.to_string();
    }
    text.replace(dir, "DATA_DIR")
}

/// Appends frames to a session as they arrive.
pub trait FrameSink: Send {
    /// Appends one frame message (header and payload, as received). Buffered: it is durable
    /// only after [`FrameSink::sync`].
    fn append(&mut self, header: &FrameHeader, message: &Bytes) -> Result<(), StoreError>;
    /// Makes every appended frame durable (written and flushed to the disk).
    fn sync(&mut self) -> Result<(), StoreError>;
}

/// Reads a session's stored frames back, in order.
pub trait FrameSource: Send {
    /// How many frames are stored.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Presentation timestamps of all frames, in microseconds, in index order.
    fn timestamps(&self) -> Vec<i64>;
    /// The CRC32C of every frame's payload, in index order.
    fn checksums(&self) -> Vec<u32>;
    /// Reads frame `index` (its payload, checked against its CRC32C).
    fn read(&mut self, index: u64) -> Result<StoredFrame, StoreError>;
}

/// The storage of sessions. Every method blocks: call it from a blocking thread (a processing
/// thread, the frame writer); async code calls it through [`Store`].
pub trait SessionStore: Send + Sync + 'static {
    /// Creates a new session with its metadata; fails if the id exists.
    fn create(&self, meta: &SessionMeta) -> Result<(), StoreError>;
    /// Replaces a session's metadata atomically.
    fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError>;
    fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError>;
    /// Every session's metadata, newest first.
    fn list(&self) -> Result<Vec<SessionMeta>, StoreError>;
    /// Opens the session's frame log for appending after its first `frames` frames (those
    /// stored and acknowledged), cutting off anything after them: frames of a batch that
    /// failed to be stored were never acknowledged. Fewer than `frames` frames is an error.
    fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError>;
    /// Repairs the session's frames after a crash (see [`frame_log::recover`]) and says
    /// what is stored.
    fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError>;
    /// Opens the session's stored frames for reading.
    fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError>;
    /// Stores the signal file's text.
    fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError>;
    /// The signal file's text, if one was stored.
    fn signal(&self, id: &str) -> Result<Option<String>, StoreError>;
    /// Deletes the session and everything in it.
    fn delete(&self, id: &str) -> Result<(), StoreError>;
    /// Stores a result file of the session, moving it from a local scratch path. Result names
    /// follow [`valid_result_name`].
    fn put_result_file(&self, id: &str, name: &str, from: &Path) -> Result<(), StoreError>;
    /// Stores a result file of the session from bytes.
    fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError>;
    /// A local directory where processing may write temporary files for this session.
    fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError>;
    /// Removes the scratch directory once processing is over.
    fn remove_scratch(&self, id: &str) -> Result<(), StoreError>;
    /// Where the session's results are, for the client: relative to the store (e.g.
    /// `sessions/ID`), never a server path.
    fn location(&self, id: &str) -> String;
    /// Opens a result file for reading. `name` is as given to [`SessionStore::put_result`],
    /// e.g. `video.mp4` or `thumbnails/frame-000036.jpg` (see [`valid_result_name`]).
    fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError>;
    /// The names of the session's result files that exist now, sorted.
    fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn errors_for_clients_do_not_show_the_data_directory() {
        let text = "session s: cannot write /srv/referee/sessions/s/frames.log: No space left";
        assert_eq!(
            without_data_dir(text, Path::new("/srv/referee/")),
            "session s: cannot write DATA_DIR/sessions/s/frames.log: No space left"
        );
        assert_eq!(without_data_dir(text, Path::new(".")), text);
    }

    #[test]
    fn a_directory_syncs_and_a_missing_one_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        sync_dir("s", dir.path()).unwrap();
        let missing = dir.path().join("gone");
        let err = sync_dir("s", &missing).unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("session s: cannot sync the directory"),
            "{text}"
        );
        assert!(text.contains(&missing.display().to_string()), "{text}");
    }
}
