//! The answer rules (DESIGN.md R1-R13) as pure functions of the index and one question.
//!
//! [`Authority::answer`] turns (name, type) into an [`Answer`]: an rcode and three record
//! sections. It knows nothing of the wire: EDNS, truncation and the header are
//! [`super::message`]'s business. Each rule reads one Service's published records, never a scan
//! of the index.
//!
//! Invariants:
//! - a name outside every zone is REFUSED and not authoritative (R10);
//! - every negative answer (NXDOMAIN or NODATA) carries the zone's SOA in authority, with the
//!   negative TTL (R9), and becomes SERVFAIL while the index is not synced (R11);
//! - an ExternalName chain is followed at most [`MAX_CNAME_CHAIN`] links, loop-safe (R6).

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, HINFO, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

mod srv;
mod zone;

use super::name::{ForwardName, Parsed, parse};
use crate::index::{Index, ServiceRecords};
use crate::model::{Protocol, ServiceKind};
use srv::has_protocol;
pub(crate) use srv::{PortFilter, SrvEntry, srv_entries};
pub(crate) use zone::{HOSTMASTER_LABEL, NAMESERVER_LABELS, SOA_TIMERS};

/// Longest ExternalName chain followed inside the answer.
pub const MAX_CNAME_CHAIN: usize = 8;

/// The schema version served at `dns-version.<zone>` (R8).
pub const SCHEMA_VERSION: &str = "1.1.0";

/// A computed answer, before encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: ResponseCode,
    /// Whether the AA bit is set (inside our zones).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of negative answers, the NS at the apex).
    pub authority: Vec<Record>,
    /// Additional section (SRV targets' and NS glue addresses).
    pub additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Self {
            rcode: ResponseCode::Refused,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additional: Vec::new(),
        }
    }
}

/// Settings the rules need, built once from the config.
#[derive(Clone, Debug)]
pub struct Authority {
    /// Forward zones, lowercase FQDNs.
    pub zones: Vec<Name>,
    /// Reverse zones, lowercase FQDNs.
    pub reverse_zones: Vec<Name>,
    /// TTL of positive records.
    pub positive_ttl: u32,
    /// TTL (and SOA minimum) of negative answers.
    pub negative_ttl: u32,
    /// Glue addresses of `ns.dns.<zone>`.
    pub nameserver_addresses: Vec<IpAddr>,
}

/// What a name holds for the asked type, before the negative-answer rules apply.
enum Lookup {
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
    /// Answers one question. Records are owned by the lowercased name: the question section
    /// alone echoes the client's case, so an answer depends on the case of nothing but the
    /// question (which lets the fast path replay it exactly).
    pub fn answer(&self, index: &Index, qname: &Name, qtype: RecordType) -> Answer {
        let lower = qname.to_lowercase();
        let qname = &lower;
        match parse(&lower, &self.zones, &self.reverse_zones) {
            Parsed::Outside => Answer::refused(),
            _ if matches!(qtype, RecordType::AXFR | RecordType::IXFR) => Answer::refused(),
            Parsed::Forward { zone, name } => {
                let lookup = self.forward(index, zone, qname, name, qtype);
                self.finish(index, &self.zones[zone], lookup, qname, qtype, 0)
            }
            Parsed::Reverse {
                zone,
                address,
                apex,
            } => {
                let zone_name = &self.reverse_zones[zone];
                let lookup = if apex {
                    self.apex(index, zone_name, qname, qtype)
                } else {
                    self.reverse(index, address, qname, qtype)
                };
                self.finish(index, zone_name, lookup, qname, qtype, 0)
            }
        }
    }

    /// Turns a lookup into an answer: negative rules, SERVFAIL before sync, CNAME chasing.
    fn finish(
        &self,
        index: &Index,
        zone: &Name,
        lookup: Lookup,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let (rcode, answers, additional) = match lookup {
            Lookup::Found {
                answers,
                additional,
            } => (ResponseCode::NoError, answers, additional),
            Lookup::NoData => (ResponseCode::NoError, Vec::new(), Vec::new()),
            Lookup::NxDomain => (ResponseCode::NXDomain, Vec::new(), Vec::new()),
        };
        if answers.is_empty() && !index.is_synced() {
            let mut answer = Answer::refused();
            answer.rcode = ResponseCode::ServFail;
            answer.authoritative = true;
            return answer;
        }
        let mut answer = Answer {
            rcode,
            authoritative: true,
            answers,
            authority: Vec::new(),
            additional,
        };
        if answer.answers.is_empty() {
            answer.authority.push(self.soa(index, zone));
            return answer;
        }
        self.chase_cname(index, &mut answer, qname, qtype, depth);
        answer
    }

