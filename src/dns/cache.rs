//! The answer cache: responses already encoded, by the direct path (`direct/`) or the general
//! path, replayed from a worker-local cache with the request's ID, flags and question patched
//! in. It is asked first: a hit costs a hash, a compare and a copy (and, in a batch, its
//! loads overlap the other datagrams': see [`AnswerCache::probe`]).
//!
//! ```text
//!  datagram -> plain query?  -- no --> general path (message.rs)
//!           -> cached and still valid? -- yes --> copy bytes, patch ID / RD / CD / question
//!           -> direct path, else general path --> store with what it depends on --> send
//! ```
//!
//! Why replaying is exact: the response depends on the question only through its lowercased
//! name, type, class and the client's UDP size, plus the RD and CD bits it copies, and the
//! echoed question itself. Answer owners are written lowercase and point into the question by
//! comparing it in lowercase (message.rs's `EchoedQuestion`, wire/writer.rs), so where the pointers go
//! does not depend on the client's case; what they point at is the question, which a replay
//! patches. The key holds all of those but the bits, which are patched too.
//!
//! Why a replay is never stale: each entry keeps what its response was computed from
//! ([`Validity`]), checked on every hit. A positive answer of the direct path reads one
//! Service's records and nothing else, so it stays valid until the writer retires those
//! records (after publishing their replacement) or they are dropped; every other answer (the
//! general path's, negative answers, whose SOA carries the serial) stays valid while the
//! index's generation is the one read *before* it was computed.
//!
//! Invariants:
//! - only plain queries take this path: one question, no answer or authority records, at most
//!   an OPT record without options, version 0; anything else goes to the general path;
//! - the cache is owned by one receive loop: no lock, no sharing; it is bounded, and the direct
//!   path's answers are admitted only for a question seen recently (a 256 Ki-bit doorkeeper), so
//!   a stream of names asked once each (a large cluster, random names) does not churn it;
//! - keys are hashed with foldhash, seeded per process: they come from clients, but a set
//!   holds four of them and a flood of colliding names only evicts each other;
//! - a key is in at most one slot; the key is compared whole before a replay;
//! - the receive loop looks up through [`AnswerCache::probe`], then [`AnswerCache::replay`],
//!   which stops looking most queries up while fewer than one lookup in sixteen hits (a large
//!   cluster asked across its names), sampling a sixteenth of them to notice when hits come
//!   back; only a probed query's answer is offered for storing, and while it samples the
//!   cache drops what it held and fills a sixteenth of its slots at most (a large cluster's
//!   answers are big: memory for nothing). Skipping a lookup never changes an answer, only
//!   whether it is replayed.

use std::hash::BuildHasher;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::wire::reader::{HEADER_LEN, Plain, plain};
use crate::index::{Retirement, ServiceRecords};
use crate::metrics::QueryOutcome;
use crate::sys::prefetch::prefetch_slice;

/// Answers kept per receive loop, at most (slots of the answer cache).
pub const DEFAULT_CAPACITY: usize = 16384;
/// Slots per set: a key may be in any slot of the set its hash picks (four slots of 48 bytes:
/// three cache lines, asked for together).
const WAYS: usize = 4;
/// Lookups over which [`AnswerCache::replay`] judges whether the cache pays.
const PAYOFF_WINDOW: u32 = 1024;
/// The cache pays while at least one lookup in this many hits; below that, a lookup and an
/// offer to store cost more than the rare replay saves (a direct answer costs about sixteen
/// lookups on a large cluster).
const PAYING_ONE_IN: u32 = 16;
/// While the cache does not pay, one query in this many is looked up (and its answer offered
/// for storing), on average: enough to see the hit rate come back.
const SAMPLE_ONE_IN: u64 = 16;
/// Bits of the doorkeeper (a question hashes to one of them): 32 KiB.
const SEEN_BITS: usize = 1 << 18;
/// Questions marked in the doorkeeper before it starts over: a sixteenth of its bits, so a
/// first offer passes through a collision at most once in sixteen.
const SEEN_RESET: usize = SEEN_BITS / 16;

/// Request header bits the response copies: RD (byte 2) and CD (byte 3).
const RD: u8 = 0x01;
const CD: u8 = 0x10;

