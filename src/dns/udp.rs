//! The UDP transport: one socket and one thread per worker, batched system calls, and the
//! worker's fast paths ([`FastPath`]): a cache of encoded answers (`fast.rs`) and the direct
//! answerer (`direct/`).
//!
//! ```text
//!  worker thread k:  SO_REUSEPORT socket k --recvmmsg(64)--> answer_batch:
//!                       1. each datagram: probe the answer cache (hash, ask the CPU for its
//!                          set of slots), then ask for the entries found
//!                       2. each: replay, else read it (direct path) and ask for its
//!                          Service's map entry
//!                       3. each read one: ask for its Service's records (the entry has
//!                          arrived), then look them up and ask for their arrays (then, for
//!                          SRV, for the ports those arrays point at)
//!                       4. each left: write it (direct path), else general path (Responder)
//!                       --> the batch's reused reply buffers
//!                    --sendmmsg--> clients, then under load a short hold (below)
//! ```
//!
//! The kernel spreads datagrams over the workers' sockets; no task is spawned per packet, and
//! the steady state takes no lock of its own and allocates no reply (the fast paths are the
//! worker's own; the index is read through an atomic serial and short shard read locks of
//! its map, one step of a lookup at a time). The stages exist
//! for the CPU's caches: on a large cluster a Service's entry and records are rarely cached,
//! and a batch's loads, started together, overlap. With response rate limiting on, each
//! response (replayed or not) passes [`RateLimiter::filter`] right before it is sent; with it
//! off, that costs one `if`. The fast paths' answers are counted once per batch, after its
//! send, each with the batch's time from arrival to send (what the client waited on the
//! server): the clock is read twice per batch, not per query.
//!
//! Receive coalescing ([`holds_after`], `dns.udp_coalesce_us`): under sustained load, a worker
//! whose receive brought at least [`COALESCE_MIN`] datagrams, as did the receive before it,
//! and emptied the socket (fewer than a full batch) sleeps that long after sending the
//! replies, before the next receive, so that the next wakeup finds more queries waiting. Each
//! wakeup (the interrupt, two context switches, the system calls around them; in a virtual
//! machine the costliest part of a light batch) is then shared by more queries: the same idea
//! as a network card's interrupt moderation. It costs queries arriving during the hold up to
//! that much latency, and only under load: at a light load (5k queries per second: one or two
//! datagrams per receive) a stall can let eight pile up, but the receive after them is light
//! again, so the worker does not hold; a worker that fills its batch (a flood, more already
//! queued) never holds.
//!
//! Invariants: an error from one datagram never ends a worker; only shutdown does, noticed
//! within [`SHUTDOWN_POLL`] while idle (plus at most one hold); every query received is
//! counted once; a datagram's answer does not depend on the others in its batch.

use std::borrow::Cow;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::Authority;
use super::direct::{Direct, Prepared};
use super::fast::{AnswerCache, DEFAULT_CAPACITY, Probe, Validity, outcome_of};
use super::message::{Responder, Transport};
use super::ratelimit::RateLimiter;
use crate::index::ServiceRecords;
use crate::metrics::QueryOutcome;
use crate::sys::batch::{BATCH, Batch, Sender, send_unfragmented_v4};
use crate::sys::timer::set_timer_slack;

/// The largest UDP response size (`dns.max_udp_payload`) for which responses are sent with
/// the Don't Fragment bit: 1232 bytes fit every path of an IPv6-capable network (1280-byte
/// minimum MTU, less 48 bytes of headers), so no response can be refused for its size.
pub const UNFRAGMENTED_PAYLOAD: u16 = 1232;

/// How long an idle worker waits for a datagram before checking for shutdown.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// The timer slack of a worker that holds: its holds last what `dns.udp_coalesce_us` says,
/// not up to the kernel's default 50 us more.
const HOLD_SLACK: Duration = Duration::from_micros(1);

