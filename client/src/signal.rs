//! The signal file, read and checked before connecting so that a bad file never opens a
//! session.

use std::path::Path;

use referee_protocol::signal::SignalTrack;

use crate::error::ClientError;

/// A signal file that parsed cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalFile {
    /// The file's name, without its folder.
    pub file_name: String,
    /// The whole file.
    pub text: String,
}

impl SignalFile {
    /// Reads and parses `path`. When the video's duration is known, also checks that no event
    /// lies past its end.
    pub fn read(path: &Path, video_duration_us: Option<u64>) -> Result<Self, ClientError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ClientError::SignalUnreadable {
                path: path.to_path_buf(),
                source,
            })?;
        let invalid = |source| ClientError::SignalInvalid {
            path: path.to_path_buf(),
            source,
        };
        let track = SignalTrack::parse(&text).map_err(invalid)?;
        if let Some(duration_us) = video_duration_us {
            track.check_duration(duration_us).map_err(invalid)?;
        }
        let file_name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Self { file_name, text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_checks_and_names_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bout.txt");
        std::fs::write(&path, "0.5 start\n4.0 touch_left\n").unwrap();

        let signal = SignalFile::read(&path, Some(5_000_000)).unwrap();
        assert_eq!(signal.file_name, "bout.txt");
        assert_eq!(signal.text, "0.5 start\n4.0 touch_left\n");

        let chain = |err: ClientError| format!("{:#}", anyhow::Error::from(err));
        let err = chain(SignalFile::read(&path, Some(3_000_000)).unwrap_err());
        assert!(err.contains("bout.txt") && err.contains("line 2"), "{err}");

        std::fs::write(&path, "0.5 start\nsoon touch\n").unwrap();
        let err = chain(SignalFile::read(&path, None).unwrap_err());
        assert!(err.contains("bout.txt") && err.contains("line 2"), "{err}");

        let err = chain(SignalFile::read(&dir.path().join("none.txt"), None).unwrap_err());
        assert!(err.contains("none.txt"), "{err}");
    }
}
