//! referee-server: receives recorded video sessions over WebSocket, stores every frame on disk
//! as it arrives, rebuilds the video, lines the signal events up with the frames and reports
//! progress and results back.
//!
//! # Layout
//! - [`config`]: flags and environment variables.
//! - [`ingest`]: the WebSocket endpoint; one task per connection drives one session.
//! - [`writer`]: a session's frame writer (a blocking thread; durable ACK batches).
//! - [`store`]: the storage interface and its local-disk implementation.
//! - [`live`]: the sessions being received or processed right now.
//! - [`processing`] starts [`pipeline`]: processing after upload (video reconstruction,
//!   analysis).
//! - [`recovery`]: sessions brought back after a stop; [`cleanup`]: abandon and expire.
//! - [`auth`], [`limits`]: bearer tokens; per-client and disk limits.
//! - [`api`]: the HTTP API.

pub mod api;
pub mod auth;
pub mod cleanup;
pub mod config;
pub mod frame_check;
pub mod ingest;
pub mod limits;
pub mod live;
pub mod pipeline;
pub mod processing;
pub mod recovery;
pub mod session_id;
pub mod store;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
use limits::ClientCounts;
use live::LiveSessions;
use store::{LocalStore, SessionStore, StoreError};

/// Why the server cannot start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Token(std::io::Error),
}

/// What every request and connection shares: a cheap handle.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn SessionStore>,
    pub live: Arc<LiveSessions>,
    /// One permit per processing worker.
    pub processing: Arc<Semaphore>,
    /// The bearer token ingest requires, if any.
    pub token: Option<Arc<str>>,
    /// Sessions attached per client address.
    pub clients: ClientCounts,
    /// Cancelled when the server shuts down: every connection says goodbye and flushes.
    pub shutdown: CancellationToken,
    /// Every WebSocket connection task, waited for on shutdown (axum's graceful shutdown
    /// does not track upgraded connections).
    pub tasks: TaskTracker,
}

impl AppState {
    /// State over the local data directory named in `config`.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let store = LocalStore::open(&config.data_dir)?;
        Self::with_store(config, Arc::new(store))
    }

    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Result<Self, StartError> {
        let token = config.resolve_token().map_err(StartError::Token)?;
        Ok(Self {
            processing: Arc::new(Semaphore::new(usize::from(config.processing_workers))),
            token: token.map(Arc::from),
            config: Arc::new(config),
            store,
            live: Arc::new(LiveSessions::default()),
            clients: ClientCounts::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        })
    }
}

/// The HTTP and WebSocket routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/health", get(api::health))
        .route(referee_protocol::STREAM_PATH, get(stream))
        .route("/api/sessions", get(api::list_sessions))
        .route("/api/sessions/{id}", get(api::get_session))
        .with_state(state)
}

async fn stream(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(why) = auth::check_bearer(app.token.as_deref(), &headers) {
        tracing::warn!("Refused a connection from {remote}: {why}");
        return auth::unauthorized(why);
    }
    let limit = app.config.max_message_bytes();
    let tasks = app.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tasks.track_future(ingest::handle_socket(socket, app, remote)))
}

/// Recovers the sessions a previous run left unfinished, then serves on `listener` until
/// `shutdown` completes. On shutdown it stops accepting, tells every connected client the
/// server is going away (they resume later), flushes every session, and returns within
/// `shutdown_timeout_secs`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Err(err) = recovery::recover_sessions(&state).await {
        tracing::error!("cannot recover the sessions of the previous run: {err}");
    }
    tokio::spawn(cleanup::run(state.clone()));
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let grace = Duration::from_secs(state.config.shutdown_timeout_secs);
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        token.cancel();
    })
    .await;
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            "{} connections did not close within {} s",
            tasks.len(),
            grace.as_secs()
        );
    }
    served
}
