//! Zone transfers (R14) to a real secondary: Knot DNS (`knotd`) pulls every zone from peerdns
//! by AXFR and must then answer every question exactly as peerdns does.
//!
//! Where `knotd` is missing the Knot tests say SKIPPED and why; `.ci/run` installs it, so CI
//! runs them. Compared per question: the rcode, the answer records and the authority records
//! (owner, class, type, data; not TTL: Knot counts a TTL down from what it was given, peerdns
//! answers its configured one). AA is set by both. The additional section is not compared:
//! what a server adds there is its own choice (peerdns adds SRV targets' addresses, Knot its
//! own selection).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use peerdns::app::Running;
use peerdns::config::{Config, TransferConfig};

use crate::knot::{Knot, free_port, knot_available};
use crate::support::{Ask, Over, config_for, query, reverse_name, root, tcp_raw};

/// peerdns on `cluster`, transfers allowed to `allow`, with a nameserver address (so that
/// `ns.dns` has one, as a zone's NS target should).
async fn primary(cluster: &Path, allow: &[&str]) -> Running {
    let mut config: Config = config_for(cluster);
    config.dns.nameserver_addresses = vec!["192.0.2.53".parse().unwrap()];
    config.transfer = Some(TransferConfig {
        allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
        ..TransferConfig::default()
    });
    peerdns::app::start(&config).await.expect("server starts")
}

/// The names a cluster file's objects can answer for, and negatives around them.
fn every_name(cluster: &Path) -> (BTreeSet<String>, BTreeSet<String>) {
    let pod_cidrs = Config::default().source.pod_cidrs;
    let state = peerdns::source::file::load(cluster, &pod_cidrs).expect("cluster loads");
    let mut names: BTreeSet<String> = [
        "",
        "svc.",
        "dns.",
        "dns-version.",
        "ns.dns.",
        "nosuch.",
        "nosuch.svc.",
        "x.ns.dns.",
    ]
    .iter()
    .map(|prefix| format!("{prefix}cluster.local."))
    .collect();
    let mut reverse: BTreeSet<String> = [
        "in-addr.arpa.",
        "10.in-addr.arpa.",
        "ip6.arpa.",
        "9.9.9.9.in-addr.arpa.",
    ]
    .iter()
    .map(|name| name.to_string())
    .collect();
    for service in &state.services {
        let (name, namespace) = (&service.key.name, &service.key.namespace);
        let base = format!("{name}.{namespace}.svc.cluster.local.");
        names.insert(format!("{namespace}.svc.cluster.local."));
        for prefix in [
            "nosuch.",
            "seeds.",
            "_tcp.",
            "_udp.",
            "_nosuch._tcp.",
            "a.b.",
        ] {
            names.insert(format!("{prefix}{base}"));
        }
        for port in &service.ports {
            if let Some(port_name) = &port.name {
                names.insert(format!("_{port_name}._{}.{base}", port.protocol.label()));
            }
        }
        if let peerdns::model::ServiceKind::ClusterIp(ips) = &service.kind {
            reverse.extend(ips.iter().map(reverse_name));
        }
        names.insert(base);
    }
    for slice in &state.slices {
        let base = format!(
            "{}.{}.svc.cluster.local.",
            slice.service.name, slice.service.namespace
        );
        for port in &slice.ports {
            if let Some(port_name) = &port.name {
                names.insert(format!("_{port_name}._{}.{base}", port.protocol.label()));
            }
        }
        for endpoint in &slice.endpoints {
            let labels = endpoint.hostname.iter().chain(endpoint.pod_name.iter());
            names.extend(labels.map(|label| format!("{label}.{base}")));
            for ip in &endpoint.addresses {
                names.insert(format!("{}.{base}", peerdns::index::dashed_ip(ip)));
                reverse.insert(reverse_name(ip));
            }
        }
    }
    (names, reverse)
}

/// What is compared of a reply: rcode, AA, answer and authority records without TTLs.
fn comparable(reply: &Message) -> String {
    let render = |records: &[Record]| {
        let mut lines: Vec<String> = records
            .iter()
            .map(|r| format!("{} {} {} {}", r.name, r.dns_class, r.record_type(), r.data))
            .collect();
        lines.sort();
        lines.join("\n    ")
    };
    format!(
        "{} aa={}\n  answer:\n    {}\n  authority:\n    {}",
        reply.metadata.response_code,
        reply.metadata.authoritative,
        render(&reply.answers),
        render(&reply.authorities),
    )
}

