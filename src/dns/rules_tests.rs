//! Table tests of the answer rules (R1-R13) against an index fed with model types.
//!
//! Each case is (name, type, expected text): the rcode, then the answer, authority and
//! additional records as hickory prints them, one per line, sections separated by `;`.

use std::net::IpAddr;

use hickory_proto::rr::{Name, RecordType};

use super::answer::{Answer, Authority};
use crate::config::SrvTargetStyle;
use crate::index::{Index, IndexWriter};
use crate::model::{
    AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind,
};

const SERIAL: u32 = 1000;

fn port(name: Option<&str>, protocol: Protocol, number: u16) -> Port {
    Port {
        name: name.map(str::to_string),
        protocol,
        port: number,
    }
}

fn endpoint(ip: &str, ready: bool, hostname: Option<&str>) -> Endpoint {
    Endpoint {
        terminating: false,
        addresses: vec![ip.parse().unwrap()],
        ready,
        hostname: hostname.map(str::to_string),
        pod_name: hostname.map(str::to_string),
    }
}

fn service(ns: &str, name: &str, kind: ServiceKind, ports: Vec<Port>) -> Service {
    Service {
        bootstrap: Default::default(),
        key: ServiceKey::new(ns, name),
        kind,
        ports,
    }
}

fn slice(
    ns: &str,
    svc: &str,
    name: &str,
    family: AddressFamily,
    ports: Vec<Port>,
    endpoints: Vec<Endpoint>,
) -> EndpointSlice {
    EndpointSlice {
        name: name.to_string(),
        service: ServiceKey::new(ns, svc),
        family,
        ports,
        endpoints,
    }
}

fn authority() -> Authority {
    Authority {
        zones: vec![Name::from_ascii("cluster.local.").unwrap()],
        reverse_zones: vec![
            Name::from_ascii("in-addr.arpa.").unwrap(),
            Name::from_ascii("ip6.arpa.").unwrap(),
        ],
        positive_ttl: 5,
        negative_ttl: 1,
        nameserver_addresses: vec!["192.0.2.53".parse().unwrap()],
    }
}

fn fixture(writer: &mut IndexWriter) {
    use AddressFamily::{Ipv4, Ipv6};
    let http = || vec![port(Some("http"), Protocol::Tcp, 80)];
    writer.apply_service(service("default", "kubia", ServiceKind::Headless, http()));
    writer.apply_slice(slice(
        "default",
        "kubia",
        "kubia-a",
        Ipv4,
        http(),
        vec![
            endpoint("10.244.0.1", true, Some("kubia-0")),
            endpoint("10.244.0.2", true, Some("kubia-1")),
        ],
    ));
    writer.apply_slice(slice(
        "default",
        "kubia",
        "kubia-b",
        Ipv4,
        http(),
        vec![
            endpoint("10.244.0.3", true, Some("kubia-2")),
            endpoint("10.244.0.9", false, Some("kubia-9")),
        ],
    ));
    let cluster_ip = ServiceKind::ClusterIp(vec!["10.96.0.10".parse().unwrap()]);
    let web_ports = vec![
        port(Some("http"), Protocol::Tcp, 80),
        port(None, Protocol::Udp, 53),
    ];
    writer.apply_service(service("default", "web", cluster_ip, web_ports));
    writer.apply_slice(slice(
        "default",
        "web",
        "web-a",
        Ipv4,
        http(),
        vec![endpoint("10.244.1.1", true, None)],
    ));
    let external = |target: &str| ServiceKind::ExternalName(target.to_string());
    writer.apply_service(service(
        "default",
        "ext",
        external("kubia.default.svc.cluster.local"),
        vec![],
    ));
    writer.apply_service(service("default", "out", external("example.com"), vec![]));
    writer.apply_service(service(
        "default",
        "loop-a",
        external("loop-b.default.svc.cluster.local"),
        vec![],
    ));
    writer.apply_service(service(
        "default",
        "loop-b",
        external("loop-a.default.svc.cluster.local"),
        vec![],
    ));
    writer.apply_service(service("db", "dual", ServiceKind::Headless, vec![]));
    writer.apply_slice(slice(
        "db",
        "dual",
        "dual-4",
        Ipv4,
        vec![],
        vec![endpoint("10.244.2.1", true, Some("dual-0"))],
    ));
    writer.apply_slice(slice(
        "db",
        "dual",
        "dual-6",
        Ipv6,
        vec![],
        vec![endpoint("fd00::1", true, Some("dual-0"))],
    ));
    writer.apply_service(service("db", "asleep", ServiceKind::Headless, http()));
    writer.apply_slice(slice(
        "db",
        "asleep",
        "asleep-a",
        Ipv4,
        http(),
        vec![endpoint("10.244.3.1", false, Some("asleep-0"))],
    ));
}

