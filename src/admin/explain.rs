//! `/debug/explain`: the question operators ask, "why does this name (not) answer?".
//!
//! The answer is JSON: `exists` (true, false, or null before sync), a `reason` in words, and
//! the records the name would serve for A, AAAA and SRV (PTR for reverse names), computed by
//! the same answer rules the DNS side uses, each record listed once (an ExternalName's CNAME
//! answers all three types). A text that is no domain name (an empty label, a label over 63
//! characters, a space) is an [`ExplainError`], which the endpoint answers with 400.
//!
//! Invariants: explanations read the published index only, like every query does; once synced,
//! `exists` is true or false, and true whenever records are listed (where the rule depends on
//! ports, as for `_port._proto` names, the answer's response code decides it).

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};

use super::AdminState;
use crate::dns::answer::SEEDS_LABEL;
use crate::dns::name::{ForwardName, Parsed, parse};
use crate::index::{Index, NotReadyEndpoint, ServiceRecords};
use crate::model::ServiceKind;

/// Why a text cannot be explained: it is no domain name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExplainError {
    /// Nothing to explain.
    #[error("the name is empty")]
    Empty,
    /// A character no name can be asked about: a space, a control character, non-ASCII.
    #[error("not a domain name: character '{}' is not allowed", .0.escape_default())]
    Character(char),
    /// A leading or doubled `.`.
    #[error("not a domain name: empty label (a leading or doubled '.')")]
    EmptyLabel,
    /// A label of more than 63 characters (RFC 1035).
    #[error("not a domain name: label longer than 63 characters ({0})")]
    LabelTooLong(usize),
    /// More than 253 characters, the most a name of 255 bytes on the wire spells.
    #[error("not a domain name: longer than 253 characters ({0})")]
    TooLong(usize),
    /// Anything else the DNS library refuses (a bad escape).
    #[error("not a domain name: {0}")]
    Other(String),
}

/// Parses `text` (with or without its trailing dot) as a domain name, naming the rule broken.
fn parse_name(text: &str) -> Result<Name, ExplainError> {
    if text.is_empty() {
        return Err(ExplainError::Empty);
    }
    if let Some(c) = text
        .chars()
        .find(|c| !c.is_ascii() || c.is_ascii_whitespace() || c.is_ascii_control())
    {
        return Err(ExplainError::Character(c));
    }
    let relative = text.strip_suffix('.').unwrap_or(text);
    if !relative.is_empty() {
        for label in relative.split('.') {
            match label.len() {
                0 => return Err(ExplainError::EmptyLabel),
                length if length > 63 => return Err(ExplainError::LabelTooLong(length)),
                _ => {}
            }
        }
    }
    if relative.len() > 253 {
        return Err(ExplainError::TooLong(relative.len()));
    }
    Name::from_ascii(format!("{relative}.")).map_err(|error| ExplainError::Other(error.to_string()))
}

