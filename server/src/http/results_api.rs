//! The results API: a session's video (with byte ranges, so that a browser can seek), its
//! reports, thumbnails and stored frames over HTTP, the `links` to them, and deleting a
//! session. Every file is read through the [`Store`](crate::store::Store) and
//! streamed, never read whole into memory (a stored frame aside).

use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use referee_protocol::api::{ApiErrorBody, FrameTimes, SessionLinks};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use crate::http::api_error::{error, ApiError};
use crate::http::byte_range::ByteRange;
use crate::pipeline::{CLIPS_DIR, REPORT_FILE, REPORT_HTML_FILE, THUMBNAILS_DIR};
use crate::store::{ResultFile, StoreError};
use crate::AppState;

/// The video files a session may have, best first.
const VIDEO_FILES: [&str; 2] = ["video.mp4", "video.avi"];
/// Bytes read from disk at a time while streaming a file.
const CHUNK: usize = 64 * 1024;
/// The report page may show its own thumbnails and video, and nothing else runs or loads.
const REPORT_CSP: &str = "default-src 'none'; img-src 'self'; media-src 'self'; \
                          style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// The request headers a result file answers to ([`stream_file`]), for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct FileHeaders {
    /// `bytes=START-END`, `bytes=START-` or `bytes=-SUFFIX`: 206 with those bytes (an `END`
    /// past the file is cut to it), 416 when the file cannot satisfy it; several ranges or
    /// another unit get the whole file.
    #[param(rename = "Range")]
    range: Option<String>,
    /// The range is honoured only if this is the file's current `ETag`.
    #[param(rename = "If-Range")]
    if_range: Option<String>,
    /// 304 when one of these is the file's current `ETag` (or `*`).
    #[param(rename = "If-None-Match")]
    if_none_match: Option<String>,
}

/// What a result file answers besides its content ([`serve`], [`stream_file`]), for the
/// OpenAPI document.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum FileAnswers {
    /// The file did not change (`If-None-Match`).
    #[response(status = 304, headers(("ETag" = String)))]
    NotModified,
    /// No such session (`session_not_found`), or it has no such result yet
    /// (`result_not_found`).
    #[response(status = 404)]
    NotFound(ApiErrorBody),
    /// The file cannot satisfy the `Range` (`range_not_satisfiable`).
    #[response(
        status = 416,
        headers(("Content-Range" = String, description = "`bytes */LENGTH`"))
    )]
    RangeNotSatisfiable(ApiErrorBody),
    /// The store failed (`storage_failed`, `internal`).
    #[response(status = 500)]
    Failed(ApiErrorBody),
}

/// [`REPORT_CSP`] with the report page's own script allowed by its hash.
fn report_csp() -> String {
    format!(
        "{REPORT_CSP}; script-src {}",
        crate::pipeline::report_script_csp_source()
    )
}

/// `GET /api/sessions/{id}/video`: the reconstructed video, whichever container it is in.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/video",
    tag = "results",
    summary = "The rebuilt video (H.264 MP4, or the MJPEG AVI fallback), with byte ranges",
    params(("id" = String, Path, description = "The session's id"), FileHeaders),
    responses(
        (status = 200, description = "The whole video", content((Vec<u8> = "video/mp4"), (Vec<u8> = "video/x-msvideo"))),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content((Vec<u8> = "video/mp4"), (Vec<u8> = "video/x-msvideo"))),
        FileAnswers,
    ),
)]
pub async fn video(app: State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    serve(&app, &id, &VIDEO_FILES, &headers).await
}

/// `GET /api/sessions/{id}/video.mp4`: the video by its file name (as `report.html` links it).
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/video.mp4",
    tag = "results",
    summary = "The rebuilt H.264 MP4 by its file name, with byte ranges",
    params(("id" = String, Path, description = "The session's id"), FileHeaders),
    responses(
        (status = 200, description = "The whole video", body = Vec<u8>, content_type = "video/mp4"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content((Vec<u8> = "video/mp4"))),
        FileAnswers,
    ),
)]
pub async fn video_mp4(
    app: State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &id, &["video.mp4"], &headers).await
}

