//! Reading DNS messages where they lie, without parsing them into objects: names in wire form
//! and the shape of a plain query. The one reader of uncompressed wire names; the answer
//! cache, the direct path, the question echo and the request checks all use it.
//!
//! Invariants: nothing here allocates or panics on any input; a name is accepted only when it
//! is uncompressed, ends in the message, and is at most 255 bytes long (RFC 1035); a query is
//! plain only when nothing in it needs the general path.

/// Bytes of a DNS header.
pub const HEADER_LEN: usize = 12;

/// Longest name on the wire, root byte included.
const MAX_NAME: usize = 255;

/// Walks the uncompressed name at `start` of `message`: calls `label(offset, bytes)` for each
/// label (`offset` of its length byte) and returns the offset right after its root byte.
/// `None` for a compression pointer or an extended label type, a name longer than 255 bytes,
/// or one that runs past the end.
pub fn walk_name<'m>(
    message: &'m [u8],
    start: usize,
    mut label: impl FnMut(usize, &'m [u8]),
) -> Option<usize> {
    let mut at = start;
    loop {
        let length = usize::from(*message.get(at)?);
        if length == 0 {
            return (at + 1 - start <= MAX_NAME).then_some(at + 1);
        }
        if length > 63 {
            return None; // a pointer or an extended label type
        }
        label(at, message.get(at + 1..at + 1 + length)?);
        at += 1 + length;
    }
}

/// The offset right after the name at `start`, which may end in a compression pointer (for
/// stepping over records, not for reading the name); `None` for an extended label type or a
/// name that runs past the end.
pub fn skip_name(message: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    loop {
        let length = *message.get(at)?;
        match length {
            0 => return Some(at + 1),
            1..=63 => at += 1 + usize::from(length),
            0xc0.. => return message.get(at + 1).map(|_| at + 2),
            _ => return None,
        }
    }
}

/// The offset right after the uncompressed name at `start` (see [`walk_name`]).
pub fn name_end(message: &[u8], start: usize) -> Option<usize> {
    walk_name(message, start, |_, _| {})
}

/// Splits the uncompressed name at the start of `name` into `labels`; returns how many, or
/// `None` when it is not a valid name or has more labels than `labels` holds.
pub fn split_labels<'n>(name: &'n [u8], labels: &mut [&'n [u8]]) -> Option<usize> {
    let mut count = 0;
    let mut fits = true;
    walk_name(name, 0, |_, label| match labels.get_mut(count) {
        Some(slot) => {
            *slot = label;
            count += 1;
        }
        None => fits = false,
    })?;
    fits.then_some(count)
}

/// A plain query's shape, read without allocating.
#[derive(Clone, Copy, Debug)]
pub struct Plain<'a> {
    /// Question bytes (name, type, class) as sent.
    pub question: &'a [u8],
    /// The UDP size offered by the client's OPT record, when it sent one.
    pub edns_payload: Option<u16>,
}

/// Reads `request` as a plain query (a QUERY with one uncompressed question, no answer or
/// authority records, at most an OPT record without options, version 0, nothing after it),
/// or `None` for anything the general path must see.
pub fn plain(request: &[u8]) -> Option<Plain<'_>> {
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
    let question_end = name_end(request, HEADER_LEN)? + 4;
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

/// The UDP size of an OPT record that is exactly the rest of the message, has the root name,
/// version 0 and no options.
fn empty_opt(record: &[u8]) -> Option<u16> {
    let [0, 0, 41, hi, lo, _ext_rcode, 0, _do_z, _z, 0, 0] = *record else {
        return None;
    };
    Some(u16::from_be_bytes([hi, lo]))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` (wire form), type A, with `opt` as its OPT record when given.
    pub(crate) fn query(name: &[u8], opt: Option<&[u8]>) -> Vec<u8> {
        let mut message = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0];
        message.push(u8::from(opt.is_some()));
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
    fn names_are_walked_label_by_label_within_their_limits() {
        let mut seen = Vec::new();
        let end = walk_name(NAME, 0, |at, label| seen.push((at, label)));
        assert_eq!(end, Some(NAME.len()));
        assert_eq!(
            seen,
            [(0, &b"KuBiA"[..]), (6, &b"default"[..]), (14, &b"svc"[..])]
        );
        assert_eq!(name_end(b"\x00", 0), Some(1), "the root");
        assert_eq!(name_end(b"\x03svc", 0), None, "runs past the end");
        assert_eq!(name_end(b"\xc0\x0c", 0), None, "a pointer");
        assert_eq!(name_end(b"\x41x", 0), None, "an extended label type");
        let long: Vec<u8> = std::iter::repeat_n(&b"\x3f"[..], 1)
            .chain(std::iter::repeat_n(&[b'a'; 63][..], 1))
            .cycle()
            .take(8)
            .flatten()
            .copied()
            .chain([0])
            .collect();
        assert_eq!(long.len(), 257);
        assert_eq!(name_end(&long, 0), None, "over 255 bytes");
        assert_eq!(name_end(&long[64..], 0), Some(193));
    }

    #[test]
    fn labels_are_split_into_the_slots_given() {
        let mut labels: [&[u8]; 3] = [&[]; 3];
        assert_eq!(split_labels(NAME, &mut labels), Some(3));
        assert_eq!(labels, [&b"KuBiA"[..], b"default", b"svc"]);
        let mut two: [&[u8]; 2] = [&[]; 2];
        assert_eq!(split_labels(NAME, &mut two), None, "more labels than slots");
    }
}
