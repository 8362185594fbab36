//! Accepting HTTP connections (plain or TLS) with a deadline on every wait a peer controls:
//! the TLS handshake (`--tls-handshake-timeout-secs`), a request's headers
//! (`--header-read-timeout-secs`, hyper's timer) and an idle kept-alive connection
//! (`--keep-alive-timeout-secs`); and with a cap on the connections open, in total and per
//! client address (`--max-connections`, `--max-connections-per-client`). A connection over a
//! cap is closed at once, before anything is read from it; a plain HTTP one is told why first
//! (503 `too_many_connections`).
//!
//! A connection's slot travels with its socket: an upgraded WebSocket (an upload) keeps
//! counting until it closes.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::api_error::ApiError;
use crate::http::slots::{AddressSlots, Full, Slot};
use crate::metrics::Metrics;
use crate::settings::{Limits, Timeouts};

/// How connections are served: TLS or not, and the deadlines, from the configuration.
#[derive(Clone)]
pub struct Settings {
    /// The TLS acceptor with `--tls-cert`, else plain HTTP.
    pub tls: Option<TlsAcceptor>,
    pub header_read_timeout: Duration,
    pub keep_alive_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl Settings {
    pub fn of(timeouts: &Timeouts, tls: Option<TlsAcceptor>) -> Self {
        Self {
            tls,
            header_read_timeout: timeouts.header_read,
            keep_alive_timeout: timeouts.keep_alive,
            tls_handshake_timeout: timeouts.tls_handshake,
        }
    }
}

/// The connection caps of `limits`.
pub fn slots(limits: &Limits) -> Arc<AddressSlots> {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    AddressSlots::new(
        size(limits.max_connections),
        size(limits.max_connections_per_client),
    )
}

/// Accepts connections on `listener` and serves `router` on each until `stop` is cancelled;
/// then asks every connection to close once its response is sent and waits for them until
/// `deadline` (a response still going then is dropped).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    caps: Arc<AddressSlots>,
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    deadline: impl std::future::Future<Output = ()>,
) {
    let open = TaskTracker::new();
    let mut last_warned: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (tcp, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors (EMFILE) or memory: wait a little rather than spin;
                // the connections open go on being served.
                if last_warned.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!("cannot accept a connection: {err}");
                    last_warned = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let slot = match caps.take(remote.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                refuse(&tcp, remote, full, settings.tls.is_some(), &metrics);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        open.spawn(connection(
            tcp,
            remote,
            slot,
            router.clone(),
            settings.clone(),
            Arc::clone(&metrics),
            stop.clone(),
        ));
    }
    drop(listener);
    open.close();
    tokio::select! {
        () = open.wait() => {}
        () = deadline => {
            tracing::warn!("{} HTTP connections still open at the shutdown deadline: closing them", open.len());
        }
    }
}

/// Closes a connection over a cap: a plain HTTP one is told why first, if the answer fits in
/// its socket's buffer at once (it is never waited for).
fn refuse(tcp: &TcpStream, remote: SocketAddr, full: Full, tls: bool, metrics: &Metrics) {
    let message = match full {
        Full::Total { max } => {
            Metrics::add(&metrics.connections_refused_total, 1);
            format!("the server has {max} connections open, its limit (--max-connections): try again later")
        }
        Full::PerClient { max } => {
            Metrics::add(&metrics.connections_refused_per_client, 1);
            format!(
                "{} already has {max} connections open, the limit per client address \
                 (--max-connections-per-client): close some and try again",
                remote.ip()
            )
        }
    };
    tracing::debug!("Refused a connection from {remote}: {message}");
    if !tls {
        let refused = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            message,
        );
        let body = serde_json::to_string(&refused.body()).unwrap_or_default();
        let response = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\nRetry-After: 5\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.try_write(response.as_bytes());
    }
}

/// Serves one connection, from its TLS handshake to its close.
async fn connection(
    tcp: TcpStream,
    remote: SocketAddr,
    slot: Slot,
    router: Router,
    settings: Settings,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let _open = metrics.connection_opened();
    let io: Box<dyn Io> = match settings.tls.clone() {
        None => Box::new(tcp),
        Some(acceptor) => {
            match tokio::time::timeout(settings.tls_handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => Box::new(stream),
                Ok(Err(err)) => {
                    tracing::debug!("TLS handshake with {remote} failed: {err}");
                    return;
                }
                Err(_) => {
                    Metrics::add(&metrics.tls_handshake_timeouts, 1);
                    tracing::debug!(
                        "TLS handshake with {remote} not done within {} s: closed",
                        settings.tls_handshake_timeout.as_secs()
                    );
                    return;
                }
            }
        }
    };
    let activity = Arc::new(Activity::default());
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            let busy = activity.begin();
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await?;
                Ok::<_, Infallible>(response.map(|body| Body::new(Tracked { body, _busy: busy })))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let conn = http
        .serve_connection(TokioIo::new(Counted { io, _slot: slot }), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
        () = activity.idle_for(settings.keep_alive_timeout) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        if err.is_timeout() {
            Metrics::add(&metrics.header_timeouts, 1);
            tracing::debug!(
                "{remote} did not send a request's headers within {} s: closed",
                settings.header_read_timeout.as_secs()
            );
        } else {
            tracing::debug!("HTTP connection from {remote}: {err}");
        }
    }
}

/// What a connection's socket is: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A socket holding its connection slot until it is closed.
struct Counted {
    io: Box<dyn Io>,
    _slot: Slot,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Whether a connection has a request in progress, and since when it has had none.
#[derive(Debug)]
struct Activity {
    in_progress: AtomicUsize,
    // std Mutex: read or written in a few instructions, never held across an `.await`.
    idle_since: Mutex<Instant>,
    changed: Notify,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            in_progress: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            changed: Notify::new(),
        }
    }
}

/// A request in progress, until its response's body is sent (or dropped).
struct Busy(Arc<Activity>);

impl Activity {
    fn begin(self: &Arc<Self>) -> Busy {
        self.in_progress.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Busy(Arc::clone(self))
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Returns once the connection has had no request in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let changed = self.changed.notified();
            if self.in_progress.load(Ordering::SeqCst) > 0 {
                changed.await;
                continue;
            }
            let since = self.idle_since();
            tokio::select! {
                () = tokio::time::sleep_until(since + limit) => {
                    if self.in_progress.load(Ordering::SeqCst) == 0 && self.idle_since() == since {
                        return;
                    }
                }
                () = changed => {}
            }
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_progress.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// A response body that keeps its request counted as in progress until it is sent.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// The TLS acceptor of a rustls configuration, speaking HTTP/1.1 only (the server's HTTP is
/// HTTP/1.1, so that every request has the deadlines above).
pub fn tls_acceptor(config: &rustls::ServerConfig) -> TlsAcceptor {
    let mut config = config.clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsAcceptor::from(Arc::new(config))
}