/// `GET /api/sessions/{id}/video.avi`: the fallback video by its file name.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/video.avi",
    tag = "results",
    summary = "The MJPEG AVI fallback video by its file name, with byte ranges",
    params(("id" = String, Path, description = "The session's id"), FileHeaders),
    responses(
        (status = 200, description = "The whole video", body = Vec<u8>, content_type = "video/x-msvideo"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content((Vec<u8> = "video/x-msvideo"))),
        FileAnswers,
    ),
)]
pub async fn video_avi(
    app: State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &id, &["video.avi"], &headers).await
}

/// `GET /api/sessions/{id}/report.json`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/report.json",
    tag = "results",
    summary = "The report (schema in docs/report-format.md)",
    params(("id" = String, Path, description = "The session's id"), FileHeaders),
    responses(
        (status = 200, description = "The report", body = Object, content_type = "application/json"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content(("application/json"))),
        FileAnswers,
    ),
)]
pub async fn report_json(
    app: State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    serve(&app, &id, &[REPORT_FILE], &headers).await
}

/// `GET /api/sessions/{id}/report.html`. Opened as `report.html?token=TOKEN` on a server
/// with tokens, the page's thumbnails, video and links carry the token too, since a browser
/// sends no `Authorization` header for them.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/report.html",
    tag = "results",
    summary = "The report page",
    description = "Served with a `Content-Security-Policy` that lets it load only its own thumbnails and video and run only its own script. Opened as `report.html?token=TOKEN`, its relative links carry the token too (and it is served whole, without ranges).",
    params(("id" = String, Path, description = "The session's id"), FileHeaders),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content(("text/html"))),
        FileAnswers,
    ),
)]
pub async fn report_html(
    app: State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let token = query.as_deref().and_then(crate::http::auth::query_token);
    let mut response = match token {
        // Encoded again for the page's links, whatever characters the token has.
        Some(token) => {
            let encoded: String = form_urlencoded::byte_serialize(token.as_bytes()).collect();
            page_with_token(&app, &id, &encoded).await
        }
        None => serve(&app, &id, &[REPORT_HTML_FILE], &headers).await,
    };
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(&report_csp()).unwrap_or(HeaderValue::from_static(REPORT_CSP)),
    );
    response
}

/// The report page with `?token=TOKEN` added to each of its relative links.
async fn page_with_token(app: &AppState, id: &str, token: &str) -> Response {
    // The page is small (kilobytes per event): read it whole.
    const MAX_PAGE: u64 = 16 * 1024 * 1024;
    let lookup = id.to_string();
    let read = app.store.run("reading the report page", move |store| {
        let result = store.open_result(&lookup, REPORT_HTML_FILE)?;
        let mut page = String::new();
        std::io::Read::read_to_string(&mut std::io::Read::take(result.file, MAX_PAGE), &mut page)
            .map_err(|source| StoreError::Io {
            id: lookup.clone(),
            what: "cannot read",
            path: REPORT_HTML_FILE.into(),
            source,
        })?;
        Ok(page)
    });
    match read.await {
        Ok(page) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            add_token(&page, token),
        )
            .into_response(),
        Err(err) => store_error(app, id, err),
    }
}

/// Adds `token=TOKEN` to the query of every relative `src` and `href` URL of `page` (before
/// any `#fragment`).
fn add_token(page: &str, token: &str) -> String {
    let mut out = String::with_capacity(page.len() + 1024);
    let mut rest = page;
    while let Some(at) = [" src=\"", " href=\""]
        .iter()
        .filter_map(|a| rest.find(a).map(|i| i + a.len()))
        .min()
    {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest.find('"').unwrap_or(rest.len());
        let url = &rest[..end];
        let relative =
            !url.is_empty() && !url.starts_with('#') && !url.starts_with('/') && !url.contains(':');
        if relative {
            let (path, fragment) = url
                .split_once('#')
                .map_or((url, None), |(p, f)| (p, Some(f)));
            let joiner = if path.contains('?') { "&amp;" } else { "?" };
            out.push_str(path);
            out.push_str(joiner);
            out.push_str("token=");
            out.push_str(token);
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
        } else {
            out.push_str(url);
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `GET /api/sessions/{id}/thumbnails/{name}`.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/thumbnails/{name}",
    tag = "results",
    summary = "A thumbnail of the report, e.g. `frame-000036.jpg`",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("name" = String, Path, description = "The thumbnail's file name, as in the session's `links.thumbnails`", pattern = r"^frame-[0-9]{6,}\.jpg$"),
        FileHeaders,
    ),
    responses(
        (status = 200, description = "The thumbnail", body = Vec<u8>, content_type = "image/jpeg"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content(("image/jpeg"))),
        FileAnswers,
    ),
)]
pub async fn thumbnail(
    app: State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = format!("{THUMBNAILS_DIR}/{name}");
    serve(&app, &id, &[result.as_str()], &headers).await
}