/// Asks both servers every question about `cluster`'s names; returns the differences and
/// how many answers were positive.
async fn compare(peerdns: SocketAddr, knot: SocketAddr, cluster: &Path) -> (Vec<String>, usize) {
    let (names, reverse) = every_name(cluster);
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::TXT,
        RecordType::CNAME,
        RecordType::SOA,
        RecordType::NS,
        RecordType::PTR,
        RecordType::MX,
    ];
    let questions = names
        .iter()
        .flat_map(|name| types.iter().map(move |t| (name.clone(), *t)))
        .chain(reverse.iter().flat_map(|name| {
            [RecordType::PTR, RecordType::A, RecordType::SOA].map(|t| (name.clone(), t))
        }));
    let mut differences = Vec::new();
    let mut positive = 0;
    for (name, rtype) in questions {
        let ask = Ask::new(&name, rtype);
        let ours = query(peerdns, &ask, Over::Tcp).await;
        let theirs = query(knot, &ask, Over::Tcp).await;
        positive += usize::from(!ours.answers.is_empty());
        let (ours, theirs) = (comparable(&ours), comparable(&theirs));
        if ours != theirs {
            differences.push(format!(
                "{name} {rtype}:\n peerdns {ours}\n knot    {theirs}"
            ));
        }
    }
    (differences, positive)
}

/// A generated cluster: Services of every kind in four namespaces (one holding only headless
/// Services without ready endpoints), ports named and not, endpoints with and without
/// hostnames, dual-stack, not ready and terminating, the bootstrap annotations, and Services
/// whose pods all answer their own names before any is ready.
fn generated_cluster(seed: u64) -> String {
    let mut state = seed;
    let mut below = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    let mut documents = Vec::new();
    for s in 0..48u64 {
        let namespace = ["default", "apps", "db", "empty"][(s % 4) as usize];
        let name = format!("svc{s}");
        let empty = namespace == "empty";
        let named_ports = below(3) != 0;
        let ports = match named_ports {
            true => {
                "[{name: peer, port: 2380, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]"
            }
            false => "[{port: 8080, protocol: TCP}]",
        };
        let mut annotations = Vec::new();
        if !empty && s % 5 == 1 {
            annotations.push("peerdns.io/not-ready-names: \"true\"".to_string());
        }
        if !empty && s % 7 == 2 {
            annotations.push("peerdns.io/seeds: \"2\"".to_string());
        }
        if !empty && s % 6 == 3 {
            annotations.push("peerdns.io/txt: \"replicaSet=rs0\"".to_string());
        }
        let kind = if empty { 0 } else { below(10) };
        let spec = match kind {
            6 | 7 => format!("clusterIP: 10.96.1.{s}\n  ports: {ports}"),
            8 => format!(
                "type: ExternalName\n  externalName: svc{}.default.svc.cluster.local",
                s - 2
            ),
            9 => "type: ExternalName\n  externalName: www.example.com".to_string(),
            _ => format!("clusterIP: None\n  ports: {ports}"),
        };
        documents.push(format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations: {{{}}}\nspec:\n  {spec}\n",
            annotations.join(", ")
        ));
        if kind >= 8 {
            continue;
        }
        // svc1, svc11, ...: every pod still starting, answering only its own name.
        let all_starting = s % 10 == 1;
        let size = below(6) + u64::from(all_starting);
        for family in ["IPv4", "IPv6"] {
            if family == "IPv6" && below(3) != 0 {
                continue;
            }
            let mut endpoints = String::new();
            for i in 0..size {
                let address = match family {
                    "IPv4" => format!("10.{}.{s}.{}", 200 + (s % 4), i + 1),
                    _ => format!("fd00::{s:x}:{:x}", i + 1),
                };
                let ready = !empty && !all_starting && below(4) != 0;
                let terminating = !ready && below(3) == 0;
                let stateful = s % 3 != 2;
                let pod = match stateful {
                    true => format!("{name}-{i}"),
                    false => format!("{name}-7c9f-{:05x}", below(0xfffff)),
                };
                let hostname = match stateful {
                    true => format!("hostname: {pod}, "),
                    false => String::new(),
                };
                endpoints.push_str(&format!(
                    "  - {{addresses: [\"{address}\"], {hostname}conditions: {{ready: {ready}, terminating: {terminating}}}, targetRef: {{kind: Pod, name: {pod}, namespace: {namespace}}}}}\n"
                ));
            }
            let slice_ports = match named_ports {
                true => ports,
                false => "[{port: 8080, protocol: TCP}]",
            };
            documents.push(format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: {name}-{}\n  namespace: {namespace}\n  labels: {{kubernetes.io/service-name: {name}}}\naddressType: {family}\nports: {slice_ports}\nendpoints:\n{}",
                family.to_lowercase(),
                if endpoints.is_empty() { "  []\n".to_string() } else { endpoints },
            ));
        }
    }
    documents.join("---\n")
}

