//! The zone's own names: the apex (SOA and NS, R8), the SOA every negative answer carries
//! (R9), and PTR records in the reverse zones (R7).
//!
//! Invariant: every name built here is inside the primary zone (`Authority::zones[0]`), and a
//! name that cannot be built (too long) answers NXDOMAIN rather than a wrong name.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{NS, PTR, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::{Authority, Lookup, name_in_zone};
use crate::index::Index;

/// The SOA's refresh, retry and expire, in seconds (R8); the direct path writes the same.
pub(crate) const SOA_TIMERS: [i32; 3] = [7200, 1800, 86400];
/// The nameserver's labels below the primary zone: `ns.dns.<zone>`.
pub(crate) const NAMESERVER_LABELS: [&str; 2] = ["ns", "dns"];
/// The SOA mailbox's label below the primary zone: `hostmaster.<zone>`.
pub(crate) const HOSTMASTER_LABEL: &str = "hostmaster";

impl Authority {
    /// PTR for a reverse name (R7).
    pub(super) fn reverse(
        &self,
        index: &Index,
        address: Option<IpAddr>,
        qname: &Name,
        qtype: RecordType,
    ) -> Lookup {
        let Some(target) = address.and_then(|ip| index.ptr(&ip)) else {
            return Lookup::NxDomain;
        };
        let zone = &self.zones[0];
        let service = &target.service;
        let mut labels = vec![service.name.as_str(), service.namespace.as_str(), "svc"];
        if let Some(label) = &target.label {
            labels.insert(0, label.as_str());
        }
        let Some(name) = name_in_zone(zone, &labels) else {
            return Lookup::NxDomain;
        };
        let ptr = vec![self.record(qname, RData::PTR(PTR(name)))];
        self.typed_as(qname, qtype, RecordType::PTR, ptr)
    }

    /// The zone apex: SOA and NS (R8).
    pub(super) fn apex(
        &self,
        index: &Index,
        zone: &Name,
        qname: &Name,
        qtype: RecordType,
    ) -> Lookup {
        match qtype {
            RecordType::SOA => {
                let mut soa = self.soa(index, zone);
                soa.name = qname.clone();
                Lookup::found(vec![soa])
            }
            RecordType::NS => {
                let ns_name = self.nameserver_name();
                let glue = self.address_records(
                    &ns_name,
                    self.nameserver_addresses.iter(),
                    RecordType::ANY,
                );
                Lookup::found_with(vec![self.record(qname, RData::NS(NS(ns_name)))], glue)
            }
            _ => self.existing(qname, qtype),
        }
    }

    /// The zone's SOA record, with the negative TTL (R8, R9).
    pub fn soa(&self, index: &Index, zone: &Name) -> Record {
        let primary = &self.zones[0];
        let mname = self.nameserver_name();
        let rname = primary
            .prepend_label(HOSTMASTER_LABEL)
            .unwrap_or_else(|_| primary.clone());
        let [refresh, retry, expire] = SOA_TIMERS;
        let soa = SOA::new(
            mname,
            rname,
            index.serial(),
            refresh,
            retry,
            expire,
            self.negative_ttl,
        );
        Record::from_rdata(zone.clone(), self.negative_ttl, RData::SOA(soa))
    }

    pub(super) fn nameserver_name(&self) -> Name {
        let primary = &self.zones[0];
        name_in_zone(primary, &NAMESERVER_LABELS).unwrap_or_else(|| primary.clone())
    }
}
