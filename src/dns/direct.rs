//! The direct UDP path: the questions peers ask most, answered from the index straight into
//! bytes, with no parsed message, no record objects and no allocation in the steady state.
//!
//! ```text
//!  plain query (fast.rs), class IN, A/AAAA/SRV, index synced
//!    -> lowercase the name on the stack, split it into labels, parse it (name.rs)
//!    -> <label>.<svc>.<ns>.svc.<zone>      A/AAAA: the endpoints the label names (R2)
//!       <svc>.<ns>.svc.<zone>              A/AAAA/SRV of a headless Service (R1, R4)
//!       _<port>._<proto>.<svc>.<ns>.svc... SRV for a named port (R3)
//!       names that cannot exist            NXDOMAIN / NODATA with the SOA (R9)
//!    -> wire.rs writes the response as hickory would      --> send
//!  anything else (ClusterIP, ExternalName, PTR, apex, other types, no room) -> None
//! ```
//!
//! The record rules are the general path's own where they can be shared ([`srv_entries`],
//! [`ServiceRecords::endpoints_labelled`], [`srv_weight`], the name parser); what is written
//! here is which section each record goes to, in the same order as `answer/` builds them.
//!
//! Invariants:
//! - for every question it answers, the bytes equal the general path's (message.rs, answer/,
//!   hickory's encoder): tests/e2e/fastpath.rs asks every name and type of generated clusters
//!   both ways; anything it is not sure of returns `None` before writing a reply;
//! - it reads the live index (one `Arc<ServiceRecords>` per answer), so it cannot serve an
//!   answer older than the Service it read;
//! - a response that would not fit the client's UDP size goes to the general path, which
//!   truncates.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::answer::{Authority, PortFilter, srv_entries};
use super::fast::plain;
use super::name::{ForwardName, Parsed, parse_labels};
use super::wire::{Labels, NameTooLong, WireWriter};
use crate::index::{Index, ServiceRecords, srv_weight};
use crate::metrics::QueryOutcome;
use crate::model::{Protocol, ServiceKind};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;

/// What one question asks, once read.
struct Question<'q> {
    /// The question bytes as sent (echoed).
    raw: &'q [u8],
    /// The name's labels, lowercased.
    name: Labels<'q>,
    qtype: u16,
    /// The UDP size the client offered, when it sent OPT.
    edns_payload: Option<u16>,
}

/// What the index holds for the question, before it is written.
enum Finding<'r> {
    /// A/AAAA records at the question name.
    Addresses(Vec<IpAddr>),
    /// SRV records at the question name for these (target label, port) pairs, with glue.
    Srv {
        records: &'r ServiceRecords,
        entries: Vec<(&'r str, u16)>,
        namespace: &'r str,
        service: &'r str,
    },
    NoData,
    NxDomain,
}

/// One receive loop's direct answerer (owns its scratch buffers).
#[derive(Debug, Default)]
pub struct Direct {
    writer: WireWriter,
    lowered: Vec<u8>,
}

