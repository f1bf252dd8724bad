//! The TCP transport (RFC 7766): one task per connection, queries answered in order.
//!
//! A connection is closed when it stays idle longer than the configured timeout, when a
//! message's header cannot be read, or at shutdown (after the query in hand is answered).
//!
//! Invariant: one misbehaving connection never stops the accept loop.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::message::{Responder, Transport};

/// Accepts connections on `listener` until `shutdown` is cancelled, then waits for them.
pub async fn serve_tcp(
    listener: TcpListener,
    responder: Arc<Responder>,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (responder, shutdown) = (responder.clone(), shutdown.clone());
                connections.spawn(async move {
                    if let Err(error) =
                        tcp_connection(stream, peer, &responder, idle_timeout, shutdown).await
                    {
                        debug!(%error, %peer, "tcp connection closed");
                    }
                });
            }
            Err(error) => {
                warn!(%error, "tcp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// Answers length-prefixed queries on one connection, in order (RFC 7766).
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    responder: &Responder,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let mut message = Vec::with_capacity(512);
    loop {
        let mut prefix = [0u8; 2];
        let read = tokio::select! {
            read = tokio::time::timeout(idle_timeout, stream.read_exact(&mut prefix)) => read,
            () = shutdown.cancelled() => return Ok(()),
        };
        match read {
            Err(_elapsed) => return Ok(()),
            Ok(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(result) => result?,
        };
        let length = usize::from(u16::from_be_bytes(prefix));
        message.resize(length, 0);
        tokio::time::timeout(idle_timeout, stream.read_exact(&mut message))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "message body timed out"))??;
        let Some(response) = responder.respond(&message, peer, Transport::Tcp) else {
            return Ok(()); // no header to answer to: the stream cannot be trusted further
        };
        let Ok(length) = u16::try_from(response.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed).await?;
    }
}
