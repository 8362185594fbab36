//! The webhook outbox on disk (`DATA_DIR/webhooks/`): one file per event, holding the event
//! and where its delivery to each URL stands.
//!
//! An event is written to `outbox/KEY.json` (and synced) before it is sent to any URL. Each
//! URL's outcome is written into that file as soon as it is known (`sent` after a 2xx,
//! `failed` after the last attempt); a URL not marked yet is still to be sent. Once every
//! configured URL has an outcome, the file moves to `sent/` (every URL got it) or `failed/`
//! (at least one did not; the file says which). A restart therefore sends each pending event
//! again only to the URLs that have not had it.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::WebhookEvent;
use crate::store::durable;

/// Where one URL's delivery of an event stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    Pending,
    Sent,
    Failed,
    /// Set aside unsent: the URL's queue was full (`--webhook-queue-max`).
    Dropped,
}

impl Delivery {
    /// As the outbox file and the servers' shared queue write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::Failed => "failed",
            Delivery::Dropped => "dropped",
        }
    }
}

/// One outbox file: the event, and its delivery to each URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(flatten)]
    pub event: WebhookEvent,
    /// By URL; a configured URL missing here is pending (files written before deliveries
    /// were kept per URL have none).
    #[serde(default)]
    pub deliveries: BTreeMap<String, Delivery>,
}

impl Entry {
    /// The event `event`, pending for every one of `urls`.
    pub fn new(event: &WebhookEvent, urls: &[String]) -> Self {
        Self {
            event: event.clone(),
            deliveries: urls
                .iter()
                .map(|url| (url.clone(), Delivery::Pending))
                .collect(),
        }
    }

    /// The event's idempotency key.
    pub fn key(&self) -> &str {
        &self.event.idempotency_key
    }

    /// The delivery to `url`.
    pub fn delivery(&self, url: &str) -> Delivery {
        self.deliveries
            .get(url)
            .copied()
            .unwrap_or(Delivery::Pending)
    }

    /// Those of `urls` still to be sent this event.
    pub fn pending<'a>(&self, urls: &'a [String]) -> Vec<&'a String> {
        urls.iter()
            .filter(|url| self.delivery(url) == Delivery::Pending)
            .collect()
    }
}

/// The outbox folders, for the configured URLs.
#[derive(Debug, Clone)]
pub struct Outbox {
    root: PathBuf,
    urls: Arc<[String]>,
    /// Keys handed to the senders in this run, so that no event is queued twice (the live
    /// listener and the catch-up at startup may both come across it). Held while a file is
    /// read or written, so that the senders of two URLs do not overwrite each other.
    claimed: Arc<Mutex<HashSet<String>>>,
    /// What `sent/` and `failed/` keep.
    history: History,
    /// When they were last pruned.
    pruned: Arc<Mutex<Option<std::time::Instant>>>,
}

/// How much of the delivered (or set aside) events `sent/` and `failed/` keep, each: the
/// newest `files`, none older than `max_age`.
#[derive(Debug, Clone, Copy)]
pub struct History {
    pub files: usize,
    pub max_age: Duration,
}

/// How often `sent/` and `failed/` are pruned, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Removes the files of `dir` beyond the newest `history.files` and those older than
/// `history.max_age`; returns how many it removed.
fn prune(dir: &Path, history: History) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let modified = e.metadata().ok()?.modified().ok()?;
            Some((modified, e.path()))
        })
        .collect();
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    let mut removed = 0;
    for (i, (modified, path)) in files.iter().enumerate() {
        let too_old = modified.elapsed().is_ok_and(|age| age > history.max_age);
        if i >= history.files || too_old {
            match fs::remove_file(path) {
                Ok(()) => removed += 1,
                Err(err) => tracing::warn!("webhooks: cannot remove {}: {err}", path.display()),
            }
        }
    }
    removed
}

impl Outbox {
    /// Opens (creates) the outbox of `data_dir` for `urls` (each once).
    pub fn open(data_dir: &Path, urls: &[String], history: History) -> std::io::Result<Self> {
        let root = data_dir.join("webhooks");
        for dir in ["outbox", "sent", "failed"] {
            fs::create_dir_all(root.join(dir))?;
        }
        let mut unique: Vec<String> = Vec::new();
        for url in urls {
            if !unique.contains(url) {
                unique.push(url.clone());
            }
        }
        Ok(Self {
            root,
            urls: unique.into(),
            claimed: Arc::default(),
            history,
            pruned: Arc::default(),
        })
    }

