//! The server's configuration as given: command-line flags, each with an environment
//! variable, and the TOML file (`--print-config`). [`Config::settings`]
//! (`crate::settings`) makes of it the sections the server runs with.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Serialize;
use thiserror::Error;

/// referee-server: receives recorded video sessions over WebSocket, stores every frame on
/// disk as it arrives, rebuilds the video and lines the signal events up with the frames.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "referee-server", version)]
pub struct Config {
    /// TOML file of settings, named like the flags with `_` for `-` (e.g.
    /// `max_frame_bytes = 8388608`). Flags and environment variables win over it.
    #[arg(long, env = "REFEREE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Print the effective configuration (flags, environment, file, defaults) as TOML and
    /// exit.
    #[arg(long)]
    #[serde(skip)]
    pub print_config: bool,

    /// Address and port to listen on.
    #[arg(long, env = "REFEREE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Directory where sessions are stored (created if missing).
    #[arg(long, env = "REFEREE_DATA_DIR", default_value = "./referee-data")]
    pub data_dir: PathBuf,

    /// Where sessions are stored when not in --data-dir: `s3://BUCKET/PREFIX`, S3-compatible
    /// object storage (endpoint, region and credentials from the standard AWS environment
    /// variables: AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    /// --data-dir then holds only local working files (processing's scratch, a cache of the
    /// results served, the webhook outbox).
    #[arg(long, env = "REFEREE_STORE")]
    pub store: Option<String>,

    /// Seconds each request to the object store (--store) has to answer.
    #[arg(long, env = "REFEREE_STORE_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub store_timeout_secs: u64,

    /// Mebibytes of result files (video, clips, thumbnails, reports) fetched from the object
    /// store (--store) that --data-dir/cache keeps to serve again: past it, older versions and
    /// then the files used least recently are removed (never the file just fetched, so a
    /// larger result is still served). 0 keeps no copy: each request fetches its file.
    #[arg(long, env = "REFEREE_RESULT_CACHE_MB", default_value_t = crate::store::object::DEFAULT_RESULT_CACHE_MB, value_parser = clap::value_parser!(u64).range(0..=16 * 1024 * 1024))]
    pub result_cache_mb: u64,

    /// Mebibytes of frame indexes (24 bytes a frame) read from the object store (--store)
    /// that memory keeps, so that opening a session's frames again (each frame the replay
    /// player shows) reads only the indexes of its new segments; past it, the sessions used
    /// least recently are dropped. 0 keeps none.
    #[arg(long, env = "REFEREE_FRAME_INDEX_CACHE_MB", default_value_t = crate::store::object::DEFAULT_FRAME_INDEX_CACHE_MB, value_parser = clap::value_parser!(u64).range(0..=64 * 1024))]
    pub frame_index_cache_mb: u64,

    /// The registry of several servers sharing one --store: `postgres://USER:PASSWORD@HOST/DB`
    /// (PostgreSQL; its tables are created at start). Sessions' records and the lease of the
    /// server receiving each upload live there, so that any server can serve and resume any
    /// session. Shown as "(set)" by --print-config: it may hold a password.
    #[arg(long, env = "REFEREE_REGISTRY")]
    #[serde(serialize_with = "hidden")]
    pub registry: Option<String>,

    /// Seconds a server's lease on an upload lasts unless renewed (with --registry): another
    /// server takes over a session this long after its server died. More than twice
    /// --store-timeout-secs, so that a batch started under a lease is stored before it ends.
    #[arg(long, env = "REFEREE_LEASE", default_value_t = 90, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,

    /// Frames a client may have sent but not yet seen acknowledged. Bounds the memory each
    /// session can take: about window × the largest frame.
    #[arg(long, env = "REFEREE_WINDOW", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub window: u32,

    /// Bytes of frames a client may have in flight: a session is offered the larger of
    /// --window and this many bytes' worth of its frames (estimated at 2 bits per pixel of
    /// the size SESSION_START announces), at most 1024 frames, so that a fast link keeps
    /// sending while a batch is synced. 0 offers --window only.
    #[arg(long, env = "REFEREE_WINDOW_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub window_bytes: u64,