/// Starts peerdns on `cluster` and a Knot secondary of its zones, waits for the transfer, and
/// compares every answer.
async fn secondary_answers_like_peerdns(cluster: &Path) {
    let running = primary(cluster, &["127.0.0.0/8"]).await;
    let address = running.addresses[0];
    let zones = ["cluster.local", "in-addr.arpa", "ip6.arpa"];
    let knot = Knot::secondary(address, &zones);
    let serial = running.index.serial();
    for zone in zones {
        knot.wait_for_serial(&format!("{zone}."), serial, Duration::from_secs(10))
            .await;
    }
    let (differences, positive) = compare(address, knot.address, cluster).await;
    assert!(
        positive > 50,
        "only {positive} positive answers: the comparison would be hollow"
    );
    assert!(
        differences.is_empty(),
        "{} differences for {}:\n{}",
        differences.len(),
        cluster.display(),
        differences.join("\n")
    );
    let metrics = &running.admin.metrics;
    let complete = metrics.transfers("axfr", peerdns::metrics::TransferOutcome::Complete);
    assert!(complete >= 3, "{complete} complete transfers counted");
    running.stop().await;
}

#[tokio::test]
async fn a_knot_secondary_answers_the_rules_cluster_exactly_as_peerdns() {
    if !knot_available("knot secondary (rules)") {
        return;
    }
    secondary_answers_like_peerdns(&root().join("tests/clusters/rules.yaml")).await;
}

#[tokio::test]
async fn a_knot_secondary_answers_the_bootstrap_cluster_exactly_as_peerdns() {
    if !knot_available("knot secondary (bootstrap)") {
        return;
    }
    secondary_answers_like_peerdns(&root().join("tests/clusters/bootstrap.yaml")).await;
}

#[tokio::test]
async fn a_knot_secondary_answers_generated_clusters_exactly_as_peerdns() {
    if !knot_available("knot secondary (generated)") {
        return;
    }
    for seed in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cluster.yaml");
        std::fs::write(&file, generated_cluster(seed)).unwrap();
        secondary_answers_like_peerdns(&file).await;
    }
}

/// A transfer request over TCP; the reply's rcode.
async fn transfer_rcode(server: SocketAddr, zone: &str, qtype: RecordType) -> ResponseCode {
    let mut message = Message::new(0x4242, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(zone).unwrap(), qtype));
    let reply = tcp_raw(server, &message.to_vec().unwrap()).await;
    let reply = Message::from_vec(&reply.expect("a reply")).unwrap();
    reply.metadata.response_code
}