/// Longest key: a question (name of at most 255 bytes, type, class) and the EDNS marker.
const MAX_KEY: usize = 255 + 4 + 3;

/// What identifies a response up to ID, RD, CD and the question's case, written into `buffer`
/// (no allocation on a lookup): the question ASCII-lowercased, then `0` without OPT or `1` and
/// the UDP size the client offered.
fn key_of<'b>(plain: &Plain<'_>, buffer: &'b mut [u8; MAX_KEY]) -> &'b [u8] {
    let question = plain.question;
    buffer[..question.len()].copy_from_slice(question);
    buffer[..question.len()].make_ascii_lowercase();
    let mut end = question.len();
    match plain.edns_payload {
        None => {
            buffer[end] = 0;
            end += 1;
        }
        Some(payload) => {
            buffer[end] = 1;
            buffer[end + 1..end + 3].copy_from_slice(&payload.to_be_bytes());
            end += 3;
        }
    }
    &buffer[..end]
}

/// What a cached response was computed from, checked before it is replayed.
#[derive(Clone, Debug)]
pub enum Validity {
    /// Valid while the index's generation is this one (read before the response was computed).
    Generation(u32),
    /// Valid while the Service records it was computed from are not retired (they are all
    /// the response read); the handle does not keep them alive.
    Records(Retirement),
}

impl Validity {
    /// Valid while `records` are published.
    pub fn records(records: &ServiceRecords) -> Self {
        Self::Records(records.retirement())
    }

    fn holds(&self, generation: u32) -> bool {
        match self {
            Self::Generation(computed_at) => *computed_at == generation,
            Self::Records(retirement) => !retirement.is_retired(),
        }
    }
}

/// One cached response.
#[derive(Debug)]
struct Entry {
    /// The key's hash (which slot it is in, and a first check before the key is compared).
    hash: u64,
    /// The key, then the response, in one allocation: a hit reads them together.
    bytes: Box<[u8]>,
    key_len: u16,
    validity: Validity,
}

impl Entry {
    fn key(&self) -> &[u8] {
        &self.bytes[..usize::from(self.key_len)]
    }

    fn response(&self) -> &[u8] {
        &self.bytes[usize::from(self.key_len)..]
    }
}

type KeyHasher = foldhash::fast::RandomState;

/// One receive loop's cache of encoded responses: a table of slots in sets of four (`WAYS`), the
/// set chosen by the key's hash (a new entry takes a free slot of its set, else replaces the
/// set's entries in turn), so that a batch can ask the CPU for every
/// datagram's slot, then for the entries found, before it reads any ([`AnswerCache::probe`],
/// [`AnswerCache::prefetch`], [`AnswerCache::replay`]).
#[derive(Debug)]
pub struct AnswerCache {
    /// Sets of [`WAYS`] slots; a key may be in any slot of the set its hash picks.
    slots: Box<[Option<Entry>]>,
    /// Entries replaced in full sets so far (which slot of a full set goes next).
    evictions: usize,
    hasher: KeyHasher,
    stored: usize,
    seen: Doorkeeper,
    hits: u64,
    payoff: Payoff,
}

/// A plain query read and hashed for the cache ([`AnswerCache::probe`]), kept for the rest of
/// its way through the batch: the replay, then the offer of its computed answer.
#[derive(Debug)]
pub struct Probe {
    hash: u64,
    key: [u8; MAX_KEY],
    key_len: u16,
    question_len: u16,
}

impl Probe {
    fn key(&self) -> &[u8] {
        &self.key[..usize::from(self.key_len)]
    }
}

/// Whether lookups have been paying lately: their hit rate over the last window, and while it
/// is too low, which queries are sampled.
#[derive(Debug)]
struct Payoff {
    looked_up: u32,
    hit: u32,
    /// Whether only a sample of queries is looked up.
    sampling: bool,
    /// A xorshift generator choosing the sample (random, so that no fixed subset of a query
    /// stream that repeats is always the one sampled).
    state: u64,
}

impl Default for Payoff {
    fn default() -> Self {
        Self {
            looked_up: 0,
            hit: 0,
            sampling: false,
            state: 0x9e37_79b9_7f4a_7c15,
        }
    }
}

