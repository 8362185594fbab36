//! The sending half of a connection: nothing is sent once it is closed, and a send has a
//! deadline.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt};
use referee_protocol::ControlMessage;

/// The sending half of a connection. Once a close has been sent or a send has failed, it
/// sends nothing more: sending on a closed connection is not an error case to handle, it
/// simply cannot happen. A send that takes longer than `send_timeout` (a client that stopped
/// reading) fails too, and marks the connection `stalled`: it is then treated as gone.
pub struct Peer<S> {
    sink: S,
    pub open: bool,
    pub close_sent: bool,
    send_timeout: Duration,
    pub stalled: bool,
}

impl<S> Peer<S>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    pub fn new(sink: S, send_timeout: Duration) -> Self {
        Self {
            sink,
            open: true,
            close_sent: false,
            send_timeout,
            stalled: false,
        }
    }

    pub async fn send(&mut self, msg: &ControlMessage) {
        self.send_raw(Message::Text(msg.to_json().into()), msg.type_name())
            .await;
    }

    pub async fn send_raw(&mut self, msg: Message, what: &str) {
        if !self.open {
            return;
        }
        if let Err(err) = self.timed(msg).await {
            tracing::debug!("cannot send {what}: the client is gone ({err})");
            self.open = false;
        }
    }

    /// Sends `msg`, within the send timeout.
    async fn timed(&mut self, msg: Message) -> Result<(), String> {
        match tokio::time::timeout(self.send_timeout, self.sink.send(msg)).await {
            Ok(sent) => sent.map_err(|e| e.to_string()),
            Err(_) => {
                self.stalled = true;
                Err(format!(
                    "it read nothing for {} s",
                    self.send_timeout.as_secs()
                ))
            }
        }
    }

    pub async fn close(&mut self, code: u16, reason: &str) {
        if !self.open {
            return;
        }
        self.open = false;
        // A close reason is at most 123 bytes.
        let reason: String = reason.chars().take(100).collect();
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        match self.timed(Message::Close(Some(frame))).await {
            Ok(()) => self.close_sent = true,
            Err(err) => tracing::debug!("cannot send close: the client is gone ({err})"),
        }
    }
}
