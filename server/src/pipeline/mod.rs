//! The processing pipeline that runs after a session's upload: `clips`, then
//! `video_reconstruction`, then `analysis`. It runs on a blocking thread (never on the async runtime), reports progress
//! through a channel, and records the outcome in the session's metadata, whether or not a
//! client is still listening.

mod activity;
mod align;
mod analysis;
mod clips;
mod h264;
mod i420;
mod motion;
pub mod offset;
mod reconstruct;
mod report_html;
mod thumbnails;
mod timeline_layout;

use std::sync::Arc;

use referee_protocol::signal::SignalTrack;
use referee_protocol::{ControlMessage, Stage};
use thiserror::Error;
use tokio::sync::mpsc;

use crate::session::lifecycle;
use crate::session::live::LiveSession;
use crate::store::{Clip, SessionMeta, SessionStore, StoreError};

pub use analysis::{frame_for_time, Report, REPORT_FILE, REPORT_HTML_FILE, REPORT_SCHEMA_VERSION};
pub use clips::{ClipOptions, CLIPS_DIR};
pub use h264::PRESETS as VIDEO_PRESETS;
pub use report_html::script_csp_source as report_script_csp_source;
pub use report_html::MAX_PAGE_BYTES as MAX_REPORT_HTML_BYTES;
pub use thumbnails::THUMBNAILS_DIR;
pub use timeline_layout::javascript_module as timeline_layout_module;

/// How the operator wants sessions processed.
#[derive(Debug, Clone)]
pub struct Options {
    /// x264 preset of the reconstructed video (one of [`VIDEO_PRESETS`]).
    pub video_preset: String,
    /// `--max-frame-pixels`: a session of larger frames (stored by a server with a higher
    /// limit) is not processed.
    pub max_frame_pixels: u64,
    /// `--bout-target`: touches that win a bout, for the score timeline's marks.
    pub bout_target: u32,
    /// `--clip-pre-roll-secs`, `--clip-post-roll-secs`, `--max-clips`.
    pub clips: ClipOptions,
}

/// What the pipeline tells the connection that started it.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineEvent {
    Progress {
        stage: Stage,
        percent: f32,
        done: u64,
        total: u64,
    },
    /// A clip is stored (stage `clips`): `done` of `total` clips are.
    ClipReady {
        clip: Box<Clip>,
        percent: f32,
        done: u64,
        total: u64,
    },
    Complete {
        meta: Box<SessionMeta>,
        events: u64,
        directory: String,
    },
    Failed {
        stage: Stage,
        message: String,
    },
}

impl PipelineEvent {
    /// The PROGRESS a client is sent for this event (a clip's too), if it is one.
    pub fn progress(&self) -> Option<ControlMessage> {
        match *self {
            PipelineEvent::Progress {
                stage,
                percent,
                done,
                total,
            } => Some(ControlMessage::Progress {
                stage,
                percent,
                done,
                total,
            }),
            PipelineEvent::ClipReady {
                percent,
                done,
                total,
                ..
            } => Some(ControlMessage::Progress {
                stage: Stage::Clips,
                percent,
                done,
                total,
            }),
            PipelineEvent::Complete { .. } | PipelineEvent::Failed { .. } => None,
        }
    }
}

/// Why a stage failed.
#[derive(Debug, Error)]
pub enum StageError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("OpenCV: {0}")]
    OpenCv(#[from] opencv::Error),
    #[error("{0}")]
    Other(String),
}

/// Reports a stage's progress: to the client (dropped if the channel is full: a slow client
/// never holds processing up) and to the live metadata the HTTP API shows.
struct Reporter<'a> {
    stage: Stage,
    total: u64,
    last_percent: Option<u32>,
    events: &'a mpsc::Sender<PipelineEvent>,
    live: &'a LiveSession,
}

impl Reporter<'_> {
    fn update(&mut self, done: u64) {
        let percent = if self.total == 0 {
            100.0
        } else {
            (done as f32 * 100.0 / self.total as f32).min(100.0)
        };
        // Whole percents only: at most 101 messages per stage.
        let whole = percent as u32;
        if self.last_percent == Some(whole) {
            return;
        }
        self.last_percent = Some(whole);
        self.live.update(|m| {
            m.stage = Some(self.stage);
            m.percent = Some(percent);
        });
        let _ = self.events.try_send(PipelineEvent::Progress {
            stage: self.stage,
            percent,
            done,
            total: self.total,
        });
    }
}

