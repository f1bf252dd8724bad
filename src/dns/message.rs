//! From request bytes to response bytes: header checks, EDNS, size limits, truncation.
//!
//! ```text
//!  bytes -> header readable? -- no --> drop
//!        -> a response?      -- yes -> drop (no reflection)
//!        -> body parses?     -- no --> FORMERR (header only)
//!        -> name compressed? -- yes -> FORMERR (header and OPT, no question)
//!        -> EDNS version 0?  -- no --> BADVERS
//!        -> opcode QUERY?    -- no --> NOTIMP
//!        -> one question?    -- no --> FORMERR
//!        -> class IN?        -- no --> REFUSED
//!        -> answer rules (answer/) -> encode to fit (fit.rs, R12) -> bytes
//! ```
//!
//! A request that carries a TSIG (RFC 8945) is checked first (`tsig.rs`): one signed with the
//! configured key is answered as above and the answer signed (leaving room for the TSIG
//! record); any other signed request gets NOTAUTH with the TSIG error (BADKEY when no key is
//! configured). A Knot secondary with a key signs its SOA checks, so they take this path.
//!
//! Parsing uses hickory-server's `Request` (which keeps the question's original bytes, so the
//! question is echoed exactly as sent, case included) and encoding hickory-proto's
//! `emit_message_parts`, with the question's name offered for compression (`EchoedQuestion`). A
//! question name with a compression pointer is not echoed: the pointer would lead elsewhere in
//! the response, which then would not parse.
//!
//! Invariants (R12): a UDP answer fits 512 bytes, or the client's EDNS size capped by config;
//! additional records are dropped first, TC is set only when answer records had to go, and then
//! whole RRsets are dropped; a TCP answer is complete up to 65535 bytes. The OPT record is kept
//! whenever the client sent one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::ProtoError;
use hickory_proto::op::{
    Edns, EmitAndCount, Header, MessageType, Metadata, OpCode, ResponseCode, emit_message_parts,
};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncoder, NameEncoding};
use hickory_server::net::xfer::Protocol as WireProtocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::Queries;

use super::answer::{Answer, Authority};
use super::fit::{Cuttable, cut_to_fit};
use super::transfer::TransferSettings;
use super::tsig::{self, Checked};
use super::wire::reader::name_end;
use crate::index::Index;
pub use crate::metrics::Transport;
use crate::metrics::{Metrics, QueryOutcome};

/// Plain DNS (RFC 1035) UDP limit.
const CLASSIC_UDP_LIMIT: usize = 512;

/// The largest UDP response for a client that offered `offered` bytes in its OPT record (or
/// sent none), with our own offer capped at `max_udp_payload` (R12).
pub(crate) fn udp_limit(offered: Option<u16>, max_udp_payload: u16) -> usize {
    offered.map_or(CLASSIC_UDP_LIMIT, |offered| {
        usize::from(offered.clamp(512, max_udp_payload.max(512)))
    })
}

/// Answers raw DNS messages from an [`Index`].
#[derive(Clone, Debug)]
pub struct Responder {
    authority: Authority,
    index: Index,
    max_udp_payload: u16,
    metrics: Arc<Metrics>,
    /// Who may transfer the zones; `None`: transfers are not configured (REFUSED, R13).
    transfers: Option<Arc<TransferSettings>>,
}

