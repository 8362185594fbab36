use super::*;

pub(crate) fn ingest_all(
    bench: &Bench,
    data: &Path,
    videos: &[Video],
    quick: bool,
) -> Result<Value> {
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG")
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    let mut rows = Vec::new();
    let scale = if quick { 1 } else { 2 };
    for (sessions, frames) in [(1usize, 1500u64), (8, 250), (32, 75)] {
        eprintln!("ingest: {sessions} sessions");
        rows.push(bench.repeated("mb_per_s", || {
            ingest(
                bench,
                data,
                video,
                Arc::clone(&payloads),
                sessions,
                frames * scale,
            )
        })?);
    }
    Ok(Value::Array(rows))
}

/// Starts `sessions` uploads named `prefix0`, `prefix1`... with [`play`] (no processing);
/// they send once everyone has reached `barrier`.
pub(crate) fn spawn_uploads(
    url: &str,
    prefix: &str,
    sessions: usize,
    payloads: &Arc<Vec<Bytes>>,
    frames: u64,
    size: (u32, u32),
    barrier: &Arc<Barrier>,
) -> Vec<tokio::task::JoinHandle<Result<Played>>> {
    (0..sessions)
        .map(|i| {
            tokio::spawn(play(
                url.to_string(),
                format!("{prefix}{i}"),
                Arc::clone(payloads),
                frames,
                size,
                false,
                Arc::clone(barrier),
            ))
        })
        .collect()
}

/// Plays `sessions` uploads (see [`spawn_uploads`]) that start together: when they started,
/// and what each played.
pub(crate) async fn upload_together(
    url: &str,
    prefix: &str,
    sessions: usize,
    payloads: &Arc<Vec<Bytes>>,
    frames: u64,
    size: (u32, u32),
) -> Result<(Instant, Vec<Played>)> {
    let barrier = Arc::new(Barrier::new(sessions + 1));
    let tasks = spawn_uploads(url, prefix, sessions, payloads, frames, size, &barrier);
    barrier.wait().await;
    let started = Instant::now();
    let mut played = Vec::new();
    for task in tasks {
        played.push(task.await??);
    }
    Ok((started, played))
}

pub(crate) fn ingest(
    bench: &Bench,
    data: &Path,
    video: &Video,
    payloads: Arc<Vec<Bytes>>,
    sessions: usize,
    frames: u64,
) -> Result<IngestRow> {
    let server = Server::start(bench, &data.join(format!("ingest{sessions}")), &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let own_cpu_before = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
    let size = (video.width, video.height);
    let url = server.ws_url();
    let outcome = runtime.block_on(upload_together(
        &url, "ingest", sessions, &payloads, frames, size,
    ));
    let own_cpu = cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - own_cpu_before;
    let server_cpu = server.cpu_used();
    let server_rss = server.peak_rss_mb();
    server.stop();
    let (started, played) = outcome?;
    let Totals {
        secs,
        frames: total_frames,
        bytes: total_bytes,
    } = Totals::of(&played, started);
    let latencies = ack_latencies(&played);
    let window = played.first().map_or(0, |p| p.window);
    let largest = payloads.iter().map(Bytes::len).max().unwrap_or(0) as f64;
    let windows_mb = sessions as f64 * window as f64 * largest / 1e6;
    Ok(IngestRow {
        sessions,
        frames_per_session: frames,
        frame_bytes_avg: total_bytes / total_frames.max(1),
        window,
        seconds: secs,
        fps: total_frames as f64 / secs,
        gb_per_s: total_bytes as f64 / secs / 1e9,
        mb_per_s: total_bytes as f64 / secs / 1e6,
        ack_p50_ms: percentile(&latencies, 0.5),
        ack_p99_ms: percentile(&latencies, 0.99),
        window_full_fraction: played
            .iter()
            .map(|p| p.window_wait.as_secs_f64() / p.busy.as_secs_f64().max(1e-9))
            .sum::<f64>()
            / played.len().max(1) as f64,
        server_cpu_s: server_cpu,
        server_peak_rss_mb: server_rss,
        advertised_windows_mb: windows_mb,
        rss_bound_mb: 100.0 + windows_mb,
        bench_clients_cpu_s: own_cpu,
    })
}

/// `sessions` concurrent uploads of `frames_per_session` frames each, as fast as the
/// window allows.
#[derive(serde::Serialize)]
pub(crate) struct IngestRow {
    pub(crate) sessions: usize,
    pub(crate) frames_per_session: u64,
    pub(crate) frame_bytes_avg: u64,
    /// The window the server advertised.
    pub(crate) window: u64,
    pub(crate) seconds: f64,
    pub(crate) fps: f64,
    pub(crate) gb_per_s: f64,
    pub(crate) mb_per_s: f64,
    /// From sending a frame to the ACK that covers it.
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    /// The share of the time a sender waited with a full window.
    pub(crate) window_full_fraction: f64,
    pub(crate) server_cpu_s: f64,
    pub(crate) server_peak_rss_mb: f64,
    pub(crate) advertised_windows_mb: f64,
    pub(crate) rss_bound_mb: f64,
    pub(crate) bench_clients_cpu_s: f64,
}
