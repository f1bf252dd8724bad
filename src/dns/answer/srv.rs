//! SRV answers (R3, R4): which (target, port) pairs a Service lists, their weight, and the
//! targets' addresses for the additional section.
//!
//! Invariants: records are sorted by (target label, port) and deduplicated, so a dual-stack
//! peer known by its hostname is one target; each target's addresses are glued once.

use std::net::IpAddr;

use hickory_proto::rr::rdata::SRV;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Authority, name_in_zone};
use crate::index::{ServiceRecords, srv_weight};
use crate::model::{Port, Protocol, ServiceKind};

impl Authority {
    /// SRV records for a Service (R3, R4) and their targets' addresses.
    pub(super) fn srv(
        &self,
        zone: &Name,
        namespace: &str,
        service: &str,
        records: &ServiceRecords,
        filter: PortFilter<'_>,
        qname: &Name,
    ) -> (Vec<Record>, Vec<Record>) {
        let Some(service_name) = name_in_zone(zone, &[service, namespace, "svc"]) else {
            return (Vec::new(), Vec::new());
        };
        let entries = srv_entries(records, filter);
        let weight = srv_weight(entries.len());
        let mut answers = Vec::with_capacity(entries.len());
        let mut additional = Vec::new();
        let mut previous_label: Option<Option<&str>> = None;
        for (label, port) in &entries {
            let target = match label {
                Some(label) => service_name.prepend_label(*label).ok(),
                None => Some(service_name.clone()),
            };
            let Some(target) = target else { continue };
            // Entries are sorted, so one target's records are adjacent: glue each target once.
            if previous_label != Some(*label) {
                previous_label = Some(*label);
                let ips: Vec<&IpAddr> = match (label, &records.kind) {
                    (Some(label), _) => records.endpoints_labelled(label).map(|e| &e.ip).collect(),
                    (None, ServiceKind::ClusterIp(ips)) => ips.iter().collect(),
                    (None, _) => Vec::new(),
                };
                additional.extend(self.address_records(&target, ips.into_iter(), RecordType::ANY));
            }
            let rdata = RData::SRV(SRV::new(0, weight, *port, target));
            answers.push(self.record(qname, rdata));
        }
        (answers, additional)
    }
}

/// The (target label, port) pairs an SRV answer lists, sorted by label then port and
/// deduplicated; a `None` label stands for the Service's own name (a ClusterIP Service).
pub(crate) fn srv_entries<'r>(
    records: &'r ServiceRecords,
    filter: PortFilter<'_>,
) -> Vec<(Option<&'r str>, u16)> {
    let mut entries: Vec<(Option<&str>, u16)> = Vec::new();
    match &records.kind {
        ServiceKind::Headless => {
            for endpoint in &records.endpoints {
                let label = Some(&*endpoint.srv_label);
                if endpoint.ports.is_empty() && matches!(filter, PortFilter::All) {
                    entries.push((label, 0));
                }
                for port in endpoint.ports.iter().filter(|p| filter.matches(p)) {
                    entries.push((label, port.port));
                }
            }
        }
        ServiceKind::ClusterIp(_) => {
            for port in records.service_ports.iter().filter(|p| filter.matches(p)) {
                entries.push((None, port.port));
            }
        }
        ServiceKind::ExternalName(_) => {}
    }
    entries.sort_unstable();
    entries.dedup();
    entries
}

/// Which ports an SRV answer lists.
#[derive(Clone, Copy)]
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