/// `GET /api/sessions/{id}/clips/{name}`: a touch's clip (`clip-003-touch_left.mp4`), with
/// byte ranges like the video. Served as soon as the clip is announced, during processing.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/clips/{name}",
    tag = "results",
    summary = "A touch's clip (H.264 MP4), with byte ranges",
    description = "Served as soon as it is announced (the session's `clips`, a `clip_ready` event), during processing too. A name that is not one of the session's clips is 404 `result_not_found`.",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("name" = String, Path, description = "The clip's file name, e.g. `clip-002-touch_left.mp4`", pattern = r"^clip-[0-9]{3,}-[A-Za-z0-9_-]*\.mp4$"),
        FileHeaders,
    ),
    responses(
        (status = 200, description = "The whole clip", body = Vec<u8>, content_type = "video/mp4"),
        (status = 206, description = "The bytes of the `Range`", headers(("Content-Range" = String, description = "`bytes START-END/LENGTH`")), content((Vec<u8> = "video/mp4"))),
        FileAnswers,
    ),
)]
pub async fn clip(
    app: State<AppState>,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    // One file name: the store refuses any other (`/`, `..`, hidden files) as not found.
    let result = format!("{CLIPS_DIR}/{name}");
    serve(&app, &id, &[result.as_str()], &headers).await
}

/// `GET /api/sessions/{id}/frames/{index}.jpg`: a stored frame, as the client sent it.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/frames/{file}",
    tag = "results",
    summary = "A stored frame, byte for byte as the client sent it",
    description = "Works while the session is still being received. A stored frame never changes (`immutable`).",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("file" = String, Path, description = "`INDEX.jpg`, INDEX counting from 0", pattern = r"^[0-9]+\.jpg$"),
    ),
    responses(
        (status = 200, description = "The frame", body = Vec<u8>, content_type = "image/jpeg"),
        (status = 404, description = "No such session (`session_not_found`), or no such frame stored (`frame_not_found`)", body = ApiErrorBody),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
    ),
)]
pub async fn frame(
    State(app): State<AppState>,
    Path((id, file)): Path<(String, String)>,
) -> Response {
    let index = file
        .strip_suffix(".jpg")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<u64>().ok());
    let Some(index) = index else {
        return error(
            StatusCode::NOT_FOUND,
            "frame_not_found",
            format!("{file:?} is not a frame: ask for /api/sessions/{id}/frames/INDEX.jpg, INDEX counting from 0"),
        );
    };
    match app.store.stored_frame(&id, index).await {
        Ok((_, Some(frame))) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (
                    header::CACHE_CONTROL,
                    cache_control(&app, Caching::Immutable),
                ),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            frame.payload,
        )
            .into_response(),
        Ok((stored, None)) => error(
            StatusCode::NOT_FOUND,
            "frame_not_found",
            format!(
                "session {id} has {stored} frames stored: ask for frames 0 to {}",
                stored.saturating_sub(1)
            ),
        ),
        Err(err) => store_error(&app, &id, err),
    }
}

