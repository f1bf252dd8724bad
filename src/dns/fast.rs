//! The replay cache: answers the general path already encoded, replayed from a worker-local
//! cache with the request's ID, flags and question patched in. It serves what the direct path
//! (`direct/`) does not take: PTR, ClusterIP and ExternalName Services, the apex.
//!
//! ```text
//!  datagram -> plain query?  -- no --> general path (message.rs)
//!           -> index synced, cache at the index's serial (else cleared)?
//!           -> hit: copy bytes, patch ID / RD / CD / question  --> send
//!           -> miss: general path --> store under the serial read *before* it ran --> send
//! ```
//!
//! Why replaying is exact: the general path's response depends on the question only through its
//! lowercased name, type, class and the client's UDP size, plus the RD and CD bits it copies,
//! and the echoed question itself. Answer owners are written lowercase and point into the
//! question by comparing it in lowercase (message.rs's `EchoedQuestion`), so where the pointers
//! go does not depend on the client's case; what they point at is the question, which a replay
//! patches. The key holds all of those but the bits, which are patched too.
//!
//! Invariants:
//! - a cached response is served only while the index's serial equals the serial read before
//!   it was computed, so no change to the index can leave a stale answer (the writer bumps the
//!   serial after publishing);
//! - only plain queries take this path: one question, no answer or authority records, at most
//!   an OPT record without options, version 0; anything else goes to the general path;
//! - the cache is owned by one receive loop: no lock, no sharing; it is bounded.

use std::collections::HashMap;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::metrics::QueryOutcome;

/// Entries kept per receive loop before the cache starts over.
pub const DEFAULT_CAPACITY: usize = 8192;

const HEADER_LEN: usize = 12;
/// Request header bits the response copies: RD (byte 2) and CD (byte 3).
const RD: u8 = 0x01;
const CD: u8 = 0x10;

/// Longest key: a question (name of at most 255 bytes, type, class) and the EDNS marker.
const MAX_KEY: usize = 255 + 4 + 3;

/// A plain query's shape, read without allocating.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plain<'a> {
    /// Question bytes (name, type, class) as sent.
    pub question: &'a [u8],
    /// The UDP size offered by the client's OPT record, when it sent one.
    pub edns_payload: Option<u16>,
}

