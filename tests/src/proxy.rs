//! A fault-injection TCP proxy: forwards connections to a server and cuts them at chosen
//! points: after a number of bytes sent by clients over the proxy's whole life, or just
//! before the server's first message containing a text (server messages are not masked, so
//! `"SESSION_ENDED"` finds that message), so that cuts land at the same place every run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Where to cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Once clients have sent this many bytes through the proxy in all.
    Upstream(u64),
    /// Just before the server's next message holding this text reaches the client.
    DownstreamText(&'static str),
}

#[derive(Default)]
struct Shared {
    upstream: AtomicU64,
    downstream: AtomicU64,
    /// Cuts still to make, in the order given.
    plan: Mutex<Vec<Cut>>,
    cuts_made: AtomicU64,
}

/// A running proxy. Stops accepting when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: watch::Sender<bool>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on the current tokio runtime.
    pub async fn start(target: SocketAddr, mut plan: Vec<Cut>) -> Self {
        plan.reverse();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            plan: Mutex::new(plan),
            ..Shared::default()
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let accept_shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let mut stop = stop_rx;
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((client, _)) = accepted else { return };
                        let Ok(server) = TcpStream::connect(target).await else { continue };
                        tokio::spawn(forward(client, server, Arc::clone(&accept_shared)));
                    }
                    _ = stop.changed() => return,
                }
            }
        });
        Self {
            addr,
            shared,
            _stop: stop_tx,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many cuts were made so far.
    pub fn cuts_made(&self) -> u64 {
        self.shared.cuts_made.load(Ordering::SeqCst)
    }
}

/// Copies both ways until either side closes or a cut is due.
async fn forward(client: TcpStream, server: TcpStream, shared: Arc<Shared>) {
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    let up = Arc::clone(&shared);
    let upstream = async move {
        pump(&mut client_rx, &mut server_tx, &up, true).await;
    };
    let down = Arc::clone(&shared);
    let downstream = async move {
        pump(&mut server_rx, &mut client_tx, &down, false).await;
    };
    // When either direction ends (closed or cut), drop both: the connection is gone.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
}

async fn pump(
    from: &mut (impl AsyncReadExt + Unpin),
    to: &mut (impl AsyncWriteExt + Unpin),
    shared: &Shared,
    upstream: bool,
) {
    let mut buf = vec![0u8; 16 * 1024];
    // The end of the previous chunk, so that a text split across two reads is found.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let counter = if upstream {
            &shared.upstream
        } else {
            &shared.downstream
        };
        let before = counter.fetch_add(n as u64, Ordering::SeqCst);
        let after = before + n as u64;
        // Send the bytes before the cut point, then cut.
        let cut_at = {
            let mut plan = shared.plan.lock().unwrap();
            match plan.last().copied() {
                Some(Cut::Upstream(at)) if upstream && at < after => {
                    plan.pop();
                    Some(at.saturating_sub(before) as usize)
                }
                Some(Cut::DownstreamText(text)) if !upstream => {
                    let mut window = std::mem::take(&mut tail);
                    window.extend_from_slice(&buf[..n]);
                    let found = window.windows(text.len()).any(|w| w == text.as_bytes());
                    tail = window[window.len().saturating_sub(64)..].to_vec();
                    if found {
                        plan.pop();
                        Some(0)
                    } else {
                        None
                    }
                }
                _ => None,
            }
        };
        if let Some(keep) = cut_at {
            let _ = to.write_all(&buf[..keep.min(n)]).await;
            shared.cuts_made.fetch_add(1, Ordering::SeqCst);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