    /// Largest frame payload accepted, in bytes.
    #[arg(long, env = "REFEREE_MAX_FRAME_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_frame_bytes: u32,

    /// Largest signal file accepted, in bytes.
    #[arg(long, env = "REFEREE_MAX_SIGNAL_BYTES", default_value_t = 1024 * 1024)]
    pub max_signal_bytes: usize,

    /// Seconds a new connection has to send SESSION_START.
    #[arg(long, env = "REFEREE_START_TIMEOUT", default_value_t = 30)]
    pub start_timeout_secs: u64,

    /// Sessions processed at the same time; more wait in line.
    #[arg(long, env = "REFEREE_PROCESSING_WORKERS", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub processing_workers: u16,

    /// x264 preset of the H.264 video built from each session's frames: a faster one
    /// processes sooner and writes a larger file (ultrafast, superfast, veryfast, faster,
    /// fast, medium, slow, slower, veryslow, placebo).
    #[arg(long, env = "REFEREE_VIDEO_PRESET", default_value = "veryfast", value_parser = clap::builder::PossibleValuesParser::new(crate::pipeline::VIDEO_PRESETS))]
    pub video_preset: String,

    /// Largest frame accepted, in pixels (width × height), checked at SESSION_START and
    /// SESSION_RESUME: processing holds a few decoded frames and x264's own, so this bounds
    /// its memory. The default is 4096×2160 (4K).
    #[arg(long, env = "REFEREE_MAX_FRAME_PIXELS", default_value_t = crate::frame_size::DEFAULT_MAX_FRAME_PIXELS, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frame_pixels: u64,

    /// Cameras of one bout, at most (1 to 16): a SESSION_START that starts a bout of more is
    /// refused with `too_many_cameras`.
    #[arg(long, env = "REFEREE_MAX_CAMERAS", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=referee_protocol::MAX_CAMERAS as i64))]
    pub max_cameras: u16,

    /// Touches that win a bout (15 in direct elimination, 5 in pools): the report marks the
    /// touch at equal scores one short of it (14-14) as one to review.
    #[arg(long, env = "REFEREE_BOUT_TARGET", default_value_t = referee_protocol::scoring::DEFAULT_BOUT_TARGET, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub bout_target: u32,

    /// Seconds of video before the start of an action in its clip (0 to 10): each touch's
    /// clip runs from there to --clip-post-roll-secs after the touch.
    #[arg(long, env = "REFEREE_CLIP_PRE_ROLL_SECS", default_value_t = 1.0, value_parser = clip_roll_secs)]
    pub clip_pre_roll_secs: f64,

    /// Seconds of video after an event in its clip (0 to 10).
    #[arg(long, env = "REFEREE_CLIP_POST_ROLL_SECS", default_value_t = 1.0, value_parser = clip_roll_secs)]
    pub clip_post_roll_secs: f64,

    /// Clips per session at most: the events beyond it (in the signal file's order) get
    /// none, and report.json says how many (`clips_skipped`).
    #[arg(long, env = "REFEREE_MAX_CLIPS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub max_clips: u64,

    /// Frame timestamps one `GET /api/sessions/{id}/frames?from=N&count=M` returns at most
    /// (the replay player asks for them in pieces): a larger `count` gets 400
    /// `frame_range_too_large`.
    #[arg(long, env = "REFEREE_MAX_FRAME_TIMES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_frame_times: u64,

    /// Bearer token that may stream and create sessions, and read and watch
    /// (`Authorization: Bearer TOKEN`). A server with no token at all is open to anyone who
    /// reaches it.
    #[arg(long, env = "REFEREE_TOKEN", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub token: Option<String>,

    /// Bearer token that may only read and watch (the HTTP API, live events, live view).
    #[arg(long, env = "REFEREE_WATCH_TOKEN", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub watch_token: Option<String>,

    /// Bearer token that may do everything, deleting sessions included.
    #[arg(long, env = "REFEREE_ADMIN_TOKEN", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub admin_token: Option<String>,

    /// Require a token (any scope) for /health.
    #[arg(long, env = "REFEREE_PROTECT_HEALTH")]
    pub protect_health: bool,

