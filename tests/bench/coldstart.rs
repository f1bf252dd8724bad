//! Cold start through the Kubernetes source, end to end (P5 in src/rules.rs: 100k endpoints loaded and
//! served within 2 s of the first list; P3: memory of the large cluster).
//!
//! The release binary is started with `--kubeconfig` against the project's test API server
//! (tests/e2e/apiserver: the list/watch wire protocol kube-runtime's watcher speaks, paged
//! lists included) holding a generated cluster: `--services` headless Services (20000) of
//! `--endpoints` ready endpoints each (5), one EndpointSlice per Service. A UDP query for the
//! last Service's peers is repeated until all of them are answered. Reported per round: process
//! start to the first LIST request, first LIST to the full answer, and the server's RSS (now and
//! at its peak, `VmHWM`) once served.
//!
//! The peer, measured in the same run: the same cluster written as one cluster file (`--file`),
//! started the same way, so the ratios show what the watch path (HTTP, JSON, paged lists, the
//! synchronizer) adds to loading the same objects.
//!
//! Run: `cargo bench --bench coldstart` (add `-- --services N --endpoints M --rounds R`).

// A benchmark panics on purpose when its setup is wrong.
#![allow(clippy::expect_used, clippy::unwrap_used)]

// The e2e tests' API server, whole: this benchmark uses a part of it, and its unit tests
// (compiled here too) do not run.
#[allow(dead_code, unused_imports)]
#[path = "../e2e/apiserver/mod.rs"]
mod apiserver;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use apiserver::TestApiServer;
use serde_json::{Value, json};

/// How long a start may take before the round is given up (far beyond the goal).
const GIVE_UP: Duration = Duration::from_secs(60);

struct Settings {
    services: usize,
    endpoints: usize,
    rounds: usize,
}

fn settings() -> Settings {
    let mut settings = Settings {
        services: 20_000,
        endpoints: 5,
        rounds: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{arg} takes a number"))
        };
        match arg.as_str() {
            "--services" => settings.services = value().max(1),
            "--endpoints" => settings.endpoints = value().clamp(1, 1000),
            "--rounds" => settings.rounds = value().max(1),
            "--bench" => {}
            other => panic!("unknown argument {other} (--services, --endpoints, --rounds)"),
        }
    }
    settings
}

fn service(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "web", "port": 80}]}})
}

fn slice(i: usize, endpoints: usize) -> Value {
    let endpoints: Vec<Value> = (0..endpoints)
        .map(|j| {
            let ip = Ipv4Addr::from(0x0a00_0000 + (i * endpoints + j) as u32 + 1);
            json!({"addresses": [ip.to_string()], "hostname": format!("svc-{i}-{j}"),
                "conditions": {"ready": true}})
        })
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}-a"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4", "ports": [{"name": "web", "port": 80, "protocol": "TCP"}],
        "endpoints": endpoints})
}

/// A UDP query for `name` A, without EDNS.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut message = id.to_be_bytes().to_vec();
    message.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        message.push(label.len() as u8);
        message.extend_from_slice(label.as_bytes());
    }
    message.extend_from_slice(&[0, 0, 1, 0, 1]);
    message
}

/// Whether `server` answers `name` with NOERROR and `peers` answer records.
fn answers_all(client: &UdpSocket, server: SocketAddr, name: &str, peers: usize, id: u16) -> bool {
    if client.send_to(&query(name, id), server).is_err() {
        return false;
    }
    let mut buffer = [0u8; 4096];
    while let Ok((length, _)) = client.recv_from(&mut buffer) {
        let reply = &buffer[..length];
        if length >= 12 && reply[..2] == id.to_be_bytes() {
            let rcode = reply[3] & 0x0f;
            let answers = usize::from(u16::from_be_bytes([reply[6], reply[7]]));
            return rcode == 0 && answers == peers;
        }
    }
    false
}

/// A port free for both UDP and TCP on 127.0.0.1 right now.
fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("udp address").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// `VmRSS` and `VmHWM` of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One start: what it took and what it held.
struct Start {
    /// Process start to the first LIST request (the watch source only).
    to_first_list: Option<Duration>,
    /// Process start to the full answer.
    to_served: Duration,
    /// CPU time the server used up to the full answer (user and system).
    cpu: Duration,
    rss_kib: u64,
    peak_kib: u64,
}

/// User plus system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let field = |n: usize| -> u64 {
        after
            .split_whitespace()
            .nth(n)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name; in clock ticks.
    // USER_HZ, the unit of these fields, is 100 on Linux whatever the kernel's own HZ.
    Duration::from_millis((field(11) + field(12)) * 10)
}

