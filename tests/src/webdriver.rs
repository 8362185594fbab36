//! A tiny W3C WebDriver client for the dashboard tests: headless Chromium driven by Debian's
//! `chromedriver` (package `chromium-driver`), in plain JSON over HTTP on 127.0.0.1. Just
//! what the tests need: open a URL, run a script, click, wait, take full-page screenshots at a
//! given viewport width (through ChromeDriver's DevTools passthrough).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The key of an element reference in W3C WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

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

/// A headless Chromium under ChromeDriver, with a fresh profile. Ends both when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
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
        let capabilities = json!({
            "capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": {"browser": "ALL"},
                "goog:chromeOptions": {
                    "binary": chromium.display().to_string(),
                    "args": [
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--disable-dev-shm-usage",
                        "--hide-scrollbars",
                        "--autoplay-policy=no-user-gesture-required",
                        format!("--window-size={width},{height}"),
                        format!("--user-data-dir={}", profile.path().display()),
                    ],
                },
            }},
        });
        let mut browser = Self {
            driver,
            port,
            session: String::new(),
            _profile: profile,
        };
        let created = browser.call("POST", "/session", Some(&capabilities));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver started no browser: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; the `value` of its answer. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, answer) = self.request(method, path, body);
        if status != 200 {
            panic!(
                "WebDriver {method} {path} failed ({status}): {}: {}",
                answer["value"]["error"], answer["value"]["message"]
            );
        }
        answer.get("value").cloned().unwrap_or(Value::Null)
    }

    /// One HTTP request to ChromeDriver: the status and the JSON answer.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("cannot reach chromedriver: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        // ChromeDriver may keep the connection open after its answer: read the head, then
        // Content-Length bytes (or a chunked body to its end).
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).unwrap();
            if read == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line.to_ascii_lowercase());
        }
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        let payload = match length {
            Some(length) => {
                let mut payload = vec![0; length];
                reader.read_exact(&mut payload).unwrap();
                payload
            }
            None => {
                let mut raw = Vec::new();
                reader.read_to_end(&mut raw).unwrap();
                if head.contains("transfer-encoding: chunked") {
                    crate::dechunk(&raw)
                } else {
                    raw
                }
            }
        };
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("chromedriver sent no HTTP answer to {method} {path}"));
        let answer = serde_json::from_slice(&payload).unwrap_or_else(|e| {
            panic!(
                "chromedriver answered {method} {path} with something else than JSON ({e}): {}",
                String::from_utf8_lossy(&payload)
            )
        });
        (status, answer)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Opens `url` and waits for its load.
    pub fn goto(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(&json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body: `return ...`) in the page, with `args`.
    pub fn eval_with(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(&json!({ "script": script, "args": args })),
        )
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
        let found = self.call(
            "POST",
            &self.session_path("/element"),
            Some(&json!({ "using": "css selector", "value": selector })),
        );
        let id = found[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {selector}: {found}"));
        self.call(
            "POST",
            &self.session_path(&format!("/element/{id}/click")),
            Some(&json!({})),
        );
    }

    /// A DevTools command, through ChromeDriver.
    pub fn devtools(&self, command: &str, params: Value) -> Value {
        self.call(
            "POST",
            &self.session_path("/goog/cdp/execute"),
            Some(&json!({ "cmd": command, "params": params })),
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
        let png = decode_base64(data);
        assert!(
            png.starts_with(b"\x89PNG"),
            "the screenshot for {} is not a PNG",
            path.display()
        );
        std::fs::write(path, png).unwrap();
    }

    /// The messages the page logged to the console (errors included) since the last call.
    pub fn console(&self) -> Vec<String> {
        let (_, answer) = self.request(
            "POST",
            &self.session_path("/se/log"),
            Some(&json!({ "type": "browser" })),
        );
        answer["value"]
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
        if !self.session.is_empty() {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.request("DELETE", &self.session_path(""), None)
            }));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Decodes standard base64 (with or without padding).
pub fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer = 0u32;
    let mut bits = 0;
    for v in text.bytes().filter_map(value) {
        buffer = (buffer << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("aGVsbG8="), b"hello");
        assert_eq!(decode_base64("aGVsbG8h"), b"hello!");
        assert_eq!(decode_base64(""), b"");
    }
}
