//! The referee client: streams a recorded video and its signal file to a referee server.
//!
//! # Layout
//! - [`cli`]: the command line.
//! - [`endpoint`]: turns the server address into the WebSocket URL of the ingest endpoint.
//! - [`source`]: reads the video and JPEG-encodes its frames, or reads a Motion-JPEG video's
//!   own JPEG frames (the only module that links OpenCV).
//! - [`pipeline`]: makes the frames on threads of their own (a decoder, one encoder per
//!   core, re-ordered), or passes a Motion-JPEG video's frames through.
//! - [`pace`]: the `--max-fps` / `--max-mbps` caps.
//! - [`signal`]: reads and checks the signal file.
//! - [`stream`]: one WebSocket connection.
//! - [`upload`]: the session over one connection or several: frames sent within the
//!   server's window, resumed after a dropped connection.
//! - [`window`]: frames sent and acknowledged, and those kept to send again.
//! - [`saved`]: the state files that let `--resume` continue after a restart.
//! - [`progress`]: the progress bar or lines, and the processing stages.
//! - [`results`]: the server's HTTP API: `status`, `list` and downloading results
//!   (`--output`).
//! - [`scoring_box`]: `box`, the signal file recorded from a Favero FA-01's serial port.
//! - [`watch`]: `watch`, a session's events as they happen.
//! - [`error`]: [`ClientError`], everything that can stop a session.
//!
//! Every input is checked before connecting: a video that cannot be decoded or a signal
//! file with a mistake never opens a session on the server.

pub mod cli;
pub mod endpoint;
pub mod error;
pub mod frame_times;
pub mod identity;
pub mod pace;
pub mod pipeline;
pub mod progress;
pub mod reach;
pub mod results;
pub mod saved;
pub mod scoring_box;
pub mod signal;
pub mod source;
pub mod start_times;
pub mod stream;
pub mod upload;
pub mod watch;
pub mod window;

use std::path::Path;
use std::time::Duration;

use referee_protocol::text::name_from;
use referee_protocol::{
    BoutCamera, ControlMessage, FrameEncoding, BOUT_PROTOCOL_VERSION, PROTOCOL_VERSION,
};
use tracing_subscriber::EnvFilter;

pub use crate::cli::Args;
pub use crate::cli::{Cli, Command};
pub use crate::error::ClientError;
use crate::pace::Pacer;
use crate::pipeline::{FrameOptions, Frames};
use crate::progress::Progress;
use crate::signal::SignalFile;
use crate::upload::{Link, Upload};

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
/// the signal, then follows the server's processing until it completes. Ctrl-C stops it with
/// [`ClientError::Interrupted`], which says how to resume. With videos of several cameras
/// (`--video CAMERA=FILE`), use [`run_bout`].
pub async fn run(args: Args) -> Result<Summary, ClientError> {
    run_session(args, None).await
}

/// The camera a session records, of a bout (see [`run_bout`]).
struct Camera {
    bout: BoutCamera,
    /// Told the bout's id once the session started (the first camera's, for the others).
    started: Option<tokio::sync::oneshot::Sender<String>>,
}

