//! A session's frames in object storage: one segment per batch of frames made durable.
//!
//! ```text
//! PREFIX/sessions/<id>/frames/<first>.dat   frame messages as received (header, payload), one
//!                                           after another: frames first, first + 1, ...
//!                            <first>.idx   their index, 24 bytes a frame (as `frames.idx`)
//! ```
//!
//! `<first>` is the index of the segment's first frame, in 20 digits so that names sort in
//! frame order. A segment is written at each [`FrameSink::sync`] (and when
//! [`SEGMENT_LIMIT`] bytes wait): its `.dat` object first, then its `.idx`. A segment exists
//! once its `.idx` does: the object store has made both durable when the second PUT
//! answers, and only then is an ACK sent. A `.dat` without its `.idx` is a batch that failed
//! half way: never acknowledged, removed when the session resumes or is recovered.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{path::Path, PutPayload};
use referee_protocol::FrameHeader;

use super::super::frame_log::{stored_frame, IndexEntry, Recovered, INDEX_ENTRY_LEN};
use super::super::{FrameSink, FrameSource, StoreError, StoredFrame};
use super::index_cache::{Entries, IdxVersion, IndexCache, SegmentKey};
use super::Objects;

/// Frame bytes held before they are written out as a segment even without a sync.
const SEGMENT_LIMIT: usize = 8 << 20;
/// Bytes read at once when frames are read in order (processing): one request for many
/// frames, bounded.
const READ_AHEAD: u64 = 4 << 20;

/// One segment: the frames `first..first + frames`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    first: u64,
    frames: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.first + self.frames
    }
}

/// What a session's `frames/` holds: the segments that follow each other from frame 0 (and
/// what the listing says of each one's `.idx`), and every other object (a `.dat` without its
/// `.idx`, segments after a gap), to remove.
struct Listing {
    segments: Vec<Segment>,
    indexes: Vec<IdxVersion>,
    stray: Vec<Path>,
}

impl Listing {
    fn frames(&self) -> u64 {
        self.segments.last().map_or(0, Segment::end)
    }
}

fn segment_name(first: u64, ext: &str) -> String {
    format!("frames/{first:020}.{ext}")
}

/// Lists session `id`'s segments.
fn list(objects: &Objects, id: &str) -> Result<Listing, StoreError> {
    let found = objects.list(id, "frames/")?;
    let mut indexes = Vec::new();
    let mut data = std::collections::BTreeSet::new();
    let mut stray = Vec::new();
    for object in found {
        let name = object.location.filename().unwrap_or_default().to_string();
        let parsed = name
            .split_once('.')
            .and_then(|(first, ext)| Some((first.parse::<u64>().ok()?, ext)));
        match parsed {
            Some((first, "idx")) if object.size.is_multiple_of(INDEX_ENTRY_LEN as u64) => {
                let frames = object.size / INDEX_ENTRY_LEN as u64;
                indexes.push((first, frames, IdxVersion::from(&object), object.location))
            }
            Some((first, "dat")) => {
                data.insert(first);
            }
            _ => stray.push(object.location),
        }
    }
    indexes.sort_by_key(|(first, ..)| *first);
    let (mut segments, mut versions) = (Vec::new(), Vec::new());
    let mut next = 0;
    for (first, frames, version, location) in indexes {
        if first == next && frames > 0 && data.remove(&first) {
            segments.push(Segment { first, frames });
            versions.push(version);
            next = first + frames;
        } else {
            stray.push(location);
        }
    }
    // Data without an index (a batch that failed half way), or after a gap.
    stray.extend(
        data.into_iter()
            .map(|first| objects.key(id, &segment_name(first, "dat"))),
    );
    Ok(Listing {
        segments,
        indexes: versions,
        stray,
    })
}

/// Removes what is not part of the frames (see [`Listing`]).
fn remove_stray(objects: &Objects, id: &str, stray: &[Path]) -> Result<(), StoreError> {
    for location in stray {
        tracing::info!("Session {id}: removing {location} (frames never acknowledged)");
        objects.delete(id, location)?;
    }
    Ok(())
}

/// The index entries of each of `segments`, in order: each segment's `.idx`, read at once.
fn read_segments(
    objects: &Objects,
    id: &str,
    segments: &[Segment],
) -> Result<Vec<Entries>, StoreError> {
    let keys: Vec<Path> = segments
        .iter()
        .map(|s| objects.key(id, &segment_name(s.first, "idx")))
        .collect();
    let indexes = objects.get_all(id, &keys)?;
    segments
        .iter()
        .zip(indexes)
        .map(|(segment, raw)| {
            let wanted = segment.frames as usize * INDEX_ENTRY_LEN;
            if raw.len() < wanted {
                return Err(objects.corrupt(
                    id,
                    &segment_name(segment.first, "idx"),
                    format!("{} bytes, {wanted} expected", raw.len()),
                ));
            }
            Ok(raw[..wanted]
                .chunks_exact(INDEX_ENTRY_LEN)
                .map(IndexEntry::parse)
                .collect())
        })
        .collect()
}

