use super::*;

use referee_protocol::ControlMessage;

// ---------------------------------------------------------------------------------------------
// Ingest and processing: sessions played by this program

/// The JPEG frames of a Motion-JPEG test video, as stored.
pub(crate) fn jpegs(video: &Video) -> Result<Vec<Bytes>> {
    let info = VideoSource::open(&video.path, QUALITY)?.info().clone();
    let mut reader = PacketReader::open(&video.path, &info)
        .ok_or_else(|| anyhow!("{} has no JPEG packets", video.path.display()))?;
    let mut out = Vec::new();
    while let Some(frame) = reader.next_frame()? {
        out.push(Bytes::from(frame.jpeg));
    }
    Ok(out)
}

/// What one played session saw.
#[derive(Default)]
pub(crate) struct Played {
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
    pub(crate) window: u64,
    /// Time from sending a frame to the ACK that covers it, one per frame.
    pub(crate) ack_latencies: Vec<Duration>,
    /// When the last frame was acknowledged.
    pub(crate) last_ack: Option<Instant>,
    /// Stage name and when it was first reported, then "complete".
    pub(crate) stages: Vec<(String, Instant)>,
    pub(crate) processing_started: Option<Instant>,
    /// Time the sender spent with a full window, waiting for an ACK.
    pub(crate) window_wait: Duration,
    /// From the first frame sent to the last ACK.
    pub(crate) busy: Duration,
}

