//! What one watch stream is doing, and when it last heard from the API (S3: health you can
//! alert on).
//!
//! Two writers fill it: the stream's HTTP layer (`transport.rs`: bytes heard, a watch
//! established, silence, a server's `Retry-After`) and its supervisor (`supervisor.rs`: list
//! started, events delivered, failures and the wait before the retry). `/metrics` and
//! `/debug/source` read it.
//!
//! ```text
//!  listing      a list started (the first, or a relist after a 410 or a failed list)
//!  watching     a list completed, an event arrived, or a watch request was answered 2xx
//!  backing_off  a failure other than a stall, until one of the above
//!  stalled      nothing heard for the idle timeout, until a new watch is answered 2xx
//! ```
//!
//! Invariants: "heard" means bytes of a successful (2xx) answer: list pages, watch events,
//! bookmarks; error answers and failed connections never count, so the heard age grows while
//! the API is away. Everything but the last failure's text is an atomic; that text is written
//! only on a failure (which also logs a line) and read only by `/debug/source`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::failure::FailureCause;
use super::sync::StreamScope;

/// What a watch stream is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchState {
    /// Listing (the first list, or a relist after a 410 or a failed list).
    Listing,
    /// Established: listed, and its watch is open (or being reopened after a clean end).
    Watching,
    /// Waiting to retry after a failure.
    BackingOff,
    /// Its watch heard nothing for the idle timeout; waiting for a new one to be answered.
    Stalled,
}

impl WatchState {
    /// Every state, in the order metrics list them.
    pub const ALL: [WatchState; 4] = [
        WatchState::Listing,
        WatchState::Watching,
        WatchState::BackingOff,
        WatchState::Stalled,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchState::Listing => "listing",
            WatchState::Watching => "watching",
            WatchState::BackingOff => "backing_off",
            WatchState::Stalled => "stalled",
        }
    }

    fn from_u8(value: u8) -> WatchState {
        Self::ALL
            .get(usize::from(value))
            .copied()
            .unwrap_or(WatchState::Listing)
    }
}

/// The last failure of a stream, for `/debug/source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastFailure {
    /// When, in Unix milliseconds.
    pub unix_ms: u64,
    /// Why, in one word.
    pub cause: FailureCause,
    /// The stage and the cause chain.
    pub message: String,
}

/// The health of one watch stream.
#[derive(Debug)]
pub struct StreamHealth {
    /// The resource and namespace it watches.
    pub scope: StreamScope,
    state: AtomicU8,
    /// Unix ms of the last bytes of a successful answer; 0 before any.
    heard_unix_ms: AtomicU64,
    /// Body frames of successful answers so far.
    heard: AtomicU64,
    failures: [AtomicU64; FailureCause::ALL.len()],
    /// Set by the HTTP layer when its idle timer fires; taken by the supervisor.
    silenced: AtomicBool,
    /// The pause a server asked for (`Retry-After`), in ms; 0: none. Taken by the supervisor.
    server_asked_ms: AtomicU64,
    /// Unix ms of the next retry, while backing off.
    retry_at_unix_ms: AtomicU64,
    last_failure: Mutex<Option<LastFailure>>,
}

impl StreamHealth {
    /// A stream about to make its first list.
    pub fn new(scope: StreamScope) -> Self {
        Self {
            scope,
            state: AtomicU8::new(WatchState::Listing as u8),
            heard_unix_ms: AtomicU64::new(0),
            heard: AtomicU64::new(0),
            failures: std::array::from_fn(|_| AtomicU64::new(0)),
            silenced: AtomicBool::new(false),
            server_asked_ms: AtomicU64::new(0),
            retry_at_unix_ms: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }

    // --- the HTTP layer ---

    /// Bytes of a successful answer arrived.
    pub fn heard(&self) {
        self.heard_unix_ms.store(unix_ms_now(), Ordering::Relaxed);
        self.heard.fetch_add(1, Ordering::Release);
    }

    /// A watch request was answered 2xx: the watch is established.
    pub fn established(&self) {
        self.set_state(WatchState::Watching);
    }

    /// Nothing arrived for the idle timeout; the request is being failed.
    pub fn silenced(&self) {
        self.silenced.store(true, Ordering::Release);
        self.set_state(WatchState::Stalled);
    }

    /// The server asked to wait `pause` before the next request.
    pub fn server_asked(&self, pause: Duration) {
        let millis = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.server_asked_ms.store(millis, Ordering::Release);
    }

    // --- the supervisor ---

    /// A (re)list started.
    pub fn listing(&self) {
        self.set_state(WatchState::Listing);
    }

    /// A list completed or an event arrived.
    pub fn delivered(&self) {
        self.set_state(WatchState::Watching);
    }

    /// Whether the idle timer fired since the last call (and clears it).
    pub fn take_silence(&self) -> bool {
        self.silenced.swap(false, Ordering::AcqRel)
    }

    /// The pause the server asked for since the last call, if any (and clears it).
    pub fn take_server_asked(&self) -> Option<Duration> {
        match self.server_asked_ms.swap(0, Ordering::AcqRel) {
            0 => None,
            millis => Some(Duration::from_millis(millis)),
        }
    }

    /// Records a failure; the stream retries after `retry_in`. A stall keeps the stalled
    /// state until a new watch is answered; anything else is backing off.
    pub fn failed(&self, cause: FailureCause, message: String, retry_in: Duration) {
        self.failures[cause.index()].fetch_add(1, Ordering::Relaxed);
        let now = unix_ms_now();
        let retry_in_ms = u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX);
        self.retry_at_unix_ms
            .store(now.saturating_add(retry_in_ms), Ordering::Relaxed);
        self.set_state(match cause {
            FailureCause::Stalled => WatchState::Stalled,
            _ => WatchState::BackingOff,
        });
        let mut last = self
            .last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *last = Some(LastFailure {
            unix_ms: now,
            cause,
            message,
        });
    }

