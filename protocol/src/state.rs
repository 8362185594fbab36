//! The session state machine, as the server sees it: which client message is legal in which
//! state, and what each one moves the session to.
//!
//! ```text
//!  AwaitingStart --SESSION_START--> Receiving --frame n (n = next)--> Receiving
//!  Receiving --SESSION_END(signal_follows=true)--> AwaitingSignal --SIGNAL--> Processing
//!  Receiving --SESSION_END(signal_follows=false)--> Processing
//!  Processing --(server finishes)--> Complete
//!  AwaitingStart --SESSION_RESUME--> (the state of the stored session, set by the server)
//! ```
//! Anything else is a [`Violation`], which names the state and the message.

use thiserror::Error;

use crate::text::{self, check_len, check_name};
use crate::{
    BoutCamera, ControlMessage, ErrorCode, BOUT_PROTOCOL_VERSION, MAX_CAMERAS, PROTOCOL_VERSION,
};

/// The largest frame width or height accepted in `SESSION_START`.
pub const MAX_DIMENSION: u32 = 16_384;
/// The frame rates accepted in `SESSION_START`, in frames per second. Below 1 fps a session's
/// duration (frames / fps) and everything measured in seconds (the report's timeline, signal
/// times) grow without bound for a handful of frames.
pub const MIN_FPS: f64 = 1.0;
pub const MAX_FPS: f64 = 1000.0;

/// Where a session is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Connected; waiting for `SESSION_START`.
    AwaitingStart,
    /// Frames are arriving; `next_frame` is the index the next one must carry.
    Receiving { next_frame: u64 },
    /// `SESSION_END` arrived and announced a signal; waiting for `SIGNAL`.
    AwaitingSignal { frames: u64 },
    /// The server is processing the session; the client only listens.
    Processing { frames: u64 },
    /// Processing finished; nothing more is accepted.
    Complete { frames: u64 },
}

/// What arrived from the client.
#[derive(Debug, Clone, Copy)]
pub enum Incoming<'a> {
    Control(&'a ControlMessage),
    Frame { index: u64 },
}

/// A message that breaks the protocol in the current state.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum Violation {
    #[error("frame {index} arrived before SESSION_START: send SESSION_START first")]
    FrameBeforeStart { index: u64 },
    #[error("SESSION_START or SESSION_RESUME arrived in state {state}: this connection already has a session")]
    AlreadyStarted { state: &'static str },
    #[error("frame {got} arrived in state {state}, but the next frame must be {expected}: send frames in order, starting at 0")]
    FrameOutOfOrder {
        state: &'static str,
        expected: u64,
        got: u64,
    },
    #[error("{message} (a text message) arrived in state {state}, where a binary frame or SESSION_END is expected")]
    UnexpectedText {
        state: &'static str,
        message: &'static str,
    },
    #[error("binary frame {index} arrived in state {state}, where {expected} is expected")]
    UnexpectedBinary {
        state: &'static str,
        index: u64,
        expected: &'static str,
    },
    #[error("{message} is not allowed in state {state}{hint}")]
    NotAllowed {
        state: &'static str,
        message: &'static str,
        hint: &'static str,
    },
    #[error("SESSION_END says {sent} frames were sent, but the server received {received}: {}", missing(*sent, *received))]
    FrameCountMismatch { sent: u64, received: u64 },
    #[error("{message} asks for protocol version {got}; this server speaks versions {PROTOCOL_VERSION} and {BOUT_PROTOCOL_VERSION}: use a client of one of them")]
    UnsupportedVersion { message: &'static str, got: u16 },
    #[error("SESSION_START is invalid: {0}")]
    InvalidStart(String),
    #[error("{message} is invalid: {why}")]
    InvalidField { message: &'static str, why: String },
}

/// Which frames a SESSION_END counting `sent` leaves unaccounted for, `received` being in.
fn missing(sent: u64, received: u64) -> String {
    let frames = |first: u64, last: u64| {
        if first == last {
            format!("frame {first} is")
        } else {
            format!("frames {first} to {last} are")
        }
    };
    if sent > received {
        format!(
            "{} missing: resume the session and send them again",
            frames(received, sent - 1)
        )
    } else {
        format!(
            "{} stored but not counted as sent",
            frames(sent, received - 1)
        )
    }
}

impl Violation {
    /// The error code an `ERROR` message reports this violation with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Violation::FrameBeforeStart { .. } => ErrorCode::FrameBeforeStart,
            Violation::AlreadyStarted { .. } => ErrorCode::AlreadyStarted,
            Violation::FrameOutOfOrder { .. } => ErrorCode::FrameOutOfOrder,
            Violation::UnexpectedText { .. } => ErrorCode::UnexpectedText,
            Violation::UnexpectedBinary { .. } => ErrorCode::UnexpectedBinary,
            Violation::NotAllowed { .. } => ErrorCode::UnexpectedMessage,
            Violation::FrameCountMismatch { .. } => ErrorCode::FrameCountMismatch,
            Violation::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            Violation::InvalidStart(_) => ErrorCode::InvalidSessionStart,
            Violation::InvalidField { .. } => ErrorCode::MalformedMessage,
        }
    }
}