/// Explains `name` as the DNS side would answer it now; a text that is no domain name is an
/// error.
pub fn explain(state: &AdminState, name: &str) -> Result<Value, ExplainError> {
    let authority = state.responder.authority();
    let parsed_name = parse_name(name)?;
    let fqdn = parsed_name.to_string();
    let lower = parsed_name.to_lowercase();
    let parsed = parse(&lower, &authority.zones, &authority.reverse_zones);
    let (exists, reason) = match parsed {
        Parsed::Outside => {
            let zones: Vec<String> = authority.zones.iter().map(Name::to_string).collect();
            (
                Some(false),
                format!(
                    "outside the served zones ({}): answered REFUSED",
                    zones.join(", ")
                ),
            )
        }
        Parsed::Reverse {
            address: None,
            apex,
            ..
        } => match apex {
            true => (Some(true), "the reverse zone's apex".to_string()),
            false => (
                Some(false),
                "not a complete reverse name of an address".to_string(),
            ),
        },
        Parsed::Reverse {
            address: Some(ip), ..
        } => match state.index.ptr(&ip) {
            Some(target) => (
                Some(true),
                format!("address {ip} belongs to Service {}", target.service),
            ),
            None => (
                Some(false),
                format!("no Service or ready endpoint has address {ip}"),
            ),
        },
        Parsed::Forward { name, .. } => forward_reason(state, name),
    };
    let types: &[RecordType] = match parsed {
        Parsed::Reverse { .. } => &[RecordType::PTR],
        _ => &[RecordType::A, RecordType::AAAA, RecordType::SRV],
    };
    let answers: Vec<_> = types
        .iter()
        .map(|rtype| authority.answer(&state.index, &parsed_name, *rtype))
        .collect();
    let mut records: Vec<String> = Vec::new();
    for record in answers.iter().flat_map(|answer| &answer.answers) {
        let text = record.to_string();
        if !records.contains(&text) {
            records.push(text);
        }
    }
    // Where the rules depend on ports (`_port._proto` names), the answer decides: NOERROR means
    // the name exists, NXDOMAIN that it does not (SERVFAIL, before sync, leaves it open).
    let (exists, reason) = match exists {
        Some(exists) => (Some(exists), reason),
        None => match answers.first().map(|answer| answer.rcode) {
            Some(ResponseCode::NoError) => (Some(true), format!("{reason}: yes, see the records")),
            Some(ResponseCode::NXDomain) => (Some(false), format!("{reason}: none does")),
            _ => (None, reason),
        },
    };
    let synced = state.index.is_synced();
    let (exists, reason) = if !synced && exists != Some(true) {
        (
            None,
            format!(
                "not synced yet: negative answers are SERVFAIL until the first complete state ({reason})"
            ),
        )
    } else {
        (exists, reason)
    };
    Ok(
        json!({"name": fqdn, "exists": exists, "reason": reason, "synced": synced, "records": records}),
    )
}

fn forward_reason(state: &AdminState, name: ForwardName<'_>) -> (Option<bool>, String) {
    let index = &state.index;
    let unwatched = |namespace: &str| {
        !state.watched_namespaces.is_empty()
            && !state.watched_namespaces.iter().any(|n| n == namespace)
    };
    match name {
        ForwardName::Apex | ForwardName::DnsVersion | ForwardName::DnsNode | ForwardName::Nameserver | ForwardName::SvcNode => {
            (Some(true), "a fixed name of the zone (R8)".to_string())
        }
        ForwardName::Nonexistent => (
            Some(false),
            "no name of this shape exists: names are <svc>.<ns>.svc, <label>.<svc>.<ns>.svc and _<port>._<proto>.<svc>.<ns>.svc".to_string(),
        ),
        ForwardName::Namespace(namespace) if unwatched(namespace) => {
            (Some(false), format!("namespace {namespace} is not watched (source.kubernetes.namespaces)"))
        }
        ForwardName::Namespace(namespace) => match index.namespace_exists(namespace) {
            true => (Some(true), format!("namespace {namespace} has Services")),
            false => (Some(false), format!("no Service in namespace {namespace}")),
        },
        ForwardName::Service { namespace, service }
        | ForwardName::Endpoint { namespace, service, .. }
        | ForwardName::ProtocolNode { namespace, service, .. }
        | ForwardName::Port { namespace, service, .. } => {
            if unwatched(namespace) {
                return (Some(false), format!("namespace {namespace} is not watched (source.kubernetes.namespaces)"));
            }
            let Some(records) = index.service(namespace, service) else {
                return (Some(false), missing_service(index, namespace, service));
            };
            let not_ready = index.not_ready(namespace, service);
            below_service(&records, &not_ready, name)
        }
    }
}

fn missing_service(index: &Index, namespace: &str, service: &str) -> String {
    if index.namespace_exists(namespace) {
        format!("no Service {service} in namespace {namespace}")
    } else {
        format!(
            "no Service {service} in namespace {namespace} (no Service in that namespace at all)"
        )
    }
}