fn render(answer: &Answer) -> String {
    let section = |records: &[hickory_proto::rr::Record]| {
        records
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };
    format!(
        "{}\n{}\n;\n{}\n;\n{}",
        answer.rcode,
        section(&answer.answers),
        section(&answer.authority),
        section(&answer.additional)
    )
}

fn synced_index() -> Index {
    let (index, mut writer) = Index::new(SERIAL, SrvTargetStyle::Hostname);
    fixture(&mut writer);
    writer.mark_synced();
    index
}

fn ask(index: &Index, name: &str, rtype: RecordType) -> Answer {
    authority().answer(index, &Name::from_ascii(name).unwrap(), rtype)
}

/// Asserts every expected line appears in the rendered answer, and the rcode line matches.
fn check(
    index: &Index,
    name: &str,
    rtype: RecordType,
    rcode: &str,
    lines: &[&str],
    absent: &[&str],
) {
    let answer = ask(index, name, rtype);
    let text = render(&answer);
    assert_eq!(answer.rcode.to_string(), rcode, "{name} {rtype}:\n{text}");
    for line in lines {
        assert!(
            text.contains(line),
            "{name} {rtype}: missing {line:?} in\n{text}"
        );
    }
    for line in absent {
        assert!(
            !text.contains(line),
            "{name} {rtype}: unexpected {line:?} in\n{text}"
        );
    }
}

#[test]
fn headless_service_addresses_r1() {
    let index = synced_index();
    let name = "kubia.default.svc.cluster.local.";
    check(
        &index,
        name,
        RecordType::A,
        "No Error",
        &[
            "kubia.default.svc.cluster.local. 5 IN A 10.244.0.1",
            "IN A 10.244.0.2",
            "IN A 10.244.0.3",
        ],
        &["10.244.0.9"],
    );
    // v4 only: AAAA is NODATA with the SOA.
    check(
        &index,
        name,
        RecordType::AAAA,
        "No Error",
        &["cluster.local. 1 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. "],
        &["AAAA"],
    );
    // no ready endpoint at all: NXDOMAIN.
    check(
        &index,
        "asleep.db.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &["IN SOA"],
        &["10.244.3.1"],
    );
    check(
        &index,
        "dual.db.svc.cluster.local.",
        RecordType::AAAA,
        "No Error",
        &["IN AAAA fd00::1"],
        &["10.244.2.1"],
    );
}

#[test]
fn endpoint_labels_r2() {
    let index = synced_index();
    check(
        &index,
        "kubia-1.kubia.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 10.244.0.2"],
        &["10.244.0.1"],
    );
    check(
        &index,
        "10-244-0-3.kubia.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 10.244.0.3"],
        &[],
    );
    check(
        &index,
        "kubia-9.kubia.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &["IN SOA"],
        &[],
    );
    check(
        &index,
        "10-244-1-1.web.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 10.244.1.1"],
        &[],
    );
    check(
        &index,
        "dual-0.dual.db.svc.cluster.local.",
        RecordType::AAAA,
        "No Error",
        &["IN AAAA fd00::1"],
        &[],
    );
    check(
        &index,
        "dual-0.dual.db.svc.cluster.local.",
        RecordType::TXT,
        "No Error",
        &["IN SOA"],
        &["IN A"],
    );
    check(
        &index,
        "fd00--1.dual.db.svc.cluster.local.",
        RecordType::AAAA,
        "No Error",
        &["IN AAAA fd00::1"],
        &[],
    );
}

