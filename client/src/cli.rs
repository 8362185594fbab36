//! The command line: `referee-client URL --video FILE [--signal FILE] [options]`.

use std::path::PathBuf;

use clap::Parser;
use referee_protocol::state::{valid_name, MAX_NAME_LEN};

/// Streams a recorded video and its signal file to a referee server, which stores the
/// frames, rebuilds the video and lines the signal events up with it.
#[derive(Debug, Clone, Parser)]
#[command(version)]
pub struct Args {
    /// Server URL, e.g. http://HOST:8080 (also https://, ws:// or wss://). Without a path
    /// the client connects to /stream.
    pub server: String,

    /// The recorded video to stream (any file OpenCV can read, e.g. .avi or .mp4).
    #[arg(long, value_name = "FILE")]
    pub video: PathBuf,

    /// The signal file recorded beside the video: one `TIME EVENT [key=value ...]` a line.
    #[arg(long, value_name = "FILE")]
    pub signal: Option<PathBuf>,

    /// Log debug details to stderr and print progress as plain lines instead of a bar.
    #[arg(long, short)]
    pub verbose: bool,

    /// JPEG quality of the frames sent, 1 to 100.
    #[arg(long, value_name = "N", default_value_t = 90,
          value_parser = clap::value_parser!(u8).range(1..=100))]
    pub quality: u8,

    /// Session name: letters, digits, '-' and '_'. Defaults to the video's file name
    /// without its extension.
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,

    /// Seconds to wait for the connection, the WebSocket handshake and the server's
    /// SESSION_STARTED.
    #[arg(long, value_name = "SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub connect_timeout: u64,

    /// Bearer token the server asks for (also from REFEREE_TOKEN).
    #[arg(long, env = "REFEREE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Continue session SESSION_ID, started by this client before it stopped, with the same
    /// video and signal file: frames the server already has are not sent again.
    #[arg(long, value_name = "SESSION_ID")]
    pub resume: Option<String>,

    /// Reconnection attempts after a dropped connection (per outage, with backoff).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub retries: u32,
}

/// Accepts a session name the server will take.
fn parse_name(name: &str) -> Result<String, String> {
    if valid_name(name) {
        Ok(name.to_string())
    } else {
        Err(format!(
            "use 1 to {MAX_NAME_LEN} letters, digits, '-' or '_'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(args.video, PathBuf::from("bout.avi"));
        assert_eq!(args.signal, Some(PathBuf::from("bout.txt")));
        assert!(args.verbose);
        assert_eq!(args.quality, 90);
        assert_eq!(args.name, None);
        assert_eq!(args.connect_timeout, 10);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["--quality", "0"][..],
            &["--quality", "101"],
            &["--name", "../etc"],
            &["--connect-timeout", "0"],
        ] {
            let mut argv = vec!["referee-client", "ws://h:1", "--video", "v.avi"];
            argv.extend_from_slice(bad);
            assert!(Args::try_parse_from(&argv).is_err(), "{bad:?}");
        }
    }
}