/// Starts the binary with `source_args`, waits for the last Service to be served in full, and
/// measures; `first_list` tells when the API server saw its first LIST, if it is the source.
fn start(
    source_args: &[&str],
    settings: &Settings,
    first_list: &dyn Fn() -> bool,
) -> Option<Start> {
    let port = free_port();
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let mut child: Child = Command::new(env!("CARGO_BIN_EXE_peerdns"))
        .args(source_args)
        .args(["--listen", &server.to_string()])
        .args(["--admin-listen", "127.0.0.1:0", "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start peerdns");
    let client = UdpSocket::bind("127.0.0.1:0").expect("client socket");
    client
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("client timeout");
    let name = format!("svc-{}.default.svc.cluster.local", settings.services - 1);
    let mut listed_at = None;
    let mut served = None;
    let mut id = 0u16;
    while started.elapsed() < GIVE_UP {
        id = id.wrapping_add(1);
        if listed_at.is_none() && first_list() {
            listed_at = Some(started.elapsed());
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("peerdns exited early ({status}); port {port} taken?");
            return None;
        }
        if answers_all(&client, server, &name, settings.endpoints, id) {
            served = Some((started.elapsed(), cpu_time(child.id())));
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // Let the heap settle (the first list's buffers freed), then read the memory.
    std::thread::sleep(Duration::from_millis(500));
    let (rss_kib, peak_kib) = memory_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    let (served, cpu) = served?;
    Some(Start {
        to_first_list: listed_at,
        to_served: served,
        cpu,
        rss_kib,
        peak_kib,
    })
}

/// Lists `T` in full, in pages of 500 (as kube-runtime's watcher does); returns how many
/// objects came back.
async fn list_all<T>(api: kube::Api<T>) -> usize
where
    T: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = kube::api::ListParams::default().limit(500);
    let mut objects = 0;
    loop {
        let page = api.list(&params).await.expect("list");
        objects += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return objects,
        }
    }
}

/// How long a client of the test API server takes to list every Service and EndpointSlice, the
/// two lists at once as the source's watchers ask for them: the API server's share of a start.
fn api_list_time(runtime: &tokio::runtime::Runtime, api: &TestApiServer) -> Duration {
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let client = api.client();
    let started = Instant::now();
    let (services, slices) = runtime.block_on(async {
        tokio::join!(
            list_all(kube::Api::<Service>::all(client.clone())),
            list_all(kube::Api::<EndpointSlice>::all(client)),
        )
    });
    assert!(services > 0 && slices > 0, "the lists came back empty");
    started.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn write_cluster_file(path: &Path, settings: &Settings) {
    let items: Vec<Value> = (0..settings.services)
        .flat_map(|i| [service(i), slice(i, settings.endpoints)])
        .collect();
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(path, serde_json::to_vec(&list).expect("cluster json")).expect("cluster file");
}

fn main() {
    let settings = settings();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let api = runtime.block_on(TestApiServer::start());
    let generated = Instant::now();
    for i in 0..settings.services {
        api.apply(&service(i));
        api.apply(&slice(i, settings.endpoints));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.write_kubeconfig(dir.path());
    let cluster_file = dir.path().join("cluster.json");
    write_cluster_file(&cluster_file, &settings);
    println!(
        "cluster: {} Services x {} endpoints ({} endpoints), generated in {:.1} s",
        settings.services,
        settings.endpoints,
        settings.services * settings.endpoints,
        generated.elapsed().as_secs_f64()
    );
    let kubeconfig = kubeconfig.to_string_lossy().into_owned();
    let cluster_file = cluster_file.to_string_lossy().into_owned();
    let lists = || {
        api.count(apiserver::Verb::List, apiserver::Resource::Services)
            + api.count(apiserver::Verb::List, apiserver::Resource::EndpointSlices)
    };
    let (mut watch, mut file, mut listing) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=settings.rounds {
        listing.push(api_list_time(&runtime, &api).as_secs_f64());
        let before = lists();
        let listed = || lists() > before;
        if let Some(start) = start(&["--kubeconfig", &kubeconfig], &settings, &listed) {
            watch.push(start);
        }
        if let Some(start) = start(&["--file", &cluster_file], &settings, &|| false) {
            file.push(start);
        }
        println!("round {round} done");
    }
    let seconds = |starts: &[Start], f: &dyn Fn(&Start) -> Duration| {
        median(starts.iter().map(|s| f(s).as_secs_f64()).collect())
    };
    let mib = |starts: &[Start], f: &dyn Fn(&Start) -> u64| {
        median(starts.iter().map(|s| f(s) as f64 / 1024.0).collect())
    };
    let served = |starts: &[Start]| seconds(starts, &|s| s.to_served);
    let rss = |starts: &[Start]| mib(starts, &|s| s.rss_kib);
    let peak = |starts: &[Start]| mib(starts, &|s| s.peak_kib);
    println!(
        "\n(medians of {} rounds; seconds from process start)\nsource        first list   served   first list->served   server CPU s   RSS MiB   peak RSS MiB",
        settings.rounds
    );
    let first_list = seconds(&watch, &|s| s.to_first_list.unwrap_or_default());
    println!(
        "kubernetes   {first_list:>11.3}  {:>7.3}  {:>19.3}  {:>13.2}  {:>8.1}  {:>13.1}",
        served(&watch),
        seconds(&watch, &|s| s.to_served
            - s.to_first_list.unwrap_or_default()),
        seconds(&watch, &|s| s.cpu),
        rss(&watch),
        peak(&watch),
    );
    println!(
        "file (peer)  {:>11}  {:>7.3}  {:>19}  {:>13.2}  {:>8.1}  {:>13.1}",
        "-",
        served(&file),
        "-",
        seconds(&file, &|s| s.cpu),
        rss(&file),
        peak(&file),
    );
    println!(
        "the API server's lists alone, read by a client in this process: {:.3} s",
        median(listing)
    );
    println!(
        "kubernetes / file: served {:.2}x, RSS {:.2}x, peak RSS {:.2}x",
        served(&watch) / served(&file),
        rss(&watch) / rss(&file),
        peak(&watch) / peak(&file),
    );
    if watch.len() < settings.rounds || file.len() < settings.rounds {
        eprintln!("some rounds failed: see above");
        std::process::exit(1);
    }
}