    /// Require a token (any scope) for /metrics.
    #[arg(long, env = "REFEREE_PROTECT_METRICS")]
    pub protect_metrics: bool,

    /// File holding the bearer token (its first line), instead of --token.
    #[arg(long, env = "REFEREE_TOKEN_FILE", conflicts_with = "token")]
    pub token_file: Option<PathBuf>,

    /// PEM certificate chain to serve HTTPS and wss:// with (needs --tls-key).
    #[arg(long, env = "REFEREE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(long, env = "REFEREE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Seconds an HTTP client has to send a request's headers, counted from the connection's
    /// start or the end of the previous response; a connection that does not is closed.
    #[arg(long, env = "REFEREE_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_secs: u64,

    /// Seconds an idle kept-alive HTTP connection (no request in progress) stays open.
    #[arg(long, env = "REFEREE_KEEP_ALIVE_TIMEOUT", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive_timeout_secs: u64,

    /// Seconds a new connection has to complete its TLS handshake (with --tls-cert).
    #[arg(long, env = "REFEREE_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub tls_handshake_timeout_secs: u64,

    /// Connections open at once (HTTP, WebSocket uploads, watchers); more are closed at once
    /// (plain HTTP gets a 503 `too_many_connections` first).
    #[arg(long, env = "REFEREE_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: u64,

    /// Connections one client address (an IPv6 /64) may have open at once.
    #[arg(long, env = "REFEREE_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_client: u64,

    /// Live watchers (event streams, live views) at once; more are refused with 503
    /// `too_many_watchers`.
    #[arg(long, env = "REFEREE_MAX_WATCHERS", default_value_t = 1024)]
    pub max_watchers: usize,

    /// Live watchers one client address may have at once; more are refused with 429
    /// `too_many_watchers`.
    #[arg(long, env = "REFEREE_MAX_WATCHERS_PER_CLIENT", default_value_t = 64)]
    pub max_watchers_per_client: usize,

    /// Origin (e.g. `https://scores.example.org`) whose pages may open a WebSocket to
    /// /stream, besides the server's own. May be given more than once. Checked when the server
    /// has no token, or when any is given; a client that sends no Origin (not a browser) is
    /// never refused.
    #[arg(long, env = "REFEREE_ALLOWED_ORIGIN", value_delimiter = ',')]
    pub allowed_origin: Vec<String>,

    /// URL to POST session events to (session.created, session.completed, session.failed),
    /// as JSON. May be given more than once.
    #[arg(long, env = "REFEREE_WEBHOOK", value_delimiter = ',')]
    pub webhook: Vec<String>,

    /// Secret for the `X-Referee-Signature: sha256=HEX` header of webhook requests
    /// (HMAC-SHA256 of the body).
    #[arg(long, env = "REFEREE_WEBHOOK_SECRET", hide_env_values = true)]
    #[serde(serialize_with = "hidden")]
    pub webhook_secret: Option<String>,

    /// Delivery attempts of a webhook event before it is set aside in webhooks/failed/.
    #[arg(long, env = "REFEREE_WEBHOOK_ATTEMPTS", default_value_t = 12)]
    pub webhook_attempts: u32,

    /// Webhook events waiting for one URL, at most; when more come, the oldest is set aside
    /// (recorded as `dropped` in webhooks/failed/, counted in referee_webhooks_dropped_total).
    #[arg(long, env = "REFEREE_WEBHOOK_QUEUE_MAX", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_queue_max: u64,

    /// Files webhooks/sent/ and webhooks/failed/ each keep (the newest).
    #[arg(long, env = "REFEREE_WEBHOOK_HISTORY_FILES", default_value_t = 1000)]
    pub webhook_history_files: usize,

    /// Days webhooks/sent/ and webhooks/failed/ keep a file.
    #[arg(long, env = "REFEREE_WEBHOOK_HISTORY_DAYS", default_value_t = 7)]
    pub webhook_history_days: u64,

    /// Seconds a dropped session stays resumable before it is abandoned.
    #[arg(long, env = "REFEREE_RESUME_GRACE", default_value_t = 600)]
    pub resume_grace_secs: u64,

