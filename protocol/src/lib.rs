//! The wire protocol of referee, shared by the server and the client. It does no I/O.
//!
//! # Layout
//! - [`api`]: the HTTP and SSE contract: the session view, its status, the events.
//! - [`message`]: control messages, sent as JSON text WebSocket messages.
//! - [`frame`]: the binary video-frame message: a fixed 32-byte little-endian header and the
//!   encoded image.
//! - [`state`]: the session state machine: which client message is legal in which state.
//! - [`error_code`]: the stable, machine-readable error codes and their WebSocket close codes.
//! - [`signal`]: the signal file format (timestamped events) and its parser.
//! - [`favero`]: the serial frames of a Favero FA-01 scoring box, decoded and turned into
//!   signal-file events (no I/O).
//! - [`scoring`]: the scoring meaning of signal events: the bout's score timeline, its flags
//!   and the touches to review.
//! - [`jpeg`]: a JPEG image's size, from its header alone (both sides check frames with it).
//! - [`digest`]: the digest of a session's frames that `SESSION_END` carries.
//! - [`text`]: the strings a client sends: their limits, session names, ids and slugs, and
//!   escaping text from a peer for a log line or a terminal.
//!
//! `docs/protocol.md` at the repository root describes the same protocol for people writing a
//! client in another language.

pub mod api;
pub mod digest;
pub mod error_code;
pub mod favero;
pub mod frame;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod jpeg;
pub mod message;
pub mod scoring;
pub mod signal;
pub mod state;
pub mod text;

pub use error_code::ErrorCode;
pub use frame::{FrameHeader, FrameHeaderError, FRAME_HEADER_LEN};
pub use message::{BoutCamera, ControlMessage, FrameEncoding, ResumedState, Stage, UploadIdentity};
pub use state::{SessionState, Violation};

/// The protocol version of a session of one camera, which every client and server speaks, and
/// the version of the frame header (unchanged in version 2). A peer announcing a version this
/// crate does not speak is refused with [`ErrorCode::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u16 = 1;

/// The protocol version that adds bouts recorded by several cameras (`SESSION_START`'s
/// `bout`): the newest this crate speaks. A server of version 2 speaks version 1 too, so a
/// client sends 2 only when it needs a bout, and learns from `unsupported_version` that the
/// server is older.
pub const BOUT_PROTOCOL_VERSION: u16 = 2;

/// Cameras of one bout, at most (a server may allow fewer: `--max-cameras`).
pub const MAX_CAMERAS: usize = 16;

/// The WebSocket path of the ingest endpoint.
pub const STREAM_PATH: &str = "/stream";
