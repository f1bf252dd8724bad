//! The invariants the fuzz targets check, one function per target, shared with the ordinary
//! test suite (`tests/e2e/fuzz_regressions.rs` includes this file by path), so whatever the
//! fuzzer checks, CI checks on the seed corpus and on every input that once failed.
//!
//! Each `check_*` takes one input and panics when an invariant breaks:
//! - [`check_query`]: request bytes through the general path (UDP and TCP) and the UDP fast
//!   path (a miss, then a replay, then a replay for the same question with another ID, case and
//!   RD/CD bits); every response parses, carries the request's ID, fits its size limit, and
//!   the fast path's bytes equal the general path's;
//! - [`check_cluster_file`]: cluster file text through `source::file::parse`; a loaded state
//!   keeps the model's invariants and serves its names;
//! - [`check_api_object`]: a JSON object read as a Service and as an EndpointSlice, then
//!   converted; a converted object keeps the model's invariants and serves its names.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use peerdns::config::{Config, SrvTargetStyle};
use peerdns::dns::udp::FastPath;
use peerdns::dns::{Responder, Transport, udp};
use peerdns::index::{Index, IndexWriter};
use peerdns::metrics::Metrics;
use peerdns::model::{AddressFamily, ClusterState, EndpointSlice, Port, Service, ServiceKind};
use peerdns::source::convert::{self, is_dns_label, is_dns_subdomain};
use peerdns::source::file::{self, DEFAULT_POD_CIDR};

/// The cluster the query target answers from.
pub const RULES_YAML: &str = include_str!("../../clusters/rules.yaml");
/// The bootstrap names' cluster (R15: own names, seeds, TXT), served beside the rules'.
pub const BOOTSTRAP_YAML: &str = include_str!("../../clusters/bootstrap.yaml");

/// The UDP payload cap the responders are built with (the default `dns.max_udp_payload`).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// The client every request comes from.
const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);

/// Names the checks ask about one loaded state, at most (keeps one execution short).
const MAX_QUESTIONS: usize = 64;

/// A responder over a synced index, and the index's writer (kept, so nothing is torn down).
pub struct Server {
    /// Answers requests.
    pub responder: Responder,
    _writer: IndexWriter,
}

impl Server {
    /// A synced server for `state`, with the default config's zones and TTLs.
    pub fn new(state: ClusterState) -> Self {
        let authority = peerdns::app::authority(&Config::default()).expect("default authority");
        let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
        writer.replace_all(state);
        writer.mark_synced();
        let metrics = Arc::new(Metrics::default());
        let responder = Responder::new(authority, index, MAX_UDP_PAYLOAD, metrics);
        Self {
            responder,
            _writer: writer,
        }
    }

    /// The server for `tests/clusters/rules.yaml`.
    pub fn rules() -> Self {
        let mut state = file::parse(Path::new("rules.yaml"), RULES_YAML, &[pod_cidr()])
            .expect("tests/clusters/rules.yaml loads");
        let bootstrap = file::parse(Path::new("bootstrap.yaml"), BOOTSTRAP_YAML, &[pod_cidr()])
            .expect("tests/clusters/bootstrap.yaml loads");
        state.services.extend(bootstrap.services);
        state.slices.extend(bootstrap.slices);
        Self::new(state)
    }
}

/// The pod CIDR StatefulSet pods get addresses from.
pub fn pod_cidr() -> ipnet::IpNet {
    DEFAULT_POD_CIDR.parse().expect("default pod cidr")
}

/// A query for `name` and `rtype` with ID `id`, RD set, and an OPT record offering `edns`
/// bytes when given; `None` when `name` is not a valid DNS name.
pub fn query_bytes(name: &str, rtype: RecordType, edns: Option<u16>, id: u16) -> Option<Vec<u8>> {
    let mut message = Message::new(id, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).ok()?, rtype));
    if let Some(size) = edns {
        let mut opt = Edns::new();
        opt.set_max_payload(size);
        message.edns = Some(opt);
    }
    message.to_vec().ok()
}

/// Checks one request against `server` over every path (see the module doc).
pub fn check_query(server: &Server, request: &[u8]) {
    let responder = &server.responder;
    let general = responder.respond(request, CLIENT, Transport::Udp);
    if let Some(response) = &general {
        check_response(request, response, Transport::Udp);
    }
    if let Some(response) = responder.respond(request, CLIENT, Transport::Tcp) {
        check_response(request, &response, Transport::Tcp);
    }
    let mut cache = FastPath::new(responder);
    let miss = udp::answer(responder, &mut cache, request, CLIENT);
    assert_eq!(
        miss, general,
        "fast path (miss) differs from the general path"
    );
    let replay = udp::answer(responder, &mut cache, request, CLIENT);
    assert_eq!(
        replay, general,
        "fast path (replay) differs from the general path"
    );
    let other = variant(request);
    let expected = responder.respond(&other, CLIENT, Transport::Udp);
    let replay = udp::answer(responder, &mut cache, &other, CLIENT);
    assert_eq!(
        replay, expected,
        "fast path differs from the general path for the same question with another id, case \
         and flags"
    );
}

/// The same request with another ID, RD and CD flipped, and the question name's letters in
/// the other case (as far as the name reads as uncompressed labels).
fn variant(request: &[u8]) -> Vec<u8> {
    let mut other = request.to_vec();
    if other.len() < 12 {
        return other;
    }
    other[0] ^= 0x5a;
    other[1] ^= 0xa5;
    other[2] ^= 0x01; // RD
    other[3] ^= 0x10; // CD
    let mut at = 12;
    while let Some(&length) = other.get(at) {
        let length = usize::from(length);
        if length == 0 || length > 63 || at + 1 + length > other.len() {
            break;
        }
        for byte in &mut other[at + 1..at + 1 + length] {
            if byte.is_ascii_alphabetic() {
                *byte ^= 0x20;
            }
        }
        at += 1 + length;
    }
    other
}

