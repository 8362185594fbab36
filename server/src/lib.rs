//! referee-server: receives recorded video sessions over WebSocket, stores every frame on disk
//! as it arrives, rebuilds the video, lines the signal events up with the frames and reports
//! progress and results back.
//!
//! # Layout
//! One folder a concept, in the order a session meets them:
//! - [`http`]: accepting connections, the router (every route with its scope), the API,
//!   results, the dashboard and `/metrics`.
//! - [`ingest`]: the WebSocket endpoint; one task per connection drives one session (its
//!   start, resume, frames and end, the frame checks and the session's frame writer).
//! - [`store`]: the storage interface, its local-disk and object-store implementations, the
//!   registry of several servers (PostgreSQL), and [`store::Store`], the store for async code.
//! - [`session`]: live sessions, sessions created ahead, processing after an upload,
//!   recovery after a stop, the sweeper.
//! - [`pipeline`]: the processing stages (video reconstruction, analysis).
//! - [`notify`]: the event bus and who follows it (Server-Sent Events, webhooks).
//! - [`cluster`]: what the servers of one registry share: the processing queue, the event
//!   relay, the tasks one of them runs, who delivers each webhook.
//! - beside them: [`config`] (flags, environment, the TOML file) and [`settings`] (what
//!   they make, checked, in sections), [`limits`] (per client, the free-disk floor),
//!   [`frame_size`] (a frame's pixels), [`metrics`].
//!
//! This file holds what they share ([`AppState`]) and [`serve`], which starts them.

pub mod cluster;
pub mod config;
pub mod frame_size;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod session;
pub mod settings;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use cluster::Cluster;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
use http::{connections, open_files, slots};
use limits::ClientCounts;
use notify::{events, webhooks};
use session::live::LiveSessions;
use session::{cleanup, recovery, reserve, session_index};
pub use settings::Settings;
use store::{LocalStore, ObjectSessions, Registry, RegistryStore, SessionStore, Store, StoreError};

/// Why the server cannot start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an object store (--store) needs the server's runtime")]
    NoRuntime,
}

/// What every request and connection shares: a cheap handle.
#[derive(Clone)]
pub struct AppState {
    /// The settings, by section (the tokens among them, held there only).
    pub settings: Arc<Settings>,
    /// The sessions (async; `store.blocking()` for blocking threads).
    pub store: Store,
    pub live: Arc<LiveSessions>,
    /// One permit per processing worker.
    pub processing: Arc<Semaphore>,
    /// Sessions attached per client address.
    pub clients: ClientCounts,
    /// Sessions created ahead, waiting for their upload.
    pub reservations: Arc<reserve::Reservations>,
    /// Cancelled when the server shuts down: every connection says goodbye and flushes.
    pub shutdown: CancellationToken,
    /// Every WebSocket connection task, waited for on shutdown (axum's graceful shutdown
    /// does not track upgraded connections).
    pub tasks: TaskTracker,
    /// What happens to sessions, for watchers, webhooks and metrics.
    pub events: events::EventBus,
    pub metrics: Arc<metrics::Metrics>,
    /// The sessions still to recover after a start (recovery runs in the background).
    pub recovering: Arc<recovery::Pending>,
    /// Connections open, in total and per client address (`connections`).
    pub connections: Arc<slots::AddressSlots>,
    /// Live watchers (event streams, live views), in total and per client address.
    pub watchers: Arc<slots::AddressSlots>,
    /// What this server shares with the others on its registry, if it has one.
    pub cluster: Option<Cluster>,
    /// Held while a camera joins a bout, from the check that its camera is free until its
    /// session exists (`session::bout`).
    pub bout_joins: Arc<tokio::sync::Mutex<()>>,
}

