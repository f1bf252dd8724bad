//! Same bytes either way: a generated cluster, every name and type asked through the fast path
//! (a replayed, patched response) and the general path, byte for byte; and no stale replay
//! while the index changes underneath.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use hickory_proto::rr::RecordType;
use peerdns::config::{Config, SrvTargetStyle};
use peerdns::dns::cache::{AnswerCache, DEFAULT_CAPACITY, Validity};
use peerdns::dns::direct::Direct;
use peerdns::dns::udp::{FastPath, Replies, answer_batch};
use peerdns::dns::{Responder, Transport};
use peerdns::index::{Index, IndexWriter, dashed_ip};
use peerdns::metrics::Metrics;
use peerdns::model::{
    AddressFamily, Endpoint, EndpointSlice, Port, Protocol, Service, ServiceKey, ServiceKind,
};
use peerdns::sys::batch::BATCH;

use crate::support::Ask;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SOURCE: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

fn endpoint(rng: &mut Rng, service: usize, i: usize, family: AddressFamily) -> Endpoint {
    let ip = match family {
        AddressFamily::Ipv4 => IpAddr::V4(Ipv4Addr::new(10, 50, service as u8, i as u8 + 1)),
        AddressFamily::Ipv6 => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0,
            0,
            0,
            0,
            0,
            service as u16,
            i as u16 + 1,
        )),
    };
    let named = rng.below(4) != 0;
    // Every third Service's pods have names too long to be kept inline in the index (over 30
    // bytes: `index::Label`), the others short ones.
    let pod = match service % 3 {
        2 => format!("a-statefulset-with-a-rather-long-name-{service}-{i}"),
        _ => format!("svc{service}-{i}"),
    };
    Endpoint {
        terminating: rng.below(7) == 0,
        addresses: vec![ip],
        ready: rng.below(5) != 0,
        hostname: named.then(|| pod.clone()),
        pod_name: Some(pod),
    }
}

/// Forty Services of every kind: headless with and without ports, dual-stack, several slices,
/// not-ready and terminating endpoints, ClusterIP, ExternalName in and out of the zone, and
/// the bootstrap names (R15: own names before ready, seeds, TXT) on some.
fn generate(writer: &mut IndexWriter, seed: u64) -> Vec<ServiceKey> {
    let mut rng = Rng(seed);
    let mut keys = Vec::new();
    for s in 0..40usize {
        let key = ServiceKey::new(["default", "apps", "db"][s % 3], format!("svc{s}"));
        let ports = match rng.below(3) {
            0 => vec![],
            _ => vec![
                Port {
                    name: Some("peer".into()),
                    protocol: Protocol::Tcp,
                    port: 2380,
                },
                Port {
                    name: Some("dns".into()),
                    protocol: Protocol::Udp,
                    port: 53,
                },
            ],
        };
        let kind = match s % 8 {
            5 => ServiceKind::ClusterIp(vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, s as u8))]),
            6 => ServiceKind::ExternalName(format!("svc{}.default.svc.cluster.local", s - 1)),
            7 => ServiceKind::ExternalName("example.com".into()),
            _ => ServiceKind::Headless,
        };
        let bootstrap = peerdns::model::Bootstrap {
            not_ready_names: s % 4 == 1,
            seeds: (s % 5 == 2).then_some(3),
            txt: match s % 6 {
                3 => vec!["replicaSet=rs0".into()],
                _ => Vec::new(),
            },
        };
        writer.apply_service(Service {
            bootstrap,
            key: key.clone(),
            kind,
            ports: ports.clone(),
        });
        let size = rng.below(14) as usize;
        for (n, family) in [AddressFamily::Ipv4, AddressFamily::Ipv6]
            .into_iter()
            .enumerate()
        {
            if n == 1 && rng.below(2) == 0 {
                continue;
            }
            let endpoints: Vec<Endpoint> = (0..size)
                .map(|i| endpoint(&mut rng, s, i, family))
                .collect();
            for (part, chunk) in endpoints.chunks(5).enumerate() {
                writer.apply_slice(EndpointSlice {
                    name: format!("svc{s}-{n}-{part}"),
                    service: key.clone(),
                    family,
                    ports: ports.clone(),
                    endpoints: chunk.to_vec(),
                });
            }
        }
        keys.push(key);
    }
    keys
}

