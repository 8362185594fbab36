//! Bearer-token authentication of ingest connections.

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0 && !a.is_empty()
}

/// Checks the request's `Authorization: Bearer TOKEN` against `token`; says why it does not
/// match.
pub fn check_bearer(token: Option<&str>, headers: &HeaderMap) -> Result<(), &'static str> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let message = match given {
        Some(given) if same_secret(token, given) => return Ok(()),
        Some(_) => "the bearer token is wrong: check --token or REFEREE_TOKEN",
        None => "this server needs a bearer token: pass --token or set REFEREE_TOKEN",
    };
    Err(message)
}

/// The 401 answer to a request without a valid token.
pub fn unauthorized(message: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(json!({ "code": "unauthorized", "message": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cres"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("s3cret", "s3crett"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn bearer_header_is_checked() {
        let mut headers = HeaderMap::new();
        assert!(check_bearer(None, &headers).is_ok());
        assert!(check_bearer(Some("t"), &headers)
            .unwrap_err()
            .contains("needs a bearer token"));
        assert_eq!(unauthorized("x").status(), StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, "Bearer x".parse().unwrap());
        assert!(check_bearer(Some("t"), &headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(check_bearer(Some("t"), &headers).is_ok());
    }
}
