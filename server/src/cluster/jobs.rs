//! The processing queue of several servers: a session being processed has a row in `jobs`,
//! held by the server running it under a lease it renews while the pipeline runs. When that
//! server stops (killed, lost, restarted), the lease runs out and the first server to see it
//! takes the job over (`FOR UPDATE SKIP LOCKED`: two servers never take the same one) and
//! processes the session again from its stored frames, as a restart would: the attempts are
//! counted in the session's record, and a session that was started
//! [`MAX_PROCESSING_ATTEMPTS`](crate::session::recovery::MAX_PROCESSING_ATTEMPTS) times without
//! finishing is failed rather than run again.

use tokio_util::sync::CancellationToken;

use super::Cluster;
use crate::store::{SessionStatus, StoreError};
use crate::AppState;

impl Cluster {
    /// Takes the processing of session `id` for this server: adds its job, or takes it over
    /// when it is this server's or its lease ran out. False while another server holds it.
    pub(crate) async fn claim_job(&self, id: &str) -> Result<bool, StoreError> {
        let sql = super::take_lease!("jobs", "session_id");
        self.take(sql, id, id, "cannot take its processing in")
            .await
    }

    /// Renews this server's lease on session `id`'s job; false if it is not this server's
    /// any more (another took it over after a lease ran out).
    async fn renew_job(&self, id: &str) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE jobs SET lease_until = now() + make_interval(secs => $3) \
             WHERE session_id = $1 AND node = $2",
        )
        .bind(id)
        .bind(&self.node)
        .bind(self.lease_secs())
        .execute(&self.pool);
        let renewed = self
            .run(id, "cannot renew its processing in", renewed)
            .await?;
        Ok(renewed.rows_affected() == 1)
    }

    /// Removes session `id`'s job, if it is this server's: the session is processed.
    async fn finish_job(&self, id: &str) -> Result<(), StoreError> {
        let finished = sqlx::query("DELETE FROM jobs WHERE session_id = $1 AND node = $2")
            .bind(id)
            .bind(&self.node)
            .execute(&self.pool);
        self.run(id, "cannot end its processing in", finished)
            .await
            .map(drop)
    }

    /// Takes over the oldest job whose server's lease ran out, if there is one.
    async fn orphaned_job(&self) -> Result<Option<String>, StoreError> {
        let taken = sqlx::query_scalar::<_, String>(
            "UPDATE jobs SET node = $1, lease_until = now() + make_interval(secs => $2) \
             WHERE session_id = (SELECT session_id FROM jobs WHERE lease_until < now() \
             ORDER BY enqueued_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING session_id",
        )
        .bind(&self.node)
        .bind(self.lease_secs())
        .fetch_optional(&self.pool);
        self.run("(all)", "cannot look for processing to take over in", taken)
            .await
    }
}

/// This server's hold on a session's processing, renewed in the background until
/// [`Job::finish`].
#[derive(Debug)]
pub struct Job {
    cluster: Cluster,
    id: String,
    renewing: CancellationToken,
}

impl Job {
    /// Takes the processing of session `id` for this server; `None` while another holds it.
    pub async fn claim(cluster: &Cluster, id: &str) -> Result<Option<Job>, StoreError> {
        if !cluster.claim_job(id).await? {
            return Ok(None);
        }
        let renewing = CancellationToken::new();
        let (stop, renewer, key) = (renewing.clone(), cluster.clone(), id.to_string());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(renewer.heartbeat());
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = stop.cancelled() => return,
                }
                match renewer.renew_job(&key).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(
                            "Session {key}: another server took its processing over (this one \
                             did not renew its lease in time); its results are the ones stored last"
                        );
                        return;
                    }
                    Err(err) => tracing::warn!("{err}"),
                }
            }
        });
        Ok(Some(Job {
            cluster: cluster.clone(),
            id: id.to_string(),
            renewing,
        }))
    }

    /// The session is processed (complete or failed): the job ends.
    pub async fn finish(self) {
        self.renewing.cancel();
        if let Err(err) = self.cluster.finish_job(&self.id).await {
            // Its lease runs out; whoever takes it over finds the session processed.
            tracing::warn!("{err}");
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        self.renewing.cancel();
    }
}

/// Every heartbeat until the server shuts down: takes over the processing of sessions whose
/// server stopped, one at a time.
pub async fn take_over(app: AppState, cluster: Cluster) {
    let mut every = tokio::time::interval(cluster.heartbeat());
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = app.shutdown.cancelled() => return,
        }
        let id = match cluster.orphaned_job().await {
            Ok(Some(id)) => id,
            Ok(None) => continue,
            Err(err) => {
                tracing::warn!("{err}");
                continue;
            }
        };
        let meta = match app.store.load_meta(&id).await {
            Ok(meta) => meta,
            Err(err) => {
                tracing::error!("Session {id}: cannot take its processing over: {err}");
                continue;
            }
        };
        if meta.status != SessionStatus::Processing {
            // Its server stopped after recording the outcome, before removing the job.
            if let Err(err) = cluster.finish_job(&id).await {
                tracing::warn!("{err}");
            }
            continue;
        }
        tracing::info!(
            "Session {id}: the server processing it stopped (its lease ran out); taking it over"
        );
        crate::session::recovery::recover(&app, meta).await;
    }
}
