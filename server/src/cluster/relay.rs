//! Session events across the servers of one registry: each server sends its own events to
//! the others through PostgreSQL (`NOTIFY referee_events`) and publishes theirs on its bus for
//! its event streams, so that the dashboard and `/api/events` on any server see every
//! session. Webhooks follow each server's own events only (each event is delivered once).
//!
//! As PostgreSQL's notifications are, the relay is live only: events sent while a server's
//! connection was lost are not seen by it (a watcher reads the session's state when it
//! subscribes, and the next event brings it up to date).

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::broadcast::error::RecvError;

use super::Cluster;
use crate::notify::events::SessionEvent;
use crate::AppState;

/// The channel the servers' events travel on.
const CHANNEL: &str = "referee_events";
/// PostgreSQL refuses a notification of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;
/// How much of an error message travels, should the whole not fit.
const ERROR_KEPT: usize = 1000;
/// How long the relay waits before listening again after an error.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// One event on the channel, with the server it happened on.
#[derive(Debug, Serialize, Deserialize)]
struct Relayed {
    node: String,
    event: SessionEvent,
}

/// Starts relaying: this server's events to the others, theirs to this server's bus.
pub async fn start(app: &AppState, cluster: &Cluster) {
    let mut listener = match PgListener::connect_with(&cluster.pool).await {
        Ok(listener) => listener,
        Err(err) => {
            tracing::error!(
                "the event streams show this server's sessions only: cannot listen to the \
                 registry ({err})"
            );
            return;
        }
    };
    if let Err(err) = listener.listen(CHANNEL).await {
        tracing::error!("the event streams show this server's sessions only: {err}");
        return;
    }
    tokio::spawn(receive(app.clone(), cluster.node.clone(), listener));
    tokio::spawn(send(app.clone(), cluster.clone()));
}

/// Publishes the other servers' events on this server's bus.
async fn receive(app: AppState, node: String, mut listener: PgListener) {
    loop {
        let notification = tokio::select! {
            received = listener.recv() => received,
            () = app.shutdown.cancelled() => return,
        };
        match notification {
            Ok(notification) => match serde_json::from_str::<Relayed>(notification.payload()) {
                Ok(relayed) if relayed.node != node => app.events.publish_relayed(relayed.event),
                Ok(_) => {}
                Err(err) => tracing::warn!("relay: an event that cannot be read: {err}"),
            },
            // It connects again at the next call; meanwhile, say so once and wait a little.
            Err(err) => {
                tracing::warn!("relay: the registry's notifications stopped ({err}); reconnecting");
                tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    () = app.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// Sends this server's events to the others.
async fn send(app: AppState, cluster: Cluster) {
    let mut own = app.events.subscribe_own();
    loop {
        let event = tokio::select! {
            received = own.recv() => received,
            () = app.shutdown.cancelled() => return,
        };
        let event = match event {
            Ok(event) => event,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    "relay: {n} events not sent to the other servers (too many at once)"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let Some(payload) = payload(&cluster.node, event) else {
            continue;
        };
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&cluster.pool);
        if let Err(err) = cluster
            .run("(all)", "cannot relay an event through", sent)
            .await
        {
            tracing::warn!("relay: {err}");
        }
    }
}

/// The notification of `event`, small enough for PostgreSQL (a long error message cut).
fn payload(node: &str, mut event: SessionEvent) -> Option<String> {
    let encode = |event: SessionEvent| {
        serde_json::to_string(&Relayed {
            node: node.to_string(),
            event,
        })
        .ok()
    };
    let whole = encode(event.clone())?;
    if whole.len() <= MAX_PAYLOAD {
        return Some(whole);
    }
    if let Some(error) = &mut event.error {
        let cut = error
            .char_indices()
            .nth(ERROR_KEPT)
            .map_or(error.len(), |(at, _)| at);
        error.truncate(cut);
        error.push('…');
    }
    let session = event.session_id.clone();
    let cut = encode(event).filter(|cut| cut.len() <= MAX_PAYLOAD);
    if cut.is_none() {
        tracing::warn!("relay: an event of session {session} is too large to send");
    }
    cut
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::notify::events::{event_of, EventKind};
    use crate::store::{SessionMeta, SessionStatus};

    #[test]
    fn a_long_error_is_cut_to_fit_a_notification() {
        let mut meta = SessionMeta::new("s1".into(), "s1".into(), SessionStatus::Failed);
        meta.error = Some("é".repeat(20_000));
        let event = event_of(EventKind::Failed, &meta);
        let sent = payload("host/1", event).unwrap();
        assert!(sent.len() <= MAX_PAYLOAD, "{}", sent.len());
        let back: Relayed = serde_json::from_str(&sent).unwrap();
        assert_eq!(back.node, "host/1");
        assert_eq!(back.event.session_id, "s1");
        assert!(back.event.error.unwrap().ends_with('…'));
    }
}
