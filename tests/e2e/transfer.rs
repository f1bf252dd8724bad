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
use peerdns::metrics::TransferOutcome;

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
    changes_reach_knot(false).await;
}

#[tokio::test]
async fn changes_reach_a_knot_secondary_with_tsig_on_everything() {
    if !knot_available("knot secondary (notify, TSIG)") {
        return;
    }
    changes_reach_knot(true).await;
}

/// The TSIG key the tests share with Knot: its name and base64 secret.
const KEY_NAME: &str = "transfer-key";
const KEY_SECRET: &str = "c2VjcmV0LXNoYXJlZC13aXRoLXRoZS1zZWNvbmRhcnkhIQ==";

/// Writes the key file (BIND's `tsig-keygen` form) into `dir`.
fn key_file(dir: &Path, secret: &str) -> std::path::PathBuf {
    let path = dir.join("tsig.key");
    std::fs::write(
        &path,
        format!("key \"{KEY_NAME}\" {{\n\talgorithm hmac-sha256;\n\tsecret \"{secret}\";\n}};\n"),
    )
    .unwrap();
    path
}

/// Scale, not-ready, a new and a deleted Service reach a Knot secondary through NOTIFY and
/// IXFR; with `tsig`, every message both ways is signed (Knot refuses anything else).
async fn changes_reach_knot(tsig: bool) {
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
        tsig_key_file: tsig.then(|| key_file(dir.path(), KEY_SECRET)),
        ..TransferConfig::default()
    });
    let running = peerdns::app::start(&config).await.expect("server starts");
    let address = running.addresses[0];
    let zones = ["cluster.local", "in-addr.arpa"];
    let key = tsig.then_some((KEY_NAME, KEY_SECRET));
    let knot = Knot::secondary_keyed(knot_port, address, &zones, key);
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
    if tsig {
        assert!(!log.contains("TSIG"), "no TSIG complaint:\n{log}");
        assert_eq!(events[1], 0, "no NOTIFY refused");
        // The control: a secondary with another secret gets nothing, and peerdns says why.
        let refused_before = metrics.transfers("axfr", TransferOutcome::Refused);
        let wrong = "b3RoZXItc2VjcmV0LW5vdC10aGUtcHJpbWFyeXMta2V5IQ==";
        let outsider = Knot::secondary_keyed(free_port(), address, &zones, Some((KEY_NAME, wrong)));
        let started = Instant::now();
        while metrics.transfers("axfr", TransferOutcome::Refused) == refused_before {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "a secondary with the wrong secret was never refused; its log:\n{}",
                outsider.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(
            crate::knot::soa_serial(outsider.address, "cluster.local.").await,
            None,
            "the outsider has no zone; its log:\n{}",
            outsider.log()
        );
    }
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

/// An AXFR request for `zone`, signed by `signer` when given (hickory's own TSIG code, a
/// second implementation), and the verifier of its answers.
fn axfr_request(
    zone: &str,
    signer: Option<&hickory_proto::rr::TSigner>,
) -> (Vec<u8>, Option<hickory_proto::rr::TSigVerifier>) {
    let mut message = Message::new(0x7a7a, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(
        Name::from_ascii(zone).unwrap(),
        RecordType::AXFR,
    ));
    let Some(signer) = signer else {
        return (message.to_vec().unwrap(), None);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (record, verifier) = signer.sign_message(&message, now).unwrap();
    message.set_signature(record);
    (message.to_vec().unwrap(), verifier)
}

fn signer(name: &str, secret: &str) -> hickory_proto::rr::TSigner {
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    let secret = data_encoding::BASE64.decode(secret.as_bytes()).unwrap();
    hickory_proto::rr::TSigner::new(
        secret,
        TsigAlgorithm::HmacSha256,
        Name::from_ascii(name).unwrap(),
        300,
    )
    .unwrap()
}

/// Reads length-prefixed messages from `stream` until one ends with the zone's closing SOA.
async fn read_transfer(stream: &mut tokio::net::TcpStream) -> Vec<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut messages = Vec::new();
    let mut soas = 0;
    while soas < 2 {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut message).await.unwrap();
        let parsed = Message::from_vec(&message).unwrap();
        assert_eq!(parsed.metadata.response_code, ResponseCode::NoError);
        soas += parsed
            .answers
            .iter()
            .filter(|r| r.record_type() == RecordType::SOA)
            .count();
        messages.push(message);
    }
    messages
}

