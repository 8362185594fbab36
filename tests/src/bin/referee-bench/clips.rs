use super::*;
use referee_protocol::{ControlMessage, Stage};

/// Seconds between the touches of the bout.
const TOUCH_EVERY_S: f64 = 20.0;

/// What the clips section measured: from SIGNAL sent to each clip.
#[derive(serde::Serialize)]
pub(crate) struct ClipsResults {
    pub(crate) bout_secs: u32,
    pub(crate) frames: u64,
    pub(crate) clips: u64,
    /// SIGNAL sent → the first clip's PROGRESS.
    pub(crate) first_clip_progress_ms: Option<f64>,
    /// SIGNAL sent → the first SSE `clip_ready`.
    pub(crate) first_clip_sse_ms: Option<f64>,
    pub(crate) clip_ms_median: Option<f64>,
    pub(crate) clip_ms_max: Option<f64>,
    pub(crate) all_clips_ms: Option<f64>,
    pub(crate) video_reconstruction_after_ms: f64,
}

/// The signal file of a bout of `secs` seconds: a touch every [`TOUCH_EVERY_S`] (the first at
/// 10 s, like an action's first phrase), a halt after every third.
fn signal(secs: u32) -> String {
    let mut text = String::from("0.000 start\n");
    let mut t = 10.0;
    let mut n = 0;
    while t < f64::from(secs) {
        n += 1;
        text.push_str(&format!("{t:.3} touch_left score={n}-0\n"));
        if n % 3 == 0 && t + 1.0 < f64::from(secs) {
            text.push_str(&format!("{:.3} halt\n", t + 1.0));
        }
        t += TOUCH_EVERY_S;
    }
    text
}

/// When the first `clip_ready` event arrives on the session's event stream, read on its own
/// thread from before the signal is sent.
fn first_sse_clip(addr: SocketAddr, id: &str) -> Result<std::thread::JoinHandle<Option<Instant>>> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    write!(
        stream,
        "GET /api/sessions/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )?;
    Ok(std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let line = line.ok()?;
            if line == "event: clip_ready" {
                return Some(Instant::now());
            }
            if line == "event: complete" || line == "event: failed" {
                return None;
            }
        }
        None
    }))
}

/// Streams a bout of `secs` seconds of 720p frames, sends its signal file, and times the
/// clips: from SIGNAL sent to each clip's PROGRESS, and to the first `clip_ready`.
async fn bout(
    server: &Server,
    payloads: Arc<Vec<Bytes>>,
    size: (u32, u32),
    secs: u32,
) -> Result<ClipsResults> {
    let frames = u64::from(secs) * 30;
    let (ws, _) = tokio_tungstenite::connect_async(&server.ws_url()).await?;
    let (mut sink, mut stream) = ws.split();
    let start = session_start("clips".into(), frames, size);
    sink.send(Message::text(start.to_json())).await?;
    let (id, window) = match next_message(&mut stream).await? {
        ControlMessage::SessionStarted {
            session_id, window, ..
        } => (session_id, u64::from(window).max(1)),
        other => bail!("expected SESSION_STARTED, got {other:?}"),
    };
    let mut crcs = Vec::with_capacity(frames as usize);
    let mut acked = 0;
    for index in 0..frames {
        while index - acked >= window {
            if let ControlMessage::Ack { frames_stored } = next_message(&mut stream).await? {
                acked = acked.max(frames_stored);
            }
        }
        let payload = &payloads[index as usize % payloads.len()];
        crcs.push(crc32c::crc32c(payload));
        let message = encode_frame(index, referee_tests::pts_us(index), 0, payload)?;
        sink.send(Message::Binary(message)).await?;
    }
    let end = ControlMessage::SessionEnd {
        frames_sent: frames,
        signal_follows: true,
        digest: FrameDigest::of(crcs),
    };
    sink.send(Message::text(end.to_json())).await?;
    loop {
        match next_message(&mut stream).await? {
            ControlMessage::SessionEnded { .. } => break,
            ControlMessage::Error { code, message, .. } => bail!("ERROR {code:?}: {message}"),
            _ => {}
        }
    }
    let sse = first_sse_clip(server.addr, &id)?;
    let signal = ControlMessage::Signal {
        file_name: "bench.txt".into(),
        text: signal(secs),
    };
    let sent = Instant::now();
    sink.send(Message::text(signal.to_json())).await?;
    let mut clip_ms = Vec::new();
    let mut clips = 0;
    let video_started = loop {
        match next_message(&mut stream).await? {
            ControlMessage::Progress {
                stage: Stage::Clips,
                done,
                total,
                ..
            } => {
                clips = total;
                if done > 0 {
                    clip_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                }
            }
            ControlMessage::Progress { .. } | ControlMessage::Complete { .. } => {
                break sent.elapsed()
            }
            ControlMessage::Error { code, message, .. } => bail!("ERROR {code:?}: {message}"),
            _ => {}
        }
    };
    let _ = sink.close().await;
    let sse_first = tokio::task::spawn_blocking(move || sse.join().ok().flatten()).await?;
    let mut each: Vec<f64> = std::iter::once(0.0)
        .chain(clip_ms.iter().copied())
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    each.sort_by(f64::total_cmp);
    Ok(ClipsResults {
        bout_secs: secs,
        frames,
        clips,
        first_clip_progress_ms: clip_ms.first().copied(),
        first_clip_sse_ms: sse_first.map(|at| (at - sent).as_secs_f64() * 1e3),
        clip_ms_median: each.get(each.len() / 2).copied(),
        clip_ms_max: each.last().copied(),
        all_clips_ms: clip_ms.last().copied(),
        video_reconstruction_after_ms: video_started.as_secs_f64() * 1e3,
    })
}

pub(crate) fn section(
    bench: &Bench,
    data: &Path,
    videos: &[Video],
    secs: u32,
) -> Result<ClipsResults> {
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG" && !v.is_long())
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    eprintln!("clips: a {secs} s 720p bout, a touch every {TOUCH_EVERY_S} s");
    let server = Server::start(bench, &data.join("clips"), &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(bout(&server, payloads, (video.width, video.height), secs));
    server.stop();
    outcome
}

pub(crate) fn targets(clips: &Value) -> Vec<Value> {
    if clips.is_null() {
        return Vec::new();
    }
    let first = clips["first_clip_progress_ms"].as_f64().unwrap_or(f64::NAN);
    vec![json!({
        "target": "clips: the first clip of a 10-minute 720p bout within 1 s of SIGNAL",
        "measured": format!("{first:.0} ms ({} s bout)", clips["bout_secs"]),
        "met": first < 1000.0,
    })]
}

pub(crate) fn print(clips: &Value) {
    if clips.is_null() {
        return;
    }
    let f = |key: &str| clips[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nclips: a {} s 720p bout ({} frames), {} clips",
        clips["bout_secs"], clips["frames"], clips["clips"]
    );
    println!(
        "  first clip after SIGNAL: {:.0} ms (PROGRESS), {:.0} ms (SSE clip_ready)",
        f("first_clip_progress_ms"),
        f("first_clip_sse_ms")
    );
    println!(
        "  each clip: median {:.0} ms, max {:.0} ms; all clips {:.0} ms; video_reconstruction starts at {:.0} ms",
        f("clip_ms_median"),
        f("clip_ms_max"),
        f("all_clips_ms"),
        f("video_reconstruction_after_ms")
    );
}
