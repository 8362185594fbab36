//! Writing files so that they survive a crash and a power cut: the data is synced before a
//! file is renamed into place, and the directory after, so that the new entry is durable too.
//! The session store and the webhook outbox write through these.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Makes the entries of directory `dir` durable (a file or directory created in it, or
/// renamed into it): `fsync` on the directory itself.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes` atomically: a reader sees the old file or the new one, never
/// a part, and after a crash the new one is there whole or not at all. Writes a temporary
/// `.NAME.tmp` beside it first.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    fs::rename(&tmp, path)?;
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
}
