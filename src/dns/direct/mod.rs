//! The direct UDP path: the questions peers ask most, answered from the index straight into
//! bytes, with no parsed message and no record objects (the only allocation is the small
//! vector of SRV entries found).
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
//! A batch takes the stages one datagram at a time, each for all of its datagrams before the
//! next: [`Direct::prepare`] reads the question and asks the CPU for its Service's map entry,
//! [`Direct::prefetch_records`] for the records that entry points at, [`Direct::look_up`]
//! takes them and asks for their endpoints, [`Direct::prefetch_ports`] for an SRV answer's
//! ports, and [`Direct::write`] answers. On a large cluster those reads rarely hit the CPU's
//! caches; asked for together, they arrive together. [`Direct::answer`] takes every stage
//! for one question.
//!
//! The record rules are the general path's own where they can be shared (`srv_entries`,
//! [`ServiceRecords::endpoints_labelled`], [`srv_weight`], the name parser); what is written
//! here is which section each record goes to, in the same order as `answer/` builds them.
//!
//! Invariants:
//! - for every question it answers, the bytes equal the general path's (message.rs, answer/,
//!   hickory's encoder): tests/e2e/fastpath.rs asks every name and type of generated clusters
//!   both ways; anything it is not sure of returns `None` before writing a reply;
//! - it reads the live index (one `Arc<ServiceRecords>` per answer), so it cannot serve an
//!   answer older than the Service it read;
//! - a response too big for the client's UDP size loses its glue first, then its one answer
//!   RRset with TC set, exactly as the general path's does (R12); anything else that does not
//!   fit goes to the general path.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::answer::{Authority, PortFilter, SOA_TIMERS, SrvEntry, is_external, srv_entries};
use zones::{ZoneNames, split_labels};
mod zones;

use super::fast::plain;
use super::message::udp_limit;
use super::name::{ForwardName, parse_forward};
use super::wire::{NameTooLong, WireWriter};
use crate::index::{Index, ServiceRecords, srv_weight};
use crate::metrics::QueryOutcome;
use crate::model::{Protocol, ServiceKind};

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const TYPE_SOA: u16 = 6;
const CLASS_IN: u16 = 1;
/// The TC bit, in the header's third byte.
const TC: u8 = 0x02;
/// Bytes of an OPT record without options.
const OPT_LEN: usize = 11;
/// Labels a question may have to be taken here (ours have at most five plus the zone's).
const MAX_QUESTION_LABELS: usize = 32;

/// What the index holds for the question, before it is written.
enum Finding<'r> {
    /// A/AAAA records at the question name: the addresses of the asked family, in order.
    Addresses(&'r [IpAddr]),
    /// SRV records at the question name for these (target label, port) pairs, with glue.
    Srv {
        records: &'r ServiceRecords,
        /// As `srv_entries` lists them; a `None` label (a ClusterIP Service's own name) is
        /// never reached here: the write declines it.
        entries: Vec<SrvEntry<'r>>,
        namespace: &'r str,
        service: &'r str,
    },
    NoData,
    NxDomain,
}

/// One receive loop's direct answerer: the rules' settings and its own scratch buffers.
#[derive(Debug)]
pub struct Direct {
    authority: Authority,
    names: ZoneNames,
    writer: WireWriter,
    lowered: Vec<u8>,
    /// Scratch for the addresses an A/AAAA answer lists (kept: no allocation per answer).
    addresses: Vec<IpAddr>,
}

impl Direct {
    /// A direct answerer for the zones and TTLs of `authority`.
    pub fn new(authority: &Authority) -> Self {
        Self {
            names: ZoneNames::new(authority),
            authority: authority.clone(),
            writer: WireWriter::default(),
            lowered: Vec::with_capacity(256),
            addresses: Vec::new(),
        }
    }

