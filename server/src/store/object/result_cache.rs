//! [`ResultCache`]: the result files fetched from the object store to be served, in
//! `DATA_DIR/cache/<id>/<name>.<version>` (`/` in a name as `_`; the version from the
//! object's ETag), bounded in bytes (`--result-cache-mb`).
//!
//! After each download the older versions of the same result are removed, then the files
//! used least recently (a hit sets a file's modification time) until the cache is within
//! its bound, never the file just fetched: a result larger than the whole bound is still
//! served (and kept until the next download). A bound of 0 keeps no copy at all: each
//! request fetches the result and serves it from a file removed as soon as it is open.
//! Removing a file that a response is still reading is safe on Unix: the open file keeps
//! its data until it is closed.
//!
//! The total is kept in memory: counted once at start (stale partial downloads removed,
//! the bound applied), added to by each download, and counted again by each eviction's walk
//! of the directory. Its lock is only held over local file operations, never a request.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use super::super::{io_error, StoreError};

/// Cached result files, at most `limit` bytes of them (but the one just fetched).
#[derive(Debug)]
pub struct ResultCache {
    dir: PathBuf,
    limit: u64,
    /// Bytes of the cached files.
    total: Mutex<u64>,
    /// Numbers the partial files of the downloads in flight.
    downloads: AtomicU64,
}

/// One cached file, as an eviction's walk finds it.
struct Found {
    path: PathBuf,
    len: u64,
    used: SystemTime,
}

impl ResultCache {
    /// The cache in `dir` (created if missing), bounded to `limit` bytes: what a previous
    /// run left is counted, its partial downloads removed, and the bound applied.
    pub fn open(dir: PathBuf, limit: u64) -> Result<Self, StoreError> {
        fs::create_dir_all(&dir).map_err(|source| StoreError::DataDir {
            what: "cannot create the data directory",
            path: dir.clone(),
            source,
        })?;
        let sessions = fs::read_dir(&dir).map_err(|source| StoreError::DataDir {
            what: "cannot read the result cache",
            path: dir.clone(),
            source,
        })?;
        for session in sessions.flatten() {
            let path = session.path();
            for file in fs::read_dir(&path).into_iter().flatten().flatten() {
                if file.file_name().to_string_lossy().starts_with('.') {
                    let _ = fs::remove_file(file.path());
                }
            }
            // Only if empty.
            let _ = fs::remove_dir(&path);
        }
        let cache = Self {
            dir,
            limit,
            total: Mutex::new(0),
            downloads: AtomicU64::new(0),
        };
        let mut total = cache.total();
        cache.evict(&mut total, None);
        drop(total);
        Ok(cache)
    }

    fn total(&self) -> MutexGuard<'_, u64> {
        // The total is a number: whatever a panic left it at, the next eviction counts it.
        self.total.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached copy of version `version` of session `id`'s result `name`, opened and
    /// marked as used, and its length, if there is one.
    pub fn open_cached(
        &self,
        id: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<(File, u64)>, StoreError> {
        let path = self.path(id, name, version);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(io_error(id, "cannot open", &path)(err)),
        };
        if let Err(err) = file.set_modified(SystemTime::now()) {
            tracing::debug!("cannot mark {} as used: {err}", path.display());
        }
        let len = file
            .metadata()
            .map_err(io_error(id, "cannot read", &path))?;
        Ok(Some((file, len.len())))
    }

