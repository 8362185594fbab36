//! Every change of a session's status, in one place: what each transition sets beside the
//! status. The callers apply them to the live or the stored metadata, then save it and
//! publish what happened.
//!
//! ```text
//! created ─▶ receiving ─▶ awaiting_signal ─▶ processing ─▶ complete
//!               │  ▲            │  ▲              └──────▶ failed
//!               ▼  │ resume     ▼  │ resume
//!             detached ──(grace period)──▶ abandoned ──(expiry)──▶ deleted
//! ```

use std::time::Duration;

use time::OffsetDateTime;

use crate::store::{SessionMeta, SessionStatus};

/// The upload of a session created ahead begins (a new session is made `receiving`).
pub fn receive(meta: &mut SessionMeta) {
    meta.status = SessionStatus::Receiving;
    meta.updated_at = OffsetDateTime::now_utc();
    meta.error = None;
    meta.resumable_until = None;
    meta.expires_at = None;
}

/// The upload stopped before its end (`reason`): resumable for `grace`.
pub fn detach(meta: &mut SessionMeta, reason: String, grace: Duration) {
    meta.status = SessionStatus::Detached;
    meta.error = Some(reason);
    meta.resumable_until = Some(OffsetDateTime::now_utc() + grace);
}

/// A connection resumed the session, which goes on in `status`.
pub fn resume(meta: &mut SessionMeta, status: SessionStatus) {
    meta.status = status;
    meta.error = None;
    meta.resumable_until = None;
    meta.resumes += 1;
}

/// Every frame is stored and checked: the signal file comes next, or processing.
pub fn end(meta: &mut SessionMeta, signal_follows: bool) {
    meta.ended_at = Some(OffsetDateTime::now_utc());
    if signal_follows {
        meta.status = SessionStatus::AwaitingSignal;
    } else {
        meta.status = SessionStatus::Processing;
        meta.signal_events = Some(0);
    }
}

/// Processing starts (again): the attempt is counted.
pub fn process(meta: &mut SessionMeta) {
    meta.status = SessionStatus::Processing;
    meta.error = None;
    meta.stage = None;
    meta.percent = None;
    meta.clips.clear();
    meta.processing_attempts = meta.processing_attempts.saturating_add(1);
}

/// Processing made `results`.
pub fn complete(meta: &mut SessionMeta, results: Vec<String>) {
    meta.status = SessionStatus::Complete;
    meta.stage = None;
    meta.percent = None;
    meta.results = results;
    meta.completed_at = Some(OffsetDateTime::now_utc());
}

/// The session cannot go on: `error` says why and what to do.
pub fn fail(meta: &mut SessionMeta, error: String) {
    meta.status = SessionStatus::Failed;
    meta.error = Some(error);
}

/// A detached session was not resumed in its grace period: its frames are kept until
/// `expires_at`, then deleted.
pub fn abandon(meta: &mut SessionMeta, expires_at: OffsetDateTime) {
    meta.status = SessionStatus::Abandoned;
    meta.expires_at = Some(expires_at);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SessionMeta {
        SessionMeta::new("s".into(), "s".into(), SessionStatus::Receiving)
    }

    #[test]
    fn a_detached_session_is_resumable_for_the_grace_period_and_a_resume_clears_it() {
        let mut m = meta();
        detach(&mut m, "the client went".into(), Duration::from_secs(60));
        assert_eq!(m.status, SessionStatus::Detached);
        assert_eq!(m.error.as_deref(), Some("the client went"));
        assert!(m
            .resumable_until
            .is_some_and(|t| !crate::store::has_passed(&t)));
        resume(&mut m, SessionStatus::Receiving);
        assert_eq!((m.status, m.resumes), (SessionStatus::Receiving, 1));
        assert!(m.error.is_none() && m.resumable_until.is_none());
    }

    #[test]
    fn an_end_without_a_signal_file_goes_straight_to_processing_with_no_events() {
        let mut m = meta();
        end(&mut m, false);
        assert_eq!(m.status, SessionStatus::Processing);
        assert_eq!(m.signal_events, Some(0));
        let mut m = meta();
        end(&mut m, true);
        assert_eq!(m.status, SessionStatus::AwaitingSignal);
        assert!(m.ended_at.is_some() && m.signal_events.is_none());
    }

    #[test]
    fn each_processing_attempt_is_counted_and_clears_the_last_error() {
        let mut m = meta();
        fail(&mut m, "boom".into());
        process(&mut m);
        process(&mut m);
        assert_eq!(m.processing_attempts, 2);
        assert!(m.error.is_none());
        complete(&mut m, vec!["video.mp4".into()]);
        assert_eq!(m.status, SessionStatus::Complete);
        assert!(m.completed_at.is_some());
    }
}
