//! The server's HTTP API, for people: a session's state (`referee-client status`), the list
//! of sessions (`referee-client list`), and downloading a finished session's page, report,
//! video and thumbnails (`--output DIR`). Blocking (ureq over rustls): call it from a blocking
//! thread.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use referee_protocol::api::{
    ApiErrorBody, CreatedSession, NewSession, SessionList, SessionStatus, SessionView,
};
use referee_protocol::text::escape_controls;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;
use url::Url;

use crate::endpoint::api_base;
use crate::error::ClientError;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest JSON answer read (a session list of many thousands of sessions fits).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;

/// A connection to a server's HTTP API.
pub struct Api {
    base: Url,
    agent: Agent,
    /// Sent as `Authorization: Bearer TOKEN`.
    token: Option<String>,
}

/// What `--output` downloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<String>,
    pub bytes: u64,
}

/// Checks, before anything is sent, that the `--output` folder `dir` exists or can be made
/// and can be written to (a file is made in it and removed).
pub fn check_output(dir: &Path) -> Result<(), ClientError> {
    let unusable = |reason: String| ClientError::OutputUnusable {
        path: dir.to_path_buf(),
        reason,
    };
    if dir.exists() && !dir.is_dir() {
        return Err(unusable(
            "it is a file, not a folder: give a folder (it is made if needed)".into(),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| unusable(format!("the folder cannot be made ({e})")))?;
    let probe = dir.join(format!(".referee-write-check-{}", std::process::id()));
    fs::write(&probe, b"").map_err(|e| unusable(format!("the folder is not writable ({e})")))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

impl Api {
    /// The API of the server at `server` (any URL the streaming form accepts), with the
    /// bearer `token` it asks for and `ca`, a PEM file of a CA to trust besides the system's.
    pub fn new(server: &str, token: Option<&str>, ca: Option<&Path>) -> Result<Self, ClientError> {
        let base = api_base(server)?;
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(RESPONSE_TIMEOUT))
            .user_agent(concat!("referee-client/", env!("CARGO_PKG_VERSION")))
            .tls_config(TlsConfig::builder().root_certs(roots(ca)?).build())
            .build();
        Ok(Self {
            base,
            agent: Agent::new_with_config(config),
            token: token.map(str::to_string),
        })
    }

    /// The full URL of `path` (`/api/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base.as_str().trim_end_matches('/'), path)
    }

    /// `GET /api/sessions/{id}`.
    pub fn session(&self, id: &str) -> Result<SessionView, ClientError> {
        match self.get_json(&format!("/api/sessions/{id}")) {
            Err(ClientError::HttpStatus { status: 404, .. }) => Err(ClientError::SessionNotFound {
                id: id.to_string(),
                server: self.base.as_str().trim_end_matches('/').to_string(),
            }),
            other => other,
        }
    }

    /// `GET /api/sessions`: every session, newest first.
    pub fn sessions(&self) -> Result<Vec<SessionView>, ClientError> {
        let list: SessionList = self.get_json("/api/sessions")?;
        Ok(list.sessions)
    }

    /// Downloads the results of complete session `id` into `dir`: `report.html`,
    /// `report.json`, the video, `thumbnails/` and `clips/`, so that `dir/report.html` works
    /// offline.
    pub fn download(&self, id: &str, dir: &Path) -> Result<Downloaded, ClientError> {
        let session = self.session(id)?;
        if session.status != SessionStatus::Complete {
            let reason = session
                .error
                .as_deref()
                .map_or_else(String::new, |e| format!(" ({e})"));
            return Err(ClientError::NotComplete {
                id: id.to_string(),
                status: session.status.to_string(),
                reason,
            });
        }
        let links = session.links.unwrap_or_default();
        let video_name = session
            .results
            .iter()
            .find(|r| r.starts_with("video."))
            .filter(|name| safe_name(name))
            .map_or("video.mp4", String::as_str);
        let mut wanted: Vec<(String, String)> = [
            (&links.report_html, "report.html"),
            (&links.report_json, "report.json"),
            (&links.video, video_name),
        ]
        .into_iter()
        .filter_map(|(link, name)| Some((link.clone()?, name.to_string())))
        .collect();
        for (folder, links) in [("thumbnails", &links.thumbnails), ("clips", &links.clips)] {
            for link in links {
                let name = link.rsplit('/').next().unwrap_or_default();
                if safe_name(name) {
                    wanted.push((link.to_string(), format!("{folder}/{name}")));
                }
            }
        }
        let mut downloaded = Downloaded {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            bytes: 0,
        };
        for (link, name) in wanted {
            downloaded.bytes += self.get_to_file(&link, &dir.join(&name))?;
            downloaded.files.push(name);
        }
        Ok(downloaded)
    }

    /// `POST /api/sessions` with `name`: a session created ahead of its upload.
    pub fn create_session(&self, name: &str) -> Result<CreatedSession, ClientError> {
        let url = self.url("/api/sessions");
        let mut request = self.agent.post(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let body = serde_json::to_string(&NewSession {
            name: Some(name.to_string()),
        })
        .unwrap_or_default();
        let sent = request.content_type("application/json").send(body);
        let response = self.answer(url.clone(), sent)?;
        read_json(url, response)
    }

    /// `DELETE /api/sessions/{id}`: the session and its files.
    pub fn delete_session(&self, id: &str) -> Result<(), ClientError> {
        let url = self.url(&format!("/api/sessions/{id}"));
        let mut request = self.agent.delete(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        match self.answer(url, request.call()) {
            Err(ClientError::HttpStatus { status: 404, .. }) => Err(ClientError::SessionNotFound {
                id: id.to_string(),
                server: self.base.as_str().trim_end_matches('/').to_string(),
            }),
            other => other.map(|_| ()),
        }
    }

    /// `GET path`: the response when it is `200 OK`, else the error the API explains.
    pub(crate) fn get(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let url = self.url(path);
        let mut request = self.agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        self.answer(url, request.call())
    }

    /// The response to a request to `url` when it succeeded (2xx), else the error: the
    /// connection's, with a hint, or the one the API explains.
    fn answer(
        &self,
        url: String,
        sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let response = sent.map_err(|err| ClientError::Http {
            url: url.clone(),
            reason: crate::reach::explain(&err.to_string(), self.base.scheme() == "https"),
        })?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        if status == 401 {
            return Err(ClientError::HttpStatus {
                url,
                status,
                message: crate::reach::unauthorized(self.token.is_some()).into(),
            });
        }
        // The API explains its errors as {"code": ..., "message": ...}.
        let message = response
            .into_body()
            .with_config()
            .limit(64 * 1024)
            .read_to_vec()
            .ok()
            .and_then(|bytes| serde_json::from_slice::<ApiErrorBody>(&bytes).ok())
            .map(|body| body.message)
            .unwrap_or_else(|| "no explanation".to_string());
        Err(ClientError::HttpStatus {
            url,
            status,
            message,
        })
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        read_json(self.url(path), self.get(path)?)
    }

    /// Streams `path` to the file `dest` (through a temporary file, renamed when complete);
    /// returns the bytes written.
    fn get_to_file(&self, path: &str, dest: &Path) -> Result<u64, ClientError> {
        let response = self.get(path)?;
        let output = |source| ClientError::Output {
            path: dest.to_path_buf(),
            source,
        };
        let folder = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(folder).map_err(output)?;
        let part = folder.join(format!(
            ".{}.part",
            dest.file_name().unwrap_or_default().to_string_lossy()
        ));
        let mut file = fs::File::create(&part).map_err(output)?;
        let mut body = response.into_body().into_reader();
        let copied = io::copy(&mut body, &mut file);
        let bytes = match copied {
            Ok(bytes) => bytes,
            Err(err) => {
                let _ = fs::remove_file(&part);
                // A read error is the server's or the network's; a write error is ours.
                return Err(match err.kind() {
                    io::ErrorKind::StorageFull | io::ErrorKind::PermissionDenied => output(err),
                    _ => ClientError::Http {
                        url: self.url(path),
                        reason: err.to_string(),
                    },
                });
            }
        };
        file.sync_all().map_err(output)?;
        fs::rename(&part, dest).map_err(output)?;
        Ok(bytes)
    }
}

/// The JSON body of `response`, from `url` (at most [`MAX_JSON_BYTES`]).
fn read_json<T: DeserializeOwned>(
    url: String,
    response: ureq::http::Response<ureq::Body>,
) -> Result<T, ClientError> {
    let bytes = response
        .into_body()
        .with_config()
        .limit(MAX_JSON_BYTES)
        .read_to_vec()
        .map_err(|err| ClientError::Http {
            url: url.clone(),
            reason: err.to_string(),
        })?;
    serde_json::from_slice(&bytes).map_err(|err| ClientError::Http {
        url,
        reason: format!(
            "the answer is not the JSON this client reads ({err}): is the server a referee-server of the same version?"
        ),
    })
}

/// The system's CA certificates, as for `wss://`, and those of the PEM file `ca`; Mozilla's
/// if there are none.
fn roots(ca: Option<&Path>) -> Result<RootCerts, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let found = rustls_native_certs::load_native_certs();
    let mut certs: Vec<Certificate<'static>> = found
        .certs
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    if let Some(path) = ca {
        let bad = |reason: String| ClientError::TlsSetup {
            path: path.to_path_buf(),
            reason,
        };
        let before = certs.len();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
            let cert = cert.map_err(|e| bad(e.to_string()))?;
            certs.push(Certificate::from_der(cert.as_ref()).to_owned());
        }
        if certs.len() == before {
            return Err(bad("no PEM certificate in it".into()));
        }
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::from(certs)
    })
}

