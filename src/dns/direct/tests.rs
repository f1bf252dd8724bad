//! The direct path on its own: which questions it writes and which it hands over, and how it
//! cuts a response to the client's UDP size (R12). That its bytes equal the general path's is
//! tests/e2e/fastpath.rs's job, over generated clusters.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};

use super::Direct;
use crate::config::SrvTargetStyle;
use crate::dns::answer::Authority;
use crate::index::Index;
use crate::model::{
    AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind,
};

fn authority() -> Authority {
    Authority {
        zones: vec![Name::from_ascii("cluster.local.").unwrap()],
        reverse_zones: vec![Name::from_ascii("in-addr.arpa.").unwrap()],
        positive_ttl: 5,
        negative_ttl: 1,
        nameserver_addresses: vec!["192.0.2.53".parse().unwrap()],
    }
}

/// `peers` (headless, `count` ready endpoints `peers-<i>` with a named port), `web`
/// (ClusterIP 10.96.0.10, port `http`), `ext` (ExternalName).
fn index(count: usize) -> Index {
    let (index, mut writer) = Index::new(7, SrvTargetStyle::Hostname);
    let port = |name: &str, number| Port {
        name: Some(name.to_string()),
        protocol: Protocol::Tcp,
        port: number,
    };
    let service = |name: &str, kind, ports| Service {
        bootstrap: Default::default(),
        key: ServiceKey::new("apps", name),
        kind,
        ports,
    };
    writer.apply_service(service("peers", ServiceKind::Headless, vec![]));
    let endpoints = (0..count)
        .map(|i| Endpoint {
            terminating: false,
            addresses: vec![format!("10.1.{}.{}", i / 250, 1 + i % 250).parse().unwrap()],
            ready: true,
            hostname: Some(format!("peers-{i}")),
            pod_name: Some(format!("peers-{i}")),
        })
        .collect();
    writer.apply_slice(EndpointSlice {
        name: "peers-1".into(),
        service: ServiceKey::new("apps", "peers"),
        family: AddressFamily::Ipv4,
        ports: vec![port("gossip", 7000)],
        endpoints,
    });
    let cluster_ip = ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap()]);
    writer.apply_service(service("web", cluster_ip, vec![port("http", 80)]));
    let external = ServiceKind::ExternalName("db.example.com".into());
    writer.apply_service(service("ext", external, vec![]));
    writer.mark_synced();
    index
}

fn request(name: &str, rtype: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    if let Some(payload) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(payload);
        message.set_edns(opt);
    }
    message.to_vec().unwrap()
}

/// The direct path's reply to a question, parsed; `None` when it hands the question over.
fn ask(index: &Index, name: &str, rtype: RecordType, edns: Option<u16>) -> Option<Message> {
    let mut direct = Direct::new(&authority());
    let mut out = Vec::new();
    direct.answer(index, 1232, &request(name, rtype, edns), &mut out)?;
    Some(Message::from_vec(&out).expect("a reply that parses"))
}

#[test]
fn it_writes_the_common_answers_and_hands_the_rest_over() {
    let index = index(3);
    let taken = [
        (
            "peers.apps.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            3,
        ),
        (
            "peers.apps.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            3,
        ),
        (
            "peers-1.peers.apps.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "_gossip._tcp.peers.apps.svc.cluster.local.",
            RecordType::SRV,
            ResponseCode::NoError,
            3,
        ),
        (
            "peers.apps.svc.cluster.local.",
            RecordType::AAAA,
            ResponseCode::NoError,
            0,
        ),
        (
            "web.apps.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            1,
        ),
        (
            "nosuch.apps.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NXDomain,
            0,
        ),
        (
            "apps.svc.cluster.local.",
            RecordType::A,
            ResponseCode::NoError,
            0,
        ),
    ];
    for (name, rtype, rcode, answers) in taken {
        let reply = ask(&index, name, rtype, None).unwrap_or_else(|| panic!("{name} {rtype}"));
        assert_eq!(reply.metadata.response_code, rcode, "{name} {rtype}");
        assert_eq!(reply.answers.len(), answers, "{name} {rtype}");
        if answers == 0 {
            assert_eq!(reply.authorities.len(), 1, "{name} {rtype}: the SOA");
        }
    }
    let handed_over = [
        ("web.apps.svc.cluster.local.", RecordType::SRV),
        ("ext.apps.svc.cluster.local.", RecordType::A),
        ("cluster.local.", RecordType::SOA),
        ("peers.apps.svc.cluster.local.", RecordType::TXT),
        ("1.1.1.10.in-addr.arpa.", RecordType::A),
        ("example.com.", RecordType::A),
    ];
    for (name, rtype) in handed_over {
        assert!(ask(&index, name, rtype, None).is_none(), "{name} {rtype}");
    }
}

#[test]
fn a_response_too_big_loses_its_glue_then_its_answers_with_tc() {
    let name = "peers.apps.svc.cluster.local.";
    // Glue dropped, answers kept, no TC.
    let reply = ask(&index(8), name, RecordType::SRV, None).unwrap();
    assert_eq!((reply.answers.len(), reply.additionals.len()), (8, 0));
    assert!(!reply.metadata.truncation);
    // With room (EDNS 1232), the glue stays.
    let reply = ask(&index(8), name, RecordType::SRV, Some(1232)).unwrap();
    assert_eq!((reply.answers.len(), reply.additionals.len()), (8, 8));
    // Too many answers for 512 bytes: the whole RRset goes, TC set.
    let reply = ask(&index(40), name, RecordType::SRV, None).unwrap();
    assert!(reply.metadata.truncation);
    assert_eq!((reply.answers.len(), reply.additionals.len()), (0, 0));
}

#[test]
fn nothing_is_taken_before_sync() {
    let (index, mut writer) = Index::new(7, SrvTargetStyle::Hostname);
    writer.apply_service(Service {
        bootstrap: Default::default(),
        key: ServiceKey::new("apps", "peers"),
        kind: ServiceKind::Headless,
        ports: vec![],
    });
    assert!(
        ask(
            &index,
            "nosuch.apps.svc.cluster.local.",
            RecordType::A,
            None
        )
        .is_none()
    );
}
