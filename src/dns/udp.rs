//! The UDP transport: one socket and one thread per worker, batched system calls, and the
//! worker's fast paths ([`FastPath`]): a cache of encoded answers (`fast.rs`) and the direct
//! answerer (`direct/`).
//!
//! ```text
//!  worker thread k:  SO_REUSEPORT socket k --recvmmsg(32)--> for each datagram:
//!                       replay, else direct path, else general path (Responder)
//!                       --> the batch's reused reply buffers
//!                    --sendmmsg--> clients
//! ```
//!
//! The kernel spreads datagrams over the workers' sockets; no task is spawned per packet, and
//! the steady state takes no lock of its own and allocates no reply (the fast paths are the
//! worker's own; the index is read through an atomic serial and a map read). With response
//! rate limiting on, each response (replayed or not) passes [`RateLimiter::filter`] right
//! before it is sent; with it off, that costs one `if`. The fast paths' answers are counted
//! once per batch, after its send, each with the batch's time from arrival to send (what the
//! client waited on the server): the clock is read twice per batch, not per query.
//!
//! Invariants: an error from one datagram never ends a worker; only shutdown does, noticed
//! within [`SHUTDOWN_POLL`] while idle; every query received is counted once.

use std::borrow::Cow;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::answer::Authority;
use super::direct::Direct;
use super::fast::{AnswerCache, DEFAULT_CAPACITY, Validity, outcome_of};
use super::message::{Responder, Transport};
use super::ratelimit::RateLimiter;
use crate::metrics::QueryOutcome;
use crate::sys::batch::{BATCH, Batch, Sender};

/// How long an idle worker waits for a datagram before checking for shutdown.
pub const SHUTDOWN_POLL: Duration = Duration::from_millis(100);

/// Binds a UDP socket that other workers may bind too (`SO_REUSEPORT`).
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
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// Serves datagrams on `socket` on the calling thread until `shutdown` is cancelled.
pub fn serve_udp(
    socket: UdpSocket,
    responder: Arc<Responder>,
    limiter: Option<Arc<RateLimiter>>,
    shutdown: CancellationToken,
) {
    if let Err(error) = socket.set_read_timeout(Some(SHUTDOWN_POLL)) {
        debug!(%error, "cannot set the udp read timeout");
    }
    let mut batch = Batch::default();
    let mut sender = Sender::default();
    let mut fast = FastPath::new(responder.authority());
    // One reply buffer per datagram of a batch, reused: a steady stream allocates nothing.
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = (0..BATCH)
        .map(|_| (Vec::with_capacity(512), unspecified))
        .collect();
    // What the fast paths answered in this batch: counted once it is sent.
    let mut outcomes: Vec<QueryOutcome> = Vec::with_capacity(BATCH);
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
                continue;
            }
        };
        let arrived = Instant::now();
        outcomes.clear();
        let mut used = 0;
        for i in 0..count {
            let Some((request, peer)) = batch.datagram(i) else {
                continue;
            };
            let (reply, address) = &mut replies[used];
            match answer_into(&responder, &mut fast, request, peer, reply) {
                Answered::Dropped => continue,
                Answered::Counted => {}
                Answered::Fast(outcome) => outcomes.push(outcome),
            }
            if let Some(limiter) = &limiter {
                match limiter.filter(peer.ip(), reply) {
                    Some(Cow::Borrowed(_)) => {}
                    Some(Cow::Owned(slipped)) => *reply = slipped,
                    None => continue,
                }
            }
            *address = peer;
            used += 1;
        }
        sender.send_all(&socket, &replies[..used]);
        responder
            .metrics()
            .record_batch(Transport::Udp, &outcomes, arrived.elapsed());
    }
}

/// One receive loop's fast paths: the answer cache and the direct answerer.
#[derive(Debug)]
pub struct FastPath {
    direct: Direct,
    cache: AnswerCache,
}

impl FastPath {
    /// Fast paths for the zones and TTLs of `authority`.
    pub fn new(authority: &Authority) -> Self {
        Self {
            direct: Direct::new(authority),
            cache: AnswerCache::new(DEFAULT_CAPACITY),
        }
    }

    /// Responses replayed from the answer cache so far.
    pub fn replayed(&self) -> u64 {
        self.cache.hits()
    }
}

/// The response to one datagram: replayed from the cache when it holds a valid answer, else
/// written by the direct path when it takes the question, else by the general path (either
/// then cached). `None` when the datagram must be dropped.
pub fn answer(
    responder: &Responder,
    fast: &mut FastPath,
    request: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let started = Instant::now();
    let mut reply = Vec::new();
    match answer_into(responder, fast, request, peer, &mut reply) {
        Answered::Dropped => return None,
        Answered::Counted => {}
        Answered::Fast(outcome) => {
            responder
                .metrics()
                .record(Transport::Udp, outcome, started.elapsed());
        }
    }
    Some(reply)
}

/// What [`answer_into`] did with a datagram.
enum Answered {
    /// Nothing to send (the general path counted it).
    Dropped,
    /// Answered by the general path, which counted it.
    Counted,
    /// Answered by a fast path: the caller counts it.
    Fast(QueryOutcome),
}

/// [`answer`] into a reused buffer, leaving the fast paths' answers for the caller to count.
fn answer_into(
    responder: &Responder,
    fast: &mut FastPath,
    request: &[u8],
    peer: SocketAddr,
    reply: &mut Vec<u8>,
) -> Answered {
    let index = responder.index();
    if !index.is_synced() {
        return general(responder, request, peer, reply);
    }
    // Read before anything is computed: an answer stored under it is never newer than it.
    let serial = index.serial();
    if fast.cache.answer(request, reply, serial) {
        return Answered::Fast(outcome_of(reply));
    }
    if let Some(written) = fast
        .direct
        .answer(index, responder.max_udp_payload(), request, reply)
    {
        let outcome = written.outcome;
        // NXDOMAIN is not kept: those names are often asked once (random or mistyped ones)
        // and cheap to answer again.
        if outcome.rcode != Some(ResponseCode::NXDomain) {
            let validity = match written.records {
                Some(records) if !outcome.nodata => Validity::records(&records),
                _ => Validity::Serial(serial),
            };
            fast.cache.store_if_seen(request, reply, validity);
        }
        return Answered::Fast(outcome);
    }
    let answered = general(responder, request, peer, reply);
    if matches!(answered, Answered::Counted) {
        fast.cache.store(request, reply, Validity::Serial(serial));
    }
    answered
}

/// The general path's answer (it counts the query itself).
fn general(
    responder: &Responder,
    request: &[u8],
    peer: SocketAddr,
    reply: &mut Vec<u8>,
) -> Answered {
    match responder.respond(request, peer, Transport::Udp) {
        Some(response) => {
            *reply = response;
            Answered::Counted
        }
        None => Answered::Dropped,
    }
}
