//! Header-level rules over real sockets: malformed packets (R10), EDNS and truncation (R12),
//! the question echoed as sent, TCP framing; and bursts over UDP, answered in full and as if
//! each query came alone, with the workers' receive coalescing on and off.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::net::TcpStream;

use crate::support::{
    Ask, Over, query, root, serve_file, tcp_exchange, tcp_raw, udp_raw, udp_raw_wait,
};

fn rules() -> std::path::PathBuf {
    root().join("tests/clusters/rules.yaml")
}

async fn still_serving(server: SocketAddr) {
    let ask = Ask::new("peers.apps.svc.cluster.local.", RecordType::A);
    for over in [Over::Udp, Over::Tcp] {
        let reply = query(server, &ask, over).await;
        assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply.answers.len(), 3, "{reply:?}");
    }
}

fn decode(bytes: Option<Vec<u8>>) -> Message {
    Message::from_vec(&bytes.expect("a reply")).expect("reply decodes")
}

#[tokio::test]
async fn unreadable_packets_are_dropped_and_serving_goes_on() {
    let server = serve_file(&rules()).await;
    let address = server.addresses[0];
    for junk in [&b""[..], b"\x01", b"\x12\x34\x01\x00\x00"] {
        let reply = udp_raw_wait(address, junk, Duration::from_millis(300)).await;
        assert!(reply.is_none(), "junk {junk:?} got {reply:?}");
    }
    // A message with the response bit set is never answered (no reflection).
    let mut response = Ask::new("peers.apps.svc.cluster.local.", RecordType::A).message(7);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let bytes = response.to_vec().unwrap();
    assert!(
        udp_raw_wait(address, &bytes, Duration::from_millis(300))
            .await
            .is_none()
    );
    // Pseudo-random garbage of every length: answered with FORMERR or dropped, never a crash.
    let mut seed: u32 = 12345;
    for length in 0..300usize {
        let packet: Vec<u8> = (0..length)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&packet, address).await.unwrap();
    }
    still_serving(address).await;
    server.stop().await;
}

#[tokio::test]
async fn formerr_notimp_badvers_refused() {
    let server = serve_file(&rules()).await;
    let address = server.addresses[0];
    let ask = Ask::new("peers.apps.svc.cluster.local.", RecordType::A);

    // Header readable, body cut: FORMERR with the request's id.
    let mut bytes = ask.message(0x4242).to_vec().unwrap();
    bytes.truncate(20);
    let reply = decode(udp_raw(address, &bytes).await);
    assert_eq!(
        (reply.metadata.id, reply.metadata.response_code),
        (0x4242, ResponseCode::FormErr)
    );

    // Two questions, or none: FORMERR.
    let mut two = ask.message(1);
    two.add_query(hickory_proto::op::Query::query(
        "quiet.apps.svc.cluster.local.".parse().unwrap(),
        RecordType::A,
    ));
    let reply = decode(udp_raw(address, &two.to_vec().unwrap()).await);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    let mut none = ask.message(2);
    none.queries.clear();
    let reply = decode(tcp_raw(address, &none.to_vec().unwrap()).await);
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);

    // Another opcode: NOTIMP.
    let mut notify = ask.message(3);
    notify.metadata.op_code = OpCode::Notify;
    let reply = decode(udp_raw(address, &notify.to_vec().unwrap()).await);
    assert_eq!(reply.metadata.response_code, ResponseCode::NotImp);

    // EDNS version 1: BADVERS, with an OPT record of version 0.
    let mut future = ask.message(4);
    let mut edns = Edns::new();
    edns.set_version(1);
    future.edns = Some(edns);
    let reply = decode(udp_raw(address, &future.to_vec().unwrap()).await);
    // BADVERS shares code 16 with BADSIG, which is how hickory decodes it.
    assert_eq!(u16::from(reply.metadata.response_code), 16);
    assert_eq!(reply.edns.as_ref().map(Edns::version), Some(0));

    // Class CH: REFUSED, not authoritative, never recursion available.
    let mut chaos = ask.message(5);
    chaos.queries[0].set_query_class(DNSClass::CH);
    let reply = decode(udp_raw(address, &chaos.to_vec().unwrap()).await);
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.recursion_available);
    still_serving(address).await;
    server.stop().await;
}

