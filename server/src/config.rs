//! The server's configuration: command-line flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// referee-server: receives recorded video sessions over WebSocket, stores every frame on
/// disk as it arrives, rebuilds the video and lines the signal events up with the frames.
#[derive(Debug, Clone, Parser)]
#[command(name = "referee-server", version)]
pub struct Config {
    /// Address and port to listen on.
    #[arg(long, env = "REFEREE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory where sessions are stored (created if missing).
    #[arg(long, env = "REFEREE_DATA_DIR", default_value = "./referee-data")]
    pub data_dir: PathBuf,

    /// Frames a client may have sent but not yet seen acknowledged. Bounds the memory each
    /// session can take: about window × the largest frame.
    #[arg(long, env = "REFEREE_WINDOW", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub window: u32,

    /// Largest frame payload accepted, in bytes.
    #[arg(long, env = "REFEREE_MAX_FRAME_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_frame_bytes: u32,

    /// Largest signal file accepted, in bytes.
    #[arg(long, env = "REFEREE_MAX_SIGNAL_BYTES", default_value_t = 1024 * 1024)]
    pub max_signal_bytes: usize,

    /// Seconds a new connection has to send SESSION_START.
    #[arg(long, env = "REFEREE_START_TIMEOUT", default_value_t = 30)]
    pub start_timeout_secs: u64,

    /// Sessions processed at the same time; more wait in line.
    #[arg(long, env = "REFEREE_PROCESSING_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub processing_workers: u16,

    /// Bearer token clients must present to stream (`Authorization: Bearer TOKEN`). Without
    /// a token (here or in --token-file) anyone who reaches the server may stream.
    #[arg(long, env = "REFEREE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// File holding the bearer token (its first line), instead of --token.
    #[arg(long, env = "REFEREE_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// Seconds a dropped session stays resumable before it is abandoned.
    #[arg(long, env = "REFEREE_RESUME_GRACE", default_value_t = 600)]
    pub resume_grace_secs: u64,

    /// Seconds an abandoned session's data is kept before it is deleted.
    #[arg(long, env = "REFEREE_ABANDONED_EXPIRY", default_value_t = 7 * 24 * 3600)]
    pub abandoned_expiry_secs: u64,

    /// Seconds between WebSocket pings; a client silent for three of them is disconnected.
    #[arg(long, env = "REFEREE_HEARTBEAT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,

    /// Seconds a connected session may go without a frame or message before it is detached.
    #[arg(long, env = "REFEREE_IDLE_TIMEOUT", default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Sessions live at once (receiving or processing); more are refused with server_busy.
    #[arg(long, env = "REFEREE_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,

    /// Sessions one client address may stream at once.
    #[arg(long, env = "REFEREE_MAX_SESSIONS_PER_CLIENT", default_value_t = 32)]
    pub max_sessions_per_client: usize,

    /// Largest session, in bytes of frames stored.
    #[arg(long, env = "REFEREE_MAX_SESSION_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_session_bytes: u64,

    /// Free space to keep on the data directory's disk: new sessions are refused below it,
    /// and frames below half of it (existing data is never at risk).
    #[arg(long, env = "REFEREE_MIN_FREE_DISK_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub min_free_disk_bytes: u64,

    /// Seconds to wait on shutdown for connections to flush and close.
    #[arg(long, env = "REFEREE_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// Seconds between sweeps that abandon and expire detached sessions.
    #[arg(long, env = "REFEREE_CLEANUP_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub cleanup_interval_secs: u64,
}

impl Config {
    /// The defaults, with the given data directory and listen address (for tests and
    /// embedding).
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let mut config = Self::parse_from(["referee-server"]);
        config.listen = listen;
        config.data_dir = data_dir;
        config
    }

    /// The bearer token, from --token or --token-file.
    pub fn resolve_token(&self) -> std::io::Result<Option<String>> {
        match (&self.token, &self.token_file) {
            (Some(token), _) => Ok(Some(token.clone())),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("cannot read the token file {}: {e}", path.display()),
                    )
                })?;
                let token = text.lines().next().unwrap_or_default().trim().to_string();
                if token.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "the token file {} is empty: put the token on its first line",
                            path.display()
                        ),
                    ));
                }
                Ok(Some(token))
            }
            (None, None) => Ok(None),
        }
    }

    /// The largest control (text) message accepted: a signal file plus room for its JSON.
    pub fn max_text_bytes(&self) -> usize {
        self.max_signal_bytes + 64 * 1024
    }

    /// The largest WebSocket message read at all; anything larger is refused before it is
    /// buffered.
    pub fn max_message_bytes(&self) -> usize {
        (self.max_frame_bytes as usize + referee_protocol::FRAME_HEADER_LEN)
            .max(self.max_text_bytes())
            + 1024
    }
}