/// `GET /api/sessions/{id}/frames?from=N&count=M`: the timestamps of stored frames `N` to
/// `N + M - 1` (those of them stored), read from the frame log's index, and how many frames
/// are stored now. The replay player places each frame in the bout by them. At most
/// `--max-frame-times` per request (`count` defaults to it); works during the upload.
#[utoipa::path(
    get,
    path = "/api/sessions/{id}/frames",
    tag = "results",
    summary = "The timestamps of stored frames `from` to `from + count - 1`",
    description = "Those of them stored, from the frame log's index, as the client sent them; works while the session is still being received.",
    params(
        ("id" = String, Path, description = "The session's id"),
        ("from" = Option<u64>, Query, description = "The first frame (0 by default)"),
        ("count" = Option<u64>, Query, description = "How many frames, at most `--max-frame-times` (10 000 by default), its default"),
    ),
    responses(
        (status = 200, description = "The frames' times and how many frames are stored", body = FrameTimes),
        (status = 400, description = "`from` or `count` is not a whole number (`invalid_frame_range`), or `count` is over `--max-frame-times` (`frame_range_too_large`)", body = ApiErrorBody),
        (status = 404, description = "No such session (`session_not_found`)", body = ApiErrorBody),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
    ),
)]
pub async fn frame_times(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let max = app.settings.limits.max_frame_times;
    let (from, count) = match frame_range(query.as_deref(), max) {
        Ok(range) => range,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, message),
    };
    match app.store.frame_timestamps(&id).await {
        Ok(times) => {
            let stored = times.len() as u64;
            let start = usize::try_from(from.min(stored)).unwrap_or(usize::MAX);
            let end = usize::try_from(from.saturating_add(count).min(stored)).unwrap_or(usize::MAX);
            let pts_us = times.get(start..end).unwrap_or_default().to_vec();
            (
                [(header::CACHE_CONTROL, "no-store")],
                axum::Json(FrameTimes {
                    frames_stored: stored,
                    from,
                    pts_us,
                }),
            )
                .into_response()
        }
        Err(err) => store_error(&app, &id, err),
    }
}

/// `from` and `count` of a [`frame_times`] query (`count` at most `max`, its default), or
/// the error code and message of what is wrong with them.
fn frame_range(query: Option<&str>, max: u64) -> Result<(u64, u64), (&'static str, String)> {
    let mut from = 0;
    let mut count = max;
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let parsed = || {
            value.parse::<u64>().map_err(|_| {
                (
                    "invalid_frame_range",
                    format!("{key}={value:?} is not a whole number: ask for ?from=FIRST_FRAME&count=FRAMES"),
                )
            })
        };
        match key.as_ref() {
            "from" => from = parsed()?,
            "count" => count = parsed()?,
            _ => {}
        }
    }
    if count > max {
        return Err((
            "frame_range_too_large",
            format!(
                "count={count} asks for more frame times than the {max} this server gives at most \
             (--max-frame-times): ask for the frames in pieces of at most {max}"
            ),
        ));
    }
    Ok((from, count))
}

