//! Why the server could not be reached, said so that the user knows what to do: one place for
//! the hints of the streaming form (WebSocket) and of `status`, `list`, `watch`, `create` and
//! `delete` (HTTP). The libraries' errors are told apart by their text, which is what both
//! report.

/// `error` (a failed connection to a server over TLS when `tls`), with what it most likely
/// means: a TLS server reached without TLS or the other way round, an unknown host name,
/// nothing listening, or a certificate this machine does not trust.
pub fn explain(error: &str, tls: bool) -> String {
    let text = error.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    let hint = if has(&[
        "unknownissuer",
        "unknown issuer",
        "invalid peer certificate",
        "certificate",
        "notvalidforname",
        "self-signed",
        "self signed",
    ]) {
        "TLS failed: this machine does not trust the server's certificate: pass --ca FILE with the CA (or the self-signed certificate) that signed it, or check that the certificate is valid for this host name"
    } else if tls
        && has(&[
            "invalidcontenttype",
            "invalid content type",
            "corrupt message",
            "wrong version number",
            "record overflow",
            "invalidmessage",
            "invalid message",
        ])
    {
        "TLS failed: the server does not speak TLS on this port: use http:// (or ws://) instead of https:// (or wss://)"
    } else if !tls
        && has(&[
            "httparse",
            "invalid http",
            "invalid status",
            "invalid response",
            "bad header",
            "http parse",
            "unsupported http version",
        ])
    {
        "the server answered with something that is not HTTP, as a TLS server does: use https:// (or wss://)"
    } else if has(&[
        "failed to lookup address",
        "name or service not known",
        "no such host",
        "nodename nor servname",
        "temporary failure in name resolution",
        "dns",
    ]) {
        "this host name is not known: check its spelling (or use the server's IP address)"
    } else if has(&["connection refused"]) {
        "nothing listens on that port: is the server running?"
    } else {
        "is the server running?"
    };
    format!("{error}: {hint}")
}

/// What an HTTP 401 means: no token was sent, or the one sent (`token_sent`) is not valid.
pub fn unauthorized(token_sent: bool) -> &'static str {
    if token_sent {
        "the server refused this token (HTTP 401: wrong, or no longer valid): check --token or REFEREE_TOKEN"
    } else {
        "the server asks for a token (HTTP 401): pass --token or set REFEREE_TOKEN"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_gets_its_hint() {
        let plain = explain(
            "IO error: received corrupt message of type InvalidContentType",
            true,
        );
        assert!(plain.contains("use http://"), "{plain}");
        let tls = explain(
            "HTTP format error: httparse error: invalid HTTP version",
            false,
        );
        assert!(tls.contains("use https://"), "{tls}");
        let dns = explain(
            "IO error: failed to lookup address information: Name or service not known",
            false,
        );
        assert!(dns.contains("host name is not known"), "{dns}");
        let refused = explain("IO error: Connection refused (os error 111)", false);
        assert!(refused.ends_with(": is the server running?"), "{refused}");
        let untrusted = explain("invalid peer certificate: UnknownIssuer", true);
        assert!(
            untrusted.contains("TLS failed") && untrusted.contains("--ca"),
            "{untrusted}"
        );
        assert_ne!(unauthorized(true), unauthorized(false));
    }
}
