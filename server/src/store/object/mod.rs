//! [`ObjectSessions`]: sessions in S3-compatible object storage (AWS S3, Garage, SeaweedFS,
//! Ceph, ...), through the `object_store` crate, for several servers sharing one store.
//!
//! ```text
//! PREFIX/sessions/<id>/session.json     metadata (SessionMeta), replaced by one PUT
//!                      signal.txt       the signal file
//!                      frames/          the frames, one segment per durable batch (frames.rs)
//!                      results/<name>   video.mp4, report.json, clips/..., thumbnails/...
//! DATA_DIR/scratch/<id>/                processing's temporary files (local)
//! DATA_DIR/cache/<id>/                  result files fetched to be served (local, bounded:
//!                                       result_cache.rs)
//! ```
//!
//! Every PUT is atomic: an object is whole or absent. The object store's answer to a PUT is
//! its durability: a batch of frames is acknowledged once both objects of its segment are
//! stored.
//!
//! Opening a session's frames lists its segments and reads only the indexes not already in
//! memory (index_cache.rs).

mod frames;
mod index_cache;
mod result_cache;
#[cfg(test)]
mod tests;

use std::path::{Path as LocalPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use referee_protocol::text::valid_id;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use super::bridge::{Bridge, Failed};

use super::frame_log::Recovered;
use super::result_files::{valid_result_name, ResultFile};
use super::{FrameSink, FrameSource, SessionMeta, SessionStore, StoreError};
use index_cache::IndexCache;
use result_cache::ResultCache;

const META: &str = "session.json";
const SIGNAL: &str = "signal.txt";
const RESULTS: &str = "results";
/// Index objects read at once when a session's frames are opened.
const PARALLEL_GETS: usize = 8;

/// An object store under a prefix, with each request's errors naming its session.
#[derive(Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    bridge: Bridge,
    /// `PREFIX/sessions`.
    sessions: Path,
}

impl Objects {
    /// The object `name` (`/`-separated) of session `id`.
    fn key(&self, id: &str, name: &str) -> Path {
        name.split('/')
            .filter(|part| !part.is_empty())
            .fold(self.sessions.clone().join(id), Path::join)
    }

    fn failed(id: &str, what: &'static str, key: &Path) -> impl FnOnce(Failed) -> StoreError {
        let (id, key) = (id.to_string(), key.to_string());
        move |source| StoreError::Remote {
            id,
            what,
            key,
            source: Box::new(source),
        }
    }

    fn corrupt(&self, id: &str, name: &str, detail: String) -> StoreError {
        StoreError::Corrupt {
            id: id.to_string(),
            path: PathBuf::from(self.key(id, name).to_string()),
            detail,
        }
    }