fn questions(index: &Index, keys: &[ServiceKey]) -> Vec<(String, RecordType)> {
    let types = [
        RecordType::A,
        RecordType::AAAA,
        RecordType::SRV,
        RecordType::ANY,
        RecordType::MX,
        RecordType::CNAME,
        RecordType::TXT,
    ];
    let mut names = vec![
        "cluster.local.".to_string(),
        "dns-version.cluster.local.".into(),
        "example.com.".into(),
    ];
    let mut reverse = Vec::new();
    for key in keys {
        let base = format!("{}.{}.svc.cluster.local.", key.name, key.namespace);
        names.push(format!("{}.svc.cluster.local.", key.namespace));
        names.push(format!("_peer._tcp.{base}"));
        names.push(format!("_dns._udp.{base}"));
        names.push(format!("nosuch.{base}"));
        names.push(format!("seeds.{base}"));
        if let Some(records) = index.service(&key.namespace, &key.name) {
            let own_names = records
                .own_names
                .iter()
                .flat_map(|own| own.endpoints.iter());
            for endpoint in records.endpoints.iter().chain(own_names) {
                names.push(format!("{}.{base}", endpoint.srv_label()));
                names.push(format!("{}.{base}", dashed_ip(&endpoint.ip)));
                reverse.push(endpoint.ip);
            }
            reverse.extend(
                index
                    .not_ready(&key.namespace, &key.name)
                    .iter()
                    .map(|e| e.ip),
            );
        }
        names.push(base);
    }
    let mut all: Vec<(String, RecordType)> = names
        .iter()
        .flat_map(|n| types.iter().map(move |t| (n.clone(), *t)))
        .collect();
    for ip in reverse {
        let name = crate::support::reverse_name(&ip);
        all.push((name, RecordType::PTR));
    }
    all
}

