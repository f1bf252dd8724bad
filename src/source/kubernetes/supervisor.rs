//! Keeps one watch stream going: applies the retry policy to its failures, keeps its health
//! record, and logs each failure once.
//!
//! kube-runtime's watcher reports a failure as an `Err` item and recovers on the next poll
//! (resuming the watch from its last resourceVersion, or relisting after a 410). The supervisor
//! waits before that poll, as long as [`Backoff`] says, and passes every other item on.
//!
//! Invariants:
//! - the backoff resets as soon as the stream delivers again: a list page or an event passed
//!   on, or any bytes of a successful answer (a bookmark) heard since the last failure; never
//!   on `Init`, which the watcher emits before a list that may fail again;
//! - every failure is one log line (cause, server, the stage and cause chain, the wait) and one
//!   count in the health record, never an event; a 410 is logged at info (a relist is routine),
//!   everything else at warn.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::runtime::watcher::{self, Event};
use tracing::{info, warn};

use super::failure::{FailureCause, describe};
use super::health::StreamHealth;
use super::retry::Backoff;
use super::sync::Change;

/// A watcher's raw items, tagged with nothing yet.
pub type WatcherItems = BoxStream<'static, Result<Change, watcher::Error>>;

/// Supervises one watcher stream.
pub struct Supervisor {
    items: WatcherItems,
    health: Arc<StreamHealth>,
    backoff: Backoff,
    /// `health.heard_count()` at the last failure.
    heard_at_failure: u64,
    /// The API server's URL, for the log.
    server: Arc<str>,
}

impl Supervisor {
    /// Supervises `items`, recording into `health`.
    pub fn new(
        items: WatcherItems,
        health: Arc<StreamHealth>,
        backoff: Backoff,
        server: Arc<str>,
    ) -> Self {
        Self {
            items,
            health,
            backoff,
            heard_at_failure: 0,
            server,
        }
    }

