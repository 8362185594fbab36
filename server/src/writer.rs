//! The frame writer of one session: a blocking thread that appends frames to the store as
//! they arrive and makes them durable in batches, publishing how many are stored.

use bytes::Bytes;
use referee_protocol::FrameHeader;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::store::{FrameSink, StoreError};

/// How far the writer is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Frames durably stored, counted from the first.
    pub frames: u64,
    /// Payload bytes durably stored.
    pub bytes: u64,
}

/// The async side of a session's frame writer.
pub struct FrameWriter {
    frames: mpsc::Sender<(FrameHeader, Bytes)>,
    stored: watch::Receiver<Stored>,
    task: JoinHandle<Result<Stored, StoreError>>,
}

impl FrameWriter {
    /// Starts a writer over `sink`, whose queue holds up to `window` frames: a client that
    /// keeps to the advertised window never fills it, and one that does not is slowed down by
    /// TCP back-pressure rather than buffered in memory.
    pub fn start(sink: Box<dyn FrameSink>, window: u32, already_stored: Stored) -> Self {
        let (frames_tx, frames_rx) = mpsc::channel(window as usize);
        let (stored_tx, stored_rx) = watch::channel(already_stored.clone());
        let task = tokio::task::spawn_blocking(move || {
            write_loop(sink, frames_rx, stored_tx, already_stored, window)
        });
        Self {
            frames: frames_tx,
            stored: stored_rx,
            task,
        }
    }

    /// Queues a frame message (header and payload as received). Returns false if the writer
    /// has stopped (after a storage error).
    pub async fn push(&self, header: FrameHeader, message: Bytes) -> bool {
        self.frames.send((header, message)).await.is_ok()
    }

    /// Waits until more frames are durably stored; `None` once the writer has stopped.
    pub async fn changed(&mut self) -> Option<Stored> {
        self.stored.changed().await.ok()?;
        Some(self.stored.borrow_and_update().clone())
    }

    /// Stops taking frames, waits until every queued frame is durable, and returns the final
    /// count, or the storage error that stopped the writer.
    pub async fn finish(self) -> Result<Stored, StoreError> {
        drop(self.frames);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(StoreError::WriterStopped(join.to_string())),
        }
    }
}

fn write_loop(
    mut sink: Box<dyn FrameSink>,
    mut frames: mpsc::Receiver<(FrameHeader, Bytes)>,
    stored_tx: watch::Sender<Stored>,
    mut stored: Stored,
    window: u32,
) -> Result<Stored, StoreError> {
    // Batches end when the queue is empty or after half a window, so that the client gets an
    // ACK before its window fills. One sync (fdatasync) per batch, not per frame.
    let batch_limit = (window / 2).max(1);
    while let Some((header, message)) = frames.blocking_recv() {
        let mut batch = Stored::default();
        let mut next = Some((header, message));
        while let Some((header, message)) = next.take() {
            sink.append(&header, &message)?;
            batch.frames += 1;
            batch.bytes += u64::from(header.payload_len);
            if batch.frames < u64::from(batch_limit) {
                next = frames.try_recv().ok();
            }
        }
        let sync_started = std::time::Instant::now();
        sink.sync()?;
        tracing::trace!(
            frames = batch.frames,
            bytes = batch.bytes,
            sync_ms = sync_started.elapsed().as_secs_f64() * 1e3,
            "batch stored"
        );
        stored.frames += batch.frames;
        stored.bytes += batch.bytes;
        stored_tx.send_replace(stored.clone());
    }
    Ok(stored)
}
