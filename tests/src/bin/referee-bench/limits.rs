use super::*;

// ---------------------------------------------------------------------------------------------
// Limits

/// Runs `--limit KIND VIDEO [THREADS]` in a child process, pinned to one core with `taskset`
/// when `one_core`.
pub(crate) fn limit(kind: &str, video: &Video, threads: usize, one_core: bool) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let mut cmd = if one_core {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", "0"]).arg(&exe);
        cmd
    } else {
        Command::new(&exe)
    };
    let output = cmd
        .args(["--limit", kind])
        .arg(&video.path)
        .arg(threads.to_string())
        .output()
        .with_context(|| format!("cannot run the {kind} limit (is taskset installed?)"))?;
    if !output.status.success() {
        bail!(
            "the {kind} limit failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut value: Value = serde_json::from_slice(&output.stdout)?;
    value["one_core"] = json!(one_core);
    value["video"] = json!(video.label);
    if let Some(fps) = value["fps"].as_f64() {
        value["mb_per_s"] = json!(fps * video.bytes as f64 / f64::from(video.frames) / 1e6);
    }
    Ok(value)
}

/// The child side of [`limit`]: measures one thing and prints it as JSON.
pub(crate) fn limit_child(args: &[String]) -> Result<()> {
    let [kind, video, threads, ..] = args else {
        bail!("--limit KIND VIDEO THREADS");
    };
    let video = PathBuf::from(video);
    let threads: usize = threads.parse()?;
    referee_client::source::quiet_opencv(false);
    let result = match kind.as_str() {
        "decode" => {
            let (mut decoder, _) = Decoder::open(&video)?;
            let started = Instant::now();
            let mut frames = 0u64;
            while decoder.next_frame()?.is_some() {
                frames += 1;
            }
            rate(frames, started.elapsed(), 0)
        }
        "decode-encode" => {
            let mut source = VideoSource::open(&video, QUALITY)?;
            let started = Instant::now();
            let (mut frames, mut bytes) = (0u64, 0u64);
            while let Some(frame) = source.next_frame()? {
                frames += 1;
                bytes += frame.jpeg.len() as u64;
            }
            rate(frames, started.elapsed(), bytes)
        }
        "decode-encode-all" => {
            // One whole decode + encode per thread, started together: what every core can do.
            let barrier = Arc::new(std::sync::Barrier::new(threads + 1));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (video, barrier) = (video.clone(), Arc::clone(&barrier));
                    std::thread::spawn(move || -> Result<(u64, u64)> {
                        let mut source = VideoSource::open(&video, QUALITY)?;
                        barrier.wait();
                        let (mut frames, mut bytes) = (0u64, 0u64);
                        while let Some(frame) = source.next_frame()? {
                            frames += 1;
                            bytes += frame.jpeg.len() as u64;
                        }
                        Ok((frames, bytes))
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            let (mut frames, mut bytes) = (0, 0);
            for worker in workers {
                let (f, b) = worker
                    .join()
                    .map_err(|_| anyhow!("a decode thread panicked"))??;
                frames += f;
                bytes += b;
            }
            let mut r = rate(frames, started.elapsed(), bytes);
            r["threads"] = json!(threads);
            r
        }
        "packets" => {
            let info = VideoSource::open(&video, QUALITY)?.info().clone();
            let mut reader = PacketReader::open(&video, &info)
                .ok_or_else(|| anyhow!("{} has no JPEG packets", video.display()))?;
            let started = Instant::now();
            let (mut frames, mut bytes) = (0u64, 0u64);
            while let Some(frame) = reader.next_frame()? {
                frames += 1;
                bytes += frame.jpeg.len() as u64;
            }
            rate(frames, started.elapsed(), bytes)
        }
        "pipeline" | "pipeline-reencode" => {
            let options = FrameOptions {
                reencode: kind == "pipeline-reencode",
                ..FrameOptions::default()
            };
            let source = Frames::open(&video, options)?;
            let passthrough = source.is_passthrough();
            let started = Instant::now();
            let mut rx = source.spawn()?;
            let (mut frames, mut bytes) = (0u64, 0u64);
            while let Some(frame) = rx.blocking_recv() {
                frames += 1;
                bytes += frame?.jpeg.len() as u64;
            }
            let mut r = rate(frames, started.elapsed(), bytes);
            r["passthrough"] = json!(passthrough);
            r
        }
        other => bail!("unknown limit {other}"),
    };
    let mut result = result;
    result["kind"] = json!(kind);
    // Every thread of this process, the opening of the video included.
    result["cpu_s"] = json!(cpu_seconds(std::process::id()));
    println!("{result}");
    Ok(())
}

pub(crate) fn rate(frames: u64, elapsed: Duration, bytes: u64) -> Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        "frames": frames,
        "seconds": secs,
        "fps": frames as f64 / secs,
        "output_bytes_per_frame": bytes.checked_div(frames).unwrap_or(0),
    })
}