    /// The URLs events go to, each once.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        self.claimed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, dir: &str, key: &str) -> PathBuf {
        self.root.join(dir).join(format!("{key}.json"))
    }

    fn known(&self, key: &str) -> bool {
        ["outbox", "sent", "failed"]
            .iter()
            .any(|dir| self.path(dir, key).exists())
    }

    /// Whether event `key` was queued before (in this run or an earlier one).
    pub fn knows(&self, key: &str) -> bool {
        self.lock().contains(key) || self.known(key)
    }

    /// Writes the event to the outbox, durably, pending for every URL, and claims it for
    /// delivery; `None` if it was queued before (in this run or an earlier one).
    pub fn put(&self, event: &WebhookEvent) -> std::io::Result<Option<Entry>> {
        let mut claimed = self.lock();
        if claimed.contains(&event.idempotency_key) || self.known(&event.idempotency_key) {
            return Ok(None);
        }
        let entry = Entry::new(event, &self.urls);
        write_durably(&self.path("outbox", &event.idempotency_key), &entry)?;
        claimed.insert(event.idempotency_key.clone());
        Ok(Some(entry))
    }

    /// Every entry of the outbox (events not yet sent to every URL), oldest first.
    #[cfg(test)]
    pub fn pending(&self) -> Vec<Entry> {
        let _guard = self.lock();
        self.read_pending()
    }

    /// The entries of the outbox no one has claimed in this run, oldest first (to [`Self::adopt`]
    /// or [`Self::forget`]).
    pub fn unclaimed(&self) -> Vec<Entry> {
        let claimed = self.lock();
        self.read_pending()
            .into_iter()
            .filter(|e| !claimed.contains(e.key()))
            .collect()
    }

    /// Writes `entry` (an event this server delivers: from its outbox at start, or taken over
    /// from a server that stopped) to the outbox, durably, and claims it for delivery; `None`
    /// if it is claimed in this run already.
    pub fn adopt(&self, entry: Entry) -> std::io::Result<Option<Entry>> {
        let mut claimed = self.lock();
        if claimed.contains(entry.key()) {
            return Ok(None);
        }
        write_durably(&self.path("outbox", entry.key()), &entry)?;
        claimed.insert(entry.key().to_string());
        Ok(Some(entry))
    }

    /// Removes the pending event `key` from the outbox, unsent: another server delivered it.
    pub fn forget(&self, key: &str) -> std::io::Result<()> {
        let _claimed = self.lock();
        fs::remove_file(self.path("outbox", key))?;
        durable::sync_dir(&self.root.join("outbox"))
    }

    /// The keys of the events claimed in this run and not yet delivered to every URL.
    pub fn claimed(&self) -> Vec<String> {
        self.lock().iter().cloned().collect()
    }

    fn read_pending(&self) -> Vec<Entry> {
        let dir = self.root.join("outbox");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!("webhook outbox: cannot list {}: {err}", dir.display());
                return Vec::new();
            }
        };
        let mut pending: Vec<Entry> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|path| path.extension().is_some_and(|x| x == "json"))
            .filter_map(|path| match read_entry(&path) {
                Ok(entry) => Some(entry),
                Err(err) => {
                    tracing::error!(
                        "webhook outbox: cannot read {}: {err}; it is left there, not sent",
                        path.display()
                    );
                    None
                }
            })
            .collect();
        sort_oldest_first(&mut pending);
        pending
    }

    /// Records `outcome` for the delivery of the event `key` to `url`. Once every URL has an
    /// outcome, the entry moves to `sent/` if each got it, else to `failed/`: whether it did.
    pub fn record(&self, key: &str, url: &str, outcome: Delivery) -> std::io::Result<bool> {
        let mut claimed = self.lock();
        let path = self.path("outbox", key);
        let mut entry = read_entry(&path)?;
        entry.deliveries.insert(url.to_string(), outcome);
        write_durably(&path, &entry)?;
        if !entry.pending(&self.urls).is_empty() {
            return Ok(false);
        }
        let every_url = self
            .urls
            .iter()
            .all(|url| entry.delivery(url) == Delivery::Sent);
        let to = if every_url { "sent" } else { "failed" };
        fs::rename(&path, self.path(to, key))?;
        durable::sync_dir(&self.root.join(to))?;
        claimed.remove(key);
        drop(claimed);
        self.prune_history(false);
        Ok(true)
    }

    /// Removes from `sent/` and `failed/` the files beyond the newest `history.files`, and
    /// those older than `history.max_age`; at most once a minute unless `now`.
    pub fn prune_history(&self, now: bool) {
        {
            let mut last = self.pruned.lock().unwrap_or_else(|e| e.into_inner());
            if !now && last.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
                return;
            }
            *last = Some(std::time::Instant::now());
        }
        for dir in ["sent", "failed"] {
            let removed = prune(&self.root.join(dir), self.history);
            if removed > 0 {
                tracing::info!("webhooks: removed {removed} old files from {dir}/");
            }
        }
    }
}

