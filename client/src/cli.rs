//! The command line: `referee-client URL --video FILE [--signal FILE] [options]` streams a
//! session; `referee-client status URL SESSION_ID`, `referee-client list URL`,
//! `referee-client watch URL SESSION_ID`, `referee-client create URL NAME` and
//! `referee-client delete URL SESSION_ID` ask the server's HTTP API.

use std::path::{Path, PathBuf};

use clap::Parser;
use clap::Subcommand;
use referee_protocol::text::check_name;

use crate::source::FrameSize;

/// Streams a recorded video and its signal file to a referee server, which stores the
/// frames, rebuilds the video and lines the signal events up with it; or, with a command,
/// shows the sessions a server has.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "referee-client",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Without a command: stream a session.
    #[command(flatten)]
    pub stream: Option<Args>,
}

/// What the client can do besides streaming a session.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Show a session's state, progress and result links.
    Status {
        /// Server URL, e.g. http://HOST:8080.
        server: String,
        /// The session id, as `Session started:` printed it.
        session_id: String,
        #[command(flatten)]
        access: Access,
    },
    /// List the sessions stored on a server, newest first.
    List {
        /// Server URL, e.g. http://HOST:8080.
        server: String,
        #[command(flatten)]
        access: Access,
    },
    /// Follow a session's events as they happen, until it is complete (exit 0) or failed.
    Watch {
        /// Server URL, e.g. http://HOST:8080.
        server: String,
        /// The session id; it may not exist yet (e.g. created with POST /api/sessions).
        session_id: String,
        /// Seconds the server waits for a session that does not exist yet [default: the
        /// server's, 300].
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
        #[command(flatten)]
        access: Access,
    },
    /// Create a session ahead of its upload (to share its dashboard link first); stream into
    /// it later with --session ID.
    Create {
        /// Server URL, e.g. http://HOST:8080.
        server: String,
        /// Session name, any text up to 200 characters.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        access: Access,
    },
    /// Delete a session and all its files (an admin token on a server with tokens).
    Delete {
        /// Server URL, e.g. http://HOST:8080.
        server: String,
        /// The session id.
        session_id: String,
        #[command(flatten)]
        access: Access,
    },
    /// Record the signal file during the bout from a scoring box: a Favero FA-01's serial
    /// port (or a capture of its bytes), each event written the moment it is known.
    #[command(name = "box")]
    ScoringBox(crate::scoring_box::BoxArgs),
}

/// How `status`, `list` and `watch` reach a server that asks for a token or has its own CA.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Access {
    /// Bearer token the server asks for (also from REFEREE_TOKEN).
    #[arg(long, env = "REFEREE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// PEM file of a certificate authority to trust for https://, besides the system's.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
}

/// Streams a recorded video and its signal file to a referee server, which stores the
/// frames, rebuilds the video and lines the signal events up with it.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Args {
    /// Server URL, e.g. http://HOST:8080 (also https://, ws:// or wss://). Without a path
    /// the client connects to /stream.
    pub server: String,

    /// The recorded video to stream (any file OpenCV can read, e.g. .avi or .mp4). For a bout
    /// recorded by several cameras, give each as CAMERA=FILE (`--video left=cam1.mp4 --video
    /// right=cam2.mov`): they upload in parallel, each a session of the bout.
    #[arg(long, value_name = "[CAMERA=]FILE", required = true, value_parser = parse_video)]
    pub video: Vec<CameraVideo>,

    /// Seconds camera CAMERA started recording after the signal file's clock began (before
    /// it when negative), when known: its events are lined up that much earlier.
    #[arg(long, value_name = "CAMERA=SECONDS", value_parser = parse_offset)]
    pub offset: Vec<(String, f64)>,

    /// The signal file recorded beside the video: one `TIME EVENT [key=value ...]` a line.
    #[arg(long, value_name = "FILE")]
    pub signal: Option<PathBuf>,

    /// Log debug details to stderr and print progress as plain lines instead of a bar.
    #[arg(long, short)]
    pub verbose: bool,

    /// JPEG quality of re-encoded frames, 1 to 100 [default: 90]. Giving it re-encodes a
    /// Motion-JPEG video, whose frames are otherwise sent as stored.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: Option<u8>,

    /// Re-encode every frame, even those of a Motion-JPEG video, which are otherwise sent
    /// as stored (passthrough).
    #[arg(long)]
    pub reencode: bool,

    /// Scale the frames to WIDTHxHEIGHT pixels (e.g. 1280x720) before sending; re-encodes.
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub resize: Option<FrameSize>,

    /// Send at most this many frames per second [default: as fast as the server
    /// acknowledges].
    #[arg(long, value_name = "FPS", value_parser = parse_rate)]
    pub max_fps: Option<f64>,

    /// Send at most this many megabits per second [default: as fast as the server
    /// acknowledges].
    #[arg(long, value_name = "MBPS", value_parser = parse_rate)]
    pub max_mbps: Option<f64>,

    /// Session name, any text up to 200 characters. Defaults to the video's file name
    /// without its extension.
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,

    /// Seconds to wait for the connection, the WebSocket handshake and the server's
    /// SESSION_STARTED.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,

    /// Bearer token the server asks for (also from REFEREE_TOKEN).
    // Not `env`: a value from the environment would make clap take the streaming form as
    // given, and refuse `list URL` for want of a video; main.rs reads REFEREE_TOKEN.
    #[arg(long)]
    pub token: Option<String>,

    /// Continue session SESSION_ID, started by this client before it stopped, with the same
    /// video and signal file: frames the server already has are not sent again. For a bout of
    /// several cameras, BOUT_ID with the same --video CAMERA=FILE: every camera not complete
    /// is resumed (or started, if it never was).
    #[arg(long, value_name = "SESSION_ID|BOUT_ID")]
    pub resume: Option<String>,

    /// Reconnection attempts after a dropped connection (per outage, with backoff).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: u32,

    /// Stream into SESSION_ID, a session created ahead of the upload (POST /api/sessions),
    /// e.g. so that a watch link could be shared before the recording is sent.
    #[arg(long, value_name = "SESSION_ID", conflicts_with = "resume")]
    pub session: Option<String>,

    /// PEM file of a certificate authority to trust for wss:// and https://, besides the
    /// system's (e.g. a club's own CA or a self-signed server certificate).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// After processing, download report.html, report.json, the video and the thumbnails
    /// into DIR (created if needed); open DIR/report.html in a browser.
    #[arg(long, value_name = "DIR")]
    pub output: Option<PathBuf>,
}