/// `DELETE /api/sessions/{id}`: deletes a session that is neither being received nor
/// processed (409 while it is). Needs an admin token, when the server has tokens
/// (see [`crate::http::auth`]).
#[utoipa::path(
    delete,
    path = "/api/sessions/{id}",
    tag = "sessions",
    summary = "Deletes a session and all its files",
    description = "A detached session can be deleted, which gives its upload up.",
    params(("id" = String, Path, description = "The session's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such session (`session_not_found`)", body = ApiErrorBody),
        (status = 409, description = "A connection is feeding the session or it is being processed (`session_live`)", body = ApiErrorBody),
        (status = 500, description = "The store failed (`storage_failed`, `internal`)", body = ApiErrorBody),
        (status = 503, description = "Another server of the registry is receiving the session (`server_busy`)", body = ApiErrorBody),
    ),
)]
pub async fn delete_session(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    if let Some(meta) = app.live.get(&id) {
        return error(
            StatusCode::CONFLICT,
            "session_live",
            format!(
                "session {id} is {}, and a client may still be feeding it: delete it once it \
                 is no longer being received or processed",
                meta.status.as_str()
            ),
        );
    }
    match app.store.delete(&id).await {
        Ok(()) => {
            app.reservations.remove(&id);
            tracing::info!("Deleted session {id}");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => store_error(&app, &id, err),
    }
}

/// The `links` of session `id`'s JSON: URLs of the session, of its frames (a URI template)
/// and of each result that exists now.
pub async fn links(app: &AppState, id: &str, frames_stored: u64) -> SessionLinks {
    let results = app.store.list_results(id).await.unwrap_or_else(|err| {
        tracing::debug!("Session {id}: cannot list results: {err}");
        Vec::new()
    });
    links_for(id, &results, frames_stored)
}

/// [`links`] from the list of result files.
pub fn links_for(id: &str, results: &[String], frames_stored: u64) -> SessionLinks {
    let base = format!("/api/sessions/{id}");
    let has = |name: &str| results.iter().any(|r| r == name);
    let stored = frames_stored > 0;
    let files_in = |folder: &str| -> Vec<String> {
        let prefix = format!("{folder}/");
        results
            .iter()
            .filter(|r| r.starts_with(&prefix))
            .map(|r| format!("{base}/{r}"))
            .collect()
    };
    SessionLinks {
        frames: stored.then(|| format!("{base}/frames/{{index}}.jpg")),
        frame_times: stored.then(|| format!("{base}/frames")),
        video: VIDEO_FILES
            .iter()
            .any(|v| has(v))
            .then(|| format!("{base}/video")),
        report_json: has(REPORT_FILE).then(|| format!("{base}/{REPORT_FILE}")),
        report_html: has(REPORT_HTML_FILE).then(|| format!("{base}/{REPORT_HTML_FILE}")),
        thumbnails: files_in(THUMBNAILS_DIR),
        clips: files_in(CLIPS_DIR),
        this: base,
    }
}

/// Serves the first of `names` that session `id` has.
async fn serve(app: &AppState, id: &str, names: &[&str], headers: &HeaderMap) -> Response {
    let mut last = None;
    for name in names {
        match app.store.open_result(id, name).await {
            Ok(file) => {
                let cache = cache_control(app, Caching::Revalidate);
                return stream_file(name, file, headers, cache).await;
            }
            Err(err @ StoreError::ResultNotFound { .. }) => last = Some(err),
            Err(err) => return store_error(app, id, err),
        }
    }
    store_error(app, id, last.unwrap_or(StoreError::NotFound(id.into())))
}

/// The `Cache-Control` of a result: `private` on a server with tokens (a shared cache must
/// never hand what a token protects to someone without it), `public` otherwise.
fn cache_control(app: &AppState, kind: Caching) -> &'static str {
    match (app.settings.auth.tokens.any(), kind) {
        (true, Caching::Revalidate) => "private, no-cache",
        (false, Caching::Revalidate) => "public, no-cache",
        (true, Caching::Immutable) => "private, max-age=31536000, immutable",
        (false, Caching::Immutable) => "public, max-age=31536000, immutable",
    }
}

/// How long a result may be kept by a cache.
#[derive(Debug, Clone, Copy)]
enum Caching {
    /// Checked again (ETag) before each use: results that processing may write again.
    Revalidate,
    /// Forever: a stored frame never changes.
    Immutable,
}

/// The Content-Type of a result file, from its name.
fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "mp4" => "video/mp4",
        "avi" => "video/x-msvideo",
        "json" => "application/json",
        "html" => "text/html; charset=utf-8",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// Streams `file` (all of it, or the byte range asked for), with the headers a browser needs
/// to seek: Accept-Ranges, Content-Range, and an ETag that If-Range and If-None-Match use.
async fn stream_file(
    name: &str,
    result: ResultFile,
    headers: &HeaderMap,
    cache: &'static str,
) -> Response {
    let len = result.len;
    let modified = result
        .modified
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{len:x}-{modified:x}\"");
    let header_text = |h: header::HeaderName| headers.get(h).and_then(|v| v.to_str().ok());

    let mut response = Response::builder()
        .header(header::CONTENT_TYPE, content_type(name))
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    if header_text(header::IF_NONE_MATCH)
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        return response
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .unwrap_or_else(internal);
    }
    // A Range with an If-Range for another version of the file gets the whole file.
    let range_header = match header_text(header::IF_RANGE) {
        Some(tag) if tag.trim() != etag => None,
        _ => header_text(header::RANGE),
    };
    let (start, count) = match ByteRange::parse(range_header, len) {
        ByteRange::Full => {
            response = response.status(StatusCode::OK);
            (0, len)
        }
        ByteRange::Partial { start, end } => {
            response = response
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_RANGE, format!("bytes {start}-{end}/{len}"));
            (start, end - start + 1)
        }
        // Its own JSON error, not the file's Content-Type on an empty body.
        ByteRange::Unsatisfiable => {
            let refused = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!(
                    "the file has {len} bytes and the Range {:?} asks for none of them: ask for \
                     bytes=START-END within them, or send no Range for the whole file",
                    range_header.unwrap_or_default()
                ),
            );
            return (
                [
                    (header::CONTENT_RANGE, format!("bytes */{len}")),
                    (header::ACCEPT_RANGES, "bytes".to_string()),
                ],
                refused,
            )
                .into_response();
        }
    };
    let mut file = tokio::fs::File::from_std(result.file);
    if start > 0 {
        if let Err(err) = file.seek(std::io::SeekFrom::Start(start)).await {
            return internal(err);
        }
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(count), CHUNK));
    response
        .header(header::CONTENT_LENGTH, count)
        .body(body)
        .unwrap_or_else(internal)
}

