//! One WebSocket connection to the server: opening it (with the bearer token, within a time
//! limit), sending control messages and frames, and receiving control messages. What the
//! messages mean is [`crate::upload`]'s business.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use referee_protocol::ControlMessage;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::UrlError;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{
    connect_async_tls_with_config, Connector, MaybeTlsStream, WebSocketStream,
};
use tracing::{debug, trace, warn};
use url::Url;

use crate::error::ClientError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for a pending server ERROR after a send failed, and for the server's
/// reply to our close frame.
const GRACE: Duration = Duration::from_secs(2);
/// The server pings every few seconds: this long without any message means it is gone.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);

/// The hints of a handshake timeout, by the step that did not finish.
pub const NO_HANDSHAKE: &str =
    "the WebSocket handshake did not finish: is the server running and reachable?";
pub const NO_ANSWER: &str = "the server did not answer: is it a referee server?";

/// Why a connection ended, before the caller says how far its session got.
#[derive(Debug)]
pub enum Ended {
    /// The server sent a fatal ERROR.
    Server(ClientError),
    /// The connection broke or was closed.
    Lost(String),
}

/// One open connection.
pub struct Connection {
    socket: Socket,
    pub url: Url,
}

impl Connection {
    /// Opens a WebSocket to `url`, presenting `token` as a bearer token, by `deadline`.
    pub async fn open(
        url: &Url,
        token: Option<&str>,
        tls: Option<Connector>,
        deadline: Instant,
        limit: Duration,
    ) -> Result<Self, ClientError> {
        let mut request =
            url.as_str()
                .into_client_request()
                .map_err(|err| ClientError::Connect {
                    url: url.clone(),
                    reason: err.to_string(),
                })?;
        if let Some(token) = token {
            let value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::Connect {
                    url: url.clone(),
                    reason: "the token has characters a header cannot carry".into(),
                }
            })?;
            request.headers_mut().insert("Authorization", value);
        }
        let connecting = connect_async_tls_with_config(request, None, false, tls);
        match timeout_at(deadline, connecting).await {
            Ok(Ok((socket, _response))) => Ok(Self {
                socket,
                url: url.clone(),
            }),
            Ok(Err(err)) => Err(ClientError::Connect {
                url: url.clone(),
                reason: describe_connect_error(err, url.scheme() == "wss", token.is_some()),
            }),
            Err(_) => Err(ClientError::HandshakeTimeout {
                url: url.clone(),
                secs: limit.as_secs(),
                hint: NO_HANDSHAKE,
            }),
        }
    }

    pub async fn send_control(&mut self, message: &ControlMessage) -> Result<(), Ended> {
        debug!(message = message.type_name(), "sending");
        self.send(Message::text(message.to_json())).await
    }

    pub async fn send_binary(&mut self, message: Bytes) -> Result<(), Ended> {
        self.send(Message::Binary(message)).await
    }

    /// Sends one message. When that fails, the server has often just sent a fatal ERROR and
    /// closed the connection: that ERROR is reported rather than the broken connection.
    async fn send(&mut self, message: Message) -> Result<(), Ended> {
        let err = match timeout(SILENCE_LIMIT, self.socket.send(message)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(err)) => err.to_string(),
            Err(_) => format!("the server took no data for {} s", SILENCE_LIMIT.as_secs()),
        };
        let pending_error = async {
            loop {
                if let Err(ended) = self.recv().await {
                    return ended;
                }
            }
        };
        match timeout(GRACE, pending_error).await {
            Ok(server @ Ended::Server(_)) => Err(server),
            _ => Err(Ended::Lost(err)),
        }
    }

    /// The next control message from the server. Pings and pongs are skipped (tungstenite
    /// answers pings itself); a non-fatal ERROR is logged; a fatal one ends the connection.
    /// Cancel safe: a message is only taken off the socket when it is returned or handled.
    pub async fn recv(&mut self) -> Result<ControlMessage, Ended> {
        loop {
            let next = match timeout(SILENCE_LIMIT, self.socket.next()).await {
                Ok(next) => next,
                Err(_) => {
                    return Err(Ended::Lost(format!(
                        "the server was silent for {} s",
                        SILENCE_LIMIT.as_secs()
                    )))
                }
            };
            let text = match next {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Binary(_))) => {
                    return Err(Ended::Server(ClientError::Protocol(
                        "the server sent a binary message; it only sends JSON text messages".into(),
                    )))
                }
                Some(Ok(Message::Close(frame))) => return Err(Ended::Lost(describe_close(frame))),
                Some(Err(err)) => return Err(Ended::Lost(err.to_string())),
                None => return Err(Ended::Lost("the server closed the connection".into())),
            };
            let message = ControlMessage::from_json(&text).map_err(|err| {
                Ended::Server(ClientError::Protocol(format!(
                    "the server sent a message this client cannot read: {err}"
                )))
            })?;
            trace!(message = message.type_name(), "received");
            match message {
                ControlMessage::Error {
                    code,
                    message,
                    fatal: true,
                } => return Err(Ended::Server(ClientError::Server { code, message })),
                ControlMessage::Error { code, message, .. } => {
                    warn!("server warning {code}: {message}");
                }
                other => return Ok(other),
            }
        }
    }

    /// Closes the connection normally, waiting briefly for the server's close reply.
    pub async fn close(mut self) {
        if let Err(err) = self.socket.close(None).await {
            debug!(%err, "cannot send the close frame");
            return;
        }
        let drained = async { while let Some(Ok(_)) = self.socket.next().await {} };
        if timeout(GRACE, drained).await.is_err() {
            debug!("the server did not answer the close frame");
        }
    }
}

