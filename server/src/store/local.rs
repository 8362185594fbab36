//! [`LocalStore`]: sessions in a data directory on local disk, the embedded default.
//!
//! ```text
//! DATA_DIR/sessions/<id>/session.json   metadata (SessionMeta), replaced atomically
//!                       frames.log      frame messages as received
//!                       frames.idx      index of frames.log
//!                       signal.txt      the signal file
//!                       video.mp4, report.json, ...   results
//!                       tmp/            scratch space for processing
//! ```

use std::fs;
use std::path::{Path, PathBuf};

use referee_protocol::text::valid_id;

use super::frame_log::{self, FrameLogReader, FrameLogWriter, Recovered, INDEX_FILE, LOG_FILE};
use super::result_files::{self, ResultFile};
use super::{
    durable, io_error, sync_dir, FrameSink, FrameSource, SessionMeta, SessionStore, StoreError,
};

const META_FILE: &str = "session.json";
const SIGNAL_FILE: &str = "signal.txt";
/// The store's own files and folders in a session directory: never results.
const INTERNAL: [&str; 5] = [META_FILE, SIGNAL_FILE, LOG_FILE, INDEX_FILE, "tmp"];

/// Sessions stored under a local data directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    sessions: PathBuf,
}

impl LocalStore {
    /// Uses `data_dir`, creating it if needed.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let sessions = data_dir.join("sessions");
        fs::create_dir_all(&sessions).map_err(|source| StoreError::DataDir {
            what: "cannot create the data directory",
            path: sessions.clone(),
            source,
        })?;
        // The sessions directory itself, if it was just created.
        durable::sync_dir(data_dir).map_err(|source| StoreError::DataDir {
            what: "cannot sync the data directory",
            path: data_dir.to_path_buf(),
            source,
        })?;
        Ok(Self { sessions })
    }

    /// The directory of session `id`, if `id` is a well-formed id (no path tricks).
    fn dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(self.sessions.join(id))
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.dir(id)?;
        if dir.join(META_FILE).is_file() {
            Ok(dir)
        } else {
            Err(StoreError::NotFound(id.to_string()))
        }
    }

    /// Writes `bytes` to `dir/name` atomically and durably (temporary file, sync, rename, sync
    /// of the directory).
    fn write_atomic(id: &str, dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = dir.join(name);
        durable::write_file(&path, bytes).map_err(io_error(id, "cannot write", &path))
    }
}

impl SessionStore for LocalStore {
    fn create(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        let dir = self.dir(&meta.id)?;
        fs::create_dir(&dir).map_err(io_error(&meta.id, "cannot create", &dir))?;
        sync_dir(&meta.id, &self.sessions)?;
        self.save_meta(meta)
    }

    fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        let dir = self.dir(&meta.id)?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| StoreError::Corrupt {
            id: meta.id.clone(),
            path: dir.join(META_FILE),
            detail: format!("cannot encode metadata: {e}"),
        })?;
        Self::write_atomic(&meta.id, &dir, META_FILE, &json)
    }

    fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
        let path = self.existing_dir(id)?.join(META_FILE);
        let bytes = fs::read(&path).map_err(io_error(id, "cannot read", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            id: id.to_string(),
            path,
            detail: e.to_string(),
        })
    }

    fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
        let entries =
            fs::read_dir(&self.sessions).map_err(io_error("-", "cannot list", &self.sessions))?;
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().into_owned();
            match self.load_meta(&id) {
                Ok(meta) => all.push(meta),
                // A directory being created, or not a session: skip it, but say so.
                Err(err) => tracing::debug!("skipping {}: {err}", entry.path().display()),
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError> {
        Ok(Box::new(FrameLogWriter::open(
            id,
            &self.existing_dir(id)?,
            frames,
        )?))
    }

    fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError> {
        frame_log::recover(id, &self.existing_dir(id)?)
    }

    fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError> {
        Ok(Box::new(FrameLogReader::open(id, &self.existing_dir(id)?)?))
    }

    fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError> {
        Self::write_atomic(id, &self.existing_dir(id)?, SIGNAL_FILE, text.as_bytes())
    }

    fn signal(&self, id: &str) -> Result<Option<String>, StoreError> {
        let path = self.existing_dir(id)?.join(SIGNAL_FILE);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error(id, "cannot read", &path)(err)),
        }
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?;
        // Remove the metadata first: a half-deleted session is then no longer listed.
        let meta = dir.join(META_FILE);
        fs::remove_file(&meta).map_err(io_error(id, "cannot remove", &meta))?;
        fs::remove_dir_all(&dir).map_err(io_error(id, "cannot remove", &dir))
    }

    fn put_result_file(&self, id: &str, name: &str, from: &Path) -> Result<(), StoreError> {
        let to = result_files::result_path(id, &self.existing_dir(id)?, name, &INTERNAL)?;
        result_files::create_parent(id, &to)?;
        // Its data first, so that after a power cut the result is whole or not there.
        fs::File::open(from)
            .and_then(|file| file.sync_all())
            .map_err(io_error(id, "cannot sync", from))?;
        fs::rename(from, &to).map_err(io_error(id, "cannot move a result to", &to))?;
        sync_dir(id, to.parent().unwrap_or(&to))
    }

    fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let path = result_files::result_path(id, &self.existing_dir(id)?, name, &INTERNAL)?;
        result_files::create_parent(id, &path)?;
        let file = name.rsplit('/').next().unwrap_or(name);
        Self::write_atomic(id, path.parent().unwrap_or(&path), file, bytes)
    }

    fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        let dir = self.existing_dir(id)?.join("tmp");
        fs::create_dir_all(&dir).map_err(io_error(id, "cannot create", &dir))?;
        Ok(dir)
    }

    fn remove_scratch(&self, id: &str) -> Result<(), StoreError> {
        let dir = self.existing_dir(id)?.join("tmp");
        match fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(io_error(id, "cannot remove", &dir)(err))
            }
            _ => Ok(()),
        }
    }

    fn location(&self, id: &str) -> String {
        format!("sessions/{id}")
    }

    fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
        let path = result_files::result_path(id, &self.existing_dir(id)?, name, &INTERNAL)?;
        result_files::open(id, name, &path)
    }

    fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
        result_files::list(id, &self.existing_dir(id)?, &INTERNAL)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::SessionStatus;
    use referee_protocol::frame::encode_frame;
    use referee_protocol::FrameHeader;

    #[test]
    fn a_session_is_created_written_and_read_back_with_its_directory_synced() {
        let data = tempfile::tempdir().unwrap();
        let store = LocalStore::open(&data.path().join("new")).unwrap();
        let mut meta = SessionMeta::new("s1".into(), "s1".into(), SessionStatus::Receiving);
        store.create(&meta).unwrap();
        let mut sink = store.frame_sink("s1", 0).unwrap();
        for i in 0..3u64 {
            let msg = encode_frame(i, i as i64 * 33_333, 0, &[i as u8; 20]).unwrap();
            sink.append(&FrameHeader::parse(&msg).unwrap(), &msg)
                .unwrap();
        }
        sink.sync().unwrap();
        drop(sink);
        meta.status = SessionStatus::AwaitingSignal;
        meta.frames_stored = 3;
        store.save_meta(&meta).unwrap();
        store.put_signal("s1", "0.0 start\n").unwrap();
        let scratch = store.scratch_dir("s1").unwrap();
        std::fs::write(scratch.join("video.mp4"), b"mp4").unwrap();
        store
            .put_result_file("s1", "video.mp4", &scratch.join("video.mp4"))
            .unwrap();

        assert_eq!(store.load_meta("s1").unwrap(), meta);
        assert_eq!(store.recover_frames("s1").unwrap().frames, 3);
        assert_eq!(store.frame_source("s1").unwrap().len(), 3);
        assert_eq!(store.signal("s1").unwrap().as_deref(), Some("0.0 start\n"));
        assert_eq!(store.list_results("s1").unwrap(), vec!["video.mp4"]);
        // No temporary file is left behind by the atomic writes.
        let dir = store.dir("s1").unwrap();
        let names: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    }
}
