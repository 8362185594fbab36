//! `referee-client box`: records the signal file from a scoring box during the bout.
//!
//! It reads a Favero FA-01's serial port (or a capture of its bytes), decodes the frames with
//! [`referee_protocol::favero`] and writes one event line the moment it is known, straight to
//! the file (nothing kept in a buffer, so stopping the program loses nothing already printed).
//!
//! Times are seconds from when the reader started (it is meant to be started with the
//! recording; `--start-offset SECS` adds the seconds the recording had already run). From a
//! `--capture` file they come from each frame's byte offset at 2400 baud 8N1: 240 bytes a
//! second, a frame's time being that of its last byte.
//!
//! The port is set up with `rustix`'s `termios` (raw mode, 2400 baud, 8N1, reads that return
//! at least every 0.1 s so that Ctrl-C and `--duration` are seen): a thin safe wrapper over the
//! system calls, already in the dependency tree, where the `serialport` crate would bring
//! `libudev` (a system package) for port listing that is not needed here.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use referee_protocol::favero::{self, BoxEvent, Decoded, Decoder, DecoderStats, Tracker};
use rustix::io::Errno;
use thiserror::Error;

/// The flags of `referee-client box`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["favero", "capture"])))]
pub struct BoxArgs {
    /// Serial port of a Favero FA-01 (also FA-05, FA-07), e.g. /dev/ttyUSB0.
    #[arg(long, value_name = "PORT")]
    pub favero: Option<PathBuf>,

    /// Read a capture of the box's bytes (raw, as they came off the port) instead of a port;
    /// times come from the byte offset at 2400 baud (240 bytes a second).
    #[arg(long, value_name = "FILE")]
    pub capture: Option<PathBuf>,

    /// The signal file to write (must not exist yet).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Seconds the video recording had already run when the reader started; added to every
    /// time.
    #[arg(long, value_name = "SECS", default_value_t = 0.0, value_parser = parse_secs)]
    pub start_offset: f64,

    /// Stop after this many seconds of reading (of capture time with --capture) [default:
    /// until Ctrl-C, or the end of the capture].
    #[arg(long, value_name = "SECS", value_parser = parse_positive_secs)]
    pub duration: Option<f64>,
}

impl Eq for BoxArgs {}

fn parse_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of seconds (0 or more)")),
    }
}

fn parse_positive_secs(text: &str) -> Result<f64, String> {
    match parse_secs(text) {
        Ok(v) if v > 0.0 => Ok(v),
        _ => Err(format!("{text:?} is not a number of seconds above 0")),
    }
}

/// Why recording from the box failed; each message says what to do.
#[derive(Debug, Error)]
pub enum ScoringBoxError {
    #[error("nothing to read: give --favero PORT (e.g. /dev/ttyUSB0) or --capture FILE")]
    NoInput,
    #[error("no serial port at {}: plug in the box's USB-serial adapter and check the name (`ls /dev/ttyUSB* /dev/ttyACM*`)", path.display())]
    PortMissing { path: PathBuf },
    #[error("permission denied opening {}: add your user to the dialout group (`sudo usermod -aG dialout $USER`), then log out and in again", path.display())]
    PortPermission { path: PathBuf },
    #[error("cannot open serial port {}", path.display())]
    PortOpen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is not a serial port: give the box's port (e.g. /dev/ttyUSB0), or --capture for a file of recorded bytes", path.display())]
    NotSerial { path: PathBuf },
    #[error("cannot set {} to raw 2400 baud 8N1", path.display())]
    PortSetup {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {} failed (is the cable still plugged in?); the events read until then are in {}", path.display(), out.display())]
    PortRead {
        path: PathBuf,
        out: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read capture {}", path.display())]
    Capture {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} already exists: give another --out, or move that file away first", path.display())]
    OutExists { path: PathBuf },
    #[error("cannot write {}: check that its folder exists and is writable", path.display())]
    Out {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a recording read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    pub stats: DecoderStats,
    pub events: u64,
}

/// The signal file being written: every line goes to the file at once.
struct Output {
    path: PathBuf,
    file: File,
    offset_us: u64,
    events: u64,
}

impl Output {
    fn create(path: &Path, source: &str, offset_us: u64) -> Result<Self, ScoringBoxError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::AlreadyExists => ScoringBoxError::OutExists {
                    path: path.to_path_buf(),
                },
                _ => ScoringBoxError::Out {
                    path: path.to_path_buf(),
                    source,
                },
            })?;
        let mut out = Self {
            path: path.to_path_buf(),
            file,
            offset_us,
            events: 0,
        };
        out.write(&format!(
            "# referee-client box: {source}; times are seconds from the start of the recording (the reader started at {})",
            format_secs(offset_us)
        ))?;
        Ok(out)
    }

