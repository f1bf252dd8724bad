//! A DNS label as the index keeps it for an endpoint: its bytes inline when short (pod names,
//! hostnames and dashed IPv4 addresses nearly always are), shared when long.
//!
//! Why: an answer reads an endpoint's label for every record it writes (SRV targets, the
//! lookup of `<label>.<svc>...`). Kept inline, the label is on the endpoint's own cache line;
//! behind a pointer it was one more memory access per record, which on a large index is a
//! cache miss each.
//!
//! Also the dashed form of an address, the label every endpoint answers to (R2), and its
//! inverse ([`dashed_ip`], [`undashed_ip`]).
//!
//! Invariants:
//! - the bytes are exactly those of the `&str` the label was made from (valid UTF-8);
//! - `undashed_ip(&dashed_ip(ip)) == Some(ip)` for every address;
//! - equality, order and hash are those of its bytes, whichever form holds them (byte order
//!   is the strings' order): see [`super::inline`], which it is made of;
//! - a `Label` is 32 bytes.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use super::inline::InlineBytes;

/// The longest label kept inline.
pub const INLINE_LEN: usize = 30;

/// A label's text, inline up to `INLINE_LEN` bytes.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(InlineBytes<INLINE_LEN>);

impl Label {
    /// The label `text` (any string; DNS labels are at most 63 ASCII bytes).
    pub fn new(text: &str) -> Self {
        Self(InlineBytes::new(text.as_bytes()))
    }

    /// `text` as a label, sharing `text` itself when it is too long to be inline.
    pub fn from_shared(text: &Arc<str>) -> Self {
        Self(InlineBytes::from_shared(&Arc::from(text.clone())))
    }

    /// The label's bytes (what the wire writer copies and lookups compare).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The label's text.
    pub fn as_str(&self) -> &str {
        // Made from a `&str`: the check cannot fail.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The label's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the label is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the label is `bytes`, comparing the length first (read from the label itself).
    pub fn is(&self, bytes: &[u8]) -> bool {
        self.0.is(bytes)
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for Label {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Label {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

/// The dashed form of an address used as a DNS label (R2): `10-244-1-5`, `fd00-10--5`, with a
/// `0` appended to an IPv6 form that would end in `-`, and one prepended when it would start
/// with `-`.
pub fn dashed_ip(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut label = v6.to_string().replace(':', "-");
            if label.ends_with('-') {
                label.push('0');
            }
            if label.starts_with('-') {
                label.insert(0, '0');
            }
            label
        }
    }
}

/// The address a dashed label names (`10-244-1-5`, `fd00-10--5`), if it is one; the inverse of
/// [`dashed_ip`], parsed on the stack.
pub fn undashed_ip(label: &str) -> Option<IpAddr> {
    let bytes = label.as_bytes();
    // Only hex digits and dashes can spell an address: most labels (pod names) stop here.
    if bytes.len() > 45
        || !bytes.contains(&b'-')
        || !bytes.iter().all(|b| b.is_ascii_hexdigit() || *b == b'-')
    {
        return None;
    }
    let parse_with = |separator: u8| {
        let mut buffer = [0u8; 45];
        for (out, &byte) in buffer.iter_mut().zip(bytes) {
            *out = if byte == b'-' { separator } else { byte };
        }
        std::str::from_utf8(&buffer[..bytes.len()])
            .ok()?
            .parse::<IpAddr>()
            .ok()
    };
    parse_with(b'.').or_else(|| parse_with(b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_labels_are_inline_and_long_ones_shared() {
        assert_eq!(std::mem::size_of::<Label>(), 32);
        let short = Label::new("web-0");
        assert!(matches!(short.0, InlineBytes::Inline { len: 5, .. }));
        let longest = "a".repeat(INLINE_LEN);
        assert!(matches!(Label::new(&longest).0, InlineBytes::Inline { .. }));
        let long: Arc<str> = "b".repeat(INLINE_LEN + 1).into();
        let shared = Label::from_shared(&long);
        assert!(matches!(&shared.0, InlineBytes::Shared(_)));
        assert_eq!(shared.as_str(), &*long);
        assert_eq!(shared.len(), INLINE_LEN + 1);
    }

    #[test]
    fn labels_compare_as_their_strings_in_either_form() {
        let names = [
            "",
            "a",
            "web-0",
            "web-10",
            "web-9",
            &"c".repeat(40),
            &"c".repeat(41),
        ];
        for a in names {
            for b in names {
                let (la, lb) = (Label::new(a), Label::new(b));
                assert_eq!(la == lb, a == b, "{a:?} {b:?}");
                assert_eq!(la.cmp(&lb), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(la.is(b.as_bytes()), a == b);
            }
            assert_eq!(Label::new(a).as_str(), a);
            assert_eq!(Label::new(a).to_string(), a);
            assert_eq!(Label::new(a).as_bytes(), a.as_bytes());
        }
        assert!(Label::new("").is_empty());
    }

    #[test]
    fn dashed_ip_forms() {
        let cases = [
            ("10.244.1.5", "10-244-1-5"),
            ("fd00:10::5", "fd00-10--5"),
            ("fd00:10::", "fd00-10--0"),
            ("::1", "0--1"),
            ("2001:db8:0:0:1:0:0:1", "2001-db8--1-0-0-1"),
        ];
        for (ip, label) in cases {
            assert_eq!(dashed_ip(&ip.parse().unwrap()), label, "{ip}");
        }
    }

    #[test]
    fn dashed_labels_parse_back() {
        for ip in [
            "10.244.1.5",
            "fd00:10::5",
            "fd00:10::",
            "::1",
            "2001:db8::1:0:0:1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(undashed_ip(&dashed_ip(&ip)), Some(ip), "{ip}");
        }
        for label in ["kubia-0", "10-244-1", "10-244-1-256", "web", "a-b-c-d"] {
            assert_eq!(undashed_ip(label), None, "{label}");
        }
    }
}
