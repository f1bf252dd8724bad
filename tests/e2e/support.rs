//! Shared test support: start a server on 127.0.0.1 port 0, and a small DNS client that speaks
//! real UDP and TCP (built on hickory-proto's message codec).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use peerdns::app::{Running, start};
use peerdns::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a test waits for one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// Starts `command` (the binary, with its arguments) and returns the first line it logs on
/// stderr, then kills it: stdout is discarded, stderr is a pipe (not a terminal).
pub fn first_log_line(command: &mut std::process::Command) -> String {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let first = BufReader::new(stderr)
        .lines()
        .next()
        .expect("a log line")
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    first
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config serving `cluster_file` on 127.0.0.1 port 0 with a fast poll.
pub fn config_for(cluster_file: &Path) -> Config {
    let mut config = Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.dns.workers = 2;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.source.file = cluster_file.to_path_buf();
    config.source.poll_interval_ms = 50;
    config
}

/// Starts a server on `cluster_file` with default settings.
pub async fn serve_file(cluster_file: &Path) -> Running {
    start(&config_for(cluster_file))
        .await
        .expect("server starts")
}

/// The transport a test query goes over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Over {
    Udp,
    Tcp,
}

/// A query to send.
#[derive(Clone, Debug)]
pub struct Ask {
    pub name: String,
    pub rtype: RecordType,
    /// EDNS payload size to advertise; `None` sends no OPT record.
    pub edns: Option<u16>,
}

impl Ask {
    pub fn new(name: &str, rtype: RecordType) -> Self {
        Self {
            name: name.to_string(),
            rtype,
            edns: Some(1232),
        }
    }

    pub fn message(&self, id: u16) -> Message {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        let name = Name::from_ascii(&self.name).expect("valid query name");
        message.add_query(Query::query(name, self.rtype));
        if let Some(size) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            message.edns = Some(edns);
        }
        message
    }
}

/// Sends raw bytes over UDP and returns the raw reply, or `None` on timeout.
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    udp_raw_wait(server, bytes, ANSWER_TIMEOUT).await
}

pub async fn udp_raw_wait(server: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(bytes, server).await.unwrap();
    let mut buffer = vec![0u8; 65535];
    let received = tokio::time::timeout(wait, socket.recv_from(&mut buffer)).await;
    let (length, _) = received.ok()?.ok()?;
    buffer.truncate(length);
    Some(buffer)
}

/// Sends one length-prefixed message over a new TCP connection and returns the reply.
pub async fn tcp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(server).await.unwrap();
    tcp_exchange(&mut stream, bytes).await
}

/// Sends one length-prefixed message on `stream` and reads one reply.
pub async fn tcp_exchange(stream: &mut TcpStream, bytes: &[u8]) -> Option<Vec<u8>> {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.ok()?;
    let read = async {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.ok()?;
        let mut reply = vec![0u8; u16::from_be_bytes(prefix) as usize];
        stream.read_exact(&mut reply).await.ok()?;
        Some(reply)
    };
    tokio::time::timeout(ANSWER_TIMEOUT, read).await.ok()?
}

/// Asks `ask` over `over` and decodes the reply; panics when none comes.
pub async fn query(server: SocketAddr, ask: &Ask, over: Over) -> Message {
    let id = rand_id(&ask.name);
    let bytes = ask.message(id).to_vec().unwrap();
    let reply = match over {
        Over::Udp => udp_raw(server, &bytes).await,
        Over::Tcp => tcp_raw(server, &bytes).await,
    };
    let reply =
        reply.unwrap_or_else(|| panic!("no answer to {} {} over {over:?}", ask.name, ask.rtype));
    let message = Message::from_vec(&reply).expect("reply decodes");
    assert_eq!(message.metadata.id, id, "reply id");
    message
}

fn rand_id(seed: &str) -> u16 {
    let mut hash: u16 = 0x5a5a;
    for byte in seed.bytes() {
        hash = hash.rotate_left(5) ^ u16::from(byte);
    }
    hash
}

/// The reverse-lookup name of an address (`in-addr.arpa.` or `ip6.arpa.`).
pub fn reverse_name(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        std::net::IpAddr::V6(v6) => {
            let nibbles: Vec<String> = v6
                .octets()
                .iter()
                .rev()
                .flat_map(|byte| [byte & 0xf, byte >> 4])
                .map(|nibble| format!("{nibble:x}"))
                .collect();
            format!("{}.ip6.arpa.", nibbles.join("."))
        }
    }
}
