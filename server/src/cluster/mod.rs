//! Several servers on one registry (`--registry postgres://...`): what they share besides the
//! sessions' records (those are in [`crate::store::registry`]), all through the registry's
//! database, so that a server can stop at any moment and another goes on:
//! - [`jobs`]: the processing queue; a session whose server stopped while processing it is
//!   finished by another.
//! - [`relay`]: every session event of every server, for the event streams of all of them
//!   (PostgreSQL's LISTEN/NOTIFY).
//! - [`Cluster::lead`]: tasks one server of all runs at a time (the sweeper).
//! - [`webhooks`]: the webhook events as one queue: each delivered once per URL, by the
//!   server that claimed it or, when that one stopped, by another.
//!
//! Without a registry there is no [`Cluster`] and a server does all of this by itself.

pub mod jobs;
pub mod relay;
pub mod webhooks;

use std::future::Future;
use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::store::{Failed, Registry, StoreError};

/// The one rule of a row held by one server under a lease (`node`, `lease_until`) in `$table`,
/// keyed by `$key`: it is added for this server (`$2`, for `$3` seconds), or taken when it
/// is this server's already or its lease ran out (SQL, binding `$1` the key).
macro_rules! take_lease {
    ($table:literal, $key:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " (",
            $key,
            ", node, lease_until) ",
            "VALUES ($1, $2, now() + make_interval(secs => $3)) ",
            "ON CONFLICT (",
            $key,
            ") DO UPDATE SET node = $2, lease_until = EXCLUDED.lease_until ",
            "WHERE ",
            $table,
            ".node = $2 OR ",
            $table,
            ".lease_until < now()"
        )
    };
}
pub(crate) use take_lease;

/// This server's handle on what the servers of one registry share.
#[derive(Debug, Clone)]
pub struct Cluster {
    pool: PgPool,
    /// This server, as the others see it (`HOST/PID`).
    node: String,
    /// How long a job's or a task's lease lasts unless renewed (`--lease-secs`).
    lease: Duration,
    /// How long one request to the database may take (`--store-timeout-secs`).
    timeout: Duration,
}

impl Cluster {
    /// The cluster of the servers on `registry`.
    pub fn of(registry: &Registry, timeout: Duration) -> Self {
        Self {
            pool: registry.pool().clone(),
            node: registry.node().to_string(),
            lease: registry.lease(),
            timeout,
        }
    }

    /// This server's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How long a lease lasts unless renewed.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// How often a lease is renewed (and an expired one looked for): a quarter of it, so
    /// that a slow round trip or two do not lose it.
    pub fn heartbeat(&self) -> Duration {
        (self.lease / 4).max(Duration::from_millis(500))
    }

    fn lease_secs(&self) -> f64 {
        self.lease.as_secs_f64()
    }

    /// Runs one query about `id` ("(all)" for none), within the deadline.
    async fn run<T>(
        &self,
        id: &str,
        what: &'static str,
        query: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let failed = match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(err)) => Failed::Database(err),
            Err(_) => Failed::Deadline(self.timeout),
        };
        Err(StoreError::Remote {
            id: id.to_string(),
            what,
            key: "the registry".into(),
            source: Box::new(failed),
        })
    }

    /// Whether this server runs `task` (e.g. "sweeper") now: it does when no other server
    /// holds the task's lease, which it then takes or renews for one more lease.
    pub async fn lead(&self, task: &str) -> Result<bool, StoreError> {
        let sql = take_lease!("leaders", "task");
        self.take(sql, task, "(all)", "cannot take the lead in")
            .await
    }

    /// Runs `sql` (a [`take_lease!`]) for row `key`: whether this server holds it now.
    async fn take(
        &self,
        sql: &'static str,
        key: &str,
        id: &str,
        what: &'static str,
    ) -> Result<bool, StoreError> {
        let taken = sqlx::query(sql)
            .bind(key)
            .bind(&self.node)
            .bind(self.lease_secs())
            .execute(&self.pool);
        Ok(self.run(id, what, taken).await?.rows_affected() == 1)
    }
}
