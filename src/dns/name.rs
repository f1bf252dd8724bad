//! The query-name parser: a pure function from a lowercased name to what it asks about.
//!
//! A name is first matched against the served zones (longest suffix wins), then the labels left
//! of the zone are read right to left into a [`ForwardName`]; names under a reverse zone become
//! an address. Nothing here looks at the index: whether `kubia.default.svc.<zone>` exists is for
//! the answer rules to say.
//!
//! Invariants: parsing never allocates (labels are borrowed from the query name); a label that
//! is not ASCII cannot name anything we serve, so it parses as [`ForwardName::Nonexistent`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::Name;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// What a name inside a forward zone asks about (labels are lowercase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardName<'a> {
    /// The zone apex: SOA, NS.
    Apex,
    /// `dns-version.<zone>`: TXT with the schema version.
    DnsVersion,
    /// `dns.<zone>`: exists only as the parent of `ns.dns`.
    DnsNode,
    /// `ns.dns.<zone>`: the nameserver's own name.
    Nameserver,
    /// `svc.<zone>`: exists, holds no records.
    SvcNode,
    /// `<ns>.svc.<zone>`.
    Namespace(&'a str),
    /// `<svc>.<ns>.svc.<zone>`.
    Service {
        /// Namespace.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
    },
    /// `<label>.<svc>.<ns>.svc.<zone>`: hostname, pod name or dashed IP.
    Endpoint {
        /// Namespace.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
        /// The endpoint label.
        label: &'a str,
    },
    /// `_<proto>.<svc>.<ns>.svc.<zone>`: parent of the port names.
    ProtocolNode {
        /// Namespace.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
        /// Protocol label without its underscore.
        protocol: &'a str,
    },
    /// `_<port>._<proto>.<svc>.<ns>.svc.<zone>`: SRV for one named port.
    Port {
        /// Namespace.
        namespace: &'a str,
        /// Service name.
        service: &'a str,
        /// Port name without its underscore.
        port: &'a str,
        /// Protocol label without its underscore.
        protocol: &'a str,
    },
    /// A name in the zone that nothing we serve can have.
    Nonexistent,
}

/// Where a query name falls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Inside forward zone number `zone`.
    Forward {
        /// Index into the forward zones.
        zone: usize,
        /// What the name asks about.
        name: ForwardName<'a>,
    },
    /// Inside reverse zone number `zone`.
    Reverse {
        /// Index into the reverse zones.
        zone: usize,
        /// The address, when the name is a complete reverse name; `None` for any other name.
        address: Option<IpAddr>,
        /// The addresses a partial reverse name stands for (`10.in-addr.arpa`: 10.0.0.0/8;
        /// `in-addr.arpa` itself: 0.0.0.0/0); `None` for a complete or malformed name.
        prefix: Option<IpNet>,
        /// Whether the name is the reverse zone's apex.
        apex: bool,
    },
    /// In no served zone.
    Outside,
}

const MAX_LABELS: usize = 128;

/// A name's labels, borrowed, in wire order (leftmost first).
struct Labels<'a> {
    labels: [&'a [u8]; MAX_LABELS],
    len: usize,
}

impl<'a> Labels<'a> {
    fn of(name: &'a Name) -> Self {
        let mut labels: [&'a [u8]; MAX_LABELS] = [&[]; MAX_LABELS];
        let mut len = 0;
        for label in name.iter().take(MAX_LABELS) {
            labels[len] = label;
            len += 1;
        }
        Self { labels, len }
    }

    fn as_slice(&self) -> &[&'a [u8]] {
        &self.labels[..self.len]
    }
}

/// Whether `zone` (lowercase) is a suffix of `labels` (lowercase); returns the labels left of it.
fn strip_zone<'s, 'a>(labels: &'s [&'a [u8]], zone: &Name) -> Option<&'s [&'a [u8]]> {
    let zone_len = zone.num_labels() as usize;
    if zone_len > labels.len() {
        return None;
    }
    let (relative, tail) = labels.split_at(labels.len() - zone_len);
    tail.iter()
        .zip(zone.iter())
        .all(|(query, zone)| query.eq_ignore_ascii_case(zone))
        .then_some(relative)
}

