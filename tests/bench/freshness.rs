//! Event-to-served time for a 1000-endpoint Service (P4 in src/rules.rs: p99 under 1 ms).
//!
//! Each round takes a watch event as kube-runtime delivers it (a typed EndpointSlice with 1000
//! endpoints, one of which flipped readiness), runs it through the same synchronizer the
//! Kubernetes source uses (conversion to model types, rebuild of the Service, publication), and
//! times arrival to publication. The peer measured in the same run is the bare conversion of
//! the object (`convert::endpoint_slice`), so the ratio shows what the index adds.
//!
//! Run: `cargo bench --bench freshness` (add `-- --rounds N` to change the 2000 rounds).

// A benchmark panics on purpose when its setup is wrong.
#![allow(clippy::expect_used)]

/// The server's allocator (src/main.rs), so the figures are the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::discovery::v1 as discovery;
use kube::runtime::watcher::Event;
use peerdns::config::SrvTargetStyle;
use peerdns::index::Index;
use peerdns::source::convert;
use peerdns::source::kubernetes::{Change, SourceStats, Synchronizer, WatchSettings, scopes};
use serde_json::json;

const ENDPOINTS: usize = 1000;

fn slice(not_ready: usize) -> discovery::EndpointSlice {
    let endpoints: Vec<_> = (0..ENDPOINTS)
        .map(|i| {
            json!({
                "addresses": [format!("10.{}.{}.{}", 100 + i / 65536, (i / 256) % 256, i % 256)],
                "hostname": format!("big-{i}"),
                "targetRef": {"kind": "Pod", "name": format!("big-{i}"), "namespace": "bench"},
                "conditions": {"ready": i != not_ready}
            })
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": "big-abcde", "namespace": "bench",
                     "labels": {"kubernetes.io/service-name": "big"}},
        "addressType": "IPv4",
        "ports": [{"name": "peer", "port": 2380, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("valid slice")
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn report(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let (p50, p99, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
    );
    println!(
        "{label:<34} p50 {:>8.1} us   p99 {:>8.1} us   max {:>8.1} us",
        micros(p50),
        micros(p99),
        micros(max)
    );
    p99
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let (index, writer) = Index::new(1, SrvTargetStyle::Hostname);
    let stats = Arc::new(SourceStats::default());
    let mut sync = Synchronizer::new(writer, scopes(&WatchSettings::default()), stats);
    let service = serde_json::from_value(json!({
        "metadata": {"name": "big", "namespace": "bench"},
        "spec": {"clusterIP": "None", "ports": [{"name": "peer", "port": 2380}]}
    }))
    .expect("valid service");
    let now = Instant::now();
    for event in [Event::Init, Event::InitApply(service), Event::InitDone] {
        sync.handle(0, Change::Service(Box::new(event)), now);
    }
    for event in [
        Event::Init,
        Event::InitApply(slice(ENDPOINTS)),
        Event::InitDone,
    ] {
        sync.handle(1, Change::Slice(Box::new(event)), now);
    }
    assert!(index.is_synced());

    let events: Vec<_> = (0..rounds).map(|i| slice(i % ENDPOINTS)).collect();
    let mut convert_only = Vec::with_capacity(rounds);
    for event in &events {
        let started = Instant::now();
        let converted = convert::endpoint_slice(event).expect("converts");
        convert_only.push(started.elapsed());
        std::hint::black_box(converted);
    }
    let mut served = Vec::with_capacity(rounds);
    for (i, event) in events.into_iter().enumerate() {
        let serial = index.serial();
        let arrived = Instant::now();
        sync.handle(1, Change::Slice(Box::new(Event::Apply(event))), arrived);
        served.push(arrived.elapsed());
        assert!(index.serial() != serial || i == 0, "round {i} published");
    }
    println!("event-to-served, one EndpointSlice of {ENDPOINTS} endpoints, {rounds} rounds");
    let peer = report("convert only (peer)", convert_only);
    let ours = report("convert + rebuild + publish", served);
    println!(
        "ratio p99 served / convert: {:.2}; goal (P4): p99 under 1000 us -> {}",
        ours.as_secs_f64() / peer.as_secs_f64().max(1e-9),
        if ours < Duration::from_millis(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