impl Payoff {
    /// Whether this query is looked up.
    fn look_up(&mut self) -> bool {
        if !self.sampling {
            return true;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state.is_multiple_of(SAMPLE_ONE_IN)
    }

    /// Counts a lookup; at the end of a window, decides whether the next one samples. True
    /// when sampling starts.
    fn count(&mut self, hit: bool) -> bool {
        self.looked_up += 1;
        self.hit += u32::from(hit);
        if self.looked_up < PAYOFF_WINDOW {
            return false;
        }
        let was_sampling = self.sampling;
        self.sampling = self.hit * PAYING_ONE_IN < self.looked_up;
        (self.looked_up, self.hit) = (0, 0);
        self.sampling && !was_sampling
    }
}

impl AnswerCache {
    /// An empty cache of `capacity` slots (rounded up to a power of two, at least `WAYS`).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: (0..capacity.max(WAYS).next_power_of_two())
                .map(|_| None)
                .collect(),
            evictions: 0,
            hasher: KeyHasher::default(),
            stored: 0,
            seen: Doorkeeper::default(),
            hits: 0,
            payoff: Payoff::default(),
        }
    }

    /// Reads `request` as a plain query and hashes its key, and asks the CPU for its set of
    /// slots; false for a request the cache does not take (not a plain query), or, while
    /// lookups do not pay, for one not sampled: its answer is not offered either.
    ///
    /// While lookups pay (one in `PAYING_ONE_IN` or more hits, over the last
    /// `PAYOFF_WINDOW` of them), every plain query is probed. While they do not (a large
    /// cluster asked across all its names: most answers are not cached, and would not be for
    /// long), only a random sixteenth of queries is: that costs the others nothing and tells
    /// when the hit rate comes back.
    ///
    /// The probe is read into `probe` (kept by the caller from batch to batch); false when
    /// there is none, and `probe` means nothing then.
    pub fn probe(&mut self, request: &[u8], probe: &mut Probe) -> bool {
        if !self.payoff.look_up() || !probe.read(&self.hasher, request) {
            return false;
        }
        prefetch_slice(self.set_of(probe.hash), WAYS);
        true
    }

    /// Asks the CPU for the entry a probe's slot holds (the slot itself has arrived), when it
    /// is likely the probe's: its bytes and what its validity reads.
    pub fn prefetch(&self, probe: &Probe) {
        let set = self.set_of(probe.hash);
        if let Some(entry) = set.iter().flatten().find(|entry| entry.hash == probe.hash) {
            prefetch_slice(&entry.bytes, 4);
            if let Validity::Records(retirement) = &entry.validity {
                retirement.prefetch();
            }
        }
    }

    /// Writes the cached response to the probed `request` into `out`, patched, when there is
    /// one and it is still valid with the index at `generation`; false otherwise (a stale entry is
    /// dropped). Counts towards whether lookups pay; when they stop paying, the cache lets go
    /// of what it holds.
    pub fn replay(
        &mut self,
        probe: &Probe,
        request: &[u8],
        out: &mut Vec<u8>,
        generation: u32,
    ) -> bool {
        let hit = self.replay_uncounted(probe, request, out, generation);
        if self.payoff.count(hit) {
            // Lookups stopped paying: free the memory of answers that are not replayed.
            self.slots.iter_mut().for_each(|slot| *slot = None);
            self.stored = 0;
        }
        hit
    }

    /// Whether only a sample of queries is probed at the moment ([`Self::probe`]).
    pub fn is_sampling(&self) -> bool {
        self.payoff.sampling
    }

    /// Writes the cached response to `request` into `out`, patched, when there is one and it
    /// is still valid with the index at `generation`; false otherwise (a stale entry is dropped).
    /// Always looks up, sampling or not, and does not count towards the payoff (a test seam).
    #[cfg(any(test, feature = "testing"))]
    pub fn answer(&mut self, request: &[u8], out: &mut Vec<u8>, generation: u32) -> bool {
        Probe::of(&self.hasher, request)
            .is_some_and(|probe| self.replay_uncounted(&probe, request, out, generation))
    }

    /// [`Self::replay`] without counting towards the payoff.
    fn replay_uncounted(
        &mut self,
        probe: &Probe,
        request: &[u8],
        out: &mut Vec<u8>,
        generation: u32,
    ) -> bool {
        let found = self
            .find(probe)
            .and_then(|slot| Some((slot, self.slots[slot].as_ref()?)));
        let hit = match found {
            Some((_, entry)) if entry.validity.holds(generation) => {
                out.clear();
                out.extend_from_slice(entry.response());
                patch(out, request, usize::from(probe.question_len));
                true
            }
            Some((slot, _)) => {
                self.slots[slot] = None;
                self.stored -= 1;
                false
            }
            None => false,
        };
        self.hits += u64::from(hit);
        hit
    }

    /// Responses replayed so far.
    pub fn hits(&self) -> u64 {
        self.hits
    }

    /// Keeps `response` to `request` (a plain query) with what it was computed from (a test
    /// seam: the receive loop offers probed requests).
    #[cfg(any(test, feature = "testing"))]
    pub fn store(&mut self, request: &[u8], response: &[u8], validity: Validity) {
        if let Some(probe) = Probe::of(&self.hasher, request) {
            self.offer(&probe, response, validity);
        }
    }

    /// [`Self::store`], but only for a question offered before since the doorkeeper last
    /// started over: for answers cheap to compute again, whose names may never come back.
    #[cfg(any(test, feature = "testing"))]
    pub fn store_if_seen(&mut self, request: &[u8], response: &[u8], validity: Validity) {
        if let Some(probe) = Probe::of(&self.hasher, request) {
            self.offer_if_seen(&probe, response, validity);
        }
    }

    /// `Self::store` for a probed request.
    pub fn offer(&mut self, probe: &Probe, response: &[u8], validity: Validity) {
        if response.len() < HEADER_LEN {
            return;
        }
        let slot = self.slot_for(probe);
        if self.payoff.sampling
            && self.slots[slot].is_none()
            && self.stored >= self.slots.len() / SAMPLE_ONE_IN as usize
        {
            // While sampling, a sixteenth of the slots is enough to see hits come back.
            return;
        }
        let bytes: Box<[u8]> = [probe.key(), response].concat().into();
        let entry = Entry {
            hash: probe.hash,
            bytes,
            key_len: probe.key_len,
            validity,
        };
        if self.slots[slot].replace(entry).is_none() {
            self.stored += 1;
        }
    }

    /// `Self::store_if_seen` for a probed request.
    pub fn offer_if_seen(&mut self, probe: &Probe, response: &[u8], validity: Validity) {
        if self.seen.check_and_mark(probe.hash) {
            self.offer(probe, response, validity);
        }
    }

    /// Number of cached responses.
    pub fn len(&self) -> usize {
        self.stored
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.stored == 0
    }

    /// Where the set of slots a key with `hash` may be in starts.
    fn set_start(&self, hash: u64) -> usize {
        // The high bits: the doorkeeper takes its bit from the low ones.
        let sets = self.slots.len() / WAYS;
        ((hash >> 32) as usize & (sets - 1)) * WAYS
    }

    fn set_of(&self, hash: u64) -> &[Option<Entry>] {
        let start = self.set_start(hash);
        &self.slots[start..start + WAYS]
    }

    /// The slot holding the probe's key, if any.
    fn find(&self, probe: &Probe) -> Option<usize> {
        let start = self.set_start(probe.hash);
        (start..start + WAYS).find(|&slot| {
            self.slots[slot]
                .as_ref()
                .is_some_and(|entry| entry.hash == probe.hash && entry.key() == probe.key())
        })
    }

    /// The slot a new entry for the probe's key goes to: the key's own, else a free one of its
    /// set, else the set's slots in turn.
    fn slot_for(&mut self, probe: &Probe) -> usize {
        if let Some(slot) = self.find(probe) {
            return slot;
        }
        let start = self.set_start(probe.hash);
        if let Some(free) = (start..start + WAYS).find(|&slot| self.slots[slot].is_none()) {
            return free;
        }
        self.evictions = self.evictions.wrapping_add(1);
        start + self.evictions % WAYS
    }
}

