//! Hostile traffic (issue 6): one client misbehaves (idle connections past the limit, a
//! slowloris, bad length prefixes, a connection kept too long, odd EDNS, ANY and truncation
//! floods, a UDP flood under response rate limiting) while every other client keeps being
//! answered. Limits and timeouts are set small through the config so the file runs in seconds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use peerdns::app::{Running, start};
use peerdns::config::Config;
use peerdns::metrics::{SourceView, render};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::support::{Ask, Over, config_for, query, root, tcp_exchange};

const PEERS: &str = "peers.apps.svc.cluster.local.";
const BIG: &str = "big.scale.svc.cluster.local.";

/// Starts a server on the rules cluster with 1 s TCP idle timeout and `tweak` applied.
async fn serve(tweak: impl FnOnce(&mut Config)) -> Running {
    let mut config = config_for(&root().join("tests/clusters/rules.yaml"));
    config.dns.tcp_idle_timeout_secs = 1;
    tweak(&mut config);
    start(&config).await.expect("server starts")
}

/// Another client, over UDP and over a new TCP connection, gets its full answer.
async fn others_answered(server: SocketAddr) {
    let ask = Ask::new(PEERS, RecordType::A);
    for over in [Over::Udp, Over::Tcp] {
        let reply = query(server, &ask, over).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 3, "over {over:?}: {reply:?}");
    }
}