#[test]
fn srv_named_port_r3() {
    let index = synced_index();
    check(
        &index,
        "_http._tcp.kubia.default.svc.cluster.local.",
        RecordType::SRV,
        "No Error",
        &[
            "IN SRV 0 33 80 kubia-0.kubia.default.svc.cluster.local.",
            "IN SRV 0 33 80 kubia-2.kubia.default.svc.cluster.local.",
            ";\n\n;\n",
            "kubia-1.kubia.default.svc.cluster.local. 5 IN A 10.244.0.2",
        ],
        &["kubia-9"],
    );
    check(
        &index,
        "_http._udp.kubia.default.svc.cluster.local.",
        RecordType::SRV,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "_nope._tcp.kubia.default.svc.cluster.local.",
        RecordType::SRV,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "_tcp.kubia.default.svc.cluster.local.",
        RecordType::SRV,
        "No Error",
        &["IN SOA"],
        &[],
    );
    check(
        &index,
        "_udp.kubia.default.svc.cluster.local.",
        RecordType::SRV,
        "Non-Existent Domain",
        &[],
        &[],
    );
    // ClusterIP: one record, the Service name, the Service port; glue is the ClusterIP.
    check(
        &index,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        "No Error",
        &[
            "IN SRV 0 100 80 web.default.svc.cluster.local.",
            "web.default.svc.cluster.local. 5 IN A 10.96.0.10",
        ],
        &[],
    );
}

#[test]
fn srv_service_name_r4() {
    let index = synced_index();
    check(
        &index,
        "web.default.svc.cluster.local.",
        RecordType::SRV,
        "No Error",
        &[
            "IN SRV 0 50 80 web.default.svc.cluster.local.",
            "IN SRV 0 50 53 web.default.svc.cluster.local.",
        ],
        &[],
    );
    // portless headless: each peer with port 0; dual-stack peer is one target with both glue records.
    check(
        &index,
        "dual.db.svc.cluster.local.",
        RecordType::SRV,
        "No Error",
        &[
            "IN SRV 0 100 0 dual-0.dual.db.svc.cluster.local.",
            "dual-0.dual.db.svc.cluster.local. 5 IN A 10.244.2.1",
            "dual-0.dual.db.svc.cluster.local. 5 IN AAAA fd00::1",
        ],
        &[],
    );
}

#[test]
fn cluster_ip_r5() {
    let index = synced_index();
    check(
        &index,
        "web.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 10.96.0.10"],
        &["10.244.1.1"],
    );
    check(
        &index,
        "web.default.svc.cluster.local.",
        RecordType::AAAA,
        "No Error",
        &["IN SOA"],
        &[],
    );
}

#[test]
fn external_name_r6() {
    let index = synced_index();
    check(
        &index,
        "out.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN CNAME example.com."],
        &["IN SOA"],
    );
    check(
        &index,
        "ext.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &[
            "ext.default.svc.cluster.local. 5 IN CNAME kubia.default.svc.cluster.local.",
            "kubia.default.svc.cluster.local. 5 IN A 10.244.0.1",
        ],
        &[],
    );
    check(
        &index,
        "ext.default.svc.cluster.local.",
        RecordType::CNAME,
        "No Error",
        &["IN CNAME"],
        &["IN A"],
    );
    let looped = ask(&index, "loop-a.default.svc.cluster.local.", RecordType::A);
    assert!(looped.answers.len() <= 8, "{looped:?}");
    check(
        &index,
        "x.ext.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "_http._tcp.ext.default.svc.cluster.local.",
        RecordType::SRV,
        "Non-Existent Domain",
        &[],
        &[],
    );
}

