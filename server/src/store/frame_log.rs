//! The append-only frame log of a session on local disk.
//!
//! - `frames.log`: each frame message exactly as received (32-byte header, then the payload),
//!   one after another. The header carries the index, timestamp and CRC32C, so the log is
//!   self-describing.
//! - `frames.idx`: one 24-byte little-endian entry per frame: offset of the record in
//!   `frames.log` (u64), payload length (u32), CRC32C (u32), timestamp in µs (i64).

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use referee_protocol::frame::decode_frame;
use referee_protocol::{FrameHeader, FRAME_HEADER_LEN};

use super::{io_error, sync_dir, FrameSink, FrameSource, StoreError};

pub const LOG_FILE: &str = "frames.log";
pub const INDEX_FILE: &str = "frames.idx";
pub(super) const INDEX_ENTRY_LEN: usize = 24;

/// One frame read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFrame {
    pub index: u64,
    pub pts_us: i64,
    /// The encoded image, byte for byte as the client sent it.
    pub payload: Bytes,
}

/// One frame's entry in an index: where its record starts, its payload's length, CRC32C and
/// timestamp.
#[derive(Debug, Clone, Copy)]
pub(super) struct IndexEntry {
    pub offset: u64,
    pub len: u32,
    pub crc32c: u32,
    pub pts_us: i64,
}

impl IndexEntry {
    /// The entry of a frame whose record (header and payload) starts at `offset`.
    pub fn of(header: &FrameHeader, offset: u64) -> Self {
        IndexEntry {
            offset,
            len: header.payload_len,
            crc32c: header.crc32c,
            pts_us: header.pts_us,
        }
    }

    /// Its [`INDEX_ENTRY_LEN`] bytes.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut entry = [0u8; INDEX_ENTRY_LEN];
        entry[0..8].copy_from_slice(&self.offset.to_le_bytes());
        entry[8..12].copy_from_slice(&self.len.to_le_bytes());
        entry[12..16].copy_from_slice(&self.crc32c.to_le_bytes());
        entry[16..24].copy_from_slice(&self.pts_us.to_le_bytes());
        entry
    }

    /// Where the frame's record ends.
    pub fn end(&self) -> u64 {
        self.offset + FRAME_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Reads an entry from its [`INDEX_ENTRY_LEN`] bytes.
    pub fn parse(e: &[u8]) -> Self {
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&e[at..at + 8]);
            b
        };
        IndexEntry {
            offset: u64::from_le_bytes(u64_at(0)),
            len: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            crc32c: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
            pts_us: i64::from_le_bytes(u64_at(16)),
        }
    }
}

/// Frame bytes held before they are written out even without a sync (they are written at
/// each sync in any case).
const PENDING_LIMIT: usize = 8 << 20;

/// Appends frames to `frames.log` and `frames.idx`.
///
/// The frame messages are not copied: each one is kept (a reference to the buffer it was
/// received in) until the next sync or until [`PENDING_LIMIT`] bytes wait, then they are all
/// written with one `writev`. Index entries are written only at a sync, after the log is
/// synced, so that an entry never points past the durable end of the log.
///
/// After any write or sync error (a full disk, an I/O error, a short write) both files are cut
/// back to what the last successful sync made durable, and nothing more is written: what
/// remains on disk is exactly the frames acknowledged, and a resume continues right after
/// them.
pub struct FrameLogWriter {
    id: String,
    log_path: PathBuf,
    idx_path: PathBuf,
    log: File,
    idx: File,
    /// Frame messages appended and not yet written to `log`, in order.
    pending: Vec<Bytes>,
    pending_bytes: usize,
    /// Index entries of the frames appended since the last sync.
    pending_entries: Vec<u8>,
    offset: u64,
    /// Where the log was durable at the last sync: the pages before it have been dropped from
    /// the page cache.
    synced: u64,
    /// The length of the index at the last sync.
    synced_index: u64,
    /// Set by a write or sync error: the files were cut back and take nothing more.
    failed: bool,
    #[cfg(test)]
    faults: Faults,
}

/// Write and sync errors a test makes a [`FrameLogWriter`] meet.
#[cfg(test)]
#[derive(Debug, Default, Clone, Copy)]
pub struct Faults {
    /// The `writev` of the log that fails (counted from 1), after writing half of its first
    /// frame, as a disk that fills up mid-write.
    pub write: Option<u32>,
    /// The sync of the index that fails (counted from 1), after its entries were written.
    pub index_sync: Option<u32>,
    /// Writes and index syncs so far.
    pub writes: u32,
    pub index_syncs: u32,
}

