//! The general path's records: a [`Finding`] turned into hickory records, and the zone's own
//! records (SOA, NS, their names).
//!
//! Nothing here decides what a question finds; it writes what [`super::find`] found. Records
//! are owned by the lowercased question name, with the positive TTL; the SOA has the negative
//! TTL (R9).
//!
//! Invariant: a name that cannot be built (longer than 255 bytes with the zone) is left out;
//! a finding whose every record was left out answers as if it had none (NODATA, or NXDOMAIN
//! for an SRV name that only exists through its records).

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::find::Finding;
use super::srv::{PortFilter, SrvEntry, srv_entries, srv_weight};
use super::{Authority, HOSTMASTER_LABEL, NAMESERVER_LABELS, SCHEMA_VERSION, SOA_TIMERS};
use crate::index::{Index, PtrTarget, ServiceRecords};
use crate::model::ServiceKind;

/// What a name holds for the asked type, as records, before the negative-answer rules apply.
pub(super) enum Lookup {
    Found {
        answers: Vec<Record>,
        additional: Vec<Record>,
    },
    NoData,
    NxDomain,
}

impl Lookup {
    fn found(answers: Vec<Record>) -> Self {
        Self::found_with(answers, Vec::new())
    }

    fn found_with(answers: Vec<Record>, additional: Vec<Record>) -> Self {
        if answers.is_empty() {
            Lookup::NoData
        } else {
            Lookup::Found {
                answers,
                additional,
            }
        }
    }
}

impl Authority {
    /// The records of a positive or negative finding at `qname` (lowercase) in `zone`;
    /// `ServFail` and `Refused` have none and are the caller's.
    pub(super) fn records(
        &self,
        index: &Index,
        zone: &Name,
        qname: &Name,
        qtype: RecordType,
        finding: Finding<'_>,
    ) -> Lookup {
        match finding {
            Finding::Addresses(listed) => {
                Lookup::found(self.address_records(qname, listed.of_type(qtype)))
            }
            Finding::Srv {
                records,
                filter,
                service,
                namespace,
            } => {
                let (srv, glue) = self.srv(zone, namespace, service, records, filter, qname);
                match (srv.is_empty(), filter) {
                    (true, PortFilter::Named(..)) => Lookup::NxDomain,
                    _ => Lookup::found_with(srv, glue),
                }
            }
            Finding::Cname(target) => match Name::from_ascii(format!("{target}.")) {
                Ok(target) => Lookup::found(vec![self.record(qname, RData::CNAME(CNAME(target)))]),
                Err(_) => Lookup::NxDomain,
            },
            Finding::Txt(strings) => {
                let strings = strings.iter().map(|s| s.to_string()).collect();
                Lookup::found(vec![self.record(qname, RData::TXT(TXT::new(strings)))])
            }
            Finding::SchemaVersion => {
                let txt = TXT::new(vec![SCHEMA_VERSION.to_string()]);
                Lookup::found(vec![self.record(qname, RData::TXT(txt))])
            }
            Finding::Soa => {
                let mut soa = self.soa(index, zone);
                soa.name = qname.clone();
                Lookup::found(vec![soa])
            }
            Finding::Ns => {
                let ns_name = self.nameserver_name();
                let glue =
                    self.address_records(&ns_name, self.nameserver_addresses.iter().copied());
                Lookup::found_with(vec![self.record(qname, RData::NS(NS(ns_name)))], glue)
            }
            Finding::Ptr(target) => match self.ptr_name(&target) {
                Some(name) => Lookup::found(vec![self.record(qname, RData::PTR(PTR(name)))]),
                None => Lookup::NxDomain,
            },
            Finding::Minimal => {
                let hinfo = HINFO::new("RFC8482".to_string(), String::new());
                Lookup::found(vec![self.record(qname, RData::HINFO(hinfo))])
            }
            Finding::NoData | Finding::ServFail | Finding::Refused => Lookup::NoData,
            Finding::NxDomain => Lookup::NxDomain,
        }
    }

    /// SRV records for a Service (R3, R4) and their targets' addresses.
    fn srv(
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
        let mut previous: Option<&SrvEntry<'_>> = None;
        for entry in &entries {
            let target = match entry.label {
                Some(label) => service_name.prepend_label(label.as_str()).ok(),
                None => Some(service_name.clone()),
            };
            let Some(target) = target else { continue };
            // Entries are sorted, so one target's records are adjacent: glue each target once.
            if !previous.is_some_and(|p| p.same_target(entry)) {
                previous = Some(entry);
                let ips: Vec<IpAddr> = match (entry.label, &records.kind) {
                    (Some(_), _) => entry.target_endpoints(records).map(|e| e.ip).collect(),
                    (None, ServiceKind::ClusterIp(ips)) => ips.clone(),
                    (None, _) => Vec::new(),
                };
                additional.extend(self.address_records(&target, ips.into_iter()));
            }
            let rdata = RData::SRV(SRV::new(0, weight, entry.port, target));
            answers.push(self.record(qname, rdata));
        }
        (answers, additional)
    }

    /// A/AAAA records at `owner`, one per address, in order.
    fn address_records(&self, owner: &Name, ips: impl Iterator<Item = IpAddr>) -> Vec<Record> {
        ips.map(|ip| match ip {
            IpAddr::V4(v4) => RData::A(A(v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
        })
        .map(|rdata| self.record(owner, rdata))
        .collect()
    }

    fn record(&self, owner: &Name, rdata: RData) -> Record {
        Record::from_rdata(owner.clone(), self.positive_ttl, rdata)
    }

    /// The name a PTR record points at (R7): `[<label>.]<svc>.<ns>.svc.<primary zone>`.
    fn ptr_name(&self, target: &PtrTarget) -> Option<Name> {
        let service = &target.service;
        let mut labels = vec![service.name.as_str(), service.namespace.as_str(), "svc"];
        if let Some(label) = &target.label {
            labels.insert(0, label.as_str());
        }
        name_in_zone(&self.zones[0], &labels)
    }

    /// The zone's SOA record, with the negative TTL (R8, R9).
    pub fn soa(&self, index: &Index, zone: &Name) -> Record {
        self.soa_at(zone, index.serial())
    }

    /// The zone's SOA record with `serial` (a transfer's snapshot's).
    pub fn soa_at(&self, zone: &Name, serial: u32) -> Record {
        let primary = &self.zones[0];
        let mname = self.nameserver_name();
        let rname = primary
            .prepend_label(HOSTMASTER_LABEL)
            .unwrap_or_else(|_| primary.clone());
        let [refresh, retry, expire] = SOA_TIMERS;
        let soa = SOA::new(
            mname,
            rname,
            serial,
            refresh,
            retry,
            expire,
            self.negative_ttl,
        );
        Record::from_rdata(zone.clone(), self.negative_ttl, RData::SOA(soa))
    }

    fn nameserver_name(&self) -> Name {
        let primary = &self.zones[0];
        name_in_zone(primary, &NAMESERVER_LABELS).unwrap_or_else(|| primary.clone())
    }
}

/// `labels...` followed by `zone`, or `None` if the result is not a valid name.
pub(super) fn name_in_zone(zone: &Name, labels: &[&str]) -> Option<Name> {
    let relative = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    relative.append_domain(zone).ok()
}
