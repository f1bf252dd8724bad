//! A DNS message writer whose name compression is, byte for byte, that of hickory-proto 0.26's
//! `BinEncoder` (which the general path uses), without its allocation per stored suffix.
//!
//! The direct path (`direct/`) writes responses with it, and the same-bytes tests compare
//! those with the general path's; so this module reproduces hickory's rule exactly, including
//! its limits:
//!
//! - a *compressed* name (owner names, SOA names) is written label by label; then each of its
//!   suffixes, longest first, is looked up among the stored candidates (same bytes, the first
//!   stored wins); the first hit replaces that suffix with a pointer, and every suffix looked up
//!   in vain before it is stored as a candidate;
//! - an *uncompressed* name (an SRV target, RFC 2782) is written whole and every suffix stored;
//! - a candidate is stored only while the message is shorter than `0x3FFF` bytes and fewer than
//!   [`CANDIDATE_LIMIT`] are stored; after [`COMPRESSED_NAME_LIMIT`] compressed names, names
//!   are written whole (their suffixes are still stored);
//! - the question section, echoed as sent, offers every suffix of its name, longest first, as
//!   candidates compared in lowercase (message.rs's `EchoedQuestion` stores them so in the
//!   general path): the answers' lowercase names point at it whatever case the client used.
//!
//! Names are given as plain labels followed by a suffix already in wire form (a zone, the
//! question's name), so callers build nothing per name.
//!
//! Invariants: a candidate is a position in the message whose name, read back with its
//! pointers followed, is the suffix as first written (writing a pointer only ever replaces a
//! tail with an equal name); pointers always point before the name being written, so reading
//! one back ends.

use super::reader::name_end;

/// Candidates hickory stores at most per message.
pub const CANDIDATE_LIMIT: usize = 64;
/// Names hickory compresses at most per message.
pub const COMPRESSED_NAME_LIMIT: usize = 120;
/// Longest name on the wire.
const MAX_NAME: usize = 255;

/// A name too long to write (over 255 bytes or a label over 63).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameTooLong;

/// A stored compression candidate: the suffix first written at `start`, `len` bytes long
/// uncompressed (labels with their length bytes, no root).
#[derive(Clone, Copy, Debug)]
struct Candidate {
    start: u16,
    len: u16,
    /// Whether the bytes at `start` are the whole suffix, with no pointer: the question's
    /// suffixes and those of a name written whole. Otherwise the suffix is read back following
    /// pointers.
    contiguous: bool,
    /// Whether the bytes are compared in lowercase (the question, echoed in the client's case).
    folded: bool,
}

/// Writes one message at a time into a reused buffer.
#[derive(Debug, Default)]
pub struct WireWriter {
    bytes: Vec<u8>,
    candidates: Vec<Candidate>,
    compressed_names: usize,
    /// The question's name labels in lowercase, and where the question starts in `bytes`:
    /// folded candidates are compared with this copy, as plain bytes.
    folded: Vec<u8>,
    folded_at: usize,
}

impl WireWriter {
    /// Starts a new message (keeps the buffers' capacity).
    pub fn reset(&mut self) {
        self.bytes.clear();
        self.candidates.clear();
        self.compressed_names = 0;
        self.folded.clear();
    }

