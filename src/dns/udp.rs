//! The UDP transport: one socket and one thread per worker, batched system calls, and a
//! worker-local cache of encoded answers (the fast path, `fast.rs`).
//!
//! ```text
//!  worker thread k:  SO_REUSEPORT socket k --recvmmsg(32)--> for each datagram:
//!                       fast path (replay) or general path (Responder) --> replies
//!                    --sendmmsg--> clients
//! ```
//!
//! The kernel spreads datagrams over the workers' sockets; no task is spawned per packet, and
//! the steady state takes no lock (the cache is the worker's own; the index is read through
//! an atomic serial and a map read). With response rate limiting on, each response (replayed
//! or not) passes [`RateLimiter::filter`] right before it is sent; with it off, that costs
//! one `if`.
//!
//! Invariants: an error from one datagram never ends a worker; only shutdown does, noticed
//! within [`SHUTDOWN_POLL`] while idle.

use std::borrow::Cow;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::batch::{BATCH, Batch, send_all};
use super::fast::{AnswerCache, DEFAULT_CAPACITY};
use super::message::{Responder, Transport};
use super::ratelimit::RateLimiter;

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
    let mut cache = AnswerCache::new(DEFAULT_CAPACITY);
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
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
        replies.clear();
        for i in 0..count {
            let Some((request, peer)) = batch.datagram(i) else {
                continue;
            };
            let Some(reply) = answer(&responder, &mut cache, request, peer) else {
                continue;
            };
            let reply = match &limiter {
                None => reply,
                Some(limiter) => match limiter.filter(peer.ip(), &reply) {
                    Some(Cow::Borrowed(_)) => reply,
                    Some(Cow::Owned(slipped)) => slipped,
                    None => continue,
                },
            };
            replies.push((reply, peer));
        }
        send_all(&socket, &replies);
    }
}

/// The response to one datagram: replayed from `cache` when it can be, else from the general
/// path (and then cached). `None` when the datagram must be dropped.
pub fn answer(
    responder: &Responder,
    cache: &mut AnswerCache,
    request: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let index = responder.index();
    if !index.is_synced() {
        return responder.respond(request, peer, Transport::Udp);
    }
    let started = Instant::now();
    let serial = cache.sync(index.serial());
    let mut replayed = Vec::new();
    if cache.answer(request, &mut replayed) {
        responder.record_replayed(&replayed, started.elapsed());
        return Some(replayed);
    }
    let response = responder.respond(request, peer, Transport::Udp)?;
    cache.store(request, &response, serial);
    Some(response)
}