#[tokio::test]
async fn question_is_echoed_exactly_as_sent_and_answers_point_at_it() {
    let server = serve_file(&rules()).await;
    let address = server.addresses[0];
    let ask = Ask::new("PeErS.aPpS.SvC.ClUsTeR.LoCaL.", RecordType::A);
    let bytes = ask.message(9).to_vec().unwrap();
    for over in [Over::Udp, Over::Tcp] {
        let reply = match over {
            Over::Udp => udp_raw(address, &bytes).await,
            Over::Tcp => tcp_raw(address, &bytes).await,
        }
        .unwrap();
        let question_end = 12 + "PeErS.aPpS.SvC.ClUsTeR.LoCaL.".len() + 1 + 4;
        assert_eq!(
            &reply[12..question_end],
            &bytes[12..question_end],
            "over {over:?}"
        );
        // The answers' owner is a pointer to the question's name (offset 12), whatever its
        // case: it reads back as the client wrote it.
        assert_eq!(
            reply[question_end..question_end + 2],
            [0xC0, 12],
            "over {over:?}"
        );
        let message = Message::from_vec(&reply).unwrap();
        assert_eq!(message.answers.len(), 3);
        for answer in &message.answers {
            assert_eq!(answer.name.to_ascii(), "PeErS.aPpS.SvC.ClUsTeR.LoCaL.");
        }
        assert!(message.metadata.recursion_desired, "RD is copied");
    }
    server.stop().await;
}

#[tokio::test]
async fn truncation_drops_additional_first_and_sets_tc_only_for_answers() {
    let server = serve_file(&rules()).await;
    let address = server.addresses[0];

    // Ten peers, with an EDNS size between the size of the SRV records alone and the size of
    // the whole answer: the additional records go, TC stays clear.
    let ten = Ask::new("ten.scale.svc.cluster.local.", RecordType::SRV);
    let whole = query(address, &ten, Over::Tcp).await;
    assert_eq!((whole.answers.len(), whole.additionals.len()), (10, 10));
    let full_size = whole.to_vec().unwrap().len();
    let mut answers_only = whole.clone();
    answers_only.additionals.clear();
    let answers_size = answers_only.to_vec().unwrap().len();
    assert!(
        answers_size < full_size && full_size <= 1232,
        "{answers_size} {full_size}"
    );
    let mut squeezed = ten.clone();
    squeezed.edns = Some(((answers_size + full_size) / 2).max(512) as u16);
    let limit = usize::from(squeezed.edns.unwrap());
    let raw = udp_raw(address, &squeezed.message(11).to_vec().unwrap())
        .await
        .unwrap();
    assert!(raw.len() <= limit, "{} bytes over {limit}", raw.len());
    let reply = Message::from_vec(&raw).unwrap();
    assert_eq!(reply.answers.len(), 10);
    assert!(
        reply.additionals.len() < 10,
        "additional records dropped first"
    );
    assert!(!reply.metadata.truncation, "TC only when answers are cut");

    // A hundred peers: the SRV RRset cannot fit, so it goes whole and TC is set.
    for edns in [None, Some(512), Some(1232), Some(4096)] {
        let mut big = Ask::new("big.scale.svc.cluster.local.", RecordType::SRV);
        big.edns = edns;
        let raw = udp_raw(address, &big.message(12).to_vec().unwrap())
            .await
            .unwrap();
        let limit = edns.map_or(512, |size| usize::from(size.clamp(512, 1232)));
        assert!(raw.len() <= limit, "{edns:?}: {} bytes", raw.len());
        let reply = Message::from_vec(&raw).unwrap();
        assert!(reply.metadata.truncation, "{edns:?}");
        assert!(reply.answers.is_empty(), "whole RRsets only");
        assert_eq!(
            reply.edns.is_some(),
            edns.is_some(),
            "OPT kept when the client sent one"
        );
        if let Some(opt) = &reply.edns {
            assert_eq!(opt.max_payload(), 1232);
        }
    }
    let big = query(
        address,
        &Ask::new("big.scale.svc.cluster.local.", RecordType::SRV),
        Over::Tcp,
    )
    .await;
    assert!(!big.metadata.truncation);
    assert_eq!((big.answers.len(), big.additionals.len()), (100, 100));
    server.stop().await;
}

