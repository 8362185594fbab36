//! The `referee-server` binary as an operator runs it: its start-up line, its log without
//! terminal colours when it writes to a file or a pipe, each error said once, and config-file
//! errors that name the file's key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use referee_tests::workspace_binary;

/// Runs the server with `args` until its start-up line: that line and the process.
fn started(args: &[&str]) -> (String, std::process::Child) {
    let mut child = Command::new(workspace_binary("referee-server"))
        .args(args)
        .env("REFEREE_LOG_LEVEL", "info")
        .env("REFEREE_MIN_FREE_DISK_BYTES", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let line = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server printed no start-up line within 30 s");
        if line.contains("listening on") {
            break line;
        }
    };
    (line, child)
}

#[test]
fn the_start_up_line_names_the_scheme_and_the_log_has_no_colours_off_a_terminal() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let (line, mut child) = started(&["--listen", "127.0.0.1:0", "--data-dir", dir]);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(!line.contains('\u{1b}'), "{line:?}");
    assert!(line.contains("listening on http://127.0.0.1:"), "{line}");
    assert!(
        line.contains("(WebSocket ingest at ws://127.0.0.1:"),
        "{line}"
    );

    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = data.path().join("cert.pem");
    let key = data.path().join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (line, mut child) = started(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        dir,
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(line.contains("listening on https://127.0.0.1:"), "{line}");
    assert!(
        line.contains("(WebSocket ingest at wss://127.0.0.1:"),
        "{line}"
    );
}

#[test]
fn an_error_is_said_once_and_a_config_error_names_the_files_key() {
    let data = tempfile::tempdir().unwrap();
    // A data directory that is a file: the server cannot start.
    let file = data.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(workspace_binary("referee-server"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            file.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        all.matches("cannot open the data directory").count(),
        1,
        "{all}"
    );
    assert!(!all.contains('\u{1b}'), "{all:?}");

    let config = data.path().join("bad2.toml");
    std::fs::write(&config, "window = \"lots\"\n").unwrap();
    let out = Command::new(workspace_binary("referee-server"))
        .args(["--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: the config file {}: window: invalid value 'lots'",
            config.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error").count(), 1, "{stderr}");
}
