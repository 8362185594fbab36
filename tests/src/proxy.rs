//! A fault-injection TCP proxy: forwards connections to a server and cuts them at chosen
//! points: after a number of bytes sent by clients over the proxy's whole life, or just
//! before the server's first message containing a text (server messages are not masked, so
//! `"SESSION_ENDED"` finds that message), so that cuts land at the same place every run.
//! It can also play a server that is away for a while: the next connections after a cut (or
//! after [`FaultProxy::refuse_next`]) are closed as soon as they are accepted. And it can
//! record the binary messages clients send ([`FaultProxy::record`]), so that a test compares
//! the bytes a client really sent with what the server stored.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

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
    /// Connections still to close as soon as they are accepted.
    refuse: AtomicU64,
    /// Connections to refuse after each cut.
    refuse_after_cut: AtomicU64,
    refused: AtomicU64,
    /// The binary messages clients sent, when recording.
    recording: std::sync::atomic::AtomicBool,
    recorded: Mutex<Vec<Vec<u8>>>,
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
                        let refuse = &accept_shared.refuse;
                        if refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                            accept_shared.refused.fetch_add(1, Ordering::SeqCst);
                            drop(client);
                            continue;
                        }
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

    /// Closes the next `n` connections as soon as they are accepted, as if the server were
    /// away.
    pub fn refuse_next(&self, n: u64) {
        self.shared.refuse.fetch_add(n, Ordering::SeqCst);
    }

    /// After each cut from now on, closes the next `n` connections as soon as they are
    /// accepted: every outage then lasts `n` failed attempts.
    pub fn refuse_after_each_cut(&self, n: u64) {
        self.shared.refuse_after_cut.store(n, Ordering::SeqCst);
    }

    /// Records from now on the binary WebSocket messages clients send (unmasked), for
    /// [`FaultProxy::recorded`].
    pub fn record(&self) {
        self.shared.recording.store(true, Ordering::SeqCst);
    }

    /// The binary messages clients sent since [`FaultProxy::record`], in the order the
    /// proxy forwarded them (connection after connection).
    pub fn recorded(&self) -> Vec<Vec<u8>> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// How many connections were refused so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
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
    let mut recorder =
        (upstream && shared.recording.load(Ordering::SeqCst)).then(WsRecorder::default);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(recorder) = &mut recorder {
            // What reaches the server: the bytes before a cut are recorded too, but a
            // message the cut splits never completes.
            recorder.feed(&buf[..n], &shared.recorded);
        }
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
            let outage = shared.refuse_after_cut.load(Ordering::SeqCst);
            shared.refuse.fetch_add(outage, Ordering::SeqCst);
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Reassembles the binary messages of one client-to-server WebSocket stream: skips the HTTP
/// upgrade request, then parses frames, unmasks them and joins fragments.
#[derive(Default)]
struct WsRecorder {
    pending: Vec<u8>,
    upgraded: bool,
    /// The binary message being reassembled from fragments.
    message: Option<Vec<u8>>,
}

impl WsRecorder {
    fn feed(&mut self, bytes: &[u8], out: &Mutex<Vec<Vec<u8>>>) {
        self.pending.extend_from_slice(bytes);
        if !self.upgraded {
            let Some(end) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            self.pending.drain(..end + 4);
            self.upgraded = true;
        }
        loop {
            let mut cursor = Cursor::new(&self.pending[..]);
            let Ok(Some((header, length))) = FrameHeader::parse(&mut cursor) else {
                return;
            };
            let start = cursor.position() as usize;
            let end = start + length as usize;
            if self.pending.len() < end {
                return;
            }
            let mut payload = self.pending[start..end].to_vec();
            if let Some(mask) = header.mask {
                for (i, byte) in payload.iter_mut().enumerate() {
                    *byte ^= mask[i % 4];
                }
            }
            self.pending.drain(..end);
            match header.opcode {
                OpCode::Data(Data::Binary) => self.message = Some(payload),
                OpCode::Data(Data::Continue) => {
                    if let Some(message) = &mut self.message {
                        message.extend_from_slice(&payload);
                    }
                }
                _ => continue,
            }
            if header.is_final {
                if let Some(message) = self.message.take() {
                    out.lock().unwrap().push(message);
                }
            }
        }
    }
}
