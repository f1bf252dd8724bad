//! Scenario tests of the Kubernetes source: peerdns watches the test API server (through a
//! kubeconfig file, as an operator would point it) while the driver plays the controllers, and
//! the DNS answers are asserted over real sockets after every step.
//!
//! Every wait is bounded: a step that is never served fails the test instead of hanging.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use peerdns::app::Running;
use peerdns::config::{Config, SourceKind};

use crate::apiserver::{Resource, TestApiServer, Verb};
use crate::controllers::StatefulSetDriver;
use crate::support::{Ask, Over, query};

/// The longest a change may take to be served before a test fails.
const DEADLINE: Duration = Duration::from_secs(10);

pub async fn watch_with(
    api: &TestApiServer,
    dir: &std::path::Path,
    edit: impl FnOnce(&mut Config),
) -> Running {
    let mut config = Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.dns.workers = 2;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.source.kind = SourceKind::Kubernetes;
    config.source.kubernetes.kubeconfig = Some(api.write_kubeconfig(dir));
    config.source.kubernetes.max_backoff_ms = 200;
    edit(&mut config);
    peerdns::app::start(&config).await.expect("peerdns starts")
}

/// The rcode and the sorted addresses answered for `name` (A and AAAA together).
pub async fn addresses(server: SocketAddr, name: &str) -> (ResponseCode, BTreeSet<IpAddr>) {
    let mut found = BTreeSet::new();
    let mut rcode = ResponseCode::NoError;
    for rtype in [RecordType::A, RecordType::AAAA] {
        let reply = query(server, &Ask::new(name, rtype), Over::Udp).await;
        if reply.metadata.response_code != ResponseCode::NoError {
            rcode = reply.metadata.response_code;
        }
        for record in &reply.answers {
            match &record.data {
                RData::A(a) => found.insert(IpAddr::V4(a.0)),
                RData::AAAA(aaaa) => found.insert(IpAddr::V6(aaaa.0)),
                _ => false,
            };
        }
    }
    (rcode, found)
}

