//! Response rate limiting (RRL) for UDP: a token bucket per client prefix.
//!
//! A spoofed-source flood turns a DNS server into an amplifier aimed at the spoofed address;
//! RRL caps the responses any one client prefix (/24 for IPv4, /56 for IPv6) gets per second.
//! Over the rate a response is dropped, except every `slip`th one, which is sent empty with TC
//! set ([`slip_response`]): a real client behind the prefix retries over TCP, which is never
//! rate limited (a TCP handshake cannot be spoofed). Off unless a rate is configured.
//!
//! ```text
//!  response --> bucket of prefix(client) --token left--> send
//!                        |
//!                        +--empty--> every slip-th: send empty with TC; else drop
//! ```
//!
//! Invariants: memory is bounded whatever the number of clients (at most [`MAX_PREFIXES`]
//! buckets, in two generations per shard: when a shard's current generation is full it becomes
//! the previous one, and the old previous one is forgotten; a forgotten prefix starts again
//! with a full bucket); no lock is held across an `.await` (there is none here); a poisoned
//! shard lock is recovered, never a panic.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use hickory_proto::op::Message;

use crate::metrics::{Metrics, RateLimited};

/// Client prefixes tracked at most, over every shard and both generations.
pub const MAX_PREFIXES: usize = 16_384;
/// Independent locks, so UDP loops on several cores rarely wait for each other.
const SHARDS: usize = 16;
/// Buckets per shard generation.
const GENERATION_CAPACITY: usize = MAX_PREFIXES / SHARDS / 2;
/// Prefix lengths a bucket covers: a /24 of IPv4 (as an IPv4-mapped IPv6 /120), a /56 of IPv6.
const IPV4_PREFIX_BITS: u32 = 96 + 24;
const IPV6_PREFIX_BITS: u32 = 56;

/// The response rate limiting settings (`limits.rrl_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Responses per second (and burst) per client prefix; 0 turns rate limiting off.
    pub responses_per_second: u32,
    /// Every `slip`th response over the rate is sent truncated instead of dropped; 0: none.
    pub slip: u32,
}

/// What to do with one response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate: send it.
    Send,
    /// Over the rate, but its turn to slip: send it empty with TC set.
    Slip,
    /// Over the rate: drop it.
    Drop,
}

/// A token bucket: `tokens` refill at the rate, up to one second's worth.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
    /// Responses over the rate so far, to pick every `slip`th.
    limited: u32,
}

/// One shard's buckets, in two generations (see the module invariants).
#[derive(Debug, Default)]
struct Generations {
    current: HashMap<u128, Bucket>,
    previous: HashMap<u128, Bucket>,
}

impl Generations {
    /// The bucket of `key`, created as `fresh` when unknown; evicts a generation when full.
    fn bucket(&mut self, key: u128, fresh: Bucket) -> &mut Bucket {
        if !self.current.contains_key(&key) {
            let bucket = self.previous.remove(&key).unwrap_or(fresh);
            if self.current.len() >= GENERATION_CAPACITY {
                self.previous = std::mem::take(&mut self.current);
            }
            self.current.insert(key, bucket);
        }
        self.current.entry(key).or_insert(fresh)
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// Per-prefix token buckets shared by every UDP loop.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    slip: u32,
    shards: [Mutex<Generations>; SHARDS],
    metrics: Arc<Metrics>,
}

impl RateLimiter {
    /// A limiter for `settings`, counting what it limits in `metrics`; `None` when the rate
    /// is 0 (rate limiting off).
    pub fn new(settings: RateLimitSettings, metrics: Arc<Metrics>) -> Option<Self> {
        if settings.responses_per_second == 0 {
            return None;
        }
        Some(Self {
            rate: f64::from(settings.responses_per_second),
            slip: settings.slip,
            shards: std::array::from_fn(|_| Mutex::default()),
            metrics,
        })
    }