    fn get(&self, id: &str, key: &Path) -> Result<Bytes, StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        self.bridge
            .run(async move { store.get(&at).await?.bytes().await })
            .map_err(Self::failed(id, "cannot read", key))
    }

    /// `key`, or `None` if it does not exist.
    fn get_if_any(&self, id: &str, key: &Path) -> Result<Option<Bytes>, StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        match self
            .bridge
            .run(async move { store.get(&at).await?.bytes().await })
        {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(Self::failed(id, "cannot read", key)(err)),
        }
    }

    /// Every object of `keys`, in order, a few requests at a time.
    fn get_all(&self, id: &str, keys: &[Path]) -> Result<Vec<Bytes>, StoreError> {
        let store = self.store.clone();
        let all = keys.to_vec();
        let first = keys
            .first()
            .cloned()
            .unwrap_or_else(|| self.sessions.clone().join(id));
        self.bridge
            .run(async move {
                futures_util::stream::iter(all)
                    .map(|key| {
                        let store = store.clone();
                        async move { store.get(&key).await?.bytes().await }
                    })
                    .buffered(PARALLEL_GETS)
                    .try_collect()
                    .await
            })
            .map_err(Self::failed(id, "cannot read", &first))
    }

    fn get_range(
        &self,
        id: &str,
        key: &Path,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        self.bridge
            .run(async move { store.get_range(&at, range).await })
            .map_err(Self::failed(id, "cannot read", key))
    }

    fn head(&self, id: &str, key: &Path) -> Result<Option<ObjectMeta>, StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        match self.bridge.run(async move { store.head(&at).await }) {
            Ok(meta) => Ok(Some(meta)),
            Err(err) if err.is_not_found() => Ok(None),
            Err(err) => Err(Self::failed(id, "cannot read", key)(err)),
        }
    }

    fn put(&self, id: &str, key: &Path, payload: PutPayload) -> Result<(), StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        self.bridge
            .run(async move { store.put(&at, payload).await.map(drop) })
            .map_err(Self::failed(id, "cannot write", key))
    }

    /// Uploads local file `from` to `key`, in parts when large (never whole in memory).
    fn put_file(&self, id: &str, key: &Path, from: &LocalPath) -> Result<(), StoreError> {
        let (store, at, path) = (self.store.clone(), key.clone(), from.to_path_buf());
        self.bridge
            .run(async move {
                let mut file = tokio::fs::File::open(&path).await.map_err(local_error)?;
                let mut upload = object_store::buffered::BufWriter::new(store, at);
                let copied = tokio::io::copy(&mut file, &mut upload).await;
                let finished = match copied {
                    Ok(_) => upload.shutdown().await,
                    Err(err) => Err(err),
                };
                if let Err(err) = finished {
                    let _ = upload.abort().await;
                    return Err(local_error(err));
                }
                Ok(())
            })
            .map_err(Self::failed(id, "cannot upload a result to", key))
    }

    /// Writes object `key` to local file `to`, as it arrives (never whole in memory).
    fn download(&self, id: &str, key: &Path, to: &LocalPath) -> Result<(), StoreError> {
        let (store, at, path) = (self.store.clone(), key.clone(), to.to_path_buf());
        self.bridge
            .run(async move {
                let mut file = tokio::fs::File::create(&path).await.map_err(local_error)?;
                let mut parts = store.get(&at).await?.into_stream();
                while let Some(part) = parts.next().await {
                    file.write_all(part?.as_ref()).await.map_err(local_error)?;
                }
                file.flush().await.map_err(local_error)
            })
            .map_err(Self::failed(id, "cannot fetch", key))
    }

    fn delete(&self, id: &str, key: &Path) -> Result<(), StoreError> {
        let (store, at) = (self.store.clone(), key.clone());
        match self.bridge.run(async move { store.delete(&at).await }) {
            Err(err) if !err.is_not_found() => Err(Self::failed(id, "cannot remove", key)(err)),
            _ => Ok(()),
        }
    }

    /// The objects under session `id`'s `sub` (e.g. `frames/`).
    fn list(&self, id: &str, sub: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let prefix = self.key(id, sub);
        let (store, at) = (self.store.clone(), prefix.clone());
        self.bridge
            .run(async move { store.list(Some(&at)).try_collect().await })
            .map_err(Self::failed(id, "cannot list", &prefix))
    }
}

/// A local file's error, in an object-store request that reads or writes one.
fn local_error(err: std::io::Error) -> object_store::Error {
    object_store::Error::Generic {
        store: "local",
        source: Box::new(err),
    }
}

/// `--result-cache-mb`'s default.
pub const DEFAULT_RESULT_CACHE_MB: u64 = 4096;
/// `--frame-index-cache-mb`'s default.
pub const DEFAULT_FRAME_INDEX_CACHE_MB: u64 = 64;

/// What a server keeps of what it read from the object store, at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// `--result-cache-mb`: bytes of result files in `DATA_DIR/cache` (0: no copy kept
    /// past the request that fetched it).
    pub result_bytes: u64,
    /// `--frame-index-cache-mb`: bytes of frame index entries in memory (0: none).
    pub frame_index_bytes: u64,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            result_bytes: DEFAULT_RESULT_CACHE_MB << 20,
            frame_index_bytes: DEFAULT_FRAME_INDEX_CACHE_MB << 20,
        }
    }
}

/// Sessions stored in an object store, with local scratch and cache directories.
#[derive(Debug, Clone)]
pub struct ObjectSessions {
    objects: Arc<Objects>,
    /// Processing's temporary files, per session.
    scratch: PathBuf,
    /// Result files fetched to be served, per session.
    results: Arc<ResultCache>,
    /// Sessions' frame indexes as last read.
    indexes: Arc<IndexCache>,
}

