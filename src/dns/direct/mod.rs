//! The direct UDP path: the questions peers ask most, answered from the index straight into
//! bytes, with no parsed message and no record objects (the only allocation is the small
//! vector of SRV entries found).
//!
//! ```text
//!  plain query (wire.rs), class IN, A/AAAA/SRV, index synced
//!    -> lowercase the name on the stack, split it into labels, parse it (name.rs)
//!    -> answer::find decides, from the Service's records: addresses, SRV entries, NODATA or
//!       NXDOMAIN (with the SOA)
//!    -> wire.rs writes the response as hickory would      --> send
//!  anything else (reverse names, CNAMEs, the apex's own records, a ClusterIP's SRV, no room)
//!    -> None: the general path answers
//! ```
//!
//! A batch takes the stages one datagram at a time, each for all of its datagrams before the
//! next: [`Direct::prepare`] reads the question and asks the CPU for its Service's map entry,
//! [`Direct::prefetch_records`] for the records that entry points at, [`Direct::look_up`]
//! takes them and asks for their endpoints, [`Direct::prefetch_ports`] for an SRV answer's
//! ports, and [`Direct::write`] answers. On a large cluster those reads rarely hit the CPU's
//! caches; asked for together, they arrive together.
//!
//! Nothing here decides an answer: [`find`] does, for both paths. What is written here is the
//! encoding: which section each record goes to, in the order the general path's records are
//! built, and the truncation of a response too big for the client's UDP size.
//!
//! Invariants:
//! - for every question it answers, the bytes equal the general path's (message.rs, answer/,
//!   hickory's encoder): tests/e2e/fastpath.rs asks every name and type of generated clusters
//!   both ways; anything it cannot write returns `None` before writing a reply;
//! - it reads the live index (one `Arc<ServiceRecords>` per answer), so it cannot serve an
//!   answer older than the Service it read;
//! - a response too big for the client's UDP size loses its glue first, then its one answer
//!   RRset with TC set, exactly as the general path's does (R12); anything else that does not
//!   fit goes to the general path.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::answer::{Authority, Finding, SOA_TIMERS, SrvEntry, find, service_of, srv_entries};
use zones::ZoneNames;
mod zones;

use super::fit::{Cuttable, cut_to_fit};
use super::message::udp_limit;
use super::name::{ForwardName, Parsed, parse_labels};
use super::wire::reader::{plain, split_labels};
use super::wire::{NameTooLong, WireWriter};
use crate::index::{Index, ServiceRecords, srv_weight};
use crate::metrics::QueryOutcome;

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

/// One receive loop's direct answerer: the rules' settings and its own scratch buffers.
#[derive(Debug)]
pub struct Direct {
    authority: Authority,
    names: ZoneNames,
    writer: WireWriter,
    lowered: Vec<u8>,
}

impl Direct {
    /// A direct answerer for the zones and TTLs of `authority`.
    pub fn new(authority: &Authority) -> Self {
        Self {
            names: ZoneNames::new(authority),
            authority: authority.clone(),
            writer: WireWriter::default(),
            lowered: Vec::with_capacity(256),
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
        let count = split_labels(lowered, &mut labels)?;
        let authority = &self.authority;
        let parsed = parse_labels(&labels[..count], &authority.zones, &authority.reverse_zones);
        let Parsed::Forward { zone, .. } = parsed else {
            return None;
        };
        if let Some((namespace, service)) = service_of(&parsed) {
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
            parsed,
            records: None,
        })
    }

    /// Between stages one and two: asks for the records of the Service a prepared question
    /// names (its map entry on its way after [`Self::prepare`]).
    pub fn prefetch_records(&self, index: &Index, prepared: &Prepared<'_>) {
        if let Some((namespace, service)) = service_of(&prepared.parsed) {
            index.prefetch_service(namespace, service);
        }
    }

    /// Stage two: looks up the Service a prepared question names (its map entry and records
    /// already on their way after [`Self::prepare`] and [`Self::prefetch_records`]) and asks
    /// for the arrays an answer reads.
    pub fn look_up(&self, index: &Index, prepared: &mut Prepared<'_>) {
        let Some((namespace, service)) = service_of(&prepared.parsed) else {
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
            parsed,
            records: held,
        } = prepared;
        let qtype = RecordType::from(question.qtype);
        let Self {
            authority,
            names,
            writer,
            ..
        } = self;
        let finding = find(authority, index, &parsed, held.as_deref(), qtype);
        let encoder = Encoder {
            writer,
            names,
            authority,
        };
        let outcome = encoder.write(index, max_udp_payload, &question, zone, finding, out)?;
        Some(Written {
            outcome,
            records: held,
        })
    }
}