impl SessionState {
    /// The state's name as logs, errors and the HTTP API show it.
    pub fn name(&self) -> &'static str {
        match self {
            SessionState::AwaitingStart => "awaiting_start",
            SessionState::Receiving { .. } => "receiving",
            SessionState::AwaitingSignal { .. } => "awaiting_signal",
            SessionState::Processing { .. } => "processing",
            SessionState::Complete { .. } => "complete",
        }
    }

    /// Applies a client message: on success the state has moved on; on a violation it is
    /// unchanged.
    pub fn accept(&mut self, incoming: Incoming<'_>) -> Result<(), Violation> {
        use ControlMessage as M;
        use SessionState as S;
        let state = self.name();
        let next = match (*self, incoming) {
            (S::AwaitingStart, Incoming::Control(start @ M::SessionStart { .. })) => {
                validate_start(start)?;
                S::Receiving { next_frame: 0 }
            }
            (S::AwaitingStart, Incoming::Control(resume @ M::SessionResume { .. })) => {
                validate_resume(resume)?;
                // The server moves the state to where the stored session is.
                S::AwaitingStart
            }
            (S::AwaitingStart, Incoming::Frame { index }) => {
                return Err(Violation::FrameBeforeStart { index })
            }
            (_, Incoming::Control(M::SessionStart { .. } | M::SessionResume { .. })) => {
                return Err(Violation::AlreadyStarted { state })
            }
            (S::Receiving { next_frame }, Incoming::Frame { index }) => {
                if index != next_frame {
                    return Err(Violation::FrameOutOfOrder {
                        state,
                        expected: next_frame,
                        got: index,
                    });
                }
                S::Receiving {
                    next_frame: next_frame + 1,
                }
            }
            (
                S::Receiving { next_frame },
                Incoming::Control(M::SessionEnd {
                    frames_sent,
                    signal_follows,
                    digest,
                }),
            ) => {
                if *frames_sent != next_frame {
                    return Err(Violation::FrameCountMismatch {
                        sent: *frames_sent,
                        received: next_frame,
                    });
                }
                digest
                    .check_form(*frames_sent)
                    .map_err(|why| Violation::InvalidField {
                        message: "SESSION_END",
                        why,
                    })?;

                if *signal_follows {
                    S::AwaitingSignal { frames: next_frame }
                } else {
                    S::Processing { frames: next_frame }
                }
            }
            (S::Receiving { .. }, Incoming::Control(msg)) if is_client_message(msg) => {
                return Err(Violation::UnexpectedText {
                    state,
                    message: msg.type_name(),
                })
            }
            (S::AwaitingSignal { frames }, Incoming::Control(M::Signal { file_name, .. })) => {
                check_len("file_name", file_name, text::MAX_FILE_NAME_BYTES).map_err(|why| {
                    Violation::InvalidField {
                        message: "SIGNAL",
                        why,
                    }
                })?;
                S::Processing { frames }
            }
            (S::AwaitingSignal { .. }, Incoming::Frame { index }) => {
                return Err(Violation::UnexpectedBinary {
                    state,
                    index,
                    expected: "SIGNAL",
                })
            }
            (S::Processing { .. } | S::Complete { .. }, Incoming::Frame { index }) => {
                return Err(Violation::UnexpectedBinary {
                    state,
                    index,
                    expected: "no message",
                })
            }
            (_, Incoming::Control(msg)) => {
                let hint = if is_client_message(msg) {
                    match self {
                        S::AwaitingStart => ": send SESSION_START first",
                        S::AwaitingSignal { .. } => ": send SIGNAL",
                        _ => ": the session no longer takes messages",
                    }
                } else {
                    ": only the server sends it"
                };
                return Err(Violation::NotAllowed {
                    state,
                    message: msg.type_name(),
                    hint,
                });
            }
        };
        *self = next;
        Ok(())
    }

    /// The server finished processing.
    pub fn finish_processing(&mut self) {
        if let SessionState::Processing { frames } = *self {
            *self = SessionState::Complete { frames };
        }
    }
}