#[cfg(test)]
fn injected(at: Option<u32>, count: &mut u32) -> io::Result<()> {
    *count += 1;
    if at == Some(*count) {
        return Err(io::Error::from_raw_os_error(28)); // ENOSPC
    }
    Ok(())
}

impl FrameLogWriter {
    /// Opens (creating if needed) the frame log in `dir` for appending after its first
    /// `frames` frames, those the session has stored. Anything after them (frames never
    /// acknowledged, left by a storage error) is cut off first; fewer than `frames` frames
    /// is an error (`Corrupt`), as it means acknowledged frames are missing.
    pub fn open(id: &str, dir: &Path, frames: u64) -> Result<Self, StoreError> {
        let log_path = dir.join(LOG_FILE);
        let idx_path = dir.join(INDEX_FILE);
        let open = |path: &Path| {
            OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(path)
                .map_err(io_error(id, "cannot open", path))
        };
        let log = open(&log_path)?;
        let idx = open(&idx_path)?;
        // The files' directory entries, if they were just created.
        sync_dir(id, dir)?;
        let len = |file: &File, path: &Path| {
            file.metadata()
                .map(|m| m.len())
                .map_err(io_error(id, "cannot read", path))
        };
        let (log_len, idx_len) = (len(&log, &log_path)?, len(&idx, &idx_path)?);
        let missing = |detail: String| StoreError::Corrupt {
            id: id.to_string(),
            path: idx_path.clone(),
            detail,
        };
        let index_end = frames
            .checked_mul(INDEX_ENTRY_LEN as u64)
            .filter(|&end| end <= idx_len)
            .ok_or_else(|| {
                missing(format!(
                    "it indexes {} frames, but {frames} are stored",
                    idx_len / INDEX_ENTRY_LEN as u64
                ))
            })?;
        let log_end = match frames.checked_sub(1) {
            None => 0,
            Some(last) => {
                let mut raw = [0u8; INDEX_ENTRY_LEN];
                idx.read_exact_at(&mut raw, last * INDEX_ENTRY_LEN as u64)
                    .map_err(io_error(id, "cannot read", &idx_path))?;
                IndexEntry::parse(&raw).end()
            }
        };
        if log_end > log_len {
            return Err(missing(format!(
                "frame {} ends at byte {log_end} of {LOG_FILE}, which has {log_len}",
                frames.saturating_sub(1)
            )));
        }
        let writer = Self {
            id: id.to_string(),
            log,
            idx,
            log_path,
            idx_path,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_entries: Vec::new(),
            offset: log_end,
            synced: log_end,
            synced_index: index_end,
            failed: false,
            #[cfg(test)]
            faults: Faults::default(),
        };
        if (log_len, idx_len) != (log_end, index_end) {
            tracing::info!(
                "Session {id}: cutting off {} bytes of frames after the {frames} stored (never acknowledged)",
                log_len - log_end
            );
            writer.cut_back()?;
        }
        Ok(writer)
    }

