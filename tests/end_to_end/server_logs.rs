//! The server binary's log, as an operator reads it in a file or a journal: no colour codes
//! when it does not write to a terminal, the TLS start-up line with `wss://`, an error said
//! once, a config file's mistake named by its key, a token file's by its path, and what
//! "removed" means.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use referee_tests::{make_video, run_client, workspace_binary};

/// The server binary on `args`, its stdout lines coming through the receiver.
fn start_server(args: &[&str]) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(workspace_binary("referee-server"))
        .args(args)
        .env("REFEREE_LOG_LEVEL", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for the line that contains `needle`; returns it.
fn line_with(lines: &mpsc::Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no line with {needle:?} in:\n{}", seen.join("\n")));
        seen.push(line.clone());
        if line.contains(needle) {
            return line;
        }
    }
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_log_is_plain_text_says_wss_for_tls_and_what_removed_means() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = referee_tests::self_signed_cert(dir.path());
    let data = dir.path().join("data-tls");
    let (child, lines) = start_server(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let mut seen = Vec::new();
    let line = line_with(&lines, "listening on", &mut seen);
    assert!(line.contains("listening on https://127.0.0.1:"), "{line}");
    assert!(line.contains("(WebSocket ingest at wss://"), "{line}");
    assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    stop(child);

    // A plain server: a session streamed through it, and the line when it leaves memory.
    let data = dir.path().join("data");
    let (child, lines) = start_server(&[
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let mut seen = Vec::new();
    let line = line_with(&lines, "listening on", &mut seen);
    let addr = line
        .split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .to_string();
    let video = make_video(dir.path(), "v.avi", 5, 30.0, 160, 120);
    let run = run_client(&[
        &format!("http://{addr}"),
        "--video",
        video.to_str().unwrap(),
    ]);
    run.assert_success();
    let id = run.session_id();
    let line = line_with(&lines, &format!("Session {id} left memory"), &mut seen);
    assert!(line.contains("its data stays on disk"), "{line}");
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "{}",
        seen.join("\n")
    );
    stop(child);
}

#[test]
fn errors_are_said_once_and_config_mistakes_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let output = Command::new(workspace_binary("referee-server"))
        .args(["--listen", &addr, "--data-dir", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(all.matches("cannot listen on").count(), 1, "{all}");

    let bad = dir.path().join("bad2.toml");
    std::fs::write(&bad, "window = \"lots\"\n").unwrap();
    let output = Command::new(workspace_binary("referee-server"))
        .args(["--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!(
            "error: the config file {}: window: invalid value 'lots'",
            bad.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.matches("error").count(), 1, "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // A token file that cannot be read, or holds no token, is named at the start.
    let token = dir.path().join("token");
    for (contents, says) in [
        (None, "cannot read the token file"),
        (Some("\n"), "is empty: put the token on its first line"),
    ] {
        if let Some(text) = contents {
            std::fs::write(&token, text).unwrap();
        }
        let output = Command::new(workspace_binary("referee-server"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .arg("--token-file")
            .arg(&token)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ")
                && stderr.contains(&token.display().to_string())
                && stderr.contains(says),
            "{stderr}"
        );
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}
