//! The UDP transport: a fixed number of receive loops per socket, no task per packet, each
//! with its own cache of encoded answers (the fast path, `fast.rs`).
//!
//! With response rate limiting on, each response (replayed or not) passes
//! [`RateLimiter::filter`] right before it is sent; with it off, that costs one `if`.
//!
//! Invariant: an error from one datagram (receive, send) never ends a loop; only the shutdown
//! token does.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::fast::{AnswerCache, DEFAULT_CAPACITY};
use super::message::{Responder, Transport};
use super::ratelimit::RateLimiter;

/// Largest UDP datagram read; anything longer arrives cut and gets FORMERR.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// Answers datagrams on `socket` until `shutdown` is cancelled.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    limiter: Option<Arc<RateLimiter>>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
    let mut cache = AnswerCache::new(DEFAULT_CAPACITY);
    let mut replayed = Vec::with_capacity(512);
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = shutdown.cancelled() => return,
        };
        let (length, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here on some systems: not fatal.
                debug!(%error, "udp receive failed");
                continue;
            }
        };
        let request = &buffer[..length];
        let Some(response) = answer(&responder, &mut cache, request, peer, &mut replayed) else {
            continue;
        };
        let response = match &limiter {
            None => Cow::Borrowed(response),
            Some(limiter) => match limiter.filter(peer.ip(), response) {
                Some(limited) => limited,
                None => continue,
            },
        };
        if let Err(error) = socket.send_to(&response, peer).await {
            debug!(%error, %peer, "udp send failed");
        }
    }
}

/// The response to one datagram: replayed from `cache` when it can be, else from the general
/// path (and then cached). `replayed` is the buffer a replay is written into.
fn answer<'a>(
    responder: &Responder,
    cache: &mut AnswerCache,
    request: &[u8],
    peer: SocketAddr,
    replayed: &'a mut Vec<u8>,
) -> Option<&'a [u8]> {
    let index = responder.index();
    if !index.is_synced() {
        *replayed = responder.respond(request, peer, Transport::Udp)?;
        return Some(replayed);
    }
    let started = Instant::now();
    let serial = cache.sync(index.serial());
    if cache.answer(request, replayed) {
        responder.record_replayed(replayed, started.elapsed());
        return Some(replayed);
    }
    *replayed = responder.respond(request, peer, Transport::Udp)?;
    cache.store(request, replayed, serial);
    Some(replayed)
}
