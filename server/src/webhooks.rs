//! Webhooks: `session.created`, `session.completed` and `session.failed` are POSTed as JSON to
//! every `--webhook` URL, signed with an HMAC-SHA256 header, with an idempotency key per
//! event, retried with backoff.
//!
//! Delivery goes through an outbox on disk (`DATA_DIR/webhooks/`): an event is written to
//! `outbox/` (and synced) before it is sent, moved to `sent/` once every URL answered 2xx,
//! and to `failed/` after `--webhook-attempts`. At startup the outbox is sent again, and
//! sessions whose events never made it to the outbox (a crash in between) are queued from
//! their stored state: a restart neither loses an event nor sends one with a new key.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::broadcast;

use crate::events::{EventKind, SessionEvent};
use crate::store::{now_rfc3339, SessionMeta, SessionStatus};
use crate::AppState;

/// First wait before a delivery is tried again; it doubles each attempt, up to the maximum.
const RETRY_START: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One webhook event, as sent and as kept in the outbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WebhookEvent {
    /// Stable for this event: the receiver can drop a second delivery with the same key.
    pub idempotency_key: String,
    /// `session.created`, `session.completed` or `session.failed`.
    pub event: String,
    pub session_id: String,
    pub at: String,
    pub session: serde_json::Value,
}

impl WebhookEvent {
    fn of(kind: &str, meta: &SessionMeta) -> Self {
        Self {
            idempotency_key: format!("{}.{kind}", meta.id),
            event: format!("session.{kind}"),
            session_id: meta.id.clone(),
            at: now_rfc3339(),
            session: meta.public_json(),
        }
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

/// The outbox folders.
#[derive(Debug, Clone)]
struct Outbox {
    root: PathBuf,
}

impl Outbox {
    fn open(data_dir: &Path) -> std::io::Result<Self> {
        let root = data_dir.join("webhooks");
        for dir in ["outbox", "sent", "failed"] {
            fs::create_dir_all(root.join(dir))?;
        }
        Ok(Self { root })
    }

    fn path(&self, dir: &str, key: &str) -> PathBuf {
        self.root.join(dir).join(format!("{key}.json"))
    }

    fn known(&self, key: &str) -> bool {
        ["outbox", "sent", "failed"]
            .iter()
            .any(|dir| self.path(dir, key).exists())
    }

    /// Writes the event to the outbox, durably; false if it was queued before.
    fn put(&self, event: &WebhookEvent) -> std::io::Result<bool> {
        if self.known(&event.idempotency_key) {
            return Ok(false);
        }
        let path = self.path("outbox", &event.idempotency_key);
        let tmp = path.with_extension("tmp");
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(event).unwrap_or_default())?;
        file.sync_data()?;
        fs::rename(&tmp, &path)?;
        Ok(true)
    }

    fn pending(&self) -> Vec<WebhookEvent> {
        let Ok(entries) = fs::read_dir(self.root.join("outbox")) else {
            return Vec::new();
        };
        let mut events: Vec<WebhookEvent> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| serde_json::from_slice(&fs::read(e.path()).ok()?).ok())
            .collect();
        events.sort_by(|a, b| a.at.cmp(&b.at));
        events
    }

