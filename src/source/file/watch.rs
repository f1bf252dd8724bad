//! Live reload of the cluster file: poll it, load it when it changes, deliver good states only.
//!
//! A change is seen in the file's metadata (modification time, length, device and inode, so a
//! ConfigMap's symlink swap counts). Metadata can hide one kind of edit: a second edit within
//! the same modification-time tick that keeps the length. That is only possible while the
//! content last read was read within [`SAME_TICK_WINDOW`] of its modification time, so only
//! then is the content hashed again, every 240 polls (a minute at the default poll), streamed
//! in chunks on the blocking pool. A file that has not changed for a while is never read again
//! (rereading a 35 MB file every minute cost a 35 MB allocation and a CPU burst that showed in
//! the tail latency). Content whose hash was already loaded, by the watcher or by the load at
//! start, is not loaded again.
//!
//! Every load attempt is recorded in a [`FileLoadStatus`] (`/metrics`, `/debug/source`): when,
//! whether it loaded, the error with file and line, and the objects a good load ignored.
//!
//! Invariants:
//! - `on_change` gets only complete, successfully loaded states; a broken edit or a vanished
//!   file is logged with `tracing::warn!` (file, line, reason) and the last good state stays;
//! - one warning, and one count in the status's errors, per distinct failure, not one per poll;
//! - parsing runs on the blocking pool, never on the async workers.

use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::time::MissedTickBehavior;

use super::Loaded;
use crate::metrics::FileLoadStatus;
use crate::model::ClusterState;

/// Every this many polls the content is hashed even when the metadata looks unchanged, while
/// that could hide an edit (see the module doc).
const HASH_EVERY: u32 = 240;

/// Content read more than this long after its modification time cannot hide a later edit
/// behind the same metadata (longer than any filesystem's time tick, with room for skew).
const SAME_TICK_WINDOW: Duration = Duration::from_secs(10);

/// Whether content of a file modified at `modified` and read at `read_at` could be followed by
/// an edit that keeps the same metadata (always, when the times cannot be compared).
fn may_hide_edits(modified: Option<SystemTime>, read_at: SystemTime) -> bool {
    modified
        .and_then(|modified| read_at.duration_since(modified).ok())
        .is_none_or(|age| age < SAME_TICK_WINDOW)
}

/// Polls `path` every `poll` and calls `on_change` with each newly loaded state, the first
/// successful load included (so the caller needs no `load` of its own); returns when
/// `shutdown` completes.
pub async fn watch<F, S>(
    path: PathBuf,
    pod_cidrs: Vec<IpNet>,
    poll: Duration,
    on_change: F,
    shutdown: S,
) where
    F: FnMut(ClusterState) + Send,
    S: Future<Output = ()>,
{
    let status = Arc::default();
    watch_from(path, pod_cidrs, poll, None, status, on_change, shutdown).await;
}

/// What a load saw of the file, so the watcher does not load the same content again.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    stamp: Stamp,
    hash: u64,
    /// Whether an edit could hide behind `stamp` ([`may_hide_edits`] at the time of the read).
    recheck: bool,
}

/// Loads the file as [`super::load`] does, and returns what the watcher needs to skip it.
pub fn load_seen(path: &Path, pod_cidrs: &[IpNet]) -> Result<(Loaded, Seen), super::FileError> {
    let error = |e: std::io::Error| super::FileError {
        path: path.to_owned(),
        line: None,
        item: None,
        reason: Box::new(e.into()),
    };
    let meta = std::fs::metadata(path).map_err(error)?;
    let read_at = SystemTime::now();
    let text = std::fs::read_to_string(path).map_err(error)?;
    let stamp = Stamp::of(&meta);
    let seen = Seen {
        stamp,
        hash: hash_of(text.as_bytes()),
        recheck: may_hide_edits(stamp.modified, read_at),
    };
    Ok((super::parse_report(path, &text, pod_cidrs)?, seen))
}

/// The content hash: the same for a file's bytes whether hashed whole or streamed.
fn hash_of(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}

/// [`hash_of`] the file at `path`, read in chunks (no copy of the whole file in memory).
fn hash_file(path: &Path) -> std::io::Result<u64> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = DefaultHasher::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(hasher.finish()),
            Ok(read) => hasher.write(&chunk[..read]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// [`watch`], starting from a load that already `seen` the file's current content, recording
/// every load attempt in `status`.
pub async fn watch_from<F, S>(
    path: PathBuf,
    pod_cidrs: Vec<IpNet>,
    poll: Duration,
    seen: Option<Seen>,
    status: Arc<FileLoadStatus>,
    mut on_change: F,
    shutdown: S,
) where
    F: FnMut(ClusterState) + Send,
    S: Future<Output = ()>,
{
    tokio::pin!(shutdown);
    let mut ticker = tokio::time::interval(poll);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut poller = Poller {
        stamp: seen.map(|s| s.stamp),
        hash: seen.map(|s| s.hash),
        recheck: seen.is_none_or(|s| s.recheck),
        status,
        ..Poller::default()
    };
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        if let Some(state) = poller.poll(&path, &pod_cidrs).await {
            on_change(state);
        }
    }
}