/// One `--video`: a file, and the camera it was recorded by when the bout has several.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraVideo {
    pub camera: Option<String>,
    pub path: PathBuf,
}

/// A camera of a bout to upload: its name, its video and its offset when given.
#[derive(Debug, Clone, PartialEq)]
pub struct BoutVideo {
    pub camera: String,
    pub path: PathBuf,
    pub offset_s: Option<f64>,
}

/// Reads `[CAMERA=]FILE`: `CAMERA=` when what comes before the first `=` is a camera name
/// (letters, digits, `-`, `_`); write `./a=b.mp4` for a file whose name holds one.
fn parse_video(text: &str) -> Result<CameraVideo, String> {
    match text.split_once('=') {
        Some((camera, path)) if referee_protocol::text::valid_camera(camera) => {
            if path.is_empty() {
                return Err(format!("{text:?}: write CAMERA=FILE, e.g. left=cam1.mp4"));
            }
            Ok(CameraVideo {
                camera: Some(camera.to_string()),
                path: path.into(),
            })
        }
        _ => Ok(CameraVideo {
            camera: None,
            path: text.into(),
        }),
    }
}

/// Reads `CAMERA=SECONDS`.
fn parse_offset(text: &str) -> Result<(String, f64), String> {
    let usage = || format!("{text:?}: write CAMERA=SECONDS, e.g. right=0.40");
    let (camera, seconds) = text.split_once('=').ok_or_else(usage)?;
    let seconds: f64 = seconds.trim().parse().map_err(|_| usage())?;
    let limit = referee_protocol::state::MAX_OFFSET_S;
    if !referee_protocol::text::valid_camera(camera)
        || !seconds.is_finite()
        || seconds.abs() > limit
    {
        return Err(format!("{} (at most {limit} s either way)", usage()));
    }
    Ok((camera.to_string(), seconds))
}

impl Args {
    /// The video of a single-camera session (the first `--video`).
    pub fn video_path(&self) -> &Path {
        self.video
            .first()
            .map_or(Path::new(""), |v| v.path.as_path())
    }

    /// The cameras of a bout, when the videos name cameras: each camera's name, video and
    /// offset; `None` for a single video without a camera name (a session as before).
    pub fn cameras(&self) -> Result<Option<Vec<BoutVideo>>, String> {
        if self.video.len() == 1 && self.video[0].camera.is_none() {
            if !self.offset.is_empty() {
                return Err(
                    "--offset is for a bout of several cameras: name each video CAMERA=FILE".into(),
                );
            }
            return Ok(None);
        }
        let mut cameras: Vec<BoutVideo> = Vec::new();
        for video in &self.video {
            let Some(camera) = &video.camera else {
                return Err(format!(
                    "--video {}: with several videos, name each one's camera: --video CAMERA=FILE",
                    video.path.display()
                ));
            };
            if cameras.iter().any(|c| &c.camera == camera) {
                return Err(format!("--video names the camera {camera} twice"));
            }
            cameras.push(BoutVideo {
                camera: camera.clone(),
                path: video.path.clone(),
                offset_s: None,
            });
        }
        for (camera, seconds) in &self.offset {
            match cameras.iter_mut().find(|c| &c.camera == camera) {
                Some(entry) => entry.offset_s = Some(*seconds),
                None => return Err(format!("--offset {camera}: no --video {camera}=FILE")),
            }
        }
        Ok(Some(cameras))
    }