    /// `response` as it should go to `client`: unchanged, slipped (empty, TC set) or `None`
    /// (dropped). Counts limited responses in the metrics.
    pub fn filter<'a>(&self, client: IpAddr, response: &'a [u8]) -> Option<Cow<'a, [u8]>> {
        match self.check(client, Instant::now()) {
            Verdict::Send => Some(Cow::Borrowed(response)),
            Verdict::Slip => {
                self.metrics.record_rate_limited(RateLimited::Slipped);
                slip_response(response).map(Cow::Owned)
            }
            Verdict::Drop => {
                self.metrics.record_rate_limited(RateLimited::Dropped);
                None
            }
        }
    }

    /// Takes one token from `client`'s prefix bucket at time `now`, and says what to do.
    pub fn check(&self, client: IpAddr, now: Instant) -> Verdict {
        let key = prefix_key(client);
        let mut shard = self.shards[shard_of(key)]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let fresh = Bucket {
            tokens: self.rate,
            refilled: now,
            limited: 0,
        };
        let bucket = shard.bucket(key, fresh);
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.rate);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Verdict::Send;
        }
        bucket.limited = bucket.limited.wrapping_add(1);
        if self.slip != 0 && bucket.limited.is_multiple_of(self.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }

    /// Prefixes currently tracked (never more than [`MAX_PREFIXES`]).
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// The client's prefix as a number: IPv4 (or IPv4-mapped IPv6) /24, IPv6 /56.
fn prefix_key(client: IpAddr) -> u128 {
    match client.to_canonical() {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()) & mask(IPV4_PREFIX_BITS),
        IpAddr::V6(v6) => u128::from(v6) & mask(IPV6_PREFIX_BITS),
    }
}

fn mask(bits: u32) -> u128 {
    u128::MAX << (128 - bits)
}

/// Spreads prefixes over the shards (a /24's third octet, a /56's last byte, mixed).
fn shard_of(key: u128) -> usize {
    let folded = (key >> 64) as u64 ^ key as u64;
    let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> 60) as usize % SHARDS
}

