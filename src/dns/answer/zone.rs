//! A whole zone's records, for a zone transfer (R14): every record a query can get a positive
//! answer for, decided by the same [`find`] as every answer.
//!
//! A transfer asks, for each name the zone can hold, each type that name can answer, and keeps
//! the answer records (never the additional section: glue names are zone names of their own
//! and are listed at their own name). The names are those of the index: per Service its own
//! name, every label of an endpoint (hostname, pod name, dashed address, ready or answering
//! its own name before ready), `seeds`, and `_<port>._<proto>` of every named port; at the
//! apex NS, `ns.dns` and `dns-version`. Names that hold nothing (`svc`, a namespace, `_tcp`)
//! are left for the secondary to infer as empty non-terminals.
//!
//! The zone is listed in parts ([`Authority::zone_part`]): part 0 is the apex, then one part
//! per Service (forward zones) or per [`PTR_PART`] addresses (reverse zones), so a transfer
//! can encode and send each part before building the next, never the whole zone at once. The
//! SOA that opens and closes a transfer is [`Authority::soa_at`] with the snapshot's serial.
//!
//! Invariants: the records come from one [`Snapshot`]; the same snapshot always gives the
//! same records in the same order; a name outside the zone (a longer zone inside it, a name
//! over 255 bytes) is left out.

use std::collections::HashSet;
use std::sync::Arc;

use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use super::Authority;
use super::find::{Finding, find};
use super::records::{Lookup, name_in_zone};
use crate::dns::name::{ForwardName, Parsed, parse};
use crate::index::{
    Changes, Index, PtrTarget, ServiceRecords, Snapshot, SnapshotService, dashed_ip,
};
use crate::model::ServiceKey;
use crate::model::ServiceKind;

/// Addresses per part of a reverse zone.
pub const PTR_PART: usize = 512;

/// A served zone: forward or reverse, by its position in the config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZoneId {
    /// `dns.zones[i]`.
    Forward(usize),
    /// `dns.reverse_zones[i]`.
    Reverse(usize),
}

impl Authority {
    /// The zone whose apex is `name` (lowercase), if it is one we serve.
    pub fn zone_at(&self, name: &Name) -> Option<ZoneId> {
        match parse(name, &self.zones, &self.reverse_zones) {
            Parsed::Forward {
                zone,
                name: ForwardName::Apex,
            } => Some(ZoneId::Forward(zone)),
            Parsed::Reverse {
                zone, apex: true, ..
            } => Some(ZoneId::Reverse(zone)),
            _ => None,
        }
    }

    /// The apex name of `zone`.
    pub fn zone_name(&self, zone: ZoneId) -> &Name {
        match zone {
            ZoneId::Forward(i) => &self.zones[i],
            ZoneId::Reverse(i) => &self.reverse_zones[i],
        }
    }

    /// Part `part` of `zone`'s records from `snapshot` (whose PTR targets must have been
    /// copied for a reverse zone), without the SOA; `None` past the last part. A part may be
    /// empty. `index` is read only for its sync flag and namespaces, which decide no
    /// positive answer.
    pub fn zone_part(
        &self,
        index: &Index,
        snapshot: &Snapshot,
        zone: ZoneId,
        part: usize,
    ) -> Option<Vec<Record>> {
        let mut ask = Asker {
            authority: self,
            index,
            zone,
            records: Vec::new(),
        };
        if part == 0 {
            ask.apex();
            return Some(ask.records);
        }
        match zone {
            ZoneId::Forward(_) => ask.service(snapshot.services.get(part - 1)?),
            ZoneId::Reverse(_) => {
                let start = (part - 1).checked_mul(PTR_PART)?;
                let chunk = snapshot.ptr.get(start..)?;
                if chunk.is_empty() {
                    return None;
                }
                for (ip, target) in chunk.iter().take(PTR_PART) {
                    ask.ptr(*ip, target);
                }
            }
        }
        Some(ask.records)
    }
}

