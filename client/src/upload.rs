//! One session's upload, from SESSION_START (or SESSION_RESUME) to COMPLETE, surviving
//! dropped connections: when the connection breaks, the upload reconnects with exponential
//! backoff and jitter, resumes the session, learns how many frames the server has, and goes
//! on from there, sending again the unacknowledged frames it kept (never more than the
//! window). The retry budget is per outage: it starts afresh after each successful resume.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::Duration;

use referee_protocol::digest::DigestBuilder;
use referee_protocol::frame::{encode_frame, flags};
use referee_protocol::{ControlMessage, ErrorCode, ResumedState, UploadIdentity, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout_at, Instant};
use url::Url;

use crate::error::ClientError;
use crate::pace::Pacer;
use crate::progress::Progress;
use crate::saved::{self, SavedSession};
use crate::signal::SignalFile;
use crate::source::EncodedFrame;
use crate::stream::{Connection, Ended, NO_ANSWER};
use crate::window::Window;
use crate::Summary;

/// First wait before a reconnection attempt; it doubles each attempt, up to the maximum.
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How to reach the server.
#[derive(Clone)]
pub struct Link {
    pub url: Url,
    pub token: Option<String>,
    /// Limit for connecting and the server's first answer.
    pub connect_timeout: Duration,
    /// Reconnection attempts per outage.
    pub retries: u32,
    /// TLS settings for wss:// (the CAs to trust), when they differ from the default.
    pub tls: Option<tokio_tungstenite::Connector>,
    /// The command that resumes the session, with `SESSION_ID` for its id: printed when the
    /// upload stops before the end.
    pub resume_command: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Frames,
    End,
    Signal,
    Complete,
}

/// A session being uploaded.
pub struct Upload {
    link: Link,
    conn: Option<Connection>,
    session_id: String,
    resume_token: String,
    window: Window,
    max_frame_bytes: u32,
    digest: DigestBuilder,
    /// Frames below this index are already on the server (a `--resume` after a restart):
    /// they are read for the digest but not sent.
    skip_until: u64,
    phase: Phase,
    signal: Option<SignalFile>,
    /// `--max-fps` / `--max-mbps`.
    pacer: Pacer,
    /// What is uploaded, sent again with each resume.
    upload: Option<UploadIdentity>,
    /// Seconds the server keeps the session resumable after a drop, when known.
    resume_grace_s: Option<u64>,
    /// The largest signal file the server accepts, when it says.
    max_signal_bytes: Option<u64>,
    /// The most pixels a frame may have, when the server says.
    max_frame_pixels: Option<u64>,
    /// The frame size sent.
    frame_pixels: u64,
    /// When the connection was last lost, while it is being resumed.
    lost_at: Option<std::time::SystemTime>,
    /// The bout the session's camera is part of, when it started one or joined one.
    bout_id: Option<String>,
}

/// What a new upload announces and records for `--resume`.
pub struct Plan {
    /// The SESSION_START.
    pub start: ControlMessage,
    pub signal: Option<SignalFile>,
    /// The signal file's path, recorded so that `--resume` without `--signal` sends it.
    pub signal_path: Option<std::path::PathBuf>,
}