/// Messages a client may send (in some state). `ERROR` is handled by the server before the state
/// machine: a client's `ERROR` ends the session in any state.
fn is_client_message(msg: &ControlMessage) -> bool {
    matches!(
        msg,
        ControlMessage::SessionStart { .. }
            | ControlMessage::SessionResume { .. }
            | ControlMessage::SessionEnd { .. }
            | ControlMessage::Signal { .. }
    )
}

/// Checks the values of a `SESSION_START`.
fn validate_start(msg: &ControlMessage) -> Result<(), Violation> {
    let ControlMessage::SessionStart {
        protocol_version,
        name,
        source,
        fps,
        width,
        height,
        quality,
        session_id,
        bout,
        ..
    } = msg
    else {
        return Ok(());
    };
    check_version("SESSION_START", *protocol_version)?;
    if let Some(bout) = bout {
        if *protocol_version < BOUT_PROTOCOL_VERSION {
            return Err(Violation::InvalidStart(format!(
                "bout needs protocol_version {BOUT_PROTOCOL_VERSION}, not {protocol_version}"
            )));
        }
        check_bout(bout).map_err(Violation::InvalidStart)?;
    }
    let invalid = |why: String| Err(Violation::InvalidStart(why));
    check_name(name).map_err(Violation::InvalidStart)?;
    check_len("source", source, text::MAX_SOURCE_BYTES).map_err(Violation::InvalidStart)?;
    if let Some(id) = session_id {
        if !text::valid_id(id) {
            return invalid(format!(
                "session_id {} is not a session id (1 to {} letters, digits, '-' or '_')",
                text::quoted(id),
                text::MAX_ID_LEN
            ));
        }
    }
    if !(fps.is_finite() && (MIN_FPS..=MAX_FPS).contains(fps)) {
        return invalid(format!("fps {fps} must be {MIN_FPS} to {MAX_FPS}"));
    }
    for (what, v) in [("width", width), ("height", height)] {
        if *v == 0 || *v > MAX_DIMENSION {
            return invalid(format!("{what} {v} must be 1 to {MAX_DIMENSION} pixels"));
        }
    }
    if let Some(q) = quality {
        if !(1..=100).contains(q) {
            return invalid(format!("quality {q} must be 1 to 100"));
        }
    }
    Ok(())
}

/// The most a camera's `offset_s` may be, either way, in seconds.
pub const MAX_OFFSET_S: f64 = 3600.0;