impl Probe {
    /// The probe of a plain query, with no sampling and no prefetch.
    #[cfg(any(test, feature = "testing"))]
    fn of(hasher: &KeyHasher, request: &[u8]) -> Option<Self> {
        let mut probe = Self::default();
        probe.read(hasher, request).then_some(probe)
    }

    /// Reads `request` into this probe (in place: a key is a few hundred bytes, not worth
    /// moving); false, leaving the probe meaningless, when it is not a plain query.
    fn read(&mut self, hasher: &KeyHasher, request: &[u8]) -> bool {
        let Some(plain) = plain(request) else {
            return false;
        };
        let key_len = key_of(&plain, &mut self.key).len();
        self.hash = hasher.hash_one(&self.key[..key_len]);
        self.key_len = key_len as u16;
        self.question_len = plain.question.len() as u16;
        true
    }
}

impl Default for Probe {
    /// A probe of nothing yet, for [`AnswerCache::probe`] to read a query into.
    fn default() -> Self {
        Self {
            hash: 0,
            key: [0; MAX_KEY],
            key_len: 0,
            question_len: 0,
        }
    }
}

/// Remembers, roughly, which questions were offered lately: one bit per hash, all cleared
/// after [`SEEN_RESET`] new marks.
#[derive(Debug)]
struct Doorkeeper {
    bits: Box<[u64]>,
    marks: usize,
}

