//! Hostile TCP clients: idle connections past the limit, slowloris, bad length prefixes, a
//! connection kept past its lifetime or query limit.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{PEERS, UdpClient, closed_within, others_answered, query_bytes, rendered, serve};
use crate::support::tcp_exchange;

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