/// Polls until `name` answers exactly `expected`; with `never_nxdomain`, fails at once if any
/// answer on the way is NXDOMAIN (a name that exists throughout must never be denied).
pub async fn wait_for(server: SocketAddr, name: &str, expected: &[IpAddr], never_nxdomain: bool) {
    let expected: BTreeSet<IpAddr> = expected.iter().copied().collect();
    let started = Instant::now();
    loop {
        let (rcode, found) = addresses(server, name).await;
        if never_nxdomain {
            assert_ne!(
                rcode,
                ResponseCode::NXDomain,
                "{name}: a wrong NXDOMAIN on the way to {expected:?}"
            );
        }
        if found == expected && (rcode == ResponseCode::NoError || expected.is_empty()) {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{name}: still {rcode} {found:?}, expected {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for_rcode(server: SocketAddr, name: &str, rtype: RecordType, rcode: ResponseCode) {
    let started = Instant::now();
    loop {
        let reply = query(server, &Ask::new(name, rtype), Over::Udp).await;
        if reply.metadata.response_code == rcode {
            return;
        }
        let got = reply.metadata.response_code;
        assert!(
            started.elapsed() < DEADLINE,
            "{name} {rtype}: still {got}, expected {rcode}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn name(pod: &str, service: &str, ns: &str) -> String {
    match pod {
        "" => format!("{service}.{ns}.svc.cluster.local."),
        pod => format!("{pod}.{service}.{ns}.svc.cluster.local."),
    }
}

#[tokio::test]
async fn scale_three_to_five_to_two() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "db", "pg", "pg");
    sts.create(3);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    let service = name("", "pg", "db");
    wait_for(dns, &service, &sts.ready_ips(), false).await;
    sts.scale(5);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    wait_for(
        dns,
        &name("pg-4", "pg", "db"),
        &[IpAddr::V4(sts.ipv4(4))],
        false,
    )
    .await;
    let srv = query(
        dns,
        &Ask::new("_web._tcp.pg.db.svc.cluster.local.", RecordType::SRV),
        Over::Tcp,
    )
    .await;
    assert_eq!((srv.answers.len(), srv.additionals.len()), (5, 5));
    sts.scale(2);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    wait_for_rcode(
        dns,
        &name("pg-4", "pg", "db"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn a_not_ready_peer_leaves_the_answers_and_returns() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "zk", "zk");
    sts.create(3);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    let service = name("", "zk", "default");
    wait_for(dns, &service, &sts.ready_ips(), false).await;
    sts.set_ready(1, false);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    assert_eq!(sts.ready_ips().len(), 2);
    wait_for_rcode(
        dns,
        &name("zk-1", "zk", "default"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    sts.set_ready(1, true);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    wait_for(
        dns,
        &name("zk-1", "zk", "default"),
        &[IpAddr::V4(sts.ipv4(1))],
        false,
    )
    .await;
    // publishNotReadyAddresses brings a not-ready peer back into the answers.
    sts.set_ready(2, false);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    sts.set_publish_not_ready(true);
    wait_for(dns, &service, &sts.published_ips(), true).await;
    assert_eq!(sts.published_ips().len(), 3);
    running.stop().await;
}

#[tokio::test]
async fn a_recreated_pods_old_address_is_gone() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "etcd", "etcd");
    sts.create(3);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    let old = IpAddr::V4(sts.ipv4(0));
    wait_for(dns, &name("etcd-0", "etcd", "default"), &[old], false).await;
    sts.recreate(0);
    let new = IpAddr::V4(sts.ipv4(0));
    assert_ne!(old, new);
    wait_for(dns, &name("etcd-0", "etcd", "default"), &[new], false).await;
    let (_, all) = addresses(dns, &name("", "etcd", "default")).await;
    assert!(!all.contains(&old) && all.contains(&new), "{all:?}");
    let reverse = query(
        dns,
        &Ask::new(&crate::support::reverse_name(&old), RecordType::PTR),
        Over::Udp,
    )
    .await;
    assert_eq!(reverse.metadata.response_code, ResponseCode::NXDomain);
    running.stop().await;
}

#[tokio::test]
async fn dual_stack_and_a_service_over_several_slices() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "kafka", "kafka");
    sts.max_endpoints_per_slice(2);
    sts.create(5);
    sts.dual_stack(true);
    assert!(sts.slice_names().len() >= 6, "{:?}", sts.slice_names());
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    wait_for(dns, &name("", "kafka", "default"), &sts.ready_ips(), false).await;
    let both = [IpAddr::V4(sts.ipv4(3)), IpAddr::V6(sts.ipv6(3))];
    wait_for(dns, &name("kafka-3", "kafka", "default"), &both, false).await;
    // A pod moving between slices never leaves the answers.
    sts.move_endpoint(0, 0, 2);
    wait_for(dns, &name("", "kafka", "default"), &sts.ready_ips(), true).await;
    running.stop().await;
}

#[tokio::test]
async fn a_watch_dropped_in_the_middle_of_a_scale() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "cass", "cass");
    sts.create(2);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    wait_for(dns, &name("", "cass", "default"), &sts.ready_ips(), false).await;
    sts.scale(4);
    api.drop_watches();
    sts.scale(6);
    api.drop_watches();
    sts.scale(5);
    wait_for(dns, &name("", "cass", "default"), &sts.ready_ips(), true).await;
    assert_eq!(sts.ready_ips().len(), 5);
    running.stop().await;
}

#[tokio::test]
async fn a_410_relist_deletes_a_service_removed_while_the_watch_was_down() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut keep = StatefulSetDriver::new(&api, "default", "keep", "keep");
    keep.create(2);
    let mut doomed = StatefulSetDriver::new(&api, "default", "doomed", "doomed");
    doomed.create(2);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    wait_for(
        dns,
        &name("", "doomed", "default"),
        &doomed.ready_ips(),
        false,
    )
    .await;
    let lists_before = api.count(Verb::List, Resource::Services);

    api.set_unreachable(true);
    api.delete(Resource::Services, "default", "doomed");
    for slice in doomed.slice_names() {
        api.delete(Resource::EndpointSlices, "default", &slice);
    }
    api.expire_history();
    // While the API is away, the last state keeps being served.
    wait_for(
        dns,
        &name("", "doomed", "default"),
        &doomed.ready_ips(),
        false,
    )
    .await;
    api.set_unreachable(false);

    wait_for_rcode(
        dns,
        &name("", "doomed", "default"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    wait_for(dns, &name("", "keep", "default"), &keep.ready_ips(), true).await;
    assert!(
        api.count(Verb::List, Resource::Services) > lists_before,
        "a relist happened"
    );
    assert!(running.watch_stats.as_ref().unwrap().relists() >= 1);
    running.stop().await;
}

#[tokio::test]
async fn the_api_unreachable_for_seconds_changes_no_answer() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "nats", "nats");
    sts.create(3);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    let service = name("", "nats", "default");
    wait_for(dns, &service, &sts.ready_ips(), false).await;
    let expected: BTreeSet<IpAddr> = sts.ready_ips().into_iter().collect();
    api.set_unreachable(true);
    api.fail_next(3);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            addresses(dns, &service).await,
            (ResponseCode::NoError, expected.clone())
        );
        let missing = query(
            dns,
            &Ask::new("nosuch.default.svc.cluster.local.", RecordType::A),
            Over::Udp,
        )
        .await;
        assert_eq!(
            missing.metadata.response_code,
            ResponseCode::NXDomain,
            "still synced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    api.set_unreachable(false);
    sts.scale(4);
    wait_for(dns, &service, &sts.ready_ips(), true).await;
    assert!(
        running.watch_stats.as_ref().unwrap().api_errors() > 0,
        "errors were counted"
    );
    running.stop().await;
}

