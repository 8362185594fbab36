//! referee-server: receives recorded video sessions over WebSocket, stores every frame on disk
//! as it arrives, rebuilds the video, lines the signal events up with the frames and reports
//! progress and results back.
//!
//! # Layout
//! - [`config`]: flags, environment variables and the TOML file.
//! - [`connections`] accepts HTTP connections (deadlines, caps through [`slots`]);
//!   [`open_files`] raises the open-file limit at start.
//! - [`ingest`]: the WebSocket endpoint; one task per connection drives one session.
//! - [`writer`]: a session's frame writer (a blocking thread; durable ACK batches, a byte
//!   budget).
//! - [`store`]: the storage interface and its local-disk implementation;
//!   [`session_index`] keeps every session's metadata in memory; [`resave`] saves a state
//!   the disk refused once it takes it.
//! - [`live`]: the sessions being received or processed right now; [`reserve`]: sessions
//!   created ahead of their upload; [`session_id`]: ids and resume tokens.
//! - [`processing`] starts [`pipeline`]: processing after upload (video reconstruction,
//!   analysis).
//! - [`recovery`]: sessions brought back after a stop; [`cleanup`]: abandon and expire.
//! - [`auth`], [`limits`], [`frame_check`], [`frame_size`]: bearer tokens and origins;
//!   per-client and disk limits; a frame's JPEG header and its pixels.
//! - [`api`]: the HTTP API, its errors in [`api_error`]; [`dashboard`]: the web dashboard at
//!   `/` (`server/web/`); [`ops`]: `/metrics` from [`metrics`].
//! - [`results_api`]: results over HTTP (video with byte ranges, reports, thumbnails, frames),
//!   and deleting sessions; [`byte_range`] reads `Range` headers.
//! - [`events`]: the event bus, feeding [`watch`] (SSE and the live view), [`webhooks`] and
//!   [`metrics`].

pub mod api;
pub mod api_error;
pub mod auth;
pub mod byte_range;
pub mod cleanup;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod events;
pub mod frame_check;
pub mod frame_size;
pub mod ingest;
pub mod limits;
pub mod live;
pub mod metrics;
pub mod open_files;
pub mod ops;
pub mod pipeline;
pub mod processing;
pub mod recovery;
pub mod resave;
pub mod reserve;
pub mod results_api;
pub mod session_id;
pub mod session_index;
pub mod slots;
pub mod store;
pub mod watch;
pub mod webhooks;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::delete;
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
    /// The bearer tokens and what each may do.
    pub tokens: Arc<auth::Tokens>,
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
}

impl AppState {
    /// State over the local data directory named in `config`.
    pub fn new(config: Config) -> Result<Self, StartError> {
        let store = LocalStore::open(&config.data_dir)?;
        Self::with_store(config, Arc::new(store))
    }

    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Result<Self, StartError> {
        let token = config.resolve_token().map_err(StartError::Token)?;
        let store: Arc<dyn SessionStore> = Arc::new(session_index::IndexedStore::load(store)?);
        Ok(Self {
            connections: connections::slots(&config),
            watchers: slots::AddressSlots::new(config.max_watchers, config.max_watchers_per_client),
            processing: Arc::new(Semaphore::new(usize::from(config.processing_workers))),
            tokens: Arc::new(auth::Tokens {
                ingest: token,
                watch: config.watch_token.clone(),
                admin: config.admin_token.clone(),
                protect_health: config.protect_health,
                protect_metrics: config.protect_metrics,
            }),
            config: Arc::new(config),
            store,
            live: Arc::new(LiveSessions::default()),
            clients: ClientCounts::default(),
            reservations: Arc::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            events: events::EventBus::default(),
            metrics: Arc::new(metrics::Metrics::default()),
            recovering: Arc::new(recovery::Pending::default()),
        })
    }
}

/// The HTTP and WebSocket routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app.js", get(dashboard::script))
        .route("/player.js", get(dashboard::player))
        .route("/style.css", get(dashboard::style))
        .route("/player.css", get(dashboard::player_style))
        .route("/favicon.svg", get(dashboard::favicon))
        .route("/health", get(api::health))
        .route(referee_protocol::STREAM_PATH, get(stream))
        .route(
            "/api/sessions",
            get(api::list_sessions).post(reserve::create),
        )
        .route("/api/sessions/{id}", get(api::get_session))
        .route("/api/sessions/{id}", delete(results_api::delete_session))
        .route("/api/sessions/{id}/video", get(results_api::video))
        .route("/api/sessions/{id}/video.mp4", get(results_api::video_mp4))
        .route("/api/sessions/{id}/video.avi", get(results_api::video_avi))
        .route(
            "/api/sessions/{id}/report.json",
            get(results_api::report_json),
        )
        .route(
            "/api/sessions/{id}/report.html",
            get(results_api::report_html),
        )
        .route(
            "/api/sessions/{id}/thumbnails/{name}",
            get(results_api::thumbnail),
        )
        .route("/api/sessions/{id}/frames", get(results_api::frame_times))
        .route("/api/sessions/{id}/frames/{file}", get(results_api::frame))
        .route("/api/sessions/{id}/events", get(watch::session_events))
        .route("/api/sessions/{id}/live.mjpeg", get(watch::live_mjpeg))
        .route("/api/events", get(watch::all_events))
        .route("/metrics", get(ops::metrics))
        .fallback(api_error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ))
        .layer(axum::middleware::from_fn(api_error::json_errors))
        .with_state(state)
}

async fn stream(
    ws: WebSocketUpgrade,
    State(app): State<AppState>,
    ConnectInfo(remote): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
) -> Response {
    if let Err(refused) = auth::check_origin(&app, &headers) {
        tracing::warn!("Refused a WebSocket from {remote}: {}", refused.message);
        return axum::response::IntoResponse::into_response(refused);
    }
    let limit = app.config.max_message_bytes();
    let tasks = app.tasks.clone();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| tasks.track_future(ingest::handle_socket(socket, app, remote)))
}

/// The TLS configuration of `--tls-cert` and `--tls-key`.
async fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    // One crypto provider for the process (ring); a second install is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot use the TLS certificate {} and key {}: {e}",
                    cert.display(),
                    key.display()
                ),
            )
        })
}

/// Recovers the sessions a previous run left unfinished (in the background) and serves on
/// `listener` until `shutdown` completes. On shutdown it stops accepting, tells every
/// connected client the server is going away (they resume later), flushes every session, and
/// returns within `shutdown_timeout_secs`.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    reserve::load(&state).await;
    // Recovery runs in the background: /health and new sessions are served at once, a resume
    // waits for its session. The sweeper starts once every session is recovered.
    let recovering = recovery::start(&state);
    let sweeper = state.clone();
    tokio::spawn(async move {
        let _ = recovering.await;
        cleanup::run(sweeper).await;
    });
    webhooks::start(&state).await;
    let token = state.shutdown.clone();
    let tasks = state.tasks.clone();
    let grace = Duration::from_secs(state.config.shutdown_timeout_secs);
    let tls = match (&state.config.tls_cert, &state.config.tls_key) {
        (Some(cert), Some(key)) => Some(connections::tls_acceptor(
            &tls_config(cert, key).await?.get_inner(),
        )),
        _ => None,
    };
    open_files::raise(state.config.max_connections);
    let caps = Arc::clone(&state.connections);
    let settings = connections::Settings::of(&state.config, tls);
    let metrics = Arc::clone(&state.metrics);
    let router = app(state);
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
