//! Bearer tokens with scopes. A watch token may read and watch; an ingest token may also
//! stream and create sessions; an admin token may also delete. A server without any token is
//! open. Which scope a route needs is said where it is routed (`http/mod.rs`), by the
//! [`require`] layer of its group.
//!
//! The token comes in `Authorization: Bearer TOKEN`, or as `?token=TOKEN` where a browser
//! cannot set a header (EventSource, `<img>`, `<video>`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::api_error::ApiError;
use crate::settings::{Secret, Settings};
use crate::AppState;

/// What a token may do; each scope includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Watch,
    Ingest,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Watch => "watch",
            Scope::Ingest => "ingest",
            Scope::Admin => "admin",
        }
    }
}

/// The server's tokens, by scope (held once, in `Settings::auth`).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    pub watch: Option<Secret>,
    pub ingest: Option<Secret>,
    pub admin: Option<Secret>,
}

impl Tokens {
    pub fn any(&self) -> bool {
        self.watch.is_some() || self.ingest.is_some() || self.admin.is_some()
    }

    /// The scope `given` grants, if it is one of the tokens.
    fn grant(&self, given: &str) -> Option<Scope> {
        [
            (Scope::Admin, &self.admin),
            (Scope::Ingest, &self.ingest),
            (Scope::Watch, &self.watch),
        ]
        .into_iter()
        .find_map(|(scope, token)| {
            token
                .as_ref()
                .is_some_and(|t| same_secret(t.expose(), given))
                .then_some(scope)
        })
    }
}

/// Whether the browser page at `origin` may open a WebSocket to `/stream` (a request with
/// an `Origin` header, sent to `host`): always when the server has tokens and no
/// `--allowed-origin` (the token protects it); otherwise when `origin` is the server's own
/// (its authority is `host`) or one of `allowed` (`*` allows any).
pub fn origin_allowed(
    tokens: &Tokens,
    allowed: &[String],
    origin: &str,
    host: Option<&str>,
) -> bool {
    if tokens.any() && allowed.is_empty() {
        return true;
    }
    let origin = origin.trim().trim_end_matches('/');
    let authority = origin.split_once("://").map_or(origin, |(_, a)| a);
    let own = host.is_some_and(|h| h.trim().eq_ignore_ascii_case(authority));
    own || allowed.iter().any(|a| {
        let a = a.trim().trim_end_matches('/');
        a == "*" || a.eq_ignore_ascii_case(origin)
    })
}

/// Refuses a WebSocket upgrade whose `Origin` is not allowed ([`origin_allowed`]): 403
/// `origin_not_allowed`. Clients that send no `Origin` (every non-browser one) pass.
pub fn check_origin(app: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("(not text)");
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let auth = &app.settings.auth;
    if origin_allowed(&auth.tokens, &auth.allowed_origins, origin, host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "origin_not_allowed",
        format!(
            "a page from {origin:?} may not stream to this server: add it with              --allowed-origin, or give the server a token (--token)"
        ),
    ))
}

/// Compares two secrets in time that does not depend on where they differ.
pub fn same_secret(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0 && !a.is_empty()
}

/// The token of a request: its bearer header, else its `token` query parameter, decoded as
/// `application/x-www-form-urlencoded` (percent escapes, `+` for a space), as a browser's
/// `URLSearchParams` writes it.
fn token_of(request: &Request) -> Option<String> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    bearer.or_else(|| request.uri().query().and_then(query_token))
}