fn below_service(
    records: &ServiceRecords,
    sleeping: &[NotReadyEndpoint],
    name: ForwardName<'_>,
) -> (Option<bool>, String) {
    let ready = records.endpoints.len();
    let not_ready = sleeping.len();
    match (&records.kind, name) {
        (ServiceKind::ExternalName(target), ForwardName::Service { .. }) => (
            Some(true),
            format!("ExternalName Service: a CNAME to {target}"),
        ),
        (ServiceKind::ExternalName(_), _) => (
            Some(false),
            "nothing exists below an ExternalName Service".to_string(),
        ),
        (ServiceKind::ClusterIp(ips), ForwardName::Service { .. }) => (
            Some(true),
            format!(
                "ClusterIP Service ({} address(es)), {ready} ready endpoint(s)",
                ips.len()
            ),
        ),
        (ServiceKind::Headless, ForwardName::Service { .. }) if ready == 0 => (
            Some(false),
            format!("headless Service with no ready endpoint ({not_ready} not ready)"),
        ),
        (ServiceKind::Headless, ForwardName::Service { .. }) => (
            Some(true),
            format!("headless Service with {ready} ready endpoint(s), {not_ready} not ready"),
        ),
        (_, ForwardName::Endpoint { label, .. }) => endpoint_reason(records, sleeping, label),
        // Left open (None): `explain` decides by the answer's response code.
        (_, ForwardName::Port { port, protocol, .. }) => (
            None,
            format!(
                "SRV for port {port}/{protocol}: exists when a ready endpoint (headless) or the Service (ClusterIP) has a port named {port} over {protocol}"
            ),
        ),
        (_, _) => (
            None,
            "a protocol node: exists when a named port uses that protocol".to_string(),
        ),
    }
}

fn endpoint_reason(
    records: &ServiceRecords,
    not_ready: &[NotReadyEndpoint],
    label: &str,
) -> (Option<bool>, String) {
    if label == SEEDS_LABEL
        && let Some(seeds) = &records.seeds
    {
        let count = seeds.endpoints.len();
        return (
            Some(count > 0),
            format!(
                "the Service's seeds (peerdns.io/seeds, R15): {count} address(es) of its first ordinals; the label is reserved, a pod named seeds answers by address only"
            ),
        );
    }
    if let Some(endpoint) = records.endpoints_labelled(label).next() {
        let hostname = endpoint.hostname();
        let how = match (hostname, hostname.is_some_and(|h| h.as_str() == label)) {
            (_, true) => "its hostname".to_string(),
            (Some(_), false) => "its pod name or dashed IP".to_string(),
            (None, false) => "its pod name or dashed IP; it has no hostname (its pod's subdomain does not name this Service, or it sets none), so SRV targets use its dashed IP".to_string(),
        };
        let own_name = records
            .own_names
            .as_ref()
            .is_some_and(|own| own.endpoints.iter().any(|e| std::ptr::eq(e, endpoint)));
        let which = match own_name {
            true => {
                "a not-ready endpoint answering its own name before ready (not-ready names, R15; the Service-wide answers list ready endpoints only)"
            }
            false => "a ready endpoint",
        };
        return (
            Some(true),
            format!("{which} ({}) known by {how}", endpoint.ip),
        );
    }
    let sleeping = not_ready.iter().find(|e| {
        e.hostname.as_deref() == Some(label)
            || e.pod_name.as_deref() == Some(label)
            || crate::index::dashed_ip(&e.ip) == label
    });
    match sleeping {
        Some(endpoint) => (
            Some(false),
            format!("endpoint {label} ({}) is not ready", endpoint.ip),
        ),
        None => (
            Some(false),
            format!(
                "no endpoint of this Service is known as {label} (labels are hostnames, pod names and dashed IPs of ready endpoints)"
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_are_no_domain_names_are_refused_with_the_rule() {
        let long_label = "a".repeat(64);
        let long_name = vec!["abcdefghi"; 26].join(".");
        let cases = [
            ("", ExplainError::Empty),
            ("bad..name", ExplainError::EmptyLabel),
            (".a", ExplainError::EmptyLabel),
            ("a..", ExplainError::EmptyLabel),
            (long_label.as_str(), ExplainError::LabelTooLong(64)),
            (long_name.as_str(), ExplainError::TooLong(259)),
            ("a b", ExplainError::Character(' ')),
            ("a\u{e9}", ExplainError::Character('\u{e9}')),
        ];
        for (text, error) in cases {
            assert_eq!(parse_name(text), Err(error), "{text:?}");
        }
        assert_eq!(
            ExplainError::EmptyLabel.to_string(),
            "not a domain name: empty label (a leading or doubled '.')"
        );
        for good in [
            "kubia.default.svc.cluster.local",
            "_http._tcp.kubia.default.svc.cluster.local.",
            ".",
            &"a".repeat(63),
        ] {
            assert!(parse_name(good).is_ok(), "{good:?}");
        }
        assert_eq!(
            parse_name("Kubia.Default").unwrap().to_string(),
            "Kubia.Default."
        );
    }
}
