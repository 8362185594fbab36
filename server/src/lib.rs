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
//! - [`pipeline`]: processing after upload (video reconstruction, analysis).
//! - [`api`]: the HTTP API.

pub mod api;
pub mod config;
pub mod frame_check;
pub mod ingest;
pub mod live;
pub mod pipeline;
pub mod session_id;
pub mod store;
pub mod writer;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use config::Config;
use live::LiveSessions;
use store::{LocalStore, SessionStore, StoreError};

/// What every request and connection shares: a cheap handle.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn SessionStore>,
    pub live: Arc<LiveSessions>,
    /// One permit per processing worker.
    pub processing: Arc<Semaphore>,
}

impl AppState {
    /// State over the local data directory named in `config`.
    pub fn new(config: Config) -> Result<Self, StoreError> {
        let store = LocalStore::open(&config.data_dir)?;
        Ok(Self::with_store(config, Arc::new(store)))
    }

    pub fn with_store(config: Config, store: Arc<dyn SessionStore>) -> Self {
        Self {
            processing: Arc::new(Semaphore::new(usize::from(config.processing_workers))),
            config: Arc::new(config),
            store,
            live: Arc::new(LiveSessions::default()),
        }
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
) -> Response {
    let limit = app.config.max_message_bytes();
    ws.max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| ingest::handle_socket(socket, app, remote))
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