impl Responder {
    /// A responder serving `index` with the zones and TTLs of `authority`; UDP answers never
    /// exceed `max_udp_payload` bytes; every query is counted in `metrics`.
    pub fn new(
        authority: Authority,
        index: Index,
        max_udp_payload: u16,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            authority,
            index,
            max_udp_payload,
            metrics,
            transfers: None,
        }
    }

    /// This responder, with zone transfers served to the clients `settings` allow (R14).
    pub fn with_transfers(mut self, settings: TransferSettings) -> Self {
        self.transfers = Some(Arc::new(settings));
        self
    }

    /// Who may transfer the zones, when transfers are configured.
    pub fn transfers(&self) -> Option<&TransferSettings> {
        self.transfers.as_deref()
    }

    /// The answer rules' settings.
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The metrics every query is counted in (the transports add theirs).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The largest UDP response this responder sends (the EDNS size it offers).
    pub fn max_udp_payload(&self) -> u16 {
        self.max_udp_payload
    }

    /// The index this responder reads.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The response to `request`, or `None` when it must be dropped (no readable header, or
    /// not a query at all). Counts the query in the metrics.
    pub fn respond(
        &self,
        request: &[u8],
        src: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        let started = Instant::now();
        let key = self.transfers.as_ref().and_then(|t| t.key.as_ref());
        let (response, mut outcome) = match tsig::check_request(key, request) {
            Checked::Unsigned => self.answer_bytes(request, src, transport, false),
            Checked::Signed(signature) => {
                let (response, outcome) = self.answer_bytes(request, src, transport, true);
                let signed = response.zip(key).map(|(mut response, key)| {
                    signature.sign_first(key, &mut response);
                    response
                });
                (signed, outcome)
            }
            Checked::Failed { response, .. } => {
                let outcome = QueryOutcome {
                    qtype: None,
                    rcode: Some(ResponseCode::NotAuth),
                    truncated: false,
                    nodata: false,
                };
                (Some(response), outcome)
            }
        };
        outcome.truncated = response
            .as_ref()
            .is_some_and(|r| r.get(2).is_some_and(|b| b & 0x02 != 0));
        self.metrics.record(transport, outcome, started.elapsed());
        response
    }

    /// The answer to `request` (`signed`: it carries a verified TSIG, which its answer will).
    fn answer_bytes(
        &self,
        request: &[u8],
        src: SocketAddr,
        transport: Transport,
        signed: bool,
    ) -> (Option<Vec<u8>>, QueryOutcome) {
        let mut outcome = QueryOutcome {
            qtype: None,
            rcode: None,
            truncated: false,
            nodata: false,
        };
        let request = match read_request(request, src, transport) {
            Ok(request) => request,
            Err(unreadable) => {
                outcome.rcode = unreadable.as_ref().map(|_| ResponseCode::FormErr);
                return (unreadable, outcome);
            }
        };
        let edns = request.edns.as_ref().map(|_| {
            let mut edns = Edns::new();
            edns.set_max_payload(self.max_udp_payload);
            edns
        });
        let mut limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => udp_limit(
                request.edns.as_ref().map(Edns::max_payload),
                self.max_udp_payload,
            ),
        };
        if signed {
            limit -= tsig::ROOM.min(limit / 2); // room for the TSIG record the answer gets
        }
        if !is_uncompressed(&request.queries) {
            // Echoed as sent, a compression pointer would point at other bytes in the response.
            outcome.rcode = Some(ResponseCode::FormErr);
            let response = question_less(&request.metadata, edns.as_ref(), ResponseCode::FormErr);
            return (Some(response), outcome);
        }
        let reply = |rcode: ResponseCode, answer: Option<Answer>| {
            let answer = answer.unwrap_or_else(|| empty_answer(rcode));
            encode_to_fit(
                &request.queries,
                edns.as_ref(),
                &request.metadata,
                answer,
                limit,
            )
        };
        outcome.qtype = request.queries.queries().first().map(|q| q.query_type());
        if let Some(rcode) = refusal(&request) {
            outcome.rcode = Some(rcode);
            return (Some(reply(rcode, None)), outcome);
        }
        let Some(query) = request.queries.queries().first() else {
            return (Some(reply(ResponseCode::FormErr, None)), outcome);
        };
        let original = query.original();
        if let Some(answer) =
            self.ixfr_over_udp(original.name(), original.query_type(), src, signed)
        {
            outcome.rcode = Some(answer.rcode);
            return (Some(reply(answer.rcode, Some(answer))), outcome);
        }
        let answer = self
            .authority
            .answer(&self.index, original.name(), original.query_type());
        outcome.rcode = Some(answer.rcode);
        outcome.nodata = answer.rcode == ResponseCode::NoError && answer.answers.is_empty();
        (Some(reply(answer.rcode, Some(answer))), outcome)
    }
}

impl Responder {
    /// An IXFR over UDP from a client allowed to transfer, at a zone's apex: the current SOA
    /// alone (RFC 1995 section 2: the client is up to date, or retries over TCP), or NOTAUTH
    /// when a TSIG key is configured and the request is not signed with it; `None` for any
    /// other question (the rules answer it: REFUSED for a transfer).
    fn ixfr_over_udp(
        &self,
        qname: &Name,
        qtype: RecordType,
        src: SocketAddr,
        signed: bool,
    ) -> Option<Answer> {
        let settings = self.transfers.as_ref()?;
        let allowed = settings.allows(src.ip());
        if qtype != RecordType::IXFR || !allowed || !self.index.is_synced() {
            return None;
        }
        let zone = self.authority.zone_at(&qname.to_lowercase())?;
        if settings.key.is_some() && !signed {
            return Some(empty_answer(ResponseCode::NotAuth));
        }
        let mut soa = self
            .authority
            .soa(&self.index, self.authority.zone_name(zone));
        soa.name = qname.to_lowercase();
        Some(Answer {
            rcode: ResponseCode::NoError,
            authoritative: true,
            answers: vec![soa],
            authority: Vec::new(),
            additional: Vec::new(),
        })
    }
}

