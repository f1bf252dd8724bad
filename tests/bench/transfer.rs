//! Zone transfers to a real secondary (R14, P7): AXFR of the large cluster, and how long a pod
//! change takes to reach a Knot secondary's answers (NOTIFY, IXFR, applied).
//!
//! peerdns runs in this process with the Kubernetes source, watching the project's test API
//! server (tests/e2e/apiserver) loaded with the peer harness's large cluster (20000 headless
//! Services x 5 pods: 100k endpoints; `--services`, `--pods` change it). Reported:
//! - **AXFR, served**: our own client pulls the zone over TCP: time, messages, bytes, and the
//!   growth of this process's peak RSS during it (the transfer's own memory: the index is
//!   already loaded). The peer in the same run: a Knot primary serving the same records from
//!   a zone file, pulled the same way.
//! - **AXFR, to Knot**: a Knot secondary bootstraps from peerdns, then another from the Knot
//!   primary; Knot's own log gives each transfer's time.
//! - **Changes**: `--changes` (default 100) pod address changes, one every 100 ms, each timed
//!   from the API write to the first answer showing it, from peerdns and from the secondary:
//!   p50 / p99 / max of both, and the secondary's lag over peerdns. The peer: the same number
//!   of address changes made on the Knot primary (a `knotc` transaction each; it NOTIFYs its
//!   own Knot secondary), timed from the commit to its answer and to its secondary's. Both
//!   secondaries run with `block-notify-after-transfer` (see deploy/secondary/knot.conf).
//!
//! Run: `cargo bench --bench transfer` (needs `knotd`: `apt-get install knot`).

// A benchmark panics on purpose when its setup is wrong.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[allow(dead_code, unused_imports)]
#[path = "../e2e/apiserver/mod.rs"]
mod apiserver;
#[path = "cluster.rs"]
mod cluster;
use cluster::arg;
#[allow(dead_code)]
#[path = "../e2e/knot.rs"]
mod knot;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use apiserver::TestApiServer;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use knot::Knot;
use peerdns::config::{Config, SourceKind, TransferConfig};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

const ZONE: &str = "cluster.local.";

/// A line of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resets this process's peak RSS to its current RSS (Linux 4.0+).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// What one AXFR brought.
struct Pulled {
    elapsed: Duration,
    messages: usize,
    bytes: usize,
    records: usize,
    /// The records as zone file lines, when kept.
    text: Option<String>,
}

/// Pulls `ZONE` from `server` by AXFR over TCP, counting (and, with `keep`, keeping) it.
async fn axfr(server: SocketAddr, keep: bool) -> Pulled {
    let mut request = Message::new(0xa1f4, MessageType::Query, OpCode::Query);
    request.add_query(Query::query(
        Name::from_ascii(ZONE).unwrap(),
        RecordType::AXFR,
    ));
    let request = request.to_vec().unwrap();
    let started = Instant::now();
    let mut stream = TcpStream::connect(server).await.unwrap();
    let mut framed = (request.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream.write_all(&framed).await.unwrap();
    let (mut messages, mut bytes, mut records, mut soas) = (0, 0, 0, 0);
    let mut text = keep.then(String::new);
    while soas < 2 {
        let mut prefix = [0u8; 2];
        stream.read_exact(&mut prefix).await.unwrap();
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(prefix))];
        stream.read_exact(&mut message).await.unwrap();
        let message = Message::from_vec(&message).unwrap();
        assert_eq!(
            message.metadata.response_code.low(),
            0,
            "the transfer failed"
        );
        messages += 1;
        bytes += 2 + message.to_vec().map_or(0, |m| m.len());
        for record in &message.answers {
            records += 1;
            if matches!(record.data, RData::SOA(_)) {
                soas += 1;
                if soas == 2 {
                    break; // the closing SOA: not a record of the zone file
                }
            }
            if let Some(text) = text.as_mut() {
                text.push_str(&record.to_string());
                text.push('\n');
            }
        }
    }
    Pulled {
        elapsed: started.elapsed(),
        messages,
        bytes,
        records,
        text,
    }
}

