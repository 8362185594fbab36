//! Starting a session's processing: bounded by the worker semaphore, on a blocking thread,
//! with its events published to every connection that listens to the session.

use std::sync::Arc;

use referee_protocol::signal::SignalTrack;
use referee_protocol::{ControlMessage, Stage};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::cluster::jobs::Job;
use crate::notify::events::EventKind;
use crate::pipeline::{self, PipelineEvent};
use crate::session::live::LiveSession;
use crate::store::{SessionMeta, Store};
use crate::AppState;

/// Pipeline events waiting to be published; the pipeline drops progress when it is full.
const PROGRESS_QUEUE: usize = 32;

/// Marks the session `processing`, counts the attempt on disk (before it can stop the server:
/// see `recovery`) and runs the pipeline in the background. Listeners subscribed to `live`
/// before this call see every event.
pub async fn start(app: &AppState, live: Arc<LiveSession>, signal: Option<SignalTrack>) {
    let Ok(job) = claim(app, live.id()).await else {
        tracing::info!("Session {}: another server is processing it", live.id());
        return;
    };
    let meta = live.update(super::lifecycle::process);
    persist(&app.store, meta).await;
    let (tx, mut rx) = mpsc::channel::<PipelineEvent>(PROGRESS_QUEUE);
    let store = app.store.clone();
    let workers = Arc::clone(&app.processing);
    let publisher = Arc::clone(&live);
    let (bus, metrics) = (app.events.clone(), Arc::clone(&app.metrics));
    let options = app.settings.processing.options.clone();
    // Every log line of processing, in its tasks and its blocking thread, names the session.
    let span = tracing::info_span!("processing", session = %live.id());
    let blocking_span = span.clone();
    tokio::spawn(
        async move {
            // Relays the pipeline's events to the session's connections and to the event bus,
            // and times each stage.
            let mut stage_started: Option<(Stage, std::time::Instant)> = None;
            while let Some(event) = rx.recv().await {
                let stage_now = match event.progress() {
                    Some(ControlMessage::Progress { stage, .. }) => Some(stage),
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
                let mut meta = publisher.snapshot();
                let kind = match &event {
                    PipelineEvent::Progress { .. } => EventKind::Progress,
                    PipelineEvent::ClipReady { clip, percent, .. } => {
                        // As things were when the clip was stored: the pipeline may have moved on.
                        meta.stage = Some(Stage::Clips);
                        meta.percent = Some(*percent);
                        bus.publish_clip(&meta, clip.as_ref().clone());
                        EventKind::Progress
                    }
                    PipelineEvent::Complete { .. } => EventKind::Complete,
                    PipelineEvent::Failed { .. } => EventKind::Failed,
                };
                bus.publish(kind, &meta);
                publisher.publish(event);
            }
        }
        .instrument(span.clone()),
    );
    tokio::spawn(async move {
        // Bounded concurrency: sessions beyond the worker count wait here, in order.
        let _permit = workers.acquire_owned().await;
        let id = live.id().to_string();
        let failed = tx.clone();
        let (sessions, live_after) = (Arc::clone(store.blocking()), Arc::clone(&live));
        // The pipeline runs on a blocking thread and calls the blocking store itself.
        let run =
            tokio::task::spawn_blocking(move || {
                blocking_span.in_scope(|| pipeline::run(sessions, live, signal, &options, tx))
            });
        if let Err(err) = run.await {
            tracing::error!("Session {id}: the processing thread failed: {err}");
            let recorded = store
                .run("recording that processing failed", move |store| {
                    let stage = live_after
                        .snapshot()
                        .stage
                        .unwrap_or(Stage::VideoReconstruction);
                    let cause = format!(
                        "the processing thread stopped unexpectedly ({err}); this is a bug of the server: report it with the server's log"
                    );
                    Ok(pipeline::record_failure(store, &live_after, stage, &cause))
                })
                .await;
            match recorded {
                Ok(event) => {
                    let _ = failed.send(event).await;
                }
                Err(err) => {
                    tracing::error!("Session {id}: cannot record that processing failed: {err}")
                }
            }
        }
        if let Some(job) = job {
            job.finish().await;
        }
    }
    .instrument(span.clone()));
}

/// Another server of the cluster is processing the session.
struct Elsewhere;

/// In a cluster, this server's hold on session `id`'s processing (none alone, or when the
/// registry does not answer: processing twice stores the same results, not processing loses
/// them).
async fn claim(app: &AppState, id: &str) -> Result<Option<Job>, Elsewhere> {
    let Some(cluster) = &app.cluster else {
        return Ok(None);
    };
    match Job::claim(cluster, id).await {
        Ok(Some(job)) => Ok(Some(job)),
        Ok(None) => Err(Elsewhere),
        Err(err) => {
            tracing::warn!("Session {id}: processing it anyway: {err}");
            Ok(None)
        }
    }
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
pub async fn persist(store: &Store, meta: SessionMeta) {
    let id = meta.id.clone();
    if let Err(err) = store.save_meta(meta).await {
        tracing::error!("Session {id}: cannot save its state: {err}");
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::store::{FrameSink, FrameSource, LocalStore, Recovered, ResultFile, StoreError};
    use crate::store::{SessionStatus, SessionStore};
    use crate::Config;

    /// A local store that runs a hook before `scratch_dir` (processing) and before
    /// `recover_frames` (recovery), e.g. to panic as a bug in a stage would, or to hold
    /// recovery up.
    pub(crate) struct HookedStore {
        pub inner: LocalStore,
        pub before_scratch_dir: Box<dyn Fn(&str) + Send + Sync>,
        pub before_recover: Box<dyn Fn(&str) + Send + Sync>,
    }

    impl HookedStore {
        pub fn new(inner: LocalStore) -> Self {
            Self {
                inner,
                before_scratch_dir: Box::new(|_| {}),
                before_recover: Box::new(|_| {}),
            }
        }
    }

    impl SessionStore for HookedStore {
        fn create(&self, meta: &SessionMeta) -> Result<(), StoreError> {
            self.inner.create(meta)
        }
        fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError> {
            self.inner.save_meta(meta)
        }
        fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
            self.inner.load_meta(id)
        }
        fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
            self.inner.list()
        }
        fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError> {
            self.inner.frame_sink(id, frames)
        }
        fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError> {
            (self.before_recover)(id);
            self.inner.recover_frames(id)
        }
        fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError> {
            self.inner.frame_source(id)
        }
        fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError> {
            self.inner.put_signal(id, text)
        }
        fn signal(&self, id: &str) -> Result<Option<String>, StoreError> {
            self.inner.signal(id)
        }
        fn delete(&self, id: &str) -> Result<(), StoreError> {
            self.inner.delete(id)
        }
        fn put_result_file(&self, id: &str, name: &str, from: &Path) -> Result<(), StoreError> {
            self.inner.put_result_file(id, name, from)
        }
        fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
            self.inner.put_result(id, name, bytes)
        }
        fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
            (self.before_scratch_dir)(id);
            self.inner.scratch_dir(id)
        }
        fn remove_scratch(&self, id: &str) -> Result<(), StoreError> {
            self.inner.remove_scratch(id)
        }
        fn location(&self, id: &str) -> String {
            self.inner.location(id)
        }
        fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
            self.inner.open_result(id, name)
        }
        fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
            self.inner.list_results(id)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_processing_thread_that_dies_marks_the_session_failed() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        let mut store = HookedStore::new(LocalStore::open(dir.path()).unwrap());
        store.before_scratch_dir = Box::new(|_| panic!("a bug in processing"));
        let app = AppState::with_store(config.settings().unwrap(), Arc::new(store)).unwrap();
        let meta = SessionMeta::new("s1".into(), "s1".into(), SessionStatus::AwaitingSignal);
        app.store.blocking().create(&meta).unwrap();
        let (live, _) = app.live.insert(meta);
        let mut events = live.subscribe();
        start(&app, Arc::clone(&live), None).await;

        let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
            .await
            .unwrap()
            .unwrap();
        let PipelineEvent::Failed { stage, message } = event else {
            panic!("expected a Failed event, got {event:?}");
        };
        assert_eq!(stage, Stage::VideoReconstruction);
        assert!(
            message.contains("stage video_reconstruction failed"),
            "{message}"
        );
        // Recorded on disk, not only told to the listeners: the session is not left
        // `processing` until a restart.
        let stored = app.store.blocking().load_meta("s1").unwrap();
        assert_eq!(stored.status, SessionStatus::Failed, "{stored:?}");
        let error = stored.error.unwrap_or_default();
        assert!(
            error.contains("stage video_reconstruction failed"),
            "{error}"
        );
        assert!(
            error.contains("processing thread stopped unexpectedly"),
            "{error}"
        );
        assert_eq!(live.snapshot().status, SessionStatus::Failed);
    }
}
