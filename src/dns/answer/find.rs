//! The one decision of every answer: what a question finds in the index (R1-R11, R13).
//!
//! [`find`] takes a parsed question name ([`Parsed`]), the asked type, and the records of the
//! Service the name is at or below (looked up by the caller, so a batch can look many up
//! before deciding any), and returns a [`Finding`]: which records answer, or NXDOMAIN, NODATA,
//! SERVFAIL before sync, REFUSED. It borrows and allocates nothing. Both answer paths start
//! here: the general path turns a finding into hickory records (`records.rs`), the direct UDP
//! path writes it as bytes (`direct/`); neither decides anything a finding does not say.
//!
//! Invariants:
//! - a positive finding always has at least one record of the asked type (an SRV finding at
//!   least one entry, an address finding at least one address of the family);
//! - a negative finding (NXDOMAIN or NODATA) becomes [`Finding::ServFail`] while the index is
//!   not synced (R11); REFUSED (outside the zones, zone transfers) does not;
//! - what a name finds depends on its Service's published records, the index's namespaces,
//!   PTR claims and sync flag, and the settings; never on the question's case.
//!
//! A zone transfer would walk the names a zone holds and ask each the same way.

use std::net::IpAddr;

use hickory_proto::rr::RecordType;

use super::Authority;
use super::srv::{PortFilter, has_protocol, srv_entries_exist};
use crate::dns::name::{ForwardName, Parsed};
use crate::index::{Index, PtrTarget, ReadyEndpoint, ServiceRecords};
use crate::model::{Protocol, ServiceKind};