    fn write(&mut self, line: &str) -> Result<(), ScoringBoxError> {
        self.file
            .write_all(format!("{line}\n").as_bytes())
            .map_err(|source| ScoringBoxError::Out {
                path: self.path.clone(),
                source,
            })
    }

    fn events(&mut self, events: Vec<BoxEvent>) -> Result<(), ScoringBoxError> {
        for mut event in events {
            event.time_us += self.offset_us;
            let line = event.line();
            self.write(&line)?;
            println!("{line}");
            self.events += 1;
        }
        Ok(())
    }

    fn finish(&mut self, stats: DecoderStats) -> Result<Recorded, ScoringBoxError> {
        let summary = summary(stats);
        self.write(&format!("# {summary}"))?;
        println!(
            "{summary}; events written to {}: {}",
            self.path.display(),
            self.events
        );
        Ok(Recorded {
            stats,
            events: self.events,
        })
    }
}

/// The closing line: frames read and skipped.
fn summary(stats: DecoderStats) -> String {
    let mut text = format!(
        "{} frames read, {} skipped for a bad checksum",
        stats.frames, stats.bad_checksum
    );
    if stats.not_bcd > 0 {
        text.push_str(&format!(
            ", {} skipped for a digit that is not BCD",
            stats.not_bcd
        ));
    }
    if stats.stray_bytes > 0 {
        text.push_str(&format!(", {} stray bytes", stats.stray_bytes));
    }
    text
}

fn format_secs(us: u64) -> String {
    format!("{}.{:03} s", us / 1_000_000, us % 1_000_000 / 1000)
}

fn secs_to_us(secs: f64) -> u64 {
    (secs * 1e6).round() as u64
}

/// Feeds bytes that arrived `time_us` after the start into the decoder and writes the events.
struct Recorder {
    decoder: Decoder,
    tracker: Tracker,
    out: Output,
}

impl Recorder {
    fn byte(&mut self, byte: u8, time_us: u64) -> Result<(), ScoringBoxError> {
        if let Some(Decoded::Frame(frame)) = self.decoder.push(byte) {
            let events = self.tracker.frame(&frame, time_us);
            self.out.events(events)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Recorded, ScoringBoxError> {
        let events = self.tracker.finish();
        self.out.events(events)?;
        self.out.finish(self.decoder.stats())
    }
}

/// Runs `referee-client box`: until Ctrl-C, `--duration` or the end of the capture.
pub fn run(args: &BoxArgs) -> Result<Recorded, ScoringBoxError> {
    let offset_us = secs_to_us(args.start_offset);
    let limit_us = args.duration.map(secs_to_us);
    match (&args.capture, &args.favero) {
        (Some(capture), _) => {
            let file = File::open(capture).map_err(|source| ScoringBoxError::Capture {
                path: capture.clone(),
                source,
            })?;
            let source = format!("capture {} read at 2400 baud 8N1", capture.display());
            let out = Output::create(&args.out, &source, offset_us)?;
            read_capture(file, capture, limit_us, new_recorder(out))
        }
        (None, Some(port)) => {
            let fd = open_port(port)?;
            let source = format!("Favero FA-01 on {}, 2400 baud 8N1", port.display());
            let out = Output::create(&args.out, &source, offset_us)?;
            let stop = ctrl_c_flag();
            println!(
                "Reading the Favero FA-01 on {} (2400 baud 8N1), writing {}; Ctrl-C stops.",
                port.display(),
                args.out.display()
            );
            read_port(&fd, port, limit_us, &stop, new_recorder(out))
        }
        (None, None) => Err(ScoringBoxError::NoInput),
    }
}

fn new_recorder(out: Output) -> Recorder {
    Recorder {
        decoder: Decoder::new(),
        tracker: Tracker::new(),
        out,
    }
}

fn read_capture(
    mut file: File,
    path: &Path,
    limit_us: Option<u64>,
    mut recorder: Recorder,
) -> Result<Recorded, ScoringBoxError> {
    let mut buf = [0u8; 4096];
    let mut offset: u64 = 0;
    'reading: loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ScoringBoxError::Capture {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        for &byte in &buf[..n] {
            // The time the byte's stop bit ended.
            let time_us = (offset + 1) * 1_000_000 / favero::BYTES_PER_SEC;
            if limit_us.is_some_and(|limit| time_us > limit) {
                break 'reading;
            }
            recorder.byte(byte, time_us)?;
            offset += 1;
        }
    }
    recorder.finish()
}

