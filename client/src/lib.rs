//! The referee client: streams a recorded video and its signal file to a referee server.
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`endpoint`]: turns the server address into the WebSocket URL of the ingest endpoint.
//! - [`source`]: reads the video and JPEG-encodes its frames (the only module that links
//!   OpenCV).
//! - [`signal`]: reads and checks the signal file.
//! - [`stream`]: one WebSocket connection.
//! - [`upload`]: the session over one connection or several: frames sent within the
//!   server's window, resumed after a dropped connection.
//! - [`window`]: frames sent and acknowledged, and those kept to send again.
//! - [`saved`]: the state files that let `--resume` continue after a restart.
//! - [`progress`]: the progress bar or lines, and the processing stages.
//! - [`error`]: [`ClientError`], everything that can stop a session.
//!
//! Every input is checked before connecting: a video that cannot be decoded or a signal
//! file with a mistake never opens a session on the server.

pub mod cli;
pub mod endpoint;
pub mod error;
pub mod progress;
pub mod saved;
pub mod signal;
pub mod source;
pub mod stream;
pub mod upload;
pub mod window;

use std::path::Path;
use std::time::Duration;

use referee_protocol::state::sanitize_name;
use referee_protocol::{ControlMessage, FrameEncoding, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

pub use crate::cli::Args;
pub use crate::error::ClientError;
use crate::progress::Progress;
use crate::signal::SignalFile;
use crate::source::{EncodedFrame, VideoSource};
use crate::upload::{Link, Upload};

/// How many encoded frames may wait between the encoder thread and the sender. Bounds memory:
/// when the sender waits for ACKs, the encoder blocks once this many JPEGs are queued.
const FRAME_QUEUE: usize = 16;

/// What the server reported when it finished a session (its COMPLETE message).
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub session_id: String,
    pub frames_stored: u64,
    /// Seconds of video stored.
    pub duration_s: f64,
    /// Signal events lined up with frames.
    pub events: u64,
    /// The session's directory on the server.
    pub directory: String,
    /// The result files in that directory.
    pub files: Vec<String>,
}

/// Streams one session: checks the inputs, connects, sends every frame, the session end and
/// the signal, then follows the server's processing until it completes.
pub async fn run(args: Args) -> Result<Summary, ClientError> {
    let url = endpoint::stream_url(&args.server)?;
    let source = VideoSource::open(&args.video, args.quality)?;
    let info = source.info().clone();
    let duration_us = info
        .frame_count
        .map(|frames| (frames as f64 * 1e6 / info.fps).round() as u64);
    let signal = args
        .signal
        .as_deref()
        .map(|path| SignalFile::read(path, duration_us))
        .transpose()?;

    let start = ControlMessage::SessionStart {
        protocol_version: PROTOCOL_VERSION,
        name: args.name.unwrap_or_else(|| default_name(&args.video)),
        source: file_name(&args.video),
        fps: info.fps,
        width: info.width,
        height: info.height,
        frame_count: info.frame_count,
        encoding: FrameEncoding::Jpeg,
        quality: Some(args.quality),
    };
    let link = Link {
        url,
        token: args.token.clone(),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        retries: args.retries,
    };
    let upload = match &args.resume {
        Some(id) => Upload::resume_saved(link, id, signal).await?,
        None => Upload::start(link, &start, signal).await?,
    };
    let mut progress = Progress::new(info.frame_count, args.verbose);
    let mut frames = spawn_encoder(source);
    upload.run(&mut frames, &mut progress).await
}

/// Sets up logging to stderr: debug with `--verbose`, otherwise the level in
/// `REFEREE_LOG_LEVEL` or `RUST_LOG` (default `info`). OpenCV's own messages only show with
/// `--verbose`.
pub fn init_logging(verbose: bool) {
    source::quiet_opencv(verbose);
    let directives = if verbose {
        "info,referee_client=debug".to_string()
    } else {
        std::env::var("REFEREE_LOG_LEVEL")
            .or_else(|_| std::env::var("RUST_LOG"))
            .unwrap_or_else(|_| "info".into())
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    // Fails only when a subscriber is already set (e.g. by a test): keep that one.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Decodes and encodes the video on its own thread, because OpenCV blocks. The thread stops
/// at the end of the video, after an error, or when the sender hangs up.
fn spawn_encoder(mut source: VideoSource) -> mpsc::Receiver<Result<EncodedFrame, ClientError>> {
    let (sender, receiver) = mpsc::channel(FRAME_QUEUE);
    std::thread::spawn(move || {
        while let Some(next) = source.next_frame().transpose() {
            let failed = next.is_err();
            if sender.blocking_send(next).is_err() || failed {
                break;
            }
        }
    });
    receiver
}

/// The session name when `--name` is not given: the video's file name without extension.
fn default_name(video: &Path) -> String {
    let stem = video.file_stem().unwrap_or_default();
    sanitize_name(&stem.to_string_lossy())
}

fn file_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default();
    name.to_string_lossy().into_owned()
}
