//! `--only cluster`: the same concurrent uploads of pre-encoded 720p frames into one server on
//! the local store, one server on the S3 store with the registry, and three servers on them,
//! each through HAProxy (round robin) so that the three cases differ only in what is behind
//! it. The S3 server (SeaweedFS), PostgreSQL and HAProxy are the tests' own
//! (`referee_tests::{s3, postgres, load_balancer}`), on this machine: on 2 cores the servers,
//! the object store, the database and the uploads share them.

use super::*;
use referee_tests::load_balancer::LoadBalancer;
use referee_tests::postgres::Postgres;
use referee_tests::s3::SeaweedFs;

/// Uploads at once in each case.
const SESSIONS: usize = 6;

/// One case: `sessions` uploads through the balancer into `servers` servers on `store`.
#[derive(serde::Serialize)]
pub(crate) struct ClusterRow {
    pub(crate) store: &'static str,
    pub(crate) servers: usize,
    pub(crate) sessions: usize,
    pub(crate) frames_per_session: u64,
    pub(crate) seconds: f64,
    pub(crate) fps: f64,
    pub(crate) mb_per_s: f64,
    /// From sending a frame to the ACK that covers it (the frames in the store, and in the
    /// registry's count with S3).
    pub(crate) ack_p50_ms: f64,
    pub(crate) ack_p99_ms: f64,
    /// CPU seconds of every server together.
    pub(crate) servers_cpu_s: f64,
    /// CPU seconds of the object store (SeaweedFS) and the database (PostgreSQL) meanwhile.
    pub(crate) weed_cpu_s: f64,
    pub(crate) postgres_cpu_s: f64,
    /// How the sessions were spread over the servers (sessions received by each).
    pub(crate) sessions_per_server: Vec<usize>,
}

pub(crate) fn section(
    bench: &Bench,
    data: &Path,
    videos: &[Video],
    quick: bool,
) -> Result<Vec<Value>> {
    let (Some(postgres), Some(s3)) = (Postgres::shared(), SeaweedFs::shared()) else {
        bail!("the cluster section needs PostgreSQL and SeaweedFS: scripts/install-deps.sh --tests installs them");
    };
    let video = videos
        .iter()
        .find(|v| v.height == 720 && v.codec == "MJPEG")
        .ok_or_else(|| anyhow!("no 720p MJPEG video"))?;
    let payloads = Arc::new(jpegs(video)?);
    let frames = if quick { 100 } else { 250 };
    let mut rows = Vec::new();
    for (store, servers) in [("local", 1), ("s3", 1), ("s3", 3)] {
        eprintln!("cluster: {store} store, {servers} servers");
        let mut run = 0;
        rows.push(bench.repeated("mb_per_s", || {
            run += 1;
            let name = format!("cluster-{store}-{servers}-{run}");
            let shared = match store {
                "local" => Vec::new(),
                _ => vec![
                    "--store".to_string(),
                    s3.store_url(&name),
                    "--registry".to_string(),
                    postgres.new_database(&name.replace('-', "_")),
                ],
            };
            upload(
                bench,
                &data.join(&name),
                video,
                &payloads,
                servers,
                frames,
                &shared,
            )
            .map(|row| ClusterRow { store, ..row })
        })?);
    }
    Ok(rows)
}

fn upload(
    bench: &Bench,
    data: &Path,
    video: &Video,
    payloads: &Arc<Vec<Bytes>>,
    count: usize,
    frames: u64,
    shared: &[String],
) -> Result<ClusterRow> {
    let args: Vec<&str> = shared.iter().map(String::as_str).collect();
    let servers = (0..count)
        .map(|i| Server::start(bench, &data.join(format!("node{i}")), &args))
        .collect::<Result<Vec<_>>>()?;
    let addrs: Vec<SocketAddr> = servers.iter().map(|s| s.addr).collect();
    let balancer = LoadBalancer::start(&addrs)
        .ok_or_else(|| anyhow!("the cluster section needs HAProxy (apt-get install haproxy)"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let url = format!("ws://{}/stream", balancer.addr);
    let size = (video.width, video.height);
    let engines_before = (cpu_of("weed"), cpu_of("postgres"));
    let outcome = runtime.block_on(upload_together(
        &url, "cluster", SESSIONS, payloads, frames, size,
    ));
    let servers_cpu_s = servers.iter().map(Server::cpu_used).sum();
    let weed_cpu_s = cpu_of("weed") - engines_before.0;
    let postgres_cpu_s = cpu_of("postgres") - engines_before.1;
    // Where each session went: each server's count of the sessions it created.
    let sessions_per_server = servers.iter().map(sessions_created).collect();
    drop(balancer);
    for server in servers {
        server.stop();
    }
    let (started, played) = outcome?;
    let totals = Totals::of(&played, started);
    let latencies = ack_latencies(&played);
    Ok(ClusterRow {
        store: "",
        servers: count,
        sessions: SESSIONS,
        frames_per_session: frames,
        seconds: totals.secs,
        fps: totals.frames as f64 / totals.secs,
        mb_per_s: totals.bytes as f64 / totals.secs / 1e6,
        ack_p50_ms: percentile(&latencies, 0.5),
        ack_p99_ms: percentile(&latencies, 0.99),
        servers_cpu_s,
        weed_cpu_s,
        postgres_cpu_s,
        sessions_per_server,
    })
}

/// CPU seconds used so far by every process named `name`.
fn cpu_of(name: &str) -> f64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return f64::NAN;
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name)
        })
        .filter_map(cpu_seconds)
        .sum()
}

/// `referee_sessions_created_total` of `server`'s `/metrics`.
fn sessions_created(server: &Server) -> usize {
    let metrics = http_get(server.addr, "/metrics").map_or_else(|_| String::new(), |(_, b)| b);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("referee_sessions_created_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

pub(crate) fn print(rows: &Value) {
    let Some(rows) = rows.as_array() else {
        return;
    };
    let f = |v: &Value, key: &str| v[key].as_f64().unwrap_or(f64::NAN);
    println!(
        "\ncluster: {SESSIONS} uploads of 720p frames at once, through HAProxy (CPU seconds of \
         the servers, SeaweedFS and PostgreSQL)"
    );
    println!(
        "  {:<7} {:>7} {:>8} {:>8} {:>9} {:>9} {:>10} {:>9} {:>9}  sessions per server",
        "store", "servers", "FPS", "MB/s", "ACK p50", "ACK p99", "servers", "weed", "postgres"
    );
    for r in rows {
        println!(
            "  {:<7} {:>7} {:>8.0} {:>8.1} {:>7.1}ms {:>7.1}ms {:>9.1}s {:>8.1}s {:>8.1}s  {}",
            r["store"].as_str().unwrap_or(""),
            r["servers"],
            f(r, "fps"),
            f(r, "mb_per_s"),
            f(r, "ack_p50_ms"),
            f(r, "ack_p99_ms"),
            f(r, "servers_cpu_s"),
            f(r, "weed_cpu_s"),
            f(r, "postgres_cpu_s"),
            r["sessions_per_server"]
        );
    }
    let fps = |store: &str, servers: u64| {
        rows.iter()
            .find(|r| r["store"] == store && r["servers"] == servers)
            .map_or(f64::NAN, |r| f(r, "fps"))
    };
    println!(
        "  S3 / local (1 server): {:.2}; 3 servers / 1 server on S3: {:.2}",
        fps("s3", 1) / fps("local", 1),
        fps("s3", 3) / fps("s3", 1)
    );
}
