//! The direct path's encoder: a [`Finding`] written as response bytes, record by record in
//! the order the general path's records are built, then cut to the client's UDP size by the
//! R12 rule (`fit.rs`).
//!
//! Invariants: it writes only the findings the direct path takes (addresses, SRV with labelled
//! targets, NODATA and NXDOMAIN with the SOA) and returns `None` for any other, or for a name
//! it cannot write, before anything reaches `out`; the header's counts are set from what is
//! left after the cut.

use std::net::IpAddr;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use super::zones::ZoneNames;
use super::{OPT_LEN, Question, TC, TYPE_A, TYPE_AAAA, TYPE_SOA, TYPE_SRV};
use crate::dns::answer::srv_weight;
use crate::dns::answer::{Authority, Finding, SOA_TIMERS, SrvEntry, srv_entries};
use crate::dns::fit::{Cuttable, cut_to_fit};
use crate::dns::message::udp_limit;
use crate::dns::wire::{NameTooLong, WireWriter};
use crate::index::{Index, ServiceRecords};
use crate::metrics::QueryOutcome;

/// A name as the writer takes it: plain labels, then a suffix already in wire form.
type WireName<'n> = (&'n [&'n [u8]], &'n [u8]);

/// Writes one finding as a response, over its answerer's scratch.
pub(super) struct Encoder<'a> {
    pub(super) writer: &'a mut WireWriter,
    pub(super) names: &'a ZoneNames,
    pub(super) authority: &'a Authority,
}

impl Encoder<'_> {
    /// Writes the response for `finding` into `out`; `None` when it is not a finding this path
    /// writes, a name cannot be written, or the response does not fit even cut (the general
    /// path then decides).
    pub(super) fn write(
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
        let Self {
            writer,
            names,
            authority,
        } = self;
        header(writer, question, rcode);
        let mut sections = Sections {
            answers_at: writer.len(),
            writer,
            glue_at: None,
            opt_len: if question.edns_payload.is_some() {
                OPT_LEN
            } else {
                0
            },
            counts: [0; 3],
            truncated: false,
        };
        records(
            &mut sections,
            &finding,
            question,
            (names, authority),
            zone,
            index,
        )?;
        if !cut_to_fit(
            &mut sections,
            udp_limit(question.edns_payload, max_udp_payload),
        ) {
            // Too big even without its answers (a negative answer in a tiny limit).
            return None;
        }
        let truncated = sections.finish(question.edns_payload.map(|_| max_udp_payload));
        sections.writer.copy_to(out);
        Some(QueryOutcome {
            qtype: Some(RecordType::from(question.qtype)),
            rcode: Some(rcode),
            truncated,
            nodata: matches!(finding, Finding::NoData),
        })
    }
}

/// The finding's records: the answer RRset and its glue, or the SOA of a negative answer.
fn records(
    sections: &mut Sections<'_>,
    finding: &Finding<'_>,
    question: &Question<'_>,
    (names, authority): (&ZoneNames, &Authority),
    zone: usize,
    index: &Index,
) -> Option<()> {
    // The question's name, lowercased, without its root byte.
    let owner: WireName<'_> = (&[], &question.lowered[..question.lowered.len() - 1]);
    let ttl = authority.positive_ttl;
    match finding {
        Finding::Addresses(listed) => {
            let qtype = RecordType::from(question.qtype);
            for ip in listed.of_type(qtype) {
                address_record(sections.writer, owner, &ip, ttl).ok()?;
                sections.counts[0] += 1;
            }
            Some(())
        }
        Finding::Srv {
            records,
            filter,
            namespace,
            service,
        } => {
            let entries = srv_entries(records, *filter);
            let target_zone = (names.svc_zones[zone].as_slice(), *service, *namespace);
            srv_records(sections, owner, &entries, target_zone, ttl)?;
            glue(sections, records, &entries, target_zone, ttl)
        }
        _ => soa(sections, names, authority, zone, index.serial()),
    }
}

/// The header (ID, flags: QR, AA, the RD and CD asked, `rcode`; one question) and the
/// question, echoed.
fn header(writer: &mut WireWriter, question: &Question<'_>, rcode: ResponseCode) {
    let request = question.request;
    writer.reset();
    writer.put(&request[..2]);
    writer.put(&[
        0x80 | 0x04 | (request[2] & 0x01),
        (request[3] & 0x10) | rcode.low(),
    ]);
    writer.put(&[0, 1, 0, 0, 0, 0, 0, 0]);
    writer.question(question.raw);
}

/// The SRV records at `owner` (R3, R4); targets `<label>.<service>.<namespace>.svc.<zone>`,
/// written whole (RFC 2782). `None` for a target without a label (a ClusterIP's own name).
fn srv_records(
    sections: &mut Sections<'_>,
    owner: WireName<'_>,
    entries: &[SrvEntry<'_>],
    (svc_zone, service, namespace): (&[u8], &str, &str),
    ttl: u32,
) -> Option<()> {
    let weight = srv_weight(entries.len());
    for entry in entries {
        let target = [
            entry.label?.as_bytes(),
            service.as_bytes(),
            namespace.as_bytes(),
        ];
        sections
            .writer
            .record(owner, TYPE_SRV, ttl, |w| {
                w.put_u16(0);
                w.put_u16(weight);
                w.put_u16(entry.port);
                w.uncompressed_name(&target, svc_zone)
            })
            .ok()?;
        sections.counts[0] += 1;
    }
    Some(())
}

/// The SRV targets' addresses in the additional section, each target once (entries are
/// sorted, so one target's entries are adjacent).
fn glue(
    sections: &mut Sections<'_>,
    records: &ServiceRecords,
    entries: &[SrvEntry<'_>],
    (svc_zone, service, namespace): (&[u8], &str, &str),
    ttl: u32,
) -> Option<()> {
    sections.glue_at = Some(sections.writer.len());
    let mut previous: Option<&SrvEntry<'_>> = None;
    for entry in entries {
        let label = entry.label?;
        if previous.is_some_and(|p| p.same_target(entry)) {
            continue;
        }
        previous = Some(entry);
        let target = [label.as_bytes(), service.as_bytes(), namespace.as_bytes()];
        for endpoint in entry.target_endpoints(records) {
            address_record(sections.writer, (&target, svc_zone), &endpoint.ip, ttl).ok()?;
            sections.counts[2] += 1;
        }
    }
    Some(())
}

/// The zone's SOA in the authority section, with the negative TTL (R9).
fn soa(
    sections: &mut Sections<'_>,
    names: &ZoneNames,
    authority: &Authority,
    zone: usize,
    serial: u32,
) -> Option<()> {
    let (mname, rname) = names.soa_names.as_ref()?;
    let negative_ttl = authority.negative_ttl;
    let zone_owner: WireName<'_> = (&[], &names.zones[zone]);
    sections
        .writer
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
    sections.counts[1] += 1;
    Some(())
}

fn address_record(
    writer: &mut WireWriter,
    owner: WireName<'_>,
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

/// A response being written, as the R12 rule cuts it: its answer section is one RRset
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

impl Sections<'_> {
    /// Writes the OPT record (offering `opt_payload`, when the client sent one) and the
    /// header's counts; returns whether TC was set.
    fn finish(&mut self, opt_payload: Option<u16>) -> bool {
        let [answers, authorities, mut additional] = self.counts;
        if let Some(payload) = opt_payload {
            self.writer.opt(payload);
            additional += 1;
        }
        self.writer.set_u16(6, answers);
        self.writer.set_u16(8, authorities);
        self.writer.set_u16(10, additional);
        self.truncated
    }
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
