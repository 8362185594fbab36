//! The frame writer of one session: a blocking thread that appends frames to the store as
//! they arrive and makes them durable in batches, publishing how many are stored.

use std::sync::Arc;

use bytes::Bytes;
use referee_protocol::FrameHeader;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
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

/// The storage error that stopped a writer, with what it had made durable before it.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct WriterFailed {
    /// What was durable (and is still on disk) when the error came.
    pub stored: Stored,
    pub error: StoreError,
}

/// The most frames in one batch (one sync, one ACK) of a session with `window`: half the
/// window, so that a client that keeps sending gets an ACK before its window fills.
pub fn batch_limit(window: u32) -> u64 {
    u64::from((window / 2).max(1))
}

/// A frame on its way to the writer, with its share of the byte budget.
type Queued = (FrameHeader, Bytes, OwnedSemaphorePermit);

/// The async side of a session's frame writer.
pub struct FrameWriter {
    frames: mpsc::Sender<Queued>,
    /// Bytes of frame messages the writer may hold (queued, or in the batch being written),
    /// one permit a byte.
    budget: Arc<Semaphore>,
    budget_bytes: u32,
    stored: watch::Receiver<Stored>,
    task: JoinHandle<Result<Stored, WriterFailed>>,
}

impl FrameWriter {
    /// Starts a writer over `sink`, whose queue holds up to `window` frames and
    /// `budget_bytes` bytes of them (a frame larger than the budget is taken alone): a client
    /// that keeps to the advertised window never fills it, and one that does not is slowed
    /// down by TCP back-pressure rather than buffered in memory.
    pub fn start(
        sink: Box<dyn FrameSink>,
        window: u32,
        budget_bytes: u64,
        already_stored: Stored,
    ) -> Self {
        let budget_bytes = u32::try_from(budget_bytes.max(1)).unwrap_or(u32::MAX);
        let (frames_tx, frames_rx) = mpsc::channel(window.max(1) as usize);
        let (stored_tx, stored_rx) = watch::channel(already_stored.clone());
        let limits = BatchLimits {
            frames: batch_limit(window),
            bytes: u64::from(budget_bytes / 2).max(1),
        };
        let task = tokio::task::spawn_blocking(move || {
            write_loop(sink, frames_rx, stored_tx, already_stored, limits)
        });
        Self {
            frames: frames_tx,
            budget: Arc::new(Semaphore::new(budget_bytes as usize)),
            budget_bytes,
            stored: stored_rx,
            task,
        }
    }

    /// Queues a frame message (header and payload as received), waiting for room in the
    /// queue and in the byte budget first. Returns false if the writer has stopped (after a
    /// storage error).
    pub async fn push(&self, header: FrameHeader, message: Bytes) -> bool {
        let share = u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .min(self.budget_bytes);
        let Ok(permit) = Arc::clone(&self.budget).acquire_many_owned(share).await else {
            return false;
        };
        self.frames.send((header, message, permit)).await.is_ok()
    }

    /// Bytes of frame messages the writer holds now (queued or being written).
    pub fn held_bytes(&self) -> u64 {
        u64::from(self.budget_bytes) - self.budget.available_permits() as u64
    }

    /// Waits until more frames are durably stored; `None` once the writer has stopped.
    pub async fn changed(&mut self) -> Option<Stored> {
        self.stored.changed().await.ok()?;
        Some(self.stored.borrow_and_update().clone())
    }

    /// Stops taking frames, waits until every queued frame is durable, and returns the final
    /// count, or the storage error that stopped the writer with what was durable before it.
    pub async fn finish(self) -> Result<Stored, WriterFailed> {
        drop(self.frames);
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(WriterFailed {
                stored: self.stored.borrow().clone(),
                error: StoreError::WriterStopped(join.to_string()),
            }),
        }
    }
}

/// Where a batch ends, besides an empty queue.
#[derive(Debug, Clone, Copy)]
struct BatchLimits {
    frames: u64,
    /// Half the byte budget, so that the next batch can be received while one is synced.
    bytes: u64,
}

