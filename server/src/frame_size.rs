//! The largest frame a session may have, in pixels (`--max-frame-pixels`). Processing holds a
//! few decoded frames and x264's own pictures at a time, so the pixels of one frame bound its
//! memory; a JPEG's bytes do not (a few hundred bytes may announce 16384×16384). One rule,
//! checked where a session's size is announced (`SESSION_START`), where an unfinished session
//! comes back (`SESSION_RESUME`) and before a session is processed (one stored by a server
//! with a higher limit).

use crate::store::{SessionMeta, SessionStatus};

/// The default limit: 4096×2160 (4K DCI; 3840×2160 UHD fits).
pub const DEFAULT_MAX_FRAME_PIXELS: u64 = 4096 * 2160;

/// Why frames of `width`×`height` are refused under a limit of `max_pixels`, if they are.
pub fn check(width: u32, height: u32, max_pixels: u64) -> Result<(), String> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels <= max_pixels {
        return Ok(());
    }
    Err(format!(
        "frames of {width}x{height} are {pixels} pixels, more than this server's limit of \
         {max_pixels} pixels per frame (--max-frame-pixels): send the video at a smaller size \
         (referee-client --resize, e.g. --resize 1920x1080)"
    ))
}

/// Why stored session `meta` may not be resumed under a limit of `max_pixels`, if it may
/// not: its frames, still to come or to process, are larger (the limit was lowered since its
/// upload began). A finished session may be resumed (to hear how it ended).
pub fn check_resume(meta: &SessionMeta, max_pixels: u64) -> Result<(), String> {
    let finished = matches!(
        meta.status,
        SessionStatus::Complete | SessionStatus::Failed | SessionStatus::Abandoned
    );
    if finished {
        return Ok(());
    }
    check(meta.width, meta.height, max_pixels).map_err(|why| format!("session {}: {why}", meta.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_up_to_the_limit_are_accepted_larger_ones_refused_with_the_sizes() {
        assert!(check(4096, 2160, DEFAULT_MAX_FRAME_PIXELS).is_ok());
        assert!(check(3840, 2160, DEFAULT_MAX_FRAME_PIXELS).is_ok());
        assert!(check(1, 1, 1).is_ok());
        // The pixels count, not either side: a long thin frame within the limit is fine.
        assert!(check(16384, 500, DEFAULT_MAX_FRAME_PIXELS).is_ok());
        let err = check(8000, 8000, DEFAULT_MAX_FRAME_PIXELS).unwrap_err();
        assert!(
            err.contains("8000x8000 are 64000000 pixels")
                && err.contains("limit of 8847360 pixels")
                && err.contains("--max-frame-pixels")
                && err.contains("--resize"),
            "{err}"
        );
        // No overflow at the protocol's largest size.
        assert!(check(u32::MAX, u32::MAX, u64::MAX).is_ok());
        assert!(check(4097, 2160, DEFAULT_MAX_FRAME_PIXELS).is_err());
    }

    #[test]
    fn only_unfinished_sessions_over_the_limit_are_not_resumed() {
        let mut meta = SessionMeta::new("s1".into(), "s1".into(), SessionStatus::Detached);
        (meta.width, meta.height) = (640, 480);
        let err = check_resume(&meta, 1000).unwrap_err();
        assert!(err.starts_with("session s1: frames of 640x480"), "{err}");
        assert!(check_resume(&meta, 640 * 480).is_ok());
        for status in [
            SessionStatus::Receiving,
            SessionStatus::AwaitingSignal,
            SessionStatus::Processing,
        ] {
            meta.status = status;
            assert!(check_resume(&meta, 1000).is_err(), "{status:?}");
        }
        for status in [
            SessionStatus::Complete,
            SessionStatus::Failed,
            SessionStatus::Abandoned,
        ] {
            meta.status = status;
            assert!(check_resume(&meta, 1000).is_ok(), "{status:?}");
        }
    }
}