/// Every index entry of the listed segments, in frame order: those `cache` holds of each
/// segment whose `.idx` is unchanged, and the others read (at once) and then cached.
fn cached_entries(
    objects: &Objects,
    id: &str,
    listing: &Listing,
    cache: &IndexCache,
) -> Result<Vec<IndexEntry>, StoreError> {
    let keys: Vec<SegmentKey> = listing
        .segments
        .iter()
        .zip(&listing.indexes)
        .map(|(segment, version)| SegmentKey {
            first: segment.first,
            frames: segment.frames,
            version: version.clone(),
        })
        .collect();
    let mut parts = cache.lookup(id, &keys);
    let missing: Vec<Segment> = listing
        .segments
        .iter()
        .zip(&parts)
        .filter(|(_, part)| part.is_none())
        .map(|(segment, _)| *segment)
        .collect();
    let mut read = read_segments(objects, id, &missing)?.into_iter();
    let mut entries = Vec::new();
    for part in &mut parts {
        if part.is_none() {
            *part = read.next();
        }
        entries.extend_from_slice(part.as_deref().unwrap_or_default());
    }
    cache.store(
        id,
        keys.into_iter().zip(parts.into_iter().flatten()).collect(),
    );
    Ok(entries)
}

/// Repairs session `id`'s frames after a crash: keeps the segments that follow each other
/// from frame 0 and removes anything else (see [`Listing`]).
pub fn recover(objects: &Objects, id: &str) -> Result<Recovered, StoreError> {
    let listing = list(objects, id)?;
    remove_stray(objects, id, &listing.stray)?;
    let segments = read_segments(objects, id, &listing.segments)?;
    Ok(Recovered {
        frames: listing.frames(),
        bytes: segments
            .iter()
            .flat_map(|s| s.iter())
            .map(|e| u64::from(e.len))
            .sum(),
        dropped: listing.stray.len() as u64,
    })
}

/// Appends frames to a session as segments.
pub struct SegmentWriter {
    objects: Arc<Objects>,
    id: String,
    /// The first frame of the segment being gathered.
    first: u64,
    pending: Vec<Bytes>,
    pending_bytes: usize,
    entries: Vec<u8>,
    /// Set by a failed write: the writer takes nothing more.
    failed: bool,
}

impl SegmentWriter {
    /// Opens session `id`'s frames for appending after its first `frames` frames, those the
    /// session has stored: anything after them (never acknowledged) is removed first, and a
    /// segment that goes past them is cut back to them. Fewer than `frames` frames is an
    /// error (`Corrupt`), as it means acknowledged frames are missing.
    pub fn open(objects: Arc<Objects>, id: &str, frames: u64) -> Result<Self, StoreError> {
        let listing = list(&objects, id)?;
        if listing.frames() < frames {
            return Err(objects.corrupt(
                id,
                "frames/",
                format!(
                    "its segments hold {} frames, but {frames} are stored",
                    listing.frames()
                ),
            ));
        }
        remove_stray(&objects, id, &listing.stray)?;
        for segment in listing.segments.iter().rev() {
            if segment.first >= frames {
                // Its index first: without it, the segment no longer exists.
                objects.delete(id, &objects.key(id, &segment_name(segment.first, "idx")))?;
                objects.delete(id, &objects.key(id, &segment_name(segment.first, "dat")))?;
            } else if segment.end() > frames {
                let key = objects.key(id, &segment_name(segment.first, "idx"));
                let raw = objects.get(id, &key)?;
                let keep = ((frames - segment.first) as usize * INDEX_ENTRY_LEN).min(raw.len());
                objects.put(id, &key, PutPayload::from(raw.slice(..keep)))?;
            }
        }
        if listing.frames() > frames {
            tracing::info!(
                "Session {id}: cutting off {} frames after the {frames} stored (never acknowledged)",
                listing.frames() - frames
            );
        }
        Ok(Self {
            objects,
            id: id.to_string(),
            first: frames,
            pending: Vec::new(),
            pending_bytes: 0,
            entries: Vec::new(),
            failed: false,
        })
    }