impl Authority {
    /// What changed in `zone` between two states (`changes`, from the index's history): the
    /// records to delete and those to add, each listed as a full transfer of either state
    /// would list it.
    pub fn zone_difference(
        &self,
        index: &Index,
        zone: ZoneId,
        changes: &Changes,
    ) -> (Vec<Record>, Vec<Record>) {
        let ask = |records: Option<&Arc<ServiceRecords>>, key: &ServiceKey| {
            let mut asker = Asker {
                authority: self,
                index,
                zone,
                records: Vec::new(),
            };
            if let Some(records) = records {
                asker.service(&SnapshotService {
                    namespace: key.namespace.as_str().into(),
                    name: key.name.as_str().into(),
                    records: records.clone(),
                });
            }
            asker.records
        };
        let (mut deleted, mut added) = (Vec::new(), Vec::new());
        if let ZoneId::Forward(_) = zone {
            for change in &changes.services {
                let old = ask(change.old.as_ref(), &change.key);
                let new = ask(change.new.as_ref(), &change.key);
                let (gone, came) = difference(old, new);
                deleted.extend(gone);
                added.extend(came);
            }
        } else {
            let ptr = |target: &Option<PtrTarget>, ip| {
                let mut asker = Asker {
                    authority: self,
                    index,
                    zone,
                    records: Vec::new(),
                };
                if let Some(target) = target {
                    asker.ptr(ip, target);
                }
                asker.records
            };
            for (ip, old, new) in &changes.ptr {
                let (gone, came) = difference(ptr(old, *ip), ptr(new, *ip));
                deleted.extend(gone);
                added.extend(came);
            }
        }
        (deleted, added)
    }
}

/// The records of `old` not in `new`, and those of `new` not in `old`, each in its order.
fn difference(old: Vec<Record>, new: Vec<Record>) -> (Vec<Record>, Vec<Record>) {
    let wire = |record: &Record| record.to_bytes().unwrap_or_default();
    let old_set: HashSet<Vec<u8>> = old.iter().map(wire).collect();
    let new_set: HashSet<Vec<u8>> = new.iter().map(wire).collect();
    let gone = old
        .into_iter()
        .filter(|r| !new_set.contains(&wire(r)))
        .collect();
    let came = new
        .into_iter()
        .filter(|r| !old_set.contains(&wire(r)))
        .collect();
    (gone, came)
}

/// Asks [`find`] about names of one zone and keeps the answers.
struct Asker<'a> {
    authority: &'a Authority,
    index: &'a Index,
    zone: ZoneId,
    records: Vec<Record>,
}