/// The `token` parameter of a URL query, decoded (percent escapes, `+` for a space); `None`
/// when there is none or it is empty.
pub fn query_token(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// What a group of routes needs: the route layer [`require`] takes it as its state.
#[derive(Clone)]
pub struct Guard {
    settings: std::sync::Arc<Settings>,
    needs: Scope,
}

impl Guard {
    pub fn new(app: &AppState, needs: Scope) -> Self {
        Self {
            settings: std::sync::Arc::clone(&app.settings),
            needs,
        }
    }
}

/// Route layer: refuses a request whose token does not grant the scope its route needs (on a
/// server with tokens; one without any is open).
pub async fn require(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Guard { settings, needs } = guard;
    let tokens = &settings.auth.tokens;
    if !tokens.any() {
        return next.run(request).await;
    }
    let granted = token_of(&request).and_then(|t| tokens.grant(&t));
    match granted {
        Some(scope) if scope >= needs => next.run(request).await,
        Some(scope) => refuse(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token's scope is {}, and {} {} needs {}",
                scope.as_str(),
                request.method(),
                request.uri().path(),
                needs.as_str()
            ),
        ),
        None => {
            let message = match token_of(&request) {
                Some(_) => "the bearer token is wrong: check --token or REFEREE_TOKEN",
                None => "this server needs a bearer token: pass --token or set REFEREE_TOKEN",
            };
            tracing::warn!(
                "Refused {} {}: {message}",
                request.method(),
                request.uri().path()
            );
            refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.to_string(),
            )
        }
    }
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    (
        [(header::WWW_AUTHENTICATE, "Bearer")],
        ApiError::new(status, code, message),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(same_secret("s3cret", "s3cret"));
        assert!(!same_secret("s3cret", "s3cres"));
        assert!(!same_secret("s3cret", "s3cre"));
        assert!(!same_secret("s3cret", "s3crett"));
        assert!(!same_secret("", ""));
    }

    fn token_of_uri(uri: &str) -> Option<String> {
        token_of(&Request::builder().uri(uri).body(Body::empty()).unwrap())
    }

    #[test]
    fn the_token_parameter_is_url_decoded() {
        // `a+b/c=d%e` as `URLSearchParams` writes it.
        assert_eq!(
            token_of_uri("/api/sessions?token=a%2Bb%2Fc%3Dd%25e").as_deref(),
            Some("a+b/c=d%e")
        );
        assert_eq!(
            token_of_uri("/api/events?x=1&token=a+b").as_deref(),
            Some("a b"),
            "`+` is a space in a query"
        );
        assert_eq!(token_of_uri("/api/events?x=1").as_deref(), None);
        assert_eq!(query_token("x=1&token="), None);
        let tokens = Tokens {
            watch: Some("a+b/c=d%e".into()),
            ..Tokens::default()
        };
        let given = token_of_uri("/api/sessions?token=a%2Bb%2Fc%3Dd%25e").unwrap();
        assert_eq!(tokens.grant(&given), Some(Scope::Watch));
    }

    #[test]
    fn origins_are_checked_without_tokens_or_with_a_list() {
        let open = Tokens::default();
        let host = Some("10.0.0.5:8080");
        assert!(origin_allowed(&open, &[], "http://10.0.0.5:8080", host));
        assert!(origin_allowed(&open, &[], "https://10.0.0.5:8080/", host));
        assert!(!origin_allowed(&open, &[], "https://evil.example", host));
        assert!(!origin_allowed(&open, &[], "null", host));
        let list = vec!["https://Scores.example.org".to_string()];
        assert!(origin_allowed(
            &open,
            &list,
            "https://scores.example.org",
            host
        ));
        assert!(origin_allowed(
            &open,
            &["*".into()],
            "https://evil.example",
            host
        ));
        let tokens = Tokens {
            ingest: Some("i".into()),
            ..Tokens::default()
        };
        assert!(origin_allowed(&tokens, &[], "https://evil.example", host));
        assert!(!origin_allowed(
            &tokens,
            &list,
            "https://evil.example",
            host
        ));
    }

    #[test]
    fn scopes_nest() {
        let tokens = Tokens {
            watch: Some("w".into()),
            ingest: Some("i".into()),
            admin: Some("a".into()),
        };
        assert_eq!(tokens.grant("w"), Some(Scope::Watch));
        assert_eq!(tokens.grant("a"), Some(Scope::Admin));
        assert_eq!(tokens.grant("x"), None);
        assert!(Scope::Admin > Scope::Ingest && Scope::Ingest > Scope::Watch);
    }
}