#[tokio::test]
async fn a_cold_start_against_an_unreachable_api_answers_servfail_then_the_truth() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "default", "mongo", "mongo");
    sts.create(2);
    api.set_unreachable(true);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    for question in [
        "mongo.default.svc.cluster.local.",
        "nosuch.default.svc.cluster.local.",
    ] {
        for over in [Over::Udp, Over::Tcp] {
            let reply = query(dns, &Ask::new(question, RecordType::A), over).await;
            assert_eq!(
                reply.metadata.response_code,
                ResponseCode::ServFail,
                "{question} before sync"
            );
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!running.index.is_synced());
    api.set_unreachable(false);
    wait_for(dns, &name("", "mongo", "default"), &sts.ready_ips(), false).await;
    wait_for_rcode(
        dns,
        "nosuch.default.svc.cluster.local.",
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    running.stop().await;
}

#[tokio::test]
async fn namespaces_and_label_selectors_limit_what_is_served() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut inside = StatefulSetDriver::new(&api, "team-a", "redis", "redis");
    inside.create(2);
    let mut outside = StatefulSetDriver::new(&api, "team-b", "redis", "redis");
    outside.create(2);
    let mut other = StatefulSetDriver::new(&api, "team-b", "valkey", "valkey");
    other.create(2);
    let running = watch_with(&api, dir.path(), |config| {
        config.source.kubernetes.namespaces = vec!["team-a".into()];
    })
    .await;
    let dns = running.addresses[0];
    wait_for(
        dns,
        &name("", "redis", "team-a"),
        &inside.ready_ips(),
        false,
    )
    .await;
    wait_for_rcode(
        dns,
        &name("", "redis", "team-b"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    running.stop().await;

    let selected = watch_with(&api, dir.path(), |config| {
        config.source.kubernetes.label_selector = Some("app in (redis)".into());
    })
    .await;
    let dns = selected.addresses[0];
    wait_for(
        dns,
        &name("", "redis", "team-b"),
        &outside.ready_ips(),
        false,
    )
    .await;
    wait_for(
        dns,
        &name("", "redis", "team-a"),
        &inside.ready_ips(),
        false,
    )
    .await;
    wait_for_rcode(
        dns,
        &name("", "valkey", "team-b"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    selected.stop().await;
}

/// A headless Service with one port, `web` 80, in `default`, as the API returns it.
pub fn headless_service_json(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}})
}

/// An IPv4 EndpointSlice of `service` in `default`, port `web` 80.
pub fn slice_json(
    name: &str,
    service: &str,
    endpoints: Vec<serde_json::Value>,
) -> serde_json::Value {
    serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4", "ports": [{"name": "web", "port": 80, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// A ready endpoint with a hostname.
pub fn ready_endpoint_json(ip: &str, hostname: &str) -> serde_json::Value {
    serde_json::json!({"addresses": [ip], "hostname": hostname, "conditions": {"ready": true}})
}

#[tokio::test]
async fn an_endpoint_moved_between_slices_removal_first_never_blinks_out() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let slice = |name: &str, ips: &[(&str, &str)]| {
        let endpoints = ips
            .iter()
            .map(|(pod, ip)| ready_endpoint_json(ip, pod))
            .collect();
        slice_json(name, "es", endpoints)
    };
    api.apply(&headless_service_json("es"));
    api.apply(&slice(
        "es-a",
        &[("es-0", "10.9.0.1"), ("es-1", "10.9.0.2")],
    ));
    let running = watch_with(&api, dir.path(), |config| {
        config.source.kubernetes.departure_grace_ms = 5_000;
    })
    .await;
    let dns = running.addresses[0];
    let both: Vec<IpAddr> = vec!["10.9.0.1".parse().unwrap(), "10.9.0.2".parse().unwrap()];
    wait_for(dns, &name("", "es", "default"), &both, false).await;
    let stats = running.watch_stats.clone().unwrap();
    let events = stats.events();
    api.apply(&slice("es-a", &[("es-0", "10.9.0.1")])); // the removal arrives first
    while stats.events() == events {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        addresses(dns, &name("es-1", "es", "default")).await.0,
        ResponseCode::NoError,
        "es-1 blinked out"
    );
    wait_for(dns, &name("", "es", "default"), &both, true).await;
    api.apply(&slice("es-b", &[("es-1", "10.9.0.2")])); // then the addition
    wait_for(dns, &name("es-1", "es", "default"), &both[1..], true).await;
    running.stop().await;
}

#[tokio::test]
async fn bad_api_objects_are_skipped_and_hide_nothing_else() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut good = StatefulSetDriver::new(&api, "default", "good", "good");
    good.create(3);
    let (service, slice) = (headless_service_json, slice_json);
    let endpoint = |ip: String, hostname: &str| ready_endpoint_json(&ip, hostname);
    // A Service name of 64 characters, an address that is not an IP, a hostname of 64
    // characters, a slice of 10,000 endpoints, a slice without its service-name label.
    api.apply(&service(&"x".repeat(64)));
    api.apply(&service("bad"));
    api.apply(&slice(
        "bad-ip",
        "bad",
        vec![endpoint("10.0.0.x".into(), "bad-0")],
    ));
    api.apply(&slice(
        "bad-host",
        "bad",
        vec![endpoint("10.7.0.1".into(), &"h".repeat(64))],
    ));
    let huge: Vec<_> = (0..10_000)
        .map(|i| {
            endpoint(
                format!("10.8.{}.{}", i / 250, i % 250 + 1),
                &format!("huge-{i}"),
            )
        })
        .collect();
    api.apply(&service("huge"));
    api.apply(&slice("huge-1", "huge", huge));
    let mut unlabelled = slice(
        "orphan",
        "good",
        vec![endpoint("10.7.0.9".into(), "orphan-0")],
    );
    unlabelled["metadata"]["labels"] = serde_json::json!({});
    api.apply(&unlabelled);
    // A port name Kubernetes would refuse (it would be served at `_web_bad._tcp`): the Service
    // is skipped, so its ready endpoint does not answer.
    let mut bad_port = service("badport");
    bad_port["spec"]["ports"][0]["name"] = "Web_Bad".into();
    api.apply(&bad_port);
    api.apply(&slice(
        "badport-1",
        "badport",
        vec![endpoint("10.7.0.5".into(), "badport-0")],
    ));

    let running = watch_with(&api, dir.path(), |_| {}).await;
    let dns = running.addresses[0];
    wait_for(dns, &name("", "good", "default"), &good.ready_ips(), false).await;
    wait_for_rcode(
        dns,
        &name("", "bad", "default"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    wait_for_rcode(
        dns,
        &name("", "huge", "default"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    wait_for_rcode(
        dns,
        &name("", "badport", "default"),
        RecordType::A,
        ResponseCode::NXDomain,
    )
    .await;
    // The source keeps following the cluster after the bad objects.
    good.scale(5);
    wait_for(dns, &name("", "good", "default"), &good.ready_ips(), true).await;
    api.apply(&slice(
        "bad-ip",
        "bad",
        vec![endpoint("10.7.0.2".into(), "bad-0")],
    ));
    wait_for(
        dns,
        &name("bad-0", "bad", "default"),
        &["10.7.0.2".parse().unwrap()],
        false,
    )
    .await;
    running.stop().await;
}