/// Reads `request` as a plain query, or `None` for anything the general path must see.
pub(crate) fn plain(request: &[u8]) -> Option<Plain<'_>> {
    let header = request.get(..HEADER_LEN)?;
    let flags = header[2];
    // QR clear, opcode QUERY, TC clear; rcode and Z clear.
    if flags & 0xfa != 0 || header[3] & 0x4f != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([header[i], header[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let name_end = name_end(request, HEADER_LEN)?;
    let question_end = name_end + 4;
    let question = request.get(HEADER_LEN..question_end)?;
    let edns_payload = match count(10) {
        0 => None,
        _ => Some(empty_opt(request.get(question_end..)?)?),
    };
    if edns_payload.is_none() && request.len() != question_end {
        return None;
    }
    Some(Plain {
        question,
        edns_payload,
    })
}

/// End offset of an uncompressed name starting at `start`.
fn name_end(message: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    loop {
        let length = usize::from(*message.get(at)?);
        if length == 0 {
            return (at + 1 - start <= 255).then_some(at + 1);
        }
        if length > 63 {
            return None; // a pointer or an extended label type
        }
        at += 1 + length;
    }
}

/// The UDP size of an OPT record that is exactly the rest of the message, has the root name,
/// version 0 and no options.
fn empty_opt(record: &[u8]) -> Option<u16> {
    let [0, 0, 41, hi, lo, _ext_rcode, 0, _do_z, _z, 0, 0] = *record else {
        return None;
    };
    Some(u16::from_be_bytes([hi, lo]))
}

/// What identifies a response up to ID, RD, CD and the question's case, written into `buffer`
/// (no allocation on a lookup): the question ASCII-lowercased, then `0` without OPT or `1` and
/// the UDP size the client offered.
fn key_of<'b>(plain: &Plain<'_>, buffer: &'b mut [u8; MAX_KEY]) -> &'b [u8] {
    let question = plain.question;
    buffer[..question.len()].copy_from_slice(question);
    buffer[..question.len()].make_ascii_lowercase();
    let mut end = question.len();
    match plain.edns_payload {
        None => {
            buffer[end] = 0;
            end += 1;
        }
        Some(payload) => {
            buffer[end] = 1;
            buffer[end + 1..end + 3].copy_from_slice(&payload.to_be_bytes());
            end += 3;
        }
    }
    &buffer[..end]
}

/// One receive loop's cache of encoded responses.
#[derive(Debug)]
pub struct AnswerCache {
    entries: HashMap<Box<[u8]>, Box<[u8]>>,
    serial: u32,
    capacity: usize,
}

impl AnswerCache {
    /// An empty cache holding at most `capacity` responses.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::with_capacity(capacity.min(1024)),
            serial: 0,
            capacity,
        }
    }

    /// Aligns the cache with the index's `serial` (clearing it when the index changed) and
    /// returns the serial to store misses under. Call before running the general path.
    pub fn sync(&mut self, serial: u32) -> u32 {
        if self.serial != serial {
            self.entries.clear();
            self.serial = serial;
        }
        serial
    }

    /// Writes the cached response to `request` into `out`, patched; false on a miss or for a
    /// request the fast path does not take.
    pub fn answer(&self, request: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(plain) = plain(request) else {
            return false;
        };
        let mut key = [0u8; MAX_KEY];
        let Some(cached) = self.entries.get(key_of(&plain, &mut key)) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(cached);
        patch(out, request, plain.question.len());
        true
    }

    /// Keeps `response` (the general path's answer to `request`, computed after
    /// [`Self::sync`] returned `serial`) if the request is a plain query.
    pub fn store(&mut self, request: &[u8], response: &[u8], serial: u32) {
        if serial != self.serial || response.len() < HEADER_LEN {
            return;
        }
        let Some(plain) = plain(request) else {
            return;
        };
        if self.entries.len() >= self.capacity {
            self.entries.clear();
        }
        let mut key = [0u8; MAX_KEY];
        self.entries
            .insert(key_of(&plain, &mut key).into(), response.into());
    }

    /// Number of cached responses.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// What a replayed response was, for the metrics (read from its bytes).
pub fn outcome_of(response: &[u8]) -> QueryOutcome {
    let byte = |i: usize| response.get(i).copied().unwrap_or(0);
    let qtype = name_end(response, HEADER_LEN).and_then(|end| {
        Some(u16::from_be_bytes([
            *response.get(end)?,
            *response.get(end + 1)?,
        ]))
    });
    let rcode = ResponseCode::from(0, byte(3) & 0x0f);
    let answers = u16::from_be_bytes([byte(6), byte(7)]);
    QueryOutcome {
        qtype: qtype.map(RecordType::from),
        rcode: Some(rcode),
        truncated: byte(2) & 0x02 != 0,
        nodata: rcode == ResponseCode::NoError && answers == 0,
    }
}

/// Puts the request's ID, RD and CD bits and question bytes into a cached response.
fn patch(response: &mut [u8], request: &[u8], question_len: usize) {
    response[0] = request[0];
    response[1] = request[1];
    response[2] = (response[2] & !RD) | (request[2] & RD);
    response[3] = (response[3] & !CD) | (request[3] & CD);
    let question = HEADER_LEN..HEADER_LEN + question_len;
    response[question.clone()].copy_from_slice(&request[question]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &[u8], opt: Option<&[u8]>) -> Vec<u8> {
        let mut message = vec![
            0xab,
            0xcd,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        message.extend_from_slice(name);
        message.extend_from_slice(&[0, 1, 0, 1]);
        if let Some(opt) = opt {
            message.extend_from_slice(opt);
        }
        message
    }

    const NAME: &[u8] = b"\x05KuBiA\x07default\x03svc\x00";
    const OPT: &[u8] = &[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn plain_queries_are_recognised() {
        assert!(plain(&query(NAME, None)).is_some());
        let with_opt = query(NAME, Some(OPT));
        assert_eq!(plain(&with_opt).unwrap().edns_payload, Some(1232));
        let mut notify = query(NAME, None);
        notify[2] |= 0x20; // opcode 4
        assert!(plain(&notify).is_none());
        let mut response = query(NAME, None);
        response[2] |= 0x80;
        assert!(plain(&response).is_none());
        let option = [0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 4, 0, 10, 0, 0];
        assert!(
            plain(&query(NAME, Some(&option))).is_none(),
            "options go the general way"
        );
        let version1 = [0, 0, 41, 0x04, 0xd0, 0, 1, 0, 0, 0, 0];
        assert!(plain(&query(NAME, Some(&version1))).is_none());
        assert!(
            plain(&query(b"\xc0\x0c", None)).is_none(),
            "compressed question"
        );
        let mut trailing = query(NAME, None);
        trailing.push(0);
        assert!(plain(&trailing).is_none());
        assert!(plain(&query(NAME, None)[..20]).is_none());
    }

    #[test]
    fn keys_ignore_case_and_patching_restores_it() {
        let lower = query(b"\x05kubia\x07default\x03svc\x00", None);
        let mixed = query(NAME, None);
        let (mut a, mut b) = ([0u8; MAX_KEY], [0u8; MAX_KEY]);
        assert_eq!(
            key_of(&plain(&lower).unwrap(), &mut a),
            key_of(&plain(&mixed).unwrap(), &mut b)
        );
        let mut cache = AnswerCache::new(4);
        let serial = cache.sync(7);
        let mut response = lower.clone();
        response[2] = 0x84; // QR AA, RD clear
        response.extend_from_slice(b"answers");
        cache.store(&lower, &response, serial);
        let mut out = Vec::new();
        let mut asked = mixed.clone();
        asked[0] = 0x11;
        asked[3] |= CD;
        assert!(cache.answer(&asked, &mut out));
        assert_eq!(&out[..2], &[0x11, 0xcd]);
        assert_eq!(out[2], 0x85, "RD copied from the request");
        assert_eq!(out[3] & CD, CD);
        assert_eq!(&out[12..12 + NAME.len()], NAME, "question echoed as sent");
        assert!(out.ends_with(b"answers"));
    }

    #[test]
    fn a_new_serial_empties_the_cache_and_stale_stores_are_refused() {
        let request = query(NAME, None);
        let mut cache = AnswerCache::new(4);
        let old = cache.sync(1);
        cache.store(&request, &request, old);
        assert_eq!(cache.len(), 1);
        cache.sync(2);
        assert!(cache.is_empty());
        cache.store(&request, &request, old);
        assert!(cache.is_empty(), "computed before the change: not kept");
        let mut out = Vec::new();
        assert!(!cache.answer(&request, &mut out));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = AnswerCache::new(2);
        let serial = cache.sync(1);
        for label in [b"\x01a\x00", b"\x01b\x00", b"\x01c\x00"] {
            cache.store(&query(label, None), &[0; 12], serial);
        }
        assert!(cache.len() <= 2);
    }
}