    /// These arguments for the session of one camera, recorded in `path`.
    pub fn for_camera(&self, path: &Path) -> Args {
        Args {
            video: vec![CameraVideo {
                camera: None,
                path: path.to_path_buf(),
            }],
            offset: Vec::new(),
            resume: None,
            ..self.clone()
        }
    }

    /// The command that continues this upload with `--resume SESSION_ID` (the id left as
    /// `SESSION_ID`): the same server, files and options that change the frames or the
    /// pace, with the signal file at `signal`. A token given on the command line is left as
    /// `--token TOKEN` (never printed); one from REFEREE_TOKEN is read from it again.
    pub fn resume_command(&self, signal: Option<&Path>) -> String {
        let mut words = vec!["referee-client".to_string(), quote(&self.server)];
        for video in &self.video {
            let path = video.path.to_string_lossy();
            let given = match &video.camera {
                Some(camera) => format!("{camera}={path}"),
                None => path.into_owned(),
            };
            words.extend(["--video".into(), quote(&given)]);
        }
        for (camera, seconds) in &self.offset {
            words.extend(["--offset".into(), format!("{camera}={seconds}")]);
        }
        if let Some(signal) = signal {
            words.extend(["--signal".into(), quote(&signal.to_string_lossy())]);
        }
        words.extend(["--resume".into(), "SESSION_ID".into()]);
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                words.extend([name.to_string(), quote(&value)]);
            }
        };
        flag("--quality", self.quality.map(|q| q.to_string()));
        flag("--resize", self.resize.map(|r| r.to_string()));
        flag("--max-fps", self.max_fps.map(|v| v.to_string()));
        flag("--max-mbps", self.max_mbps.map(|v| v.to_string()));
        flag(
            "--ca",
            self.ca.as_ref().map(|p| p.to_string_lossy().into_owned()),
        );
        flag(
            "--output",
            self.output
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        );
        let from_env = std::env::var("REFEREE_TOKEN").ok();
        if self.token.is_some() && self.token != from_env {
            words.extend(["--token".into(), "TOKEN".into()]);
        }
        if self.reencode {
            words.push("--reencode".into());
        }
        words.join(" ")
    }
}

/// `word` as one shell word: as it is when it holds only safe characters, else in single
/// quotes.
fn quote(word: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !word.is_empty() && word.chars().all(safe) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// Reads `WIDTHxHEIGHT`, each 1 to 16384 pixels.
fn parse_size(text: &str) -> Result<FrameSize, String> {
    let usage = || format!("{text:?}: write WIDTHxHEIGHT, e.g. 1280x720, each 1 to 16384");
    let (w, h) = text.split_once(['x', 'X']).ok_or_else(usage)?;
    let side = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=16384).contains(v))
    };
    match (side(w), side(h)) {
        (Some(width), Some(height)) => Ok(FrameSize { width, height }),
        _ => Err(usage()),
    }
}

/// Reads a rate: a number more than 0.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?}: write a number more than 0, e.g. 30 or 2.5"
        )),
    }
}