/// Streams a bout recorded by several cameras (`--video CAMERA=FILE` each): the first camera
/// starts the bout, then every camera uploads in parallel, each over its own connection, with
/// its own window, progress lines (`[camera] ...`) and resume, and the same signal file. A
/// camera that fails does not stop the others; the first error is returned once all ended,
/// with the command that resumes the bout (`--resume BOUT_ID`: every camera not complete is
/// resumed, or started if it never was).
pub async fn run_bout(args: Args) -> Result<Vec<Summary>, ClientError> {
    let Some(cameras) = args.cameras().map_err(ClientError::Usage)? else {
        return Ok(vec![run(args).await?]);
    };
    let resuming = args.resume.as_deref().map(saved::load_bout).transpose()?;
    let cameras = with_start_times(cameras);
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| default_name(&cameras[0].path));
    let session = |camera: &cli::BoutVideo, resume: Option<&str>| {
        let mut args = args.for_camera(&camera.path);
        args.name = Some(format!("{name} ({})", camera.camera));
        args.resume = resume.map(str::to_string);
        args
    };
    let joining = |camera: &cli::BoutVideo, bout_id: &str, resume: Option<&str>| {
        run_session(
            session(camera, resume),
            Some(Camera {
                bout: BoutCamera {
                    bout_id: Some(bout_id.to_string()),
                    camera: camera.camera.clone(),
                    cameras: None,
                    offset_s: camera.offset_s,
                },
                started: None,
            }),
        )
    };
    let (bout_id, outcomes) = match &resuming {
        Some(saved) => {
            // Each camera: resumed where it stopped, started if it never was, or left alone
            // when complete (its state file is gone).
            let runs = cameras.iter().map(|camera| async {
                match saved.session_of(&camera.camera) {
                    Some(id) if saved::find(id).is_none() => {
                        println!("[{}] session {id} is complete", camera.camera);
                        Ok(None)
                    }
                    resume => joining(camera, &saved.bout_id, resume).await.map(Some),
                }
            });
            let outcomes = futures_util::future::join_all(runs).await;
            (Some(saved.bout_id.clone()), outcomes)
        }
        None => {
            let (started, bout_id) = tokio::sync::oneshot::channel();
            let first = run_session(
                session(&cameras[0], None),
                Some(Camera {
                    bout: BoutCamera {
                        bout_id: None,
                        camera: cameras[0].camera.clone(),
                        cameras: Some(cameras.iter().map(|c| c.camera.clone()).collect()),
                        offset_s: cameras[0].offset_s,
                    },
                    started: Some(started),
                }),
            );
            let others = async {
                // The others join once the first has started the bout (if it never does,
                // its own error says why).
                let Ok(bout_id) = bout_id.await else {
                    return (None, Vec::new());
                };
                println!("Bout {bout_id}: {} cameras", cameras.len());
                let runs = cameras[1..]
                    .iter()
                    .map(|camera| async { joining(camera, &bout_id, None).await.map(Some) });
                let outcomes = futures_util::future::join_all(runs).await;
                (Some(bout_id), outcomes)
            };
            let (first, (bout_id, others)) = tokio::join!(first, others);
            (
                bout_id,
                std::iter::once(first.map(Some)).chain(others).collect(),
            )
        }
    };
    let mut summaries = Vec::new();
    let mut failed = None;
    for (camera, outcome) in cameras.iter().zip(outcomes) {
        match outcome {
            Ok(summary) => summaries.extend(summary),
            Err(err) => {
                let text = format!("{:#}", anyhow::Error::from(err));
                eprintln!(
                    "[{}] error: {}",
                    camera.camera,
                    referee_protocol::text::escape_controls(&text)
                );
                failed.get_or_insert((camera.camera.clone(), text));
            }
        }
    }
    match (failed, bout_id) {
        (None, bout_id) => {
            if let Some(id) = bout_id {
                saved::remove_bout(&id);
            }
            Ok(summaries)
        }
        (Some((camera, why)), bout_id) => Err(ClientError::CameraFailed {
            camera,
            why,
            resume: bout_id.map(|id| {
                let signal = args.signal.as_deref();
                format!(
                    "; the other cameras went on; resume the bout with `{}`",
                    args.resume_command(signal).replace("SESSION_ID", &id)
                )
            }),
        }),
    }
}

/// `cameras` with the offsets their recordings' start times give, for those given none (see
/// [`start_times`]); as they are otherwise, the server then lining them up by their motion.
fn with_start_times(mut cameras: Vec<cli::BoutVideo>) -> Vec<cli::BoutVideo> {
    if cameras.iter().all(|c| c.offset_s.is_some()) {
        return cameras;
    }
    let times: Vec<Option<String>> = cameras
        .iter()
        .map(|c| frame_times::recorded_at(&c.path))
        .collect();
    let Some(offsets) = start_times::offsets(&times) else {
        if times.iter().all(Option::is_some) {
            println!(
                "The recordings' start times are too coarse to line the cameras up by (whole seconds): the server finds the offsets from their motion"
            );
        }
        return cameras;
    };
    let base = cameras[0].offset_s.unwrap_or(0.0);
    // The first camera's clock is the signal's unless its offset is given.
    for (camera, offset) in cameras.iter_mut().zip(offsets).skip(1) {
        if camera.offset_s.is_none() {
            camera.offset_s = Some(base + offset);
            println!(
                "[{}] started {:.3} s after the signal's clock, by the recordings' start times",
                camera.camera,
                base + offset
            );
        }
    }
    cameras
}