#[tokio::test]
async fn tcp_answers_several_queries_per_connection_and_survives_junk() {
    let server = serve_file(&rules()).await;
    let address = server.addresses[0];
    let mut stream = TcpStream::connect(address).await.unwrap();
    for id in 0..5u16 {
        let bytes = Ask::new("quiet.apps.svc.cluster.local.", RecordType::A)
            .message(id)
            .to_vec()
            .unwrap();
        let reply = Message::from_vec(&tcp_exchange(&mut stream, &bytes).await.unwrap()).unwrap();
        assert_eq!(reply.metadata.id, id);
        assert_eq!(reply.answers.len(), 1);
    }
    // A message too short for a header closes that connection only.
    let mut junk = TcpStream::connect(address).await.unwrap();
    assert!(tcp_exchange(&mut junk, b"\x00\x01\x02").await.is_none());
    still_serving(address).await;
    server.stop().await;
}

#[tokio::test]
async fn negative_answers_are_servfail_until_synced() {
    use peerdns::config::{Config, SrvTargetStyle};
    use peerdns::dns::{Listeners, Responder, ServerSettings, serve};
    use peerdns::index::Index;
    use peerdns::model::{Service, ServiceKey, ServiceKind};
    use tokio_util::sync::CancellationToken;

    let mut config = Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    let authority = peerdns::app::authority(&config).unwrap();
    let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
    let cluster_ip = ServiceKind::ClusterIp(vec!["10.96.0.1".parse().unwrap()]);
    writer.apply_service(Service {
        bootstrap: Default::default(),
        key: ServiceKey::new("default", "api"),
        kind: cluster_ip,
        ports: vec![],
    });
    let listeners = Listeners::bind(&config.dns.listen).await.unwrap();
    let address = listeners.local_addresses()[0];
    let metrics = std::sync::Arc::new(peerdns::metrics::Metrics::default());
    let responder = std::sync::Arc::new(Responder::new(authority, index.clone(), 1232, metrics));
    let shutdown = CancellationToken::new();
    let settings = ServerSettings {
        udp_loops: 1,
        ..peerdns::app::server_settings(&config)
    };
    let server = tokio::spawn(serve(listeners, responder, settings, shutdown.clone()));

    let known = Ask::new("api.default.svc.cluster.local.", RecordType::A);
    let unknown = Ask::new("nosuch.default.svc.cluster.local.", RecordType::A);
    let nodata = Ask::new("api.default.svc.cluster.local.", RecordType::AAAA);
    for over in [Over::Udp, Over::Tcp] {
        assert_eq!(
            query(address, &known, over).await.answers.len(),
            1,
            "positive answers are served"
        );
        assert_eq!(
            query(address, &unknown, over).await.metadata.response_code,
            ResponseCode::ServFail
        );
        assert_eq!(
            query(address, &nodata, over).await.metadata.response_code,
            ResponseCode::ServFail
        );
    }
    writer.mark_synced();
    for over in [Over::Udp, Over::Tcp] {
        assert_eq!(
            query(address, &unknown, over).await.metadata.response_code,
            ResponseCode::NXDomain
        );
        let reply = query(address, &nodata, over).await;
        assert_eq!(
            (reply.metadata.response_code, reply.answers.len()),
            (ResponseCode::NoError, 0)
        );
    }
    shutdown.cancel();
    server.await.unwrap();
}

