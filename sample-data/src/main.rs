//! `make-sample [--out-dir DIR] [--vfr] [--cameras]`: writes the sample session, `bout.mp4`
//! (640x480, 30 fps, 150 frames, mp4v) and `bout.txt` (its signal file), into DIR (default:
//! this crate's folder); with `--vfr`, also `phone.mp4`, a variable frame rate recording as
//! phones make them (H.264, 30 fps for 3 s then 15 fps for 3 s); with `--cameras`, also
//! `left.mp4` and `right.mp4`, two cameras of the bout: the bout's own (the same as
//! `bout.mp4`) and one started 0.4 s later at 25 fps, 480x360.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use referee_sample_data::{
    write_bout_video, write_camera_video, write_signal, write_timed_video, Camera, SyntheticVideo,
    TimedCodec, TimedVideo, BOUT_EVENTS, BOUT_PHRASES,
};

const USAGE: &str = "usage: make-sample [--out-dir DIR] [--vfr] [--cameras]\n\n\
Writes bout.mp4 (640x480, 30 fps, 150 frames, mp4v) and bout.txt (its signal file) into DIR\n\
(default: the sample-data folder of the source tree). With --vfr, also phone.mp4: 640x480\n\
H.264 at a variable frame rate, 30 fps for 3 s then 15 fps for 3 s. With --cameras, also\n\
two cameras of the bout, mp4v: left.mp4, the bout's own camera (the same as bout.mp4), and\n\
right.mp4, started 0.4 s after it, 480x360 at 25 fps, 115 frames (its frame k shows the\n\
bout at 0.4 + k/25 s).";

fn main() -> Result<()> {
    let Args {
        out_dir,
        vfr,
        cameras,
    } = parse_args(std::env::args().skip(1))?;
    std::fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the output folder {}", out_dir.display()))?;

    let spec = SyntheticVideo::BOUT;
    let video = out_dir.join("bout.mp4");
    write_bout_video(&video, &spec, &BOUT_PHRASES)
        .with_context(|| format!("writing {}", video.display()))?;
    report(
        &video,
        &format!(
            "{} frames, {}x{} at {} fps ({:.1} s), mp4v",
            spec.frames,
            spec.width,
            spec.height,
            spec.fps,
            spec.duration_s()
        ),
    )?;

    let signal = out_dir.join("bout.txt");
    write_signal(&signal, &BOUT_EVENTS).with_context(|| format!("writing {}", signal.display()))?;
    report(&signal, &format!("{} events", BOUT_EVENTS.len()))?;

    if vfr {
        let phone = out_dir.join("phone.mp4");
        let spec = TimedVideo::thirty_then_fifteen(640, 480, TimedCodec::H264);
        let times = write_timed_video(&phone, &spec)
            .with_context(|| format!("writing {}", phone.display()))?;
        report(
            &phone,
            &format!(
                "{} frames, 640x480, H.264, 30 fps for 3 s then 15 fps (frame 120 at {:.3} s)",
                times.len(),
                times.get(120).copied().unwrap_or_default() as f64 / 1e6
            ),
        )?;
    }

    if cameras {
        for (name, camera) in [
            ("left.mp4", Camera::of_bout(&spec)),
            ("right.mp4", Camera::RIGHT),
        ] {
            let path = out_dir.join(name);
            write_camera_video(&path, &spec, &BOUT_PHRASES, &camera)
                .with_context(|| format!("writing {}", path.display()))?;
            let c = camera.spec;
            report(
                &path,
                &format!(
                    "{} frames, {}x{} at {} fps ({:.1} s), mp4v, started {} s after the bout",
                    c.frames,
                    c.width,
                    c.height,
                    c.fps,
                    c.duration_s(),
                    camera.offset_s
                ),
            )?;
        }
    }
    Ok(())
}

struct Args {
    out_dir: PathBuf,
    vfr: bool,
    cameras: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args> {
    let mut out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut vfr = false;
    let mut cameras = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--vfr" => vfr = true,
            "--cameras" => cameras = true,
            "--out-dir" => match args.next() {
                Some(dir) => out_dir = PathBuf::from(dir),
                None => bail!("--out-dir needs a folder\n\n{USAGE}"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => match other.strip_prefix("--out-dir=") {
                Some(dir) => out_dir = PathBuf::from(dir),
                None => bail!("unknown argument {other:?}\n\n{USAGE}"),
            },
        }
    }
    Ok(Args {
        out_dir,
        vfr,
        cameras,
    })
}

fn report(path: &Path, what: &str) -> Result<()> {
    let bytes = std::fs::metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    println!("wrote {} ({bytes} bytes): {what}", path.display());
    Ok(())
}
