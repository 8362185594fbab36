use super::*;

/// Frame times the dashboard's player asks for in one request (`TIMES_PER_REQUEST` of
/// server/web/player.js).
pub(crate) const TIMES_PER_REQUEST: u64 = 5000;

/// A GET whose body may be binary: the status, the body's length and how long it took.
pub(crate) fn timed_get(addr: SocketAddr, path: &str) -> Result<(u16, usize, Duration)> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let elapsed = started.elapsed();
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP header in the answer to {path}"))?;
    let status = String::from_utf8_lossy(&response[..head_end])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, response.len() - head_end - 4, elapsed))
}

/// Latency percentiles (ms) and the rate of `paths` asked for one after another.
pub(crate) fn measure(addr: SocketAddr, paths: &[String]) -> Result<Requests> {
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(paths.len());
    let mut bytes = 0;
    for path in paths {
        let (status, len, elapsed) = timed_get(addr, path)?;
        if status != 200 {
            bail!("GET {path}: {status}");
        }
        latencies.push(elapsed);
        bytes += len;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    latencies.sort_unstable();
    Ok(Requests {
        requests: paths.len(),
        per_s: paths.len() as f64 / secs,
        bytes_avg: bytes / paths.len().max(1),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
    })
}

/// Requests asked one after another: how many, how fast, and their latency.
#[derive(serde::Serialize)]
pub(crate) struct Requests {
    pub(crate) requests: usize,
    pub(crate) per_s: f64,
    pub(crate) bytes_avg: usize,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// The player section: a session's stored frames and frame times, as the player asks.
#[derive(serde::Serialize)]
pub(crate) struct PlayerResults {
    pub(crate) frames_stored: u64,
    pub(crate) frame_times: Requests,
    pub(crate) frames_in_order: Requests,
    pub(crate) frames_jumps: Requests,
    pub(crate) server_peak_rss_mb: f64,
}

pub fn section(bench: &Bench, data: &Path, videos: &[Video], quick: bool) -> Result<PlayerResults> {
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG")
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    let frames: u64 = if quick { 1500 } else { 6000 };
    eprintln!("player: {frames} stored 720p frames");
    let server = Server::start(bench, &data.join("player"), &[])?;
    // Stored, not processed: the session is left as an interrupted upload.
    let played = play_one(&server, "player", payloads, frames, video, false);
    let outcome = played.and_then(|_| {
        let session = server.session("player")?;
        let id = session["id"].as_str().unwrap_or_default().to_string();
        let base = format!("/api/sessions/{id}");
        let times: Vec<String> = (0..20)
            .map(|i| {
                let from = (i * TIMES_PER_REQUEST) % frames;
                format!("{base}/frames?from={from}&count={TIMES_PER_REQUEST}")
            })
            .collect();
        let in_order: Vec<String> = (0..frames.min(900))
            .map(|i| format!("{base}/frames/{i}.jpg"))
            .collect();
        // Jumps: a fixed spread of frames over the session (no randomness to reproduce).
        let jumps: Vec<String> = (0..300u64)
            .map(|i| format!("{base}/frames/{}.jpg", (i * 7919) % frames))
            .collect();
        Ok(PlayerResults {
            frames_stored: frames,
            frame_times: measure(server.addr, &times)?,
            frames_in_order: measure(server.addr, &in_order)?,
            frames_jumps: measure(server.addr, &jumps)?,
            server_peak_rss_mb: server.peak_rss_mb(),
        })
    });
    server.stop();
    outcome
}

pub fn print(player: &Value) {
    if player.is_null() {
        return;
    }
    let f = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "\nplayer: a session of {} stored 720p frames, not processed (an interrupted upload)",
        player["frames_stored"]
    );
    println!(
        "  {:<32} {:>9} {:>9} {:>9} {:>9}",
        "request", "per s", "p50 ms", "p99 ms", "max ms"
    );
    for (key, label) in [
        ("frame_times", "frame times (5000 a request)"),
        ("frames_in_order", "stored frames, in order"),
        ("frames_jumps", "stored frames, jumps"),
    ] {
        let row = &player[key];
        println!(
            "  {:<32} {:>9.0} {:>9.2} {:>9.2} {:>9.2}",
            label,
            f(row, "per_s"),
            f(row, "p50_ms"),
            f(row, "p99_ms"),
            f(row, "max_ms")
        );
    }
}