/// Waits up to `wait` for the server to close `stream` (end of stream or reset), sending
/// `dribble` one byte at a time every 200 ms meanwhile; returns how long it took.
async fn closed_within(stream: &mut TcpStream, wait: Duration, dribble: &[u8]) -> Option<Duration> {
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

fn query_bytes(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    Ask::new(name, rtype).message(id).to_vec().unwrap()
}

/// A UDP client on its own socket bound to `local`.
struct UdpClient(UdpSocket);

impl UdpClient {
    async fn bind(local: &str) -> Self {
        Self(UdpSocket::bind(local).await.unwrap())
    }

    async fn send(&self, server: SocketAddr, bytes: &[u8]) {
        self.0.send_to(bytes, server).await.unwrap();
    }

    async fn receive(&self, wait: Duration) -> Option<Message> {
        let mut buffer = vec![0u8; 65535];
        let received = tokio::time::timeout(wait, self.0.recv_from(&mut buffer)).await;
        let (length, _) = received.ok()?.ok()?;
        Some(Message::from_vec(&buffer[..length]).expect("reply decodes"))
    }

    async fn ask(&self, server: SocketAddr, bytes: &[u8]) -> Message {
        self.send(server, bytes).await;
        self.receive(Duration::from_secs(3)).await.expect("a reply")
    }
}

fn rendered(server: &Running) -> String {
    let source = SourceView {
        kind: "file",
        watch: None,
    };
    render(&server.admin.metrics, &server.index, source)
}

#[tokio::test]
async fn idle_connections_past_the_limit_are_closed_at_once_and_others_served() {
    let server = serve(|c| {
        c.dns.tcp_idle_timeout_secs = 30;
        c.limits.tcp_max_connections = 4;
    })
    .await;
    let address = server.addresses[0];
    let mut held = Vec::new();
    for id in 0..4 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let reply = tcp_exchange(&mut stream, &query_bytes(PEERS, RecordType::A, id)).await;
        assert!(
            reply.is_some(),
            "connection {id} within the limit is served"
        );
        held.push(stream);
    }
    for _ in 0..3 {
        let mut extra = TcpStream::connect(address).await.unwrap();
        let closed = closed_within(&mut extra, Duration::from_secs(2), &[]).await;
        assert!(
            closed.is_some(),
            "a connection past the limit is closed at once"
        );
    }
    // UDP and the connections already open are not held up.
    let reply = UdpClient::bind("127.0.0.1:0")
        .await
        .ask(address, &query_bytes(PEERS, RecordType::A, 9))
        .await;
    assert_eq!(reply.answers.len(), 3);
    let again = tcp_exchange(&mut held[0], &query_bytes(PEERS, RecordType::A, 10)).await;
    assert!(again.is_some(), "an open connection keeps being served");
    assert!(server.admin.metrics.tcp_connections_rejected() >= 3);
    assert!(rendered(&server).contains("peerdns_tcp_connections_rejected_total 3"));
    // A slot freed is a slot for the next client.
    drop(held.pop());
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(address).await.unwrap();
        if tcp_exchange(&mut stream, &query_bytes(PEERS, RecordType::A, 11))
            .await
            .is_some()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "freed slot never reused"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn slowloris_is_cut_after_the_idle_timeout_however_it_dribbles() {
    let server = serve(|_| {}).await;
    let address = server.addresses[0];
    // A prefix promising 100 bytes, 10 of them, then one more every 200 ms: the body's one
    // timeout (1 s) bounds it whatever keeps arriving.
    let mut dribbler = TcpStream::connect(address).await.unwrap();
    dribbler.write_all(&[0, 100]).await.unwrap();
    dribbler.write_all(&[0xab; 10]).await.unwrap();
    // A prefix alone, then silence.
    let mut silent = TcpStream::connect(address).await.unwrap();
    silent.write_all(&[0]).await.unwrap();
    let wait = Duration::from_secs(4);
    let (dribbled, stalled, ()) = tokio::join!(
        closed_within(&mut dribbler, wait, &[0xcd; 100]),
        closed_within(&mut silent, wait, &[]),
        others_answered(address),
    );
    for (what, took) in [("dribbling", dribbled), ("half a prefix", stalled)] {
        let took = took.unwrap_or_else(|| panic!("{what} peer never cut"));
        assert!(took < Duration::from_millis(2500), "{what}: {took:?}");
    }
    others_answered(address).await;
    server.stop().await;
}

#[tokio::test]
async fn bad_length_prefixes_close_only_that_connection() {
    let server = serve(|_| {}).await;
    let address = server.addresses[0];
    // Below a header's 12 bytes (zero included): closed at once, the body never read.
    for length in [0u16, 1, 5, 11] {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let mut framed = length.to_be_bytes().to_vec();
        framed.extend(std::iter::repeat_n(0x42, usize::from(length)));
        stream.write_all(&framed).await.unwrap();
        let closed = closed_within(&mut stream, Duration::from_millis(900), &[]).await;
        assert!(
            closed.is_some(),
            "length {length} is closed before the idle timeout"
        );
    }
    // The largest prefix, a little garbage, then nothing: cut by the body timeout.
    let mut oversized = TcpStream::connect(address).await.unwrap();
    oversized.write_all(&[0xff, 0xff]).await.unwrap();
    oversized.write_all(&[0x5a; 1000]).await.unwrap();
    // A full-length garbage message: FORMERR or closed, never a crash.
    let mut garbage = TcpStream::connect(address).await.unwrap();
    let noise: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    if let Some(reply) = tcp_exchange(&mut garbage, &noise).await {
        let reply = Message::from_vec(&reply).expect("reply decodes");
        assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    }
    others_answered(address).await;
    let cut = closed_within(&mut oversized, Duration::from_secs(3), &[]).await;
    assert!(cut.is_some(), "an oversized, unfinished message is cut");
    others_answered(address).await;
    server.stop().await;
}

#[tokio::test]
async fn connection_past_its_lifetime_or_query_limit_is_closed() {
    let server = serve(|c| c.limits.tcp_max_connection_secs = 1).await;
    let address = server.addresses[0];
    // Busy (a query every 200 ms, never idle for the 1 s idle timeout), yet cut at 1 s.
    let mut busy = TcpStream::connect(address).await.unwrap();
    let started = Instant::now();
    let mut answered = 0u16;
    while tcp_exchange(&mut busy, &query_bytes(PEERS, RecordType::A, answered))
        .await
        .is_some()
    {
        answered += 1;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "lifetime not enforced"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(answered >= 3, "served until its lifetime: {answered}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    others_answered(address).await;
    server.stop().await;

    let server = serve(|c| c.limits.tcp_max_queries_per_connection = 3).await;
    let address = server.addresses[0];
    let mut stream = TcpStream::connect(address).await.unwrap();
    for id in 0..3 {
        let reply = tcp_exchange(&mut stream, &query_bytes(PEERS, RecordType::A, id)).await;
        assert!(reply.is_some(), "query {id} answered");
    }
    let fourth = tcp_exchange(&mut stream, &query_bytes(PEERS, RecordType::A, 3)).await;
    assert!(fourth.is_none(), "closed after its query limit");
    others_answered(address).await;
    server.stop().await;
}

/// An EDNS option: code and data.
type EdnsOption = (u16, Vec<u8>);

/// One OPT record: its options, and the rdata length it declares when not the true one.
#[derive(Clone, Copy)]
struct Opt<'a> {
    options: &'a [EdnsOption],
    declared: Option<u16>,
}

fn opt(options: &[EdnsOption]) -> Opt<'_> {
    Opt {
        options,
        declared: None,
    }
}

/// A query for `PEERS` A carrying the OPT records `opts`, built byte by byte.
fn with_edns_options(id: u16, opts: &[Opt<'_>]) -> Vec<u8> {
    let mut bytes = id.to_be_bytes().to_vec();
    bytes.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0]);
    bytes.extend((opts.len() as u16).to_be_bytes());
    for label in PEERS.trim_end_matches('.').split('.') {
        bytes.push(label.len() as u8);
        bytes.extend(label.as_bytes());
    }
    bytes.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    for opt in opts {
        let mut rdata = Vec::new();
        for (code, data) in opt.options {
            rdata.extend(code.to_be_bytes());
            rdata.extend((data.len() as u16).to_be_bytes());
            rdata.extend(data);
        }
        bytes.extend([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]); // root, OPT, 1232, rcode/version/flags
        bytes.extend(opt.declared.unwrap_or(rdata.len() as u16).to_be_bytes());
        bytes.extend(rdata);
    }
    bytes
}