#[tokio::test]
async fn transfers_are_refused_outside_allow_and_without_the_transfer_section() {
    let cluster = root().join("config/cluster.yaml");
    let elsewhere = primary(&cluster, &["10.0.0.0/8"]).await;
    let server = elsewhere.addresses[0];
    assert_eq!(
        transfer_rcode(server, "cluster.local.", RecordType::AXFR).await,
        ResponseCode::Refused
    );
    let metrics = &elsewhere.admin.metrics;
    let refused = metrics.transfers("axfr", peerdns::metrics::TransferOutcome::Refused);
    assert_eq!(refused, 1);
    elsewhere.stop().await;

    let plain = crate::support::serve_file(&cluster).await;
    let server = plain.addresses[0];
    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        assert_eq!(
            transfer_rcode(server, "cluster.local.", qtype).await,
            ResponseCode::Refused,
            "{qtype} without [transfer]"
        );
    }
    plain.stop().await;

    let allowed = primary(&cluster, &["127.0.0.1/32"]).await;
    let server = allowed.addresses[0];
    assert_eq!(
        transfer_rcode(server, "default.svc.cluster.local.", RecordType::AXFR).await,
        ResponseCode::NotAuth,
        "not a zone apex"
    );
    assert_eq!(
        transfer_rcode(server, "example.com.", RecordType::AXFR).await,
        ResponseCode::Refused,
        "not our zone"
    );
    allowed.stop().await;
}

/// A headless Service `web` with `ready` ready pods and `starting` not-ready ones, and a
/// ClusterIP Service `api` unless `without_api`, plus `extra` when given.
fn editable_cluster(ready: u32, starting: u32, without_api: bool, extra: Option<&str>) -> String {
    let mut endpoints = String::new();
    for i in 0..ready + starting {
        let ready = i < ready;
        endpoints.push_str(&format!(
            "  - {{addresses: [\"10.7.0.{}\"], hostname: web-{i}, conditions: {{ready: {ready}}}}}\n",
            i + 1
        ));
    }
    let mut text = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: live}}\nspec:\n  clusterIP: None\n  ports: [{{name: peer, port: 7000}}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: web-1\n  namespace: live\n  labels: {{kubernetes.io/service-name: web}}\naddressType: IPv4\nports: [{{name: peer, port: 7000, protocol: TCP}}]\nendpoints:\n{endpoints}"
    );
    if !without_api {
        text.push_str("---\napiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: live}\nspec:\n  clusterIP: 10.96.7.1\n  ports: [{name: http, port: 80}]\n");
    }
    if let Some(extra) = extra {
        text.push_str("---\n");
        text.push_str(extra);
    }
    text
}

