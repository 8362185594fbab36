//! The settings the server runs with, in sections, each the type the modules that use it
//! take: made once from the flat [`Config`] (what the flags, the environment and the file
//! give, each value checked by clap) by [`Config::settings`], which reads the token file, so
//! that nothing after it meets a setting it cannot use or a secret held twice.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, ConfigError, HIDDEN};
use crate::http::auth::Tokens;
use crate::notify::webhooks::History;
use crate::pipeline;
use crate::store::CacheLimits;

/// The largest window `window_bytes` alone offers, in frames.
pub const MAX_BYTES_WINDOW: u32 = 1024;

/// Everything the server runs with, by section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--listen`.
    pub listen: SocketAddr,
    pub storage: Storage,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub auth: Auth,
    /// `--tls-cert` and `--tls-key`, given together; plain HTTP without them.
    pub tls: Option<Tls>,
    pub webhooks: Webhooks,
    pub processing: Processing,
    pub sweeper: Sweeper,
}

/// Where sessions are stored.
#[derive(Debug, Clone)]
pub struct Storage {
    /// `--data-dir`: the sessions, or with an object store only the local working files.
    pub data_dir: PathBuf,
    /// `--store`: the object store holding the sessions instead of `data_dir`.
    pub objects: Option<ObjectStorage>,
    /// `--registry`: the registry of several servers sharing the object store.
    pub registry: Option<RegistrySettings>,
}

/// The registry of several servers (`--registry postgres://...`).
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    /// Its address, which may hold a password.
    pub url: Secret,
    /// `--store-timeout-secs`: how long each request has to answer.
    pub timeout: Duration,
    /// `--lease-secs`: how long a lease on an upload lasts unless renewed.
    pub lease: Duration,
}

/// An object store of sessions (`--store s3://BUCKET/PREFIX`).
#[derive(Debug, Clone)]
pub struct ObjectStorage {
    pub url: String,
    /// `--store-timeout-secs`: how long each request has to answer.
    pub timeout: Duration,
    /// `--result-cache-mb`, `--frame-index-cache-mb`: what is kept of what was read.
    pub caches: CacheLimits,
}

/// What a client, a session or the disk may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// `--window`: frames in flight, at least.
    pub window: u32,
    /// `--window-bytes`: bytes of frames in flight (0: `window` only).
    pub window_bytes: u64,
    /// `--max-frame-bytes`.
    pub max_frame_bytes: u32,
    /// `--max-frame-pixels`.
    pub max_frame_pixels: u64,
    /// `--max-cameras`: cameras of one bout.
    pub max_cameras: usize,
    /// `--max-signal-bytes`.
    pub max_signal_bytes: usize,
    /// `--max-session-bytes`: bytes of frames stored per session.
    pub max_session_bytes: u64,
    /// `--max-sessions`: live sessions and sessions created ahead.
    pub max_sessions: usize,
    /// `--max-sessions-per-client`.
    pub max_sessions_per_client: usize,
    /// `--max-connections`.
    pub max_connections: u64,
    /// `--max-connections-per-client`.
    pub max_connections_per_client: u64,
    /// `--max-watchers`.
    pub max_watchers: usize,
    /// `--max-watchers-per-client`.
    pub max_watchers_per_client: usize,
    /// `--max-frame-times`: frame timestamps one `GET /api/sessions/{id}/frames` returns.
    pub max_frame_times: u64,
    /// `--min-free-disk-bytes`: the free-disk floor of the data directory.
    pub min_free_disk_bytes: u64,
}

impl Limits {
    /// The window offered to a session of `width`×`height` frames: the larger of `window`
    /// and `window_bytes` worth of frames, estimated at 2 bits per pixel, at most
    /// [`MAX_BYTES_WINDOW`] frames.
    pub fn session_window(&self, width: u32, height: u32) -> u32 {
        let frame_bytes = (u64::from(width) * u64::from(height) / 4).max(1);
        let by_bytes = (self.window_bytes / frame_bytes).min(u64::from(MAX_BYTES_WINDOW));
        self.window
            .max(u32::try_from(by_bytes).unwrap_or(MAX_BYTES_WINDOW))
    }

    /// The largest frame payload accepted in a session of `width`×`height` frames:
    /// `max_frame_bytes`, and no more than any JPEG of that size can be
    /// ([`referee_protocol::frame::max_payload_bytes`]). Announced to the client.
    pub fn session_max_frame_bytes(&self, width: u32, height: u32) -> u32 {
        let by_size = referee_protocol::frame::max_payload_bytes(width, height);
        u32::try_from(by_size).map_or(self.max_frame_bytes, |b| b.min(self.max_frame_bytes))
    }

