use super::*;

// ---------------------------------------------------------------------------------------------
// End to end

pub(crate) fn e2e(bench: &Bench, data: &Path, videos: &[Video], quick: bool) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    for video in videos {
        if quick && video.height != 720 {
            continue;
        }
        // Passthrough on the long video when there is one of the same size.
        let long = videos
            .iter()
            .any(|v| v.is_long() && v.height == video.height);
        let cases: &[&[&str]] = match (video.codec, video.is_long()) {
            ("MJPEG", true) => &[&[]],
            ("MJPEG", false) if long => &[&["--reencode"]],
            ("MJPEG", false) => &[&[], &["--reencode"]],
            _ => &[&[]],
        };
        for extra in cases {
            eprintln!("e2e: {} {}", video.label, extra.join(" "));
            rows.push(bench.repeated("fps", || e2e_case(bench, data, video, extra))?);
        }
    }
    Ok(rows)
}

pub(crate) fn e2e_case(
    bench: &Bench,
    data: &Path,
    video: &Video,
    extra: &[&str],
) -> Result<E2eRow> {
    let case: String = format!("e2e-{}{}", video.label, extra.join(""))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let server = Server::start(bench, &data.join(case), &[])?;
    let state = data.join("client-state");
    let log = File::create(data.join("e2e.client.log"))?;
    // With a signal file the server starts processing only once the client has sent it,
    // after it prints `Session ended`: the measurements below see the upload alone.
    let signal = data.join("e2e.signal.txt");
    fs::write(&signal, "0.000 start\n")?;
    let spawned = Instant::now();
    let mut client = Command::new(bench.bins.join("referee-client"))
        .arg(server.http_url())
        .arg("--video")
        .arg(&video.path)
        .arg("--signal")
        .arg(&signal)
        .args(["--name", "bench"])
        .args(extra)
        .env("REFEREE_STATE_DIR", &state)
        .env("REFEREE_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("cannot start referee-client")?;
    let pid = client.id();
    let stdout = client
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no client stdout"))?;
    let mut started = None;
    let mut startup_cpu = f64::NAN;
    let mut mode = String::new();
    let mut measured = None;
    let mut transcript = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        transcript.push_str(&line);
        transcript.push('\n');
        if line.starts_with("Session started:") {
            started = Some(Instant::now());
            startup_cpu = cpu_seconds(pid).unwrap_or(f64::NAN);
        } else if let Some(frames) = line.strip_prefix("Frames: ") {
            mode = frames.to_string();
        } else if line.starts_with("Session ended:") {
            // Every frame is durable: measure both processes now, before processing starts
            // to weigh on the server.
            let ended = Instant::now();
            measured = Some((
                ended,
                cpu_seconds(pid).unwrap_or(f64::NAN),
                peak_rss_mb(pid).unwrap_or(f64::NAN),
                server.cpu_used(),
                server.peak_rss_mb(),
            ));
            break;
        }
    }
    let _ = client.kill();
    let _ = client.wait();
    let (Some(started), Some((ended, client_cpu, client_rss, server_cpu, server_rss))) =
        (started, measured)
    else {
        server.stop();
        bail!("the client did not finish streaming:\n{transcript}");
    };
    let session = server.session("bench")?;
    server.stop();
    let frames = session["frames_stored"].as_u64().unwrap_or(0);
    let bytes = session["bytes_stored"].as_u64().unwrap_or(0);
    let secs = (ended - started).as_secs_f64();
    let wall = (ended - spawned).as_secs_f64();
    Ok(E2eRow {
        video: video.label.clone(),
        args: extra.join(" "),
        mode: if mode.contains("passthrough") {
            "passthrough"
        } else {
            "re-encode"
        },
        frames,
        payload_bytes: bytes,
        seconds: secs,
        fps: frames as f64 / secs,
        mb_per_s: bytes as f64 / secs / 1e6,
        wall_seconds_from_spawn: wall,
        fps_from_spawn: frames as f64 / wall,
        client_cpu_s: client_cpu,
        client_cpu_before_start_s: startup_cpu,
        client_peak_rss_mb: client_rss,
        server_cpu_s: server_cpu,
        server_peak_rss_mb: server_rss,
    })
}

/// One end-to-end run: the client streaming `video` with `args` to the server.
#[derive(serde::Serialize)]
pub(crate) struct E2eRow {
    pub(crate) video: String,
    pub(crate) args: String,
    /// `passthrough` (the stored JPEG packets sent as they are) or `re-encode`.
    pub(crate) mode: &'static str,
    pub(crate) frames: u64,
    pub(crate) payload_bytes: u64,
    /// From the client's first frame to `Session ended` (every frame durable).
    pub(crate) seconds: f64,
    pub(crate) fps: f64,
    pub(crate) mb_per_s: f64,
    pub(crate) wall_seconds_from_spawn: f64,
    pub(crate) fps_from_spawn: f64,
    pub(crate) client_cpu_s: f64,
    pub(crate) client_cpu_before_start_s: f64,
    pub(crate) client_peak_rss_mb: f64,
    pub(crate) server_cpu_s: f64,
    pub(crate) server_peak_rss_mb: f64,
}
