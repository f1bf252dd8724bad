//! The direct UDP path: the questions peers ask most, answered from the index straight into
//! bytes, with no parsed message and no record objects (the only allocation is the small
//! vector of SRV entries found).
//!
//! ```text
//!  plain query (wire/reader.rs), class IN, A/AAAA/SRV, index synced
//!    -> lowercase the name on the stack, split it into labels, parse it (name.rs)
//!    -> answer::find decides, from the Service's records: addresses, SRV entries, NODATA or
//!       NXDOMAIN (with the SOA)
//!    -> encoder.rs writes it with wire/writer.rs, as hickory would      --> send
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
//! Nothing here decides an answer: `answer::find` does, for both paths. What is written here is the
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

use std::sync::Arc;

use hickory_proto::rr::RecordType;

mod encoder;
mod zones;

use super::answer::{Authority, find, service_of};
use super::name::{ForwardName, Parsed, parse_labels};
use super::wire::WireWriter;
use super::wire::reader::{plain, split_labels};
use crate::index::{Index, ServiceRecords};
use crate::metrics::QueryOutcome;
use encoder::Encoder;
use zones::ZoneNames;

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
    /// Scratch of [`Self::answer`] (a batch keeps one per datagram instead).
    #[cfg(any(test, feature = "testing"))]
    lowered: Vec<u8>,
}

impl Direct {
    /// A direct answerer for the zones and TTLs of `authority`.
    pub fn new(authority: &Authority) -> Self {
        Self {
            names: ZoneNames::new(authority),
            authority: authority.clone(),
            writer: WireWriter::default(),
            #[cfg(any(test, feature = "testing"))]
            lowered: Vec::with_capacity(256),
        }
    }

    /// Writes the response to `request` into `out` and says what it was; `None` (and `out`
    /// untouched) when the general path must answer. Every stage, for this one question (a
    /// test seam: a batch takes the stages itself).
    #[cfg(any(test, feature = "testing"))]
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

#[cfg(test)]
mod tests;