/// Checks the `bout` of a `SESSION_START`: a camera name, and either the bout to join or the
/// cameras of a new one (this one among them, each once, at most [`MAX_CAMERAS`]).
fn check_bout(bout: &BoutCamera) -> Result<(), String> {
    let camera_rule = format!("1 to {} letters, digits, '-' or '_'", text::MAX_CAMERA_LEN);
    if !text::valid_camera(&bout.camera) {
        return Err(format!(
            "bout.camera {} is not a camera name ({camera_rule})",
            text::quoted(&bout.camera)
        ));
    }
    match (&bout.bout_id, &bout.cameras) {
        (Some(id), None) if text::valid_id(id) => {}
        (Some(id), None) => {
            return Err(format!(
                "bout.bout_id {} is not a bout id (1 to {} letters, digits, '-' or '_')",
                text::quoted(id),
                text::MAX_ID_LEN
            ))
        }
        (Some(_), Some(_)) => {
            return Err(
                "bout.cameras is given when starting a bout, not with the bout_id of one to join"
                    .into(),
            )
        }
        (None, None) => {
            return Err(
                "bout needs either bout_id (to join a bout) or cameras (to start one)".into(),
            )
        }
        (None, Some(cameras)) => {
            if cameras.is_empty() || cameras.len() > MAX_CAMERAS {
                return Err(format!(
                    "bout.cameras has {} cameras: a bout has 1 to {MAX_CAMERAS}",
                    cameras.len()
                ));
            }
            for (i, name) in cameras.iter().enumerate() {
                if !text::valid_camera(name) {
                    return Err(format!(
                        "bout.cameras[{i}] {} is not a camera name ({camera_rule})",
                        text::quoted(name)
                    ));
                }
                if cameras[..i].contains(name) {
                    return Err(format!("bout.cameras names the camera {name} twice"));
                }
            }
            if !cameras.contains(&bout.camera) {
                return Err(format!(
                    "bout.cameras does not name this camera, {}",
                    bout.camera
                ));
            }
        }
    }
    if let Some(offset) = bout.offset_s {
        if !(offset.is_finite() && offset.abs() <= MAX_OFFSET_S) {
            return Err(format!(
                "bout.offset_s {offset} must be -{MAX_OFFSET_S} to {MAX_OFFSET_S} seconds"
            ));
        }
    }
    Ok(())
}

/// Checks the values of a `SESSION_RESUME`: the version first, then the lengths of its
/// strings (whether the session exists and the token is right is the server's to check).
fn validate_resume(msg: &ControlMessage) -> Result<(), Violation> {
    let ControlMessage::SessionResume {
        protocol_version,
        resume_token,
        ..
    } = msg
    else {
        return Ok(());
    };
    check_version("SESSION_RESUME", *protocol_version)?;
    check_len("resume_token", resume_token, text::MAX_TOKEN_LEN).map_err(|why| {
        Violation::InvalidField {
            message: "SESSION_RESUME",
            why,
        }
    })
}

