//! Bringing sessions back after the server stopped, cleanly or not: every unfinished session's
//! frames are verified (a torn last record is cut off, checksums checked), uploads become
//! `detached` so their clients can resume, and interrupted processing runs again.

use std::sync::Arc;
use std::time::Duration;

use referee_protocol::signal::SignalTrack;
use time::OffsetDateTime;

use crate::processing;
use crate::store::{rfc3339, SessionMeta, SessionStatus, SessionStore, StoreError};
use crate::AppState;

/// Recovers every session that was not finished when the server stopped.
pub async fn recover_sessions(app: &AppState) -> Result<(), StoreError> {
    let store = Arc::clone(&app.store);
    let sessions = tokio::task::spawn_blocking(move || store.list())
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))??;
    for meta in sessions {
        let unfinished = matches!(
            meta.status,
            SessionStatus::Receiving
                | SessionStatus::AwaitingSignal
                | SessionStatus::Detached
                | SessionStatus::Processing
        );
        if unfinished {
            let id = meta.id.clone();
            if let Err(err) = recover_one(app, meta).await {
                tracing::error!("Session {id}: cannot recover it: {err}");
            }
        }
    }
    Ok(())
}

async fn recover_one(app: &AppState, mut meta: SessionMeta) -> Result<(), StoreError> {
    let store = Arc::clone(&app.store);
    let id = meta.id.clone();
    let (recovered, signal) = tokio::task::spawn_blocking(move || {
        Ok::<_, StoreError>((store.recover_frames(&id)?, store.signal(&id)?))
    })
    .await
    .map_err(|e| StoreError::WriterStopped(e.to_string()))??;
    let id = meta.id.clone();
    // Frames recorded as acknowledged must all be there: count any that are not.
    let lost = meta.frames_stored.saturating_sub(recovered.frames);
    if lost > 0 {
        crate::metrics::Metrics::add(&app.metrics.frames_lost, lost);
        tracing::error!(
            "Session {id}: {lost} acknowledged frames are missing after the restart (frames {}..{})",
            recovered.frames,
            meta.frames_stored
        );
    }
    let lost_after_end = meta.upload_ended() && recovered.frames != meta.frames_stored;
    meta.frames_stored = recovered.frames;
    meta.bytes_stored = recovered.bytes;
    if meta.status == SessionStatus::Processing && !lost_after_end {
        let signal = match signal.as_deref().map(SignalTrack::parse).transpose() {
            Ok(signal) => signal,
            Err(err) => {
                meta.status = SessionStatus::Failed;
                meta.error = Some(format!("the stored signal file is invalid: {err}"));
                return save(app, meta).await;
            }
        };
        tracing::info!(
            "Session {id}: {} frames verified; processing stopped with the server, running it again",
            recovered.frames
        );
        let (live, _) = app.live.insert(meta);
        processing::start(app, live, signal).await;
        return Ok(());
    }
    let was = meta.status;
    if lost_after_end {
        // Frames acknowledged before SESSION_END are missing: the upload must continue.
        meta.ended_at = None;
    }
    if was != SessionStatus::Detached || lost_after_end {
        let until = OffsetDateTime::now_utc() + Duration::from_secs(app.config.resume_grace_secs);
        meta.status = SessionStatus::Detached;
        meta.resumable_until = Some(rfc3339(until));
        meta.error = Some(format!(
            "the server stopped while the session was {}",
            was.as_str()
        ));
    }
    tracing::info!(
        "Session {id}: recovered {} frames ({} cut off); detached, resumable until {}",
        recovered.frames,
        recovered.dropped,
        meta.resumable_until.as_deref().unwrap_or("-")
    );
    // Should the disk refuse the state (still full), it is kept live, as recomputed, and
    // saved again until the disk takes it.
    let (live, _) = app.live.insert(meta);
    crate::resave::save_or_retry(app, live).await;
    Ok(())
}

async fn save(app: &AppState, meta: SessionMeta) -> Result<(), StoreError> {
    let store: Arc<dyn SessionStore> = Arc::clone(&app.store);
    tokio::task::spawn_blocking(move || store.save_meta(&meta))
        .await
        .map_err(|e| StoreError::WriterStopped(e.to_string()))?
}