#[tokio::test]
async fn many_or_odd_edns_options_get_an_answer_or_formerr() {
    let server = serve(|_| {}).await;
    let address = server.addresses[0];
    let unknown: Vec<EdnsOption> = (0..50).map(|i| (65001 + i, vec![i as u8; 4])).collect();
    let cookie = vec![(10, vec![7; 8])];
    let server_cookie = vec![(10, vec![7; 24])];
    let bad_cookie = vec![(10, vec![7; 5])];
    let padding = vec![(12, vec![0; 400])];
    let reserved = vec![(0, vec![]), (65535, vec![1, 2, 3])];
    let mixed = vec![
        (10, vec![1; 8]),
        (12, vec![0; 16]),
        (8, vec![0, 1, 24, 0, 10, 1, 0]),
    ];
    let past_the_end = Opt {
        declared: Some(40),
        ..opt(&cookie)
    };
    let cutting_an_option = Opt {
        declared: Some(3),
        ..opt(&cookie)
    };
    // Options are ignored (no cookies are implemented: a malformed one is ignored too); an
    // OPT record that does not parse, or a second one, is FORMERR (RFC 6891).
    use ResponseCode::{FormErr, NoError};
    let cases: Vec<(Vec<Opt<'_>>, ResponseCode)> = vec![
        (vec![opt(&unknown)], NoError),
        (vec![opt(&cookie)], NoError),
        (vec![opt(&server_cookie)], NoError),
        (vec![opt(&bad_cookie)], NoError),
        (vec![opt(&padding)], NoError),
        (vec![opt(&reserved)], NoError),
        (vec![opt(&mixed)], NoError),
        (vec![past_the_end], FormErr),
        (vec![cutting_an_option], FormErr),
        (vec![opt(&cookie), opt(&padding)], FormErr),
    ];
    for (i, (opts, rcode)) in cases.iter().enumerate() {
        let bytes = with_edns_options(i as u16, opts);
        let udp = UdpClient::bind("127.0.0.1:0")
            .await
            .ask(address, &bytes)
            .await;
        let tcp = tcp_exchange(&mut TcpStream::connect(address).await.unwrap(), &bytes).await;
        let tcp = Message::from_vec(&tcp.expect("a tcp reply")).expect("reply decodes");
        for reply in [udp, tcp] {
            assert_eq!(reply.metadata.id, i as u16);
            assert_eq!(reply.metadata.response_code, *rcode, "case {i}");
            let answers = if *rcode == NoError { 3 } else { 0 };
            assert_eq!(reply.answers.len(), answers, "case {i}");
        }
    }
    others_answered(address).await;
    server.stop().await;
}