/// The TLS connector that trusts the system's CAs and the one in `ca_file`; `None` (the
/// default connector) without a CA file.
pub fn tls_connector(ca_file: Option<&std::path::Path>) -> Result<Option<Connector>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let bad = |reason: String| ClientError::TlsSetup {
        path: path.to_path_buf(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let mut added = 0;
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificate in it".into()));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Connector::Rustls(std::sync::Arc::new(config))))
}

/// Whether an I/O error of the connection comes from TLS (e.g. an untrusted certificate).
fn is_tls_error(err: &std::io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

fn describe_connect_error(err: tungstenite::Error, tls: bool, token_sent: bool) -> String {
    match err {
        tungstenite::Error::Http(response) if response.status().as_u16() == 401 => {
            crate::reach::unauthorized(token_sent).to_string()
        }
        tungstenite::Error::Http(response) if response.status().as_u16() == 403 => format!(
            "the token may not stream (HTTP {}): use an ingest or admin token",
            response.status()
        ),
        tungstenite::Error::Http(response) => format!(
            "it answered HTTP {} instead of opening a WebSocket (check the URL's path)",
            response.status()
        ),
        tungstenite::Error::Url(UrlError::TlsFeatureNotEnabled) => {
            "this build of referee-client has no TLS support: use ws:// or http://".into()
        }
        tungstenite::Error::Io(io) if is_tls_error(&io) => {
            crate::reach::explain(&io.to_string(), tls)
        }
        other => crate::reach::explain(&other.to_string(), tls),
    }
}

fn describe_close(frame: Option<CloseFrame>) -> String {
    match frame {
        Some(frame) if !frame.reason.is_empty() => format!(
            "the server closed the connection with code {}: {}",
            frame.code, frame.reason
        ),
        Some(frame) => format!("the server closed the connection with code {}", frame.code),
        None => "the server closed the connection".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unreachable_server_names_the_url() {
        let url = Url::parse("ws://127.0.0.1:9/stream").unwrap();
        let limit = Duration::from_secs(5);
        let err = Connection::open(&url, None, None, Instant::now() + limit, limit)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("cannot connect to ws://127.0.0.1:9/stream: "),
            "{err}"
        );
        assert!(err.ends_with(": is the server running?"), "{err}");
    }

    #[tokio::test]
    async fn a_port_that_never_answers_is_a_handshake_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("ws://{}/stream", listener.local_addr().unwrap())).unwrap();
        let limit = Duration::from_millis(300);
        let err = Connection::open(&url, None, None, Instant::now() + limit, limit)
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                err,
                ClientError::HandshakeTimeout {
                    hint: NO_HANDSHAKE,
                    ..
                }
            ),
            "{err}"
        );
        drop(listener);
    }
}