impl Direct {
    /// Writes the response to `request` into `out` and says what it was; `None` (and `out`
    /// untouched) when the general path must answer.
    pub fn answer(
        &mut self,
        authority: &Authority,
        index: &Index,
        max_udp_payload: u16,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<QueryOutcome> {
        let plain = plain(request)?;
        let raw = plain.question;
        let n = raw.len();
        let qtype = u16::from_be_bytes([raw[n - 4], raw[n - 3]]);
        let qclass = u16::from_be_bytes([raw[n - 2], raw[n - 1]]);
        if qclass != CLASS_IN || !matches!(qtype, TYPE_A | TYPE_AAAA | TYPE_SRV) {
            return None;
        }
        if !index.is_synced() {
            return None;
        }
        let mut lowered = std::mem::take(&mut self.lowered);
        lowered.clear();
        lowered.extend_from_slice(&raw[..n - 4]);
        lowered.make_ascii_lowercase();
        let result = self.answer_lowered(
            authority,
            index,
            max_udp_payload,
            request,
            raw,
            &lowered,
            qtype,
            plain.edns_payload,
            out,
        );
        self.lowered = lowered;
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn answer_lowered(
        &mut self,
        authority: &Authority,
        index: &Index,
        max_udp_payload: u16,
        request: &[u8],
        raw: &[u8],
        lowered: &[u8],
        qtype: u16,
        edns_payload: Option<u16>,
        out: &mut Vec<u8>,
    ) -> Option<QueryOutcome> {
        let name = split_labels(lowered)?;
        let question = Question {
            raw,
            name,
            qtype,
            edns_payload,
        };
        let Parsed::Forward { zone, name } = parse_labels(
            question.name.as_slice(),
            &authority.zones,
            &authority.reverse_zones,
        ) else {
            return None;
        };
        let records;
        let finding = match name {
            ForwardName::Endpoint {
                namespace,
                service,
                label,
            } => match index.service(namespace, service) {
                Some(found) if !is_external(&found) => {
                    records = found;
                    let mut labelled = records.endpoints_labelled(label).peekable();
                    if labelled.peek().is_none() {
                        Finding::NxDomain
                    } else if qtype == TYPE_SRV {
                        Finding::NoData
                    } else {
                        addresses(labelled.map(|e| e.ip), qtype)
                    }
                }
                _ => Finding::NxDomain,
            },
            ForwardName::Service { namespace, service } => {
                let Some(found) = index.service(namespace, service) else {
                    return self.write(
                        authority,
                        index,
                        max_udp_payload,
                        request,
                        &question,
                        zone,
                        Finding::NxDomain,
                        out,
                    );
                };
                if !matches!(found.kind, ServiceKind::Headless) {
                    return None;
                }
                records = found;
                if records.endpoints.is_empty() {
                    Finding::NxDomain
                } else if qtype == TYPE_SRV {
                    srv(&records, PortFilter::All, namespace, service)
                } else {
                    addresses(records.endpoints.iter().map(|e| e.ip), qtype)
                }
            }
            ForwardName::Port {
                namespace,
                service,
                port,
                protocol,
            } => match (
                index.service(namespace, service),
                Protocol::from_label(protocol),
            ) {
                (Some(found), Some(protocol)) if !is_external(&found) => {
                    if !matches!(found.kind, ServiceKind::Headless) {
                        return None;
                    }
                    records = found;
                    match srv(
                        &records,
                        PortFilter::Named(port, protocol),
                        namespace,
                        service,
                    ) {
                        Finding::Srv { entries, .. } if entries.is_empty() => Finding::NxDomain,
                        Finding::NoData => Finding::NxDomain,
                        _ if qtype != TYPE_SRV => Finding::NoData,
                        srv => srv,
                    }
                }
                _ => Finding::NxDomain,
            },
            ForwardName::Namespace(namespace) if index.namespace_exists(namespace) => {
                Finding::NoData
            }
            ForwardName::Namespace(_) | ForwardName::Nonexistent => Finding::NxDomain,
            _ => return None,
        };
        self.write(
            authority,
            index,
            max_udp_payload,
            request,
            &question,
            zone,
            finding,
            out,
        )
    }

    /// Writes the response for `finding`; `None` when a name cannot be written or the
    /// response does not fit (the general path then decides).
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        authority: &Authority,
        index: &Index,
        max_udp_payload: u16,
        request: &[u8],
        question: &Question<'_>,
        zone: usize,
        finding: Finding<'_>,
        out: &mut Vec<u8>,
    ) -> Option<QueryOutcome> {
        let finding = match finding {
            Finding::Addresses(ips) if ips.is_empty() => Finding::NoData,
            Finding::Srv { entries, .. } if entries.is_empty() => Finding::NoData,
            other => other,
        };
        let rcode = match finding {
            Finding::NxDomain => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        let writer = &mut self.writer;
        writer.reset();
        writer.put(&request[..2]);
        writer.put(&[
            0x80 | 0x04 | (request[2] & 0x01),
            (request[3] & 0x10) | rcode.low(),
        ]);
        writer.put(&[0, 1, 0, 0, 0, 0, 0, 0]);
        writer.question(question.raw);
        let owner = question.name.as_slice();
        let ttl = authority.positive_ttl;
        let (mut answers, mut authorities, mut additional) = (0u16, 0u16, 0u16);
        match &finding {
            Finding::Addresses(ips) => {
                for ip in ips {
                    address_record(writer, owner, ip, ttl).ok()?;
                    answers += 1;
                }
            }
            Finding::Srv {
                records,
                entries,
                namespace,
                service,
            } => {
                let zone_name = &authority.zones[zone];
                let mut service_name = Labels::new();
                if !service_name.push(service.as_bytes())
                    || !service_name.push(namespace.as_bytes())
                    || !service_name.push(b"svc")
                    || !service_name.extend(zone_name.iter())
                    || service_name.wire_len() > 255
                {
                    return None;
                }
                let weight = srv_weight(entries.len());
                for (label, port) in entries {
                    let target = prepend(label, &service_name)?;
                    writer
                        .record(owner, TYPE_SRV, ttl, |w| {
                            w.put_u16(0);
                            w.put_u16(weight);
                            w.put_u16(*port);
                            w.uncompressed_name(target.as_slice())
                        })
                        .ok()?;
                    answers += 1;
                }
                let mut previous: Option<&str> = None;
                for (label, _) in entries {
                    if previous == Some(*label) {
                        continue;
                    }
                    previous = Some(label);
                    let target = prepend(label, &service_name)?;
                    for endpoint in records.endpoints_labelled(label) {
                        address_record(writer, target.as_slice(), &endpoint.ip, ttl).ok()?;
                        additional += 1;
                    }
                }
            }
            Finding::NoData | Finding::NxDomain => {
                soa_record(writer, authority, index, zone).ok()?;
                authorities += 1;
            }
        }
        if question.edns_payload.is_some() {
            writer.opt(max_udp_payload);
            additional += 1;
        }
        writer.set_u16(6, answers);
        writer.set_u16(8, authorities);
        writer.set_u16(10, additional);
        let limit = match question.edns_payload {
            Some(offered) => offered.clamp(512, max_udp_payload.max(512)),
            None => 512,
        };
        if writer.len() > usize::from(limit) {
            return None;
        }
        writer.copy_to(out);
        Some(QueryOutcome {
            qtype: Some(RecordType::from(question.qtype)),
            rcode: Some(rcode),
            truncated: false,
            nodata: matches!(finding, Finding::NoData),
        })
    }
}

/// The labels of a lowercased, uncompressed wire name (checked by `plain`).
fn split_labels(name: &[u8]) -> Option<Labels<'_>> {
    let mut labels = Labels::new();
    let mut at = 0;
    loop {
        let length = usize::from(*name.get(at)?);
        if length == 0 {
            return Some(labels);
        }
        if !labels.push(name.get(at + 1..at + 1 + length)?) {
            return None;
        }
        at += 1 + length;
    }
}

fn is_external(records: &ServiceRecords) -> bool {
    matches!(records.kind, ServiceKind::ExternalName(_))
}

/// The addresses of the asked family among `ips`, in order.
fn addresses(ips: impl Iterator<Item = IpAddr>, qtype: u16) -> Finding<'static> {
    let wanted = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => qtype == TYPE_A,
        IpAddr::V6(_) => qtype == TYPE_AAAA,
    };
    Finding::Addresses(ips.filter(wanted).collect())
}