    /// Bytes of frames the server holds in memory for a session of `width`×`height` frames
    /// (its writer's queue and the batch being written): `window_bytes`, and at least two of
    /// its largest frames, so that one batch can be received while the other is synced.
    pub fn session_queue_bytes(&self, width: u32, height: u32) -> u64 {
        let largest = u64::from(self.session_max_frame_bytes(width, height))
            + referee_protocol::FRAME_HEADER_LEN as u64;
        self.window_bytes.max(2 * largest)
    }

    /// The largest control (text) message accepted: a signal file plus room for its JSON,
    /// where each newline, tab, quote or backslash takes two bytes (a file of short events
    /// is one in ten newlines).
    pub fn max_text_bytes(&self) -> usize {
        self.max_signal_bytes.saturating_mul(2) + 64 * 1024
    }

    /// The largest WebSocket message read at all; anything larger is refused before it is
    /// buffered.
    pub fn max_message_bytes(&self) -> usize {
        (self.max_frame_bytes as usize + referee_protocol::FRAME_HEADER_LEN)
            .max(self.max_text_bytes())
            + 1024
    }
}

/// How long the server waits on a peer, or on itself.
#[derive(Debug, Clone)]
pub struct Timeouts {
    /// `--start-timeout-secs`: for SESSION_START on a new connection.
    pub start: Duration,
    /// `--heartbeat-secs`: between WebSocket pings.
    pub heartbeat: Duration,
    /// `--send-timeout-secs`: for a message to a client to be sent.
    pub send: Duration,
    /// `--idle-timeout-secs`: for a frame or message of an upload.
    pub idle: Duration,
    /// `--header-read-timeout-secs`: for an HTTP request's headers.
    pub header_read: Duration,
    /// `--keep-alive-timeout-secs`: an idle kept-alive HTTP connection.
    pub keep_alive: Duration,
    /// `--tls-handshake-timeout-secs`.
    pub tls_handshake: Duration,
    /// `--shutdown-timeout-secs`: for connections to flush and close on shutdown.
    pub shutdown: Duration,
}

/// Who may do what.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The bearer tokens by scope (`--token` or `--token-file`, `--watch-token`,
    /// `--admin-token`), held here only.
    pub tokens: Tokens,
    /// `--protect-health`.
    pub protect_health: bool,
    /// `--protect-metrics`.
    pub protect_metrics: bool,
    /// `--allowed-origin`: origins whose pages may open a WebSocket.
    pub allowed_origins: Vec<String>,
}

/// The certificate HTTPS and wss:// are served with.
#[derive(Debug, Clone)]
pub struct Tls {
    /// `--tls-cert`: a PEM certificate chain.
    pub cert: PathBuf,
    /// `--tls-key`: its PEM private key.
    pub key: PathBuf,
}

/// Where session events are POSTed, and how hard.
#[derive(Debug, Clone)]
pub struct Webhooks {
    /// `--webhook`: none turns webhooks off.
    pub urls: Vec<String>,
    /// `--webhook-secret`: the key of each request's signature.
    pub secret: Option<Secret>,
    /// `--webhook-attempts`: deliveries of an event before it is set aside.
    pub attempts: u32,
    /// `--webhook-queue-max`: events waiting for one URL.
    pub queue_max: usize,
    /// `--webhook-history-files`, `--webhook-history-days`: what `sent/` and `failed/` keep.
    pub history: History,
}

/// How sessions are processed.
#[derive(Debug, Clone)]
pub struct Processing {
    /// `--processing-workers`: sessions processed at the same time.
    pub workers: usize,
    /// What each run of the pipeline takes.
    pub options: pipeline::Options,
}

/// When the sweeper abandons and deletes sessions.
#[derive(Debug, Clone)]
pub struct Sweeper {
    /// `--cleanup-interval-secs`: between sweeps.
    pub interval: Duration,
    /// `--resume-grace-secs`: a dropped session stays resumable this long.
    pub resume_grace: Duration,
    /// `--abandoned-expiry-secs`: an abandoned session's data is kept this long.
    pub abandoned_expiry: Duration,
    /// `--created-expiry-secs`: a session created ahead waits this long for its upload.
    pub created_expiry: Duration,
}

/// A secret (a token, the webhook key): shown as `(set)` by `Debug`, so that printing the
/// settings cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to compare or sign with.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(HIDDEN)
    }
}