/// What identifies one version of the file without reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

/// The watcher's memory of the last poll.
impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            modified: meta.modified().ok(),
            len: meta.len(),
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

struct Poller {
    polls: u32,
    /// [`HASH_EVERY`], smaller in tests.
    hash_every: u32,
    stamp: Option<Stamp>,
    hash: Option<u64>,
    /// Whether the content last read could hide a later edit behind the same stamp.
    recheck: bool,
    /// Reads of the file's content so far, whole or streamed (for tests).
    content_reads: u32,
    /// The last failure logged, so it is logged once.
    failing: Option<String>,
    /// Where every load attempt is recorded.
    status: Arc<FileLoadStatus>,
    /// The failure of the content with `hash`, when it did not load.
    broken: Option<String>,
}

impl Default for Poller {
    fn default() -> Self {
        Self {
            polls: 0,
            hash_every: HASH_EVERY,
            stamp: None,
            hash: None,
            recheck: true,
            content_reads: 0,
            failing: None,
            status: Arc::default(),
            broken: None,
        }
    }
}

impl Poller {
    /// One poll: the new state when the file changed and loads.
    async fn poll(&mut self, path: &Path, pod_cidrs: &[IpNet]) -> Option<ClusterState> {
        self.polls = self.polls.wrapping_add(1);
        let meta = match tokio::fs::metadata(path).await {
            Ok(meta) => meta,
            Err(e) => return self.fail(path, None, format!("cannot read the file: {e}")),
        };
        let stamp = Stamp::of(&meta);
        if self.stamp == Some(stamp) {
            if !self.recheck || !self.polls.is_multiple_of(self.hash_every) {
                return None;
            }
            // Same metadata, recently modified: compare the content, streamed.
            let owned_path = path.to_owned();
            let read_at = SystemTime::now();
            self.content_reads += 1;
            match tokio::task::spawn_blocking(move || hash_file(&owned_path)).await {
                Ok(Ok(hash)) if self.hash == Some(hash) => {
                    self.recheck = may_hide_edits(stamp.modified, read_at);
                    return self.same_content();
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return self.fail(path, None, format!("cannot read the file: {e}")),
                Err(e) => return self.fail(path, None, format!("reading failed: {e}")),
            }
        }
        let read_at = SystemTime::now();
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(path, None, format!("cannot read the file: {e}")),
        };
        self.content_reads += 1;
        self.stamp = Some(stamp);
        self.recheck = may_hide_edits(stamp.modified, read_at);
        let hash = tokio::task::spawn_blocking(move || (hash_of(&bytes), bytes)).await;
        let Ok((hash, bytes)) = hash else {
            return self.fail(path, None, "hashing failed".to_owned());
        };
        if self.hash == Some(hash) {
            return self.same_content();
        }
        self.hash = Some(hash);
        self.broken = None;
        let Ok(text) = String::from_utf8(bytes) else {
            return self.fail(path, None, "the file is not UTF-8".to_owned());
        };
        let (owned_path, cidrs) = (path.to_owned(), pod_cidrs.to_vec());
        let parse = move || super::parse_report(&owned_path, &text, &cidrs);
        match tokio::task::spawn_blocking(parse).await {
            Ok(Ok(Loaded { state, ignored })) => {
                self.failing = None;
                tracing::info!(
                    file = %path.display(),
                    services = state.services.len(),
                    slices = state.slices.len(),
                    ignored = ignored.len(),
                    "loaded the cluster file"
                );
                self.status
                    .loaded(ignored.iter().map(ToString::to_string).collect());
                Some(state)
            }
            Ok(Err(e)) => {
                let failed = self.fail(path, e.line, with_item(e.item, &e.reason));
                self.broken.clone_from(&self.failing);
                failed
            }
            Err(e) => self.fail(path, None, format!("loading failed: {e}")),
        }
    }

    /// The file holds the content last read again (after a failure to read it, say): its
    /// load's outcome stands again.
    fn same_content(&mut self) -> Option<ClusterState> {
        match &self.broken {
            None => {
                if self.failing.take().is_some() {
                    self.status.recovered();
                }
            }
            Some(text) if self.failing.as_ref() != Some(text) => {
                self.status.failed(text.clone(), false);
                self.failing = Some(text.clone());
            }
            Some(_) => {}
        }
        None
    }

