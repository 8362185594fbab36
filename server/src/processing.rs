//! Starting a session's processing: bounded by the worker semaphore, on a blocking thread,
//! with its events published to every connection that listens to the session.

use std::sync::Arc;

use referee_protocol::signal::SignalTrack;
use referee_protocol::{ControlMessage, Stage};
use tokio::sync::mpsc;

use crate::events::EventKind;
use crate::live::LiveSession;
use crate::pipeline::{self, PipelineEvent};
use crate::store::{SessionMeta, SessionStatus, SessionStore};
use crate::AppState;

/// Pipeline events waiting to be published; the pipeline drops progress when it is full.
const PROGRESS_QUEUE: usize = 32;

/// Marks the session `processing` and runs the pipeline in the background. Listeners
/// subscribed to `live` before this call see every event.
pub async fn start(app: &AppState, live: Arc<LiveSession>, signal: Option<SignalTrack>) {
    let meta = live.update(|m| {
        m.status = SessionStatus::Processing;
        m.error = None;
    });
    persist(Arc::clone(&app.store), meta).await;
    let (tx, mut rx) = mpsc::channel(PROGRESS_QUEUE);
    let store = Arc::clone(&app.store);
    let workers = Arc::clone(&app.processing);
    let publisher = Arc::clone(&live);
    let (bus, metrics) = (app.events.clone(), Arc::clone(&app.metrics));
    let options = pipeline::Options {
        video_preset: app.config.video_preset.clone(),
    };
    tokio::spawn(async move {
        // Relays the pipeline's events to the session's connections and to the event bus,
        // and times each stage.
        let mut stage_started: Option<(Stage, std::time::Instant)> = None;
        while let Some(event) = rx.recv().await {
            let stage_now = match &event {
                PipelineEvent::Progress { stage, .. } => Some(*stage),
                _ => None,
            };
            if let Some((stage, since)) = stage_started {
                if stage_now != Some(stage) {
                    metrics.stage_duration(stage, since.elapsed());
                    stage_started = None;
                }
            }
            if let (Some(stage), None) = (stage_now, stage_started) {
                stage_started = Some((stage, std::time::Instant::now()));
            }
            let kind = match &event {
                PipelineEvent::Progress { .. } => EventKind::Progress,
                PipelineEvent::Complete { .. } => EventKind::Complete,
                PipelineEvent::Failed { .. } => EventKind::Failed,
            };
            bus.publish(kind, &publisher.snapshot());
            publisher.publish(event);
        }
    });
    tokio::spawn(async move {
        // Bounded concurrency: sessions beyond the worker count wait here, in order.
        let _permit = workers.acquire_owned().await;
        let id = live.id().to_string();
        let failed = tx.clone();
        let run =
            tokio::task::spawn_blocking(move || pipeline::run(store, live, signal, &options, tx));
        if let Err(err) = run.await {
            tracing::error!("Session {id}: the processing thread failed: {err}");
            let _ = failed
                .send(PipelineEvent::Failed {
                    stage: Stage::VideoReconstruction,
                    message: format!("the processing thread failed: {err}"),
                })
                .await;
        }
    });
}

/// The COMPLETE message of a processed session.
pub fn complete_message(meta: &SessionMeta, events: u64, directory: String) -> ControlMessage {
    ControlMessage::Complete {
        session_id: meta.id.clone(),
        frames_stored: meta.frames_stored,
        duration_s: meta.duration_s(),
        events,
        directory,
        files: meta.results.clone(),
    }
}

/// Saves a session's metadata; a failure is logged (the live state stays right).
pub async fn persist(store: Arc<dyn SessionStore>, meta: SessionMeta) {
    let id = meta.id.clone();
    match tokio::task::spawn_blocking(move || store.save_meta(&meta)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!("Session {id}: cannot save its state: {err}"),
        Err(err) => tracing::error!("Session {id}: cannot save its state: {err}"),
    }
}
