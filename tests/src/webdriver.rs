//! The dashboard tests' browser: headless Chromium driven by Debian's `chromedriver` (package
//! `chromium-driver`) through the `fantoccini` WebDriver client, on 127.0.0.1. A blocking
//! facade for the tests (open a URL, run a script, click, wait, take full-page screenshots at
//! a given viewport width): each command runs on the browser's own runtime, so that it can be
//! called from a plain test and from inside an async one alike.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long one WebDriver command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// `chromedriver` on the PATH or in /usr/bin; a failing test says how to install it.
pub fn chromedriver() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed, and the dashboard tests drive Chromium with it: \
                 run scripts/install-deps.sh (or `apt-get install chromium-driver`)"
            )
        })
}

/// A ChromeDriver extension command (`POST /session/{id}/PATH` with a JSON body), which
/// fantoccini does not name: the DevTools passthrough and the browser's console log.
#[derive(Debug)]
struct Extension {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/{}",
            session_id.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// A headless Chromium under ChromeDriver, with a fresh profile. Ends both when dropped.
pub struct Browser {
    client: Client,
    /// Where the commands run (`None` once dropped).
    runtime: Option<tokio::runtime::Runtime>,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a headless Chromium of `width`×`height`.
    pub fn start(width: u32, height: u32) -> Self {
        let chromium = crate::chromium();
        let mut driver = Command::new(chromedriver())
            .args(["--port=0", "--log-level=SEVERE"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start chromedriver: {e}"));
        // It says "ChromeDriver was started successfully on port N."; keep draining after.
        let stdout = driver.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => port,
            other => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("chromedriver did not say which port it listens on: {other:?}");
            }
        };
        let profile = tempfile::tempdir().unwrap();
        let mut args: Vec<String> = crate::HEADLESS_FLAGS
            .iter()
            .map(|f| f.to_string())
            .collect();
        args.extend([
            "--hide-scrollbars".to_string(),
            "--autoplay-policy=no-user-gesture-required".to_string(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", profile.path().display()),
        ]);
        let capabilities = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": args,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("the capabilities are an object")
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("webdriver")
            .enable_all()
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let connected = ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await;
            let _ = tx.send(connected);
        });
        let client = match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(Ok(client)) => client,
            other => {
                let _ = driver.kill();
                let _ = driver.wait();
                panic!(
                    "chromedriver started no browser: {:?}",
                    other.map(|r| r.err())
                );
            }
        };
        Self {
            client,
            runtime: Some(runtime),
            driver,
            _profile: profile,
        }
    }

    /// Runs one command, made by `command` from a handle on the browser, to its answer.
    /// Panics on a WebDriver error, saying `what` failed.
    fn run<T, F>(&self, what: &str, command: impl FnOnce(Client) -> F) -> T
    where
        T: Send + 'static,
        F: Future<Output = Result<T, CmdError>> + Send + 'static,
    {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the browser's runtime runs until dropped");
        let work = command(self.client.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        match rx.recv_timeout(COMMAND_TIMEOUT) {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => panic!("WebDriver {what} failed: {e}"),
            Err(e) => panic!("WebDriver {what}: no answer ({e})"),
        }
    }

    /// Opens `url` and waits for its load.
    pub fn goto(&self, url: &str) {
        let owned = url.to_string();
        self.run(
            &format!("goto {url}"),
            |c| async move { c.goto(&owned).await },
        );
    }

    /// Runs `script` (a function body: `return ...`) in the page, with `args` (an array).
    pub fn eval_with(&self, script: &str, args: Value) -> Value {
        let script = script.to_string();
        let args = match args {
            Value::Array(args) => args,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        self.run("execute", |c| async move { c.execute(&script, args).await })
    }

    /// Runs `script` (a function body: `return ...`) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.eval_with(script, json!([]))
    }

    /// Evaluates `script` every 100 ms until it returns something truthy (not null, false,
    /// 0 or ""), and returns that; fails saying `what` did not happen, with the last value
    /// and a screenshot named after it.
    pub fn wait_for(&self, what: &str, timeout: Duration, script: &str) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script);
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() > deadline {
                let shot = crate::artifacts_dir().join("dashboard-timeout.png");
                self.screenshot(&shot);
                panic!(
                    "{what}: not within {} s (last value {value}; screenshot {}; console: {})",
                    timeout.as_secs(),
                    shot.display(),
                    self.console().join(" | ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the first element matching the CSS `selector`, as a user would.
    pub fn click(&self, selector: &str) {
        let css = selector.to_string();
        self.run(&format!("click {selector}"), |c| async move {
            c.find(Locator::Css(&css)).await?.click().await
        });
    }

    /// A ChromeDriver extension command.
    fn extension(&self, path: &'static str, body: Value) -> Value {
        self.run(path, |c| async move {
            c.issue_cmd(Extension { path, body }).await
        })
    }

    /// A DevTools command, through ChromeDriver.
    pub fn devtools(&self, command: &str, params: Value) -> Value {
        self.extension(
            "goog/cdp/execute",
            json!({ "cmd": command, "params": params }),
        )
    }

    /// Makes the page `width` px wide (a phone when `mobile`), as a device would.
    pub fn viewport(&self, width: u32, height: u32, mobile: bool) {
        self.devtools(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// Saves a PNG of the whole page (not only the viewport) to `path`.
    pub fn screenshot(&self, path: &Path) {
        let shot = self.devtools(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let data = shot["data"].as_str().unwrap_or_default();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default();
        assert!(
            png.starts_with(b"\x89PNG"),
            "the screenshot for {} is not a PNG",
            path.display()
        );
        std::fs::write(path, png).unwrap();
    }

    /// The messages the page logged to the console (errors included) since the last call.
    pub fn console(&self) -> Vec<String> {
        let answer = self.extension("se/log", json!({ "type": "browser" }));
        answer
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                format!(
                    "{} {}",
                    entry["level"].as_str().unwrap_or_default(),
                    entry["message"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Ends the WebDriver session (closing the browser), then the runtime, without
            // blocking on it: a test may drop its browser inside its own runtime.
            let client = self.client.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            runtime.spawn(async move {
                let _ = tx.send(client.close().await);
            });
            let _ = rx.recv_timeout(Duration::from_secs(20));
            runtime.shutdown_background();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
