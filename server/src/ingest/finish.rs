//! The end of an upload: `SESSION_END` (every frame durable, the digest checked), `SIGNAL`
//! (the signal file checked and stored), then processing, whose progress and outcome are
//! relayed to the client.

use std::ops::ControlFlow;
use std::sync::Arc;

use axum::extract::ws::Message;
use futures_util::Sink;
use referee_protocol::digest::{describe_ranges, FrameDigest};
use referee_protocol::signal::SignalTrack;
use referee_protocol::{ControlMessage, ErrorCode, SessionState};

use super::{Connection, Link, Refusal, Step, GO_ON};
use crate::notify::events::EventKind;
use crate::pipeline::PipelineEvent;
use crate::session::lifecycle;
use crate::session::processing::{self, complete_message, persist};

impl<S> Connection<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    /// `SESSION_END`: moves to `next` (`awaiting_signal` or `processing`) once every frame is
    /// durable and the digest matches; refused, the session stays in `receiving`.
    pub(super) async fn on_end(
        &mut self,
        frames_sent: u64,
        signal_follows: bool,
        digest: FrameDigest,
        next: SessionState,
    ) -> Step {
        let Link::Attached(session) = &mut self.link else {
            return GO_ON;
        };
        let Some(writer) = session.writer.take() else {
            return GO_ON;
        };
        let id = session.id().to_string();
        let stored = match writer.finish().await {
            Ok(stored) => stored,
            Err(failed) => return Err(self.on_storage_failed(failed)),
        };
        // The last batch is durable: counted and acknowledged like every other, before any
        // check, so that a refused SESSION_END leaves the count a resume starts from right.
        if self.on_stored(stored.clone()).await?.is_break() {
            return Ok(ControlFlow::Break(()));
        }
        // The digest of what is on disk, from the checksums in the frame index.
        let lookup = id.clone();
        let ours = self
            .with_store("cannot read the stored frames back", move |store| {
                Ok(FrameDigest::of(store.frame_source(&lookup)?.checksums()))
            })
            .await?;
        let differing = ours.differing_frames(&digest, frames_sent);
        if !differing.is_empty() {
            // Still receiving: the client may resume and the frames stay as stored.
            return Err(Refusal::new(
                ErrorCode::DigestMismatch,
                format!(
                    "the digest of the {} stored frames does not match SESSION_END's: {} differ from what the client sent",
                    stored.frames,
                    describe_ranges(&differing)
                ),
            ));
        }
        let Link::Attached(session) = &mut self.link else {
            return GO_ON;
        };
        session.state = next;
        let meta = session.live.update(|m| lifecycle::end(m, signal_follows));
        tracing::info!("Session {id} ended: {} frames", stored.frames);
        self.app.events.publish(EventKind::Ended, &meta);
        persist(&self.app.store, meta).await;
        self.peer
            .send(&ControlMessage::SessionEnded {
                frames_stored: stored.frames,
            })
            .await;
        if !signal_follows {
            tracing::info!("Session {id}: no signal file, starting processing");
            self.start_processing(None).await;
        }
        GO_ON
    }

    /// `SIGNAL`: moves to `next` (`processing`) once the signal file is valid and stored;
    /// refused, the session stays in `awaiting_signal`, to be resumed with a corrected one.
    pub(super) async fn on_signal(
        &mut self,
        file_name: String,
        text: String,
        next: SessionState,
    ) -> Step {
        let limit = self.app.settings.limits.max_signal_bytes;
        if text.len() > limit {
            return Err(Refusal::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "the signal file {file_name:?} is {} bytes, larger than the server's limit of {limit} bytes",
                    text.len()
                ),
            ));
        }
        let Link::Attached(session) = &self.link else {
            return GO_ON;
        };
        let meta = session.live.snapshot();
        let duration_us = (meta.frames_stored as f64 * 1e6 / meta.fps).round() as u64;
        // A bout's signal file may go on past one of its cameras' recordings.
        let bout_camera = meta.bout.is_some();
        let track = SignalTrack::parse(&text)
            .and_then(|t| {
                if bout_camera {
                    return Ok(t);
                }
                t.check_duration(duration_us).map(|()| t)
            })
            .map_err(|err| {
                Refusal::new(
                    ErrorCode::InvalidSignal,
                    format!("signal file {file_name:?}: {err}"),
                )
            })?;
        let id = meta.id.clone();
        let bytes = text.len();
        self.with_store("cannot store the signal file", move |store| {
            store.put_signal(&id, &text)
        })
        .await?;
        let Link::Attached(session) = &mut self.link else {
            return GO_ON;
        };
        let events = track.events.len() as u64;
        session.live.update(|m| {
            m.signal_file = Some(file_name);
            m.signal_events = Some(events);
        });
        tracing::info!(
            "Session {}: signal received ({bytes} bytes, {events} events), starting processing",
            meta.id
        );
        session.state = next;
        self.start_processing(Some(track)).await;
        GO_ON
    }

    async fn start_processing(&mut self, signal: Option<SignalTrack>) {
        let Link::Attached(session) = &mut self.link else {
            return;
        };
        // Listen before starting, so that no event is missed.
        session.events = Some(session.live.subscribe());
        processing::start(&self.app, Arc::clone(&session.live), signal).await;
    }

    pub(super) async fn on_pipeline(&mut self, event: PipelineEvent) -> Step {
        match event {
            PipelineEvent::Progress { .. } | PipelineEvent::ClipReady { .. } => {
                if let Some(progress) = event.progress() {
                    self.peer.send(&progress).await;
                }
                GO_ON
            }
            PipelineEvent::Complete {
                meta,
                events,
                directory,
            } => {
                if let Link::Attached(session) = &mut self.link {
                    session.state.finish_processing();
                }
                self.peer
                    .send(&complete_message(&meta, events, directory))
                    .await;
                self.peer.close(1000, "complete").await;
                self.end = String::from("the session is complete");
                Ok(ControlFlow::Break(()))
            }
            PipelineEvent::Failed { stage, message } => {
                if let Link::Attached(session) = &mut self.link {
                    session.state.finish_processing();
                }
                Err(Refusal::new(
                    ErrorCode::ProcessingFailed,
                    format!("{message} (stage {stage})"),
                ))
            }
        }
    }
}
