//! The OpenAPI document of the HTTP API, `GET /api/openapi.json`, made from the router itself:
//! every route under `/api/`, `/health` and `/metrics` is registered with its
//! `#[utoipa::path]` operation (`utoipa_axum::routes!` in [`super::routes`]), so the document
//! and the routes are one list, and the scope of each group of routes is written into the
//! security of its operations ([`require`]) where its guard is put in front of them. The
//! schemas are those of the API types (`referee_protocol::api`, `ToSchema`).
//!
//! The document is open (no token): it describes routes, not sessions, like the dashboard's
//! files, and a tool reads it before it knows which token to use. It is the document of this
//! server as started: `/health` and `/metrics` need the watch scope only with
//! `--protect-health` and `--protect-metrics`.

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use referee_protocol::api::{ApiErrorBody, SessionEvent, WebhookEvent};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    Components, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder, Ref,
    ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::http::auth::Scope;

/// Where the document is served.
pub const PATH: &str = "/api/openapi.json";
/// The security scheme of a token in `Authorization: Bearer TOKEN`.
pub const BEARER: &str = "bearer";
/// The security scheme of a token in `?token=TOKEN` (where a browser cannot set a header).
pub const TOKEN_QUERY: &str = "token_query";

/// The document, serialised once when the router is made.
#[derive(Debug, Clone)]
pub struct Document(Bytes);

impl Document {
    /// `api` as served: the schemas that no operation names but a client reads (an event
    /// stream's data, a webhook's body) and the security schemes added.
    pub fn new(mut api: OpenApi) -> Self {
        let components = api.components.get_or_insert_with(Components::default);
        let mut schemas = Vec::new();
        SessionEvent::schemas(&mut schemas);
        WebhookEvent::schemas(&mut schemas);
        schemas.push((SessionEvent::name().into(), SessionEvent::schema()));
        schemas.push((WebhookEvent::name().into(), WebhookEvent::schema()));
        for (name, schema) in schemas {
            components.schemas.entry(name).or_insert(schema);
        }
        let scopes = "Scopes nest: a watch token may read and watch, an ingest token may also \
                      stream and create sessions, an admin token may also delete them. Each \
                      operation names the scope it needs; a server without any token is open.";
        components.security_schemes.insert(
            BEARER.into(),
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(format!("`Authorization: Bearer TOKEN`. {scopes}")))
                    .build(),
            ),
        );
        components.security_schemes.insert(
            TOKEN_QUERY.into(),
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token".to_string(),
                format!(
                    "`?token=TOKEN`, URL-encoded, where a browser cannot set a header \
                     (EventSource, `<img>`, `<video>`). {scopes}"
                ),
            ))),
        );
        // Serialising a document of strings, maps and numbers cannot fail; an empty one is
        // served if it ever did.
        Self(serde_json::to_vec(&api).unwrap_or_default().into())
    }

    /// The document's JSON.
    pub fn json(&self) -> &[u8] {
        &self.0
    }
}

/// The document's own fields: what it is, which version of the server.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("referee")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "The HTTP API of a referee server: sessions' state, their results, their live \
             events, and creating and deleting sessions. Every error is a JSON body \
             `{\"code\", \"message\"}` (`ApiErrorBody`). The upload itself is the WebSocket \
             protocol of docs/protocol.md, at `/stream`, which OpenAPI does not describe.",
        ))
        .build();
    OpenApiBuilder::new().info(info).build()
}

/// Marks every operation of `api` as needing a token of scope `needs` (in the header or the
/// query), with the 401 and 403 that [`crate::http::auth::require`] answers without one.
pub fn require(api: &mut OpenApi, needs: Scope) {
    let security =
        [BEARER, TOKEN_QUERY].map(|scheme| SecurityRequirement::new(scheme, [needs.as_str()]));
    let error = |description: String| {
        ResponseBuilder::new()
            .description(description)
            .header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(String::schema())
                    .description(Some("`Bearer`"))
                    .build(),
            )
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(ApiErrorBody::name())))
                    .build(),
            )
            .build()
    };
    let scope = needs.as_str();
    for item in api.paths.paths.values_mut() {
        for operation in operations(item) {
            operation.security = Some(security.to_vec());
            let responses = &mut operation.responses.responses;
            responses.insert(
                "401".into(),
                error(format!(
                    "No token, or a wrong one (`unauthorized`): this needs the {scope} scope"
                ))
                .into(),
            );
            responses.insert(
                "403".into(),
                error(format!(
                    "The token's scope is too small (`forbidden`): this needs the {scope} scope"
                ))
                .into(),
            );
        }
    }
}

