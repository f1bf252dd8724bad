//! What the watch source reports about itself: sync state, events, relists, API errors, and
//! how fresh the answers are (DESIGN.md P4).
//!
//! Per applied EndpointSlice change two latencies are recorded: from the event's arrival to the
//! new answers being published, and from the slice's `last-change-trigger-time` annotation (when
//! present) to publication. Both go into [`LatencyHistogram`]s the metrics endpoint can export.
//!
//! Invariant: recording is lock-free (atomics only) and allocates nothing.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Number of histogram buckets: bucket `i` counts durations below `2^i` microseconds (the
/// last one also counts everything longer).
pub const BUCKETS: usize = 26;

/// A lock-free histogram of durations with power-of-two microsecond buckets.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records one duration.
    pub fn record(&self, duration: Duration) {
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Number of recorded durations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Sum of recorded durations.
    pub fn sum(&self) -> Duration {
        Duration::from_micros(self.sum_micros.load(Ordering::Relaxed))
    }

    /// Upper bound of bucket `i` (durations recorded there are below it).
    pub fn bucket_bound(i: usize) -> Duration {
        Duration::from_micros(1u64 << i.min(63))
    }

    /// Cumulative counts per bucket, as Prometheus `le` buckets want them.
    pub fn cumulative(&self) -> [u64; BUCKETS] {
        let mut total = 0;
        std::array::from_fn(|i| {
            total += self.buckets[i].load(Ordering::Relaxed);
            total
        })
    }

    /// An upper bound of quantile `q` (0..=1): the bound of the bucket holding it.
    pub fn quantile_bound(&self, q: f64) -> Option<Duration> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = ((count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let cumulative = self.cumulative();
        let bucket = cumulative.iter().position(|&c| c >= rank)?;
        Some(Self::bucket_bound(bucket))
    }
}

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

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        let histogram = LatencyHistogram::default();
        for micros in [0, 1, 3, 700, 700, 900, 5_000_000] {
            histogram.record(Duration::from_micros(micros));
        }
        assert_eq!(histogram.count(), 7);
        let cumulative = histogram.cumulative();
        assert_eq!(cumulative[0], 1); // 0 us
        assert_eq!(cumulative[1], 2); // 1 us
        assert_eq!(cumulative[2], 3); // 3 us
        assert_eq!(cumulative[10], 6); // 700 and 900 us are below 1024
        assert_eq!(cumulative[BUCKETS - 1], 7);
        assert_eq!(
            histogram.quantile_bound(0.5),
            Some(Duration::from_micros(1024))
        );
        assert_eq!(
            histogram.quantile_bound(1.0),
            Some(Duration::from_micros(1 << 23))
        );
        assert_eq!(LatencyHistogram::default().quantile_bound(0.99), None);
    }

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