    /// Fetches version `version` of session `id`'s result `name` with `download` (into the
    /// file it is given), caches it and opens it, then removes its older versions and what
    /// else takes the cache past its bound. With its length.
    pub fn fetch(
        &self,
        id: &str,
        name: &str,
        version: &str,
        download: impl FnOnce(&Path) -> Result<(), StoreError>,
    ) -> Result<(File, u64), StoreError> {
        let dir = self.dir.join(id);
        fs::create_dir_all(&dir).map_err(io_error(id, "cannot create", &dir))?;
        let n = self.downloads.fetch_add(1, Ordering::Relaxed);
        let partial = dir.join(format!(".{}.{n}.part", flat(name)));
        let opened = download(&partial)
            .and_then(|()| File::open(&partial).map_err(io_error(id, "cannot open", &partial)));
        let file = match opened {
            Ok(file) => file,
            Err(err) => {
                let _ = fs::remove_file(&partial);
                return Err(err);
            }
        };
        let len = file
            .metadata()
            .map_err(io_error(id, "cannot read", &partial))?
            .len();
        let cached = self.path(id, name, version);
        let mut total = self.total();
        // The same version fetched at the same time by another request.
        let replaced = fs::metadata(&cached).map_or(0, |m| m.len());
        if let Err(err) = fs::rename(&partial, &cached) {
            let _ = fs::remove_file(&partial);
            return Err(io_error(id, "cannot write", &cached)(err));
        }
        *total = (*total + len).saturating_sub(replaced);
        let older = format!("{}.", flat(name));
        for other in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let file_name = other.file_name();
            let is_older = file_name.to_str().is_some_and(|other| {
                other
                    .strip_prefix(&older)
                    .is_some_and(|v| v != version && v.bytes().all(|b| b.is_ascii_alphanumeric()))
            });
            if is_older {
                remove(&mut total, &other.path());
            }
        }
        if self.limit == 0 {
            // No copy kept: the file open is served, its name gone.
            remove(&mut total, &cached);
        } else if *total > self.limit {
            self.evict(&mut total, Some(&cached));
        }
        Ok((file, len))
    }

    /// Removes session `id`'s cached files (deleted).
    pub fn remove_session(&self, id: &str) {
        let dir = self.dir.join(id);
        let mut total = self.total();
        for file in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if !file.file_name().to_string_lossy().starts_with('.') {
                remove(&mut total, &file.path());
            }
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// Counts the cached files again, then removes the least recently used ones, `keep`
    /// aside, until the total is within the bound.
    fn evict(&self, total: &mut u64, keep: Option<&Path>) {
        let mut found = self.walk();
        *total = found.iter().map(|f| f.len).sum();
        found.sort_by_key(|f| f.used);
        for file in found {
            if *total <= self.limit {
                break;
            }
            if Some(file.path.as_path()) != keep && fs::remove_file(&file.path).is_ok() {
                *total = total.saturating_sub(file.len);
            }
        }
    }

    /// Every cached file (not the partial downloads).
    fn walk(&self) -> Vec<Found> {
        let mut found = Vec::new();
        for session in fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for file in fs::read_dir(session.path()).into_iter().flatten().flatten() {
                let Ok(meta) = file.metadata() else { continue };
                if meta.is_file() && !file.file_name().to_string_lossy().starts_with('.') {
                    found.push(Found {
                        path: file.path(),
                        len: meta.len(),
                        used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                    });
                }
            }
        }
        found
    }

    fn path(&self, id: &str, name: &str, version: &str) -> PathBuf {
        self.dir.join(id).join(format!("{}.{version}", flat(name)))
    }

    /// Bytes of the cached files, as counted.
    #[cfg(test)]
    fn counted(&self) -> u64 {
        *self.total()
    }
}

/// Result `name` as one file name.
fn flat(name: &str) -> String {
    name.replace('/', "_")
}

