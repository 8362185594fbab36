//! `SESSION_START`: a new session, or the upload into a session created ahead
//! (`POST /api/sessions`).

use axum::extract::ws::Message;
use futures_util::Sink;
use referee_protocol::{ControlMessage, ErrorCode, SessionState};
use time::OffsetDateTime;

use super::writer::Stored;
use super::{Connection, Link, Refusal, Step, GO_ON, TAKEOVER_WAIT};
use crate::limits;
use crate::metrics::Metrics;
use crate::notify::events::EventKind;
use crate::session::{bout, lifecycle, session_id};
use crate::store::{SessionMeta, SessionStatus, StoreError};

impl<S> Connection<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    pub(super) async fn on_start(&mut self, msg: ControlMessage) -> Step {
        let ControlMessage::SessionStart {
            name,
            source,
            fps,
            width,
            height,
            frame_count,
            encoding,
            quality,
            session_id: reserved_id,
            upload,
            bout,
            ..
        } = msg
        else {
            return GO_ON;
        };
        crate::frame_size::check(width, height, self.app.settings.limits.max_frame_pixels)
            .map_err(|why| Refusal::new(ErrorCode::FrameTooLargePixels, why))?;
        let reserved = match reserved_id {
            Some(id) => Some(self.reserved(&id).await?),
            None => None,
        };
        // A session created ahead and waiting, or one still live, already counts against the
        // limit of sessions; a detached one starting again counts anew.
        let counted = reserved.as_ref().is_some_and(|m| {
            m.status == SessionStatus::Created || self.app.live.handle(&m.id).is_some()
        });
        let refused = if counted {
            limits::refuse_below_disk_floor(&self.app.settings)
        } else {
            limits::refuse_new_session(&self.app)
        };
        if let Some((code, why)) = refused {
            return Err(Refusal::new(code, why));
        }
        let client_slot = self.client_slot()?;
        // A camera of a bout: no other connection takes the same camera until this session
        // exists.
        let joining = match &bout {
            Some(_) => Some(
                tokio::time::timeout(TAKEOVER_WAIT, self.app.bout_joins.clone().lock_owned())
                    .await
                    .map_err(|_| {
                        Refusal::new(
                            ErrorCode::ServerBusy,
                            "other cameras are joining their bouts: try again",
                        )
                    })?,
            ),
            None => None,
        };
        let bout = match bout {
            Some(bout) => Some(
                bout::join(&self.app, &name, bout)
                    .await
                    .map_err(|(code, why)| Refusal::new(code, why))?,
            ),
            None => None,
        };
        let mut meta = match &reserved {
            Some(reserved) => {
                let mut meta = reserved.clone();
                lifecycle::receive(&mut meta);
                meta
            }
            None => SessionMeta::new(
                session_id::generate(&name, OffsetDateTime::now_utc()),
                name,
                SessionStatus::Receiving,
            ),
        };
        meta.source = source;
        meta.fps = fps;
        meta.width = width;
        meta.height = height;
        meta.encoding = encoding;
        meta.quality = quality;
        meta.frames_expected = frame_count;
        meta.upload = upload;
        meta.bout = bout;
        meta.resume_token = session_id::resume_token();
        let is_reserved = reserved.is_some();
        let (sink, meta) = self
            .with_store("cannot create the session on disk", move |store| {
                if is_reserved {
                    store.save_meta(&meta)?;
                    return Ok((store.frame_sink(&meta.id, 0)?, meta));
                }
                // A collision of ids needs the same name in the same second and the same
                // random suffix; try again with a new suffix.
                loop {
                    match store.create(&meta) {
                        Err(StoreError::Io { source, .. })
                            if source.kind() == std::io::ErrorKind::AlreadyExists =>
                        {
                            meta.id = session_id::generate(&meta.name, OffsetDateTime::now_utc());
                        }
                        other => {
                            return other.and_then(|()| Ok((store.frame_sink(&meta.id, 0)?, meta)))
                        }
                    }
                }
            })
            .await?;
        drop(joining);
        let resume_token = meta.resume_token.clone();
        let bout_id = meta.bout.as_ref().map(|b| b.bout_id.clone());
        if is_reserved {
            self.app.reservations.remove(&meta.id);
        } else {
            Metrics::add(&self.app.metrics.sessions_created, 1);
            if meta.bout.is_some() {
                Metrics::add(&self.app.metrics.bout_cameras, 1);
            }
            self.app.events.publish(EventKind::Created, &meta);
        }
        self.app.events.publish(EventKind::Started, &meta);
        let (live, active) = self.app.live.insert(meta.clone());
        if is_reserved {
            // A live handle left by a dropped first upload holds that upload's metadata.
            live.update(|current| *current = meta);
        }
        tracing::info!("Created session {} ({active} active sessions)", live.id());
        let session_id = live.id().to_string();
        let state = SessionState::Receiving { next_frame: 0 };
        let session = self
            .attach(live, state, client_slot, Some(sink), Stored::default())
            .await;
        let limits = *session.intake.limits();
        self.link = Link::Attached(session);
        self.peer
            .send(&ControlMessage::SessionStarted {
                session_id,
                window: limits.window,
                max_frame_bytes: limits.session_max_frame_bytes,
                resume_token,
                resume_grace_s: self.app.settings.sweeper.resume_grace.as_secs(),
                max_signal_bytes: Some(self.app.settings.limits.max_signal_bytes as u64),
                max_frame_pixels: Some(self.app.settings.limits.max_frame_pixels),
                bout_id,
            })
            .await;
        GO_ON
    }

    /// The session created ahead that a `SESSION_START` with `session_id` streams into, if
    /// it may.
    async fn reserved(&self, id: &str) -> Result<SessionMeta, Refusal> {
        // A session still to recover after a restart is recovered first.
        self.app
            .recovering
            .wait_for(id)
            .await
            .map_err(|why| Refusal::new(ErrorCode::ServerBusy, why))?;
        match crate::notify::watch::current(&self.app, id).await {
            Some(meta) if meta.status == SessionStatus::Created => Ok(meta),
            // Its upload began but stored no frame before the connection dropped (maybe
            // before SESSION_STARTED, and so its resume token, reached the client): it
            // begins again, nothing lost.
            Some(meta)
                if meta.created_ahead
                    && meta.frames_stored == 0
                    && matches!(
                        meta.status,
                        SessionStatus::Receiving | SessionStatus::Detached
                    ) =>
            {
                if let Some(stale) = self.app.live.handle(id) {
                    // Only the client that was streaming takes its own dropped upload
                    // over; another one waits until that upload is detached.
                    let from = stale.client();
                    if meta.status == SessionStatus::Receiving && from != Some(self.remote.ip()) {
                        return Err(Refusal::new(
                            ErrorCode::ServerBusy,
                            format!("session {id} is being streamed into from another address: try again once that upload has ended, or create another session"),
                        ));
                    }
                    // The dropped connection may not have noticed yet: it lets go first.
                    if tokio::time::timeout(TAKEOVER_WAIT, stale.attach(self.remote.ip()))
                        .await
                        .is_err()
                    {
                        return Err(Refusal::takeover_timed_out(id));
                    }
                }
                // Letting go flushed its frames, if any arrived meanwhile: then it is an
                // upload to resume, not to start again.
                match crate::notify::watch::current(&self.app, id).await {
                    Some(meta) if meta.frames_stored > 0 => Err(Refusal::new(
                        ErrorCode::AlreadyStarted,
                        format!("session {id} already has an upload with {} frames stored: resume it, or create another session", meta.frames_stored),
                    )),
                    Some(meta) => Ok(meta),
                    None => Err(not_found(id)),
                }
            }
            Some(meta) => Err(Refusal::new(
                ErrorCode::AlreadyStarted,
                format!("session {id} already has an upload (it is {}): resume it, or create another session", meta.status.as_str()),
            )),
            None => Err(not_found(id)),
        }
    }
}

fn not_found(id: &str) -> Refusal {
    Refusal::new(
        ErrorCode::SessionNotFound,
        format!("this server has no session {id:?}: create it with POST /api/sessions first"),
    )
}
