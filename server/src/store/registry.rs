//! The registry of several servers sharing one store (`--registry postgres://...`): every
//! session's record in a PostgreSQL table instead of each server's memory and `session.json`,
//! and the lease of the server receiving its upload.
//!
//! [`RegistryStore`] wraps the store of the frames and results (the object store the servers
//! share): records are read from the registry, written to it first and then copied to the
//! inner store's `session.json` (so that a registry can be rebuilt from the store, see
//! [`Registry::import`]); everything else is passed through.
//!
//! The lease: a server opens a session's frames for writing (or repairs them) only once it
//! holds the session's lease, which it takes when no other server holds one that is still
//! valid. Each durable batch renews it and moves the acknowledged count by compare-and-set
//! (from the count this writer last saw, under its own lease), so that two servers can never
//! both append to one session: a writer whose lease was taken over fails its next batch
//! before storing it. While another server's lease is valid, this one does not save the
//! session's record either. Dropping the writer lets go of the lease.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use referee_protocol::FrameHeader;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json;

use super::{
    Bridge, FrameSink, FrameSource, Recovered, ResultFile, SessionMeta, SessionStore, StoreError,
};

/// The registry's tables, created or brought up to date at start (`server/migrations/`).
static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!();

/// The one rule of who may write a session's row: no server holds a valid lease on it but
/// the node bound as `$node` (SQL, for a `WHERE`).
macro_rules! writable_by {
    ($node:literal) => {
        concat!(
            "(lease_node IS NULL OR lease_node = ",
            $node,
            " OR lease_until < now())"
        )
    };
}

/// Connections to the registry's database each server keeps at most.
const POOL_SIZE: u32 = 16;

/// A connection to the registry, with this server's name in it.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: PgPool,
    bridge: Bridge,
    /// This server, as other servers see it in a lease (`HOST/PID`, `HOST/PID.2` for a
    /// second server in one process).
    node: String,
    /// How long a lease lasts unless renewed.
    lease: Duration,
}

/// Who holds a session's lease now, if anyone does.
#[derive(Debug, sqlx::FromRow)]
struct Holder {
    lease_node: Option<String>,
    secs_left: Option<f64>,
}

impl Registry {
    /// Connects to the database at `url` and brings its tables up to date. Requests run on
    /// `runtime`, each answering within `timeout`.
    pub fn connect(
        url: &str,
        runtime: tokio::runtime::Handle,
        timeout: Duration,
        lease: Duration,
    ) -> Result<Self, StoreError> {
        let bad = |detail: String| StoreError::BadRegistry {
            detail: format!("{detail}: check the address and that the database exists"),
        };
        let bridge = Bridge::new(runtime, timeout);
        let options = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(timeout);
        let url = url.to_string();
        let pool = bridge
            .run(async move {
                let pool = options.connect(&url).await?;
                MIGRATIONS.run(&pool).await.map_err(sqlx::Error::from)?;
                Ok::<_, sqlx::Error>(pool)
            })
            .map_err(|e| bad(e.to_string()))?;
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        // Several servers in one process (tests) are several nodes too.
        static IN_PROCESS: AtomicU32 = AtomicU32::new(0);
        let mut node = format!("{host}/{}", std::process::id());
        match IN_PROCESS.fetch_add(1, Ordering::Relaxed) {
            0 => {}
            n => node.push_str(&format!(".{}", n + 1)),
        }
        Ok(Self {
            pool,
            bridge,
            node,
            lease,
        })
    }

