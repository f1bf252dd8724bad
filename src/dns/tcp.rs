//! The TCP transport (RFC 7766): one task per connection, queries answered in order.
//!
//! A connection is closed when it stays idle longer than the idle timeout, when a message's
//! body or a response's write takes longer than that timeout (a slow peer, however it dribbles,
//! gets no more), when its length prefix is below a DNS header's 12 bytes (zero included),
//! when a message's header cannot be read, after its total lifetime, after its query limit, or
//! at shutdown (after the query in hand is answered).
//!
//! At the connection limit a new connection is accepted and closed at once rather than left in
//! the kernel's backlog: its client learns at once (and can retry another server, or UDP)
//! instead of waiting for a slot that an idle peer may hold for the idle timeout, and the
//! backlog never fills with connections nobody will serve.
//!
//! Invariants: one misbehaving connection never stops the accept loop nor delays another
//! connection or UDP; at most `max_connections` connections are served at once over every
//! listener; memory per connection grows only with bytes actually received.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::message::{Responder, Transport};
use super::transfer::{TransferKind, TransferSettings, admit, asks_transfer};
use crate::metrics::TransferOutcome;

/// Smallest message that holds a DNS header.
const HEADER_LENGTH: usize = 12;
/// A receive buffer grown past this by a large message is given back after it.
const RETAINED_BUFFER: usize = 4096;

/// Limits on TCP connections (RFC 7766 leaves them to the server).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpLimits {
    /// Idle time between queries, and the longest a message body or a response write may
    /// take, before the connection is closed.
    pub idle_timeout: Duration,
    /// Connections served at once over every listener; more are accepted and closed at once.
    pub max_connections: usize,
    /// Total lifetime of a connection, however busy.
    pub max_lifetime: Duration,
    /// Queries answered on one connection before it is closed; 0: no limit.
    pub max_queries: u32,
}

/// Why a connection was closed on the server's initiative.
#[derive(Debug, thiserror::Error)]
enum Closed {
    /// The length prefix cannot frame a DNS message.
    #[error("length prefix {0} is shorter than a dns header")]
    ShortMessage(usize),
    /// The message body did not arrive within the idle timeout.
    #[error("message body not received within {0:?}")]
    SlowBody(Duration),
    /// The peer did not read its response within the idle timeout.
    #[error("response not taken within {0:?}")]
    SlowReader(Duration),
    /// A response too large for a TCP frame (never expected: TCP answers are encoded to fit).
    #[error("response of {0} bytes does not fit a tcp frame")]
    Oversized(usize),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The connection slots shared by every TCP listener.
pub fn connection_slots(limits: &TcpLimits) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ))
}