fn write_loop(
    mut sink: Box<dyn FrameSink>,
    mut frames: mpsc::Receiver<Queued>,
    stored_tx: watch::Sender<Stored>,
    mut stored: Stored,
    limits: BatchLimits,
) -> Result<Stored, WriterFailed> {
    // One sync (fdatasync) per batch, not per frame. The budget permits of a batch's frames
    // are given back once it is durable (its messages are no longer held then).
    let mut permits = Vec::new();
    while let Some(first) = frames.blocking_recv() {
        let mut batch = Stored::default();
        let mut batch_bytes = 0u64;
        let mut next = Some(first);
        while let Some((header, message, permit)) = next.take() {
            let failed = |error| WriterFailed {
                stored: stored.clone(),
                error,
            };
            sink.append(&header, &message).map_err(failed)?;
            permits.push(permit);
            batch.frames += 1;
            batch.bytes += u64::from(header.payload_len);
            batch_bytes += message.len() as u64;
            if batch.frames < limits.frames && batch_bytes < limits.bytes {
                next = frames.try_recv().ok();
            }
        }
        let sync_started = std::time::Instant::now();
        sink.sync().map_err(|error| WriterFailed {
            stored: stored.clone(),
            error,
        })?;
        permits.clear();
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Mutex;

    use futures_util::FutureExt;
    use referee_protocol::frame::encode_frame;

    use super::*;
    use crate::store::{Faults, FrameLogReader, FrameLogWriter, FrameSource};

    /// Bytes of the frame messages of the budget test alive now, wherever they are.
    static ALIVE: AtomicU64 = AtomicU64::new(0);

    struct Counted(Vec<u8>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            ALIVE.fetch_sub(self.0.len() as u64, Ordering::SeqCst);
        }
    }

    fn counted_frame(index: u64, len: usize) -> (FrameHeader, Bytes) {
        let message = encode_frame(index, index as i64, 0, &vec![index as u8; len]).unwrap();
        ALIVE.fetch_add(message.len() as u64, Ordering::SeqCst);
        let header = FrameHeader::parse(&message).unwrap();
        (header, Bytes::from_owner(Counted(message.to_vec())))
    }

    /// A sink whose every append waits until the test lets it through (or stops letting
    /// anything wait), recording what it was given.
    struct Gated {
        gate: std::sync::mpsc::Receiver<()>,
        appended: Arc<Mutex<Vec<u64>>>,
    }

    impl FrameSink for Gated {
        fn append(&mut self, header: &FrameHeader, _: &Bytes) -> Result<(), StoreError> {
            let _ = self.gate.recv();
            self.appended.lock().unwrap().push(header.index);
            Ok(())
        }
        fn sync(&mut self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_bytes_held_never_exceed_the_budget() {
        const BUDGET: u64 = 10_000;
        let (open, gate) = std::sync::mpsc::channel();
        let appended = Arc::new(Mutex::new(Vec::new()));
        let sink = Gated {
            gate,
            appended: Arc::clone(&appended),
        };
        // A window of 1000 frames would let 1000 frames of 3 KB in: the budget does not.
        let mut writer = FrameWriter::start(Box::new(sink), 1000, BUDGET, Stored::default());
        let mut waits = 0;
        for i in 0..40u64 {
            let (header, message) = counted_frame(i, 3_000);
            let len = message.len() as u64;
            let mut push = Box::pin(writer.push(header, message));
            loop {
                // The frame being pushed is the connection's, not yet the writer's.
                let held = ALIVE.load(Ordering::SeqCst) - len;
                assert!(held <= BUDGET, "frame {i}: the writer holds {held} bytes");
                match (&mut push).now_or_never() {
                    Some(accepted) => break assert!(accepted),
                    None => {
                        // Full: the frame waits (as the connection, and TCP behind it) until
                        // the writer has stored some.
                        waits += 1;
                        open.send(()).unwrap();
                        tokio::task::yield_now().await;
                    }
                }
            }
            let held = ALIVE.load(Ordering::SeqCst);
            assert!(held <= BUDGET, "frame {i}: the writer holds {held} bytes");
            assert!(writer.held_bytes() <= BUDGET);
        }
        assert!(waits > 0, "the budget never made a frame wait");
        // A frame larger than the whole budget still goes through, alone.
        let (header, message) = counted_frame(40, 50_000);
        let mut push = Box::pin(writer.push(header, message));
        while (&mut push).now_or_never().is_none() {
            open.send(()).unwrap();
            tokio::task::yield_now().await;
        }
        // Nothing else is held with it (it may be stored already).
        assert!(ALIVE.load(Ordering::SeqCst) <= 50_032);
        drop(push);
        drop(open);
        while writer.changed().await.unwrap().frames < 41 {}
        assert_eq!(writer.held_bytes(), 0);
        assert_eq!(ALIVE.load(Ordering::SeqCst), 0);
        assert_eq!(*appended.lock().unwrap(), (0..41).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_batch_leaves_the_durable_prefix_and_a_resume_continues_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let payload = |i: u64| vec![(i * 7 % 251) as u8; 1000 + i as usize];
        let message = |i: u64| encode_frame(i, i as i64 * 10, 0, &payload(i)).unwrap();
        // The ninth sync of the index fails: with one frame a batch, 8 frames are durable.
        let sink = FrameLogWriter::open("s", dir.path(), 0)
            .unwrap()
            .with_faults(Faults {
                index_sync: Some(9),
                ..Faults::default()
            });
        let mut writer = FrameWriter::start(Box::new(sink), 8, 1 << 20, Stored::default());
        for i in 0..8u64 {
            let m = message(i);
            assert!(writer.push(FrameHeader::parse(&m).unwrap(), m).await);
            while writer.changed().await.unwrap().frames < i + 1 {}
        }
        for i in 8..12u64 {
            let m = message(i);
            let _ = writer.push(FrameHeader::parse(&m).unwrap(), m).await;
        }
        let failed = writer.finish().await.unwrap_err();
        assert_eq!(failed.stored.frames, 8, "{failed}");
        assert!(failed.to_string().contains("frames.idx"), "{failed}");
        assert_eq!(
            std::fs::metadata(dir.path().join("frames.idx"))
                .unwrap()
                .len(),
            8 * 24,
            "no index entry of the failed batch is left"
        );
        assert_eq!(FrameLogReader::open("s", dir.path()).unwrap().len(), 8);

        // The resume continues right after the 8 frames stored.
        let sink = FrameLogWriter::open("s", dir.path(), 8).unwrap();
        let writer = FrameWriter::start(Box::new(sink), 8, 1 << 20, failed.stored);
        for i in 8..20u64 {
            let m = message(i);
            assert!(writer.push(FrameHeader::parse(&m).unwrap(), m).await);
        }
        assert_eq!(writer.finish().await.unwrap().frames, 20);
        let mut reader = FrameLogReader::open("s", dir.path()).unwrap();
        assert_eq!(reader.len(), 20);
        for i in 0..20u64 {
            assert_eq!(
                reader.read(i).unwrap().payload[..],
                payload(i)[..],
                "frame {i}"
            );
        }
    }
}