    /// Seconds an abandoned session's data is kept before it is deleted.
    #[arg(long, env = "REFEREE_ABANDONED_EXPIRY", default_value_t = 7 * 24 * 3600)]
    pub abandoned_expiry_secs: u64,

    /// Seconds a session created ahead (`POST /api/sessions`) waits for its upload before it
    /// is deleted (it holds no data yet).
    #[arg(long, env = "REFEREE_CREATED_EXPIRY", default_value_t = 24 * 3600)]
    pub created_expiry_secs: u64,

    /// Seconds between WebSocket pings; a client silent for three of them is disconnected.
    #[arg(long, env = "REFEREE_HEARTBEAT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub heartbeat_secs: u64,

    /// Seconds a connected session may go without a frame or message before it is detached.
    #[arg(long, env = "REFEREE_IDLE_TIMEOUT", default_value_t = 300)]
    pub idle_timeout_secs: u64,

    /// Seconds a message to a client may take to be sent (an ACK, PROGRESS...); a client that
    /// stops reading for longer is taken for gone and its session detached.
    #[arg(long, env = "REFEREE_SEND_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub send_timeout_secs: u64,

    /// Sessions live at once (receiving or processing); more are refused with server_busy.
    #[arg(long, env = "REFEREE_MAX_SESSIONS", default_value_t = 256)]
    pub max_sessions: usize,

    /// Sessions one client address may stream at once.
    #[arg(long, env = "REFEREE_MAX_SESSIONS_PER_CLIENT", default_value_t = 32)]
    pub max_sessions_per_client: usize,

    /// Largest session, in bytes of frames stored.
    #[arg(long, env = "REFEREE_MAX_SESSION_BYTES", default_value_t = 64 * 1024 * 1024 * 1024)]
    pub max_session_bytes: u64,

    /// Free space to keep on the data directory's disk: new sessions are refused below it,
    /// and frames below half of it (existing data is never at risk).
    #[arg(long, env = "REFEREE_MIN_FREE_DISK_BYTES", default_value_t = 1024 * 1024 * 1024)]
    pub min_free_disk_bytes: u64,

    /// Seconds to wait on shutdown for connections to flush and close.
    #[arg(long, env = "REFEREE_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout_secs: u64,

    /// Seconds between sweeps that abandon and expire detached sessions.
    #[arg(long, env = "REFEREE_CLEANUP_INTERVAL", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub cleanup_interval_secs: u64,
}

/// A configuration that cannot be used.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid TOML: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("the config file {path} has an unknown setting {key:?}; the settings are: {known}")]
    UnknownKey {
        path: PathBuf,
        key: String,
        known: String,
    },
    #[error("the config file {path}: {}", clap_message(source))]
    Invalid { path: PathBuf, source: clap::Error },
    /// A value of the file that its setting does not take, named by the file's key.
    #[error("the config file {path}: {key}: invalid value '{value}'{reason}")]
    InvalidValue {
        path: PathBuf,
        key: String,
        value: String,
        reason: String,
    },
    #[error("the config file {path} sets {key} wrongly: {problem}")]
    BadValue {
        path: PathBuf,
        key: String,
        problem: String,
    },
    #[error("cannot read the token file {path}: {source}")]
    TokenFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {path} is empty: put the token on its first line")]
    EmptyTokenFile { path: PathBuf },
    /// A `Config` built in code with one of the pair only (clap refuses it on the command
    /// line).
    #[error("tls_cert and tls_key are given together or not at all: {missing} is missing")]
    TlsPair { missing: &'static str },
    #[error("--lease-secs {lease} must be more than twice --store-timeout-secs {timeout}, so that a batch of frames started under a lease is stored before it ends: raise --lease-secs or lower --store-timeout-secs")]
    LeaseTooShort { lease: u64, timeout: u64 },
}

/// The settings `--print-config` shows as `"(set)"` rather than their value.
const SECRETS: [&str; 5] = [
    "token",
    "watch_token",
    "admin_token",
    "webhook_secret",
    "registry",
];

/// What `--print-config` shows for a secret that is set.
pub(crate) const HIDDEN: &str = "(set)";

/// Shows a secret as set or not, never its value.
fn hidden<S: serde::Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => s.serialize_str(HIDDEN),
        None => s.serialize_none(),
    }
}

