//! SRV answers (R3, R4): which (target, port) pairs a Service lists, their weight, and the
//! targets' addresses for the additional section.
//!
//! Invariants: records are sorted by (target label in [`srv_label_order`], port) and
//! deduplicated, so StatefulSet peers come by ordinal (R15) and a dual-stack peer known by its
//! hostname is one target; each target's addresses are glued once.

use crate::index::{Label, ReadyEndpoint, ServiceRecords, srv_label_order};
use crate::model::{Port, Protocol, ServiceKind};

/// One SRV record an answer lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SrvEntry<'r> {
    /// The target's label below the Service name; `None` for the Service's own name (a
    /// ClusterIP Service).
    pub label: Option<&'r Label>,
    /// The port.
    pub port: u16,
    /// The one endpoint `label` names, when the records say so without a lookup
    /// ([`ServiceRecords::srv_targets_alone`]). Part of equality: entries of two endpoints
    /// never compare equal (their addresses differ).
    alone: Option<&'r ReadyEndpoint>,
}

impl<'r> SrvEntry<'r> {
    /// Whether both entries point at the same target (adjacent in a sorted list when so).
    pub fn same_target(&self, other: &SrvEntry<'_>) -> bool {
        match (self.alone, other.alone) {
            (Some(a), Some(b)) => std::ptr::eq(a, b),
            _ => self.label == other.label,
        }
    }

    /// The ready endpoints the target names, whose addresses are its glue: the entry's own
    /// endpoint when it is the only one, else those [`ServiceRecords::endpoints_labelled`]
    /// finds. Nothing for a Service's own name.
    pub fn target_endpoints(
        &self,
        records: &'r ServiceRecords,
    ) -> impl Iterator<Item = &'r ReadyEndpoint> + 'r {
        let looked_up = match (self.alone, self.label) {
            (None, Some(label)) => Some(records.endpoints_labelled(label.as_str())),
            _ => None,
        };
        self.alone
            .into_iter()
            .chain(looked_up.into_iter().flatten())
    }
}

/// The SRV records a Service lists for `filter`, sorted by target label then port and
/// deduplicated; a `None` label stands for the Service's own name (a ClusterIP Service).
pub(crate) fn srv_entries<'r>(
    records: &'r ServiceRecords,
    filter: PortFilter<'_>,
) -> Vec<SrvEntry<'r>> {
    let mut entries: Vec<SrvEntry<'r>> = Vec::new();
    let headless_entries = |entries: &mut Vec<SrvEntry<'r>>, endpoint: &'r ReadyEndpoint, alone| {
        let entry = |port| SrvEntry {
            label: Some(endpoint.srv_label()),
            port,
            alone,
        };
        if endpoint.ports.is_empty() && matches!(filter, PortFilter::All) {
            entries.push(entry(0));
        }
        for port in endpoint.ports.iter().filter(|p| filter.matches(p)) {
            entries.push(entry(port.port));
        }
    };
    match &records.kind {
        ServiceKind::Headless if records.srv_targets_alone() => {
            // `srv_order` lists endpoints by label, and no two share one: sorting each
            // endpoint's ports sorts the whole list without comparing a label, and only one
            // endpoint's entries can be equal neighbours.
            for endpoint in records
                .srv_order
                .iter()
                .filter_map(|p| records.endpoints.get(*p as usize))
            {
                let start = entries.len();
                headless_entries(&mut entries, endpoint, Some(endpoint));
                entries[start..].sort_unstable_by_key(|e| e.port);
            }
            entries.dedup();
        }
        ServiceKind::Headless => {
            for endpoint in &records.endpoints {
                headless_entries(&mut entries, endpoint, None);
            }
            entries.sort_unstable_by(|a, b| {
                let (label_a, label_b) = (
                    a.label.map_or("", Label::as_str),
                    b.label.map_or("", Label::as_str),
                );
                srv_label_order(label_a, label_b).then(a.port.cmp(&b.port))
            });
            entries.dedup();
        }
        ServiceKind::ClusterIp(_) => {
            for port in records.service_ports.iter().filter(|p| filter.matches(p)) {
                entries.push(SrvEntry {
                    label: None,
                    port: port.port,
                    alone: None,
                });
            }
            entries.sort_unstable_by_key(|e| e.port);
            entries.dedup();
        }
        ServiceKind::ExternalName(_) => {}
    }
    entries
}

