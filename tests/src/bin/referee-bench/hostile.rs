use super::*;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Half-open connections held by the attacker, spread over this many loopback addresses
/// (each below the server's default per-client cap).
pub(crate) const HALF_OPEN: usize = 1000;
pub(crate) const HALF_OPEN_ADDRESSES: usize = 8;
/// Live watchers: half live views, half event streams, of the uploads.
pub(crate) const WATCHERS: usize = 200;
pub(crate) const WATCHER_ADDRESSES: usize = 8;
pub(crate) const UPLOADS: usize = 8;

pub fn section(bench: &Bench, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG" && !v.is_long())
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    let frames = if quick { 250 } else { 500 };
    eprintln!("hostile: {UPLOADS} uploads alone");
    let alone = bench.repeated("mb_per_s", || {
        run(bench, data, video, Arc::clone(&payloads), frames, false)
    })?;
    eprintln!("hostile: {UPLOADS} uploads beside {HALF_OPEN} half-open connections and {WATCHERS} watchers");
    let attacked = bench.repeated("mb_per_s", || {
        run(bench, data, video, Arc::clone(&payloads), frames, true)
    })?;
    let kept = attacked["mb_per_s"].as_f64().unwrap_or(f64::NAN)
        / alone["mb_per_s"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({ "alone": alone, "attacked": attacked, "rate_kept": kept }))
}

/// A loopback connection to `server` from `from` (127.0.0.N).
pub(crate) async fn connect_from(
    from: &str,
    server: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    let ip: std::net::IpAddr = from
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(server).await
}

/// Holds a request sent halfway, and opens another each time the server closes it,
/// until `stop`.
pub(crate) async fn half_open(
    server: SocketAddr,
    from: String,
    held: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = connect_from(&from, server).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if tcp
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .is_err()
        {
            continue;
        }
        held.fetch_add(1, Ordering::Relaxed);
        // Until the server closes it (its header timeout), at most a minute.
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
        })
        .await;
        held.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Watches `path` from `from`, reading and dropping what comes, until the stream ends.