/// What a question finds.
#[derive(Clone, Debug)]
pub enum Finding<'r> {
    /// A/AAAA at the question name: the addresses of the asked family (both for ANY is never
    /// asked here: ANY finds [`Finding::Minimal`]), in order.
    Addresses(Addresses<'r>),
    /// SRV at the question name (R3, R4): the entries `srv_entries(records, filter)` lists,
    /// their targets' addresses as glue. `service` and `namespace` name the targets' parent.
    Srv {
        /// The Service's records.
        records: &'r ServiceRecords,
        /// Which ports.
        filter: PortFilter<'r>,
        /// The Service's name.
        service: &'r str,
        /// Its namespace.
        namespace: &'r str,
    },
    /// A CNAME to an ExternalName Service's target (R6); the general path follows an in-zone
    /// target.
    Cname(&'r str),
    /// TXT at `dns-version.<zone>`: the schema version (R8).
    SchemaVersion,
    /// TXT at a Service's name: its `peerdns.io/txt` strings (R15).
    Txt(&'r [Box<str>]),
    /// The zone's SOA at its apex (R8).
    Soa,
    /// The zone's NS at its apex, its addresses as glue (R8).
    Ns,
    /// PTR at a reverse name (R7).
    Ptr(PtrTarget),
    /// ANY at an existing name: the minimal answer of RFC 8482 (R13).
    Minimal,
    /// The name exists without the asked type (R9).
    NoData,
    /// The name does not exist (R9).
    NxDomain,
    /// A negative answer before the first complete state (R11).
    ServFail,
    /// Outside every served zone, or a zone transfer (R10, R13).
    Refused,
}

/// The addresses an address finding lists, before the family filter.
#[derive(Clone, Copy, Debug)]
pub enum Addresses<'r> {
    /// The ready endpoints a label names (R2).
    Labelled(&'r ServiceRecords, &'r str),
    /// Every ready endpoint of a headless Service (R1).
    Ready(&'r [ReadyEndpoint]),
    /// A ClusterIP Service's addresses (R5).
    ClusterIps(&'r [IpAddr]),
    /// The nameserver's configured addresses (`ns.dns.<zone>`, R8).
    Nameserver(&'r [IpAddr]),
}

impl<'r> Addresses<'r> {
    /// Every address, in order, of any family.
    pub fn all(self) -> impl Iterator<Item = IpAddr> + 'r {
        let (labelled, ready, listed) = match self {
            Addresses::Labelled(records, label) => {
                (Some(records.endpoints_labelled(label)), None, None)
            }
            Addresses::Ready(endpoints) => (None, Some(endpoints.iter()), None),
            Addresses::ClusterIps(ips) | Addresses::Nameserver(ips) => {
                (None, None, Some(ips.iter()))
            }
        };
        let endpoints = labelled
            .into_iter()
            .flatten()
            .chain(ready.into_iter().flatten());
        endpoints
            .map(|e| e.ip)
            .chain(listed.into_iter().flatten().copied())
    }

    /// The addresses of the family `qtype` asks for (A: IPv4, AAAA: IPv6), in order.
    pub fn of_type(self, qtype: RecordType) -> impl Iterator<Item = IpAddr> + 'r {
        self.all().filter(move |ip| family_matches(ip, qtype))
    }
}

/// Whether `ip` answers `qtype` (A for IPv4, AAAA for IPv6).
pub fn family_matches(ip: &IpAddr, qtype: RecordType) -> bool {
    match ip {
        IpAddr::V4(_) => qtype == RecordType::A,
        IpAddr::V6(_) => qtype == RecordType::AAAA,
    }
}

/// The (namespace, Service) a forward name is at or below, when it names one: the records
/// [`find`] needs for it.
pub fn service_of<'a>(parsed: &Parsed<'a>) -> Option<(&'a str, &'a str)> {
    let Parsed::Forward { name, .. } = parsed else {
        return None;
    };
    match *name {
        ForwardName::Service { namespace, service }
        | ForwardName::Endpoint {
            namespace, service, ..
        }
        | ForwardName::ProtocolNode {
            namespace, service, ..
        }
        | ForwardName::Port {
            namespace, service, ..
        } => Some((namespace, service)),
        _ => None,
    }
}

/// What `parsed` finds for `qtype`. `records` are the published records of the Service named
/// by [`service_of`] (`None`: no such Service, or the name names none).
pub fn find<'r>(
    authority: &'r Authority,
    index: &Index,
    parsed: &Parsed<'r>,
    records: Option<&'r ServiceRecords>,
    qtype: RecordType,
) -> Finding<'r> {
    if matches!(parsed, Parsed::Outside) || matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
        return Finding::Refused;
    }
    let finding = match *parsed {
        Parsed::Forward { name, .. } => forward(authority, index, name, records, qtype),
        Parsed::Reverse { apex: true, .. } => apex(qtype),
        Parsed::Reverse {
            address: Some(ip), ..
        } => match index.ptr(&ip) {
            Some(target) => typed(qtype, RecordType::PTR, Finding::Ptr(target)),
            None => Finding::NxDomain,
        },
        // A partial reverse name exists when an address below it is claimed (an empty
        // non-terminal, as in a transferred zone).
        Parsed::Reverse {
            prefix: Some(network),
            ..
        } if index.claims_within(&network) => existing(qtype),
        Parsed::Reverse { .. } => Finding::NxDomain,
        Parsed::Outside => Finding::Refused,
    };
    match finding {
        Finding::NoData | Finding::NxDomain if !index.is_synced() => Finding::ServFail,
        finding => finding,
    }
}

