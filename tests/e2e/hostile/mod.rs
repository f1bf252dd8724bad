//! Hostile traffic (issue 6): one client misbehaves (idle connections past the limit, a
//! slowloris, bad length prefixes, a connection kept too long, odd EDNS, ANY and truncation
//! floods, a UDP flood under response rate limiting) while every other client keeps being
//! answered. Limits and timeouts are set small through the config so the file runs in seconds.
//!
//! `tcp.rs`: connection limits, timeouts and framing; `udp.rs`: EDNS options, floods and
//! response rate limiting. The helpers below are shared.

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use peerdns::app::{Running, start};
use peerdns::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{Ask, Over, config_for, query, root};

pub(super) const PEERS: &str = "peers.apps.svc.cluster.local.";
pub(super) const BIG: &str = "big.scale.svc.cluster.local.";

/// Starts a server on the rules cluster with 1 s TCP idle timeout and `tweak` applied.
pub(super) async fn serve(tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = config_for(&root().join("tests/clusters/rules.yaml"));
    config.dns.tcp_idle_timeout_secs = 1;
    tweak(&mut config);
    start(&config).await.expect("server starts")
}

/// Another client, over UDP and over a new TCP connection, gets its full answer.
pub(super) async fn others_answered(server: SocketAddr) {
    let ask = Ask::new(PEERS, RecordType::A);
    for over in [Over::Udp, Over::Tcp] {
        let reply = query(server, &ask, over).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 3, "over {over:?}: {reply:?}");
    }
}

/// Waits up to `wait` for the server to close `stream` (end of stream or reset), sending
/// `dribble` one byte at a time every 200 ms meanwhile; returns how long it took.
pub(super) async fn closed_within(
    stream: &mut TcpStream,
    wait: Duration,
    dribble: &[u8],
) -> Option<Duration> {
    let started = Instant::now();
    let mut pending = dribble.iter();
    let mut buffer = [0u8; 512];
    while started.elapsed() < wait {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if let Some(byte) = pending.next() {
                    let _ = stream.write_all(&[*byte]).await;
                }
            }
        }
    }
    None
}

pub(super) fn query_bytes(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    Ask::new(name, rtype).message(id).to_vec().unwrap()
}

/// A UDP client on its own socket bound to `local`.
pub(super) struct UdpClient(UdpSocket);

impl UdpClient {
    pub(super) async fn bind(local: &str) -> Self {
        Self(UdpSocket::bind(local).await.unwrap())
    }

    pub(super) async fn send(&self, server: SocketAddr, bytes: &[u8]) {
        self.0.send_to(bytes, server).await.unwrap();
    }

    pub(super) async fn receive(&self, wait: Duration) -> Option<Message> {
        let mut buffer = vec![0u8; 65535];
        let received = tokio::time::timeout(wait, self.0.recv_from(&mut buffer)).await;
        let (length, _) = received.ok()?.ok()?;
        Some(Message::from_vec(&buffer[..length]).expect("reply decodes"))
    }

    pub(super) async fn ask(&self, server: SocketAddr, bytes: &[u8]) -> Message {
        self.send(server, bytes).await;
        self.receive(Duration::from_secs(3)).await.expect("a reply")
    }
}

/// The query counters, as `/metrics` shows them.
pub(super) fn rendered(server: &Running) -> String {
    let mut out = String::new();
    server.admin.metrics.render(&mut out);
    out
}