/// Parses a request; `Err(None)` when it must be dropped (no readable header, or a response:
/// no reflection), `Err(Some(FORMERR header))` when its body does not parse.
fn read_request(
    bytes: &[u8],
    src: SocketAddr,
    transport: Transport,
) -> Result<Request, Option<Vec<u8>>> {
    let Ok(header) = Header::read(&mut BinDecoder::new(bytes)) else {
        return Err(None);
    };
    if header.metadata.message_type == MessageType::Response {
        return Err(None);
    }
    let protocol = match transport {
        Transport::Udp => WireProtocol::Udp,
        Transport::Tcp => WireProtocol::Tcp,
    };
    Request::from_bytes(bytes.to_vec(), src, protocol)
        .map_err(|_| Some(header_only(&header.metadata, ResponseCode::FormErr)))
}

/// The rcode a parsed request gets before any answer rule (R10): BADVERS for an EDNS version
/// other than 0, NOTIMP for an opcode other than QUERY, FORMERR for other than one question,
/// REFUSED for a class other than IN; `None` for a question the rules answer.
fn refusal(request: &Request) -> Option<ResponseCode> {
    let queries = request.queries.queries();
    if request.edns.as_ref().is_some_and(|e| e.version() != 0) {
        Some(ResponseCode::BADVERS)
    } else if request.metadata.op_code != OpCode::Query {
        Some(ResponseCode::NotImp)
    } else if queries.len() != 1 {
        Some(ResponseCode::FormErr)
    } else if queries[0].query_class() != DNSClass::IN {
        Some(ResponseCode::Refused)
    } else {
        None
    }
}

fn empty_answer(rcode: ResponseCode) -> Answer {
    Answer {
        rcode,
        authoritative: false,
        answers: Vec::new(),
        authority: Vec::new(),
        additional: Vec::new(),
    }
}

fn response_metadata(request: &Metadata, answer: &Answer) -> Metadata {
    let mut metadata = Metadata::new(request.id, MessageType::Response, request.op_code);
    metadata.authoritative = answer.authoritative;
    metadata.recursion_desired = request.recursion_desired;
    metadata.recursion_available = false;
    metadata.checking_disabled = request.checking_disabled;
    metadata.response_code = answer.rcode;
    metadata
}

/// Encodes `answer` within `limit` bytes, cut by the R12 rule ([`cut_to_fit`]); a response
/// that cannot fit even without its answers is SERVFAIL, header only.
fn encode_to_fit(
    queries: &Queries,
    edns: Option<&Edns>,
    request: &Metadata,
    answer: Answer,
    limit: usize,
) -> Vec<u8> {
    let mut encoding = Encoding {
        queries,
        edns,
        metadata: response_metadata(request, &answer),
        answer,
        encoded: None,
    };
    if cut_to_fit(&mut encoding, limit)
        && let Some(Ok(bytes)) = encoding.encoded
    {
        return bytes;
    }
    header_only(request, ResponseCode::ServFail)
}

/// A response as hickory records, encoded when measured.
struct Encoding<'a> {
    queries: &'a Queries,
    edns: Option<&'a Edns>,
    metadata: Metadata,
    answer: Answer,
    /// The encoding of the current sections, once measured.
    encoded: Option<Result<Vec<u8>, ()>>,
}

impl Cuttable for Encoding<'_> {
    fn size(&mut self) -> usize {
        let (queries, edns, metadata) = (self.queries, self.edns, self.metadata);
        let answer = &self.answer;
        let encoded = self
            .encoded
            .get_or_insert_with(|| encode(queries, edns, metadata, answer));
        encoded.as_ref().map_or(usize::MAX, Vec::len)
    }

    fn drop_additional(&mut self) {
        self.answer.additional.clear();
        self.encoded = None;
    }

    fn drop_last_answer_rrset(&mut self) -> bool {
        if self.answer.answers.is_empty() {
            return false;
        }
        self.metadata.truncation = true;
        self.answer.authority.clear();
        pop_last_rrset(&mut self.answer.answers);
        self.encoded = None;
        true
    }
}

