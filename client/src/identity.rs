//! What an upload is made of, told apart cheaply: the video file's name, size and a hash of
//! its first and last bytes (its container header and index), and a hash of the whole signal
//! file. Sent in SESSION_START and SESSION_RESUME and kept in the state file, so that a
//! resume with another video or signal file is refused before a frame is sent.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use referee_protocol::UploadIdentity;

use crate::error::ClientError;
use crate::signal::SignalFile;

/// Bytes hashed at the start of the video (its header, first frames) and at its end (the
/// index of an MP4 or AVI, which lists every frame).
const HEAD_BYTES: u64 = 1 << 20;
const TAIL_BYTES: u64 = 64 << 10;

/// The identity of an upload of `video` with `signal`.
pub fn of(video: &Path, signal: Option<&SignalFile>) -> Result<UploadIdentity, ClientError> {
    let unreadable = |source| ClientError::VideoUnreadable {
        path: video.to_path_buf(),
        source,
    };
    let mut file = File::open(video).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    let mut tail = Vec::new();
    if size > HEAD_BYTES {
        file.seek(SeekFrom::Start(size - TAIL_BYTES.min(size - HEAD_BYTES)))
            .map_err(unreadable)?;
        file.read_to_end(&mut tail).map_err(unreadable)?;
    }
    Ok(UploadIdentity {
        video: file_name(video),
        video_bytes: size,
        video_hash: format!(
            "crc32c:{:08x}-{:08x}",
            crc32c::crc32c(&head),
            crc32c::crc32c(&tail)
        ),
        signal: signal.map(|s| s.file_name.clone()),
        signal_hash: signal.map(|s| format!("crc32c:{:08x}", crc32c::crc32c(s.text.as_bytes()))),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_files_have_other_identities() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.avi");
        let b = dir.path().join("b.avi");
        std::fs::write(&a, vec![7u8; 3 << 20]).unwrap();
        let mut other = vec![7u8; 3 << 20];
        other[(3 << 20) - 10] = 8;
        std::fs::write(&b, &other).unwrap();
        let ia = of(&a, None).unwrap();
        assert_eq!(ia, of(&a, None).unwrap());
        assert_eq!((ia.video.as_str(), ia.video_bytes), ("a.avi", 3 << 20));
        let ib = of(&b, None).unwrap();
        assert!(ib.mismatch(&ia).is_some());
        let signal = SignalFile {
            file_name: "s.txt".into(),
            text: "0.0 start\n".into(),
        };
        let with = of(&a, Some(&signal)).unwrap();
        assert_eq!(with.signal.as_deref(), Some("s.txt"));
        assert!(with.mismatch(&ia).is_some());
        assert!(ia.mismatch(&with).is_none());
    }
}
