//! The stages a batch of datagrams goes through on a UDP worker, each over the whole batch
//! before the next (the module doc of `udp` draws them): probe the answer cache, replay or
//! read, look up the Services, write (the direct path, else the general path).
//!
//! Invariants: every datagram gets the answer it would get alone ([`answer_batch`]); the
//! generation an answer is cached under is read before the batch's first lookup; the steady state
//! allocates no reply (buffers are reused from batch to batch).

use std::borrow::Cow;
use std::net::SocketAddr;

use hickory_proto::op::ResponseCode;

use crate::dns::cache::{AnswerCache, DEFAULT_CAPACITY, Probe, Validity, outcome_of};
use crate::dns::direct::{Direct, Prepared, Written};
use crate::dns::message::{Responder, Transport};
use crate::dns::ratelimit::RateLimiter;
use crate::index::Index;
use crate::metrics::QueryOutcome;
use crate::sys::batch::BATCH;

/// One receive loop's fast paths: the answer cache and the direct answerer, the index they
/// read, and the scratch a batch's questions are read into.
#[derive(Debug)]
pub struct FastPath {
    direct: Direct,
    cache: AnswerCache,
    index: Index,
    /// The largest UDP response (the EDNS size offered).
    max_udp_payload: u16,
    /// One buffer per datagram of a batch for its lowercased name (kept: no allocation).
    lowered: Vec<Vec<u8>>,
    /// One answer-cache probe per datagram of a batch (kept: read in place).
    probes: Box<[Probe]>,
}

impl FastPath {
    /// Fast paths answering what `responder` answers (its zones, TTLs, index, UDP size).
    pub fn new(responder: &Responder) -> Self {
        Self {
            direct: Direct::new(responder.authority()),
            cache: AnswerCache::new(DEFAULT_CAPACITY),
            index: responder.index().clone(),
            max_udp_payload: responder.max_udp_payload(),
            lowered: (0..BATCH).map(|_| Vec::with_capacity(256)).collect(),
            probes: (0..BATCH).map(|_| Probe::default()).collect(),
        }
    }

    /// Responses replayed from the answer cache so far.
    pub fn replayed(&self) -> u64 {
        self.cache.hits()
    }

    /// Whether the answer cache looks up only a sample of queries at the moment (its lookups
    /// have not been paying: `AnswerCache::probe`).
    pub fn cache_is_sampling(&self) -> bool {
        self.cache.is_sampling()
    }
}

/// The replies to one batch, by the position of their datagram; buffers are reused from batch
/// to batch, so a steady stream allocates nothing.
#[derive(Debug, Default)]
pub struct Replies {
    /// Reply bytes and destination, one per datagram of the batch (more may be left over
    /// from a larger batch before).
    slots: Vec<(Vec<u8>, SocketAddr)>,
    /// Whether the datagram at the same position got a reply (else it is dropped).
    ready: Vec<bool>,
    /// What the fast paths answered in this batch, for the caller to count: the general
    /// path counts its own.
    outcomes: Vec<QueryOutcome>,
}

impl Replies {
    /// The reply to the batch's datagram `i`, if it got one.
    pub fn reply(&self, i: usize) -> Option<&[u8]> {
        self.ready
            .get(i)
            .copied()
            .unwrap_or(false)
            .then(|| self.slots[i].0.as_slice())
    }

    /// What the fast paths answered in the last batch.
    pub fn fast_outcomes(&self) -> &[QueryOutcome] {
        &self.outcomes
    }

    /// Moves the replies to send to the front, in the order of their datagrams, each past the
    /// rate limiter (when on) and addressed to its datagram's sender; returns them.
    pub fn to_send(
        &mut self,
        datagrams: &[(&[u8], SocketAddr)],
        limiter: Option<&RateLimiter>,
    ) -> &[(Vec<u8>, SocketAddr)] {
        let mut used = 0;
        for (i, &(_, peer)) in datagrams.iter().enumerate() {
            if !self.ready[i] {
                continue;
            }
            let reply = &mut self.slots[i].0;
            if let Some(limiter) = limiter {
                match limiter.filter(peer.ip(), reply) {
                    Some(Cow::Borrowed(_)) => {}
                    Some(Cow::Owned(slipped)) => *reply = slipped,
                    None => continue,
                }
            }
            self.slots[i].1 = peer;
            self.slots.swap(used, i);
            used += 1;
        }
        &self.slots[..used]
    }