/// Plays one session: SESSION_START, `frames` frames (cycling through `payloads`) within the
/// window, then either closes (ingest) or ends the session with a signal and waits for
/// COMPLETE (processing). Sending starts when every session has reached `barrier`.
pub(crate) async fn play(
    url: String,
    name: String,
    payloads: Arc<Vec<Bytes>>,
    frames: u64,
    size: (u32, u32),
    process: bool,
    barrier: Arc<Barrier>,
) -> Result<Played> {
    let (ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let (mut sink, mut stream) = ws.split();
    let start = session_start(name, frames, size);
    sink.send(Message::text(start.to_json())).await?;
    let window = match next_message(&mut stream).await? {
        ControlMessage::SessionStarted { window, .. } => u64::from(window).max(1),
        other => bail!("expected SESSION_STARTED, got {other:?}"),
    };
    barrier.wait().await;

    let sent_at = Arc::new(Mutex::new(Vec::with_capacity(frames as usize)));
    let (acked_tx, mut acked_rx) = watch::channel(0u64);
    // The receiving half: ACKs, then (for processing) SESSION_ENDED, PROGRESS and COMPLETE.
    let receiver = {
        let sent_at = Arc::clone(&sent_at);
        tokio::spawn(async move {
            let mut played = Played {
                window,
                ..Played::default()
            };
            let mut acked = 0u64;
            loop {
                let msg = next_message(&mut stream).await?;
                let now = Instant::now();
                match msg {
                    ControlMessage::Ack {
                        frames_stored: stored,
                    }
                    | ControlMessage::SessionEnded {
                        frames_stored: stored,
                    } => {
                        if stored > acked {
                            let sent = sent_at.lock().map_err(|_| anyhow!("lock"))?;
                            for at in sent.iter().take(stored as usize).skip(acked as usize) {
                                played.ack_latencies.push(now - *at);
                            }
                            acked = stored;
                            played.last_ack = Some(now);
                            let _ = acked_tx.send(acked);
                        }
                        if acked == frames && !process {
                            return Ok(played);
                        }
                    }
                    ControlMessage::Progress { stage, .. } => {
                        let stage = stage.as_str().to_string();
                        if played.stages.last().map(|(s, _)| s) != Some(&stage) {
                            played.stages.push((stage, now));
                        }
                    }
                    ControlMessage::Complete { .. } => {
                        played.stages.push(("complete".into(), now));
                        return Ok(played);
                    }
                    ControlMessage::Error { code, message, .. } => {
                        bail!("the server sent ERROR {code:?}: {message}")
                    }
                    _ => {}
                }
            }
        })
    };
    let mut crcs = Vec::with_capacity(frames as usize);
    let mut bytes = 0;
    let mut window_wait = Duration::ZERO;
    let first_sent = Instant::now();
    for index in 0..frames {
        if index - *acked_rx.borrow_and_update() >= window {
            let waiting = Instant::now();
            while index - *acked_rx.borrow_and_update() >= window {
                acked_rx.changed().await?;
            }
            window_wait += waiting.elapsed();
        }
        let payload = &payloads[index as usize % payloads.len()];
        crcs.push(crc32c::crc32c(payload));
        bytes += payload.len() as u64;
        let message = encode_frame(index, referee_tests::pts_us(index), 0, payload)?;
        sent_at
            .lock()
            .map_err(|_| anyhow!("lock"))?
            .push(Instant::now());
        sink.send(Message::Binary(message)).await?;
    }
    let mut processing_started = None;
    if process {
        let end = ControlMessage::SessionEnd {
            frames_sent: frames,
            signal_follows: true,
            digest: FrameDigest::of(crcs),
        };
        sink.send(Message::text(end.to_json())).await?;
        while *acked_rx.borrow_and_update() < frames {
            acked_rx.changed().await?;
        }
        let duration = frames as f64 / 30.0;
        let text: String = (0..10)
            .map(|i| {
                format!(
                    "{:.3} touch_left score={i}-0\n",
                    duration * f64::from(i) / 10.0
                )
            })
            .collect();
        let signal = ControlMessage::Signal {
            file_name: "bench.txt".into(),
            text,
        };
        processing_started = Some(Instant::now());
        sink.send(Message::text(signal.to_json())).await?;
    }
    let mut played = receiver.await??;
    played.frames = frames;
    played.bytes = bytes;
    played.processing_started = processing_started;
    played.window_wait = window_wait;
    played.busy = played.last_ack.map_or(Duration::ZERO, |at| at - first_sent);
    let _ = sink.close().await;
    Ok(played)
}

/// What sessions played together did: the seconds from `started` to their last ACK, and
/// the frames and bytes they sent.
pub(crate) struct Totals {
    pub(crate) secs: f64,
    pub(crate) frames: u64,
    pub(crate) bytes: u64,
}

impl Totals {
    pub(crate) fn of(played: &[Played], started: Instant) -> Self {
        let end = played
            .iter()
            .filter_map(|p| p.last_ack)
            .max()
            .unwrap_or(started);
        Self {
            secs: (end - started).as_secs_f64().max(1e-9),
            frames: played.iter().map(|p| p.frames).sum(),
            bytes: played.iter().map(|p| p.bytes).sum(),
        }
    }
}

/// The `SESSION_START` of a 30 fps session `name` of `frames` JPEG frames of `size`.
pub(crate) fn session_start(name: String, frames: u64, size: (u32, u32)) -> ControlMessage {
    ControlMessage::SessionStart {
        protocol_version: referee_protocol::PROTOCOL_VERSION,
        name,
        source: "bench.avi".into(),
        fps: 30.0,
        width: size.0,
        height: size.1,
        frame_count: Some(frames),
        encoding: referee_protocol::FrameEncoding::Jpeg,
        quality: None,
        session_id: None,
        upload: None,
        bout: None,
    }
}

/// The next control message from the server (within 120 s).
pub(crate) async fn next_message<S>(stream: &mut S) -> Result<ControlMessage>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(120), stream.next()).await {
            Err(_) => bail!("the server was silent for 120 s"),
            Ok(None) => bail!("the server closed the connection"),
            Ok(Some(Err(err))) => bail!("connection failed: {err}"),
            Ok(Some(Ok(Message::Text(text)))) => {
                return ControlMessage::from_json(text.as_str())
                    .map_err(|e| anyhow!("the server sent an unreadable message: {e}"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => bail!("the server closed: {frame:?}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Every ACK latency of `played`, sorted (for [`percentile`]).
pub(crate) fn ack_latencies(played: &[Played]) -> Vec<Duration> {
    let mut latencies: Vec<Duration> = played
        .iter()
        .flat_map(|p| p.ack_latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    latencies
}

pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at].as_secs_f64() * 1e3
}