    /// The stream's changes, each tagged with `id`, with failures handled on the way.
    pub fn into_changes(self, id: usize) -> impl Stream<Item = (usize, Change)> + Send + 'static {
        futures::stream::unfold(self, move |mut supervisor| async move {
            let change = supervisor.next().await?;
            Some(((id, change), supervisor))
        })
    }

    /// The next change; failures on the way are waited out.
    async fn next(&mut self) -> Option<Change> {
        loop {
            match self.items.next().await? {
                Ok(change) => {
                    self.note(&change);
                    return Some(change);
                }
                Err(error) => {
                    let wait = self.failed(&error);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn note(&mut self, change: &Change) {
        match step_of(change) {
            Step::ListStarted => self.health.listing(),
            Step::ListItem => self.backoff.reset(),
            Step::ListDone | Step::Changed => {
                self.backoff.reset();
                self.health.delivered();
            }
        }
    }

    /// Records and logs a failure; returns how long to wait before the next poll.
    fn failed(&mut self, error: &watcher::Error) -> std::time::Duration {
        let heard = self.health.heard_count();
        if heard != self.heard_at_failure {
            self.backoff.reset();
            self.heard_at_failure = heard;
        }
        let (mut cause, message) = describe(error);
        if self.health.take_silence() {
            cause = FailureCause::Stalled;
        }
        let wait = self.backoff.next(self.health.take_server_asked());
        let scope = &self.health.scope;
        let kind = scope.kind.as_str();
        let namespace = scope.namespace.as_deref().unwrap_or("*");
        let retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        let server = &*self.server;
        let cause_label = cause.as_str();
        if cause == FailureCause::Gone {
            info!(
                kind,
                namespace,
                server,
                cause = cause_label,
                retry_in_ms,
                "{message}"
            );
        } else {
            warn!(
                kind,
                namespace,
                server,
                cause = cause_label,
                retry_in_ms,
                "{message}"
            );
        }
        self.health.failed(cause, message, wait);
        wait
    }
}

/// Where in the watch protocol an item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    ListStarted,
    ListItem,
    ListDone,
    Changed,
}

fn step_of(change: &Change) -> Step {
    fn of<K>(event: &Event<K>) -> Step {
        match event {
            Event::Init => Step::ListStarted,
            Event::InitApply(_) => Step::ListItem,
            Event::InitDone => Step::ListDone,
            Event::Apply(_) | Event::Delete(_) => Step::Changed,
        }
    }
    match change {
        Change::Service(event) => of(event),
        Change::Slice(event) => of(event),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::kubernetes::health::WatchState;
    use crate::source::kubernetes::retry::RetryPolicy;
    use crate::source::kubernetes::{StreamScope, WatchedKind};
    use std::time::Duration;
    use tokio::time::Instant;

    fn failure() -> watcher::Error {
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        watcher::Error::InitialListFailed(kube::Error::Service(Box::new(refused)))
    }

    fn init() -> Result<Change, watcher::Error> {
        Ok(Change::Service(Box::new(Event::Init)))
    }

    fn done() -> Result<Change, watcher::Error> {
        Ok(Change::Service(Box::new(Event::InitDone)))
    }

    /// Runs `items` through a supervisor (cap 3 s) and returns, per item passed on, the
    /// (paused) time it came out, with the health record.
    async fn run(items: Vec<Result<Change, watcher::Error>>) -> (Vec<Duration>, Arc<StreamHealth>) {
        let health = Arc::new(StreamHealth::new(StreamScope {
            kind: WatchedKind::Services,
            namespace: None,
        }));
        let policy = RetryPolicy::capped_at(Duration::from_secs(3));
        let supervisor = Supervisor::new(
            futures::stream::iter(items).boxed(),
            health.clone(),
            Backoff::new(policy, 1),
            "http://127.0.0.1:1".into(),
        );
        let started = Instant::now();
        let times = supervisor
            .into_changes(0)
            .map(|_| started.elapsed())
            .collect()
            .await;
        (times, health)
    }

    type Feed = futures::channel::mpsc::UnboundedSender<Result<Change, watcher::Error>>;
    type Changes = std::pin::Pin<Box<dyn Stream<Item = (usize, Change)> + Send>>;

    /// A supervisor (cap 3 s) fed item by item through the returned sender.
    fn fed() -> (Feed, Changes, Arc<StreamHealth>) {
        let health = Arc::new(StreamHealth::new(StreamScope {
            kind: WatchedKind::Services,
            namespace: None,
        }));
        let policy = RetryPolicy::capped_at(Duration::from_secs(3));
        let (items, feed) = futures::channel::mpsc::unbounded();
        let supervisor = Supervisor::new(
            feed.boxed(),
            health.clone(),
            Backoff::new(policy, 1),
            "http://127.0.0.1:1".into(),
        );
        (items, Box::pin(supervisor.into_changes(0)), health)
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_doubling_and_init_does_not_reset_it() {
        let mut items = Vec::new();
        for _ in 0..6 {
            items.push(init());
            items.push(Err(failure()));
        }
        items.push(init());
        let (times, health) = run(items).await;
        // Waits: <=0.2, <=0.4, <=0.8, <=1.6, <=3, <=3 s, each at least half its ceiling.
        let waited = *times.last().unwrap();
        assert!(waited >= Duration::from_millis(4500), "{waited:?}");
        assert!(waited <= Duration::from_millis(9000), "{waited:?}");
        assert_eq!(health.failures(FailureCause::Connection), 6);
        assert_eq!(health.state(), WatchState::Listing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_completed_list_resets_the_backoff() {
        let mut items = Vec::new();
        for _ in 0..6 {
            items.push(Err(failure()));
        }
        items.push(done());
        items.push(Err(failure()));
        items.push(done());
        let (times, health) = run(items).await;
        let after_reset = times[1] - times[0];
        assert!(after_reset <= Duration::from_millis(200), "{after_reset:?}");
        assert_eq!(health.state(), WatchState::Watching);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_heard_since_the_last_failure_reset_the_backoff() {
        let (items, mut changes, health) = fed();
        for _ in 0..5 {
            items.unbounded_send(Err(failure())).unwrap();
        }
        items.unbounded_send(init()).unwrap();
        changes.next().await.unwrap();
        // A bookmark arrives on the resumed watch, then it fails again: the wait is a first one.
        health.heard();
        items.unbounded_send(Err(failure())).unwrap();
        items.unbounded_send(init()).unwrap();
        let started = Instant::now();
        changes.next().await.unwrap();
        assert!(
            started.elapsed() <= Duration::from_millis(200),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silenced_request_counts_as_a_stall_and_retry_after_is_waited() {
        let (items, mut changes, health) = fed();
        health.silenced();
        items.unbounded_send(Err(failure())).unwrap();
        items.unbounded_send(init()).unwrap();
        changes.next().await.unwrap();
        assert_eq!(health.failures(FailureCause::Stalled), 1);
        assert_eq!(health.failures(FailureCause::Connection), 0);
        health.server_asked(Duration::from_secs(2));
        items.unbounded_send(Err(failure())).unwrap();
        items.unbounded_send(init()).unwrap();
        let started = Instant::now();
        changes.next().await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(2));
    }
}