    /// Logs and counts a failure once, records the attempt, and keeps the last state.
    fn fail(&mut self, path: &Path, line: Option<usize>, reason: String) -> Option<ClusterState> {
        let text = match line {
            Some(line) => format!("{}:{line}: {reason}", path.display()),
            None => format!("{}: {reason}", path.display()),
        };
        let new = self.failing.as_deref() != Some(text.as_str());
        if new {
            tracing::warn!(
                file = %path.display(),
                line,
                reason = %reason,
                "cluster file not loaded; keeping the last good state"
            );
            self.failing = Some(text.clone());
        }
        self.status.failed(text, new);
        None
    }
}

/// A reason, prefixed with the List item it is about.
fn with_item(item: Option<usize>, reason: &super::FileErrorKind) -> String {
    match item {
        Some(i) => format!("items[{i}]: {reason}"),
        None => reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::io::Write;

    use super::*;

    fn write_at(path: &Path, text: &str, modified: SystemTime) {
        let mut file = File::create(path).expect("test file");
        file.write_all(text.as_bytes()).expect("written");
        file.set_modified(modified).expect("mtime set");
    }

    fn service(name: &str) -> String {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\n")
    }

    #[tokio::test]
    async fn an_edit_hidden_behind_the_same_metadata_is_found_while_recent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.yaml");
        let modified = SystemTime::now();
        write_at(&path, &service("aa"), modified);
        let mut poller = Poller {
            hash_every: 1,
            ..Poller::default()
        };
        assert!(poller.poll(&path, &[]).await.is_some(), "first load");
        // Same length, same modification time: only the content tells.
        write_at(&path, &service("bb"), modified);
        let state = poller.poll(&path, &[]).await.expect("the edit is found");
        assert_eq!(state.services[0].key.name, "bb");
        assert!(poller.poll(&path, &[]).await.is_none(), "and loaded once");
    }

    #[tokio::test]
    async fn a_file_unchanged_for_a_while_is_not_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.yaml");
        let long_ago = SystemTime::now() - 3 * SAME_TICK_WINDOW;
        write_at(&path, &service("aa"), long_ago);
        let mut poller = Poller {
            hash_every: 1,
            ..Poller::default()
        };
        assert!(poller.poll(&path, &[]).await.is_some(), "first load");
        for _ in 0..10 {
            assert!(poller.poll(&path, &[]).await.is_none());
        }
        assert_eq!(poller.content_reads, 1, "metadata alone was checked");
        // A real edit moves the modification time and is loaded.
        write_at(&path, &service("cc"), SystemTime::now());
        let state = poller.poll(&path, &[]).await.expect("the edit is found");
        assert_eq!(state.services[0].key.name, "cc");
    }

    #[tokio::test]
    async fn every_attempt_is_recorded_and_each_distinct_failure_counted_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cluster.yaml");
        let mut poller = Poller::default();
        let status = poller.status.clone();
        std::fs::write(&path, service("aa")).expect("written");
        assert!(poller.poll(&path, &[]).await.is_some(), "first load");
        let good = status.last_load();
        assert!(good.ok && good.error.is_none() && good.success_unix_ms > 0);

        std::fs::write(&path, format!("{}---\nkind: Service\n", service("aa"))).expect("written");
        assert!(
            poller.poll(&path, &[]).await.is_none(),
            "a broken edit delivers nothing"
        );
        let broken = status.last_load();
        let error = broken.error.clone().expect("the error is kept");
        assert!(!broken.ok, "{broken:?}");
        assert!(
            error.starts_with(&format!("{}:5: ", path.display())) && error.contains("apiVersion"),
            "{error}"
        );
        assert_eq!(
            broken.success_unix_ms, good.success_unix_ms,
            "the good load stays"
        );
        for _ in 0..3 {
            assert!(poller.poll(&path, &[]).await.is_none());
        }
        assert_eq!(status.errors(), 1, "one broken edit, one error");

        std::fs::remove_file(&path).expect("removed");
        for _ in 0..3 {
            assert!(poller.poll(&path, &[]).await.is_none());
        }
        assert_eq!(status.errors(), 2, "a missing file counts once");
        assert!(
            status
                .last_load()
                .error
                .expect("error")
                .contains("cannot read the file")
        );

        std::fs::write(&path, service("bb")).expect("written");
        assert!(
            poller.poll(&path, &[]).await.is_some(),
            "the next good edit loads"
        );
        let again = status.last_load();
        assert!(again.ok && again.error.is_none(), "{again:?}");
        assert_eq!(status.errors(), 2);

        // The file vanishes and comes back as it was: nothing to load, and good again.
        std::fs::remove_file(&path).expect("removed");
        assert!(poller.poll(&path, &[]).await.is_none());
        assert!(!status.last_load().ok);
        std::fs::write(&path, service("bb")).expect("written");
        assert!(poller.poll(&path, &[]).await.is_none(), "the same content");
        assert!(status.last_load().ok, "{:?}", status.last_load());
    }

    #[test]
    fn streamed_and_whole_hashes_agree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.yaml");
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, &text).expect("written");
        assert_eq!(hash_file(&path).expect("read"), hash_of(text.as_bytes()));
    }
}