    /// Follows an in-zone CNAME target (R6), appending its answer.
    fn chase_cname(
        &self,
        index: &Index,
        answer: &mut Answer,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) {
        let Some(RData::CNAME(CNAME(target))) = answer.answers.last().map(|r| &r.data) else {
            return;
        };
        if matches!(qtype, RecordType::CNAME | RecordType::ANY) || depth + 1 >= MAX_CNAME_CHAIN {
            return;
        }
        let seen = answer.answers.iter().any(|r| r.name.eq_case(target))
            || qname.to_lowercase() == target.to_lowercase();
        if seen {
            return;
        }
        let target = target.clone();
        let next = self.answer_at_depth(index, &target, qtype, depth + 1);
        if next.rcode == ResponseCode::Refused {
            return; // out of our zones: the client resolves the target itself
        }
        answer.rcode = next.rcode;
        answer.answers.extend(next.answers);
        answer.authority = next.authority;
        answer.additional.extend(next.additional);
    }

    fn answer_at_depth(
        &self,
        index: &Index,
        qname: &Name,
        qtype: RecordType,
        depth: usize,
    ) -> Answer {
        let lower = qname.to_lowercase();
        match parse(&lower, &self.zones, &self.reverse_zones) {
            Parsed::Forward { zone, name } => {
                let lookup = self.forward(index, zone, qname, name, qtype);
                self.finish(index, &self.zones[zone], lookup, qname, qtype, depth)
            }
            _ => Answer::refused(),
        }
    }

    fn forward(
        &self,
        index: &Index,
        zone: usize,
        qname: &Name,
        name: ForwardName<'_>,
        qtype: RecordType,
    ) -> Lookup {
        let zone_name = &self.zones[zone];
        match name {
            ForwardName::Apex => self.apex(index, zone_name, qname, qtype),
            ForwardName::DnsVersion => match qtype {
                RecordType::TXT => Lookup::found(vec![self.record(
                    qname,
                    RData::TXT(TXT::new(vec![SCHEMA_VERSION.to_string()])),
                )]),
                _ => self.existing(qname, qtype),
            },
            ForwardName::DnsNode | ForwardName::SvcNode => self.existing(qname, qtype),
            ForwardName::Nameserver => {
                let glue = self.address_records(qname, self.nameserver_addresses.iter(), qtype);
                self.typed(qname, qtype, glue)
            }
            ForwardName::Namespace(namespace) if index.namespace_exists(namespace) => {
                self.existing(qname, qtype)
            }
            ForwardName::Namespace(_) | ForwardName::Nonexistent => Lookup::NxDomain,
            ForwardName::Service { namespace, service } => {
                match index.service(namespace, service) {
                    Some(records) => {
                        self.service(zone_name, qname, namespace, service, &records, qtype)
                    }
                    None => Lookup::NxDomain,
                }
            }
            ForwardName::Endpoint {
                namespace,
                service,
                label,
            } => match index.service(namespace, service) {
                Some(records) if !is_external(&records) => {
                    let ips = records.endpoints_labelled(label).map(|e| &e.ip);
                    let found = self.address_records(qname, ips, qtype);
                    if records.endpoints_labelled(label).next().is_none() {
                        Lookup::NxDomain
                    } else {
                        self.typed(qname, qtype, found)
                    }
                }
                _ => Lookup::NxDomain,
            },
            ForwardName::ProtocolNode {
                namespace,
                service,
                protocol,
            } => match index.service(namespace, service) {
                Some(records) if has_protocol(&records, protocol) => self.existing(qname, qtype),
                _ => Lookup::NxDomain,
            },
            ForwardName::Port {
                namespace,
                service,
                port,
                protocol,
            } => match (
                index.service(namespace, service),
                Protocol::from_label(protocol),
            ) {
                (Some(records), Some(protocol)) if !is_external(&records) => {
                    let filter = PortFilter::Named(port, protocol);
                    let (srv, glue) =
                        self.srv(zone_name, namespace, service, &records, filter, qname);
                    if srv.is_empty() {
                        Lookup::NxDomain
                    } else if matches!(qtype, RecordType::SRV) {
                        Lookup::found_with(srv, glue)
                    } else {
                        self.existing(qname, qtype)
                    }
                }
                _ => Lookup::NxDomain,
            },
        }
    }

