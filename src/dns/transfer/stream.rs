//! One admitted transfer, as the messages to send, packed into messages of at most
//! [`MAX_MESSAGE`] bytes: a full zone (the snapshot's SOA, the zone's records part by part,
//! the SOA again: RFC 5936 section 2.2), the SOA alone, or an incremental difference.
//!
//! Invariants: a full transfer holds at most one part of the zone at a time, besides the
//! records not yet sent; every message fits a TCP frame (records are counted at their
//! uncompressed size, and compression only shrinks them; a signed transfer keeps
//! [`tsig::ROOM`] free for the TSIG record); the first message alone carries the question; a
//! record is sent once, in order.

use std::collections::VecDeque;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, Record};
use hickory_proto::serialize::binary::BinEncodable;

use super::TransferKind;
use crate::dns::answer::{Authority, ZoneId};
use crate::dns::tsig::{self, ResponseChain};
use crate::index::{Index, Snapshot};

/// The largest message a transfer sends: a TCP frame's 65535 bytes.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// A DNS header's bytes.
const HEADER: usize = 12;

/// What a transfer sends between its question and its end.
#[derive(Debug)]
pub(super) enum Body {
    /// The whole zone from a snapshot, between two copies of its SOA (AXFR, or IXFR without
    /// the history asked).
    Full(Snapshot),
    /// The SOA at `serial` alone: the client is up to date (IXFR).
    UpToDate(u32),
    /// An incremental transfer to `serial`, its records in order (IXFR, RFC 1995 section 4:
    /// the new SOA, the old SOA, deletions, the new SOA, additions, the new SOA).
    Incremental {
        /// The serial transferred.
        serial: u32,
        /// Every record to send.
        records: Vec<Record>,
    },
}

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// A full transfer whose opening SOA is not queued yet.
    Opening,
    /// Listing the zone's parts from `next_part`.
    Listing,
    /// Everything is queued; sending what is left.
    Draining,
    /// Everything sent.
    Done,
}

/// The messages of one transfer, produced one at a time.
#[derive(Debug)]
pub struct TransferStream {
    id: u16,
    query: Query,
    kind: TransferKind,
    zone: ZoneId,
    serial: u32,
    /// The snapshot a full transfer lists.
    snapshot: Option<Snapshot>,
    stage: Stage,
    /// Whether the question was sent (in the first message only).
    asked: bool,
    next_part: usize,
    /// Records queued but not sent yet.
    pending: VecDeque<Record>,
    /// Records sent so far.
    records: u64,
    /// Signs each message when the request was signed.
    signer: Option<ResponseChain>,
}

impl TransferStream {
    pub(super) fn new(id: u16, query: Query, kind: TransferKind, zone: ZoneId, body: Body) -> Self {
        let mut stream = Self {
            id,
            query,
            kind,
            zone,
            serial: 0,
            snapshot: None,
            stage: Stage::Draining,
            asked: false,
            next_part: 0,
            pending: VecDeque::new(),
            records: 0,
            signer: None,
        };
        match body {
            Body::Full(snapshot) => {
                stream.serial = snapshot.serial;
                stream.snapshot = Some(snapshot);
                stream.stage = Stage::Opening;
            }
            Body::UpToDate(serial) => stream.serial = serial,
            Body::Incremental { serial, records } => {
                stream.serial = serial;
                stream.pending = records.into();
            }
        }
        stream
    }

    /// This transfer, each message signed by `signer` (when there is one).
    pub(super) fn signed_by(mut self, signer: Option<ResponseChain>) -> Self {
        self.signer = signer;
        self
    }

    /// AXFR or IXFR.
    pub fn kind(&self) -> TransferKind {
        self.kind
    }

    /// The serial transferred.
    pub fn serial(&self) -> u32 {
        self.serial
    }

    /// Records sent so far (the SOAs included).
    pub fn records_sent(&self) -> u64 {
        self.records
    }