    /// Writes the response to `request` into `out` and says what it was; `None` (and `out`
    /// untouched) when the general path must answer. Every stage, for this one question.
    pub fn answer(
        &mut self,
        index: &Index,
        max_udp_payload: u16,
        request: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<Written> {
        let mut lowered = std::mem::take(&mut self.lowered);
        let written = self
            .prepare(index, request, &mut lowered)
            .and_then(|mut prepared| {
                self.prefetch_records(index, &prepared);
                self.look_up(index, &mut prepared);
                self.write(index, max_udp_payload, prepared, out)
            });
        self.lowered = lowered;
        written
    }

    /// Stage one: reads `request` (its name lowercased into `lowered`), places it in a zone and
    /// asks the CPU to start loading the map entry of the Service it names. `None` when the
    /// question is not one this path answers.
    pub fn prepare<'q>(
        &self,
        index: &Index,
        request: &'q [u8],
        lowered: &'q mut Vec<u8>,
    ) -> Option<Prepared<'q>> {
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
        lowered.clear();
        lowered.extend_from_slice(&raw[..n - 4]);
        lowered.make_ascii_lowercase();
        let lowered: &'q [u8] = lowered;
        let mut labels: [&[u8]; MAX_QUESTION_LABELS] = [&[]; MAX_QUESTION_LABELS];
        let mut starts = [0usize; MAX_QUESTION_LABELS];
        let count = split_labels(lowered, &mut labels, &mut starts)?;
        let (zone, left) = self.names.locate(lowered, &starts[..count])?;
        let name = parse_forward(&labels[..left]);
        if let Some((namespace, service)) = service_of(&name) {
            index.prefetch_service_entry(namespace, service);
        }
        Some(Prepared {
            question: Question {
                request,
                raw,
                lowered,
                qtype,
                edns_payload: plain.edns_payload,
            },
            zone,
            name,
            records: None,
        })
    }

    /// Between stages one and two: asks for the records of the Service a prepared question
    /// names (its map entry on its way after [`Self::prepare`]).
    pub fn prefetch_records(&self, index: &Index, prepared: &Prepared<'_>) {
        if let Some((namespace, service)) = service_of(&prepared.name) {
            index.prefetch_service(namespace, service);
        }
    }

    /// Stage two: looks up the Service a prepared question names (its map entry and records
    /// already on their way after [`Self::prepare`] and [`Self::prefetch_records`]) and asks
    /// for the arrays an answer reads.
    pub fn look_up(&self, index: &Index, prepared: &mut Prepared<'_>) {
        let Some((namespace, service)) = service_of(&prepared.name) else {
            return;
        };
        prepared.records = index.service(namespace, service);
        if let Some(records) = &prepared.records {
            records.prefetch(prepared.lists_srv());
        }
    }

    /// Between stages two and three, for an SRV question: asks for the ports its answer lists
    /// (read from the endpoints [`Self::look_up`] asked for).
    pub fn prefetch_ports(&self, prepared: &Prepared<'_>) {
        if prepared.lists_srv()
            && let Some(records) = &prepared.records
        {
            records.prefetch_ports();
        }
    }

    /// Stage three: writes the response to a prepared question into `out` and says what it was;
    /// `None` (and `out` untouched) when the general path must answer. The answer is computed
    /// from the records [`Self::look_up`] took, as they were published then.
    pub fn write(
        &mut self,
        index: &Index,
        max_udp_payload: u16,
        prepared: Prepared<'_>,
        out: &mut Vec<u8>,
    ) -> Option<Written> {
        let Prepared {
            question,
            zone,
            name,
            records: held,
        } = prepared;
        let qtype = question.qtype;
        let mut found_addresses = std::mem::take(&mut self.addresses);
        found_addresses.clear();
        let finding = match name {
            ForwardName::Endpoint { label, .. } => match held.as_deref() {
                Some(records) if !is_external(records) => {
                    let mut labelled = records.endpoints_labelled(label).peekable();
                    if labelled.peek().is_none() {
                        Finding::NxDomain
                    } else if qtype == TYPE_SRV {
                        Finding::NoData
                    } else {
                        addresses(labelled.map(|e| e.ip), qtype, &mut found_addresses)
                    }
                }
                _ => Finding::NxDomain,
            },
            ForwardName::Service { namespace, service } => match held.as_deref() {
                None => Finding::NxDomain,
                Some(records) if !matches!(records.kind, ServiceKind::Headless) => return None,
                Some(records) => {
                    if records.endpoints.is_empty() {
                        Finding::NxDomain
                    } else if qtype == TYPE_SRV {
                        srv(records, PortFilter::All, namespace, service)
                    } else {
                        let ips = records.endpoints.iter().map(|e| e.ip);
                        addresses(ips, qtype, &mut found_addresses)
                    }
                }
            },
            ForwardName::Port {
                namespace,
                service,
                port,
                protocol,
            } => match (held.as_deref(), Protocol::from_label(protocol)) {
                (Some(records), Some(protocol)) if !is_external(records) => {
                    if !matches!(records.kind, ServiceKind::Headless) {
                        return None;
                    }
                    match srv(
                        records,
                        PortFilter::Named(port, protocol),
                        namespace,
                        service,
                    ) {
                        Finding::Srv { entries, .. } if entries.is_empty() => Finding::NxDomain,
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
        let outcome = self.write_finding(index, max_udp_payload, &question, zone, finding, out);
        self.addresses = found_addresses;
        Some(Written {
            outcome: outcome?,
            records: held,
        })
    }

    /// Writes the response for `finding`; `None` when a name cannot be written or the
    /// response does not fit (the general path then decides).
    fn write_finding(
        &mut self,
        index: &Index,
        max_udp_payload: u16,
        question: &Question<'_>,
        zone: usize,
        finding: Finding<'_>,
        out: &mut Vec<u8>,
    ) -> Option<QueryOutcome> {
        let finding = match finding {
            Finding::Addresses([]) => Finding::NoData,
            Finding::Srv { entries, .. } if entries.is_empty() => Finding::NoData,
            other => other,
        };
        let rcode = match finding {
            Finding::NxDomain => ResponseCode::NXDomain,
            _ => ResponseCode::NoError,
        };
        let request = question.request;
        let ttl = self.authority.positive_ttl;
        let writer = &mut self.writer;
        writer.reset();
        writer.put(&request[..2]);
        writer.put(&[
            0x80 | 0x04 | (request[2] & 0x01),
            (request[3] & 0x10) | rcode.low(),
        ]);
        writer.put(&[0, 1, 0, 0, 0, 0, 0, 0]);
        writer.question(question.raw);
        let answers_at = writer.len();
        // The question's name, lowercased, without its root byte.
        let owner: (&[&[u8]], &[u8]) = (&[], &question.lowered[..question.lowered.len() - 1]);
        let (mut answers, mut authorities, mut additional) = (0u16, 0u16, 0u16);
        // Where the glue starts: dropped first when the response is too big (R12).
        let mut glue_at: Option<usize> = None;
        match &finding {
            Finding::Addresses(ips) => {
                for ip in ips.iter() {
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
                let svc_zone = &self.names.svc_zones[zone];
                let base = [service.as_bytes(), namespace.as_bytes()];
                let weight = srv_weight(entries.len());
                for entry in entries {
                    let target = [entry.label?.as_bytes(), base[0], base[1]];
                    writer
                        .record(owner, TYPE_SRV, ttl, |w| {
                            w.put_u16(0);
                            w.put_u16(weight);
                            w.put_u16(entry.port);
                            w.uncompressed_name(&target, svc_zone)
                        })
                        .ok()?;
                    answers += 1;
                }
                glue_at = Some(writer.len());
                let mut previous: Option<&SrvEntry<'_>> = None;
                for entry in entries {
                    let label = entry.label?;
                    if previous.is_some_and(|p| p.same_target(entry)) {
                        continue;
                    }
                    previous = Some(entry);
                    let target = [label.as_bytes(), base[0], base[1]];
                    for endpoint in entry.target_endpoints(records) {
                        address_record(writer, (&target, svc_zone), &endpoint.ip, ttl).ok()?;
                        additional += 1;
                    }
                }
            }
            Finding::NoData | Finding::NxDomain => {
                let (mname, rname) = self.names.soa_names.as_ref()?;
                let negative_ttl = self.authority.negative_ttl;
                let serial = index.serial();
                let zone_owner: (&[&[u8]], &[u8]) = (&[], &self.names.zones[zone]);
                writer
                    .record(zone_owner, TYPE_SOA, negative_ttl, |w| {
                        w.compressed_name(&[], mname)?;
                        w.compressed_name(&[], rname)?;
                        w.put_u32(serial);
                        for timer in SOA_TIMERS {
                            w.put_u32(timer.unsigned_abs());
                        }
                        w.put_u32(negative_ttl);
                        Ok(())
                    })
                    .ok()?;
                authorities += 1;
            }
        }
        let limit = udp_limit(question.edns_payload, max_udp_payload);
        let opt_len = if question.edns_payload.is_some() {
            OPT_LEN
        } else {
            0
        };
        if let Some(glue_at) = glue_at
            && writer.len() + opt_len > limit
        {
            writer.truncate(glue_at);
            additional = 0;
        }
        let mut truncated = false;
        if writer.len() + opt_len > limit && answers > 0 {
            // The answer is one RRset (addresses or SRV at the question name): the general
            // path drops it whole and sets TC, so the client retries over TCP (R12).
            writer.truncate(answers_at);
            writer.set_flag(2, TC);
            (answers, authorities, additional) = (0, 0, 0);
            truncated = true;
        }
        if question.edns_payload.is_some() {
            writer.opt(max_udp_payload);
            additional += 1;
        }
        writer.set_u16(6, answers);
        writer.set_u16(8, authorities);
        writer.set_u16(10, additional);
        if writer.len() > limit {
            // Still too big (a negative answer in a tiny limit): the general path decides.
            return None;
        }
        writer.copy_to(out);
        Some(QueryOutcome {
            qtype: Some(RecordType::from(question.qtype)),
            rcode: Some(rcode),
            truncated,
            nodata: matches!(finding, Finding::NoData),
        })
    }
}

/// What the direct path answered: the outcome, and the one Service's records the answer was
/// computed from, when it read any (a positive answer reads nothing else).
#[derive(Debug)]
pub struct Written {
    /// The answer, for the metrics.
    pub outcome: QueryOutcome,
    /// The records read.
    pub records: Option<Arc<ServiceRecords>>,
}

/// A question the direct path takes, read ([`Direct::prepare`]) and then looked up
/// ([`Direct::look_up`]) but not yet answered ([`Direct::write`]). It holds the Service's
/// records once found, so a batch can look every datagram's Service up (and start loading
/// their records) before it writes.
#[derive(Debug)]
pub struct Prepared<'q> {
    question: Question<'q>,
    /// Which forward zone the name is in.
    zone: usize,
    name: ForwardName<'q>,
    /// The Service the name names, as published when it was read.
    records: Option<Arc<ServiceRecords>>,
}

impl Prepared<'_> {
    /// Whether an answer would list SRV records (SRV at a Service or a named port), so it reads
    /// the SRV order and the ports.
    fn lists_srv(&self) -> bool {
        self.question.qtype == TYPE_SRV && !matches!(self.name, ForwardName::Endpoint { .. })
    }
}

/// One question, read.
#[derive(Debug)]
struct Question<'q> {
    /// The whole request (ID and flags are copied from it).
    request: &'q [u8],
    /// The question bytes as sent (echoed).
    raw: &'q [u8],
    /// The question's name in wire form, lowercased, root included.
    lowered: &'q [u8],
    qtype: u16,
    /// The UDP size the client offered, when it sent OPT.
    edns_payload: Option<u16>,
}

/// The (namespace, Service) a name is at or below, when it names one.
fn service_of<'a>(name: &ForwardName<'a>) -> Option<(&'a str, &'a str)> {
    match *name {
        ForwardName::Endpoint {
            namespace, service, ..
        }
        | ForwardName::Service { namespace, service }
        | ForwardName::Port {
            namespace, service, ..
        } => Some((namespace, service)),
        _ => None,
    }
}

/// The addresses of the asked family among `ips`, in order, collected in `found`.
fn addresses<'f>(
    ips: impl Iterator<Item = IpAddr>,
    qtype: u16,
    found: &'f mut Vec<IpAddr>,
) -> Finding<'f> {
    let wanted = |ip: &IpAddr| match ip {
        IpAddr::V4(_) => qtype == TYPE_A,
        IpAddr::V6(_) => qtype == TYPE_AAAA,
    };
    found.extend(ips.filter(wanted));
    Finding::Addresses(found)
}

/// The SRV entries of a headless Service (every target has a label).
fn srv<'r>(
    records: &'r ServiceRecords,
    filter: PortFilter<'_>,
    namespace: &'r str,
    service: &'r str,
) -> Finding<'r> {
    Finding::Srv {
        records,
        entries: srv_entries(records, filter),
        namespace,
        service,
    }
}

fn address_record(
    writer: &mut WireWriter,
    owner: (&[&[u8]], &[u8]),
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