/// The SRV entries of a headless Service (every target has a label).
fn srv<'r>(
    records: &'r ServiceRecords,
    filter: PortFilter<'_>,
    namespace: &'r str,
    service: &'r str,
) -> Finding<'r> {
    let mut entries = Vec::new();
    for (label, port) in srv_entries(records, filter) {
        match label {
            Some(label) => entries.push((label, port)),
            None => return Finding::NoData, // not reached for a headless Service
        }
    }
    Finding::Srv {
        records,
        entries,
        namespace,
        service,
    }
}

/// `label` in front of `name`, or `None` when the result would be too long.
fn prepend<'a>(label: &'a str, name: &Labels<'a>) -> Option<Labels<'a>> {
    let mut target = Labels::new();
    (target.push(label.as_bytes())
        && target.extend(name.as_slice().iter().copied())
        && label.len() <= 63
        && target.wire_len() <= 255)
        .then_some(target)
}

fn address_record(
    writer: &mut WireWriter,
    owner: &[&[u8]],
    ip: &IpAddr,
    ttl: u32,
) -> Result<(), NameTooLong> {
    match ip {
        IpAddr::V4(v4) => writer.record(owner, TYPE_A, ttl, |w| {
            w.put(&v4.octets());
            Ok(())
        }),
        IpAddr::V6(v6) => writer.record(owner, TYPE_AAAA, ttl, |w| {
            w.put(&v6.octets());
            Ok(())
        }),
    }
}

/// The zone's SOA, as `Authority::soa` builds it (R8, R9).
fn soa_record(
    writer: &mut WireWriter,
    authority: &Authority,
    index: &Index,
    zone: usize,
) -> Result<(), NameTooLong> {
    let primary = authority.zones.first().ok_or(NameTooLong)?;
    let owner = name_labels(&authority.zones[zone])?;
    let mut mname = Labels::new();
    let mut rname = Labels::new();
    let built = mname.push(b"ns")
        && mname.push(b"dns")
        && mname.extend(primary.iter())
        && rname.push(b"hostmaster")
        && rname.extend(primary.iter());
    if !built || mname.wire_len() > 255 || rname.wire_len() > 255 {
        // The general path falls back to other names here: let it answer.
        return Err(NameTooLong);
    }
    let negative_ttl = authority.negative_ttl;
    let serial = index.serial();
    writer.record(owner.as_slice(), TYPE_SOA, negative_ttl, |w| {
        w.compressed_name(mname.as_slice())?;
        w.compressed_name(rname.as_slice())?;
        w.put_u32(serial);
        w.put_u32(7200);
        w.put_u32(1800);
        w.put_u32(86400);
        w.put_u32(negative_ttl);
        Ok(())
    })
}

fn name_labels(name: &Name) -> Result<Labels<'_>, NameTooLong> {
    let mut labels = Labels::new();
    if labels.extend(name.iter()) {
        Ok(labels)
    } else {
        Err(NameTooLong)
    }
}

impl std::fmt::Debug for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.as_slice().iter().map(|l| String::from_utf8_lossy(l)))
            .finish()
    }
}