    fn finish(&self, key: &str, delivered: bool) {
        let to = if delivered { "sent" } else { "failed" };
        if let Err(err) = fs::rename(self.path("outbox", key), self.path(to, key)) {
            tracing::warn!("webhook {key}: cannot move it to {to}/: {err}");
        }
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

/// Starts the webhook sender, if any webhook URL is configured.
pub async fn start(app: &AppState) {
    if app.config.webhook.is_empty() {
        return;
    }
    let outbox = match Outbox::open(&app.config.data_dir) {
        Ok(outbox) => outbox,
        Err(err) => {
            tracing::error!("webhooks are off: cannot create their outbox: {err}");
            return;
        }
    };
    // Subscribe before catching up, so that no event falls in between.
    let rx = app.events.subscribe();
    let (queue_tx, queue_rx) = tokio::sync::mpsc::unbounded_channel::<WebhookEvent>();
    let catch_up = {
        let outbox = outbox.clone();
        let store = Arc::clone(&app.store);
        tokio::task::spawn_blocking(move || {
            // Events of stored sessions that never reached the outbox.
            for meta in store.list().unwrap_or_default() {
                let kinds: &[&str] = match meta.status {
                    SessionStatus::Complete => &["created", "completed"],
                    SessionStatus::Failed => &["created", "failed"],
                    _ => &["created"],
                };
                for kind in kinds {
                    if let Err(err) = outbox.put(&WebhookEvent::of(kind, &meta)) {
                        tracing::error!("webhook outbox: {err}");
                    }
                }
            }
            outbox.pending()
        })
    };
    for event in catch_up.await.unwrap_or_default() {
        let _ = queue_tx.send(event);
    }
    tokio::spawn(listen(rx, outbox.clone(), queue_tx, app.clone()));
    tokio::spawn(deliver(app.clone(), outbox, queue_rx));
}

/// Turns bus events into outbox entries.
async fn listen(
    mut rx: broadcast::Receiver<SessionEvent>,
    outbox: Outbox,
    queue: tokio::sync::mpsc::UnboundedSender<WebhookEvent>,
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
        let Some(meta) = crate::watch::current(&app, &event.session_id).await else {
            continue;
        };
        let webhook = WebhookEvent::of(kind, &meta);
        let box_ = outbox.clone();
        let queued = {
            let webhook = webhook.clone();
            tokio::task::spawn_blocking(move || box_.put(&webhook)).await
        };
        match queued {
            Ok(Ok(true)) => {
                let _ = queue.send(webhook);
            }
            Ok(Ok(false)) => {}
            Ok(Err(err)) => tracing::error!("webhook outbox: {err}"),
            Err(err) => tracing::error!("webhook outbox: {err}"),
        }
    }
}

/// Sends queued events, one at a time, in order, each to every URL, retrying with backoff.
async fn deliver(
    app: AppState,
    outbox: Outbox,
    mut queue: tokio::sync::mpsc::UnboundedReceiver<WebhookEvent>,
) {
    while let Some(event) = queue.recv().await {
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let mut wait = RETRY_START;
        let mut delivered = false;
        for attempt in 1..=app.config.webhook_attempts {
            match send_all(&app, &event, &body).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(err) => tracing::warn!(
                    "webhook {} attempt {attempt}/{}: {err}",
                    event.idempotency_key,
                    app.config.webhook_attempts
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = app.shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
        if delivered {
            tracing::info!("webhook {} delivered", event.idempotency_key);
        } else {
            tracing::error!(
                "webhook {} not delivered after {} attempts: kept in webhooks/failed/",
                event.idempotency_key,
                app.config.webhook_attempts
            );
        }
        let box_ = outbox.clone();
        let key = event.idempotency_key.clone();
        let _ = tokio::task::spawn_blocking(move || box_.finish(&key, delivered)).await;
    }
}

async fn send_all(app: &AppState, event: &WebhookEvent, body: &[u8]) -> Result<(), String> {
    for url in &app.config.webhook {
        let url = url.clone();
        let body = body.to_vec();
        let key = event.idempotency_key.clone();
        let kind = event.event.clone();
        let signature = app
            .config
            .webhook_secret
            .as_deref()
            .map(|secret| signature(secret, &body));
        let sent = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(REQUEST_TIMEOUT))
                .http_status_as_error(false)
                .build()
                .into();
            let mut request = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", &key)
                .header("X-Referee-Event", &kind);
            if let Some(signature) = &signature {
                request = request.header("X-Referee-Signature", signature);
            }
            match request.send(&body[..]) {
                Ok(response) if response.status().is_success() => Ok(()),
                Ok(response) => Err(format!("{url} answered HTTP {}", response.status())),
                Err(err) => Err(format!("{url}: {err}")),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        sent?;
    }
    Ok(())
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

    #[test]
    fn the_outbox_queues_an_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path()).unwrap();
        let event = WebhookEvent {
            idempotency_key: "s1.created".into(),
            event: "session.created".into(),
            session_id: "s1".into(),
            at: now_rfc3339(),
            session: serde_json::json!({}),
        };
        assert!(outbox.put(&event).unwrap());
        assert!(!outbox.put(&event).unwrap(), "queued twice");
        assert_eq!(outbox.pending(), vec![event.clone()]);
        outbox.finish("s1.created", true);
        assert!(outbox.pending().is_empty());
        assert!(
            !outbox.put(&event).unwrap(),
            "sent events are not queued again"
        );
    }
}
