//! The saved state of sessions this client started, one small file each, so that
//! `--resume SESSION_ID` can continue a session after the client itself was restarted.
//!
//! The files live in `$REFEREE_STATE_DIR`, else `$XDG_STATE_HOME/referee`, else
//! `~/.local/state/referee`; each holds the session's resume token, so it is readable by its
//! owner only. A file is removed once its session is complete.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use referee_protocol::text::{quoted, valid_id, MAX_ID_LEN};
use referee_protocol::UploadIdentity;
use serde::{Deserialize, Serialize};

use crate::error::ClientError;

/// What `--resume` needs to continue a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedSession {
    pub session_id: String,
    pub resume_token: String,
    /// The WebSocket URL the session was started on.
    pub url: String,
    /// What was uploaded: a resume with other files is refused (state files of older
    /// clients have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<UploadIdentity>,
    /// The signal file sent with the session, as given (a `--resume` without `--signal`
    /// sends it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal_path: Option<PathBuf>,
    /// Seconds the server keeps a dropped session resumable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_grace_s: Option<u64>,
    /// The command that resumes the session (`status` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_command: Option<String>,
}

/// What `--resume BOUT_ID` needs to continue a bout of several cameras: its cameras' sessions
/// (their own state files hold their tokens), as each started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedBout {
    pub bout_id: String,
    /// The WebSocket URL the bout was started on.
    pub url: String,
    /// Each camera started, and its session.
    pub cameras: Vec<SavedCamera>,
}

/// A camera of a [`SavedBout`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCamera {
    pub camera: String,
    pub session_id: String,
}

impl SavedBout {
    /// The session of `camera`, if it started.
    pub fn session_of(&self, camera: &str) -> Option<&str> {
        self.cameras
            .iter()
            .find(|c| c.camera == camera)
            .map(|c| c.session_id.as_str())
    }
}

/// Records that camera `camera` of bout `bout_id` (started on `url`) is session
/// `session_id`, in the bout's state file.
pub fn save_camera(
    bout_id: &str,
    url: &str,
    camera: &str,
    session_id: &str,
) -> Result<PathBuf, ClientError> {
    let path = bout_path(bout_id)?;
    let mut bout = find_bout(bout_id).unwrap_or_else(|| SavedBout {
        bout_id: bout_id.to_string(),
        url: url.to_string(),
        cameras: Vec::new(),
    });
    bout.cameras.retain(|c| c.camera != camera);
    bout.cameras.push(SavedCamera {
        camera: camera.to_string(),
        session_id: session_id.to_string(),
    });
    write_private(&path, &bout)?;
    Ok(path)
}

/// Loads the state of bout `id`.
pub fn load_bout(id: &str) -> Result<SavedBout, ClientError> {
    let path = bout_path(id)?;
    find_bout(id).ok_or_else(|| ClientError::ResumeState {
        path,
        reason: "no such bout: a bout can only be resumed by the client (user and machine) that started it, until every camera is complete".into(),
    })
}

fn find_bout(id: &str) -> Option<SavedBout> {
    let text = fs::read_to_string(bout_path(id).ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Forgets bout `id` (every camera is complete).
pub fn remove_bout(id: &str) {
    let Ok(path) = bout_path(id) else { return };
    if let Err(err) = fs::remove_file(&path) {
        tracing::debug!("cannot remove {}: {err}", path.display());
    }
}

fn bout_path(id: &str) -> Result<PathBuf, ClientError> {
    let session = path_of(id)?;
    Ok(session.with_file_name(format!("bout-{id}.json")))
}

/// The directory of the state files.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("REFEREE_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("referee");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/state/referee"),
        None => PathBuf::from(".referee-state"),
    }
}

/// The state file of session `id`. An id that is not a well-formed session id (it came
/// from the server, or from the command line) never becomes a path.
fn path_of(id: &str) -> Result<PathBuf, ClientError> {
    if !valid_id(id) {
        return Err(ClientError::ResumeState {
            path: state_dir(),
            reason: format!(
                "{} is not a session id (letters, digits, '-' and '_', at most {MAX_ID_LEN}): no state file is read or written for it",
                quoted(id)
            ),
        });
    }
    Ok(state_dir().join(format!("{id}.json")))
}

/// Saves the state of a session.
pub fn save(session: &SavedSession) -> Result<PathBuf, ClientError> {
    let path = path_of(&session.session_id)?;
    write_private(&path, session)?;
    Ok(path)
}

/// Writes `value` as JSON to `path`, readable by its owner only.
fn write_private(path: &std::path::Path, value: &impl Serialize) -> Result<(), ClientError> {
    let failed = |reason: String| ClientError::ResumeState {
        path: path.to_path_buf(),
        reason,
    };
    let dir = state_dir();
    fs::create_dir_all(&dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
    let json = serde_json::to_vec_pretty(value).map_err(|e| failed(e.to_string()))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| failed(e.to_string()))?;
    file.write_all(&json).map_err(|e| failed(e.to_string()))
}

/// Loads the state of session `id`.
pub fn load(id: &str) -> Result<SavedSession, ClientError> {
    let path = path_of(id)?;
    let text = fs::read_to_string(&path).map_err(|e| ClientError::ResumeState {
        path: path.clone(),
        reason: format!(
            "{e}: a session can only be resumed by the client (user and machine) that started it"
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| ClientError::ResumeState {
        path,
        reason: format!("unreadable ({e})"),
    })
}

/// Loads the state of session `id` if this client has it.
pub fn find(id: &str) -> Option<SavedSession> {
    let text = fs::read_to_string(path_of(id).ok()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Forgets session `id` (it is complete).
pub fn remove(id: &str) {
    let Ok(path) = path_of(id) else { return };
    if let Err(err) = fs::remove_file(&path) {
        tracing::debug!("cannot remove {}: {err}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_that_is_not_one_never_becomes_a_path() {
        for bad in ["../../etc/passwd", "a/b", "", "x.json", &"a".repeat(65)] {
            let err = path_of(bad).unwrap_err().to_string();
            assert!(err.contains("is not a session id"), "{bad}: {err}");
        }
        let saved = SavedSession {
            session_id: "../escape".into(),
            resume_token: "t".into(),
            url: "ws://h/stream".into(),
            upload: None,
            signal_path: None,
            resume_grace_s: None,
            resume_command: None,
        };
        assert!(save(&saved).is_err());
        assert!(path_of("20251106_170116_bout_k7m2x").is_ok());
    }
}
