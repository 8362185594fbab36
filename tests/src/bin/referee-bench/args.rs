use super::*;

pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) json: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) frames: u32,
    pub(crate) sections: Vec<String>,
    pub(crate) server_args: Vec<String>,
    pub(crate) repeat: usize,
    /// Seconds of the bout the clips section streams.
    pub(crate) bout_secs: u32,
}

pub(crate) fn parse_options(args: &[String]) -> Result<Options> {
    let target = binary_dir()?
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("target"));
    let mut options = Options {
        quick: false,
        json: target.join("bench").join("results.json"),
        work: target.join("bench"),
        frames: 0,
        sections: ["limits", "e2e", "ingest", "processing"]
            .map(String::from)
            .to_vec(),
        server_args: Vec::new(),
        repeat: 0,
        bout_secs: 600,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .cloned()
                .ok_or_else(|| anyhow!("{arg} needs a value\n\n{USAGE}"))
        };
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--json" => options.json = PathBuf::from(value()?),
            "--work" => options.work = PathBuf::from(value()?),
            "--frames" => {
                options.frames = value()?
                    .parse()
                    .map_err(|_| anyhow!("--frames needs a number"))?
            }
            "--only" => {
                options.sections = value()?.split(',').map(|s| s.trim().to_string()).collect()
            }
            "--server-arg" => options.server_args.push(value()?),
            "--bout-secs" => {
                options.bout_secs = value()?
                    .parse()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| anyhow!("--bout-secs needs a number of seconds"))?
            }
            "--repeat" => {
                options.repeat = value()?
                    .parse()
                    .map_err(|_| anyhow!("--repeat needs a number"))?
            }
            other if other.starts_with("--server-arg=") => options
                .server_args
                .push(other["--server-arg=".len()..].to_string()),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if options.frames == 0 {
        options.frames = if options.quick { 300 } else { 600 };
    }
    if options.repeat == 0 {
        options.repeat = if options.quick { 1 } else { 3 };
    }
    Ok(options)
}

/// Where this binary and the other release binaries are.
pub(crate) fn binary_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("{} has no parent directory", exe.display()))
}