/// `response` emptied (no answer, authority or additional records; the question and the OPT
/// record kept) with TC set, so the client retries over TCP; `None` if it does not decode.
pub fn slip_response(response: &[u8]) -> Option<Vec<u8>> {
    let mut message = Message::from_vec(response).ok()?;
    message.answers.clear();
    message.authorities.clear();
    message.additionals.clear();
    message.metadata.truncation = true;
    message.to_vec().ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use hickory_proto::op::{Edns, MessageType, OpCode, Query};
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};

    use super::*;

    fn limiter(responses_per_second: u32, slip: u32) -> RateLimiter {
        let settings = RateLimitSettings {
            responses_per_second,
            slip,
        };
        RateLimiter::new(settings, Arc::default()).unwrap()
    }

    fn verdicts(limiter: &RateLimiter, client: &str, now: Instant, count: usize) -> Vec<Verdict> {
        let ip: IpAddr = client.parse().unwrap();
        (0..count).map(|_| limiter.check(ip, now)).collect()
    }

    #[test]
    fn rate_zero_is_off() {
        let off = RateLimitSettings {
            responses_per_second: 0,
            slip: 2,
        };
        assert!(RateLimiter::new(off, Arc::default()).is_none());
    }

    #[test]
    fn prefixes_group_clients() {
        let cases: &[(&str, &str, bool)] = &[
            ("192.0.2.1", "192.0.2.254", true),
            ("192.0.2.1", "192.0.3.1", false),
            ("192.0.2.1", "::ffff:192.0.2.9", true),
            ("2001:db8:0:ff01::1", "2001:db8:0:ffee::2", true),
            ("2001:db8:0:ff01::1", "2001:db8:0:fe01::1", false),
            ("::", "0.0.0.0", false),
        ];
        for (a, b, same) in cases {
            let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
            assert_eq!(prefix_key(a) == prefix_key(b), *same, "{a} {b}");
        }
    }

    #[test]
    fn burst_then_every_slip_th_is_slipped() {
        let limiter = limiter(3, 2);
        let now = Instant::now();
        use Verdict::{Drop, Send, Slip};
        let expected = [Send, Send, Send, Drop, Slip, Drop, Slip];
        assert_eq!(verdicts(&limiter, "10.0.0.1", now, 7), expected);
        // Another prefix has its own bucket; the same /24 shares it.
        assert_eq!(verdicts(&limiter, "10.0.1.1", now, 1), [Send]);
        assert_eq!(verdicts(&limiter, "10.0.0.200", now, 1), [Drop]);
    }

    #[test]
    fn slip_zero_drops_all_and_slip_one_slips_all() {
        let now = Instant::now();
        let drops = verdicts(&limiter(1, 0), "10.0.0.1", now, 5);
        assert!(drops[1..].iter().all(|v| *v == Verdict::Drop), "{drops:?}");
        let slips = verdicts(&limiter(1, 1), "10.0.0.1", now, 5);
        assert!(slips[1..].iter().all(|v| *v == Verdict::Slip), "{slips:?}");
    }

    #[test]
    fn tokens_refill_at_the_rate_up_to_one_second() {
        let limiter = limiter(10, 2);
        let start = Instant::now();
        assert!(
            verdicts(&limiter, "10.0.0.1", start, 10)
                .iter()
                .all(|v| *v == Verdict::Send)
        );
        assert_eq!(verdicts(&limiter, "10.0.0.1", start, 1), [Verdict::Drop]);
        let later = start + Duration::from_millis(500);
        let half = verdicts(&limiter, "10.0.0.1", later, 6);
        assert_eq!(half.iter().filter(|v| **v == Verdict::Send).count(), 5);
        let much_later = later + Duration::from_secs(60);
        let full = verdicts(&limiter, "10.0.0.1", much_later, 11);
        assert_eq!(full.iter().filter(|v| **v == Verdict::Send).count(), 10);
    }

    #[test]
    fn memory_is_bounded_whatever_the_number_of_clients() {
        let limiter = limiter(1, 2);
        let now = Instant::now();
        for i in 0..200_000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(i << 8));
            limiter.check(client, now);
        }
        assert!(limiter.tracked() <= MAX_PREFIXES, "{}", limiter.tracked());
        assert!(
            limiter.tracked() >= MAX_PREFIXES / 2,
            "{}",
            limiter.tracked()
        );
        // A recent flooder is still remembered after a spray of other prefixes.
        let flooder: IpAddr = "198.51.100.7".parse().unwrap();
        for _ in 0..3 {
            limiter.check(flooder, now);
        }
        for i in 0..100u32 {
            limiter.check(IpAddr::from(std::net::Ipv4Addr::from(i << 8)), now);
        }
        assert_ne!(limiter.check(flooder, now), Verdict::Send);
    }

    #[test]
    fn slipped_response_is_empty_with_tc_and_keeps_question_and_opt() {
        let name = Name::from_ascii("Peers.apps.svc.cluster.local.").unwrap();
        let mut response = Message::new(42, MessageType::Response, OpCode::Query);
        response.metadata.authoritative = true;
        response.add_query(Query::query(name.clone(), RecordType::A));
        let record = Record::from_rdata(name.clone(), 5, RData::A(A::new(10, 1, 0, 1)));
        response.answers.push(record.clone());
        response.additionals.push(record);
        response.edns = Some(Edns::new());
        let slipped = slip_response(&response.to_vec().unwrap()).unwrap();
        let slipped = Message::from_vec(&slipped).unwrap();
        assert!(slipped.metadata.truncation);
        assert_eq!(slipped.metadata.id, 42);
        assert!(slipped.answers.is_empty() && slipped.additionals.is_empty());
        assert_eq!(slipped.queries[0].name().to_string(), name.to_string());
        assert!(slipped.edns.is_some(), "OPT kept");
        assert!(slip_response(b"\x00\x01").is_none());
    }
}
