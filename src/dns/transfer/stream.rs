//! One admitted transfer, as the messages to send: the snapshot's SOA, the zone's records part
//! by part, the SOA again (RFC 5936 section 2.2), packed into messages of at most
//! [`MAX_MESSAGE`] bytes.
//!
//! Invariants: at most one part of the zone is held at a time, besides the records not yet
//! sent; every message fits a TCP frame (records are counted at their uncompressed size, and
//! compression only shrinks them); the first message alone carries the question; a record is
//! sent once, in order.

use std::collections::VecDeque;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::BinEncodable;

use super::TransferKind;
use crate::dns::answer::{Authority, ZoneId};
use crate::index::{Index, Snapshot};

/// The largest message a transfer sends: a TCP frame's 65535 bytes.
pub const MAX_MESSAGE: usize = u16::MAX as usize;
/// A DNS header's bytes.
const HEADER: usize = 12;

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The opening SOA is not sent yet.
    Opening,
    /// Listing the zone's parts from `next_part`.
    Listing,
    /// Every part listed; the closing SOA is queued.
    Closing,
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
    snapshot: Snapshot,
    /// An IXFR from the current serial: the SOA alone answers it.
    up_to_date: bool,
    stage: Stage,
    next_part: usize,
    /// Records listed but not sent yet.
    pending: VecDeque<Record>,
    /// Records sent so far.
    records: u64,
}

impl TransferStream {
    pub(super) fn new(
        id: u16,
        query: Query,
        kind: TransferKind,
        zone: ZoneId,
        snapshot: Snapshot,
        up_to_date: bool,
    ) -> Self {
        Self {
            id,
            query,
            kind,
            zone,
            snapshot,
            up_to_date,
            stage: Stage::Opening,
            next_part: 0,
            pending: VecDeque::new(),
            records: 0,
        }
    }

    /// AXFR or IXFR.
    pub fn kind(&self) -> TransferKind {
        self.kind
    }

    /// The serial transferred.
    pub fn serial(&self) -> u32 {
        self.snapshot.serial
    }

    /// Records sent so far (both SOAs included).
    pub fn records_sent(&self) -> u64 {
        self.records
    }

    /// The next message to send, or `None` when the transfer is complete.
    pub fn next_message(&mut self, authority: &Authority, index: &Index) -> Option<Vec<u8>> {
        if self.stage == Stage::Done {
            return None;
        }
        let mut message = Message::new(self.id, MessageType::Response, OpCode::Query);
        message.metadata.authoritative = true;
        let mut budget = MAX_MESSAGE - HEADER;
        if self.stage == Stage::Opening {
            budget = budget.saturating_sub(encoded_len(&self.query));
            message.queries.push(self.query.clone());
            let soa = self.soa(authority);
            self.pending.push_back(soa);
            self.stage = match self.up_to_date {
                true => Stage::Closing,
                false => Stage::Listing,
            };
        }
        loop {
            if self.pending.is_empty() && !self.refill(authority, index) {
                self.stage = Stage::Done;
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
            Ok(bytes) => Some(bytes),
            Err(error) => {
                tracing::warn!(%error, "cannot encode a zone transfer message");
                self.stage = Stage::Done;
                None
            }
        }
    }

    /// Queues the next part's records (or the closing SOA); `false` when nothing is left.
    fn refill(&mut self, authority: &Authority, index: &Index) -> bool {
        match self.stage {
            Stage::Listing => {
                match authority.zone_part(index, &self.snapshot, self.zone, self.next_part) {
                    Some(records) => {
                        self.next_part += 1;
                        self.pending.extend(records);
                    }
                    None => {
                        let soa = self.soa(authority);
                        self.pending.push_back(soa);
                        self.stage = Stage::Closing;
                    }
                }
                true
            }
            Stage::Opening | Stage::Closing | Stage::Done => false,
        }
    }

    fn soa(&self, authority: &Authority) -> Record {
        authority.soa_at(authority.zone_name(self.zone), self.snapshot.serial)
    }
}

/// The uncompressed size of `item` on the wire (an upper bound of its size in a message).
fn encoded_len(item: &impl BinEncodable) -> usize {
    item.to_bytes().map_or(MAX_MESSAGE, |bytes| bytes.len())
}
