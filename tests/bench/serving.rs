//! In-process costs of serving (P1, P3, P5 in src/rules.rs): answering per query type through the
//! general path, the direct path (written from the index) and the replay cache; loading a
//! large cluster, and the heap it takes.
//!
//! Figures are nanoseconds per query and a ratio against the general path measured in the same
//! run (the machine is shared and noisy: compare ratios, not absolute numbers).
//!
//! Run: `cargo bench --bench serving` (`-- --services N --pods P` for another cluster size;
//! the default is the large one, 20000 Services of 5 pods). With the peer harness's files,
//! `-- --file cluster.yaml --queries queries.txt` also replays the dnsperf query file through
//! one UDP worker's whole pipeline (answer cache, direct path, general path), in order, as
//! dnsperf sends it: the user-space CPU per query of the throughput benchmark, without the
//! kernel's share.

// A benchmark panics on purpose when its setup is wrong.
#![allow(clippy::expect_used, clippy::unwrap_used)]

#[path = "cluster.rs"]
mod cluster;
use cluster::arg;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use peerdns::config::{Config, SrvTargetStyle};
use peerdns::dns::cache::{AnswerCache, DEFAULT_CAPACITY, Validity};
use peerdns::dns::direct::Direct;
use peerdns::dns::udp::{FastPath, Replies, answer_batch};
use peerdns::dns::{Responder, Transport};
use peerdns::index::Index;
use peerdns::metrics::Metrics;
use peerdns::sys::batch::BATCH;

/// Counts live heap bytes, so the benchmark can report the index's memory per endpoint; the
/// allocations themselves go to the server's allocator (mimalloc, src/main.rs).
struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static PEAK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: forwards to mimalloc unchanged; only adds a counter.
#[allow(unsafe_code)]
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        PEAK.fetch_max(live + layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { mimalloc::MiMalloc.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_heap() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}

const SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

fn query(name: &str, rtype: RecordType, id: u16) -> Vec<u8> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.edns = Some(edns);
    message.to_vec().unwrap()
}

/// (service name, pod label, `_port._proto` labels, reverse name) from the first slice.
fn sample_names(state: &peerdns::model::ClusterState) -> (String, String, String, String) {
    let slice = state
        .slices
        .iter()
        .find(|s| !s.endpoints.is_empty() && !s.ports.is_empty())
        .expect("a slice with endpoints and ports");
    let service = format!(
        "{}.{}.svc.cluster.local.",
        slice.service.name, slice.service.namespace
    );
    let endpoint = &slice.endpoints[0];
    let pod = endpoint
        .hostname
        .clone()
        .or_else(|| endpoint.pod_name.clone())
        .expect("a named endpoint");
    let port = &slice.ports[0];
    let port = format!(
        "_{}._{}",
        port.name.as_deref().unwrap_or("none"),
        port.protocol.label()
    );
    let ip = match endpoint.addresses[0] {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(_) => "1.0.0.127.in-addr.arpa.".to_string(),
    };
    (service, pod, port, ip)
}

fn per_query(rounds: u32, mut f: impl FnMut(u32)) -> Duration {
    let started = Instant::now();
    for i in 0..rounds {
        f(i);
    }
    started.elapsed() / rounds
}