impl Config {
    /// The settings of this configuration, in sections, with what clap cannot check: the
    /// token file read (once: the token is held in `Settings::auth` only) and the TLS pair
    /// given together. Each value was checked by its flag's parser when clap parsed it
    /// (flags, environment and the file all go through it); a `Config` whose fields are set
    /// in code (tests) is trusted with them.
    pub fn settings(self) -> Result<Settings, ConfigError> {
        let ingest = match (self.token, &self.token_file) {
            (Some(token), _) => Some(Secret(token)),
            (None, Some(path)) => Some(read_token_file(path)?),
            (None, None) => None,
        };
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(Tls { cert, key }),
            (None, None) => None,
            (Some(_), None) => return Err(ConfigError::TlsPair { missing: "tls_key" }),
            (None, Some(_)) => {
                return Err(ConfigError::TlsPair {
                    missing: "tls_cert",
                })
            }
        };
        if self.registry.is_some() && self.lease_secs <= 2 * self.store_timeout_secs {
            return Err(ConfigError::LeaseTooShort {
                lease: self.lease_secs,
                timeout: self.store_timeout_secs,
            });
        }
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Ok(Settings {
            listen: self.listen,
            storage: Storage {
                objects: self.store.map(|url| ObjectStorage {
                    url,
                    timeout: Duration::from_secs(self.store_timeout_secs),
                    caches: CacheLimits {
                        result_bytes: self.result_cache_mb.saturating_mul(1 << 20),
                        frame_index_bytes: self.frame_index_cache_mb.saturating_mul(1 << 20),
                    },
                }),
                registry: self.registry.map(|url| RegistrySettings {
                    url: Secret::from(url.as_str()),
                    timeout: Duration::from_secs(self.store_timeout_secs),
                    lease: Duration::from_secs(self.lease_secs),
                }),
                data_dir: self.data_dir,
            },
            limits: Limits {
                window: self.window,
                window_bytes: self.window_bytes,
                max_frame_bytes: self.max_frame_bytes,
                max_frame_pixels: self.max_frame_pixels,
                max_cameras: usize::from(self.max_cameras),
                max_signal_bytes: self.max_signal_bytes,
                max_session_bytes: self.max_session_bytes,
                max_sessions: self.max_sessions,
                max_sessions_per_client: self.max_sessions_per_client,
                max_connections: self.max_connections,
                max_connections_per_client: self.max_connections_per_client,
                max_watchers: self.max_watchers,
                max_watchers_per_client: self.max_watchers_per_client,
                max_frame_times: self.max_frame_times,
                min_free_disk_bytes: self.min_free_disk_bytes,
            },
            timeouts: Timeouts {
                start: Duration::from_secs(self.start_timeout_secs),
                heartbeat: Duration::from_secs(self.heartbeat_secs),
                send: Duration::from_secs(self.send_timeout_secs),
                idle: Duration::from_secs(self.idle_timeout_secs),
                header_read: Duration::from_secs(self.header_read_timeout_secs),
                keep_alive: Duration::from_secs(self.keep_alive_timeout_secs),
                tls_handshake: Duration::from_secs(self.tls_handshake_timeout_secs),
                shutdown: Duration::from_secs(self.shutdown_timeout_secs),
            },
            auth: Auth {
                tokens: Tokens {
                    watch: self.watch_token.map(Secret),
                    ingest,
                    admin: self.admin_token.map(Secret),
                },
                protect_health: self.protect_health,
                protect_metrics: self.protect_metrics,
                allowed_origins: self.allowed_origin,
            },
            tls,
            webhooks: Webhooks {
                urls: self.webhook,
                secret: self.webhook_secret.map(Secret),
                attempts: self.webhook_attempts,
                queue_max: size(self.webhook_queue_max),
                history: History {
                    files: self.webhook_history_files,
                    max_age: Duration::from_secs(
                        self.webhook_history_days.saturating_mul(24 * 3600),
                    ),
                },
            },
            processing: Processing {
                workers: usize::from(self.processing_workers),
                options: pipeline::Options {
                    video_preset: self.video_preset,
                    max_frame_pixels: self.max_frame_pixels,
                    bout_target: self.bout_target,
                    clips: pipeline::ClipOptions {
                        pre_roll_s: self.clip_pre_roll_secs,
                        post_roll_s: self.clip_post_roll_secs,
                        max_clips: size(self.max_clips),
                    },
                },
            },
            sweeper: Sweeper {
                interval: Duration::from_secs(self.cleanup_interval_secs),
                resume_grace: Duration::from_secs(self.resume_grace_secs),
                abandoned_expiry: Duration::from_secs(self.abandoned_expiry_secs),
                created_expiry: Duration::from_secs(self.created_expiry_secs),
            },
        })
    }
}

