//! The start offset of a camera of a bout whose user gave none (`--offset`), found from the
//! motion (`offset.rs`) against the bout's first camera, whose clock the signal file is taken
//! to follow (plus that camera's own offset, when given). Runs at the start of the camera's
//! processing: it waits (bounded) for the first camera's upload to end, measures the motion
//! of both from their stored frames, and records the offset and how sure it is in the
//! session's record, which the rest of processing lines the signal up by.

use std::time::{Duration, Instant};

use referee_protocol::api::BoutMembership;

use super::motion::MotionMeter;
use super::offset::{estimate_offset, OffsetOptions};
use super::StageError;
use crate::store::{FrameSource, SessionMeta, SessionStatus, SessionStore};

/// How long a camera waits for the first camera's upload to end, at most (only while that
/// upload streams: a detached one is not waited for).
pub const REFERENCE_WAIT: Duration = Duration::from_secs(600);
/// How long it waits for a first camera whose upload is detached (its client reconnecting).
const DETACHED_WAIT: Duration = Duration::from_secs(60);
/// How often it looks.
const REFERENCE_POLL: Duration = Duration::from_millis(250);

/// Whether session `meta` is a camera whose offset is to be found: of a bout, not its first
/// camera, none given and none found yet.
pub fn needed(meta: &SessionMeta) -> bool {
    meta.bout.as_ref().is_some_and(|b| {
        b.offset_s.is_none() && b.offset_note.is_none() && b.cameras.first() != Some(&b.camera)
    })
}

/// The bout membership of session `meta` (see [`needed`]) with its offset found from the
/// motion of its `frames` against the bout's first camera's, or with a note saying why none
/// could be.
pub fn align(
    store: &dyn SessionStore,
    meta: &SessionMeta,
    frames: &mut dyn FrameSource,
) -> Option<BoutMembership> {
    let mut bout = meta.bout.clone()?;
    match find(store, meta, &bout, frames) {
        Ok((offset, confidence)) => {
            bout.offset_s = Some(offset);
            bout.offset_confidence = Some(confidence);
            tracing::info!(
                "Session {}: camera {} started {offset:.3} s after the signal's clock (from the motion, confidence {confidence:.2})",
                meta.id,
                bout.camera
            );
        }
        Err(why) => {
            tracing::warn!(
                "Session {}: no start offset for camera {}: {why}",
                meta.id,
                bout.camera
            );
            bout.offset_note = Some(why);
        }
    }
    Some(bout)
}

fn find(
    store: &dyn SessionStore,
    meta: &SessionMeta,
    bout: &BoutMembership,
    frames: &mut dyn FrameSource,
) -> Result<(f64, f64), String> {
    let first = bout.cameras.first().cloned().unwrap_or_default();
    let reference = wait_for_reference(store, bout, &first)?;
    let mut reference_frames = store
        .frame_source(&reference.id)
        .map_err(|e| format!("cannot read camera {first}'s frames: {e}"))?;
    let theirs = motion(&reference, reference_frames.as_mut())
        .map_err(|e| format!("cannot measure camera {first}'s motion: {e}"))?;
    let ours =
        motion(meta, frames).map_err(|e| format!("cannot measure this camera's motion: {e}"))?;
    let found = estimate_offset(&theirs, &ours, &OffsetOptions::default())
        .map_err(|e| format!("against camera {first}: {e}"))?;
    let base = reference.bout.and_then(|b| b.offset_s).unwrap_or(0.0);
    let at_limit = if found.at_limit {
        " (at the end of the range searched: it may lie beyond)"
    } else {
        ""
    };
    if !at_limit.is_empty() {
        tracing::warn!("Session {}: the offset found{at_limit}", meta.id);
    }
    Ok((
        ((base + found.seconds) * 1e6).round() / 1e6,
        (found.confidence * 1e3).round() / 1e3,
    ))
}

/// The session of camera `camera` of `bout` once its upload has ended.
fn wait_for_reference(
    store: &dyn SessionStore,
    bout: &BoutMembership,
    camera: &str,
) -> Result<SessionMeta, String> {
    let deadline = Instant::now() + REFERENCE_WAIT;
    let mut detached_since: Option<Instant> = None;
    loop {
        let sessions = store
            .list()
            .map_err(|e| format!("cannot look for camera {camera}: {e}"))?;
        let reference = sessions.into_iter().find(|m| {
            m.bout
                .as_ref()
                .is_some_and(|b| b.bout_id == bout.bout_id && b.camera == camera)
        });
        match reference {
            Some(meta) if meta.ended_at.is_some() || uploaded(meta.status) => return Ok(meta),
            // Waited for while it streams, and a short while once detached (its client
            // reconnecting): a worker is held meanwhile.
            Some(meta)
                if meta.status == SessionStatus::Detached
                    && *detached_since.get_or_insert_with(Instant::now) + DETACHED_WAIT
                        < Instant::now() =>
            {
                return Err(format!(
                    "camera {camera}'s upload stopped (detached) before it ended: give the offset with --offset"
                ))
            }
            Some(meta)
                if !matches!(meta.status, SessionStatus::Receiving | SessionStatus::Detached) =>
            {
                return Err(format!(
                    "camera {camera}'s upload is {} (not finished): give the offset with --offset",
                    meta.status.as_str()
                ))
            }
            None => return Err(format!("the bout has no session of camera {camera} yet")),
            _ if Instant::now() >= deadline => {
                return Err(format!(
                "camera {camera}'s upload did not end within {} s; give the offset with --offset",
                REFERENCE_WAIT.as_secs()
            ))
            }
            _ => std::thread::sleep(REFERENCE_POLL),
        }
    }
}

fn uploaded(status: SessionStatus) -> bool {
    matches!(
        status,
        SessionStatus::AwaitingSignal
            | SessionStatus::Processing
            | SessionStatus::Complete
            | SessionStatus::Failed
    )
}

/// Each frame's time (seconds) and motion energy.
fn motion(meta: &SessionMeta, frames: &mut dyn FrameSource) -> Result<Vec<(f64, f32)>, StageError> {
    let mut meter = MotionMeter::new(meta.width, meta.height);
    let times = frames.timestamps();
    let mut series = Vec::with_capacity(times.len());
    for (index, pts) in (0..frames.len()).zip(times) {
        let frame = frames.read(index)?;
        series.push((pts as f64 / 1e6, meter.push(index, &frame.payload)?));
    }
    Ok(series)
}