    /// Empties the replies for a batch of `count` datagrams.
    fn start(&mut self, count: usize) {
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        if self.slots.len() < count {
            self.slots
                .resize_with(count, || (Vec::with_capacity(512), unspecified));
        }
        self.ready.clear();
        self.ready.resize(count, false);
        self.outcomes.clear();
    }
}

impl Replies {
    /// Marks datagram `i` answered (or dropped) and keeps a fast path's outcome for counting.
    fn record(&mut self, i: usize, answered: Answered) {
        match answered {
            Answered::Dropped => {}
            Answered::Counted => self.ready[i] = true,
            Answered::Fast(outcome) => {
                self.outcomes.push(outcome);
                self.ready[i] = true;
            }
        }
    }
}

/// Answers a batch of datagrams into `replies` (the reply to datagram `i` in slot `i`), in
/// stages, [`BATCH`] datagrams at a time, each stage for all of them before the next: the
/// answer cache is probed (asking the CPU for each datagram's set of slots, then for the
/// entries found); each datagram is replayed or read by the direct path, which asks for its
/// Service's map entry; the Services' records are asked for, looked up, and their arrays
/// asked for; then each answer is written (by the direct path or, failing that, the general
/// path). On a large cluster those reads rarely hit the CPU's caches: asked for a batch at a
/// time, their waits overlap instead of adding up.
///
/// Every datagram gets the answer it would get alone (`answer`): the stages only move the
/// reads earlier. The generation an answer is cached under is read before the batch's first
/// lookup, so it is never newer than what the answer was computed from.
pub fn answer_batch(
    responder: &Responder,
    fast: &mut FastPath,
    datagrams: &[(&[u8], SocketAddr)],
    replies: &mut Replies,
) {
    replies.start(datagrams.len());
    for (chunk, first) in datagrams.chunks(BATCH).zip((0..).step_by(BATCH)) {
        answer_chunk(responder, fast, chunk, first, replies);
    }
}

