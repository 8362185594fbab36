//! Turns the server address the user typed into the WebSocket URL of the ingest endpoint.

use referee_protocol::STREAM_PATH;
use url::Url;

use crate::error::ClientError;

/// The WebSocket URL for `server`: `http` becomes `ws` and `https` becomes `wss`, and an
/// address without a scheme (`127.0.0.1:8080`) is `http://`; an empty path (or `/`) becomes
/// [`STREAM_PATH`], any other path is kept.
pub fn stream_url(server: &str) -> Result<Url, ClientError> {
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: server.to_string(),
        reason: reason.to_string(),
    };
    let given = if server.contains("://") || server.trim().is_empty() {
        server.to_string()
    } else {
        format!("http://{}", server.trim())
    };
    let mut url = Url::parse(&given).map_err(|err| invalid(&err.to_string()))?;
    let scheme = match url.scheme() {
        "http" | "ws" => "ws",
        "https" | "wss" => "wss",
        _ => return Err(invalid("the scheme must be http, https, ws or wss")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it names no host"));
    }
    url.set_scheme(scheme)
        .map_err(|()| invalid("cannot use it as a WebSocket URL"))?;
    if url.path().is_empty() || url.path() == "/" {
        url.set_path(STREAM_PATH);
    }
    url.set_fragment(None);
    Ok(url)
}

/// The base URL of the server's HTTP API for `server`: its origin (`ws` becomes `http`, `wss`
/// becomes `https`), whatever path was given, since the API lives at `/api/...`.
pub fn api_base(server: &str) -> Result<Url, ClientError> {
    let mut url = stream_url(server)?;
    let scheme = if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    let invalid = |reason: &str| ClientError::InvalidUrl {
        url: server.to_string(),
        reason: reason.to_string(),
    };
    url.set_scheme(scheme)
        .map_err(|()| invalid("cannot use it as an HTTP URL"))?;
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The dashboard page of session `id` on `server`: `http(s)://HOST:PORT/#/sessions/ID`. The
/// page itself needs no token (on a server with tokens it asks for one in its form).
pub fn dashboard_url(server: &str, id: &str) -> Result<Url, ClientError> {
    let mut url = api_base(server)?;
    url.set_fragment(Some(&format!("/sessions/{id}")));
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dashboard_shows_a_session_at_its_hash_route() {
        assert_eq!(
            dashboard_url("ws://127.0.0.1:9000/stream", "20250101_x_ab")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:9000/#/sessions/20250101_x_ab"
        );
        assert_eq!(
            dashboard_url("https://club.example", "s1")
                .unwrap()
                .as_str(),
            "https://club.example/#/sessions/s1"
        );
    }

    #[test]
    fn the_api_lives_at_the_origin() {
        let cases = [
            ("http://server:8080", "http://server:8080/"),
            ("https://server/x?y=1", "https://server/"),
            ("ws://127.0.0.1:9000/stream", "http://127.0.0.1:9000/"),
            ("wss://server:8443/custom", "https://server:8443/"),
        ];
        for (given, expected) in cases {
            assert_eq!(api_base(given).unwrap().as_str(), expected, "{given}");
        }
        assert!(api_base("ftp://server").is_err());
    }

    #[test]
    fn http_becomes_ws_and_the_path_defaults_to_stream() {
        let cases = [
            ("http://server:8080", "ws://server:8080/stream"),
            ("http://server:8080/", "ws://server:8080/stream"),
            ("https://server", "wss://server/stream"),
            ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000/stream"),
            ("wss://server:8443/", "wss://server:8443/stream"),
            (
                "ws://server:8080/custom/path",
                "ws://server:8080/custom/path",
            ),
            (
                "http://server:8080/ingest?x=1#top",
                "ws://server:8080/ingest?x=1",
            ),
            // Without a scheme: plain http.
            ("127.0.0.1:18080", "ws://127.0.0.1:18080/stream"),
            ("server:8080", "ws://server:8080/stream"),
            ("club.example/ingest", "ws://club.example/ingest"),
        ];
        for (given, expected) in cases {
            assert_eq!(stream_url(given).unwrap().as_str(), expected, "{given}");
        }
    }

    #[test]
    fn other_schemes_and_bare_hosts_are_refused_with_the_url() {
        for bad in ["ftp://server", "", "http://", "server:port"] {
            let err = stream_url(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