/// Fewest datagrams each of two receives in a row must bring for the worker to hold before the
/// next: fewer means a light load, where a hold would only add latency.
pub const COALESCE_MIN: usize = 8;

/// Whether a worker whose last two receives brought `before` and then `last` datagrams holds
/// before the next receive (module doc, receive coalescing): a socket busy for two receives
/// in a row, which the last one emptied. One busy receive alone is a burst or the pile-up of
/// a stall, not a load; a full batch means more is already queued, so the worker goes
/// straight on.
pub fn holds_after(before: usize, last: usize) -> bool {
    before >= COALESCE_MIN && (COALESCE_MIN..BATCH).contains(&last)
}

/// The receive buffer asked for each UDP socket, in bytes: room for bursts and for what
/// arrives while its worker holds. Linux grants at most twice `net.core.rmem_max` (416 KiB
/// by default, about 500 small datagrams, twice its default buffer) to an unprivileged process;
/// where an operator raised `rmem_max`, up to this.
pub const RECEIVE_BUFFER: usize = 4 << 20;

/// Binds a UDP socket that other workers may bind too (`SO_REUSEPORT`), with a receive buffer
/// of up to [`RECEIVE_BUFFER`].
pub fn bind_shared(address: SocketAddr) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    socket.set_reuse_port(true)?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if let Err(error) = socket.set_recv_buffer_size(RECEIVE_BUFFER) {
        debug!(%error, "cannot size the udp receive buffer; the system default stays");
    }
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// Serves datagrams on `socket` on the calling thread until `shutdown` is cancelled, holding
/// for `coalesce` before a receive when [`holds_after`] says so (zero: never).
pub fn serve_udp(
    socket: UdpSocket,
    responder: Arc<Responder>,
    limiter: Option<Arc<RateLimiter>>,
    coalesce: Duration,
    shutdown: CancellationToken,
) {
    if let Err(error) = socket.set_read_timeout(Some(SHUTDOWN_POLL)) {
        debug!(%error, "cannot set the udp read timeout");
    }
    if socket.local_addr().is_ok_and(|a| a.is_ipv4())
        && responder.max_udp_payload() <= UNFRAGMENTED_PAYLOAD
    {
        // RFC 9715: DNS over UDP should not rely on IP fragments. No response of ours can
        // reach an MTU here, and the kernel skips choosing an IP ID per datagram.
        if let Err(error) = send_unfragmented_v4(&socket) {
            debug!(%error, "cannot set DF on udp responses");
        }
    }
    if !coalesce.is_zero()
        && let Err(error) = set_timer_slack(HOLD_SLACK)
    {
        debug!(%error, "cannot set the udp worker's timer slack; holds may last longer");
    }
    let mut batch = Batch::default();
    let mut sender = Sender::default();
    let mut fast = FastPath::new(responder.authority());
    let mut replies = Replies::default();
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    // Datagrams the previous receive brought (0 after an empty one: a timeout).
    let mut received_before = 0;
    while !shutdown.is_cancelled() {
        let count = match batch.receive(&socket) {
            Ok(count) => count,
            Err(error) => {
                if !matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) {
                    // ICMP errors from earlier sends surface here: not fatal.
                    debug!(%error, "udp receive failed");
                }
                received_before = 0;
                continue;
            }
        };
        let arrived = Instant::now();
        let mut datagrams = [(&[][..], unspecified); BATCH];
        let mut received = 0;
        for datagram in (0..count).filter_map(|i| batch.datagram(i)) {
            datagrams[received] = datagram;
            received += 1;
        }
        let datagrams = &datagrams[..received];
        answer_batch(&responder, &mut fast, datagrams, &mut replies);
        // Move the replies to send to the front, in order, past the rate limiter.
        let mut used = 0;
        for (i, &(_, peer)) in datagrams.iter().enumerate() {
            if !replies.ready[i] {
                continue;
            }
            let reply = &mut replies.slots[i].0;
            if let Some(limiter) = &limiter {
                match limiter.filter(peer.ip(), reply) {
                    Some(Cow::Borrowed(_)) => {}
                    Some(Cow::Owned(slipped)) => *reply = slipped,
                    None => continue,
                }
            }
            replies.slots[i].1 = peer;
            replies.slots.swap(used, i);
            used += 1;
        }
        sender.send_all(&socket, &replies.slots[..used]);
        responder
            .metrics()
            .record_batch(Transport::Udp, &replies.outcomes, arrived.elapsed());
        let hold = !coalesce.is_zero() && holds_after(received_before, count);
        received_before = count;
        if hold {
            responder.metrics().record_udp_hold();
            std::thread::sleep(coalesce);
        }
    }
}

