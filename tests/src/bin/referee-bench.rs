//! `referee-bench`: how fast referee streams on this machine, next to what the machine itself
//! can do with the same files. Prints a table and writes the numbers as JSON.
//!
//! ```sh
//! cargo build --release --bins
//! target/release/referee-bench            # about 2 to 4 minutes on 2 cores
//! target/release/referee-bench --quick    # fewer frames, the 720p cases only
//! ```
//!
//! Sections (`--only limits,e2e,ingest,processing` runs some of them):
//! - **limits**: decode only and decode + JPEG encode on one core (pinned with `taskset`);
//!   decode + encode on every core (one whole pipeline per core); the client's own frame
//!   pipeline without network; reading the raw file bytes (page cache and `O_DIRECT`);
//!   sequential writes with `fdatasync` on the data directory's disk.
//! - **e2e**: the real `referee-client` streaming a video to a real `referee-server` on
//!   loopback, both release binaries next to this one: FPS, MB/s, CPU seconds and peak RSS
//!   of each process, measured when the client reports `Session ended` (every frame durable).
//! - **ingest**: 1, 8 and 32 concurrent sessions of pre-encoded 720p frames sent by this
//!   program as fast as the server's window allows: frames/s, GB/s, ACK latency, server RSS.
//! - **processing**: seconds per processing stage per 1000 frames, at 480p, 720p and 4K
//!   (2160p, a quarter of the frames), and the server's peak RSS.
//! - **hostile**: 8 uploads of pre-encoded 720p frames alone, then again beside 1000
//!   half-open HTTP connections (requests sent halfway, reopened whenever the server closes
//!   them) and 200 live watchers (live views and event streams of the uploads), from other
//!   loopback addresses: the uploads' rate, server RSS and open descriptors, `/health`
//!   latency. Run only with `--only hostile`.
//! - **player**: what the dashboard's replay player asks of the server, on a session of
//!   pre-encoded 720p frames stored but not processed (an interrupted upload):
//!   `GET /api/sessions/{id}/frames` (5000 frame times, as the player asks for them) and
//!   stored frames one by one, in order (playing) and spread over the session (jumps):
//!   latency and requests/s. Run only with `--only player`.
//! - **clips**: a 720p bout (`--bout-secs`, default 600) with a touch every 20 s, streamed
//!   and signalled: the time from SIGNAL sent to the first clip (its PROGRESS and its SSE
//!   `clip_ready`) and each clip's time. Run only with `--only clips`.
//!
//! Test videos are made with `referee_sample_data::write_video` and kept in
//! `target/bench/videos`; sessions are written to `target/bench/data` (the disk measured) and
//! deleted after each run.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use referee_client::pipeline::{FrameOptions, Frames};
use referee_client::source::{Decoder, PacketReader, VideoSource};
use referee_protocol::digest::FrameDigest;
use referee_protocol::frame::encode_frame;
use serde_json::{json, Value};
use tokio::sync::{watch, Barrier};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str =
    "usage: referee-bench [--quick] [--json PATH] [--work DIR] [--frames N] [--only SECTIONS]

  --quick          fewer frames and the 720p cases only
  --json PATH      where to write the results (default: target/bench/results.json)
  --work DIR       test videos and session data (default: target/bench); its disk is measured
  --frames N       frames per test video (default 600, 300 with --quick)
  --only SECTIONS  comma-separated: limits, e2e, ingest, processing, hostile, player, clips
                   (default: all but hostile, player and clips)
  --bout-secs N    seconds of the bout the clips section streams (default 600)
  --repeat N       runs of each measurement; the median is shown (default 3, 1 with --quick)
  --server-arg ARG pass ARG to every referee-server started (repeat for more), e.g.
                   --server-arg=--window=128

Build first: cargo build --release --bins";

/// JPEG quality of re-encoded frames: the client's default.
const QUALITY: u8 = referee_client::source::DEFAULT_QUALITY;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--limit") {
        limit_child(&args[1..])
    } else {
        run(&args)
    };
    if let Err(err) = result {
        eprintln!("referee-bench: {err:#}");
        std::process::exit(1);
    }
}

struct Options {
    quick: bool,
    json: PathBuf,
    work: PathBuf,
    frames: u32,
    sections: Vec<String>,
    server_args: Vec<String>,
    repeat: usize,
    bout_secs: u32,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let target = binary_dir()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let mut options = Options {
        quick: false,
        json: target.join("bench").join("results.json"),
        work: target.join("bench"),
        frames: 0,
        sections: ["limits", "e2e", "ingest", "processing"]
            .map(String::from)
            .to_vec(),
        server_args: Vec::new(),
        repeat: 0,
        bout_secs: 600,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| anyhow!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = PathBuf::from(value()?),
            "--work" => options.work = PathBuf::from(value()?),
            "--frames" => {
                options.frames = value()?
                    .parse()
                    .map_err(|_| anyhow!("--frames needs a number"))?
            }
            "--only" => {
                options.sections = value()?.split(',').map(|s| s.trim().to_string()).collect()
            }
            "--server-arg" => options.server_args.push(value()?),
            "--bout-secs" => {
                options.bout_secs = value()?
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| anyhow!("--bout-secs needs a number of seconds"))?
            }
            "--repeat" => {
                options.repeat = value()?
                    .parse()
                    .map_err(|_| anyhow!("--repeat needs a number"))?
            }
            other if other.starts_with("--server-arg=") => options
                .server_args
                .push(other["--server-arg=".len()..].to_string()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if options.frames == 0 {
        options.frames = if options.quick { 300 } else { 600 };
    }
    if options.repeat == 0 {
        options.repeat = if options.quick { 1 } else { 3 };
    }
    Ok(options)
}

/// Where this binary and the other release binaries are.
fn binary_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))
}

