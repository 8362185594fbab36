//! `SESSION_RESUME`: a session continues where it is stored, on a new connection, taking
//! over from a stale one.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::Sink;
use referee_protocol::{ControlMessage, ErrorCode, ResumedState, SessionState, UploadIdentity};

use super::writer::Stored;
use super::{start_writer, Connection, Link, Refusal, Session, Step, GO_ON, TAKEOVER_WAIT};
use crate::limits;
use crate::metrics::Metrics;
use crate::notify::events::EventKind;
use crate::pipeline::PipelineEvent;
use crate::session::lifecycle;
use crate::session::live::LiveSession;
use crate::session::processing::{complete_message, persist};
use crate::store::{rfc3339, SessionMeta, SessionStatus, SessionStore, StoreError};

impl<S> Connection<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    pub(super) async fn on_resume(
        &mut self,
        id: String,
        token: String,
        upload: Option<UploadIdentity>,
    ) -> Step {
        // A session still to recover after a restart is recovered first.
        self.app
            .recovering
            .wait_for(&id)
            .await
            .map_err(|why| Refusal::new(ErrorCode::ServerBusy, why))?;
        let existing = self.app.live.handle(&id);
        let stored = match &existing {
            Some(live) => live.snapshot(),
            None => self.load(&id).await?,
        };
        if !crate::http::auth::same_secret(&stored.resume_token, &token) {
            return Err(Refusal::new(
                ErrorCode::ResumeRefused,
                format!("the resume token for session {id} is wrong: only the client that started a session can resume it"),
            ));
        }
        crate::frame_size::check_resume(&stored, self.app.settings.limits.max_frame_pixels)
            .map_err(|why| Refusal::new(ErrorCode::FrameTooLargePixels, why))?;
        // Another video or signal file is refused before anything changes: the session
        // stays resumable with the right ones.
        if let (Some(upload), Some(started)) = (&upload, &stored.upload) {
            if let Some(why) = upload.mismatch(started) {
                return Err(Refusal::new(
                    ErrorCode::ResumeRefused,
                    format!("session {id} cannot be resumed with these files: {why}; resume it with the files it was started with (it stays resumable)"),
                ));
            }
        }
        let live = match existing {
            Some(live) => live,
            None => self.revive(stored)?,
        };
        let client_slot = self.client_slot().map_err(|_| {
            Refusal::new(
                ErrorCode::ServerBusy,
                format!("{} already streams its limit of sessions", self.remote.ip()),
            )
        })?;
        // Waits for a stale connection of this session to let go, if there is one. The
        // state is set below, from what the session holds once it has let go.
        let attach = self.attach(
            Arc::clone(&live),
            SessionState::AwaitingStart,
            client_slot,
            None,
            Stored::default(),
        );
        let Ok(mut session) = tokio::time::timeout(TAKEOVER_WAIT, attach).await else {
            return Err(Refusal::takeover_timed_out(&id));
        };
        let meta = live.snapshot();
        // Refused here, the session is let go as it is (not detached again).
        self.check_resumable(&meta)?;
        let frames = meta.frames_stored;
        let (state, resumed, status) = match meta.status {
            SessionStatus::Processing => (
                SessionState::Processing { frames },
                ResumedState::Processing,
                SessionStatus::Processing,
            ),
            SessionStatus::Complete => (
                SessionState::Complete { frames },
                ResumedState::Complete,
                SessionStatus::Complete,
            ),
            _ if meta.upload_ended() => (
                SessionState::AwaitingSignal { frames },
                ResumedState::AwaitingSignal,
                SessionStatus::AwaitingSignal,
            ),
            _ => (
                SessionState::Receiving { next_frame: frames },
                ResumedState::Receiving,
                SessionStatus::Receiving,
            ),
        };
        if resumed == ResumedState::Receiving {
            self.reopen(&mut session, &meta).await?;
        }
        if resumed == ResumedState::Processing {
            session.events = Some(live.subscribe());
        }
        session.acked = frames;
        session.state = state;
        let limits = *session.intake.limits();
        self.link = Link::Attached(session);
        let meta = live.update(|m| lifecycle::resume(m, status));
        Metrics::add(&self.app.metrics.resumes, 1);
        self.app.events.publish(EventKind::Resumed, &meta);
        tracing::info!(
            "Session {id} resumed by {} in state {} at frame {frames} (resume {})",
            self.remote,
            state.name(),
            meta.resumes
        );
        persist(&self.app.store, meta.clone()).await;
        self.peer
            .send(&ControlMessage::SessionResumed {
                session_id: id,
                state: resumed,
                frames_stored: frames,
                window: limits.window,
                max_frame_bytes: limits.session_max_frame_bytes,
                max_signal_bytes: Some(self.app.settings.limits.max_signal_bytes as u64),
                max_frame_pixels: Some(self.app.settings.limits.max_frame_pixels),
            })
            .await;
        match resumed {
            ResumedState::Complete => {
                let directory = self.app.store.location(&meta.id);
                let events = meta.signal_events.unwrap_or(0);
                self.peer
                    .send(&complete_message(&meta, events, directory))
                    .await;
                self.peer.close(1000, "complete").await;
                self.end = String::from("the session is complete");
                Ok(ControlFlow::Break(()))
            }
            // Processing may have finished between the snapshot and the subscription.
            ResumedState::Processing => match live.snapshot().status {
                SessionStatus::Complete => {
                    let meta = live.snapshot();
                    let directory = self.app.store.location(&meta.id);
                    let events = meta.signal_events.unwrap_or(0);
                    self.on_pipeline(PipelineEvent::Complete {
                        meta: Box::new(meta),
                        events,
                        directory,
                    })
                    .await
                }
                _ => GO_ON,
            },
            _ => GO_ON,
        }
    }

    /// The stored state of session `id`, which is not live.
    async fn load(&self, id: &str) -> Result<SessionMeta, Refusal> {
        let lookup = id.to_string();
        let found = self
            .with_store("cannot read the session", move |store| {
                match store.load_meta(&lookup) {
                    Ok(meta) => stored_state(store, meta).map(Some),
                    Err(StoreError::NotFound(_)) => Ok(None),
                    Err(err) => Err(err),
                }
            })
            .await?;
        found.ok_or_else(|| {
            Refusal::new(
                ErrorCode::SessionNotFound,
                format!("this server has no session {id:?}: start a new session"),
            )
        })
    }

    /// Makes a session that is not live (detached) live again: it counts against the
    /// server's limit like a new one. One that is over for good does not.
    fn revive(&self, stored: SessionMeta) -> Result<Arc<LiveSession>, Refusal> {
        let finished = matches!(
            stored.status,
            SessionStatus::Complete | SessionStatus::Failed | SessionStatus::Abandoned
        );
        if let (false, Some(why)) = (finished, limits::session_limit_reached(&self.app)) {
            let until = stored
                .resumable_until
                .map_or_else(String::new, |t| format!(" until {}", rfc3339(t)));
            return Err(Refusal::new(
                ErrorCode::ServerBusy,
                format!("{why}; session {} stays resumable{until}", stored.id),
            ));
        }
        Ok(self.app.live.insert(stored).0)
    }

    /// Refuses to resume a session that is abandoned, past its grace period or failed.
    fn check_resumable(&self, meta: &SessionMeta) -> Result<(), Refusal> {
        let id = &meta.id;
        match meta.status {
            SessionStatus::Abandoned => Err(Refusal::new(
                ErrorCode::ResumeExpired,
                format!(
                    "session {id} was abandoned: it was detached for longer than the server's {} s grace period; its frames are kept until {}; start a new session",
                    self.app.settings.sweeper.resume_grace.as_secs(),
                    meta.expires_at.map_or_else(|| "expiry".into(), rfc3339)
                ),
            )),
            SessionStatus::Detached
                if meta
                    .resumable_until
                    .as_ref()
                    .is_some_and(crate::store::has_passed) =>
            {
                Err(Refusal::new(
                    ErrorCode::ResumeExpired,
                    format!(
                        "session {id} could be resumed until {}: start a new session",
                        meta.resumable_until.map(rfc3339).unwrap_or_default()
                    ),
                ))
            }
            SessionStatus::Failed => Err(Refusal::new(
                ErrorCode::ProcessingFailed,
                format!(
                    "session {id} failed: {}",
                    meta.error.as_deref().unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Opens the session's frames again for the frames after those stored, with the
    /// checks that the next frame follows them.
    async fn reopen(&self, session: &mut Session, meta: &SessionMeta) -> Result<(), Refusal> {
        let id = meta.id.clone();
        let frames = meta.frames_stored;
        let (sink, checksums, last_pts) = self
            .with_store("cannot reopen the frames of the session", move |store| {
                let source = store.frame_source(&id)?;
                let checksums = source.checksums().to_vec();
                // The next frame's timestamp must follow the last stored one's.
                let last_pts = frames.checked_sub(1).and_then(|last| {
                    let pts = usize::try_from(last)
                        .ok()
                        .and_then(|i| source.timestamps().get(i).copied())?;
                    Some((last, pts))
                });
                Ok((store.frame_sink(&id, frames)?, checksums, last_pts))
            })
            .await?;
        let stored = Stored {
            frames,
            bytes: meta.bytes_stored,
        };
        let limits = *session.intake.limits();
        session.writer = Some(start_writer(
            &self.app.settings.limits,
            &limits,
            sink,
            stored.clone(),
        ));
        session.intake = super::frames::FrameIntake::new(limits, stored.bytes);
        session.intake.resume_after(&checksums, last_pts);
        Ok(())
    }
}

/// The state of a session that is not live, as loaded from the store. One still `receiving`
/// on disk lost its last state to a storage error (a full disk, and the server stopped
/// before the state could be saved): its frame log, repaired, says what is stored, so that
/// the resume continues after every frame acknowledged.
pub(super) fn stored_state(
    store: &dyn SessionStore,
    mut meta: SessionMeta,
) -> Result<SessionMeta, StoreError> {
    if meta.status == SessionStatus::Receiving {
        let recovered = store.recover_frames(&meta.id)?;
        if recovered.frames != meta.frames_stored {
            tracing::info!(
                "Session {}: its saved state says {} frames stored, its frame log holds {}: resuming after those",
                meta.id,
                meta.frames_stored,
                recovered.frames
            );
        }
        meta.frames_stored = recovered.frames;
        meta.bytes_stored = recovered.bytes;
    }
    Ok(meta)
}