/// The A addresses `server` answers for `name` over UDP (empty on no answer in 200 ms).
async fn addresses(socket: &UdpSocket, server: SocketAddr, name: &str, id: u16) -> Vec<IpAddr> {
    let mut query = Message::new(id, MessageType::Query, OpCode::Query);
    query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_millis(200);
    while let Ok(Ok((n, _))) =
        tokio::time::timeout_at(deadline.into(), socket.recv_from(&mut buffer)).await
    {
        let Ok(reply) = Message::from_vec(&buffer[..n]) else {
            continue;
        };
        if reply.metadata.id != id {
            continue; // a late answer to an earlier poll
        }
        return reply
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                _ => None,
            })
            .collect();
    }
    Vec::new()
}

/// The seconds Knot's log gives for its last finished incoming AXFR of `ZONE`.
fn knot_axfr_seconds(log: &str) -> Option<f64> {
    log.lines()
        .rfind(|line| line.contains("AXFR, incoming") && line.contains("finished"))?
        .split(", ")
        .find(|part| part.ends_with(" seconds"))?
        .trim_end_matches(" seconds")
        .parse()
        .ok()
}

/// Polls `primary` and `secondary` for `name` until both answer `want`: the time from
/// `written` to each one's first such answer.
async fn time_to_answers(
    socket: &UdpSocket,
    (primary, secondary): (SocketAddr, SocketAddr),
    name: &str,
    want: IpAddr,
    written: Instant,
    mut id: u16,
) -> (Duration, Duration) {
    let mut at_primary = None;
    loop {
        assert!(
            written.elapsed() < Duration::from_secs(30),
            "{name} never reached the secondary"
        );
        id = id.wrapping_add(1);
        if at_primary.is_none() && addresses(socket, primary, name, id).await.contains(&want) {
            at_primary = Some(written.elapsed());
        }
        id = id.wrapping_add(1);
        if addresses(socket, secondary, name, id).await.contains(&want) {
            let at_secondary = written.elapsed();
            return (at_primary.unwrap_or(at_secondary), at_secondary);
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    if !knot::knot_available("transfer benchmark") {
        return;
    }
    if std::env::var_os("TRANSFER_BENCH_VERBOSE").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter("peerdns::dns::transfer=debug,peerdns::dns::tcp=info")
            .init();
    }
    let (services, pods, changes) = (
        arg("--services", 20_000),
        arg("--pods", 5),
        arg("--changes", 100),
    );
    println!("cluster: {services} Services x {pods} pods");

    // The API server holds the cluster; peerdns lists and watches it.
    let api = TestApiServer::start().await;
    let text = cluster::cluster_text(services, pods);
    let objects: Vec<Value> = text
        .split("\n---\n")
        .map(|document| serde_json::from_str(document).unwrap())
        .collect();
    let slices: Vec<Value> = objects
        .iter()
        .filter(|o| o["kind"] == "EndpointSlice")
        .cloned()
        .collect();
    for object in &objects {
        api.apply(object);
    }
    drop(objects);
    drop(text);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.dns.workers = 2;
    config.dns.nameserver_addresses = vec!["192.0.2.53".parse().unwrap()];
    config.dns.reverse_zones = Vec::new();
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.source.kind = SourceKind::Kubernetes;
    config.source.kubernetes.kubeconfig = Some(api.write_kubeconfig(dir.path()));
    let knot_port = knot::free_port();
    config.transfer = Some(TransferConfig {
        allow: vec!["127.0.0.0/8".parse().unwrap()],
        notify: vec![SocketAddr::from(([127, 0, 0, 1], knot_port))],
        ..TransferConfig::default()
    });
    let loading = Instant::now();
    let running = peerdns::app::start(&config).await.expect("peerdns starts");
    while !running.index.is_synced() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("peerdns synced in {:.2} s", loading.elapsed().as_secs_f64());
    let peerdns = running.addresses[0];

    // AXFR, served: peerdns, then Knot serving the same records from a zone file.
    let rss = status_kib("VmRSS:");
    reset_peak_rss();
    let ours = axfr(peerdns, false).await;
    let peak_growth = status_kib("VmHWM:").saturating_sub(rss);
    let kept = axfr(peerdns, true).await;
    let zone_file = dir.path().join("cluster.local.zone");
    std::fs::write(&zone_file, kept.text.unwrap()).unwrap();
    let peer_port = knot::free_port();
    let peer_address = SocketAddr::from(([127, 0, 0, 1], peer_port));
    let knot_primary = Knot::primary_of("cluster.local", &zone_file, peer_address);
    knot_primary
        .wait_for_serial(ZONE, running.index.serial(), Duration::from_secs(60))
        .await;
    let theirs = axfr(knot_primary.address, false).await;
    println!(
        "AXFR served: peerdns {:.0} ms, {} messages, {:.1} MiB, {} records, peak RSS +{:.1} MiB; \
         knot {:.0} ms, {} messages, {:.1} MiB, {} records; time ratio peerdns/knot {:.2}",
        ms(ours.elapsed),
        ours.messages,
        ours.bytes as f64 / 1048576.0,
        ours.records,
        peak_growth as f64 / 1024.0,
        ms(theirs.elapsed),
        theirs.messages,
        theirs.bytes as f64 / 1048576.0,
        theirs.records,
        ours.elapsed.as_secs_f64() / theirs.elapsed.as_secs_f64(),
    );

    // AXFR to Knot: a secondary of peerdns, and one of the Knot primary.
    let started = Instant::now();
    let secondary = Knot::secondary_on(knot_port, peerdns, &["cluster.local"]);
    secondary
        .wait_for_serial(ZONE, running.index.serial(), Duration::from_secs(60))
        .await;
    let to_serving = started.elapsed();
    let peer_secondary = Knot::secondary_on(peer_port, knot_primary.address, &["cluster.local"]);
    peer_secondary
        .wait_for_serial(ZONE, running.index.serial(), Duration::from_secs(60))
        .await;
    let (ours_s, theirs_s) = (
        knot_axfr_seconds(&secondary.log()),
        knot_axfr_seconds(&peer_secondary.log()),
    );
    println!(
        "AXFR to a Knot secondary (Knot's own figure): from peerdns {ours_s:?} s, from knot \
         {theirs_s:?} s; from knotd's start to serving the zone {:.2} s",
        to_serving.as_secs_f64()
    );

    // The first NOTIFY went out before the secondary was started; wait for its retry to be
    // answered, so that no change below waits out that backoff.
    let told = Instant::now();
    while running
        .admin
        .metrics
        .notify_events(peerdns::metrics::NotifyEvent::Acknowledged)
        == 0
    {
        assert!(
            told.elapsed() < Duration::from_secs(40),
            "the secondary never acknowledged a NOTIFY"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Changes: a pod's address moves; timed to peerdns's answer and to the secondary's.
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (mut primary_times, mut secondary_times) = (Vec::new(), Vec::new());
    for change in 0..changes {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = (change * 197) % slices.len();
        let mut slice = slices[s].clone();
        let new_ip = Ipv4Addr::from(0x0b00_0000 + change as u32 + 1);
        slice["endpoints"][0]["addresses"] = serde_json::json!([new_ip.to_string()]);
        let service = slice["metadata"]["labels"]["kubernetes.io/service-name"]
            .as_str()
            .unwrap()
            .to_owned();
        let namespace = slice["metadata"]["namespace"].as_str().unwrap().to_owned();
        let hostname = slice["endpoints"][0]["hostname"]
            .as_str()
            .unwrap()
            .to_owned();
        let name = format!("{hostname}.{service}.{namespace}.svc.{ZONE}");
        let want = IpAddr::V4(new_ip);
        let written = Instant::now();
        api.apply(&slice);
        let id = (change as u16).wrapping_mul(1000);
        let (at_primary, at_secondary) = time_to_answers(
            &socket,
            (peerdns, secondary.address),
            &name,
            want,
            written,
            id,
        )
        .await;
        if std::env::var_os("TRANSFER_BENCH_VERBOSE").is_some() {
            println!(
                "change {change} at {:?} serial {}: {:?} {:?}",
                loading.elapsed(),
                running.index.serial(),
                at_primary,
                at_secondary
            );
        }
        primary_times.push(at_primary);
        secondary_times.push(at_secondary);
    }
    primary_times.sort();
    secondary_times.sort();

    // The peer: the same kind of change made on the Knot primary (knotc, a transaction per
    // change), timed from its commit to its own answer and to its secondary's.
    let (mut knot_times, mut knot_secondary_times) = (Vec::new(), Vec::new());
    for change in 0..changes {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let slice = &slices[(change * 197 + 1) % slices.len()];
        let service = slice["metadata"]["labels"]["kubernetes.io/service-name"]
            .as_str()
            .unwrap();
        let namespace = slice["metadata"]["namespace"].as_str().unwrap();
        let hostname = slice["endpoints"][0]["hostname"].as_str().unwrap();
        let name = format!("{hostname}.{service}.{namespace}.svc.{ZONE}");
        let id = (change as u16).wrapping_mul(1000).wrapping_add(500);
        let old = addresses(&socket, knot_primary.address, &name, id).await;
        let old = old.first().expect("the Knot primary serves the name");
        let new_ip = Ipv4Addr::from(0x0c00_0000 + change as u32 + 1);
        knot_primary.knotc(&["zone-begin", ZONE]);
        knot_primary.knotc(&["zone-unset", ZONE, &name, "A", &old.to_string()]);
        knot_primary.knotc(&["zone-set", ZONE, &name, "5", "A", &new_ip.to_string()]);
        let written = Instant::now();
        knot_primary.knotc(&["zone-commit", ZONE]);
        let servers = (knot_primary.address, peer_secondary.address);
        let (at_primary, at_secondary) =
            time_to_answers(&socket, servers, &name, IpAddr::V4(new_ip), written, id + 1).await;
        knot_times.push(at_primary);
        knot_secondary_times.push(at_secondary);
    }
    knot_times.sort();
    knot_secondary_times.sort();

    let report = |what: &str, times: &[Duration]| {
        println!(
            "{what}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99)),
            ms(times[times.len() - 1])
        );
    };
    report("change to peerdns's answer", &primary_times);
    report("change to the secondary's answer", &secondary_times);
    report("peer: change to the Knot primary's answer", &knot_times);
    report(
        "peer: change to its Knot secondary's answer",
        &knot_secondary_times,
    );
    println!(
        "secondary p50, p99 ratio peerdns's/knot's: {:.2}, {:.2}",
        ms(percentile(&secondary_times, 0.5)) / ms(percentile(&knot_secondary_times, 0.5)),
        ms(percentile(&secondary_times, 0.99)) / ms(percentile(&knot_secondary_times, 0.99)),
    );
    println!(
        "secondary lag over peerdns: p50 {:.1} ms, p99 {:.1} ms",
        ms(percentile(&secondary_times, 0.5)) - ms(percentile(&primary_times, 0.5)),
        ms(percentile(&secondary_times, 0.99)) - ms(percentile(&primary_times, 0.99)),
    );
    let log = secondary.log();
    let ixfrs = log
        .lines()
        .filter(|l| l.contains("IXFR, incoming") && l.contains("finished"))
        .count();
    let axfrs = log
        .lines()
        .filter(|l| l.contains("AXFR, incoming") && l.contains("finished"))
        .count();
    let metrics = &running.admin.metrics;
    let events = [
        peerdns::metrics::NotifyEvent::Sent,
        peerdns::metrics::NotifyEvent::Acknowledged,
        peerdns::metrics::NotifyEvent::Refused,
        peerdns::metrics::NotifyEvent::TimedOut,
    ]
    .map(|event| metrics.notify_events(event));
    println!(
        "the secondary took {ixfrs} IXFRs and {axfrs} AXFRs; NOTIFY sent, acknowledged, refused, timed out: {events:?}"
    );
    if std::env::var_os("TRANSFER_BENCH_VERBOSE").is_some() {
        println!("{log}");
    }
    running.stop().await;
}
