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