/// Removes cached file `path`, taking it off `total`.
fn remove(total: &mut u64, path: &Path) {
    let Ok(meta) = fs::metadata(path) else { return };
    if fs::remove_file(path).is_ok() {
        *total = total.saturating_sub(meta.len());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::time::Duration;

    use super::*;

    /// Fetches `name` version `version` of session `id` as `len` bytes of `fill`.
    fn fetch(cache: &ResultCache, id: &str, name: &str, version: &str, len: usize) -> Vec<u8> {
        let fill = version.as_bytes()[0];
        let (mut file, fetched) = cache
            .fetch(id, name, version, |to| {
                std::fs::write(to, vec![fill; len]).map_err(io_error(id, "write", to))
            })
            .unwrap();
        assert_eq!(fetched, len as u64);
        let mut read = Vec::new();
        file.read_to_end(&mut read).unwrap();
        read
    }

    fn cached(cache: &ResultCache, id: &str, name: &str, version: &str) -> bool {
        cache.path(id, name, version).is_file()
    }

    /// Sets the last use of a cached file `ago` seconds back.
    fn used_ago(cache: &ResultCache, id: &str, name: &str, version: &str, ago: u64) {
        let file = File::options()
            .write(true)
            .open(cache.path(id, name, version))
            .unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(ago))
            .unwrap();
    }

    #[test]
    fn a_new_version_replaces_the_older_ones() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 1 << 20).unwrap();
        fetch(&cache, "s1", "video.mp4", "a1", 100);
        fetch(&cache, "s1", "clips/touch.mp4", "c1", 10);
        fetch(&cache, "s1", "video.mp4.old", "o1", 10);
        assert_eq!(fetch(&cache, "s1", "video.mp4", "b2", 50), vec![b'b'; 50]);
        assert!(!cached(&cache, "s1", "video.mp4", "a1"));
        assert!(cached(&cache, "s1", "video.mp4", "b2"));
        // Other names, even ones that start the same, are left alone.
        assert!(cached(&cache, "s1", "clips/touch.mp4", "c1"));
        assert!(cached(&cache, "s1", "video.mp4.old", "o1"));
        assert_eq!(cache.counted(), 70);
        assert!(cache
            .open_cached("s1", "video.mp4", "b2")
            .unwrap()
            .is_some());
        assert!(cache
            .open_cached("s1", "video.mp4", "a1")
            .unwrap()
            .is_none());
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_bound_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 300).unwrap();
        fetch(&cache, "s1", "a", "v1", 100);
        fetch(&cache, "s2", "b", "v1", 100);
        fetch(&cache, "s1", "c", "v1", 100);
        used_ago(&cache, "s1", "a", "v1", 30);
        used_ago(&cache, "s2", "b", "v1", 20);
        used_ago(&cache, "s1", "c", "v1", 10);
        // A hit makes `a` the most recently used.
        assert!(cache.open_cached("s1", "a", "v1").unwrap().is_some());
        fetch(&cache, "s2", "d", "v1", 150);
        assert!(!cached(&cache, "s2", "b", "v1") && !cached(&cache, "s1", "c", "v1"));
        assert!(cached(&cache, "s1", "a", "v1") && cached(&cache, "s2", "d", "v1"));
        assert_eq!(cache.counted(), 250);
        // Counted again at start, with the bound applied to what is there.
        used_ago(&cache, "s1", "a", "v1", 5);
        drop(cache);
        let smaller = ResultCache::open(dir.path().join("cache"), 200).unwrap();
        assert_eq!(smaller.counted(), 150);
        assert!(cached(&smaller, "s2", "d", "v1"));
        smaller.remove_session("s2");
        assert_eq!(smaller.counted(), 0);
    }

    #[test]
    fn a_result_larger_than_the_bound_is_still_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 100).unwrap();
        fetch(&cache, "s1", "small", "v1", 50);
        assert_eq!(fetch(&cache, "s1", "video.mp4", "v1", 500), vec![b'v'; 500]);
        assert!(!cached(&cache, "s1", "small", "v1"));
        assert!(cached(&cache, "s1", "video.mp4", "v1"));
        assert_eq!(cache.counted(), 500);
        // The next download takes it out.
        fetch(&cache, "s1", "small", "v2", 50);
        assert_eq!(cache.counted(), 50);
    }

    #[test]
    fn a_bound_of_zero_keeps_no_copy_and_serves_each_one() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 0).unwrap();
        assert_eq!(fetch(&cache, "s1", "video.mp4", "v1", 500), vec![b'v'; 500]);
        assert!(!cached(&cache, "s1", "video.mp4", "v1"));
        assert_eq!(cache.counted(), 0);
    }

    #[test]
    fn a_failed_download_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::open(dir.path().join("cache"), 100).unwrap();
        let failed = cache.fetch("s1", "video.mp4", "v1", |to| {
            std::fs::write(to, b"half").unwrap();
            Err(StoreError::NotFound("s1".into()))
        });
        assert!(failed.is_err());
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache/s1"))
                .unwrap()
                .count(),
            0
        );
        // Partial files a previous run left are removed at start.
        std::fs::write(dir.path().join("cache/s1/.video.mp4.7.part"), b"x").unwrap();
        let again = ResultCache::open(dir.path().join("cache"), 100).unwrap();
        assert_eq!(again.counted(), 0);
        assert!(!dir.path().join("cache/s1").exists());
    }
}
