//! One Service's answers, compiled once per change from its Service and EndpointSlices.
//!
//! [`ServiceRecords::build`] is pure: same inputs, same value. It merges every slice of the
//! Service (several slices, one or two IP families), keeps only ready endpoints (R1: readiness is
//! `conditions.ready` and nothing else), deduplicates addresses, and indexes each endpoint under
//! each of its names (hostname, pod name; a dashed IP is found by binary search; R2).
//!
//! Invariants:
//! - `endpoints` is sorted by address and holds each address once;
//! - every name in `labels` maps to at least one index into `endpoints`;
//! - the value is immutable once built: the writer publishes it whole behind an `Arc`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use crate::config::SrvTargetStyle;
use crate::model::{EndpointSlice, Port, Service, ServiceKind};

/// A ready endpoint address with what its names need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyEndpoint {
    /// The address.
    pub ip: IpAddr,
    /// The endpoint's hostname, if any.
    pub hostname: Option<Arc<str>>,
    /// The label its SRV records point at (hostname, else pod name or dashed IP, per config).
    pub srv_label: Arc<str>,
    /// The ports of the slice the endpoint came from.
    pub ports: Arc<[Port]>,
}

/// An endpoint address that is not ready: kept only to explain why a name does not answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReadyEndpoint {
    /// The address.
    pub ip: IpAddr,
    /// Its hostname, if any.
    pub hostname: Option<Arc<str>>,
    /// Its pod's name, if known.
    pub pod_name: Option<Arc<str>>,
}

/// The endpoints one label names: nearly always one, so no vector is allocated for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Positions {
    /// One endpoint.
    One(u32),
    /// Several endpoints, ascending.
    Many(Box<[u32]>),
}

impl Positions {
    /// The positions as a slice.
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Positions::One(position) => std::slice::from_ref(position),
            Positions::Many(positions) => positions,
        }
    }

    fn push(&mut self, position: u32) {
        if self.as_slice().last() == Some(&position) {
            return;
        }
        let mut all = self.as_slice().to_vec();
        all.push(position);
        *self = Positions::Many(all.into_boxed_slice());
    }
}

/// Everything the answer rules need to know about one Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRecords {
    /// Headless, ClusterIP or ExternalName.
    pub kind: ServiceKind,
    /// The Service's own ports (ClusterIP SRV answers).
    pub service_ports: Vec<Port>,
    /// Ready endpoints, sorted by address, one entry per address.
    pub endpoints: Vec<ReadyEndpoint>,
    /// Hostname or pod name to indexes into `endpoints` (dashed IPs are not stored: they are
    /// parsed back into an address and found by binary search).
    pub labels: HashMap<Box<str>, Positions>,
    /// Endpoints that are not ready (and not also ready in another slice), for explanations.
    pub not_ready: Vec<NotReadyEndpoint>,
}

