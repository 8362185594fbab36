//! Webhooks: `session.created`, `session.completed` and `session.failed` are POSTed as JSON to
//! every `--webhook` URL, signed with an HMAC-SHA256 header, with an idempotency key per
//! event, retried with backoff.
//!
//! Delivery is kept per event and URL, through an outbox on disk ([`outbox`]): each URL gets
//! each event once, in order, from a sender of its own ([`deliver`]), so a URL that fails
//! neither holds up the others nor makes them get an event again. At startup the outbox is
//! sent again to the URLs that have not had its events, and sessions whose events never made
//! it to the outbox (a crash in between) are queued from their stored state: a restart
//! neither loses an event nor sends one with a new key.

mod deliver;
mod outbox;

use hmac::{Hmac, Mac};

use sha2::Sha256;
use tokio::sync::{broadcast, mpsc};

use crate::notify::events::{EventKind, SessionEvent};
pub use referee_protocol::api::WebhookEvent;
use time::OffsetDateTime;

use crate::cluster::Cluster;
use crate::store::{SessionMeta, SessionStatus, StoreError};
use crate::AppState;
use deliver::Senders;
pub use outbox::History;
use outbox::{Entry, Outbox};

/// The webhook event `kind` of the session `meta`, now.
fn webhook_event(kind: &str, meta: &SessionMeta) -> WebhookEvent {
    WebhookEvent {
        idempotency_key: format!("{}.{kind}", meta.id),
        event: format!("session.{kind}"),
        session_id: meta.id.clone(),
        at: OffsetDateTime::now_utc(),
        session: meta.view(None),
    }
}

/// The webhook kind of a bus event, if it has one.
fn kind_of(event: EventKind) -> Option<&'static str> {
    match event {
        EventKind::Created => Some("created"),
        EventKind::Complete => Some("completed"),
        EventKind::Failed => Some("failed"),
        _ => None,
    }
}

/// `sha256=HEX` of the HMAC-SHA256 of `body` with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Starts the webhook senders, if any webhook URL is configured.
pub async fn start(app: &AppState) {
    let (webhooks, data_dir) = (&app.settings.webhooks, &app.settings.storage.data_dir);
    if webhooks.urls.is_empty() {
        return;
    }
    let outbox = match Outbox::open(data_dir, &webhooks.urls, webhooks.history) {
        Ok(outbox) => outbox,
        Err(err) => {
            tracing::error!(
                "webhooks are off: cannot create their outbox in {}: {err}; check that the \
                 data directory is writable",
                data_dir.join("webhooks").display()
            );
            return;
        }
    };
    outbox.prune_history(true);
    let senders = Senders::start(app, &outbox);
    // Listen before catching up, so that no event falls in between; the outbox claims each
    // event once, so the two never queue the same one twice. What the listener queues waits
    // until the catch-up (older events) is dispatched.
    let (fresh_tx, mut fresh_rx) = mpsc::unbounded_channel::<Entry>();
    tokio::spawn(listen(
        app.events.subscribe_own(),
        outbox.clone(),
        fresh_tx,
        app.clone(),
    ));
    let (queue, box_) = (Queue::of(app), outbox.clone());
    let backlog = app
        .store
        .run("the webhook catch-up", move |store| {
            Ok(catch_up(store, &box_, &queue))
        })
        .await;
    let backlog = backlog.unwrap_or_else(|err| {
        tracing::error!("webhook catch-up failed ({err}); the outbox is sent at the next start");
        Vec::new()
    });
    for entry in &backlog {
        senders.dispatch(entry);
    }
    if let Some(cluster) = app.cluster.clone() {
        tokio::spawn(take_over(app.clone(), cluster, outbox, senders.clone()));
    }
    tokio::spawn(async move {
        while let Some(entry) = fresh_rx.recv().await {
            senders.dispatch(&entry);
        }
    });
}

/// Who else may deliver this server's events: no one (a single server), or the servers of
/// its cluster, through their shared queue ([`crate::cluster::webhooks`]). For the blocking
/// catch-up.
#[derive(Clone)]
enum Queue {
    Alone,
    Shared(Cluster, tokio::runtime::Handle),
}

impl Queue {
    fn of(app: &AppState) -> Self {
        match &app.cluster {
            None => Queue::Alone,
            Some(cluster) => Queue::Shared(cluster.clone(), tokio::runtime::Handle::current()),
        }
    }

    /// Whether this server delivers `entry`, a new event (see [`claimed`]).
    fn claim(&self, entry: &Entry) -> bool {
        match self {
            Queue::Alone => true,
            Queue::Shared(cluster, runtime) => runtime.block_on(claimed(cluster, entry)),
        }
    }

    /// What to send of `entry`, an event of this server's outbox from an earlier run: the
    /// entry as it stands now, `Ok(None)` once it is done (another server delivered it), an
    /// error when the shared queue does not answer.
    fn retake(&self, entry: Entry) -> Result<Option<Entry>, StoreError> {
        match self {
            Queue::Alone => Ok(Some(entry)),
            Queue::Shared(cluster, runtime) => {
                runtime.block_on(cluster.retake_webhook(entry.key(), &entry))
            }
        }
    }
}

