//! The one retry policy of every watch stream: how long to wait after a failure.
//!
//! A handful of watchers is no load for an API server (thousands of kubelets and controllers
//! watch it too), while every second a watch stays down is a second of stale answers. So
//! retries start fast and stay close: the first after [`FIRST_RETRY`], each next one twice as
//! late, capped at `source.kubernetes.max_backoff_ms` (default 3 s). Each wait is drawn between
//! half its ceiling and the ceiling ("equal jitter"), so replicas and streams that failed
//! together do not retry in step. A server that asks for a pause (`Retry-After` on a 429 or
//! 503) gets at least that, up to [`MAX_RETRY_AFTER`].
//!
//! Invariants: a wait is never longer than `max(cap, Retry-After honoured)`; [`Backoff::reset`]
//! (called as soon as a stream delivers again: a list page, an event, a bookmark) brings the
//! next wait back to the first; nothing here overflows, however many failures in a row.

use std::hash::BuildHasher;
use std::time::Duration;

/// The ceiling of the first wait after a failure.
pub const FIRST_RETRY: Duration = Duration::from_millis(200);

/// The longest `Retry-After` honoured: a server asking for more is retried after this, so a
/// misconfigured proxy cannot keep peerdns deaf for an hour.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How the waits between retries grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Ceiling of the first wait.
    pub first: Duration,
    /// Ceiling of every wait.
    pub cap: Duration,
}

impl RetryPolicy {
    /// Waits from [`FIRST_RETRY`] (or `cap`, if shorter) doubling up to `cap`.
    pub fn capped_at(cap: Duration) -> Self {
        Self {
            first: FIRST_RETRY.min(cap),
            cap,
        }
    }

    /// The ceiling of the wait after `failures` failures in a row (1 for the first).
    fn ceiling(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.first.saturating_mul(1u32 << doublings).min(self.cap)
    }
}

/// One stream's place in the policy: failures in a row and its own random draws.
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RetryPolicy,
    failures: u32,
    random: u64,
}

impl Backoff {
    /// A fresh backoff whose jitter draws from `seed` (any value: it is mixed, and never
    /// leaves the generator at zero).
    pub fn new(policy: RetryPolicy, seed: u64) -> Self {
        Self {
            policy,
            failures: 0,
            random: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    /// A fresh backoff seeded from the process's random hash keys.
    pub fn seeded(policy: RetryPolicy, stream: usize) -> Self {
        let seed = std::collections::hash_map::RandomState::new().hash_one(stream);
        Self::new(policy, seed)
    }

    /// Counts one more failure and returns how long to wait before retrying: a draw between
    /// half the ceiling and the ceiling, and never less than `server_asked` (capped at
    /// [`MAX_RETRY_AFTER`]).
    pub fn next(&mut self, server_asked: Option<Duration>) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let ceiling = self.policy.ceiling(self.failures);
        let half = ceiling / 2;
        let spread = u64::try_from((ceiling - half).as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(self.draw() % spread.saturating_add(1));
        let wait = half + jitter;
        match server_asked {
            Some(asked) => wait.max(asked.min(MAX_RETRY_AFTER)),
            None => wait,
        }
    }

    /// Forgets the failures: the stream delivered again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures counted since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// xorshift64*: plenty for spreading retries, and no dependency.
    fn draw(&mut self) -> u64 {
        let mut x = self.random;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.random = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn waits_double_from_the_first_up_to_the_cap_within_their_jitter() {
        let policy = RetryPolicy::capped_at(3000 * MS);
        let ceilings = [200, 400, 800, 1600, 3000, 3000, 3000];
        for seed in 0..50 {
            let mut backoff = Backoff::new(policy, seed);
            for ceiling in ceilings {
                let wait = backoff.next(None);
                let ceiling = ceiling * MS;
                assert!(
                    wait >= ceiling / 2 && wait <= ceiling,
                    "seed {seed}: {wait:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
    }

    #[test]
    fn the_waits_are_spread_not_fixed() {
        let policy = RetryPolicy::capped_at(3000 * MS);
        let firsts: std::collections::BTreeSet<Duration> = (0..20)
            .map(|seed| Backoff::new(policy, seed).next(None))
            .collect();
        assert!(firsts.len() > 10, "{firsts:?}");
    }

    #[test]
    fn a_reset_brings_the_next_wait_back_to_the_first() {
        let mut backoff = Backoff::new(RetryPolicy::capped_at(3000 * MS), 7);
        for _ in 0..10 {
            backoff.next(None);
        }
        assert_eq!(backoff.failures(), 10);
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
        assert!(backoff.next(None) <= FIRST_RETRY);
    }

    #[test]
    fn a_cap_below_the_first_retry_caps_every_wait() {
        let mut backoff = Backoff::new(RetryPolicy::capped_at(50 * MS), 3);
        for _ in 0..5 {
            assert!(backoff.next(None) <= 50 * MS);
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_its_limit() {
        let mut backoff = Backoff::new(RetryPolicy::capped_at(3000 * MS), 11);
        assert!(backoff.next(Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        assert_eq!(
            backoff.next(Some(Duration::from_secs(3600))),
            MAX_RETRY_AFTER
        );
        // A shorter request does not shorten the policy's own wait.
        backoff.reset();
        for _ in 0..6 {
            backoff.next(None);
        }
        assert!(backoff.next(Some(MS)) >= Duration::from_millis(1500));
    }

    #[test]
    fn endless_failures_neither_overflow_nor_pass_the_cap() {
        let mut backoff = Backoff::new(RetryPolicy::capped_at(Duration::from_secs(300)), 5);
        for _ in 0..10_000 {
            assert!(backoff.next(None) <= Duration::from_secs(300));
        }
        let mut huge = Backoff::new(RetryPolicy::capped_at(Duration::MAX), 5);
        for _ in 0..100 {
            huge.next(None);
        }
    }
}
