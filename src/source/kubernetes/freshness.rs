//! What the watch source reports about itself: sync state, events, relists, API errors, and
//! how fresh the answers are (DESIGN.md P4).
//!
//! Per applied EndpointSlice change two latencies are recorded: from the event's arrival to the
//! new answers being published, and from the slice's `last-change-trigger-time` annotation (when
//! present) to publication. Both go into [`LatencyHistogram`]s the metrics endpoint can export.
//!
//! Invariant: recording is lock-free (atomics only) and allocates nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use crate::metrics::LatencyHistogram;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Counters and gauges of one source, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct SourceStats {
    synced: AtomicBool,
    events: AtomicU64,
    relists: AtomicU64,
    api_errors: AtomicU64,
    last_event_unix_ms: AtomicU64,
    /// Event arrival to new answers published.
    pub event_to_served: LatencyHistogram,
    /// The slice's last-change-trigger-time to new answers published.
    pub trigger_to_served: LatencyHistogram,
}

impl SourceStats {
    /// Counts one event received and stamps its time.
    pub fn record_event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let millis = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        self.last_event_unix_ms.store(millis, Ordering::Relaxed);
    }

    /// Counts one relist after the first (a lost watch, a 410 Gone).
    pub fn record_relist(&self) {
        self.relists.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one failed API request or watch.
    pub fn record_api_error(&self) {
        self.api_errors.fetch_add(1, Ordering::Relaxed);
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

    /// Events received.
    pub fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    /// Relists after the first list.
    pub fn relists(&self) -> u64 {
        self.relists.load(Ordering::Relaxed)
    }

    /// Failed API requests and watches.
    pub fn api_errors(&self) -> u64 {
        self.api_errors.load(Ordering::Relaxed)
    }

    /// Unix time in milliseconds of the last event, 0 before any.
    pub fn last_event_unix_ms(&self) -> u64 {
        self.last_event_unix_ms.load(Ordering::Relaxed)
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
