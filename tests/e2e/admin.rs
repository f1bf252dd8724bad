//! The admin endpoints over real HTTP: health, readiness with sync and shutdown, metrics that
//! move with queries, and the explain endpoint for each reason.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::apiserver::TestApiServer;
use crate::controllers::StatefulSetDriver;
use crate::support::{Ask, Over, config_for, query, root};
use crate::watch::{wait_for, watch_with};

/// GETs `path` and returns (status, body).
pub async fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(admin).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: peerdns\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("admin answers in time")
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series (`name{labels}` exactly as rendered).
pub fn metric(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{body}"))
}

/// The sum of every series of metric `name` whose labels contain `label` (e.g.
/// `cause="stalled"`; empty: all); fails when there is none.
pub fn metric_sum(body: &str, name: &str, label: &str) -> f64 {
    let values: Vec<f64> = body
        .lines()
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let labels = series.strip_prefix(name)?.strip_prefix('{')?;
            labels.contains(label).then(|| value.parse().ok())?
        })
        .collect();
    assert!(
        !values.is_empty(),
        "no series {name}{{..{label}..}} in\n{body}"
    );
    values.iter().sum()
}

async fn explain(admin: SocketAddr, name: &str) -> Value {
    let (status, body) = get(admin, &format!("/debug/explain?name={name}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn health_readiness_and_metrics_over_http() {
    let running = peerdns::app::start(&config_for(&root().join("tests/clusters/rules.yaml")))
        .await
        .unwrap();
    let (admin, dns) = (running.admin_address, running.addresses[0]);
    assert_eq!(get(admin, "/livez").await.0, 200);
    assert_eq!(get(admin, "/readyz").await, (200, "ready\n".to_string()));
    assert_eq!(get(admin, "/nope").await.0, 404);
    assert_eq!(get(admin, "/debug/explain").await.0, 400);

    let (_, before) = get(admin, "/metrics").await;
    for _ in 0..3 {
        query(
            dns,
            &Ask::new("nosuch.apps.svc.cluster.local.", RecordType::A),
            Over::Udp,
        )
        .await;
    }
    query(
        dns,
        &Ask::new("peers.apps.svc.cluster.local.", RecordType::SRV),
        Over::Tcp,
    )
    .await;
    query(
        dns,
        &Ask::new("big.scale.svc.cluster.local.", RecordType::SRV),
        Over::Udp,
    )
    .await;
    // A UDP worker counts a batch's answers right after sending them: an answer can arrive
    // before its count does. Read the metrics until every query is counted (for at most two
    // seconds), then compare exactly.
    let counted = |after: &str| {
        metric(after, "peerdns_request_duration_seconds_count")
            - metric(&before, "peerdns_request_duration_seconds_count")
    };
    let mut after = String::new();
    for _ in 0..200 {
        let (status, body) = get(admin, "/metrics").await;
        assert_eq!(status, 200);
        after = body;
        if counted(&after) >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let delta = |series: &str| metric(&after, series) - metric(&before, series);
    assert_eq!(delta("peerdns_responses_total{rcode=\"NXDOMAIN\"}"), 3.0);
    assert_eq!(
        delta("peerdns_queries_total{transport=\"udp\",type=\"A\"}"),
        3.0
    );
    assert_eq!(
        delta("peerdns_queries_total{transport=\"tcp\",type=\"SRV\"}"),
        1.0
    );
    assert_eq!(delta("peerdns_truncated_responses_total"), 1.0);
    assert!(delta("peerdns_request_duration_seconds_count") >= 5.0);
    assert_eq!(
        metric(&after, "peerdns_index_services"),
        running.index.service_count() as f64
    );
    assert_eq!(
        metric(&after, "peerdns_index_endpoints"),
        running.index.endpoint_count() as f64
    );
    assert_eq!(
        metric(&after, "peerdns_source_synced{source=\"file\"}"),
        1.0
    );
    assert!(after.contains("peerdns_build_info{version="));
    running.stop().await;
}

#[tokio::test]
async fn explain_says_why_for_each_reason() {
    let running = peerdns::app::start(&config_for(&root().join("tests/clusters/rules.yaml")))
        .await
        .unwrap();
    let admin = running.admin_address;
    let cases = [
        (
            "peers-0.peers.apps.svc.cluster.local",
            Some(true),
            "known by its hostname",
        ),
        (
            "web-7f9c-abcde.peers.apps.svc.cluster.local",
            Some(true),
            "no hostname",
        ),
        (
            "peers-3.peers.apps.svc.cluster.local",
            Some(false),
            "is not ready",
        ),
        (
            "sleepy.apps.svc.cluster.local",
            Some(false),
            "no ready endpoint (1 not ready)",
        ),
        (
            "nosuch.apps.svc.cluster.local",
            Some(false),
            "no Service nosuch in namespace apps",
        ),
        (
            "db.nowhere.svc.cluster.local",
            Some(false),
            "no Service in that namespace at all",
        ),
        (
            "x.upstream.apps.svc.cluster.local",
            Some(false),
            "below an ExternalName",
        ),
        (
            "upstream.apps.svc.cluster.local",
            Some(true),
            "CNAME to db.example.com",
        ),
        ("example.com", Some(false), "outside the served zones"),
        (
            "1.0.1.10.in-addr.arpa",
            Some(true),
            "belongs to Service apps/peers",
        ),
    ];
    for (name, exists, reason) in cases {
        let answer = explain(admin, name).await;
        assert_eq!(answer["exists"].as_bool(), exists, "{name}: {answer}");
        assert!(
            answer["reason"].as_str().unwrap().contains(reason),
            "{name}: {answer}"
        );
    }
    let peers = explain(admin, "peers.apps.svc.cluster.local").await;
    let records: Vec<&str> = peers["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(
        records.iter().any(|r| r.contains("IN A 10.1.0.1")),
        "{records:?}"
    );
    assert!(
        records
            .iter()
            .any(|r| r.contains("IN SRV 0 12 7000 peers-0.peers.apps.svc.cluster.local.")),
        "{records:?}"
    );
    running.stop().await;
}

/// Once synced, `exists` is true or false for every name (`_port._proto` names and protocol
/// nodes included), true exactly when DNS answers NOERROR and false when it answers NXDOMAIN;
/// each record is listed once; a text that is no domain name gets 400 with the rule broken.
#[tokio::test]
async fn explain_is_definite_lists_records_once_and_refuses_bad_names() {
    use hickory_proto::op::ResponseCode;
    let running = peerdns::app::start(&config_for(&root().join("tests/clusters/rules.yaml")))
        .await
        .unwrap();
    let (admin, dns) = (running.admin_address, running.addresses[0]);
    let cases = [
        ("_gossip._tcp.peers.apps.svc.cluster.local", true),
        ("_dns._udp.peers.apps.svc.cluster.local", true),
        ("_gossip._udp.peers.apps.svc.cluster.local", false),
        ("_nope._tcp.peers.apps.svc.cluster.local", false),
        ("_tcp.peers.apps.svc.cluster.local", true),
        ("_sctp.peers.apps.svc.cluster.local", false),
        ("_https._tcp.api.apps.svc.cluster.local", true),
        ("_http._tcp.sleepy.apps.svc.cluster.local", false),
        ("peers.apps.svc.cluster.local", true),
        ("alias.apps.svc.cluster.local", true),
        ("upstream.apps.svc.cluster.local", true),
        ("nosuch.apps.svc.cluster.local", false),
    ];
    for (name, exists) in cases {
        let answer = explain(admin, name).await;
        assert_eq!(answer["exists"].as_bool(), Some(exists), "{name}: {answer}");
        let records: Vec<&str> = answer["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(exists || records.is_empty(), "{name}: {answer}");
        let mut unique = records.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            records.len(),
            "{name}: a record twice: {answer}"
        );
        let reply = query(
            dns,
            &Ask::new(&format!("{name}."), RecordType::A),
            Over::Udp,
        )
        .await;
        let rcode = match exists {
            true => ResponseCode::NoError,
            false => ResponseCode::NXDomain,
        };
        assert_eq!(reply.metadata.response_code, rcode, "{name}: {answer}");
    }
    let srv = explain(admin, "_gossip._tcp.peers.apps.svc.cluster.local").await;
    assert!(
        srv["records"][0].as_str().unwrap().contains("IN SRV"),
        "{srv}"
    );
    let cname = explain(admin, "upstream.apps.svc.cluster.local").await;
    assert_eq!(
        cname["records"],
        serde_json::json!(["upstream.apps.svc.cluster.local. 5 IN CNAME db.example.com."]),
        "{cname}"
    );

    let long = "a".repeat(64);
    let bad = [
        ("bad..name", "empty label"),
        (".apps.svc.cluster.local", "empty label"),
        (
            &format!("{long}.apps.svc.cluster.local"),
            "label longer than 63 characters (64)",
        ),
        (
            "a%20b.apps.svc.cluster.local",
            "character ' ' is not allowed",
        ),
        ("", "the name is empty"),
    ];
    for (name, reason) in bad {
        let (status, body) = get(admin, &format!("/debug/explain?name={name}")).await;
        assert_eq!(status, 400, "{name}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(reason), "{name}: {body}");
    }
    running.stop().await;
}

#[tokio::test]
async fn readiness_follows_sync_and_watched_namespaces_are_explained() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut sts = StatefulSetDriver::new(&api, "team-a", "pg", "pg");
    sts.create(2);
    api.set_unreachable(true);
    let running = watch_with(&api, dir.path(), |config| {
        config.source.kubernetes.namespaces = vec!["team-a".into()];
    })
    .await;
    let admin = running.admin_address;
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("not synced"), "{body}");
    let unsynced = explain(admin, "nosuch.team-a.svc.cluster.local").await;
    assert!(unsynced["exists"].is_null(), "{unsynced}");
    assert!(unsynced["reason"].as_str().unwrap().contains("SERVFAIL"));

    api.set_unreachable(false);
    wait_for(
        running.addresses[0],
        "pg.team-a.svc.cluster.local.",
        &sts.ready_ips(),
        false,
    )
    .await;
    assert_eq!(get(admin, "/readyz").await.0, 200);
    let (_, metrics) = get(admin, "/metrics").await;
    assert_eq!(
        metric(&metrics, "peerdns_source_synced{source=\"kubernetes\"}"),
        1.0
    );
    let connection_failures = metric(
        &metrics,
        "peerdns_source_api_errors_total{resource=\"services\",watch_namespace=\"team-a\",cause=\"connection\"}",
    );
    assert!(connection_failures >= 1.0, "{metrics}");
    assert_eq!(
        metric_sum(&metrics, "peerdns_source_watch_state", "state=\"watching\""),
        2.0,
        "{metrics}"
    );
    let elsewhere = explain(admin, "db.team-b.svc.cluster.local").await;
    assert!(
        elsewhere["reason"]
            .as_str()
            .unwrap()
            .contains("not watched"),
        "{elsewhere}"
    );
    running.stop().await;
}

#[tokio::test]
async fn shutdown_turns_readiness_off_first_and_keeps_answering_during_the_lame_duck() {
    let mut config = config_for(&root().join("tests/clusters/rules.yaml"));
    config.admin.lame_duck_ms = 800;
    let running = peerdns::app::start(&config).await.unwrap();
    let (admin, dns) = (running.admin_address, running.addresses[0]);
    let stopping = tokio::spawn(running.shutdown());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = get(admin, "/readyz").await;
    assert_eq!((status, body.as_str()), (503, "shutting down\n"));
    let reply = query(
        dns,
        &Ask::new("peers.apps.svc.cluster.local.", RecordType::A),
        Over::Udp,
    )
    .await;
    assert_eq!(
        reply.answers.len(),
        3,
        "still answering during the lame duck"
    );
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("stops after the lame duck")
        .unwrap();
    assert!(
        TcpStream::connect(dns).await.is_err(),
        "the DNS listener is closed"
    );
}
