use super::*;

// ---------------------------------------------------------------------------------------------
// Process measurements

/// CPU seconds (user + system, every thread) of process `pid`, while it runs.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks())
}

pub(crate) fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Peak resident memory (VmHWM) of process `pid`, in MB.
pub(crate) fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// A `referee-server` release binary on a free loopback port and its own data directory.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) data: PathBuf,
    pub(crate) cpu_at_start: f64,
}

impl Server {
    pub(crate) fn start(bench: &Bench, data: &Path, extra: &[&str]) -> Result<Self> {
        let _ = fs::remove_dir_all(data);
        fs::create_dir_all(data)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let log = File::create(data.with_extension("server.log"))?;
        let child = Command::new(bench.bins.join("referee-server"))
            .args(["--listen", &addr.to_string(), "--data-dir"])
            .arg(data)
            .args(["--min-free-disk-bytes", "0"])
            .args(extra)
            .args(&bench.server_args)
            .env(
                "REFEREE_LOG_LEVEL",
                std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start referee-server")?;
        let mut server = Self {
            child,
            addr,
            data: data.to_path_buf(),
            cpu_at_start: 0.0,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_get(addr, "/health").map(|(s, _)| s) != Ok(200) {
            if Instant::now() > deadline {
                bail!("referee-server did not answer /health within 15 s");
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!(
                    "referee-server exited ({status}); see {}",
                    data.with_extension("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        server.cpu_at_start = server.cpu();
        Ok(server)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn cpu(&self) -> f64 {
        cpu_seconds(self.pid()).unwrap_or(f64::NAN)
    }

    /// CPU seconds since the server answered its first /health.
    pub(crate) fn cpu_used(&self) -> f64 {
        self.cpu() - self.cpu_at_start
    }

    pub(crate) fn peak_rss_mb(&self) -> f64 {
        peak_rss_mb(self.pid()).unwrap_or(f64::NAN)
    }

    pub(crate) fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/stream", self.addr)
    }

    pub(crate) fn session(&self, name_part: &str) -> Result<Value> {
        let (_, body) = http_get(self.addr, "/api/sessions").map_err(|e| anyhow!(e))?;
        let list: Value = serde_json::from_str(&body)?;
        list["sessions"]
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|s| s["id"].as_str().is_some_and(|id| id.contains(name_part)))
            })
            .cloned()
            .ok_or_else(|| anyhow!("no session {name_part} on the server"))
    }

    pub(crate) fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.data);
    }
}
