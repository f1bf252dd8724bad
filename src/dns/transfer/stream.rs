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
use hickory_proto::rr::Record;
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
            let Some(size) = self.pending.front().map(encoded_len) else {
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

/// The uncompressed size of `item` on the wire (an upper bound of its size in a message).
fn encoded_len(item: &impl BinEncodable) -> usize {
    item.to_bytes().map_or(MAX_MESSAGE, |bytes| bytes.len())
}
