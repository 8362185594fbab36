use super::*;

/// A test video and what it holds.
#[derive(Clone)]
pub(crate) struct Video {
    pub(crate) label: String,
    pub(crate) path: PathBuf,
    pub(crate) codec: &'static str,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) frames: u32,
    pub(crate) bytes: u64,
}

impl Video {
    pub(crate) fn describe(&self) -> VideoInfo {
        VideoInfo {
            label: self.label.clone(),
            file: self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned()),
            codec: self.codec,
            width: self.width,
            height: self.height,
            frames: self.frames,
            fps: 30.0,
            bytes: self.bytes,
        }
    }
}

/// A test video as the results describe it.
#[derive(serde::Serialize)]
pub(crate) struct VideoInfo {
    pub(crate) label: String,
    pub(crate) file: Option<String>,
    pub(crate) codec: &'static str,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) frames: u32,
    pub(crate) fps: f64,
    pub(crate) bytes: u64,
}

/// Makes (or finds, from an earlier run) the test videos: 720p (and 480p) in MJPEG and
/// MPEG-4, and a 720p MJPEG video four times as long for passthrough, which is too fast to
/// measure over a few hundred frames.
pub(crate) fn videos(dir: &Path, frames: u32, quick: bool) -> Result<Vec<Video>> {
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
pub(crate) fn video(
    dir: &Path,
    size: (i32, i32),
    ext: &str,
    frames: u32,
    label: &str,
) -> Result<Video> {
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
    pub(crate) fn is_long(&self) -> bool {
        self.label.ends_with("long")
    }
}