impl Config {
    /// Parses the command line and the environment, then fills what they leave at its
    /// default from the config file, if one is named. Usage errors exit the process with
    /// clap's message, as for any command-line tool.
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(std::env::args_os())
    }

    pub fn load_from(
        args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    ) -> Result<Self, ConfigError> {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let matches = Self::command().get_matches_from(&args);
        let first = Self::from_arg_matches(&matches).map_err(|e| e.exit())?;
        let Some(path) = first.config.clone() else {
            return Ok(first);
        };
        let extra = Self::file_args(&path, &matches)?;
        let mut all = args;
        all.extend(extra.iter().cloned());
        Self::try_parse_from(all).map_err(|source| file_error(path, &extra, source))
    }

    /// The settings of the file at `path` as `--flag=value` arguments, for those that no flag
    /// or environment variable sets.
    fn file_args(path: &Path, matches: &clap::ArgMatches) -> Result<Vec<OsString>, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        let command = Self::command();
        let settings: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|a| {
                a.get_long().is_some() && !["config", "print_config"].contains(&a.get_id().as_str())
            })
            .collect();
        let mut extra = Vec::new();
        for (key, value) in table {
            let Some(arg) = settings.iter().find(|a| a.get_id() == key.as_str()) else {
                return Err(ConfigError::UnknownKey {
                    path: path.to_path_buf(),
                    key,
                    known: settings
                        .iter()
                        .map(|a| a.get_id().as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            let from_default = matches!(
                matches.value_source(&key),
                None | Some(ValueSource::DefaultValue)
            );
            if from_default {
                let args =
                    setting_args(arg, &key, value).map_err(|problem| ConfigError::BadValue {
                        path: path.to_path_buf(),
                        key: key.clone(),
                        problem,
                    })?;
                extra.extend(args.into_iter().map(OsString::from));
            }
        }
        Ok(extra)
    }

    /// The effective configuration as TOML (secrets shown as set or not).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot show the configuration: {e}\n"))
    }

    /// The defaults, with the given data directory and listen address (for tests and
    /// embedding).
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        let mut config = Self::parse_from(["referee-server"]);
        config.listen = listen;
        config.data_dir = data_dir;
        config
    }
}

/// The longest pre-roll or post-roll of a clip, in seconds.
pub const MAX_CLIP_ROLL_SECS: f64 = 10.0;

/// Parses `--clip-pre-roll-secs` and `--clip-post-roll-secs`: seconds from 0 to
/// [`MAX_CLIP_ROLL_SECS`].
fn clip_roll_secs(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !(0.0..=MAX_CLIP_ROLL_SECS).contains(&secs) {
        return Err(format!(
            "{secs} s is out of range: give 0 to {MAX_CLIP_ROLL_SECS} seconds"
        ));
    }
    Ok(secs)
}

