//! [`ApiError`]: every error the HTTP API answers, as `{"code": ..., "message": ...}` JSON,
//! extractor rejections included ([`json_errors`] rewrites the plain-text ones axum makes).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use referee_protocol::api::ApiErrorBody;

/// The longest plain-text error body [`json_errors`] reads to put in a message.
const MAX_PLAIN_ERROR: usize = 16 * 1024;

/// An HTTP API error: a status, a stable code and a message saying what to do.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ApiErrorBody {
        ApiErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }

    /// A 500 `internal`: something the server did not expect.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            err.to_string(),
        )
    }

    /// A 500 `storage_failed`, without the path of the server's data directory; a store
    /// call whose thread failed is a 500 `internal`, a session another server is receiving
    /// a 503 `server_busy`.
    pub fn storage(err: crate::store::StoreError, data_dir: &std::path::Path) -> Self {
        let (status, code) = match err {
            crate::store::StoreError::TaskFailed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            crate::store::StoreError::Leased { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, "server_busy")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "storage_failed"),
        };
        Self::new(
            status,
            code,
            crate::store::without_data_dir(&err.to_string(), data_dir),
        )
    }
}

/// [`ApiError`] as a response, for handlers that build their answer by hand.
pub fn error(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError::new(status, code, message).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// The answer to a route the server does not have.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "there is no {}: the API's routes are in docs/protocol.md and docs/operations.md",
            uri.path()
        ),
    )
}

/// The code of an error status that no handler gave one (an extractor's rejection, an
/// unknown route or method).
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "invalid_request",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    }
}

/// Middleware: an error response that is not JSON yet (axum's rejections are plain text, an
/// unknown route or method has no body) becomes `{code, message}` JSON, its headers kept.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_PLAIN_ERROR)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND if text.is_empty() => {
            format!("there is no {path}: see docs/protocol.md for the API's routes")
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("another method")
                .to_string();
            format!("{path} does not take {method}: use {allowed}")
        }
        _ if text.is_empty() => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string(),
        _ => text,
    };
    let body = serde_json::to_vec(&ApiError::new(status, code_of(status), message).body())
        .unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_get_a_code_by_status() {
        assert_eq!(
            code_of(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            "unsupported_media_type"
        );
        assert_eq!(code_of(StatusCode::UNPROCESSABLE_ENTITY), "invalid_request");
        assert_eq!(code_of(StatusCode::BAD_GATEWAY), "internal");
    }

    #[test]
    fn a_failed_store_thread_is_internal_and_a_storage_error_hides_the_data_directory() {
        use crate::store::StoreError;
        let failed = ApiError::storage(
            StoreError::TaskFailed {
                what: "listing the sessions",
                detail: "it panicked (boom)".into(),
            },
            std::path::Path::new("/srv/referee"),
        );
        assert_eq!(
            (failed.status, failed.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert_eq!(
            failed.message,
            "listing the sessions did not finish: it panicked (boom)"
        );
        let refused = ApiError::storage(
            StoreError::DataDir {
                what: "cannot write",
                path: "/srv/referee/sessions".into(),
                source: std::io::Error::other("disk full"),
            },
            std::path::Path::new("/srv/referee"),
        );
        assert_eq!(refused.code, "storage_failed");
        assert!(
            refused
                .message
                .starts_with("cannot write DATA_DIR/sessions: disk full"),
            "{}",
            refused.message
        );
    }
}