pub(crate) async fn watch(
    server: SocketAddr,
    from: String,
    path: String,
    connected: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
) {
    let Ok(mut tcp) = connect_from(&from, server).await else {
        refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    if tcp.write_all(request.as_bytes()).await.is_err() {
        refused.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut first = true;
    loop {
        match tokio::time::timeout(Duration::from_secs(600), tcp.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                if first {
                    first = false;
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        connected.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            _ => return,
        }
    }
}

/// Open descriptors of process `pid`.
pub(crate) fn open_fds(pid: u32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

pub(crate) fn rss_mb(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Waits until `counter` reaches `n`, for at most `limit`.
pub(crate) async fn reach(
    counter: &AtomicUsize,
    n: usize,
    limit: Duration,
    what: &str,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            bail!(
                "only {} of {n} {what} after {} s",
                counter.load(Ordering::Relaxed),
                limit.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The ids of the sessions whose name starts with `prefix`, once there are `n`.
pub(crate) fn session_ids(addr: SocketAddr, prefix: &str, n: usize) -> Result<Vec<String>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = http_get(addr, "/api/sessions").map_err(|e| anyhow!(e))?;
        let list: Value = serde_json::from_str(&body)?;
        let ids: Vec<String> = list["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| {
                s["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with(prefix))
            })
            .filter_map(|s| s["id"].as_str().map(String::from))
            .collect();
        if ids.len() >= n {
            return Ok(ids);
        }
        if Instant::now() > deadline {
            bail!("only {} of {n} sessions started", ids.len());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the sampler saw while the uploads ran.
#[derive(Default)]
pub(crate) struct Samples {
    pub(crate) health: Vec<Duration>,
    pub(crate) health_failed: usize,
    pub(crate) rss_mb: f64,
    pub(crate) fds: usize,
    pub(crate) half_open_min: usize,
}

pub(crate) fn run(
    bench: &Bench,
    data: &Path,
    video: &Video,
    payloads: Arc<Vec<Bytes>>,
    frames: u64,
    attack: bool,
) -> Result<Value> {
    let label = if attack { "hostile" } else { "hostile-alone" };
    let server = Server::start(bench, &data.join(label), &[])?;
    let pid = server.pid();
    let addr = server.addr;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let held = Arc::new(AtomicUsize::new(0));
    let connected = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let size = (video.width, video.height);
    let url = server.ws_url();
    let outcome = runtime.block_on(async {
        let mut background = Vec::new();
        if attack {
            for i in 0..HALF_OPEN {
                let from = format!("127.0.0.{}", 10 + i % HALF_OPEN_ADDRESSES);
                background.push(tokio::spawn(half_open(
                    addr,
                    from,
                    Arc::clone(&held),
                    Arc::clone(&stop),
                )));
            }
            reach(
                &held,
                HALF_OPEN,
                Duration::from_secs(60),
                "half-open connections",
            )
            .await?;
        }
        let barrier = Arc::new(Barrier::new(UPLOADS + 1));
        let uploads = spawn_uploads(&url, "hostile", UPLOADS, &payloads, frames, size, &barrier);
        if attack {
            let ids = tokio::task::spawn_blocking(move || session_ids(addr, "hostile", UPLOADS))
                .await??;
            for i in 0..WATCHERS {
                let id = &ids[(i / 2) % ids.len()];
                let path = if i % 2 == 0 {
                    format!("/api/sessions/{id}/live.mjpeg")
                } else {
                    format!("/api/sessions/{id}/events")
                };
                let from = format!("127.0.0.{}", 30 + i % WATCHER_ADDRESSES);
                background.push(tokio::spawn(watch(
                    addr,
                    from,
                    path,
                    Arc::clone(&connected),
                    Arc::clone(&refused),
                )));
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while connected.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < WATCHERS {
                if Instant::now() > deadline {
                    bail!("the watchers did not all get an answer within 60 s");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // Sampling beside the uploads: /health latency, RSS, descriptors.
        let sampling = Arc::new(AtomicBool::new(true));
        let sampler = {
            let (sampling, held) = (Arc::clone(&sampling), Arc::clone(&held));
            std::thread::spawn(move || {
                let mut s = Samples {
                    half_open_min: usize::MAX,
                    ..Samples::default()
                };
                while sampling.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    match http_get(addr, "/health") {
                        Ok((200, _)) => s.health.push(asked.elapsed()),
                        _ => s.health_failed += 1,
                    }
                    s.rss_mb = s.rss_mb.max(rss_mb(pid).unwrap_or(0.0));
                    s.fds = s.fds.max(open_fds(pid).unwrap_or(0));
                    s.half_open_min = s.half_open_min.min(held.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(50));
                }
                s
            })
        };
        barrier.wait().await;
        let started = Instant::now();
        let mut played = Vec::new();
        for upload in uploads {
            played.push(upload.await??);
        }
        sampling.store(false, Ordering::Relaxed);
        let samples = sampler
            .join()
            .map_err(|_| anyhow!("the sampler panicked"))?;
        let (_, metrics) = http_get(addr, "/metrics").map_err(|e| anyhow!(e))?;
        stop.store(true, Ordering::Relaxed);
        for task in background {
            task.abort();
        }
        Ok::<_, anyhow::Error>((started, played, samples, metrics))
    });
    let peak = server.peak_rss_mb();
    server.stop();
    let (started, played, samples, metrics) = outcome?;
    let Totals {
        secs,
        frames: total_frames,
        bytes: total_bytes,
    } = Totals::of(&played, started);
    let mut health = samples.health.clone();
    health.sort_unstable();
    let window = played.first().map_or(0, |p| p.window);
    let largest = payloads.iter().map(Bytes::len).max().unwrap_or(0) as f64;
    let windows_mb = UPLOADS as f64 * window as f64 * largest / 1e6;
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
    };
    Ok(json!({
        "attack": attack,
        "uploads": UPLOADS,
        "frames_per_upload": frames,
        "seconds": secs,
        "fps": total_frames as f64 / secs,
        "mb_per_s": total_bytes as f64 / secs / 1e6,
        "half_open_held_min": if attack { samples.half_open_min } else { 0 },
        "watchers_connected": connected.load(Ordering::Relaxed),
        "watchers_refused": refused.load(Ordering::Relaxed),
        "health_p50_ms": percentile(&health, 0.5),
        "health_p99_ms": percentile(&health, 0.99),
        "health_max_ms": percentile(&health, 1.0),
        "health_samples": health.len(),
        "health_failed": samples.health_failed,
        "server_rss_max_mb": samples.rss_mb,
        "server_peak_rss_mb": peak,
        "server_fds_max": samples.fds,
        "server_connections_open_at_end": metric("referee_connections_open"),
        "server_header_timeouts": metric("referee_http_header_timeouts_total"),
        "advertised_windows_mb": windows_mb,
        "rss_bound_mb": 100.0 + windows_mb,
    }))
}

pub fn targets(hostile: &Value) -> Vec<Value> {
    let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    let (alone, attacked) = (&hostile["alone"], &hostile["attacked"]);
    if attacked.is_null() {
        return Vec::new();
    }
    vec![
        json!({
            "target": "hostile: uploads keep >= 80% of their rate beside 1000 half-open connections and 200 watchers",
            "measured": format!("{:.0} MB/s vs {:.0} MB/s alone = {:.0}%", num(attacked, "mb_per_s"), num(alone, "mb_per_s"), num(hostile, "rate_kept") * 100.0),
            "met": num(hostile, "rate_kept") >= 0.8,
        }),
        json!({
            "target": "hostile: server RSS < 100 MB + the advertised windows",
            "measured": format!("{:.0} MB vs {:.0} MB", num(attacked, "server_peak_rss_mb"), num(attacked, "rss_bound_mb")),
            "met": num(attacked, "server_peak_rss_mb") < num(attacked, "rss_bound_mb"),
        }),
        json!({
            "target": "hostile: /health answers in < 100 ms",
            "measured": format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed", num(attacked, "health_p50_ms"), num(attacked, "health_p99_ms"), num(attacked, "health_max_ms"), attacked["health_failed"]),
            "met": num(attacked, "health_max_ms") < 100.0 && attacked["health_failed"] == 0,
        }),
    ]
}

pub fn print(hostile: &Value) {
    if hostile.is_null() {
        return;
    }
    let f = |v: &Value, key: &str, digits: usize| match v[key].as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    };
    println!("\nHostile peers: {UPLOADS} uploads of 720p frames, alone and beside {HALF_OPEN} half-open connections + {WATCHERS} watchers");
    println!(
        "  {:<9} {:>7} {:>9} {:>10} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "run",
        "MB/s",
        "half-open",
        "watchers",
        "fds max",
        "RSS max",
        "RSS bound",
        "health50",
        "health99",
        "healthmax"
    );
    for (name, r) in [
        ("alone", &hostile["alone"]),
        ("attacked", &hostile["attacked"]),
    ] {
        println!(
            "  {:<9} {:>7} {:>9} {:>10} {:>9} {:>6}MB {:>7}MB {:>7}ms {:>7}ms {:>7}ms",
            name,
            f(r, "mb_per_s", 0),
            f(r, "half_open_held_min", 0),
            format!("{}/{}", r["watchers_connected"], WATCHERS),
            f(r, "server_fds_max", 0),
            f(r, "server_peak_rss_mb", 0),
            f(r, "rss_bound_mb", 0),
            f(r, "health_p50_ms", 1),
            f(r, "health_p99_ms", 1),
            f(r, "health_max_ms", 1)
        );
    }
}