/// Clap's message for `err`, on one line and without its `error: ` prefix (the caller says
/// it once).
fn clap_message(err: &clap::Error) -> String {
    let text = err.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// The error of the config file at `path` whose settings became the arguments `extra`: a
/// value its setting refuses is named by the file's key, not the flag.
fn file_error(path: PathBuf, extra: &[OsString], source: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let context = |kind| match source.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    let (Some(arg), Some(value)) = (
        context(ContextKind::InvalidArg),
        context(ContextKind::InvalidValue),
    ) else {
        return ConfigError::Invalid { path, source };
    };
    // `--window <N>` was the file's `window` if the file gave `--window=...`.
    let flag = arg.split([' ', '=']).next().unwrap_or_default().to_string();
    let from_file = extra
        .iter()
        .any(|a| a.to_string_lossy().starts_with(&format!("{flag}=")));
    if !from_file {
        return ConfigError::Invalid { path, source };
    }
    let reason =
        std::error::Error::source(&source).map_or_else(String::new, |why| format!(" ({why})"));
    ConfigError::InvalidValue {
        path,
        key: flag.trim_start_matches('-').replace('-', "_"),
        value,
        reason,
    }
}

/// The command-line arguments that give the setting `key` of `arg` the file's `value`: a
/// string or number as `--flag=value`, an array as one `--flag=item` per item (for settings
/// that may be given more than once), `true` as the bare `--flag` and `false` as nothing (for
/// flags without a value).
fn setting_args(arg: &clap::Arg, key: &str, value: toml::Value) -> Result<Vec<String>, String> {
    let flag = format!("--{}", key.replace('_', "-"));
    let takes_value = arg.get_action().takes_values();
    match value {
        toml::Value::Boolean(on) if !takes_value => {
            let given = matches!(arg.get_action(), clap::ArgAction::SetTrue) == on;
            Ok(if given { vec![flag] } else { Vec::new() })
        }
        _ if !takes_value => Err(format!(
            "it is a switch: write `{key} = true` or `{key} = false`"
        )),
        toml::Value::Array(items) => {
            if !matches!(arg.get_action(), clap::ArgAction::Append) {
                return Err(format!(
                    "it takes one value, not a list: write `{key} = VALUE`"
                ));
            }
            items
                .into_iter()
                .map(|item| Ok(format!("{flag}={}", scalar(key, item)?)))
                .collect()
        }
        other => Ok(vec![format!("{flag}={}", scalar(key, other)?)]),
    }
}

/// A single value of the setting `key` as text.
fn scalar(key: &str, value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) if s == HIDDEN && SECRETS.contains(&key) => Err(format!(
            "\"{HIDDEN}\" is how --print-config hides a secret: put the secret itself \
             there, or remove the line and give it as a flag or environment variable"
        )),
        toml::Value::String(s) => Ok(s),
        toml::Value::Array(_) | toml::Value::Table(_) => Err(format!(
            "a list or table is not a value: write `{key} = VALUE` (or a list of values \
             where the setting may be given more than once)"
        )),
        other => Ok(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_win_over_environment_over_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("referee.toml");
        std::fs::write(
            &file,
            "window = 32\nmax_signal_bytes = 2048\ndata_dir = \"/srv/referee\"\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let config =
            Config::load_from(["referee-server", "--config", file, "--window", "48"]).unwrap();
        assert_eq!(config.window, 48, "a flag wins over the file");
        assert_eq!(
            config.max_signal_bytes, 2048,
            "the file wins over the default"
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/referee"));
        assert_eq!(config.heartbeat_secs, 10, "the default stays");
        let shown = config.to_toml();
        assert!(shown.contains("window = 48"), "{shown}");
    }

    #[test]
    fn unknown_settings_and_bad_values_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "windw = 3\n").unwrap();
        let err = Config::load_from(["referee-server", "--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown setting \"windw\""), "{err}");
        std::fs::write(&file, "window = \"lots\"\n").unwrap();
        let err = Config::load_from(["referee-server", "--config", file.to_str().unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.toml") && err.contains("lots"), "{err}");
        // Named by the file's key, on one line, saying "error" nowhere (main says it once).
        let path = file.display();
        assert!(
            err.starts_with(&format!(
                "the config file {path}: window: invalid value 'lots'"
            )),
            "{err}"
        );
        assert!(!err.contains("error") && !err.contains('\n'), "{err}");
    }

    fn load_file(text: &str, flags: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("referee.toml");
        std::fs::write(&file, text).unwrap();
        let mut args = vec!["referee-server", "--config", file.to_str().unwrap()];
        args.extend_from_slice(flags);
        Config::load_from(args)
    }

    #[test]
    fn clip_rolls_and_max_clips_are_checked() {
        let config = Config::load_from(["referee-server"]).unwrap();
        assert_eq!(
            (
                config.clip_pre_roll_secs,
                config.clip_post_roll_secs,
                config.max_clips
            ),
            (1.0, 1.0, 500)
        );
        let config = Config::load_from([
            "referee-server",
            "--clip-pre-roll-secs",
            "0.5",
            "--clip-post-roll-secs",
            "10",
            "--max-clips",
            "0",
        ])
        .unwrap();
        assert_eq!(
            (
                config.clip_pre_roll_secs,
                config.clip_post_roll_secs,
                config.max_clips
            ),
            (0.5, 10.0, 0)
        );
        for bad in ["-1", "10.5", "soon", "NaN"] {
            let flag = format!("--clip-pre-roll-secs={bad}");
            let err = Config::try_parse_from(["referee-server", flag.as_str()])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("clip-pre-roll-secs") && err.contains("seconds"),
                "{bad}: {err}"
            );
        }
        let config = load_file("clip_post_roll_secs = 2.5\nmax_clips = 7\n", &[]).unwrap();
        assert_eq!((config.clip_post_roll_secs, config.max_clips), (2.5, 7));
        let err = load_file("clip_post_roll_secs = 11\n", &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("referee.toml") && err.contains("clip_post_roll_secs"),
            "{err}"
        );
    }

    #[test]
    fn the_cache_bounds_have_defaults_and_ranges_and_reach_the_store_settings() {
        let config = Config::load_from(["referee-server", "--store", "s3://b/p"]).unwrap();
        assert_eq!(
            (config.result_cache_mb, config.frame_index_cache_mb),
            (4096, 64)
        );
        let settings = config.settings().unwrap();
        let caches = settings.storage.objects.unwrap().caches;
        assert_eq!(caches, crate::store::CacheLimits::default());
        assert_eq!(caches.result_bytes, 4096 << 20);
        let config = load_file("result_cache_mb = 0\nframe_index_cache_mb = 1\n", &[]).unwrap();
        assert_eq!(
            (config.result_cache_mb, config.frame_index_cache_mb),
            (0, 1)
        );
        let err = Config::try_parse_from(["referee-server", "--frame-index-cache-mb=65537"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("frame-index-cache-mb"), "{err}");
    }

    #[test]
    fn a_list_in_the_file_gives_the_setting_once_per_item() {
        let config = load_file("webhook = [\"https://a\", \"https://b\"]\n", &[]).unwrap();
        assert_eq!(config.webhook, vec!["https://a", "https://b"]);
        let config = load_file("webhook = []\n", &[]).unwrap();
        assert!(config.webhook.is_empty());
        let config = load_file(
            "webhook = [\"https://a\", \"https://b\"]\n",
            &["--webhook", "https://c"],
        )
        .unwrap();
        assert_eq!(
            config.webhook,
            vec!["https://c"],
            "a flag wins over the file"
        );
    }

    #[test]
    fn true_in_the_file_turns_a_switch_on_and_false_leaves_it_off() {
        let config = load_file("protect_health = true\nprotect_metrics = false\n", &[]).unwrap();
        assert!(config.protect_health);
        assert!(!config.protect_metrics);
        let config = load_file("protect_metrics = false\n", &["--protect-metrics"]).unwrap();
        assert!(config.protect_metrics, "a flag wins over the file");
    }

    #[test]
    fn values_of_the_wrong_shape_name_the_file_and_the_setting() {
        for (text, says) in [
            ("window = [32, 64]\n", "one value, not a list"),
            ("protect_health = \"yes\"\n", "protect_health = true"),
            ("webhook = [[\"https://a\"]]\n", "not a value"),
            ("data_dir = { path = \"/srv\" }\n", "not a value"),
            ("token = \"(set)\"\n", "put the secret itself"),
        ] {
            let err = load_file(text, &[]).unwrap_err().to_string();
            let key = text.split(' ').next().unwrap();
            assert!(
                err.contains("referee.toml") && err.contains(key) && err.contains(says),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn printed_config_loads_back_as_the_same_config() {
        let config = Config::load_from([
            "referee-server",
            "--webhook",
            "https://a",
            "--webhook",
            "https://b",
            "--protect-health",
            "--window",
            "48",
            "--data-dir",
            "/srv/referee",
            "--tls-cert",
            "/etc/cert.pem",
            "--tls-key",
            "/etc/key.pem",
        ])
        .unwrap();
        let shown = config.to_toml();
        let again = load_file(&shown, &[]).unwrap();
        assert_eq!(again.to_toml(), shown);
        assert_eq!(again.webhook, vec!["https://a", "https://b"]);
        assert!(again.protect_health && !again.protect_metrics);
        assert_eq!(again.window, 48);
    }

    #[test]
    fn secrets_are_not_printed() {
        let config = Config::load_from(["referee-server", "--token", "hunter2"]).unwrap();
        let shown = config.to_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("token = \"(set)\""), "{shown}");
    }
}
