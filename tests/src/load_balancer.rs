//! A real load balancer in front of several servers: HAProxy (Debian's `haproxy`, which
//! `scripts/install-deps.sh --tests` installs) on a free port of 127.0.0.1, configured as
//! `docs/operations.md` tells operators to: round robin, WebSocket upgrades passed through,
//! health checks on `/health`, a connection refused by a dead server retried on another.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LoadBalancer {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
}

/// HAProxy's configuration for `backends`, listening on `port` (what `docs/operations.md`
/// shows, with short check intervals for the tests).
pub fn haproxy_config(port: u16, backends: &[SocketAddr]) -> String {
    let mut config = format!(
        "global\n  maxconn 1024\n\n\
         defaults\n  mode http\n  option redispatch\n  retries 3\n\
         \x20 timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         \x20 timeout tunnel 1h\n\n\
         frontend referee\n  bind 127.0.0.1:{port}\n  default_backend servers\n\n\
         backend servers\n  balance roundrobin\n  option httpchk GET /health\n\
         \x20 http-check expect status 200\n  default-server inter 300ms fall 1 rise 1\n"
    );
    for (i, backend) in backends.iter().enumerate() {
        config.push_str(&format!("  server node{i} {backend} check\n"));
    }
    config
}

impl LoadBalancer {
    /// HAProxy in front of `backends`; `None` (and one line saying why) if it is not
    /// installed.
    pub fn start(backends: &[SocketAddr]) -> Option<Self> {
        let haproxy = haproxy()?;
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(&config, haproxy_config(port, backends)).unwrap();
        let log = std::fs::File::create(dir.path().join("haproxy.log")).unwrap();
        // -db: in the foreground, not as a daemon, so that it is killed with the test.
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let balancer = Self {
            addr,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::try_http_get(addr, "/health").map_or(true, |(status, _)| status != 200) {
            assert!(
                Instant::now() < deadline,
                "HAProxy did not answer within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(balancer)
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn haproxy() -> Option<PathBuf> {
    let found = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists());
    if found.is_none() {
        eprintln!(
            "skipping the load-balancer tests: HAProxy is not installed; scripts/install-deps.sh --tests installs it (apt-get install haproxy)"
        );
    }
    found
}

impl Drop for LoadBalancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