/// A file name the server sent that is safe to write: no folder, no hidden file.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `t` as `2025-11-06 17:01:16` (UTC).
fn short_time(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `processing (analysis 45%)`, or the bare status.
fn status_line(session: &SessionView) -> String {
    match (session.status, session.stage, session.percent) {
        (SessionStatus::Processing, Some(stage), Some(percent)) => {
            format!("{} ({stage} {percent:.0}%)", session.status)
        }
        (status, _, _) => status.to_string(),
    }
}

/// Text from the server as the terminal shows it: control characters escaped, so that a
/// session's name or error cannot move the cursor, clear the screen or forge a line.
fn shown(text: &str) -> String {
    escape_controls(text).into_owned()
}

/// What `referee-client status` prints for `session`, with absolute links made with `api`.
pub fn status_text(api: &Api, session: &SessionView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Session {} ({})",
        shown(&session.id),
        shown(&session.name)
    );
    let _ = writeln!(out, "  status:    {}", status_line(session));
    if let Some(bout) = &session.bout {
        let offset = bout.offset_s.map_or_else(String::new, |s| {
            format!(", started {s:.3} s after the signal's clock")
        });
        let _ = writeln!(
            out,
            "  camera:    {} of bout {} (cameras {}){offset}",
            shown(&bout.camera),
            shown(&bout.bout_id),
            shown(&bout.cameras.join(", "))
        );
    }
    if let Some(error) = &session.error {
        let _ = writeln!(out, "  error:     {}", shown(error));
    }
    let _ = writeln!(
        out,
        "  source:    {}, {}x{} at {} fps",
        shown(&session.source),
        session.width,
        session.height,
        format!("{:.3}", session.fps)
            .trim_end_matches('0')
            .trim_end_matches('.')
    );
    let expected = session
        .frames_expected
        .map_or_else(String::new, |n| format!(" of {n}"));
    let _ = writeln!(
        out,
        "  frames:    {}{expected} stored, {:.1} MB",
        session.frames_stored,
        session.bytes_stored as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "  signal:    {}",
        shown(session.signal_file.as_deref().unwrap_or("none"))
    );
    let _ = writeln!(out, "  created:   {} UTC", short_time(session.created_at));
    let _ = writeln!(out, "  updated:   {} UTC", short_time(session.updated_at));
    let links = session.links.clone().unwrap_or_default();
    for (link, label) in [
        (&links.report_html, "report:"),
        (&links.video, "video:"),
        (&links.report_json, "data:"),
    ] {
        if let Some(link) = link {
            let _ = writeln!(out, "  {label:<10} {}", api.url(link));
        }
    }
    if !links.clips.is_empty() {
        let _ = writeln!(out, "  clips: {}", links.clips.len());
    }
    if !links.thumbnails.is_empty() {
        let _ = writeln!(out, "  thumbnails: {}", links.thumbnails.len());
    }
    out
}