pub(crate) fn limits(bench: &Bench, videos: &[Video], data: &Path, quick: bool) -> Result<Value> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for video in videos {
        if quick && video.height != 720 {
            continue;
        }
        eprintln!("limits: {}", video.label);
        if video.is_long() {
            rows.push(bench.repeated("fps", || limit("packets", video, 1, true))?);
            rows.push(bench.repeated("fps", || limit("pipeline", video, cores, false))?);
            rows.push(read_file(video, false)?);
            rows.push(bench.repeated("mb_per_s", || read_file(video, true))?);
            continue;
        }
        rows.push(bench.repeated("fps", || limit("decode", video, 1, true))?);
        rows.push(bench.repeated("fps", || limit("decode-encode", video, 1, true))?);
        rows.push(bench.repeated("fps", || limit("decode-encode-all", video, cores, false))?);
        if video.codec == "MJPEG" {
            rows.push(bench.repeated("fps", || limit("packets", video, 1, true))?);
            rows.push(bench.repeated("fps", || limit("pipeline", video, cores, false))?);
            rows.push(bench.repeated("fps", || limit("pipeline-reencode", video, cores, false))?);
        } else {
            rows.push(bench.repeated("fps", || limit("pipeline", video, cores, false))?);
        }
        rows.push(read_file(video, false)?);
        rows.push(bench.repeated("mb_per_s", || read_file(video, true))?);
    }
    eprintln!("limits: disk");
    let total = if quick { 128 } else { 256 } << 20;
    for batch in [4 << 20, 32 << 20] {
        rows.push(bench.repeated("mb_per_s", || write_sync(data, total, batch, 1))?);
    }
    // As many files at once as the 8-session ingest writes.
    rows.push(bench.repeated("mb_per_s", || write_sync(data, total, 4 << 20, 8))?);
    Ok(Value::Array(rows))
}

/// Reads the whole file: from the page cache (best of three, after a warm-up read), or with
/// `O_DIRECT` (from the disk, bypassing the cache).
pub(crate) fn read_file(video: &Video, direct: bool) -> Result<Value> {
    let mut buf = vec![0u8; (1 << 20) + 4096];
    // O_DIRECT wants a block-aligned buffer.
    let skip = (4096 - (buf.as_ptr() as usize % 4096)) % 4096;
    let buf = &mut buf[skip..skip + (1 << 20)];
    let mut read_once = || -> Result<(u64, Duration)> {
        let mut options = OpenOptions::new();
        options.read(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        let mut file = options.open(&video.path)?;
        let started = Instant::now();
        let mut total = 0u64;
        loop {
            let n = file.read(buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((total, started.elapsed()))
    };
    let rounds = if direct { 1 } else { 4 };
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for round in 0..rounds {
        let (total, elapsed) = read_once()?;
        bytes = total;
        if direct || round > 0 {
            best = best.min(elapsed);
        }
    }
    let secs = best.as_secs_f64().max(1e-9);
    Ok(json!({
        "kind": if direct { "read-direct" } else { "read-cached" },
        "video": video.label,
        "bytes": bytes,
        "seconds": secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "fps": f64::from(video.frames) / secs,
        "one_core": true,
    }))
}

/// Writes 1 GiB to the data directory and deletes it. In a virtual machine, memory the guest
/// has not touched yet is slow to touch the first time (the host maps it then): the page
/// cache pages freed here are the ones the next measurement writes to, as on a server that
/// has been running for a while.
pub(crate) fn warm_up(dir: &Path) -> Result<()> {
    write_sync(dir, 1 << 30, 64 << 20, 1).map(|_| ())
}

/// Writes `total` bytes sequentially in 1 MiB writes, with `fdatasync` every `batch` bytes,
/// spread over `files` files written at the same time (one thread each), as `files`
/// sessions would.
pub(crate) fn write_sync(dir: &Path, total: usize, batch: usize, files: usize) -> Result<Value> {
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for b in chunk.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let chunk = Arc::new(chunk);
    let per_file = total / files;
    let started = Instant::now();
    let writers: Vec<_> = (0..files)
        .map(|n| {
            let path = dir.join(format!("bench-write-{n}.tmp"));
            let chunk = Arc::clone(&chunk);
            std::thread::spawn(move || -> Result<Duration> {
                let mut file = File::create(&path)?;
                let mut worst = Duration::ZERO;
                let mut written = 0;
                while written < per_file {
                    file.write_all(&chunk)?;
                    written += chunk.len();
                    if written % batch == 0 || written >= per_file {
                        let sync = Instant::now();
                        file.sync_data()?;
                        worst = worst.max(sync.elapsed());
                    }
                }
                drop(file);
                fs::remove_file(&path)?;
                Ok(worst)
            })
        })
        .collect();
    let mut worst = Duration::ZERO;
    for writer in writers {
        let w = writer
            .join()
            .map_err(|_| anyhow!("a writer thread panicked"))??;
        worst = worst.max(w);
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = per_file * files;
    let suffix = if files > 1 {
        format!("-{files}files")
    } else {
        String::new()
    };
    Ok(json!({
        "kind": format!("write-fdatasync-{}MiB{suffix}", batch >> 20),
        "video": "-",
        "bytes": bytes,
        "seconds": secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "worst_sync_ms": worst.as_secs_f64() * 1e3,
        "one_core": files == 1,
        "threads": files,
    }))
}