#[tokio::test]
async fn any_flood_is_answered_minimally_and_fast() {
    let server = serve(|_| {}).await;
    let address = server.addresses[0];
    let client = UdpClient::bind("127.0.0.1:0").await;
    let started = Instant::now();
    for id in 0..300u16 {
        let name = if id % 2 == 0 { PEERS } else { BIG };
        let reply = client
            .ask(address, &query_bytes(name, RecordType::ANY, id))
            .await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert!(
            !reply.metadata.truncation,
            "{name}: minimal, so never truncated"
        );
        assert_eq!(reply.answers.len(), 1, "{name}: {reply:?}");
        assert_eq!(reply.answers[0].record_type(), RecordType::HINFO);
        assert!(reply.additionals.is_empty());
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "300 ANY took {took:?}");
    others_answered(address).await;
    server.stop().await;
}

#[tokio::test]
async fn truncation_abuse_gets_tc_and_the_tcp_retry_is_complete() {
    let server = serve(|_| {}).await;
    let address = server.addresses[0];
    assert_eq!(
        Config::default().limits.rrl_responses_per_second,
        0,
        "RRL is off by default"
    );
    // One client, 200 SRV queries for a 100-peer Service: all answered (RRL off), each with
    // TC and within the UDP limit.
    let client = UdpClient::bind("127.0.0.1:0").await;
    for id in 0..200u16 {
        let reply = client
            .ask(address, &query_bytes(BIG, RecordType::SRV, id))
            .await;
        assert!(reply.metadata.truncation && reply.answers.is_empty());
        assert!(reply.to_vec().unwrap().len() <= 1232);
    }
    let complete = query(address, &Ask::new(BIG, RecordType::SRV), Over::Tcp).await;
    assert!(!complete.metadata.truncation);
    assert_eq!(complete.answers.len(), 100);
    assert_eq!(
        server.admin.metrics.rate_limited(),
        0,
        "nothing rate limited"
    );
    others_answered(address).await;
    server.stop().await;
}

#[tokio::test]
async fn rrl_drops_and_slips_a_flooder_while_another_client_is_answered() {
    let server = serve(|c| {
        c.limits.rrl_responses_per_second = 5;
        c.limits.rrl_slip = 2;
    })
    .await;
    let address = server.addresses[0];
    let flooder = UdpClient::bind("127.0.0.1:0").await;
    for id in 0..60u16 {
        flooder
            .send(address, &query_bytes(PEERS, RecordType::A, id))
            .await;
    }
    let (mut full, mut slipped) = (0, 0);
    while let Some(reply) = flooder.receive(Duration::from_millis(400)).await {
        match (reply.metadata.truncation, reply.answers.len()) {
            (false, 3) => full += 1,
            (true, 0) => slipped += 1,
            other => panic!("unexpected reply {other:?}: {reply:?}"),
        }
    }
    assert!(
        (5..=8).contains(&full),
        "burst of 5 answered in full: {full}"
    );
    assert!(
        (20..=30).contains(&slipped),
        "every 2nd over the rate slipped: {slipped}"
    );
    // Another /24 (127.0.1.0/24 is loopback too on Linux) is answered normally, and the
    // flooder itself is answered in full over TCP, which is never rate limited.
    let other = UdpClient::bind("127.0.1.1:0").await;
    for id in 0..3 {
        let reply = other
            .ask(address, &query_bytes(PEERS, RecordType::A, id))
            .await;
        assert_eq!((reply.metadata.truncation, reply.answers.len()), (false, 3));
    }
    let tcp = query(address, &Ask::new(PEERS, RecordType::A), Over::Tcp).await;
    assert_eq!(tcp.answers.len(), 3);
    let limited = server.admin.metrics.rate_limited();
    assert_eq!(
        limited,
        60 - full,
        "every response over the rate is counted"
    );
    let metrics = rendered(&server);
    assert!(metrics.contains(&format!(
        "peerdns_rate_limited_total{{action=\"slipped\"}} {slipped}"
    )));
    server.stop().await;
}