/// Finds the longest matching zone among `zones`; returns its index and the relative labels.
fn best_zone<'s, 'a>(labels: &'s [&'a [u8]], zones: &[Name]) -> Option<(usize, &'s [&'a [u8]])> {
    zones
        .iter()
        .enumerate()
        .filter_map(|(index, zone)| strip_zone(labels, zone).map(|rest| (index, rest)))
        .min_by_key(|(_, rest)| rest.len())
}

/// Parses a lowercased query name against the forward and reverse zones.
pub fn parse<'a>(name: &'a Name, forward: &[Name], reverse: &[Name]) -> Parsed<'a> {
    let labels = Labels::of(name);
    parse_labels(labels.as_slice(), forward, reverse)
}

/// Parses a lowercased name given as its labels (leftmost first) against the forward and
/// reverse zones: the one place that decides which zone a name is in (the longest matching
/// zone; a reverse zone only when strictly longer than every forward one).
pub fn parse_labels<'a>(all: &[&'a [u8]], forward: &[Name], reverse: &[Name]) -> Parsed<'a> {
    let forward_match = best_zone(all, forward);
    let reverse_match = best_zone(all, reverse);
    match (forward_match, reverse_match) {
        (Some((zone, rest)), reverse) if reverse.is_none_or(|(_, r)| rest.len() <= r.len()) => {
            Parsed::Forward {
                zone,
                name: parse_forward(rest),
            }
        }
        (_, Some((zone, rest))) => Parsed::Reverse {
            zone,
            address: parse_reverse(all),
            prefix: parse_reverse_prefix(all),
            apex: rest.is_empty(),
        },
        _ => Parsed::Outside,
    }
}

fn text(label: &[u8]) -> Option<&str> {
    if label.is_ascii() {
        std::str::from_utf8(label).ok()
    } else {
        None
    }
}

/// Reads the labels left of a forward zone (`relative`, leftmost first, lowercase).
pub fn parse_forward<'a>(relative: &[&'a [u8]]) -> ForwardName<'a> {
    let mut texts: [&'a str; 5] = [""; 5];
    if relative.len() > texts.len() {
        return ForwardName::Nonexistent;
    }
    // texts[0] is the label next to the zone, texts[1] the one left of it, and so on.
    for (slot, label) in texts.iter_mut().zip(relative.iter().rev()) {
        match text(label) {
            Some(label) => *slot = label,
            None => return ForwardName::Nonexistent,
        }
    }
    match (relative.len(), texts) {
        (0, _) => ForwardName::Apex,
        (1, ["dns-version", ..]) => ForwardName::DnsVersion,
        (1, ["dns", ..]) => ForwardName::DnsNode,
        (2, ["dns", "ns", ..]) => ForwardName::Nameserver,
        (1, ["svc", ..]) => ForwardName::SvcNode,
        (2, ["svc", namespace, ..]) => ForwardName::Namespace(namespace),
        (3, ["svc", namespace, service, ..]) => ForwardName::Service { namespace, service },
        (4, ["svc", namespace, service, label, _]) => match label.strip_prefix('_') {
            Some(protocol) => ForwardName::ProtocolNode {
                namespace,
                service,
                protocol,
            },
            None => ForwardName::Endpoint {
                namespace,
                service,
                label,
            },
        },
        (5, ["svc", namespace, service, protocol, port]) => {
            match (port.strip_prefix('_'), protocol.strip_prefix('_')) {
                (Some(port), Some(protocol)) => ForwardName::Port {
                    namespace,
                    service,
                    port,
                    protocol,
                },
                _ => ForwardName::Nonexistent,
            }
        }
        _ => ForwardName::Nonexistent,
    }
}

