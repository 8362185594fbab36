//! Bringing sessions back after the server stopped, cleanly or not: every unfinished session's
//! frames are verified (a torn last record is cut off, checksums checked), uploads become
//! `detached` so their clients can resume, and interrupted processing runs again, unless it
//! was started [`MAX_PROCESSING_ATTEMPTS`] times already without finishing (it may be what
//! stopped the server): then the session is `failed`, its frames kept.
//!
//! Recovery runs in the background, a few sessions at a time, while the server serves: a
//! connection that resumes (or starts into) a session still to recover waits for it
//! ([`Pending::wait_for`]).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use referee_protocol::signal::SignalTrack;
use tokio::sync::watch;

use crate::session::{lifecycle, processing};
use crate::store::{SessionMeta, SessionStatus, StoreError};
use crate::AppState;

/// Sessions recovered at the same time (each verifies its frames on a blocking thread).
const PARALLEL: usize = 4;
/// Processing starts after which a session still `processing` at a start is not processed
/// again but marked `failed`: each start was followed by a stop of the server before it
/// finished.
pub const MAX_PROCESSING_ATTEMPTS: u32 = 2;
/// How long a connection waits for its session's recovery before it is told to try again.
const WAIT_FOR_RECOVERY: Duration = Duration::from_secs(10);

/// Which sessions are still to recover after a start.
#[derive(Debug)]
pub struct Pending {
    state: watch::Sender<PendingState>,
}

#[derive(Debug, Default)]
struct PendingState {
    /// Whether the sessions to recover are being listed: any session may be one of them.
    listing: bool,
    ids: HashSet<String>,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            state: watch::channel(PendingState::default()).0,
        }
    }
}

impl Pending {
    /// Waits until session `id` is recovered, at most [`WAIT_FOR_RECOVERY`]; says why not.
    pub async fn wait_for(&self, id: &str) -> Result<(), String> {
        let mut changes = self.state.subscribe();
        let recovered = changes.wait_for(|state| !state.listing && !state.ids.contains(id));
        let waited = tokio::time::timeout(WAIT_FOR_RECOVERY, recovered)
            .await
            .map(drop);
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "session {id} is still being recovered after the server's restart (its frames \
                 are being verified): try again in a moment"
            )),
        }
    }

    fn begin(&self) {
        self.state.send_modify(|state| state.listing = true);
    }

    fn listed(&self, ids: impl IntoIterator<Item = String>) {
        self.state.send_modify(|state| {
            state.ids.extend(ids);
            state.listing = false;
        });
    }

    fn done(&self, id: &str) {
        self.state.send_modify(|state| {
            state.ids.remove(id);
        });
    }
}

/// Starts recovering every session that was not finished when the server stopped, in the
/// background; the handle ends when every one is recovered. Until then, [`Pending`] in
/// `app.recovering` says which are still to come.
pub fn start(app: &AppState) -> tokio::task::JoinHandle<()> {
    app.recovering.begin();
    let app = app.clone();
    tokio::spawn(async move {
        if let Err(err) = recover_sessions(&app).await {
            tracing::error!("cannot recover the sessions of the previous run: {err}");
        }
    })
}

/// Recovers every session that was not finished when the server stopped.
async fn recover_sessions(app: &AppState) -> Result<(), StoreError> {
    let sessions = match app.store.list().await {
        Ok(sessions) => sessions,
        Err(err) => {
            app.recovering.listed(std::iter::empty());
            return Err(err);
        }
    };
    let unfinished: Vec<SessionMeta> = sessions
        .into_iter()
        .filter(|meta| {
            matches!(
                meta.status,
                SessionStatus::Receiving
                    | SessionStatus::AwaitingSignal
                    | SessionStatus::Detached
                    | SessionStatus::Processing
            )
        })
        .collect();
    app.recovering
        .listed(unfinished.iter().map(|meta| meta.id.clone()));
    if !unfinished.is_empty() {
        tracing::info!("Recovering {} unfinished sessions", unfinished.len());
    }
    futures_util::stream::iter(unfinished)
        .for_each_concurrent(PARALLEL, |meta| async move {
            let id = meta.id.clone();
            if !processed_elsewhere(app, &meta).await {
                recover(app, meta).await;
            }
            app.recovering.done(&id);
        })
        .await;
    Ok(())
}

/// Whether another server of the cluster is processing session `meta` (it holds its job):
/// it is left to that server, which is running, not stopped as this one was.
async fn processed_elsewhere(app: &AppState, meta: &SessionMeta) -> bool {
    let Some(cluster) = &app.cluster else {
        return false;
    };
    if meta.status != SessionStatus::Processing {
        return false;
    }
    match cluster.claim_job(&meta.id).await {
        Ok(claimed) => !claimed,
        Err(err) => {
            // Recovery takes the frames' lease, processing its job again: both say no then.
            tracing::warn!("{err}");
            false
        }
    }
}

/// Recovers session `meta` (see the module's documentation), saying why not if it cannot.
/// A session another server of the cluster is receiving is left to it.
pub async fn recover(app: &AppState, meta: SessionMeta) {
    let id = meta.id.clone();
    match recover_one(app, meta).await {
        Ok(()) => {}
        Err(StoreError::Leased { node, .. }) => {
            tracing::info!("Session {id}: being received by server {node}, left to it");
        }
        Err(err) => tracing::error!("Session {id}: cannot recover it: {err}"),
    }
}

/// Recovers session `meta`, an upload of another server of the cluster, if that server's
/// lease on it has ended (it stopped); says nothing while the lease is valid.
pub async fn adopt(app: &AppState, meta: SessionMeta) {
    let id = meta.id.clone();
    match recover_one(app, meta).await {
        Ok(()) | Err(StoreError::Leased { .. }) => {}
        Err(err) => tracing::warn!("Session {id}: its server stopped; cannot recover it: {err}"),
    }
}