impl ServiceRecords {
    /// Compiles a Service and its slices (in any order) into its answers.
    pub fn build<'a>(
        service: &Service,
        slices: impl IntoIterator<Item = &'a EndpointSlice>,
        srv_target: SrvTargetStyle,
    ) -> Self {
        let mut by_ip: BTreeMap<IpAddr, (ReadyEndpoint, Option<Box<str>>)> = BTreeMap::new();
        let mut not_ready: BTreeMap<IpAddr, NotReadyEndpoint> = BTreeMap::new();
        if !matches!(service.kind, ServiceKind::ExternalName(_)) {
            for slice in slices {
                for endpoint in slice.endpoints.iter().filter(|e| !e.ready) {
                    for ip in &endpoint.addresses {
                        not_ready.entry(*ip).or_insert_with(|| NotReadyEndpoint {
                            ip: *ip,
                            hostname: endpoint.hostname.as_deref().map(Arc::from),
                            pod_name: endpoint.pod_name.as_deref().map(Arc::from),
                        });
                    }
                }
                let ports: Arc<[Port]> = slice.ports.clone().into();
                for endpoint in slice.endpoints.iter().filter(|e| e.ready) {
                    for ip in &endpoint.addresses {
                        let hostname: Option<Arc<str>> =
                            endpoint.hostname.as_deref().map(Arc::from);
                        let pod_name = endpoint.pod_name.as_deref().map(Box::from);
                        let srv_label =
                            srv_label(hostname.as_ref(), pod_name.as_deref(), ip, srv_target);
                        let entry = ReadyEndpoint {
                            ip: *ip,
                            hostname,
                            srv_label,
                            ports: ports.clone(),
                        };
                        // The same address in two slices (a pod moving between slices): keep
                        // the first, deterministically, since slices arrive sorted by name.
                        by_ip.entry(*ip).or_insert((entry, pod_name));
                    }
                }
            }
        }
        let mut endpoints = Vec::with_capacity(by_ip.len());
        let mut labels: HashMap<Box<str>, Positions> = HashMap::new();
        for (position, (_, (endpoint, pod_name))) in by_ip.into_iter().enumerate() {
            let position = position as u32;
            let mut add = |label: Box<str>| match labels.get_mut(&label) {
                Some(positions) => positions.push(position),
                None => {
                    labels.insert(label, Positions::One(position));
                }
            };
            if let Some(hostname) = &endpoint.hostname {
                add(Box::from(&**hostname));
            }
            if let Some(pod_name) = pod_name {
                add(pod_name);
            }
            endpoints.push(endpoint);
        }
        let is_ready = |ip: &IpAddr| endpoints.binary_search_by(|e| e.ip.cmp(ip)).is_ok();
        not_ready.retain(|ip, _| !is_ready(ip));
        Self {
            kind: service.kind.clone(),
            service_ports: service.ports.clone(),
            endpoints,
            labels,
            not_ready: not_ready.into_values().collect(),
        }
    }

    /// The endpoints known by `label` (R2): by hostname or pod name, then by dashed IP.
    pub fn endpoints_labelled<'a>(
        &'a self,
        label: &str,
    ) -> impl Iterator<Item = &'a ReadyEndpoint> + 'a {
        let named = self
            .labels
            .get(label)
            .map(Positions::as_slice)
            .unwrap_or_default();
        let dashed = undashed_ip(label)
            .and_then(|ip| self.endpoints.binary_search_by(|e| e.ip.cmp(&ip)).ok())
            .map(|position| position as u32)
            .filter(|position| !named.contains(position));
        named
            .iter()
            .copied()
            .chain(dashed)
            .filter_map(|position| self.endpoints.get(position as usize))
    }

    /// Names answerable below this Service: hostnames and pod names, and dashed IPs.
    pub fn name_count(&self) -> usize {
        self.labels.len() + self.endpoints.len()
    }
}

fn srv_label(
    hostname: Option<&Arc<str>>,
    pod_name: Option<&str>,
    ip: &IpAddr,
    style: SrvTargetStyle,
) -> Arc<str> {
    match (hostname, pod_name, style) {
        (Some(hostname), _, _) => hostname.clone(),
        (None, Some(pod), SrvTargetStyle::PodName) => pod.into(),
        _ => dashed_ip(ip).into(),
    }
}

/// The dashed form of an address used as a DNS label (R2): `10-244-1-5`, `fd00-10--5`, with a
/// `0` appended to an IPv6 form that would end in `-`, and one prepended when it would start
/// with `-`.
pub fn dashed_ip(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut label = v6.to_string().replace(':', "-");
            if label.ends_with('-') {
                label.push('0');
            }
            if label.starts_with('-') {
                label.insert(0, '0');
            }
            label
        }
    }
}

/// The address a dashed label names (`10-244-1-5`, `fd00-10--5`), if it is one; the inverse of
/// [`dashed_ip`], parsed on the stack.
pub fn undashed_ip(label: &str) -> Option<IpAddr> {
    let bytes = label.as_bytes();
    // Only hex digits and dashes can spell an address: most labels (pod names) stop here.
    if bytes.len() > 45
        || !bytes.contains(&b'-')
        || !bytes.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
    {
        return None;
    }
    let parse_with = |separator: u8| {
        let mut buffer = [0u8; 45];
        for (out, &byte) in buffer.iter_mut().zip(bytes) {
            *out = if byte == b'-' { separator } else { byte };
        }
        std::str::from_utf8(&buffer[..bytes.len()])
            .ok()?
            .parse::<IpAddr>()
            .ok()
    };
    parse_with(b'.').or_else(|| parse_with(b':'))
}