/// The token of `--token-file`: its first line, trimmed, which must not be empty.
fn read_token_file(path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyTokenFile {
            path: path.to_path_buf(),
        });
    }
    Ok(Secret(token.to_string()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn defaults() -> Config {
        Config::try_parse_from(["referee-server", "--listen=127.0.0.1:0", "--data-dir=d"]).unwrap()
    }

    #[test]
    fn a_registry_with_the_default_lease_and_store_deadline_starts() {
        let mut config = defaults();
        config.registry = Some("postgres://referee@db/referee".into());
        let settings = config.clone().settings().unwrap();
        let registry = settings.storage.registry.unwrap();
        assert!(registry.lease > 2 * registry.timeout, "{registry:?}");
        config.lease_secs = 2 * config.store_timeout_secs;
        assert!(matches!(
            config.settings(),
            Err(ConfigError::LeaseTooShort { .. })
        ));
    }

    #[test]
    fn the_window_grows_with_smaller_frames_within_bounds() {
        let mut limits = defaults().settings().unwrap().limits;
        // 1280x720 at 2 bits per pixel is 230400 bytes: 32 MiB holds 145 of them.
        assert_eq!(limits.session_window(1280, 720), 145);
        assert_eq!(limits.session_window(3840, 2160), limits.window);
        assert_eq!(limits.session_window(16, 16), MAX_BYTES_WINDOW);
        limits.window_bytes = 0;
        assert_eq!(limits.session_window(1280, 720), limits.window);
        limits.window = 2000;
        limits.window_bytes = u64::MAX;
        assert_eq!(limits.session_window(16, 16), 2000);
    }

    #[test]
    fn a_session_holds_frames_within_its_bytes_and_takes_none_larger_than_its_size() {
        let mut limits = defaults().settings().unwrap().limits;
        assert_eq!(limits.session_max_frame_bytes(1, 1), 8 + 64 * 1024);
        assert_eq!(
            limits.session_max_frame_bytes(3840, 2160),
            limits.max_frame_bytes
        );
        assert_eq!(limits.session_queue_bytes(1, 1), limits.window_bytes);
        limits.window_bytes = 0;
        assert_eq!(
            limits.session_queue_bytes(3840, 2160),
            2 * (u64::from(limits.max_frame_bytes) + 32)
        );
    }

    #[test]
    fn the_sections_take_the_values_of_the_flags() {
        let config = Config::load_from([
            "referee-server",
            "--heartbeat-secs",
            "7",
            "--webhook-history-days",
            "2",
            "--processing-workers",
            "3",
            "--clip-pre-roll-secs",
            "0.5",
            "--store",
            "s3://bucket/prefix",
            "--store-timeout-secs",
            "9",
        ])
        .unwrap();
        let settings = config.settings().unwrap();
        assert_eq!(settings.timeouts.heartbeat, Duration::from_secs(7));
        assert_eq!(
            settings.webhooks.history.max_age,
            Duration::from_secs(2 * 24 * 3600)
        );
        assert_eq!(settings.processing.workers, 3);
        assert_eq!(settings.processing.options.clips.pre_roll_s, 0.5);
        let objects = settings.storage.objects.unwrap();
        assert_eq!(
            (objects.url.as_str(), objects.timeout),
            ("s3://bucket/prefix", Duration::from_secs(9))
        );
        assert!(settings.tls.is_none() && !settings.auth.tokens.any());
    }

    #[test]
    fn the_values_the_sections_rely_on_are_refused_by_their_flags() {
        // What would stop a timer or the workers, or that the pipeline cannot take, never
        // gets as far as `settings`: clap refuses it, from a flag or the file alike.
        for (flag, value) in [
            ("--heartbeat-secs", "0"),
            ("--cleanup-interval-secs", "0"),
            ("--send-timeout-secs", "0"),
            ("--processing-workers", "0"),
            ("--window", "5000"),
            ("--clip-post-roll-secs", "11"),
            ("--video-preset", "quick"),
            ("--store-timeout-secs", "0"),
        ] {
            let given = format!("{flag}={value}");
            let err = Config::try_parse_from(["referee-server", given.as_str()])
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag) && err.contains(value), "{flag}: {err}");
        }
    }

    #[test]
    fn the_token_file_is_read_once_and_must_hold_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret \nignored\n").unwrap();
        let mut config = defaults();
        config.token_file = Some(file.clone());
        let settings = config.clone().settings().unwrap();
        assert_eq!(
            settings.auth.tokens.ingest.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{settings:?}").contains("s3cret"), "{settings:?}");
        std::fs::write(&file, "\n").unwrap();
        let err = config.clone().settings().unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "the token file {} is empty: put the token on its first line",
                file.display()
            )
        );
        std::fs::remove_file(&file).unwrap();
        let err = config.settings().unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read the token file {}: ", file.display())),
            "{err}"
        );
    }

    #[test]
    fn tls_needs_the_certificate_and_its_key() {
        let mut config = defaults();
        config.tls_cert = Some("/etc/cert.pem".into());
        let err = config.clone().settings().unwrap_err().to_string();
        assert!(err.contains("tls_cert") && err.contains("tls_key"), "{err}");
        config.tls_key = Some("/etc/key.pem".into());
        let tls = config.settings().unwrap().tls.unwrap();
        assert_eq!(
            (tls.cert, tls.key),
            ("/etc/cert.pem".into(), "/etc/key.pem".into())
        );
    }
}
