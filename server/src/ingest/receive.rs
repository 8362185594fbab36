//! Frames in, ACKs out: a binary message through the state machine and the frame checks
//! to the writer; the writer's progress back as ACKs, metrics and watcher events.

use std::ops::ControlFlow;
use std::time::Duration;

use axum::extract::ws::Message;
use bytes::Bytes;
use futures_util::Sink;
use referee_protocol::state::Incoming;
use referee_protocol::{ControlMessage, ErrorCode, SessionState};
use tokio::time::Instant;

use super::frames::{index_of, Intake};
use super::writer::{batch_limit, Stored, WriterFailed};
use super::{Connection, Link, Refusal, Step, GO_ON};
use crate::metrics::Metrics;
use crate::notify::events::EventKind;
use crate::session::processing::persist;

/// Log a line every this many frames received.
const LOG_EVERY_FRAMES: u64 = 100;
/// Watchers get a `frames` event at most this often per session.
const FRAMES_EVENT_EVERY: Duration = Duration::from_millis(250);
/// The acknowledged count is saved to the session's metadata at most this often during an
/// upload, so that after a crash the server can tell whether acknowledged frames went missing
/// (`referee_frames_lost_total`).
const SAVE_COUNT_EVERY: Duration = Duration::from_secs(1);

impl<S> Connection<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    pub(super) async fn on_binary(&mut self, message: Bytes) -> Step {
        // A frame outside `receiving` is refused by the state machine, whatever it holds.
        let next_frame = match self.state() {
            SessionState::Receiving { next_frame } => next_frame,
            mut other => {
                let index = index_of(&message);
                other.accept(Incoming::Frame { index })?;
                return GO_ON;
            }
        };
        let Link::Attached(session) = &mut self.link else {
            return GO_ON;
        };
        let frame = match session.intake.read(message.clone(), next_frame)? {
            Intake::New(frame) => frame,
            Intake::Duplicate { index } => {
                Metrics::add(&self.app.metrics.duplicates_dropped, 1);
                tracing::debug!(
                    "Session {}: frame {index} is already stored, dropped",
                    session.id()
                );
                return GO_ON;
            }
        };
        let index = frame.header.index;
        session.state.accept(Incoming::Frame { index })?;
        session.intake.admit(&frame)?;
        if let Some(why) = session.disk.refuse_frame() {
            return Err(Refusal::new(
                ErrorCode::DiskFull,
                format!("frame {index}: {why}"),
            ));
        }
        Metrics::add(&self.app.metrics.frames_received, 1);
        Metrics::add(&self.app.metrics.bytes_received, frame.payload.len() as u64);
        session.arrivals.push_back(Instant::now());
        session.live.set_latest_frame(index, frame.payload.clone());
        if let Some(line) = received_line(session.id(), index, session.intake.bytes_total()) {
            tracing::info!("{line}");
        }
        let pushed = match &session.writer {
            Some(writer) => writer.push(frame.header, message).await,
            None => false,
        };
        if pushed {
            GO_ON
        } else {
            Err(self.on_writer_stopped().await)
        }
    }

    /// The writer stopped on its own: a storage error.
    pub(super) async fn on_writer_stopped(&mut self) -> Refusal {
        let writer = match &mut self.link {
            Link::Attached(session) => session.writer.take(),
            Link::AwaitingStart => None,
        };
        let failed = match writer {
            Some(writer) => writer.finish().await.err(),
            None => None,
        };
        match failed {
            Some(failed) => self.on_storage_failed(failed),
            None => Refusal::new(
                ErrorCode::StorageFailed,
                "the server cannot store frames: its frame writer stopped",
            ),
        }
    }

    /// A storage error stopped the writer: the frames stored before it are kept (the files
    /// were cut back to them) and counted, and the client is told how to go on.
    pub(super) fn on_storage_failed(&mut self, failed: WriterFailed) -> Refusal {
        let id = self.id();
        let stored = &failed.stored;
        if let Link::Attached(session) = &self.link {
            session.live.update(|m| {
                m.frames_stored = stored.frames;
                m.bytes_stored = stored.bytes;
            });
        }
        if let crate::store::StoreError::LeaseLost(_) = failed.error {
            return Refusal::new(ErrorCode::SessionTakenOver, failed.error.to_string());
        }
        let fix = match failed.error {
            crate::store::StoreError::Remote { .. } => {
                "once the server's object storage answers again"
            }
            _ => "free space on the server's data disk (or fix it), then",
        };
        Refusal::new(
            ErrorCode::StorageFailed,
            format!(
                "the server cannot store frames: {}; the {} frames stored before are kept: {fix} resume with --resume {id}",
                failed.error, stored.frames
            ),
        )
    }

    /// The writer made more frames durable: counted, shown to watchers, saved now and then,
    /// and acknowledged.
    pub(super) async fn on_stored(&mut self, stored: Stored) -> Step {
        let Link::Attached(session) = &mut self.link else {
            return GO_ON;
        };
        let metrics = &self.app.metrics;
        let meta = session.live.update(|m| {
            Metrics::add(
                &metrics.frames_stored,
                stored.frames.saturating_sub(m.frames_stored),
            );
            Metrics::add(
                &metrics.bytes_stored,
                stored.bytes.saturating_sub(m.bytes_stored),
            );
            m.frames_stored = stored.frames;
            m.bytes_stored = stored.bytes;
        });
        if session.last_frames_event.elapsed() >= FRAMES_EVENT_EVERY {
            session.last_frames_event = Instant::now();
            self.app.events.publish(EventKind::Frames, &meta);
        }
        if session.last_count_saved.elapsed() >= SAVE_COUNT_EVERY {
            session.last_count_saved = Instant::now();
            persist(&self.app.store, meta).await;
        }
        if stored.frames > session.acked {
            let newly = (stored.frames - session.acked) as usize;
            for arrived in session.arrivals.drain(..newly.min(session.arrivals.len())) {
                metrics.ack_latency(arrived.elapsed());
            }
            // One ACK per batch of at most half the window, even when the writer stored
            // several batches since the last one was seen.
            let batch = batch_limit(session.window());
            while session.acked < stored.frames {
                session.acked = (session.acked + batch).min(stored.frames);
                self.peer
                    .send(&ControlMessage::Ack {
                        frames_stored: session.acked,
                    })
                    .await;
            }
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// The info line logged every [`LOG_EVERY_FRAMES`] frames of a session, counted from 1 (so
/// `received frame 100, total 100` when frame index 99 arrives), whatever connection
/// they arrive on.
pub(super) fn received_line(id: &str, index: u64, bytes_total: u64) -> Option<String> {
    let count = index + 1;
    count.is_multiple_of(LOG_EVERY_FRAMES).then(|| {
        format!(
            "Session {id}: received frame {count}, total {count}, {:.1} MB",
            bytes_total as f64 / 1e6
        )
    })
}