    /// Writes the frames gathered as one segment: its data, then its index.
    fn write_segment(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let frames = (self.entries.len() / INDEX_ENTRY_LEN) as u64;
        let data: PutPayload = std::mem::take(&mut self.pending).into_iter().collect();
        let index = PutPayload::from(std::mem::take(&mut self.entries));
        let objects = &self.objects;
        let written = objects
            .put(
                &self.id,
                &objects.key(&self.id, &segment_name(self.first, "dat")),
                data,
            )
            .and_then(|()| {
                objects.put(
                    &self.id,
                    &objects.key(&self.id, &segment_name(self.first, "idx")),
                    index,
                )
            });
        self.pending_bytes = 0;
        match written {
            Ok(()) => {
                self.first += frames;
                Ok(())
            }
            Err(err) => {
                // Nothing of this segment counts: it has no index. Its data, if written, is
                // removed when the session resumes or is recovered.
                self.failed = true;
                Err(err)
            }
        }
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::WriterStopped(format!(
                "session {}: the frames take no more after a storage error",
                self.id
            )));
        }
        Ok(())
    }
}

impl FrameSink for SegmentWriter {
    fn append(&mut self, header: &FrameHeader, message: &Bytes) -> Result<(), StoreError> {
        self.check_usable()?;
        let offset = self.pending_bytes as u64;
        self.entries
            .extend_from_slice(&IndexEntry::of(header, offset).encode());
        self.pending.push(message.clone());
        self.pending_bytes += message.len();
        if self.pending_bytes >= SEGMENT_LIMIT {
            self.write_segment()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check_usable()?;
        self.write_segment()
    }
}

/// Reads a session's frames back from its segments.
pub struct SegmentReader {
    objects: Arc<Objects>,
    id: String,
    segments: Vec<Segment>,
    entries: Vec<IndexEntry>,
    /// The last frame read, and bytes of the segment fetched ahead with it.
    last: Option<u64>,
    ahead: Option<Fetched>,
}

/// Bytes `range` of segment `first`'s data.
struct Fetched {
    first: u64,
    range: Range<u64>,
    bytes: Bytes,
}

impl SegmentReader {
    /// Opens session `id`'s frames: lists its segments, and takes the index entries of
    /// those unchanged since they were last read from `cache`.
    pub fn open(objects: Arc<Objects>, id: &str, cache: &IndexCache) -> Result<Self, StoreError> {
        let listing = list(&objects, id)?;
        let entries = cached_entries(&objects, id, &listing, cache)?;
        Ok(Self {
            objects,
            id: id.to_string(),
            segments: listing.segments,
            entries,
            last: None,
            ahead: None,
        })
    }

    /// The record (header and payload) of frame `index`, whose entry is `entry`.
    fn record(&mut self, index: u64, entry: IndexEntry) -> Result<Bytes, StoreError> {
        let at = self.segments.partition_point(|s| s.end() <= index);
        let segment = self.segments[at.min(self.segments.len() - 1)];
        let range = entry.offset..entry.end();
        if let Some(f) = &self.ahead {
            if f.first == segment.first && f.range.start <= range.start && range.end <= f.range.end
            {
                let from = (range.start - f.range.start) as usize;
                return Ok(f
                    .bytes
                    .slice(from..from + (range.end - range.start) as usize));
            }
        }
        // Read in order: fetch ahead, up to the segment's end; otherwise only this frame.
        let sequential = self.last.is_some_and(|last| last + 1 == index);
        let fetch = if sequential {
            let segment_end = self.entries[(segment.end() - 1) as usize].end();
            range.start..segment_end.min(range.start + READ_AHEAD).max(range.end)
        } else {
            range.clone()
        };
        let key = self
            .objects
            .key(&self.id, &segment_name(segment.first, "dat"));
        let bytes = self.objects.get_range(&self.id, &key, fetch.clone())?;
        if bytes.len() as u64 != fetch.end - fetch.start {
            return Err(self.objects.corrupt(
                &self.id,
                &segment_name(segment.first, "dat"),
                format!("frame {index} is cut short"),
            ));
        }
        let record = bytes.slice(..(range.end - range.start) as usize);
        self.ahead = Some(Fetched {
            first: segment.first,
            range: fetch,
            bytes,
        });
        Ok(record)
    }
}

impl FrameSource for SegmentReader {
    fn len(&self) -> u64 {
        self.entries.len() as u64
    }

    fn timestamps(&self) -> Vec<i64> {
        self.entries.iter().map(|e| e.pts_us).collect()
    }

    fn checksums(&self) -> Vec<u32> {
        self.entries.iter().map(|e| e.crc32c).collect()
    }

    fn read(&mut self, index: u64) -> Result<StoredFrame, StoreError> {
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied()
            .ok_or_else(|| {
                self.objects.corrupt(
                    &self.id,
                    "frames/",
                    format!("frame {index} is not in the index"),
                )
            })?;
        let record = self.record(index, entry)?;
        self.last = Some(index);
        stored_frame(index, record)
            .map_err(|detail| self.objects.corrupt(&self.id, "frames/", detail))
    }
}