async fn run_session(args: Args, mut camera: Option<Camera>) -> Result<Summary, ClientError> {
    let url = endpoint::stream_url(&args.server)?;
    let url_text = url.to_string();
    if let Some(dir) = &args.output {
        results::check_output(dir)?;
    }
    // A resume reuses the signal file the session was started with, unless another is
    // given (which the server refuses if it differs).
    let saved = args.resume.as_deref().map(saved::load).transpose()?;
    let recorded_signal = saved.as_ref().and_then(|s| s.signal_path.clone());
    let signal_path = args.signal.clone().or_else(|| recorded_signal.clone());
    if let (Some(saved), None) = (&saved, &signal_path) {
        if let Some(name) = saved.upload.as_ref().and_then(|u| u.signal.as_ref()) {
            return Err(ClientError::ResumeSignalMissing {
                session_id: saved.session_id.clone(),
                path: name.into(),
                reason: "this client did not record where it is".into(),
            });
        }
    }
    let source = Frames::open(
        args.video_path(),
        FrameOptions {
            quality: args.quality,
            resize: args.resize,
            reencode: args.reencode,
        },
    )?;
    let info = source.info().clone();
    // A bout's signal file may go on past one of its cameras' recordings.
    let duration_us = info
        .frame_count
        .filter(|_| camera.is_none())
        .map(|frames| (frames as f64 * 1e6 / info.fps).round() as u64);
    let signal = match (&signal_path, &saved) {
        (Some(path), Some(saved)) if args.signal.is_none() => {
            let signal = SignalFile::read(path, duration_us).map_err(|err| {
                ClientError::ResumeSignalMissing {
                    session_id: saved.session_id.clone(),
                    path: path.clone(),
                    reason: format!("{:#}", anyhow::Error::from(err)),
                }
            })?;
            println!(
                "Signal: {} (the file session {} was started with)",
                path.display(),
                saved.session_id
            );
            Some(signal)
        }
        (path, _) => path
            .as_deref()
            .map(|path| SignalFile::read(path, duration_us))
            .transpose()?,
    };
    let upload_identity = identity::of(args.video_path(), signal.as_ref())?;
    if let Some(saved) = &saved {
        if let Some(why) = saved
            .upload
            .as_ref()
            .and_then(|started| upload_identity.mismatch(started))
        {
            return Err(ClientError::ResumeMismatch {
                session_id: saved.session_id.clone(),
                why,
            });
        }
    }

    let start = ControlMessage::SessionStart {
        protocol_version: match camera {
            Some(_) => BOUT_PROTOCOL_VERSION,
            None => PROTOCOL_VERSION,
        },
        name: args
            .name
            .clone()
            .unwrap_or_else(|| default_name(args.video_path())),
        source: file_name(args.video_path()),
        fps: info.fps,
        width: info.width,
        height: info.height,
        frame_count: info.frame_count,
        encoding: FrameEncoding::Jpeg,
        quality: source.quality(),
        session_id: args.session.clone(),
        upload: Some(upload_identity.clone()),
        bout: camera.as_ref().map(|c| c.bout.clone()),
    };
    let resume_command = args.resume_command(signal_path.as_deref());
    let link = Link {
        url,
        token: args.token.clone(),
        connect_timeout: Duration::from_secs(args.connect_timeout),
        retries: args.retries,
        tls: stream::tls_connector(args.ca.as_deref())?,
        resume_command: resume_command.clone(),
    };
    let frame_pixels = u64::from(info.width) * u64::from(info.height);
    let mut upload = match saved {
        Some(saved) => {
            Upload::resume_saved(link, saved, signal, Some(upload_identity), frame_pixels).await?
        }
        None => {
            let plan = upload::Plan {
                start,
                signal,
                signal_path: signal_path.clone(),
            };
            Upload::start(link, plan).await?
        }
    };
    if let (Some(camera), Some(bout_id)) = (&mut camera, upload.bout_id()) {
        // Recorded for `--resume BOUT_ID` (a resumed camera is recorded already).
        let recorded = saved::save_camera(
            bout_id,
            url_text.as_str(),
            &camera.bout.camera,
            upload.session_id(),
        );
        if let Err(err) = recorded {
            tracing::warn!("{err}");
        }
        if let Some(started) = camera.started.take() {
            let _ = started.send(bout_id.to_string());
        }
    }
    upload.limit_rate(Pacer::new(args.max_fps, args.max_mbps));
    println!("{}", source.describe());
    if let Some(codec) = frame_times::audio_codec(args.video_path()) {
        println!(
            "Audio: the recording's {codec} track is not uploaded (this version sends the pictures only)"
        );
    }
    let mut progress = match &camera {
        Some(camera) => Progress::of_camera(info.frame_count, &camera.bout.camera),
        None => Progress::new(info.frame_count, args.verbose),
    };
    let mut frames = source.spawn()?;
    let session_id = upload.session_id().to_string();
    let grace = upload.resume_grace_s();
    let summary = tokio::select! {
        summary = upload.run(&mut frames, &mut progress) => summary?,
        _ = tokio::signal::ctrl_c() => {
            let resume = resume_hint(&resume_command, &session_id, None, grace);
            return Err(ClientError::Interrupted { resume });
        }
    };
    if let Some(dir) = args.output {
        let access = cli::Access {
            token: args.token,
            ca: args.ca,
        };
        let page = endpoint::dashboard_url(&args.server, &summary.session_id)
            .map_or_else(|_| summary.session_id.clone(), |url| url.to_string());
        let id = summary.session_id.clone();
        let downloaded = tokio::select! {
            downloaded = download(args.server, access, id.clone(), dir) => downloaded?,
            // Ctrl-C stops the download (the handler set for the upload would swallow it).
            _ = tokio::signal::ctrl_c() => {
                let resume = format!("session {id} is complete on the server; its results are at {page}");
                return Err(ClientError::Interrupted { resume });
            }
        };
        progress.line(&downloaded_line(&downloaded));
    }
    Ok(summary)
}

