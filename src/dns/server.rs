//! The UDP and TCP transports: sockets in, [`Responder`] in the middle, bytes out.
//!
//! Servers take sockets bound by the caller ([`Listeners::bind`]) and a shutdown token, so tests
//! bind 127.0.0.1 port 0. UDP runs a fixed number of receive loops per socket (no task per
//! packet); TCP runs one task per connection, answering queries in order, closing a connection
//! idle longer than the configured timeout or sending a message whose header cannot be read.
//!
//! Invariant: no error from one client (a bad packet, a reset connection) stops a loop; only the
//! shutdown token does.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::message::{Responder, Transport};

/// Largest UDP datagram read; anything longer arrives cut and gets FORMERR.
const UDP_RECEIVE_BUFFER: usize = 4096;

/// Bound UDP sockets and TCP listeners, one pair per listen address.
#[derive(Debug)]
pub struct Listeners {
    /// UDP sockets.
    pub udp: Vec<Arc<UdpSocket>>,
    /// TCP listeners.
    pub tcp: Vec<TcpListener>,
}

impl Listeners {
    /// Binds UDP and TCP on each address. Port 0 picks a free port, the same for both.
    pub async fn bind(addresses: &[SocketAddr]) -> io::Result<Self> {
        let mut listeners = Listeners {
            udp: Vec::new(),
            tcp: Vec::new(),
        };
        for address in addresses {
            let (udp, tcp) = bind_pair(*address).await?;
            listeners.udp.push(Arc::new(udp));
            listeners.tcp.push(tcp);
        }
        Ok(listeners)
    }

    /// The addresses actually bound (with the chosen ports), in listen order.
    pub fn local_addresses(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }
}

async fn bind_pair(address: SocketAddr) -> io::Result<(UdpSocket, TcpListener)> {
    let attempts = if address.port() == 0 { 20 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(address)
            .await
            .map_err(|e| annotate(e, "udp", address))?;
        let bound = udp.local_addr()?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(error) => last_error = Some(annotate(error, "tcp", bound)),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("no port found")))
}

fn annotate(error: io::Error, transport: &str, address: SocketAddr) -> io::Error {
    io::Error::new(
        error.kind(),
        format!("cannot bind {transport} {address}: {error}"),
    )
}

/// Transport settings.
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    /// Receive loops per UDP socket.
    pub udp_loops: usize,
    /// Idle time after which a TCP connection is closed.
    pub tcp_idle_timeout: Duration,
}

/// Serves every listener until `shutdown` is cancelled, then waits for in-flight work.
pub async fn serve(
    listeners: Listeners,
    responder: Arc<Responder>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    for socket in listeners.udp {
        for _ in 0..settings.udp_loops.max(1) {
            let (socket, responder, shutdown) =
                (socket.clone(), responder.clone(), shutdown.clone());
            tasks.spawn(udp_loop(socket, responder, shutdown));
        }
    }
    for listener in listeners.tcp {
        let (responder, shutdown) = (responder.clone(), shutdown.clone());
        tasks.spawn(tcp_accept_loop(
            listener,
            responder,
            settings.tcp_idle_timeout,
            shutdown,
        ));
    }
    while tasks.join_next().await.is_some() {}
}

async fn udp_loop(socket: Arc<UdpSocket>, responder: Arc<Responder>, shutdown: CancellationToken) {
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

async fn tcp_accept_loop(
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