#[test]
fn ptr_r7() {
    let index = synced_index();
    check(
        &index,
        "1.0.244.10.in-addr.arpa.",
        RecordType::PTR,
        "No Error",
        &["IN PTR kubia-0.kubia.default.svc.cluster.local."],
        &[],
    );
    check(
        &index,
        "10.0.96.10.in-addr.arpa.",
        RecordType::PTR,
        "No Error",
        &["IN PTR web.default.svc.cluster.local."],
        &[],
    );
    check(
        &index,
        "1.1.244.10.in-addr.arpa.",
        RecordType::PTR,
        "No Error",
        &["IN PTR 10-244-1-1.web.default.svc.cluster.local."],
        &[],
    );
    check(
        &index,
        "9.0.244.10.in-addr.arpa.",
        RecordType::PTR,
        "Non-Existent Domain",
        &["in-addr.arpa. 1 IN SOA"],
        &[],
    );
    let v6 = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.";
    check(
        &index,
        v6,
        RecordType::PTR,
        "No Error",
        &["IN PTR dual-0.dual.db.svc.cluster.local."],
        &[],
    );
    check(&index, v6, RecordType::A, "No Error", &["IN SOA"], &["PTR"]);
    // A partial reverse name exists (NODATA) exactly when a claimed address is below it.
    for name in [
        "10.in-addr.arpa.",
        "244.10.in-addr.arpa.",
        "0.244.10.in-addr.arpa.",
    ] {
        check(&index, name, RecordType::PTR, "No Error", &["IN SOA"], &[]);
    }
    for name in [
        "11.in-addr.arpa.",
        "9.244.10.in-addr.arpa.",
        "d.f.ip6.arpa.",
    ] {
        let expected = match name.ends_with("ip6.arpa.") {
            true => "No Error",
            false => "Non-Existent Domain",
        };
        check(&index, name, RecordType::PTR, expected, &["IN SOA"], &[]);
    }
    check(
        &index,
        "e.f.ip6.arpa.",
        RecordType::PTR,
        "Non-Existent Domain",
        &[],
        &[],
    );
}

#[test]
fn apex_r8() {
    let index = synced_index();
    let serial = index.serial();
    check(
        &index,
        "cluster.local.",
        RecordType::SOA,
        "No Error",
        &[&format!(
            "cluster.local. 1 IN SOA ns.dns.cluster.local. hostmaster.cluster.local. {serial} 7200 1800 86400 1"
        )],
        &[],
    );
    check(
        &index,
        "cluster.local.",
        RecordType::NS,
        "No Error",
        &[
            "cluster.local. 5 IN NS ns.dns.cluster.local.",
            "ns.dns.cluster.local. 5 IN A 192.0.2.53",
        ],
        &[],
    );
    check(
        &index,
        "dns-version.cluster.local.",
        RecordType::TXT,
        "No Error",
        &["IN TXT 1.1.0"],
        &[],
    );
    check(
        &index,
        "ns.dns.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 192.0.2.53"],
        &[],
    );
    check(
        &index,
        "dns.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN SOA"],
        &[],
    );
}

#[test]
fn serial_moves_only_when_answers_change_r8() {
    let (index, mut writer) = Index::new(SERIAL, SrvTargetStyle::Hostname);
    fixture(&mut writer);
    let before = index.serial();
    fixture(&mut writer); // the same objects again
    assert_eq!(index.serial(), before);
    writer.apply_slice(slice(
        "db",
        "asleep",
        "asleep-a",
        AddressFamily::Ipv4,
        vec![],
        vec![endpoint("10.244.3.1", true, Some("asleep-0"))],
    ));
    assert!(index.serial() > before);
}

#[test]
fn negative_answers_r9() {
    let index = synced_index();
    for (name, rcode) in [
        ("svc.cluster.local.", "No Error"),
        ("default.svc.cluster.local.", "No Error"),
        ("nosuchns.svc.cluster.local.", "Non-Existent Domain"),
        ("nosuch.default.svc.cluster.local.", "Non-Existent Domain"),
        ("a.b.c.d.e.f.cluster.local.", "Non-Existent Domain"),
        ("kubia.default.pod.cluster.local.", "Non-Existent Domain"),
    ] {
        check(
            &index,
            name,
            RecordType::A,
            rcode,
            &["cluster.local. 1 IN SOA"],
            &["IN A "],
        );
    }
}