/// Accepts connections on `listener` until `shutdown` is cancelled, then waits for them.
/// A connection is served only while it holds one of `slots`.
pub async fn serve_tcp(
    listener: TcpListener,
    responder: Arc<Responder>,
    limits: TcpLimits,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => match slots.clone().try_acquire_owned() {
                Ok(slot) => {
                    let connection = Connection {
                        peer,
                        responder: responder.clone(),
                        limits,
                        shutdown: shutdown.clone(),
                    };
                    connections.spawn(connection.run(stream, slot));
                }
                Err(_) => reject(stream, peer, &responder),
            },
            Err(error) => {
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Closes a connection accepted over the limit (dropping the stream closes it).
fn reject(stream: TcpStream, peer: SocketAddr, responder: &Responder) {
    drop(stream);
    responder.metrics().record_tcp_rejected();
    debug!(%peer, "tcp connection limit reached: connection closed");
}

/// One accepted connection and what it needs.
struct Connection {
    peer: SocketAddr,
    responder: Arc<Responder>,
    limits: TcpLimits,
    shutdown: CancellationToken,
}

impl Connection {
    /// Serves the connection within its lifetime; `_slot` is given back when it ends.
    async fn run(self, stream: TcpStream, _slot: OwnedSemaphorePermit) {
        let peer = self.peer;
        let served = match Instant::now().checked_add(self.limits.max_lifetime) {
            Some(deadline) => tokio::time::timeout_at(deadline, self.serve(stream))
                .await
                .unwrap_or_else(|_| {
                    debug!(%peer, "tcp connection reached its lifetime");
                    Ok(())
                }),
            None => self.serve(stream).await,
        };
        if let Err(error) = served {
            debug!(%error, %peer, "tcp connection closed");
        }
    }

    /// Answers length-prefixed queries in order (RFC 7766) until a reason to close.
    async fn serve(&self, mut stream: TcpStream) -> Result<(), Closed> {
        let mut message = Vec::with_capacity(512);
        let mut answered: u32 = 0;
        while self.read_message(&mut stream, &mut message).await? {
            if let Some(settings) = self.responder.transfers()
                && let Some(kind) = asks_transfer(&message)
            {
                self.transfer(&mut stream, &message, settings, kind).await?;
                answered = answered.saturating_add(1);
                if self.limits.max_queries != 0 && answered >= self.limits.max_queries {
                    return Ok(());
                }
                continue;
            }
            let Some(response) = self.responder.respond(&message, self.peer, Transport::Tcp) else {
                return Ok(()); // no header to answer to: the stream cannot be trusted further
            };
            self.write_response(&mut stream, &response).await?;
            answered = answered.saturating_add(1);
            if self.limits.max_queries != 0 && answered >= self.limits.max_queries {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Serves one zone transfer request (R14): its messages, or the one response refusing it.
    async fn transfer(
        &self,
        stream: &mut TcpStream,
        request: &[u8],
        settings: &TransferSettings,
        kind: TransferKind,
    ) -> Result<(), Closed> {
        let (authority, index) = (self.responder.authority(), self.responder.index());
        let metrics = self.responder.metrics();
        let peer = self.peer;
        let mut transfer = match admit(authority, index, settings, request, peer) {
            Ok(transfer) => transfer,
            Err(refusal) => {
                let rcode = refusal.get(3).map_or(0, |b| b & 0x0f);
                // Rare and worth an operator's eye: a secondary misconfigured, or a stranger.
                info!(%peer, kind = kind.label(), rcode, "zone transfer refused");
                metrics.record_transfer(kind.label(), TransferOutcome::Refused);
                return self.write_response(stream, &refusal).await;
            }
        };
        let started = Instant::now();
        while let Some(message) = transfer.next_message(authority, index) {
            if let Err(error) = self.write_response(stream, &message).await {
                metrics.record_transfer(kind.label(), TransferOutcome::Aborted);
                return Err(error);
            }
        }
        metrics.record_transfer(kind.label(), TransferOutcome::Complete);
        tracing::info!(
            %peer,
            kind = kind.label(),
            serial = transfer.serial(),
            records = transfer.records_sent(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "zone transfer served"
        );
        Ok(())
    }

    /// Reads one length-prefixed message into `message`; `Ok(false)` when the peer is done
    /// (end of stream, idle timeout, shutdown).
    async fn read_message(
        &self,
        stream: &mut TcpStream,
        message: &mut Vec<u8>,
    ) -> Result<bool, Closed> {
        let idle = self.limits.idle_timeout;
        let mut prefix = [0u8; 2];
        let read = tokio::select! {
            read = tokio::time::timeout(idle, stream.read_exact(&mut prefix)) => read,
            () = self.shutdown.cancelled() => return Ok(false),
        };
        match read {
            Err(_elapsed) => return Ok(false),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Ok(result) => result?,
        };
        let length = usize::from(u16::from_be_bytes(prefix));
        if length < HEADER_LENGTH {
            return Err(Closed::ShortMessage(length));
        }
        if message.capacity() > RETAINED_BUFFER {
            *message = Vec::with_capacity(512);
        }
        message.clear();
        // `take` + `read_to_end`: the buffer grows with what arrives, not with what the
        // prefix promises; one timeout bounds the whole body, however it is dribbled.
        let mut body = (&mut *stream).take(length as u64);
        tokio::time::timeout(idle, body.read_to_end(message))
            .await
            .map_err(|_| Closed::SlowBody(idle))??;
        if message.len() < length {
            return Ok(false); // the peer closed mid-message
        }
        Ok(true)
    }

    /// Writes one response with its length prefix, within the idle timeout.
    async fn write_response(&self, stream: &mut TcpStream, response: &[u8]) -> Result<(), Closed> {
        let length =
            u16::try_from(response.len()).map_err(|_| Closed::Oversized(response.len()))?;
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(response);
        let idle = self.limits.idle_timeout;
        tokio::time::timeout(idle, stream.write_all(&framed))
            .await
            .map_err(|_| Closed::SlowReader(idle))??;
        Ok(())
    }
}
