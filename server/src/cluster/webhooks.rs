//! The webhook events of several servers as one queue (table `webhook_claims`): the first
//! server to claim an event's idempotency key delivers it, under a lease it renews while any
//! URL still waits for the event; each URL's outcome is written into the row as it is known.
//! When that server stops before every URL has an outcome, its lease runs out and the first
//! server to see it takes the event over (`FOR UPDATE SKIP LOCKED`) and sends it to the URLs
//! that have not had it, with the same key.
//!
//! The row's `entry` is the event and its delivery per URL as a server's outbox file holds it
//! ([`crate::notify::webhooks`]); this module only moves it in and out of the database.

use serde::{de::DeserializeOwned, Serialize};
use sqlx::types::Json;

use super::Cluster;
use crate::store::StoreError;

/// Events taken over at once, at most.
const TAKE_AT_ONCE: i64 = 64;

impl Cluster {
    /// Whether this server delivers the event `key` (its outbox entry `entry`): true for the
    /// first server that asks, which then holds it under a lease; false for every other.
    pub async fn claim_webhook(
        &self,
        key: &str,
        entry: &impl Serialize,
    ) -> Result<bool, StoreError> {
        let claimed = sqlx::query(
            "INSERT INTO webhook_claims (event_key, node, entry, lease_until) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (event_key) DO NOTHING",
        )
        .bind(key)
        .bind(&self.node)
        .bind(Json(entry))
        .bind(self.lease_secs())
        .execute(&self.pool);
        let claimed = self
            .run(key, "cannot claim its webhook event in", claimed)
            .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Takes the event `key` back for this server at its start (it is in this server's
    /// outbox, `entry`, not done: its earlier run stopped), whoever holds it now: the entry to
    /// send, the database's (which knows the URLs another server delivered it to since), or
    /// `None` when the event is done.
    pub async fn retake_webhook<T: Serialize + DeserializeOwned + Send + Unpin + 'static>(
        &self,
        key: &str,
        entry: &T,
    ) -> Result<Option<T>, StoreError> {
        let taken = sqlx::query_scalar::<_, Json<T>>(
            "INSERT INTO webhook_claims (event_key, node, entry, lease_until) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) \
             ON CONFLICT (event_key) DO UPDATE SET node = $2, lease_until = EXCLUDED.lease_until, \
             entry = coalesce(webhook_claims.entry, EXCLUDED.entry) \
             WHERE webhook_claims.done_at IS NULL RETURNING entry",
        )
        .bind(key)
        .bind(&self.node)
        .bind(Json(entry))
        .bind(self.lease_secs())
        .fetch_optional(&self.pool);
        let taken = self
            .run(key, "cannot take back its webhook event in", taken)
            .await?;
        Ok(taken.map(|Json(entry)| entry))
    }

    /// Records `outcome` (its JSON string: "sent", "failed", "dropped") of the delivery of
    /// the event `key` to `url`; `done` when every URL has one now.
    pub async fn record_webhook(
        &self,
        key: &str,
        url: &str,
        outcome: &str,
        done: bool,
    ) -> Result<(), StoreError> {
        // One URL's outcome at a time (jsonb_set), so that two URLs' records arriving out of
        // order both stay.
        let recorded = sqlx::query(
            "UPDATE webhook_claims SET \
             entry = jsonb_set(entry, ARRAY['deliveries', $3], to_jsonb($4::text)), \
             done_at = CASE WHEN $5 THEN now() ELSE done_at END \
             WHERE event_key = $1 AND node = $2",
        )
        .bind(key)
        .bind(&self.node)
        .bind(url)
        .bind(outcome)
        .bind(done)
        .execute(&self.pool);
        self.run(
            key,
            "cannot record the delivery of its webhook event in",
            recorded,
        )
        .await
        .map(drop)
    }

    /// Renews this server's lease on the events `keys` (those it is delivering).
    pub async fn renew_webhooks(&self, keys: &[String]) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let renewed = sqlx::query(
            "UPDATE webhook_claims SET lease_until = now() + make_interval(secs => $3) \
             WHERE node = $1 AND event_key = ANY($2) AND done_at IS NULL",
        )
        .bind(&self.node)
        .bind(keys)
        .bind(self.lease_secs())
        .execute(&self.pool);
        self.run(
            "(all)",
            "cannot renew this server's webhook events in",
            renewed,
        )
        .await
        .map(drop)
    }

    /// Takes over the oldest events whose server's lease ran out before they were done: their
    /// entries, to send to the URLs that have not had them (in no particular order).
    pub async fn orphaned_webhooks<T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
    ) -> Result<Vec<T>, StoreError> {
        let taken = sqlx::query_scalar::<_, Json<T>>(
            "UPDATE webhook_claims SET node = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE event_key IN (SELECT event_key FROM webhook_claims \
             WHERE done_at IS NULL AND lease_until < now() AND entry IS NOT NULL \
             ORDER BY claimed_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING entry",
        )
        .bind(&self.node)
        .bind(self.lease_secs())
        .bind(TAKE_AT_ONCE)
        .fetch_all(&self.pool);
        let taken = self
            .run(
                "(all)",
                "cannot look for webhook events to take over in",
                taken,
            )
            .await?;
        Ok(taken.into_iter().map(|Json(entry)| entry).collect())
    }
}