impl ObjectSessions {
    /// Opens `s3://BUCKET[/PREFIX][?OPTION=VALUE&...]`, its endpoint, region and credentials
    /// from the standard AWS environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, ...), or the options that are not
    /// secrets given in the address: `endpoint`, `region`, `allow_http`, `skip_signature`,
    /// `virtual_hosted_style_request`. Requests run on `runtime`; each must answer within
    /// `deadline`. Local files go under `data_dir`; the caches keep at most `caches`.
    pub fn open_url(
        url: &str,
        data_dir: &LocalPath,
        runtime: Handle,
        deadline: Duration,
        caches: CacheLimits,
    ) -> Result<Self, StoreError> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let bad = |detail: String| StoreError::BadUrl {
            url: url.to_string(),
            detail,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("only s3://BUCKET/PREFIX is supported".into()))?;
        let (location, options) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(bad("the bucket is missing".into()));
        }
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        let mut endpoint = std::env::var("AWS_ENDPOINT_URL")
            .or_else(|_| std::env::var("AWS_ENDPOINT"))
            .ok();
        let mut allow_http = None;
        for (key, value) in form_urlencoded::parse(options.as_bytes()) {
            match key.as_ref() {
                "allow_http" => allow_http = Some(value == "true"),
                "endpoint" => endpoint = Some(value.into_owned()),
                "region" | "skip_signature" | "virtual_hosted_style_request" => {
                    let key: AmazonS3ConfigKey = key.parse().map_err(|e| bad(format!("{e}")))?;
                    builder = builder.with_config(key, value);
                }
                other => {
                    return Err(bad(format!(
                        "unknown option {other:?} (endpoint, region, allow_http, skip_signature and virtual_hosted_style_request may be given here; credentials only in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never in the address, which is logged)"
                    )))
                }
            }
        }
        if let Some(endpoint) = endpoint {
            let http = allow_http.unwrap_or(endpoint.starts_with("http://"));
            builder = builder.with_allow_http(http).with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        Self::new(Arc::new(store), prefix, data_dir, runtime, deadline, caches)
    }

    /// Sessions in `store` under `prefix`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        data_dir: &LocalPath,
        runtime: Handle,
        deadline: Duration,
        caches: CacheLimits,
    ) -> Result<Self, StoreError> {
        let root = Path::from(prefix.trim_matches('/'));
        let sessions = if prefix.trim_matches('/').is_empty() {
            Path::from("sessions")
        } else {
            root.join("sessions")
        };
        let scratch = data_dir.join("scratch");
        std::fs::create_dir_all(&scratch).map_err(|source| StoreError::DataDir {
            what: "cannot create the data directory",
            path: scratch.clone(),
            source,
        })?;
        let results = ResultCache::open(data_dir.join("cache"), caches.result_bytes)?;
        Ok(Self {
            objects: Arc::new(Objects {
                store,
                bridge: Bridge::new(runtime, deadline),
                sessions,
            }),
            scratch,
            results: Arc::new(results),
            indexes: Arc::new(IndexCache::new(caches.frame_index_bytes)),
        })
    }

    fn meta_key(&self, id: &str) -> Result<Path, StoreError> {
        if !valid_id(id) {
            return Err(StoreError::NotFound(id.to_string()));
        }
        Ok(self.objects.key(id, META))
    }

    /// Fails with `NotFound` unless session `id` exists.
    fn existing(&self, id: &str) -> Result<(), StoreError> {
        let key = self.meta_key(id)?;
        match self.objects.head(id, &key)? {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(id.to_string())),
        }
    }

    fn result_key(&self, id: &str, name: &str) -> Result<Path, StoreError> {
        if !valid_result_name(name) {
            return Err(StoreError::ResultNotFound {
                id: id.to_string(),
                name: name.to_string(),
            });
        }
        Ok(self.objects.key(id, &format!("{RESULTS}/{name}")))
    }
}

impl SessionStore for ObjectSessions {
    fn create(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        let key = self.meta_key(&meta.id)?;
        if self.objects.head(&meta.id, &key)?.is_some() {
            return Err(StoreError::Exists(meta.id.clone()));
        }
        self.save_meta(meta)
    }

    fn save_meta(&self, meta: &SessionMeta) -> Result<(), StoreError> {
        let key = self.meta_key(&meta.id)?;
        let json = serde_json::to_vec_pretty(meta).map_err(|e| {
            self.objects
                .corrupt(&meta.id, META, format!("cannot encode metadata: {e}"))
        })?;
        self.objects.put(&meta.id, &key, PutPayload::from(json))
    }