/// Runs every stage for `live`'s session. Blocking: call it from a blocking thread.
pub fn run(
    store: Arc<dyn SessionStore>,
    live: Arc<LiveSession>,
    signal: Option<SignalTrack>,
    options: &Options,
    events: mpsc::Sender<PipelineEvent>,
) {
    let id = live.id().to_string();
    let mut stage = Stage::Clips;
    let outcome = (|| -> Result<(u64, Vec<String>), StageError> {
        let meta = live.snapshot();
        crate::frame_size::check(meta.width, meta.height, options.max_frame_pixels)
            .map_err(StageError::Other)?;
        let scratch = store.scratch_dir(&id)?;
        let mut frames = store.frame_source(&id)?;
        // A camera of a bout without an offset: found from the motion, and recorded.
        let aligned = align::needed(&meta)
            .then(|| align::align(store.as_ref(), &meta, frames.as_mut()))
            .flatten();
        let meta = match aligned {
            Some(bout) => {
                let meta = live.update(|m| m.bout = Some(bout));
                store.save_meta(&meta)?;
                meta
            }
            None => meta,
        };
        // A camera of a bout lines the bout's signal up on its own clock.
        let signal = match meta.bout.as_ref().and_then(|b| b.offset_s) {
            Some(offset) => signal.as_ref().map(|track| track.on_camera(offset)),
            None => signal.clone(),
        };
        let announcer = clips::Announcer {
            events: &events,
            live: &live,
        };
        let clips = clips::make(
            store.as_ref(),
            &meta,
            frames.as_mut(),
            signal.as_ref(),
            &options.clips,
            &scratch,
            &announcer,
        )?;
        tracing::info!(
            "Session {id}: clips complete: {} clips{}",
            clips.clips.len(),
            if clips.skipped > 0 {
                format!(", {} events beyond --max-clips", clips.skipped)
            } else {
                String::new()
            }
        );

        stage = Stage::VideoReconstruction;
        let mut reporter = Reporter {
            stage,
            total: frames.len(),
            last_percent: None,
            events: &events,
            live: &live,
        };
        reporter.update(0);
        let video = reconstruct::reconstruct(
            &meta,
            frames.as_mut(),
            &scratch,
            &options.video_preset,
            &mut reporter,
        )?;
        store.put_result_file(&id, &video.file_name, &video.path)?;
        tracing::info!(
            "Session {id}: video_reconstruction complete: {} ({} frames, {})",
            video.file_name,
            frames.len(),
            video.codec
        );

        stage = Stage::Analysis;
        let mut reporter = Reporter {
            stage,
            total: frames.len(),
            last_percent: None,
            events: &events,
            live: &live,
        };
        reporter.update(0);
        let video_file = analysis::VideoFile {
            file_name: &video.file_name,
            codec: video.codec,
        };
        let (report, files) = analysis::analyse(
            store.as_ref(),
            &meta,
            frames.as_mut(),
            signal.as_ref(),
            analysis::Made {
                video: video_file,
                clips: &clips,
            },
            options.bout_target,
            &mut reporter,
        )?;
        tracing::info!(
            "Session {id}: analysis complete: {} activity segments, {} events{}",
            report.segments.len(),
            report.events.len(),
            if report.variable_frame_rate {
                ", variable frame rate"
            } else {
                ""
            }
        );
        live.update(|m| m.variable_frame_rate = Some(report.variable_frame_rate));
        let mut results: Vec<String> = clips.clips.into_iter().map(|c| c.name).collect();
        results.push(video.file_name);
        results.extend(files);
        Ok((report.events.len() as u64, results))
    })();

    let event = match outcome {
        Ok((event_count, results)) => {
            let meta = live.update(|m| lifecycle::complete(m, results));
            tracing::info!("Session {id}: processing complete");
            let event = PipelineEvent::Complete {
                meta: Box::new(meta.clone()),
                events: event_count,
                directory: store.location(&id),
            };
            record_outcome(store.as_ref(), meta);
            event
        }
        Err(err) => record_failure(store.as_ref(), &live, stage, &err.to_string()),
    };
    // The client may be gone; processing has finished either way.
    let _ = events.blocking_send(event);
}

/// Records that processing of `live`'s session failed in `stage` because of `cause`: the
/// session is `failed`, its `error` names the stage, and the outcome is saved. Returns the
/// event to tell listeners. Used for a stage's error and for a processing thread that died.
/// Blocking: call it from a blocking thread.
pub fn record_failure(
    store: &dyn SessionStore,
    live: &LiveSession,
    stage: Stage,
    cause: &str,
) -> PipelineEvent {
    let message = format!("stage {stage} failed: {cause}");
    tracing::warn!("Session {}: processing failed: {message}", live.id());
    let meta = live.update(|m| lifecycle::fail(m, message.clone()));
    record_outcome(store, meta);
    PipelineEvent::Failed { stage, message }
}

/// Saves the outcome of processing and removes its scratch files.
fn record_outcome(store: &dyn SessionStore, meta: SessionMeta) {
    let id = &meta.id;
    if let Err(err) = store.remove_scratch(id) {
        tracing::warn!("Session {id}: {err}");
    }
    if let Err(err) = store.save_meta(&meta) {
        tracing::error!("Session {id}: cannot record the outcome of processing: {err}");
    }
}
