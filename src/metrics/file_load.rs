//! The file source's last load, as `/metrics` and `/debug/source` show it.
//!
//! The file watcher records every load attempt here (a changed file read and parsed, or a
//! failure to read it); the admin side only reads. A failed load keeps the last good state
//! served, so this is the one place that tells a broken edit happened.
//!
//! Invariants:
//! - `errors` counts distinct failures: a file that stays missing, polled again and again,
//!   counts once, and so does one broken edit;
//! - recording never blocks the DNS side (a mutex the query path never takes) and never
//!   panics (a poisoned lock is taken over).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The file source's load history.
#[derive(Debug, Default)]
pub struct FileLoadStatus {
    errors: AtomicU64,
    last: Mutex<LastLoad>,
}

/// What the last load attempts left: times in milliseconds since the Unix epoch, 0 for never.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastLoad {
    /// The last attempt, good or not.
    pub attempt_unix_ms: u64,
    /// The last good load (the state being served).
    pub success_unix_ms: u64,
    /// Whether the last attempt loaded.
    pub ok: bool,
    /// Why the last attempt failed, with file and line (`None` when it loaded).
    pub error: Option<String>,
    /// The objects the last good load ignored, one line each (file:line, kind, name, why).
    pub ignored: Vec<String>,
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl FileLoadStatus {
    fn last(&self) -> std::sync::MutexGuard<'_, LastLoad> {
        self.last.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a good load that ignored `ignored`.
    pub fn loaded(&self, ignored: Vec<String>) {
        let now = now_unix_ms();
        let mut last = self.last();
        *last = LastLoad {
            attempt_unix_ms: now,
            success_unix_ms: now,
            ok: true,
            error: None,
            ignored,
        };
    }

    /// Records a failed attempt; `new` when it is not the failure recorded last (only then is
    /// it counted).
    pub fn failed(&self, error: String, new: bool) {
        if new {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut last = self.last();
        last.attempt_unix_ms = now_unix_ms();
        last.ok = false;
        last.error = Some(error);
    }

    /// Records that the file holds the content of the last good load again (it had vanished,
    /// say): the last attempt counts as good, the load time stays.
    pub fn recovered(&self) {
        let mut last = self.last();
        last.attempt_unix_ms = now_unix_ms();
        last.ok = true;
        last.error = None;
    }

    /// Distinct failed loads since start.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// A copy of the last load's record.
    pub fn last_load(&self) -> LastLoad {
        self.last().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_count_once_and_success_clears_the_error() {
        let status = FileLoadStatus::default();
        assert_eq!(status.last_load(), LastLoad::default());
        status.loaded(vec!["x".into()]);
        let good = status.last_load();
        assert!(good.ok && good.success_unix_ms > 0 && good.error.is_none());
        status.failed("c.yaml:3: bad".into(), true);
        status.failed("c.yaml:3: bad".into(), false);
        let bad = status.last_load();
        assert_eq!(
            (bad.ok, bad.error.as_deref()),
            (false, Some("c.yaml:3: bad"))
        );
        assert_eq!(
            bad.success_unix_ms, good.success_unix_ms,
            "the good load is kept"
        );
        assert_eq!(bad.ignored, vec!["x".to_string()]);
        assert_eq!(status.errors(), 1);
        status.loaded(Vec::new());
        assert!(status.last_load().ok && status.last_load().error.is_none());
    }
}