async fn recover_one(app: &AppState, mut meta: SessionMeta) -> Result<(), StoreError> {
    let id = meta.id.clone();
    let (recovered, signal) = app
        .store
        .run("recovering the frames", move |store| {
            Ok((store.recover_frames(&id)?, store.signal(&id)?))
        })
        .await?;
    let id = meta.id.clone();
    // Frames recorded as acknowledged must all be there: count any that are not.
    let lost = meta.frames_stored.saturating_sub(recovered.frames);
    if lost > 0 {
        crate::metrics::Metrics::add(&app.metrics.frames_lost, lost);
        tracing::error!(
            "Session {id}: {lost} acknowledged frames are missing after the restart (frames {}..{})",
            recovered.frames,
            meta.frames_stored
        );
    }
    let lost_after_end = meta.upload_ended() && recovered.frames != meta.frames_stored;
    meta.frames_stored = recovered.frames;
    meta.bytes_stored = recovered.bytes;
    if meta.status == SessionStatus::Processing
        && !lost_after_end
        && meta.processing_attempts >= MAX_PROCESSING_ATTEMPTS
    {
        tracing::error!(
            "Session {id}: processing was started {} times and the server stopped before it \
             finished each time: not running it again",
            meta.processing_attempts
        );
        let why = format!(
            "processing stopped the server twice (it was started {} times and the server \
             stopped before it finished each time, e.g. out of memory): it is not run again; \
             the frames are kept: delete the session (DELETE /api/sessions/{id}), or download \
             its frames and send them again at a smaller size",
            meta.processing_attempts
        );
        lifecycle::fail(&mut meta, why);
        return save(app, meta).await;
    }
    if meta.status == SessionStatus::Processing && !lost_after_end {
        let signal = match signal.as_deref().map(SignalTrack::parse).transpose() {
            Ok(signal) => signal,
            Err(err) => {
                lifecycle::fail(
                    &mut meta,
                    format!("the stored signal file is invalid: {err}"),
                );
                return save(app, meta).await;
            }
        };
        tracing::info!(
            "Session {id}: {} frames verified; processing stopped with the server, running it again",
            recovered.frames
        );
        let (live, _) = app.live.insert(meta);
        processing::start(app, live, signal).await;
        return Ok(());
    }
    let was = meta.status;
    if lost_after_end {
        // Frames acknowledged before SESSION_END are missing: the upload must continue.
        meta.ended_at = None;
    }
    if was != SessionStatus::Detached || lost_after_end {
        let grace = app.settings.sweeper.resume_grace;
        let why = format!("the server stopped while the session was {}", was.as_str());
        lifecycle::detach(&mut meta, why, grace);
    }
    tracing::info!(
        "Session {id}: recovered {} frames ({} cut off); detached, resumable until {}",
        recovered.frames,
        recovered.dropped,
        meta.resumable_until
            .map_or_else(|| "-".into(), crate::store::rfc3339)
    );
    // Should the disk refuse the state (still full), it is kept live, as recomputed, and
    // saved again until the disk takes it.
    let (live, _) = app.live.insert(meta);
    crate::session::resave::save_or_retry(app, live).await;
    Ok(())
}

async fn save(app: &AppState, meta: SessionMeta) -> Result<(), StoreError> {
    app.store.save_meta(meta).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Condvar, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::session::processing::tests::HookedStore;
    use crate::store::{LocalStore, SessionStore};
    use crate::Config;

    /// Where recovery waits until the test lets it go on.
    #[derive(Default)]
    struct Gate {
        open: Mutex<bool>,
        changed: Condvar,
    }

    impl Gate {
        fn pass(&self) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.changed.wait(open).unwrap();
            }
        }

        fn open(&self) {
            *self.open.lock().unwrap() = true;
            self.changed.notify_all();
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tcp.read_to_string(&mut response).await.unwrap();
        response
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_answers_while_many_sessions_are_still_being_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStore::open(dir.path()).unwrap();
        let ids: Vec<String> = (0..50).map(|i| format!("s{i:02}")).collect();
        for id in &ids {
            let mut meta = SessionMeta::new(id.clone(), id.clone(), SessionStatus::Receiving);
            (meta.fps, meta.width, meta.height) = (30.0, 16, 16);
            local.create(&meta).unwrap();
        }
        // Recovery of each session waits at the gate.
        let gate = Arc::new(Gate::default());
        let (entered_tx, mut entered) = watch::channel(0usize);
        let mut store = HookedStore::new(local);
        let held = Arc::clone(&gate);
        store.before_recover = Box::new(move |_| {
            entered_tx.send_modify(|n| *n += 1);
            held.pass();
        });
        let config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        let app = AppState::with_store(config.settings().unwrap(), Arc::new(store)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(crate::serve(listener, app.clone(), async {
            let _ = stopped.await;
        }));

        // Recovery runs, several sessions at once, and has finished none of them...
        tokio::time::timeout(
            Duration::from_secs(30),
            entered.wait_for(|n| *n == PARALLEL),
        )
        .await
        .expect("recovery did not start")
        .unwrap();
        // ... while the server answers.
        let health = get(addr, "/health").await;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        for id in &ids {
            assert_eq!(
                app.store.blocking().load_meta(id).unwrap().status,
                SessionStatus::Receiving
            );
        }

        gate.open();
        for id in &ids {
            app.recovering.wait_for(id).await.unwrap();
            let meta = app.store.blocking().load_meta(id).unwrap();
            assert_eq!(meta.status, SessionStatus::Detached, "{id}");
        }
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