/// SRV weight for an answer of `count` records (R3): max(1, floor(100 / count)).
pub fn srv_weight(count: usize) -> u16 {
    if count == 0 {
        return 100;
    }
    (100 / count).max(1) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AddressFamily, Endpoint, Protocol, ServiceKey};

    fn endpoint(ip: &str, ready: bool, hostname: Option<&str>, pod: Option<&str>) -> Endpoint {
        Endpoint {
            addresses: vec![ip.parse().unwrap()],
            ready,
            hostname: hostname.map(str::to_string),
            pod_name: pod.map(str::to_string),
        }
    }

    fn slice(name: &str, family: AddressFamily, endpoints: Vec<Endpoint>) -> EndpointSlice {
        EndpointSlice {
            name: name.into(),
            service: ServiceKey::new("default", "db"),
            family,
            ports: vec![Port {
                name: Some("pg".into()),
                protocol: Protocol::Tcp,
                port: 5432,
            }],
            endpoints,
        }
    }

    fn headless() -> Service {
        Service {
            key: ServiceKey::new("default", "db"),
            kind: ServiceKind::Headless,
            ports: vec![],
        }
    }

    #[test]
    fn dashed_ip_forms() {
        let cases = [
            ("10.244.1.5", "10-244-1-5"),
            ("fd00:10::5", "fd00-10--5"),
            ("fd00:10::", "fd00-10--0"),
            ("::1", "0--1"),
            ("2001:db8:0:0:1:0:0:1", "2001-db8--1-0-0-1"),
        ];
        for (ip, label) in cases {
            assert_eq!(dashed_ip(&ip.parse().unwrap()), label, "{ip}");
        }
    }

    #[test]
    fn dashed_labels_parse_back() {
        for ip in [
            "10.244.1.5",
            "fd00:10::5",
            "fd00:10::",
            "::1",
            "2001:db8::1:0:0:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed_ip(&dashed_ip(&ip)), Some(ip), "{ip}");
        }
        for label in ["kubia-0", "10-244-1", "10-244-1-256", "web", "a-b-c-d"] {
            assert_eq!(undashed_ip(label), None, "{label}");
        }
    }

    #[test]
    fn srv_weights() {
        for (count, weight) in [(1, 100), (3, 33), (7, 14), (100, 1), (250, 1)] {
            assert_eq!(srv_weight(count), weight, "{count}");
        }
    }

    #[test]
    fn merges_slices_dedups_and_drops_not_ready() {
        let a = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![
                endpoint("10.0.0.2", true, Some("db-1"), Some("db-1")),
                endpoint("10.0.0.9", false, Some("db-9"), Some("db-9")),
            ],
        );
        let b = slice(
            "db-b",
            AddressFamily::Ipv4,
            vec![
                endpoint("10.0.0.1", true, Some("db-0"), Some("db-0")),
                endpoint("10.0.0.2", true, Some("db-1"), Some("db-1")),
            ],
        );
        let records = ServiceRecords::build(&headless(), [&a, &b], SrvTargetStyle::Hostname);
        let ips: Vec<String> = records.endpoints.iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(ips, ["10.0.0.1", "10.0.0.2"]);
        assert!(records.endpoints_labelled("db-9").next().is_none());
        assert_eq!(records.endpoints_labelled("db-1").count(), 1);
        assert_eq!(records.endpoints_labelled("10-0-0-1").count(), 1);
    }

    #[test]
    fn dual_stack_hostname_answers_both_families() {
        let v4 = slice(
            "db-v4",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, Some("db-0"), Some("db-0"))],
        );
        let v6 = slice(
            "db-v6",
            AddressFamily::Ipv6,
            vec![endpoint("fd00::1", true, Some("db-0"), Some("db-0"))],
        );
        let records = ServiceRecords::build(&headless(), [&v4, &v6], SrvTargetStyle::Hostname);
        let ips: Vec<String> = records
            .endpoints_labelled("db-0")
            .map(|e| e.ip.to_string())
            .collect();
        assert_eq!(ips, ["10.0.0.1", "fd00::1"]);
    }

    #[test]
    fn srv_label_follows_style() {
        let s = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, None, Some("web-abc"))],
        );
        let by_ip = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::Hostname);
        assert_eq!(&*by_ip.endpoints[0].srv_label, "10-0-0-1");
        let by_pod = ServiceRecords::build(&headless(), [&s], SrvTargetStyle::PodName);
        assert_eq!(&*by_pod.endpoints[0].srv_label, "web-abc");
    }

    #[test]
    fn external_name_has_no_endpoints() {
        let s = slice(
            "db-a",
            AddressFamily::Ipv4,
            vec![endpoint("10.0.0.1", true, None, None)],
        );
        let service = Service {
            kind: ServiceKind::ExternalName("example.com".into()),
            ..headless()
        };
        let records = ServiceRecords::build(&service, [&s], SrvTargetStyle::Hostname);
        assert!(records.endpoints.is_empty());
    }
}
