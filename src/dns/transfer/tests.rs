//! Transfer admission and streaming against an index fed with model types.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::SOA;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::*;
use crate::config::SrvTargetStyle;
use crate::dns::answer::Authority;
use crate::index::{Index, IndexWriter};
use crate::model::{AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey};
use crate::model::{Bootstrap, ServiceKind};

fn authority() -> Authority {
    Authority {
        zones: vec![Name::from_ascii("cluster.local.").unwrap()],
        reverse_zones: vec![Name::from_ascii("in-addr.arpa.").unwrap()],
        positive_ttl: 5,
        negative_ttl: 1,
        nameserver_addresses: vec!["192.0.2.53".parse().unwrap()],
    }
}

fn settings() -> TransferSettings {
    TransferSettings {
        allow: vec!["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()],
        key: None,
    }
}

fn peer(ip: &str) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), 40000)
}

/// A headless Service `big` with `count` ready endpoints named `big-<i>`, a named port, and a
/// ClusterIP Service; synced.
fn index_with(count: u32) -> (Index, IndexWriter) {
    let (index, mut writer) = Index::new(7, SrvTargetStyle::Hostname);
    let ports = vec![Port {
        name: Some("peer".into()),
        protocol: Protocol::Tcp,
        port: 2380,
    }];
    writer.apply_service(Service {
        bootstrap: Bootstrap::default(),
        key: ServiceKey::new("default", "big"),
        kind: ServiceKind::Headless,
        ports: ports.clone(),
    });
    let endpoints = (0..count)
        .map(|i| Endpoint {
            terminating: false,
            addresses: vec![IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i))],
            ready: true,
            hostname: Some(format!("big-{i}")),
            pod_name: Some(format!("big-{i}")),
        })
        .collect();
    writer.apply_slice(EndpointSlice {
        name: "big-1".into(),
        service: ServiceKey::new("default", "big"),
        family: AddressFamily::Ipv4,
        ports,
        endpoints,
    });
    writer.apply_service(Service {
        bootstrap: Bootstrap::default(),
        key: ServiceKey::new("default", "api"),
        kind: ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap()]),
        ports: Vec::new(),
    });
    writer.mark_synced();
    (index, writer)
}