    /// Makes this writer meet `faults`.
    #[cfg(test)]
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Cuts both files back to their length at the last sync, the index first (so that no
    /// entry points past the end of the log), and syncs them.
    fn cut_back(&self) -> Result<(), StoreError> {
        for (file, len, path) in [
            (&self.idx, self.synced_index, &self.idx_path),
            (&self.log, self.synced, &self.log_path),
        ] {
            file.set_len(len)
                .and_then(|()| file.sync_all())
                .map_err(io_error(&self.id, "cannot truncate", path))?;
        }
        Ok(())
    }

    /// After a write or sync error: drops what was not durable, in memory and on disk.
    fn fail(&mut self, err: StoreError) -> StoreError {
        self.failed = true;
        self.pending.clear();
        self.pending_bytes = 0;
        self.pending_entries.clear();
        self.offset = self.synced;
        if let Err(cut) = self.cut_back() {
            tracing::error!(
                "Session {}: after a storage error, {cut}; the frames after the last acknowledged one are cut off when the session resumes or the server restarts",
                self.id
            );
        }
        err
    }

    fn check_usable(&self) -> Result<(), StoreError> {
        if self.failed {
            return Err(StoreError::WriterStopped(format!(
                "session {}: the frame log takes no more frames after a storage error",
                self.id
            )));
        }
        Ok(())
    }

    /// Writes the pending frame messages to the log (not synced).
    fn write_pending(&mut self) -> Result<(), StoreError> {
        let mut slices: Vec<IoSlice<'_>> = self.pending.iter().map(|m| IoSlice::new(m)).collect();
        #[cfg(test)]
        if let Err(err) = injected(self.faults.write, &mut self.faults.writes) {
            let half = slices.first().map_or(0, |s| s.len() / 2);
            let _ = self
                .log
                .write_all(slices.first().map_or(&[][..], |s| &s[..half]));
            return Err(io_error(&self.id, "cannot write", &self.log_path)(err));
        }
        write_all_vectored(&mut self.log, &mut slices).map_err(io_error(
            &self.id,
            "cannot write",
            &self.log_path,
        ))?;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    fn sync_files(&mut self) -> Result<(), StoreError> {
        // The log first: an index entry must never point past the durable end of the log.
        let started = std::time::Instant::now();
        self.write_pending()?;
        let written = started.elapsed();
        self.log
            .sync_data()
            .map_err(io_error(&self.id, "cannot sync", &self.log_path))?;
        let log_synced = started.elapsed();
        // The frames just made durable are read again only by processing, later: drop their
        // pages from the page cache rather than let a long upload fill memory with them. The
        // next batch writes into pages just freed, which is faster than into memory not
        // touched for a while (notably in a virtual machine). Advice only: a failure is
        // harmless.
        if let Some(len) = std::num::NonZeroU64::new(self.offset - self.synced) {
            let _ = rustix::fs::fadvise(
                &self.log,
                self.synced,
                Some(len),
                rustix::fs::Advice::DontNeed,
            );
        }
        self.idx.write_all(&self.pending_entries).map_err(io_error(
            &self.id,
            "cannot write",
            &self.idx_path,
        ))?;
        #[cfg(test)]
        injected(self.faults.index_sync, &mut self.faults.index_syncs).map_err(io_error(
            &self.id,
            "cannot sync",
            &self.idx_path,
        ))?;
        self.idx
            .sync_data()
            .map_err(io_error(&self.id, "cannot sync", &self.idx_path))?;
        self.synced = self.offset;
        self.synced_index += self.pending_entries.len() as u64;
        self.pending_entries.clear();
        tracing::trace!(
            write_ms = written.as_secs_f64() * 1e3,
            sync_log_ms = (log_synced - written).as_secs_f64() * 1e3,
            sync_idx_ms = (started.elapsed() - log_synced).as_secs_f64() * 1e3,
            "frame log synced"
        );
        Ok(())
    }
}

/// Writes every byte of `slices`, in as few `writev` calls as the kernel allows.
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

impl FrameSink for FrameLogWriter {
    fn append(&mut self, header: &FrameHeader, message: &Bytes) -> Result<(), StoreError> {
        self.check_usable()?;
        self.pending.push(message.clone());
        self.pending_bytes += message.len();
        if self.pending_bytes >= PENDING_LIMIT {
            if let Err(err) = self.write_pending() {
                return Err(self.fail(err));
            }
        }
        self.pending_entries
            .extend_from_slice(&IndexEntry::of(header, self.offset).encode());
        self.offset += message.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.check_usable()?;
        self.sync_files().map_err(|err| self.fail(err))
    }
}

/// What [`recover`] found and kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Frames kept: every one whole and matching its checksum.
    pub frames: u64,
    /// Payload bytes of the frames kept.
    pub bytes: u64,
    /// Frames (or torn records) cut off the end.
    pub dropped: u64,
}

/// Repairs a frame log after a crash and says what it holds. Keeps the longest run of frames
/// from index 0 that are whole in the log, indexed, and match their CRC32C; cuts off anything
/// after it (a torn last record, a partial index entry, records written but not indexed).
/// Frames cut off were never acknowledged: an ACK follows the sync of both files.
pub fn recover(id: &str, dir: &Path) -> Result<Recovered, StoreError> {
    let log_path = dir.join(LOG_FILE);
    let idx_path = dir.join(INDEX_FILE);
    for path in [&log_path, &idx_path] {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_error(id, "cannot open", path))?;
    }
    sync_dir(id, dir)?;
    let mut reader = FrameLogReader::open(id, dir)?;
    let indexed = reader.len();
    let mut kept = Recovered::default();
    let mut log_end = 0u64;
    for index in 0..indexed {
        let Ok(frame) = reader.read(index) else {
            break;
        };
        kept.frames += 1;
        kept.bytes += frame.payload.len() as u64;
        log_end = reader.entries[index as usize].end();
    }
    let log_len = std::fs::metadata(&log_path)
        .map_err(io_error(id, "cannot read", &log_path))?
        .len();
    let idx_len = std::fs::metadata(&idx_path)
        .map_err(io_error(id, "cannot read", &idx_path))?
        .len();
    kept.dropped = indexed - kept.frames + u64::from(log_len > log_end && kept.frames == indexed);
    let truncate = |path: &Path, len: u64| -> Result<(), StoreError> {
        let file =
            OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_error(id, "cannot open", path))?;
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(io_error(id, "cannot truncate", path))
    };
    if log_len != log_end {
        truncate(&log_path, log_end)?;
    }
    let idx_end = kept.frames * INDEX_ENTRY_LEN as u64;
    if idx_len != idx_end {
        truncate(&idx_path, idx_end)?;
    }
    Ok(kept)
}