impl Default for Doorkeeper {
    fn default() -> Self {
        Self {
            bits: vec![0; SEEN_BITS / 64].into_boxed_slice(),
            marks: 0,
        }
    }
}

impl Doorkeeper {
    /// Whether `hash`'s bit was set; sets it.
    fn check_and_mark(&mut self, hash: u64) -> bool {
        let bit = (hash % SEEN_BITS as u64) as usize;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        if self.bits[word] & mask != 0 {
            return true;
        }
        if self.marks >= SEEN_RESET {
            self.bits.fill(0);
            self.marks = 0;
        }
        self.bits[word] |= mask;
        self.marks += 1;
        false
    }
}

/// What a replayed response to `probe`'s question was, for the metrics (read from its header
/// and the question's type: no name to walk).
pub fn outcome_of(response: &[u8], probe: &Probe) -> QueryOutcome {
    let byte = |i: usize| response.get(i).copied().unwrap_or(0);
    let type_at = HEADER_LEN + usize::from(probe.question_len) - 4;
    let qtype = RecordType::from(u16::from_be_bytes([byte(type_at), byte(type_at + 1)]));
    let rcode = ResponseCode::from(0, byte(3) & 0x0f);
    let answers = u16::from_be_bytes([byte(6), byte(7)]);
    QueryOutcome {
        qtype: Some(qtype),
        rcode: Some(rcode),
        truncated: byte(2) & 0x02 != 0,
        nodata: rcode == ResponseCode::NoError && answers == 0,
    }
}

