//! The web dashboard at `/`: one HTML page, its scripts (ES modules: `app.js` imports the
//! others), style sheets and icon, among them the replay player's script and style
//! (`player.js`, `player.css`, which `report.html` inlines too), embedded in the binary
//! (`server/web/`, no build step, nothing loaded from elsewhere), and `timeline-layout.js`,
//! the motion timeline's layout written from the numbers `report.html` is drawn with. The page holds no
//! data, so it is served without a token; it reads everything through the API, with the
//! token the user gives it (see `auth.rs`).
//!
//! Each file carries an `ETag` (a hash of its content) and `Cache-Control: no-cache`: a
//! browser keeps it and asks again cheaply (`304 Not Modified`), so a new server version is
//! picked up at once.

use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::LazyLock;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../../web/index.html");
/// The dashboard's modules: the entry point and what it imports.
const MODULES: [(&str, &str); 9] = [
    ("/app.js", include_str!("../../web/app.js")),
    ("/api.js", include_str!("../../web/api.js")),
    ("/dom.js", include_str!("../../web/dom.js")),
    ("/links.js", include_str!("../../web/links.js")),
    ("/list.js", include_str!("../../web/list.js")),
    ("/session.js", include_str!("../../web/session.js")),
    ("/panel.js", include_str!("../../web/panel.js")),
    ("/report.js", include_str!("../../web/report.js")),
    ("/timeline.js", include_str!("../../web/timeline.js")),
];
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

/// The page runs only its own scripts (modules included) and style, shows images, live views
/// and videos from this server, and talks only to it. `blob:`/`data:` are not needed:
/// everything is a URL.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   media-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One served file and its validator.
struct Asset {
    path: &'static str,
    body: Cow<'static, str>,
    content_type: &'static str,
    etag: HeaderValue,
}

impl Asset {
    fn new(
        path: &'static str,
        body: impl Into<Cow<'static, str>>,
        content_type: &'static str,
    ) -> Self {
        let body = body.into();
        // The same content gives the same tag for as long as this binary runs.
        let mut hasher = std::hash::DefaultHasher::new();
        body.hash(&mut hasher);
        let tag = format!("\"{}-{:016x}\"", env!("CARGO_PKG_VERSION"), hasher.finish());
        let etag = HeaderValue::from_str(&tag).unwrap_or(HeaderValue::from_static("\"referee\""));
        Self {
            path,
            body,
            content_type,
            etag,
        }
    }

    fn respond(&'static self, headers: &HeaderMap) -> Response {
        let etag = self.etag.clone();
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
        let body: &'static str = &self.body;
        (
            common,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            )],
            body,
        )
            .into_response()
    }
}

/// Every file of the dashboard, by the path it is served at.
static ASSETS: LazyLock<Vec<Asset>> = LazyLock::new(|| {
    let mut assets = vec![
        Asset::new("/", INDEX_HTML, "text/html; charset=utf-8"),
        Asset::new("/player.js", PLAYER_JS, JAVASCRIPT),
        Asset::new(
            "/timeline-layout.js",
            crate::pipeline::timeline_layout_module(),
            JAVASCRIPT,
        ),
        Asset::new("/style.css", STYLE_CSS, "text/css; charset=utf-8"),
        Asset::new("/player.css", PLAYER_CSS, "text/css; charset=utf-8"),
        Asset::new("/favicon.svg", FAVICON_SVG, "image/svg+xml"),
    ];
    assets.extend(
        MODULES
            .iter()
            .map(|&(path, body)| Asset::new(path, body, JAVASCRIPT)),
    );
    assets
});

/// The paths of the dashboard's files.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|asset| asset.path)
}

/// The routes of the dashboard's files (`GET /`, `/app.js`, ...: no token needed).
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    ASSETS.iter().fold(Router::new(), |router, asset| {
        router.route(
            asset.path,
            get(move |headers: HeaderMap| async move { asset.respond(&headers) }),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asset(path: &str) -> &'static Asset {
        ASSETS
            .iter()
            .find(|a| a.path == path)
            .unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn files_have_their_types_and_revalidate_with_their_etag() {
        let mut kinds = vec![
            ("/", "text/html"),
            ("/player.js", "text/javascript"),
            ("/timeline-layout.js", "text/javascript"),
            ("/style.css", "text/css"),
            ("/player.css", "text/css"),
            ("/favicon.svg", "image/svg+xml"),
        ];
        kinds.extend(MODULES.iter().map(|(path, _)| (*path, "text/javascript")));
        for (path, kind) in kinds {
            let response = asset(path).respond(&HeaderMap::new());
            assert_eq!(response.status(), StatusCode::OK);
            let headers = response.headers();
            let content_type = headers[header::CONTENT_TYPE].to_str().unwrap_or_default();
            assert!(content_type.starts_with(kind), "{path}: {content_type}");
            assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
            assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        }
        let script = asset("/app.js");
        let etag = script.etag.clone();
        assert_ne!(etag, asset("/style.css").etag);
        let mut conditional = HeaderMap::new();
        conditional.insert(header::IF_NONE_MATCH, etag.clone());
        let response = script.respond(&conditional);
        assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(response.headers()[header::ETAG], etag);
        let mut stale = HeaderMap::new();
        stale.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"old\""));
        assert_eq!(script.respond(&stale).status(), StatusCode::OK);
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        // One module script, which imports the others from this server.
        assert_eq!(INDEX_HTML.matches("<script").count(), 1);
        assert!(INDEX_HTML.contains("<script type=\"module\" src=\"app.js\">"));
        assert!(INDEX_HTML.contains("href=\"style.css\""));
        // Every module a module imports is served, from this server.
        for asset in ASSETS.iter() {
            for import in asset.body.split(" from './").skip(1) {
                let name = import.split('\'').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|a| a.path == format!("/{name}")),
                    "{} imports {name}, which is not served",
                    asset.path
                );
            }
        }
        // Nothing from another site (the SVG namespace is a name, not a request).
        for asset in ASSETS.iter() {
            let elsewhere = asset
                .body
                .replace("http://www.w3.org/2000/svg", "")
                .contains("://");
            assert!(!elsewhere, "{}", asset.path);
        }
        // Text from the server goes in with textContent, never as markup.
        for asset in ASSETS.iter().filter(|a| a.content_type == JAVASCRIPT) {
            assert!(!asset.body.contains("innerHTML"), "{}", asset.path);
        }
        // The player imports nothing: report.html inlines it whole.
        assert!(!PLAYER_JS
            .lines()
            .any(|l| l.trim_start().starts_with("import")));
    }
}