/// How to continue session `session_id` after its upload stopped (at `stopped`, or now):
/// until when it stays resumable (`grace_s` after it stopped, when known) and the command
/// (`command`, with `SESSION_ID` for the id).
pub fn resume_hint(
    command: &str,
    session_id: &str,
    stopped: Option<std::time::SystemTime>,
    grace_s: Option<u64>,
) -> String {
    let command = command.replace("SESSION_ID", session_id);
    let stopped = stopped.unwrap_or_else(std::time::SystemTime::now);
    let until = grace_s
        .and_then(|grace| {
            let deadline = stopped.checked_add(Duration::from_secs(grace))?;
            time::OffsetDateTime::from(deadline)
                .replace_nanosecond(0)
                .ok()?
                .format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .map_or_else(
            || "for the server's grace period".to_string(),
            |t| format!("until {t}"),
        );
    format!("session {session_id} stays resumable {until}: continue it with `{command}`")
}

/// Downloads the results of session `id` from `server` into `dir` (see
/// [`results::Api::download`]).
pub async fn download(
    server: String,
    access: cli::Access,
    id: String,
    dir: std::path::PathBuf,
) -> Result<results::Downloaded, ClientError> {
    let url = server.clone();
    tokio::task::spawn_blocking(move || {
        let api = results::Api::new(&server, access.token.as_deref(), access.ca.as_deref())?;
        api.download(&id, &dir)
    })
    .await
    .unwrap_or_else(|err| {
        Err(ClientError::Http {
            url,
            reason: format!("the download thread failed: {err}"),
        })
    })
}

/// `Downloaded to DIR: report.html, report.json, video.mp4, 8 thumbnails (6.9 MB); open ...`.
fn downloaded_line(d: &results::Downloaded) -> String {
    let thumbnails = d.files.iter().filter(|f| f.contains('/')).count();
    let mut names: Vec<String> = d
        .files
        .iter()
        .filter(|f| !f.contains('/'))
        .cloned()
        .collect();
    if thumbnails > 0 {
        names.push(format!("{thumbnails} thumbnails"));
    }
    format!(
        "Downloaded to {}: {} ({:.1} MB); open {} in a browser",
        d.dir.display(),
        names.join(", "),
        d.bytes as f64 / 1e6,
        d.dir.join("report.html").display()
    )
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

/// The session name when `--name` is not given: the video's file name without extension.
fn default_name(video: &Path) -> String {
    let stem = video.file_stem().unwrap_or_default();
    name_from(&stem.to_string_lossy())
}

fn file_name(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default();
    name.to_string_lossy().into_owned()
}