/// Whether [`srv_entries`] would list anything for `filter`, without listing.
pub(crate) fn srv_entries_exist(records: &ServiceRecords, filter: PortFilter<'_>) -> bool {
    match &records.kind {
        ServiceKind::Headless => records.endpoints.iter().any(|endpoint| {
            (endpoint.ports.is_empty() && matches!(filter, PortFilter::All))
                || endpoint.ports.iter().any(|p| filter.matches(p))
        }),
        ServiceKind::ClusterIp(_) => records.service_ports.iter().any(|p| filter.matches(p)),
        ServiceKind::ExternalName(_) => false,
    }
}

/// Which ports an SRV answer lists.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PortFilter<'a> {
    /// Every port, named or not (R4).
    All,
    /// The named port with this protocol (R3).
    Named(&'a str, Protocol),
}

impl PortFilter<'_> {
    pub(crate) fn matches(&self, port: &Port) -> bool {
        match self {
            PortFilter::All => true,
            PortFilter::Named(name, protocol) => {
                port.protocol == *protocol && port.name.as_deref() == Some(*name)
            }
        }
    }
}

/// Whether some named port of the Service uses `protocol` (so `_<proto>.<svc>...` exists).
pub(super) fn has_protocol(records: &ServiceRecords, protocol: &str) -> bool {
    let Some(protocol) = Protocol::from_label(protocol) else {
        return false;
    };
    let named = |p: &Port| p.protocol == protocol && p.name.is_some();
    match records.kind {
        ServiceKind::Headless => records.endpoints.iter().any(|e| e.ports.iter().any(named)),
        ServiceKind::ClusterIp(_) => records.service_ports.iter().any(named),
        ServiceKind::ExternalName(_) => false,
    }
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
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::config::SrvTargetStyle;
    use crate::index::Index;
    use crate::model::{AddressFamily, Endpoint, EndpointSlice, Service, ServiceKey};

    fn port(name: &str, protocol: Protocol, number: u16) -> Port {
        Port {
            name: Some(name.into()),
            protocol,
            port: number,
        }
    }

    /// A headless Service with one slice per endpoint, given as (address, hostname, pod name),
    /// all with `ports`; the endpoints' addresses do not sort like their labels.
    fn records(
        endpoints: &[(&str, Option<&str>, Option<&str>)],
        ports: Vec<Port>,
    ) -> Arc<ServiceRecords> {
        let (index, mut writer) = Index::new(1, SrvTargetStyle::Hostname);
        let key = ServiceKey::new("default", "db");
        writer.apply_service(Service {
            bootstrap: Default::default(),
            key: key.clone(),
            kind: ServiceKind::Headless,
            ports: vec![],
        });
        for (i, (ip, hostname, pod)) in endpoints.iter().enumerate() {
            let ip: IpAddr = ip.parse().unwrap();
            writer.apply_slice(EndpointSlice {
                name: format!("db-{i}"),
                service: key.clone(),
                family: if ip.is_ipv4() {
                    AddressFamily::Ipv4
                } else {
                    AddressFamily::Ipv6
                },
                ports: ports.clone(),
                endpoints: vec![Endpoint {
                    terminating: false,
                    addresses: vec![ip],
                    ready: true,
                    hostname: hostname.map(str::to_string),
                    pod_name: pod.map(str::to_string),
                }],
            });
        }
        index.service("default", "db").unwrap()
    }

    /// The rule as R3/R4 state it: every (label, port) pair, sorted, each once; the glue is
    /// what the label names.
    fn reference<'r>(
        records: &'r ServiceRecords,
        filter: PortFilter<'_>,
    ) -> Vec<(&'r str, u16, Vec<IpAddr>)> {
        let mut pairs: Vec<(&str, u16)> = Vec::new();
        for endpoint in &records.endpoints {
            if endpoint.ports.is_empty() && matches!(filter, PortFilter::All) {
                pairs.push((endpoint.srv_label().as_str(), 0));
            }
            for port in endpoint.ports.iter().filter(|p| filter.matches(p)) {
                pairs.push((endpoint.srv_label().as_str(), port.port));
            }
        }
        pairs.sort_unstable();
        pairs.dedup();
        pairs
            .into_iter()
            .map(|(label, port)| {
                let glue = records.endpoints_labelled(label).map(|e| e.ip).collect();
                (label, port, glue)
            })
            .collect()
    }

    fn listed<'r>(
        records: &'r ServiceRecords,
        filter: PortFilter<'_>,
    ) -> Vec<(&'r str, u16, Vec<IpAddr>)> {
        srv_entries(records, filter)
            .iter()
            .map(|entry| {
                let glue = entry.target_endpoints(records).map(|e| e.ip).collect();
                (entry.label.unwrap().as_str(), entry.port, glue)
            })
            .collect()
    }

    #[test]
    fn entries_follow_the_rule_whether_or_not_targets_stand_alone() {
        // Two ports numbered alike (UDP and TCP 53), listed out of order.
        let ports = vec![
            port("http", Protocol::Tcp, 8080),
            port("dns", Protocol::Udp, 53),
            port("dns-tcp", Protocol::Tcp, 53),
        ];
        type Endpoints<'a> = &'a [(&'a str, Option<&'a str>, Option<&'a str>)];
        let cases: [(Endpoints<'_>, bool); 4] = [
            // A StatefulSet: each hostname names its own endpoint.
            (
                &[
                    ("10.0.0.9", Some("db-0"), Some("db-0")),
                    ("10.0.0.1", Some("db-2"), Some("db-2")),
                    ("10.0.0.5", Some("db-1"), Some("db-1")),
                ],
                true,
            ),
            // A dual-stack peer: one label, two endpoints.
            (
                &[
                    ("10.0.0.2", Some("db-0"), Some("db-0")),
                    ("fd00::2", Some("db-0"), Some("db-0")),
                    ("10.0.0.1", Some("db-1"), Some("db-1")),
                ],
                false,
            ),
            // A hostname that is another endpoint's pod name.
            (
                &[
                    ("10.0.0.1", Some("a"), Some("b")),
                    ("10.0.0.2", Some("b"), Some("c")),
                ],
                false,
            ),
            // No hostnames: dashed addresses, each naming its own endpoint.
            (
                &[
                    ("10.0.0.7", None, Some("p-7")),
                    ("10.0.0.3", None, Some("p-3")),
                ],
                true,
            ),
        ];
        for (endpoints, alone) in cases {
            let records = records(endpoints, ports.clone());
            assert_eq!(records.srv_targets_alone(), alone, "{endpoints:?}");
            for filter in [
                PortFilter::All,
                PortFilter::Named("dns", Protocol::Udp),
                PortFilter::Named("dns", Protocol::Tcp),
            ] {
                assert_eq!(
                    listed(&records, filter),
                    reference(&records, filter),
                    "{endpoints:?}"
                );
            }
        }
        let portless = records(&[("10.0.0.2", Some("x"), None)], vec![]);
        assert_eq!(
            listed(&portless, PortFilter::All),
            reference(&portless, PortFilter::All)
        );
        assert_eq!(listed(&portless, PortFilter::All)[0].1, 0);
    }

    #[test]
    fn srv_weights() {
        for (count, weight) in [(1, 100), (3, 33), (7, 14), (100, 1), (250, 1)] {
            assert_eq!(srv_weight(count), weight, "{count}");
        }
    }
}