/// Reads frames back from a session's frame log.
pub struct FrameLogReader {
    id: String,
    log_path: PathBuf,
    /// None when the session has no frame log: nothing was ever streamed into it.
    log: Option<File>,
    entries: Vec<IndexEntry>,
}

impl FrameLogReader {
    /// Opens the frame log in `dir`. A torn last index entry (from a crash mid-write) is
    /// ignored. A session without either file (created ahead of its upload, nothing
    /// streamed into it yet) has no frames; one without only one of them is an error.
    pub fn open(id: &str, dir: &Path) -> Result<Self, StoreError> {
        let log_path = dir.join(LOG_FILE);
        let idx_path = dir.join(INDEX_FILE);
        let log = match File::open(&log_path) {
            Ok(log) => Some(log),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound && !idx_path.exists() => None,
            Err(err) => return Err(io_error(id, "cannot open", &log_path)(err)),
        };
        let mut raw = Vec::new();
        if log.is_some() {
            File::open(&idx_path)
                .and_then(|mut f| f.read_to_end(&mut raw))
                .map_err(io_error(id, "cannot read", &idx_path))?;
        }
        let entries = raw
            .chunks_exact(INDEX_ENTRY_LEN)
            .map(IndexEntry::parse)
            .collect();
        Ok(Self {
            id: id.to_string(),
            log_path,
            log,
            entries,
        })
    }
}

impl FrameSource for FrameLogReader {
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
        let corrupt = |detail: String| StoreError::Corrupt {
            id: self.id.clone(),
            path: self.log_path.clone(),
            detail,
        };
        let entry = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get(i))
            .copied()
            .ok_or_else(|| corrupt(format!("frame {index} is not in the index")))?;
        let log = self
            .log
            .as_ref()
            .ok_or_else(|| corrupt(format!("frame {index} is indexed, and there is no log")))?;
        let mut record = vec![0u8; FRAME_HEADER_LEN + entry.len as usize];
        log.read_exact_at(&mut record, entry.offset)
            .map_err(io_error(&self.id, "cannot read", &self.log_path))?;
        stored_frame(index, Bytes::from(record)).map_err(corrupt)
    }
}