impl Upload {
    /// Opens a new session with `plan.start` (a SESSION_START).
    pub async fn start(link: Link, plan: Plan) -> Result<Self, ClientError> {
        let Plan {
            start,
            signal,
            signal_path,
        } = plan;
        let start = &start;
        let (upload, frame_pixels) = match start {
            ControlMessage::SessionStart {
                upload,
                width,
                height,
                ..
            } => (upload.clone(), u64::from(*width) * u64::from(*height)),
            _ => (None, 0),
        };
        // A connection lost before SESSION_STARTED arrives is tried again; a server that
        // cannot be reached at all is reported at once.
        let mut attempt = 0;
        let (conn, reply) = loop {
            let (deadline, mut conn) = connect(&link).await?;
            println!("Connected to {}", link.url);
            match exchange(&mut conn, start, deadline, &link).await {
                Ok(reply) => break (conn, reply),
                Err(err @ ClientError::Disconnected { .. }) if attempt < link.retries => {
                    attempt += 1;
                    println!("Connection lost before the session started ({err}); trying again");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(err) => return Err(err),
            }
        };
        let ControlMessage::SessionStarted {
            session_id,
            window,
            max_frame_bytes,
            resume_token,
            resume_grace_s,
            max_signal_bytes,
            max_frame_pixels,
            bout_id,
        } = reply
        else {
            return Err(unexpected(&reply, "SESSION_STARTED"));
        };
        if window == 0 {
            return Err(ClientError::Protocol(
                "the server offered a window of 0 frames, so no frame could be sent".into(),
            ));
        }
        println!("Session started: {session_id} (window {window} frames)");
        if let Ok(page) = crate::endpoint::dashboard_url(link.url.as_str(), &session_id) {
            println!("Dashboard: {page}");
        }
        let saved = SavedSession {
            session_id: session_id.clone(),
            resume_token: resume_token.clone(),
            url: link.url.to_string(),
            upload: upload.clone(),
            signal_path: signal_path.map(|p| std::fs::canonicalize(&p).unwrap_or(p)),
            resume_grace_s: Some(resume_grace_s),
            resume_command: Some(link.resume_command.replace("SESSION_ID", &session_id)),
        };
        if let Err(err) = saved::save(&saved) {
            // The upload works without it; only --resume after a restart needs it.
            tracing::warn!("{err}");
        }
        let mut upload = Self {
            link,
            conn: Some(conn),
            session_id,
            resume_token,
            window: Window::new(window),
            max_frame_bytes,
            digest: DigestBuilder::new(),
            skip_until: 0,
            phase: Phase::Frames,
            signal,
            pacer: Pacer::unlimited(),
            upload,
            resume_grace_s: Some(resume_grace_s),
            max_signal_bytes,
            max_frame_pixels,
            frame_pixels,
            lost_at: None,
            bout_id,
        };
        upload.check_limits().await?;
        Ok(upload)
    }

    /// Checks the signal file and the frame size against the limits the server announced,
    /// before a frame is sent; the session stays resumable (with a smaller signal file, or
    /// after the operator raises the limit).
    async fn check_limits(&mut self) -> Result<(), ClientError> {
        if let (Some(signal), Some(limit)) = (&self.signal, self.max_signal_bytes) {
            if signal.text.len() as u64 > limit {
                let err = ClientError::SignalTooLarge {
                    file: signal.file_name.clone(),
                    size: signal.text.len() as u64,
                    limit,
                    session_id: self.session_id.clone(),
                };
                return Err(self.leave(err).await);
            }
        }
        if let Some(limit) = self.max_frame_pixels {
            if self.frame_pixels > limit {
                let err = ClientError::FrameTooManyPixels {
                    pixels: self.frame_pixels,
                    limit,
                };
                return Err(self.leave(err).await);
            }
        }
        Ok(())
    }

    /// Closes the connection without ending the session (it stays resumable) and returns
    /// `err`.
    async fn leave(&mut self, err: ClientError) -> ClientError {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
        err
    }

    /// The session's id.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The bout the session's camera is part of, when the server said so at its start.
    pub fn bout_id(&self) -> Option<&str> {
        self.bout_id.as_deref()
    }

    /// Seconds the server keeps the session resumable after the upload stops, when known.
    pub fn resume_grace_s(&self) -> Option<u64> {
        self.resume_grace_s
    }

    /// Continues the session of `saved`, started by this client before it was restarted,
    /// uploading `upload` (checked by the server against what the session was started
    /// with) with `signal`, for frames of `frame_pixels` pixels.
    pub async fn resume_saved(
        link: Link,
        saved: SavedSession,
        signal: Option<SignalFile>,
        upload: Option<UploadIdentity>,
        frame_pixels: u64,
    ) -> Result<Self, ClientError> {
        let mut upload = Self {
            link,
            conn: None,
            session_id: saved.session_id,
            resume_token: saved.resume_token,
            window: Window::new(1),
            max_frame_bytes: 0,
            digest: DigestBuilder::new(),
            skip_until: 0,
            phase: Phase::Frames,
            signal,
            pacer: Pacer::unlimited(),
            upload,
            resume_grace_s: saved.resume_grace_s,
            max_signal_bytes: None,
            max_frame_pixels: None,
            frame_pixels,
            lost_at: None,
            bout_id: None,
        };
        // A server restarting at this moment is waited for, like any other outage.
        let frames_stored = match upload.resume(true).await {
            Ok(frames_stored) => frames_stored,
            Err(err) if err.is_transient() => {
                println!("Cannot resume yet ({err}); trying again");
                upload.resume_retrying(true, err.to_string()).await?.0
            }
            Err(err) => return Err(err),
        };
        println!(
            "Resumed session {} at frame {frames_stored}",
            upload.session_id
        );
        if upload.phase == Phase::Frames || upload.phase == Phase::Signal {
            upload.check_limits().await?;
        }
        Ok(upload)
    }

    /// Caps the sending rate (new frames only: frames sent again after a resume go at once).
    pub fn limit_rate(&mut self, pacer: Pacer) {
        self.pacer = pacer;
    }

    /// Uploads the frames, ends the session, sends the signal and waits for COMPLETE,
    /// resuming after every dropped connection.
    pub async fn run(
        mut self,
        frames: &mut mpsc::Receiver<Result<EncodedFrame, ClientError>>,
        progress: &mut Progress,
    ) -> Result<Summary, ClientError> {
        loop {
            let step = match self.phase {
                Phase::Frames => self.send_frames(frames, progress).await,
                Phase::End => self.end(progress).await,
                Phase::Signal => self.send_signal(progress).await,
                Phase::Complete => match self.wait_complete(progress).await {
                    Ok(summary) => {
                        saved::remove(&self.session_id);
                        if let Some(conn) = self.conn.take() {
                            conn.close().await;
                        }
                        return Ok(summary);
                    }
                    Err(ended) => Err(ended),
                },
            };
            match step {
                Ok(()) => {}
                Err(Ended::Server(err)) if !err.is_transient() => return Err(err),
                Err(ended) => self.reconnect(ended, progress).await?,
            }
        }
    }

    fn conn(&mut self) -> Result<&mut Connection, Ended> {
        self.conn
            .as_mut()
            .ok_or_else(|| Ended::Lost("not connected".into()))
    }

    async fn send_frames(
        &mut self,
        frames: &mut mpsc::Receiver<Result<EncodedFrame, ClientError>>,
        progress: &mut Progress,
    ) -> Result<(), Ended> {
        while let Some(message) = self.window.next_resend() {
            // Frames sent again are paced like new ones: the caps hold on every connection.
            if let Some(at) = self.pacer.next_at() {
                tokio::time::sleep_until(at).await;
            }
            self.pacer.sent(message.len() as u64);
            self.conn()?.send_binary(message).await?;
        }
        loop {
            let has_room = self.window.has_room();
            // With a rate cap, the next frame may have to wait (ACKs are read meanwhile).
            let paced = self.pacer.next_at();
            let conn = self.conn()?;
            tokio::select! {
                message = conn.recv() => match message? {
                    ControlMessage::Ack { frames_stored } => self.ack(frames_stored, progress)?,
                    other => return Err(Ended::Server(unexpected(&other, "ACK"))),
                },
                () = sleep_until(paced.unwrap_or_else(Instant::now)), if has_room && paced.is_some() => {}
                frame = frames.recv(), if has_room && paced.is_none() => match frame {
                    Some(Ok(frame)) => self.send_frame(frame).await?,
                    Some(Err(err)) => return Err(self.abort(ErrorCode::SourceFailed, err).await),
                    None => {
                        self.phase = Phase::End;
                        return Ok(());
                    }
                },
            }
        }
    }

    async fn send_frame(&mut self, frame: EncodedFrame) -> Result<(), Ended> {
        self.digest.push(crc32c::crc32c(&frame.jpeg));
        if frame.index < self.skip_until {
            self.window.skipped_one(frame.jpeg.len() as u64);
            return Ok(());
        }
        if frame.jpeg.len() > self.max_frame_bytes as usize {
            let err = ClientError::FrameTooLarge {
                index: frame.index,
                size: frame.jpeg.len(),
                limit: self.max_frame_bytes,
            };
            return Err(self.abort(ErrorCode::FrameTooLarge, err).await);
        }
        let frame_flags = if frame.passthrough {
            flags::PASSTHROUGH
        } else {
            0
        };
        let message = encode_frame(frame.index, frame.pts_us, frame_flags, &frame.jpeg)
            .map_err(|e| Ended::Server(e.into()))?;
        self.pacer.sent(message.len() as u64);
        // Kept before it is sent: if the send fails, the frame goes again after the resume.
        self.window.sent_one(message.clone());
        self.conn()?.send_binary(message).await
    }

    fn ack(&mut self, frames_stored: u64, progress: &mut Progress) -> Result<(), Ended> {
        self.window.ack(frames_stored).map_err(Ended::Server)?;
        progress.frames(self.window.acked(), self.window.acked_bytes());
        Ok(())
    }

    async fn end(&mut self, progress: &mut Progress) -> Result<(), Ended> {
        let frames_sent = self.window.sent();
        let message = ControlMessage::SessionEnd {
            frames_sent,
            signal_follows: self.signal.is_some(),
            digest: self.digest.clone().finish(),
        };
        self.conn()?.send_control(&message).await?;
        progress.line(&format!("Sent session end ({frames_sent} frames)"));
        loop {
            match self.conn()?.recv().await? {
                ControlMessage::Ack { frames_stored } => self.ack(frames_stored, progress)?,
                ControlMessage::SessionEnded { frames_stored } => {
                    self.window.ack(frames_stored).map_err(Ended::Server)?;
                    progress.finish_frames(self.window.acked(), self.window.acked_bytes());
                    progress.line(&format!("Session ended: {frames_stored} frames stored"));
                    self.phase = if self.signal.is_some() {
                        Phase::Signal
                    } else {
                        Phase::Complete
                    };
                    return Ok(());
                }
                other => return Err(Ended::Server(unexpected(&other, "ACK or SESSION_ENDED"))),
            }
        }
    }

    async fn send_signal(&mut self, progress: &mut Progress) -> Result<(), Ended> {
        let Some(signal) = self.signal.clone() else {
            self.phase = Phase::Complete;
            return Ok(());
        };
        self.conn()?
            .send_control(&ControlMessage::Signal {
                file_name: signal.file_name.clone(),
                text: signal.text.clone(),
            })
            .await?;
        progress.line(&format!("Sent signal data ({} bytes)", signal.text.len()));
        self.phase = Phase::Complete;
        Ok(())
    }

    async fn wait_complete(&mut self, progress: &mut Progress) -> Result<Summary, Ended> {
        loop {
            match self.conn()?.recv().await? {
                ControlMessage::Progress { stage, percent, .. } => {
                    progress.processing(stage, percent)
                }
                ControlMessage::Complete {
                    session_id,
                    frames_stored,
                    duration_s,
                    events,
                    directory,
                    files,
                } => {
                    progress.line(&format!(
                        "Processing complete: session {session_id}, {frames_stored} frames stored, {events} signal events"
                    ));
                    tracing::debug!("results in the server's {directory}");
                    let page = crate::endpoint::dashboard_url(self.link.url.as_str(), &session_id)
                        .map_or_else(|_| directory.clone(), |url| url.to_string());
                    progress.line(&format!("Results: {page} ({})", files.join(", ")));
                    return Ok(Summary {
                        session_id,
                        frames_stored,
                        duration_s,
                        events,
                        directory,
                        files,
                    });
                }
                other => return Err(Ended::Server(unexpected(&other, "PROGRESS or COMPLETE"))),
            }
        }
    }

    /// Tells the server the client gives the session up, closes, and returns `err`.
    async fn abort(&mut self, code: ErrorCode, err: ClientError) -> Ended {
        if let Some(mut conn) = self.conn.take() {
            let message = ControlMessage::error(code, err.to_string(), true);
            let _ = conn.send_control(&message).await;
            conn.close().await;
        }
        Ended::Server(err)
    }

    /// Reconnects and resumes after `ended`, with backoff; fails once the attempts of this
    /// outage are used up.
    async fn reconnect(&mut self, ended: Ended, progress: &Progress) -> Result<(), ClientError> {
        self.conn = None;
        self.lost_at = Some(std::time::SystemTime::now());
        let reason = match ended {
            Ended::Lost(reason) => reason,
            Ended::Server(err) => err.to_string(),
        };
        progress.line(&format!(
            "Connection lost ({reason}) with {} of {} frames stored; resuming session {}",
            self.window.acked(),
            self.window.sent(),
            self.session_id
        ));
        let (frames_stored, attempt) = self.resume_retrying(false, reason).await?;
        // The caps count from the new connection: the time spent reconnecting is not
        // made up for with a burst.
        self.pacer.restart();
        progress.line(&format!(
            "Resumed session {} at frame {frames_stored} (attempt {attempt})",
            self.session_id
        ));
        Ok(())
    }

    /// Tries to resume up to `link.retries` times, waiting with backoff before each attempt;
    /// returns the frames stored and the attempt that worked. `reason` is why the session
    /// needs resuming, reported if no attempt works.
    async fn resume_retrying(
        &mut self,
        restarted: bool,
        mut reason: String,
    ) -> Result<(u64, u32), ClientError> {
        for attempt in 1..=self.link.retries {
            let wait = backoff(attempt);
            tracing::debug!("resume attempt {attempt} in {wait:?}");
            tokio::time::sleep(wait).await;
            match self.resume(restarted).await {
                Ok(frames_stored) => return Ok((frames_stored, attempt)),
                Err(err) if err.is_transient() => {
                    tracing::info!("resume attempt {attempt} failed: {err}");
                    reason = err.to_string();
                }
                Err(err) => return Err(err),
            }
        }
        Err(ClientError::ConnectionLost {
            session_id: self.session_id.clone(),
            acked: self.window.acked(),
            sent: self.window.sent(),
            attempts: self.link.retries,
            reason,
            resume: crate::resume_hint(
                &self.link.resume_command,
                &self.session_id,
                self.lost_at,
                self.resume_grace_s,
            ),
        })
    }

    /// Opens a connection and resumes the session on it; returns the frames stored. With
    /// `restarted`, this process has sent nothing yet: frames the server has are skipped.
    async fn resume(&mut self, restarted: bool) -> Result<u64, ClientError> {
        let (deadline, mut conn) = connect(&self.link).await?;
        let request = ControlMessage::SessionResume {
            protocol_version: PROTOCOL_VERSION,
            session_id: self.session_id.clone(),
            resume_token: self.resume_token.clone(),
            upload: self.upload.clone(),
        };
        let reply = exchange(&mut conn, &request, deadline, &self.link).await?;
        let ControlMessage::SessionResumed {
            state,
            frames_stored,
            window,
            max_frame_bytes,
            max_signal_bytes,
            max_frame_pixels,
            ..
        } = reply
        else {
            return Err(unexpected(&reply, "SESSION_RESUMED"));
        };
        self.window.resize(window.max(1));
        self.max_frame_bytes = max_frame_bytes;
        self.max_signal_bytes = max_signal_bytes;
        self.max_frame_pixels = max_frame_pixels;
        if restarted {
            self.skip_until = frames_stored;
        } else {
            self.window.resume_at(frames_stored)?;
        }
        self.phase = match state {
            ResumedState::Receiving => Phase::Frames,
            ResumedState::AwaitingSignal => Phase::Signal,
            ResumedState::Processing | ResumedState::Complete => Phase::Complete,
        };
        self.conn = Some(conn);
        Ok(frames_stored)
    }
}

/// Connects within the link's time limit; returns the deadline for the first answer too.
async fn connect(link: &Link) -> Result<(Instant, Connection), ClientError> {
    let deadline = Instant::now() + link.connect_timeout;
    let conn = Connection::open(
        &link.url,
        link.token.as_deref(),
        link.tls.clone(),
        deadline,
        link.connect_timeout,
    )
    .await?;
    Ok((deadline, conn))
}

/// Sends `request` and returns the server's answer, by `deadline`.
async fn exchange(
    conn: &mut Connection,
    request: &ControlMessage,
    deadline: Instant,
    link: &Link,
) -> Result<ControlMessage, ClientError> {
    let lost = |ended: Ended| match ended {
        Ended::Server(err) => err,
        Ended::Lost(reason) => ClientError::Disconnected {
            url: link.url.clone(),
            reason,
        },
    };
    conn.send_control(request).await.map_err(lost)?;
    match timeout_at(deadline, conn.recv()).await {
        Ok(reply) => reply.map_err(lost),
        Err(_) => Err(ClientError::HandshakeTimeout {
            url: link.url.clone(),
            secs: link.connect_timeout.as_secs(),
            hint: NO_ANSWER,
        }),
    }
}

/// The wait before reconnection attempt `attempt` (1-based): exponential, capped, with
/// jitter between half and all of it so that many clients do not come back at once.
fn backoff(attempt: u32) -> Duration {
    let full = BACKOFF_START
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(BACKOFF_MAX);
    let random = RandomState::new().hash_one(attempt);
    let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
    full.mul_f64(fraction)
}

fn unexpected(message: &ControlMessage, expected: &str) -> ClientError {
    ClientError::Protocol(format!(
        "the server sent {} where {expected} was expected",
        message.type_name()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for attempt in 1..=12 {
            let full = BACKOFF_START
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(BACKOFF_MAX);
            let wait = backoff(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "{attempt}: {wait:?} vs {full:?}"
            );
        }
        assert!(backoff(20) <= BACKOFF_MAX);
    }
}