/// [`answer_batch`] for at most [`BATCH`] datagrams, the first of which is datagram `first`:
/// the four stages, each over every datagram of the chunk before the next. Stages 1 and 3
/// are functions of their own; 2 and 4 stay here, since they fill the per-datagram arrays
/// (`prepared` borrows the batch and the scratch) that the stages after them read.
fn answer_chunk(
    responder: &Responder,
    fast: &mut FastPath,
    datagrams: &[(&[u8], SocketAddr)],
    first: usize,
    replies: &mut Replies,
) {
    let FastPath {
        direct,
        cache,
        index,
        max_udp_payload,
        lowered,
        probes,
    } = fast;
    let (index, max_udp_payload) = (&*index, *max_udp_payload);
    // Unsynced, every datagram goes to the general path, which applies R11 (a negative
    // answer is SERVFAIL until the first complete state): nothing is probed or read.
    let synced = index.is_synced();
    // Read before anything is computed: an answer stored under it is never newer than it.
    let generation = index.generation();
    let probed = probe_stage(cache, probes, datagrams, synced);
    let probes: &[Probe] = probes;
    let probe_of = |i: usize| probed[i].then(|| &probes[i]);
    let mut prepared: [Option<Prepared<'_>>; BATCH] = std::array::from_fn(|_| None);
    let mut replayed = [false; BATCH];
    let stage = datagrams.iter().zip(lowered.iter_mut()).enumerate();
    for (i, ((request, _), scratch)) in stage.filter(|_| synced) {
        // Stage 2: replay, else read the question and ask for its Service's map entry.
        let reply = &mut replies.slots[first + i].0;
        if let Some(probe) = probe_of(i)
            && cache.replay(probe, request, reply, generation)
        {
            replies.outcomes.push(outcome_of(reply, probe));
            (replayed[i], replies.ready[first + i]) = (true, true);
            continue;
        }
        prepared[i] = direct.prepare(index, request, scratch);
    }
    look_up_stage(direct, index, &mut prepared);
    for (i, &(request, peer)) in datagrams.iter().enumerate() {
        if replayed[i] {
            continue;
        }
        // Stage 4: write the answer, by the direct path or else the general one.
        let probe = probe_of(i);
        let reply = &mut replies.slots[first + i].0;
        let written = prepared[i]
            .take()
            .and_then(|prepared| direct.write(index, max_udp_payload, prepared, reply));
        let answered = match written {
            Some(written) => {
                if let Some(probe) = probe {
                    keep_direct_answer(cache, probe, reply, written, generation)
                } else {
                    Answered::Fast(written.outcome)
                }
            }
            None => general(
                responder,
                cache,
                probe.map(|p| (p, generation)),
                request,
                peer,
                reply,
            ),
        };
        replies.record(first + i, answered);
    }
}

/// Stage 1: probes the answer cache for each datagram (asking the CPU for its set of slots),
/// then asks for the entries found. Returns which datagrams were probed: the cache looks up
/// only a sample while it does not pay, and none before sync.
fn probe_stage(
    cache: &mut AnswerCache,
    probes: &mut [Probe],
    datagrams: &[(&[u8], SocketAddr)],
    synced: bool,
) -> [bool; BATCH] {
    let mut probed = [false; BATCH];
    if synced {
        for ((probed, probe), (request, _)) in
            probed.iter_mut().zip(probes.iter_mut()).zip(datagrams)
        {
            *probed = cache.probe(request, probe);
        }
    }
    for (probe, _) in probes.iter().zip(probed).filter(|(_, probed)| *probed) {
        cache.prefetch(probe);
    }
    probed
}

/// Stage 3: for each question read, asks for its Service's records (its map entry has
/// arrived), then takes them and asks for the arrays an answer reads, then (SRV) the ports.
fn look_up_stage(direct: &Direct, index: &Index, prepared: &mut [Option<Prepared<'_>>]) {
    for prepared in prepared.iter().flatten() {
        direct.prefetch_records(index, prepared);
    }
    for prepared in prepared.iter_mut().flatten() {
        direct.look_up(index, prepared);
    }
    for prepared in prepared.iter().flatten() {
        direct.prefetch_ports(prepared);
    }
}

/// The response to one datagram, as [`answer_batch`] gives it in a batch of one (a test
/// seam: the fuzz targets and the equality tests ask one datagram at a time); `None` when
/// the datagram must be dropped. Counts the answer in the metrics.
#[cfg(any(test, feature = "testing"))]
pub fn answer(
    responder: &Responder,
    fast: &mut FastPath,
    request: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let started = std::time::Instant::now();
    let mut replies = Replies::default();
    answer_batch(responder, fast, &[(request, peer)], &mut replies);
    responder
        .metrics()
        .record_batch(Transport::Udp, &replies.outcomes, started.elapsed());
    replies.reply(0)?;
    Some(std::mem::take(&mut replies.slots[0].0))
}

/// What became of a datagram the cache did not replay.
enum Answered {
    /// Nothing to send (the general path counted it).
    Dropped,
    /// Answered by the general path, which counted it.
    Counted,
    /// Answered by the direct path: the caller counts it.
    Fast(QueryOutcome),
}

/// Caches a direct answer worth keeping: valid while the records it read are published (a
/// positive answer), else while the generation read before it holds. The caller counts it.
fn keep_direct_answer(
    cache: &mut AnswerCache,
    probe: &Probe,
    reply: &[u8],
    written: Written,
    generation: u32,
) -> Answered {
    let outcome = written.outcome;
    // NXDOMAIN is not kept: those names are often asked once (random or mistyped ones) and
    // cheap to answer again.
    if outcome.rcode != Some(ResponseCode::NXDomain) {
        let validity = match written.records {
            Some(records) if !outcome.nodata => Validity::records(&records),
            _ => Validity::Generation(generation),
        };
        cache.offer_if_seen(probe, reply, validity);
    }
    Answered::Fast(outcome)
}

/// The general path's answer (it counts the query itself), offered to the cache under the
/// generation when the cache probed the request (the index was synced then).
fn general(
    responder: &Responder,
    cache: &mut AnswerCache,
    probed: Option<(&Probe, u32)>,
    request: &[u8],
    peer: SocketAddr,
    reply: &mut Vec<u8>,
) -> Answered {
    match responder.respond(request, peer, Transport::Udp) {
        Some(response) => {
            *reply = response;
            if let Some((probe, generation)) = probed {
                cache.offer(probe, reply, Validity::Generation(generation));
            }
            Answered::Counted
        }
        None => Answered::Dropped,
    }
}
