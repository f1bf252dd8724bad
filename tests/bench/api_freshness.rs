//! API write to served answer, end to end through the test Kubernetes API server: calm, and in
//! the minute after a fault storm (S3, P4: p99 under 50 ms, also after outages and error
//! bursts).
//!
//! peerdns runs in this process with the Kubernetes source and its shipped retry defaults,
//! watching the project's test API server (tests/e2e/apiserver) over HTTP. Each sample writes
//! one EndpointSlice change the way the EndpointSlice controller would (a StatefulSet scaled
//! up by one pod, or back down) and times from the write to the first UDP answer that shows
//! it. Reported, p50 / p99 / max:
//! - calm: `--samples` changes (default 120) before any fault, one every 250 ms;
//! - back: the first change made once the storm has ended (the API reachable, every injected
//!   failure given): how long peerdns stays deaf after the API returns, which is the rest of
//!   the retry wait its watches were in (at most `source.kubernetes.max_backoff_ms`);
//! - after: every later change in the minute after the storm, one every 250 ms.
//!
//! The peer in the same run is the calm figure: the ratio after / calm shows what the storm
//! still costs once the API is back.
//!
//! Run: `cargo bench --bench api_freshness` (add `-- --samples N --after-secs S`).

// A benchmark panics on purpose when its setup is wrong.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// The e2e tests' API server and controller driver, whole: this benchmark uses a part of them,
// and their unit tests (compiled here too) do not run.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/apiserver/mod.rs"]
mod apiserver;
#[allow(dead_code)]
#[path = "../e2e/controllers.rs"]
mod controllers;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use apiserver::TestApiServer;
use controllers::StatefulSetDriver;
use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

/// A change not served within this fails the benchmark (far beyond any goal).
const GIVE_UP: Duration = Duration::from_secs(30);

/// The pause before each sample, calm and after the storm alike.
const PACE: Duration = Duration::from_millis(250);

struct Settings {
    samples: usize,
    after: Duration,
}

fn settings() -> Settings {
    let mut settings = Settings {
        samples: 120,
        after: Duration::from_secs(60),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} takes a number"))
        };
        match arg.as_str() {
            "--samples" => settings.samples = value().max(10) as usize,
            "--after-secs" => settings.after = Duration::from_secs(value().max(5)),
            "--bench" => {}
            other => panic!("unknown argument {other} (--samples, --after-secs)"),
        }
    }
    settings
}

/// A minimal UDP client asking one A question at a time.
struct Client {
    socket: UdpSocket,
    server: SocketAddr,
    id: u16,
}

impl Client {
    async fn new(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        Self {
            socket,
            server,
            id: 0,
        }
    }

    /// The rcode and addresses answered for `name` (A).
    async fn ask(&mut self, name: &Name) -> (ResponseCode, Vec<IpAddr>) {
        self.id = self.id.wrapping_add(1);
        let mut message = Message::new(self.id, MessageType::Query, OpCode::Query);
        message.add_query(Query::query(name.clone(), RecordType::A));
        let bytes = message.to_vec().unwrap();
        self.socket.send_to(&bytes, self.server).await.unwrap();
        let mut buffer = [0u8; 4096];
        loop {
            let received =
                tokio::time::timeout(Duration::from_secs(1), self.socket.recv(&mut buffer)).await;
            let Ok(Ok(length)) = received else {
                return (ResponseCode::ServFail, Vec::new());
            };
            let Ok(reply) = Message::from_vec(&buffer[..length]) else {
                continue;
            };
            if reply.metadata.id != self.id {
                continue;
            }
            let addresses = reply
                .answers
                .iter()
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    _ => None,
                })
                .collect();
            return (reply.metadata.response_code, addresses);
        }
    }
}