fn check_version(message: &'static str, got: u16) -> Result<(), Violation> {
    if (PROTOCOL_VERSION..=BOUT_PROTOCOL_VERSION).contains(&got) {
        Ok(())
    } else {
        Err(Violation::UnsupportedVersion { message, got })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameEncoding;

    fn start() -> ControlMessage {
        ControlMessage::SessionStart {
            protocol_version: PROTOCOL_VERSION,
            name: "phrase04".into(),
            source: "bout.avi".into(),
            fps: 30.0,
            width: 640,
            height: 480,
            frame_count: None,
            encoding: FrameEncoding::Jpeg,
            quality: Some(90),
            session_id: None,
            upload: None,
            bout: None,
        }
    }

    fn end(frames_sent: u64, signal_follows: bool) -> ControlMessage {
        ControlMessage::SessionEnd {
            frames_sent,
            signal_follows,
            digest: crate::digest::FrameDigest::of((0..frames_sent).map(|_| 0)),
        }
    }

    fn signal() -> ControlMessage {
        ControlMessage::Signal {
            file_name: "s.txt".into(),
            text: String::new(),
        }
    }

    #[test]
    fn a_whole_session_with_signal() {
        let mut s = SessionState::AwaitingStart;
        s.accept(Incoming::Control(&start())).unwrap();
        for index in 0..3 {
            s.accept(Incoming::Frame { index }).unwrap();
        }
        s.accept(Incoming::Control(&end(3, true))).unwrap();
        assert_eq!(s, SessionState::AwaitingSignal { frames: 3 });
        s.accept(Incoming::Control(&signal())).unwrap();
        assert_eq!(s, SessionState::Processing { frames: 3 });
        s.finish_processing();
        assert_eq!(s, SessionState::Complete { frames: 3 });
    }

    #[test]
    fn without_signal_processing_starts_at_session_end() {
        let mut s = SessionState::Receiving { next_frame: 2 };
        s.accept(Incoming::Control(&end(2, false))).unwrap();
        assert_eq!(s, SessionState::Processing { frames: 2 });
    }

    #[test]
    fn illegal_messages_name_state_and_message_and_leave_state_alone() {
        let (start, signal, ack) = (start(), signal(), ControlMessage::Ack { frames_stored: 1 });
        let (end4, end5, end7) = (end(4, true), end(5, true), end(7, true));
        let cases: Vec<(SessionState, Incoming, ErrorCode, &str)> = vec![
            (
                SessionState::AwaitingStart,
                Incoming::Frame { index: 0 },
                ErrorCode::FrameBeforeStart,
                "frame 0 arrived before SESSION_START",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Control(&start),
                ErrorCode::AlreadyStarted,
                "state receiving",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Frame { index: 7 },
                ErrorCode::FrameOutOfOrder,
                "frame 7 arrived in state receiving, but the next frame must be 5",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Frame { index: 4 },
                ErrorCode::FrameOutOfOrder,
                "must be 5",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Control(&signal),
                ErrorCode::UnexpectedText,
                "SIGNAL (a text message) arrived in state receiving",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Control(&end4),
                ErrorCode::FrameCountMismatch,
                "says 4 frames were sent, but the server received 5: frame 4 is stored but not counted as sent",
            ),
            (
                SessionState::Receiving { next_frame: 5 },
                Incoming::Control(&end7),
                ErrorCode::FrameCountMismatch,
                "says 7 frames were sent, but the server received 5: frames 5 to 6 are missing: resume the session",
            ),
            (
                SessionState::AwaitingSignal { frames: 5 },
                Incoming::Frame { index: 5 },
                ErrorCode::UnexpectedBinary,
                "binary frame 5 arrived in state awaiting_signal, where SIGNAL is expected",
            ),
            (
                SessionState::AwaitingSignal { frames: 5 },
                Incoming::Control(&end5),
                ErrorCode::UnexpectedMessage,
                "SESSION_END is not allowed in state awaiting_signal: send SIGNAL",
            ),
            (
                SessionState::AwaitingStart,
                Incoming::Control(&signal),
                ErrorCode::UnexpectedMessage,
                "SIGNAL is not allowed in state awaiting_start: send SESSION_START first",
            ),
            (
                SessionState::AwaitingStart,
                Incoming::Control(&ack),
                ErrorCode::UnexpectedMessage,
                "ACK is not allowed in state awaiting_start: only the server sends it",
            ),
            (
                SessionState::Processing { frames: 5 },
                Incoming::Control(&signal),
                ErrorCode::UnexpectedMessage,
                "state processing",
            ),
            (
                SessionState::Processing { frames: 5 },
                Incoming::Frame { index: 5 },
                ErrorCode::UnexpectedBinary,
                "state processing",
            ),
        ];
        for (state, incoming, code, text) in cases {
            let mut s = state;
            let err = s.accept(incoming).unwrap_err();
            assert_eq!(err.code(), code, "{err}");
            assert!(
                err.to_string().contains(text),
                "{err:?} should contain {text:?}, is: {err}"
            );
            assert_eq!(s, state, "a violation must not move the state");
        }
    }

    #[test]
    fn session_start_values_are_checked() {
        let with = |f: &dyn Fn(&mut ControlMessage)| {
            let mut m = start();
            f(&mut m);
            SessionState::AwaitingStart
                .accept(Incoming::Control(&m))
                .unwrap_err()
        };
        let set = |m: &mut ControlMessage, field: &str| {
            if let ControlMessage::SessionStart {
                protocol_version,
                name,
                fps,
                width,
                quality,
                ..
            } = m
            {
                match field {
                    "version" => *protocol_version = 3,
                    "name" => *name = "line\nbreak".into(),
                    "fps" => *fps = f64::NAN,
                    "width" => *width = 0,
                    _ => *quality = Some(0),
                }
            }
        };
        assert_eq!(
            with(&|m| set(m, "version")).code(),
            ErrorCode::UnsupportedVersion
        );
        for field in ["name", "fps", "width", "quality"] {
            let err = with(&|m| set(m, field));
            assert_eq!(err.code(), ErrorCode::InvalidSessionStart, "{field}");
        }
    }

    #[test]
    fn a_camera_of_a_bout_is_checked_and_needs_version_2() {
        let with = |version: u16, bout: BoutCamera| {
            let mut m = start();
            if let ControlMessage::SessionStart {
                protocol_version,
                bout: b,
                ..
            } = &mut m
            {
                *protocol_version = version;
                *b = Some(bout);
            }
            SessionState::AwaitingStart
                .accept(Incoming::Control(&m))
                .map(drop)
                .map_err(|e| e.to_string())
        };
        let new = |camera: &str, cameras: &[&str]| BoutCamera {
            bout_id: None,
            camera: camera.into(),
            cameras: Some(cameras.iter().map(|c| c.to_string()).collect()),
            offset_s: None,
        };
        let join = |id: &str, camera: &str| BoutCamera {
            bout_id: Some(id.into()),
            camera: camera.into(),
            cameras: None,
            offset_s: Some(0.4),
        };
        assert_eq!(with(2, new("left", &["left", "right"])), Ok(()));
        assert_eq!(with(2, join("20251106_bout_k7m2x", "right")), Ok(()));
        let refused = [
            (
                1,
                new("left", &["left", "right"]),
                "needs protocol_version 2",
            ),
            (
                2,
                new("left", &["right"]),
                "does not name this camera, left",
            ),
            (
                2,
                new("left", &["left", "left"]),
                "names the camera left twice",
            ),
            (2, new("le ft", &["le ft"]), "not a camera name"),
            (2, new("a", &[]), "has 0 cameras"),
            (2, join("../x", "right"), "not a bout id"),
            (
                2,
                BoutCamera {
                    cameras: Some(vec!["right".into()]),
                    ..join("b", "right")
                },
                "not with the bout_id",
            ),
            (
                2,
                BoutCamera {
                    bout_id: None,
                    ..join("b", "right")
                },
                "either bout_id",
            ),
            (
                2,
                BoutCamera {
                    offset_s: Some(f64::INFINITY),
                    ..join("b", "right")
                },
                "offset_s inf must be",
            ),
        ];
        let many: Vec<String> = (0..=MAX_CAMERAS).map(|i| format!("c{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        for (version, bout, why) in
            refused
                .into_iter()
                .chain([(2, new("c0", &many), "a bout has 1 to 16")])
        {
            let err = with(version, bout).unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn a_resume_names_itself_in_a_version_error_and_bounds_its_token() {
        let resume = |version: u16, token: String| ControlMessage::SessionResume {
            protocol_version: version,
            session_id: "s".into(),
            resume_token: token,
            upload: None,
        };
        let err = SessionState::AwaitingStart
            .accept(Incoming::Control(&resume(9, "t".into())))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::UnsupportedVersion);
        assert!(
            err.to_string()
                .starts_with("SESSION_RESUME asks for protocol version 9"),
            "{err}"
        );
        let err = SessionState::AwaitingStart
            .accept(Incoming::Control(&resume(
                PROTOCOL_VERSION,
                "t".repeat(500),
            )))
            .unwrap_err();
        assert_eq!(err.code(), ErrorCode::MalformedMessage);
        assert!(
            err.to_string().contains("resume_token is 500 bytes"),
            "{err}"
        );
    }

    #[test]
    fn fps_has_a_lower_and_an_upper_bound() {
        let with_fps = |value: f64| {
            let mut m = start();
            if let ControlMessage::SessionStart { fps, .. } = &mut m {
                *fps = value;
            }
            SessionState::AwaitingStart.accept(Incoming::Control(&m))
        };
        for ok in [MIN_FPS, 29.97, MAX_FPS] {
            assert!(with_fps(ok).is_ok(), "{ok}");
        }
        for bad in [0.5, 1e-300, 0.0, -30.0, 1000.5, f64::INFINITY] {
            let err = with_fps(bad).unwrap_err();
            assert_eq!(err.code(), ErrorCode::InvalidSessionStart, "{bad}");
            assert!(err.to_string().contains("must be 1 to 1000"), "{err}");
        }
    }
}
