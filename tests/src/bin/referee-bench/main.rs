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
//! - **cluster**: 6 concurrent uploads of pre-encoded 720p frames through HAProxy into one
//!   server on the local store, one on the S3 store with the registry, and three on them (the
//!   tests' SeaweedFS and PostgreSQL): frames/s, ACK latency, the ratios. Run only with
//!   `--only cluster`.
//!
//! Test videos are made with `referee_sample_data::write_video` and kept in
//! `target/bench/videos`; sessions are written to `target/bench/data` (the disk measured) and
//! deleted after each run.
//!
//! One module per section (`limits`, `e2e`, `ingest`, `processing`, `hostile`, `player`,
//! `clips`, `cluster`),
//! beside `args` (the flags), `video` (the test videos), `server` (a release server and its
//! CPU and memory), `upload` (the protocol player) and `report` (the conditions, the results
//! as written, the targets and the table). They share this file's imports (`use super::*`).
//! Every section runs with a [`Bench`] (no globals); the HTTP GET is the tests' own
//! (`referee_tests::try_http_get`).

mod args;
mod clips;
mod cluster;
mod e2e;
mod hostile;
mod ingest;
mod limits;
mod player;
mod processing;
mod report;
mod server;
mod upload;
mod video;

use args::*;
use e2e::*;
use ingest::*;
use limits::*;
use processing::*;
use report::*;
use server::*;
use upload::*;
use video::*;

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
use referee_tests::try_http_get as http_get;
use serde_json::{json, Value};
use tokio::sync::{watch, Barrier};
use tokio_tungstenite::tungstenite::Message;

const USAGE: &str =
    "usage: referee-bench [--quick] [--json PATH] [--work DIR] [--frames N] [--only SECTIONS]

  --quick          fewer frames and the 720p cases only
  --json PATH      where to write the results (default: target/bench/results.json)
  --work DIR       test videos and session data (default: target/bench); its disk is measured
  --frames N       frames per test video (default 600, 300 with --quick)
  --only SECTIONS  comma-separated: limits, e2e, ingest, processing, hostile, player, clips,
                   cluster (default: all but hostile, player, clips and cluster)
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

/// What every section runs with: the release binaries, the flags of every server started,
/// and the runs of each measurement.
pub(crate) struct Bench {
    pub(crate) bins: PathBuf,
    /// Extra flags for every server (`--server-arg`).
    pub(crate) server_args: Vec<String>,
    /// Runs of each measurement (`--repeat`).
    pub(crate) repeat: usize,
}

impl Bench {
    /// Runs `measure` `--repeat` times and returns the run with the median `key`, with every
    /// run's `key` in `runs` (the machine is shared: single runs vary).
    pub(crate) fn repeated<T: serde::Serialize>(
        &self,
        key: &str,
        mut measure: impl FnMut() -> Result<T>,
    ) -> Result<Value> {
        let n = self.repeat.max(1);
        let mut runs = (0..n)
            .map(|_| Ok(serde_json::to_value(measure()?)?))
            .collect::<Result<Vec<Value>>>()?;
        let value = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN);
        runs.sort_by(|a, b| value(a).total_cmp(&value(b)));
        let all: Vec<f64> = runs.iter().map(value).collect();
        let mut median = runs.swap_remove(n / 2);
        if n > 1 {
            median["runs"] = json!({ key: all });
        }
        Ok(median)
    }
}

fn run(args: &[String]) -> Result<()> {
    let options = parse_options(args)?;
    let bins = binary_dir()?;
    for name in ["referee-server", "referee-client"] {
        if !bins.join(name).is_file() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                bins.join(name).display()
            );
        }
    }
    let bench = Bench {
        bins,
        server_args: options.server_args.clone(),
        repeat: options.repeat,
    };
    let videos = videos(&options.work.join("videos"), options.frames, options.quick)?;
    let data = options.work.join("data");
    fs::create_dir_all(&data).with_context(|| format!("cannot create {}", data.display()))?;
    let command = std::iter::once("target/release/referee-bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut results = Results {
        command,
        conditions: conditions(&options, &data, &videos),
        limits: None,
        e2e: None,
        ingest: None,
        processing: None,
        hostile: None,
        player: None,
        clips: None,
        cluster: None,
    };
    let wants = |s: &str| options.sections.iter().any(|x| x == s);
    if wants("limits") {
        warm_up(&data)?;
        results.limits = Some(limits(&bench, &videos, &data, options.quick)?);
    }
    if wants("e2e") {
        warm_up(&data)?;
        results.e2e = Some(e2e(&bench, &data, &videos, options.quick)?);
    }
    if wants("ingest") {
        warm_up(&data)?;
        results.ingest = Some(ingest_all(&bench, &data, &videos, options.quick)?);
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
        results.conditions.videos.push(uhd.describe());
        let mut all = videos.clone();
        all.push(uhd);
        results.processing = Some(processing_all(&bench, &data, &all, options.quick)?);
    }
    if wants("hostile") {
        warm_up(&data)?;
        results.hostile = Some(hostile::section(&bench, &data, &videos, options.quick)?);
    }
    if wants("player") {
        warm_up(&data)?;
        results.player = Some(player::section(&bench, &data, &videos, options.quick)?);
    }
    if wants("clips") {
        warm_up(&data)?;
        results.clips = Some(clips::section(&bench, &data, &videos, options.bout_secs)?);
    }
    if wants("cluster") {
        warm_up(&data)?;
        results.cluster = Some(cluster::section(&bench, &data, &videos, options.quick)?);
    }
    results.conditions.loadavg_at_end = Some(
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
            .to_string(),
    );
    // The targets and the table read the sections' rows by name.
    let mut results = serde_json::to_value(&results)?;
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