fn store_error(app: &AppState, id: &str, err: StoreError) -> Response {
    match err {
        StoreError::NotFound(_) => error(
            StatusCode::NOT_FOUND,
            "session_not_found",
            format!("no session {id:?}: list sessions with GET /api/sessions"),
        ),
        StoreError::ResultNotFound { name, .. } => error(
            StatusCode::NOT_FOUND,
            "result_not_found",
            format!(
                "session {id} has no {name:?}: results exist once processing is complete \
                 (see GET /api/sessions/{id} and its links)"
            ),
        ),
        err => ApiError::storage(err, &app.settings.storage.data_dir).into_response(),
    }
}

fn internal(err: impl std::fmt::Display) -> Response {
    ApiError::internal(err).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn links_name_what_exists() {
        let none = links_for("s1", &[], 0);
        assert_eq!(
            serde_json::to_value(none).unwrap(),
            json!({"self": "/api/sessions/s1"})
        );
        let results: Vec<String> = [
            "clips/clip-002-touch_left.mp4",
            "report.html",
            "report.json",
            "thumbnails/frame-000001.jpg",
            "thumbnails/frame-000009.jpg",
            "video.mp4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let all = links_for("s1", &results, 10);
        assert_eq!(
            serde_json::to_value(all).unwrap(),
            json!({
                "self": "/api/sessions/s1",
                "frames": "/api/sessions/s1/frames/{index}.jpg",
                "frame_times": "/api/sessions/s1/frames",
                "video": "/api/sessions/s1/video",
                "report_json": "/api/sessions/s1/report.json",
                "report_html": "/api/sessions/s1/report.html",
                "thumbnails": [
                    "/api/sessions/s1/thumbnails/frame-000001.jpg",
                    "/api/sessions/s1/thumbnails/frame-000009.jpg",
                ],
                "clips": ["/api/sessions/s1/clips/clip-002-touch_left.mp4"],
            })
        );
    }

    #[test]
    fn the_token_follows_the_page_links() {
        let page = r##"<video id="v" src="video.mp4" controls><a href="video.mp4#t=1.300">
<img src="thumbnails/frame-000001.jpg" alt="x"><a href="report.json">json</a>
<a href="#event-1">1</a><a href="https://example.org/x">x</a>"##;
        assert_eq!(
            add_token(page, "s3cret"),
            r##"<video id="v" src="video.mp4?token=s3cret" controls><a href="video.mp4?token=s3cret#t=1.300">
<img src="thumbnails/frame-000001.jpg?token=s3cret" alt="x"><a href="report.json?token=s3cret">json</a>
<a href="#event-1">1</a><a href="https://example.org/x">x</a>"##
        );
    }

    #[test]
    fn frame_ranges_are_bounded() {
        assert_eq!(frame_range(None, 100), Ok((0, 100)));
        assert_eq!(frame_range(Some("from=5&count=7"), 100), Ok((5, 7)));
        assert_eq!(frame_range(Some("token=x&from=5"), 100), Ok((5, 100)));
        let (code, large) = frame_range(Some("count=101"), 100).unwrap_err();
        assert_eq!(code, "frame_range_too_large");
        assert!(large.contains("at most 100"), "{large}");
        let (code, bad) = frame_range(Some("from=-1"), 100).unwrap_err();
        assert_eq!(code, "invalid_frame_range");
        assert!(bad.contains("not a whole number"), "{bad}");
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("video.mp4"), "video/mp4");
        assert_eq!(content_type("video.avi"), "video/x-msvideo");
        assert_eq!(content_type("thumbnails/frame-000001.jpg"), "image/jpeg");
        assert_eq!(content_type("report.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
