//! Zone transfers (R14): AXFR (RFC 5936) and IXFR (RFC 1995) over TCP, to the clients
//! `transfer.allow` lists.
//!
//! ```text
//!  tcp.rs: asks_transfer(message)? --no--> message.rs (AXFR/IXFR there are REFUSED)
//!            | yes (only when [transfer] is configured)
//!            v
//!  admit (this file): allowed peer? one IN question at a zone apex? synced?
//!            |  no: one error response (REFUSED, NOTAUTH, SERVFAIL, FORMERR)
//!            v  yes: Index::snapshot (one state, one serial)
//!  stream.rs: SOA, part after part of answer/zone.rs's records, SOA; each message <= 64 KiB
//! ```
//!
//! An IXFR whose serial is the current one (or newer) gets the current SOA alone (RFC 1995
//! section 2: the client is up to date); any other IXFR gets the whole zone in AXFR form, which
//! RFC 1995 section 4 allows a server without the asked history to send.
//!
//! With `transfer.tsig_key_file`, a request must also carry a valid TSIG with that key, and
//! every message of the answer is signed (`dns/tsig.rs`).
//!
//! Invariants: a client outside `allow` gets REFUSED and no record; a transfer lists the
//! records of one snapshot between two copies of that snapshot's SOA; nothing here decides a
//! record: `answer/zone.rs` asks the one rule engine for every name.

pub mod notify;
mod stream;

use std::net::{IpAddr, SocketAddr};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use ipnet::IpNet;

use super::answer::{Authority, ZoneId};
use super::tsig::{self, Checked, TsigKey};
use super::wire::reader::{HEADER_LEN, name_end};
use crate::index::{Index, serial_lt};
use stream::Body;
pub use stream::{MAX_MESSAGE, TransferStream};

/// Who may transfer the zones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransferSettings {
    /// Networks whose clients may AXFR and IXFR; empty: nobody.
    pub allow: Vec<IpNet>,
    /// The key transfer requests must be signed with (and NOTIFY is signed with), if any.
    pub key: Option<TsigKey>,
}

impl TransferSettings {
    /// Whether a client at `ip` may transfer (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.allow.iter().any(|network| network.contains(&ip))
    }
}

/// The kind of transfer asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// AXFR: the whole zone.
    Axfr,
    /// IXFR from the client's serial.
    Ixfr,
}

impl TransferKind {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            TransferKind::Axfr => "axfr",
            TransferKind::Ixfr => "ixfr",
        }
    }
}

/// Whether `request` is a QUERY whose one question asks AXFR or IXFR, read in place (it may
/// still be malformed further on: [`admit`] parses it whole).
pub fn asks_transfer(request: &[u8]) -> Option<TransferKind> {
    let header = request.get(..HEADER_LEN)?;
    let query_opcode = header[2] & 0xf8 == 0; // QR clear, opcode QUERY
    if !query_opcode || u16::from_be_bytes([header[4], header[5]]) != 1 {
        return None;
    }
    let end = name_end(request, HEADER_LEN)?;
    let qtype = request.get(end..end + 2)?;
    match u16::from_be_bytes([qtype[0], qtype[1]]) {
        252 => Some(TransferKind::Axfr),
        251 => Some(TransferKind::Ixfr),
        _ => None,
    }
}

/// Decides a transfer request from `peer`: the transfer to stream, or the one response that
/// refuses it. With a key configured the request must be signed with it (else NOTAUTH, with
/// the TSIG error when it was signed otherwise) and everything sent back is signed.
pub fn admit(
    authority: &Authority,
    index: &Index,
    settings: &TransferSettings,
    request: &[u8],
    peer: SocketAddr,
) -> Result<TransferStream, Vec<u8>> {
    let signature = match tsig::check_request(settings.key.as_ref(), request) {
        Checked::Failed { response, .. } => return Err(response),
        Checked::Unsigned if settings.key.is_some() => return Err(tsig::refusal(request)),
        Checked::Unsigned => None,
        Checked::Signed(signature) => Some(signature),
    };
    let mut signer = signature
        .zip(settings.key.clone())
        .map(|(signature, key)| signature.chain(key));
    match admit_verified(authority, index, settings, request, peer) {
        Ok(stream) => Ok(stream.signed_by(signer)),
        Err(mut refusal) => {
            if let Some(signer) = &mut signer {
                signer.sign(&mut refusal);
            }
            Err(refusal)
        }
    }
}