/// One sample: scale `sts` up by one pod, or (every other call) turn that pod not ready, as a
/// terminating pod does, and time until the pod's name answers accordingly. The not-ready pod
/// is then removed, which changes no answer.
async fn sample(sts: &mut StatefulSetDriver<'_>, client: &mut Client, base: usize) -> Duration {
    let grow = sts.replicas() == base;
    let ordinal = base;
    let name = Name::from_ascii(format!(
        "{}.bench.bench.svc.cluster.local.",
        sts.pod_name(ordinal)
    ))
    .unwrap();
    let written = Instant::now();
    let expected = if grow {
        sts.scale(base + 1);
        Some(IpAddr::V4(sts.ipv4(ordinal)))
    } else {
        sts.set_ready(ordinal, false);
        None
    };
    loop {
        let (rcode, addresses) = client.ask(&name).await;
        let served = match expected {
            Some(ip) => rcode == ResponseCode::NoError && addresses == [ip],
            None => rcode == ResponseCode::NXDomain,
        };
        if served {
            let took = written.elapsed();
            if !grow {
                sts.scale(base);
            }
            return took;
        }
        assert!(
            written.elapsed() < GIVE_UP,
            "{name} never served: {rcode} {addresses:?}"
        );
        tokio::task::yield_now().await;
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints one row and returns its p99.
fn report(label: &str, mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
    );
    println!(
        "{label:<44} n {:>4}   p50 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms",
        samples.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    p99
}

async fn run(settings: Settings) {
    let api = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let base = 3;
    let mut sts = StatefulSetDriver::new(&api, "bench", "bench", "bench");
    sts.create(base);
    let mut config = peerdns::config::Config::default();
    config.dns.listen = vec!["127.0.0.1:0".parse().unwrap()];
    config.dns.workers = 1;
    config.admin.listen = "127.0.0.1:0".parse().unwrap();
    config.source.kind = peerdns::config::SourceKind::Kubernetes;
    config.source.kubernetes.kubeconfig = Some(api.write_kubeconfig(dir.path()));
    let running = peerdns::app::start(&config).await.expect("peerdns starts");
    let mut client = Client::new(running.addresses[0]).await;
    while !running.index.is_synced() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut calm = Vec::with_capacity(settings.samples);
    for _ in 0..settings.samples {
        tokio::time::sleep(PACE).await;
        calm.push(sample(&mut sts, &mut client, base).await);
    }
    if sts.replicas() != base {
        sample(&mut sts, &mut client, base).await;
    }

    let storm = Instant::now();
    apiserver::storm::upgrade(&api).await;
    let storm_took = storm.elapsed();
    let back = sample(&mut sts, &mut client, base).await;
    let mut after = Vec::new();
    let started = Instant::now();
    while started.elapsed() < settings.after {
        tokio::time::sleep(PACE).await;
        after.push(sample(&mut sts, &mut client, base).await);
    }

    println!(
        "API write to served answer through the test API server (one pod scaled in or out per sample);"
    );
    println!(
        "fault storm of {:.1} s: outages, 500/503 bursts, 429 Retry-After, 410 relist, dropped watches",
        storm_took.as_secs_f64()
    );
    let calm_p99 = report("calm (peer)", calm);
    report("first change once the API is back", vec![back]);
    let after_p99 = report(
        &format!(
            "later changes, {} s after the storm",
            settings.after.as_secs()
        ),
        after,
    );
    println!(
        "ratio p99 after / calm: {:.2}; goal (P4): p99 under 50 ms -> calm {}, after {}",
        after_p99.as_secs_f64() / calm_p99.as_secs_f64().max(1e-9),
        verdict(calm_p99),
        verdict(after_p99)
    );
    let stats = running.watch_stats.clone().unwrap();
    println!(
        "watch failures {}, relists {}",
        stats.api_errors(),
        stats.relists()
    );
    running.stop().await;
}

fn verdict(p99: Duration) -> &'static str {
    if p99 < Duration::from_millis(50) {
        "met"
    } else {
        "NOT met"
    }
}

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(settings));
}