/// Removes the last RRset (same owner, type and class as the last record) from `records`.
fn pop_last_rrset(records: &mut Vec<Record>) {
    let Some(last) = records.last() else { return };
    let (name, rtype, class) = (last.name.clone(), last.record_type(), last.dns_class);
    records.retain(|r| !(r.record_type() == rtype && r.dns_class == class && r.name == name));
}

fn encode(
    queries: &Queries,
    edns: Option<&Edns>,
    metadata: Metadata,
    answer: &Answer,
) -> Result<Vec<u8>, ()> {
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    let mut question = EchoedQuestion {
        raw: queries.as_bytes(),
        count: queries.queries().len(),
    };
    let emitted = emit_message_parts(
        &metadata,
        &mut question,
        &mut answer.answers.iter(),
        &mut answer.authority.iter(),
        &mut answer.additional.iter(),
        edns,
        None,
        &mut encoder,
    );
    match emitted {
        Ok(_) => Ok(bytes),
        Err(error) => {
            tracing::debug!(%error, "cannot encode response");
            Err(())
        }
    }
}

/// The question section, echoed as sent, with its name's suffixes offered for compression.
///
/// hickory-server stores the echoed question as one compression candidate that includes its
/// type and class, which no name ever equals, so the first answer's owner was written in full.
/// Here each suffix of a single question's name is a candidate, stored as if the name had been
/// written in lowercase: answers name things in lowercase, so they point at the question
/// whatever case the client used (and read back in the client's case, as from Knot or BIND).
/// `wire/writer.rs` stores the same candidates in the same order for the direct path.
pub(crate) struct EchoedQuestion<'a> {
    /// The question section as received.
    pub(crate) raw: &'a [u8],
    /// How many questions it holds.
    pub(crate) count: usize,
}

impl EmitAndCount for EchoedQuestion<'_> {
    fn emit(&mut self, encoder: &mut BinEncoder<'_>) -> Result<usize, ProtoError> {
        let start = encoder.offset();
        let labels_end = (self.count == 1)
            .then(|| question_labels_end(self.raw))
            .flatten()
            .filter(|_| matches!(encoder.name_encoding(), NameEncoding::Compressed));
        if let Some(end) = labels_end {
            // The encoder stores a candidate by copying the bytes written at its position:
            // write the name lowercase, store its suffixes, then write it over as sent.
            encoder.emit_vec(&self.raw.to_ascii_lowercase())?;
            let mut label = 0;
            while label < end {
                encoder.store_label_pointer(start + label, start + end);
                label += 1 + usize::from(self.raw[label]);
            }
            encoder.set_offset(start);
        }
        encoder.emit_vec(self.raw)?;
        Ok(self.count)
    }
}

/// Where the labels of the question name at the start of `raw` end (its root byte), when the
/// name is uncompressed and complete.
fn question_labels_end(raw: &[u8]) -> Option<usize> {
    name_end(raw, 0).map(|end| end - 1)
}

/// A response with only a header (used when the question cannot be read).
fn header_only(request: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    question_less(request, None, rcode)
}

/// A response with a header and the OPT record when given, but no question.
fn question_less(request: &Metadata, edns: Option<&Edns>, rcode: ResponseCode) -> Vec<u8> {
    let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
        return Vec::new();
    };
    let answer = empty_answer(rcode);
    let metadata = response_metadata(request, &answer);
    encode(&queries, edns, metadata, &answer).unwrap_or_default()
}

/// Whether no question name uses a compression pointer. The question is echoed byte for
/// byte, and a pointer in it can only point into the request's header (which the response
/// does not repeat) or into another question, so only uncompressed questions can be echoed.
fn is_uncompressed(queries: &Queries) -> bool {
    let bytes = queries.as_bytes();
    let mut at = 0;
    for _ in queries.queries() {
        match name_end(bytes, at) {
            Some(end) => at = end + 4, // type and class
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::udp_limit;

    #[test]
    fn udp_limit_follows_the_client_within_512_and_our_cap() {
        assert_eq!(udp_limit(None, 1232), 512, "no OPT: RFC 1035's 512");
        assert_eq!(udp_limit(Some(100), 1232), 512, "below 512 counts as 512");
        assert_eq!(udp_limit(Some(900), 1232), 900);
        assert_eq!(udp_limit(Some(4096), 1232), 1232, "capped by our offer");
        assert_eq!(
            udp_limit(Some(4096), 100),
            512,
            "a cap below 512 cannot panic"
        );
    }
}
