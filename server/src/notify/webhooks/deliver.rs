//! Sending webhook events: one sender per URL, each with its own queue, so that a URL that
//! fails holds up only its own later events, and a URL that answered is never sent the same
//! event again.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::outbox::{Delivery, Entry, Outbox};
use super::{signature, WebhookEvent};
use crate::cluster::Cluster;
use crate::metrics::Metrics;
use crate::AppState;

/// First wait before a delivery is tried again; it doubles each attempt, up to the maximum.
const RETRY_START: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The queues of the senders, one per URL.
#[derive(Debug, Clone)]
pub struct Senders {
    queues: Vec<(String, Arc<Queue>)>,
    outbox: Outbox,
    cluster: Option<Cluster>,
    metrics: Arc<Metrics>,
}

/// One URL's events waiting to be sent, at most `--webhook-queue-max`: when it is full, the
/// oldest is set aside (its delivery to this URL recorded as `dropped`, so that the outbox
/// file ends in `failed/`), with a log line and `referee_webhooks_dropped_total`.
#[derive(Debug)]
struct Queue {
    max: usize,
    // std Mutex: pushes and pops under it, never held across an `.await`.
    events: Mutex<VecDeque<WebhookEvent>>,
    added: Notify,
}

impl Queue {
    /// Adds `event`; returns the oldest event if it had to make room.
    fn push(&self, event: WebhookEvent) -> Option<WebhookEvent> {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let dropped = (events.len() >= self.max.max(1))
            .then(|| events.pop_front())
            .flatten();
        events.push_back(event);
        drop(events);
        self.added.notify_one();
        dropped
    }

    async fn pop(&self) -> WebhookEvent {
        loop {
            let added = self.added.notified();
            if let Some(event) = self
                .events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop_front()
            {
                return event;
            }
            added.await;
        }
    }
}

impl Senders {
    /// Starts a sender for each URL of `outbox`.
    pub fn start(app: &AppState, outbox: &Outbox) -> Self {
        let queues = outbox
            .urls()
            .iter()
            .map(|url| {
                let queue = Arc::new(Queue {
                    max: app.settings.webhooks.queue_max,
                    events: Mutex::new(VecDeque::new()),
                    added: Notify::new(),
                });
                tokio::spawn(deliver_to(
                    app.clone(),
                    outbox.clone(),
                    url.clone(),
                    Arc::clone(&queue),
                ));
                (url.clone(), queue)
            })
            .collect();
        Self {
            queues,
            outbox: outbox.clone(),
            cluster: app.cluster.clone(),
            metrics: Arc::clone(&app.metrics),
        }
    }

    /// Queues `entry` for each URL that has not had it yet.
    pub fn dispatch(&self, entry: &Entry) {
        for (url, queue) in &self.queues {
            if entry.pending(std::slice::from_ref(url)).is_empty() {
                continue;
            }
            let Some(dropped) = queue.push(entry.event.clone()) else {
                continue;
            };
            Metrics::add(&self.metrics.webhooks_dropped, 1);
            let key = dropped.idempotency_key;
            tracing::warn!(
                "webhook {key} set aside for {url}: {} events wait for it, the limit \
                 (--webhook-queue-max); the event is kept in webhooks/failed/",
                queue.max
            );
            let (outbox, cluster, url) = (self.outbox.clone(), self.cluster.clone(), url.clone());
            tokio::spawn(async move {
                record(&outbox, cluster.as_ref(), key, url, Delivery::Dropped).await;
            });
        }
    }
}

/// Sends the events queued for `url`, one at a time, in order, retrying each with backoff,
/// and records each outcome in the outbox.
async fn deliver_to(app: AppState, outbox: Outbox, url: String, queue: Arc<Queue>) {
    let attempts = app.settings.webhooks.attempts;
    loop {
        let event = tokio::select! {
            event = queue.pop() => event,
            () = app.shutdown.cancelled() => return,
        };
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
        let outcome = if delivered {
            Delivery::Sent
        } else {
            Delivery::Failed
        };
        record(&outbox, app.cluster.as_ref(), key, url.clone(), outcome).await;
    }
}

/// Records how the delivery of the event `key` to `url` ended, in the outbox and, in a
/// cluster, in the servers' shared queue.
async fn record(
    outbox: &Outbox,
    cluster: Option<&Cluster>,
    key: String,
    url: String,
    outcome: Delivery,
) {
    let (box_, k, u) = (outbox.clone(), key.clone(), url.clone());
    let recorded = tokio::task::spawn_blocking(move || box_.record(&k, &u, outcome))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    let done = recorded.unwrap_or_else(|err| {
        tracing::error!(
            "webhook {key}: cannot record its delivery to {url} in the outbox ({err}); \
             after a restart it may be sent to {url} again, with the same key"
        );
        false
    });
    let Some(cluster) = cluster else { return };
    if let Err(err) = cluster
        .record_webhook(&key, &url, outcome.as_str(), done)
        .await
    {
        tracing::error!(
            "{err}; should this server stop, another may send it to {url} again, with the same key"
        );
    }
}

/// POSTs `body` (the event) to `url` once.
async fn send(app: &AppState, url: &str, event: &WebhookEvent, body: &[u8]) -> Result<(), String> {
    let url = url.to_string();
    let body = body.to_vec();
    let key = event.idempotency_key.clone();
    let kind = event.event.clone();
    let signature = app
        .settings
        .webhooks
        .secret
        .as_ref()
        .map(|secret| signature(secret.expose(), &body));
    tokio::task::spawn_blocking(move || {
        // A redirect is not followed: it would send the signed event where the
        // configuration did not say.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
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
            Ok(response) if response.status().is_redirection() => Err(format!(
                "{url} answered HTTP {} (redirects are not followed: configure the URL it \
                 redirects to)",
                response.status()
            )),
            Ok(response) => Err(format!("{url} answered HTTP {}", response.status())),
            Err(err) => Err(format!("{url}: {err}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str) -> WebhookEvent {
        WebhookEvent {
            idempotency_key: key.into(),
            event: "session.created".into(),
            session_id: key.into(),
            at: time::OffsetDateTime::UNIX_EPOCH,
            session: crate::store::SessionMeta::new(
                key.into(),
                key.into(),
                crate::store::SessionStatus::Created,
            )
            .view(None),
        }
    }

    #[tokio::test]
    async fn a_full_queue_sets_its_oldest_event_aside() {
        let queue = Queue {
            max: 2,
            events: Mutex::new(VecDeque::new()),
            added: Notify::new(),
        };
        assert!(queue.push(event("a")).is_none());
        assert!(queue.push(event("b")).is_none());
        let dropped = queue.push(event("c")).unwrap();
        assert_eq!(dropped.idempotency_key, "a");
        assert_eq!(queue.pop().await.idempotency_key, "b");
        assert_eq!(queue.pop().await.idempotency_key, "c");
    }
}
