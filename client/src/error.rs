//! Everything that can stop the client, each message saying what happened and what to do.

use std::io;
use std::path::PathBuf;

use referee_protocol::signal::SignalError;
use referee_protocol::{ErrorCode, FrameHeaderError};
use thiserror::Error;
use url::Url;

/// Why a streaming session failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The server address is not a URL the client can use.
    #[error(
        "invalid server URL {url:?}: {reason}: write it as http://HOST:PORT or ws://HOST:PORT"
    )]
    InvalidUrl { url: String, reason: String },

    /// The command line asks for something that cannot be done (e.g. two videos without
    /// camera names).
    #[error("{0}")]
    Usage(String),

    /// A camera of a bout did not finish (the others went on; each one's error was shown).
    #[error("camera {camera} of the bout did not finish: {why}{}", resume.as_deref().unwrap_or(""))]
    CameraFailed {
        camera: String,
        why: String,
        /// How to resume the bout, when it started.
        resume: Option<String>,
    },

    /// The video file is missing or cannot be read.
    #[error("cannot read video {}", path.display())]
    VideoUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The video file is empty (0 bytes), e.g. a copy that did not finish.
    #[error("video {} is empty (0 bytes): copy the recording again", path.display())]
    VideoEmpty { path: PathBuf },

    /// OpenCV cannot open or decode the video.
    #[error("cannot decode video {}: {reason}: is it a video format OpenCV can read?", path.display())]
    VideoFormat { path: PathBuf, reason: String },

    /// The video opens but yields no frame.
    #[error("video {} has no frame OpenCV can decode", path.display())]
    NoFrames { path: PathBuf },

    /// OpenCV failed while decoding or JPEG-encoding a frame.
    #[error("video {}, frame {index}: {reason}", path.display())]
    FrameFailed {
        path: PathBuf,
        index: u64,
        reason: String,
    },

    /// The signal file is missing or cannot be read as UTF-8 text.
    #[error("cannot read signal file {}", path.display())]
    SignalUnreadable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The signal file has a mistake; the parser's message names the line.
    #[error("signal file {}", path.display())]
    SignalInvalid {
        path: PathBuf,
        #[source]
        source: SignalError,
    },

    /// No WebSocket connection could be opened.
    #[error("cannot connect to {url}: {reason}")]
    Connect { url: Url, reason: String },

    /// No session opened within `--connect-timeout`; `hint` says which step did not finish.
    #[error("no SESSION_STARTED from {url} within {secs} s: {hint}")]
    HandshakeTimeout {
        url: Url,
        secs: u64,
        hint: &'static str,
    },

    /// The server reported a fatal error.
    #[error("server error {code}: {message}")]
    Server { code: ErrorCode, message: String },

    /// A frame is larger than the server accepts.
    #[error("frame {index} is {size} bytes as JPEG, more than the server's limit of {limit} bytes: lower --quality")]
    FrameTooLarge { index: u64, size: usize, limit: u32 },

    /// The connection ended before the session opened.
    #[error("connection to {url} lost before the session started: {reason}")]
    Disconnected { url: Url, reason: String },

    /// The connection ended in the middle of a session and could not be resumed.
    #[error("connection lost ({reason}) after the server stored {acked} of {sent} frames of session {session_id}; resuming failed {attempts} times: {resume}")]
    ConnectionLost {
        session_id: String,
        acked: u64,
        sent: u64,
        attempts: u32,
        reason: String,
        /// How to resume it, and until when (see [`crate::resume_hint`]).
        resume: String,
    },

    /// The user stopped the upload (Ctrl-C); the session stays resumable.
    #[error("interrupted: {resume}")]
    Interrupted { resume: String },

    /// `--resume` with files other than those the session was started with.
    #[error("cannot resume session {session_id}: {why}: give --video and --signal the files it was started with")]
    ResumeMismatch { session_id: String, why: String },

    /// `--resume` without `--signal`, and the signal file the session was started with is
    /// not where it was.
    #[error("cannot resume session {session_id}: it was started with the signal file {}, which cannot be read now ({reason}): give it with --signal", path.display())]
    ResumeSignalMissing {
        session_id: String,
        path: PathBuf,
        reason: String,
    },

    /// The signal file is larger than the server accepts.
    #[error("signal file {file} is {size} bytes, more than the {limit} bytes the server accepts: no frame was sent; shorten the file and run again with --resume {session_id} --signal FILE (or ask the operator to raise --max-signal-bytes)")]
    SignalTooLarge {
        file: String,
        size: u64,
        limit: u64,
        session_id: String,
    },

    /// The frames have more pixels than the server accepts.
    #[error("the frames have {pixels} pixels, more than the {limit} the server accepts: run again with a smaller --resize")]
    FrameTooManyPixels { pixels: u64, limit: u64 },

    /// The `--output` folder cannot be made or written to.
    #[error("cannot use --output {}: {reason}", path.display())]
    OutputUnusable { path: PathBuf, reason: String },

    /// The CA file given with --ca cannot be used.
    #[error("cannot use the CA file {}: {reason}: give a PEM file of certificates", path.display())]
    TlsSetup { path: PathBuf, reason: String },

    /// The saved state of a session (for --resume) cannot be read or written.
    #[error("resume state {}: {reason}", path.display())]
    ResumeState { path: PathBuf, reason: String },

    /// The server sent something this client does not expect at this point.
    #[error("protocol error: {0}: are the client and the server the same version?")]
    Protocol(String),

    /// A frame message could not be built.
    #[error(transparent)]
    FrameHeader(#[from] FrameHeaderError),

    /// A thread that makes the frames could not be started.
    #[error("cannot start the {what} thread: {source}")]
    Thread {
        what: String,
        #[source]
        source: io::Error,
    },

    /// A request to the server's HTTP API failed before an answer came.
    #[error("cannot get {url}: {reason}")]
    Http { url: String, reason: String },

    /// The server's HTTP API answered with an error.
    #[error("{url} answered {status}: {message}")]
    HttpStatus {
        url: String,
        status: u16,
        message: String,
    },

    /// The server has no session of that id.
    #[error(
        "no session {id:?} on {server}: list the sessions with `referee-client list {server}`"
    )]
    SessionNotFound { id: String, server: String },

    /// The session is not complete, so it has no results to download.
    #[error("session {id} is {status}, not complete: it has no results to download{reason}")]
    NotComplete {
        id: String,
        status: String,
        reason: String,
    },

    /// `watch` stopped before the session was complete: it failed, was abandoned or
    /// deleted, never appeared, or its event stream kept breaking.
    #[error("session {id} {reason}")]
    Watch { id: String, reason: String },

    /// `box`: the scoring box's port, its capture or the signal file being written.
    #[error(transparent)]
    ScoringBox(#[from] crate::scoring_box::ScoringBoxError),

    /// A downloaded file could not be written.
    #[error("cannot write {}: check that the --output folder is writable", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl ClientError {
    /// Whether a new connection may get past this error: the connection broke, or the server
    /// went away for a while.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Connect { .. }
            | ClientError::HandshakeTimeout { .. }
            | ClientError::Disconnected { .. } => true,
            ClientError::Server { code, .. } => matches!(
                code,
                ErrorCode::ServerShuttingDown | ErrorCode::Timeout | ErrorCode::ServerBusy
            ),
            _ => false,
        }
    }
}