/// A test video and what it holds.
#[derive(Clone)]
struct Video {
    label: String,
    path: PathBuf,
    codec: &'static str,
    width: u32,
    height: u32,
    frames: u32,
    bytes: u64,
}

impl Video {
    fn describe(&self) -> Value {
        json!({
            "label": self.label, "file": self.path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "codec": self.codec, "width": self.width, "height": self.height,
            "frames": self.frames, "fps": 30.0, "bytes": self.bytes,
        })
    }
}

/// Makes (or finds, from an earlier run) the test videos: 720p (and 480p) in MJPEG and
/// MPEG-4, and a 720p MJPEG video four times as long for passthrough, which is too fast to
/// measure over a few hundred frames.
fn videos(dir: &Path, frames: u32, quick: bool) -> Result<Vec<Video>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut specs = vec![
        (1280, 720, "avi", frames, "720p avi"),
        (1280, 720, "mp4", frames, "720p mp4"),
    ];
    if !quick {
        specs.push((854, 480, "avi", frames, "480p avi"));
        specs.push((854, 480, "mp4", frames, "480p mp4"));
    }
    specs.push((1280, 720, "avi", frames * 4, "720p avi long"));
    specs
        .into_iter()
        .map(|(width, height, ext, frames, label)| video(dir, (width, height), ext, frames, label))
        .collect()
}

/// Makes (or finds) one test video of `size` and `frames` frames, MJPEG in `.avi` or MPEG-4
/// in `.mp4`.
fn video(dir: &Path, size: (i32, i32), ext: &str, frames: u32, label: &str) -> Result<Video> {
    let (width, height) = size;
    let codec = if ext == "avi" {
        "MJPEG"
    } else {
        "MPEG-4 Part 2 (mp4v)"
    };
    let name = format!("bench_{height}p_{frames}.{ext}");
    let path = dir.join(&name);
    if !path.is_file() {
        eprintln!("making {}", path.display());
        let spec = referee_sample_data::SyntheticVideo {
            frames,
            fps: 30.0,
            width,
            height,
        };
        let partial = dir.join(format!("partial_{name}"));
        referee_sample_data::write_video(&partial, &spec)
            .with_context(|| format!("cannot make {}", path.display()))?;
        fs::rename(&partial, &path)?;
    }
    Ok(Video {
        label: label.to_string(),
        bytes: fs::metadata(&path)?.len(),
        path,
        codec,
        width: width as u32,
        height: height as u32,
        frames,
    })
}

impl Video {
    fn is_long(&self) -> bool {
        self.label.ends_with("long")
    }
}

