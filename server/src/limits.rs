//! Limits that protect the server and the sessions already on it: sessions in all and per
//! client, and the free-disk floor.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use referee_protocol::ErrorCode;

use crate::settings::Settings;
use crate::AppState;

/// Why one more session must be refused, if it must: the server already has `max` live
/// sessions (receiving or processing) and sessions created ahead waiting for their upload.
pub fn session_limit_reached(app: &AppState) -> Option<String> {
    let max = app.settings.limits.max_sessions;
    (app.live.len() + app.reservations.len() >= max).then(|| {
        format!("the server already has {max} sessions (live or created ahead), its limit: try again later")
    })
}

/// Why a new session (`SESSION_START`, `POST /api/sessions`) must be refused, if it must:
/// `server_busy` at the limit of sessions, `disk_full` below the free-disk floor.
pub fn refuse_new_session(app: &AppState) -> Option<(ErrorCode, String)> {
    if let Some(why) = session_limit_reached(app) {
        return Some((ErrorCode::ServerBusy, why));
    }
    refuse_below_disk_floor(&app.settings)
}

/// Why a new upload must be refused for want of disk space, if it must (`disk_full`).
pub fn refuse_below_disk_floor(settings: &Settings) -> Option<(ErrorCode, String)> {
    DiskCheck::of(settings)
        .refuse_new()
        .map(|why| (ErrorCode::DiskFull, why))
}

/// Sessions attached per client address.
pub type ClientCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One session counted against its client's limit, while it is held.
#[derive(Debug)]
pub struct ClientSlot {
    counts: ClientCounts,
    ip: IpAddr,
}

impl ClientSlot {
    /// Takes a slot for `ip`, or `None` when it already holds `limit`.
    pub fn take(counts: &ClientCounts, ip: IpAddr, limit: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|p| p.into_inner());
        let count = map.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(Self {
            counts: Arc::clone(counts),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = map.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// Checks the free space of the data directory's disk against the floor.
#[derive(Debug)]
pub struct DiskCheck {
    dir: PathBuf,
    floor: u64,
    frames_since_check: u32,
}

/// Frames between two looks at the free space (a `statvfs` each).
const CHECK_EVERY_FRAMES: u32 = 32;

impl DiskCheck {
    pub fn new(dir: &Path, floor: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            floor,
            frames_since_check: 0,
        }
    }

    /// The data directory's check, with the floor of `--min-free-disk-bytes`.
    pub fn of(settings: &Settings) -> Self {
        Self::new(
            &settings.storage.data_dir,
            settings.limits.min_free_disk_bytes,
        )
    }

    fn free(&self) -> Option<u64> {
        let stat = rustix::fs::statvfs(&self.dir).ok()?;
        Some(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// Why a new session must be refused, if it must: free space below the floor.
    pub fn refuse_new(&self) -> Option<String> {
        let free = self.free()?;
        (self.floor > 0 && free < self.floor).then(|| {
            format!(
                "the server's disk has {} MB free, below its floor of {} MB: it takes no new session until space is freed",
                free / 1_000_000,
                self.floor / 1_000_000
            )
        })
    }

    /// Why a frame must be refused, if it must: free space below half the floor (looked at
    /// every few frames).
    pub fn refuse_frame(&mut self) -> Option<String> {
        self.frames_since_check += 1;
        if self.floor == 0 || self.frames_since_check < CHECK_EVERY_FRAMES {
            return None;
        }
        self.frames_since_check = 0;
        let free = self.free()?;
        (free < self.floor / 2).then(|| {
            format!(
                "the server's disk has {} MB free, too little to store more frames safely; the frames before are kept: resume when space is freed",
                free / 1_000_000
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_slots_are_limited_and_released() {
        let counts = ClientCounts::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = ClientSlot::take(&counts, ip, 2).unwrap();
        let _b = ClientSlot::take(&counts, ip, 2).unwrap();
        assert!(ClientSlot::take(&counts, ip, 2).is_none());
        drop(a);
        assert!(ClientSlot::take(&counts, ip, 2).is_some());
    }

    #[test]
    fn a_floor_above_the_disk_refuses_new_sessions() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DiskCheck::new(dir.path(), 0).refuse_new().is_none());
        let why = DiskCheck::new(dir.path(), u64::MAX).refuse_new().unwrap();
        assert!(why.contains("below its floor"), "{why}");
    }
}