/// Waits until `knot` answers `name` `rtype` as `peerdns` does (after a change), within 5 s.
async fn wait_until_same(peerdns: SocketAddr, knot: &Knot, name: &str, rtype: RecordType) {
    let started = Instant::now();
    let ask = Ask::new(name, rtype);
    loop {
        let ours = comparable(&query(peerdns, &ask, Over::Tcp).await);
        let theirs = comparable(&query(knot.address, &ask, Over::Tcp).await);
        if ours == theirs {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "knot still answers {name} {rtype} differently:\n peerdns {ours}\n knot    {theirs}\nits log:\n{}",
            knot.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn changes_reach_a_knot_secondary_through_notify() {
    if !knot_available("knot secondary (notify)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("cluster.yaml");
    std::fs::write(&file, editable_cluster(3, 0, false, None)).unwrap();
    let knot_port = free_port();
    let mut config: Config = config_for(&file);
    config.dns.nameserver_addresses = vec!["192.0.2.53".parse().unwrap()];
    config.dns.reverse_zones = vec!["in-addr.arpa".into()];
    config.transfer = Some(TransferConfig {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        notify: vec![SocketAddr::from(([127, 0, 0, 1], knot_port))],
        ..TransferConfig::default()
    });
    let running = peerdns::app::start(&config).await.expect("server starts");
    let address = running.addresses[0];
    let knot = Knot::secondary_on(knot_port, address, &["cluster.local", "in-addr.arpa"]);
    knot.wait_for_serial(
        "cluster.local.",
        running.index.serial(),
        Duration::from_secs(10),
    )
    .await;

    let web = "web.live.svc.cluster.local.";
    // Rewrites the cluster file and waits until peerdns serves the change (its serial moves).
    let edit = async |text: String| {
        let before = running.index.serial();
        std::fs::write(&file, text).unwrap();
        let started = Instant::now();
        while running.index.serial() == before {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the edit was never loaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    // Scale up: a fourth ready pod.
    edit(editable_cluster(4, 0, false, None)).await;
    wait_until_same(address, &knot, web, RecordType::A).await;
    wait_until_same(
        address,
        &knot,
        "web-3.web.live.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    wait_until_same(address, &knot, "4.0.7.10.in-addr.arpa.", RecordType::PTR).await;
    // A pod turns not ready.
    edit(editable_cluster(3, 1, false, None)).await;
    wait_until_same(address, &knot, web, RecordType::SRV).await;
    // A new Service, then a deleted one.
    let new_service = "apiVersion: v1\nkind: Service\nmetadata: {name: cache, namespace: live}\nspec:\n  clusterIP: 10.96.7.2\n";
    edit(editable_cluster(3, 1, false, Some(new_service))).await;
    wait_until_same(
        address,
        &knot,
        "cache.live.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    edit(editable_cluster(3, 1, true, Some(new_service))).await;
    wait_until_same(address, &knot, "api.live.svc.cluster.local.", RecordType::A).await;
    knot.wait_for_serial(
        "cluster.local.",
        running.index.serial(),
        Duration::from_secs(10),
    )
    .await;

    let metrics = &running.admin.metrics;
    let acknowledged = metrics.notify_events(peerdns::metrics::NotifyEvent::Acknowledged);
    let events = [
        peerdns::metrics::NotifyEvent::Sent,
        peerdns::metrics::NotifyEvent::Refused,
        peerdns::metrics::NotifyEvent::TimedOut,
    ]
    .map(|event| metrics.notify_events(event));
    assert!(
        acknowledged >= 4,
        "{acknowledged} NOTIFYs acknowledged (sent, refused, timed out: {events:?}); knot's log:\n{}",
        knot.log()
    );
    // Knot's own log: one AXFR per zone to start, then only IXFRs (the changes, not the zone).
    let log = knot.log();
    let axfrs = log.matches("AXFR, incoming").count();
    let ixfrs = log
        .lines()
        .filter(|line| line.contains("IXFR, incoming") && line.contains("finished"))
        .count();
    assert_eq!(
        axfrs,
        2 * 2,
        "two AXFR lines (started, finished) per zone:\n{log}"
    );
    assert!(ixfrs >= 4, "{ixfrs} IXFRs:\n{log}");
    assert!(!log.contains("fallback"), "no fallback to AXFR:\n{log}");
    running.stop().await;
}

/// An IXFR request for `zone` from `serial` (its SOA in the authority section).
fn ixfr_request(zone: &str, serial: u32) -> Vec<u8> {
    let apex = Name::from_ascii(zone).unwrap();
    let mut message = Message::new(0x5151, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(apex.clone(), RecordType::IXFR));
    let soa = hickory_proto::rr::rdata::SOA::new(apex.clone(), apex.clone(), serial, 1, 1, 1, 1);
    message.add_authority(Record::from_rdata(apex, 0, RData::SOA(soa)));
    message.to_vec().unwrap()
}

#[tokio::test]
async fn an_ixfr_over_udp_gets_the_current_soa_alone() {
    let cluster = root().join("config/cluster.yaml");
    let allowed = primary(&cluster, &["127.0.0.0/8"]).await;
    let server = allowed.addresses[0];
    let serial = allowed.index.serial();
    let reply = crate::support::udp_raw(server, &ixfr_request("cluster.local.", 1))
        .await
        .expect("an answer");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
    assert!(reply.metadata.authoritative);
    assert_eq!(reply.answers.len(), 1, "the SOA alone: retry over TCP");
    match &reply.answers[0].data {
        RData::SOA(soa) => assert_eq!(soa.serial, serial),
        other => panic!("not an SOA: {other:?}"),
    }
    allowed.stop().await;

    let elsewhere = primary(&cluster, &["10.0.0.0/8"]).await;
    let reply = crate::support::udp_raw(elsewhere.addresses[0], &ixfr_request("cluster.local.", 1))
        .await
        .expect("an answer");
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(reply.answers.is_empty());
    elsewhere.stop().await;
}

#[test]
fn the_shipped_knot_secondary_config_is_valid() {
    if !knot_available("knot secondary config") {
        return;
    }
    let config = root().join("deploy/secondary/knot.conf");
    let checked = Command::new("knotc")
        .arg("-c")
        .arg(&config)
        .arg("conf-check")
        .output()
        .expect("knotc runs");
    assert!(
        checked.status.success(),
        "knotc conf-check: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}