/// [`admit`] once the request's signature (if any) is accepted.
fn admit_verified(
    authority: &Authority,
    index: &Index,
    settings: &TransferSettings,
    request: &[u8],
    peer: SocketAddr,
) -> Result<TransferStream, Vec<u8>> {
    let message = Message::from_vec(request).map_err(|_| error_header(request))?;
    let refuse = |rcode| Err(error_response(&message, rcode));
    let [query] = message.queries.as_slice() else {
        return refuse(ResponseCode::FormErr);
    };
    let kind = match query.query_type() {
        RecordType::AXFR => TransferKind::Axfr,
        RecordType::IXFR => TransferKind::Ixfr,
        _ => return refuse(ResponseCode::FormErr),
    };
    if !settings.allows(peer.ip()) || query.query_class() != DNSClass::IN {
        return refuse(ResponseCode::Refused);
    }
    let name = query.name().to_lowercase();
    let Some(zone) = authority.zone_at(&name) else {
        // Inside a zone but not at its apex: we are not the authority for such a zone.
        let inside = super::name::parse(&name, &authority.zones, &authority.reverse_zones)
            != super::name::Parsed::Outside;
        return refuse(match inside {
            true => ResponseCode::NotAuth,
            false => ResponseCode::Refused,
        });
    };
    if !index.is_synced() {
        return refuse(ResponseCode::ServFail); // no complete state to hand out yet (R11)
    }
    let client_serial = match kind {
        TransferKind::Ixfr => match client_soa_serial(&message) {
            Some(serial) => Some(serial),
            None => return refuse(ResponseCode::FormErr), // RFC 1995: the SOA is required
        },
        TransferKind::Axfr => None,
    };
    let body = match client_serial {
        Some(serial) => incremental(authority, index, zone, serial),
        None => None,
    };
    let body =
        body.unwrap_or_else(|| Body::Full(index.snapshot(matches!(zone, ZoneId::Reverse(_)))));
    Ok(TransferStream::new(
        message.metadata.id,
        query.clone(),
        kind,
        zone,
        body,
    ))
}

/// The answer to an IXFR from `client_serial`: the SOA alone when the client is current (or
/// ahead), the condensed changes when the history reaches back to its serial; `None` (a full
/// transfer) otherwise.
fn incremental(
    authority: &Authority,
    index: &Index,
    zone: ZoneId,
    client_serial: u32,
) -> Option<Body> {
    let current = index.serial();
    if !serial_lt(client_serial, current) {
        return Some(Body::UpToDate(current));
    }
    let (serial, changes) = index.changes_since(client_serial)?;
    let (deleted, added) = authority.zone_difference(index, zone, &changes);
    let name = authority.zone_name(zone);
    let mut records = Vec::with_capacity(deleted.len() + added.len() + 4);
    records.push(authority.soa_at(name, serial));
    records.push(authority.soa_at(name, client_serial));
    records.extend(deleted);
    records.push(authority.soa_at(name, serial));
    records.extend(added);
    records.push(authority.soa_at(name, serial));
    Some(Body::Incremental { serial, records })
}

/// The serial of the SOA an IXFR request carries in its authority section.
fn client_soa_serial(message: &Message) -> Option<u32> {
    message
        .authorities
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
}

/// A response to `request` with its question and `rcode`, no records.
fn error_response(request: &Message, rcode: ResponseCode) -> Vec<u8> {
    let mut response = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    response.metadata.response_code = rcode;
    response.metadata.recursion_desired = request.metadata.recursion_desired;
    response.queries = request.queries.clone();
    response.to_vec().unwrap_or_default()
}

/// A FORMERR header for a request that does not parse (its ID, when it has one).
fn error_header(request: &[u8]) -> Vec<u8> {
    let id = request
        .get(..2)
        .map_or(0, |id| u16::from_be_bytes([id[0], id[1]]));
    let mut response = Message::new(id, MessageType::Response, OpCode::Query);
    response.metadata.response_code = ResponseCode::FormErr;
    response.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests;