fn forward<'r>(
    authority: &'r Authority,
    index: &Index,
    name: ForwardName<'r>,
    records: Option<&'r ServiceRecords>,
    qtype: RecordType,
) -> Finding<'r> {
    let below_service = records.filter(|r| !matches!(r.kind, ServiceKind::ExternalName(_)));
    match name {
        ForwardName::Apex => apex(qtype),
        ForwardName::DnsVersion => typed(qtype, RecordType::TXT, Finding::SchemaVersion),
        ForwardName::DnsNode | ForwardName::SvcNode => existing(qtype),
        ForwardName::Nameserver => addresses(
            qtype,
            Addresses::Nameserver(&authority.nameserver_addresses),
        ),
        ForwardName::Namespace(namespace) if index.namespace_exists(namespace) => existing(qtype),
        ForwardName::Namespace(_) | ForwardName::Nonexistent => Finding::NxDomain,
        ForwardName::Service { namespace, service } => match records {
            Some(records) => at_service(records, namespace, service, qtype),
            None => Finding::NxDomain,
        },
        ForwardName::Endpoint {
            namespace,
            service,
            label,
        } => match below_service {
            Some(records) if label == SEEDS_LABEL && records.seeds.is_some() => {
                match records.seeds.as_deref() {
                    Some(seeds) if !seeds.endpoints.is_empty() => {
                        at_service(seeds, namespace, service, qtype)
                    }
                    _ => Finding::NxDomain,
                }
            }
            Some(records) if records.endpoints_labelled(label).next().is_some() => {
                addresses(qtype, Addresses::Labelled(records, label))
            }
            _ => Finding::NxDomain,
        },
        ForwardName::ProtocolNode { protocol, .. } => match records {
            Some(records) if has_protocol(records, protocol) => existing(qtype),
            _ => Finding::NxDomain,
        },
        ForwardName::Port {
            namespace,
            service,
            port,
            protocol,
        } => match (below_service, Protocol::from_label(protocol)) {
            (Some(records), Some(protocol)) => {
                let filter = PortFilter::Named(port, protocol);
                if !srv_entries_exist(records, filter) {
                    Finding::NxDomain
                } else if qtype == RecordType::SRV {
                    Finding::Srv {
                        records,
                        filter,
                        service,
                        namespace,
                    }
                } else {
                    existing(qtype)
                }
            }
            _ => Finding::NxDomain,
        },
    }
}

/// The label of `seeds.<svc>.<ns>.svc.<zone>` (R15), reserved in a Service that asks for
/// seeds: a pod named `seeds` is then found by its address label only.
pub const SEEDS_LABEL: &str = "seeds";

/// `<svc>.<ns>.svc.<zone>`: R1 (headless), R4 (SRV), R5 (ClusterIP), R6 (ExternalName), and
/// its TXT (R15); also `seeds.<svc>...`, over the seeds' records.
fn at_service<'r>(
    records: &'r ServiceRecords,
    namespace: &'r str,
    service: &'r str,
    qtype: RecordType,
) -> Finding<'r> {
    let listed = match &records.kind {
        ServiceKind::ExternalName(target) => return Finding::Cname(target),
        // No ready endpoint: NXDOMAIN (R1), unless names below it exist (own names, seeds:
        // R15), which make it an empty non-terminal, as it is in a transferred zone.
        ServiceKind::Headless if records.endpoints.is_empty() => {
            return match records.has_names_below() {
                true => existing(qtype),
                false => Finding::NxDomain,
            };
        }
        ServiceKind::Headless => Addresses::Ready(&records.endpoints),
        ServiceKind::ClusterIp(ips) => Addresses::ClusterIps(ips),
    };
    if qtype == RecordType::TXT && !records.txt.is_empty() {
        return Finding::Txt(&records.txt);
    }
    if qtype == RecordType::SRV {
        return match srv_entries_exist(records, PortFilter::All) {
            true => Finding::Srv {
                records,
                filter: PortFilter::All,
                service,
                namespace,
            },
            false => Finding::NoData,
        };
    }
    addresses(qtype, listed)
}

/// The zone apex: SOA and NS (R8).
fn apex<'r>(qtype: RecordType) -> Finding<'r> {
    match qtype {
        RecordType::SOA => Finding::Soa,
        RecordType::NS => Finding::Ns,
        _ => existing(qtype),
    }
}

/// An existing name's addresses: those of the asked family for A/AAAA (NODATA when none),
/// the minimal answer for ANY, NODATA for anything else.
fn addresses(qtype: RecordType, listed: Addresses<'_>) -> Finding<'_> {
    match qtype {
        RecordType::A | RecordType::AAAA if listed.of_type(qtype).next().is_some() => {
            Finding::Addresses(listed)
        }
        RecordType::A | RecordType::AAAA => Finding::NoData,
        _ => existing(qtype),
    }
}

/// An existing name whose one record type is `natural`.
fn typed(qtype: RecordType, natural: RecordType, found: Finding<'_>) -> Finding<'_> {
    if qtype == natural {
        found
    } else {
        existing(qtype)
    }
}

/// A name that exists: ANY gets the RFC 8482 answer, every other type NODATA (R13).
fn existing<'r>(qtype: RecordType) -> Finding<'r> {
    match qtype {
        RecordType::ANY => Finding::Minimal,
        _ => Finding::NoData,
    }
}