fn run(args: &[String]) -> Result<()> {
    let options = parse_options(args)?;
    let _ = SERVER_ARGS.set(options.server_args.clone());
    let _ = REPEAT.set(options.repeat);
    let bins = binary_dir()?;
    for name in ["referee-server", "referee-client"] {
        if !bins.join(name).is_file() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                bins.join(name).display()
            );
        }
    }
    let videos = videos(&options.work.join("videos"), options.frames, options.quick)?;
    let data = options.work.join("data");
    fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let command = std::iter::once("target/release/referee-bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut results = json!({
        "command": command,
        "conditions": conditions(&options, &data, &videos),
    });
    let wants = |s: &str| options.sections.iter().any(|x| x == s);
    if wants("limits") {
        warm_up(&data)?;
        results["limits"] = limits(&videos, &data, options.quick)?;
    }
    if wants("e2e") {
        warm_up(&data)?;
        results["e2e"] = e2e(&bins, &data, &videos, options.quick)?;
    }
    if wants("ingest") {
        warm_up(&data)?;
        results["ingest"] = ingest_all(&bins, &data, &videos, options.quick)?;
    }
    if wants("processing") {
        // A 4K session too (a quarter of the frames): its peak RSS shows processing's memory
        // is bounded by the frame size, not the session's length.
        let uhd = video(
            &options.work.join("videos"),
            (3840, 2160),
            "avi",
            (options.frames / 4).max(30),
            "2160p avi",
        )?;
        if let Some(list) = results["conditions"]["videos"].as_array_mut() {
            list.push(uhd.describe());
        }
        let mut all = videos.clone();
        all.push(uhd);
        results["processing"] = processing_all(&bins, &data, &all, options.quick)?;
    }
    if wants("hostile") {
        warm_up(&data)?;
        results["hostile"] = hostile::section(&bins, &data, &videos, options.quick)?;
    }
    if wants("player") {
        warm_up(&data)?;
        results["player"] = player::section(&bins, &data, &videos, options.quick)?;
    }
    if wants("clips") {
        warm_up(&data)?;
        results["clips"] = clips::section(&bins, &data, &videos, options.bout_secs)?;
    }
    results["conditions"]["loadavg_at_end"] = json!(fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim());
    results["targets"] = targets(&results);
    print_table(&results);
    if let Some(dir) = options.json.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&options.json, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("cannot write {}", options.json.display()))?;
    println!("\nJSON: {}", options.json.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conditions

fn conditions(options: &Options, data: &Path, videos: &[Video]) -> Value {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .unwrap_or_default()
        .to_string();
    let shell = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let data_str = data.display().to_string();
    json!({
        "date_utc": shell("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "git": shell("git", &["describe", "--always", "--dirty"]),
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": model,
        "memory": mem,
        "kernel": fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
        "data_dir": data_str,
        "data_fs": shell("findmnt", &["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", &data_str]),
        "loadavg_at_start": fs::read_to_string("/proc/loadavg").unwrap_or_default().trim(),
        "server_args": options.server_args,
        "quick": options.quick,
        "jpeg_quality": QUALITY,
        "videos": videos.iter().map(Video::describe).collect::<Vec<_>>(),
    })
}

// ---------------------------------------------------------------------------------------------
// Process measurements

/// CPU seconds (user + system, every thread) of process `pid`, while it runs.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory (VmHWM) of process `pid`, in MB.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Runs of each measurement (`--repeat`).
static REPEAT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// Runs `measure` `--repeat` times and returns the run with the median `key`, with every
/// run's `key` in `runs` (the machine is shared: single runs vary).
fn repeated(key: &str, mut measure: impl FnMut() -> Result<Value>) -> Result<Value> {
    let n = REPEAT.get().copied().unwrap_or(1).max(1);
    let mut runs = (0..n).map(|_| measure()).collect::<Result<Vec<Value>>>()?;
    let value = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN);
    runs.sort_by(|a, b| value(a).total_cmp(&value(b)));
    let all: Vec<f64> = runs.iter().map(value).collect();
    let mut median = runs.swap_remove(n / 2);
    if n > 1 {
        median["runs"] = json!({ key: all });
    }
    Ok(median)
}

/// Extra flags for every server (`--server-arg`).
static SERVER_ARGS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// A `referee-server` release binary on a free loopback port and its own data directory.
struct Server {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    cpu_at_start: f64,
}

impl Server {
    fn start(bins: &Path, data: &Path, extra: &[&str]) -> Result<Self> {
        let _ = fs::remove_dir_all(data);
        fs::create_dir_all(data)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = File::create(data.with_extension("server.log"))?;
        let child = Command::new(bins.join("referee-server"))
            .args(["--listen", &addr.to_string(), "--data-dir"])
            .arg(data)
            .args(["--min-free-disk-bytes", "0"])
            .args(extra)
            .args(SERVER_ARGS.get().into_iter().flatten())
            .env(
                "REFEREE_LOG_LEVEL",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start referee-server")?;
        let mut server = Self {
            child,
            addr,
            data: data.to_path_buf(),
            cpu_at_start: 0.0,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(addr, "/health").map(|(s, _)| s) != Ok(200) {
            if Instant::now() > deadline {
                bail!("referee-server did not answer /health within 15 s");
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "referee-server exited ({status}); see {}",
                    data.with_extension("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.cpu_at_start = server.cpu();
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    /// CPU seconds since the server answered its first /health.
    fn cpu_used(&self) -> f64 {
        self.cpu() - self.cpu_at_start
    }

    fn peak_rss_mb(&self) -> f64 {
        peak_rss_mb(self.pid()).unwrap_or(f64::NAN)
    }

    fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/stream", self.addr)
    }

    fn session(&self, name_part: &str) -> Result<Value> {
        let (_, body) = http_get(self.addr, "/api/sessions").map_err(|e| anyhow!(e))?;
        let list: Value = serde_json::from_str(&body)?;
        list["sessions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["id"].as_str().is_some_and(|id| id.contains(name_part)))
            })
            .cloned()
            .ok_or_else(|| anyhow!("no session {name_part} on the server"))
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.data);
    }
}

/// A minimal HTTP/1.1 GET: the status code and the body.
fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

// ---------------------------------------------------------------------------------------------
// Limits

/// Runs `--limit KIND VIDEO [THREADS]` in a child process, pinned to one core with `taskset`
/// when `one_core`.
fn limit(kind: &str, video: &Video, threads: usize, one_core: bool) -> Result<Value> {
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
fn limit_child(args: &[String]) -> Result<()> {
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

fn rate(frames: u64, elapsed: Duration, bytes: u64) -> Value {
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        "frames": frames,
        "seconds": secs,
        "fps": frames as f64 / secs,
        "output_bytes_per_frame": bytes.checked_div(frames).unwrap_or(0),
    })
}

fn limits(videos: &[Video], data: &Path, quick: bool) -> Result<Value> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut rows = Vec::new();
    for video in videos {
        if quick && video.height != 720 {
            continue;
        }
        eprintln!("limits: {}", video.label);
        if video.is_long() {
            rows.push(repeated("fps", || limit("packets", video, 1, true))?);
            rows.push(repeated("fps", || limit("pipeline", video, cores, false))?);
            rows.push(read_file(video, false)?);
            rows.push(repeated("mb_per_s", || read_file(video, true))?);
            continue;
        }
        rows.push(repeated("fps", || limit("decode", video, 1, true))?);
        rows.push(repeated("fps", || limit("decode-encode", video, 1, true))?);
        rows.push(repeated("fps", || {
            limit("decode-encode-all", video, cores, false)
        })?);
        if video.codec == "MJPEG" {
            rows.push(repeated("fps", || limit("packets", video, 1, true))?);
            rows.push(repeated("fps", || limit("pipeline", video, cores, false))?);
            rows.push(repeated("fps", || {
                limit("pipeline-reencode", video, cores, false)
            })?);
        } else {
            rows.push(repeated("fps", || limit("pipeline", video, cores, false))?);
        }
        rows.push(read_file(video, false)?);
        rows.push(repeated("mb_per_s", || read_file(video, true))?);
    }
    eprintln!("limits: disk");
    let total = if quick { 128 } else { 256 } << 20;
    for batch in [4 << 20, 32 << 20] {
        rows.push(repeated("mb_per_s", || write_sync(data, total, batch, 1))?);
    }
    // As many files at once as the 8-session ingest writes.
    rows.push(repeated("mb_per_s", || {
        write_sync(data, total, 4 << 20, 8)
    })?);
    Ok(Value::Array(rows))
}

/// Reads the whole file: from the page cache (best of three, after a warm-up read), or with
/// `O_DIRECT` (from the disk, bypassing the cache).
fn read_file(video: &Video, direct: bool) -> Result<Value> {
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
fn warm_up(dir: &Path) -> Result<()> {
    write_sync(dir, 1 << 30, 64 << 20, 1).map(|_| ())
}

/// Writes `total` bytes sequentially in 1 MiB writes, with `fdatasync` every `batch` bytes,
/// spread over `files` files written at the same time (one thread each), as `files`
/// sessions would.
fn write_sync(dir: &Path, total: usize, batch: usize, files: usize) -> Result<Value> {
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

// ---------------------------------------------------------------------------------------------
// End to end

fn e2e(bins: &Path, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
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
            rows.push(repeated("fps", || e2e_case(bins, data, video, extra))?);
        }
    }
    Ok(Value::Array(rows))
}

fn e2e_case(bins: &Path, data: &Path, video: &Video, extra: &[&str]) -> Result<Value> {
    let case: String = format!("e2e-{}{}", video.label, extra.join(""))
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let server = Server::start(bins, &data.join(case), &[])?;
    let state = data.join("client-state");
    let log = File::create(data.join("e2e.client.log"))?;
    // With a signal file the server starts processing only once the client has sent it,
    // after it prints `Session ended`: the measurements below see the upload alone.
    let signal = data.join("e2e.signal.txt");
    fs::write(&signal, "0.000 start\n")?;
    let spawned = Instant::now();
    let mut client = Command::new(bins.join("referee-client"))
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
    Ok(json!({
        "video": video.label,
        "args": extra.join(" "),
        "mode": if mode.contains("passthrough") { "passthrough" } else { "re-encode" },
        "frames": frames,
        "payload_bytes": bytes,
        "seconds": secs,
        "fps": frames as f64 / secs,
        "mb_per_s": bytes as f64 / secs / 1e6,
        "wall_seconds_from_spawn": wall,
        "fps_from_spawn": frames as f64 / wall,
        "client_cpu_s": client_cpu,
        "client_cpu_before_start_s": startup_cpu,
        "client_peak_rss_mb": client_rss,
        "server_cpu_s": server_cpu,
        "server_peak_rss_mb": server_rss,
    }))
}

// ---------------------------------------------------------------------------------------------
// Ingest and processing: sessions played by this program

/// The JPEG frames of a Motion-JPEG test video, as stored.
fn jpegs(video: &Video) -> Result<Vec<Bytes>> {
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
struct Played {
    frames: u64,
    bytes: u64,
    window: u64,
    /// Time from sending a frame to the ACK that covers it, one per frame.
    ack_latencies: Vec<Duration>,
    /// When the last frame was acknowledged.
    last_ack: Option<Instant>,
    /// Stage name and when it was first reported, then "complete".
    stages: Vec<(String, Instant)>,
    processing_started: Option<Instant>,
    /// Time the sender spent with a full window, waiting for an ACK.
    window_wait: Duration,
    /// From the first frame sent to the last ACK.
    busy: Duration,
}

/// Plays one session: SESSION_START, `frames` frames (cycling through `payloads`) within the
/// window, then either closes (ingest) or ends the session with a signal and waits for
/// COMPLETE (processing). Sending starts when every session has reached `barrier`.
async fn play(
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
    let start = json!({
        "type": "SESSION_START", "protocol_version": 1, "name": name, "source": "bench.avi",
        "fps": 30.0, "width": size.0, "height": size.1, "frame_count": frames, "encoding": "jpeg",
    });
    sink.send(Message::text(start.to_string())).await?;
    let started = next_json(&mut stream).await?;
    if started["type"] != "SESSION_STARTED" {
        bail!("expected SESSION_STARTED, got {started}");
    }
    let window = started["window"].as_u64().unwrap_or(1).max(1);
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
                let msg = next_json(&mut stream).await?;
                let now = Instant::now();
                match msg["type"].as_str().unwrap_or("") {
                    "ACK" | "SESSION_ENDED" => {
                        let stored = msg["frames_stored"].as_u64().unwrap_or(0);
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
                    "PROGRESS" => {
                        let stage = msg["stage"].as_str().unwrap_or("?").to_string();
                        if played.stages.last().map(|(s, _)| s) != Some(&stage) {
                            played.stages.push((stage, now));
                        }
                    }
                    "COMPLETE" => {
                        played.stages.push(("complete".into(), now));
                        return Ok(played);
                    }
                    "ERROR" => bail!("the server sent {msg}"),
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
        let message = encode_frame(
            index,
            (index as f64 * 1e6 / 30.0).round() as i64,
            0,
            payload,
        )?;
        sent_at
            .lock()
            .map_err(|_| anyhow!("lock"))?
            .push(Instant::now());
        sink.send(Message::Binary(message)).await?;
    }
    let mut processing_started = None;
    if process {
        let end = json!({
            "type": "SESSION_END", "frames_sent": frames, "signal_follows": true,
            "digest": FrameDigest::of(crcs),
        });
        sink.send(Message::text(end.to_string())).await?;
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
        let signal = json!({"type": "SIGNAL", "file_name": "bench.txt", "text": text});
        processing_started = Some(Instant::now());
        sink.send(Message::text(signal.to_string())).await?;
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

async fn next_json<S>(stream: &mut S) -> Result<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(120), stream.next()).await {
            Err(_) => bail!("the server was silent for 120 s"),
            Ok(None) => bail!("the server closed the connection"),
            Ok(Some(Err(err))) => bail!("connection failed: {err}"),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(serde_json::from_str(text.as_str())?),
            Ok(Some(Ok(Message::Close(frame)))) => bail!("the server closed: {frame:?}"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let at = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[at].as_secs_f64() * 1e3
}

fn ingest_all(bins: &Path, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG")
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    let mut rows = Vec::new();
    let scale = if quick { 1 } else { 2 };
    for (sessions, frames) in [(1usize, 1500u64), (8, 250), (32, 75)] {
        eprintln!("ingest: {sessions} sessions");
        rows.push(repeated("mb_per_s", || {
            ingest(
                bins,
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
fn spawn_uploads(
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

fn ingest(
    bins: &Path,
    data: &Path,
    video: &Video,
    payloads: Arc<Vec<Bytes>>,
    sessions: usize,
    frames: u64,
) -> Result<Value> {
    let server = Server::start(bins, &data.join(format!("ingest{sessions}")), &[])?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let own_cpu_before = cpu_seconds(std::process::id()).unwrap_or(f64::NAN);
    let barrier = Arc::new(Barrier::new(sessions + 1));
    let size = (video.width, video.height);
    let url = server.ws_url();
    let outcome = runtime.block_on(async {
        let tasks = spawn_uploads(&url, "ingest", sessions, &payloads, frames, size, &barrier);
        barrier.wait().await;
        let started = Instant::now();
        let mut played = Vec::new();
        for task in tasks {
            played.push(task.await??);
        }
        Ok::<_, anyhow::Error>((started, played))
    });
    let own_cpu = cpu_seconds(std::process::id()).unwrap_or(f64::NAN) - own_cpu_before;
    let server_cpu = server.cpu_used();
    let server_rss = server.peak_rss_mb();
    server.stop();
    let (started, played) = outcome?;
    let end = played
        .iter()
        .filter_map(|p| p.last_ack)
        .max()
        .unwrap_or(started);
    let secs = (end - started).as_secs_f64().max(1e-9);
    let total_frames: u64 = played.iter().map(|p| p.frames).sum();
    let total_bytes: u64 = played.iter().map(|p| p.bytes).sum();
    let mut latencies: Vec<Duration> = played
        .iter()
        .flat_map(|p| p.ack_latencies.iter().copied())
        .collect();
    latencies.sort_unstable();
    let window = played.first().map_or(0, |p| p.window);
    let largest = payloads.iter().map(Bytes::len).max().unwrap_or(0) as f64;
    let windows_mb = sessions as f64 * window as f64 * largest / 1e6;
    Ok(json!({
        "sessions": sessions,
        "frames_per_session": frames,
        "frame_bytes_avg": total_bytes / total_frames.max(1),
        "window": window,
        "seconds": secs,
        "fps": total_frames as f64 / secs,
        "gb_per_s": total_bytes as f64 / secs / 1e9,
        "mb_per_s": total_bytes as f64 / secs / 1e6,
        "ack_p50_ms": percentile(&latencies, 0.5),
        "ack_p99_ms": percentile(&latencies, 0.99),
        "window_full_fraction": played.iter().map(|p| p.window_wait.as_secs_f64() / p.busy.as_secs_f64().max(1e-9)).sum::<f64>() / played.len().max(1) as f64,
        "server_cpu_s": server_cpu,
        "server_peak_rss_mb": server_rss,
        "advertised_windows_mb": windows_mb,
        "rss_bound_mb": 100.0 + windows_mb,
        "bench_clients_cpu_s": own_cpu,
    }))
}

fn processing_all(bins: &Path, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
    let mut rows = Vec::new();
    for video in videos.iter().filter(|v| v.codec == "MJPEG" && !v.is_long()) {
        if quick && video.height == 480 {
            continue;
        }
        eprintln!("processing: {}", video.label);
        rows.push(processing(bins, data, video)?);
    }
    Ok(Value::Array(rows))
}

/// Plays one session named `name` of `frames` of `payloads` (see [`play`]) on its own runtime.
fn play_one(
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

fn processing(bins: &Path, data: &Path, video: &Video) -> Result<Value> {
    let payloads = Arc::new(jpegs(video)?);
    let frames = payloads.len() as u64;
    let server = Server::start(bins, &data.join("processing"), &[])?;
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
            json!({"seconds": secs, "seconds_per_1000_frames": secs * 1000.0 / frames as f64}),
        );
    }
    let end = played
        .stages
        .last()
        .map(|(_, at)| *at)
        .ok_or_else(|| anyhow!("no COMPLETE"))?;
    let total = (end - start).as_secs_f64();
    let duration = frames as f64 / 30.0;
    Ok(json!({
        "video": video.label,
        "width": video.width,
        "height": video.height,
        "frames": frames,
        "stages": stages,
        "stage_order": order,
        "seconds": total,
        "seconds_per_1000_frames": total * 1000.0 / frames as f64,
        "fps": frames as f64 / total,
        "realtime_factor_at_30fps": duration / total,
        "server_peak_rss_mb": server_rss,
    }))
}

// ---------------------------------------------------------------------------------------------
// Targets and the table

fn find(rows: &Value, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    rows.as_array()?.iter().find(|r| pred(r))
}

fn targets(results: &Value) -> Value {
    let mut out = Vec::new();
    let limits = &results["limits"];
    let e2e = &results["e2e"];
    let num = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    for (video, args) in [("720p mp4", ""), ("720p avi", "--reencode")] {
        let run = find(e2e, |r| r["video"] == video && r["args"] == args);
        let limit = find(limits, |r| {
            r["video"] == video && r["kind"] == "decode-encode-all"
        });
        if let (Some(run), Some(limit)) = (run, limit) {
            let ratio = num(run, "fps") / num(limit, "fps");
            out.push(json!({
                "target": format!("re-encode {video} {args}: e2e FPS >= 90% of the all-cores decode+encode limit").replace("  ", " "),
                "measured": format!("{:.0} FPS vs {:.0} FPS = {:.0}%", num(run, "fps"), num(limit, "fps"), ratio * 100.0),
                "met": ratio >= 0.9,
            }));
        }
    }
    let run = find(e2e, |r| r["video"] == "720p avi long" && r["args"] == "");
    let cached = find(limits, |r| {
        r["video"] == "720p avi long" && r["kind"] == "read-cached"
    });
    let direct = find(limits, |r| {
        r["video"] == "720p avi long" && r["kind"] == "read-direct"
    });
    if let Some(run) = run {
        out.push(json!({
            "target": "passthrough 720p MJPEG: e2e >= 1000 FPS",
            "measured": format!("{:.0} FPS", num(run, "fps")),
            "met": num(run, "fps") >= 1000.0,
        }));
        for (label, read) in [("page cache", cached), ("O_DIRECT, disk", direct)] {
            if let Some(read) = read {
                let ratio = num(run, "mb_per_s") / num(read, "mb_per_s");
                out.push(json!({
                    "target": format!("passthrough 720p MJPEG: >= 70% of the raw file read rate ({label})"),
                    "measured": format!("{:.0} MB/s vs {:.0} MB/s = {:.1}%", num(run, "mb_per_s"), num(read, "mb_per_s"), ratio * 100.0),
                    "met": ratio >= 0.7,
                }));
            }
        }
    }
    let ingest8 = find(&results["ingest"], |r| r["sessions"] == 8);
    let disk = find(limits, |r| r["kind"] == "write-fdatasync-4MiB");
    let disk8 = find(limits, |r| r["kind"] == "write-fdatasync-4MiB-8files");
    if let Some(ingest8) = ingest8 {
        if let Some(disk) = disk {
            let ratio = num(ingest8, "mb_per_s") / num(disk, "mb_per_s");
            let eight = disk8.map_or(String::new(), |d| {
                format!(
                    " (8 files at once: {:.0} MB/s = {:.0}%)",
                    num(d, "mb_per_s"),
                    num(ingest8, "mb_per_s") / num(d, "mb_per_s") * 100.0
                )
            });
            out.push(json!({
                "target": "ingest, 8 sessions, durable ACKs: >= 70% of the disk's sequential fdatasync write rate",
                "measured": format!("{:.0} MB/s vs {:.0} MB/s = {:.0}%{eight}", num(ingest8, "mb_per_s"), num(disk, "mb_per_s"), ratio * 100.0),
                "met": ratio >= 0.7,
            }));
        }
        out.push(json!({
            "target": "ingest, 8 sessions: server RSS < 100 MB + the advertised windows",
            "measured": format!("{:.0} MB vs {:.0} MB", num(ingest8, "server_peak_rss_mb"), num(ingest8, "rss_bound_mb")),
            "met": num(ingest8, "server_peak_rss_mb") < num(ingest8, "rss_bound_mb"),
        }));
    }
    out.extend(hostile::targets(&results["hostile"]));
    out.extend(clips::targets(&results["clips"]));
    if let Some(p) = find(&results["processing"], |r| r["height"] == 720) {
        out.push(json!({
            "target": "processing 720p30: >= 5x real time",
            "measured": format!("{:.1}x ({:.0} FPS)", num(p, "realtime_factor_at_30fps"), num(p, "fps")),
            "met": num(p, "realtime_factor_at_30fps") >= 5.0,
        }));
    }
    Value::Array(out)
}

fn print_table(results: &Value) {
    let f = |v: &Value, key: &str, digits: usize| match v[key].as_f64() {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".into(),
    };
    let c = &results["conditions"];
    println!(
        "\nreferee-bench {}  ({} cores, {}, {}, data on {})",
        c["date_utc"].as_str().unwrap_or(""),
        c["cores"],
        c["cpu"].as_str().unwrap_or(""),
        c["kernel"].as_str().unwrap_or(""),
        c["data_fs"].as_str().unwrap_or("")
    );
    for v in c["videos"].as_array().into_iter().flatten() {
        println!(
            "  video {:<13} {:>4}x{:<4} {:>4} frames {:>6.1} MB  {}",
            v["label"].as_str().unwrap_or(""),
            v["width"],
            v["height"],
            v["frames"],
            v["bytes"].as_f64().unwrap_or(0.0) / 1e6,
            v["codec"].as_str().unwrap_or("")
        );
    }
    if let Some(rows) = results["limits"].as_array() {
        println!("\nLimits (same machine, same files)");
        println!(
            "  {:<22} {:<13} {:>5} {:>9} {:>9}",
            "what", "video", "cores", "FPS", "MB/s"
        );
        for r in rows {
            let cores = if r["one_core"] == true {
                "1".to_string()
            } else {
                r["threads"]
                    .as_u64()
                    .map_or("all".into(), |t| t.to_string())
            };
            println!(
                "  {:<22} {:<13} {:>5} {:>9} {:>9}",
                r["kind"].as_str().unwrap_or(""),
                r["video"].as_str().unwrap_or(""),
                cores,
                f(r, "fps", 0),
                f(r, "mb_per_s", 0)
            );
        }
    }
    if let Some(rows) = results["e2e"].as_array() {
        println!("\nEnd to end: referee-client -> referee-server on loopback, durable ACKs");
        println!(
            "  {:<13} {:<12} {:<11} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "video", "args", "mode", "FPS", "MB/s", "cli CPU", "cli RSS", "srv CPU", "srv RSS"
        );
        for r in rows {
            println!(
                "  {:<13} {:<12} {:<11} {:>7} {:>7} {:>7}s {:>6}MB {:>7}s {:>6}MB",
                r["video"].as_str().unwrap_or(""),
                r["args"].as_str().unwrap_or(""),
                r["mode"].as_str().unwrap_or(""),
                f(r, "fps", 0),
                f(r, "mb_per_s", 0),
                f(r, "client_cpu_s", 2),
                f(r, "client_peak_rss_mb", 0),
                f(r, "server_cpu_s", 2),
                f(r, "server_peak_rss_mb", 0)
            );
        }
    }
    if let Some(rows) = results["ingest"].as_array() {
        println!("\nServer ingest: pre-encoded 720p JPEG frames, as fast as the window allows");
        println!(
            "  {:>8} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "sessions",
            "window",
            "frames/s",
            "GB/s",
            "ACK p50",
            "ACK p99",
            "srv CPU",
            "srv RSS",
            "RSS bound"
        );
        for r in rows {
            println!(
                "  {:>8} {:>7} {:>8} {:>7} {:>7}ms {:>7}ms {:>8}s {:>7}MB {:>7}MB",
                f(r, "sessions", 0),
                f(r, "window", 0),
                f(r, "fps", 0),
                f(r, "gb_per_s", 3),
                f(r, "ack_p50_ms", 1),
                f(r, "ack_p99_ms", 1),
                f(r, "server_cpu_s", 2),
                f(r, "server_peak_rss_mb", 0),
                f(r, "rss_bound_mb", 0)
            );
        }
    }
    if let Some(rows) = results["processing"].as_array() {
        println!("\nProcessing: seconds per 1000 frames");
        for r in rows {
            let stages: Vec<String> = r["stage_order"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| format!("{s} {}", f(&r["stages"][s], "seconds_per_1000_frames", 2)))
                .collect();
            println!(
                "  {:<13} {} frames: total {} s/1000 ({} FPS, {}x real time at 30 fps, server peak RSS {} MB); {}",
                r["video"].as_str().unwrap_or(""),
                r["frames"],
                f(r, "seconds_per_1000_frames", 2),
                f(r, "fps", 0),
                f(r, "realtime_factor_at_30fps", 1),
                f(r, "server_peak_rss_mb", 0),
                stages.join(", ")
            );
        }
    }
    hostile::print(&results["hostile"]);
    player::print(&results["player"]);
    clips::print(&results["clips"]);
    if let Some(rows) = results["targets"].as_array() {
        println!("\nTargets");
        for r in rows {
            println!(
                "  [{}] {}: {}",
                if r["met"] == true { "met" } else { "NOT met" },
                r["target"].as_str().unwrap_or(""),
                r["measured"].as_str().unwrap_or("")
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Hostile peers beside uploads

mod hostile {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Half-open connections held by the attacker, spread over this many loopback addresses
    /// (each below the server's default per-client cap).
    const HALF_OPEN: usize = 1000;
    const HALF_OPEN_ADDRESSES: usize = 8;
    /// Live watchers: half live views, half event streams, of the uploads.
    const WATCHERS: usize = 200;
    const WATCHER_ADDRESSES: usize = 8;
    const UPLOADS: usize = 8;

    pub fn section(bins: &Path, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
        let video = videos
            .iter()
            .find(|v| v.height == 720 && v.codec == "MJPEG" && !v.is_long())
            .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
        let payloads = Arc::new(jpegs(video)?);
        let frames = if quick { 250 } else { 500 };
        eprintln!("hostile: {UPLOADS} uploads alone");
        let alone = repeated("mb_per_s", || {
            run(bins, data, video, Arc::clone(&payloads), frames, false)
        })?;
        eprintln!("hostile: {UPLOADS} uploads beside {HALF_OPEN} half-open connections and {WATCHERS} watchers");
        let attacked = repeated("mb_per_s", || {
            run(bins, data, video, Arc::clone(&payloads), frames, true)
        })?;
        let kept = attacked["mb_per_s"].as_f64().unwrap_or(f64::NAN)
            / alone["mb_per_s"].as_f64().unwrap_or(f64::NAN);
        Ok(json!({ "alone": alone, "attacked": attacked, "rate_kept": kept }))
    }

    /// A loopback connection to `server` from `from` (127.0.0.N).
    async fn connect_from(
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
    async fn half_open(
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
    async fn watch(
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
    fn open_fds(pid: u32) -> Option<usize> {
        Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
    }

    fn rss_mb(pid: u32) -> Option<f64> {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// Waits until `counter` reaches `n`, for at most `limit`.
    async fn reach(counter: &AtomicUsize, n: usize, limit: Duration, what: &str) -> Result<()> {
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
    fn session_ids(addr: SocketAddr, prefix: &str, n: usize) -> Result<Vec<String>> {
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
    struct Samples {
        health: Vec<Duration>,
        health_failed: usize,
        rss_mb: f64,
        fds: usize,
        half_open_min: usize,
    }

    fn run(
        bins: &Path,
        data: &Path,
        video: &Video,
        payloads: Arc<Vec<Bytes>>,
        frames: u64,
        attack: bool,
    ) -> Result<Value> {
        let label = if attack { "hostile" } else { "hostile-alone" };
        let server = Server::start(bins, &data.join(label), &[])?;
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
            let uploads =
                spawn_uploads(&url, "hostile", UPLOADS, &payloads, frames, size, &barrier);
            if attack {
                let ids =
                    tokio::task::spawn_blocking(move || session_ids(addr, "hostile", UPLOADS))
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
                while connected.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < WATCHERS
                {
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
        let end = played
            .iter()
            .filter_map(|p| p.last_ack)
            .max()
            .unwrap_or(started);
        let secs = (end - started).as_secs_f64().max(1e-9);
        let total_bytes: u64 = played.iter().map(|p| p.bytes).sum();
        let total_frames: u64 = played.iter().map(|p| p.frames).sum();
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
}

// ---------------------------------------------------------------------------------------------
// Player

mod player {
    use super::*;

    /// Frame times the dashboard's player asks for in one request (`TIMES_PER_REQUEST` of
    /// server/web/player.js).
    const TIMES_PER_REQUEST: u64 = 5000;

    /// A GET whose body may be binary: the status, the body's length and how long it took.
    fn timed_get(addr: SocketAddr, path: &str) -> Result<(u16, usize, Duration)> {
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
    fn measure(addr: SocketAddr, paths: &[String]) -> Result<Value> {
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
        Ok(json!({
            "requests": paths.len(),
            "per_s": paths.len() as f64 / secs,
            "bytes_avg": bytes / paths.len().max(1),
            "p50_ms": percentile(&latencies, 0.5),
            "p99_ms": percentile(&latencies, 0.99),
            "max_ms": latencies.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        }))
    }

    pub fn section(bins: &Path, data: &Path, videos: &[Video], quick: bool) -> Result<Value> {
        let video = videos
            .iter()
            .find(|v| v.height == 720 && v.codec == "MJPEG")
            .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
        let payloads = Arc::new(jpegs(video)?);
        let frames: u64 = if quick { 1500 } else { 6000 };
        eprintln!("player: {frames} stored 720p frames");
        let server = Server::start(bins, &data.join("player"), &[])?;
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
            Ok(json!({
                "frames_stored": frames,
                "frame_times": measure(server.addr, &times)?,
                "frames_in_order": measure(server.addr, &in_order)?,
                "frames_jumps": measure(server.addr, &jumps)?,
                "server_peak_rss_mb": server.peak_rss_mb(),
            }))
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
}

// ---------------------------------------------------------------------------------------------
// Clips

mod clips {
    use super::*;

    /// Seconds between the touches of the bout.
    const TOUCH_EVERY_S: f64 = 20.0;

    /// The signal file of a bout of `secs` seconds: a touch every [`TOUCH_EVERY_S`] (the
    /// first at 10 s, like an action's first phrase), a halt after every third.
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

    /// When the first `clip_ready` event arrives on the session's event stream, read on its
    /// own thread from before the signal is sent.
    fn first_sse_clip(
        addr: SocketAddr,
        id: &str,
    ) -> Result<std::thread::JoinHandle<Option<Instant>>> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        write!(
            stream,
            "GET /api/sessions/{id}/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        )?;
        Ok(std::thread::spawn(move || {
            let reader = BufReader::new(stream);
            for line in reader.lines() {
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
    ) -> Result<Value> {
        let frames = u64::from(secs) * 30;
        let url = server.ws_url();
        let (ws, _) = tokio_tungstenite::connect_async(&url).await?;
        let (mut sink, mut stream) = ws.split();
        let start = json!({
            "type": "SESSION_START", "protocol_version": 1, "name": "clips", "source": "bench.avi",
            "fps": 30.0, "width": size.0, "height": size.1, "frame_count": frames, "encoding": "jpeg",
        });
        sink.send(Message::text(start.to_string())).await?;
        let started = next_json(&mut stream).await?;
        let id = started["session_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let window = started["window"].as_u64().unwrap_or(1).max(1);
        let mut crcs = Vec::with_capacity(frames as usize);
        let mut acked = 0;
        for index in 0..frames {
            while index - acked >= window {
                let msg = next_json(&mut stream).await?;
                acked = acked.max(msg["frames_stored"].as_u64().unwrap_or(0));
            }
            let payload = &payloads[index as usize % payloads.len()];
            crcs.push(crc32c::crc32c(payload));
            let pts = (index as f64 * 1e6 / 30.0).round() as i64;
            sink.send(Message::Binary(encode_frame(index, pts, 0, payload)?))
                .await?;
        }
        let end = json!({
            "type": "SESSION_END", "frames_sent": frames, "signal_follows": true,
            "digest": FrameDigest::of(crcs),
        });
        sink.send(Message::text(end.to_string())).await?;
        loop {
            let msg = next_json(&mut stream).await?;
            if msg["type"] == "SESSION_ENDED" {
                break;
            }
            if msg["type"] == "ERROR" {
                bail!("the server sent {msg}");
            }
        }
        let sse = first_sse_clip(server.addr, &id)?;
        let text = signal(secs);
        let sent = Instant::now();
        let message = json!({"type": "SIGNAL", "file_name": "bench.txt", "text": text});
        sink.send(Message::text(message.to_string())).await?;
        let mut clip_ms = Vec::new();
        let mut total = 0;
        let video_started = loop {
            let msg = next_json(&mut stream).await?;
            match (msg["type"].as_str(), msg["stage"].as_str()) {
                (Some("PROGRESS"), Some("clips")) => {
                    total = msg["total"].as_u64().unwrap_or(0);
                    if msg["done"].as_u64().unwrap_or(0) > 0 {
                        clip_ms.push(sent.elapsed().as_secs_f64() * 1e3);
                    }
                }
                (Some("PROGRESS"), _) | (Some("COMPLETE"), _) => break sent.elapsed(),
                (Some("ERROR"), _) => bail!("the server sent {msg}"),
                _ => {}
            }
        };
        let _ = sink.close().await;
        let sse_first = tokio::task::spawn_blocking(move || sse.join().ok().flatten()).await?;
        let each: Vec<f64> = std::iter::once(0.0)
            .chain(clip_ms.iter().copied())
            .collect::<Vec<_>>()
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect();
        let mut sorted = each.clone();
        sorted.sort_by(f64::total_cmp);
        Ok(json!({
            "bout_secs": secs,
            "frames": frames,
            "clips": total,
            "first_clip_progress_ms": clip_ms.first(),
            "first_clip_sse_ms": sse_first.map(|at| (at - sent).as_secs_f64() * 1e3),
            "clip_ms_median": sorted.get(sorted.len() / 2),
            "clip_ms_max": sorted.last(),
            "all_clips_ms": clip_ms.last(),
            "video_reconstruction_after_ms": video_started.as_secs_f64() * 1e3,
        }))
    }

    pub fn section(bins: &Path, data: &Path, videos: &[Video], secs: u32) -> Result<Value> {
        let video = videos
            .iter()
            .find(|v| v.height == 720 && v.codec == "MJPEG" && !v.is_long())
            .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
        let payloads = Arc::new(jpegs(video)?);
        eprintln!("clips: a {secs} s 720p bout, a touch every {TOUCH_EVERY_S} s");
        let server = Server::start(bins, &data.join("clips"), &[])?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let outcome = runtime.block_on(bout(&server, payloads, (video.width, video.height), secs));
        server.stop();
        outcome
    }

    pub fn targets(clips: &Value) -> Vec<Value> {
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

    pub fn print(clips: &Value) {
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
}
