//! The writer against model objects: what it publishes, and when the serial moves (R8).

use std::net::IpAddr;

use super::*;
use crate::index::Index;
use crate::model::{AddressFamily, Endpoint, Port, Protocol};

fn service(name: &str) -> Service {
    Service {
        bootstrap: Default::default(),
        key: ServiceKey::new("db", name),
        kind: ServiceKind::Headless,
        ports: Vec::new(),
    }
}

fn endpoint(ip: &str, ready: bool, pod: &str) -> Endpoint {
    Endpoint {
        terminating: false,
        addresses: vec![ip.parse().unwrap()],
        ready,
        hostname: Some(pod.to_string()),
        pod_name: Some(pod.to_string()),
    }
}

fn slice(service: &str, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        name: format!("{service}-abcde"),
        service: ServiceKey::new("db", service),
        family: AddressFamily::Ipv4,
        ports: vec![Port {
            name: Some("peer".into()),
            protocol: Protocol::Tcp,
            port: 2380,
        }],
        endpoints,
    }
}

fn writer_with(endpoints: Vec<Endpoint>) -> (Index, IndexWriter) {
    let (index, mut writer) = Index::new(100, SrvTargetStyle::Hostname);
    writer.apply_service(service("pg"));
    writer.apply_slice(slice("pg", endpoints));
    (index, writer)
}

fn not_ready_ips(index: &Index) -> Vec<IpAddr> {
    index.not_ready("db", "pg").iter().map(|e| e.ip).collect()
}

#[test]
fn a_not_ready_endpoint_coming_changing_and_going_moves_neither_serial_nor_caches() {
    let ready = || endpoint("10.0.0.1", true, "pg-0");
    let (index, mut writer) = writer_with(vec![ready()]);
    let serial = index.serial();
    let published = index.service("db", "pg").unwrap();
    let retirement = published.retirement();

    let steps = [
        vec![ready(), endpoint("10.0.0.2", false, "pg-1")],
        vec![ready(), endpoint("10.0.0.3", false, "pg-1")],
        vec![ready(), endpoint("10.0.0.3", false, "pg-one")],
        vec![ready()],
    ];
    let expected: [&[&str]; 4] = [&["10.0.0.2"], &["10.0.0.3"], &["10.0.0.3"], &[]];
    for (endpoints, expected) in steps.into_iter().zip(expected) {
        writer.apply_slice(slice("pg", endpoints));
        let expected: Vec<IpAddr> = expected.iter().map(|ip| ip.parse().unwrap()).collect();
        assert_eq!(not_ready_ips(&index), expected, "explain sees the change");
        assert_eq!(index.serial(), serial, "no answer changed");
        assert!(!retirement.is_retired(), "cached answers stay valid");
    }
    assert!(std::sync::Arc::ptr_eq(
        &index.service("db", "pg").unwrap(),
        &published
    ));
}

#[test]
fn a_ready_endpoint_changing_bumps_the_serial_and_retires_the_records() {
    let (index, mut writer) = writer_with(vec![endpoint("10.0.0.1", true, "pg-0")]);
    let serial = index.serial();
    let retirement = index.service("db", "pg").unwrap().retirement();
    writer.apply_slice(slice(
        "pg",
        vec![
            endpoint("10.0.0.1", true, "pg-0"),
            endpoint("10.0.0.2", true, "pg-1"),
        ],
    ));
    assert_eq!(index.serial(), serial.wrapping_add(1));
    assert!(retirement.is_retired());
    // Turning not ready is an answer change too, and leaves it explained.
    writer.apply_slice(slice(
        "pg",
        vec![
            endpoint("10.0.0.1", true, "pg-0"),
            endpoint("10.0.0.2", false, "pg-1"),
        ],
    ));
    assert_eq!(index.serial(), serial.wrapping_add(2));
    assert_eq!(
        not_ready_ips(&index),
        ["10.0.0.2".parse::<IpAddr>().unwrap()]
    );
}

#[test]
fn an_unchanged_rebuild_publishes_nothing_and_a_deleted_service_leaves_nothing_behind() {
    let (index, mut writer) = writer_with(vec![
        endpoint("10.0.0.1", true, "pg-0"),
        endpoint("10.0.0.2", false, "pg-1"),
    ]);
    let serial = index.serial();
    writer.apply_service(service("pg"));
    assert_eq!(index.serial(), serial);
    writer.delete_service(&ServiceKey::new("db", "pg"));
    assert!(index.service("db", "pg").is_none());
    assert!(
        index.not_ready("db", "pg").is_empty(),
        "explain state goes too"
    );
    assert_eq!(index.serial(), serial.wrapping_add(1));
}

#[test]
fn not_ready_names_for_every_service_when_the_config_says_so() {
    let endpoints = || {
        vec![
            endpoint("10.0.0.1", true, "pg-0"),
            endpoint("10.0.0.2", false, "pg-1"),
        ]
    };
    let (index, _writer) = writer_with(endpoints());
    let records = index.service("db", "pg").unwrap();
    assert_eq!(records.endpoints_labelled("pg-1").count(), 0);

    let (index, mut writer) = Index::new(100, SrvTargetStyle::Hostname);
    writer.set_not_ready_names(true);
    writer.apply_service(service("pg"));
    writer.apply_slice(slice("pg", endpoints()));
    let records = index.service("db", "pg").unwrap();
    let own: Vec<IpAddr> = records.endpoints_labelled("pg-1").map(|e| e.ip).collect();
    assert_eq!(own, ["10.0.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(
        records.endpoints.len(),
        1,
        "the Service-wide answers stay ready-only"
    );
}

#[test]
fn one_mutation_is_one_serial_step_at_its_version_when_ahead() {
    let (index, mut writer) = Index::new(0, SrvTargetStyle::Hostname);
    let state = |names: &[&str], version| ClusterState {
        services: names.iter().map(|n| service(n)).collect(),
        slices: names
            .iter()
            .map(|n| slice(n, vec![endpoint("10.0.0.1", true, "p-0")]))
            .collect(),
        version,
    };
    // The first step takes its version, however far: five Services, one step.
    writer.replace_all(state(&["a", "b", "c", "d", "e"], Some(3_000_000_000)));
    assert_eq!(index.serial(), 3_000_000_000);
    let generation = index.generation();
    // A version ahead (RFC 1982) is taken; one behind, or none, moves the serial by one.
    writer.set_version(Some(3_000_000_500));
    writer.apply_service(service("f"));
    assert_eq!(index.serial(), 3_000_000_500);
    writer.set_version(Some(3_000_000_400));
    writer.delete_service(&ServiceKey::new("db", "f"));
    assert_eq!(index.serial(), 3_000_000_501, "behind: one step on");
    writer.apply_service(service("f"));
    assert_eq!(index.serial(), 3_000_000_502);
    // A version is used by one step only, and a step that changes nothing moves nothing.
    writer.set_version(Some(3_000_001_000));
    writer.apply_service(service("f"));
    assert_eq!(index.serial(), 3_000_000_502, "nothing changed");
    writer.apply_service(service("g"));
    assert_eq!(index.serial(), 3_000_000_503, "the version was spent");
    assert!(
        index.generation() > generation,
        "cached answers were retired"
    );
    // A resourceVersion past 2^32 is taken modulo 2^32, and ahead when RFC 1982 says so.
    writer.set_version(Some(u64::from(u32::MAX) + 5));
    writer.delete_service(&ServiceKey::new("db", "g"));
    assert_eq!(index.serial(), 4, "4 is 1294966797 ahead of 3000000503");
}
