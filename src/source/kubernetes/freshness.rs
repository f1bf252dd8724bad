//! What the watch source reports about itself: sync state, events, relists, each stream's
//! health (its state, failures and when it last heard from the API: `health.rs`), and how
//! fresh the answers are.
//!
//! Per applied EndpointSlice change two latencies are recorded: from the event's arrival to the
//! new answers being published, and from the slice's `last-change-trigger-time` annotation (when
//! present) to publication. Both go into [`LatencyHistogram`]s the metrics endpoint can export.
//!
//! Invariants: recording an event or a publication is lock-free (atomics only) and allocates
//! nothing; events count objects delivered (list items, changes, deletions), never failures or
//! the start of a list; a relist counts when it completes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::health::StreamHealth;
pub use crate::metrics::LatencyHistogram;
use std::time::{Instant, SystemTime};

/// Counters and gauges of one source, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// The API server's URL (empty when not watching one).
    pub server: Arc<str>,
    /// Each watch stream's health, by stream id.
    pub streams: Vec<Arc<StreamHealth>>,
    synced: AtomicBool,
    events: AtomicU64,
    relists: AtomicU64,
    /// Event arrival to new answers published.
    pub event_to_served: LatencyHistogram,
    /// The slice's last-change-trigger-time to new answers published.
    pub trigger_to_served: LatencyHistogram,
}

impl SourceStats {
    /// Stats for the streams watched on `server`.
    pub fn new(server: Arc<str>, streams: Vec<Arc<StreamHealth>>) -> Self {
        Self {
            server,
            streams,
            ..Self::default()
        }
    }

    /// Counts one object delivered (a list item, a change, a deletion).
    pub fn record_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one completed relist after the first list (a lost watch, a 410 Gone).
    pub fn record_relist(&self) {
        self.relists.fetch_add(1, Ordering::Relaxed);
    }

    /// Records that new answers were published for an event that arrived at `arrived`, whose
    /// slice names `trigger` as the time of the change.
    pub fn record_published(&self, arrived: Instant, trigger: Option<SystemTime>) {
        self.event_to_served.record(arrived.elapsed());
        if let Some(trigger) = trigger
            && let Ok(age) = SystemTime::now().duration_since(trigger)
        {
            self.trigger_to_served.record(age);
        }
    }

    /// Marks the first complete list applied.
    pub fn mark_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    /// Whether the first complete list has been applied.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Objects delivered.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Completed relists after the first list.
    pub fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }

    /// Failed API requests and watches, over every stream and cause.
    pub fn api_errors(&self) -> u64 {
        self.streams.iter().map(|s| s.total_failures()).sum()
    }

    /// Unix time in milliseconds when any stream last heard from the API (an event, a
    /// bookmark, a list page), 0 before any.
    pub fn heard_unix_ms(&self) -> u64 {
        self.streams
            .iter()
            .map(|s| s.heard_unix_ms())
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn published_records_both_latencies_when_the_trigger_is_known() {
        let stats = SourceStats::default();
        stats.record_published(Instant::now(), None);
        let trigger = SystemTime::now() - Duration::from_millis(30);
        stats.record_published(Instant::now(), Some(trigger));
        assert_eq!(stats.event_to_served.count(), 2);
        assert_eq!(stats.trigger_to_served.count(), 1);
        assert!(stats.trigger_to_served.sum() >= Duration::from_millis(30));
    }
}
