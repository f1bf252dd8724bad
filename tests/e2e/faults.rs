//! Never deaf to the API: peerdns watches the test API server while it misbehaves the way real
//! control planes do (outages, 500 and 503 bursts, 429 with Retry-After, 410 Gone, dropped and
//! silently stalled watches), and changes made afterwards must be served within a few seconds.
//!
//! These tests run with the shipped retry defaults (`source.kubernetes.max_backoff_ms`), not the
//! short backoff the other watch tests use, because the defaults are what they check.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use serde_json::Value;

use crate::admin::{get, metric, metric_sum};
use crate::apiserver::storm::{self, drained};
use crate::apiserver::{Resource, TestApiServer, Verb};
use crate::controllers::StatefulSetDriver;
use crate::support::{Ask, Over, query};
use crate::watch::{addresses, wait_for, watch_with};

/// What the issue promises: a change made once the API is back is served within this.
const BACK_TO_SERVED: Duration = Duration::from_secs(5);

/// Starts peerdns on `api` with the shipped retry policy and `idle_ms` as the idle timeout.
async fn watching(
    api: &TestApiServer,
    dir: &std::path::Path,
    idle_ms: u64,
) -> peerdns::app::Running {
    let defaults = peerdns::config::KubernetesConfig::default();
    watch_with(api, dir, |config| {
        config.source.kubernetes.max_backoff_ms = defaults.max_backoff_ms;
        config.source.kubernetes.watch_idle_timeout_ms = idle_ms;
    })
    .await
}

fn fqdn(label: &str, service: &str, namespace: &str) -> String {
    match label {
        "" => format!("{service}.{namespace}.svc.cluster.local."),
        label => format!("{label}.{service}.{namespace}.svc.cluster.local."),
    }
}

