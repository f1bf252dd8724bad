//! The UDP transport: a fixed number of receive loops per socket, no task per packet.
//!
//! Invariant: an error from one datagram (receive, send) never ends a loop; only the shutdown
//! token does.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::message::{Responder, Transport};

/// Largest UDP datagram read; anything longer arrives cut and gets FORMERR.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// Answers datagrams on `socket` until `shutdown` is cancelled.
pub async fn serve_udp(
    socket: Arc<UdpSocket>,
    responder: Arc<Responder>,
    shutdown: CancellationToken,
) {
    let mut buffer = vec![0u8; UDP_RECEIVE_BUFFER];
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
        let Some(response) = responder.respond(&buffer[..length], peer, Transport::Udp) else {
            continue;
        };
        if let Err(error) = socket.send_to(&response, peer).await {
            debug!(%error, %peer, "udp send failed");
        }
    }
}