#[tokio::test]
async fn with_a_tsig_key_transfers_must_be_signed_and_every_message_is() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = dir.path().join("cluster.yaml");
    // 200 headless Services of 5 pods: a zone of several 64 KiB messages.
    let mut text = String::new();
    for s in 0..200 {
        let endpoints: String = (0..5)
            .map(|p| {
                format!(
                    "  - {{addresses: [\"10.8.{s}.{}\"], hostname: db-{p}}}\n",
                    p + 1
                )
            })
            .collect();
        text.push_str(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: db{s}, namespace: big}}\nspec:\n  clusterIP: None\n  ports: [{{name: peer, port: 7000}}]\n---\n\
             apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: db{s}-1\n  namespace: big\n  labels: {{kubernetes.io/service-name: db{s}}}\naddressType: IPv4\nports: [{{name: peer, port: 7000, protocol: TCP}}]\nendpoints:\n{endpoints}---\n"
        ));
    }
    std::fs::write(&cluster, text).unwrap();
    let mut config: Config = config_for(&cluster);
    config.dns.nameserver_addresses = vec!["192.0.2.53".parse().unwrap()];
    config.transfer = Some(TransferConfig {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        tsig_key_file: Some(key_file(dir.path(), KEY_SECRET)),
        ..TransferConfig::default()
    });
    let running = peerdns::app::start(&config).await.expect("server starts");
    let server = running.addresses[0];
    let zone = "cluster.local.";
    let ask = async |request: &[u8]| {
        let reply = tcp_raw(server, request).await.expect("a reply");
        Message::from_vec(&reply).unwrap()
    };

    // Unsigned: NOTAUTH, no records.
    let (unsigned, _) = axfr_request(zone, None);
    let reply = ask(&unsigned).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert!(reply.answers.is_empty());
    // Another secret: NOTAUTH with BADSIG; another key name: BADKEY.
    use hickory_proto::rr::rdata::tsig::TsigError;
    let wrong_secret = signer(KEY_NAME, "b3RoZXItc2VjcmV0LW5vdC10aGUtcHJpbWFyeXMta2V5IQ==");
    let reply = ask(&axfr_request(zone, Some(&wrong_secret)).0).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        reply.signature().unwrap().data.error,
        Some(TsigError::BadSig)
    );
    assert!(reply.answers.is_empty());
    let other_key = signer("someone-else", KEY_SECRET);
    let reply = ask(&axfr_request(zone, Some(&other_key)).0).await;
    assert_eq!(
        reply.signature().unwrap().data.error,
        Some(TsigError::BadKey)
    );
    let refused = running
        .admin
        .metrics
        .transfers("axfr", TransferOutcome::Refused);
    assert_eq!(refused, 3);

    // Signed with the key: the whole zone, each message verified by hickory in turn.
    let (signed, verifier) = axfr_request(zone, Some(&signer(KEY_NAME, KEY_SECRET)));
    let mut verifier = verifier.unwrap();
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    {
        use tokio::io::AsyncWriteExt;
        let mut framed = (signed.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&signed);
        stream.write_all(&framed).await.unwrap();
    }
    let messages = read_transfer(&mut stream).await;
    for (n, message) in messages.iter().enumerate() {
        verifier
            .verify(message)
            .unwrap_or_else(|e| panic!("message {n} of {}: {e}", messages.len()));
    }
    let records: usize = messages
        .iter()
        .map(|m| Message::from_vec(m).unwrap().answers.len())
        .sum();
    assert!(
        messages.len() >= 3 && records > 3000,
        "{records} records in {} messages",
        messages.len()
    );

    // A signed SOA query (what a secondary's refresh sends) is answered, signed.
    let mut soa = Message::new(9, MessageType::Query, OpCode::Query);
    soa.add_query(Query::query(
        Name::from_ascii(zone).unwrap(),
        RecordType::SOA,
    ));
    let (record, verifier) = signer(KEY_NAME, KEY_SECRET)
        .sign_message(&soa, now_secs())
        .unwrap();
    soa.set_signature(record);
    let reply = tcp_raw(server, &soa.to_vec().unwrap()).await.unwrap();
    let verified = verifier
        .unwrap()
        .verify(&reply)
        .expect("a signed SOA answer");
    assert_eq!(verified.answers.len(), 1);

    // Over UDP, an unsigned IXFR gets NOTAUTH instead of the SOA.
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&ixfr_request(zone, 1), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 1500];
    let (length, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::from_vec(&buffer[..length]).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert!(reply.answers.is_empty());
    running.stop().await;
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_broken_key_file_stops_the_start_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("tsig.key");
    std::fs::write(
        &key,
        "key \"transfer\" {\n  algorithm hmac-sha256;\n  secret \"not base64!\";\n};\n",
    )
    .unwrap();
    let config = dir.path().join("peerdns.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nkind = \"file\"\nfile = \"{}\"\n[transfer]\nallow = [\"127.0.0.1/32\"]\ntsig_key_file = \"tsig.key\"\n",
            root().join("config/cluster.yaml").display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_peerdns"))
        .args(["--check-config", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!(
        "transfer.tsig_key_file: {}:3: secret: not base64",
        key.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[tokio::test]
async fn without_a_key_a_signed_query_is_notauth_badkey_over_udp_and_tcp() {
    use hickory_proto::rr::rdata::tsig::TsigError;
    let cluster = root().join("config/cluster.yaml");
    let plain = crate::support::serve_file(&cluster).await;
    let server = plain.addresses[0];
    let mut soa = Message::new(11, MessageType::Query, OpCode::Query);
    soa.add_query(Query::query(
        Name::from_ascii("cluster.local.").unwrap(),
        RecordType::SOA,
    ));
    let (record, _) = signer(KEY_NAME, KEY_SECRET)
        .sign_message(&soa, now_secs())
        .unwrap();
    soa.set_signature(record);
    let request = soa.to_vec().unwrap();
    // Over TCP.
    let reply = Message::from_vec(&tcp_raw(server, &request).await.unwrap()).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        reply.signature().unwrap().data.error,
        Some(TsigError::BadKey)
    );
    assert!(reply.answers.is_empty());
    // Over UDP (the general path: a signed query is never a plain one).
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&request, server).await.unwrap();
    let mut buffer = vec![0u8; 1500];
    let (length, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let reply = Message::from_vec(&buffer[..length]).unwrap();
    assert_eq!(reply.metadata.response_code, ResponseCode::NotAuth);
    assert_eq!(
        reply.signature().unwrap().data.error,
        Some(TsigError::BadKey)
    );
    plain.stop().await;
}