    /// `<svc>.<ns>.svc.<zone>`: R1 (headless), R4 (SRV), R5 (ClusterIP), R6 (ExternalName).
    fn service(
        &self,
        zone: &Name,
        qname: &Name,
        namespace: &str,
        service: &str,
        records: &ServiceRecords,
        qtype: RecordType,
    ) -> Lookup {
        let addresses: Vec<Record> = match &records.kind {
            ServiceKind::ExternalName(target) => {
                return match Name::from_ascii(format!("{target}.")) {
                    Ok(target) => {
                        Lookup::found(vec![self.record(qname, RData::CNAME(CNAME(target)))])
                    }
                    Err(_) => Lookup::NxDomain,
                };
            }
            ServiceKind::Headless if records.endpoints.is_empty() => return Lookup::NxDomain,
            ServiceKind::Headless => {
                self.address_records(qname, records.endpoints.iter().map(|e| &e.ip), qtype)
            }
            ServiceKind::ClusterIp(ips) => self.address_records(qname, ips.iter(), qtype),
        };
        if matches!(qtype, RecordType::SRV) {
            let (srv, glue) = self.srv(zone, namespace, service, records, PortFilter::All, qname);
            return Lookup::found_with(srv, glue);
        }
        self.typed(qname, qtype, addresses)
    }

    /// A name that exists: ANY gets the RFC 8482 answer, every other type NODATA (R13).
    fn existing(&self, qname: &Name, qtype: RecordType) -> Lookup {
        if matches!(qtype, RecordType::ANY) {
            let hinfo = HINFO::new("RFC8482".to_string(), String::new());
            return Lookup::found(vec![self.record(qname, RData::HINFO(hinfo))]);
        }
        Lookup::NoData
    }

    /// Records of an existing name's natural type: served for that type, ANY minimal, else NODATA.
    fn typed(&self, qname: &Name, qtype: RecordType, records: Vec<Record>) -> Lookup {
        match qtype {
            RecordType::A | RecordType::AAAA => Lookup::found(records),
            _ => self.existing(qname, qtype),
        }
    }

    fn typed_as(
        &self,
        qname: &Name,
        qtype: RecordType,
        natural: RecordType,
        records: Vec<Record>,
    ) -> Lookup {
        if qtype == natural {
            Lookup::found(records)
        } else {
            self.existing(qname, qtype)
        }
    }

    /// A/AAAA records at `owner` for the addresses of the asked family (both for ANY).
    fn address_records<'i>(
        &self,
        owner: &Name,
        ips: impl Iterator<Item = &'i IpAddr>,
        qtype: RecordType,
    ) -> Vec<Record> {
        ips.filter_map(|ip| match (ip, qtype) {
            (IpAddr::V4(v4), RecordType::A | RecordType::ANY) => Some(RData::A(A(*v4))),
            (IpAddr::V6(v6), RecordType::AAAA | RecordType::ANY) => Some(RData::AAAA(AAAA(*v6))),
            _ => None,
        })
        .map(|rdata| self.record(owner, rdata))
        .collect()
    }

    fn record(&self, owner: &Name, rdata: RData) -> Record {
        Record::from_rdata(owner.clone(), self.positive_ttl, rdata)
    }
}

/// Whether the Service is an ExternalName (answered by CNAME, never by the direct path).
pub(crate) fn is_external(records: &ServiceRecords) -> bool {
    matches!(records.kind, ServiceKind::ExternalName(_))
}

/// `labels...` followed by `zone`, or `None` if the result is not a valid name.
fn name_in_zone(zone: &Name, labels: &[&str]) -> Option<Name> {
    let relative = Name::from_labels(labels.iter().map(|l| l.as_bytes())).ok()?;
    relative.append_domain(zone).ok()
}
