//! A session's result files (the video, the reports, the thumbnails): the names a result may
//! have, and how [`LocalStore`](super::LocalStore) opens and lists them inside a session's
//! directory without any name reaching outside it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{io_error, StoreError};

/// The longest result name accepted.
const MAX_NAME_LEN: usize = 128;

/// A result file opened for reading.
#[derive(Debug)]
pub struct ResultFile {
    pub file: File,
    /// Its length in bytes.
    pub len: u64,
    /// When it was last written, if the file system says.
    pub modified: Option<SystemTime>,
}

/// Whether `name` may name a result: one file name, or a folder and a file name separated by
/// `/` (`thumbnails/frame-000036.jpg`), each made of ASCII letters, digits, `.`, `_` and `-`
/// and not starting with `.`. So no name can be absolute, contain `..`, or name a hidden
/// (temporary) file.
pub fn valid_result_name(name: &str) -> bool {
    let valid_part = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    };
    name.len() <= MAX_NAME_LEN && name.split('/').count() <= 2 && name.split('/').all(valid_part)
}

/// The path of result `name` in session directory `dir`, unless the name is invalid or its
/// first part is one of the store's own files (`internal`).
pub(super) fn result_path(
    id: &str,
    dir: &Path,
    name: &str,
    internal: &[&str],
) -> Result<PathBuf, StoreError> {
    let top = name.split('/').next().unwrap_or_default();
    if !valid_result_name(name) || internal.contains(&top) {
        return Err(not_found(id, name));
    }
    Ok(dir.join(name))
}

fn not_found(id: &str, name: &str) -> StoreError {
    StoreError::ResultNotFound {
        id: id.to_string(),
        name: name.to_string(),
    }
}

/// Creates the folder `path` goes in (for `thumbnails/...`).
pub(super) fn create_parent(id: &str, path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(parent) => fs::create_dir_all(parent).map_err(io_error(id, "cannot create", parent)),
        None => Ok(()),
    }
}

/// Opens result file `path` (named `name`) of session `id`.
pub(super) fn open(id: &str, name: &str, path: &Path) -> Result<ResultFile, StoreError> {
    let file = File::open(path).map_err(|err| match err.kind() {
        io::ErrorKind::NotFound => not_found(id, name),
        _ => io_error(id, "cannot open", path)(err),
    })?;
    let meta = file.metadata().map_err(io_error(id, "cannot read", path))?;
    if !meta.is_file() {
        return Err(not_found(id, name));
    }
    Ok(ResultFile {
        file,
        len: meta.len(),
        modified: meta.modified().ok(),
    })
}

/// The result files in session directory `dir` (and its folders, one level down), sorted.
pub(super) fn list(id: &str, dir: &Path, internal: &[&str]) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir)
        .map_err(io_error(id, "cannot list", dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !valid_result_name(&name) || internal.contains(&name.as_str()) {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_file() => names.push(name),
            Ok(t) if t.is_dir() => {
                let sub = entry.path();
                for inner in fs::read_dir(&sub)
                    .map_err(io_error(id, "cannot list", &sub))?
                    .flatten()
                {
                    let full = format!("{name}/{}", inner.file_name().to_string_lossy());
                    if valid_result_name(&full) && inner.file_type().is_ok_and(|t| t.is_file()) {
                        names.push(full);
                    }
                }
            }
            _ => {}
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_names_stay_inside_the_session() {
        for good in [
            "video.mp4",
            "report.json",
            "thumbnails/frame-000036.jpg",
            "a_b-c.d",
        ] {
            assert!(valid_result_name(good), "{good}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "thumbnails/../../etc/passwd",
            "/etc/passwd",
            ".hidden",
            "thumbnails/.x.tmp",
            "a/b/c",
            "a//b",
            "thumbnails/",
            "sp ace",
            "back\\slash",
            "ü.jpg",
            &"x".repeat(129),
        ] {
            assert!(!valid_result_name(bad), "{bad:?}");
        }
        let dir = Path::new("/data/s");
        let internal = ["session.json", "tmp"];
        assert!(result_path("s", dir, "session.json", &internal).is_err());
        assert!(result_path("s", dir, "tmp/video.mp4", &internal).is_err());
        assert_eq!(
            result_path("s", dir, "thumbnails/f.jpg", &internal).unwrap(),
            Path::new("/data/s/thumbnails/f.jpg")
        );
    }
}