#[test]
fn outside_zones_and_transfers_r10_r13() {
    let index = synced_index();
    let outside = ask(&index, "example.com.", RecordType::A);
    assert_eq!(outside.rcode.to_string(), "Query Refused");
    assert!(!outside.authoritative);
    check(
        &index,
        "cluster.local.",
        RecordType::AXFR,
        "Query Refused",
        &[],
        &[],
    );
    check(
        &index,
        "cluster.local.",
        RecordType::IXFR,
        "Query Refused",
        &[],
        &[],
    );
}

#[test]
fn other_types_and_any_r13() {
    let index = synced_index();
    check(
        &index,
        "kubia.default.svc.cluster.local.",
        RecordType::MX,
        "No Error",
        &["IN SOA"],
        &[],
    );
    check(
        &index,
        "kubia.default.svc.cluster.local.",
        RecordType::ANY,
        "No Error",
        &["IN HINFO RFC8482"],
        &["IN A"],
    );
    check(
        &index,
        "nosuch.default.svc.cluster.local.",
        RecordType::ANY,
        "Non-Existent Domain",
        &[],
        &[],
    );
}

#[test]
fn servfail_for_negatives_until_synced_r11() {
    let (index, mut writer) = Index::new(SERIAL, SrvTargetStyle::Hostname);
    fixture(&mut writer);
    check(
        &index,
        "kubia.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["IN A 10.244.0.1"],
        &[],
    );
    check(
        &index,
        "nosuch.default.svc.cluster.local.",
        RecordType::A,
        "Server Failure",
        &[],
        &["SOA"],
    );
    check(
        &index,
        "kubia.default.svc.cluster.local.",
        RecordType::AAAA,
        "Server Failure",
        &[],
        &["SOA"],
    );
    writer.mark_synced();
    check(
        &index,
        "nosuch.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &["IN SOA"],
        &[],
    );
}

#[test]
fn replace_all_removes_vanished_services() {
    let (index, mut writer) = Index::new(SERIAL, SrvTargetStyle::Hostname);
    fixture(&mut writer);
    writer.mark_synced();
    let kept = service("default", "kubia", ServiceKind::Headless, vec![]);
    writer.replace_all(crate::model::ClusterState {
        services: vec![kept],
        slices: vec![],
        version: None,
    });
    check(
        &index,
        "web.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "kubia.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "db.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    // The namespace holds only a headless Service without endpoints: no name below it
    // answers, so it does not exist either (as in a transferred zone, R14).
    check(
        &index,
        "default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    let cluster_ip = ServiceKind::ClusterIp(vec!["10.96.0.1".parse().unwrap()]);
    writer.apply_service(service("default", "api", cluster_ip, vec![]));
    check(
        &index,
        "default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &[],
        &[],
    );
    let ip: IpAddr = "10.244.0.1".parse().unwrap();
    assert!(index.ptr(&ip).is_none());
}

#[test]
fn slice_moving_between_services_leaves_the_old_one() {
    let (index, mut writer) = Index::new(SERIAL, SrvTargetStyle::Hostname);
    fixture(&mut writer);
    writer.mark_synced();
    let moved = slice(
        "default",
        "web",
        "kubia-b",
        AddressFamily::Ipv4,
        vec![],
        vec![endpoint("10.244.0.3", true, Some("kubia-2"))],
    );
    writer.apply_slice(moved);
    check(
        &index,
        "kubia-2.kubia.default.svc.cluster.local.",
        RecordType::A,
        "Non-Existent Domain",
        &[],
        &[],
    );
    check(
        &index,
        "kubia-2.web.default.svc.cluster.local.",
        RecordType::A,
        "No Error",
        &["10.244.0.3"],
        &[],
    );
}
