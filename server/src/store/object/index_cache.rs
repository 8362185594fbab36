//! [`IndexCache`]: each session's frame index entries as last read, per segment, so that
//! opening a session's frames again (each frame the player shows, its frame times) still
//! lists the session's `frames/` (a session being received grows; one deleted must not be
//! served) but reads only the `.idx` objects that are new or were replaced.
//!
//! Bounded in bytes (the entries' size, and a little per segment): when a session's entries
//! take it past the bound, the sessions used least recently are dropped. Shared by every
//! clone of [`ObjectSessions`](super::ObjectSessions); its lock is never held across a
//! request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use object_store::ObjectMeta;

use super::super::frame_log::IndexEntry;

/// What the listing says of a segment's `.idx` object: an object replaced since it was read
/// differs in one of these (its ETag, or else its size or its modification time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct IdxVersion {
    e_tag: Option<String>,
    size: u64,
    last_modified: SystemTime,
}

impl From<&ObjectMeta> for IdxVersion {
    fn from(meta: &ObjectMeta) -> Self {
        Self {
            e_tag: meta.e_tag.clone(),
            size: meta.size,
            last_modified: meta.last_modified.into(),
        }
    }
}

/// One segment as its listing names it: its first frame, its frames and its `.idx` object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SegmentKey {
    pub first: u64,
    pub frames: u64,
    pub version: IdxVersion,
}

/// The entries of one segment, shared with the readers that took them.
pub(super) type Entries = Arc<[IndexEntry]>;

#[derive(Debug)]
struct Cached {
    key: SegmentKey,
    entries: Entries,
}

impl Cached {
    /// What it takes in memory, about.
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.key.version.e_tag.as_ref().map_or(0, String::len)
            + std::mem::size_of_val(&*self.entries)
    }
}

#[derive(Debug, Default)]
struct Session {
    /// By first frame.
    segments: HashMap<u64, Cached>,
    bytes: usize,
    /// When last used, on the cache's clock.
    used: u64,
}

#[derive(Debug, Default)]
struct State {
    sessions: HashMap<String, Session>,
    bytes: usize,
    /// Counts the uses, to order them.
    clock: u64,
}

/// Sessions' frame index entries, at most `limit` bytes of them.
#[derive(Debug)]
pub struct IndexCache {
    limit: usize,
    state: Mutex<State>,
}

impl IndexCache {
    /// A cache of at most `limit` bytes (0: none kept).
    pub fn new(limit: u64) -> Self {
        Self {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while it was held leaves entries that are whole (each is replaced at once).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached entries of each of session `id`'s `segments` whose `.idx` object is the
    /// one read (same first frame, frames and version), in order; `None` for the others.
    pub(super) fn lookup(&self, id: &str, segments: &[SegmentKey]) -> Vec<Option<Entries>> {
        let mut state = self.state();
        state.clock += 1;
        let now = state.clock;
        let Some(session) = state.sessions.get_mut(id) else {
            return vec![None; segments.len()];
        };
        session.used = now;
        segments
            .iter()
            .map(|wanted| {
                let cached = session.segments.get(&wanted.first)?;
                (cached.key == *wanted).then(|| cached.entries.clone())
            })
            .collect()
    }

    /// Keeps `segments` as session `id`'s, in place of what was cached of it (segments no
    /// longer listed are dropped), then drops the sessions used least recently until the
    /// cache is within its bound; a session larger than the bound alone is not kept.
    pub(super) fn store(&self, id: &str, segments: Vec<(SegmentKey, Entries)>) {
        if self.limit == 0 {
            return;
        }
        let mut session = Session::default();
        for (key, entries) in segments {
            let cached = Cached { key, entries };
            session.bytes += cached.bytes();
            session.segments.insert(cached.key.first, cached);
        }
        let mut state = self.state();
        state.clock += 1;
        session.used = state.clock;
        if let Some(old) = state.sessions.remove(id) {
            state.bytes -= old.bytes;
        }
        if session.bytes > self.limit {
            return;
        }
        state.bytes += session.bytes;
        state.sessions.insert(id.to_string(), session);
        while state.bytes > self.limit {
            let Some(oldest) = state
                .sessions
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .min_by_key(|(_, s)| s.used)
                .map(|(other, _)| other.clone())
            else {
                break;
            };
            if let Some(dropped) = state.sessions.remove(&oldest) {
                state.bytes -= dropped.bytes;
            }
        }
    }

    /// Drops session `id` (deleted).
    pub(super) fn remove(&self, id: &str) {
        let mut state = self.state();
        if let Some(old) = state.sessions.remove(id) {
            state.bytes -= old.bytes;
        }
    }

    /// Bytes held, and sessions.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, usize) {
        let state = self.state();
        (state.bytes, state.sessions.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(first: u64, frames: u64, e_tag: &str) -> SegmentKey {
        SegmentKey {
            first,
            frames,
            version: IdxVersion {
                e_tag: Some(e_tag.into()),
                size: frames * 24,
                last_modified: SystemTime::UNIX_EPOCH,
            },
        }
    }

    fn entries(frames: u64) -> Entries {
        (0..frames)
            .map(|i| IndexEntry {
                offset: i * 100,
                len: 100,
                crc32c: 0,
                pts_us: i as i64,
            })
            .collect()
    }

    fn segment_bytes(frames: u64) -> usize {
        Cached {
            key: key(0, frames, "e"),
            entries: entries(frames),
        }
        .bytes()
    }

    #[test]
    fn unchanged_segments_are_found_and_replaced_ones_are_not() {
        let cache = IndexCache::new(1 << 20);
        cache.store(
            "a",
            vec![
                (key(0, 10, "e1"), entries(10)),
                (key(10, 5, "e2"), entries(5)),
            ],
        );
        let found = cache.lookup(
            "a",
            &[key(0, 10, "e1"), key(10, 5, "other"), key(15, 3, "e3")],
        );
        assert_eq!(found[0].as_deref().map(<[_]>::len), Some(10));
        assert!(found[1].is_none() && found[2].is_none());
        assert!(cache.lookup("b", &[key(0, 10, "e1")])[0].is_none());
        // Cut back: fewer frames, same first frame.
        assert!(cache.lookup("a", &[key(0, 9, "e1")])[0].is_none());
        cache.remove("a");
        assert_eq!(cache.held(), (0, 0));
    }

    #[test]
    fn the_least_recently_used_sessions_go_first_and_the_bound_is_kept() {
        let one = segment_bytes(100);
        let cache = IndexCache::new(3 * one as u64);
        for id in ["a", "b", "c"] {
            cache.store(id, vec![(key(0, 100, id), entries(100))]);
        }
        assert_eq!(cache.held(), (3 * one, 3));
        cache.lookup("a", &[key(0, 100, "a")]);
        cache.store("d", vec![(key(0, 100, "d"), entries(100))]);
        // b was used least recently.
        assert_eq!(cache.held(), (3 * one, 3));
        assert!(cache.lookup("b", &[key(0, 100, "b")])[0].is_none());
        for id in ["a", "c", "d"] {
            assert!(cache.lookup(id, &[key(0, 100, id)])[0].is_some(), "{id}");
        }
        // A session larger than the whole bound is not kept, and drops nothing else.
        cache.store("big", vec![(key(0, 400, "big"), entries(400))]);
        assert_eq!(cache.held(), (3 * one, 3));
        let none = IndexCache::new(0);
        none.store("a", vec![(key(0, 1, "a"), entries(1))]);
        assert_eq!(none.held(), (0, 0));
    }
}