/// Writes one finding as a response: the direct path's encoder, over its answerer's scratch.
struct Encoder<'a> {
    writer: &'a mut WireWriter,
    names: &'a ZoneNames,
    authority: &'a Authority,
}

impl Encoder<'_> {
    /// Writes the response for `finding`; `None` when a name cannot be written or the
    /// response does not fit (the general path then decides).
    fn write(
        self,
        index: &Index,
        max_udp_payload: u16,
        question: &Question<'_>,
        zone: usize,
        finding: Finding<'_>,
        out: &mut Vec<u8>,
    ) -> Option<QueryOutcome> {
        let rcode = match finding {
            Finding::NxDomain => ResponseCode::NXDomain,
            Finding::Addresses(_) | Finding::Srv { .. } | Finding::NoData => ResponseCode::NoError,
            // CNAMEs, the apex's records, PTR, SERVFAIL, REFUSED: the general path's.
            _ => return None,
        };
        let qtype = RecordType::from(question.qtype);
        let request = question.request;
        let ttl = self.authority.positive_ttl;
        let writer = self.writer;
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
            Finding::Addresses(listed) => {
                for ip in listed.of_type(qtype) {
                    address_record(writer, owner, &ip, ttl).ok()?;
                    answers += 1;
                }
            }
            Finding::Srv {
                records,
                filter,
                namespace,
                service,
            } => {
                let entries = srv_entries(records, *filter);
                let svc_zone = &self.names.svc_zones[zone];
                let base = [service.as_bytes(), namespace.as_bytes()];
                let weight = srv_weight(entries.len());
                for entry in &entries {
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
                for entry in &entries {
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
            _ => {
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
        let mut sections = Sections {
            writer,
            answers_at,
            glue_at,
            opt_len: if question.edns_payload.is_some() {
                OPT_LEN
            } else {
                0
            },
            counts: [answers, authorities, additional],
            truncated: false,
        };
        if !cut_to_fit(&mut sections, limit) {
            // Too big even without its answers (a negative answer in a tiny limit): the
            // general path decides.
            return None;
        }
        let Sections {
            writer,
            counts: [answers, authorities, mut additional],
            truncated,
            ..
        } = sections;
        if question.edns_payload.is_some() {
            writer.opt(max_udp_payload);
            additional += 1;
        }
        writer.set_u16(6, answers);
        writer.set_u16(8, authorities);
        writer.set_u16(10, additional);
        writer.copy_to(out);
        Some(QueryOutcome {
            qtype: Some(RecordType::from(question.qtype)),
            rcode: Some(rcode),
            truncated,
            nodata: matches!(finding, Finding::NoData),
        })
    }
}

/// A response the encoder wrote, as the R12 rule cuts it: its answer section is one RRset
/// (addresses or SRV at the question name), its additional section the SRV glue.
struct Sections<'w> {
    writer: &'w mut WireWriter,
    /// Where the answer section starts (right after the question).
    answers_at: usize,
    /// Where the glue starts, when there is any.
    glue_at: Option<usize>,
    /// The OPT record still to be written, counted in the size.
    opt_len: usize,
    /// Records in the answer, authority and additional sections.
    counts: [u16; 3],
    truncated: bool,
}

impl Cuttable for Sections<'_> {
    fn size(&mut self) -> usize {
        self.writer.len() + self.opt_len
    }

    fn drop_additional(&mut self) {
        if let Some(glue_at) = self.glue_at.take() {
            self.writer.truncate(glue_at);
            self.counts[2] = 0;
        }
    }

    fn drop_last_answer_rrset(&mut self) -> bool {
        if self.counts[0] == 0 {
            return false;
        }
        self.writer.truncate(self.answers_at);
        self.writer.set_flag(2, TC);
        self.counts = [0, 0, 0];
        self.truncated = true;
        true
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
    /// The name, parsed (always [`Parsed::Forward`]).
    parsed: Parsed<'q>,
    /// The Service the name names, as published when it was read.
    records: Option<Arc<ServiceRecords>>,
}

impl Prepared<'_> {
    /// Whether an answer would list SRV records (SRV at a Service or a named port), so it reads
    /// the SRV order and the ports.
    fn lists_srv(&self) -> bool {
        let at_endpoint = matches!(
            self.parsed,
            Parsed::Forward {
                name: ForwardName::Endpoint { .. },
                ..
            }
        );
        self.question.qtype == TYPE_SRV && !at_endpoint
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