/// Opens the port read-only and sets it to raw 2400 baud 8N1.
fn open_port(path: &Path) -> Result<OwnedFd, ScoringBoxError> {
    use rustix::fs::{Mode, OFlags};
    use rustix::termios::{self, ControlModes, OptionalActions, SpecialCodeIndex};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| match errno {
        Errno::NOENT | Errno::NODEV | Errno::NXIO => ScoringBoxError::PortMissing {
            path: path.to_path_buf(),
        },
        Errno::ACCESS | Errno::PERM => ScoringBoxError::PortPermission {
            path: path.to_path_buf(),
        },
        errno => ScoringBoxError::PortOpen {
            path: path.to_path_buf(),
            source: errno.into(),
        },
    })?;
    let setup = |errno: Errno| ScoringBoxError::PortSetup {
        path: path.to_path_buf(),
        source: errno.into(),
    };
    let mut settings = termios::tcgetattr(&fd).map_err(|errno| match errno {
        Errno::NOTTY | Errno::INVAL => ScoringBoxError::NotSerial {
            path: path.to_path_buf(),
        },
        errno => setup(errno),
    })?;
    settings.make_raw();
    settings.set_speed(favero::BAUD).map_err(setup)?;
    settings.control_modes -= ControlModes::PARENB | ControlModes::CSTOPB | ControlModes::CSIZE;
    settings.control_modes |= ControlModes::CS8 | ControlModes::CREAD | ControlModes::CLOCAL;
    // A read returns what has arrived, or nothing after 0.1 s.
    settings.special_codes[SpecialCodeIndex::VMIN] = 0;
    settings.special_codes[SpecialCodeIndex::VTIME] = 1;
    termios::tcsetattr(&fd, OptionalActions::Now, &settings).map_err(setup)?;
    // Bytes from before the reader started belong to no time of the recording.
    termios::tcflush(&fd, termios::QueueSelector::IFlush).map_err(setup)?;
    Ok(fd)
}

fn read_port(
    fd: &OwnedFd,
    path: &Path,
    limit_us: Option<u64>,
    stop: &AtomicBool,
    mut recorder: Recorder,
) -> Result<Recorded, ScoringBoxError> {
    let start = Instant::now();
    let limit = limit_us.map(Duration::from_micros);
    let mut buf = [0u8; 512];
    let mut failure = None;
    while !stop.load(Ordering::Relaxed) && limit.is_none_or(|l| start.elapsed() < l) {
        match rustix::io::read(fd, &mut buf) {
            Ok(n) => {
                let time_us = start.elapsed().as_micros() as u64;
                for &byte in &buf[..n] {
                    recorder.byte(byte, time_us)?;
                }
            }
            Err(Errno::INTR) => {}
            Err(errno) => {
                failure = Some(errno);
                break;
            }
        }
    }
    let out = recorder.out.path.clone();
    let recorded = recorder.finish()?;
    match failure {
        None => Ok(recorded),
        Some(errno) => Err(ScoringBoxError::PortRead {
            path: path.to_path_buf(),
            out,
            source: errno.into(),
        }),
    }
}

/// A flag set by Ctrl-C (SIGINT). The handler is in place when this returns (so a Ctrl-C
/// right after the ready line is seen), when there is a Tokio runtime to listen for it.
fn ctrl_c_flag() -> Arc<AtomicBool> {
    use tokio::signal::unix::{signal, SignalKind};
    let stop = Arc::new(AtomicBool::new(false));
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let _context = runtime.enter();
        match signal(SignalKind::interrupt()) {
            Ok(mut interrupt) => {
                let flag = stop.clone();
                runtime.spawn(async move {
                    if interrupt.recv().await.is_some() {
                        flag.store(true, Ordering::Relaxed);
                    }
                });
            }
            Err(err) => tracing::warn!("Ctrl-C cannot be caught ({err}): use --duration"),
        }
    }
    stop
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<Command, String> {
        let argv = ["referee-client", "box"].iter().chain(args);
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command.ok_or_else(|| "no command".to_string()),
            Err(err) => Err(err.to_string()),
        }
    }

    #[test]
    fn box_takes_a_port_or_a_capture_but_not_both() {
        let Ok(Command::ScoringBox(args)) = parse(&[
            "--favero",
            "/dev/ttyUSB0",
            "--out",
            "b.txt",
            "--start-offset",
            "2.5",
        ]) else {
            panic!("box with --favero does not parse");
        };
        assert_eq!(
            args.favero.as_deref(),
            Some(std::path::Path::new("/dev/ttyUSB0"))
        );
        assert_eq!(args.start_offset, 2.5);
        assert_eq!(args.duration, None);
        assert!(parse(&["--out", "b.txt"]).is_err());
        assert!(parse(&["--favero", "p", "--capture", "c", "--out", "b.txt"]).is_err());
        let err = parse(&["--capture", "c", "--out", "b.txt", "--duration", "0"]).unwrap_err();
        assert!(err.contains("not a number of seconds above 0"), "{err}");
        let err = parse(&["--capture", "c", "--out", "b", "--start-offset=-1"]).unwrap_err();
        assert!(err.contains("not a number of seconds (0 or more)"), "{err}");
    }
}
