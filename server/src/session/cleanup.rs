//! The sweeper: detached sessions past their grace period become `abandoned`, abandoned
//! sessions past their expiry are deleted, and so are sessions created ahead that nobody
//! streamed into before theirs. In a cluster, one server sweeps at a time, and uploads left
//! by a server that stopped are recovered.

use time::OffsetDateTime;

use crate::notify::events::EventKind;
use crate::store::{has_passed, rfc3339, SessionStatus, SessionStore};
use crate::AppState;

/// Sweeps every `--cleanup-interval-secs` until the server shuts down.
pub async fn run(app: AppState) {
    let mut every = tokio::time::interval(app.settings.sweeper.interval);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = app.shutdown.cancelled() => return,
        }
        if !leading(&app).await {
            continue;
        }
        let sweeping = app.clone();
        let swept = app.store.run("the cleanup sweep", move |store| {
            sweep(store, &sweeping);
            Ok(())
        });
        if let Err(err) = swept.await {
            tracing::error!("the cleanup sweep failed: {err}");
        }
        if let Some(cluster) = &app.cluster {
            adopt_orphans(&app, cluster.lease()).await;
        }
    }
}

/// In a cluster: uploads whose server stopped, and whose client did not resume elsewhere,
/// are recovered as that server's restart would (detached, then swept as any other); those
/// whose server's lease is still valid are left to it.
async fn adopt_orphans(app: &AppState, lease: std::time::Duration) {
    // Not one just made, whose server is still to take its lease.
    let quiet_since = OffsetDateTime::now_utc() - lease;
    let sessions = match app.store.list().await {
        Ok(sessions) => sessions,
        Err(err) => {
            tracing::warn!("cleanup: cannot list sessions: {err}");
            return;
        }
    };
    for meta in sessions {
        let receiving = matches!(
            meta.status,
            SessionStatus::Receiving | SessionStatus::AwaitingSignal
        );
        if receiving && meta.updated_at < quiet_since && app.live.handle(&meta.id).is_none() {
            super::recovery::adopt(app, meta).await;
        }
    }
}

/// Whether this server sweeps now: always alone, one server of a cluster at a time (the
/// others' sessions are in the same registry).
async fn leading(app: &AppState) -> bool {
    let Some(cluster) = &app.cluster else {
        return true;
    };
    cluster.lead("sweeper").await.unwrap_or_else(|err| {
        tracing::warn!("cleanup: not sweeping now: {err}");
        false
    })
}

/// One sweep (it blocks: `store` is the blocking store). Sessions attached to a connection
/// are left alone.
pub fn sweep(store: &dyn SessionStore, app: &AppState) {
    let (live, events) = (&app.live, &app.events);
    let expiry = app.settings.sweeper.abandoned_expiry;
    let sessions = match store.list() {
        Ok(sessions) => sessions,
        Err(err) => {
            tracing::warn!("cleanup: cannot list sessions: {err}");
            return;
        }
    };
    for mut meta in sessions {
        if live.handle(&meta.id).is_some() {
            continue;
        }
        match meta.status {
            SessionStatus::Detached if meta.resumable_until.as_ref().is_some_and(has_passed) => {
                let expires = OffsetDateTime::now_utc() + expiry;
                tracing::info!(
                    "Session {}: not resumed in time, abandoned; its {} frames are kept until {}",
                    meta.id,
                    meta.frames_stored,
                    rfc3339(expires)
                );
                super::lifecycle::abandon(&mut meta, expires);
                match store.save_meta(&meta) {
                    Ok(()) => events.publish(EventKind::Abandoned, &meta),
                    Err(err) => tracing::warn!("cleanup: {err}"),
                }
            }
            SessionStatus::Abandoned | SessionStatus::Created
                if meta.expires_at.as_ref().is_some_and(has_passed) =>
            {
                match store.delete(&meta.id) {
                    Ok(()) => {
                        let what = match meta.status {
                            SessionStatus::Created => "created ahead and never streamed into",
                            _ => "abandoned",
                        };
                        tracing::info!("Session {}: {what}, expired, deleted", meta.id);
                        app.reservations.remove(&meta.id);
                        events.publish(EventKind::Deleted, &meta);
                    }
                    Err(err) => tracing::warn!("cleanup: {err}"),
                }
            }
            _ => {}
        }
    }
}