/// The operations of a path, whichever their methods.
fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .flatten()
}

/// `GET /api/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "server",
    operation_id = "openapi",
    summary = "This document: the server's HTTP API (OpenAPI 3.1)",
    responses((status = 200, description = "The document", body = Object, content_type = "application/json")),
)]
pub async fn document(Extension(document): Extension<Document>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        document.0,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::net::SocketAddr;

    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::http::{app, dashboard, routes};
    use crate::{AppState, Config};

    const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

    /// A server with a token of each scope, `/health` or `/metrics` protected as asked.
    fn server(dir: &std::path::Path, protect_health: bool, protect_metrics: bool) -> AppState {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
        config.token = Some("ingest".into());
        config.watch_token = Some("watch".into());
        config.admin_token = Some("admin".into());
        config.protect_health = protect_health;
        config.protect_metrics = protect_metrics;
        AppState::new(config.settings().unwrap()).unwrap()
    }

    fn document(state: &AppState) -> Value {
        let (_, api) = routes(state).split_for_parts();
        serde_json::from_slice(Document::new(api).json()).unwrap()
    }

    /// Each operation of the document: its method, path and the scope its security names.
    fn operations(document: &Value) -> Vec<(Method, String, Option<Scope>)> {
        let mut found = Vec::new();
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in METHODS {
                let Some(operation) = item.get(method) else {
                    continue;
                };
                let scopes: Vec<&str> = operation["security"]
                    .as_array()
                    .map(|alternatives| {
                        alternatives
                            .iter()
                            .flat_map(|a| a.as_object().unwrap().values())
                            .flat_map(|roles| roles.as_array().unwrap())
                            .map(|role| role.as_str().unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                let scope = scopes.first().map(|s| match *s {
                    "watch" => Scope::Watch,
                    "ingest" => Scope::Ingest,
                    "admin" => Scope::Admin,
                    other => panic!("{method} {path}: unknown scope {other}"),
                });
                assert!(
                    scopes.iter().all(|s| Some(*s) == scope.map(Scope::as_str)),
                    "{method} {path}: one scope, in each scheme: {scopes:?}"
                );
                found.push((method.to_uppercase().parse().unwrap(), path.clone(), scope));
            }
        }
        found
    }

    /// A request for `path` (its parameters filled in), with `token` if any.
    async fn answer(
        app: &Router,
        method: &Method,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let uri = path
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{file}", "0.jpg");
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).unwrap();
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        request.extensions_mut().insert(ConnectInfo(from));
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let is_json = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        // Only the JSON of an error is read: an event stream never ends.
        let body = if is_json {
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice(&bytes).unwrap()
        } else {
            Value::Null
        };
        (status, body)
    }

    use axum::Router;

    /// The tokens of the scopes below `scope`, and the one of `scope`.
    fn tokens(scope: Scope) -> (Vec<&'static str>, &'static str) {
        let all = [
            (Scope::Watch, "watch"),
            (Scope::Ingest, "ingest"),
            (Scope::Admin, "admin"),
        ];
        let below = all
            .iter()
            .filter(|(s, _)| *s < scope)
            .map(|(_, t)| *t)
            .collect();
        let own = all
            .iter()
            .find(|(s, _)| *s == scope)
            .map(|(_, t)| *t)
            .unwrap();
        (below, own)
    }

    #[tokio::test]
    async fn every_operation_is_served_with_the_scope_its_security_names() {
        for (protect_health, protect_metrics) in [(true, false), (false, true)] {
            let dir = tempfile::tempdir().unwrap();
            let state = server(dir.path(), protect_health, protect_metrics);
            let document = document(&state);
            let app = app(state);
            let operations = operations(&document);
            assert!(operations.len() >= 19, "{operations:?}");
            for (method, path, scope) in &operations {
                let (status, body) = answer(&app, method, path, None).await;
                let Some(scope) = scope else {
                    assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {path} is open");
                    continue;
                };
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
                let (below, own) = tokens(*scope);
                for token in below {
                    let (status, body) = answer(&app, method, path, Some(token)).await;
                    assert_eq!(
                        status,
                        StatusCode::FORBIDDEN,
                        "{method} {path} with {token}: {body}"
                    );
                }
                let (status, body) = answer(&app, method, path, Some(own)).await;
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&status),
                    "{method} {path} with {own}: {status} {body}"
                );
            }
            let open = |path: &str| {
                operations
                    .iter()
                    .find(|(_, p, _)| p == path)
                    .map(|(_, _, scope)| scope.is_none())
            };
            assert_eq!(open("/health"), Some(!protect_health));
            assert_eq!(open("/metrics"), Some(!protect_metrics));
            assert_eq!(open(PATH), Some(true));
            assert_eq!(open("/api/sessions/{id}/frames"), Some(false));
        }
    }

    #[tokio::test]
    async fn the_document_lists_exactly_the_routes_served() {
        let dir = tempfile::tempdir().unwrap();
        let state = server(dir.path(), false, false);
        let document = document(&state);
        let app = app(state);
        // Served, and as this document: open.
        let (status, served) = answer(&app, &Method::GET, PATH, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(served, document);
        assert_eq!(document["openapi"], "3.1.0");
        assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
        // Each documented operation is routed (no `not_found` of an unknown route), and a
        // documented path takes no other method.
        for (path, item) in document["paths"].as_object().unwrap() {
            for method in METHODS {
                let method: Method = method.to_uppercase().parse().unwrap();
                let (status, body) = answer(&app, &method, path, Some("admin")).await;
                let method = method.as_str().to_lowercase();
                let method = method.as_str();
                if item.get(method).is_some() {
                    assert_ne!(body["code"], "not_found", "{method} {path}: {body}");
                    assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                } else {
                    assert_eq!(
                        status,
                        StatusCode::METHOD_NOT_ALLOWED,
                        "{method} {path}: {body}"
                    );
                }
            }
        }
        // Every route is registered with its operation (`routes!`) but the dashboard's files
        // and the ingest WebSocket: none of those is under `/api/` or a documented path.
        let documented = |path: &str| document["paths"].get(path).is_some();
        for path in dashboard::paths().chain([referee_protocol::STREAM_PATH]) {
            assert!(!path.starts_with("/api/") && !documented(path), "{path}");
        }
        for path in [
            "/health",
            "/metrics",
            "/api/sessions",
            "/api/sessions/{id}/clips/{name}",
        ] {
            assert!(documented(path), "{path}");
        }
    }

    /// Every `$ref` in `value`.
    fn refs<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(to)) = map.get("$ref") {
                    found.push(to);
                }
                map.values().for_each(|v| refs(v, found));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_and_every_operation_is_named_once() {
        let dir = tempfile::tempdir().unwrap();
        let document = document(&server(dir.path(), false, false));
        let mut found = Vec::new();
        refs(&document, &mut found);
        assert!(found.len() > 20, "{found:?}");
        for to in &found {
            let pointer = to
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("{to} is not local"));
            assert!(document.pointer(pointer).is_some(), "{to} does not resolve");
        }
        for name in [
            "SessionEvent",
            "WebhookEvent",
            "ApiErrorBody",
            "SessionView",
            "BoutEventKind",
        ] {
            assert!(
                document["components"]["schemas"].get(name).is_some(),
                "{name}"
            );
        }
        let mut ids: Vec<&str> = document["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| METHODS.iter().filter_map(|m| item.get(*m)))
            .map(|operation| operation["operationId"].as_str().unwrap())
            .collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), count, "{ids:?}");
    }
}