/// The same question with another ID, another case and other RD/CD bits.
fn variant(ask: &Ask, id: u16, rng: &mut Rng) -> Vec<u8> {
    let name: String = ask
        .name
        .chars()
        .map(|c| {
            if rng.below(2) == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    let mut message = Ask {
        name,
        ..ask.clone()
    }
    .message(id);
    message.metadata.recursion_desired = rng.below(2) == 0;
    message.metadata.checking_disabled = rng.below(2) == 0;
    message.to_vec().unwrap()
}

fn responder() -> (Responder, Index, IndexWriter) {
    // Serials start at 1 here, so the final serial counts the changes.
    let authority = peerdns::app::authority(&Config::default()).unwrap();
    let (index, writer) = Index::new(1, SrvTargetStyle::Hostname);
    let responder = Responder::new(authority, index.clone(), 1232, Arc::new(Metrics::default()));
    (responder, index, writer)
}

#[test]
fn every_name_and_type_is_the_same_bytes_through_both_paths() {
    let (responder, index, mut writer) = responder();
    let keys = generate(&mut writer, 0x9e37_79b9_7f4a_7c15);
    writer.mark_synced();
    let all = questions(&index, &keys);
    assert!(all.len() > 1000, "{} questions", all.len());
    let mut rng = Rng(42);
    let mut cache = AnswerCache::new(DEFAULT_CAPACITY);
    let (mut replayed, mut out) = (0, Vec::new());
    for (i, (name, rtype)) in all.iter().enumerate() {
        for edns in [None, Some(512), Some(1232), Some(4096)] {
            let ask = Ask {
                name: name.clone(),
                rtype: *rtype,
                edns,
            };
            let generation = index.generation();
            let first = variant(&ask, i as u16, &mut rng);
            let general = responder.respond(&first, SOURCE, Transport::Udp).unwrap();
            cache.store(&first, &general, Validity::Generation(generation));
            let second = variant(&ask, !(i as u16), &mut rng);
            let expected = responder.respond(&second, SOURCE, Transport::Udp).unwrap();
            assert!(
                cache.answer(&second, &mut out, generation),
                "{name} {rtype} {edns:?}: not replayed"
            );
            assert_eq!(
                out, expected,
                "{name} {rtype} {edns:?}: replay differs from the general path"
            );
            replayed += 1;
        }
    }
    assert!(replayed > 4000);
}

/// A thread that keeps regenerating the cluster with new seeds until stopped.
///
/// It holds a gate while it publishes; a check takes [`Churn::quiet`] to compare with the
/// general path at a moment when no publish is half done (a Service already swapped in but its
/// serial not yet bumped: a replay then legitimately shows the moment before).
struct Churn {
    stop: Arc<AtomicBool>,
    gate: Arc<std::sync::RwLock<()>>,
    thread: std::thread::JoinHandle<IndexWriter>,
}

impl Churn {
    fn start(mut writer: IndexWriter, first_seed: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new(std::sync::RwLock::new(()));
        let thread = {
            let (stop, gate) = (stop.clone(), gate.clone());
            std::thread::spawn(move || {
                let mut seed = first_seed;
                while !stop.load(Ordering::Relaxed) {
                    seed += 1;
                    {
                        let _publishing = gate.write().unwrap();
                        generate(&mut writer, seed);
                    }
                    std::thread::sleep(std::time::Duration::from_micros(500));
                }
                writer
            })
        };
        Self { stop, gate, thread }
    }

    /// Holds off publishing while the guard lives.
    fn quiet(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
    }
}

/// Which kind of response the direct path wrote, read from its bytes: (rcode, answers).
fn shape(response: &[u8]) -> (u8, u16) {
    (
        response[3] & 0x0f,
        u16::from_be_bytes([response[6], response[7]]),
    )
}

#[test]
fn every_question_the_direct_path_takes_is_the_same_bytes_as_the_general_path() {
    let (responder, index, mut writer) = responder();
    let keys = generate(&mut writer, 0x5851_f42d_4c95_7f2d);
    writer.mark_synced();
    let mut rng = Rng(11);
    let mut direct = Direct::new(responder.authority());
    let (mut taken, mut declined, mut out) = (0, 0, Vec::new());
    let mut shapes = std::collections::BTreeSet::new();
    // SRV answers written with their glue, and with the glue dropped to fit (R12).
    let mut glue = [0, 0];
    // Answers too big even without glue: sent empty with TC (R12).
    let mut truncated = 0;
    for (i, (name, rtype)) in questions(&index, &keys).iter().enumerate() {
        for edns in [None, Some(512), Some(1232), Some(4096)] {
            let ask = Ask {
                name: name.clone(),
                rtype: *rtype,
                edns,
            };
            let request = variant(&ask, i as u16, &mut rng);
            let Some(written) = direct.answer(&index, 1232, &request, &mut out) else {
                declined += 1;
                continue;
            };
            let outcome = written.outcome;
            if shape(&out).1 > 0 {
                assert!(
                    written.records.is_some(),
                    "{name} {rtype}: positive, no records"
                );
            }
            let expected = responder.respond(&request, SOURCE, Transport::Udp).unwrap();
            assert_eq!(
                out, expected,
                "{name} {rtype} {edns:?}: the direct path differs from the general path"
            );
            assert_eq!(outcome.rcode.map(u16::from), Some(u16::from(shape(&out).0)));
            shapes.insert((*rtype, shape(&out).0, shape(&out).1 > 0));
            truncated += usize::from(out[2] & 0x02 != 0);
            let additional = u16::from_be_bytes([out[10], out[11]]);
            if *rtype == RecordType::SRV && shape(&out).1 > 0 {
                let only_opt = u16::from(edns.is_some());
                glue[usize::from(additional == only_opt)] += 1;
            }
            taken += 1;
        }
    }
    // It must take the common questions of every kind: positive A, AAAA and SRV, NXDOMAIN
    // and NODATA; and leave the rest (PTR, ANY, apex...) to the general path.
    for wanted in [
        (RecordType::A, 0, true),
        (RecordType::AAAA, 0, true),
        (RecordType::SRV, 0, true),
        (RecordType::A, 3, false),
        (RecordType::SRV, 0, false),
        (RecordType::AAAA, 0, false),
    ] {
        assert!(
            shapes.contains(&wanted),
            "never answered {wanted:?}: {shapes:?}"
        );
    }
    assert!(
        glue[0] > 0 && glue[1] > 0,
        "SRV with glue / glue dropped: {glue:?}"
    );
    assert!(truncated > 0, "no truncated answer taken");
    assert!(taken > 2000, "direct answers: {taken}");
    assert!(declined > 1000, "declined: {declined}");
}

#[test]
fn direct_answers_follow_the_index_while_it_changes() {
    let (responder, index, mut writer) = responder();
    let keys = generate(&mut writer, 9);
    writer.mark_synced();
    let all: Vec<_> = questions(&index, &keys)
        .into_iter()
        .filter(|(_, t)| matches!(t, RecordType::A | RecordType::AAAA | RecordType::SRV))
        .collect();
    let churn = Churn::start(writer, 100);
    let mut rng = Rng(5);
    let mut direct = Direct::new(responder.authority());
    let (mut checked, mut out) = (0, Vec::new());
    for round in 0..20_000u32 {
        let (name, rtype) = &all[rng.below(all.len() as u64) as usize];
        let request = variant(&Ask::new(name, *rtype), round as u16, &mut rng);
        let _quiet = churn.quiet();
        if direct.answer(&index, 1232, &request, &mut out).is_none() {
            continue;
        }
        let expected = responder.respond(&request, SOURCE, Transport::Udp).unwrap();
        assert_eq!(out, expected, "round {round}: {name} {rtype} is stale");
        checked += 1;
    }
    churn.stop();
    assert!(checked > 5000, "only {checked} direct answers compared");
    assert!(index.serial() > 50, "the index barely changed");
}

#[test]
fn replays_are_never_stale_while_the_index_changes() {
    let (responder, index, mut writer) = responder();
    let keys = generate(&mut writer, 7);
    writer.mark_synced();
    // A small pool, so questions repeat and replays happen; every kind the worker caches.
    let all: Vec<_> = questions(&index, &keys)
        .into_iter()
        .step_by(40)
        .take(60)
        .collect();
    let churn = Churn::start(writer, 1);
    let mut rng = Rng(3);
    // The UDP worker's own pipeline (answer cache, direct path, general path), in batches of
    // one to eight datagrams: a batch's lookups all happen before its answers are written.
    let mut fast = FastPath::new(&responder);
    let mut replies = Replies::default();
    let (mut checked, mut replays_checked) = (0, 0);
    for round in 0..5_000u32 {
        let size = 1 + rng.below(8) as usize;
        let asked: Vec<(&String, &RecordType)> = (0..size)
            .map(|_| {
                let (name, rtype) = &all[rng.below(all.len() as u64) as usize];
                (name, rtype)
            })
            .collect();
        let requests: Vec<Vec<u8>> = asked
            .iter()
            .map(|(name, rtype)| variant(&Ask::new(name, **rtype), round as u16, &mut rng))
            .collect();
        let datagrams: Vec<(&[u8], SocketAddr)> =
            requests.iter().map(|r| (r.as_slice(), SOURCE)).collect();
        let generation = index.generation();
        let replayed_before = fast.replayed();
        answer_batch(&responder, &mut fast, &datagrams, &mut replies);
        let replayed = fast.replayed() - replayed_before;
        // What is served must equal what the general path answers at the same generation (a
        // publish in between legitimately changes it).
        let _quiet = churn.quiet();
        if index.generation() != generation {
            continue;
        }
        for (i, ((name, rtype), request)) in asked.iter().zip(&requests).enumerate() {
            let expected = responder.respond(request, SOURCE, Transport::Udp).unwrap();
            assert_eq!(
                replies.reply(i),
                Some(expected.as_slice()),
                "round {round}: {name} {rtype} served a stale answer"
            );
            checked += 1;
        }
        replays_checked += replayed as usize;
    }
    churn.stop();
    let serials_seen = index.serial();
    assert!(checked > 1000, "only {checked} answers compared");
    assert!(
        replays_checked > 100,
        "only {replays_checked} replays compared"
    );
    assert!(
        serials_seen > 50,
        "the index barely changed ({serials_seen})"
    );
}

/// Answers `batch` through a worker's pipeline and requires each datagram's reply to be its
/// answer alone (the general path's, or none); returns how many got none.
fn answer_each_as_alone(
    responder: &Responder,
    fast: &mut FastPath,
    replies: &mut Replies,
    batch: &[Vec<u8>],
    context: &str,
) -> usize {
    let datagrams: Vec<(&[u8], SocketAddr)> =
        batch.iter().map(|r| (r.as_slice(), SOURCE)).collect();
    answer_batch(responder, fast, &datagrams, replies);
    let mut dropped = 0;
    for (i, request) in batch.iter().enumerate() {
        let alone = responder.respond(request, SOURCE, Transport::Udp);
        assert_eq!(
            replies.reply(i),
            alone.as_deref(),
            "{context}: datagram {i} differs from its answer alone"
        );
        dropped += usize::from(alone.is_none());
    }
    dropped
}

#[test]
fn a_batch_answers_each_datagram_as_it_would_be_answered_alone() {
    let (responder, index, mut writer) = responder();
    let keys = generate(&mut writer, 0x2545_f491_4f6c_dd1d);
    writer.mark_synced();
    let mut rng = Rng(17);
    let mut requests: Vec<Vec<u8>> = questions(&index, &keys)
        .iter()
        .enumerate()
        .map(|(i, (name, rtype))| variant(&Ask::new(name, *rtype), i as u16, &mut rng))
        .collect();
    // Datagrams the fast paths refuse, among the others: not a query, cut short, garbage.
    requests.extend([vec![0x12, 0x34, 0x81, 0x00], vec![0xff; 40], Vec::new()]);
    for i in (1..requests.len()).rev() {
        requests.swap(i, rng.below(i as u64 + 1) as usize);
    }
    // Every other datagram repeats one of a few questions, so replays mix with direct and
    // general answers in each batch (and the cache, paying, looks every query up).
    let requests: Vec<Vec<u8>> = requests
        .iter()
        .flat_map(|request| {
            let repeat = (rng.below(2) == 0).then(|| requests[rng.below(30) as usize].clone());
            std::iter::once(request.clone()).chain(repeat)
        })
        .collect();
    let mut fast = FastPath::new(&responder);
    let mut replies = Replies::default();
    let (mut compared, mut dropped) = (0, 0);
    for pass in 0..2 {
        let mut at = 0;
        while at < requests.len() {
            // Batches of every size up to past one receive's (answered in chunks).
            let size = (1 + rng.below(BATCH as u64 + 8) as usize).min(requests.len() - at);
            let batch = &requests[at..at + size];
            let context = format!("pass {pass}, a batch of {size}");
            dropped += answer_each_as_alone(&responder, &mut fast, &mut replies, batch, &context);
            compared += size;
            at += size;
        }
    }
    assert!(compared > 2000, "{compared} answers compared");
    assert!(
        dropped >= 2,
        "the garbage datagrams were answered: {dropped} dropped"
    );
    assert!(fast.replayed() > 1000, "{} replays", fast.replayed());
    // Every question again, without EDNS or with sizes not asked before (other cache keys):
    // few lookups hit (only where the list repeats a question), so the cache soon samples;
    // the answers must not change.
    assert!(!fast.cache_is_sampling());
    for edns in [None, Some(512), Some(4096)] {
        let fresh: Vec<Vec<u8>> = questions(&index, &keys)
            .iter()
            .enumerate()
            .map(|(i, (name, rtype))| {
                let ask = Ask {
                    edns,
                    ..Ask::new(name, *rtype)
                };
                variant(&ask, i as u16, &mut rng)
            })
            .collect();
        for batch in fresh.chunks(BATCH) {
            let context = format!("EDNS {edns:?}");
            answer_each_as_alone(&responder, &mut fast, &mut replies, batch, &context);
        }
    }
    assert!(
        fast.cache_is_sampling(),
        "a pass of names asked once did not start sampling"
    );
}
