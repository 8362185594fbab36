//! The web dashboard at `/`: one HTML page, its script, style sheet and icon, and the replay
//! player's script and style (`player.js`, `player.css`, which `report.html` inlines too),
//! embedded in the binary (`server/web/`, no build step, nothing loaded from elsewhere). The page holds no
//! data, so it is served without a token; it reads everything through the API, with the
//! token the user gives it (see `auth.rs`).
//!
//! Each file carries an `ETag` (a hash of its content) and `Cache-Control: no-cache`: a
//! browser keeps it and asks again cheaply (`304 Not Modified`), so a new server version is
//! picked up at once.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
/// The replay player (also inlined in `report.html`, see `pipeline::report_html`).
pub const PLAYER_JS: &str = include_str!("../../web/player.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
/// The replay player's style (also inlined in `report.html`).
pub const PLAYER_CSS: &str = include_str!("../../web/player.css");
/// The icon: a white "r" on the header's colour.
const FAVICON_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
<rect width=\"32\" height=\"32\" rx=\"7\" fill=\"#1d2330\"/><path d=\"M11 25V12h4v2.2\
c1.2-1.7 2.8-2.5 5-2.4v4c-2.9-.2-5 1-5 4.2V25z\" fill=\"#fff\"/>\
<circle cx=\"24\" cy=\"22\" r=\"3\" fill=\"#3ccf7a\"/></svg>";

/// The page runs only its own script and style, shows images, live views and videos from
/// this server, and talks only to it. `blob:`/`data:` are not needed: everything is a URL.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// One embedded file and its validator.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            // The same content gives the same tag for as long as this binary runs.
            let mut hasher = std::hash::DefaultHasher::new();
            self.body.hash(&mut hasher);
            let tag = format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), hasher.finish());
            HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"referee\""))
        })
    }

    fn respond(&self, headers: &HeaderMap) -> Response {
        let etag = self.etag().clone();
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|given| {
                given
                    .split(',')
                    .any(|t| t.trim() == "*" || t.trim().as_bytes() == etag.as_bytes())
            });
        let common = [
            (header::ETAG, etag),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // Tokens may travel in URLs (`?token=`): never hand them to another site.
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
        ];
        if fresh {
            return (StatusCode::NOT_MODIFIED, common).into_response();
        }
        (
            common,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            self.body,
        )
            .into_response()
    }
}

static INDEX: Asset = Asset::new(INDEX_HTML, "text/html; charset=utf-8");
static SCRIPT: Asset = Asset::new(APP_JS, "text/javascript; charset=utf-8");
static PLAYER: Asset = Asset::new(PLAYER_JS, "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(STYLE_CSS, "text/css; charset=utf-8");
static PLAYER_STYLE: Asset = Asset::new(PLAYER_CSS, "text/css; charset=utf-8");
static FAVICON: Asset = Asset::new(FAVICON_SVG, "image/svg+xml");

/// `GET /`: the dashboard page.
pub async fn index(headers: HeaderMap) -> Response {
    INDEX.respond(&headers)
}

/// `GET /app.js`: the dashboard's script.
pub async fn script(headers: HeaderMap) -> Response {
    SCRIPT.respond(&headers)
}

/// `GET /player.js`: the replay player the session page uses.
pub async fn player(headers: HeaderMap) -> Response {
    PLAYER.respond(&headers)
}

/// `GET /style.css`: the dashboard's style sheet.
pub async fn style(headers: HeaderMap) -> Response {
    STYLE.respond(&headers)
}

/// `GET /player.css`: the replay player's style sheet.
pub async fn player_style(headers: HeaderMap) -> Response {
    PLAYER_STYLE.respond(&headers)
}

/// `GET /favicon.svg`: the dashboard's icon.
pub async fn favicon(headers: HeaderMap) -> Response {
    FAVICON.respond(&headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_have_their_types_and_revalidate_with_their_etag() {
        for (response, kind) in [
            (index(HeaderMap::new()).await, "text/html"),
            (script(HeaderMap::new()).await, "text/javascript"),
            (player(HeaderMap::new()).await, "text/javascript"),
            (style(HeaderMap::new()).await, "text/css"),
            (player_style(HeaderMap::new()).await, "text/css"),
            (favicon(HeaderMap::new()).await, "image/svg+xml"),
        ] {
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            let content_type = headers[header::CONTENT_TYPE].to_str().unwrap_or_default();
            assert!(content_type.starts_with(kind), "{content_type}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        }
        let etag = SCRIPT.etag().clone();
        assert_ne!(&etag, STYLE.etag());
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag.clone());
        let response = script(conditional).await;
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], etag);
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        assert_eq!(script(stale).await.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        assert!(INDEX_HTML.contains("src=\"app.js\""));
        assert!(INDEX_HTML.contains("src=\"player.js\""));
        assert!(INDEX_HTML.contains("href=\"style.css\""));
        // Nothing from another site (the SVG namespace is a name, not a request).
        for file in [INDEX_HTML, APP_JS, PLAYER_JS, STYLE_CSS, PLAYER_CSS] {
            let elsewhere = file
                .replace("http://www.w3.org/2000/svg", "")
                .contains("://");
            assert!(!elsewhere);
        }
        // Text from the server goes in with textContent, never as markup.
        assert!(!APP_JS.contains("innerHTML"));
        assert!(!PLAYER_JS.contains("innerHTML"));
    }
}