    /// This server's name in the leases it holds.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The registry's database, for what else the servers share (`crate::cluster`).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How long a lease lasts unless renewed (`--lease-secs`).
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Runs one query for session `id`.
    fn run<T: Send + 'static>(
        &self,
        id: &str,
        what: &'static str,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.bridge.run(query).map_err(|source| StoreError::Remote {
            id: id.to_string(),
            what,
            key: "in the registry".into(),
            source: Box::new(source),
        })
    }

    /// Takes session `id`'s lease for a new frame writer, with `frames` acknowledged, unless
    /// another server holds a valid one. Returns the lease's number.
    fn take_lease(&self, id: &str, frames: u64) -> Result<i64, StoreError> {
        let lease_id: i64 = rand::rng().random();
        let (pool, key, node) = (self.pool.clone(), id.to_string(), self.node.clone());
        let (secs, frames) = (self.lease.as_secs_f64(), to_i64(frames));
        let taken = self.run(id, "cannot take the lease of", async move {
            sqlx::query(concat!(
                "UPDATE sessions SET lease_node = $2, lease_id = $3, \
                 lease_until = now() + make_interval(secs => $4), acked_frames = $5, \
                 updated_at = now() WHERE id = $1 AND ",
                writable_by!("$2")
            ))
            .bind(key)
            .bind(node)
            .bind(lease_id)
            .bind(secs)
            .bind(frames)
            .execute(&pool)
            .await
        })?;
        if taken.rows_affected() == 1 {
            return Ok(lease_id);
        }
        Err(self.refusal(id))
    }

    /// Why a write to session `id` was refused: it does not exist, or another server holds
    /// its lease.
    fn refusal(&self, id: &str) -> StoreError {
        let (pool, key) = (self.pool.clone(), id.to_string());
        let holder = self.run(id, "cannot read the lease of", async move {
            sqlx::query_as::<_, Holder>(
                "SELECT lease_node, \
                 EXTRACT(EPOCH FROM lease_until - now())::float8 AS secs_left \
                 FROM sessions WHERE id = $1",
            )
            .bind(key)
            .fetch_optional(&pool)
            .await
        });
        match holder {
            Err(err) => err,
            Ok(None) => StoreError::NotFound(id.to_string()),
            Ok(Some(holder)) => StoreError::Leased {
                id: id.to_string(),
                node: holder.lease_node.unwrap_or_default(),
                secs: holder.secs_left.unwrap_or(0.0).max(0.0).ceil() as u64,
            },
        }
    }

    /// Moves the acknowledged count of session `id` from `from` to `to` and renews the
    /// lease, if `lease_id` is still the session's lease and the count is still `from`.
    fn advance(&self, id: &str, lease_id: i64, from: u64, to: u64) -> Result<(), StoreError> {
        let (pool, key) = (self.pool.clone(), id.to_string());
        let secs = self.lease.as_secs_f64();
        let (from, to) = (to_i64(from), to_i64(to));
        let moved = self.run(id, "cannot renew the lease of", async move {
            sqlx::query(
                "UPDATE sessions SET acked_frames = $4, \
                 lease_until = now() + make_interval(secs => $5), updated_at = now() \
                 WHERE id = $1 AND lease_id = $2 AND acked_frames = $3",
            )
            .bind(key)
            .bind(lease_id)
            .bind(from)
            .bind(to)
            .bind(secs)
            .execute(&pool)
            .await
        })?;
        if moved.rows_affected() == 1 {
            Ok(())
        } else {
            Err(StoreError::LeaseLost(id.to_string()))
        }
    }

    /// Lets go of lease `lease_id` of session `id`, if it is still the session's.
    fn release(&self, id: &str, lease_id: i64) -> Result<(), StoreError> {
        let (pool, key) = (self.pool.clone(), id.to_string());
        self.run(id, "cannot let go of the lease of", async move {
            sqlx::query(
                "UPDATE sessions SET lease_node = NULL, lease_id = NULL, lease_until = NULL \
                 WHERE id = $1 AND lease_id = $2",
            )
            .bind(key)
            .bind(lease_id)
            .execute(&pool)
            .await
        })
        .map(drop)
    }

    /// Copies into an empty registry the records of the sessions `store` holds (a single
    /// server's store joining a cluster, or a registry lost and made again). Returns how many.
    pub fn import(&self, store: &dyn SessionStore) -> Result<usize, StoreError> {
        let pool = self.pool.clone();
        let empty = self.run("(all)", "cannot count the sessions of", async move {
            sqlx::query_scalar::<_, bool>("SELECT NOT EXISTS (SELECT 1 FROM sessions)")
                .fetch_one(&pool)
                .await
        })?;
        if !empty {
            return Ok(0);
        }
        let all = store.list()?;
        for meta in &all {
            self.insert(meta)?;
        }
        Ok(all.len())
    }

    /// Removes session `id`'s row.
    fn remove(&self, id: &str) -> Result<(), StoreError> {
        let (pool, key) = (self.pool.clone(), id.to_string());
        self.run(id, "cannot remove", async move {
            sqlx::query("DELETE FROM sessions WHERE id = $1")
                .bind(key)
                .execute(&pool)
                .await
        })
        .map(drop)
    }

    /// Adds session `meta`'s record; false if the id exists.
    fn insert(&self, meta: &SessionMeta) -> Result<bool, StoreError> {
        let (pool, record) = (self.pool.clone(), meta.clone());
        let inserted = self.run(&meta.id, "cannot add", async move {
            sqlx::query(
                "INSERT INTO sessions (id, record, acked_frames) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(record.id.clone())
            .bind(Json(record.clone()))
            .bind(to_i64(record.frames_stored))
            .execute(&pool)
            .await
        })?;
        Ok(inserted.rows_affected() == 1)
    }
}

fn to_i64(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// A [`SessionStore`] whose records live in the registry (see the module's documentation).
pub struct RegistryStore {
    registry: Arc<Registry>,
    inner: Arc<dyn SessionStore>,
}

impl RegistryStore {
    pub fn new(registry: Arc<Registry>, inner: Arc<dyn SessionStore>) -> Self {
        Self { registry, inner }
    }

    fn corrupt(id: &str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            id: id.to_string(),
            path: PathBuf::from("the registry's record"),
            detail: detail.to_string(),
        }
    }
}