impl Asker<'_> {
    fn zone_name(&self) -> &Name {
        self.authority.zone_name(self.zone)
    }

    /// NS at the apex; in a forward zone also `ns.dns` and `dns-version`.
    fn apex(&mut self) {
        let apex = self.zone_name().clone();
        match self.zone {
            ZoneId::Forward(zone) => {
                let at = |name| Parsed::Forward { zone, name };
                self.ask(&apex, at(ForwardName::Apex), None, &[RecordType::NS]);
                let labels = super::NAMESERVER_LABELS;
                if let Some(name) = name_in_zone(&apex, &labels) {
                    let types = [RecordType::A, RecordType::AAAA];
                    self.ask(&name, at(ForwardName::Nameserver), None, &types);
                }
                if let Some(name) = name_in_zone(&apex, &["dns-version"]) {
                    let parsed = at(ForwardName::DnsVersion);
                    self.ask(&name, parsed, None, &[RecordType::TXT]);
                }
            }
            ZoneId::Reverse(zone) => {
                let parsed = Parsed::Reverse {
                    zone,
                    address: None,
                    prefix: None,
                    apex: true,
                };
                self.ask(&apex, parsed, None, &[RecordType::NS]);
            }
        }
    }

    /// Every name of one Service.
    fn service(&mut self, service: &SnapshotService) {
        let ZoneId::Forward(zone) = self.zone else {
            return;
        };
        let (namespace, name) = (&*service.namespace, &*service.name);
        let records = &*service.records;
        let Some(owner) = name_in_zone(self.zone_name(), &[name, namespace, "svc"]) else {
            return;
        };
        let at = |name| Parsed::Forward { zone, name };
        let at_service = at(ForwardName::Service {
            namespace,
            service: name,
        });
        if let ServiceKind::ExternalName(_) = records.kind {
            self.ask(&owner, at_service, Some(records), &[RecordType::CNAME]);
            return;
        }
        let types = [
            RecordType::A,
            RecordType::AAAA,
            RecordType::SRV,
            RecordType::TXT,
        ];
        self.ask(&owner, at_service, Some(records), &types);
        for label in labels_of(records) {
            let Ok(labelled) = owner.prepend_label(label.as_str()) else {
                continue;
            };
            let endpoint = ForwardName::Endpoint {
                namespace,
                service: name,
                label: &label,
            };
            let parsed = Parsed::Forward {
                zone,
                name: endpoint,
            };
            let types = [RecordType::A, RecordType::AAAA, RecordType::SRV];
            self.ask(&labelled, parsed, Some(records), &types);
        }
        for (port, protocol) in named_ports(records) {
            let labels = [format!("_{port}"), format!("_{protocol}")];
            let Ok(port_name) = Name::from_labels(labels.iter().map(String::as_bytes))
                .and_then(|relative| relative.append_domain(&owner))
            else {
                continue;
            };
            let port_name_parsed = ForwardName::Port {
                namespace,
                service: name,
                port: &port,
                protocol,
            };
            let parsed = Parsed::Forward {
                zone,
                name: port_name_parsed,
            };
            self.ask(&port_name, parsed, Some(records), &[RecordType::SRV]);
        }
    }

    /// The PTR record of one address, when its name falls in this zone (not in a longer
    /// reverse zone inside it).
    fn ptr(&mut self, ip: std::net::IpAddr, target: &PtrTarget) {
        let name = Name::from(ip).to_lowercase();
        let authority = self.authority;
        match parse(&name, &authority.zones, &authority.reverse_zones) {
            Parsed::Reverse { zone, .. } if ZoneId::Reverse(zone) == self.zone => {}
            _ => return,
        }
        let zone = self.zone_name().clone();
        let finding = Finding::Ptr(target.clone());
        self.keep(&zone, &name, RecordType::PTR, finding);
    }

    /// Asks `find` about `name` (parsed as `parsed`) for each of `types`, keeping answers.
    fn ask(
        &mut self,
        name: &Name,
        parsed: Parsed<'_>,
        records: Option<&ServiceRecords>,
        types: &[RecordType],
    ) {
        let authority = self.authority;
        let zone = self.zone_name().clone();
        for &qtype in types {
            let finding = find(authority, self.index, &parsed, records, qtype);
            self.keep(&zone, name, qtype, finding);
        }
    }

    /// Keeps the answer records of a positive finding.
    fn keep(&mut self, zone: &Name, name: &Name, qtype: RecordType, finding: Finding<'_>) {
        let positive = !matches!(
            finding,
            Finding::NoData
                | Finding::NxDomain
                | Finding::ServFail
                | Finding::Refused
                | Finding::Minimal
                | Finding::Soa
        );
        if !positive {
            return;
        }
        let lookup = self
            .authority
            .records(self.index, zone, name, qtype, finding);
        if let Lookup::Found { answers, .. } = lookup {
            self.records.extend(answers);
        }
    }
}

/// Every label that may name endpoints of `records` (ready, or answering their own names):
/// hostnames, pod names, dashed addresses, and `seeds`; sorted, each once.
fn labels_of(records: &ServiceRecords) -> Vec<String> {
    let mut labels = Vec::new();
    for records in std::iter::once(records).chain(records.own_names.as_deref()) {
        for endpoint in &records.endpoints {
            if let Some(hostname) = endpoint.hostname() {
                labels.push(hostname.as_str().to_owned());
            }
            labels.push(dashed_ip(&endpoint.ip));
        }
        labels.extend(records.pod_names.iter().map(|(name, _)| name.to_string()));
    }
    if records.seeds.is_some() {
        labels.push(super::SEEDS_LABEL.to_owned());
    }
    for label in &mut labels {
        label.make_ascii_lowercase();
    }
    labels.sort_unstable();
    labels.dedup();
    labels
}

/// Every named (port, protocol label) of `records`, from its endpoints and its own ports;
/// sorted, each once.
fn named_ports(records: &ServiceRecords) -> Vec<(String, &'static str)> {
    // Endpoints of one slice share its ports: look at each list once.
    let mut lists: Vec<&std::sync::Arc<[crate::model::Port]>> = Vec::new();
    for endpoint in &records.endpoints {
        if !lists
            .last()
            .is_some_and(|last| std::sync::Arc::ptr_eq(last, &endpoint.ports))
        {
            lists.push(&endpoint.ports);
        }
    }
    let endpoint_ports = lists.into_iter().flat_map(|ports| ports.iter());
    let mut ports: Vec<(String, &'static str)> = endpoint_ports
        .chain(records.service_ports.iter())
        .filter_map(|port| Some((port.name.clone()?, port.protocol.label())))
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}