/// Accepts a session name the server will take.
fn parse_name(name: &str) -> Result<String, String> {
    check_name(name).map(|()| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn videos_of_several_cameras_make_a_bout_and_bad_ones_say_why() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["referee-client", "http://h:8080"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map(|a| a.cameras())
        };
        let bout = parse(&[
            "--video",
            "left=a.mp4",
            "--video",
            "right=b.mov",
            "--offset",
            "right=0.4",
        ])
        .unwrap()
        .unwrap()
        .unwrap();
        assert_eq!(
            bout,
            vec![
                BoutVideo {
                    camera: "left".into(),
                    path: "a.mp4".into(),
                    offset_s: None
                },
                BoutVideo {
                    camera: "right".into(),
                    path: "b.mov".into(),
                    offset_s: Some(0.4)
                },
            ]
        );
        assert_eq!(parse(&["--video", "./a=b.mp4"]).unwrap(), Ok(None));
        let refused = [
            (
                &["--video", "a.mp4", "--video", "right=b.mov"][..],
                "name each one's camera",
            ),
            (
                &["--video", "l=a.mp4", "--video", "l=b.mov"],
                "names the camera l twice",
            ),
            (
                &["--video", "l=a.mp4", "--offset", "r=1"],
                "no --video r=FILE",
            ),
            (
                &["--video", "a.mp4", "--offset", "r=1"],
                "--offset is for a bout",
            ),
        ];
        for (argv, why) in refused {
            let err = parse(argv).unwrap().unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        }
        assert!(parse(&["--video", "l=a.mp4", "--offset", "l=soon"]).is_err());
        assert!(parse(&["--video", "l=a.mp4", "--offset", "l=4000"]).is_err());
    }

    #[test]
    fn defaults_and_flags_parse_like_the_original_tool() {
        let args = Args::try_parse_from([
            "referee-client",
            "http://server:8080",
            "--video",
            "bout.avi",
            "--signal",
            "bout.txt",
            "--verbose",
        ])
        .unwrap();
        assert_eq!(args.server, "http://server:8080");
        assert_eq!(args.video_path(), Path::new("bout.avi"));
        assert_eq!(args.signal, Some(PathBuf::from("bout.txt")));
        assert!(args.verbose);
        assert_eq!(args.quality, None);
        assert!(!args.reencode);
        assert_eq!(
            (args.resize, args.max_fps, args.max_mbps),
            (None, None, None)
        );
        assert_eq!(args.name, None);
        assert_eq!(args.connect_timeout, 10);
    }

    #[test]
    fn upload_options_parse() {
        let args = Args::try_parse_from([
            "referee-client",
            "ws://h:1",
            "--video",
            "v.avi",
            "--quality",
            "75",
            "--reencode",
            "--resize",
            "1280x720",
            "--max-fps",
            "120",
            "--max-mbps",
            "250.5",
        ])
        .unwrap();
        assert_eq!(args.quality, Some(75));
        assert!(args.reencode);
        assert_eq!(
            args.resize,
            Some(FrameSize {
                width: 1280,
                height: 720
            })
        );
        assert_eq!((args.max_fps, args.max_mbps), (Some(120.0), Some(250.5)));
    }

    #[test]
    fn commands_and_the_streaming_form_share_one_command_line() {
        let cli = Cli::try_parse_from([
            "referee-client",
            "http://server:8080",
            "--video",
            "bout.avi",
            "--output",
            "out",
        ])
        .unwrap();
        assert_eq!(cli.command, None);
        let args = cli.stream.unwrap();
        assert_eq!(args.server, "http://server:8080");
        assert_eq!(args.output, Some(PathBuf::from("out")));

        let cli = Cli::try_parse_from(["referee-client", "status", "http://h:1", "abc"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Status {
                server: "http://h:1".into(),
                session_id: "abc".into(),
                access: Access::default(),
            })
        );
        assert!(cli.stream.is_none());
        let cli =
            Cli::try_parse_from(["referee-client", "list", "http://h:1", "--token", "t"]).unwrap();
        assert_eq!(
            cli.command,
            Some(Command::List {
                server: "http://h:1".into(),
                access: Access {
                    token: Some("t".into()),
                    ca: None
                },
            })
        );

        let cli = Cli::try_parse_from([
            "referee-client",
            "watch",
            "http://h:1",
            "abc",
            "--timeout",
            "30",
        ])
        .unwrap();
        assert_eq!(
            cli.command,
            Some(Command::Watch {
                server: "http://h:1".into(),
                session_id: "abc".into(),
                timeout: Some(30),
                access: Access::default(),
            })
        );

        for bad in [
            &["referee-client"][..],
            &["referee-client", "http://h:1"],
            &["referee-client", "watch", "http://h:1"],
            &[
                "referee-client",
                "watch",
                "http://h:1",
                "abc",
                "--timeout",
                "soon",
            ],
            &["referee-client", "list"],
            &["referee-client", "status", "http://h:1"],
            &["referee-client", "list", "http://h:1", "--video", "v.avi"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--quality", "0"][..],
            &["--quality", "101"],
            &["--name", "tab\there"],
            &["--name", ""],
            &["--connect-timeout", "0"],
            &["--resize", "1280"],
            &["--resize", "0x720"],
            &["--resize", "axb"],
            &["--max-fps", "0"],
            &["--max-mbps", "-3"],
            &["--max-fps", "fast"],
        ] {
            let mut argv = vec!["referee-client", "ws://h:1", "--video", "v.avi"];
            argv.extend_from_slice(bad);
            assert!(Args::try_parse_from(&argv).is_err(), "{bad:?}");
        }
    }
}
