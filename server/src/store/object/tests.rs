//! The requests [`ObjectSessions`] makes, counted by a wrapper of the in-memory store.

#![allow(clippy::unwrap_used)]

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};
use referee_protocol::frame::encode_frame;
use referee_protocol::FrameHeader;

use super::super::frame_log::IndexEntry;
use super::{CacheLimits, ObjectSessions};
use crate::store::{SessionMeta, SessionStatus, SessionStore};

/// An in-memory object store that counts the requests made to it.
#[derive(Debug, Default)]
struct Counted {
    inner: InMemory,
    requests: AtomicU64,
}

impl Counted {
    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The requests since the last call.
    fn take(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counted({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for Counted {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.count();
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.count();
        self.inner.put_multipart_opts(location, opts).await
    }

    /// GET and HEAD.
    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.count();
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.count();
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.count();
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.count();
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.count();
        self.inner.copy_opts(from, to, options).await
    }
}

/// A session of `segments` segments of one frame each, in a store counting its requests,
/// whose index cache keeps `index_cache` bytes.
fn session_of_segments(
    segments: u64,
    index_cache: u64,
) -> (
    ObjectSessions,
    Arc<Counted>,
    tokio::runtime::Runtime,
    tempfile::TempDir,
) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let local = tempfile::tempdir().unwrap();
    let counted = Arc::new(Counted::default());
    let caches = CacheLimits {
        frame_index_bytes: index_cache,
        ..CacheLimits::default()
    };
    let store = ObjectSessions::new(
        counted.clone(),
        "p",
        local.path(),
        runtime.handle().clone(),
        Duration::from_secs(10),
        caches,
    )
    .unwrap();
    let meta = SessionMeta::new("s1".into(), "s1".into(), SessionStatus::Receiving);
    store.create(&meta).unwrap();
    append(&store, 0, segments);
    counted.take();
    (store, counted, runtime, local)
}

/// Appends frames `from..to` to session s1, a segment each.
fn append(store: &ObjectSessions, from: u64, to: u64) {
    let mut sink = store.frame_sink("s1", from).unwrap();
    for i in from..to {
        let msg = encode_frame(i, i as i64 * 33_333, 0, &[i as u8; 200]).unwrap();
        sink.append(&FrameHeader::parse(&msg).unwrap(), &msg)
            .unwrap();
        sink.sync().unwrap();
    }
}

/// Requests to open s1's frames (and check them): `frames` frames.
fn open_counted(store: &ObjectSessions, counted: &Counted, frames: u64) -> u64 {
    let source = store.frame_source("s1").unwrap();
    let requests = counted.take();
    assert_eq!(source.len(), frames);
    let expected: Vec<i64> = (0..frames as i64).map(|i| i * 33_333).collect();
    assert_eq!(source.timestamps(), expected);
    requests
}

#[test]
fn opening_frames_again_reads_only_the_new_indexes() {
    const SEGMENTS: u64 = 300;
    // Without a cache (as before it): a HEAD, a LIST and a GET per segment, every time.
    let (store, counted, _runtime, _local) = session_of_segments(SEGMENTS, 0);
    let uncached = [(); 2].map(|()| open_counted(&store, &counted, SEGMENTS));
    assert_eq!(uncached, [2 + SEGMENTS; 2]);

    let (store, counted, runtime, _local) = session_of_segments(SEGMENTS, 64 << 20);
    let first = open_counted(&store, &counted, SEGMENTS);
    let again = open_counted(&store, &counted, SEGMENTS);
    assert_eq!((first, again), (2 + SEGMENTS, 2));
    println!(
        "requests to open a reader on {SEGMENTS} segments twice: without the index cache {uncached:?}, with it [{first}, {again}]"
    );
    // The session grows: only the new segment's index is read.
    append(&store, SEGMENTS, SEGMENTS + 1);
    counted.take();
    assert_eq!(open_counted(&store, &counted, SEGMENTS + 1), 3);
    let mut frames = store.frame_source("s1").unwrap();
    assert_eq!(frames.read(7).unwrap().payload[..], [7u8; 200]);

    // A replaced index is read again.
    let key = Path::from("p/sessions/s1/frames/00000000000000000003.idx");
    let entry = IndexEntry {
        offset: 0,
        len: 200,
        crc32c: 0,
        pts_us: -5,
    };
    runtime
        .block_on(counted.put(&key, PutPayload::from(entry.encode().to_vec())))
        .unwrap();
    counted.take();
    let source = store.frame_source("s1").unwrap();
    assert_eq!(counted.take(), 3);
    assert_eq!(source.timestamps()[3], -5);
    assert_eq!(source.timestamps()[4], 4 * 33_333);

    // Cut back (a resume after frames never acknowledged): the segments removed are gone.
    drop(store.frame_sink("s1", 100).unwrap());
    counted.take();
    assert_eq!(store.frame_source("s1").unwrap().len(), 100);
    assert_eq!(counted.take(), 2);

    store.delete("s1").unwrap();
    assert_eq!(store.indexes.held(), (0, 0));
    assert!(store.frame_source("s1").is_err());
}