/// Polls until `name` answers exactly `expected`; fails once `bound` has passed since `from`.
/// Returns how long it took.
async fn served_within(
    dns: SocketAddr,
    name: &str,
    expected: &[IpAddr],
    from: Instant,
    bound: Duration,
) -> Duration {
    let expected: std::collections::BTreeSet<IpAddr> = expected.iter().copied().collect();
    loop {
        let (rcode, found) = addresses(dns, name).await;
        if rcode == ResponseCode::NoError && found == expected {
            return from.elapsed();
        }
        assert!(
            from.elapsed() < bound,
            "{name}: still {rcode} {found:?} {:?} after the change, expected {expected:?} within {bound:?}",
            from.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_a_fault_storm_new_services_and_a_scale_up_are_served_within_seconds() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut pg = StatefulSetDriver::new(&api, "db", "pg", "pg");
    pg.create(3);
    let running = watching(&api, dir.path(), 90_000).await;
    let dns = running.addresses[0];
    wait_for(dns, &fqdn("", "pg", "db"), &pg.ready_ips(), false).await;

    storm::upgrade(&api).await;

    // The API is back: everything written from now on must be served within the bound.
    let back = Instant::now();
    let mut kafka = StatefulSetDriver::new(&api, "streams", "kafka", "kafka");
    kafka.create(3);
    pg.scale(4);
    let kafka_took = served_within(
        dns,
        &fqdn("", "kafka", "streams"),
        &kafka.ready_ips(),
        back,
        BACK_TO_SERVED,
    )
    .await;
    let pg_took = served_within(
        dns,
        &fqdn("pg-3", "pg", "db"),
        &[IpAddr::V4(pg.ipv4(3))],
        back,
        BACK_TO_SERVED,
    )
    .await;
    eprintln!("served after the storm: new Service {kafka_took:?}, scale-up {pg_took:?}");
    wait_for(dns, &fqdn("", "pg", "db"), &pg.ready_ips(), true).await;

    // Every failure was counted by its cause, none of them as an event.
    let (_, metrics) = get(running.admin_address, "/metrics").await;
    let errors = |cause: &str| {
        metric_sum(
            &metrics,
            "peerdns_source_api_errors_total",
            &format!("cause=\"{cause}\""),
        )
    };
    assert!(errors("connection") >= 1.0, "{metrics}");
    assert!(errors("server_error") >= 1.0, "{metrics}");
    assert!(errors("throttled") >= 1.0, "{metrics}");
    assert!(errors("gone") >= 1.0, "{metrics}");
    running.stop().await;
}

#[tokio::test]
async fn a_silently_stalled_watch_is_replaced_within_the_idle_timeout() {
    const IDLE: Duration = Duration::from_millis(2000);
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut zk = StatefulSetDriver::new(&api, "default", "zk", "zk");
    zk.create(3);
    let running = watching(&api, dir.path(), IDLE.as_millis() as u64).await;
    let (dns, admin) = (running.addresses[0], running.admin_address);
    wait_for(dns, &fqdn("", "zk", "default"), &zk.ready_ips(), false).await;
    // Healthy watches hear a bookmark every second (the test server's cadence): never stalled.
    tokio::time::sleep(IDLE * 2).await;
    let (_, before) = get(admin, "/metrics").await;
    let stalls = |metrics: &str| {
        metric_sum(
            metrics,
            "peerdns_source_api_errors_total",
            "cause=\"stalled\"",
        )
    };
    assert_eq!(stalls(&before), 0.0, "{before}");

    let watches = api.count(Verb::Watch, Resource::EndpointSlices);
    api.stall_watches();
    // Let every watch task see the stall before the change is written.
    tokio::time::sleep(Duration::from_millis(100)).await;
    zk.scale(4);
    let stalled = Instant::now();
    let took = served_within(
        dns,
        &fqdn("zk-3", "zk", "default"),
        &[IpAddr::V4(zk.ipv4(3))],
        stalled,
        IDLE + Duration::from_secs(2),
    )
    .await;
    eprintln!("served {took:?} after the watches went silent (idle timeout {IDLE:?})");
    assert!(
        api.count(Verb::Watch, Resource::EndpointSlices) > watches,
        "a new watch replaced the silent one"
    );
    // Resumed from its resourceVersion, not relisted.
    assert_eq!(running.watch_stats.as_ref().unwrap().relists(), 0);

    // Both streams stalled once (each at its own idle deadline), and their new watches are
    // established and heard from (the test server's next bookmark).
    let started = Instant::now();
    loop {
        let source = source_state(admin).await;
        let streams = source["streams"].as_array().unwrap();
        let recovered = |s: &Value| {
            s["failures"]["stalled"] == 1
                && s["last_failure"]["cause"] == "stalled"
                && s["state"] == "watching"
                && s["heard_seconds_ago"].as_f64().unwrap() < 1.5
        };
        if streams.iter().all(recovered) {
            break;
        }
        assert!(started.elapsed() < IDLE * 3, "{source:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, after) = get(admin, "/metrics").await;
    assert_eq!(stalls(&after), 2.0, "both streams stalled once: {after}");
    running.stop().await;
}

async fn source_state(admin: SocketAddr) -> Value {
    let (status, body) = get(admin, "/debug/source").await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test]
async fn retry_after_is_honoured_and_an_unreachable_api_is_shown_backing_off() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = StatefulSetDriver::new(&api, "default", "etcd", "etcd");
    etcd.create(3);
    let running = watching(&api, dir.path(), 90_000).await;
    let (dns, admin) = (running.addresses[0], running.admin_address);
    wait_for(dns, &fqdn("", "etcd", "default"), &etcd.ready_ips(), false).await;

    // Throttled with Retry-After 2: the next request comes no sooner.
    api.throttle_next(1, 2);
    api.drop_watches();
    drained(&api).await;
    etcd.scale(4);
    wait_for(dns, &fqdn("", "etcd", "default"), &etcd.ready_ips(), true).await;
    let started = Instant::now();
    let waited = loop {
        let log = api.request_log();
        let throttled = log
            .iter()
            .position(|r| r.status == Some(429))
            .expect("a throttled request");
        let retried = log[throttled + 1..]
            .iter()
            .find(|r| r.path == log[throttled].path);
        if let Some(retry) = retried {
            break retry.at - log[throttled].at;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never retried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        waited >= Duration::from_millis(1950),
        "retried {waited:?} after Retry-After: 2"
    );

    // While the API is away, the streams say so, and the heard age grows.
    api.set_unreachable(true);
    let started = Instant::now();
    loop {
        let source = source_state(admin).await;
        let streams = source["streams"].as_array().unwrap();
        let backing_off = streams
            .iter()
            .all(|s| s["state"] == "backing_off" && s["last_failure"]["cause"] == "connection");
        if backing_off {
            let message = streams[0]["last_failure"]["message"].as_str().unwrap();
            assert!(message.contains("failed: "), "{message}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never shown backing off: {source:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The metric says the same (a retry's list attempt is "listing" for a moment: read again).
    let backing_off = |metrics: &str| {
        metric_sum(
            metrics,
            "peerdns_source_watch_state",
            "state=\"backing_off\"",
        )
    };
    let mut metrics = get(admin, "/metrics").await.1;
    for _ in 0..20 {
        if backing_off(&metrics) == 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        metrics = get(admin, "/metrics").await.1;
    }
    assert_eq!(backing_off(&metrics), 2.0, "{metrics}");
    let events_while_away = metric(&metrics, "peerdns_source_events_total");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, later) = get(admin, "/metrics").await;
    assert_eq!(
        metric(&later, "peerdns_source_events_total"),
        events_while_away,
        "failed retries are not events"
    );
    assert!(metric(&later, "peerdns_source_last_event_age_seconds") >= 1.5);
    api.set_unreachable(false);
    etcd.scale(5);
    wait_for(dns, &fqdn("", "etcd", "default"), &etcd.ready_ips(), true).await;
    running.stop().await;
}

/// The SOA serial of the cluster zone.
async fn serial(dns: SocketAddr) -> u32 {
    let reply = query(dns, &Ask::new("cluster.local.", RecordType::SOA), Over::Udp).await;
    match reply.answers.first().map(|r| &r.data) {
        Some(RData::SOA(soa)) => soa.serial,
        other => panic!("no SOA answer: {other:?}"),
    }
}

#[tokio::test]
async fn a_not_ready_pod_moves_neither_the_serial_nor_the_answers_until_it_is_ready() {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut web = StatefulSetDriver::new(&api, "default", "web", "web");
    web.create(3);
    let running = watch_with(&api, dir.path(), |_| {}).await;
    let (dns, admin) = (running.addresses[0], running.admin_address);
    wait_for(dns, &fqdn("", "web", "default"), &web.ready_ips(), false).await;
    let before = serial(dns).await;

    // web-3 starts, not ready: explain sees it, answers and the serial do not move.
    let ordinal = web.start_pod();
    let name = fqdn(&web.pod_name(ordinal), "web", "default");
    let started = Instant::now();
    loop {
        let (_, body) = get(admin, &format!("/debug/explain?name={name}")).await;
        if body.contains("is not ready") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{body}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        serial(dns).await,
        before,
        "a not-ready pod changed no answer"
    );
    let (rcode, _) = addresses(dns, &name).await;
    assert_eq!(rcode, ResponseCode::NXDomain);

    // Ready: now the answers change, and so does the serial.
    web.set_ready(ordinal, true);
    wait_for(dns, &name, &[IpAddr::V4(web.ipv4(ordinal))], false).await;
    assert_ne!(serial(dns).await, before);
    running.stop().await;
}

#[test]
fn the_binary_logs_each_failure_once_with_the_server_and_the_cause() {
    // A port nobody listens on: every connection is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\nclusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: t\nusers:\n- name: t\n  user: {{}}\n"
    );
    std::fs::write(&kubeconfig, text).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peerdns"))
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let failures: Vec<&str> = stderr.lines().filter(|l| l.contains("failed")).collect();
    // Retries start within a second: each stream failed several times in 1.5 s.
    assert!(failures.len() >= 4, "{stderr}");
    for line in &failures {
        assert!(line.contains("list failed: "), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains("Connection refused"), "{line}");
        assert!(line.contains("retry_in_ms"), "{line}");
    }
    assert!(
        !stderr.contains("ERROR"),
        "one line per failure, not two: {stderr}"
    );
}