fn request(name: &str, qtype: RecordType, client_serial: Option<u32>) -> Vec<u8> {
    let mut message = Message::new(0x1234, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(serial) = client_serial {
        let apex = Name::from_ascii(name).unwrap();
        let soa = SOA::new(apex.clone(), apex.clone(), serial, 1, 1, 1, 1);
        message.add_authority(Record::from_rdata(apex, 0, RData::SOA(soa)));
    }
    message.to_vec().unwrap()
}

/// Every message of a transfer, parsed.
fn transfer_all(authority: &Authority, index: &Index, bytes: &[u8]) -> Vec<Message> {
    let mut stream = admit(authority, index, &settings(), bytes, peer("127.0.0.1")).unwrap();
    let mut messages = Vec::new();
    while let Some(message) = stream.next_message(authority, index) {
        assert!(message.len() <= MAX_MESSAGE, "{} bytes", message.len());
        messages.push(Message::from_vec(&message).unwrap());
    }
    messages
}

fn rcode_of(result: Result<TransferStream, Vec<u8>>) -> ResponseCode {
    match result {
        Ok(_) => ResponseCode::NoError,
        Err(bytes) => Message::from_vec(&bytes).unwrap().metadata.response_code,
    }
}

#[test]
fn transfer_requests_are_recognised_in_place() {
    let axfr = request("cluster.local.", RecordType::AXFR, None);
    let ixfr = request("cluster.local.", RecordType::IXFR, Some(1));
    let a = request("cluster.local.", RecordType::A, None);
    assert_eq!(asks_transfer(&axfr), Some(TransferKind::Axfr));
    assert_eq!(asks_transfer(&ixfr), Some(TransferKind::Ixfr));
    assert_eq!(asks_transfer(&a), None);
    let mut response = axfr.clone();
    response[2] |= 0x80; // QR: a response is never a request
    assert_eq!(asks_transfer(&response), None);
    assert_eq!(asks_transfer(&axfr[..axfr.len() - 3]), None);
    assert_eq!(asks_transfer(&[]), None);
}

#[test]
fn serial_arithmetic_wraps() {
    assert!(serial_lt(1, 2));
    assert!(!serial_lt(2, 2));
    assert!(!serial_lt(3, 2));
    assert!(serial_lt(u32::MAX, 0), "0 follows 2^32-1");
    assert!(serial_lt(u32::MAX - 5, 10));
    assert!(!serial_lt(10, u32::MAX - 5));
}

#[test]
fn only_allowed_networks_transfer() {
    let settings = settings();
    assert!(settings.allows("127.0.0.9".parse().unwrap()));
    assert!(
        settings.allows("::ffff:127.0.0.1".parse().unwrap()),
        "mapped IPv4"
    );
    assert!(settings.allows("fd00::1".parse().unwrap()));
    assert!(!settings.allows("10.0.0.1".parse().unwrap()));
    assert!(!TransferSettings::default().allows("127.0.0.1".parse().unwrap()));
}

#[test]
fn admission_refuses_what_it_must() {
    let authority = authority();
    let (index, _writer) = index_with(3);
    let axfr = request("cluster.local.", RecordType::AXFR, None);
    let admit_from = |bytes: &[u8], ip| admit(&authority, &index, &settings(), bytes, peer(ip));
    assert_eq!(
        rcode_of(admit_from(&axfr, "127.0.0.1")),
        ResponseCode::NoError
    );
    assert_eq!(
        rcode_of(admit_from(&axfr, "10.1.2.3")),
        ResponseCode::Refused
    );
    let below = request("default.svc.cluster.local.", RecordType::AXFR, None);
    assert_eq!(
        rcode_of(admit_from(&below, "127.0.0.1")),
        ResponseCode::NotAuth
    );
    let outside = request("example.com.", RecordType::AXFR, None);
    assert_eq!(
        rcode_of(admit_from(&outside, "127.0.0.1")),
        ResponseCode::Refused
    );
    let bare_ixfr = request("cluster.local.", RecordType::IXFR, None);
    assert_eq!(
        rcode_of(admit_from(&bare_ixfr, "127.0.0.1")),
        ResponseCode::FormErr
    );
    assert_eq!(
        rcode_of(admit_from(&[1, 2, 3], "127.0.0.1")),
        ResponseCode::FormErr
    );

    let (unsynced, _writer) = Index::new(7, SrvTargetStyle::Hostname);
    let result = admit(&authority, &unsynced, &settings(), &axfr, peer("127.0.0.1"));
    assert_eq!(rcode_of(result), ResponseCode::ServFail);
}

#[test]
fn a_large_zone_streams_in_messages_between_two_soas() {
    let authority = authority();
    let (index, _writer) = index_with(4000);
    let messages = transfer_all(
        &authority,
        &index,
        &request("cluster.local.", RecordType::AXFR, None),
    );
    assert!(messages.len() > 2, "{} messages", messages.len());
    assert_eq!(
        messages[0].queries.len(),
        1,
        "the first message has the question"
    );
    assert!(messages[1..].iter().all(|m| m.queries.is_empty()));
    assert!(messages.iter().all(|m| m.metadata.authoritative));
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    let soa_serial = |record: &Record| match &record.data {
        RData::SOA(soa) => Some(soa.serial),
        _ => None,
    };
    assert_eq!(soa_serial(records[0]), Some(index.serial()));
    assert_eq!(soa_serial(records[records.len() - 1]), Some(index.serial()));
    let inner = &records[1..records.len() - 1];
    assert!(inner.iter().all(|r| soa_serial(r).is_none()));
    let distinct: BTreeSet<String> = inner.iter().map(|r| r.to_string()).collect();
    assert_eq!(distinct.len(), inner.len(), "each record once");
    // Per endpoint: the Service's A and SRV, the pod's A by hostname and by dashed address,
    // and the named port's SRV; then NS, ns.dns A, dns-version TXT and the ClusterIP's A.
    assert_eq!(inner.len(), 4000 * 5 + 4);
    let has = |text: &str| distinct.iter().any(|r| r.contains(text));
    assert!(has(
        "big-3999.big.default.svc.cluster.local. 5 IN A 10.244.15.159"
    ));
    assert!(has("_peer._tcp.big.default.svc.cluster.local. 5 IN SRV"));
    assert!(has("api.default.svc.cluster.local. 5 IN A 10.96.0.10"));
}

#[test]
fn an_ixfr_from_the_current_serial_gets_the_soa_alone() {
    let authority = authority();
    let (index, _writer) = index_with(10);
    let current = index.serial();
    for (serial, expected) in [(current, 1), (current.wrapping_add(3), 1), (1, 10 * 5 + 6)] {
        let messages = transfer_all(
            &authority,
            &index,
            &request("cluster.local.", RecordType::IXFR, Some(serial)),
        );
        let records: usize = messages.iter().map(|m| m.answers.len()).sum();
        assert_eq!(records, expected, "client serial {serial}");
    }
}

#[test]
fn a_reverse_zone_lists_the_ptr_records() {
    let authority = authority();
    let (index, _writer) = index_with(600);
    let messages = transfer_all(
        &authority,
        &index,
        &request("in-addr.arpa.", RecordType::AXFR, None),
    );
    let records: Vec<&Record> = messages.iter().flat_map(|m| &m.answers).collect();
    let ptrs = records
        .iter()
        .filter(|r| r.record_type() == RecordType::PTR)
        .count();
    assert_eq!(ptrs, 601, "every endpoint and the ClusterIP");
    assert_eq!(records.len(), 601 + 3, "SOA, NS, the PTRs, SOA");
}

#[test]
fn a_snapshot_sees_a_change_whole() {
    let (index, mut writer) = index_with(5);
    let before = index.snapshot(true);
    writer.delete_service(&ServiceKey::new("default", "api"));
    let after = index.snapshot(true);
    assert!(serial_lt(before.serial, after.serial));
    assert_eq!(before.services.len(), 2);
    assert_eq!(after.services.len(), 1);
    assert_eq!(before.ptr.len(), 6);
    assert_eq!(after.ptr.len(), 5);
}

#[test]
fn an_ixfr_within_the_history_lists_only_what_changed() {
    let authority = authority();
    let (index, mut writer) = index_with(3);
    writer.set_history_limit(100);
    let old = index.serial();
    writer.delete_service(&ServiceKey::new("default", "api"));
    writer.apply_service(Service {
        bootstrap: Bootstrap::default(),
        key: ServiceKey::new("default", "cache"),
        kind: ServiceKind::ClusterIp(vec!["10.96.0.11".parse().unwrap()]),
        ports: Vec::new(),
    });
    let new = index.serial();
    assert_eq!(new, old.wrapping_add(2));
    for (zone, deleted, added) in [
        (
            "cluster.local.",
            "api.default.svc.cluster.local. 5 IN A 10.96.0.10",
            "cache.default.svc.cluster.local. 5 IN A 10.96.0.11",
        ),
        (
            "in-addr.arpa.",
            "10.0.96.10.in-addr.arpa. 5 IN PTR api.default.svc.cluster.local.",
            "11.0.96.10.in-addr.arpa. 5 IN PTR cache.default.svc.cluster.local.",
        ),
    ] {
        let messages = transfer_all(
            &authority,
            &index,
            &request(zone, RecordType::IXFR, Some(old)),
        );
        let records: Vec<String> = messages
            .iter()
            .flat_map(|m| &m.answers)
            .map(|r| match &r.data {
                RData::SOA(soa) => format!("SOA {}", soa.serial),
                _ => r.to_string(),
            })
            .collect();
        let expected = [
            format!("SOA {new}"),
            format!("SOA {old}"),
            deleted.to_string(),
            format!("SOA {new}"),
            added.to_string(),
            format!("SOA {new}"),
        ];
        assert_eq!(records, expected, "{zone}");
    }
    // Older than the history: the whole zone (AXFR form).
    let messages = transfer_all(
        &authority,
        &index,
        &request(
            "cluster.local.",
            RecordType::IXFR,
            Some(old.wrapping_sub(1)),
        ),
    );
    let records: usize = messages.iter().map(|m| m.answers.len()).sum();
    assert_eq!(records, 3 * 5 + 4 + 2);
}

#[test]
fn the_history_condenses_per_service_and_forgets_the_oldest() {
    let (index, mut writer) = index_with(2);
    writer.set_history_limit(3);
    let start = index.serial();
    let api = |ip: &str| Service {
        bootstrap: Bootstrap::default(),
        key: ServiceKey::new("default", "api"),
        kind: ServiceKind::ClusterIp(vec![ip.parse().unwrap()]),
        ports: Vec::new(),
    };
    writer.apply_service(api("10.96.0.20"));
    writer.apply_service(api("10.96.0.21"));
    let (serial, changes) = index.changes_since(start).unwrap();
    assert_eq!(serial, start.wrapping_add(2));
    assert_eq!(changes.services.len(), 1, "one Service, condensed");
    let change = &changes.services[0];
    let ips = |records: &Option<std::sync::Arc<crate::index::ServiceRecords>>| match records
        .as_deref()
        .map(|r| &r.kind)
    {
        Some(ServiceKind::ClusterIp(ips)) => ips.clone(),
        _ => Vec::new(),
    };
    assert_eq!(
        ips(&change.old),
        vec!["10.96.0.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        ips(&change.new),
        vec!["10.96.0.21".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(
        changes.ptr.len(),
        2,
        "the old address lost its PTR, the new one gained one"
    );
    // Back and forth: nothing left to send.
    writer.apply_service(api("10.96.0.10"));
    let (_, changes) = index.changes_since(start).unwrap();
    assert!(changes.services.is_empty() && changes.ptr.is_empty());
    // A fourth step pushes the first out of a history of three.
    writer.apply_service(api("10.96.0.22"));
    assert_eq!(index.history_len(), 3);
    assert!(index.changes_since(start).is_none());
    assert!(index.changes_since(start.wrapping_add(1)).is_some());
}
