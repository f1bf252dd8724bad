//! The UDP and TCP transports: sockets in, [`Responder`] in the middle, bytes out.
//!
//! Servers take sockets bound by the caller ([`Listeners::bind`]) and a shutdown token, so tests
//! bind 127.0.0.1 port 0. UDP runs one thread per worker, each on its own `SO_REUSEPORT` socket
//! bound to the same address (`udp/`, no task per packet), with response rate limiting when
//! configured ([`super::ratelimit`]); TCP runs one task per connection within [`TcpLimits`]
//! shared by every listener ([`super::tcp`]).
//!
//! Invariant: no error from one client (a bad packet, a reset connection) stops a loop; only the
//! shutdown token does. One rate limiter and one set of TCP connection slots serve every
//! listener, so the limits hold whatever the number of listen addresses.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::net::UdpSocket;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::message::Responder;
use super::ratelimit::{RateLimitSettings, RateLimiter};
use super::tcp::{TcpLimits, connection_slots};

/// Bound UDP sockets and TCP listeners, one pair per listen address.
#[derive(Debug)]
pub struct Listeners {
    /// UDP sockets (bound with `SO_REUSEPORT`, so workers can bind more on the same address).
    pub udp: Vec<UdpSocket>,
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
            listeners.udp.push(udp);
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
        let udp = super::udp::bind_shared(address).map_err(|e| annotate(e, "udp", address))?;
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
    /// UDP worker threads (and sockets) per listen address.
    pub udp_loops: usize,
    /// How long a UDP worker holds under sustained load (`udp::holds_after`); zero: never.
    pub udp_coalesce: std::time::Duration,
    /// TCP connection limits: idle timeout, lifetime, connections, queries.
    pub tcp: TcpLimits,
    /// UDP response rate limiting (off when the rate is 0).
    pub rate_limit: RateLimitSettings,
}

/// Serves every listener until `shutdown` is cancelled, then waits for in-flight work.
pub async fn serve(
    listeners: Listeners,
    responder: Arc<Responder>,
    settings: ServerSettings,
    shutdown: CancellationToken,
) {
    let mut tasks = JoinSet::new();
    let limiter = RateLimiter::new(settings.rate_limit, responder.metrics().clone()).map(Arc::new);
    for socket in listeners.udp {
        let address = socket.local_addr();
        let mut sockets = vec![socket];
        for _ in 1..settings.udp_loops.max(1) {
            match address
                .as_ref()
                .map_err(|e| io::Error::new(e.kind(), e.to_string()))
            {
                Ok(address) => match super::udp::bind_shared(*address) {
                    Ok(more) => sockets.push(more),
                    Err(error) => {
                        tracing::warn!(%error, "cannot open another udp socket; fewer udp workers");
                        break;
                    }
                },
                Err(_) => break,
            }
        }
        for socket in sockets {
            let (responder, shutdown) = (responder.clone(), shutdown.clone());
            let (limiter, coalesce) = (limiter.clone(), settings.udp_coalesce);
            // A plain thread, not the runtime's blocking pool: dropping a runtime waits for its
            // blocking tasks, and a worker only ends when the shutdown token is cancelled.
            let (done, finished) = tokio::sync::oneshot::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name("peerdns-udp".into())
                .spawn(move || {
                    super::udp::serve_udp(socket, responder, limiter, coalesce, shutdown);
                    let _ = done.send(());
                });
            match spawned {
                Ok(_) => {
                    tasks.spawn(async move {
                        let _ = finished.await;
                    });
                }
                Err(error) => tracing::error!(%error, "cannot start a udp worker thread"),
            }
        }
    }
    let slots = connection_slots(&settings.tcp);
    for listener in listeners.tcp {
        let (responder, shutdown) = (responder.clone(), shutdown.clone());
        tasks.spawn(super::tcp::serve_tcp(
            listener,
            responder,
            settings.tcp,
            slots.clone(),
            shutdown,
        ));
    }
    while tasks.join_next().await.is_some() {}
}