/// What `referee-client list` prints: a table of id, status, frames and creation time.
pub fn list_text(sessions: &[SessionView]) -> String {
    if sessions.is_empty() {
        return "No sessions.\n".to_string();
    }
    let rows: Vec<[String; 4]> = sessions
        .iter()
        .map(|s| {
            [
                shown(&s.id),
                status_line(s),
                s.frames_stored.to_string(),
                short_time(s.created_at),
            ]
        })
        .collect();
    let header = ["ID", "STATUS", "FRAMES", "CREATED"];
    let width = |col: usize| {
        rows.iter()
            .map(|r| r[col].chars().count())
            .chain(std::iter::once(header[col].len()))
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    // The camera of each session, when some are cameras of a bout.
    let cameras: Option<Vec<String>> = sessions.iter().any(|s| s.bout.is_some()).then(|| {
        std::iter::once("CAMERA".to_string())
            .chain(sessions.iter().map(|s| {
                s.bout
                    .as_ref()
                    .map_or_else(|| "-".to_string(), |b| shown(&b.camera))
            }))
            .collect()
    });
    let mut out = String::new();
    for (i, row) in std::iter::once(header.map(str::to_string))
        .chain(rows)
        .enumerate()
    {
        let camera = cameras
            .as_ref()
            .map_or_else(String::new, |c| format!("  {}", c[i]));
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}  {}{camera}",
            row[0], row[1], row[2], row[3]
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session() -> SessionView {
        serde_json::from_value(json!({
            "id": "20251106_170116_bout_k7m2x", "name": "bout", "source": "bout.mp4",
            "fps": 29.97, "width": 640, "height": 480, "frames_expected": 150,
            "status": "processing", "stage": "analysis", "percent": 45.4,
            "frames_stored": 150, "bytes_stored": 6_800_000, "signal_file": "bout.txt",
            "error": null, "created_at": "2025-11-06T17:01:16.482913274Z",
            "updated_at": "2025-11-06T17:01:24Z",
            "links": {
                "self": "/api/sessions/20251106_170116_bout_k7m2x",
                "video": "/api/sessions/20251106_170116_bout_k7m2x/video",
                "thumbnails": ["/a", "/b"],
                "clips": ["/c"],
            },
        }))
        .unwrap()
    }

    #[test]
    fn status_shows_progress_and_absolute_links() {
        let api = Api::new("ws://h:8080/stream", None, None).unwrap();
        let text = status_text(&api, &session());
        assert!(
            text.starts_with("Session 20251106_170116_bout_k7m2x (bout)\n"),
            "{text}"
        );
        assert!(
            text.contains("status:    processing (analysis 45%)"),
            "{text}"
        );
        assert!(text.contains("640x480 at 29.97 fps"), "{text}");
        assert!(text.contains("150 of 150 stored, 6.8 MB"), "{text}");
        assert!(
            text.contains("created:   2025-11-06 17:01:16 UTC"),
            "{text}"
        );
        assert!(
            text.contains("video:     http://h:8080/api/sessions/20251106_170116_bout_k7m2x/video"),
            "{text}"
        );
        assert!(text.contains("thumbnails: 2"), "{text}");
        assert!(text.contains("clips: 1"), "{text}");
        assert!(!text.contains("report:"), "{text}");
    }

    #[test]
    fn list_is_an_aligned_table() {
        let mut done = session();
        done.id = "x".into();
        done.status = SessionStatus::Complete;
        done.frames_stored = 7;
        let text = list_text(&[session(), done]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "ID                          STATUS                     FRAMES  CREATED",
                "20251106_170116_bout_k7m2x  processing (analysis 45%)     150  2025-11-06 17:01:16",
                "x                           complete                        7  2025-11-06 17:01:16",
            ]
        );
        assert_eq!(list_text(&[]), "No sessions.\n");
    }

    #[test]
    fn server_text_reaches_the_terminal_escaped() {
        let api = Api::new("ws://h:8080/stream", None, None).unwrap();
        let mut hostile = session();
        hostile.name = "bout\u{1b}[2J".into();
        hostile.error = Some("line\nINFO forged".into());
        hostile.id = "x\u{1b}[31m".into();
        let text = status_text(&api, &hostile) + &list_text(&[hostile]);
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("(bout\\u{1b}[2J)"), "{text}");
        assert!(text.contains("error:     line\\nINFO forged\n"), "{text}");
    }

    #[test]
    fn only_plain_file_names_are_written() {
        assert!(safe_name("frame-000036.jpg"));
        for bad in ["", ".x", "..", "a/b", "a\\b", "é.jpg"] {
            assert!(!safe_name(bad), "{bad}");
        }
    }
}