    /// The next message to send, or `None` when the transfer is complete.
    pub fn next_message(&mut self, authority: &Authority, index: &Index) -> Option<Vec<u8>> {
        if self.stage == Stage::Done {
            return None;
        }
        if self.stage == Stage::Opening {
            let soa = self.soa(authority);
            self.pending.push_back(soa);
            self.stage = Stage::Listing;
        }
        if self.stage == Stage::Draining && self.pending.is_empty() && self.asked {
            self.stage = Stage::Done;
            return None;
        }
        if self.pending.is_empty() && !self.asked {
            // An up-to-date IXFR: its one record is the current SOA.
            let soa = self.soa(authority);
            self.pending.push_back(soa);
        }
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        let mut budget = MAX_MESSAGE - HEADER;
        if self.signer.is_some() {
            budget -= tsig::ROOM;
        }
        if !self.asked {
            budget = budget.saturating_sub(encoded_len(&self.query));
            message.queries.push(self.query.clone());
            self.asked = true;
        }
        loop {
            if self.pending.is_empty() && !self.refill(authority, index) {
                break;
            }
            let Some(size) = self.pending.front().map(record_len) else {
                continue;
            };
            if size > budget && !message.answers.is_empty() {
                break;
            }
            budget = budget.saturating_sub(size);
            message.answers.extend(self.pending.pop_front());
            self.records += 1;
        }
        match message.to_vec() {
            Ok(mut bytes) => {
                if let Some(signer) = &mut self.signer {
                    signer.sign(&mut bytes);
                }
                Some(bytes)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot encode a zone transfer message");
                self.stage = Stage::Done;
                None
            }
        }
    }

    /// Queues the next part's records (or the closing SOA); `false` when nothing is left.
    fn refill(&mut self, authority: &Authority, index: &Index) -> bool {
        if self.stage != Stage::Listing {
            return false;
        }
        let part = self
            .snapshot
            .as_ref()
            .and_then(|snapshot| authority.zone_part(index, snapshot, self.zone, self.next_part));
        match part {
            Some(records) => {
                self.next_part += 1;
                self.pending.extend(records);
            }
            None => {
                let soa = self.soa(authority);
                self.pending.push_back(soa);
                self.stage = Stage::Draining;
            }
        }
        true
    }

    fn soa(&self, authority: &Authority) -> Record {
        authority.soa_at(authority.zone_name(self.zone), self.serial)
    }
}

/// The size of `item` encoded alone (names compressed only against each other inside it): an
/// upper bound of its size in a message, where more names are there to point at.
fn encoded_len(item: &impl BinEncodable) -> usize {
    item.to_bytes().map_or(MAX_MESSAGE, |bytes| bytes.len())
}

/// An upper bound of a record's size in a message, counted without encoding it for the types a
/// zone is made of (every name uncompressed); [`encoded_len`] for any other type. Encoding each
/// record once to size it cost about a third of a full transfer.
fn record_len(record: &Record) -> usize {
    let rdata = match &record.data {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name_len(&srv.target),
        RData::PTR(ptr) => name_len(&ptr.0),
        RData::CNAME(cname) => name_len(&cname.0),
        RData::NS(ns) => name_len(&ns.0),
        RData::TXT(txt) => txt.txt_data.iter().map(|s| 1 + s.len()).sum(),
        _ => return encoded_len(record),
    };
    // Owner, type, class, TTL, RDLENGTH, RDATA.
    name_len(&record.name) + 10 + rdata
}

/// A name's uncompressed wire length: a length byte and the bytes of each label, the root.
fn name_len(name: &Name) -> usize {
    name.iter().map(|label| 1 + label.len()).sum::<usize>() + 1
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use hickory_proto::rr::rdata::{AAAA, CNAME, NS, PTR, SOA, SRV, TXT};
    use hickory_proto::serialize::binary::BinEncoder;

    use super::*;

    /// The record's size with no compression at all.
    fn uncompressed_len(record: &Record) -> usize {
        let mut bytes = Vec::new();
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_canonical_form(true);
        record.emit(&mut encoder).unwrap();
        bytes.len()
    }

    #[test]
    fn records_are_sized_as_uncompressed() {
        let name = |text: &str| Name::from_ascii(text).unwrap();
        let owner = name("web-0.web.live.svc.cluster.local.");
        let datas = [
            RData::A(Ipv4Addr::new(10, 0, 0, 1).into()),
            RData::AAAA(AAAA(Ipv6Addr::LOCALHOST)),
            RData::SRV(SRV::new(0, 50, 7000, owner.clone())),
            RData::PTR(PTR(owner.clone())),
            RData::CNAME(CNAME(name("db.example.com."))),
            RData::NS(NS(name("ns.dns.cluster.local."))),
            RData::TXT(TXT::new(vec!["a=1".into(), "x".repeat(255), String::new()])),
            RData::SOA(SOA::new(owner.clone(), owner.clone(), 7, 1, 2, 3, 4)),
        ];
        for data in datas {
            let record = Record::from_rdata(owner.clone(), 5, data);
            let counted = record_len(&record);
            assert!(counted >= encoded_len(&record), "{record}");
            if record.record_type() != hickory_proto::rr::RecordType::SOA {
                assert_eq!(counted, uncompressed_len(&record), "{record}");
            }
        }
    }
}
