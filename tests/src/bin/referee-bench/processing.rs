use super::*;

pub(crate) fn processing_all(
    bench: &Bench,
    data: &Path,
    videos: &[Video],
    quick: bool,
) -> Result<Vec<ProcessingRow>> {
    let mut rows = Vec::new();
    for video in videos.iter().filter(|v| v.codec == "MJPEG" && !v.is_long()) {
        if quick && video.height == 480 {
            continue;
        }
        eprintln!("processing: {}", video.label);
        rows.push(processing(bench, data, video)?);
    }
    Ok(rows)
}

/// Plays one session named `name` of `frames` of `payloads` (see [`play`]) on its own runtime.
pub(crate) fn play_one(
    server: &Server,
    name: &str,
    payloads: Arc<Vec<Bytes>>,
    frames: u64,
    video: &Video,
    process: bool,
) -> Result<Played> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(play(
        server.ws_url(),
        name.into(),
        payloads,
        frames,
        (video.width, video.height),
        process,
        Arc::new(Barrier::new(1)),
    ))
}

pub(crate) fn processing(bench: &Bench, data: &Path, video: &Video) -> Result<ProcessingRow> {
    let payloads = Arc::new(jpegs(video)?);
    let frames = payloads.len() as u64;
    let server = Server::start(bench, &data.join("processing"), &[])?;
    let played = play_one(&server, "processing", payloads, frames, video, true);
    let server_rss = server.peak_rss_mb();
    server.stop();
    let played = played?;
    let start = played
        .processing_started
        .ok_or_else(|| anyhow!("processing never started"))?;
    let mut stages = BTreeMap::new();
    let mut order = Vec::new();
    for pair in played.stages.windows(2) {
        let ((stage, from), (_, to)) = (&pair[0], &pair[1]);
        let secs = (*to - *from).as_secs_f64();
        order.push(stage.clone());
        stages.insert(
            stage.clone(),
            StageTime {
                seconds: secs,
                seconds_per_1000_frames: secs * 1000.0 / frames as f64,
            },
        );
    }
    let end = played
        .stages
        .last()
        .map(|(_, at)| *at)
        .ok_or_else(|| anyhow!("no COMPLETE"))?;
    let total = (end - start).as_secs_f64();
    let duration = frames as f64 / 30.0;
    Ok(ProcessingRow {
        video: video.label.clone(),
        width: video.width,
        height: video.height,
        frames,
        stages,
        stage_order: order,
        seconds: total,
        seconds_per_1000_frames: total * 1000.0 / frames as f64,
        fps: frames as f64 / total,
        realtime_factor_at_30fps: duration / total,
        server_peak_rss_mb: server_rss,
    })
}

/// One session processed: each stage's time, and the whole.
#[derive(serde::Serialize)]
pub(crate) struct ProcessingRow {
    pub(crate) video: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) frames: u64,
    /// By stage name (`video_reconstruction`, `analysis`).
    pub(crate) stages: BTreeMap<String, StageTime>,
    /// The stages in the order they ran.
    pub(crate) stage_order: Vec<String>,
    /// From the SIGNAL (processing starts) to COMPLETE.
    pub(crate) seconds: f64,
    pub(crate) seconds_per_1000_frames: f64,
    pub(crate) fps: f64,
    pub(crate) realtime_factor_at_30fps: f64,
    pub(crate) server_peak_rss_mb: f64,
}

/// One stage's time.
#[derive(serde::Serialize)]
pub(crate) struct StageTime {
    pub(crate) seconds: f64,
    pub(crate) seconds_per_1000_frames: f64,
}