#[tokio::test]
async fn several_zones_answer_in_the_zone_asked() {
    let mut config = crate::support::config_for(&rules());
    config.dns.zones = vec!["cluster.local".into(), "Peers.Example.".into()];
    let server = peerdns::app::start(&config).await.unwrap();
    let address = server.addresses[0];
    let srv = query(
        address,
        &Ask::new(
            "_gossip._tcp.peers.apps.svc.peers.example.",
            RecordType::SRV,
        ),
        Over::Udp,
    )
    .await;
    let targets: Vec<String> = srv.answers.iter().map(|r| r.data.to_string()).collect();
    assert!(
        targets
            .iter()
            .all(|t| t.ends_with(".peers.apps.svc.peers.example.")),
        "{targets:?}"
    );
    assert_eq!(srv.additionals.len(), 5);
    let soa = query(
        address,
        &Ask::new("nosuch.svc.peers.example.", RecordType::A),
        Over::Tcp,
    )
    .await;
    assert_eq!(soa.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(soa.authorities[0].name.to_string(), "peers.example.");
    // PTR targets use the first zone.
    let ptr = query(
        address,
        &Ask::new("1.0.1.10.in-addr.arpa.", RecordType::PTR),
        Over::Udp,
    )
    .await;
    assert_eq!(
        ptr.answers[0].data.to_string(),
        "peers-0.peers.apps.svc.cluster.local."
    );
    server.stop().await;
}

/// Sends `count` queries from one socket as fast as it can (question `i % questions.len()`
/// with ID `i`) while another task reads the replies; returns every reply, by ID.
async fn burst(server: SocketAddr, questions: &[Vec<u8>], count: u16) -> Vec<Option<Vec<u8>>> {
    let socket = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let reader = tokio::spawn({
        let socket = socket.clone();
        async move {
            let mut replies = vec![None; usize::from(count)];
            let mut buffer = vec![0u8; 65535];
            for _ in 0..count {
                let wait = Duration::from_secs(3);
                let Ok(Ok(length)) = tokio::time::timeout(wait, socket.recv(&mut buffer)).await
                else {
                    break;
                };
                let id = u16::from_be_bytes([buffer[0], buffer[1]]);
                replies[usize::from(id)] = Some(buffer[..length].to_vec());
            }
            replies
        }
    });
    for id in 0..count {
        let mut bytes = questions[usize::from(id) % questions.len()].clone();
        bytes[..2].copy_from_slice(&id.to_be_bytes());
        socket.send_to(&bytes, server).await.unwrap();
    }
    reader.await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_are_answered_in_full_whether_the_udp_worker_holds_or_not() {
    let names = [
        ("peers.apps.svc.cluster.local.", RecordType::A),
        ("peers.apps.svc.cluster.local.", RecordType::AAAA),
        ("peers.apps.svc.cluster.local.", RecordType::SRV),
        (
            "_gossip._tcp.peers.apps.svc.cluster.local.",
            RecordType::SRV,
        ),
        ("peers-0.peers.apps.svc.cluster.local.", RecordType::A),
        ("nosuch.apps.svc.cluster.local.", RecordType::A),
    ];
    let questions: Vec<Vec<u8>> = names
        .iter()
        .map(|(name, rtype)| Ask::new(name, *rtype).message(0).to_vec().unwrap())
        .collect();
    for coalesce_us in [1_000, 0] {
        let mut config = crate::support::config_for(&rules());
        config.dns.workers = 1;
        config.dns.udp_coalesce_us = coalesce_us;
        let server = peerdns::app::start(&config).await.expect("server starts");
        let address = server.addresses[0];
        let mut alone = Vec::new();
        for question in &questions {
            let reply = udp_raw(address, question).await.expect("a reply");
            alone.push(reply);
        }
        // Bursts of more than one receive's batch (a worker holds only after two busy
        // receives in a row), then one of several batches: during a hold no more than the
        // socket's buffer holds arrives.
        for count in [100, 100, 100, 100, 100, 200u16] {
            let replies = burst(address, &questions, count).await;
            for (id, reply) in replies.iter().enumerate() {
                let reply = reply.as_ref().unwrap_or_else(|| {
                    panic!("hold {coalesce_us} us, burst of {count}: no reply to query {id}")
                });
                assert_eq!(
                    reply[2..],
                    alone[id % questions.len()][2..],
                    "hold {coalesce_us} us, burst of {count}: query {id} answered as if alone"
                );
            }
        }
        let holds = server.admin.metrics.udp_holds();
        if coalesce_us == 0 {
            assert_eq!(holds, 0, "coalescing off, yet the worker held");
        } else {
            assert!(holds > 0, "bursts of 100 never made the worker hold");
        }
        server.stop().await;
    }
}
