//! Writing files so that they survive a crash and a power cut: the data is synced before a
//! file is renamed into place, and the directory after, so that the new entry is durable too.
//! The session store and the webhook outbox write through these.

use std::fs;
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Makes the entries of directory `dir` durable (a file or directory created in it, or
/// renamed into it): `fsync` on the directory itself.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, never
/// a part, and after a crash the new one is there whole or not at all. Writes a temporary
/// `.NAME.PID.N.tmp` beside it first, its own for each call, so that two saves of the same
/// file at once never write into one temporary; it is removed if the write fails.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let written = fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_data()
    });
    if let Err(err) = written.and_then(|()| fs::rename(&tmp, path)) {
        // A full disk, most often: leave no partial temporary behind.
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_file(&path, b"one").unwrap();
        write_file(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn saves_of_one_file_at_once_never_fail_nor_leave_a_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.json");
        std::thread::scope(|scope| {
            for t in 0..4u8 {
                let path = &path;
                scope.spawn(move || {
                    for i in 0..200u8 {
                        write_file(path, &[t; 64][..usize::from(i % 64) + 1]).unwrap();
                    }
                });
            }
        });
        assert_eq!(names(dir.path()), ["session.json"]);
        let saved = fs::read(&path).unwrap();
        assert!(saved.iter().all(|&b| b == saved[0]), "one save, whole");
    }

    #[test]
    fn a_failed_save_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_file(&path, b"old").unwrap();
        // The rename fails: a directory is in the way of the target.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_file(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["blocked", "state.json"]);
    }
}