fn main() {
    let (services, pods) = (arg("--services", 20_000), arg("--pods", 5));
    // `--file PATH` loads a cluster file (the peer harness's cluster.yaml) instead.
    let file: Option<String> = std::env::args().skip_while(|a| a != "--file").nth(1);
    let base = live_heap();
    let text = match &file {
        Some(path) => std::fs::read_to_string(path).expect("readable cluster file"),
        None => cluster::cluster_text(services, pods),
    };
    let started = Instant::now();
    PEAK.store(live_heap(), std::sync::atomic::Ordering::Relaxed);
    let state =
        peerdns::source::file::parse(std::path::Path::new("bench.yaml"), &text, &[]).unwrap();
    let endpoints: usize = state.slices.iter().map(|s| s.endpoints.len()).sum();
    let sample = sample_names(&state);
    println!(
        "cluster: {} Services, {endpoints} endpoints ({})",
        state.services.len(),
        file.as_deref().unwrap_or("generated")
    );
    let parsed = started.elapsed();
    let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
    writer.replace_all(state);
    writer.mark_synced();
    let loaded = started.elapsed();
    println!(
        "load {endpoints} endpoints: parse {:.0} ms, parse + index {:.0} ms (P5: served within 2 s)",
        parsed.as_secs_f64() * 1e3,
        loaded.as_secs_f64() * 1e3
    );
    let text_len = text.len();
    drop(text);
    let peak = PEAK
        .load(std::sync::atomic::Ordering::Relaxed)
        .saturating_sub(base + text_len);
    println!(
        "peak heap while loading, besides the file's text: {:.1} MiB",
        peak as f64 / f64::from(1 << 20)
    );
    let endpoints = endpoints.max(1);
    let heap = live_heap().saturating_sub(base);
    drop(writer);
    let index_heap = live_heap().saturating_sub(base);
    println!(
        "heap after load: {:.1} MiB ({} bytes per endpoint); the served index alone {:.1} MiB ({} bytes per endpoint)",
        heap as f64 / f64::from(1 << 20),
        heap / endpoints,
        index_heap as f64 / f64::from(1 << 20),
        index_heap / endpoints,
    );

    let authority = peerdns::app::authority(&Config::default()).unwrap();
    let responder = Responder::new(authority, index.clone(), 1232, Arc::new(Metrics::default()));
    // Names of the loaded cluster: its first slice's Service, first endpoint and first port.
    let (service, pod, port, ip) = sample;
    let cases = [
        ("pod A", format!("{pod}.{service}"), RecordType::A),
        ("service SRV", service.clone(), RecordType::SRV),
        (
            "named-port SRV",
            format!("{port}.{service}"),
            RecordType::SRV,
        ),
        ("service A", service.clone(), RecordType::A),
        ("NXDOMAIN", format!("nosuch.{service}"), RecordType::A),
        ("PTR", ip, RecordType::PTR),
    ];
    println!(
        "{:<16} {:>11} {:>10} {:>10} {:>13} {:>13}",
        "query", "general ns", "direct ns", "replay ns", "general/direct", "general/replay"
    );
    let rounds = 200_000;
    for (label, name, rtype) in cases {
        let requests: Vec<Vec<u8>> = (0..64).map(|id| query(&name, rtype, id)).collect();
        let general = per_query(rounds / 10, |i| {
            let request = &requests[i as usize % requests.len()];
            std::hint::black_box(responder.respond(request, SOURCE, Transport::Udp));
        });
        let mut cache = AnswerCache::new(DEFAULT_CAPACITY);
        let generation = index.generation();
        let first = responder
            .respond(&requests[0], SOURCE, Transport::Udp)
            .unwrap();
        cache.store(&requests[0], &first, Validity::Generation(generation));
        let mut out = Vec::with_capacity(512);
        let fast = per_query(rounds, |i| {
            let request = &requests[i as usize % requests.len()];
            assert!(cache.answer(request, &mut out, index.generation()));
            std::hint::black_box(&out);
        });
        let mut direct = Direct::new(responder.authority());
        let taken = direct
            .answer(&index, 1232, &requests[0], &mut out)
            .is_some();
        let direct_time = per_query(rounds, |i| {
            let request = &requests[i as usize % requests.len()];
            std::hint::black_box(direct.answer(&index, 1232, request, &mut out));
        });
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
        let direct_column = if taken {
            format!("{}", direct_time.as_nanos())
        } else {
            "(general)".to_string()
        };
        println!(
            "{label:<16} {:>11} {:>10} {:>10} {:>13.1} {:>13.1}",
            general.as_nanos(),
            direct_column,
            fast.as_nanos(),
            ratio(general, if taken { direct_time } else { general }),
            ratio(general, fast)
        );
    }
    if let Some(path) = std::env::args().skip_while(|a| a != "--queries").nth(1) {
        replay_query_file(&responder, &path);
    }
}

/// Replays a dnsperf query file (`name type` per line) through one worker's pipeline, in
/// order: once to warm the answer cache (as the throughput run's warm-up does), then
/// `--passes` times (2 unless given), and prints the nanoseconds per query of the latter.
fn replay_query_file(responder: &Responder, path: &str) {
    let text = std::fs::read_to_string(path).expect("readable query file");
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter_map(|line| {
            let (name, rtype) = line.split_once(' ')?;
            let rtype: RecordType = rtype.trim().parse().ok()?;
            let mut message = Message::new(0, MessageType::Query, OpCode::Query);
            message.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
            message.to_vec().ok()
        })
        .collect();
    assert!(!requests.is_empty(), "no queries in {path}");
    let datagrams: Vec<(&[u8], SocketAddr)> =
        requests.iter().map(|r| (r.as_slice(), SOURCE)).collect();
    let mut fast = FastPath::new(responder);
    let mut replies = Replies::default();
    let mut answered = 0usize;
    for chunk in datagrams.chunks(BATCH) {
        answer_batch(responder, &mut fast, chunk, &mut replies);
        answered += (0..chunk.len())
            .filter(|i| replies.reply(*i).is_some())
            .count();
    }
    assert_eq!(answered, requests.len(), "every query answered");
    let (passes, replayed_before) = (arg("--passes", 2), fast.replayed());
    let started = Instant::now();
    for _ in 0..passes {
        // As a worker does: batches of what one receive takes, counted once per batch.
        for chunk in datagrams.chunks(BATCH) {
            let arrived = Instant::now();
            answer_batch(responder, &mut fast, chunk, &mut replies);
            std::hint::black_box(replies.reply(0));
            responder.metrics().record_batch(
                Transport::Udp,
                replies.fast_outcomes(),
                arrived.elapsed(),
            );
        }
    }
    let total = requests.len() * passes;
    let per_query = started.elapsed().as_nanos() as f64 / total as f64;
    let replayed = (fast.replayed() - replayed_before) as f64 / total as f64;
    println!(
        "query file {path}: {} queries, {per_query:.0} ns per query through one worker's pipeline, {:.0}% replayed from the answer cache",
        requests.len(),
        replayed * 100.0
    );
}