/// Reads a complete `in-addr.arpa` or `ip6.arpa` name into an address.
fn parse_reverse(labels: &[&[u8]]) -> Option<IpAddr> {
    let n = labels.len();
    if n < 2 || !labels[n - 1].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let body = &labels[..n - 2];
    if labels[n - 2].eq_ignore_ascii_case(b"in-addr") && body.len() == 4 {
        let mut octets = [0u8; 4];
        for (octet, label) in octets.iter_mut().rev().zip(body) {
            *octet = parse_octet(label)?;
        }
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if labels[n - 2].eq_ignore_ascii_case(b"ip6") && body.len() == 32 {
        let mut value: u128 = 0;
        for label in body.iter().rev() {
            let [digit] = label else { return None };
            let nibble = (*digit as char).to_digit(16)?;
            value = (value << 4) | u128::from(nibble);
        }
        return Some(IpAddr::V6(Ipv6Addr::from(value)));
    }
    None
}

/// Reads a partial `in-addr.arpa` or `ip6.arpa` name (fewer labels than an address has)
/// into the network it stands for.
fn parse_reverse_prefix(labels: &[&[u8]]) -> Option<IpNet> {
    let n = labels.len();
    if n < 2 || !labels[n - 1].eq_ignore_ascii_case(b"arpa") {
        return None;
    }
    let body = &labels[..n - 2];
    if labels[n - 2].eq_ignore_ascii_case(b"in-addr") && body.len() < 4 {
        let mut octets = [0u8; 4];
        for (octet, label) in octets.iter_mut().zip(body.iter().rev()) {
            *octet = parse_octet(label)?;
        }
        let bits = 8 * body.len() as u8;
        return Ipv4Net::new(Ipv4Addr::from(octets), bits)
            .ok()
            .map(IpNet::V4);
    }
    if labels[n - 2].eq_ignore_ascii_case(b"ip6") && body.len() < 32 {
        let mut value: u128 = 0;
        for (position, label) in body.iter().rev().enumerate() {
            let [digit] = label else { return None };
            let nibble = u128::from((*digit as char).to_digit(16)?);
            value |= nibble << (124 - 4 * position);
        }
        let bits = 4 * body.len() as u8;
        return Ipv6Net::new(Ipv6Addr::from(value), bits)
            .ok()
            .map(IpNet::V6);
    }
    None
}

/// A decimal octet label without leading zeros (`0`..`255`).
fn parse_octet(label: &[u8]) -> Option<u8> {
    if label.is_empty() || label.len() > 3 || (label.len() > 1 && label[0] == b'0') {
        return None;
    }
    std::str::from_utf8(label).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(names: &[&str]) -> Vec<Name> {
        names.iter().map(|n| Name::from_ascii(n).unwrap()).collect()
    }

    fn parsed(query: &str) -> String {
        let forward = zones(&["cluster.local.", "peers.example."]);
        let reverse = zones(&["in-addr.arpa.", "ip6.arpa.", "10.in-addr.arpa."]);
        let name = Name::from_ascii(query).unwrap().to_lowercase();
        format!("{:?}", parse(&name, &forward, &reverse))
    }

    #[test]
    fn forward_names() {
        let cases = [
            ("cluster.local.", "Forward { zone: 0, name: Apex }"),
            (
                "dns-version.cluster.local.",
                "Forward { zone: 0, name: DnsVersion }",
            ),
            ("dns.cluster.local.", "Forward { zone: 0, name: DnsNode }"),
            (
                "ns.dns.cluster.local.",
                "Forward { zone: 0, name: Nameserver }",
            ),
            ("svc.cluster.local.", "Forward { zone: 0, name: SvcNode }"),
            (
                "default.svc.cluster.local.",
                "Forward { zone: 0, name: Namespace(\"default\") }",
            ),
            (
                "KUBIA.Default.svc.Cluster.Local.",
                "Forward { zone: 0, name: Service { namespace: \"default\", service: \"kubia\" } }",
            ),
            (
                "kubia-0.kubia.default.svc.peers.example.",
                "Forward { zone: 1, name: Endpoint { namespace: \"default\", service: \"kubia\", label: \"kubia-0\" } }",
            ),
            (
                "_tcp.kubia.default.svc.cluster.local.",
                "Forward { zone: 0, name: ProtocolNode { namespace: \"default\", service: \"kubia\", protocol: \"tcp\" } }",
            ),
            (
                "_http._tcp.kubia.default.svc.cluster.local.",
                "Forward { zone: 0, name: Port { namespace: \"default\", service: \"kubia\", port: \"http\", protocol: \"tcp\" } }",
            ),
            (
                "http._tcp.kubia.default.svc.cluster.local.",
                "Forward { zone: 0, name: Nonexistent }",
            ),
            (
                "a.b.c.d.e.svc.cluster.local.",
                "Forward { zone: 0, name: Nonexistent }",
            ),
            (
                "kubia.default.pod.cluster.local.",
                "Forward { zone: 0, name: Nonexistent }",
            ),
            (
                "foo.cluster.local.",
                "Forward { zone: 0, name: Nonexistent }",
            ),
            ("example.com.", "Outside"),
            ("local.", "Outside"),
            ("xcluster.local.", "Outside"),
        ];
        for (query, expected) in cases {
            assert_eq!(parsed(query), expected, "{query}");
        }
    }

    #[test]
    fn reverse_names() {
        let cases = [
            (
                "5.1.244.10.in-addr.arpa.",
                "Reverse { zone: 2, address: Some(10.244.1.5), prefix: None, apex: false }",
            ),
            (
                "5.1.244.11.in-addr.arpa.",
                "Reverse { zone: 0, address: Some(11.244.1.5), prefix: None, apex: false }",
            ),
            (
                "in-addr.arpa.",
                "Reverse { zone: 0, address: None, prefix: Some(0.0.0.0/0), apex: true }",
            ),
            (
                "1.244.10.in-addr.arpa.",
                "Reverse { zone: 2, address: None, prefix: Some(10.244.1.0/24), apex: false }",
            ),
            (
                "10.in-addr.arpa.",
                "Reverse { zone: 2, address: None, prefix: Some(10.0.0.0/8), apex: true }",
            ),
            (
                "05.1.244.10.in-addr.arpa.",
                "Reverse { zone: 2, address: None, prefix: None, apex: false }",
            ),
            (
                "256.1.244.10.in-addr.arpa.",
                "Reverse { zone: 2, address: None, prefix: None, apex: false }",
            ),
            (
                "7.1.256.10.in-addr.arpa.",
                "Reverse { zone: 2, address: None, prefix: None, apex: false }",
            ),
            (
                "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                "Reverse { zone: 1, address: Some(fd00::1), prefix: None, apex: false }",
            ),
            (
                "b.a.0.0.d.f.ip6.arpa.",
                "Reverse { zone: 1, address: None, prefix: Some(fd00:ab00::/24), apex: false }",
            ),
            (
                "x.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
                "Reverse { zone: 1, address: None, prefix: None, apex: false }",
            ),
        ];
        for (query, expected) in cases {
            assert_eq!(parsed(query), expected, "{query}");
        }
    }

    #[test]
    fn non_ascii_labels_name_nothing() {
        let forward = zones(&["cluster.local."]);
        let name = Name::from_labels(vec![
            &b"\xc3\xa9t\xc3\xa9"[..],
            b"svc",
            b"cluster",
            b"local",
        ])
        .unwrap();
        assert_eq!(
            parse(&name, &forward, &[]),
            Parsed::Forward {
                zone: 0,
                name: ForwardName::Nonexistent
            }
        );
    }
}