    /// Current length.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing is written yet.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Appends raw bytes.
    pub fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }

    /// Appends a big-endian u16.
    pub fn put_u16(&mut self, value: u16) {
        self.put(&value.to_be_bytes());
    }

    /// Appends a big-endian u32.
    pub fn put_u32(&mut self, value: u32) {
        self.put(&value.to_be_bytes());
    }

    /// Overwrites a big-endian u16 at `at` (a header count, a record's data length).
    pub fn set_u16(&mut self, at: usize, value: u16) {
        if let Some(slot) = self.bytes.get_mut(at..at + 2) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }

    /// Appends the question section, echoed as sent (`question`: an uncompressed name, type
    /// and class), and stores each suffix of its name as a candidate compared in lowercase.
    pub fn question(&mut self, question: &[u8]) {
        let start = self.bytes.len();
        self.put(question);
        // The labels' end (the root byte); a name that does not end well offers nothing, as in
        // the general path.
        let Some(labels_end) = name_end(question, 0).map(|end| end - 1) else {
            return;
        };
        self.folded.clear();
        self.folded.extend_from_slice(&question[..labels_end]);
        self.folded.make_ascii_lowercase();
        self.folded_at = start;
        let mut label = 0;
        while label < labels_end {
            self.store_folded(start + label, start + labels_end);
            label += 1 + usize::from(question[label]);
        }
    }

    /// Appends a name with compression: `labels` (plain labels, each written after its length
    /// byte), then `suffix` (labels already in wire form, without the root).
    pub fn compressed_name(&mut self, labels: &[&[u8]], suffix: &[u8]) -> Result<(), NameTooLong> {
        self.name(labels, suffix, true)
    }

    /// Appends a name without compression, storing its suffixes (see [`Self::compressed_name`]).
    pub fn uncompressed_name(
        &mut self,
        labels: &[&[u8]],
        suffix: &[u8],
    ) -> Result<(), NameTooLong> {
        self.name(labels, suffix, false)
    }

    fn name(&mut self, labels: &[&[u8]], suffix: &[u8], compress: bool) -> Result<(), NameTooLong> {
        let begin = self.bytes.len();
        for label in labels {
            if label.is_empty() || label.len() > 63 {
                self.bytes.truncate(begin);
                return Err(NameTooLong);
            }
            self.bytes.push(label.len() as u8);
            self.put(label);
        }
        self.put(suffix);
        let end = self.bytes.len();
        if end + 1 - begin > MAX_NAME {
            // hickory would still write a too-long name that compresses; the caller's general
            // path decides instead.
            self.bytes.truncate(begin);
            return Err(NameTooLong);
        }
        let compress = compress && self.compressed_names < COMPRESSED_NAME_LIMIT;
        if compress {
            self.compressed_names += 1;
        }
        // Suffixes, longest first: each label starts right after the previous one. Suffixes
        // stored here stay contiguous unless a pointer ends the name.
        let first_stored = self.candidates.len();
        let mut start = begin;
        while start < end {
            if compress && let Some(pointer) = self.find(start, end) {
                self.bytes.truncate(start);
                self.put_u16(0xC000 | pointer);
                for candidate in &mut self.candidates[first_stored..] {
                    candidate.contiguous = false;
                }
                return Ok(());
            }
            self.store(start, end, true);
            start += 1 + usize::from(self.bytes[start]);
        }
        self.bytes.push(0);
        Ok(())
    }

    /// The first stored candidate with the bytes `bytes[start..end]` (uncompressed labels).
    fn find(&self, start: usize, end: usize) -> Option<u16> {
        let wanted = &self.bytes[start..end];
        self.candidates
            .iter()
            .find(|c| usize::from(c.len) == wanted.len() && self.candidate_is(c, wanted))
            .map(|c| c.start)
            .filter(|start| start & 0xC000 == 0)
    }

    /// Whether candidate `c`, read back from the message (following the pointers that later
    /// replaced its tail), is exactly `wanted`.
    fn candidate_is(&self, c: &Candidate, wanted: &[u8]) -> bool {
        let mut at = usize::from(c.start);
        if c.folded {
            // The question's suffixes: compared with its lowercase copy.
            let stored = at
                .checked_sub(self.folded_at)
                .and_then(|from| self.folded.get(from..from + wanted.len()));
            return stored == Some(wanted);
        }
        if c.contiguous {
            return self.bytes.get(at..at + wanted.len()) == Some(wanted);
        }
        let mut rest = wanted;
        while !rest.is_empty() {
            let Some(&length) = self.bytes.get(at) else {
                return false;
            };
            if length & 0xC0 == 0xC0 {
                let Some(&low) = self.bytes.get(at + 1) else {
                    return false;
                };
                at = usize::from(u16::from_be_bytes([length & 0x3F, low]));
                continue;
            }
            let label = 1 + usize::from(length);
            if rest.len() < label || self.bytes.get(at..at + label) != Some(&rest[..label]) {
                return false;
            }
            rest = &rest[label..];
            at += label;
        }
        true
    }

    fn store(&mut self, start: usize, end: usize, contiguous: bool) {
        self.push_candidate(start, end, contiguous, false);
    }

    fn store_folded(&mut self, start: usize, end: usize) {
        self.push_candidate(start, end, true, true);
    }

    fn push_candidate(&mut self, start: usize, end: usize, contiguous: bool, folded: bool) {
        if self.bytes.len() < 0x3FFF && self.candidates.len() < CANDIDATE_LIMIT {
            self.candidates.push(Candidate {
                start: start as u16,
                len: (end - start) as u16,
                contiguous,
                folded,
            });
        }
    }

    /// Appends a resource record of class IN: owner (compressed; `owner_labels` then
    /// `owner_suffix`, as for [`Self::compressed_name`]), type, TTL, and the data `rdata`
    /// writes, with its length filled in.
    pub fn record(
        &mut self,
        (owner_labels, owner_suffix): (&[&[u8]], &[u8]),
        rtype: u16,
        ttl: u32,
        rdata: impl FnOnce(&mut Self) -> Result<(), NameTooLong>,
    ) -> Result<(), NameTooLong> {
        self.compressed_name(owner_labels, owner_suffix)?;
        self.put_u16(rtype);
        self.put_u16(1);
        self.put_u32(ttl);
        let length_at = self.bytes.len();
        self.put_u16(0);
        rdata(self)?;
        let length = self.bytes.len() - length_at - 2;
        self.set_u16(length_at, length as u16);
        Ok(())
    }

    /// Appends an OPT record (root owner, no options) offering `payload` bytes.
    pub fn opt(&mut self, payload: u16) {
        // Written as hickory writes it: the root owner counts as a compressed name.
        if self.compressed_names < COMPRESSED_NAME_LIMIT {
            self.compressed_names += 1;
        }
        self.bytes.push(0);
        self.put_u16(41);
        self.put_u16(payload.max(512));
        self.put_u32(0);
        self.put_u16(0);
    }

    /// Sets `bits` in the byte at `at` (a header flag).
    pub fn set_flag(&mut self, at: usize, bits: u8) {
        if let Some(byte) = self.bytes.get_mut(at) {
            *byte |= bits;
        }
    }

    /// Cuts the message back to `len` bytes, forgetting the candidates stored past it (a
    /// candidate before `len` never points past it: pointers point backwards).
    pub fn truncate(&mut self, len: usize) {
        self.bytes.truncate(len);
        self.candidates.retain(|c| usize::from(c.start) < len);
    }

    /// Copies the message into `out`.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::EmitAndCount;
    use hickory_proto::rr::rdata::{A, SOA, SRV};
    use hickory_proto::rr::{Name, RData, Record};
    use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};

    use crate::dns::message::EchoedQuestion;

    fn labels(name: &str) -> Vec<Vec<u8>> {
        name.trim_end_matches('.')
            .split('.')
            .filter(|l| !l.is_empty())
            .map(|l| l.as_bytes().to_vec())
            .collect()
    }

    fn name(name: &str) -> Name {
        Name::from_ascii(name).unwrap()
    }

    /// Writes `records` after a 12-byte header and `question`, with hickory and with ours.
    fn both(question: &[u8], records: &[Record]) -> (Vec<u8>, Vec<u8>) {
        let mut theirs = Vec::new();
        {
            let mut encoder = BinEncoder::new(&mut theirs);
            encoder.emit_vec(&[0; 12]).unwrap();
            let mut echoed = EchoedQuestion {
                raw: question,
                count: 1,
            };
            echoed.emit(&mut encoder).unwrap();
            for record in records {
                record.emit(&mut encoder).unwrap();
            }
        }
        let mut ours = WireWriter::default();
        ours.put(&[0; 12]);
        ours.question(question);
        for record in records {
            let owner = labels(&record.name.to_ascii());
            let owner: Vec<&[u8]> = owner.iter().map(Vec::as_slice).collect();
            let rtype = u16::from(record.record_type());
            ours.record((&owner, &[]), rtype, record.ttl, |w| match &record.data {
                RData::A(a) => {
                    w.put(&a.0.octets());
                    Ok(())
                }
                RData::SRV(srv) => {
                    w.put_u16(srv.priority);
                    w.put_u16(srv.weight);
                    w.put_u16(srv.port);
                    // The target's first label plain, the rest in wire form.
                    let target = labels(&srv.target.to_ascii());
                    let mut suffix = Vec::new();
                    for label in &target[1..] {
                        suffix.push(label.len() as u8);
                        suffix.extend_from_slice(label);
                    }
                    w.uncompressed_name(&[&target[0]], &suffix)
                }
                RData::SOA(soa) => {
                    for n in [&soa.mname, &soa.rname] {
                        let n = labels(&n.to_ascii());
                        let n: Vec<&[u8]> = n.iter().map(Vec::as_slice).collect();
                        w.compressed_name(&n, &[])?;
                    }
                    w.put_u32(soa.serial);
                    w.put_u32(soa.refresh as u32);
                    w.put_u32(soa.retry as u32);
                    w.put_u32(soa.expire as u32);
                    w.put_u32(soa.minimum);
                    Ok(())
                }
                other => panic!("not covered: {other:?}"),
            })
            .unwrap();
        }
        let mut bytes = Vec::new();
        ours.copy_to(&mut bytes);
        (theirs, bytes)
    }

    fn question(qname: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for label in labels(qname) {
            bytes.push(label.len() as u8);
            bytes.extend_from_slice(&label);
        }
        bytes.extend_from_slice(&[0, 0, 33, 0, 1]);
        bytes
    }

    fn srv_answer(service: &str, targets: usize) -> Vec<Record> {
        let owner = name(service);
        let mut records = Vec::new();
        for i in 0..targets {
            let target = owner.prepend_label(format!("peer-{i}")).unwrap();
            let srv = SRV::new(0, 10, 2380, target);
            records.push(Record::from_rdata(owner.clone(), 5, RData::SRV(srv)));
        }
        for i in 0..targets {
            let target = owner.prepend_label(format!("peer-{i}")).unwrap();
            let a = A::new(10, 0, 0, i as u8);
            records.push(Record::from_rdata(target, 5, RData::A(a)));
        }
        records
    }

    #[test]
    fn srv_answers_compress_as_hickory_does() {
        let service = "kafka.default.svc.cluster.local.";
        for targets in [1, 3, 10, 40] {
            let (theirs, ours) = both(&question(service), &srv_answer(service, targets));
            assert_eq!(theirs, ours, "{targets} targets");
        }
    }

    #[test]
    fn answers_point_at_the_question_whatever_its_case() {
        let asked = "Cassandra-10018-Headless.Databases.SVC.cluster.local.";
        let records = srv_answer(&asked.to_ascii_lowercase(), 5);
        let (theirs, ours) = both(&question(asked), &records);
        assert_eq!(theirs, ours);
        // The first answer's owner is a pointer to the question's name, at offset 12.
        let first_answer = 12 + question(asked).len();
        assert_eq!(ours[first_answer..first_answer + 2], [0xC0, 12]);
        // So does every SRV owner: without its glue, the five-target answer fits 512 bytes
        // (465 bytes; the first owner written in full, as before, made it 517).
        let (theirs, ours) = both(&question(asked), &records[..5]);
        assert_eq!(theirs, ours);
        let pointers = ours.windows(2).filter(|w| *w == [0xC0, 12]).count();
        assert_eq!(pointers, 5);
        assert!(ours.len() <= 512, "{} bytes", ours.len());
    }

    #[test]
    fn negative_answers_compress_as_hickory_does() {
        let zone = name("cluster.local.");
        let soa = SOA::new(
            name("ns.dns.cluster.local."),
            name("hostmaster.cluster.local."),
            7,
            7200,
            1800,
            86400,
            5,
        );
        let records = vec![Record::from_rdata(zone, 5, RData::SOA(soa))];
        let (theirs, ours) = both(&question("nosuch.default.svc.cluster.local."), &records);
        assert_eq!(theirs, ours);
    }

    #[test]
    fn many_owners_past_the_limits_compress_as_hickory_does() {
        // 200 distinct owners: past both the candidate and the compressed-name limits.
        let records: Vec<Record> = (0..200)
            .map(|i| {
                let owner = name(&format!("p{i}.s{}.ns.svc.cluster.local.", i % 7));
                Record::from_rdata(owner, 5, RData::A(A::new(10, 0, 0, i as u8)))
            })
            .collect();
        let (theirs, ours) = both(&question("s1.ns.svc.cluster.local."), &records);
        assert_eq!(theirs, ours);
    }

    #[test]
    fn too_long_names_are_refused_and_leave_nothing_behind() {
        let long = vec![b'a'; 64];
        let mut writer = WireWriter::default();
        writer.put(&[0; 12]);
        assert_eq!(writer.compressed_name(&[&long], &[]), Err(NameTooLong));
        assert_eq!(writer.len(), 12);
        let label = [b'b'; 63];
        let five = [&label[..]; 5];
        assert_eq!(writer.uncompressed_name(&five, &[]), Err(NameTooLong));
        assert_eq!(writer.len(), 12);
        let mut suffix = vec![63u8];
        suffix.extend_from_slice(&label);
        assert_eq!(
            writer.compressed_name(&five[..3], &suffix),
            Err(NameTooLong)
        );
        assert_eq!(writer.len(), 12);
    }
}