/// Oldest first; a session's `created` before its other events of the same instant.
pub fn sort_oldest_first(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        let rank = |e: &Entry| (e.event.at, e.event.event != "session.created");
        rank(a).cmp(&rank(b))
    });
}

fn read_entry(path: &Path) -> std::io::Result<Entry> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// Writes `entry` to `path` through a synced temporary file and a rename, so that a crash
/// leaves either the old file or the new one.
fn write_durably(path: &Path, entry: &Entry) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(entry)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    durable::write_file(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SessionMeta, SessionStatus};

    fn event(key: &str) -> WebhookEvent {
        let (session, kind) = key.split_once('.').unwrap();
        WebhookEvent {
            idempotency_key: key.into(),
            event: format!("session.{kind}"),
            session_id: session.into(),
            at: time::OffsetDateTime::now_utc(),
            session: SessionMeta::new(session.into(), session.into(), SessionStatus::Created)
                .view(None),
        }
    }

    const HISTORY: History = History {
        files: 100,
        max_age: Duration::from_secs(3600),
    };

    #[test]
    fn history_keeps_the_newest_files_and_none_too_old() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(
            dir.path(),
            &urls(),
            History {
                files: 2,
                max_age: Duration::from_secs(3600),
            },
        )
        .unwrap();
        for n in 0..4 {
            let key = format!("s{n}.created");
            outbox.put(&event(&key)).unwrap().unwrap();
            for url in urls() {
                outbox.record(&key, &url, Delivery::Sent).unwrap();
            }
        }
        outbox.prune_history(true);
        let kept = fs::read_dir(dir.path().join("webhooks/sent"))
            .unwrap()
            .count();
        assert_eq!(kept, 2);
        let none = History {
            files: 10,
            max_age: Duration::ZERO,
        };
        assert_eq!(prune(&dir.path().join("webhooks/sent"), none), 2);
    }

    /// What a server does with its outbox at start: claims every entry for delivery.
    fn claim_all(outbox: &Outbox) -> Vec<Entry> {
        outbox
            .unclaimed()
            .into_iter()
            .filter_map(|e| outbox.adopt(e).unwrap())
            .collect()
    }

    #[test]
    fn an_event_taken_over_keeps_the_urls_that_had_it_and_one_delivered_elsewhere_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (&urls()[0], &urls()[1]);
        let outbox = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        // Another server delivered it to a, then stopped.
        let mut elsewhere = Entry::new(&event("s1.created"), &urls());
        elsewhere.deliveries.insert(a.clone(), Delivery::Sent);
        let adopted = outbox.adopt(elsewhere.clone()).unwrap().unwrap();
        assert_eq!(adopted.pending(outbox.urls()), vec![b]);
        assert!(outbox.adopt(elsewhere).unwrap().is_none(), "adopted twice");
        assert_eq!(outbox.claimed(), vec!["s1.created".to_string()]);
        assert!(outbox.record("s1.created", b, Delivery::Sent).unwrap());
        assert!(outbox.claimed().is_empty());

        // An event left in the outbox that another server delivered since.
        outbox.put(&event("s2.created")).unwrap().unwrap();
        let restarted = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        assert_eq!(restarted.unclaimed().len(), 1);
        restarted.forget("s2.created").unwrap();
        assert!(restarted.unclaimed().is_empty());
    }

    fn urls() -> Vec<String> {
        vec!["http://a/hook".into(), "http://b/hook".into()]
    }

    #[test]
    fn the_outbox_queues_an_event_once() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        let event = event("s1.created");
        assert!(outbox.put(&event).unwrap().is_some());
        assert!(outbox.put(&event).unwrap().is_none(), "queued twice");
        let pending: Vec<WebhookEvent> = outbox.pending().into_iter().map(|e| e.event).collect();
        assert_eq!(pending, vec![event.clone()]);
        for url in urls() {
            outbox.record("s1.created", &url, Delivery::Sent).unwrap();
        }
        assert!(outbox.pending().is_empty());
        assert!(
            outbox.put(&event).unwrap().is_none(),
            "sent events are not queued again"
        );
        let restarted = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        assert!(
            restarted.put(&event).unwrap().is_none(),
            "sent events are not queued again after a restart"
        );
    }

    #[test]
    fn each_url_keeps_its_own_delivery_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (&urls()[0], &urls()[1]);
        let outbox = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        outbox.put(&event("s1.created")).unwrap().unwrap();
        outbox.record("s1.created", a, Delivery::Sent).unwrap();

        // After a restart, only b still has to be sent it.
        let restarted = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        let pending = claim_all(&restarted);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].pending(restarted.urls()), vec![b]);
        restarted.record("s1.created", b, Delivery::Sent).unwrap();
        assert!(claim_all(&Outbox::open(dir.path(), &urls(), HISTORY).unwrap()).is_empty());
        let sent = read_entry(&dir.path().join("webhooks/sent/s1.created.json")).unwrap();
        assert_eq!(sent.delivery(a), Delivery::Sent);
        assert_eq!(sent.delivery(b), Delivery::Sent);

        // One URL that fails for good sets the entry aside, saying which.
        restarted.put(&event("s1.completed")).unwrap().unwrap();
        restarted
            .record("s1.completed", b, Delivery::Failed)
            .unwrap();
        assert_eq!(restarted.pending()[0].pending(restarted.urls()), vec![a]);
        restarted.record("s1.completed", a, Delivery::Sent).unwrap();
        assert!(restarted.pending().is_empty());
        let failed = read_entry(&dir.path().join("webhooks/failed/s1.completed.json")).unwrap();
        assert_eq!(failed.delivery(a), Delivery::Sent);
        assert_eq!(failed.delivery(b), Delivery::Failed);
    }

    #[test]
    fn an_event_is_claimed_for_delivery_once_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        // The live listener queues it...
        assert!(outbox.put(&event("s1.created")).unwrap().is_some());
        // ...so the catch-up does not, nor twice after a restart.
        assert!(claim_all(&outbox).is_empty());
        let restarted = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        assert_eq!(claim_all(&restarted).len(), 1);
        assert!(claim_all(&restarted).is_empty());
        assert!(restarted.put(&event("s1.created")).unwrap().is_none());
    }

    #[test]
    fn an_entry_of_an_earlier_version_is_pending_for_every_url() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = Outbox::open(dir.path(), &urls(), HISTORY).unwrap();
        let event = event("s1.created");
        fs::write(
            dir.path().join("webhooks/outbox/s1.created.json"),
            serde_json::to_vec(&event).unwrap(),
        )
        .unwrap();
        let pending = claim_all(&outbox);
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].event, event);
        assert_eq!(pending[0].pending(outbox.urls()).len(), 2);
    }

    #[test]
    fn a_delivery_is_written_as_the_file_writes_it() {
        for d in [
            Delivery::Pending,
            Delivery::Sent,
            Delivery::Failed,
            Delivery::Dropped,
        ] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
    }

    #[test]
    fn a_url_given_twice_is_sent_once() {
        let dir = tempfile::tempdir().unwrap();
        let twice = vec!["http://a/hook".to_string(), "http://a/hook".to_string()];
        let outbox = Outbox::open(dir.path(), &twice, HISTORY).unwrap();
        assert_eq!(outbox.urls(), &twice[..1]);
    }
}
