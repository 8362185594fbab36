//! A real PostgreSQL for the registry tests: one throwaway cluster (`initdb` in a temporary
//! directory, `postgres` on a free port of 127.0.0.1), started once for the whole test run and
//! shared: each test creates a database of its own. As root it runs as the `postgres` user
//! (`initdb` refuses root). A shell beside it kills it once the test process has ended
//! (statics are never dropped).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The role every test connects as (trusted: the cluster listens on loopback only).
const ROLE: &str = "referee";

/// The running PostgreSQL server.
pub struct Postgres {
    /// `127.0.0.1:PORT`.
    pub addr: std::net::SocketAddr,
    /// Its cluster and its log (`postgres.log`).
    pub dir: PathBuf,
    bin: PathBuf,
    /// The shell that runs it and kills it when the tests end.
    _watcher: std::process::Child,
}

impl Postgres {
    /// The shared server, started on first use; `None` (and one line saying why) if
    /// PostgreSQL's server programs are not installed.
    pub fn shared() -> Option<&'static Postgres> {
        static SHARED: OnceLock<Option<Postgres>> = OnceLock::new();
        SHARED
            .get_or_init(|| match bin_dir() {
                Some(bin) => Some(Self::start(bin)),
                None => {
                    eprintln!(
                        "skipping the registry tests: PostgreSQL's server (initdb, postgres) is not installed; scripts/install-deps.sh --tests installs it (apt-get install postgresql)"
                    );
                    None
                }
            })
            .as_ref()
    }

    fn start(bin: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap().keep();
        let as_root = is_root();
        if as_root {
            // initdb and postgres run as `postgres`, which must own the cluster's folder.
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .unwrap();
            assert!(status.success(), "chown postgres {}", dir.display());
        }
        let data = dir.join("data");
        let initdb = run_as_postgres(as_root, &bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", ROLE, "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = crate::free_port();
        let log = dir.join("postgres.log");
        // `postgres` in the background, killed once this process is gone (`/proc`, as the
        // shell may run as another user than this process).
        let watch = format!(
            "\"$0\" \"$@\" >>'{}' 2>&1 & w=$!; while [ -d /proc/{} ] && kill -0 $w 2>/dev/null; do sleep 1; done; kill -9 $w 2>/dev/null",
            log.display(),
            std::process::id()
        );
        let watcher = run_as_postgres(as_root, Path::new("sh"))
            .args(["-c", &watch])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = Postgres {
            addr,
            dir,
            bin,
            _watcher: watcher,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !server.psql("postgres", "SELECT 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start within 60 s (its log: {})",
                log.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// Runs `sql` in `database` with psql.
    pub fn psql(&self, database: &str, sql: &str) -> std::process::Output {
        Command::new(self.bin.join("psql"))
            .args(["-h", &self.addr.ip().to_string()])
            .args([
                "-p",
                &self.addr.port().to_string(),
                "-U",
                ROLE,
                "-d",
                database,
            ])
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap()
    }

    /// A new, empty database for one test, as its `--registry` address.
    pub fn new_database(&self, name: &str) -> String {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let database = format!(
            "{}_{}_{}",
            name.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let created = self.psql("postgres", &format!("CREATE DATABASE {database}"));
        assert!(
            created.status.success(),
            "CREATE DATABASE {database}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        format!("postgres://{ROLE}@{}/{database}", self.addr)
    }
}

/// Where PostgreSQL's server programs are: `REFEREE_PG_BIN`, Debian's
/// `/usr/lib/postgresql/VERSION/bin` (the newest), or the `PATH`.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("REFEREE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()?;
    let initdb = String::from_utf8(found.stdout).ok()?;
    Path::new(initdb.trim())
        .parent()
        .filter(|d| d.join("postgres").exists())
        .map(Path::to_path_buf)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program`, as the `postgres` user when this process is root.
fn run_as_postgres(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}