impl SessionStore for RegistryStore {
    fn create(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        if !self.registry.insert(meta)? {
            return Err(StoreError::Exists(meta.id.clone()));
        }
        if let Err(err) = self.inner.create(meta) {
            // The id is free again for a retry; the store's error is the one that matters.
            let _ = self.registry.remove(&meta.id);
            return Err(err);
        }
        Ok(())
    }

    fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        let (pool, record) = (self.registry.pool.clone(), meta.clone());
        let node = self.registry.node.clone();
        let saved = self.registry.run(&meta.id, "cannot save", async move {
            sqlx::query(concat!(
                "UPDATE sessions SET record = $2, updated_at = now() WHERE id = $1 AND ",
                writable_by!("$3")
            ))
            .bind(record.id.clone())
            .bind(Json(record))
            .bind(node)
            .execute(&pool)
            .await
        })?;
        if saved.rows_affected() == 0 {
            return Err(self.registry.refusal(&meta.id));
        }
        self.inner.save_meta(meta)
    }

    fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
        let (pool, key) = (self.registry.pool.clone(), id.to_string());
        let record = self.registry.run(id, "cannot read", async move {
            sqlx::query_scalar::<_, Json<serde_json::Value>>(
                "SELECT record FROM sessions WHERE id = $1",
            )
            .bind(key)
            .fetch_optional(&pool)
            .await
        })?;
        let Some(Json(record)) = record else {
            return Err(StoreError::NotFound(id.to_string()));
        };
        serde_json::from_value(record).map_err(|e| Self::corrupt(id, e))
    }

    fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
        let pool = self.registry.pool.clone();
        let rows = self.registry.run("(all)", "cannot list", async move {
            sqlx::query_as::<_, (String, Json<serde_json::Value>)>(
                "SELECT id, record FROM sessions",
            )
            .fetch_all(&pool)
            .await
        })?;
        let mut all = Vec::with_capacity(rows.len());
        for (id, Json(record)) in rows {
            match serde_json::from_value::<SessionMeta>(record) {
                Ok(meta) => all.push(meta),
                Err(err) => tracing::warn!("{}", Self::corrupt(&id, err)),
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError> {
        let lease_id = self.registry.take_lease(id, frames)?;
        let guard = Lease {
            registry: self.registry.clone(),
            id: id.to_string(),
            lease_id,
        };
        let inner = self.inner.frame_sink(id, frames)?;
        Ok(Box::new(LeasedSink {
            inner,
            lease: guard,
            acked: frames,
            appended: 0,
        }))
    }

    fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError> {
        // Repairing writes: only under the lease, which no writer of another server holds.
        let acked = self.load_meta(id)?.frames_stored;
        let _lease = Lease {
            registry: self.registry.clone(),
            id: id.to_string(),
            lease_id: self.registry.take_lease(id, acked)?,
        };
        self.inner.recover_frames(id)
    }

    fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError> {
        self.inner.frame_source(id)
    }

    fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError> {
        self.inner.put_signal(id, text)
    }

    fn signal(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.inner.signal(id)
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        self.inner.delete(id)?;
        self.registry.remove(id)
    }

    fn put_result_file(&self, id: &str, name: &str, from: &Path) -> Result<(), StoreError> {
        self.inner.put_result_file(id, name, from)
    }

    fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.put_result(id, name, bytes)
    }

    fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        self.inner.scratch_dir(id)
    }

    fn remove_scratch(&self, id: &str) -> Result<(), StoreError> {
        self.inner.remove_scratch(id)
    }

    fn location(&self, id: &str) -> String {
        self.inner.location(id)
    }

    fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
        self.inner.open_result(id, name)
    }

    fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.inner.list_results(id)
    }
}

/// A lease this server holds, let go of when dropped.
struct Lease {
    registry: Arc<Registry>,
    id: String,
    lease_id: i64,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Err(err) = self.registry.release(&self.id, self.lease_id) {
            // It expires by itself.
            tracing::warn!("{err}");
        }
    }
}

/// A frame writer under a lease: each batch is checked against the lease before it is
/// stored, and counted in the registry once it is.
struct LeasedSink {
    inner: Box<dyn FrameSink>,
    lease: Lease,
    /// Frames acknowledged, as the registry has them.
    acked: u64,
    /// Frames appended since.
    appended: u64,
}

impl FrameSink for LeasedSink {
    fn append(&mut self, header: &FrameHeader, message: &Bytes) -> Result<(), StoreError> {
        self.inner.append(header, message)?;
        self.appended += 1;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        let (registry, id, lease_id) = (&self.lease.registry, &self.lease.id, self.lease.lease_id);
        if self.appended == 0 {
            return self.inner.sync();
        }
        // Still ours, for a whole lease from now: long enough to store the batch.
        registry.advance(id, lease_id, self.acked, self.acked)?;
        self.inner.sync()?;
        let to = self.acked + self.appended;
        registry.advance(id, lease_id, self.acked, to)?;
        self.acked = to;
        self.appended = 0;
        Ok(())
    }
}