    fn load_meta(&self, id: &str) -> Result<SessionMeta, StoreError> {
        let key = self.meta_key(id)?;
        let bytes = self
            .objects
            .get_if_any(id, &key)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| self.objects.corrupt(id, META, e.to_string()))
    }

    fn list(&self) -> Result<Vec<SessionMeta>, StoreError> {
        let (store, at) = (self.objects.store.clone(), self.objects.sessions.clone());
        let listed = self
            .objects
            .bridge
            .run(async move { store.list_with_delimiter(Some(&at)).await })
            .map_err(Objects::failed("-", "cannot list", &self.objects.sessions))?;
        let mut all = Vec::new();
        for prefix in listed.common_prefixes {
            let id = prefix.filename().unwrap_or_default().to_string();
            match self.load_meta(&id) {
                Ok(meta) => all.push(meta),
                // A session being deleted, or not a session: skip it, but say so.
                Err(err) => tracing::debug!("skipping {prefix}: {err}"),
            }
        }
        all.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        Ok(all)
    }

    fn frame_sink(&self, id: &str, frames: u64) -> Result<Box<dyn FrameSink>, StoreError> {
        self.existing(id)?;
        Ok(Box::new(frames::SegmentWriter::open(
            self.objects.clone(),
            id,
            frames,
        )?))
    }

    fn recover_frames(&self, id: &str) -> Result<Recovered, StoreError> {
        self.existing(id)?;
        frames::recover(&self.objects, id)
    }

    fn frame_source(&self, id: &str) -> Result<Box<dyn FrameSource>, StoreError> {
        self.existing(id)?;
        Ok(Box::new(frames::SegmentReader::open(
            self.objects.clone(),
            id,
            &self.indexes,
        )?))
    }

    fn put_signal(&self, id: &str, text: &str) -> Result<(), StoreError> {
        self.existing(id)?;
        let key = self.objects.key(id, SIGNAL);
        self.objects
            .put(id, &key, PutPayload::from(text.as_bytes().to_vec()))
    }

    fn signal(&self, id: &str) -> Result<Option<String>, StoreError> {
        self.existing(id)?;
        let key = self.objects.key(id, SIGNAL);
        match self.objects.get_if_any(id, &key)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec())
                .map(Some)
                .map_err(|_| self.objects.corrupt(id, SIGNAL, "not UTF-8".into())),
        }
    }

    fn delete(&self, id: &str) -> Result<(), StoreError> {
        let key = self.meta_key(id)?;
        self.existing(id)?;
        // The metadata first: a half-deleted session is then no longer listed.
        self.objects.delete(id, &key)?;
        for object in self.objects.list(id, "")? {
            self.objects.delete(id, &object.location)?;
        }
        let _ = std::fs::remove_dir_all(self.scratch.join(id));
        self.results.remove_session(id);
        self.indexes.remove(id);
        Ok(())
    }

    fn put_result_file(&self, id: &str, name: &str, from: &LocalPath) -> Result<(), StoreError> {
        let key = self.result_key(id, name)?;
        self.existing(id)?;
        self.objects.put_file(id, &key, from)?;
        let _ = std::fs::remove_file(from);
        Ok(())
    }

    fn put_result(&self, id: &str, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let key = self.result_key(id, name)?;
        self.existing(id)?;
        self.objects.put(id, &key, PutPayload::from(bytes.to_vec()))
    }

    fn scratch_dir(&self, id: &str) -> Result<PathBuf, StoreError> {
        self.existing(id)?;
        let dir = self.scratch.join(id);
        std::fs::create_dir_all(&dir).map_err(super::io_error(id, "cannot create", &dir))?;
        Ok(dir)
    }

    fn remove_scratch(&self, id: &str) -> Result<(), StoreError> {
        if !valid_id(id) {
            return Err(StoreError::NotFound(id.to_string()));
        }
        let dir = self.scratch.join(id);
        match std::fs::remove_dir_all(&dir) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                Err(super::io_error(id, "cannot remove", &dir)(err))
            }
            _ => Ok(()),
        }
    }

    fn location(&self, id: &str) -> String {
        format!("sessions/{id}")
    }

    /// Fetches the result into the local cache (once per version of it: the object's ETag
    /// names the cached copy; see result_cache.rs for what is kept) and opens the copy.
    fn open_result(&self, id: &str, name: &str) -> Result<ResultFile, StoreError> {
        let key = self.result_key(id, name)?;
        let Some(meta) = self.objects.head(id, &key)? else {
            self.existing(id)?;
            return Err(StoreError::ResultNotFound {
                id: id.to_string(),
                name: name.to_string(),
            });
        };
        let version: String = meta
            .e_tag
            .as_deref()
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        let (file, len) = match self.results.open_cached(id, name, &version)? {
            Some(cached) => cached,
            None => self.results.fetch(id, name, &version, |partial| {
                self.objects.download(id, &key, partial)
            })?,
        };
        Ok(ResultFile {
            file,
            len,
            modified: Some(meta.last_modified.into()),
        })
    }

    fn list_results(&self, id: &str) -> Result<Vec<String>, StoreError> {
        self.existing(id)?;
        let prefix = self.objects.key(id, RESULTS);
        let mut names: Vec<String> = self
            .objects
            .list(id, RESULTS)?
            .into_iter()
            .filter_map(|object| {
                let name = object
                    .location
                    .prefix_match(&prefix)?
                    .map(|part| part.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                valid_result_name(&name).then_some(name)
            })
            .collect();
        names.sort();
        Ok(names)
    }
}