/// One receive loop's fast paths: the answer cache and the direct answerer, and the scratch
/// a batch's questions are read into.
#[derive(Debug)]
pub struct FastPath {
    direct: Direct,
    cache: AnswerCache,
    /// One buffer per datagram of a batch for its lowercased name (kept: no allocation).
    lowered: Vec<Vec<u8>>,
    /// One answer-cache probe per datagram of a batch (kept: read in place).
    probes: Box<[Probe]>,
}

impl FastPath {
    /// Fast paths for the zones and TTLs of `authority`.
    pub fn new(authority: &Authority) -> Self {
        Self {
            direct: Direct::new(authority),
            cache: AnswerCache::new(DEFAULT_CAPACITY),
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

/// Answers a batch of datagrams into `replies` (the reply to datagram `i` in slot `i`), in
/// stages, [`BATCH`] datagrams at a time, each stage for all of them before the next: the
/// answer cache is probed (asking the CPU for each datagram's set of slots, then for the
/// entries found); each datagram is replayed or read by the direct path, which asks for its
/// Service's map entry; the Services' records are asked for, looked up, and their arrays
/// asked for; then each answer is written (by the direct path or, failing that, the general
/// path). On a large cluster those reads rarely hit the CPU's caches: asked for a batch at a
/// time, their waits overlap instead of adding up.
///
/// Every datagram gets the answer it would get alone ([`answer`]): the stages only move the
/// reads earlier. The serial an answer is cached under is read before the batch's first
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

/// [`answer_batch`] for at most [`BATCH`] datagrams, the first of which is datagram `first`.
fn answer_chunk(
    responder: &Responder,
    fast: &mut FastPath,
    datagrams: &[(&[u8], SocketAddr)],
    first: usize,
    replies: &mut Replies,
) {
    let index = responder.index();
    let FastPath {
        direct,
        cache,
        lowered,
        probes,
    } = fast;
    let synced = index.is_synced();
    // Read before anything is computed: an answer stored under it is never newer than it.
    let serial = index.serial();
    // Whether the cache probed a datagram: it does not look up the others (nor keep their
    // answers).
    let mut probed = [false; BATCH];
    if synced {
        for ((probed, probe), (request, _)) in
            probed.iter_mut().zip(probes.iter_mut()).zip(datagrams)
        {
            *probed = cache.probe(request, probe);
        }
    }
    let probe_of = |i: usize| probed[i].then(|| &probes[i]);
    for probe in (0..datagrams.len()).filter_map(probe_of) {
        cache.prefetch(probe);
    }
    let mut prepared: [Option<Prepared<'_>>; BATCH] = std::array::from_fn(|_| None);
    let mut replayed = [false; BATCH];
    // Unsynced, every datagram goes to the general path, which applies R11 (a negative
    // answer is SERVFAIL until the first complete state).
    let stage = datagrams.iter().zip(lowered.iter_mut()).enumerate();
    for (i, ((request, _), scratch)) in stage.filter(|_| synced) {
        let reply = &mut replies.slots[first + i].0;
        if let Some(probe) = probe_of(i)
            && cache.replay(probe, request, reply, serial)
        {
            replies.outcomes.push(outcome_of(reply, probe));
            (replayed[i], replies.ready[first + i]) = (true, true);
            continue;
        }
        prepared[i] = direct.prepare(index, request, scratch);
    }
    for prepared in prepared.iter().flatten() {
        direct.prefetch_records(index, prepared);
    }
    for prepared in prepared.iter_mut().flatten() {
        direct.look_up(index, prepared);
    }
    for prepared in prepared.iter().flatten() {
        direct.prefetch_ports(prepared);
    }
    for (i, &(request, peer)) in datagrams.iter().enumerate() {
        if replayed[i] {
            continue;
        }
        let probe = probe_of(i);
        let reply = &mut replies.slots[first + i].0;
        let written = prepared[i]
            .take()
            .and_then(|prepared| direct.write(index, responder.max_udp_payload(), prepared, reply));
        let answered = match written {
            Some(written) => {
                if let Some(probe) = probe {
                    keep_direct_answer(
                        cache,
                        probe,
                        reply,
                        written.records,
                        &written.outcome,
                        serial,
                    );
                }
                Answered::Fast(written.outcome)
            }
            None => general(
                responder,
                cache,
                probe.map(|p| (p, serial)),
                request,
                peer,
                reply,
            ),
        };
        match answered {
            Answered::Dropped => {}
            Answered::Counted => replies.ready[first + i] = true,
            Answered::Fast(outcome) => {
                replies.outcomes.push(outcome);
                replies.ready[first + i] = true;
            }
        }
    }
}

/// The response to one datagram, as [`answer_batch`] gives it in a batch of one; `None` when
/// the datagram must be dropped. Counts the answer in the metrics.
pub fn answer(
    responder: &Responder,
    fast: &mut FastPath,
    request: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let started = Instant::now();
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
/// positive answer), else while the serial read before it holds.
fn keep_direct_answer(
    cache: &mut AnswerCache,
    probe: &Probe,
    reply: &[u8],
    records: Option<Arc<ServiceRecords>>,
    outcome: &QueryOutcome,
    serial: u32,
) {
    // NXDOMAIN is not kept: those names are often asked once (random or mistyped ones) and
    // cheap to answer again.
    if outcome.rcode == Some(ResponseCode::NXDomain) {
        return;
    }
    let validity = match records {
        Some(records) if !outcome.nodata => Validity::records(&records),
        _ => Validity::Serial(serial),
    };
    cache.offer_if_seen(probe, reply, validity);
}

/// The general path's answer (it counts the query itself), offered to the cache under the
/// serial when the cache probed the request (the index was synced then).
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
            if let Some((probe, serial)) = probed {
                cache.offer(probe, reply, Validity::Serial(serial));
            }
            Answered::Counted
        }
        None => Answered::Dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workers_socket_gets_a_larger_receive_buffer_than_the_default() {
        let ours = bind_shared("127.0.0.1:0".parse().unwrap()).expect("bind");
        let plain = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let size = |socket: &UdpSocket| socket2::SockRef::from(socket).recv_buffer_size();
        let (ours, plain) = (size(&ours).expect("ours"), size(&plain).expect("plain"));
        assert!(ours > plain, "{ours} bytes, the default {plain}");
    }

    #[test]
    fn a_worker_holds_only_after_two_busy_receives_the_last_of_which_emptied_the_socket() {
        for before in [COALESCE_MIN, BATCH / 2, BATCH] {
            for light in 0..COALESCE_MIN {
                assert!(
                    !holds_after(before, light),
                    "{light} datagrams: a light load"
                );
            }
            for busy in COALESCE_MIN..BATCH {
                assert!(holds_after(before, busy), "{before} then {busy}: a load");
            }
            assert!(!holds_after(before, BATCH), "a full batch: more is queued");
        }
        for before in 0..COALESCE_MIN {
            for last in 0..=BATCH {
                assert!(
                    !holds_after(before, last),
                    "{before} then {last}: a burst after a light load"
                );
            }
        }
    }
}
