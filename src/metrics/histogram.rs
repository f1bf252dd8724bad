//! A lock-free latency histogram with power-of-two microsecond buckets.
//!
//! Invariant: [`LatencyHistogram::record`] takes no lock and allocates nothing, so the DNS
//! query path and the watch source can record into it freely.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
        self.record_many(duration, 1);
    }

    /// Records `count` equal durations (the queries of one batch).
    pub fn record_many(&self, duration: Duration, count: u64) {
        if count == 0 {
            return;
        }
        let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
        let bucket = (u64::BITS - micros.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(count, Ordering::Relaxed);
        self.count.fetch_add(count, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(micros.saturating_mul(count), Ordering::Relaxed);
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
    fn a_batch_counts_as_that_many_equal_durations() {
        let (one_by_one, batched) = (LatencyHistogram::default(), LatencyHistogram::default());
        for _ in 0..5 {
            one_by_one.record(Duration::from_micros(40));
        }
        batched.record_many(Duration::from_micros(40), 5);
        batched.record_many(Duration::from_micros(7), 0);
        assert_eq!(batched.count(), 5);
        assert_eq!(batched.sum(), Duration::from_micros(200));
        assert_eq!(batched.cumulative(), one_by_one.cumulative());
    }
}