/// Puts the request's ID, RD and CD bits and question bytes into a cached response.
fn patch(response: &mut [u8], request: &[u8], question_len: usize) {
    response[0] = request[0];
    response[1] = request[1];
    response[2] = (response[2] & !RD) | (request[2] & RD);
    response[3] = (response[3] & !CD) | (request[3] & CD);
    let question = HEADER_LEN..HEADER_LEN + question_len;
    response[question.clone()].copy_from_slice(&request[question]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SrvTargetStyle;
    use crate::dns::wire::reader::tests::query;
    use crate::index::{Index, IndexWriter};
    use crate::model::{AddressFamily, Endpoint, EndpointSlice, Service, ServiceKey, ServiceKind};
    use std::sync::Arc;

    const NAME: &[u8] = b"\x05KuBiA\x07default\x03svc\x00";

    #[test]
    fn keys_ignore_case_and_patching_restores_it() {
        let lower = query(b"\x05kubia\x07default\x03svc\x00", None);
        let mixed = query(NAME, None);
        let (mut a, mut b) = ([0u8; MAX_KEY], [0u8; MAX_KEY]);
        assert_eq!(
            key_of(&plain(&lower).unwrap(), &mut a),
            key_of(&plain(&mixed).unwrap(), &mut b)
        );
        let mut cache = AnswerCache::new(4);
        let mut response = lower.clone();
        response[2] = 0x84; // QR AA, RD clear
        response.extend_from_slice(b"answers");
        cache.store(&lower, &response, Validity::Generation(7));
        let mut out = Vec::new();
        let mut asked = mixed.clone();
        asked[0] = 0x11;
        asked[3] |= CD;
        assert!(cache.answer(&asked, &mut out, 7));
        assert_eq!(&out[..2], &[0x11, 0xcd]);
        assert_eq!(out[2], 0x85, "RD copied from the request");
        assert_eq!(out[3] & CD, CD);
        assert_eq!(&out[12..12 + NAME.len()], NAME, "question echoed as sent");
        assert!(out.ends_with(b"answers"));
    }

    #[test]
    fn an_answer_stored_under_a_serial_ends_when_the_serial_moves() {
        let request = query(NAME, None);
        let mut cache = AnswerCache::new(4);
        cache.store(&request, &request, Validity::Generation(1));
        let mut out = Vec::new();
        assert!(cache.answer(&request, &mut out, 1));
        assert!(!cache.answer(&request, &mut out, 2));
        assert!(cache.is_empty(), "the stale entry is dropped");
    }

    fn published(writer: &mut IndexWriter, index: &Index, ip: &str) -> Arc<ServiceRecords> {
        let key = ServiceKey::new("default", "kubia");
        writer.apply_service(Service {
            bootstrap: Default::default(),
            key: key.clone(),
            kind: ServiceKind::Headless,
            ports: vec![],
        });
        writer.apply_slice(EndpointSlice {
            name: "kubia-1".into(),
            service: key,
            family: AddressFamily::Ipv4,
            ports: vec![],
            endpoints: vec![Endpoint {
                terminating: false,
                addresses: vec![ip.parse().unwrap()],
                ready: true,
                hostname: None,
                pod_name: None,
            }],
        });
        index.service("default", "kubia").unwrap()
    }

    /// A cache holding an answer (the request itself, as bytes go) to a query for `NAME`
    /// computed from `records`; and that query.
    fn holding_an_answer_from(records: &ServiceRecords) -> (AnswerCache, Vec<u8>) {
        let request = query(NAME, None);
        let mut cache = AnswerCache::new(4);
        cache.store(&request, &request, Validity::records(records));
        (cache, request)
    }

    #[test]
    fn an_answer_stored_with_its_records_ends_when_they_are_replaced() {
        let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
        let old = published(&mut writer, &index, "10.0.0.1");
        let (mut cache, request) = holding_an_answer_from(&old);
        let mut out = Vec::new();
        let generation = index.generation();
        assert!(cache.answer(&request, &mut out, generation));
        assert!(
            cache.answer(&request, &mut out, generation + 1),
            "other changes to the index leave it valid"
        );
        // `old` stays alive, as in a reader still answering from it: only the retired mark
        // tells the cache.
        let new = published(&mut writer, &index, "10.0.0.2");
        assert!(old.is_retired() && !new.is_retired());
        assert!(!cache.answer(&request, &mut out, index.generation()));
        assert!(cache.is_empty());
        cache.store(&request, &request, Validity::records(&new));
        drop(new);
        writer.delete_service(&ServiceKey::new("default", "kubia"));
        assert!(
            !cache.answer(&request, &mut out, index.generation()),
            "records gone with their Service"
        );
    }

    #[test]
    fn an_answer_from_records_dropped_unretired_is_not_replayed() {
        let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
        let records = published(&mut writer, &index, "10.0.0.1");
        let (mut cache, request) = holding_an_answer_from(&records);
        let mut out = Vec::new();
        assert!(cache.answer(&request, &mut out, index.generation()));
        // The whole index goes away (say, a worker torn down) without the writer retiring
        // anything: the records' last owner drops them, and that alone ends the answer.
        let generation = index.generation();
        drop((index, writer));
        assert!(!records.is_retired(), "not retired while alive");
        drop(records);
        assert!(!cache.answer(&request, &mut out, generation));
    }

    #[test]
    fn answers_cheap_to_compute_are_kept_only_for_questions_seen_before() {
        let request = query(NAME, None);
        let mut cache = AnswerCache::new(4);
        cache.store_if_seen(&request, &request, Validity::Generation(1));
        assert!(cache.is_empty(), "first offer: only marked");
        cache.store_if_seen(&request, &request, Validity::Generation(1));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn the_doorkeeper_forgets_after_its_reset_count() {
        let mut seen = Doorkeeper::default();
        assert!(!seen.check_and_mark(7));
        assert!(seen.check_and_mark(7));
        assert!(seen.check_and_mark(7 + SEEN_BITS as u64), "same bit");
        for other in 0..SEEN_RESET as u64 - 1 {
            assert!(!seen.check_and_mark(1000 + other));
        }
        assert!(seen.check_and_mark(7), "still within the window");
        assert!(!seen.check_and_mark(999), "this mark starts over");
        assert!(!seen.check_and_mark(7), "forgotten");
    }

    #[test]
    fn lookups_that_rarely_hit_are_sampled_until_hits_come_back() {
        let mut cache = AnswerCache::new(DEFAULT_CAPACITY);
        let mut out = Vec::new();
        // Names asked once each: nothing is ever replayed.
        let distinct = |i: u32| query(format!("\x06n{i:05}\x00").as_bytes(), None);
        let mut skipped = 0;
        let mut probe = Probe::default();
        for i in 0..3 * PAYOFF_WINDOW {
            let request = distinct(i);
            if cache.probe(&request, &mut probe) {
                assert!(
                    !cache.replay(&probe, &request, &mut out, 1),
                    "nothing was stored"
                );
                cache.offer(&probe, &request, Validity::Generation(1));
            } else {
                skipped += 1;
            }
        }
        assert!(cache.is_sampling());
        assert!(
            cache.len() <= DEFAULT_CAPACITY / SAMPLE_ONE_IN as usize,
            "sampling frees the table and fills a sixteenth of it at most: {}",
            cache.len()
        );
        let sampled = 2 * PAYOFF_WINDOW - skipped;
        assert!(
            sampled > 2 * PAYOFF_WINDOW / 32 && sampled < 2 * PAYOFF_WINDOW / 8,
            "about one in sixteen sampled after the first window: {sampled}"
        );
        // A name asked over and over: the sampled lookups hit, and within a window or two of
        // them the cache is looked up for every query again.
        let hot = query(NAME, None);
        cache.store(&hot, &hot, Validity::Generation(1));
        let mut replayed = 0;
        for _ in 0..(2 * PAYOFF_WINDOW) * SAMPLE_ONE_IN as u32 * 2 {
            if cache.probe(&hot, &mut probe) && cache.replay(&probe, &hot, &mut out, 1) {
                replayed += 1;
                assert_eq!(out, hot, "a sampled replay is still a replay");
            }
            if !cache.is_sampling() {
                break;
            }
        }
        assert!(!cache.is_sampling(), "hits came back, sampling did not end");
        assert!(replayed > PAYOFF_WINDOW / 2, "{replayed} sampled replays");
        for _ in 0..100 {
            assert!(cache.probe(&hot, &mut probe), "every query probed again");
            assert!(cache.replay(&probe, &hot, &mut out, 1));
        }
        // `answer` itself always looks up.
        assert!(cache.answer(&hot, &mut out, 1));
    }

    #[test]
    fn the_cache_is_bounded_and_holds_a_key_once() {
        let mut cache = AnswerCache::new(WAYS);
        let mut out = Vec::new();
        let requests: Vec<Vec<u8>> = (0..20)
            .map(|i| query(format!("\x03n{i:02}\x00").as_bytes(), None))
            .collect();
        for request in &requests {
            let mut response = request.clone();
            response[2] |= 0x80;
            cache.store(request, &response, Validity::Generation(1));
            let held = cache.len();
            cache.store(request, &response, Validity::Generation(1));
            assert_eq!(cache.len(), held, "a key stored again replaces itself");
            assert!(cache.len() <= WAYS);
            assert!(
                cache.answer(request, &mut out, 1),
                "the newest entry is kept"
            );
            assert_eq!(out, response);
        }
        assert_eq!(cache.len(), WAYS, "full");
    }
}
