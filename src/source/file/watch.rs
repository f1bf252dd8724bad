//! Live reload of the cluster file: poll it, load it when it changes, deliver good states only.
//!
//! A change is seen in the file's metadata (modification time, length, device and inode, so a
//! ConfigMap's symlink swap counts) and, every 240 polls (a minute at the default poll), in a
//! hash of its content (an edit within one mtime tick that keeps the length). Content whose
//! hash was already loaded, by the watcher or by the load at start, is not loaded again.
//!
//! Invariants:
//! - `on_change` gets only complete, successfully loaded states; a broken edit or a vanished
//!   file is logged with `tracing::warn!` (file, line, reason) and the last good state stays;
//! - one warning per distinct failure, not one per poll;
//! - parsing runs on the blocking pool, never on the async workers.

use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::time::MissedTickBehavior;

use crate::model::ClusterState;

/// Every this many polls the content is hashed even when the metadata looks unchanged.
const HASH_EVERY: u32 = 240;

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
    watch_from(path, pod_cidrs, poll, None, on_change, shutdown).await;
}

/// What a load saw of the file, so the watcher does not load the same content again.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    stamp: Stamp,
    hash: u64,
}

/// Loads the file as [`super::load`] does, and returns what the watcher needs to skip it.
pub fn load_seen(
    path: &Path,
    pod_cidrs: &[IpNet],
) -> Result<(ClusterState, Seen), super::FileError> {
    let error = |e: std::io::Error| super::FileError {
        path: path.to_owned(),
        line: None,
        item: None,
        reason: Box::new(e.into()),
    };
    let meta = std::fs::metadata(path).map_err(error)?;
    let text = std::fs::read_to_string(path).map_err(error)?;
    let seen = Seen {
        stamp: Stamp::of(&meta),
        hash: hash_of(text.as_bytes()),
    };
    Ok((super::parse(path, &text, pod_cidrs)?, seen))
}

fn hash_of(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// [`watch`], starting from a load that already `seen` the file's current content.
pub async fn watch_from<F, S>(
    path: PathBuf,
    pod_cidrs: Vec<IpNet>,
    poll: Duration,
    seen: Option<Seen>,
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

#[derive(Default)]
struct Poller {
    polls: u32,
    stamp: Option<Stamp>,
    hash: Option<u64>,
    /// The last failure logged, so it is logged once.
    failing: Option<String>,
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
        if self.stamp == Some(stamp) && !self.polls.is_multiple_of(HASH_EVERY) {
            return None;
        }
        let bytes = match tokio::fs::read(path).await {
            Ok(bytes) => bytes,
            Err(e) => return self.fail(path, None, format!("cannot read the file: {e}")),
        };
        self.stamp = Some(stamp);
        let hash = hash_of(&bytes);
        if self.hash == Some(hash) {
            self.failing = None;
            return None;
        }
        self.hash = Some(hash);
        let Ok(text) = String::from_utf8(bytes) else {
            return self.fail(path, None, "the file is not UTF-8".to_owned());
        };
        let (owned_path, cidrs) = (path.to_owned(), pod_cidrs.to_vec());
        match tokio::task::spawn_blocking(move || super::parse(&owned_path, &text, &cidrs)).await {
            Ok(Ok(state)) => {
                self.failing = None;
                tracing::info!(
                    file = %path.display(),
                    services = state.services.len(),
                    slices = state.slices.len(),
                    "loaded the cluster file"
                );
                Some(state)
            }
            Ok(Err(e)) => self.fail(path, e.line, with_item(e.item, &e.reason)),
            Err(e) => self.fail(path, None, format!("loading failed: {e}")),
        }
    }

    /// Logs a failure once and keeps the last state.
    fn fail(&mut self, path: &Path, line: Option<usize>, reason: String) -> Option<ClusterState> {
        if self.failing.as_deref() != Some(reason.as_str()) {
            tracing::warn!(
                file = %path.display(),
                line,
                reason = %reason,
                "cluster file not loaded; keeping the last good state"
            );
            self.failing = Some(reason);
        }
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
