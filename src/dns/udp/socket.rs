//! A UDP worker's loop: its own `SO_REUSEPORT` socket, batched receives and sends
//! (`sys::batch`), the batch handed to the stages (`stages.rs`), the replies sent past the
//! rate limiter, and receive coalescing (the module doc of `udp` explains it).
//!
//! Invariants: an error from one datagram never ends a worker; only shutdown does, noticed
//! within [`SHUTDOWN_POLL`] while idle (plus at most one hold); the fast paths' answers are
//! counted once per batch, after its send.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::stages::{FastPath, Replies, answer_batch};
use crate::dns::message::{Responder, Transport};
use crate::dns::ratelimit::RateLimiter;
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
    prepare_socket(&socket, responder.max_udp_payload(), coalesce);
    let mut batch = Batch::default();
    let mut sender = Sender::default();
    let mut fast = FastPath::new(&responder);
    let mut replies = Replies::default();
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    // Datagrams the previous receive brought (0 after an empty one: a timeout).
    let mut received_before = 0;
    while !shutdown.is_cancelled() {
        let count = match batch.receive(&socket) {
            Ok(count) => count,
            Err(error) => {
                log_receive_error(&error);
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
        sender.send_all(&socket, replies.to_send(datagrams, limiter.as_deref()));
        responder.metrics().record_batch(
            Transport::Udp,
            replies.fast_outcomes(),
            arrived.elapsed(),
        );
        let hold = !coalesce.is_zero() && holds_after(received_before, count);
        received_before = count;
        if hold {
            responder.metrics().record_udp_hold();
            std::thread::sleep(coalesce);
        }
    }
}

/// Sets up a worker's socket and thread: the idle read timeout (shutdown checks), DF on IPv4
/// responses when every response fits an unfragmented datagram, and a fine timer slack for
/// holds. A setting that fails is logged and left at the system's default.
fn prepare_socket(socket: &UdpSocket, max_udp_payload: u16, coalesce: Duration) {
    if let Err(error) = socket.set_read_timeout(Some(SHUTDOWN_POLL)) {
        debug!(%error, "cannot set the udp read timeout");
    }
    if socket.local_addr().is_ok_and(|a| a.is_ipv4()) && max_udp_payload <= UNFRAGMENTED_PAYLOAD {
        // RFC 9715: DNS over UDP should not rely on IP fragments. No response of ours can
        // reach an MTU here, and the kernel skips choosing an IP ID per datagram.
        if let Err(error) = send_unfragmented_v4(socket) {
            debug!(%error, "cannot set DF on udp responses");
        }
    }
    if !coalesce.is_zero()
        && let Err(error) = set_timer_slack(HOLD_SLACK)
    {
        debug!(%error, "cannot set the udp worker's timer slack; holds may last longer");
    }
}

/// Logs a failed receive other than the idle timeout: ICMP errors from earlier sends surface
/// here, and are not fatal.
fn log_receive_error(error: &io::Error) {
    let idle = matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    );
    if !idle {
        debug!(%error, "udp receive failed");
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
