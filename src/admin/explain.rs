//! `/debug/explain`: the question operators ask, "why does this name (not) answer?".
//!
//! The answer is JSON: `exists` (true, false, or null before sync), a `reason` in words, and
//! the records the name would serve for A, AAAA and SRV (PTR for reverse names), computed by
//! the same answer rules the DNS side uses.
//!
//! Invariant: explanations read the published index only, like every query does.

use hickory_proto::rr::{Name, RecordType};
use serde_json::{Value, json};

use super::AdminState;
use crate::dns::answer::SEEDS_LABEL;
use crate::dns::name::{ForwardName, Parsed, parse};
use crate::index::{Index, NotReadyEndpoint, ServiceRecords};
use crate::model::ServiceKind;

/// Explains `name` as the DNS side would answer it now.
pub fn explain(state: &AdminState, name: &str) -> Value {
    let authority = state.responder.authority();
    let fqdn = if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    };
    let Ok(parsed_name) = Name::from_ascii(&fqdn) else {
        return json!({"name": name, "exists": false, "reason": "not a valid domain name"});
    };
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
    let types: &[RecordType] = match parsed {
        Parsed::Reverse { .. } => &[RecordType::PTR],
        _ => &[RecordType::A, RecordType::AAAA, RecordType::SRV],
    };
    let mut records = Vec::new();
    for rtype in types {
        let answer = authority.answer(&state.index, &parsed_name, *rtype);
        records.extend(answer.answers.iter().map(|r| r.to_string()));
    }
    json!({"name": fqdn, "exists": exists, "reason": reason, "synced": synced, "records": records})
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
        (_, ForwardName::Port { port, protocol, .. }) => (
            None,
            format!(
                "SRV for port {port}/{protocol}: exists when a ready endpoint (headless) or the Service (ClusterIP) has that named port; see the records"
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