/// Frame `index` from its record (header and payload, as received): checked against its
/// CRC32C and its index, or what is wrong with it.
pub(super) fn stored_frame(index: u64, record: Bytes) -> Result<StoredFrame, String> {
    let frame = decode_frame(record).map_err(|e| format!("record of frame {index}: {e}"))?;
    if frame.header.index != index {
        return Err(format!(
            "index entry {index} points at frame {}",
            frame.header.index
        ));
    }
    Ok(StoredFrame {
        index,
        pts_us: frame.header.pts_us,
        payload: frame.payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use referee_protocol::frame::encode_frame;

    #[test]
    fn frames_read_back_byte_identical_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        let mut w = FrameLogWriter::open("s", dir.path(), 0).unwrap();
        for (i, p) in payloads.iter().enumerate().take(3) {
            let msg = encode_frame(i as u64, i as i64 * 33_333, 0, p).unwrap();
            let h = FrameHeader::parse(&msg).unwrap();
            w.append(&h, &msg).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        // Appending after reopening continues the log.
        let mut w = FrameLogWriter::open("s", dir.path(), 3).unwrap();
        for (i, p) in payloads.iter().enumerate().skip(3) {
            let msg = encode_frame(i as u64, i as i64 * 33_333, 0, p).unwrap();
            w.append(&FrameHeader::parse(&msg).unwrap(), &msg).unwrap();
        }
        w.sync().unwrap();

        let mut r = FrameLogReader::open("s", dir.path()).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r.timestamps()[4], 4 * 33_333);
        for (i, p) in payloads.iter().enumerate() {
            let f = r.read(i as u64).unwrap();
            assert_eq!(&f.payload[..], &p[..]);
        }
        assert!(r.read(5).is_err());
    }

    #[test]
    fn many_frames_in_one_batch_are_written_in_order() {
        // More frames than one writev takes (1024), and more bytes than PENDING_LIMIT.
        let dir = tempfile::tempdir().unwrap();
        let mut w = FrameLogWriter::open("s", dir.path(), 0).unwrap();
        let payload = |i: u64| vec![(i % 251) as u8; 1 + (i as usize * 7919) % 20_000];
        for i in 0..3000u64 {
            let msg = encode_frame(i, 0, 0, &payload(i)).unwrap();
            w.append(&FrameHeader::parse(&msg).unwrap(), &msg).unwrap();
        }
        w.sync().unwrap();
        let mut r = FrameLogReader::open("s", dir.path()).unwrap();
        assert_eq!(r.len(), 3000);
        for i in 0..3000u64 {
            assert_eq!(r.read(i).unwrap().payload[..], payload(i)[..], "frame {i}");
        }
    }

    fn write_frames(dir: &Path, n: u64) {
        let mut w = FrameLogWriter::open("s", dir, 0).unwrap();
        for i in 0..n {
            let msg = encode_frame(i, 0, 0, &[i as u8; 50]).unwrap();
            w.append(&FrameHeader::parse(&msg).unwrap(), &msg).unwrap();
        }
        w.sync().unwrap();
    }

    #[test]
    fn recovery_cuts_a_torn_tail_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        write_frames(dir.path(), 4);
        let log = dir.path().join(LOG_FILE);
        let idx = dir.path().join(INDEX_FILE);
        let full = std::fs::metadata(&log).unwrap().len();
        // A crash mid-write: half of frame 3's record and a partial index entry.
        let f = OpenOptions::new().write(true).open(&log).unwrap();
        f.set_len(full - 30).unwrap();
        let f = OpenOptions::new().append(true).open(&idx).unwrap();
        std::io::Write::write_all(&mut &f, &[1, 2, 3]).unwrap();

        let r = recover("s", dir.path()).unwrap();
        assert_eq!((r.frames, r.bytes, r.dropped), (3, 150, 1));
        assert_eq!(
            std::fs::metadata(&idx).unwrap().len(),
            3 * INDEX_ENTRY_LEN as u64
        );
        // The log continues cleanly after recovery.
        let mut w = FrameLogWriter::open("s", dir.path(), 3).unwrap();
        let msg = encode_frame(3, 0, 0, b"again").unwrap();
        w.append(&FrameHeader::parse(&msg).unwrap(), &msg).unwrap();
        w.sync().unwrap();
        let mut reader = FrameLogReader::open("s", dir.path()).unwrap();
        assert_eq!(reader.len(), 4);
        assert_eq!(&reader.read(3).unwrap().payload[..], b"again");
        assert_eq!(recover("s", dir.path()).unwrap().dropped, 0);
    }

    fn frame(i: u64) -> (FrameHeader, Bytes) {
        let msg = encode_frame(i, i as i64 * 10, 0, &[(i % 251) as u8; 300]).unwrap();
        (FrameHeader::parse(&msg).unwrap(), msg)
    }

    /// Appends frames `range` as one batch.
    fn batch(w: &mut FrameLogWriter, range: std::ops::Range<u64>) -> Result<(), StoreError> {
        for i in range {
            let (h, m) = frame(i);
            w.append(&h, &m)?;
        }
        w.sync()
    }

    fn assert_holds_exactly(dir: &Path, frames: u64) {
        let frame_len = (FRAME_HEADER_LEN + 300) as u64;
        let len = |name| std::fs::metadata(dir.join(name)).unwrap().len();
        assert_eq!(len(LOG_FILE), frames * frame_len);
        assert_eq!(len(INDEX_FILE), frames * INDEX_ENTRY_LEN as u64);
        let mut r = FrameLogReader::open("s", dir).unwrap();
        assert_eq!(r.len(), frames);
        for i in 0..frames {
            assert_eq!(
                r.read(i).unwrap().payload,
                frame(i).1.slice(FRAME_HEADER_LEN..)
            );
        }
    }

    #[test]
    fn a_short_write_cuts_the_files_back_to_the_last_sync_and_writes_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FrameLogWriter::open("s", dir.path(), 0)
            .unwrap()
            .with_faults(Faults {
                write: Some(3),
                ..Faults::default()
            });
        batch(&mut w, 0..4).unwrap();
        batch(&mut w, 4..8).unwrap();
        // The disk fills up half way through the first frame of the third batch.
        let err = batch(&mut w, 8..12).unwrap_err();
        assert!(err.to_string().contains("cannot write"), "{err}");
        assert!(err.to_string().contains("No space left"), "{err}");
        assert_holds_exactly(dir.path(), 8);
        // Nothing more is written, and nothing is flushed when the writer is dropped.
        assert!(batch(&mut w, 8..9).is_err());
        drop(w);
        assert_holds_exactly(dir.path(), 8);

        // A resume continues at frame 8, at the right place in both files.
        let mut w = FrameLogWriter::open("s", dir.path(), 8).unwrap();
        batch(&mut w, 8..12).unwrap();
        assert_holds_exactly(dir.path(), 12);
        assert_eq!(recover("s", dir.path()).unwrap().dropped, 0);
    }

    #[test]
    fn a_failed_index_sync_leaves_no_entry_of_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FrameLogWriter::open("s", dir.path(), 0)
            .unwrap()
            .with_faults(Faults {
                index_sync: Some(2),
                ..Faults::default()
            });
        batch(&mut w, 0..5).unwrap();
        let err = batch(&mut w, 5..9).unwrap_err();
        assert!(err.to_string().contains("cannot sync"), "{err}");
        assert!(err.to_string().contains(INDEX_FILE), "{err}");
        drop(w);
        assert_holds_exactly(dir.path(), 5);
    }

    #[test]
    fn opening_after_the_stored_frames_cuts_off_what_was_never_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FrameLogWriter::open("s", dir.path(), 0).unwrap();
        batch(&mut w, 0..6).unwrap();
        drop(w);
        // Frames 4 and 5 were on disk but never acknowledged (the files could not be cut
        // back when their batch failed): they are cut off now.
        let mut w = FrameLogWriter::open("s", dir.path(), 4).unwrap();
        assert_holds_exactly(dir.path(), 4);
        batch(&mut w, 4..7).unwrap();
        assert_holds_exactly(dir.path(), 7);
        drop(w);
        // More frames stored than the files hold: acknowledged frames are missing.
        let err = FrameLogWriter::open("s", dir.path(), 8).err().unwrap();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("indexes 7 frames, but 8"), "{err}");
        assert_holds_exactly(dir.path(), 7);
    }

    #[test]
    fn recovery_stops_at_a_corrupt_frame() {
        let dir = tempfile::tempdir().unwrap();
        write_frames(dir.path(), 5);
        let log = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&log).unwrap();
        let frame_len = FRAME_HEADER_LEN + 50;
        bytes[2 * frame_len + FRAME_HEADER_LEN + 3] ^= 0xff; // payload of frame 2
        std::fs::write(&log, bytes).unwrap();
        let r = recover("s", dir.path()).unwrap();
        assert_eq!((r.frames, r.dropped), (2, 3));
        assert_eq!(std::fs::metadata(&log).unwrap().len(), 2 * frame_len as u64);
    }

    #[test]
    fn corruption_is_reported_with_the_frame_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = FrameLogWriter::open("s", dir.path(), 0).unwrap();
        let msg = encode_frame(0, 0, 0, b"hello").unwrap();
        w.append(&FrameHeader::parse(&msg).unwrap(), &msg).unwrap();
        w.sync().unwrap();
        let log = dir.path().join(LOG_FILE);
        let mut bytes = std::fs::read(&log).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&log, bytes).unwrap();
        let err = FrameLogReader::open("s", dir.path())
            .unwrap()
            .read(0)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("frames.log is corrupt"), "{text}");
        assert!(text.contains("frame 0"), "{text}");
    }
}
