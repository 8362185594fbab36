//! A session's state that the disk refused to save (full, failing): the session stays live,
//! so that its state in memory is the one the API shows and a resume starts from, and its
//! state is saved again every few seconds until the disk takes it. Should the server stop
//! first, recovery recomputes the state from the frame log at the next start.

use std::sync::Arc;
use std::time::Duration;

use crate::session::live::LiveSession;
use crate::store::{Store, StoreError};
use crate::AppState;

/// How often a state that could not be saved is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(2);

/// Saves the current state of `live`; if the disk refuses it, tries again in the background
/// every [`RETRY_EVERY`] until it is saved or the server shuts down.
pub async fn save_or_retry(app: &AppState, live: Arc<LiveSession>) {
    let Err(err) = save(&app.store, &live).await else {
        return;
    };
    tracing::error!(
        "Session {}: cannot save its state: {err}; it is kept in memory and saved again every {} s",
        live.id(),
        RETRY_EVERY.as_secs()
    );
    let app = app.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(RETRY_EVERY) => {}
                () = app.shutdown.cancelled() => return,
            }
            match save(&app.store, &live).await {
                Ok(()) => {
                    tracing::info!("Session {}: its state is saved again", live.id());
                    return;
                }
                Err(err) => tracing::debug!("Session {}: still cannot save: {err}", live.id()),
            }
        }
    });
}

async fn save(store: &Store, live: &LiveSession) -> Result<(), StoreError> {
    store.save_meta(live.snapshot()).await
}