/// A response parses, answers the request's ID, and fits the transport's limit.
fn check_response(request: &[u8], response: &[u8], transport: Transport) {
    let message = Message::from_vec(response)
        .unwrap_or_else(|e| panic!("{transport:?} response does not parse: {e}: {response:02x?}"));
    assert_eq!(
        message.metadata.id,
        u16::from_be_bytes([request[0], request[1]]),
        "{transport:?} response id differs from the request's"
    );
    assert_eq!(message.metadata.message_type, MessageType::Response);
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp if message.edns.is_some() => usize::from(MAX_UDP_PAYLOAD),
        Transport::Udp => 512,
    };
    assert!(
        response.len() <= limit,
        "{transport:?} response of {} bytes exceeds {limit}",
        response.len()
    );
}

/// Loads cluster file `text`; a state that loads keeps the model's invariants and serves.
pub fn check_cluster_file(text: &str) {
    if let Ok(state) = file::parse(Path::new("fuzz.yaml"), text, &[pod_cidr()]) {
        state.services.iter().for_each(check_service);
        state.slices.iter().for_each(check_slice);
        check_serves(state);
    }
}

/// Reads `value` as a Service and as an EndpointSlice and converts each that reads; what
/// converts keeps the model's invariants and serves.
pub fn check_api_object(value: &serde_json::Value) {
    let mut state = ClusterState::default();
    if let Ok(svc) = serde_json::from_value::<core::Service>(value.clone())
        && let Ok(model) = convert::service(&svc)
    {
        check_service(&model);
        state.services.push(model);
    }
    if let Ok(slice) = serde_json::from_value::<discovery::EndpointSlice>(value.clone()) {
        let key = convert::slice_service(&slice);
        if let Ok(Some(model)) = convert::endpoint_slice(&slice) {
            check_slice(&model);
            assert_eq!(key.as_ref(), Ok(&model.service), "slice_service disagrees");
            state.slices.push(model);
        }
    }
    check_serves(state);
}

fn check_port(port: &Port) {
    assert_ne!(port.port, 0, "port 0 in {port:?}");
    if let Some(name) = &port.name {
        assert!(!name.is_empty(), "empty port name");
        assert_eq!(*name, name.to_ascii_lowercase(), "port name not lowercase");
    }
}

fn check_service(service: &Service) {
    assert!(is_dns_label(&service.key.namespace), "{:?}", service.key);
    assert!(is_dns_label(&service.key.name), "{:?}", service.key);
    if let ServiceKind::ExternalName(target) = &service.kind {
        assert!(!target.is_empty() && !target.ends_with('.'), "{target:?}");
        assert_eq!(*target, target.to_ascii_lowercase(), "{target:?}");
    }
    service.ports.iter().for_each(check_port);
}

fn check_slice(slice: &EndpointSlice) {
    assert!(is_dns_subdomain(&slice.name), "{:?}", slice.name);
    assert!(
        is_dns_label(&slice.service.namespace),
        "{:?}",
        slice.service
    );
    assert!(is_dns_label(&slice.service.name), "{:?}", slice.service);
    slice.ports.iter().for_each(check_port);
    for endpoint in &slice.endpoints {
        for address in &endpoint.addresses {
            assert_eq!(
                AddressFamily::of(address),
                slice.family,
                "{address} in {slice:?}"
            );
        }
        if let Some(hostname) = &endpoint.hostname {
            assert!(is_dns_label(hostname), "{hostname:?}");
        }
        if let Some(pod) = &endpoint.pod_name {
            assert!(is_dns_subdomain(pod), "{pod:?}");
        }
    }
}

/// Loads `state` into an index and asks for its names (Services, SRV port names, endpoint
/// labels, reverse addresses), checking every response as [`check_query`] does.
fn check_serves(state: ClusterState) {
    let mut names: Vec<(String, RecordType)> = Vec::new();
    for service in &state.services {
        let base = format!(
            "{}.{}.svc.cluster.local.",
            service.key.name, service.key.namespace
        );
        names.push((base.clone(), RecordType::ANY));
        names.push((base, RecordType::SRV));
    }
    for slice in &state.slices {
        let base = format!(
            "{}.{}.svc.cluster.local.",
            slice.service.name, slice.service.namespace
        );
        names.push((base.clone(), RecordType::A));
        for port in &slice.ports {
            let proto = port.protocol.label();
            if let Some(name) = &port.name {
                names.push((format!("_{name}._{proto}.{base}"), RecordType::SRV));
            }
        }
        for endpoint in &slice.endpoints {
            for label in endpoint.hostname.iter().chain(&endpoint.pod_name) {
                names.push((format!("{label}.{base}"), RecordType::A));
            }
            for address in &endpoint.addresses {
                names.push((reverse_name(address), RecordType::PTR));
            }
        }
    }
    let server = Server::new(state);
    for (i, (name, rtype)) in names.iter().take(MAX_QUESTIONS).enumerate() {
        if let Some(request) = query_bytes(name, *rtype, Some(MAX_UDP_PAYLOAD), i as u16) {
            check_query(&server, &request);
        }
    }
}

/// The `in-addr.arpa` or `ip6.arpa` name of `address`.
pub fn reverse_name(address: &IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa.")
        }
        IpAddr::V6(v6) => {
            let mut name = String::new();
            for byte in v6.octets().iter().rev() {
                name.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            name + "ip6.arpa."
        }
    }
}