impl AppState {
    /// State over the store named in `settings`: the local data directory, or the object
    /// store of `--store` (whose requests run on the current runtime), with the sessions'
    /// records in the registry of `--registry` if one is named.
    pub fn new(settings: Settings) -> Result<Self, StartError> {
        let runtime = || tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime);
        let storage = &settings.storage;
        let store: Arc<dyn SessionStore> = match &storage.objects {
            None => Arc::new(LocalStore::open(&storage.data_dir)?),
            Some(objects) => Arc::new(ObjectSessions::open_url(
                &objects.url,
                &storage.data_dir,
                runtime()?,
                objects.timeout,
                objects.caches,
            )?),
        };
        let Some(wanted) = &storage.registry else {
            return Self::with_store(settings, store);
        };
        let registry = Arc::new(Registry::connect(
            wanted.url.expose(),
            runtime()?,
            wanted.timeout,
            wanted.lease,
        )?);
        let imported = registry.import(store.as_ref())?;
        if imported > 0 {
            tracing::info!("{imported} sessions of the store added to the empty registry");
        }
        tracing::info!("registry connected; this server is {}", registry.node());
        let cluster = Cluster::of(&registry, wanted.timeout);
        // The registry is every server's index: no copy of it in memory.
        let store = Arc::new(RegistryStore::new(registry, store));
        Self::over(settings, store, Some(cluster))
    }

    /// State over `store`, its records indexed in memory (this server is their only writer).
    pub fn with_store(
        settings: Settings,
        store: Arc<dyn SessionStore>,
    ) -> Result<Self, StartError> {
        let indexed = Arc::new(session_index::IndexedStore::load(store)?);
        Self::over(settings, indexed, None)
    }

    fn over(
        settings: Settings,
        store: Arc<dyn SessionStore>,
        cluster: Option<Cluster>,
    ) -> Result<Self, StartError> {
        let store = Store::new(store);
        let limits = &settings.limits;
        Ok(Self {
            connections: connections::slots(limits),
            watchers: slots::AddressSlots::new(limits.max_watchers, limits.max_watchers_per_client),
            processing: Arc::new(Semaphore::new(settings.processing.workers)),
            settings: Arc::new(settings),
            store,
            live: Arc::new(LiveSessions::default()),
            clients: ClientCounts::default(),
            reservations: Arc::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            events: events::EventBus::default(),
            metrics: Arc::new(metrics::Metrics::default()),
            recovering: Arc::new(recovery::Pending::default()),
            cluster,
            bout_joins: Arc::default(),
        })
    }
}

/// Recovers the sessions a previous run left unfinished (in the background) and serves on
/// `listener` until `shutdown` completes. On shutdown it stops accepting, tells every
/// connected client the server is going away (they resume later), flushes every session, and
/// returns within the shutdown timeout.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    reserve::load(&state).await;
    if let Some(cluster) = &state.cluster {
        cluster::relay::start(&state, cluster).await;
    }
    // Recovery runs in the background: /health and new sessions are served at once, a resume
    // waits for its session. The sweeper, and in a cluster the takeover of other servers'
    // processing, start once every session is recovered.
    let recovering = recovery::start(&state);
    let sweeper = state.clone();
    tokio::spawn(async move {
        let _ = recovering.await;
        if let Some(cluster) = sweeper.cluster.clone() {
            tokio::spawn(cluster::jobs::take_over(sweeper.clone(), cluster));
        }
        cleanup::run(sweeper).await;
    });
    webhooks::start(&state).await;
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let grace = state.settings.timeouts.shutdown;
    let tls = match &state.settings.tls {
        Some(tls) => Some(connections::tls_acceptor(
            &http::tls_config(&tls.cert, &tls.key).await?.get_inner(),
        )),
        None => None,
    };
    open_files::raise(state.settings.limits.max_connections);
    let caps = Arc::clone(&state.connections);
    let settings = connections::Settings::of(&state.settings.timeouts, tls);
    let metrics = Arc::clone(&state.metrics);
    let router = http::app(state);
    // One deadline for the whole stop, fixed when it starts.
    let deadline = Arc::new(std::sync::OnceLock::new());
    let stop = {
        let (token, deadline) = (token.clone(), Arc::clone(&deadline));
        async move {
            shutdown.await;
            let _ = deadline.set(tokio::time::Instant::now() + grace);
            token.cancel();
        }
    };
    tokio::spawn(stop);
    // Open HTTP responses are waited for until the deadline, then dropped.
    let out_of_time = {
        let deadline = Arc::clone(&deadline);
        async move {
            let end = deadline.get().copied();
            tokio::time::sleep_until(end.unwrap_or_else(|| tokio::time::Instant::now() + grace))
                .await;
        }
    };
    connections::serve(
        listener,
        router,
        caps,
        settings,
        metrics,
        token.clone(),
        out_of_time,
    )
    .await;
    tasks.close();
    let end = deadline
        .get()
        .copied()
        .unwrap_or_else(|| tokio::time::Instant::now() + grace);
    if tokio::time::timeout_at(end, tasks.wait()).await.is_err() {
        tracing::warn!(
            "{} connections did not close within {} s",
            tasks.len(),
            grace.as_secs()
        );
    }
    Ok(())
}