    // --- readers ---

    /// What the stream is doing.
    pub fn state(&self) -> WatchState {
        WatchState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Body frames of successful answers so far (moves whenever the API is heard).
    pub fn heard_count(&self) -> u64 {
        self.heard.load(Ordering::Acquire)
    }

    /// Unix ms of the last bytes of a successful answer; 0 before any.
    pub fn heard_unix_ms(&self) -> u64 {
        self.heard_unix_ms.load(Ordering::Relaxed)
    }

    /// Failures of `cause` so far.
    pub fn failures(&self, cause: FailureCause) -> u64 {
        self.failures[cause.index()].load(Ordering::Relaxed)
    }

    /// Failures of every cause so far.
    pub fn total_failures(&self) -> u64 {
        FailureCause::ALL.iter().map(|c| self.failures(*c)).sum()
    }

    /// Unix ms of the next retry, when backing off or stalled.
    pub fn retry_at_unix_ms(&self) -> Option<u64> {
        matches!(self.state(), WatchState::BackingOff | WatchState::Stalled)
            .then(|| self.retry_at_unix_ms.load(Ordering::Relaxed))
    }

    /// The last failure, if any.
    pub fn last_failure(&self) -> Option<LastFailure> {
        self.last_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_state(&self, state: WatchState) {
        self.state.store(state as u8, Ordering::Release);
    }
}

/// Now, in Unix milliseconds.
pub fn unix_ms_now() -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(now.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kubernetes::WatchedKind;

    fn health() -> StreamHealth {
        StreamHealth::new(StreamScope {
            kind: WatchedKind::Services,
            namespace: None,
        })
    }

    #[test]
    fn states_follow_the_stream() {
        let health = health();
        assert_eq!(health.state(), WatchState::Listing);
        health.delivered();
        assert_eq!(health.state(), WatchState::Watching);
        health.failed(FailureCause::Connection, "refused".into(), Duration::ZERO);
        assert_eq!(health.state(), WatchState::BackingOff);
        assert!(health.retry_at_unix_ms().is_some());
        health.listing();
        assert_eq!(health.state(), WatchState::Listing);
        assert_eq!(health.retry_at_unix_ms(), None);
        health.established();
        assert_eq!(health.state(), WatchState::Watching);
    }

    #[test]
    fn a_stall_stays_stalled_through_its_retries_until_a_watch_is_answered() {
        let health = health();
        health.silenced();
        assert_eq!(health.state(), WatchState::Stalled);
        assert!(health.take_silence());
        assert!(!health.take_silence(), "taken once");
        health.failed(FailureCause::Stalled, "silent".into(), Duration::ZERO);
        assert_eq!(health.state(), WatchState::Stalled);
        health.established();
        assert_eq!(health.state(), WatchState::Watching);
    }

    #[test]
    fn failures_are_counted_by_cause_and_the_last_one_kept() {
        let health = health();
        health.failed(FailureCause::ServerError, "HTTP 500".into(), Duration::ZERO);
        health.failed(FailureCause::ServerError, "HTTP 503".into(), Duration::ZERO);
        health.failed(FailureCause::Gone, "HTTP 410".into(), Duration::ZERO);
        assert_eq!(health.failures(FailureCause::ServerError), 2);
        assert_eq!(health.failures(FailureCause::Gone), 1);
        assert_eq!(health.total_failures(), 3);
        let last = health.last_failure().unwrap();
        assert_eq!(
            (last.cause, last.message.as_str()),
            (FailureCause::Gone, "HTTP 410")
        );
    }

    #[test]
    fn heard_moves_only_when_bytes_arrive_and_server_pauses_are_taken_once() {
        let health = health();
        assert_eq!((health.heard_count(), health.heard_unix_ms()), (0, 0));
        health.failed(FailureCause::Connection, "refused".into(), Duration::ZERO);
        assert_eq!(health.heard_count(), 0);
        health.heard();
        assert_eq!(health.heard_count(), 1);
        assert!(health.heard_unix_ms() > 0);
        assert_eq!(health.take_server_asked(), None);
        health.server_asked(Duration::from_secs(2));
        assert_eq!(health.take_server_asked(), Some(Duration::from_secs(2)));
        assert_eq!(health.take_server_asked(), None);
    }
}