/// Whether this server delivers `entry`, a new event, of the servers of `cluster`: the first
/// to claim it does. Should the registry not answer, it does not (the event is claimed again
/// at the next start).
async fn claimed(cluster: &Cluster, entry: &Entry) -> bool {
    cluster
        .claim_webhook(entry.key(), entry)
        .await
        .unwrap_or_else(|err| {
            tracing::error!("webhooks: {err}; the event is sent after the next start");
            false
        })
}

/// The events to send at startup, oldest first: the outbox's (those still to send), and those
/// of stored sessions that never reached it and that this server delivers (in a cluster, the
/// one that claims an event first).
fn catch_up(store: &dyn crate::store::SessionStore, outbox: &Outbox, queue: &Queue) -> Vec<Entry> {
    let mut all = Vec::new();
    for entry in outbox.unclaimed() {
        let key = entry.key().to_string();
        match queue.retake(entry) {
            Ok(Some(entry)) => match outbox.adopt(entry) {
                Ok(Some(entry)) => all.push(entry),
                Ok(None) => {}
                Err(err) => tracing::error!("webhook outbox: {err}"),
            },
            Ok(None) => {
                tracing::info!("webhook {key}: delivered by another server");
                if let Err(err) = outbox.forget(&key) {
                    tracing::warn!("webhook outbox: cannot remove {key}: {err}");
                }
            }
            Err(err) => tracing::error!("webhooks: {err}; the event is sent after the next start"),
        }
    }
    let sessions = store.list().unwrap_or_else(|err| {
        tracing::error!("webhook catch-up: cannot list the sessions: {err}");
        Vec::new()
    });
    for meta in sessions {
        let kinds: &[&str] = match meta.status {
            SessionStatus::Complete => &["created", "completed"],
            SessionStatus::Failed => &["created", "failed"],
            _ => &["created"],
        };
        for kind in kinds {
            let event = webhook_event(kind, &meta);
            if outbox.knows(&event.idempotency_key)
                || !queue.claim(&Entry::new(&event, outbox.urls()))
            {
                continue;
            }
            match outbox.put(&event) {
                Ok(Some(entry)) => all.push(entry),
                Ok(None) => {}
                Err(err) => tracing::error!("webhook outbox: {err}"),
            }
        }
    }
    outbox::sort_oldest_first(&mut all);
    all
}

/// In a cluster, every heartbeat until the server shuts down: renews the lease on the events
/// this server is delivering, and takes over those of servers that stopped before every URL
/// had them.
async fn take_over(app: AppState, cluster: Cluster, outbox: Outbox, senders: Senders) {
    let mut every = tokio::time::interval(cluster.heartbeat());
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = app.shutdown.cancelled() => return,
        }
        if let Err(err) = cluster.renew_webhooks(&outbox.claimed()).await {
            tracing::warn!("{err}");
        }
        let mut orphans = match cluster.orphaned_webhooks::<Entry>().await {
            Ok(orphans) => orphans,
            Err(err) => {
                tracing::warn!("{err}");
                continue;
            }
        };
        outbox::sort_oldest_first(&mut orphans);
        for entry in orphans {
            tracing::info!(
                "webhook {}: the server delivering it stopped (its lease ran out); taking it over",
                entry.key()
            );
            let box_ = outbox.clone();
            match tokio::task::spawn_blocking(move || box_.adopt(entry)).await {
                Ok(Ok(Some(entry))) => senders.dispatch(&entry),
                Ok(Ok(None)) => {}
                Ok(Err(err)) => tracing::error!("webhook outbox: {err}"),
                Err(err) => tracing::error!("webhook outbox: {err}"),
            }
        }
    }
}

/// Turns bus events into outbox entries.
async fn listen(
    mut rx: broadcast::Receiver<SessionEvent>,
    outbox: Outbox,
    queue: mpsc::UnboundedSender<Entry>,
    app: AppState,
) {
    loop {
        let event = match rx.recv().await {
            Ok(event) => event,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    "webhooks: {n} events skipped; they are queued again at the next start"
                );
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let Some(kind) = kind_of(event.event) else {
            continue;
        };
        let Some(meta) = crate::notify::watch::current(&app, &event.session_id).await else {
            continue;
        };
        let webhook = webhook_event(kind, &meta);
        if let Some(cluster) = &app.cluster {
            if !claimed(cluster, &Entry::new(&webhook, outbox.urls())).await {
                continue;
            }
        }
        let box_ = outbox.clone();
        let queued = tokio::task::spawn_blocking(move || box_.put(&webhook)).await;
        match queued {
            Ok(Ok(Some(entry))) => {
                let _ = queue.send(entry);
            }
            Ok(Ok(None)) => {}
            Ok(Err(err)) => tracing::error!("webhook outbox: {err}"),
            Err(err) => tracing::error!("webhook outbox: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
