//! Hostile queries: many or odd EDNS options, ANY and truncation floods, a UDP flood under
//! response rate limiting.

use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::TcpStream;

use super::{BIG, PEERS, UdpClient, others_answered, query_bytes, rendered, serve};
use peerdns::config::Config;

use crate::support::{Ask, Over, query, tcp_exchange};

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
