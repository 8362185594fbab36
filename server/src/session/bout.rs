//! Bouts recorded by several cameras. Each camera is a session of its own (its frames, its
//! resume token, its processing); a `SESSION_START` with a `bout` (protocol version 2) starts
//! a bout with the list of its cameras, or joins one by its id with one of those cameras. The
//! rules of joining are here, in one place: the bout exists, the camera is one of its
//! cameras and has no session yet, and not every camera of the bout has finished.
//!
//! A bout has no record of its own: its cameras' sessions each carry its id, its cameras and
//! their own camera ([`BoutMembership`]); a bout exists while one of them does.

use referee_protocol::api::BoutMembership;
use referee_protocol::{BoutCamera, ErrorCode};
use time::OffsetDateTime;

use super::session_id;
use crate::store::{SessionMeta, SessionStatus};
use crate::AppState;

/// Why a camera may not start or join a bout: the code of its `ERROR`, and what to do.
pub type Refused = (ErrorCode, String);

/// The bout membership of a session whose `SESSION_START` (named `name`) carries `bout`:
/// a new bout, or the bout it joins. Call it holding [`AppState::bout_joins`] until the
/// session is created, so that two connections never take the same camera.
pub async fn join(app: &AppState, name: &str, bout: BoutCamera) -> Result<BoutMembership, Refused> {
    let BoutCamera {
        bout_id,
        camera,
        cameras,
        offset_s,
    } = bout;
    let Some(bout_id) = bout_id else {
        // Starting a bout (the protocol's checks made sure it names its cameras).
        let cameras = cameras.unwrap_or_else(|| vec![camera.clone()]);
        let max = app.settings.limits.max_cameras;
        if cameras.len() > max {
            return Err((
                ErrorCode::TooManyCameras,
                format!(
                    "a bout of {} cameras: this server takes at most {max} (--max-cameras); \
                     upload fewer cameras, or ask its operator to raise the limit",
                    cameras.len()
                ),
            ));
        }
        return Ok(BoutMembership {
            bout_id: session_id::generate(name, OffsetDateTime::now_utc()),
            camera,
            cameras,
            offset_s,
            offset_confidence: None,
            offset_note: None,
        });
    };
    let sessions = app.store.list().await.map_err(|err| {
        (
            ErrorCode::StorageFailed,
            format!("cannot look for bout {bout_id}: {err}; try again"),
        )
    })?;
    let cameras = rule(&sessions, &bout_id, &camera)?;
    Ok(BoutMembership {
        bout_id,
        camera,
        cameras,
        offset_s,
        offset_confidence: None,
        offset_note: None,
    })
}

/// The cameras of bout `bout_id`, of the stored `sessions`, if `camera` may join it.
fn rule(sessions: &[SessionMeta], bout_id: &str, camera: &str) -> Result<Vec<String>, Refused> {
    let of_bout: Vec<(&SessionMeta, &BoutMembership)> = sessions
        .iter()
        .filter_map(|meta| Some((meta, meta.bout.as_ref()?)))
        .filter(|(_, bout)| bout.bout_id == bout_id)
        .collect();
    let Some((_, first)) = of_bout.first() else {
        return Err((
            ErrorCode::BoutNotFound,
            format!(
                "this server has no bout {bout_id:?}: start it with its first camera (bout.cameras), \
                 then join the others with the bout_id that camera's SESSION_STARTED gives"
            ),
        ));
    };
    if !first.cameras.iter().any(|c| c == camera) {
        return Err((
            ErrorCode::UnknownCamera,
            format!(
                "bout {bout_id} was started with the cameras {}, not {camera}: use one of them",
                first.cameras.join(", ")
            ),
        ));
    }
    if let Some((meta, _)) = of_bout.iter().find(|(_, bout)| bout.camera == camera) {
        return Err((
            ErrorCode::CameraTaken,
            format!(
                "camera {camera} of bout {bout_id} is session {} already (it is {}): resume that \
                 session to continue its upload",
                meta.id,
                meta.status.as_str()
            ),
        ));
    }
    let finished = |s: SessionStatus| {
        matches!(
            s,
            SessionStatus::Complete | SessionStatus::Failed | SessionStatus::Abandoned
        )
    };
    if of_bout.iter().all(|(meta, _)| finished(meta.status)) {
        return Err((
            ErrorCode::BoutFinished,
            format!(
                "every camera of bout {bout_id} that joined it has finished, without {camera}: \
                 upload {camera} as a bout of its own"
            ),
        ));
    }
    Ok(first.cameras.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn camera(id: &str, camera: &str, status: SessionStatus) -> SessionMeta {
        let mut meta = SessionMeta::new(id.into(), "bout".into(), status);
        meta.bout = Some(BoutMembership {
            bout_id: "b1".into(),
            camera: camera.into(),
            cameras: vec!["left".into(), "right".into(), "blades".into()],
            offset_s: None,
            offset_confidence: None,
            offset_note: None,
        });
        meta
    }

    #[test]
    fn a_camera_joins_a_bout_it_belongs_to_once_while_the_bout_is_not_finished() {
        let left = camera("s1", "left", SessionStatus::Receiving);
        let alone = SessionMeta::new("s0".into(), "other".into(), SessionStatus::Receiving);
        let sessions = vec![alone, left.clone()];
        let cameras = rule(&sessions, "b1", "right").unwrap();
        assert_eq!(cameras, ["left", "right", "blades"]);
        let code = |sessions: &[SessionMeta], bout: &str, cam: &str| {
            let (code, why) = rule(sessions, bout, cam).unwrap_err();
            assert!(!why.is_empty());
            (code, why)
        };
        assert_eq!(code(&sessions, "b2", "right").0, ErrorCode::BoutNotFound);
        let (unknown, why) = code(&sessions, "b1", "top");
        assert_eq!(unknown, ErrorCode::UnknownCamera);
        assert!(why.contains("left, right, blades, not top"), "{why}");
        let (taken, why) = code(&sessions, "b1", "left");
        assert_eq!(taken, ErrorCode::CameraTaken);
        assert!(why.contains("is session s1 already"), "{why}");
        let done = vec![
            camera("s1", "left", SessionStatus::Complete),
            camera("s2", "right", SessionStatus::Failed),
        ];
        assert_eq!(code(&done, "b1", "blades").0, ErrorCode::BoutFinished);
    }
}
