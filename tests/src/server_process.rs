//! The real server binary in a process of its own on a free port, to be killed (`kill -9`: no
//! shutdown, no flush) and started again on the same data, as after a crash.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct ServerProcess {
    pub addr: SocketAddr,
    args: Vec<String>,
    child: Child,
}

impl ServerProcess {
    /// Starts `referee-server` on `data_dir` with `extra` arguments and waits until it
    /// answers `/health`.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut args = vec![
            "--listen".to_string(),
            addr.to_string(),
            "--data-dir".to_string(),
            data_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let child = Self::spawn(&args);
        let server = Self { addr, args, child };
        server.wait_up();
        server
    }

    fn spawn(args: &[String]) -> Child {
        Command::new(crate::workspace_binary("referee-server"))
            .args(args)
            .env("REFEREE_MIN_FREE_DISK_BYTES", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.get("/health").is_none_or(|(status, _)| status != 200) {
            assert!(Instant::now() < deadline, "the server did not come up");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The server's process id (its node name in a registry is `HOST/PID`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `GET path`, or `None` while the server is down.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        std::net::TcpStream::connect(self.addr).ok()?;
        crate::try_http_get(self.addr, path).ok()
    }

    /// Waits until the newest session has at least `frames` frames stored.
    pub fn wait_for_frames(&self, frames: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let stored = self
                .get("/api/sessions")
                .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
                .and_then(|v| v["sessions"][0]["frames_stored"].as_u64())
                .unwrap_or(0);
            if stored >= frames {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {frames} frames stored"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the server (no shutdown, no flush), starts it again with the same arguments and
    /// waits until it answers.
    pub fn kill_and_restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.args);
        self.wait_up();
    }

    /// Streams `video` with the real client and kills the server once 40 frames are stored,
    /// then starts it again: the client resumes and completes. Returns the session's id.
    pub fn stream_across_a_kill(&mut self, video: &Path) -> String {
        let client = Command::new(crate::workspace_binary("referee-client"))
            .arg(self.http_url())
            .arg("--video")
            .arg(video)
            // Paced, so that it is still uploading when the server is killed.
            .args(["--verbose", "--retries", "30", "--max-fps", "150"])
            .env("REFEREE_STATE_DIR", crate::test_state_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.wait_for_frames(40);
        self.kill_and_restart();
        let output = client.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            output.status.success(),
            "client failed:\n{stdout}\n{stderr}"
        );
        assert!(stdout.contains("Resumed session"), "{stdout}");
        crate::completed_id(&stdout)
    }

    /// Kills the server: no shutdown, no flush.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
