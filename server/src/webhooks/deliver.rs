//! Sending webhook events: one sender per URL, each with its own queue, so that a URL that
//! fails holds up only its own later events, and a URL that answered is never sent the same
//! event again.

use std::time::Duration;

use tokio::sync::mpsc;

use super::outbox::{Entry, Outbox};
use super::{signature, WebhookEvent};
use crate::AppState;

/// First wait before a delivery is tried again; it doubles each attempt, up to the maximum.
const RETRY_START: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The queues of the senders, one per URL.
#[derive(Debug, Clone)]
pub struct Senders {
    queues: Vec<(String, mpsc::UnboundedSender<WebhookEvent>)>,
}

impl Senders {
    /// Starts a sender for each URL of `outbox`.
    pub fn start(app: &AppState, outbox: &Outbox) -> Self {
        let queues = outbox
            .urls()
            .iter()
            .map(|url| {
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(deliver_to(app.clone(), outbox.clone(), url.clone(), rx));
                (url.clone(), tx)
            })
            .collect();
        Self { queues }
    }

    /// Queues `entry` for each URL that has not had it yet.
    pub fn dispatch(&self, entry: &Entry) {
        for (url, queue) in &self.queues {
            if entry.pending(std::slice::from_ref(url)).is_empty() {
                continue;
            }
            // A closed queue means the server is shutting down; the entry stays in the
            // outbox for the next start.
            let _ = queue.send(entry.event.clone());
        }
    }
}

/// Sends the events queued for `url`, one at a time, in order, retrying each with backoff,
/// and records each outcome in the outbox.
async fn deliver_to(
    app: AppState,
    outbox: Outbox,
    url: String,
    mut queue: mpsc::UnboundedReceiver<WebhookEvent>,
) {
    let attempts = app.config.webhook_attempts;
    while let Some(event) = queue.recv().await {
        let key = event.idempotency_key.clone();
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let mut wait = RETRY_START;
        let mut delivered = false;
        for attempt in 1..=attempts {
            match send(&app, &url, &event, &body).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(err) => tracing::warn!("webhook {key} attempt {attempt}/{attempts}: {err}"),
            }
            if attempt == attempts {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = app.shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(RETRY_MAX);
        }
        if delivered {
            tracing::info!("webhook {key} delivered to {url}");
        } else {
            tracing::error!(
                "webhook {key} not delivered to {url} after {attempts} attempts: kept in \
                 webhooks/failed/ once every URL is done with it"
            );
        }
        let box_ = outbox.clone();
        let to = url.clone();
        let recorded = tokio::task::spawn_blocking(move || box_.record(&key, &to, delivered)).await;
        let failure = match recorded {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(err) => Some(err.to_string()),
        };
        if let Some(err) = failure {
            tracing::error!(
                "webhook {}: cannot record its delivery to {url} in the outbox ({err}); \
                 after a restart it may be sent to {url} again, with the same key",
                event.idempotency_key
            );
        }
    }
}

/// POSTs `body` (the event) to `url` once.
async fn send(app: &AppState, url: &str, event: &WebhookEvent, body: &[u8]) -> Result<(), String> {
    let url = url.to_string();
    let body = body.to_vec();
    let key = event.idempotency_key.clone();
    let kind = event.event.clone();
    let signature = app
        .config
        .webhook_secret
        .as_deref()
        .map(|secret| signature(secret, &body));
    tokio::task::spawn_blocking(move || {
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
    .map_err(|e| e.to_string())?
}
