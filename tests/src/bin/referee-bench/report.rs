use super::*;

// ---------------------------------------------------------------------------------------------
// Conditions

pub(crate) fn conditions(options: &Options, data: &Path, videos: &[Video]) -> Conditions {
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
    let loadavg = || {
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    Conditions {
        date_utc: shell("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        git: shell("git", &["describe", "--always", "--dirty"]),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu: model,
        memory: mem,
        kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        data_fs: shell(
            "findmnt",
            &["-n", "-o", "SOURCE,FSTYPE,OPTIONS", "-T", &data_str],
        ),
        data_dir: data_str,
        loadavg_at_start: loadavg(),
        loadavg_at_end: None,
        server_args: options.server_args.clone(),
        quick: options.quick,
        jpeg_quality: QUALITY,
        videos: videos.iter().map(Video::describe).collect(),
    }
}

/// The machine and the run the numbers come from.
#[derive(serde::Serialize)]
pub(crate) struct Conditions {
    pub(crate) date_utc: String,
    pub(crate) git: String,
    pub(crate) cores: usize,
    pub(crate) cpu: String,
    pub(crate) memory: String,
    pub(crate) kernel: String,
    pub(crate) data_dir: String,
    pub(crate) data_fs: String,
    pub(crate) loadavg_at_start: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) loadavg_at_end: Option<String>,
    pub(crate) server_args: Vec<String>,
    pub(crate) quick: bool,
    pub(crate) jpeg_quality: u8,
    pub(crate) videos: Vec<VideoInfo>,
}

/// Everything a run measured, as written to the JSON file: one field per section run.
#[derive(serde::Serialize)]
pub(crate) struct Results {
    pub(crate) command: String,
    pub(crate) conditions: Conditions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) limits: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) e2e: Option<Vec<Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ingest: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) processing: Option<Vec<ProcessingRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) hostile: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) player: Option<player::PlayerResults>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) clips: Option<clips::ClipsResults>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) cluster: Option<Vec<Value>>,
}

// ---------------------------------------------------------------------------------------------
// Targets and the table

pub(crate) fn find(rows: &Value, pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    rows.as_array()?.iter().find(|r| pred(r))
}

pub(crate) fn targets(results: &Value) -> Value {
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

pub(crate) fn print_table(results: &Value) {
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
    cluster::print(&results["cluster"]);
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
